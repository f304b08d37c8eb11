//! Bearer token verification where API Gateway's JWT authorizer is not there
//! to do it: the WebSocket `$connect` authorizer (RS256 against the issuer's
//! JWKS, or HS256 with a secret for development) and the local server.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::domain::UserId;

/// The documented development secret of the local server when
/// `LOCAL_JWT_SECRET` is unset. Never use it for anything reachable by others.
pub const DEV_JWT_SECRET: &str = "mailmind-local-development-secret";

/// The shortest HS256 secret accepted: 32 bytes, the output size of SHA-256
/// (RFC 7518 section 3.2 requires a key at least that long).
pub const MIN_HS256_SECRET_BYTES: usize = 32;

/// Whether this process runs as a Lambda function: the runtime sets
/// `AWS_LAMBDA_FUNCTION_NAME` (and so do `sam local` and the test emulator,
/// which declare themselves with `AWS_SAM_LOCAL=true`).
pub fn on_lambda() -> bool {
    std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some()
}

/// Whether the HS256 development mode may be used by this process: not on
/// Lambda, unless under the SAM CLI's local emulation ([`under_sam_local`]).
/// A deployed function thus never accepts self-signed tokens, whatever its
/// environment says.
pub fn hs256_allowed() -> bool {
    !on_lambda() || under_sam_local()
}

/// The HS256 secret of local development (`mailmind-local`, `sam local`):
/// `LOCAL_JWT_SECRET`, else [`DEV_JWT_SECRET`]; `true` when it is the default.
pub fn local_jwt_secret() -> (String, bool) {
    match std::env::var("LOCAL_JWT_SECRET") {
        Ok(secret) if !secret.is_empty() => (secret, false),
        _ => (DEV_JWT_SECRET.to_owned(), true),
    }
}

/// Whether this process runs under the SAM CLI's local emulation
/// (`sam local start-api` / `invoke` / `start-lambda`), which sets
/// `AWS_SAM_LOCAL=true`; Lambda never does, and the template sets it nowhere
/// (a test holds it to that).
pub fn under_sam_local() -> bool {
    std::env::var("AWS_SAM_LOCAL").is_ok_and(|v| v == "true")
}

/// Under SAM local, the verifier of the bearer tokens the REST functions
/// check themselves: `sam local start-api` runs no JWT authorizer, so its
/// events carry no claims. `None` everywhere else, and also under SAM local
/// when `LOCAL_JWT_SECRET` is not set explicitly (`sam/env.json` sets it) or
/// is shorter than [`MIN_HS256_SECRET_BYTES`]: then every token is refused.
/// Read once per process.
pub fn sam_local_verifier() -> Option<&'static Hs256Verifier> {
    static VERIFIER: std::sync::LazyLock<Option<Hs256Verifier>> = std::sync::LazyLock::new(|| {
        if !under_sam_local() {
            return None;
        }
        let (secret, is_default) = local_jwt_secret();
        if is_default {
            tracing::warn!("under sam local without LOCAL_JWT_SECRET: every bearer token is refused");
            return None;
        }
        Hs256Verifier::checked(secret.as_bytes())
            .inspect_err(|e| tracing::warn!(error = %e, "under sam local: every bearer token is refused"))
            .ok()
    });
    VERIFIER.as_ref()
}

/// A token's claims, as API Gateway's JWT authorizer hands them to a
/// function: every value a string (numbers and arrays in their JSON text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedClaims {
    /// The user: the checked `sub` claim.
    pub sub: UserId,
    /// Every claim, `sub` included, as API Gateway flattens them.
    pub claims: HashMap<String, String>,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No `Authorization: Bearer` token was sent.
    #[error("missing bearer token")]
    Missing,
    /// Forged, expired, malformed, or without a usable `sub`.
    #[error("invalid token")]
    Invalid,
}

/// Leeway for `exp` and `nbf`, for clocks that disagree a little.
const LEEWAY_SECS: i64 = 30;

