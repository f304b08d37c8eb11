//! `mailmind-local --sandbox`, end to end through the real binary: every
//! sandbox outcome over HTTP and over the socket, through the real sealing,
//! storage and pushes; no provider is ever called.

use std::time::Duration;

use futures_util::StreamExt;
use mailmind::domain::provider::PROVIDERS;
use mailmind_tests::fake_providers::FakeProvider;
use mailmind_tests::local_server::LocalServer;
use mailmind_tests::workspace_binary;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn connect(server: &LocalServer, user: &str) -> Socket {
    let url = format!(
        "{}/ws?token={}",
        server.base_url.replacen("http://", "ws://", 1),
        server.token(user)
    );
    let (socket, response) = tokio_tungstenite::connect_async(url).await.expect("WebSocket connects");
    assert_eq!(response.status(), 101);
    socket
}

/// The next JSON message on the socket (a missing one fails the test).
async fn next_message(socket: &mut Socket) -> Value {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => return serde_json::from_str(&text).expect("JSON message"),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

/// What creating a key containing `sandbox-<outcome>` must answer.
struct Case {
    outcome: &'static str,
    http_status: u16,
    status: &'static str,
    reason: Option<&'static str>,
    retry_after: Option<u64>,
}

const CASES: &[Case] = &[
    Case {
        outcome: "valid",
        http_status: 201,
        status: "valid",
        reason: None,
        retry_after: None,
    },
    Case {
        outcome: "invalid",
        http_status: 422,
        status: "invalid",
        reason: None,
        retry_after: None,
    },
    Case {
        outcome: "rate-limited",
        http_status: 201,
        status: "error",
        reason: Some("rate_limited"),
        retry_after: Some(30),
    },
    Case {
        outcome: "quota-exhausted",
        http_status: 201,
        status: "error",
        reason: Some("quota_exhausted"),
        retry_after: None,
    },
    Case {
        outcome: "timeout",
        http_status: 201,
        status: "error",
        reason: Some("timeout"),
        retry_after: None,
    },
    Case {
        outcome: "unavailable",
        http_status: 201,
        status: "error",
        reason: Some("provider_unavailable"),
        retry_after: None,
    },
    Case {
        outcome: "bad-response",
        http_status: 201,
        status: "error",
        reason: Some("bad_response"),
        retry_after: None,
    },
];

async fn sandbox_server(dir: &tempfile::TempDir, env: &[(String, String)]) -> LocalServer {
    LocalServer::start_with_args(&dir.path().join("data"), env, &["--sandbox"]).await
}

#[tokio::test]
async fn every_outcome_arrives_over_http_and_live_for_every_provider() {
    let dir = tempfile::tempdir().unwrap();
    let s = sandbox_server(&dir, &[]).await;
    let logs = s.logs_with("SANDBOX ON").await;
    assert!(logs.contains("SANDBOX ON"), "the banner says so: {logs}");

    for (i, case) in CASES.iter().enumerate() {
        // Each outcome at a different provider: the key alone decides.
        let provider = &PROVIDERS[i % PROVIDERS.len()];
        let user = format!("sandbox-user-{i}");
        let mut socket = connect(&s, &user).await;
        let key = format!("test-sandbox-{}-0123456789abcdef", case.outcome);
        let mut body = json!({"provider": provider.id, "api_key": key});
        if let Some(example) = provider.endpoint_example() {
            body["base_url"] = json!(example);
        }
        let answer = s
            .call_as(&user, "POST", "/api/v1/credentials/", Some(&body.to_string()))
            .await;
        let what = format!("{} at {}: {}", case.outcome, provider.id, answer.text);
        assert_eq!(answer.status, case.http_status, "{what}");

        let checking = next_message(&mut socket).await;
        assert_eq!(checking["data"]["status"], "checking", "{what}");
        assert_eq!(checking["data"]["provider"], provider.id);
        let verdict = next_message(&mut socket).await;
        assert_eq!(verdict["type"], "api_key_status");
        assert_eq!(verdict["data"]["status"], case.status, "{what}: {verdict}");
        assert_eq!(
            verdict["data"].get("reason").and_then(Value::as_str),
            case.reason,
            "{what}"
        );
        assert_eq!(
            verdict["data"].get("retry_after_seconds").and_then(Value::as_u64),
            case.retry_after,
            "{what}"
        );

        if case.http_status == 422 {
            assert_eq!(answer.json["code"], "key_rejected", "{what}");
            let stored = s
                .call_as(&user, "GET", &format!("/api/v1/credentials/{}/", provider.id), None)
                .await;
            assert_eq!(stored.status, 404, "nothing stored: {what}");
            continue;
        }
        assert_eq!(answer.json["status"], case.status, "{what}");
        assert_eq!(
            answer.json.get("status_reason").and_then(Value::as_str),
            case.reason,
            "{what}"
        );
        assert_eq!(
            answer.json.get("retry_after_seconds").and_then(Value::as_u64),
            case.retry_after,
            "{what}"
        );
        // Stored for real: sealed in SQLite, readable again.
        let stored = s
            .call_as(&user, "GET", &format!("/api/v1/credentials/{}/", provider.id), None)
            .await;
        assert_eq!(stored.json["status"], case.status, "{what}");
        let models = s
            .call_as(
                &user,
                "GET",
                &format!("/api/v1/credentials/{}/models/", provider.id),
                None,
            )
            .await;
        let count = models.json.as_array().expect("model array").len();
        assert_eq!(stored.json["models_count"], count, "{what}");
        if case.status == "valid" {
            assert!(count >= 2, "a small, plausible list: {}", models.text);
        } else {
            assert_eq!(count, 0, "{what}");
        }
    }
    let logs = s.logs();
    assert!(!logs.contains("-0123456789abcdef"), "no sandbox key in the logs either");
}

#[tokio::test]
async fn valid_keys_discover_each_providers_own_models_and_checks_change_the_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let s = sandbox_server(&dir, &[]).await;
    let user = "sandbox-models";

    let groq = s.post_key(user, "groq", "gsk_sandbox-valid-1").await;
    assert_eq!(groq.status, 201, "{}", groq.text);
    let gemini = s.post_key(user, "google_gemini", "AIza-sandbox-valid-2").await;
    assert_eq!(gemini.status, 201, "{}", gemini.text);
    let ids = |models: &Value| -> Vec<String> {
        models
            .as_array()
            .expect("model array")
            .iter()
            .map(|m| m["model_id"].as_str().expect("model_id").to_owned())
            .collect()
    };
    let groq_models = s.call_as(user, "GET", "/api/v1/credentials/groq/models/", None).await;
    assert_eq!(
        ids(&groq_models.json),
        ["gemma2-9b-it", "llama-3.1-8b-instant", "llama-3.3-70b-versatile"]
    );
    let gemini_models = s
        .call_as(user, "GET", "/api/v1/credentials/google_gemini/models/", None)
        .await;
    assert!(
        ids(&gemini_models.json).iter().all(|id| id.starts_with("gemini-")),
        "{}",
        gemini_models.text
    );
    assert_eq!(gemini_models.json[0]["model_name"], "Gemini 2.0 Flash");

    // Replacing with a timing-out key: answered at once, kept, models cleared.
    let replaced = s.put_key(user, "groq", "gsk_sandbox-timeout-3").await;
    assert_eq!(replaced.status, 200, "{}", replaced.text);
    assert_eq!(replaced.json["status_reason"], "timeout");
    assert_eq!(replaced.json["models_count"], 0);
    // A check of a stored key asks the simulator again, with the same verdict.
    let checked = s.call_as(user, "POST", "/api/v1/credentials/groq/check/", None).await;
    assert_eq!(checked.status, 200);
    assert_eq!(checked.json["status_reason"], "timeout");
}

