//! Diff between refs, merge and merge base (lakefs-api.md §4.4, §5.3).
//!
//! Merge order of checks follows lakeFS: the destination must exist and be clean, and the merge must be possible
//! (no unresolved conflict, something to merge) before the pre-merge hooks run - their source ref is the source
//! *commit* (§8.2). The store's merge is one atomic transaction that cannot pause for a webhook, so when hooks
//! are due the handler pre-computes conflicts from the three-dot diff, runs the hooks, then merges (which checks
//! everything again). A conflict answers 409 with the `MergeResult` body `{"reference": ""}`, not an error body.

use std::collections::BTreeMap;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Extension, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::protection::{check_write, BranchWrite};
use super::{blocking, committer, json_status, paginated, ApiError, ApiResult, AppState, JsonBody, Params};
use crate::server::hooks::{self, EventType, HookContext, HookError};
use crate::server::store::{
    Commit, DiffEntry, DiffKind, DiffType, MergeRequest, MergeStrategy, PageRequest, Store, StoreError, MAX_PAGE,
};

pub(super) fn routes() -> Router {
    Router::new()
        .route("/repositories/{repository}/refs/{ref}/diff/{right}", get(diff_refs))
        .route(
            "/repositories/{repository}/refs/{ref}/merge/{branch}",
            get(merge_base).post(merge),
        )
}

pub(super) fn diff_json(entry: &DiffEntry, include_right_stats: bool) -> Value {
    let kind = match entry.kind {
        DiffType::Added => "added",
        DiffType::Removed => "removed",
        DiffType::Changed => "changed",
        DiffType::Conflict => "conflict",
        DiffType::PrefixChanged => "prefix_changed",
    };
    let mut out = Map::new();
    out.insert("type".into(), json!(kind));
    out.insert("path".into(), json!(entry.path));
    out.insert(
        "path_type".into(),
        json!(if entry.is_prefix { "common_prefix" } else { "object" }),
    );
    if let Some(size) = entry.size.filter(|_| !entry.is_prefix) {
        out.insert("size_bytes".into(), json!(size));
    }
    if include_right_stats {
        if let Some(right) = &entry.right {
            let mut stats = Map::new();
            stats.insert("checksum".into(), json!(right.checksum));
            stats.insert("mtime".into(), json!(right.mtime));
            stats.insert("content_type".into(), json!(right.content_type));
            if !right.metadata.is_empty() {
                stats.insert("metadata".into(), json!(right.metadata));
            }
            out.insert("right".into(), Value::Object(stats));
        }
    }
    Value::Object(out)
}

async fn diff_refs(
    Extension(state): AppState,
    Path((repository, left, right)): Path<(String, String, String)>,
    params: Params,
) -> ApiResult {
    let page: PageRequest = params.page()?;
    let delimiter = params.delimiter();
    let include_right_stats = params.bool("include_right_stats", false)?;
    let kind = match params.get("type").unwrap_or("three_dot") {
        "three_dot" | "" => DiffKind::ThreeDot,
        "two_dot" => DiffKind::TwoDot,
        other => {
            return Err(ApiError::bad_request(format!(
                "parameter \"type\" in query has an error: value is not one of the allowed values [\"two_dot\",\
                 \"three_dot\"]: {other}"
            )))
        }
    };
    let store = state.store.clone();
    let listed =
        blocking(move || store.diff_refs(&repository, &left, &right, kind, &page, delimiter.as_deref())).await?;
    let last = listed.items.last().map(|d| d.path.clone());
    let results: Vec<Value> = listed.items.iter().map(|d| diff_json(d, include_right_stats)).collect();
    Ok(paginated(results, listed.has_more, last))
}

#[derive(Deserialize, Default)]
struct Merge {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
    #[serde(default)]
    strategy: Option<String>,
    #[serde(default)]
    allow_empty: bool,
    #[serde(default)]
    force: bool,
    #[serde(default)]
    squash_merge: bool,
}

fn parse_strategy(value: Option<&str>) -> ApiResult<MergeStrategy> {
    match value.unwrap_or("") {
        "" => Ok(MergeStrategy::Default),
        "dest-wins" => Ok(MergeStrategy::DestWins),
        "source-wins" => Ok(MergeStrategy::SourceWins),
        _ => Err(ApiError::bad_request("invalid merge strategy")),
    }
}

