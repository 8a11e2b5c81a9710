//! REST API `/api/v1` (lakefs-api.md §4).

use std::sync::Arc;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};

use super::ServerState;

pub async fn handle(state: Arc<ServerState>, request: Request) -> Response {
    let _ = (state, request);
    (axum::http::StatusCode::NOT_IMPLEMENTED, "not implemented").into_response()
}
