//! Branches (lakefs-api.md §4.2): listing, creation (201 with the commit id as plain text), reset, hard reset,
//! revert and the uncommitted diff.

use std::collections::BTreeMap;

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::commits::commit_json;
use super::protection::{check_write, BranchWrite};
use super::refs::diff_json;
use super::{blocking, committer, json_status, no_content, paginated, ApiError, ApiResult, AppState, JsonBody, Params};
use crate::server::store::{CommitRequest, ResetKind};

pub(super) fn routes() -> Router {
    Router::new()
        .route("/repositories/{repository}/branches", get(list).post(create))
        .route(
            "/repositories/{repository}/branches/{branch}",
            get(get_branch).delete(delete).put(reset),
        )
        .route(
            "/repositories/{repository}/branches/{branch}/hard_reset",
            put(hard_reset),
        )
        .route("/repositories/{repository}/branches/{branch}/revert", post(revert))
        .route(
            "/repositories/{repository}/branches/{branch}/cherry-pick",
            post(cherry_pick),
        )
        .route("/repositories/{repository}/branches/{branch}/diff", get(diff))
}

pub(super) fn ref_json(id: &str, commit_id: &str) -> Value {
    json!({ "id": id, "commit_id": commit_id })
}

async fn list(Extension(state): AppState, Path(repository): Path<String>, params: Params) -> ApiResult {
    let page = params.page()?;
    let show_hidden = params.bool("show_hidden", false)?;
    let store = state.store.clone();
    let listed = blocking(move || store.list_branches(&repository, &page, show_hidden)).await?;
    let last = listed.items.last().map(|b| b.id.clone());
    let results: Vec<Value> = listed.items.iter().map(|b| ref_json(&b.id, &b.head)).collect();
    Ok(paginated(results, listed.has_more, last))
}

#[derive(Deserialize)]
struct BranchCreation {
    name: String,
    source: String,
    #[serde(default)]
    hidden: bool,
    #[serde(default)]
    force: bool,
}

/// 201 with the source commit id as the body - plain text, not JSON, exactly as lakeFS answers.
async fn create(
    Extension(state): AppState,
    Path(repository): Path<String>,
    JsonBody(body): JsonBody<BranchCreation>,
) -> ApiResult<Response> {
    check_write(&state.store, &repository, None, BranchWrite::Unprotected, body.force)?;
    let store = state.store.clone();
    let commit_id = blocking(move || store.create_branch(&repository, &body.name, &body.source, body.hidden)).await?;
    Ok((
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        commit_id,
    )
        .into_response())
}

async fn get_branch(Extension(state): AppState, Path((repository, branch)): Path<(String, String)>) -> ApiResult {
    let branch = state.store.get_branch(&repository, &branch)?;
    Ok(json_status(StatusCode::OK, ref_json(&branch.id, &branch.head)))
}

async fn delete(
    Extension(state): AppState,
    Path((repository, branch)): Path<(String, String)>,
    params: Params,
) -> ApiResult {
    check_write(
        &state.store,
        &repository,
        Some(&branch),
        BranchWrite::Unprotected,
        params.bool("force", false)?,
    )?;
    let store = state.store.clone();
    blocking(move || store.delete_branch(&repository, &branch)).await?;
    Ok(no_content())
}

#[derive(Deserialize)]
struct ResetCreation {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    force: bool,
}

/// `PUT /branches/{b}`: drop staged changes of one object, a prefix, or all of them.
async fn reset(
    Extension(state): AppState,
    Path((repository, branch)): Path<(String, String)>,
    JsonBody(body): JsonBody<ResetCreation>,
) -> ApiResult {
    check_write(&state.store, &repository, Some(&branch), BranchWrite::Stage, body.force)?;
    let path = body.path.unwrap_or_default();
    let kind = match body.kind.as_str() {
        "object" if path.is_empty() => return Err(ApiError::bad_request("path is required for reset type object")),
        "object" => ResetKind::Object(path),
        "common_prefix" => ResetKind::CommonPrefix(path),
        "reset" => ResetKind::All,
        other => return Err(ApiError::bad_request(format!("unknown reset type: {other}"))),
    };
    let store = state.store.clone();
    blocking(move || store.reset_branch(&repository, &branch, kind)).await?;
    Ok(no_content())
}

