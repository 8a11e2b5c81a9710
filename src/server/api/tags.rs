//! Tags (lakefs-api.md §4.3): immutable names for commits; re-creating an existing tag is 409.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Extension, Router};
use serde::Deserialize;
use serde_json::Value;

use super::branches::ref_json;
use super::protection::{check_write, BranchWrite};
use super::{blocking, json_status, no_content, paginated, ApiResult, AppState, JsonBody, Params};

pub(super) fn routes() -> Router {
    Router::new()
        .route("/repositories/{repository}/tags", get(list).post(create))
        .route("/repositories/{repository}/tags/{tag}", get(get_tag).delete(delete))
}

async fn list(Extension(state): AppState, Path(repository): Path<String>, params: Params) -> ApiResult {
    let page = params.page()?;
    let store = state.store.clone();
    let listed = blocking(move || store.list_tags(&repository, &page)).await?;
    let last = listed.items.last().map(|t| t.id.clone());
    let results: Vec<Value> = listed.items.iter().map(|t| ref_json(&t.id, &t.commit_id)).collect();
    Ok(paginated(results, listed.has_more, last))
}

#[derive(Deserialize)]
struct TagCreation {
    id: String,
    #[serde(rename = "ref")]
    reference: String,
    #[serde(default)]
    force: bool,
}

async fn create(
    Extension(state): AppState,
    Path(repository): Path<String>,
    JsonBody(body): JsonBody<TagCreation>,
) -> ApiResult {
    check_write(&state.store, &repository, None, BranchWrite::Unprotected, body.force)?;
    let store = state.store.clone();
    let tag = blocking(move || store.create_tag(&repository, &body.id, &body.reference)).await?;
    Ok(json_status(StatusCode::CREATED, ref_json(&tag.id, &tag.commit_id)))
}

async fn get_tag(Extension(state): AppState, Path((repository, tag)): Path<(String, String)>) -> ApiResult {
    let tag = state.store.get_tag(&repository, &tag)?;
    Ok(json_status(StatusCode::OK, ref_json(&tag.id, &tag.commit_id)))
}

async fn delete(
    Extension(state): AppState,
    Path((repository, tag)): Path<(String, String)>,
    params: Params,
) -> ApiResult {
    check_write(
        &state.store,
        &repository,
        None,
        BranchWrite::Unprotected,
        params.bool("force", false)?,
    )?;
    let store = state.store.clone();
    blocking(move || store.delete_tag(&repository, &tag)).await?;
    Ok(no_content())
}