async fn merge(
    Extension(state): AppState,
    Path((repository, source, destination)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<Merge>,
) -> ApiResult {
    let strategy = parse_strategy(body.strategy.as_deref())?;
    // lakeFS: `force` also lets a merge through that brings no changes.
    let allow_empty = body.allow_empty || body.force;
    let message = body.message.filter(|m| !m.is_empty());
    let request = MergeRequest {
        message: message.clone(),
        metadata: body.metadata.unwrap_or_default(),
        strategy,
        allow_empty,
        squash: body.squash_merge,
        committer: committer(),
    };

    // Destination first (404, 403 read-only), then a clean destination (400), then the source commit (404/400).
    let record = check_write(
        &state.store,
        &repository,
        Some(&destination),
        BranchWrite::Unprotected,
        body.force,
    )?;
    state.store.get_branch(&repository, &destination)?;
    let store = state.store.clone();
    let (repo, dest) = (repository.clone(), destination.clone());
    let dirty = blocking(move || {
        let probe = PageRequest {
            prefix: String::new(),
            after: String::new(),
            amount: 1,
        };
        store
            .diff_branch(&repo, &dest, &probe, None)
            .map(|page| !page.items.is_empty())
    })
    .await?;
    if dirty {
        return Err(StoreError::DirtyBranch.into());
    }
    let source_commit = state.store.get_commit(&repository, &source)?;

    let context = HookContext {
        event: EventType::PreMerge,
        repository: repository.clone(),
        branch: destination.clone(),
        source_ref: source_commit.id.clone(),
        commit_message: message.unwrap_or_else(|| format!("Merge '{source}' into '{destination}'")),
        committer: request.committer.clone(),
        commit_metadata: request.metadata.clone(),
        merge_source: Some(source.clone()),
    };
    let prepared = if record.read_only {
        None
    } else {
        hooks::prepare_pre_hooks(&state, &context).await?
    };
    let run = match prepared {
        None => None,
        Some(prepared) => {
            // lakeFS computes the merge before running pre-merge hooks: a conflicting or empty merge never
            // reaches a webhook.
            let store = state.store.clone();
            let (repo, dest, source_id) = (repository.clone(), destination.clone(), source_commit.id.clone());
            let precheck = tokio::task::spawn_blocking(move || {
                precheck_merge(&store, &repo, &source_id, &dest, strategy, allow_empty)
            })
            .await
            .map_err(|e| ApiError::internal(format!("merge task failed: {e}")))?;
            if let Err(error) = precheck {
                return merge_response(Err(error));
            }
            match prepared.run(&state).await {
                Ok(run) => Some(run),
                Err(HookError::Aborted { message, .. }) => {
                    return Err(ApiError::new(
                        StatusCode::PRECONDITION_FAILED,
                        format!("update branch {destination}: {message}"),
                    ))
                }
                Err(other) => return Err(other.into()),
            }
        }
    };

    let store = state.store.clone();
    let (repo, dest) = (repository.clone(), destination.clone());
    let result = tokio::task::spawn_blocking(move || store.merge(&repo, &source, &dest, request))
        .await
        .map_err(|e| ApiError::internal(format!("merge task failed: {e}")))?;
    if let Some(mut run) = run {
        run.commit_id = result.as_ref().map(|c| c.id.clone()).unwrap_or_default();
        hooks::record_run(&state, &repository, &run);
    }
    merge_response(result)
}

/// 200 `{"reference": id}`; a conflict is 409 with a `MergeResult` body, not an error body.
fn merge_response(result: Result<Commit, StoreError>) -> ApiResult {
    match result {
        Ok(commit) => Ok(json_status(StatusCode::OK, json!({ "reference": commit.id }))),
        Err(StoreError::MergeConflict { paths }) => {
            tracing::debug!(?paths, "merge conflict");
            Ok(json_status(StatusCode::CONFLICT, json!({ "reference": "" })))
        }
        Err(other) => Err(other.into()),
    }
}

/// What the merge would find before it writes anything: conflicts (unless a strategy resolves them) and an
/// empty change set (unless allowed), read from the three-dot diff of the destination and the source commit.
fn precheck_merge(
    store: &Store,
    repository: &str,
    source_commit: &str,
    destination: &str,
    strategy: MergeStrategy,
    allow_empty: bool,
) -> Result<(), StoreError> {
    let mut page = PageRequest {
        prefix: String::new(),
        after: String::new(),
        amount: MAX_PAGE,
    };
    let mut any_change = false;
    let mut conflicts = Vec::new();
    loop {
        let listed = store.diff_refs(repository, destination, source_commit, DiffKind::ThreeDot, &page, None)?;
        any_change |= !listed.items.is_empty();
        conflicts.extend(
            listed
                .items
                .iter()
                .filter(|d| d.kind == DiffType::Conflict)
                .map(|d| d.path.clone()),
        );
        if strategy != MergeStrategy::Default && any_change {
            break;
        }
        match listed.items.last() {
            Some(last) if listed.has_more => page.after = last.path.clone(),
            _ => break,
        }
    }
    if strategy == MergeStrategy::Default && !conflicts.is_empty() {
        return Err(StoreError::MergeConflict { paths: conflicts });
    }
    if !any_change && !allow_empty {
        return Err(StoreError::NoChanges);
    }
    Ok(())
}

async fn merge_base(
    Extension(state): AppState,
    Path((repository, source, destination)): Path<(String, String, String)>,
) -> ApiResult {
    let store = state.store.clone();
    let base = blocking(move || store.merge_base(&repository, &source, &destination)).await?;
    Ok(json_status(
        StatusCode::OK,
        json!({
            "source_commit_id": base.source_commit_id,
            "destination_commit_id": base.destination_commit_id,
            "base_commit_id": base.base_commit_id,
        }),
    ))
}
