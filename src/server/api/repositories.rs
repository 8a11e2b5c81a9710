//! Repositories (lakefs-api.md §4.1).

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{blocking, json_status, no_content, paginated, ApiError, ApiResult, AppState, JsonBody, Params};
use crate::server::store::Repository;

pub(super) fn routes() -> Router {
    Router::new()
        .route("/repositories", get(list).post(create))
        .route("/repositories/{repository}", get(get_repository).delete(delete))
        .route("/repositories/{repository}/metadata", get(metadata))
        .route(
            "/repositories/{repository}/settings/branch_protection",
            get(branch_protection),
        )
}

pub(super) fn repository_json(repo: &Repository) -> Value {
    json!({
        "id": repo.id,
        "creation_date": repo.creation_date,
        "default_branch": repo.default_branch,
        "storage_namespace": repo.storage_namespace,
        "storage_id": "",
        "read_only": repo.read_only,
    })
}

async fn list(Extension(state): AppState, params: Params) -> ApiResult {
    let page = params.page()?;
    let store = state.store.clone();
    let listed = blocking(move || store.list_repositories(&page)).await?;
    let last = listed.items.last().map(|r| r.id.clone());
    let results: Vec<Value> = listed.items.iter().map(repository_json).collect();
    Ok(paginated(results, listed.has_more, last))
}

#[derive(Deserialize)]
struct RepositoryCreation {
    name: String,
    storage_namespace: String,
    #[serde(default)]
    default_branch: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    sample_data: bool,
    #[serde(default)]
    #[allow(dead_code)]
    read_only: bool,
}

/// Namespaces lakeFS accepts at all, and the ones the local blockstore accepts.
fn validate_namespace(namespace: &str) -> ApiResult<()> {
    const SCHEMES: [&str; 7] = [
        "s3://",
        "gs://",
        "http://",
        "https://",
        "mem://",
        "local://",
        "transient://",
    ];
    if !SCHEMES.iter().any(|s| namespace.starts_with(s)) {
        return Err(ApiError::bad_request(
            "request body has an error: doesn't match schema: property \"storage_namespace\": string doesn't match \
             the regular expression \"^(s3|gs|https?|mem|local|transient)://.*$\"",
        ));
    }
    if !namespace.starts_with("local://") {
        return Err(ApiError::bad_request(format!(
            "failed to create repository: storage namespace '{namespace}' does not match the blockstore type \
             local (^local://)"
        )));
    }
    Ok(())
}

async fn create(Extension(state): AppState, JsonBody(body): JsonBody<RepositoryCreation>) -> ApiResult {
    validate_namespace(&body.storage_namespace)?;
    let default_branch = body
        .default_branch
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| "main".to_string());
    let store = state.store.clone();
    let repo = blocking(move || store.create_repository(&body.name, &body.storage_namespace, &default_branch))
        .await
        .map_err(|e| {
            if e.status == StatusCode::CONFLICT {
                e.context("error creating repository")
            } else {
                e
            }
        })?;
    Ok(json_status(StatusCode::CREATED, repository_json(&repo)))
}

async fn get_repository(Extension(state): AppState, Path(repository): Path<String>) -> ApiResult {
    let repo = state.store.get_repository(&repository)?;
    Ok(json_status(StatusCode::OK, repository_json(&repo)))
}

async fn delete(Extension(state): AppState, Path(repository): Path<String>) -> ApiResult {
    let store = state.store.clone();
    blocking(move || store.delete_repository(&repository)).await?;
    Ok(no_content())
}

async fn metadata(Extension(state): AppState, Path(repository): Path<String>) -> ApiResult {
    state.store.get_repository(&repository)?;
    Ok(json_status(StatusCode::OK, json!({})))
}

/// Branch protection is not supported: no rules, and clients that read them see none.
async fn branch_protection(Extension(state): AppState, Path(repository): Path<String>) -> ApiResult<Response> {
    state.store.get_repository(&repository)?;
    let mut response = json_status(StatusCode::OK, json!([]));
    response
        .headers_mut()
        .insert(header::ETAG, header::HeaderValue::from_static("\"\""));
    Ok(response.into_response())
}
