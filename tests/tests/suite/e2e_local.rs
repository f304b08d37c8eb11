//! End to end through the real `mailmind-local` binary on a random port, with
//! a real SQLite file and fake providers that answer like the real ones.

use std::time::Duration;

use mailmind_tests::fake_providers::FakeProvider;
use mailmind_tests::local_server::{Answer, LocalServer};
use serde_json::{Value, json};

const GROQ_KEY: &str = "gsk_live0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH9xQa";
const GROQ_KEY_2: &str = "gsk_next0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHzzZZ";
const GROQ_BAD_KEY: &str = "gsk_revoked456789abcdefghijklmnopqrstuvwxyzABCDEFGHbad1";
const GEMINI_KEY: &str = "AIzaSyD-live-0123456789abcdefghijklmn";
const GROQ_MODELS: &[&str] = &["llama-3.3-70b-versatile", "llama-3.1-8b-instant", "gemma2-9b-it"];
const GEMINI_MODELS: &[&str] = &[
    "gemini-2.0-flash",
    "gemini-1.5-pro",
    "gemini-1.5-flash",
    "text-embedding-004",
    "gemini-2.5-pro",
];

struct World {
    _dir: tempfile::TempDir,
    groq: FakeProvider,
    gemini: FakeProvider,
    server: LocalServer,
}

async fn world() -> World {
    world_with(&[]).await
}

async fn world_with(extra_env: &[(String, String)]) -> World {
    let dir = tempfile::tempdir().unwrap();
    let groq = FakeProvider::start("groq").await;
    groq.accept(GROQ_KEY, GROQ_MODELS).await;
    groq.accept(GROQ_KEY_2, &["llama-3.1-8b-instant"]).await;
    let gemini = FakeProvider::start("google_gemini").await;
    gemini.accept(GEMINI_KEY, GEMINI_MODELS).await;
    let mut env = vec![groq.env(), gemini.env()];
    env.extend_from_slice(extra_env);
    let server = LocalServer::start(&dir.path().join("data"), &env).await;
    World {
        _dir: dir,
        groq,
        gemini,
        server,
    }
}

fn body(provider: &str, key: &str) -> String {
    json!({"provider": provider, "api_key": key}).to_string()
}

fn assert_error(answer: &Answer, status: u16, code: &str) {
    assert_eq!(answer.status, status, "{}", answer.text);
    assert_eq!(answer.json["code"], code, "{}", answer.text);
    let detail = answer.json["detail"].as_str().expect("detail is a string");
    assert!(!detail.is_empty());
    assert_eq!(
        answer.json.as_object().unwrap().len(),
        2,
        "only detail and code: {}",
        answer.text
    );
    assert!(
        answer.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"),
        "JSON error"
    );
}

fn assert_no_secret(answer: &Answer) {
    for key in [GROQ_KEY, GROQ_KEY_2, GROQ_BAD_KEY, GEMINI_KEY] {
        assert!(
            !answer.text.contains(key),
            "a key leaked into a response: {}",
            answer.text
        );
        // Not even a large part of one.
        assert!(
            !answer.text.contains(&key[4..24]),
            "part of a key leaked: {}",
            answer.text
        );
    }
}

