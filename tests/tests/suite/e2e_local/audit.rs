//! Audit lines through the real binary: every create, update, delete, check
//! verdict and tamper refusal writes one structured line with the user, the
//! action, the provider and the outcome; no line carries the key.

use super::*;

/// The audit lines the server has written, as JSON objects.
fn audit_lines(logs: &str) -> Vec<Value> {
    logs.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["audit"] == true)
        .collect()
}

fn summary(line: &Value) -> (String, String, String, String) {
    let field = |name: &str| line[name].as_str().unwrap_or("<missing>").to_owned();
    (field("user_id"), field("action"), field("provider"), field("outcome"))
}

#[tokio::test]
async fn every_change_verdict_and_tamper_refusal_writes_one_audit_line_without_the_key() {
    let mut w = world().await;
    let s = &w.server;
    let key_2 = json!({"api_key": GROQ_KEY_2}).to_string();
    let bad = json!({"api_key": GROQ_BAD_KEY}).to_string();
    assert_eq!(s.post_key("user-a", "groq", GROQ_KEY).await.status, 201);
    assert_eq!(s.post_key("user-a", "groq", GROQ_KEY).await.status, 409);
    assert_eq!(
        s.call_as("user-a", "PUT", "/api/v1/credentials/groq/", Some(&key_2))
            .await
            .status,
        200
    );
    assert_eq!(
        s.call_as("user-a", "PUT", "/api/v1/credentials/groq/", Some(&bad))
            .await
            .status,
        422
    );
    assert_eq!(
        s.call_as("user-a", "POST", "/api/v1/credentials/groq/check/", None)
            .await
            .status,
        200
    );
    // Reads are not audited.
    s.call_as("user-a", "GET", "/api/v1/credentials/", None).await;
    assert_eq!(
        s.call_as("user-b", "DELETE", "/api/v1/credentials/groq/", None)
            .await
            .status,
        404
    );
    assert_eq!(s.post_key("user-b", "google_gemini", GEMINI_KEY).await.status, 201);
    // user-b's stored key is altered on disk: its check is refused.
    let db = rusqlite::Connection::open(s.data_dir.join("mailmind.db")).unwrap();
    db.execute(
        "UPDATE credentials SET ciphertext = zeroblob(length(ciphertext)) WHERE user_id = 'user-b'",
        [],
    )
    .unwrap();
    drop(db);
    assert_eq!(
        s.call_as("user-b", "POST", "/api/v1/credentials/google_gemini/check/", None)
            .await
            .status,
        500
    );
    assert_eq!(
        s.call_as("user-a", "DELETE", "/api/v1/credentials/groq/", None)
            .await
            .status,
        204
    );
    w.server.stop().await;
    let logs = w.server.logs();

    let lines = audit_lines(&logs);
    let got: Vec<_> = lines.iter().map(summary).collect();
    let expected: Vec<(String, String, String, String)> = [
        ("user-a", "create", "groq", "valid"),
        ("user-a", "create", "groq", "credential_exists"),
        ("user-a", "update", "groq", "valid"),
        ("user-a", "update", "groq", "key_rejected"),
        ("user-a", "check", "groq", "valid"),
        ("user-b", "delete", "groq", "credential_not_found"),
        ("user-b", "create", "google_gemini", "valid"),
        ("user-b", "check", "google_gemini", "tamper_refused"),
        ("user-a", "delete", "groq", "deleted"),
    ]
    .iter()
    .map(|(u, a, p, o)| (u.to_string(), a.to_string(), p.to_string(), o.to_string()))
    .collect();
    assert_eq!(got, expected, "{logs}");
    for line in &lines {
        assert_eq!(line["target"], "mailmind::audit", "{line}");
        assert_eq!(line["level"], "INFO", "{line}");
    }
    for key in [GROQ_KEY, GROQ_KEY_2, GROQ_BAD_KEY, GEMINI_KEY] {
        assert!(!logs.contains(&key[4..20]), "part of a key in the logs");
    }
}
