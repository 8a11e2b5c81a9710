//! S3 gateway (lakefs-api.md §7): bucket = repository, first key segment = ref, the rest = object path.
//!
//! Request flow: [`router`] decides whether a request is S3 and what it names, [`sigv4`] (or [`sigv2`], or HTTP
//! Basic) authenticates it, [`router::select_operation`] picks the operation, and one module per operation family
//! talks to the store ([`bucket`], [`list`], [`object`], [`multipart`]). Bodies are streams from start to end
//! ([`body`], [`chunked`], [`checksum`]): nothing is buffered whole, and every promise about a body (payload
//! hash, Content-MD5, flexible checksum, chunk signatures, length) is checked before the object becomes visible.
//! Whatever fails becomes an [`error::S3Error`], rendered as XML in exactly one place. Every response carries
//! `X-Amz-Request-Id`.
//!
//! Keys are opaque strings end to end: they name entries in the store, never files; the only paths built from
//! request input are multipart upload directories, whose ids are validated as 64 hex characters first.
//!
//! The store's metadata calls are synchronous (redb), so handlers run them on the blocking pool
//! ([`Ctx::blocking`]).

mod body;
mod bucket;
mod checksum;
mod chunked;
mod error;
mod list;
pub(crate) mod multipart;
mod object;
mod router;
mod sigv2;
mod sigv4;
mod xml;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use self::error::S3Result;
pub use self::error::{S3Error, S3ErrorCode};
use self::router::{HostMatch, Operation, Target};
use self::sigv4::Payload;
use super::store::{RefView, Store, StoreError};
use super::ServerState;

/// True when lakeFS would route this request to the S3 gateway (lakefs-api.md §1.1).
pub fn is_gateway_request(state: &ServerState, request: &Request) -> bool {
    let by_host = match_request_host(state, request.headers(), request.uri()) != HostMatch::Other;
    by_host || router::is_signed(request.headers(), request.uri().query().unwrap_or(""))
}

fn match_request_host(state: &ServerState, headers: &HeaderMap, uri: &Uri) -> HostMatch {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| uri.authority().map(|a| a.to_string()));
    router::match_host(host.as_deref(), &state.config.gateway_domains)
}

pub async fn handle(state: Arc<ServerState>, request: Request) -> Response {
    let request_id = new_request_id();
    let resource = request.uri().path().to_string();
    let region = state.config.region.clone();
    let method = request.method().clone();
    let mut response = match serve(state, request).await {
        Ok(response) => response,
        Err(error) => {
            tracing::debug!(%method, %resource, code = error.code.as_str(), message = %error.message, "s3 error");
            let mut response = error.into_response(&request_id, &resource, &region);
            if method == Method::HEAD {
                *response.body_mut() = Body::empty();
            }
            response
        }
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-amz-request-id", value.clone());
        response.headers_mut().insert("x-amz-id-2", value);
    }
    response
}

fn new_request_id() -> String {
    hex::encode(rand::random::<[u8; 8]>()).to_ascii_uppercase()
}

/// One authenticated S3 request being served.
pub struct Ctx {
    pub state: Arc<ServerState>,
    pub method: Method,
    pub headers: HeaderMap,
    pub query: Vec<(String, String)>,
    pub target: Target,
    pub payload: Payload,
}

impl Ctx {
    pub fn store(&self) -> &Store {
        &self.state.store
    }

    /// Runs a synchronous store call on the blocking pool.
    pub async fn blocking<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.state.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| StoreError::Internal(format!("store task failed: {e}")))?
    }

    pub fn bucket(&self) -> &str {
        self.target.bucket.as_deref().unwrap_or_default()
    }

    pub fn reference(&self) -> &str {
        self.target.reference.as_deref().unwrap_or_default()
    }

    pub fn path(&self) -> &str {
        self.target.path.as_deref().unwrap_or_default()
    }

    pub fn full_key(&self) -> String {
        self.target.full_key().unwrap_or_default()
    }

    pub fn query(&self, name: &str) -> Option<&str> {
        router::query_value(&self.query, name)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Ensures the target ref is an existing branch, as every write needs (else `NoSuchBucket`).
    /// Also refuses read-only repositories and protected branches (403).
    pub async fn require_branch(&self) -> S3Result<()> {
        let (repo, reference) = (self.bucket().to_string(), self.reference().to_string());
        let is_branch = self
            .blocking(move |s| match s.resolve_ref(&repo, &reference)? {
                RefView::Branch { branch, .. } => check_writable(s, &repo, &branch).map(|()| true),
                _ => Ok(false),
            })
            .await
            .map_err(|e| S3Error::from_write(e).bucket(self.bucket()))?;
        if is_branch {
            Ok(())
        } else {
            Err(S3Error::new(S3ErrorCode::NoSuchBucket).bucket(self.bucket()))
        }
    }
}

