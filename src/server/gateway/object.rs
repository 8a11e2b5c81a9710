//! Object operations: HeadObject/GetObject (with Range), PutObject, CopyObject, DeleteObject, DeleteObjects and
//! GetObjectTagging (lakefs-api.md §7.2, §7.4).
//!
//! Data is always streamed: GET reads the blob file from the requested offset, PUT streams the body into
//! `Store::write_blob`. A copy never touches data - blobs are content-addressed, so the copy is a new entry
//! pointing at the same blob with a fresh mtime.
//!
//! User metadata travels as `x-amz-meta-<name>` headers and is stored under `X-Amz-Meta-<lowercased name>`, the
//! prefix included, so REST clients see exactly what lakeFS shows; on reads only keys with that prefix are sent
//! back. Values outside printable ASCII are RFC 2047-encoded on the way out and decoded on the way in.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use percent_encoding::percent_decode_str;

use super::body::{self, request_body};
use super::error::{S3Error, S3ErrorCode, S3Result};
use super::xml::{self, format_timestamp, XmlWriter};
use super::{check_writable, etag, unix_now, xml_response, Ctx};
use crate::server::store::{ObjectEntry, RefView, StoreError};

pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";
/// lakeFS's limit on the total size of user metadata names and values.
const MAX_METADATA_BYTES: usize = 2048;
const STORED_META_PREFIX: &str = "X-Amz-Meta-";
const HEADER_META_PREFIX: &str = "x-amz-meta-";
/// Largest DeleteObjects request body accepted.
const MAX_DELETE_BODY: usize = 2 << 20;
const MAX_DELETE_KEYS: usize = 1000;

/// A single byte range resolved against an object size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteRange {
    /// No (usable) Range header: the whole object.
    Full,
    /// Inclusive bounds.
    Partial {
        start: u64,
        end: u64,
    },
    Unsatisfiable,
}

/// Parses `bytes=a-b`, `bytes=a-` or `bytes=-n`; anything malformed (or several ranges) means the whole object.
pub fn parse_range(value: Option<&str>, size: u64) -> ByteRange {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return ByteRange::Full;
    };
    if spec.contains(',') {
        return ByteRange::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return ByteRange::Full;
    };
    let parse = |s: &str| s.trim().parse::<u64>().ok();
    match (first.trim().is_empty(), last.trim().is_empty()) {
        (true, true) => ByteRange::Full,
        (true, false) => match parse(last) {
            None => ByteRange::Full,
            Some(0) => ByteRange::Unsatisfiable,
            Some(_) if size == 0 => ByteRange::Unsatisfiable,
            Some(n) => ByteRange::Partial {
                start: size.saturating_sub(n),
                end: size - 1,
            },
        },
        (false, true) => match parse(first) {
            None => ByteRange::Full,
            Some(start) if start >= size => ByteRange::Unsatisfiable,
            Some(start) => ByteRange::Partial { start, end: size - 1 },
        },
        (false, false) => match (parse(first), parse(last)) {
            (Some(start), Some(end)) if start <= end => {
                if start >= size {
                    ByteRange::Unsatisfiable
                } else {
                    ByteRange::Partial {
                        start,
                        end: end.min(size - 1),
                    }
                }
            }
            _ => ByteRange::Full,
        },
    }
}

/// Collects `x-amz-meta-*` request headers into stored metadata keys, enforcing the 2 KB limit.
pub fn request_metadata(headers: &HeaderMap) -> S3Result<BTreeMap<String, String>> {
    let mut metadata = BTreeMap::new();
    let mut total = 0usize;
    for (name, value) in headers {
        let Some(rest) = name.as_str().strip_prefix(HEADER_META_PREFIX) else {
            continue;
        };
        if rest.is_empty() {
            continue;
        }
        let value = decode_rfc2047(&String::from_utf8_lossy(value.as_bytes()));
        total += rest.len() + value.len();
        if total > MAX_METADATA_BYTES {
            return Err(S3Error::new(S3ErrorCode::MetadataTooLarge));
        }
        let key = format!("{STORED_META_PREFIX}{}", rest.to_ascii_lowercase());
        metadata
            .entry(key)
            .and_modify(|existing: &mut String| {
                existing.push(',');
                existing.push_str(&value);
            })
            .or_insert(value);
    }
    Ok(metadata)
}

