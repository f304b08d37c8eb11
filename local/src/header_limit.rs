//! Request headers over API Gateway's limit get the contract's error shape.
//! The HTTP API refuses a request whose request line and headers exceed
//! 10 KiB; the local server does the same, as JSON (`431
//! headers_too_large`), instead of serving it or leaving it to hyper, whose
//! own refusal (far larger headers) has no body.

use axum::body::Body;
use axum::http::Request;
use axum::middleware::Next;
use axum::response::Response;
use mailmind::handlers::protocol::ApiError;

use crate::gateway::lambda_to_axum;

/// API Gateway's limit on the request line and headers together.
pub const MAX_HEADER_BYTES: usize = 10 * 1024;

/// The size of the request line and headers as sent (`name: value\r\n` each).
fn header_bytes(request: &Request<Body>) -> usize {
    let line = request.method().as_str().len() + request.uri().to_string().len() + 12;
    request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum::<usize>()
        + line
}

/// Refuses requests whose headers exceed [`MAX_HEADER_BYTES`].
pub async fn limit_headers(request: Request<Body>, next: Next) -> Response {
    if header_bytes(&request) > MAX_HEADER_BYTES {
        return lambda_to_axum(
            ApiError::new(431, "headers_too_large", "Request headers are larger than 10 KiB.").into_response(),
        );
    }
    next.run(request).await
}
