//! The protocol side of the REST handlers: who is calling, which provider,
//! the body, and the JSON answers (success and the error shape of
//! docs/API.md). Named apart from the `http` crate it uses.

use lambda_http::ext::RequestExt;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, Response};
use serde::Serialize;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::auth;
use crate::domain::UserId;
use crate::domain::provider::{self, ProviderSpec};
use crate::service::ServiceError;

/// Request bodies above this are refused with 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// An error answer: `{"detail": ..., "code": ...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// Machine-readable code, e.g. `credential_not_found`.
    pub code: &'static str,
    /// The sentence shown to people; never holds a key or token.
    pub detail: String,
    /// Seconds to wait before retrying: the `Retry-After` header of a `429`.
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    /// An error answer with these parts.
    pub fn new(status: u16, code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            detail: detail.into(),
            retry_after_secs: None,
        }
    }

    /// `401 unauthenticated`.
    pub fn unauthenticated() -> ApiError {
        ApiError::new(401, "unauthenticated", "Missing or invalid bearer token.")
    }

    /// `400 invalid_request` saying what is wrong.
    pub fn invalid_request(detail: impl Into<String>) -> ApiError {
        ApiError::new(400, "invalid_request", detail)
    }

    /// `413 payload_too_large`.
    pub fn payload_too_large() -> ApiError {
        ApiError::new(413, "payload_too_large", "Request body is larger than 64 KiB.")
    }

    /// `404 not_found`: no such route.
    pub fn not_found() -> ApiError {
        ApiError::new(404, "not_found", "No such route.")
    }

    /// `405 method_not_allowed`.
    pub fn method_not_allowed() -> ApiError {
        ApiError::new(405, "method_not_allowed", "This method is not allowed on this route.")
    }

    /// `403 forbidden_host`: the local server answers only loopback names.
    pub fn forbidden_host() -> ApiError {
        ApiError::new(
            403,
            "forbidden_host",
            "This development server answers only requests for 127.0.0.1, localhost or [::1].",
        )
    }

    /// `403 forbidden_origin`: a WebSocket from a page of another site.
    pub fn forbidden_origin() -> ApiError {
        ApiError::new(
            403,
            "forbidden_origin",
            "WebSockets are accepted only from pages on 127.0.0.1, localhost or [::1].",
        )
    }

    /// The `405` answer with its `Allow` header (RFC 9110): `allow` as
    /// [`RouteMatch::MethodNotAllowed`](super::RouteMatch) gives it.
    pub fn method_not_allowed_response(allow: &str) -> Response<Body> {
        let mut response = ApiError::method_not_allowed().into_response();
        if let Ok(value) = http::HeaderValue::from_str(allow) {
            response.headers_mut().insert(http::header::ALLOW, value);
        }
        response
    }

    /// Unknown provider: `400` when named in a body, `404` when in the path.
    /// What was sent is quoted back only when it looks like an id: a key
    /// pasted into the wrong field must not come back in a message.
    pub fn unknown_provider(status: u16, given: &str) -> ApiError {
        let looks_like_id = !given.is_empty()
            && given.len() <= 24
            && given.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        let named = if looks_like_id {
            format!(" '{given}'")
        } else {
            String::new()
        };
        ApiError::new(
            status,
            "unknown_provider",
            format!(
                "Unknown provider{named}. Supported providers: {}.",
                provider::supported_ids()
            ),
        )
    }

    /// The JSON answer.
    pub fn into_response(self) -> Response<Body> {
        let mut response = json_response(
            self.status,
            &ErrorBody {
                detail: &self.detail,
                code: self.code,
            },
        );
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
        }
        if self.status == 401 {
            response
                .headers_mut()
                .insert("www-authenticate", http::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The body of every error answer (docs/API.md, "Errors").
#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Error))]
pub struct ErrorBody<'a> {
    /// A sentence for people; never holds a key, a token or a stack trace.
    #[cfg_attr(feature = "openapi", schema(example = "No Groq API key is set."))]
    pub detail: &'a str,
    /// For programs, e.g. `credential_not_found`.
    #[cfg_attr(feature = "openapi", schema(example = "credential_not_found"))]
    pub code: &'a str,
}

/// The API's answer to a service failure: status, code and the sentence
/// people read (docs/API.md fixes each `detail`).
impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let code = e.code();
        let (status, detail) = match &e {
            ServiceError::CredentialExists(p) => (
                409,
                format!("A {} API key is already set. Use PUT to replace it.", p.display_name),
            ),
            ServiceError::CredentialNotFound(p) => (404, format!("No {} API key is set.", p.display_name)),
            ServiceError::KeyRejected(p) => (
                422,
                format!(
                    "{} rejected this API key: it is not valid. Nothing was stored.",
                    p.display_name
                ),
            ),
            ServiceError::TooManyRequests {
                limit,
                window_secs,
                retry_after_secs,
            } => (
                429,
                format!(
                    "Too many key checks: at most {limit} every {window_secs} seconds. Nothing was changed; \
                     try again in {retry_after_secs} seconds."
                ),
            ),
            ServiceError::TooManyConnections(max) => (
                429,
                format!("At most {max} live connections per user; close one to open another."),
            ),
            ServiceError::KeyProviderMismatch(owner) => (
                400,
                format!(
                    "This looks like {} {} key.",
                    article(owner.display_name),
                    owner.display_name
                ),
            ),
            ServiceError::KeyNotFound(p) => (404, format!("No such {} API key.", p.display_name)),
            // The name is not echoed: a key pasted into the wrong field would be.
            ServiceError::KeyNameTaken(p, _) => (
                409,
                format!("Another {} API key has this name. Choose another one.", p.display_name),
            ),
            ServiceError::KeyNotVerified(p, _) => (
                503,
                format!(
                    "{} could not check the new API key (no verdict); the current key stays in use. Try again later.",
                    p.display_name
                ),
            ),
            ServiceError::PreconditionFailed(p) => (
                412,
                format!(
                    "This {} API key changed since it was read (If-Match). Nothing was changed; read it again.",
                    p.display_name
                ),
            ),
            ServiceError::NoUsableKey(p, _) => (
                409,
                format!(
                    "No {} API key can be used now: each is switched off, invalid, out of credit or rate limited.",
                    p.display_name
                ),
            ),
            ServiceError::NoPreviousKey(p) => (
                409,
                format!(
                    "This {} API key has no previous version to roll back to: a replaced key is kept for a \
                     limited time only. Nothing was changed.",
                    p.display_name
                ),
            ),
            ServiceError::TooManyKeys(p) => (
                409,
                format!(
                    "At most {} {} API keys per provider; delete one to add another.",
                    crate::domain::named_key::MAX_KEYS_PER_PROVIDER,
                    p.display_name
                ),
            ),
            ServiceError::EndpointNotAllowed(refusal) => (
                400,
                format!("This endpoint is not allowed: {refusal}. Nothing was stored."),
            ),
            ServiceError::Unavailable(detail) => {
                tracing::warn!(error = %detail, "dependency unavailable");
                (
                    503,
                    "Storage or key service is temporarily unavailable. Nothing was changed; please retry.".to_owned(),
                )
            }
            ServiceError::Internal(detail) => {
                tracing::error!(error = %detail, "internal failure");
                (500, "Something went wrong on our side. Nothing was changed.".to_owned())
            }
        };
        let retry_after_secs = match e {
            ServiceError::TooManyRequests { retry_after_secs, .. } => Some(retry_after_secs),
            ServiceError::KeyNotVerified(_, wait) => wait,
            _ => None,
        };
        ApiError {
            retry_after_secs,
            ..ApiError::new(status, code, detail)
        }
    }
}

