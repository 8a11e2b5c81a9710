//! Write guards shared by every mutating endpoint: read-only repositories and branch protection rules
//! (lakefs-api.md §6, §4.1).
//!
//! A read-only repository refuses every mutation with 403 `read-only repository` unless the request says
//! `force: true` (query or body, where the endpoint has it). Protection rules are glob patterns stored as the
//! repository's `branch_protection` setting; on a matching branch, staging writes (upload, delete, copy,
//! metadata update, reset) and commits/hard resets are refused with 403, while merges and reverts are allowed,
//! as in lakeFS.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{json_status, no_content, ApiError, ApiResult, AppState, JsonBody};
use crate::server::store::{Repository, Store};

const SETTING: &str = crate::server::store::BRANCH_PROTECTION_SETTING;

pub(super) fn routes() -> Router {
    Router::new().route(
        "/repositories/{repository}/settings/branch_protection",
        get(get_rules).put(set_rules),
    )
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Rule {
    pattern: String,
}

/// What a request is about to do to a branch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BranchWrite {
    /// Changes the staging area: upload, delete, copy, metadata update, reset.
    Stage,
    /// Moves the branch head on its own: commit, hard reset.
    Commit,
    /// Merge into, revert, branch/tag creation and deletion: allowed on protected branches.
    Unprotected,
}

/// Refuses a mutation of `repository` (and `branch`) that its read-only flag or protection rules forbid;
/// returns the repository record.
pub(super) fn check_write(
    store: &Store,
    repository: &str,
    branch: Option<&str>,
    write: BranchWrite,
    force: bool,
) -> ApiResult<Repository> {
    let repo = store.get_repository(repository)?;
    if repo.read_only && !force {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "read-only repository"));
    }
    let Some(branch) = branch else { return Ok(repo) };
    if write == BranchWrite::Unprotected {
        return Ok(repo);
    }
    if store.is_branch_protected(repository, branch)? {
        let message = match write {
            BranchWrite::Commit => "cannot commit to protected branch",
            _ => "cannot write to protected branch",
        };
        return Err(ApiError::new(StatusCode::FORBIDDEN, message));
    }
    Ok(repo)
}

/// The rules and their ETag (a digest of the stored text, so any change changes it).
fn load_rules(store: &Store, repository: &str) -> ApiResult<(Vec<Rule>, String)> {
    let stored = store.get_setting(repository, SETTING)?;
    let text = stored.as_deref().unwrap_or("[]");
    let rules: Vec<Rule> = serde_json::from_str(text)
        .map_err(|e| ApiError::internal(format!("stored branch protection rules are unreadable: {e}")))?;
    let etag = format!("\"{}\"", hex::encode(Sha256::digest(text.as_bytes())));
    Ok((rules, etag))
}

async fn get_rules(
    Extension(state): AppState,
    axum::extract::Path(repository): axum::extract::Path<String>,
) -> ApiResult {
    state.store.get_repository(&repository)?;
    let (rules, etag) = load_rules(&state.store, &repository)?;
    let mut response: Response = json_status(StatusCode::OK, serde_json::json!(rules));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    Ok(response)
}

async fn set_rules(
    Extension(state): AppState,
    axum::extract::Path(repository): axum::extract::Path<String>,
    headers: HeaderMap,
    JsonBody(rules): JsonBody<Vec<Rule>>,
) -> ApiResult {
    check_write(&state.store, &repository, None, BranchWrite::Unprotected, false)?;
    for rule in &rules {
        glob::Pattern::new(&rule.pattern)
            .map_err(|e| ApiError::bad_request(format!("invalid branch protection pattern '{}': {e}", rule.pattern)))?;
    }
    let (_, etag) = load_rules(&state.store, &repository)?;
    if let Some(expected) = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) {
        if expected.trim() != etag {
            return Err(ApiError::new(StatusCode::PRECONDITION_FAILED, "Precondition failed"));
        }
    }
    let text = serde_json::to_string(&rules).map_err(|e| ApiError::internal(e.to_string()))?;
    let value = if rules.is_empty() { None } else { Some(text.as_str()) };
    state.store.set_setting(&repository, SETTING, value)?;
    Ok(no_content())
}
