//! The WebSocket `$connect` authorizer with RS256 tokens checked against a
//! local JWKS server: only a token of the right issuer, audience and key,
//! unexpired, gets in.

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mailmind::auth::{JwksVerifier, TokenVerifier};
use mailmind::handlers::websocket::authorize;
use mailmind::lambda_events::apigw::ApiGatewayCustomAuthorizerRequestTypeRequest;
use mailmind::lambda_events::iam::IamPolicyEffect;
use mailmind::lambda_events::query_map::QueryMap;
use mailmind_tests::repo_root;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const AUDIENCE: &str = "mailmind-web-client";
const METHOD_ARN: &str = "arn:aws:execute-api:us-east-1:123456789012:abcdef1234/production/$connect";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(repo_root().join("tests/fixtures").join(name)).unwrap()
}

struct Issuer {
    server: MockServer,
}

impl Issuer {
    async fn start() -> Issuer {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/.well-known/jwks.json"))
            .respond_with(ResponseTemplate::new(200).set_body_raw(fixture("jwks.json"), "application/json"))
            .mount(&server)
            .await;
        Issuer { server }
    }

    fn url(&self) -> String {
        self.server.uri()
    }

    fn verifier(&self) -> TokenVerifier {
        TokenVerifier::Jwks(JwksVerifier::new(&self.url(), vec![AUDIENCE.to_owned()], None).unwrap())
    }

    /// Claims of a good token, to be spoiled one at a time.
    fn claims(&self) -> Value {
        let now = chrono::Utc::now().timestamp();
        json!({"sub": "user-rs256", "iss": self.url(), "aud": AUDIENCE, "exp": now + 600, "iat": now, "token_use": "id"})
    }

    async fn jwks_fetches(&self) -> usize {
        self.server.received_requests().await.unwrap_or_default().len()
    }
}

fn sign(claims: &Value, key_file: &str, kid: Option<&str>) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    let key = EncodingKey::from_rsa_pem(&fixture(key_file)).unwrap();
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn good_token(claims: &Value) -> String {
    sign(claims, "jwt-issuer-key.pem", Some("test-key-1"))
}

fn request(token: Option<&str>) -> ApiGatewayCustomAuthorizerRequestTypeRequest {
    let mut event = ApiGatewayCustomAuthorizerRequestTypeRequest::default();
    event.method_arn = Some(METHOD_ARN.to_owned());
    if let Some(token) = token {
        event.query_string_parameters = QueryMap::from(std::collections::HashMap::from([(
            "token".to_owned(),
            token.to_owned(),
        )]));
    }
    event
}

/// `Some(principalId)` when allowed, `None` when denied.
async fn decide(verifier: &TokenVerifier, token: Option<&str>) -> Option<String> {
    let answer = authorize(verifier, request(token)).await;
    let statement = &answer.policy_document.statement;
    assert_eq!(statement.len(), 1);
    assert_eq!(statement[0].action, ["execute-api:Invoke"]);
    assert_eq!(statement[0].resource, [METHOD_ARN]);
    match statement[0].effect {
        IamPolicyEffect::Allow => answer.principal_id,
        _ => None,
    }
}

#[tokio::test]
async fn a_valid_rs256_token_is_allowed_as_its_subject() {
    let issuer = Issuer::start().await;
    let verifier = issuer.verifier();
    assert_eq!(
        decide(&verifier, Some(&good_token(&issuer.claims()))).await.as_deref(),
        Some("user-rs256")
    );
    // A Cognito access token names the app client in client_id, not aud.
    let mut access = issuer.claims();
    access.as_object_mut().unwrap().remove("aud");
    access["client_id"] = json!(AUDIENCE);
    access["token_use"] = json!("access");
    assert_eq!(
        decide(&verifier, Some(&good_token(&access))).await.as_deref(),
        Some("user-rs256")
    );
    // The JWKS was fetched once and then cached.
    assert_eq!(issuer.jwks_fetches().await, 1);
}

#[tokio::test]
async fn wrong_issuer_audience_expiry_or_signature_are_denied() {
    let issuer = Issuer::start().await;
    let verifier = issuer.verifier();
    let spoiled = |field: &str, value: Value| {
        let mut claims = issuer.claims();
        claims[field] = value;
        good_token(&claims)
    };
    let without = |field: &str| {
        let mut claims = issuer.claims();
        claims.as_object_mut().unwrap().remove(field);
        good_token(&claims)
    };
    let now = chrono::Utc::now().timestamp();
    let cases = [
        ("wrong issuer", spoiled("iss", json!("https://evil.example.com"))),
        ("wrong audience", spoiled("aud", json!("someone-else"))),
        ("expired", spoiled("exp", json!(now - 3600))),
        ("no expiry", without("exp")),
        ("no subject", without("sub")),
        ("empty subject", spoiled("sub", json!(""))),
        ("no audience at all", without("aud")),
        (
            "bad signature",
            sign(&issuer.claims(), "jwt-attacker-key.pem", Some("test-key-1")),
        ),
        (
            "unknown key id",
            sign(&issuer.claims(), "jwt-issuer-key.pem", Some("some-other-kid")),
        ),
        ("no key id", sign(&issuer.claims(), "jwt-issuer-key.pem", None)),
        ("alg none", unsigned(&issuer.claims())),
        (
            "HS256 keyed with the public JWKS",
            hs256_with_public_key(&issuer.claims()),
        ),
        ("garbage", "not.a.jwt".to_owned()),
    ];
    for (what, token) in cases {
        assert_eq!(decide(&verifier, Some(&token)).await, None, "{what} must be denied");
    }
    assert_eq!(decide(&verifier, None).await, None, "a missing token must be denied");
    assert_eq!(decide(&verifier, Some("")).await, None, "an empty token must be denied");
    // Unknown key ids trigger at most one refetch a minute.
    assert!(
        issuer.jwks_fetches().await <= 2,
        "{} JWKS fetches",
        issuer.jwks_fetches().await
    );
}

#[tokio::test]
async fn an_unreachable_issuer_denies_rather_than_fails_open() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let issuer_url = format!("http://127.0.0.1:{port}");
    let verifier = TokenVerifier::Jwks(JwksVerifier::new(&issuer_url, vec![AUDIENCE.to_owned()], None).unwrap());
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"sub": "u", "iss": issuer_url, "aud": AUDIENCE, "exp": now + 600});
    assert_eq!(decide(&verifier, Some(&good_token(&claims))).await, None);
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn unsigned(claims: &Value) -> String {
    format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes())
    )
}

/// The classic algorithm-confusion forgery: HS256 with the public key as secret.
fn hs256_with_public_key(claims: &Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("test-key-1".to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(&fixture("jwks.json"))).unwrap()
}
