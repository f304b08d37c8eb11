//! The socket `check` action (`{"action":"check","provider":..}`): through
//! the real `mailmind-local` with real WebSocket clients, and the `ws-check`
//! function binary under the Runtime API emulator against `moto_server`.
//!
//! Every socket error code is caused here, `too_many_requests` (the per-user
//! validation budget) included: it reaches the socket through the
//! same `ApiError` conversion as the others, with `retry_after_seconds`.

use std::time::Duration;

use futures_util::SinkExt;
use mailmind_tests::fake_providers::FakeProvider;
use mailmind_tests::lambda_emulator::LambdaProcess;
use mailmind_tests::local_server::LocalServer;
use mailmind_tests::workspace_binary;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::e2e_websocket::{Socket, assert_checking, connect, next_message, validation_messages};
use crate::lambda_websocket::{scan_connections, ws_event};

const GROQ_KEY: &str = "gsk_wscheck0123456789abcdefghijklmnopqrstuvwxyzABCDE9xQa";
const QUIET: Duration = Duration::from_millis(500);

async fn ask(socket: &mut Socket, message: &str) {
    socket.send(Message::text(message)).await.unwrap();
}

/// The error a socket was answered with: `(code, detail)`, after checking its shape.
fn socket_error(message: &Value) -> (String, String) {
    assert_eq!(message["type"], "error", "{message}");
    let data = message["data"].as_object().expect("error data");
    let expected_fields = if data["code"] == "too_many_requests" { 3 } else { 2 };
    assert_eq!(
        data.len(),
        expected_fields,
        "code and detail (and when to retry): {message}"
    );
    let detail = data["detail"].as_str().unwrap();
    assert!(!detail.is_empty());
    (data["code"].as_str().unwrap().to_owned(), detail.to_owned())
}

async fn local_world() -> (tempfile::TempDir, FakeProvider, LocalServer) {
    let dir = tempfile::tempdir().unwrap();
    let groq = FakeProvider::start("groq").await;
    groq.accept(GROQ_KEY, &["llama-3.1-8b-instant", "gemma2-9b-it"]).await;
    let server = LocalServer::start(&dir.path().join("data"), &[groq.env()]).await;
    (dir, groq, server)
}