/// Verifies HS256 tokens signed with one secret; `exp` is required, `nbf`
/// honoured when present.
///
/// Written over aws-lc's HMAC rather than with `jsonwebtoken`, on purpose:
/// every REST function links this (for `sam local`), and `jsonwebtoken`'s
/// decoder links the verifiers of every algorithm it supports, about 140 KB
/// per function. HS256 is one HMAC-SHA256 over the first two segments; the
/// comparison is aws-lc's constant-time `hmac::verify`, and only the header
/// `{"alg":"HS256"}` is accepted (no `none`, no algorithm confusion).
#[derive(Clone)]
pub struct Hs256Verifier {
    key: aws_lc_rs::hmac::Key,
}

fn base64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn from_base64url(text: &str) -> Result<Vec<u8>, TokenError> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| TokenError::Invalid)
}

impl Hs256Verifier {
    /// A verifier for tokens under `secret`, refusing a secret shorter than
    /// [`MIN_HS256_SECRET_BYTES`]: what every place that accepts tokens uses.
    pub fn checked(secret: &[u8]) -> Result<Hs256Verifier, String> {
        if secret.len() < MIN_HS256_SECRET_BYTES {
            return Err(format!(
                "the HS256 secret is {} bytes; it must be at least {MIN_HS256_SECRET_BYTES}",
                secret.len()
            ));
        }
        Ok(Hs256Verifier::new(secret))
    }

    /// A verifier (and signer) for tokens under `secret`, of any length (a
    /// signer in tests; verifiers that face requests use [`Self::checked`]).
    pub fn new(secret: &[u8]) -> Hs256Verifier {
        Hs256Verifier {
            key: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret),
        }
    }

    /// Checks header, signature, `exp` (required), `nbf` (when present) and `sub`.
    pub fn verify(&self, token: &str) -> Result<VerifiedClaims, TokenError> {
        let (signed, signature) = token.rsplit_once('.').ok_or(TokenError::Invalid)?;
        let (header, payload) = signed.split_once('.').ok_or(TokenError::Invalid)?;
        let header: Map<String, Value> =
            serde_json::from_slice(&from_base64url(header)?).map_err(|_| TokenError::Invalid)?;
        if header.get("alg").and_then(Value::as_str) != Some("HS256") {
            return Err(TokenError::Invalid);
        }
        aws_lc_rs::hmac::verify(&self.key, signed.as_bytes(), &from_base64url(signature)?)
            .map_err(|_| TokenError::Invalid)?;
        let claims: Map<String, Value> =
            serde_json::from_slice(&from_base64url(payload)?).map_err(|_| TokenError::Invalid)?;
        let now = chrono::Utc::now().timestamp();
        let time = |name: &str| match claims.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => n.as_f64().map(|t| Some(t as i64)).ok_or(TokenError::Invalid),
            Some(_) => Err(TokenError::Invalid),
        };
        // A token without `exp` would be valid forever.
        if time("exp")?.is_none_or(|exp| exp + LEEWAY_SECS < now) {
            return Err(TokenError::Invalid);
        }
        if time("nbf")?.is_some_and(|nbf| nbf - LEEWAY_SECS > now) {
            return Err(TokenError::Invalid);
        }
        claims_of(claims)
    }

    /// Reads `Authorization: Bearer <token>` and verifies it.
    pub fn verify_header(&self, authorization: Option<&str>) -> Result<VerifiedClaims, TokenError> {
        let token = bearer_token(authorization).ok_or(TokenError::Missing)?;
        self.verify(token)
    }

    /// Signs a token for `sub` valid for `ttl_secs` (the local demo token, tests).
    pub fn issue(&self, sub: &str, ttl_secs: i64) -> String {
        let now = chrono::Utc::now().timestamp();
        let claims = serde_json::json!({"sub": sub, "iat": now, "exp": now + ttl_secs});
        let signed = format!(
            "{}.{}",
            base64url(br#"{"typ":"JWT","alg":"HS256"}"#),
            base64url(claims.to_string().as_bytes())
        );
        let tag = aws_lc_rs::hmac::sign(&self.key, signed.as_bytes());
        format!("{signed}.{}", base64url(tag.as_ref()))
    }
}

/// A JWKS is fetched at most this often (a failed fetch counts), so garbage
/// tokens naming unknown keys, or an issuer that is down, cannot make us
/// hammer the issuer.
pub const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(60);

