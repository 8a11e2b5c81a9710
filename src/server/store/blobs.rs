//! Content-addressed blob files: `DATA_DIR/blobs/<first two hex>/<sha256>`.
//!
//! A body is streamed into a fresh file under `DATA_DIR/tmp` while SHA-256 and MD5 are computed; the file is then
//! fsynced, renamed to its address and the directory fsynced, so once [`write_blob`] returns the blob is durable
//! and an object entry may refer to it. Identical content lands on the same address: the second copy just
//! replaces the first (same bytes). A crash mid-body leaves only a temp file, which [`sweep_tmp`] removes at open.
//!
//! Paths are built only from validated 64-hex blob ids, never from user keys, so no object name can reach the
//! filesystem.

use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use md5::Md5;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::{BlobInfo, StoreError};

pub(super) const BLOBS_DIR: &str = "blobs";
pub(super) const TMP_DIR: &str = "tmp";
pub(super) const MULTIPART_DIR: &str = "multipart";

/// True for a lowercase 64-hex SHA-256: the only strings that become blob paths.
pub(super) fn is_blob_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Path of blob `id` under `data_dir`. An invalid id maps to a path that cannot exist (`blobs/invalid`), so a
/// corrupt record reads as a missing blob instead of escaping the directory.
pub(super) fn blob_path(data_dir: &Path, id: &str) -> PathBuf {
    let blobs = data_dir.join(BLOBS_DIR);
    if is_blob_id(id) {
        blobs.join(&id[..2]).join(id)
    } else {
        blobs.join("invalid")
    }
}

/// Removes leftovers of interrupted writes.
pub(super) fn sweep_tmp(data_dir: &Path) -> io::Result<()> {
    let tmp = data_dir.join(TMP_DIR);
    for entry in std::fs::read_dir(&tmp)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Bytes read from a blob per step when streaming it to a client: each step is one `pread` on the blocking pool,
/// straight into the buffer that is then sent, so a download costs one copy out of the page cache and one into
/// the socket.
const READ_CHUNK: usize = 1 << 20;

/// `length` bytes of the blob file at `path` from `start`, as a stream of chunks (`NotFound` if it is missing).
pub async fn read_range(path: PathBuf, start: u64, length: u64) -> io::Result<impl Stream<Item = io::Result<Bytes>>> {
    let file = std::sync::Arc::new(tokio::task::spawn_blocking(move || std::fs::File::open(path)).await??);
    let end = start.saturating_add(length);
    Ok(futures::stream::try_unfold(start, move |at| {
        let file = file.clone();
        async move {
            if at >= end {
                return Ok(None);
            }
            let len = (end - at).min(READ_CHUNK as u64) as usize;
            let chunk = tokio::task::spawn_blocking(move || read_at(&file, at, len)).await??;
            let next = at + chunk.len() as u64;
            Ok(Some((chunk, next)))
        }
    }))
}

/// Exactly `len` bytes at `offset`, read into fresh memory without zeroing it first; end of file first is an
/// error, as a blob never shrinks under its entry.
fn read_at(file: &std::fs::File, offset: u64, len: usize) -> io::Result<Bytes> {
    use std::os::fd::AsRawFd;
    let mut buffer = Vec::<u8>::with_capacity(len);
    loop {
        let filled = buffer.len();
        let spare = buffer.spare_capacity_mut();
        if spare.is_empty() {
            return Ok(buffer.into());
        }
        // SAFETY: pread writes at most `spare.len()` bytes into the spare capacity, which is owned, writable memory;
        // exactly the bytes it reports written are then marked initialized.
        let read = unsafe {
            libc::pread(
                file.as_raw_fd(),
                spare.as_mut_ptr().cast(),
                spare.len(),
                (offset + filled as u64) as libc::off_t,
            )
        };
        if read > 0 {
            // SAFETY: pread initialized the first `read` bytes of the spare capacity.
            unsafe { buffer.set_len(filled + read as usize) };
        } else if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "blob shorter than its entry",
            ));
        } else {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Deletes the temp file unless the write completed (on error or when the future is dropped).
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Size of the write buffer between the request body and the blob file.
const WRITE_BUFFER: usize = 1 << 20;

pub(super) async fn write_blob<S>(data_dir: &Path, mut body: S) -> Result<BlobInfo, StoreError>
where
    S: Stream<Item = Result<Bytes, io::Error>> + Send + Unpin,
{
    let tmp_path = data_dir
        .join(TMP_DIR)
        .join(format!("{:032x}.part", rand::random::<u128>()));
    let mut guard = TempGuard(Some(tmp_path.clone()));
    let file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp_path)
        .await?;
    // Every tokio file write is a hop to the blocking pool: batch the body's small chunks into large writes.
    let mut file = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file);
    let mut sha = Sha256::new();
    let mut md5 = Md5::new();
    let mut size = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        sha.update(&chunk);
        md5.update(&chunk);
        size += chunk.len() as u64;
        file.write_all(&chunk).await?;
    }
    file.flush().await?;
    let file = file.into_inner();
    file.sync_all().await?;
    drop(file);
    let id = hex::encode(sha.finalize());
    let md5 = hex::encode(md5.finalize());

    let final_path = blob_path(data_dir, &id);
    let data_dir = data_dir.to_path_buf();
    tokio::task::spawn_blocking(move || -> io::Result<()> {
        let shard = final_path.parent().unwrap_or(&data_dir).to_path_buf();
        if !shard.exists() {
            std::fs::create_dir_all(&shard)?;
            fsync_dir(&data_dir.join(BLOBS_DIR))?;
        }
        std::fs::rename(&tmp_path, &final_path)?;
        fsync_dir(&shard)
    })
    .await
    .map_err(|e| StoreError::Internal(format!("blob writer task: {e}")))??;
    guard.0 = None;
    Ok(BlobInfo { id, md5, size })
}

