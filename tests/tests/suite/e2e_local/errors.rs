//! Client errors: bad input (400), unknown providers and credentials (404), methods (405),
//! conflicts (409), oversized bodies (413) and rejected keys (422), all in the contract shape.

use super::*;

#[tokio::test]
async fn bad_input_gets_clear_400s_and_nothing_is_stored() {
    let w = world().await;
    let s = &w.server;
    let post = |b: String| async move { s.call_as("user-a", "POST", "/api/v1/credentials/", Some(&b)).await };
    let cases: Vec<(String, &str)> = vec![
        ("not json".into(), "invalid_request"),
        ("".into(), "invalid_request"),
        ("[]".into(), "invalid_request"),
        ("\"groq\"".into(), "invalid_request"),
        (json!({"api_key": GROQ_KEY}).to_string(), "invalid_request"),
        (json!({"provider": "groq"}).to_string(), "invalid_request"),
        (
            json!({"provider": "groq", "api_key": null}).to_string(),
            "invalid_request",
        ),
        (
            json!({"provider": "groq", "api_key": 12345}).to_string(),
            "invalid_request",
        ),
        (
            json!({"provider": "groq", "api_key": [GROQ_KEY]}).to_string(),
            "invalid_request",
        ),
        (
            json!({"provider": 7, "api_key": GROQ_KEY}).to_string(),
            "invalid_request",
        ),
        (
            json!({"provider": "groq", "api_key": "   "}).to_string(),
            "invalid_request",
        ),
        (
            json!({"provider": "groq", "api_key": "gsk_two words"}).to_string(),
            "invalid_request",
        ),
        (
            json!({"provider": "groq", "api_key": "gsk_line\nbreak"}).to_string(),
            "invalid_request",
        ),
        (
            json!({"provider": "groq", "api_key": "gsk_ctrl\u{7}char"}).to_string(),
            "invalid_request",
        ),
        (
            json!({"provider": "groq", "api_key": "k".repeat(4097)}).to_string(),
            "invalid_request",
        ),
    ];
    for (b, code) in cases {
        let answer = post(b.clone()).await;
        assert_error(&answer, 400, code);
        assert_no_secret(&answer);
    }
    // Unknown provider in the body: 400, listing what is supported.
    let answer = post(body("openai-but-wrong", GROQ_KEY)).await;
    assert_error(&answer, 400, "unknown_provider");
    let detail = answer.json["detail"].as_str().unwrap();
    assert!(detail.contains("groq") && detail.contains("google_gemini"), "{detail}");
    // Unknown provider in the path: 404.
    for (method, path) in [
        ("GET", "/api/v1/credentials/nope/"),
        ("PUT", "/api/v1/credentials/nope/"),
        ("DELETE", "/api/v1/credentials/nope/"),
        ("POST", "/api/v1/credentials/nope/check/"),
        ("GET", "/api/v1/credentials/GROQ/models/"),
    ] {
        let answer = s
            .call_as("user-a", method, path, Some(&json!({"api_key": GROQ_KEY}).to_string()))
            .await;
        assert_error(&answer, 404, "unknown_provider");
        assert!(answer.json["detail"].as_str().unwrap().contains("groq"));
    }
    // PUT input is checked too.
    s.post_key("user-a", "groq", GROQ_KEY).await;
    for b in [
        "{".to_owned(),
        json!({}).to_string(),
        json!({"api_key": 1}).to_string(),
        json!({"api_key": ""}).to_string(),
        json!({"api_key": GROQ_KEY_2, "provider": "google_gemini"}).to_string(),
    ] {
        assert_error(
            &s.call_as("user-a", "PUT", "/api/v1/credentials/groq/", Some(&b)).await,
            400,
            "invalid_request",
        );
    }
    // A 4096-byte key is accepted as input (the provider then judges it).
    // No distinctive prefix: a Groq-looking key would be key_provider_mismatch.
    let long = format!("key_{}", "x".repeat(4092));
    let answer = post(body("google_gemini", &long)).await;
    assert_eq!(answer.status, 422, "{}", answer.text);
    // Nothing else was stored along the way.
    let list = s.call_as("user-a", "GET", "/api/v1/credentials/", None).await;
    let set: Vec<&Value> = list
        .json
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["api_key_set"] == true)
        .collect();
    assert_eq!(set.len(), 1);
    assert_eq!(set[0]["key_hint"], "gsk_…9xQa");
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let w = world().await;
    let big = json!({"provider": "groq", "api_key": GROQ_KEY, "padding": "x".repeat(70 * 1024)}).to_string();
    assert_error(
        &w.server
            .call_as("user-a", "POST", "/api/v1/credentials/", Some(&big))
            .await,
        413,
        "payload_too_large",
    );
    assert_error(
        &w.server
            .call_as("user-a", "PUT", "/api/v1/credentials/groq/", Some(&big))
            .await,
        413,
        "payload_too_large",
    );
    // Just under the limit is fine.
    let fits = json!({"provider": "groq", "api_key": GROQ_KEY, "padding": "x".repeat(60 * 1024)}).to_string();
    assert_eq!(
        w.server
            .call_as("user-a", "POST", "/api/v1/credentials/", Some(&fits))
            .await
            .status,
        201
    );
}