/// A fetched JWKS is used at most this long before it is fetched again, so a
/// key the issuer withdrew stops being accepted (if the fetch fails, the keys
/// in hand stay in use, retried every [`JWKS_REFETCH_INTERVAL`]).
pub const JWKS_MAX_AGE: Duration = Duration::from_secs(3600);

/// The JWKS in hand and when it was fetched; when a fetch was last tried.
#[derive(Default)]
struct JwksCache {
    keys: Option<(jsonwebtoken::jwk::JwkSet, Instant)>,
    last_attempt: Option<Instant>,
}

/// Verifies RS256 tokens of one issuer (e.g. a Cognito user pool): signature
/// against the issuer's JWKS (fetched once, refreshed after [`JWKS_MAX_AGE`]
/// or on an unknown `kid`, at most every [`JWKS_REFETCH_INTERVAL`]), `iss`,
/// `exp`, `nbf`, and `aud` or Cognito's `client_id`.
pub struct JwksVerifier {
    issuer: String,
    audiences: Vec<String>,
    jwks_url: String,
    http: reqwest::Client,
    cache: tokio::sync::Mutex<JwksCache>,
    refetch_interval: Duration,
    max_age: Duration,
}

impl JwksVerifier {
    /// `jwks_url` defaults to `<issuer>/.well-known/jwks.json` (Cognito's).
    /// At least one audience is required: an empty list would accept the
    /// tokens of every app client of the issuer.
    pub fn new(issuer: &str, audiences: Vec<String>, jwks_url: Option<String>) -> Result<JwksVerifier, String> {
        if audiences.iter().all(|a| a.trim().is_empty()) {
            return Err("JWT_AUDIENCE must name at least one audience (the app client id)".into());
        }
        let issuer = issuer.trim_end_matches('/').to_owned();
        let jwks_url = jwks_url.unwrap_or_else(|| format!("{issuer}/.well-known/jwks.json"));
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(4))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(JwksVerifier {
            issuer,
            audiences,
            jwks_url,
            http,
            cache: tokio::sync::Mutex::new(JwksCache::default()),
            refetch_interval: JWKS_REFETCH_INTERVAL,
            max_age: JWKS_MAX_AGE,
        })
    }

    /// Other cache bounds than [`JWKS_REFETCH_INTERVAL`] and [`JWKS_MAX_AGE`]
    /// (tests, an issuer that rotates often).
    pub fn with_cache_bounds(mut self, refetch_interval: Duration, max_age: Duration) -> JwksVerifier {
        self.refetch_interval = refetch_interval;
        self.max_age = max_age;
        self
    }

    async fn fetch(&self) -> Option<jsonwebtoken::jwk::JwkSet> {
        let response = self.http.get(&self.jwks_url).send().await.ok()?;
        if !response.status().is_success() {
            tracing::warn!(http_status = response.status().as_u16(), "JWKS fetch refused");
            return None;
        }
        let bytes = response.bytes().await.ok()?;
        serde_json::from_slice(&bytes)
            .inspect_err(|e| tracing::warn!(error = %e, "JWKS unreadable"))
            .ok()
    }

    /// The decoding key for `kid`: from the JWKS in hand while it is younger
    /// than the max age and knows `kid`, else from a new fetch if the last
    /// attempt (successful or not) is older than the refetch interval.
    async fn key_for(&self, kid: &str) -> Option<DecodingKey> {
        let mut cache = self.cache.lock().await;
        let fresh = cache.keys.as_ref().is_some_and(|(_, at)| at.elapsed() < self.max_age);
        let known = cache.keys.as_ref().and_then(|(set, _)| set.find(kid).cloned());
        let may_fetch = cache
            .last_attempt
            .is_none_or(|at| at.elapsed() >= self.refetch_interval);
        if (!fresh || known.is_none()) && may_fetch {
            cache.last_attempt = Some(Instant::now());
            if let Some(set) = self.fetch().await {
                cache.keys = Some((set, Instant::now()));
            }
        }
        let jwk = cache.keys.as_ref().and_then(|(set, _)| set.find(kid).cloned())?;
        DecodingKey::from_jwk(&jwk).ok()
    }

    /// Checks signature, `iss`, `exp`, audience and `sub`.
    pub async fn verify(&self, token: &str) -> Result<VerifiedClaims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        if header.alg != Algorithm::RS256 {
            return Err(TokenError::Invalid);
        }
        let kid = header.kid.ok_or(TokenError::Invalid)?;
        let key = self.key_for(&kid).await.ok_or(TokenError::Invalid)?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // Cognito access tokens carry `client_id`, ID tokens `aud`: checked below.
        validation.validate_aud = false;
        validation.leeway = 30;
        let data =
            jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation).map_err(|_| TokenError::Invalid)?;
        let audience_ok = ["aud", "client_id"].iter().any(|claim| match data.claims.get(*claim) {
            Some(Value::String(a)) => self.audiences.contains(a),
            Some(Value::Array(list)) => list
                .iter()
                .any(|a| a.as_str().is_some_and(|a| self.audiences.iter().any(|x| x == a))),
            _ => false,
        });
        if !audience_ok {
            return Err(TokenError::Invalid);
        }
        claims_of(data.claims)
    }
}