#[tokio::test]
async fn a_check_asked_over_the_socket_reaches_all_of_the_users_sockets_and_nobody_else() {
    let (_dir, groq, s) = local_world().await;
    let mut a1 = connect(&s, "user-a").await;
    let mut a2 = connect(&s, "user-a").await;
    let mut b1 = connect(&s, "user-b").await;
    let created = s.post_key("user-a", "groq", GROQ_KEY).await;
    assert_eq!(created.status, 201, "{}", created.text);
    for socket in [&mut a1, &mut a2] {
        validation_messages(socket).await;
    }
    let provider_calls = groq.requests().await.len();

    ask(&mut a2, r#"{"action":"check","provider":"groq"}"#).await;
    let mut verdicts = Vec::new();
    for socket in [&mut a1, &mut a2] {
        let (checking, verdict) = validation_messages(socket).await;
        assert_checking(&checking, "groq");
        assert_eq!(verdict["type"], "api_key_status");
        assert_eq!(verdict["data"]["status"], "valid");
        assert_eq!(verdict["data"]["models_count"], 2);
        verdicts.push(verdict);
    }
    assert_eq!(verdicts[0], verdicts[1]);
    // The same validation as the REST check: the provider was asked, and the
    // stored status is the pushed one.
    assert!(
        groq.requests().await.len() > provider_calls,
        "the provider was asked again"
    );
    let stored = s.call_as("user-a", "GET", "/api/v1/credentials/groq/", None).await;
    assert_eq!(stored.json["status"], "valid");
    assert_eq!(stored.json["last_checked_at"], verdicts[0]["data"]["checked_at"]);
    // Nothing more on the asking socket (no route response on success), and
    // nothing at all for another user.
    assert_eq!(next_message(&mut a2, QUIET).await, None);
    assert_eq!(next_message(&mut b1, QUIET).await, None);

    // B asking for its own (absent) key touches nobody else.
    ask(&mut b1, r#"{"action":"check","provider":"groq"}"#).await;
    let answer = next_message(&mut b1, Duration::from_secs(10)).await.unwrap();
    assert_eq!(socket_error(&answer).0, "credential_not_found");
    assert_eq!(next_message(&mut a1, QUIET).await, None);
}

#[tokio::test]
async fn a_socket_check_that_cannot_run_is_answered_on_that_socket_only() {
    let (_dir, _groq, s) = local_world().await;
    let mut asking = connect(&s, "user-a").await;
    let mut other = connect(&s, "user-a").await;

    for (message, code) in [
        (r#"{"action":"check","provider":"groq"}"#, "credential_not_found"),
        (r#"{"action":"check","provider":"gpt"}"#, "unknown_provider"),
        (r#"{"action":"check","provider":"GROQ"}"#, "unknown_provider"),
        (r#"{"action":"check"}"#, "invalid_request"),
        (r#"{"action":"check","provider":null}"#, "invalid_request"),
        (r#"{"action":"check","provider":7}"#, "invalid_request"),
    ] {
        ask(&mut asking, message).await;
        let answer = next_message(&mut asking, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("no answer to {message}"));
        let (got, detail) = socket_error(&answer);
        assert_eq!(got, code, "{message}: {answer}");
        if code == "unknown_provider" {
            assert!(detail.contains("Supported providers"), "{detail}");
        }
    }
    // A key pasted where the provider goes is never quoted back.
    let pasted = r#"{"action":"check","provider":"gsk_0123456789abcdefghijklmnopqrstuvwxyz"}"#;
    ask(&mut asking, pasted).await;
    let answer = next_message(&mut asking, Duration::from_secs(10)).await.unwrap();
    assert_eq!(socket_error(&answer).0, "unknown_provider");
    assert!(!answer.to_string().contains("gsk_0123"), "{answer}");

    // A storage fault: another process holds the write lock, so the check's
    // first write (spending the user's validation budget) fails, before
    // anything is announced or asked.
    s.post_key("user-a", "groq", GROQ_KEY).await;
    validation_messages(&mut asking).await;
    validation_messages(&mut other).await;
    let before = s.call_as("user-a", "GET", "/api/v1/credentials/groq/", None).await;
    let db = rusqlite::Connection::open(s.data_dir.join("mailmind.db")).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();
    ask(&mut asking, r#"{"action":"check","provider":"groq"}"#).await;
    let answer = next_message(&mut asking, Duration::from_secs(20)).await.unwrap();
    assert_eq!(socket_error(&answer).0, "service_unavailable", "{answer}");
    db.execute_batch("ROLLBACK").unwrap();
    let after = s.call_as("user-a", "GET", "/api/v1/credentials/groq/", None).await;
    assert_eq!(after.json, before.json, "nothing was half-written");

    // The other socket heard nothing of it.
    assert_eq!(next_message(&mut other, QUIET).await, None);
    // Still answering afterwards.
    ask(&mut asking, r#"{"action":"ping"}"#).await;
    assert_eq!(
        next_message(&mut asking, Duration::from_secs(5)).await,
        Some(json!({"type": "pong"}))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ws_check_function_pushes_to_the_users_connections_and_answers_errors_itself() {
    const USER: &str = "11111111-2222-3333-4444-555555555555";
    let (moto, table, key, groq) = mailmind_tests::deployment().await;
    groq.accept(GROQ_KEY, &["llama-3.1-8b-instant", "gemma2-9b-it", "whisper-large-v3"])
        .await;
    let management = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex("^/production/@connections/[a-z0-9-]+$"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&management)
        .await;
    let mut env = moto.function_env(&table, &key);
    env.extend([mailmind_tests::management_env(&management), groq.env()]);
    let connect = LambdaProcess::start(&workspace_binary("ws-connect"), &env).await;
    for (id, user) in [("conn-a1", USER), ("conn-a2", USER), ("conn-b1", "someone-else")] {
        let answer = connect.invoke(ws_event("ws-connect", id, user)).await.response();
        assert_eq!(answer["statusCode"], 200, "{answer}");
    }
    assert_eq!(scan_connections(&table).await.len(), 3);
    let check = LambdaProcess::start(&workspace_binary("ws-check"), &env).await;

    // Before the key exists: answered to the asking connection, nothing pushed.
    let answer = check.invoke(ws_event("ws-check", "conn-a1", USER)).await.response();
    assert_eq!(answer["statusCode"], 200, "{answer}");
    let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
    assert_eq!(socket_error(&body).0, "credential_not_found");
    assert!(management.received_requests().await.unwrap().is_empty());

    let create = LambdaProcess::start(&workspace_binary("credentials-create"), &env).await;
    mailmind_tests::create_groq_key(&create, USER, GROQ_KEY).await;
    management.reset().await;
    Mock::given(method("POST"))
        .and(path_regex("^/production/@connections/[a-z0-9-]+$"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&management)
        .await;

    // The sample event, as API Gateway sends it: pushes, and no route response body.
    let answer = check.invoke(ws_event("ws-check", "conn-a1", USER)).await.response();
    assert_eq!(answer["statusCode"], 200, "{answer}");
    assert!(answer.get("body").is_none_or(Value::is_null), "{answer}");
    let pushes: Vec<(String, Value)> = management
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.url.path().to_owned(), serde_json::from_slice(&r.body).unwrap()))
        .collect();
    for connection in ["conn-a1", "conn-a2"] {
        let statuses: Vec<&str> = pushes
            .iter()
            .filter(|(p, _)| p.ends_with(&format!("/{connection}")))
            .map(|(_, m)| m["data"]["status"].as_str().unwrap())
            .collect();
        assert_eq!(statuses, ["checking", "valid"], "{connection}");
    }
    assert!(
        pushes.iter().all(|(p, _)| !p.ends_with("/conn-b1")),
        "never another user's"
    );
    let verdict = &pushes.iter().find(|(_, m)| m["data"]["status"] == "valid").unwrap().1;
    assert_eq!(verdict["data"]["models_count"], 3);

    // Requests that cannot run, each answered as the route response.
    for (body, code) in [
        (json!({"action": "check", "provider": "gpt"}), "unknown_provider"),
        (json!({"action": "check"}), "invalid_request"),
        (json!({"action": "check", "provider": "openai"}), "credential_not_found"),
    ] {
        let mut event = ws_event("ws-check", "conn-a2", USER);
        event["body"] = json!(body.to_string());
        let answer = check.invoke(event).await.response();
        let answered: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
        assert_eq!(socket_error(&answered).0, code, "{body}");
    }
    assert!(!check.logs().contains(GROQ_KEY), "keys never reach the logs");
}

#[tokio::test]
async fn a_socket_check_over_the_users_budget_is_too_many_requests_on_that_socket_only() {
    let dir = tempfile::tempdir().unwrap();
    let groq = FakeProvider::start("groq").await;
    groq.accept(GROQ_KEY, &["llama-3.1-8b-instant"]).await;
    let s = LocalServer::start_with_args(&dir.path().join("data"), &[groq.env()], &["--validation-limit", "1"]).await;
    let mut asking = connect(&s, "user-a").await;
    let mut other = connect(&s, "user-a").await;
    let created = s.post_key("user-a", "groq", GROQ_KEY).await;
    assert_eq!(created.status, 201, "{}", created.text);
    validation_messages(&mut asking).await;
    validation_messages(&mut other).await;
    let asked_before = groq.requests().await.len();

    ask(&mut asking, r#"{"action":"check","provider":"groq"}"#).await;
    let answer = next_message(&mut asking, Duration::from_secs(10)).await.unwrap();
    assert_eq!(socket_error(&answer).0, "too_many_requests", "{answer}");
    let retry = answer["data"]["retry_after_seconds"].as_u64().expect("when to retry");
    assert!((1..=60).contains(&retry), "{answer}");
    assert_eq!(next_message(&mut other, QUIET).await, None, "nobody else hears of it");
    assert_eq!(groq.requests().await.len(), asked_before, "the provider was not asked");
}