#[tokio::test]
async fn every_rest_route_works_end_to_end() {
    let w = world().await;
    let s = &w.server;

    // GET /credentials/: one entry per provider, sorted, nothing set.
    let list = s.call_as("user-a", "GET", "/api/v1/credentials/", None).await;
    assert_eq!(list.status, 200);
    let entries = list.json.as_array().unwrap();
    let ids: Vec<&str> = entries.iter().map(|e| e["provider"].as_str().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(ids, sorted);
    assert!(ids.contains(&"groq") && ids.contains(&"google_gemini"));
    for e in entries {
        assert_eq!(e["api_key_set"], false);
        for absent in ["created_at", "updated_at", "last_checked_at", "key_hint"] {
            assert!(e.get(absent).is_none(), "{absent} in {e}");
        }
    }

    // POST /credentials/: a pasted key with surrounding whitespace.
    let created = s
        .call_as(
            "user-a",
            "POST",
            "/api/v1/credentials/",
            Some(&body("groq", &format!("  \n{GROQ_KEY}\t "))),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_no_secret(&created);
    let c = &created.json;
    assert_eq!(c["provider"], "groq");
    assert_eq!(c["provider_name"], "Groq");
    assert_eq!(c["api_key_set"], true);
    assert_eq!(c["key_hint"], "gsk_…9xQa");
    assert_eq!(c["status"], "valid");
    assert_eq!(c["status_message"], "Groq API key is valid.");
    assert_eq!(c["models_count"], 3);
    for field in ["created_at", "updated_at", "last_checked_at"] {
        let t = c[field].as_str().unwrap();
        assert!(
            t.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(t).is_ok(),
            "{field}: {t}"
        );
    }
    // The provider got the trimmed key.
    let sent = w.groq.requests().await;
    assert_eq!(
        sent.last().unwrap().headers["authorization"],
        format!("Bearer {GROQ_KEY}").as_str()
    );

    // GET /credentials/{provider}/, with and without the trailing slash.
    for path in ["/api/v1/credentials/groq/", "/api/v1/credentials/groq"] {
        let got = s.call_as("user-a", "GET", path, None).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.json, created.json);
    }

    // GET /credentials/{provider}/models/: sorted, with facts.
    let models = s
        .call_as("user-a", "GET", "/api/v1/credentials/groq/models/", None)
        .await;
    assert_eq!(models.status, 200);
    let ids: Vec<&str> = models
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["model_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["gemma2-9b-it", "llama-3.1-8b-instant", "llama-3.3-70b-versatile"]);
    let first = &models.json[0];
    assert_eq!(first["provider"], "groq");
    assert_eq!(first["model_name"], "gemma2-9b-it");
    assert_eq!(first["context_window"], 131072);
    assert!(chrono::DateTime::parse_from_rfc3339(first["discovered_at"].as_str().unwrap()).is_ok());

    // POST /credentials/{provider}/check/: a fresh validation.
    let before = w.groq.requests().await.len();
    let checked = s
        .call_as("user-a", "POST", "/api/v1/credentials/groq/check/", None)
        .await;
    assert_eq!(checked.status, 200, "{}", checked.text);
    assert_eq!(checked.json["status"], "valid");
    assert_eq!(checked.json["created_at"], c["created_at"]);
    assert_eq!(
        w.groq.requests().await.len(),
        before + 1,
        "the check asked the provider"
    );

    // PUT /credentials/{provider}/: new key, new hint, models re-discovered.
    let updated = s
        .call_as(
            "user-a",
            "PUT",
            "/api/v1/credentials/groq/",
            Some(&json!({"api_key": GROQ_KEY_2}).to_string()),
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.text);
    assert_eq!(updated.json["key_hint"], "gsk_…zzZZ");
    assert_eq!(updated.json["models_count"], 1);
    assert_eq!(updated.json["created_at"], c["created_at"]);
    let models = s
        .call_as("user-a", "GET", "/api/v1/credentials/groq/models", None)
        .await;
    assert_eq!(models.json.as_array().unwrap().len(), 1);

    // Gemini pages through its list.
    let gemini = s
        .call_as(
            "user-a",
            "POST",
            "/api/v1/credentials",
            Some(&body("google_gemini", GEMINI_KEY)),
        )
        .await;
    assert_eq!(gemini.status, 201, "{}", gemini.text);
    assert_eq!(gemini.json["models_count"], 5);
    assert_eq!(gemini.json["key_hint"], "AIza…klmn");
    assert!(w.gemini.requests().await.len() >= 3, "three pages of two");
    let list = s.call_as("user-a", "GET", "/api/v1/credentials", None).await;
    let set: Vec<&str> = list
        .json
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["api_key_set"] == true)
        .map(|e| e["provider"].as_str().unwrap())
        .collect();
    assert_eq!(set, ["google_gemini", "groq"]);

    // DELETE /credentials/{provider}/: gone, models too.
    let deleted = s.call_as("user-a", "DELETE", "/api/v1/credentials/groq/", None).await;
    assert_eq!(deleted.status, 204);
    assert!(deleted.text.is_empty());
    assert_error(
        &s.call_as("user-a", "GET", "/api/v1/credentials/groq/", None).await,
        404,
        "credential_not_found",
    );
    let models = s
        .call_as("user-a", "GET", "/api/v1/credentials/groq/models/", None)
        .await;
    assert_eq!((models.status, models.json.clone()), (200, json!([])));
    // And it can be created again.
    let again = s
        .call_as("user-a", "POST", "/api/v1/credentials/", Some(&body("groq", GROQ_KEY)))
        .await;
    assert_eq!(again.status, 201);
}

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
    s.call_as("user-a", "POST", "/api/v1/credentials/", Some(&body("groq", GROQ_KEY)))
        .await;
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
    let long = format!("gsk_{}", "x".repeat(4092));
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
    let rejected = s
        .call_as(
            "user-a",
            "POST",
            "/api/v1/credentials/",
            Some(&body("groq", GROQ_BAD_KEY)),
        )
        .await;
    assert_error(&rejected, 422, "key_rejected");
    assert_no_secret(&rejected);
    assert_error(
        &s.call_as("user-a", "GET", "/api/v1/credentials/groq/", None).await,
        404,
        "credential_not_found",
    );

    // 409 credential_exists, without touching the stored key.
    let created = s
        .call_as("user-a", "POST", "/api/v1/credentials/", Some(&body("groq", GROQ_KEY)))
        .await;
    assert_eq!(created.status, 201);
    let calls = w.groq.requests().await.len();
    assert_error(
        &s.call_as(
            "user-a",
            "POST",
            "/api/v1/credentials/",
            Some(&body("groq", GROQ_KEY_2)),
        )
        .await,
        409,
        "credential_exists",
    );
    assert_eq!(
        w.groq.requests().await.len(),
        calls,
        "a duplicate is refused before asking the provider"
    );

    // 422 on PUT leaves the old key exactly as it was.
    let put = s
        .call_as(
            "user-a",
            "PUT",
            "/api/v1/credentials/groq/",
            Some(&json!({"api_key": GROQ_BAD_KEY}).to_string()),
        )
        .await;
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
    assert_error(
        &s.call_as("user-a", "PATCH", "/api/v1/credentials/groq/", None).await,
        405,
        "method_not_allowed",
    );
}