#[tokio::test]
async fn keys_without_a_sandbox_outcome_are_invalid_and_no_provider_is_called() {
    let dir = tempfile::tempdir().unwrap();
    // A provider that would accept the key: the sandbox must not ask it.
    let groq = FakeProvider::start("groq").await;
    let real_key = "gsk_live0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH9xQa";
    groq.accept(real_key, &["llama-3.1-8b-instant"]).await;
    let s = sandbox_server(&dir, &[groq.env()]).await;
    let answer = s.post_key("sandbox-real", "groq", real_key).await;
    assert_eq!(answer.status, 422, "{}", answer.text);
    assert_eq!(answer.json["code"], "key_rejected");
    assert_eq!(
        answer.json["detail"],
        "Groq rejected this API key: it is not valid. Nothing was stored."
    );
    assert!(groq.requests().await.is_empty(), "the sandbox called the provider");
}

#[tokio::test]
async fn the_sandbox_refuses_to_start_inside_lambda() {
    let dir = tempfile::tempdir().unwrap();
    let run = tokio::process::Command::new(workspace_binary("mailmind-local"))
        .args(["--port", "0", "--sandbox", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("AWS_LAMBDA_FUNCTION_NAME", "credentials-create")
        .kill_on_drop(true)
        .output();
    // A server that starts never exits by itself: that is the failure.
    let output = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("mailmind-local --sandbox refused to start in Lambda")
        .expect("mailmind-local runs");
    assert!(!output.status.success(), "started in Lambda with the sandbox");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("AWS_LAMBDA_FUNCTION_NAME"), "{stderr}");
    assert!(!String::from_utf8_lossy(&output.stdout).contains("listening"));
}
