//! Multipart uploads: Create, UploadPart, UploadPartCopy, Complete, Abort, ListParts, ListMultipartUploads.
//!
//! An upload lives in `store.multipart_dir()/<upload id>/`: `upload.json` (repository, branch, path, content
//! type, metadata, start time) and, per part, `part-NNNNN.json` (MD5, size, time, data file name) naming its data
//! file `part-NNNNN-<random>.data`. Every file is written to a temporary name, fsynced and renamed, the data
//! before the record, so a crash leaves either the old or the new part and a retried UploadPart simply replaces
//! it. Upload ids are 32 random bytes in hex: unguessable, and checked
//! to be exactly that before they ever become a path component.
//!
//! Blobs are addressed by the SHA-256 of their content, which cannot be combined from per-part hashes. So that
//! Complete does not have to read every part once more, each upload keeps a running SHA-256 in memory
//! ([`RunningHashes`]): after a part is stored, a background task extends it over the parts that now follow
//! without a gap from part 1 (reading them back from the page cache, just written). Complete finishes the hash
//! over whatever the task has not reached, starting again from part 1 when the parts it names are not the ones
//! hashed (a part uploaded again, a gap, a subset, a server restarted mid-upload), and joins the part files into
//! the blob with a kernel-side copy (`Store::concat_blob`). It then stages one entry whose checksum is the
//! multipart ETag without `-N`: hex MD5 of the concatenated binary part MD5s (lakefs-api.md §5.2, §7.5). The
//! response's ETag keeps the `"<hex>-<N>"` form.

use std::collections::{BTreeMap, HashMap};
use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::body::{self, request_body};
use super::chunked::ByteStream;
use super::error::{S3Error, S3ErrorCode, S3Result};
use super::object::{content_type, parse_range, request_metadata, stat_copy_source, write_precondition, ByteRange};
use super::xml::{self, format_timestamp, XmlWriter};
use super::{check_writable, etag, unix_now, xml_response, Ctx};
use crate::server::store::ObjectEntry;

const MAX_PART_NUMBER: u32 = 10_000;
const MAX_COMPLETE_BODY: usize = 4 << 20;
const UPLOAD_RECORD: &str = "upload.json";

#[derive(Clone, Debug, Serialize, Deserialize)]
struct UploadRecord {
    upload_id: String,
    repository: String,
    branch: String,
    path: String,
    content_type: String,
    metadata: BTreeMap<String, String>,
    initiated: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct PartRecord {
    part_number: u32,
    /// Lowercase hex MD5 of the part: its ETag.
    md5: String,
    size: u64,
    last_modified: i64,
    /// Name of the data file in the upload directory. Each upload of a part gets a fresh one, so a record always
    /// describes exactly its own bytes even when the same part number is uploaded twice concurrently.
    data_file: String,
}

/// Chunk size for streaming part files (and the write buffer of a part): large, because every tokio file
/// operation is a hop to the blocking pool.
const PART_READ_CHUNK: usize = 1 << 20;

fn new_upload_id() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

fn valid_upload_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn no_such_upload() -> S3Error {
    S3Error::new(S3ErrorCode::NoSuchUpload)
}

fn part_record_name(part_number: u32) -> String {
    format!("part-{part_number:05}.json")
}

/// A part's data file name is ours, but records are read back from disk: accept only the shape we write.
fn valid_data_file(name: &str) -> bool {
    name.starts_with("part-")
        && name.ends_with(".data")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !name.contains("..")
}

/// Writes `bytes` to `path` atomically: temp file in the same directory, fsync, rename.
async fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temp = path.with_extension(format!("tmp-{}", hex::encode(rand::random::<[u8; 8]>())));
    let result = async {
        let mut file = tokio::fs::File::create(&temp).await?;
        file.write_all(bytes).await?;
        file.sync_all().await?;
        tokio::fs::rename(&temp, path).await
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&temp).await;
    }
    result
}

/// The current upload of a request: its directory and record, checked against the request's key.
struct Upload {
    dir: PathBuf,
    record: UploadRecord,
}

