//! Actions runs (lakefs-api.md §4.8, §5.5): what the pre-commit / pre-merge hooks did, and their logs.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use serde_json::{json, Map, Value};

use super::{blocking, json_status, paginated, ApiError, ApiResult, AppState, Params};
use crate::server::store::{ActionRun, HookRun};

pub(super) fn routes() -> Router {
    let runs = "/repositories/{repository}/actions/runs";
    Router::new()
        .route(runs, get(list_runs))
        .route(&format!("{runs}/{{run_id}}"), get(get_run))
        .route(&format!("{runs}/{{run_id}}/hooks"), get(list_hooks))
        .route(
            &format!("{runs}/{{run_id}}/hooks/{{hook_run_id}}/output"),
            get(hook_output),
        )
}

fn run_json(run: &ActionRun) -> Value {
    let mut out = Map::new();
    out.insert("run_id".into(), json!(run.run_id));
    out.insert("branch".into(), json!(run.branch));
    out.insert("start_time".into(), json!(run.start_time));
    if let Some(end) = &run.end_time {
        out.insert("end_time".into(), json!(end));
    }
    out.insert("event_type".into(), json!(run.event_type));
    out.insert("status".into(), json!(run.status));
    out.insert("commit_id".into(), json!(run.commit_id));
    Value::Object(out)
}

fn hook_json(hook: &HookRun) -> Value {
    let mut out = Map::new();
    out.insert("hook_run_id".into(), json!(hook.hook_run_id));
    out.insert("action".into(), json!(hook.action));
    out.insert("hook_id".into(), json!(hook.hook_id));
    out.insert("start_time".into(), json!(hook.start_time));
    if let Some(end) = &hook.end_time {
        out.insert("end_time".into(), json!(end));
    }
    out.insert("status".into(), json!(hook.status));
    Value::Object(out)
}

async fn list_runs(Extension(state): AppState, Path(repository): Path<String>, params: Params) -> ApiResult {
    let page = params.page()?;
    let branch = params.get("branch").filter(|b| !b.is_empty()).map(str::to_string);
    let commit = params.get("commit").filter(|c| !c.is_empty()).map(str::to_string);
    let store = state.store.clone();
    let listed =
        blocking(move || store.list_action_runs(&repository, branch.as_deref(), commit.as_deref(), &page)).await?;
    let last = listed.items.last().map(|r| r.run_id.clone());
    let results: Vec<Value> = listed.items.iter().map(run_json).collect();
    Ok(paginated(results, listed.has_more, last))
}

async fn get_run(Extension(state): AppState, Path((repository, run_id)): Path<(String, String)>) -> ApiResult {
    let run = state.store.get_action_run(&repository, &run_id)?;
    Ok(json_status(StatusCode::OK, run_json(&run)))
}

async fn list_hooks(
    Extension(state): AppState,
    Path((repository, run_id)): Path<(String, String)>,
    params: Params,
) -> ApiResult {
    let page = params.page()?;
    let run = state.store.get_action_run(&repository, &run_id)?;
    let mut hooks: Vec<&HookRun> = run
        .hooks
        .iter()
        .filter(|h| h.hook_run_id.as_str() > page.after.as_str())
        .collect();
    hooks.sort_by(|a, b| a.hook_run_id.cmp(&b.hook_run_id));
    let has_more = hooks.len() > page.amount;
    hooks.truncate(page.amount);
    let last = hooks.last().map(|h| h.hook_run_id.clone());
    let results: Vec<Value> = hooks.into_iter().map(hook_json).collect();
    Ok(paginated(results, has_more, last))
}

async fn hook_output(
    Extension(state): AppState,
    Path((repository, run_id, hook_run_id)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    let run = state.store.get_action_run(&repository, &run_id)?;
    let hook = run
        .hooks
        .into_iter()
        .find(|h| h.hook_run_id == hook_run_id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "hook run not found"))?;
    let disposition = format!("attachment; filename={hook_run_id}.log");
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        hook.output,
    )
        .into_response())
}
