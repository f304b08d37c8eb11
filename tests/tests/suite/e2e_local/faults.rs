//! Faults outside the caller's control: provider trouble, a locked database, a tampered
//! ciphertext. Each is answered cleanly and leaves the stored data as it was.

use super::*;

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
    let unreachable = s.post_key("user-a", "google_gemini", GEMINI_KEY).await;
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
    let limited = s.post_key("user-a", "groq", limited_key).await;
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
async fn a_locked_database_is_a_503_and_changes_nothing() {
    let w = world().await;
    let s = &w.server;
    let created = s.post_key("user-a", "groq", GROQ_KEY).await;
    assert_eq!(created.status, 201);

    // Another process holds the write lock: a real, retryable storage fault.
    let db = rusqlite::Connection::open(s.data_dir.join("mailmind.db")).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let create = s.post_key("user-a", "google_gemini", GEMINI_KEY).await;
    assert_error(&create, 503, "service_unavailable");
    let update = s.put_key("user-a", "groq", GROQ_KEY_2).await;
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
    assert_eq!(s.post_key("user-a", "groq", GROQ_KEY).await.status, 201);
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
