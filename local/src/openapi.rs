//! `GET /api/v1/openapi.json`: the REST API's OpenAPI document
//! (`mailmind::openapi`, the same text as `docs/openapi.json`). No token: it
//! describes the API, it holds nothing of a user's.

use std::sync::LazyLock;

use axum::http::{Method, Request, header};
use axum::response::{IntoResponse, Response};
use mailmind::handlers::protocol::ApiError;

use crate::gateway::lambda_to_axum;

/// Built once, on first request.
static DOCUMENT: LazyLock<String> = LazyLock::new(mailmind::openapi::document_json);

/// The document for `GET`; any other method is `405` with `Allow: GET`, in
/// the contract's error shape like every other route.
pub async fn document(request: Request<axum::body::Body>) -> Response {
    if request.method() != Method::GET {
        return lambda_to_axum(ApiError::method_not_allowed_response("GET"));
    }
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        DOCUMENT.as_str(),
    )
        .into_response()
}