/// "a" or "an" before a provider's name ("an Anthropic key", "an xAI key").
fn article(name: &str) -> &'static str {
    match name.chars().next().map(|c| c.to_ascii_lowercase()) {
        Some('a' | 'e' | 'i' | 'o' | 'u' | 'x') => "an",
        _ => "a",
    }
}

/// A JSON answer that no cache keeps.
pub fn json_response(status: u16, body: &impl Serialize) -> Response<Body> {
    let bytes = serde_json::to_string(body)
        .unwrap_or_else(|_| r#"{"detail":"Something went wrong on our side.","code":"internal"}"#.to_owned());
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(Body::Text(bytes))
        .expect("status and static headers are valid")
}

/// `204` with no body.
pub fn no_content() -> Response<Body> {
    Response::builder()
        .status(204)
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(Body::Empty)
        .expect("static response is valid")
}

/// The caller: the `sub` claim the JWT authorizer verified. Nothing in path,
/// query or body is ever trusted for this.
///
/// An event without claims is refused, except under `sam local start-api`
/// (which runs no JWT authorizer): there the function checks the bearer
/// token itself, as `mailmind-local` does (HS256, `LOCAL_JWT_SECRET`).
pub fn caller(req: &Request) -> Result<UserId, ApiError> {
    let claims = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.authorizer.as_ref().and_then(|a| a.jwt.as_ref()),
        _ => None,
    };
    match (claims, auth::sam_local_verifier()) {
        (Some(jwt), _) => jwt.claims.get("sub").and_then(|sub| UserId::parse(sub)),
        (None, Some(verifier)) => {
            let authorization = req
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            verifier.verify_header(authorization).ok().map(|claims| claims.sub)
        }
        (None, None) => None,
    }
    .ok_or_else(ApiError::unauthenticated)
}

