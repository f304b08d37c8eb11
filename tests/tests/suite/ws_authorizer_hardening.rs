//! The RS256 verifier's bounds: no audience is refused at start,
//! `nbf` is honoured, the JWKS in hand is refreshed after its max age (a key
//! the issuer withdrew stops working), and refetches for unknown key ids are
//! rate-limited also when the fetch fails. Against a local JWKS server.

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mailmind::auth::{JwksVerifier, TokenError};
use mailmind_tests::repo_root;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const AUDIENCE: &str = "mailmind-web-client";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(repo_root().join("tests/fixtures").join(name)).unwrap()
}

fn token(claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("test-key-1".to_owned());
    let key = EncodingKey::from_rsa_pem(&fixture("jwt-issuer-key.pem")).unwrap();
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn claims(issuer: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({"sub": "user-rs256", "iss": issuer, "aud": AUDIENCE, "exp": now + 600, "iat": now})
}

async fn serve_jwks(server: &MockServer, body: Vec<u8>) {
    server.reset().await;
    Mock::given(method("GET"))
        .and(path("/.well-known/jwks.json"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(body, "application/json"))
        .mount(server)
        .await;
}

async fn fetches(server: &MockServer) -> usize {
    server.received_requests().await.unwrap_or_default().len()
}

#[test]
fn an_empty_audience_list_is_refused() {
    for audiences in [vec![], vec![String::new()], vec!["  ".to_owned()]] {
        let refused = JwksVerifier::new("https://issuer.example", audiences.clone(), None);
        assert!(refused.is_err(), "{audiences:?}");
    }
}

#[tokio::test]
async fn a_token_not_yet_valid_is_refused() {
    let server = MockServer::start().await;
    serve_jwks(&server, fixture("jwks.json")).await;
    let verifier = JwksVerifier::new(&server.uri(), vec![AUDIENCE.to_owned()], None).unwrap();
    let mut early = claims(&server.uri());
    early["nbf"] = json!(chrono::Utc::now().timestamp() + 600);
    assert_eq!(verifier.verify(&token(&early)).await, Err(TokenError::Invalid));
    let mut valid_now = claims(&server.uri());
    valid_now["nbf"] = json!(chrono::Utc::now().timestamp() - 10);
    assert!(verifier.verify(&token(&valid_now)).await.is_ok());
}

#[tokio::test]
async fn a_withdrawn_key_stops_working_once_the_jwks_is_older_than_its_max_age() {
    let server = MockServer::start().await;
    serve_jwks(&server, fixture("jwks.json")).await;
    let good = token(&claims(&server.uri()));

    // Default bounds: the JWKS is fetched once and the key stays in use.
    let cached = JwksVerifier::new(&server.uri(), vec![AUDIENCE.to_owned()], None).unwrap();
    assert!(cached.verify(&good).await.is_ok());
    // A max age of zero: every verification finds the JWKS stale.
    let refreshing = JwksVerifier::new(&server.uri(), vec![AUDIENCE.to_owned()], None)
        .unwrap()
        .with_cache_bounds(Duration::ZERO, Duration::ZERO);
    assert!(refreshing.verify(&good).await.is_ok());

    // The issuer withdraws the key.
    serve_jwks(&server, br#"{"keys":[]}"#.to_vec()).await;
    assert_eq!(refreshing.verify(&good).await, Err(TokenError::Invalid));
    assert_eq!(fetches(&server).await, 1, "the stale JWKS was fetched again");
    assert!(
        cached.verify(&good).await.is_ok(),
        "within its max age the JWKS in hand is used"
    );
    assert_eq!(fetches(&server).await, 1, "and not fetched again");
}

#[tokio::test]
async fn failed_fetches_for_unknown_keys_are_rate_limited_too() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    let verifier = JwksVerifier::new(&server.uri(), vec![AUDIENCE.to_owned()], None).unwrap();
    let good = token(&claims(&server.uri()));
    for _ in 0..5 {
        assert_eq!(verifier.verify(&good).await, Err(TokenError::Invalid));
    }
    assert_eq!(
        fetches(&server).await,
        1,
        "one failed fetch, then none within the interval"
    );

    // Once the interval has passed (zero here) and the issuer is back, the key is fetched.
    let recovering = JwksVerifier::new(&server.uri(), vec![AUDIENCE.to_owned()], None)
        .unwrap()
        .with_cache_bounds(Duration::ZERO, Duration::from_secs(3600));
    assert_eq!(recovering.verify(&good).await, Err(TokenError::Invalid));
    serve_jwks(&server, fixture("jwks.json")).await;
    assert!(recovering.verify(&good).await.is_ok());
}