#[tokio::test]
async fn provider_trouble_stores_the_key_with_an_error_status() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let w = world_with(&[(
        "PROVIDER_BASE_URL_GOOGLE_GEMINI".into(),
        format!("http://127.0.0.1:{closed}"),
    )])
    .await;
    let s = &w.server;
    // Unreachable provider: stored anyway, 201, status error with a reason.
    let unreachable = s
        .call_as(
            "user-a",
            "POST",
            "/api/v1/credentials/",
            Some(&body("google_gemini", GEMINI_KEY)),
        )
        .await;
    assert_eq!(unreachable.status, 201, "{}", unreachable.text);
    assert_eq!(unreachable.json["status"], "error");
    assert_eq!(unreachable.json["status_reason"], "provider_unavailable");
    assert_eq!(unreachable.json["models_count"], 0);
    assert!(
        unreachable.json["status_message"]
            .as_str()
            .unwrap()
            .contains("Google Gemini")
    );

    // Rate limited: error, rate_limited, with the wait.
    let limited_key = "gsk_limited3456789abcdefghijklmnopqrstuvwxyzABCDEFGHlimt";
    w.groq.answer(limited_key, w.groq.rate_limited_response(30)).await;
    let limited = s
        .call_as(
            "user-a",
            "POST",
            "/api/v1/credentials/",
            Some(&body("groq", limited_key)),
        )
        .await;
    assert_eq!(limited.status, 201, "{}", limited.text);
    assert_eq!(limited.json["status"], "error");
    assert_eq!(limited.json["status_reason"], "rate_limited");
    assert_eq!(limited.json["retry_after_seconds"], 30);
    assert!(limited.json["status_message"].as_str().unwrap().contains("30 s"));
    let models = s
        .call_as("user-a", "GET", "/api/v1/credentials/groq/models/", None)
        .await;
    assert_eq!(models.json, json!([]));

    // A later check during an outage keeps what was known.
    w.groq.server.reset().await;
    w.groq.accept(limited_key, GROQ_MODELS).await;
    let valid = s
        .call_as("user-a", "POST", "/api/v1/credentials/groq/check/", None)
        .await;
    assert_eq!(valid.json["status"], "valid");
    assert_eq!(valid.json["models_count"], 3);
    w.groq.server.reset().await;
    w.groq.answer(limited_key, w.groq.unavailable_response()).await;
    let outage = s
        .call_as("user-a", "POST", "/api/v1/credentials/groq/check/", None)
        .await;
    assert_eq!(outage.json["status"], "error");
    assert_eq!(outage.json["status_reason"], "provider_unavailable");
    assert_eq!(outage.json["models_count"], 3, "models kept through an outage");
    let models = s
        .call_as("user-a", "GET", "/api/v1/credentials/groq/models/", None)
        .await;
    assert_eq!(models.json.as_array().unwrap().len(), 3);

    // A key revoked since: invalid, and it unlocks nothing any more.
    w.groq.server.reset().await;
    w.groq.answer(limited_key, w.groq.invalid_key_response()).await;
    let revoked = s
        .call_as("user-a", "POST", "/api/v1/credentials/groq/check/", None)
        .await;
    assert_eq!(revoked.status, 200);
    assert_eq!(revoked.json["status"], "invalid");
    assert_eq!(revoked.json["models_count"], 0);
    let models = s
        .call_as("user-a", "GET", "/api/v1/credentials/groq/models/", None)
        .await;
    assert_eq!(models.json, json!([]));
}