/// The `{provider}` of the route: path parameter, else read off the raw path.
pub fn path_provider(req: &Request) -> Result<&'static ProviderSpec, ApiError> {
    let from_params = req
        .path_parameters_ref()
        .and_then(|p| p.first("provider"))
        .map(str::to_owned);
    let given = from_params.or_else(|| {
        let path = req.raw_http_path();
        let path = if path.is_empty() { req.uri().path() } else { path };
        let mut segments = path.split('/').skip_while(|s| *s != "credentials");
        segments.next()?;
        segments.next().filter(|s| !s.is_empty()).map(str::to_owned)
    });
    let given = given.unwrap_or_default();
    provider::find(&given).ok_or_else(|| ApiError::unknown_provider(404, &given))
}

/// The body as bytes, in a buffer wiped on drop (it may hold a key). Its size
/// was bounded by [`check_body_size`] before any handler ran.
pub fn body_bytes(req: Request) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(match req.into_body() {
        Body::Text(text) => text.into_bytes(),
        Body::Binary(bytes) => bytes,
        _ => Vec::new(),
    })
}

/// Refuses a body over 64 KiB before anything reads it.
pub fn check_body_size(req: &Request) -> Result<(), ApiError> {
    let len = match req.body() {
        Body::Text(text) => text.len(),
        Body::Binary(bytes) => bytes.len(),
        _ => 0,
    };
    if len > MAX_BODY_BYTES {
        return Err(ApiError::payload_too_large());
    }
    Ok(())
}

/// A JSON object body. Errors never quote the body back.
pub fn json_object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid_request("Request body must be a JSON object."));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::invalid_request("Request body must be a JSON object.")),
        Err(_) => Err(ApiError::invalid_request("Request body is not valid JSON.")),
    }
}

/// Takes a required string field out of a body object. The string is wiped on drop.
pub fn take_string(body: &mut Map<String, Value>, field: &str) -> Result<Zeroizing<String>, ApiError> {
    match body.remove(field) {
        Some(Value::String(s)) => Ok(Zeroizing::new(s)),
        Some(Value::Null) | None => Err(ApiError::invalid_request(format!("Field '{field}' is required."))),
        Some(_) => Err(ApiError::invalid_request(format!("Field '{field}' must be a string."))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_failures_answer_with_the_documented_details() {
        let groq = provider::find("groq").unwrap();
        let anthropic = provider::find("anthropic").unwrap();
        let cases = [
            (
                ServiceError::CredentialExists(groq),
                409,
                "credential_exists",
                "A Groq API key is already set. Use PUT to replace it.",
            ),
            (
                ServiceError::CredentialNotFound(groq),
                404,
                "credential_not_found",
                "No Groq API key is set.",
            ),
            (
                ServiceError::KeyRejected(groq),
                422,
                "key_rejected",
                "Groq rejected this API key: it is not valid. Nothing was stored.",
            ),
            (
                ServiceError::TooManyRequests {
                    limit: 10,
                    window_secs: 60,
                    retry_after_secs: 7,
                },
                429,
                "too_many_requests",
                "Too many key checks: at most 10 every 60 seconds. Nothing was changed; try again in 7 seconds.",
            ),
            (
                ServiceError::TooManyConnections(10),
                429,
                "too_many_connections",
                "At most 10 live connections per user; close one to open another.",
            ),
            (
                ServiceError::KeyProviderMismatch(anthropic),
                400,
                "key_provider_mismatch",
                "This looks like an Anthropic key.",
            ),
            (
                ServiceError::EndpointNotAllowed(crate::domain::endpoint::EndpointRefusal::Userinfo),
                400,
                "endpoint_not_allowed",
                "This endpoint is not allowed: the endpoint must not carry a user name or password. Nothing was stored.",
            ),
            (
                ServiceError::Unavailable("ThrottlingException".into()),
                503,
                "service_unavailable",
                "Storage or key service is temporarily unavailable. Nothing was changed; please retry.",
            ),
            (
                ServiceError::Internal("corrupt item".into()),
                500,
                "internal",
                "Something went wrong on our side. Nothing was changed.",
            ),
        ];
        for (error, status, code, detail) in cases {
            let answer = ApiError::from(error);
            assert_eq!(
                (answer.status, answer.code, answer.detail.as_str()),
                (status, code, detail)
            );
            assert_eq!(answer.retry_after_secs, (code == "too_many_requests").then_some(7));
        }
    }

    #[test]
    fn unknown_provider_names_ids_but_never_echoes_a_key() {
        let short = ApiError::unknown_provider(400, "gpt");
        assert_eq!(
            short.detail,
            format!(
                "Unknown provider 'gpt'. Supported providers: {}.",
                provider::supported_ids()
            )
        );
        assert!(short.detail.contains("anthropic, azure_openai, cohere"));
        let pasted_key = "gsk_0123456789abcdefghijklmnopqrstuvwxyz";
        let long = ApiError::unknown_provider(400, pasted_key);
        assert!(!long.detail.contains("gsk_"), "{}", long.detail);
        assert!(long.detail.starts_with("Unknown provider. Supported providers:"));
        assert!(!ApiError::unknown_provider(404, "a b").detail.contains("a b"));
    }
}
