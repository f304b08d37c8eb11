//! CORS for the origins given with `--cors-origin`, as the HTTP API's
//! `CorsConfiguration` does on AWS (template parameter `AllowedOrigins`):
//! exactly those origins, the API's methods, the `Authorization` and
//! `Content-Type` headers, never `*` and never credentials (the API takes
//! bearer tokens, not cookies).
//!
//! CORS covers the REST API (`/api/v1/...`) only: the AWS-shaped doors
//! (Lambda Invoke, KMS, `@connections`) are for SDKs, not pages, and never
//! get CORS headers, a preflight to them included.
//!
//! `tower-http`'s `CorsLayer` writes the headers. It answers every `OPTIONS`
//! itself, whatever the origin, so requests are steered to it only when their
//! `Origin` is one of the configured ones: a request from any other origin,
//! or without one, gets exactly the answer it gets without CORS (no CORS
//! header, and `405` with `Allow` for an `OPTIONS`).

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, ETAG, IF_MATCH, ORIGIN, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, Method, Request};
use axum::middleware::Next;
use axum::response::Response;
use tower::ServiceExt as _;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// How long a browser may cache a preflight answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// The origins `--cors-origin` allowed; empty means no CORS at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedOrigins(Vec<HeaderValue>);

impl AllowedOrigins {
    /// Adds `origin` after checking it is one: `http(s)://host[:port]`,
    /// no path, no `*`, no `null`.
    pub fn add(&mut self, origin: &str) -> Result<(), String> {
        // Browsers send scheme and host in lower case.
        let origin = origin.trim().to_ascii_lowercase();
        let authority = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"))
            .filter(|authority| {
                !authority.is_empty()
                    && authority
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
            });
        match (authority, HeaderValue::from_str(&origin)) {
            (Some(_), Ok(value)) => {
                if !self.0.contains(&value) {
                    self.0.push(value);
                }
                Ok(())
            }
            _ => Err(format!(
                "--cors-origin needs an origin like https://app.example.com or http://localhost:5173 \
                 (scheme, host and optional port; no path, no *), got {origin:?}"
            )),
        }
    }

    /// Whether no origin was configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `origin` (an `Origin` header) is one of the configured origins.
    pub fn allows(&self, origin: Option<&str>) -> bool {
        origin.is_some_and(|origin| self.0.iter().any(|allowed| allowed.as_bytes() == origin.as_bytes()))
    }

    /// The configured origins, for the banner.
    pub fn list(&self) -> Vec<&str> {
        self.0.iter().filter_map(|v| v.to_str().ok()).collect()
    }

    /// `router`, answering the configured origins with CORS headers.
    pub fn apply(&self, router: Router) -> Router {
        if self.is_empty() {
            return router;
        }
        let layer = CorsLayer::new()
            .allow_origin(AllowOrigin::list(self.0.clone()))
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
            .allow_headers([AUTHORIZATION, CONTENT_TYPE, IF_MATCH])
            // The 429 of the rate limit and the 401's challenge are worth reading.
            .expose_headers([ETAG, RETRY_AFTER, WWW_AUTHENTICATE])
            .max_age(PREFLIGHT_MAX_AGE);
        let with_cors = router.clone().layer(layer);
        router.layer(axum::middleware::from_fn_with_state(
            (self.clone(), with_cors),
            steer_by_origin,
        ))
    }
}

/// Whether `path` is the REST API's, the one part of the server pages may call.
fn is_rest_api(path: &str) -> bool {
    path == "/api/v1" || path.starts_with("/api/v1/")
}

/// Hands a request from a configured origin for the REST API to the router
/// behind the CORS layer, and any other request to the plain router.
async fn steer_by_origin(
    State((origins, with_cors)): State<(AllowedOrigins, Router)>,
    request: Request<Body>,
    next: Next,
) -> Response {
    let origin = request.headers().get(ORIGIN).and_then(|v| v.to_str().ok());
    if origins.allows(origin) && is_rest_api(request.uri().path()) {
        match with_cors.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    } else {
        next.run(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_origins_are_accepted() {
        let mut origins = AllowedOrigins::default();
        for ok in [
            "https://app.example.com",
            "http://localhost:5173",
            "http://[::1]:8080",
            " https://app.example.com ",
        ] {
            origins.add(ok).unwrap();
        }
        assert_eq!(
            origins.list(),
            ["https://app.example.com", "http://localhost:5173", "http://[::1]:8080"]
        );
        for bad in [
            "*",
            "null",
            "https://*.example.com",
            "app.example.com",
            "https://app.example.com/",
            "https://app.example.com/path",
            "ftp://app.example.com",
            "https://",
            "",
        ] {
            assert!(origins.add(bad).is_err(), "{bad}");
        }
        assert!(origins.allows(Some("http://localhost:5173")));
        assert!(!origins.allows(Some("http://localhost:5174")));
        assert!(!origins.allows(Some("https://APP.example.com")));
        assert!(!origins.allows(None));
    }

    #[test]
    fn only_the_rest_api_gets_cors() {
        assert!(is_rest_api("/api/v1/credentials/"));
        assert!(is_rest_api("/api/v1/openapi.json"));
        for path in [
            "/",
            "/ws",
            "/@connections/x",
            "/2015-03-31/functions/f/invocations",
            "/api/v10",
        ] {
            assert!(!is_rest_api(path), "{path}");
        }
    }
}