async fn load_upload(ctx: &Ctx) -> S3Result<Upload> {
    let id = ctx.query("uploadId").unwrap_or_default();
    if !valid_upload_id(id) {
        return Err(no_such_upload());
    }
    let dir = ctx.store().multipart_dir().join(id);
    let bytes = match tokio::fs::read(dir.join(UPLOAD_RECORD)).await {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(no_such_upload()),
        Err(e) => return Err(S3Error::internal(e)),
    };
    let record: UploadRecord = serde_json::from_slice(&bytes).map_err(S3Error::internal)?;
    if record.repository != ctx.bucket() || record.branch != ctx.reference() || record.path != ctx.path() {
        return Err(no_such_upload());
    }
    Ok(Upload { dir, record })
}

async fn read_parts(dir: &Path) -> S3Result<BTreeMap<u32, PartRecord>> {
    let mut parts = BTreeMap::new();
    let mut entries = tokio::fs::read_dir(dir).await.map_err(S3Error::internal)?;
    while let Some(entry) = entries.next_entry().await.map_err(S3Error::internal)? {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !(name.starts_with("part-") && name.ends_with(".json")) {
            continue;
        }
        let bytes = match tokio::fs::read(entry.path()).await {
            Ok(bytes) => bytes,
            // Replaced or aborted concurrently.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(S3Error::internal(e)),
        };
        let part: PartRecord = serde_json::from_slice(&bytes).map_err(S3Error::internal)?;
        if !valid_data_file(&part.data_file) {
            return Err(S3Error::internal(format!("corrupt part record {name}")));
        }
        parts.insert(part.part_number, part);
    }
    Ok(parts)
}

/// The running SHA-256 of every in-progress upload, by upload directory. An entry lives from the first stored
/// part to Complete or Abort (an abandoned upload leaves one small entry until the server restarts).
#[derive(Debug, Default)]
pub struct RunningHashes(Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<RunningHash>>>>);

impl RunningHashes {
    fn of(&self, dir: &Path) -> Arc<tokio::sync::Mutex<RunningHash>> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(dir.to_path_buf()).or_default().clone()
    }

    fn forget(&self, dir: &Path) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(dir);
    }
}

/// SHA-256 over the data files of parts 1, 2, ... in order.
#[derive(Debug, Default)]
struct RunningHash {
    sha256: Sha256,
    /// Data files hashed so far, in order (part `i + 1` is `data_files[i]`).
    data_files: Vec<String>,
    size: u64,
}

