//! Commits and the commit log (lakefs-api.md §4.4). A commit first runs the branch's pre-commit hooks (§8).

use std::collections::BTreeMap;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::protection::{check_write, BranchWrite};
use super::{blocking, committer, json_status, paginated, ApiError, ApiResult, AppState, JsonBody, Params};
use crate::server::hooks::{self, EventType, HookContext, HookError};
use crate::server::store::{Commit, CommitRequest, LogRequest};

pub(super) fn routes() -> Router {
    Router::new()
        .route("/repositories/{repository}/branches/{branch}/commits", post(commit))
        .route("/repositories/{repository}/commits/{commit}", get(get_commit))
        .route("/repositories/{repository}/refs/{ref}/commits", get(log))
}

pub(super) fn commit_json(commit: &Commit) -> Value {
    json!({
        "id": commit.id,
        "parents": commit.parents,
        "committer": commit.committer,
        "message": commit.message,
        "creation_date": commit.creation_date,
        "meta_range_id": commit.meta_range_id,
        "metadata": commit.metadata,
        "generation": commit.generation,
        "version": commit.version,
    })
}

/// A failed pre-hook is 412 with lakeFS's message; unreadable action files are a server error (500).
impl From<HookError> for ApiError {
    fn from(error: HookError) -> Self {
        match error {
            HookError::Aborted { message, .. } => ApiError::new(StatusCode::PRECONDITION_FAILED, message),
            HookError::InvalidActions(message) => ApiError::internal(message),
            HookError::Store(e) => e.into(),
        }
    }
}

#[derive(Deserialize)]
struct CommitCreation {
    message: String,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    #[serde(default)]
    date: Option<i64>,
    #[serde(default)]
    allow_empty: bool,
    #[serde(default)]
    force: bool,
}

async fn commit(
    Extension(state): AppState,
    Path((repository, branch)): Path<(String, String)>,
    params: Params,
    JsonBody(body): JsonBody<CommitCreation>,
) -> ApiResult {
    if params.get("source_metarange").is_some_and(|v| !v.is_empty()) {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "source_metarange is not supported",
        ));
    }
    // 404 for a missing repository or branch, 403 for a read-only repository or protected branch, before any
    // hook runs.
    let repo = check_write(
        &state.store,
        &repository,
        Some(&branch),
        BranchWrite::Commit,
        body.force,
    )?;
    state.store.get_branch(&repository, &branch)?;
    let request = CommitRequest {
        message: body.message,
        metadata: body.metadata,
        date: body.date,
        allow_empty: body.allow_empty,
        committer: committer(),
    };
    let context = HookContext {
        event: EventType::PreCommit,
        repository: repository.clone(),
        branch: branch.clone(),
        source_ref: branch.clone(),
        commit_message: request.message.clone(),
        committer: request.committer.clone(),
        commit_metadata: request.metadata.clone(),
        merge_source: None,
    };
    // Hooks never run in read-only repositories (a forced commit there skips them, as in lakeFS).
    let run = if repo.read_only {
        None
    } else {
        hooks::run_pre_hooks(&state, &context).await?
    };
    let store = state.store.clone();
    let repo = repository.clone();
    let result = blocking(move || store.commit(&repo, &branch, request)).await;
    if let Some(mut run) = run {
        run.commit_id = result.as_ref().map(|c| c.id.clone()).unwrap_or_default();
        hooks::record_run(&state, &repository, &run);
    }
    let commit = result.map_err(|e| e.context("commit"))?;
    Ok(json_status(StatusCode::CREATED, commit_json(&commit)))
}

async fn get_commit(Extension(state): AppState, Path((repository, commit)): Path<(String, String)>) -> ApiResult {
    let commit = state.store.get_commit(&repository, &commit)?;
    Ok(json_status(StatusCode::OK, commit_json(&commit)))
}

fn parse_since(value: &str) -> ApiResult<i64> {
    time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|e| {
            ApiError::bad_request(format!(
                "parameter \"since\" in query has an error: invalid date-time: {e}"
            ))
        })
}

async fn log(
    Extension(state): AppState,
    Path((repository, reference)): Path<(String, String)>,
    params: Params,
) -> ApiResult {
    let request = LogRequest {
        after: params.get_or_empty("after"),
        amount: params.amount()?,
        objects: params.all("objects"),
        prefixes: params.all("prefixes"),
        limit: params.bool("limit", false)?,
        first_parent: params.bool("first_parent", false)?,
        since: params
            .get("since")
            .filter(|s| !s.is_empty())
            .map(parse_since)
            .transpose()?,
        stop_at: params.get("stop_at").filter(|s| !s.is_empty()).map(str::to_string),
    };
    let store = state.store.clone();
    let listed = blocking(move || store.log(&repository, &reference, &request)).await?;
    let last = listed.items.last().map(|c| c.id.clone());
    let results: Vec<Value> = listed.items.iter().map(commit_json).collect();
    Ok(paginated(results, listed.has_more, last))
}