#[tokio::test]
async fn users_cannot_see_touch_or_detect_each_others_credentials() {
    let w = world().await;
    let s = &w.server;
    let a_created = s
        .call_as("user-a", "POST", "/api/v1/credentials/", Some(&body("groq", GROQ_KEY)))
        .await;
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
    let b_created = s
        .call_as(
            "user-b",
            "POST",
            "/api/v1/credentials/",
            Some(&body("groq", GROQ_KEY_2)),
        )
        .await;
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

#[tokio::test]
async fn restart_on_the_same_data_dir_keeps_keys_decryptable() {
    let mut w = world().await;
    let created = w
        .server
        .call_as("user-a", "POST", "/api/v1/credentials/", Some(&body("groq", GROQ_KEY)))
        .await;
    assert_eq!(created.status, 201);
    w.server.restart().await;
    let got = w
        .server
        .call_as("user-a", "GET", "/api/v1/credentials/groq/", None)
        .await;
    assert_eq!(got.json, created.json);
    let checked = w
        .server
        .call_as("user-a", "POST", "/api/v1/credentials/groq/check/", None)
        .await;
    assert_eq!(checked.status, 200, "{}", checked.text);
    assert_eq!(checked.json["status"], "valid");
    // The provider received exactly the original key, decrypted after the restart.
    assert_eq!(
        w.groq.requests().await.last().unwrap().headers["authorization"],
        format!("Bearer {GROQ_KEY}").as_str()
    );
}

#[tokio::test]
async fn no_raw_key_in_the_data_dir_or_the_logs() {
    let mut w = world().await;
    let s = &w.server;
    s.call_as("user-a", "POST", "/api/v1/credentials/", Some(&body("groq", GROQ_KEY)))
        .await;
    s.call_as(
        "user-a",
        "POST",
        "/api/v1/credentials/",
        Some(&body("google_gemini", GEMINI_KEY)),
    )
    .await;
    s.call_as(
        "user-a",
        "PUT",
        "/api/v1/credentials/groq/",
        Some(&json!({"api_key": GROQ_KEY_2}).to_string()),
    )
    .await;
    s.call_as(
        "user-a",
        "PUT",
        "/api/v1/credentials/groq/",
        Some(&json!({"api_key": GROQ_BAD_KEY}).to_string()),
    )
    .await;
    s.call_as("user-a", "POST", "/api/v1/credentials/groq/check/", None)
        .await;
    s.call_as(
        "user-b",
        "POST",
        "/api/v1/credentials/",
        Some(&body("groq", GROQ_BAD_KEY)),
    )
    .await;
    s.call_as(
        "user-a",
        "POST",
        "/api/v1/credentials/",
        Some(&json!({"provider": "groq", "api_key": 5, "x": GROQ_KEY}).to_string()),
    )
    .await;
    let token = s.token("user-a");
    w.server.stop().await;

    let logs = w.server.logs();
    assert!(logs.contains("request handled"), "the server did log: {logs}");
    for key in [GROQ_KEY, GROQ_KEY_2, GROQ_BAD_KEY, GEMINI_KEY] {
        assert!(!logs.contains(key), "a key reached the logs");
        assert!(!logs.contains(&key[4..20]), "part of a key reached the logs");
    }
    assert!(!logs.contains(&token), "a bearer token reached the logs");
    // Every log line is one JSON object.
    for line in logs.lines().filter(|l| l.starts_with('{')) {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }

    let mut files = 0;
    for entry in walk(&w.server.data_dir) {
        let bytes = std::fs::read(&entry).unwrap();
        files += 1;
        for key in [GROQ_KEY, GROQ_KEY_2, GROQ_BAD_KEY, GEMINI_KEY] {
            assert!(
                !bytes.windows(key.len()).any(|w| w == key.as_bytes()),
                "a raw key is in {}",
                entry.display()
            );
        }
    }
    assert!(files >= 2, "database and master key were scanned");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn a_locked_database_is_a_503_and_changes_nothing() {
    let w = world().await;
    let s = &w.server;
    let created = s
        .call_as("user-a", "POST", "/api/v1/credentials/", Some(&body("groq", GROQ_KEY)))
        .await;
    assert_eq!(created.status, 201);

    // Another process holds the write lock: a real, retryable storage fault.
    let db = rusqlite::Connection::open(s.data_dir.join("mailmind.db")).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let create = s
        .call_as(
            "user-a",
            "POST",
            "/api/v1/credentials/",
            Some(&body("google_gemini", GEMINI_KEY)),
        )
        .await;
    assert_error(&create, 503, "service_unavailable");
    let update = s
        .call_as(
            "user-a",
            "PUT",
            "/api/v1/credentials/groq/",
            Some(&json!({"api_key": GROQ_KEY_2}).to_string()),
        )
        .await;
    assert_error(&update, 503, "service_unavailable");
    db.execute_batch("ROLLBACK").unwrap();

    // Nothing was half-written.
    assert_error(
        &s.call_as("user-a", "GET", "/api/v1/credentials/google_gemini/", None)
            .await,
        404,
        "credential_not_found",
    );
    assert_eq!(
        s.call_as("user-a", "GET", "/api/v1/credentials/groq/", None).await.json,
        created.json
    );
    let models = s
        .call_as("user-a", "GET", "/api/v1/credentials/groq/models/", None)
        .await;
    assert_eq!(models.json.as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn a_tampered_ciphertext_fails_closed_with_500() {
    let w = world().await;
    let s = &w.server;
    assert_eq!(
        s.call_as("user-a", "POST", "/api/v1/credentials/", Some(&body("groq", GROQ_KEY)))
            .await
            .status,
        201
    );
    let calls = w.groq.requests().await.len();
    let db = rusqlite::Connection::open(s.data_dir.join("mailmind.db")).unwrap();
    let mut ciphertext: Vec<u8> = db
        .query_row("SELECT ciphertext FROM credentials WHERE user_id = 'user-a'", [], |r| {
            r.get(0)
        })
        .unwrap();
    ciphertext[0] ^= 0x01;
    let changed = db
        .execute(
            "UPDATE credentials SET ciphertext = ?1 WHERE user_id = 'user-a'",
            [&ciphertext],
        )
        .unwrap();
    assert_eq!(changed, 1);
    let answer = s
        .call_as("user-a", "POST", "/api/v1/credentials/groq/check/", None)
        .await;
    assert_error(&answer, 500, "internal");
    assert_eq!(w.groq.requests().await.len(), calls, "nothing was sent to the provider");
    // The status still reads fine: it never needs the key.
    assert_eq!(
        s.call_as("user-a", "GET", "/api/v1/credentials/groq/", None)
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn a_malformed_master_key_stops_the_server_from_starting() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("master.key"), b"too short").unwrap();
    let output = tokio::process::Command::new(mailmind_tests::workspace_binary("mailmind-local"))
        .args(["--port", "0", "--data-dir"])
        .arg(dir.path())
        .output();
    let output = tokio::time::timeout(Duration::from_secs(20), output)
        .await
        .unwrap()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("malformed"), "{stderr}");
    assert_eq!(std::fs::read(dir.path().join("master.key")).unwrap(), b"too short");
}

#[tokio::test]
async fn anthropic_openrouter_and_cohere_create_then_list_models() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "anthropic",
            "sk-ant-api03-e2e0123456789abcdefghijklmnopqrstuvwxyz-AAAA",
            &["claude-opus-4-1", "claude-sonnet-4-5", "claude-haiku-4-5"][..],
            "Anthropic",
            "sk-ant-api03-…AAAA",
        ),
        (
            "openrouter",
            "sk-or-v1-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd",
            &["openai/gpt-4o", "anthropic/claude-sonnet-4.5"][..],
            "OpenRouter",
            "sk-or-v1-…abcd",
        ),
        (
            "cohere",
            "e2eCohereKey0123456789abcdefghijklmnopqrs",
            &["command-a-03-2025", "command-r", "command-r-plus"][..],
            "Cohere",
            "…pqrs",
        ),
    ];
    let mut fakes = Vec::new();
    for (id, key, models, _, _) in &cases {
        let fake = FakeProvider::start(id).await;
        fake.accept(key, models).await;
        fakes.push(fake);
    }
    let env: Vec<(String, String)> = fakes.iter().map(FakeProvider::env).collect();
    let server = LocalServer::start(&dir.path().join("data"), &env).await;
    for (id, key, models, name, hint) in cases {
        // A wrong key first: rejected, nothing stored.
        let wrong = server
            .call_as(
                "user-a",
                "POST",
                "/api/v1/credentials/",
                Some(&body(id, "wrong-key-0000000000000000000000")),
            )
            .await;
        assert_error(&wrong, 422, "key_rejected");
        assert!(wrong.json["detail"].as_str().unwrap().contains(name), "{}", wrong.text);

        let created = server
            .call_as("user-a", "POST", "/api/v1/credentials/", Some(&body(id, key)))
            .await;
        assert_eq!(created.status, 201, "{id}: {}", created.text);
        assert_eq!(created.json["provider_name"], name);
        assert_eq!(created.json["status"], "valid");
        assert_eq!(created.json["status_message"], format!("{name} API key is valid."));
        assert_eq!(created.json["key_hint"], hint);
        assert_eq!(created.json["models_count"], models.len());
        let listed = server
            .call_as("user-a", "GET", &format!("/api/v1/credentials/{id}/models/"), None)
            .await;
        let ids: Vec<&str> = listed
            .json
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["model_id"].as_str().unwrap())
            .collect();
        let mut expected = models.to_vec();
        expected.sort_unstable();
        assert_eq!(ids, expected, "{id}");
        assert!(listed.json.as_array().unwrap().iter().all(|m| m["provider"] == id));
    }
    // Facts the providers give are kept: display names (Anthropic), context windows (Cohere).
    let anthropic = server
        .call_as("user-a", "GET", "/api/v1/credentials/anthropic/models/", None)
        .await;
    assert_eq!(anthropic.json[0]["model_name"], "Claude Haiku 4 5");
    let cohere = server
        .call_as("user-a", "GET", "/api/v1/credentials/cohere/models/", None)
        .await;
    assert_eq!(cohere.json[0]["context_window"], 128000);
    // All ten providers are listed, the three set.
    let list = server.call_as("user-a", "GET", "/api/v1/credentials/", None).await;
    assert_eq!(list.json.as_array().unwrap().len(), 10);
    let set: Vec<&str> = list
        .json
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["api_key_set"] == true)
        .map(|e| e["provider"].as_str().unwrap())
        .collect();
    assert_eq!(set, ["anthropic", "cohere", "openrouter"]);
}
