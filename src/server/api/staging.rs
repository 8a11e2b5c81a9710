//! Staging API (lakefs-api.md §4.6). Direct writes to the object store need pre-signed URLs, which the local
//! blockstore does not have (`pre_sign_support: false` in `/config`), so clients upload through
//! `POST .../objects` instead; these endpoints answer as lakeFS does for an unsupported operation. Import
//! (lakefs-api.md §4.7) is refused the same way.

use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::Router;

use super::{ApiError, ApiResult};

pub(super) fn routes() -> Router {
    let base = "/repositories/{repository}/branches/{branch}/staging";
    Router::new()
        .route(&format!("{base}/backing"), get(unsupported).put(unsupported))
        .route(&format!("{base}/pmpu"), post(no_multipart))
        .route(
            &format!("{base}/pmpu/{{upload_id}}"),
            put(no_multipart).delete(no_multipart),
        )
        .route(
            &format!("{base}/pmpu/{{upload_id}}/parts/{{part_number}}"),
            put(no_multipart),
        )
        .route(
            &format!("{base}/pmpu/{{upload_id}}/parts/{{part_number}}/copy"),
            put(no_multipart),
        )
        .route(
            "/repositories/{repository}/branches/{branch}/import",
            get(no_import).post(no_import).delete(no_import),
        )
}

async fn unsupported() -> ApiResult {
    Err(ApiError::bad_request(
        "operation not supported: direct staging is not supported by the local blockstore",
    ))
}

/// `import_support` is false in `/config`: the local blockstore has nothing to import from.
async fn no_import() -> ApiResult {
    Err(ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "import is not supported by the local blockstore",
    ))
}

async fn no_multipart() -> ApiResult {
    Err(ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "presign multipart upload API is not supported",
    ))
}