impl RunningHash {
    /// Extends the hash over `data_file` (read on the blocking pool). On error the hash is reset, so that it
    /// never covers a partial part.
    async fn extend(&mut self, dir: &Path, data_file: &str) -> std::io::Result<()> {
        let path = dir.join(data_file);
        let mut sha256 = std::mem::take(&mut self.sha256);
        let read = tokio::task::spawn_blocking(move || -> std::io::Result<(Sha256, u64)> {
            use std::io::Read;
            let mut file = std::fs::File::open(path)?;
            let mut buffer = vec![0; PART_READ_CHUNK];
            let mut size = 0u64;
            loop {
                let n = file.read(&mut buffer)?;
                if n == 0 {
                    return Ok((sha256, size));
                }
                sha256.update(&buffer[..n]);
                size += n as u64;
            }
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r);
        match read {
            Ok((sha256, size)) => {
                self.sha256 = sha256;
                self.size += size;
                self.data_files.push(data_file.to_string());
                Ok(())
            }
            Err(e) => {
                *self = Self::default();
                Err(e)
            }
        }
    }
}

/// Extends `upload`'s running hash over the parts now stored without a gap after it. Runs in the background
/// after UploadPart; when another extension (or Complete) holds the hash, that one picks the new part up.
fn extend_running_hash(ctx: &Ctx, dir: PathBuf) {
    let running = ctx.state.multipart_hashes.of(&dir);
    tokio::spawn(async move {
        let Ok(mut hash) = running.try_lock() else {
            return;
        };
        loop {
            let Ok(next) = u32::try_from(hash.data_files.len() + 1) else {
                return;
            };
            let Ok(bytes) = tokio::fs::read(dir.join(part_record_name(next))).await else {
                return;
            };
            let Ok(record) = serde_json::from_slice::<PartRecord>(&bytes) else {
                return;
            };
            if !valid_data_file(&record.data_file) || hash.extend(&dir, &record.data_file).await.is_err() {
                return;
            }
        }
    });
}

pub async fn create(ctx: &Ctx) -> S3Result<Response> {
    let metadata = request_metadata(&ctx.headers)?;
    ctx.require_branch().await?;
    let record = UploadRecord {
        upload_id: new_upload_id(),
        repository: ctx.bucket().to_string(),
        branch: ctx.reference().to_string(),
        path: ctx.path().to_string(),
        content_type: content_type(ctx),
        metadata,
        initiated: unix_now(),
    };
    let dir = ctx.store().multipart_dir().join(&record.upload_id);
    tokio::fs::create_dir_all(&dir).await.map_err(S3Error::internal)?;
    let json = serde_json::to_vec(&record).map_err(S3Error::internal)?;
    write_atomically(&dir.join(UPLOAD_RECORD), &json)
        .await
        .map_err(S3Error::internal)?;
    let mut xml = XmlWriter::new();
    xml.root("InitiateMultipartUploadResult");
    xml.element("Bucket", ctx.bucket());
    xml.element("Key", &ctx.full_key());
    xml.element("UploadId", &record.upload_id);
    xml.close("InitiateMultipartUploadResult");
    Ok(xml_response(xml.finish()))
}

fn part_number(ctx: &Ctx) -> S3Result<u32> {
    ctx.query("partNumber")
        .and_then(|n| n.parse::<u32>().ok())
        .filter(|n| (1..=MAX_PART_NUMBER).contains(n))
        .ok_or_else(|| {
            S3Error::with_message(
                S3ErrorCode::InvalidArgument,
                "Part number must be an integer between 1 and 10000, inclusive",
            )
        })
}

/// A part streamed to a temporary file, not yet visible.
struct WrittenPart {
    record: PartRecord,
    sha256: String,
    temp: PathBuf,
}

/// Streams `data` into a temporary part file, hashing as it goes (SHA-256 only when something must be checked
/// against it: parts are not content-addressed, so it is otherwise wasted work).
async fn write_part(upload: &Upload, number: u32, mut data: ByteStream, with_sha256: bool) -> S3Result<WrittenPart> {
    let stem = format!("part-{number:05}-{}", hex::encode(rand::random::<[u8; 8]>()));
    let temp = upload.dir.join(format!("{stem}.tmp"));
    let result: S3Result<(PartRecord, String)> = async {
        let file = tokio::fs::File::create(&temp).await.map_err(S3Error::internal)?;
        let mut file = tokio::io::BufWriter::with_capacity(PART_READ_CHUNK, file);
        let (mut md5, mut sha256, mut size) = (Md5::new(), with_sha256.then(Sha256::new), 0u64);
        while let Some(piece) = data.next().await {
            let piece = piece.map_err(|_| S3Error::new(S3ErrorCode::IncompleteBody))?;
            md5.update(&piece);
            if let Some(sha256) = &mut sha256 {
                sha256.update(&piece);
            }
            size += piece.len() as u64;
            file.write_all(&piece).await.map_err(S3Error::internal)?;
        }
        file.flush().await.map_err(S3Error::internal)?;
        file.get_ref().sync_all().await.map_err(S3Error::internal)?;
        let record = PartRecord {
            part_number: number,
            md5: hex::encode(md5.finalize()),
            size,
            last_modified: unix_now(),
            data_file: format!("{stem}.data"),
        };
        Ok((record, sha256.map(|h| hex::encode(h.finalize())).unwrap_or_default()))
    }
    .await;
    match result {
        Ok((record, sha256)) => Ok(WrittenPart { record, sha256, temp }),
        Err(e) => {
            let _ = tokio::fs::remove_file(&temp).await;
            Err(e)
        }
    }
}

/// Makes a verified part visible: its data file first, then the record pointing at it. A data file the record
/// replaced is removed; one lost to a concurrent upload of the same part goes with the upload directory.
async fn commit_part(upload: &Upload, part: &WrittenPart) -> S3Result<()> {
    let record_path = upload.dir.join(part_record_name(part.record.part_number));
    let previous: Option<PartRecord> = tokio::fs::read(&record_path)
        .await
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    tokio::fs::rename(&part.temp, upload.dir.join(&part.record.data_file))
        .await
        .map_err(S3Error::internal)?;
    let json = serde_json::to_vec(&part.record).map_err(S3Error::internal)?;
    write_atomically(&record_path, &json).await.map_err(S3Error::internal)?;
    if let Some(previous) = previous.filter(|p| valid_data_file(&p.data_file) && p.data_file != part.record.data_file) {
        let _ = tokio::fs::remove_file(upload.dir.join(previous.data_file)).await;
    }
    Ok(())
}

pub async fn upload_part(ctx: &Ctx, body: Body) -> S3Result<Response> {
    let number = part_number(ctx)?;
    let upload = load_upload(ctx).await?;
    let (stream, check) = request_body(body, &ctx.headers, &ctx.payload)?;
    let part = write_part(&upload, number, stream, check.needs_sha256())
        .await
        .map_err(|e| check.body_error().unwrap_or(e))?;
    if let Err(e) = check.verify(&part.sha256, &part.record.md5) {
        let _ = tokio::fs::remove_file(&part.temp).await;
        return Err(e);
    }
    commit_part(&upload, &part).await?;
    extend_running_hash(ctx, upload.dir.clone());
    let mut response = StatusCode::OK.into_response();
    if let Ok(value) = HeaderValue::from_str(&etag(&part.record.md5)) {
        response.headers_mut().insert(header::ETAG, value);
    }
    Ok(response)
}

pub async fn upload_part_copy(ctx: &Ctx) -> S3Result<Response> {
    let number = part_number(ctx)?;
    let upload = load_upload(ctx).await?;
    let source = stat_copy_source(ctx).await?;
    // An invalid range silently copies the whole source (lakefs-api.md §7.2).
    let (start, length) = match parse_range(ctx.header("x-amz-copy-source-range"), source.size) {
        ByteRange::Partial { start, end } => (start, end - start + 1),
        ByteRange::Full | ByteRange::Unsatisfiable => (0, source.size),
    };
    let mut file = tokio::fs::File::open(ctx.store().blob_path(&source.blob))
        .await
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                S3Error::new(S3ErrorCode::NoSuchVersion)
            } else {
                S3Error::internal(e)
            }
        })?;
    file.seek(SeekFrom::Start(start)).await.map_err(S3Error::internal)?;
    let stream: ByteStream = Box::pin(tokio_util::io::ReaderStream::with_capacity(
        file.take(length),
        PART_READ_CHUNK,
    ));
    let part = write_part(&upload, number, stream, false).await?;
    commit_part(&upload, &part).await?;
    extend_running_hash(ctx, upload.dir.clone());
    let mut xml = XmlWriter::new();
    xml.root("CopyPartResult");
    xml.element("LastModified", &format_timestamp(part.record.last_modified));
    xml.element("ETag", &etag(&part.record.md5));
    xml.close("CopyPartResult");
    Ok(xml_response(xml.finish()))
}

