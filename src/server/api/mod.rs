//! REST API `/api/v1` (lakefs-api.md §1-§5), the part of lakeFS's OpenAPI surface that lakectl, lakefs-sdk,
//! the high-level `lakefs` package, lakefs-spec and the mount use.
//!
//! Shape: [`handle`] answers every `/api/v1/...` request. It stamps an `X-Request-ID`, checks credentials (Basic
//! auth with an access key pair, or a Bearer/cookie token from `POST /auth/login`) unless the endpoint is one of
//! lakeFS's `security: []` endpoints, and hands the request to one axum [`Router`] built once per process. The
//! server state travels as a request extension, so the router does not depend on a particular server instance
//! (tests run several servers in one process).
//!
//! One file per resource; a handler parses its inputs, calls [`Store`](super::store::Store) and renders lakeFS's
//! JSON. Every failure is an [`ApiError`], which renders lakeFS's `{"message": ...}` body; the mapping from
//! [`StoreError`] to HTTP status lives in exactly one place (`impl From<StoreError> for ApiError`).
//!
//! lakeFS validates requests against its OpenAPI spec before a handler runs (required query parameters, `amount`
//! in -1..=1000, JSON content type and schema); [`Params`] and [`JsonBody`] reproduce the parts clients can
//! trip over, answering 400 with a message instead of axum's plain-text rejections.

mod actions;
mod branches;
mod commits;
mod objects;
mod protection;
mod refs;
mod repositories;
mod session;
mod setup;
mod staging;
mod tags;

use std::sync::{Arc, OnceLock};

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::store::{PageRequest, StoreError, MAX_PAGE};
use super::ServerState;

/// The server state as handlers receive it.
pub(crate) type AppState = Extension<Arc<ServerState>>;

/// Page size when `amount` is absent or not positive (lakefs-api.md §3).
const DEFAULT_PAGE: usize = 100;

/// Answers one `/api/v1/...` request.
pub async fn handle(state: Arc<ServerState>, mut request: Request) -> Response {
    let request_id = new_request_id();
    let started = std::time::Instant::now();
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    let caller = session::authenticate(&state, request.headers());
    let mut response = if caller.is_none() && needs_auth(request.method(), request.uri().path()) {
        ApiError::new(StatusCode::UNAUTHORIZED, "error authenticating request").into_response()
    } else {
        if let Some(caller) = caller {
            request.extensions_mut().insert(caller);
        }
        request.extensions_mut().insert(state);
        match router().clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    tracing::debug!(
        %method,
        path,
        status = response.status().as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        request_id,
        "api request"
    );
    response
}

/// False for lakeFS's unauthenticated endpoints (`security: []` in the spec).
fn needs_auth(method: &Method, path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/api/v1") else {
        return true;
    };
    let rest = rest.trim_end_matches('/');
    !matches!(
        (method, rest),
        (_, "/healthcheck")
            | (_, "/setup_lakefs")
            | (_, "/setup_comm_prefs")
            | (&Method::POST, "/auth/login")
            | (_, "/auth/capabilities")
    )
}

fn router() -> &'static Router {
    static ROUTER: OnceLock<Router> = OnceLock::new();
    ROUTER.get_or_init(|| {
        let api = Router::new()
            .merge(setup::routes())
            .merge(session::routes())
            .merge(repositories::routes())
            .merge(branches::routes())
            .merge(tags::routes())
            .merge(commits::routes())
            .merge(refs::routes())
            .merge(objects::routes())
            .merge(protection::routes())
            .merge(staging::routes())
            .merge(actions::routes())
            .method_not_allowed_fallback(method_not_allowed);
        Router::new().nest("/api/v1", api).fallback(unknown_endpoint)
    })
}

async fn unknown_endpoint() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "invalid API endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
}

fn new_request_id() -> String {
    let bytes: [u8; 16] = rand::random();
    let h = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

// ---- errors ----

/// A failed request: status plus lakeFS's `{"message": ...}` body.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// Prefixes the message, as lakeFS wraps errors (`commit: no changes`).
    pub fn context(mut self, prefix: &str) -> Self {
        self.message = format!("{prefix}: {}", self.message);
        self
    }
}

/// The lakefs-api.md §1.3 status table for storage errors.
impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        let status = match &error {
            StoreError::RepositoryNotFound
            | StoreError::BranchNotFound(_)
            | StoreError::TagNotFound
            | StoreError::RefNotFound(_)
            | StoreError::ObjectNotFound => StatusCode::NOT_FOUND,
            StoreError::AlreadyExists(_) | StoreError::NameConflict(_) | StoreError::MergeConflict { .. } => {
                StatusCode::CONFLICT
            }
            StoreError::InvalidArgument(_)
            | StoreError::InvalidRef(_)
            | StoreError::NoChanges
            | StoreError::DirtyBranch => StatusCode::BAD_REQUEST,
            StoreError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            StoreError::Forbidden(_) => StatusCode::FORBIDDEN,
            StoreError::Io(_) | StoreError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(%error, "request failed");
        }
        ApiError::new(status, error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(json!({ "message": self.message }))).into_response()
    }
}

pub(crate) type ApiResult<T = Response> = Result<T, ApiError>;

/// Runs a store call on the blocking pool (commit, merge, diff, listings walk trees and may take a while).
pub(crate) async fn blocking<T, F>(f: F) -> ApiResult<T>
where
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(ApiError::from),
        Err(join) => Err(ApiError::internal(format!("request task failed: {join}"))),
    }
}

// ---- request parsing ----

