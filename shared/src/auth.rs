//! Bearer token verification where API Gateway's JWT authorizer is not there
//! to do it: the local server (HS256 with a shared development secret).

use std::collections::HashMap;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value};

use crate::handlers::http::valid_user_id;

/// The documented development secret of the local server when
/// `LOCAL_JWT_SECRET` is unset. Never use it for anything reachable by others.
pub const DEV_JWT_SECRET: &str = "mailmind-local-development-secret";

/// A token's claims, as API Gateway's JWT authorizer hands them to a
/// function: every value a string (numbers and arrays in their JSON text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedClaims {
    pub sub: String,
    pub claims: HashMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("missing bearer token")]
    Missing,
    #[error("invalid token")]
    Invalid,
}

/// Verifies HS256 tokens signed with one secret; `exp` is honoured when present.
#[derive(Clone)]
pub struct Hs256Verifier {
    key: DecodingKey,
    encoding: EncodingKey,
    validation: Validation,
}

impl Hs256Verifier {
    pub fn new(secret: &[u8]) -> Hs256Verifier {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["sub"]);
        validation.validate_exp = true;
        validation.validate_aud = false;
        validation.leeway = 30;
        Hs256Verifier {
            key: DecodingKey::from_secret(secret),
            encoding: EncodingKey::from_secret(secret),
            validation,
        }
    }

    pub fn verify(&self, token: &str) -> Result<VerifiedClaims, TokenError> {
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &self.key, &self.validation)
            .map_err(|_| TokenError::Invalid)?;
        claims_of(data.claims)
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
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing of a JSON object cannot fail")
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
        Some(Value::String(sub)) if valid_user_id(sub) => sub.clone(),
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
        assert_eq!(claims.sub, "user-a");
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
            verifier.verify_header(Some(&format!("bearer {token}"))).unwrap().sub,
            "user-a"
        );
    }

    #[test]
    fn tokens_without_usable_sub_are_refused() {
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
        // Without exp the token is accepted (exp is honoured only when present).
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &serde_json::json!({"sub": "u"}), &key).unwrap();
        assert_eq!(verifier.verify(&token).unwrap().sub, "u");
    }
}
