//! Objects (lakefs-api.md §4.5): list, stat, download (with one `Range`), upload, delete, bulk delete, copy and
//! user-metadata updates.
//!
//! Bodies are streamed both ways: an upload goes straight from the socket (or the multipart `content` part) into
//! [`Store::write_blob`](crate::server::store::Store::write_blob), and a download streams the blob file from the
//! requested offset, so no object is ever held in memory whole.
//!
//! `If-None-Match: *` on upload is checked twice, as lakeFS does: before the body is read (cheap refusal) and
//! atomically with the metadata write (a racing writer loses with 412).

use std::collections::BTreeMap;
use std::io;

use axum::body::Body;
use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Router};
use futures::{StreamExt, TryStreamExt};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::protection::{check_write, BranchWrite};
use super::{blocking, json_status, no_content, paginated, ApiError, ApiResult, AppState, JsonBody, Params};
use crate::server::store::{ListEntry, ObjectEntry, StoreError, MAX_PAGE};
use crate::server::ServerState;

/// Header prefixes that carry user metadata on upload.
const META_HEADER_PREFIX: &str = "x-lakefs-meta-";
const INTERNAL_HEADER_PREFIX: &str = "x-lakefs-internal-";
/// Where `x-lakefs-internal-*` keys are stored (lakefs-api.md §5.6).
const RESERVED_KEY_PREFIX: &str = "::lakefs::";
const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// Content types a browser may show in place (`Content-Disposition: inline`).
const INLINE_TYPES: &[&str] = &[
    "text/plain",
    "text/csv",
    "text/markdown",
    "application/json",
    "application/pdf",
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/bmp",
    "audio/mpeg",
    "audio/ogg",
    "audio/wav",
    "video/mp4",
    "video/webm",
];

pub(super) fn routes() -> Router {
    let refs = "/repositories/{repository}/refs/{ref}/objects";
    let branches = "/repositories/{repository}/branches/{branch}/objects";
    Router::new()
        .route(&format!("{refs}/ls"), get(list))
        .route(&format!("{refs}/stat"), get(stat))
        .route(&format!("{refs}/underlyingProperties"), get(underlying_properties))
        .route(refs, get(get_object).head(head_object))
        .route(branches, post(upload).delete(delete))
        .route(&format!("{branches}/delete"), post(delete_many))
        .route(&format!("{branches}/copy"), post(copy))
        .route(&format!("{branches}/stat/user_metadata"), put(update_user_metadata))
        .route(&format!("{branches}/stage_allowed"), get(stage_allowed))
}

/// The storage URI reported as `physical_address`: the blob under the repository's namespace.
fn physical_address(namespace: &str, entry: &ObjectEntry) -> String {
    format!("{}/data/{}", namespace.trim_end_matches('/'), entry.blob)
}

/// `ObjectStats`. `metadata`: `Some(true)` always present (stat), `Some(false)` only when non-empty (listing),
/// `None` never (`user_metadata=false`).
fn object_stats(path: &str, entry: &ObjectEntry, namespace: &str, metadata: Option<bool>) -> Value {
    let mut out = Map::new();
    out.insert("path".into(), json!(path));
    out.insert("path_type".into(), json!("object"));
    out.insert("physical_address".into(), json!(physical_address(namespace, entry)));
    out.insert("checksum".into(), json!(entry.checksum));
    out.insert("size_bytes".into(), json!(entry.size));
    out.insert("mtime".into(), json!(entry.mtime));
    out.insert("content_type".into(), json!(entry.content_type));
    match metadata {
        Some(true) => {
            out.insert("metadata".into(), json!(entry.metadata));
        }
        Some(false) if !entry.metadata.is_empty() => {
            out.insert("metadata".into(), json!(entry.metadata));
        }
        _ => {}
    }
    Value::Object(out)
}

fn common_prefix_stats(path: &str) -> Value {
    json!({"path": path, "path_type": "common_prefix", "physical_address": "", "checksum": "", "mtime": 0})
}

/// Local storage cannot pre-sign URLs; lakeFS answers such requests with 400 "operation not supported".
fn refuse_presign(params: &Params) -> ApiResult<()> {
    if params.bool("presign", false)? {
        return Err(ApiError::bad_request(
            "operation not supported: presigned URLs are not supported by the local blockstore",
        ));
    }
    Ok(())
}

