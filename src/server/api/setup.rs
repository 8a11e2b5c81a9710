//! Health, configuration, setup and the user endpoints clients call before any I/O (lakefs-api.md §1.4, §4.9).
//!
//! The server has a single, pre-configured admin user (lakeFS quickstart's `quickstart`), so setup always reports
//! `initialized` and a second setup is refused like lakeFS refuses it.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde_json::{json, Value};

use super::session::Caller;
use super::{json_status, no_content, paginated, ApiError, ApiResult, AppState, Params};
use crate::server::auth::DEFAULT_USER;

/// The lakeFS release whose behaviour the server follows.
pub(super) const LAKEFS_VERSION: &str = "1.84.0";

pub(super) fn routes() -> Router {
    Router::new()
        .route("/healthcheck", get(healthcheck))
        .route("/config", get(config))
        .route("/config/version", get(version_config))
        .route("/config/storage", get(storage_config))
        .route("/setup_lakefs", get(setup_state).post(setup))
        .route("/setup_comm_prefs", post(setup_comm_prefs))
        .route("/auth/capabilities", get(capabilities))
        .route("/user", get(current_user))
        .route("/auth/users/{user}/credentials", get(list_credentials))
        .route("/auth/users/{user}/credentials/{access_key_id}", get(get_credentials))
        .route("/statistics", post(statistics))
}

async fn healthcheck() -> Response {
    no_content()
}

fn version_json() -> Value {
    json!({
        "version": LAKEFS_VERSION,
        "version_context": "lakeFS",
        "latest_version": LAKEFS_VERSION,
        "upgrade_recommended": false,
        "upgrade_url": "",
    })
}

fn storage_json() -> Value {
    json!({
        "blockstore_type": "local",
        "blockstore_namespace_example": "local://example-bucket/",
        "blockstore_namespace_ValidityRegex": "^local://",
        "default_namespace_prefix": "local://",
        "pre_sign_support": false,
        "pre_sign_support_ui": false,
        "import_support": false,
        "import_validity_regex": "^local://",
        "pre_sign_multipart_upload": false,
        "blockstore_id": "",
        "blockstore_description": "",
    })
}

async fn config() -> Response {
    json_status(
        StatusCode::OK,
        json!({
            "version_config": version_json(),
            "storage_config": storage_json(),
            "storage_config_list": [],
            "ui_config": {"custom_viewers": []},
            "capabilities_config": {},
        }),
    )
}

async fn version_config() -> Response {
    json_status(StatusCode::OK, version_json())
}

async fn storage_config() -> Response {
    json_status(StatusCode::OK, storage_json())
}

async fn setup_state() -> Response {
    json_status(
        StatusCode::OK,
        json!({
            "state": "initialized",
            "comm_prefs_missing": false,
            "login_config": {
                "RBAC": "none",
                "login_url": "/auth/login",
                "login_failed_message": "",
                "fallback_login_url": null,
                "fallback_login_label": null,
                "login_cookie_names": ["internal_auth_session"],
                "logout_url": "/logout",
            },
        }),
    )
}

async fn setup(body: axum::body::Bytes) -> ApiResult {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if request.get("username").and_then(Value::as_str).unwrap_or("").is_empty() {
        return Err(ApiError::bad_request("empty user name"));
    }
    Err(ApiError::new(StatusCode::CONFLICT, "lakeFS already initialized"))
}

async fn setup_comm_prefs() -> ApiResult {
    Err(ApiError::new(StatusCode::CONFLICT, "setup comm prefs already done"))
}

async fn capabilities() -> Response {
    json_status(StatusCode::OK, json!({"invite_user": false, "forgot_password": false}))
}

async fn current_user() -> Response {
    json_status(
        StatusCode::OK,
        json!({"user": {"id": DEFAULT_USER, "creation_date": 0, "friendly_name": DEFAULT_USER}}),
    )
}

fn check_user(user: &str) -> ApiResult<()> {
    if user == DEFAULT_USER {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::NOT_FOUND, "user not found"))
    }
}

/// Lists the caller's own access key (the configured key set is not enumerable, and other keys are not the
/// caller's business).
async fn list_credentials(caller: Option<Extension<Caller>>, Path(user): Path<String>, params: Params) -> ApiResult {
    check_user(&user)?;
    let page = params.page()?;
    let mut keys: Vec<String> = caller
        .map(|Extension(c)| c.access_key_id)
        .into_iter()
        .filter(|k| k.starts_with(page.prefix.as_str()) && k.as_str() > page.after.as_str())
        .collect();
    let has_more = keys.len() > page.amount;
    keys.truncate(page.amount);
    let last = keys.last().cloned();
    let results: Vec<Value> = keys
        .into_iter()
        .map(|k| json!({"access_key_id": k, "creation_date": 0}))
        .collect();
    Ok(paginated(results, has_more, last))
}

async fn get_credentials(Extension(state): AppState, Path((user, access_key_id)): Path<(String, String)>) -> ApiResult {
    check_user(&user)?;
    if state.config.credentials.secret(&access_key_id).is_none() {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "credentials not found"));
    }
    Ok(json_status(
        StatusCode::OK,
        json!({"access_key_id": access_key_id, "creation_date": 0}),
    ))
}

/// Client telemetry (lakectl sends it before every command): accepted and dropped.
async fn statistics() -> Response {
    no_content()
}
