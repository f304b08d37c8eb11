//! The local server's AWS-shaped doors are locked: Lambda's Invoke API
//! (`/2015-03-31/functions/...`, service `lambda`), the API Gateway
//! Management API (`/@connections/...`, service `execute-api`) and KMS
//! (`POST /`, service `kms`) accept only requests made with the data
//! directory's access key (`aws-credentials`, mode 0600, see
//! `mailmind::adapters::local_access_key`):
//!
//! - signed with AWS Signature Version 4 by that key (any region, the door's
//!   service, `X-Amz-Date` within 15 minutes of now), as every AWS SDK signs
//!   when given the key; or
//! - `Authorization: Bearer <the secret access key>`, for tools without a
//!   SigV4 signer (only processes of the same user can read the file).
//!
//! The signature is checked by signing the same canonical request again with
//! the `aws-sigv4` crate (the SDKs' own signer) at the request's date, over
//! the headers the request says it signed, and comparing in constant time.
//! The payload line of that canonical request is always the hash of the body
//! as received, so a signed `x-amz-content-sha256` must be that hash
//! (`UNSIGNED-PAYLOAD` is refused: no SDK sends it to these services).
//! Refusals are `403`, in the shape of the service the door plays.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use axum::body::{Body, Bytes, to_bytes};
use axum::extract::State;
use axum::http::header::{AUTHORIZATION, HOST};
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use mailmind::adapters::local_access_key::LocalAccessKey;
use secrecy::ExposeSecret;
use serde_json::json;

/// How far `X-Amz-Date` may be from now, either way.
const MAX_CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);

/// The largest body a door reads (Lambda's synchronous payload limit).
const MAX_BODY_BYTES: usize = 6 * 1024 * 1024;

/// One of the AWS services this server plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// Lambda's Invoke API.
    Lambda,
    /// The API Gateway Management API (`@connections`).
    ExecuteApi,
    /// KMS (`Decrypt`).
    Kms,
}

impl Door {
    /// The door a request knocks at, if any (every other request is the REST
    /// API, the settings page or the WebSocket, which have their own checks).
    pub fn of(method: &Method, path: &str) -> Option<Door> {
        if path.starts_with("/2015-03-31/functions/") {
            Some(Door::Lambda)
        } else if path.starts_with("/@connections/") {
            Some(Door::ExecuteApi)
        } else if path == "/" && method == Method::POST {
            Some(Door::Kms)
        } else {
            None
        }
    }

    /// The SigV4 service name a request to this door is signed for.
    pub fn service(self) -> &'static str {
        match self {
            Door::Lambda => "lambda",
            Door::ExecuteApi => "execute-api",
            Door::Kms => "kms",
        }
    }
}

/// Why a request was refused; each is what AWS answers in that case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization` header of a known scheme.
    Missing,
    /// An `AWS4-HMAC-SHA256` header that cannot be parsed, or no `X-Amz-Date`.
    Incomplete(&'static str),
    /// An access key id (or bearer secret) this server did not make.
    UnknownKey,
    /// Signed for another service.
    WrongService(Door),
    /// The date is more than 15 minutes away from now.
    Expired,
    /// The signature is not the one the secret gives.
    BadSignature,
}

impl Refusal {
    /// The error type (`x-amzn-ErrorType` or `__type`).
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::Missing => "MissingAuthenticationTokenException",
            Refusal::Incomplete(_) => "IncompleteSignatureException",
            Refusal::UnknownKey => "UnrecognizedClientException",
            Refusal::WrongService(_) | Refusal::Expired | Refusal::BadSignature => "InvalidSignatureException",
        }
    }

    /// AWS's message for it.
    pub fn message(&self) -> String {
        match self {
            Refusal::Missing => "Missing Authentication Token: sign the request with AWS Signature Version 4 \
                                 using the local server's access key (the aws-credentials file of its data directory)"
                .to_owned(),
            Refusal::Incomplete(what) => format!("Incomplete signature: {what}"),
            Refusal::UnknownKey => "The security token included in the request is invalid.".to_owned(),
            Refusal::WrongService(door) => {
                format!("Credential should be scoped to correct service: '{}'.", door.service())
            }
            Refusal::Expired => "Signature expired: the X-Amz-Date is more than 15 minutes away from the \
                                 server's time."
                .to_owned(),
            Refusal::BadSignature => "The request signature we calculated does not match the signature you \
                                      provided. Check your AWS Secret Access Key and signing method."
                .to_owned(),
        }
    }

    /// The refusal as `door`'s service answers it: `403`, the REST-JSON
    /// shape (`x-amzn-ErrorType` and a `message`) of Lambda and API Gateway,
    /// or the JSON-1.1 shape (`__type`, `message`) of KMS.
    pub fn response(&self, door: Door) -> Response {
        match door {
            Door::Lambda | Door::ExecuteApi => rest_json_error(StatusCode::FORBIDDEN, self.kind(), self.message()),
            Door::Kms => crate::kms::error(StatusCode::FORBIDDEN, self.kind(), &self.message()),
        }
    }
}

