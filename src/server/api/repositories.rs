//! Repositories (lakefs-api.md §4.1).

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Extension, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::protection::{check_write, BranchWrite};
use super::{blocking, json_status, no_content, paginated, ApiError, ApiResult, AppState, JsonBody, Params};
use crate::server::store::{PageRequest, Repository, Store, StoreError, MAX_PAGE};

pub(super) fn routes() -> Router {
    Router::new()
        .route("/repositories", get(list).post(create))
        .route("/repositories/{repository}", get(get_repository).delete(delete))
        .route("/repositories/{repository}/metadata", get(metadata))
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

/// `search` keeps repositories whose id contains the string (lakeFS's filter), paging over the matches.
async fn list(Extension(state): AppState, params: Params) -> ApiResult {
    let page = params.page()?;
    let search = params.get_or_empty("search");
    let store = state.store.clone();
    let (items, has_more) = blocking(move || {
        if search.is_empty() {
            let listed = store.list_repositories(&page)?;
            return Ok((listed.items, listed.has_more));
        }
        let wanted = page.amount;
        let mut scan = PageRequest {
            amount: MAX_PAGE,
            ..page
        };
        let mut matches = Vec::new();
        loop {
            let listed = store.list_repositories(&scan)?;
            matches.extend(listed.items.iter().filter(|r| r.id.contains(search.as_str())).cloned());
            if matches.len() > wanted {
                matches.truncate(wanted);
                return Ok((matches, true));
            }
            match listed.items.last() {
                Some(last) if listed.has_more => scan.after = last.id.clone(),
                _ => return Ok((matches, false)),
            }
        }
    })
    .await?;
    let last = items.last().map(|r| r.id.clone());
    let results: Vec<Value> = items.iter().map(repository_json).collect();
    Ok(paginated(results, has_more, last))
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

/// The repository already using `namespace`, if any: lakeFS refuses to share a namespace (it would find its own
/// `_lakefs/` data there).
fn namespace_owner(store: &Store, namespace: &str) -> Result<Option<String>, StoreError> {
    let wanted = namespace.trim_end_matches('/');
    let mut page = PageRequest {
        prefix: String::new(),
        after: String::new(),
        amount: MAX_PAGE,
    };
    loop {
        let listed = store.list_repositories(&page)?;
        if let Some(repo) = listed
            .items
            .iter()
            .find(|r| r.storage_namespace.trim_end_matches('/') == wanted)
        {
            return Ok(Some(repo.id.clone()));
        }
        match listed.items.last() {
            Some(last) if listed.has_more => page.after = last.id.clone(),
            _ => return Ok(None),
        }
    }
}

async fn create(Extension(state): AppState, JsonBody(body): JsonBody<RepositoryCreation>) -> ApiResult {
    validate_namespace(&body.storage_namespace)?;
    let default_branch = body
        .default_branch
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| "main".to_string());
    let store = state.store.clone();
    let read_only = body.read_only;
    let repo = blocking(move || {
        if let Some(owner) = namespace_owner(&store, &body.storage_namespace)? {
            if owner != body.name {
                return Err(StoreError::InvalidArgument(format!(
                    "failed to create repository: storage namespace {} already in use",
                    body.storage_namespace
                )));
            }
        }
        let repo = store.create_repository(&body.name, &body.storage_namespace, &default_branch)?;
        if read_only {
            return store.set_repository_read_only(&repo.id, true);
        }
        Ok(repo)
    })
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

async fn delete(Extension(state): AppState, Path(repository): Path<String>, params: Params) -> ApiResult {
    check_write(
        &state.store,
        &repository,
        None,
        BranchWrite::Unprotected,
        params.bool("force", false)?,
    )?;
    let store = state.store.clone();
    blocking(move || store.delete_repository(&repository)).await?;
    Ok(no_content())
}

async fn metadata(Extension(state): AppState, Path(repository): Path<String>) -> ApiResult {
    state.store.get_repository(&repository)?;
    Ok(json_status(StatusCode::OK, json!({})))
}
