//! Fault mode of the test server (`lakefs-fuse serve --faults SPEC`, or `LAKEFS_FUSE_SERVE_FAULTS`): a
//! middleware in front of both the REST API and the S3 gateway that injects the faults of a
//! [`FaultPlan`] (spec syntax in [`crate::lakefs::fault`]) into real HTTP responses, so clients meet them through
//! their real transport, parsers and retry policies.
//!
//! How each fault looks on the wire:
//! - `error`, `unavailable`, `slowdown`: the request is not executed; the answer is 500, 503, or throttling
//!   (S3 `SlowDown` with 503 on the gateway, 429 on the REST API), with an error body in the front end's format.
//! - `latency`, `stall`: the request waits, then runs normally.
//! - `reset`, `truncate` on a GET: the request runs, the headers (with the full `Content-Length`) go out, then the
//!   body stops - at once (`reset`) or after half of it (`truncate`) - and the connection is dropped. The client
//!   sees an incomplete body, never a short one that looks whole.
//! - `reset`, `truncate` on any other method: the request is not executed and the connection drops after the
//!   headers. Responses of requests that changed something are never lost, so a client's view of which changes
//!   happened stays exact (losing them is what the client-side [`crate::lakefs::fault::FaultyLakeFs`] covers).
//!
//! Health checks (`/_health`, `/api/v1/healthcheck`) are never faulted: tests and orchestrators use them to learn
//! that the server is up.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use super::ServerState;
use crate::lakefs::fault::Fault;

/// The middleware: draws a fate for the request and applies it.
pub async fn inject(State(state): State<Arc<ServerState>>, request: Request, next: Next) -> Response {
    let Some(plan) = state.faults.as_ref() else {
        return next.run(request).await;
    };
    let path = request.uri().path();
    if path == "/_health" || path == "/api/v1/healthcheck" {
        return next.run(request).await;
    }
    let gateway = super::gateway::is_gateway_request(&state, &request);
    let reads = request.method() == Method::GET;
    let draw = plan.draw();
    if let Some(delay) = draw.latency {
        tokio::time::sleep(delay).await;
    }
    let Some(fault) = draw.fault else {
        return next.run(request).await;
    };
    tracing::debug!(?fault, method = %request.method(), uri = %request.uri(), "injecting fault");
    match fault {
        Fault::ServerError => error(gateway, StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
        Fault::Unavailable => error(gateway, StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable"),
        Fault::SlowDown if gateway => error(gateway, StatusCode::SERVICE_UNAVAILABLE, "SlowDown"),
        Fault::SlowDown => error(gateway, StatusCode::TOO_MANY_REQUESTS, "SlowDown"),
        Fault::Stall(delay) => {
            tokio::time::sleep(delay).await;
            next.run(request).await
        }
        Fault::Reset | Fault::Truncate if reads => {
            let response = next.run(request).await;
            let keep_half = fault == Fault::Truncate;
            cut_body(response, keep_half)
        }
        Fault::Reset | Fault::Truncate => {
            drop(request);
            let mut response = cut_body(StatusCode::OK.into_response(), false);
            // Promise a body that never comes, so the client cannot mistake the answer for a success.
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, header::HeaderValue::from_static("1"));
            response
        }
    }
}

/// An error answer in the format of the front end the request was for.
fn error(gateway: bool, status: StatusCode, code: &str) -> Response {
    let message = format!("{code} (injected fault)");
    if gateway {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message>\
             <RequestId>fault</RequestId></Error>"
        );
        (status, [(header::CONTENT_TYPE, "application/xml")], body).into_response()
    } else {
        (status, axum::Json(serde_json::json!({ "message": message }))).into_response()
    }
}

/// Keep the headers (and their `Content-Length`), send none or half of the body, then fail the body stream, which
/// makes the server drop the connection mid-body.
fn cut_body(response: Response, keep_half: bool) -> Response {
    let (parts, body) = response.into_parts();
    let length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut budget = if keep_half { length.unwrap_or(0) / 2 } else { 0 };
    let mut source = body.into_data_stream();
    // The kept part is buffered (at most half a response of this test server), then the stream fails.
    let cut = futures::stream::once(async move {
        let mut items: Vec<Result<Bytes, std::io::Error>> = Vec::new();
        while budget > 0 {
            let Some(Ok(chunk)) = source.next().await else { break };
            let take = chunk.len().min(usize::try_from(budget).unwrap_or(usize::MAX));
            budget -= take as u64;
            items.push(Ok(chunk.slice(..take)));
        }
        items.push(Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "injected fault: connection reset mid-body",
        )));
        futures::stream::iter(items)
    })
    .flatten();
    Response::from_parts(parts, Body::from_stream(cut))
}
