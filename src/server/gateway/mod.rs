//! S3 gateway (lakefs-api.md §7).

use std::sync::Arc;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};

use super::ServerState;

/// True when lakeFS would route this request to the S3 gateway (lakefs-api.md §1.1).
pub fn is_gateway_request(state: &ServerState, request: &Request) -> bool {
    let _ = (state, request);
    false
}

pub async fn handle(state: Arc<ServerState>, request: Request) -> Response {
    let _ = (state, request);
    (axum::http::StatusCode::NOT_IMPLEMENTED, "not implemented").into_response()
}