/// An error the way Lambda's and API Gateway's REST-JSON APIs send it: the
/// type in `x-amzn-ErrorType` (what the SDKs read) and a JSON `message`.
pub fn rest_json_error(status: StatusCode, kind: &'static str, message: String) -> Response {
    let mut response = (status, axum::Json(json!({"Type": "User", "message": message}))).into_response();
    response
        .headers_mut()
        .insert("x-amzn-errortype", HeaderValue::from_static(kind));
    response
}

/// Checks requests against the one access key.
pub struct Doorkeeper {
    key: LocalAccessKey,
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header.
#[derive(Debug, PartialEq, Eq)]
struct SigV4Header<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

/// `Credential=AKID/20261205/us-east-1/lambda/aws4_request,
/// SignedHeaders=host;x-amz-date, Signature=<hex>` (after the algorithm).
fn parse_sigv4(rest: &str) -> Result<SigV4Header<'_>, Refusal> {
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',').map(str::trim) {
        match part.split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => return Err(Refusal::Incomplete("unexpected part in the Authorization header")),
        }
    }
    let (Some(credential), Some(signed), Some(signature)) = (credential, signed, signature) else {
        return Err(Refusal::Incomplete(
            "the Authorization header needs Credential, SignedHeaders and Signature",
        ));
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, "aws4_request"] = scope[..] else {
        return Err(Refusal::Incomplete(
            "Credential must be <key id>/<date>/<region>/<service>/aws4_request",
        ));
    };
    let signed_headers: Vec<&str> = signed.split(';').collect();
    if signed_headers
        .iter()
        .any(|h| h.is_empty() || h.bytes().any(|b| b.is_ascii_uppercase()))
    {
        return Err(Refusal::Incomplete(
            "SignedHeaders must be lower-case names separated by ;",
        ));
    }
    Ok(SigV4Header {
        access_key_id,
        date,
        region,
        service,
        signed_headers,
        signature,
    })
}

/// `X-Amz-Date` (`20261205T120000Z`) as a time.
fn parse_amz_date(text: &str) -> Option<SystemTime> {
    let time = chrono::NaiveDateTime::parse_from_str(text, "%Y%m%dT%H%M%SZ").ok()?;
    let seconds = u64::try_from(time.and_utc().timestamp()).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(seconds))
}