/// How the WebSocket authorizer checks tokens.
pub enum TokenVerifier {
    /// Production: RS256 with the issuer's JWKS.
    Jwks(JwksVerifier),
    /// Development and the local server: HS256 with a shared secret.
    Hs256(Box<Hs256Verifier>),
}

impl TokenVerifier {
    /// `JWT_ISSUER` (+ `JWT_AUDIENCE`, comma-separated, required, and optional
    /// `JWKS_URL`) selects RS256; otherwise `JWT_HS256_SECRET` (at least 32
    /// bytes) selects HS256, refused on Lambda ([`hs256_allowed`]).
    pub fn from_env() -> Result<TokenVerifier, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        if let Some(issuer) = var("JWT_ISSUER") {
            let audiences = var("JWT_AUDIENCE")
                .map(|a| {
                    a.split(',')
                        .map(|s| s.trim().to_owned())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            return JwksVerifier::new(&issuer, audiences, var("JWKS_URL")).map(TokenVerifier::Jwks);
        }
        if let Some(secret) = var("JWT_HS256_SECRET") {
            if !hs256_allowed() {
                return Err("JWT_HS256_SECRET (HS256 development mode) is refused on Lambda: \
                            set JWT_ISSUER and JWT_AUDIENCE"
                    .into());
            }
            let verifier = Hs256Verifier::checked(secret.as_bytes()).map_err(|e| format!("JWT_HS256_SECRET: {e}"))?;
            return Ok(TokenVerifier::Hs256(Box::new(verifier)));
        }
        Err("set JWT_ISSUER (and JWT_AUDIENCE) for RS256 tokens, or JWT_HS256_SECRET for development".into())
    }

    /// Checks a token the way the configured mode does.
    pub async fn verify(&self, token: &str) -> Result<VerifiedClaims, TokenError> {
        match self {
            TokenVerifier::Jwks(v) => v.verify(token).await,
            TokenVerifier::Hs256(v) => v.verify(token),
        }
    }
}

/// The token of an `Authorization: Bearer ...` header value.
pub fn bearer_token(authorization: Option<&str>) -> Option<&str> {
    let value = authorization?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Flattens verified claims the way API Gateway does and checks `sub`.
pub fn claims_of(claims: Map<String, Value>) -> Result<VerifiedClaims, TokenError> {
    let sub = match claims.get("sub") {
        Some(Value::String(sub)) => UserId::parse(sub).ok_or(TokenError::Invalid)?,
        _ => return Err(TokenError::Invalid),
    };
    let claims = claims
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            (k, text)
        })
        .collect();
    Ok(VerifiedClaims { sub, claims })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_verify_and_others_do_not() {
        let verifier = Hs256Verifier::new(b"secret-one");
        let token = verifier.issue("user-a", 60);
        let claims = verifier.verify(&token).unwrap();
        assert_eq!(claims.sub.as_str(), "user-a");
        assert!(claims.claims["exp"].parse::<i64>().is_ok());
        assert_eq!(
            Hs256Verifier::new(b"secret-two").verify(&token),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            verifier.verify(&verifier.issue("user-a", -3600)),
            Err(TokenError::Invalid)
        );
        assert_eq!(verifier.verify("not.a.token"), Err(TokenError::Invalid));
        assert_eq!(verifier.verify_header(None), Err(TokenError::Missing));
        assert_eq!(verifier.verify_header(Some("Basic abc")), Err(TokenError::Missing));
        assert_eq!(
            verifier
                .verify_header(Some(&format!("bearer {token}")))
                .unwrap()
                .sub
                .as_str(),
            "user-a"
        );
    }