async fn list(
    Extension(state): AppState,
    Path((repository, reference)): Path<(String, String)>,
    params: Params,
) -> ApiResult {
    refuse_presign(&params)?;
    let page = params.page()?;
    let delimiter = params.delimiter();
    let metadata = params.bool("user_metadata", true)?.then_some(false);
    let store = state.store.clone();
    let (listed, repo) = blocking(move || {
        let repo = store.get_repository(&repository)?;
        let listed = store.list_objects(&repository, &reference, &page, delimiter.as_deref())?;
        Ok((listed, repo))
    })
    .await?;
    let last = listed.items.last().map(|e| e.path().to_string());
    let results: Vec<Value> = listed
        .items
        .iter()
        .map(|item| match item {
            ListEntry::Object { path, entry } => object_stats(path, entry, &repo.storage_namespace, metadata),
            ListEntry::CommonPrefix(prefix) => common_prefix_stats(prefix),
        })
        .collect();
    Ok(paginated(results, listed.has_more, last))
}

async fn stat(
    Extension(state): AppState,
    Path((repository, reference)): Path<(String, String)>,
    params: Params,
) -> ApiResult {
    let path = params.required("path")?;
    refuse_presign(&params)?;
    let metadata = params.bool("user_metadata", true)?.then_some(true);
    let repo = state.store.get_repository(&repository)?;
    let entry = state.store.stat_object(&repository, &reference, &path)?;
    Ok(json_status(
        StatusCode::OK,
        object_stats(&path, &entry, &repo.storage_namespace, metadata),
    ))
}

async fn underlying_properties(
    Extension(state): AppState,
    Path((repository, reference)): Path<(String, String)>,
    params: Params,
) -> ApiResult {
    let path = params.required("path")?;
    state.store.stat_object(&repository, &reference, &path)?;
    Ok(json_status(StatusCode::OK, json!({"storage_class": null})))
}

// ---- download ----

/// A parsed `Range` header against an object of known size.
#[derive(Debug, PartialEq, Eq)]
enum RangeRequest {
    Whole,
    /// Inclusive byte range, already clamped to the object.
    Part {
        start: u64,
        end: u64,
    },
    /// Syntactically valid but outside the object: 416 with `Content-Range: bytes */size`.
    Unsatisfiable,
    /// Malformed or several ranges: 416 without `Content-Range`.
    Invalid,
}

fn parse_range(header: Option<&str>, size: u64) -> RangeRequest {
    let Some(header) = header else {
        return RangeRequest::Whole;
    };
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return RangeRequest::Invalid;
    };
    if spec.contains(',') {
        return RangeRequest::Invalid;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Invalid;
    };
    let parse = |s: &str| s.trim().parse::<u64>().ok();
    match (first.trim().is_empty(), last.trim().is_empty()) {
        // `bytes=-n`: the last n bytes.
        (true, false) => match parse(last) {
            None => RangeRequest::Invalid,
            Some(0) => RangeRequest::Unsatisfiable,
            Some(_) if size == 0 => RangeRequest::Unsatisfiable,
            Some(n) => RangeRequest::Part {
                start: size.saturating_sub(n),
                end: size - 1,
            },
        },
        // `bytes=a-`
        (false, true) => match parse(first) {
            None => RangeRequest::Invalid,
            Some(start) if start >= size => RangeRequest::Unsatisfiable,
            Some(start) => RangeRequest::Part { start, end: size - 1 },
        },
        // `bytes=a-b`
        (false, false) => match (parse(first), parse(last)) {
            (Some(start), Some(end)) if start <= end => {
                if start >= size {
                    RangeRequest::Unsatisfiable
                } else {
                    RangeRequest::Part {
                        start,
                        end: end.min(size - 1),
                    }
                }
            }
            _ => RangeRequest::Invalid,
        },
        (true, true) => RangeRequest::Invalid,
    }
}

fn content_disposition(path: &str, content_type: &str) -> String {
    let media_type = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let disposition = if INLINE_TYPES.contains(&media_type.as_str()) {
        "inline"
    } else {
        "attachment"
    };
    let name = path.rsplit('/').find(|s| !s.is_empty()).unwrap_or("");
    if name.is_empty() {
        return disposition.to_string();
    }
    if name
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\' || b == b' ')
    {
        format!("{disposition}; filename=\"{name}\"")
    } else {
        format!(
            "{disposition}; filename*=UTF-8''{}",
            utf8_percent_encode(name, NON_ALPHANUMERIC)
        )
    }
}

fn header_value(value: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(value).ok()
}

async fn get_object(
    Extension(state): AppState,
    Path((repository, reference)): Path<(String, String)>,
    params: Params,
    headers: HeaderMap,
) -> ApiResult<Response> {
    serve_object(&state, &repository, &reference, &params, &headers, true).await
}

