//! Who may call: no valid token, no access; and one user never sees, touches or
//! detects another's credentials.

use super::*;

#[tokio::test]
async fn unauthenticated_calls_get_401_on_every_route() {
    let w = world().await;
    let s = &w.server;
    let expired = {
        let verifier = mailmind::auth::Hs256Verifier::new(mailmind_tests::local_server::TEST_JWT_SECRET.as_bytes());
        verifier.issue("user-a", -3600)
    };
    let forged = mailmind::auth::Hs256Verifier::new(b"some other secret").issue("user-a", 3600);
    let default_secret =
        mailmind::auth::Hs256Verifier::new(mailmind::auth::DEV_JWT_SECRET.as_bytes()).issue("user-a", 3600);
    let routes = [
        ("GET", "/api/v1/credentials/"),
        ("POST", "/api/v1/credentials/"),
        ("GET", "/api/v1/credentials/groq/"),
        ("PUT", "/api/v1/credentials/groq/"),
        ("DELETE", "/api/v1/credentials/groq/"),
        ("POST", "/api/v1/credentials/groq/check/"),
        ("GET", "/api/v1/credentials/groq/models/"),
    ];
    for (method, path) in routes {
        for token in [
            None,
            Some("garbage"),
            Some(expired.as_str()),
            Some(forged.as_str()),
            Some(default_secret.as_str()),
        ] {
            let answer = s.call(method, path, token, Some(&body("groq", GROQ_KEY))).await;
            assert_error(&answer, 401, "unauthenticated");
        }
    }
    assert!(w.groq.requests().await.is_empty(), "no provider call without a user");
}

#[tokio::test]
async fn users_cannot_see_touch_or_detect_each_others_credentials() {
    let w = world().await;
    let s = &w.server;
    let a_created = s.post_key("user-a", "groq", GROQ_KEY).await;
    assert_eq!(a_created.status, 201);
    let a_before = s.call_as("user-a", "GET", "/api/v1/credentials/groq/", None).await.json;
    let calls = w.groq.requests().await.len();

    // B sees nothing of A's, with answers identical to having nothing.
    let b_list = s.call_as("user-b", "GET", "/api/v1/credentials/", None).await;
    assert!(
        b_list
            .json
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["api_key_set"] == false)
    );
    let fresh = s.call_as("user-c", "GET", "/api/v1/credentials/", None).await;
    assert_eq!(b_list.json, fresh.json, "B's view equals a brand-new user's");
    for (method, path, b) in [
        ("GET", "/api/v1/credentials/groq/", None),
        (
            "PUT",
            "/api/v1/credentials/groq/",
            Some(json!({"api_key": GROQ_KEY_2}).to_string()),
        ),
        ("DELETE", "/api/v1/credentials/groq/", None),
        ("POST", "/api/v1/credentials/groq/check/", None),
    ] {
        let b_answer = s.call_as("user-b", method, path, b.as_deref()).await;
        let c_answer = s.call_as("user-c", method, path, b.as_deref()).await;
        assert_error(&b_answer, 404, "credential_not_found");
        assert_eq!(b_answer.json, c_answer.json, "{method} {path}: no hint that A has one");
    }
    let b_models = s
        .call_as("user-b", "GET", "/api/v1/credentials/groq/models/", None)
        .await;
    assert_eq!(b_models.json, json!([]));
    assert_eq!(
        w.groq.requests().await.len(),
        calls,
        "B's calls never reached the provider with A's key"
    );

    // B's own credential for the same provider is separate.
    let b_created = s.post_key("user-b", "groq", GROQ_KEY_2).await;
    assert_eq!(b_created.status, 201);
    assert_eq!(b_created.json["key_hint"], "gsk_…zzZZ");
    s.call_as("user-b", "DELETE", "/api/v1/credentials/groq/", None).await;
    // A's credential and models are untouched by all of it.
    assert_eq!(
        s.call_as("user-a", "GET", "/api/v1/credentials/groq/", None).await.json,
        a_before
    );
    let a_models = s
        .call_as("user-a", "GET", "/api/v1/credentials/groq/models/", None)
        .await;
    assert_eq!(a_models.json.as_array().unwrap().len(), 3);
}

/// What a browser sends after DNS rebinding: the attacker's name as `Host`,
/// to 127.0.0.1. The server answers no such request, on any path.
#[tokio::test]
async fn requests_for_names_other_than_loopback_are_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let w = world().await;
    let s = &w.server;
    let address = s.base_url.trim_start_matches("http://").to_owned();
    let token = s.token("user-a");
    let raw = |host: &str, path: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n")
    };
    for (host, path, expected) in [
        ("evil.example", "/api/v1/credentials/", "403"),
        ("evil.example:3000", "/ws?token=x", "403"),
        ("localhost.evil.example", "/@connections/abc", "403"),
        ("10.0.0.7", "/api/v1/credentials/", "403"),
        ("localhost", "/api/v1/credentials/", "200"),
        (address.as_str(), "/api/v1/credentials/", "200"),
    ] {
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        stream.write_all(raw(host, path).as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        let status_line = answer.lines().next().unwrap_or_default();
        assert!(status_line.contains(expected), "Host {host}, {path}: {status_line}");
        if expected == "403" {
            assert!(answer.contains(r#""code":"forbidden_host""#), "{answer}");
        }
    }
}