#[tokio::test]
async fn conflicts_missing_credentials_and_rejected_keys() {
    let w = world().await;
    let s = &w.server;
    // 404 credential_not_found on every per-provider route but models.
    for (method, path, b) in [
        ("GET", "/api/v1/credentials/groq/", None),
        (
            "PUT",
            "/api/v1/credentials/groq/",
            Some(json!({"api_key": GROQ_KEY}).to_string()),
        ),
        ("DELETE", "/api/v1/credentials/groq/", None),
        ("POST", "/api/v1/credentials/groq/check/", None),
    ] {
        assert_error(
            &s.call_as("user-a", method, path, b.as_deref()).await,
            404,
            "credential_not_found",
        );
    }
    assert!(
        w.groq.requests().await.is_empty(),
        "PUT never asks the provider about a missing credential"
    );

    // 422 key_rejected on create: nothing stored.
    let rejected = s.post_key("user-a", "groq", GROQ_BAD_KEY).await;
    assert_error(&rejected, 422, "key_rejected");
    assert_no_secret(&rejected);
    assert_error(
        &s.call_as("user-a", "GET", "/api/v1/credentials/groq/", None).await,
        404,
        "credential_not_found",
    );

    // 409 credential_exists, without touching the stored key.
    let created = s.post_key("user-a", "groq", GROQ_KEY).await;
    assert_eq!(created.status, 201);
    let calls = w.groq.requests().await.len();
    assert_error(
        &s.post_key("user-a", "groq", GROQ_KEY_2).await,
        409,
        "credential_exists",
    );
    assert_eq!(
        w.groq.requests().await.len(),
        calls,
        "a duplicate is refused before asking the provider"
    );

    // 422 on PUT leaves the old key exactly as it was.
    let put = s.put_key("user-a", "groq", GROQ_BAD_KEY).await;
    assert_error(&put, 422, "key_rejected");
    let after = s.call_as("user-a", "GET", "/api/v1/credentials/groq/", None).await;
    assert_eq!(after.json, created.json);
    let checked = s
        .call_as("user-a", "POST", "/api/v1/credentials/groq/check/", None)
        .await;
    assert_eq!(checked.json["status"], "valid", "the old key is still the stored one");
    assert_eq!(
        w.groq.requests().await.last().unwrap().headers["authorization"],
        format!("Bearer {GROQ_KEY}").as_str()
    );

    // Unknown routes and methods.
    assert_error(
        &s.call_as("user-a", "GET", "/api/v1/other", None).await,
        404,
        "not_found",
    );
    let patch = s.call_as("user-a", "PATCH", "/api/v1/credentials/groq/", None).await;
    assert_error(&patch, 405, "method_not_allowed");
    // RFC 9110: a 405 says which methods the route has.
    assert_eq!(patch.headers["allow"], "GET, PUT, DELETE");
    let get_check = s.call_as("user-a", "GET", "/api/v1/credentials/groq/check", None).await;
    assert_error(&get_check, 405, "method_not_allowed");
    assert_eq!(get_check.headers["allow"], "POST");
    let delete_all = s.call_as("user-a", "DELETE", "/api/v1/credentials", None).await;
    assert_eq!(delete_all.headers["allow"], "GET, POST");
}