/// Adds `x-amz-meta-*` headers for the S3-visible metadata keys; counts the ones that cannot be sent.
fn add_metadata_headers(headers: &mut HeaderMap, metadata: &BTreeMap<String, String>) {
    let mut missing = 0usize;
    for (key, value) in metadata {
        let Some(rest) = key
            .get(..STORED_META_PREFIX.len())
            .filter(|p| p.eq_ignore_ascii_case(STORED_META_PREFIX))
        else {
            continue;
        };
        let name = format!("{HEADER_META_PREFIX}{}", key[rest.len()..].to_ascii_lowercase());
        let value = encode_rfc2047(value);
        match (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(&value)) {
            (Ok(name), Ok(value)) => {
                headers.insert(name, value);
            }
            _ => missing += 1,
        }
    }
    if missing > 0 {
        headers.insert("x-amz-missing-meta", HeaderValue::from(missing));
    }
}

fn encode_rfc2047(value: &str) -> String {
    if value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        value.to_string()
    } else {
        format!(
            "=?UTF-8?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(value)
        )
    }
}

/// Decodes a value that is entirely one RFC 2047 encoded word (`=?charset?B|Q?text?=`); other values pass as is.
fn decode_rfc2047(value: &str) -> String {
    let decoded = (|| {
        let inner = value.trim().strip_prefix("=?")?.strip_suffix("?=")?;
        let mut parts = inner.splitn(3, '?');
        let charset = parts.next()?;
        let encoding = parts.next()?;
        let text = parts.next()?;
        if !charset.eq_ignore_ascii_case("utf-8") && !charset.eq_ignore_ascii_case("us-ascii") {
            return None;
        }
        let bytes = match encoding {
            "B" | "b" => base64::engine::general_purpose::STANDARD.decode(text).ok()?,
            "Q" | "q" => {
                let underscored = text.replace('_', " ");
                percent_decode_str(&underscored.replace('=', "%")).collect()
            }
            _ => return None,
        };
        String::from_utf8(bytes).ok()
    })();
    decoded.unwrap_or_else(|| value.to_string())
}

fn http_date(unix_seconds: i64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_seconds.max(0) as u64);
    httpdate::fmt_http_date(time)
}

fn etag_matches(condition: &str, checksum: &str) -> bool {
    condition
        .split(',')
        .map(str::trim)
        .any(|c| c == "*" || c.trim_matches('"') == checksum)
}

pub async fn get_object(ctx: &Ctx, head: bool) -> S3Result<Response> {
    let (repo, reference, path) = (
        ctx.bucket().to_string(),
        ctx.reference().to_string(),
        ctx.path().to_string(),
    );
    let entry = ctx
        .blocking(move |s| s.stat_object(&repo, &reference, &path))
        .await
        .map_err(|e| S3Error::from_read(e).bucket(ctx.bucket()).key(&ctx.full_key()))?;

    if let Some(condition) = ctx.header("if-match") {
        if !etag_matches(condition, &entry.checksum) {
            return Err(S3Error::new(S3ErrorCode::PreconditionFailed));
        }
    }
    if let Some(condition) = ctx.header("if-none-match") {
        if etag_matches(condition, &entry.checksum) {
            let mut response = StatusCode::NOT_MODIFIED.into_response();
            if let Ok(value) = HeaderValue::from_str(&etag(&entry.checksum)) {
                response.headers_mut().insert(header::ETAG, value);
            }
            return Ok(response);
        }
    }

    let range = parse_range(ctx.header("range"), entry.size);
    let (status, start, length) = match range {
        ByteRange::Full => (StatusCode::OK, 0, entry.size),
        ByteRange::Partial { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        ByteRange::Unsatisfiable => {
            let mut response = if head {
                StatusCode::RANGE_NOT_SATISFIABLE.into_response()
            } else {
                return Err(S3Error::new(S3ErrorCode::InvalidRange));
            };
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{}", entry.size)) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            return Ok(response);
        }
    };

    let body = if head || length == 0 {
        Body::empty()
    } else {
        match ctx.store().read_blob_range(&entry.blob, start, length).await {
            Ok(chunks) => Body::from_stream(chunks),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(S3Error::new(S3ErrorCode::NoSuchVersion).key(&ctx.full_key()))
            }
            Err(e) => return Err(S3Error::internal(e)),
        }
    };

    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&entry.content_type).unwrap_or(HeaderValue::from_static(DEFAULT_CONTENT_TYPE)),
    );
    if let Ok(value) = HeaderValue::from_str(&etag(&entry.checksum)) {
        headers.insert(header::ETAG, value);
    }
    if let Ok(value) = HeaderValue::from_str(&http_date(entry.mtime)) {
        headers.insert(header::LAST_MODIFIED, value);
    }
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if status == StatusCode::PARTIAL_CONTENT {
        let value = format!("bytes {}-{}/{}", start, start + length - 1, entry.size);
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(header::CONTENT_RANGE, value);
        }
    }
    add_metadata_headers(headers, &entry.metadata);
    // `response-*` query parameters (used by presigned downloads) override response headers.
    for (parameter, name) in RESPONSE_OVERRIDES {
        if let Some(value) = ctx.query(parameter).and_then(|v| HeaderValue::from_str(v).ok()) {
            headers.insert(name.clone(), value);
        }
    }
    Ok(response)
}