async fn head_object(
    Extension(state): AppState,
    Path((repository, reference)): Path<(String, String)>,
    params: Params,
    headers: HeaderMap,
) -> ApiResult<Response> {
    serve_object(&state, &repository, &reference, &params, &headers, false).await
}

async fn serve_object(
    state: &ServerState,
    repository: &str,
    reference: &str,
    params: &Params,
    headers: &HeaderMap,
    with_body: bool,
) -> ApiResult<Response> {
    let path = params.required("path")?;
    refuse_presign(params)?;
    let entry = state.store.stat_object(repository, reference, &path)?;
    let etag = format!("\"{}\"", entry.checksum);
    let last_modified = httpdate::fmt_http_date(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(entry.mtime).unwrap_or(0)),
    );

    let mut response_headers = HeaderMap::new();
    let mut set = |name: HeaderName, value: &str| {
        if let Some(v) = header_value(value) {
            response_headers.insert(name, v);
        }
    };
    set(header::ETAG, &etag);
    set(header::LAST_MODIFIED, &last_modified);
    set(header::ACCEPT_RANGES, "bytes");
    set(header::CONTENT_TYPE, &entry.content_type);
    set(
        header::CONTENT_DISPOSITION,
        &content_disposition(&path, &entry.content_type),
    );
    set(header::CACHE_CONTROL, "no-store, must-revalidate");
    set(header::EXPIRES, "0");

    let if_none_match = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok());
    if if_none_match.is_some_and(|v| v.split(',').any(|t| t.trim() == etag)) {
        return Ok((StatusCode::NOT_MODIFIED, response_headers).into_response());
    }

    let range_header = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, start, length) = match parse_range(range_header, entry.size) {
        RangeRequest::Whole => (StatusCode::OK, 0, entry.size),
        RangeRequest::Part { start, end } => {
            let content_range = format!("bytes {start}-{end}/{}", entry.size);
            if let Some(v) = header_value(&content_range) {
                response_headers.insert(header::CONTENT_RANGE, v);
            }
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        RangeRequest::Unsatisfiable | RangeRequest::Invalid => {
            let mut response =
                ApiError::new(StatusCode::RANGE_NOT_SATISFIABLE, "Requested Range Not Satisfiable").into_response();
            if matches!(parse_range(range_header, entry.size), RangeRequest::Unsatisfiable) {
                if let Some(v) = header_value(&format!("bytes */{}", entry.size)) {
                    response.headers_mut().insert(header::CONTENT_RANGE, v);
                }
            }
            return Ok(response);
        }
    };
    response_headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));

    if !with_body {
        return Ok((status, response_headers).into_response());
    }
    let chunks = state
        .store
        .read_blob_range(&entry.blob, start, length)
        .await
        .map_err(|e| ApiError::from(StoreError::Io(e)))?;
    let body = Body::from_stream(chunks);
    Ok((status, response_headers, body).into_response())
}

// ---- upload ----

/// User metadata from `x-lakefs-meta-*` (key lower-cased) and `x-lakefs-internal-*` (stored as `::lakefs::*`).
fn metadata_from_headers(headers: &HeaderMap) -> ApiResult<BTreeMap<String, String>> {
    let mut metadata = BTreeMap::new();
    for (name, value) in headers {
        let name = name.as_str();
        let key = if let Some(key) = name.strip_prefix(META_HEADER_PREFIX) {
            key.to_string()
        } else if let Some(key) = name.strip_prefix(INTERNAL_HEADER_PREFIX) {
            format!("{RESERVED_KEY_PREFIX}{key}")
        } else {
            continue;
        };
        let value = value
            .to_str()
            .map_err(|_| ApiError::bad_request(format!("header {name}: value is not valid text")))?;
        metadata.insert(key, value.to_string());
    }
    Ok(metadata)
}

/// Refuses conditional-upload forms lakeFS does not implement (501), and reports `If-None-Match: *`.
fn upload_precondition(headers: &HeaderMap) -> ApiResult<bool> {
    if headers.contains_key(header::IF_MATCH) {
        return Err(ApiError::new(StatusCode::NOT_IMPLEMENTED, "If-Match is not supported"));
    }
    match headers.get(header::IF_NONE_MATCH).map(|v| v.to_str().map(str::trim)) {
        None => Ok(false),
        Some(Ok("*")) => Ok(true),
        Some(_) => Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "Unsupported value for If-None-Match - Only \"*\" is supported",
        )),
    }
}