/// The multipart checksum: hex MD5 of the concatenated binary MD5s of the parts.
fn multipart_checksum(part_md5s: &[&str]) -> S3Result<String> {
    let mut md5 = Md5::new();
    for part in part_md5s {
        md5.update(hex::decode(part).map_err(S3Error::internal)?);
    }
    Ok(hex::encode(md5.finalize()))
}

pub async fn complete(ctx: &Ctx, body: Body) -> S3Result<Response> {
    let if_none_match = write_precondition(ctx)?;
    let upload = load_upload(ctx).await?;
    let body = body::collect(body, &ctx.headers, &ctx.payload, MAX_COMPLETE_BODY).await?;
    let request: xml::CompleteMultipartUpload = xml::parse(&body)?;
    if request.parts.is_empty() {
        return Err(S3Error::with_message(S3ErrorCode::MalformedXML, "no parts given"));
    }
    if request.parts.windows(2).any(|w| w[0].part_number >= w[1].part_number) {
        return Err(S3Error::new(S3ErrorCode::InvalidPartOrder));
    }
    let stored = read_parts(&upload.dir).await?;
    let mut chosen = Vec::with_capacity(request.parts.len());
    for part in &request.parts {
        let record = stored
            .get(&part.part_number)
            .ok_or_else(|| S3Error::new(S3ErrorCode::InvalidPart))?;
        let claimed = part.etag.trim().trim_matches('"').to_ascii_lowercase();
        if !claimed.is_empty() && claimed != record.md5 {
            return Err(S3Error::new(S3ErrorCode::InvalidPart));
        }
        chosen.push(record.clone());
    }
    let md5s: Vec<&str> = chosen.iter().map(|p| p.md5.as_str()).collect();
    let checksum = multipart_checksum(&md5s)?;
    let expected_size: u64 = chosen.iter().map(|p| p.size).sum();

    let sha256 = {
        // Held until the hash is final: no background extension runs meanwhile.
        let running = ctx.state.multipart_hashes.of(&upload.dir);
        let mut hash = running.lock().await;
        let wanted: Vec<&str> = chosen.iter().map(|p| p.data_file.as_str()).collect();
        let hashed_prefix = hash.data_files.len() <= wanted.len()
            && hash.data_files.iter().zip(&wanted).all(|(hashed, want)| hashed == want);
        if !hashed_prefix {
            *hash = RunningHash::default();
        }
        for data_file in &wanted[hash.data_files.len()..] {
            hash.extend(&upload.dir, data_file).await.map_err(S3Error::internal)?;
        }
        if hash.size != expected_size {
            return Err(S3Error::internal(format!(
                "multipart parts changed while completing: {} != {expected_size}",
                hash.size
            )));
        }
        hex::encode(hash.sha256.clone().finalize())
    };
    let paths: Vec<PathBuf> = chosen.iter().map(|p| upload.dir.join(&p.data_file)).collect();
    let size = ctx
        .store()
        .concat_blob(paths, sha256.clone())
        .await
        .map_err(S3Error::from_write)?;
    if size != expected_size {
        return Err(S3Error::internal(format!(
            "multipart parts changed while completing: {size} != {expected_size}"
        )));
    }
    let entry = ObjectEntry {
        blob: sha256,
        checksum: checksum.clone(),
        size,
        mtime: unix_now(),
        content_type: upload.record.content_type.clone(),
        metadata: upload.record.metadata.clone(),
    };
    let (repo, branch, path) = (
        upload.record.repository.clone(),
        upload.record.branch.clone(),
        upload.record.path.clone(),
    );
    ctx.blocking(move |s| {
        check_writable(s, &repo, &branch)?;
        s.put_object(&repo, &branch, &path, entry, if_none_match)
    })
    .await
    .map_err(|e| S3Error::from_write(e).bucket(ctx.bucket()).key(&ctx.full_key()))?;
    ctx.state.multipart_hashes.forget(&upload.dir);
    if let Err(e) = tokio::fs::remove_dir_all(&upload.dir).await {
        tracing::warn!(error = %e, dir = %upload.dir.display(), "could not remove completed multipart upload");
    }
    let mut xml = XmlWriter::new();
    xml.root("CompleteMultipartUploadResult");
    xml.element("Location", &format!("/{}/{}", ctx.bucket(), ctx.full_key()));
    xml.element("Bucket", ctx.bucket());
    xml.element("Key", &ctx.full_key());
    xml.element("ETag", &etag(&format!("{checksum}-{}", chosen.len())));
    xml.close("CompleteMultipartUploadResult");
    Ok(xml_response(xml.finish()))
}