async fn hard_reset(
    Extension(state): AppState,
    Path((repository, branch)): Path<(String, String)>,
    params: Params,
) -> ApiResult {
    let target = params.required("ref")?;
    check_write(
        &state.store,
        &repository,
        Some(&branch),
        BranchWrite::Commit,
        params.bool("force", false)?,
    )?;
    let store = state.store.clone();
    blocking(move || store.hard_reset_branch(&repository, &branch, &target)).await?;
    Ok(no_content())
}

#[derive(Deserialize, Default)]
pub(super) struct CommitOverrides {
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
}

impl CommitOverrides {
    /// The commit request of a revert or cherry-pick: an empty message lets the store choose lakeFS's default.
    fn into_request(overrides: Option<CommitOverrides>, allow_empty: bool) -> CommitRequest {
        let overrides = overrides.unwrap_or_default();
        CommitRequest {
            message: overrides.message.unwrap_or_default(),
            metadata: overrides.metadata.unwrap_or_default(),
            date: None,
            allow_empty,
            committer: committer(),
        }
    }
}

#[derive(Deserialize)]
struct RevertCreation {
    #[serde(rename = "ref")]
    reference: String,
    #[serde(default)]
    parent_number: u32,
    #[serde(default)]
    commit_overrides: Option<CommitOverrides>,
    #[serde(default)]
    allow_empty: bool,
    #[serde(default)]
    force: bool,
}

async fn revert(
    Extension(state): AppState,
    Path((repository, branch)): Path<(String, String)>,
    JsonBody(body): JsonBody<RevertCreation>,
) -> ApiResult {
    check_write(
        &state.store,
        &repository,
        Some(&branch),
        BranchWrite::Unprotected,
        body.force,
    )?;
    // Without a message override the store writes lakeFS's "Revert <commit id>".
    let request = CommitOverrides::into_request(body.commit_overrides, body.allow_empty);
    let store = state.store.clone();
    blocking(move || store.revert(&repository, &branch, &body.reference, body.parent_number, request)).await?;
    Ok(no_content())
}

#[derive(Deserialize)]
struct CherryPickCreation {
    #[serde(rename = "ref")]
    reference: String,
    #[serde(default)]
    parent_number: Option<u32>,
    #[serde(default)]
    commit_overrides: Option<CommitOverrides>,
    #[serde(default)]
    force: bool,
}

/// 201 with the new commit; without overrides it keeps the picked commit's message and metadata.
async fn cherry_pick(
    Extension(state): AppState,
    Path((repository, branch)): Path<(String, String)>,
    JsonBody(body): JsonBody<CherryPickCreation>,
) -> ApiResult {
    check_write(
        &state.store,
        &repository,
        Some(&branch),
        BranchWrite::Unprotected,
        body.force,
    )?;
    let request = CommitOverrides::into_request(body.commit_overrides, false);
    let parent_number = body.parent_number.unwrap_or(0);
    let store = state.store.clone();
    let commit =
        blocking(move || store.cherry_pick(&repository, &branch, &body.reference, parent_number, request)).await?;
    Ok(json_status(StatusCode::CREATED, commit_json(&commit)))
}

/// The branch's uncommitted changes.
async fn diff(
    Extension(state): AppState,
    Path((repository, branch)): Path<(String, String)>,
    params: Params,
) -> ApiResult {
    let page = params.page()?;
    let delimiter = params.delimiter();
    let store = state.store.clone();
    let listed = blocking(move || store.diff_branch(&repository, &branch, &page, delimiter.as_deref())).await?;
    let last = listed.items.last().map(|d| d.path.clone());
    let results: Vec<Value> = listed.items.iter().map(|d| diff_json(d, false)).collect();
    Ok(paginated(results, listed.has_more, last))
}