    #[test]
    fn tokens_from_the_jwt_library_verify_and_forgeries_do_not() {
        use jsonwebtoken::{EncodingKey, Header};
        let secret = b"a-secret-of-some-length-0123456789";
        let verifier = Hs256Verifier::new(secret);
        let now = chrono::Utc::now().timestamp();
        let sign = |header: Header, claims: serde_json::Value, key: &[u8]| {
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(key)).unwrap()
        };
        let good = sign(
            Header::new(Algorithm::HS256),
            serde_json::json!({"sub": "u", "exp": now + 60}),
            secret,
        );
        assert_eq!(verifier.verify(&good).unwrap().sub.as_str(), "u");
        // Another algorithm's header, even with a valid HMAC of the same key, is refused.
        let hs512 = sign(Header::new(Algorithm::HS512), serde_json::json!({"sub": "u"}), secret);
        assert_eq!(verifier.verify(&hs512), Err(TokenError::Invalid));
        // alg "none" with the signature dropped.
        let none = format!("{}.{}.", base64url(br#"{"alg":"none"}"#), base64url(br#"{"sub":"u"}"#));
        assert_eq!(verifier.verify(&none), Err(TokenError::Invalid));
        // A payload swapped under a valid signature.
        let (head, rest) = good.split_once('.').unwrap();
        let (_, signature) = rest.split_once('.').unwrap();
        let swapped = format!("{head}.{}.{signature}", base64url(br#"{"sub":"admin"}"#));
        assert_eq!(verifier.verify(&swapped), Err(TokenError::Invalid));
        // Not yet valid; exp not a number; garbage.
        let early = sign(
            Header::new(Algorithm::HS256),
            serde_json::json!({"sub": "u", "nbf": now + 600, "exp": now + 1200}),
            secret,
        );
        assert_eq!(verifier.verify(&early), Err(TokenError::Invalid));
        let odd = sign(
            Header::new(Algorithm::HS256),
            serde_json::json!({"sub": "u", "exp": "soon"}),
            secret,
        );
        assert_eq!(verifier.verify(&odd), Err(TokenError::Invalid));
        for garbage in ["", ".", "..", "a.b.c", "a.b.c.d"] {
            assert_eq!(verifier.verify(garbage), Err(TokenError::Invalid), "{garbage:?}");
        }
        // And what it issues, the library accepts.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["sub", "exp"]);
        let decoded = jsonwebtoken::decode::<Map<String, Value>>(
            &verifier.issue("v", 60),
            &DecodingKey::from_secret(secret),
            &validation,
        )
        .unwrap();
        assert_eq!(decoded.claims["sub"], "v");
    }

    #[test]
    fn tokens_without_usable_sub_are_refused() {
        use jsonwebtoken::{EncodingKey, Header};
        let key = EncodingKey::from_secret(b"s");
        let verifier = Hs256Verifier::new(b"s");
        for claims in [
            serde_json::json!({"name": "no sub"}),
            serde_json::json!({"sub": ""}),
            serde_json::json!({"sub": 42}),
        ] {
            let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap();
            assert_eq!(verifier.verify(&token), Err(TokenError::Invalid), "{claims}");
        }
        // Without exp the token is refused: it would be valid forever.
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &serde_json::json!({"sub": "u"}), &key).unwrap();
        assert_eq!(verifier.verify(&token), Err(TokenError::Invalid));
    }

    #[test]
    fn a_short_secret_is_refused() {
        assert!(Hs256Verifier::checked(&[7; MIN_HS256_SECRET_BYTES - 1]).is_err());
        assert!(Hs256Verifier::checked(&[7; MIN_HS256_SECRET_BYTES]).is_ok());
        assert!(Hs256Verifier::checked(DEV_JWT_SECRET.as_bytes()).is_ok());
    }
}