const RESPONSE_OVERRIDES: [(&str, HeaderName); 6] = [
    ("response-content-type", header::CONTENT_TYPE),
    ("response-content-disposition", header::CONTENT_DISPOSITION),
    ("response-content-encoding", header::CONTENT_ENCODING),
    ("response-content-language", header::CONTENT_LANGUAGE),
    ("response-cache-control", header::CACHE_CONTROL),
    ("response-expires", header::EXPIRES),
];

/// `If-None-Match: *` asks for create-only; any other conditional write is not implemented (lakefs-api.md §7.4).
pub fn write_precondition(ctx: &Ctx) -> S3Result<bool> {
    if ctx.headers.contains_key("if-match") {
        return Err(S3Error::with_message(
            S3ErrorCode::NotImplemented,
            "If-Match is not supported on writes",
        ));
    }
    match ctx.header("if-none-match") {
        None => Ok(false),
        Some(v) if v.trim() == "*" => Ok(true),
        Some(_) => Err(S3Error::with_message(
            S3ErrorCode::NotImplemented,
            "only If-None-Match: * is supported",
        )),
    }
}

pub fn content_type(ctx: &Ctx) -> String {
    ctx.header("content-type")
        .filter(|v| !v.is_empty())
        .unwrap_or(DEFAULT_CONTENT_TYPE)
        .to_string()
}