/// Concatenates `parts` into blob `id`, whose SHA-256 the caller already computed (a multipart upload hashes its
/// parts as they arrive): a kernel-side copy (`copy_file_range` through `std::io::copy`), fsync, rename. The part
/// files must not change meanwhile (multipart part files are never rewritten). Returns the blob's size.
pub(super) fn concat_blob(data_dir: &Path, parts: &[PathBuf], id: &str) -> Result<u64, StoreError> {
    if !is_blob_id(id) {
        return Err(StoreError::Internal(format!("not a blob id: {id:?}")));
    }
    let tmp_path = data_dir
        .join(TMP_DIR)
        .join(format!("{:032x}.part", rand::random::<u128>()));
    let mut guard = TempGuard(Some(tmp_path.clone()));
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp_path)?;
    let mut size = 0;
    for part in parts {
        size += io::copy(&mut std::fs::File::open(part)?, &mut out)?;
    }
    out.sync_all()?;
    drop(out);
    let final_path = blob_path(data_dir, id);
    let shard = final_path.parent().unwrap_or(data_dir).to_path_buf();
    if !shard.exists() {
        std::fs::create_dir_all(&shard)?;
        fsync_dir(&data_dir.join(BLOBS_DIR))?;
    }
    std::fs::rename(&tmp_path, &final_path)?;
    fsync_dir(&shard)?;
    guard.0 = None;
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lowercase_sha256_hex_is_a_blob_id() {
        assert!(is_blob_id(&"a".repeat(64)));
        assert!(!is_blob_id(&"A".repeat(64)));
        assert!(!is_blob_id(&"a".repeat(63)));
        assert!(!is_blob_id("../../etc/passwd"));
        let dir = Path::new("/data");
        assert_eq!(blob_path(dir, "../x"), PathBuf::from("/data/blobs/invalid"));
        assert_eq!(
            blob_path(dir, &"ab".repeat(32)),
            PathBuf::from(format!("/data/blobs/ab/{}", "ab".repeat(32)))
        );
    }

    #[tokio::test]
    async fn write_blob_hashes_and_stores_the_body() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(TMP_DIR)).unwrap();
        std::fs::create_dir_all(dir.path().join(BLOBS_DIR)).unwrap();
        let chunks = vec![Ok(Bytes::from_static(b"hello ")), Ok(Bytes::from_static(b"world"))];
        let info = write_blob(dir.path(), futures::stream::iter(chunks)).await.unwrap();
        assert_eq!(info.size, 11);
        assert_eq!(info.md5, "5eb63bbbe01eeed093cb22bb8f5acdc3");
        assert_eq!(
            info.id,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!(std::fs::read(blob_path(dir.path(), &info.id)).unwrap(), b"hello world");
        assert_eq!(std::fs::read_dir(dir.path().join(TMP_DIR)).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn failed_body_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(TMP_DIR)).unwrap();
        let chunks = vec![
            Ok(Bytes::from_static(b"partial")),
            Err(io::Error::other("client went away")),
        ];
        assert!(write_blob(dir.path(), futures::stream::iter(chunks)).await.is_err());
        assert_eq!(std::fs::read_dir(dir.path().join(TMP_DIR)).unwrap().count(), 0);
    }

    #[test]
    fn concat_blob_joins_parts_under_the_given_address() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(TMP_DIR)).unwrap();
        std::fs::create_dir_all(dir.path().join(BLOBS_DIR)).unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"hello ").unwrap();
        std::fs::write(&b, b"world").unwrap();
        let id = hex::encode(Sha256::digest(b"hello world"));
        assert_eq!(concat_blob(dir.path(), &[a, b], &id).unwrap(), 11);
        assert_eq!(std::fs::read(blob_path(dir.path(), &id)).unwrap(), b"hello world");
        assert_eq!(std::fs::read_dir(dir.path().join(TMP_DIR)).unwrap().count(), 0);
        assert!(concat_blob(dir.path(), &[], "../escape").is_err());
    }
}