fn body_stream(body: Body) -> impl futures::Stream<Item = io::Result<bytes::Bytes>> + Send + Unpin + 'static {
    body.into_data_stream().map_err(io::Error::other)
}

async fn upload(
    Extension(state): AppState,
    Path((repository, branch)): Path<(String, String)>,
    params: Params,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let path = params.required("path")?;
    let if_none_match = upload_precondition(&headers)?;
    let metadata = metadata_from_headers(&headers)?;
    let force = params.bool("force", false)?;
    let repo = check_write(&state.store, &repository, Some(&branch), BranchWrite::Stage, force)?;
    state.store.get_branch(&repository, &branch)?;
    if if_none_match {
        match state.store.stat_object(&repository, &branch, &path) {
            Ok(_) => return Err(ApiError::new(StatusCode::PRECONDITION_FAILED, "path already exists")),
            Err(StoreError::ObjectNotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }

    let content_type_header = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_string();
    let is_multipart = content_type_header
        .to_ascii_lowercase()
        .starts_with("multipart/form-data");
    let (blob, content_type) = if is_multipart {
        let boundary = multer::parse_boundary(&content_type_header)
            .map_err(|e| ApiError::bad_request(format!("invalid multipart content type: {e}")))?;
        let mut multipart = multer::Multipart::new(body.into_data_stream(), boundary);
        loop {
            let field = multipart
                .next_field()
                .await
                .map_err(|e| ApiError::bad_request(format!("reading multipart body: {e}")))?;
            let Some(field) = field else {
                return Err(ApiError::internal("multipart body has no 'content' part"));
            };
            if field.name() != Some("content") {
                continue;
            }
            let content_type = field.content_type().map(|m| m.to_string());
            let stream = field.map_err(io::Error::other).boxed();
            break (state.store.write_blob(stream).await?, content_type);
        }
    } else {
        let content_type = Some(content_type_header).filter(|t| !t.is_empty());
        (state.store.write_blob(body_stream(body)).await?, content_type)
    };

    let entry = ObjectEntry {
        blob: blob.id,
        checksum: blob.md5,
        size: blob.size,
        mtime: super::now_unix(),
        content_type: content_type.unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_string()),
        metadata,
    };
    let store = state.store.clone();
    let object_path = path.clone();
    let stored = blocking(move || store.put_object(&repository, &branch, &object_path, entry, if_none_match)).await?;
    Ok(json_status(
        StatusCode::CREATED,
        object_stats(&path, &stored, &repo.storage_namespace, Some(true)),
    ))
}

// ---- delete, copy, metadata ----

async fn delete(
    Extension(state): AppState,
    Path((repository, branch)): Path<(String, String)>,
    params: Params,
) -> ApiResult {
    let path = params.required("path")?;
    check_write(
        &state.store,
        &repository,
        Some(&branch),
        BranchWrite::Stage,
        params.bool("force", false)?,
    )?;
    let store = state.store.clone();
    blocking(move || store.delete_object(&repository, &branch, &path)).await?;
    Ok(no_content())
}

#[derive(Deserialize)]
struct PathList {
    paths: Vec<String>,
}

async fn delete_many(
    Extension(state): AppState,
    Path((repository, branch)): Path<(String, String)>,
    params: Params,
    JsonBody(body): JsonBody<PathList>,
) -> ApiResult {
    if body.paths.len() > MAX_PAGE {
        return Err(ApiError::bad_request(format!(
            "request body has an error: doesn't match schema: property \"paths\": maximum number of items is \
             {MAX_PAGE}"
        )));
    }
    check_write(
        &state.store,
        &repository,
        Some(&branch),
        BranchWrite::Stage,
        params.bool("force", false)?,
    )?;
    let store = state.store.clone();
    let failures = blocking(move || store.delete_objects(&repository, &branch, &body.paths)).await?;
    let errors: Vec<Value> = failures
        .into_iter()
        .map(|(path, error)| {
            let error = ApiError::from(error);
            json!({"path": path, "status_code": error.status.as_u16(), "message": error.message})
        })
        .collect();
    Ok(json_status(StatusCode::OK, json!({ "errors": errors })))
}

#[derive(Deserialize)]
struct ObjectCopyCreation {
    src_path: String,
    #[serde(default)]
    src_ref: Option<String>,
    #[serde(default)]
    shallow: bool,
    #[serde(default)]
    force: bool,
}

/// Copy within a repository. Blobs are content-addressed, so the copy shares the source's blob; only the
/// `mtime` changes, as in lakeFS.
async fn copy(
    Extension(state): AppState,
    Path((repository, branch)): Path<(String, String)>,
    params: Params,
    JsonBody(body): JsonBody<ObjectCopyCreation>,
) -> ApiResult {
    let dest_path = params.required("dest_path")?;
    if body.shallow {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "shallow copy is not supported",
        ));
    }
    check_write(&state.store, &repository, Some(&branch), BranchWrite::Stage, body.force)?;
    let source_ref = body.src_ref.filter(|r| !r.is_empty()).unwrap_or_else(|| branch.clone());
    let store = state.store.clone();
    let path = dest_path.clone();
    let (stored, repo) = blocking(move || {
        let repo = store.get_repository(&repository)?;
        store.get_branch(&repository, &branch)?;
        let mut entry = store.stat_object(&repository, &source_ref, &body.src_path)?;
        entry.mtime = super::now_unix();
        let stored = store.put_object(&repository, &branch, &path, entry, false)?;
        Ok((stored, repo))
    })
    .await?;
    Ok(json_status(
        StatusCode::CREATED,
        object_stats(&dest_path, &stored, &repo.storage_namespace, Some(true)),
    ))
}

