//! Who is calling: Basic auth with an access key pair, or a token from `POST /auth/login` (lakefs-api.md §1.2).
//!
//! Tokens are `<access key id>.<expiry unix seconds>.<hex HMAC-SHA256>`; the HMAC key mixes a per-process random
//! key with the access key's secret, so a token dies with the process, with the key's removal, and with a change
//! of its secret. lakeFS issues JWTs; clients treat the token as opaque, so the format is free.

use std::sync::{Arc, OnceLock};

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::json;
use sha2::Sha256;

use super::{now_unix, ApiError, ApiResult, AppState, JsonBody};
use crate::server::auth::constant_time_eq;
use crate::server::ServerState;

/// Token lifetime, as lakeFS's default login token.
const TOKEN_TTL_SECONDS: i64 = 7 * 24 * 3600;
/// The cookie lakeFS's UI session uses.
const SESSION_COOKIE: &str = "internal_auth_session";

pub(super) fn routes() -> Router {
    Router::new().route("/auth/login", post(login))
}

/// The authenticated caller, available to handlers as a request extension.
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    /// Every key belongs to the one user, [`crate::server::auth::DEFAULT_USER`].
    pub access_key_id: String,
}

impl Caller {
    fn new(access_key_id: &str) -> Self {
        Caller {
            access_key_id: access_key_id.to_string(),
        }
    }
}

/// The caller behind the request's credentials, or `None` when they are missing or wrong.
pub(super) fn authenticate(state: &ServerState, headers: &HeaderMap) -> Option<Caller> {
    let credentials = &state.config.credentials;
    if let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let (scheme, rest) = value.split_once(' ')?;
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD.decode(rest).ok()?;
            let decoded = String::from_utf8(decoded).ok()?;
            let (access_key_id, secret) = decoded.split_once(':')?;
            return credentials
                .verify(access_key_id, secret)
                .then(|| Caller::new(access_key_id));
        }
        if scheme.eq_ignore_ascii_case("bearer") {
            return verify_token(state, rest);
        }
        return None;
    }
    let cookies = headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok());
    for cookie in cookies.flat_map(|c| c.split(';')) {
        if let Some((name, value)) = cookie.trim().split_once('=') {
            if name == SESSION_COOKIE {
                return verify_token(state, value);
            }
        }
    }
    None
}

fn process_key() -> &'static [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    KEY.get_or_init(rand::random)
}

fn signature(secret: &str, access_key_id: &str, expiry: i64) -> String {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let mut key = process_key().to_vec();
    key.extend_from_slice(secret.as_bytes());
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&key) else {
        return String::new();
    };
    mac.update(access_key_id.as_bytes());
    mac.update(b".");
    mac.update(expiry.to_string().as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn issue_token(secret: &str, access_key_id: &str, expiry: i64) -> String {
    format!("{access_key_id}.{expiry}.{}", signature(secret, access_key_id, expiry))
}

fn verify_token(state: &ServerState, token: &str) -> Option<Caller> {
    let mut fields = token.splitn(3, '.');
    let (access_key_id, expiry, mac) = (fields.next()?, fields.next()?, fields.next()?);
    let expiry: i64 = expiry.parse().ok()?;
    if expiry < now_unix() {
        return None;
    }
    let secret = state.config.credentials.secret(access_key_id)?;
    constant_time_eq(signature(secret, access_key_id, expiry).as_bytes(), mac.as_bytes())
        .then(|| Caller::new(access_key_id))
}

#[derive(Deserialize)]
struct LoginInformation {
    access_key_id: String,
    secret_access_key: String,
}

/// `POST /auth/login`: 200 `{"token","token_expiration"}` plus the session cookie; 401 on bad keys.
async fn login(axum::Extension(state): AppState, JsonBody(body): JsonBody<LoginInformation>) -> ApiResult<Response> {
    let state: Arc<ServerState> = state;
    if !state
        .config
        .credentials
        .verify(&body.access_key_id, &body.secret_access_key)
    {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "error authenticating request"));
    }
    let expiry = now_unix() + TOKEN_TTL_SECONDS;
    let token = issue_token(&body.secret_access_key, &body.access_key_id, expiry);
    let mut response = axum::Json(json!({ "token": token, "token_expiration": expiry })).into_response();
    let cookie = format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={TOKEN_TTL_SECONDS}");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}