pub async fn abort(ctx: &Ctx) -> S3Result<Response> {
    let upload = load_upload(ctx).await?;
    ctx.state.multipart_hashes.forget(&upload.dir);
    tokio::fs::remove_dir_all(&upload.dir)
        .await
        .map_err(S3Error::internal)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn list_parts(ctx: &Ctx) -> S3Result<Response> {
    let upload = load_upload(ctx).await?;
    let marker: u32 = ctx
        .query("part-number-marker")
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    let max_parts: usize = ctx
        .query("max-parts")
        .and_then(|m| m.parse().ok())
        .filter(|m| *m > 0)
        .unwrap_or(1000)
        .min(1000);
    let parts = read_parts(&upload.dir).await?;
    let mut selected = parts.range(marker.saturating_add(1)..).map(|(_, p)| p);
    let page: Vec<&PartRecord> = selected.by_ref().take(max_parts).collect();
    let truncated = selected.next().is_some();
    let mut xml = XmlWriter::new();
    xml.root("ListPartsResult");
    xml.element("Bucket", ctx.bucket());
    xml.element("Key", &ctx.full_key());
    xml.element("UploadId", &upload.record.upload_id);
    xml.element("PartNumberMarker", &marker.to_string());
    if let Some(last) = page.last() {
        xml.element("NextPartNumberMarker", &last.part_number.to_string());
    }
    xml.element("MaxParts", &max_parts.to_string());
    xml.element("IsTruncated", if truncated { "true" } else { "false" });
    xml.element("StorageClass", "STANDARD");
    for part in page {
        xml.open("Part");
        xml.element("PartNumber", &part.part_number.to_string());
        xml.element("LastModified", &format_timestamp(part.last_modified));
        xml.element("ETag", &etag(&part.md5));
        xml.element("Size", &part.size.to_string());
        xml.close("Part");
    }
    xml.close("ListPartsResult");
    Ok(xml_response(xml.finish()))
}

pub async fn list_uploads(ctx: &Ctx) -> S3Result<Response> {
    if ["prefix", "delimiter", "encoding-type"]
        .iter()
        .any(|p| ctx.query(p).is_some_and(|v| !v.is_empty()))
    {
        return Err(S3Error::with_message(
            S3ErrorCode::NotImplemented,
            "prefix, delimiter and encoding-type are not supported",
        ));
    }
    let root = ctx.store().multipart_dir();
    let mut uploads = Vec::new();
    match tokio::fs::read_dir(&root).await {
        Ok(mut entries) => {
            while let Some(entry) = entries.next_entry().await.map_err(S3Error::internal)? {
                let Ok(bytes) = tokio::fs::read(entry.path().join(UPLOAD_RECORD)).await else {
                    continue;
                };
                let Ok(record) = serde_json::from_slice::<UploadRecord>(&bytes) else {
                    continue;
                };
                if record.repository == ctx.bucket() {
                    uploads.push(record);
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(S3Error::internal(e)),
    }
    uploads.sort_by(|a, b| (&a.branch, &a.path, a.initiated).cmp(&(&b.branch, &b.path, b.initiated)));
    let mut xml = XmlWriter::new();
    xml.root("ListMultipartUploadsResult");
    xml.element("Bucket", ctx.bucket());
    xml.element("KeyMarker", "");
    xml.element("UploadIdMarker", "");
    xml.element("MaxUploads", "1000");
    xml.element("IsTruncated", "false");
    for upload in &uploads {
        xml.open("Upload");
        xml.element("Key", &format!("{}/{}", upload.branch, upload.path));
        xml.element("UploadId", &upload.upload_id);
        xml.element("Initiated", &format_timestamp(upload.initiated));
        xml.element("StorageClass", "STANDARD");
        xml.close("Upload");
    }
    xml.close("ListMultipartUploadsResult");
    Ok(xml_response(xml.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_ids_are_validated() {
        let id = new_upload_id();
        assert!(valid_upload_id(&id));
        assert!(!valid_upload_id("../../etc"));
        assert!(!valid_upload_id(&id.to_uppercase()));
        assert!(!valid_upload_id(&id[1..]));
    }

    #[test]
    fn multipart_checksum_matches_s3() {
        // Two parts "a" and "b": md5(md5("a") || md5("b")).
        let a = hex::encode(Md5::digest(b"a"));
        let b = hex::encode(Md5::digest(b"b"));
        let mut concat = Md5::digest(b"a").to_vec();
        concat.extend_from_slice(&Md5::digest(b"b"));
        assert_eq!(
            multipart_checksum(&[&a, &b]).unwrap(),
            hex::encode(Md5::digest(&concat))
        );
    }
}