/// Query parameters, kept as a list because some repeat (`objects`, `prefixes` of the log).
#[derive(Clone, Debug, Default)]
pub(crate) struct Params(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        Ok(Params(
            url::form_urlencoded::parse(query.as_bytes()).into_owned().collect(),
        ))
    }
}

impl Params {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn get_or_empty(&self, name: &str) -> String {
        self.get(name).unwrap_or("").to_string()
    }

    /// A required parameter; lakeFS's validator answers 400 when it is missing.
    pub fn required(&self, name: &str) -> ApiResult<String> {
        match self.get(name) {
            Some(v) => Ok(v.to_string()),
            None => Err(ApiError::bad_request(format!(
                "parameter \"{name}\" in query has an error: value is required but missing"
            ))),
        }
    }

    pub fn bool(&self, name: &str, default: bool) -> ApiResult<bool> {
        match self.get(name) {
            None | Some("") => Ok(default),
            Some(v) if v.eq_ignore_ascii_case("true") || v == "1" => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") || v == "0" => Ok(false),
            Some(v) => Err(ApiError::bad_request(format!(
                "parameter \"{name}\" in query has an error: value {v}: an invalid boolean: invalid syntax"
            ))),
        }
    }

    /// `amount`: -1..=1000 (validator), values <= 0 mean the default page size.
    pub fn amount(&self) -> ApiResult<usize> {
        let Some(raw) = self.get("amount").filter(|v| !v.is_empty()) else {
            return Ok(DEFAULT_PAGE);
        };
        let amount: i64 = raw.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "parameter \"amount\" in query has an error: value {raw}: an invalid integer: invalid syntax"
            ))
        })?;
        if !(-1..=MAX_PAGE as i64).contains(&amount) {
            return Err(ApiError::bad_request(format!(
                "parameter \"amount\" in query has an error: number must be at most {MAX_PAGE} and at least -1"
            )));
        }
        Ok(if amount <= 0 { DEFAULT_PAGE } else { amount as usize })
    }

    /// `prefix`, `after` and `amount` of a listing.
    pub fn page(&self) -> ApiResult<PageRequest> {
        Ok(PageRequest {
            prefix: self.get_or_empty("prefix"),
            after: self.get_or_empty("after"),
            amount: self.amount()?,
        })
    }

    /// `delimiter`, absent when empty (an empty delimiter means a flat listing).
    pub fn delimiter(&self) -> Option<String> {
        self.get("delimiter").filter(|d| !d.is_empty()).map(str::to_string)
    }
}

/// A JSON request body: `Content-Type` must be JSON and the body must deserialize, else 400 (lakeFS's validator).
/// An empty body deserializes from `{}`, which serves endpoints whose body is optional (merge).
pub(crate) struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        // axum's default body limit (2 MiB) applies here; over it the rejection's status is 413, which is kept.
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|e| ApiError::new(e.status(), format!("reading request body: {e}")))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return serde_json::from_slice(b"{}")
                .map(JsonBody)
                .map_err(|e| ApiError::bad_request(format!("request body has an error: value is required: {e}")));
        }
        let media_type = content_type.split(';').next().unwrap_or("").trim();
        if !(media_type == "application/json" || media_type.ends_with("+json")) {
            return Err(ApiError::bad_request(format!(
                "request body has an error: header Content-Type has unexpected value: \"{content_type}\""
            )));
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::bad_request(format!("request body has an error: doesn't match schema: {e}")))
    }
}

// ---- responses ----

/// lakeFS's list wrapper: `{"pagination": {...}, "results": [...]}`; `next_offset` is the last item's sort key.
pub(crate) fn paginated<T: Serialize>(results: Vec<T>, has_more: bool, last_key: Option<String>) -> Response {
    let next_offset = if has_more {
        last_key.unwrap_or_default()
    } else {
        String::new()
    };
    let count = results.len();
    axum::Json(json!({
        "pagination": {
            "has_more": has_more,
            "next_offset": next_offset,
            "results": count,
            "max_per_page": MAX_PAGE,
        },
        "results": results,
    }))
    .into_response()
}

pub(crate) fn json_status(status: StatusCode, value: Value) -> Response {
    (status, axum::Json(value)).into_response()
}

pub(crate) fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

pub(crate) fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The committer recorded on commits: every key belongs to lakeFS quickstart's admin user.
pub(crate) fn committer() -> String {
    super::auth::DEFAULT_USER.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_endpoints_skip_auth() {
        assert!(!needs_auth(&Method::GET, "/api/v1/healthcheck"));
        assert!(!needs_auth(&Method::POST, "/api/v1/auth/login"));
        assert!(!needs_auth(&Method::GET, "/api/v1/setup_lakefs"));
        assert!(needs_auth(&Method::GET, "/api/v1/repositories"));
        assert!(needs_auth(&Method::GET, "/api/v1/config"));
        assert!(needs_auth(&Method::GET, "/api/v1/auth/login/x"));
    }

    #[test]
    fn amount_is_validated() {
        let p = |q: &str| Params(url::form_urlencoded::parse(q.as_bytes()).into_owned().collect());
        assert_eq!(p("").amount().unwrap(), DEFAULT_PAGE);
        assert_eq!(p("amount=-1").amount().unwrap(), DEFAULT_PAGE);
        assert_eq!(p("amount=0").amount().unwrap(), DEFAULT_PAGE);
        assert_eq!(p("amount=1000").amount().unwrap(), 1000);
        assert_eq!(p("amount=1001").amount().unwrap_err().status, StatusCode::BAD_REQUEST);
        assert_eq!(p("amount=-2").amount().unwrap_err().status, StatusCode::BAD_REQUEST);
        assert_eq!(p("amount=x").amount().unwrap_err().status, StatusCode::BAD_REQUEST);
    }
}