/// Constant-time equality (the comparison must not tell how much matched).
fn same(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

impl Doorkeeper {
    /// Accepts requests made with `key`.
    pub fn new(key: LocalAccessKey) -> Doorkeeper {
        Doorkeeper { key }
    }

    /// Whether the request (its method, URI as sent, headers and body) was
    /// made with the access key, for `door`, at about `now`.
    pub fn check(
        &self,
        door: Door,
        method: &Method,
        uri: &axum::http::Uri,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<(), Refusal> {
        let authorization = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
        if let Some(secret) = authorization.and_then(|v| v.strip_prefix("Bearer ")) {
            let expected = self.key.secret().expose_secret().as_bytes();
            return if same(secret.trim().as_bytes(), expected) {
                Ok(())
            } else {
                Err(Refusal::UnknownKey)
            };
        }
        let Some(rest) = authorization.and_then(|v| v.strip_prefix("AWS4-HMAC-SHA256 ")) else {
            return Err(Refusal::Missing);
        };
        let header = parse_sigv4(rest)?;
        if !same(header.access_key_id.as_bytes(), self.key.access_key_id().as_bytes()) {
            return Err(Refusal::UnknownKey);
        }
        if header.service != door.service() {
            return Err(Refusal::WrongService(door));
        }
        let amz_date = headers
            .get("x-amz-date")
            .and_then(|v| v.to_str().ok())
            .ok_or(Refusal::Incomplete("the request has no X-Amz-Date header"))?;
        let time = parse_amz_date(amz_date).ok_or(Refusal::Incomplete("X-Amz-Date is not like 20261205T120000Z"))?;
        let skew = now.duration_since(time).unwrap_or_else(|e| e.duration());
        if skew > MAX_CLOCK_SKEW {
            return Err(Refusal::Expired);
        }
        if !amz_date.starts_with(header.date) || header.date.len() != 8 {
            return Err(Refusal::Incomplete("the Credential's date is not X-Amz-Date's"));
        }
        // The signer signs the Host and X-Amz-Date headers in any case, so a
        // request that did not sign both cannot match.
        if !header.signed_headers.contains(&"host") || !header.signed_headers.contains(&"x-amz-date") {
            return Err(Refusal::Incomplete("SignedHeaders must include host and x-amz-date"));
        }
        let mut signed = Vec::new();
        for name in &header.signed_headers {
            let mut values = headers.get_all(*name).iter().peekable();
            if values.peek().is_none() {
                return Err(Refusal::BadSignature);
            }
            for value in values {
                signed.push((*name, value.to_str().map_err(|_| Refusal::BadSignature)?));
            }
        }
        let host = headers.get(HOST).and_then(|v| v.to_str().ok()).unwrap_or("localhost");
        let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
        let url = format!("http://{host}{path_and_query}");
        let request = SignableRequest::new(method.as_str(), url, signed.into_iter(), SignableBody::Bytes(body))
            .map_err(|_| Refusal::BadSignature)?;
        // The SDKs' settings for every service but S3; the request itself
        // says which headers were signed, so none are left out here.
        let mut settings = SigningSettings::default();
        settings.excluded_headers = None;
        let identity = aws_credential_types::Credentials::new(
            self.key.access_key_id(),
            self.key.secret().expose_secret().to_owned(),
            None,
            None,
            "mailmind-local",
        )
        .into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(header.region)
            .name(door.service())
            .time(time)
            .settings(settings)
            .build()
            .map_err(|_| Refusal::BadSignature)?
            .into();
        let expected = sign(request, &params).map_err(|_| Refusal::BadSignature)?;
        if same(expected.signature().as_bytes(), header.signature.as_bytes()) {
            Ok(())
        } else {
            Err(Refusal::BadSignature)
        }
    }
}

/// The middleware: a request for one of the doors goes on only when
/// [`Doorkeeper::check`] accepts it; any other request goes on untouched.
pub async fn guard(State(doorkeeper): State<Arc<Doorkeeper>>, request: Request<Body>, next: Next) -> Response {
    let Some(door) = Door::of(request.method(), request.uri().path()) else {
        return next.run(request).await;
    };
    let (parts, body) = request.into_parts();
    let body: Bytes = match to_bytes(body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(_) => {
            let message = "The request is larger than this server reads (6 MiB).".to_owned();
            return match door {
                Door::Kms => crate::kms::error(StatusCode::PAYLOAD_TOO_LARGE, "ValidationException", &message),
                _ => rest_json_error(StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLargeException", message),
            };
        }
    };
    if let Err(refusal) = doorkeeper.check(
        door,
        &parts.method,
        &parts.uri,
        &parts.headers,
        &body,
        SystemTime::now(),
    ) {
        tracing::warn!(
            door = door.service(),
            refusal = refusal.kind(),
            "refused an AWS request"
        );
        return refusal.response(door);
    }
    next.run(Request::from_parts(parts, Body::from(body))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_doors_are_found_by_path() {
        assert_eq!(
            Door::of(&Method::POST, "/2015-03-31/functions/x/invocations"),
            Some(Door::Lambda)
        );
        assert_eq!(Door::of(&Method::GET, "/@connections/abc"), Some(Door::ExecuteApi));
        assert_eq!(Door::of(&Method::POST, "/"), Some(Door::Kms));
        assert_eq!(Door::of(&Method::GET, "/"), None);
        assert_eq!(Door::of(&Method::POST, "/api/v1/credentials/"), None);
        assert_eq!(Door::of(&Method::GET, "/ws"), None);
    }

    #[test]
    fn sigv4_headers_parse_or_are_incomplete() {
        let header = parse_sigv4(
            "Credential=AKIALOCALX/20261205/eu-west-1/kms/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, Signature=abc",
        )
        .unwrap();
        assert_eq!(
            header,
            SigV4Header {
                access_key_id: "AKIALOCALX",
                date: "20261205",
                region: "eu-west-1",
                service: "kms",
                signed_headers: vec!["content-type", "host", "x-amz-date"],
                signature: "abc",
            }
        );
        for bad in [
            "",
            "x",
            "Credential=a/b/c/d/aws4_request, SignedHeaders=host",
            "Credential=a/b/c/aws4_request, SignedHeaders=host, Signature=0",
            "Credential=a/b/c/d/e, SignedHeaders=host, Signature=0",
            "Credential=a/b/c/d/aws4_request, SignedHeaders=Host, Signature=0",
        ] {
            assert!(matches!(parse_sigv4(bad), Err(Refusal::Incomplete(_))), "{bad}");
        }
        assert_eq!(
            parse_amz_date("20261205T120000Z"),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_472_000))
        );
        assert_eq!(parse_amz_date("2026-12-05"), None);
    }
}