#[derive(Deserialize)]
struct UpdateObjectUserMetadata {
    set: BTreeMap<String, String>,
}

/// Replaces the whole user-metadata map (not a merge) as a staged change; 204 as lakeFS's code answers.
async fn update_user_metadata(
    Extension(state): AppState,
    Path((repository, branch)): Path<(String, String)>,
    params: Params,
    JsonBody(body): JsonBody<UpdateObjectUserMetadata>,
) -> ApiResult {
    let path = params.required("path")?;
    check_write(&state.store, &repository, Some(&branch), BranchWrite::Stage, false)?;
    let store = state.store.clone();
    blocking(move || {
        store.get_branch(&repository, &branch)?;
        let mut entry = store.stat_object(&repository, &branch, &path)?;
        entry.metadata = body.set;
        store.put_object(&repository, &branch, &path, entry, false)
    })
    .await?;
    Ok(no_content())
}

async fn stage_allowed(
    Extension(state): AppState,
    Path((repository, branch)): Path<(String, String)>,
    params: Params,
) -> ApiResult {
    params.required("path")?;
    state.store.get_branch(&repository, &branch)?;
    Ok(no_content())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use RangeRequest::*;
        assert_eq!(parse_range(None, 10), Whole);
        assert_eq!(parse_range(Some("bytes=0-3"), 10), Part { start: 0, end: 3 });
        assert_eq!(parse_range(Some("bytes=5-"), 10), Part { start: 5, end: 9 });
        assert_eq!(parse_range(Some("bytes=-3"), 10), Part { start: 7, end: 9 });
        assert_eq!(parse_range(Some("bytes=-30"), 10), Part { start: 0, end: 9 });
        assert_eq!(
            parse_range(Some("bytes=8-100"), 10),
            Part { start: 8, end: 9 },
            "end clamped"
        );
        assert_eq!(parse_range(Some("bytes=10-"), 10), Unsatisfiable);
        assert_eq!(
            parse_range(Some("bytes=0-0"), 0),
            Unsatisfiable,
            "any range on an empty object"
        );
        assert_eq!(parse_range(Some("bytes=-1"), 0), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), Invalid);
        assert_eq!(parse_range(Some("bytes=5-2"), 10), Invalid);
        assert_eq!(parse_range(Some("items=0-1"), 10), Invalid);
        assert_eq!(parse_range(Some("bytes=x-1"), 10), Invalid);
    }

    #[test]
    fn metadata_headers() {
        let mut headers = HeaderMap::new();
        headers.insert("x-lakefs-meta-Owner", HeaderValue::from_static("Alice"));
        headers.insert("x-lakefs-internal-client-mtime", HeaderValue::from_static("17"));
        headers.insert("content-type", HeaderValue::from_static("text/plain"));
        let metadata = metadata_from_headers(&headers).unwrap();
        assert_eq!(metadata.get("owner").map(String::as_str), Some("Alice"));
        assert_eq!(metadata.get("::lakefs::client-mtime").map(String::as_str), Some("17"));
        assert_eq!(metadata.len(), 2);
    }

    #[test]
    fn dispositions() {
        assert_eq!(
            content_disposition("a/b.txt", "text/plain; charset=utf-8"),
            "inline; filename=\"b.txt\""
        );
        assert_eq!(
            content_disposition("x.bin", "application/octet-stream"),
            "attachment; filename=\"x.bin\""
        );
        assert!(content_disposition("d/\u{e9}.bin", "application/octet-stream").contains("filename*=UTF-8''%C3%A9"));
    }
}