/// Refuses writes to a read-only repository or a branch matching a protection rule (lakefs-api.md §7.4), as
/// `Forbidden` errors that [`S3Error::from_write`] turns into `ErrReadOnlyRepository` / `ErrWriteToProtectedBranch`.
pub fn check_writable(store: &Store, repo: &str, branch: &str) -> Result<(), StoreError> {
    if store.get_repository(repo)?.read_only {
        return Err(StoreError::Forbidden("read-only repository".to_string()));
    }
    if store.is_branch_protected(repo, branch)? {
        return Err(StoreError::Forbidden("cannot write to protected branch".to_string()));
    }
    Ok(())
}

async fn serve(state: Arc<ServerState>, request: Request) -> S3Result<Response> {
    let (parts, body) = request.into_parts();
    let virtual_bucket = match match_request_host(&state, &parts.headers, &parts.uri) {
        HostMatch::VirtualHost(bucket) => Some(bucket),
        _ => None,
    };
    let verified = authenticate(
        &state,
        &parts.method,
        &parts.uri,
        &parts.headers,
        virtual_bucket.as_deref(),
    )?;
    let target = router::parse_target(parts.uri.path(), virtual_bucket.as_deref())?;
    let query = router::parse_query(parts.uri.query().unwrap_or(""));
    let operation = router::select_operation(&parts.method, &target, &query, &parts.headers);
    tracing::debug!(
        ?operation,
        method = %parts.method,
        uri = %parts.uri,
        akid = %verified.access_key_id,
        payload = ?verified.payload,
        "s3 request"
    );
    let ctx = Ctx {
        state,
        method: parts.method,
        headers: parts.headers,
        query,
        target,
        payload: verified.payload,
    };
    if virtual_bucket.is_none() && ctx.bucket() == "api" && ctx.reference() == "v1" {
        let exists = ctx.blocking(|s| s.get_repository("api")).await.is_ok();
        if !exists {
            return Err(S3Error::new(S3ErrorCode::NoSuchBucketPossibleApiEndpoint).bucket("api"));
        }
    }
    match operation {
        Operation::ListBuckets => bucket::list_buckets(&ctx).await,
        Operation::HeadBucket => bucket::head_bucket(&ctx).await,
        Operation::CreateBucket => bucket::create_bucket(&ctx).await,
        Operation::GetBucketLocation => bucket::location(&ctx).await,
        Operation::GetBucketVersioning => bucket::versioning(&ctx).await,
        Operation::ListObjects => list::list_objects(&ctx, false).await,
        Operation::ListObjectsV2 => list::list_objects(&ctx, true).await,
        Operation::ListMultipartUploads => multipart::list_uploads(&ctx).await,
        Operation::DeleteObjects => object::delete_objects(&ctx, body).await,
        Operation::HeadObject => object::get_object(&ctx, true).await,
        Operation::GetObject => object::get_object(&ctx, false).await,
        Operation::GetObjectTagging => object::get_tagging(&ctx).await,
        Operation::PutObject => object::put_object(&ctx, body).await,
        Operation::CopyObject => object::copy_object(&ctx).await,
        Operation::DeleteObject => object::delete_object(&ctx).await,
        Operation::CreateMultipartUpload => multipart::create(&ctx).await,
        Operation::UploadPart => multipart::upload_part(&ctx, body).await,
        Operation::UploadPartCopy => multipart::upload_part_copy(&ctx).await,
        Operation::CompleteMultipartUpload => multipart::complete(&ctx, body).await,
        Operation::AbortMultipartUpload => multipart::abort(&ctx).await,
        Operation::ListParts => multipart::list_parts(&ctx).await,
        Operation::EmptyPath => Ok(StatusCode::NOT_FOUND.into_response()),
        Operation::NotSupported => Err(S3Error::new(S3ErrorCode::NotSupported)),
    }
}

/// Checks the request's signature (V4 or V2, header or query) or Basic credentials.
fn authenticate(
    state: &ServerState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    virtual_bucket: Option<&str>,
) -> S3Result<sigv4::Verified> {
    let credentials = &state.config.credentials;
    let now = time::OffsetDateTime::now_utc();
    if let Some(v2) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.strip_prefix("AWS "))
    {
        return sigv2::verify_header(
            credentials,
            method,
            uri,
            headers,
            virtual_bucket,
            v2,
            now.unix_timestamp(),
        );
    }
    let query = router::parse_query(uri.query().unwrap_or(""));
    if router::query_value(&query, "AWSAccessKeyId").is_some() {
        return sigv2::verify_query(
            credentials,
            method,
            uri,
            headers,
            virtual_bucket,
            &query,
            now.unix_timestamp(),
        );
    }
    sigv4::verify(credentials, method, uri, headers, now)?.ok_or_else(|| S3Error::new(S3ErrorCode::MissingFields))
}

/// An XML response with status 200.
pub fn xml_response(body: String) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/xml"));
    response
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// An S3 ETag: the checksum in double quotes.
pub fn etag(checksum: &str) -> String {
    format!("\"{checksum}\"")
}