fn etag_response(checksum: &str) -> Response {
    let mut response = StatusCode::OK.into_response();
    if let Ok(value) = HeaderValue::from_str(&etag(checksum)) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

pub async fn put_object(ctx: &Ctx, body: Body) -> S3Result<Response> {
    let if_none_match = write_precondition(ctx)?;
    let metadata = request_metadata(&ctx.headers)?;
    let content_type = content_type(ctx);
    ctx.require_branch().await?;
    let (stream, check) = request_body(body, &ctx.headers, &ctx.payload)?;
    let info = ctx.store().write_blob(stream).await.map_err(|e| check.write_error(e))?;
    check.verify_blob(&info)?;
    let entry = ObjectEntry {
        blob: info.id,
        checksum: info.md5,
        size: info.size,
        mtime: unix_now(),
        content_type,
        metadata,
    };
    let (repo, branch, path) = (
        ctx.bucket().to_string(),
        ctx.reference().to_string(),
        ctx.path().to_string(),
    );
    let stored = ctx
        .blocking(move |s| s.put_object(&repo, &branch, &path, entry, if_none_match))
        .await
        .map_err(|e| S3Error::from_write(e).bucket(ctx.bucket()).key(&ctx.full_key()))?;
    Ok(etag_response(&stored.checksum))
}

/// `repo/ref/key` of an `x-amz-copy-source` header (URL-encoded, leading `/` optional).
pub fn parse_copy_source(value: &str) -> S3Result<(String, String, String)> {
    let invalid = || S3Error::with_message(S3ErrorCode::InvalidArgument, "invalid x-amz-copy-source");
    if value.contains("?versionId=") {
        return Err(S3Error::with_message(
            S3ErrorCode::NotImplemented,
            "versionId is not supported",
        ));
    }
    let decoded = percent_decode_str(value.trim()).decode_utf8().map_err(|_| invalid())?;
    let decoded = decoded.strip_prefix('/').unwrap_or(&decoded);
    let (repo, rest) = decoded.split_once('/').ok_or_else(invalid)?;
    let (reference, key) = rest.split_once('/').ok_or_else(invalid)?;
    if repo.is_empty() || reference.is_empty() || key.is_empty() {
        return Err(invalid());
    }
    Ok((repo.to_string(), reference.to_string(), key.to_string()))
}

/// Stats a copy source; any kind of "not there" is `NoSuchKey`.
pub async fn stat_copy_source(ctx: &Ctx) -> S3Result<ObjectEntry> {
    let source = ctx.header("x-amz-copy-source").unwrap_or_default();
    let (repo, reference, key) = parse_copy_source(source)?;
    let shown = format!("{reference}/{key}");
    ctx.blocking(move |s| s.stat_object(&repo, &reference, &key))
        .await
        .map_err(|e| match e {
            StoreError::RepositoryNotFound
            | StoreError::BranchNotFound(_)
            | StoreError::RefNotFound(_)
            | StoreError::TagNotFound
            | StoreError::ObjectNotFound => S3Error::new(S3ErrorCode::NoSuchKey).key(&shown),
            StoreError::InvalidArgument(m) | StoreError::InvalidRef(m) => {
                S3Error::with_message(S3ErrorCode::InvalidRequest, m)
            }
            other => S3Error::from_read(other),
        })
}

pub async fn copy_object(ctx: &Ctx) -> S3Result<Response> {
    ctx.require_branch().await?;
    let source = stat_copy_source(ctx).await?;
    let (content_type, metadata) = match ctx.header("x-amz-metadata-directive").map(str::to_ascii_uppercase) {
        None => (source.content_type.clone(), source.metadata.clone()),
        Some(d) if d == "COPY" => (source.content_type.clone(), source.metadata.clone()),
        Some(d) if d == "REPLACE" => (content_type(ctx), request_metadata(&ctx.headers)?),
        Some(_) => {
            return Err(S3Error::with_message(
                S3ErrorCode::InvalidArgument,
                "invalid x-amz-metadata-directive",
            ))
        }
    };
    let mtime = unix_now();
    let entry = ObjectEntry {
        mtime,
        content_type,
        metadata,
        ..source
    };
    let (repo, branch, path) = (
        ctx.bucket().to_string(),
        ctx.reference().to_string(),
        ctx.path().to_string(),
    );
    let stored = ctx
        .blocking(move |s| s.put_object(&repo, &branch, &path, entry, false))
        .await
        .map_err(|e| S3Error::from_write(e).bucket(ctx.bucket()).key(&ctx.full_key()))?;
    let mut xml = XmlWriter::new();
    xml.root("CopyObjectResult");
    xml.element("LastModified", &format_timestamp(stored.mtime));
    xml.element("ETag", &etag(&stored.checksum));
    xml.close("CopyObjectResult");
    Ok(xml_response(xml.finish()))
}

pub async fn delete_object(ctx: &Ctx) -> S3Result<Response> {
    let (repo, reference, path) = (
        ctx.bucket().to_string(),
        ctx.reference().to_string(),
        ctx.path().to_string(),
    );
    let result = ctx
        .blocking(move |s| match s.resolve_ref(&repo, &reference)? {
            RefView::Branch { branch, .. } => {
                check_writable(s, &repo, &branch)?;
                s.delete_object(&repo, &branch, &path)
            }
            // Deleting through a tag or commit changes nothing, like a missing key.
            _ => Ok(()),
        })
        .await;
    match result {
        Ok(())
        | Err(StoreError::BranchNotFound(_))
        | Err(StoreError::RefNotFound(_))
        | Err(StoreError::TagNotFound)
        | Err(StoreError::ObjectNotFound) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(e) => Err(S3Error::from_write(e).bucket(ctx.bucket()).key(&ctx.full_key())),
    }
}

/// Outcome of one key of a DeleteObjects request.
enum DeleteOutcome {
    Deleted(String),
    Failed {
        key: String,
        code: &'static str,
        message: String,
    },
}

pub async fn delete_objects(ctx: &Ctx, body: Body) -> S3Result<Response> {
    let body = body::collect(body, &ctx.headers, &ctx.payload, MAX_DELETE_BODY).await?;
    let request: xml::DeleteRequest = xml::parse(&body)?;
    if request.objects.is_empty() || request.objects.len() > MAX_DELETE_KEYS {
        return Err(S3Error::with_message(
            S3ErrorCode::MalformedXML,
            "a delete request names 1 to 1000 keys",
        ));
    }
    // Group keys by ref, keeping first-seen order of refs.
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    let mut outcomes = Vec::new();
    for object in request.objects {
        match object.key.split_once('/') {
            Some((reference, path)) if !reference.is_empty() && !path.is_empty() => {
                match groups.iter_mut().find(|(r, _)| r == reference) {
                    Some((_, paths)) => paths.push(path.to_string()),
                    None => groups.push((reference.to_string(), vec![path.to_string()])),
                }
            }
            _ => outcomes.push(DeleteOutcome::Failed {
                key: object.key,
                code: S3ErrorCode::NoSuchKey.as_str(),
                message: "key does not name a ref and a path".to_string(),
            }),
        }
    }
    for (reference, paths) in groups {
        let repo = ctx.bucket().to_string();
        let (call_ref, call_paths) = (reference.clone(), paths.clone());
        let result = ctx
            .blocking(move |s| match s.resolve_ref(&repo, &call_ref)? {
                RefView::Branch { branch, .. } => {
                    check_writable(s, &repo, &branch)?;
                    s.delete_objects(&repo, &branch, &call_paths).map(Some)
                }
                _ => Ok(None),
            })
            .await;
        match result {
            Ok(Some(failures)) => {
                for path in paths {
                    let key = format!("{reference}/{path}");
                    match failures.iter().find(|(p, _)| *p == path) {
                        Some((_, e)) => outcomes.push(DeleteOutcome::Failed {
                            key,
                            code: S3ErrorCode::InternalError.as_str(),
                            message: e.to_string(),
                        }),
                        None => outcomes.push(DeleteOutcome::Deleted(key)),
                    }
                }
            }
            Ok(None) => outcomes.extend(paths.into_iter().map(|path| DeleteOutcome::Failed {
                key: format!("{reference}/{path}"),
                code: S3ErrorCode::InvalidRequest.as_str(),
                message: format!("{reference} is not a branch"),
            })),
            Err(StoreError::BranchNotFound(_) | StoreError::RefNotFound(_) | StoreError::TagNotFound) => outcomes
                .extend(
                    paths
                        .into_iter()
                        .map(|path| DeleteOutcome::Deleted(format!("{reference}/{path}"))),
                ),
            Err(StoreError::RepositoryNotFound) => {
                return Err(S3Error::new(S3ErrorCode::NoSuchBucket).bucket(ctx.bucket()))
            }
            Err(e) => {
                let error = S3Error::from_write(e);
                outcomes.extend(paths.into_iter().map(|path| DeleteOutcome::Failed {
                    key: format!("{reference}/{path}"),
                    code: error.code.as_str(),
                    message: error.message.clone(),
                }))
            }
        }
    }
    let mut xml = XmlWriter::new();
    xml.root("DeleteResult");
    for outcome in &outcomes {
        match outcome {
            DeleteOutcome::Deleted(key) => {
                if !request.quiet {
                    xml.open("Deleted");
                    xml.element("Key", key);
                    xml.close("Deleted");
                }
            }
            DeleteOutcome::Failed { key, code, message } => {
                xml.open("Error");
                xml.element("Key", key);
                xml.element("Code", code);
                xml.element("Message", message);
                xml.close("Error");
            }
        }
    }
    xml.close("DeleteResult");
    Ok(xml_response(xml.finish()))
}

pub async fn get_tagging(ctx: &Ctx) -> S3Result<Response> {
    let (repo, reference, path) = (
        ctx.bucket().to_string(),
        ctx.reference().to_string(),
        ctx.path().to_string(),
    );
    ctx.blocking(move |s| s.stat_object(&repo, &reference, &path))
        .await
        .map_err(|e| S3Error::from_read(e).bucket(ctx.bucket()).key(&ctx.full_key()))?;
    let mut xml = XmlWriter::new();
    xml.root("Tagging");
    xml.open("TagSet");
    xml.close("TagSet");
    xml.close("Tagging");
    Ok(xml_response(xml.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use ByteRange::*;
        assert_eq!(parse_range(None, 10), Full);
        assert_eq!(parse_range(Some("bytes=0-4"), 10), Partial { start: 0, end: 4 });
        assert_eq!(parse_range(Some("bytes=5-100"), 10), Partial { start: 5, end: 9 });
        assert_eq!(parse_range(Some("bytes=7-"), 10), Partial { start: 7, end: 9 });
        assert_eq!(parse_range(Some("bytes=-3"), 10), Partial { start: 7, end: 9 });
        assert_eq!(parse_range(Some("bytes=-30"), 10), Partial { start: 0, end: 9 });
        assert_eq!(parse_range(Some("bytes=10-"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=10-20"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 10), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-0"), 0), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=5-2"), 10), Full);
        assert_eq!(parse_range(Some("bytes=a-b"), 10), Full);
        assert_eq!(parse_range(Some("items=0-1"), 10), Full);
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), Full);
        assert_eq!(parse_range(Some("bytes=99999999999999999999999-"), 10), Full);
    }

    proptest::proptest! {
        /// Whatever the header says, a partial range lies inside the object.
        #[test]
        fn ranges_stay_inside_the_object(header in "\\PC{0,30}", a in 0u64..1000, b in 0u64..1000, size in 0u64..500) {
            for value in [header, format!("bytes={a}-{b}"), format!("bytes={a}-"), format!("bytes=-{b}")] {
                if let ByteRange::Partial { start, end } = parse_range(Some(&value), size) {
                    proptest::prop_assert!(start <= end && end < size, "{value} {size}");
                }
            }
        }

        #[test]
        fn copy_source_never_panics(value in "\\PC{0,60}") {
            let _ = parse_copy_source(&value);
        }
    }

    #[test]
    fn metadata_round_trip() {
        let mut headers = HeaderMap::new();
        headers.insert("x-amz-meta-Owner", "data-team".parse().unwrap());
        headers.insert("x-amz-meta-city", "=?UTF-8?B?WsO8cmljaA==?=".parse().unwrap());
        headers.insert("content-type", "text/plain".parse().unwrap());
        let metadata = request_metadata(&headers).unwrap();
        assert_eq!(metadata.get("X-Amz-Meta-owner").map(String::as_str), Some("data-team"));
        assert_eq!(metadata.get("X-Amz-Meta-city").map(String::as_str), Some("Zürich"));
        assert_eq!(metadata.len(), 2);

        let mut stored = metadata.clone();
        stored.insert("::lakefs::client-mtime".into(), "1".into());
        let mut out = HeaderMap::new();
        add_metadata_headers(&mut out, &stored);
        assert_eq!(out["x-amz-meta-owner"], "data-team");
        assert_eq!(decode_rfc2047(out["x-amz-meta-city"].to_str().unwrap()), "Zürich");
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn metadata_limit() {
        let mut headers = HeaderMap::new();
        headers.insert("x-amz-meta-big", "x".repeat(3000).parse().unwrap());
        assert_eq!(
            request_metadata(&headers).unwrap_err().code,
            S3ErrorCode::MetadataTooLarge
        );
    }

    #[test]
    fn copy_source_forms() {
        let expected = ("repo".to_string(), "main".to_string(), "a b/c".to_string());
        assert_eq!(parse_copy_source("repo/main/a%20b/c").unwrap(), expected);
        assert_eq!(parse_copy_source("/repo/main/a%20b/c").unwrap(), expected);
        assert!(parse_copy_source("repo/main").is_err());
        assert!(parse_copy_source("repo/main/k?versionId=1").is_err());
    }
}
