//! Background re-validation end to end: the real `mailmind-local` with
//! `--revalidate-after 2s --revalidate-every 1s`, fake providers whose
//! answers change after the key was stored, and a real WebSocket client.

use std::time::Duration;

use futures_util::StreamExt;
use mailmind_tests::fake_providers::FakeProvider;
use mailmind_tests::local_server::LocalServer;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

const USER: &str = "revalidate-user";
const GROQ_KEY: &str = "gsk_reval00123456789abcdefghijklmnopqrstuvwxyzABCDEF9xQa";
const GROQ_KEY_2: &str = "gsk_reval22123456789abcdefghijklmnopqrstuvwxyzABCDEF9xQb";
const ANTHROPIC_KEY: &str = "sk-ant-api03-reval0123456789abcdefghijklmnopqrstuvwxyz-AAAA";
const MODELS: &[&str] = &["llama-3.1-8b-instant", "gemma2-9b-it"];
/// Long enough for several runs of one second; a bound on waiting, never a measurement.
const PATIENCE: Duration = Duration::from_secs(30);

async fn server(fakes: &[&FakeProvider], extra_env: &[(String, String)]) -> (tempfile::TempDir, LocalServer) {
    let dir = tempfile::tempdir().unwrap();
    let mut env: Vec<(String, String)> = fakes.iter().map(|f| f.env()).collect();
    env.extend_from_slice(extra_env);
    let server = LocalServer::start_with_args(
        &dir.path().join("data"),
        &env,
        &["--revalidate-after", "2s", "--revalidate-every", "1s"],
    )
    .await;
    (dir, server)
}

async fn store_key(server: &LocalServer, user: &str, provider: &str, key: &str) {
    let body = json!({"provider": provider, "api_key": key}).to_string();
    let answer = server.call_as(user, "POST", "/api/v1/credentials/", Some(&body)).await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    assert_eq!(answer.json["status"], "valid", "{}", answer.text);
}

async fn status(server: &LocalServer, user: &str, provider: &str) -> Value {
    let answer = server
        .call_as(user, "GET", &format!("/api/v1/credentials/{provider}/"), None)
        .await;
    answer.json
}

/// Polls the status until `done` holds (or gives up after [`PATIENCE`]).
async fn wait_for_status(server: &LocalServer, provider: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let now = status(server, USER, provider).await;
        if done(&now) {
            return now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{provider} never got there: {now}\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn connect(server: &LocalServer, user: &str) -> Socket {
    let url = format!(
        "{}/ws?token={}",
        server.base_url.replacen("http://", "ws://", 1),
        server.token(user)
    );
    tokio_tungstenite::connect_async(url)
        .await
        .expect("WebSocket connects")
        .0
}

/// The next `api_key_status` message for `provider` with status `wanted`
/// (a re-check may still have found the key good just before it changed).
async fn next_verdict(socket: &mut Socket, provider: &str, wanted: &str) -> Option<Value> {
    loop {
        let message = match tokio::time::timeout(PATIENCE, socket.next()).await {
            Err(_) => return None,
            Ok(Some(Ok(Message::Text(text)))) => serde_json::from_str::<Value>(&text).expect("JSON"),
            Ok(Some(Ok(_))) => continue,
            Ok(other) => panic!("socket ended: {other:?}"),
        };
        if message["type"] == "api_key_status"
            && message["data"]["provider"] == provider
            && message["data"]["status"] == wanted
        {
            return Some(message);
        }
    }
}

/// How many times the fake was asked with `key` (in any header).
async fn asked_with(fake: &FakeProvider, key: &str) -> usize {
    fake.requests()
        .await
        .iter()
        .filter(|r| r.headers.values().any(|v| v.to_str().is_ok_and(|v| v.contains(key))))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_at_the_provider_turns_invalid_and_is_pushed() {
    let groq = FakeProvider::start("groq").await;
    groq.accept(GROQ_KEY, MODELS).await;
    let (_dir, server) = server(&[&groq], &[]).await;
    store_key(&server, USER, "groq", GROQ_KEY).await;
    let mut socket = connect(&server, USER).await;
    groq.answer(GROQ_KEY, groq.invalid_key_response()).await;

    let pushed = next_verdict(&mut socket, "groq", "invalid")
        .await
        .unwrap_or_else(|| panic!("no verdict pushed\n{}", server.logs()));
    assert_eq!(pushed["data"]["status"], "invalid", "{pushed}");
    assert_eq!(pushed["data"]["models_count"], 0, "{pushed}");
    let stored = status(&server, USER, "groq").await;
    assert_eq!(stored["status"], "invalid", "{stored}");
    assert_eq!(stored["models_count"], 0, "{stored}");
    let models = server
        .call_as(USER, "GET", "/api/v1/credentials/groq/models/", None)
        .await;
    assert_eq!(models.json, json!([]), "{}", models.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_recheck_keeps_the_verdict_and_records_the_attempt() {
    let groq = FakeProvider::start("groq").await;
    groq.accept(GROQ_KEY, MODELS).await;
    let (_dir, server) = server(&[&groq], &[]).await;
    store_key(&server, USER, "groq", GROQ_KEY).await;
    let before = status(&server, USER, "groq").await;
    assert!(before.get("last_attempt_at").is_none(), "{before}");
    groq.answer(GROQ_KEY, groq.rate_limited_response(1)).await;

    let after = wait_for_status(&server, "groq", |s| s.get("last_attempt_reason").is_some()).await;
    assert_eq!(after["last_attempt_reason"], "rate_limited", "{after}");
    assert!(after["last_attempt_at"].is_string(), "{after}");
    assert_eq!(after["status"], "valid", "{after}");
    assert!(after.get("status_reason").is_none(), "{after}");
    // The verdict shown is older than the attempt.
    assert!(
        after["last_checked_at"].as_str().unwrap() <= after["last_attempt_at"].as_str().unwrap(),
        "{after}"
    );
    assert_eq!(after["models_count"], 2, "{after}");
    assert!(asked_with(&groq, GROQ_KEY).await >= 2);

    // Once the provider answers again, a verdict clears the attempt.
    groq.server.reset().await;
    groq.accept(GROQ_KEY, MODELS).await;
    let healed = wait_for_status(&server, "groq", |s| s.get("last_attempt_reason").is_none()).await;
    assert_eq!(healed["status"], "valid", "{healed}");
    assert!(
        healed["last_checked_at"].as_str().unwrap() >= after["last_attempt_at"].as_str().unwrap(),
        "{healed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_credential_is_never_rechecked() {
    let groq = FakeProvider::start("groq").await;
    groq.accept(GROQ_KEY, MODELS).await;
    groq.accept(GROQ_KEY_2, MODELS).await;
    let (_dir, server) = server(&[&groq], &[]).await;
    store_key(&server, "deleting-user", "groq", GROQ_KEY).await;
    let deleted = server
        .call_as("deleting-user", "DELETE", "/api/v1/credentials/groq/", None)
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    // A witness stored after it is due after it: once the witness was
    // re-checked, the deleted one would have been too.
    store_key(&server, USER, "groq", GROQ_KEY_2).await;
    let witness = status(&server, USER, "groq").await;
    wait_for_status(&server, "groq", |s| s["last_checked_at"] != witness["last_checked_at"]).await;
    assert_eq!(asked_with(&groq, GROQ_KEY).await, 1, "only when it was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_hangs_does_not_hold_up_another_providers_checks() {
    let anthropic = FakeProvider::start("anthropic").await;
    anthropic.accept(ANTHROPIC_KEY, &["claude-sonnet-4"]).await;
    let groq = FakeProvider::start("groq").await;
    groq.accept(GROQ_KEY, MODELS).await;
    // A check may take 60 s here, so Anthropic's hang lasts the whole test.
    let (_dir, server) = server(
        &[&anthropic, &groq],
        &[("PROVIDER_TIMEOUT_MS".to_owned(), "60000".to_owned())],
    )
    .await;
    store_key(&server, USER, "anthropic", ANTHROPIC_KEY).await;
    store_key(&server, USER, "groq", GROQ_KEY).await;
    let mut socket = connect(&server, USER).await;
    let asked_before = asked_with(&anthropic, ANTHROPIC_KEY).await;
    // Anthropic (first in provider order) now hangs; Groq revokes the key.
    anthropic
        .answer(
            ANTHROPIC_KEY,
            anthropic.slow_response(&["claude-sonnet-4"], Duration::from_secs(120)),
        )
        .await;
    groq.answer(GROQ_KEY, groq.invalid_key_response()).await;

    let pushed = next_verdict(&mut socket, "groq", "invalid")
        .await
        .unwrap_or_else(|| panic!("no Groq verdict while Anthropic hangs\n{}", server.logs()));
    assert_eq!(pushed["data"]["status"], "invalid", "{pushed}");
    // Anthropic's check had started and has not ended: nothing recorded yet.
    assert!(asked_with(&anthropic, ANTHROPIC_KEY).await > asked_before);
    let anthropic_now = status(&server, USER, "anthropic").await;
    assert_eq!(anthropic_now["status"], "valid", "{anthropic_now}");
    assert!(anthropic_now.get("last_attempt_at").is_none(), "{anthropic_now}");
}

/// A key with its own endpoint is re-checked there, opened under the
/// context that binds it (an Azure resource revoking the key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_with_its_own_endpoint_is_rechecked_at_that_endpoint() {
    const AZURE_KEY: &str = "0123456789abcdef0123456789abcdef";
    let azure = FakeProvider::start("azure_openai").await;
    azure.accept(AZURE_KEY, &["gpt-4o-prod"]).await;
    let (_dir, server) = server(&[], &[]).await;
    let body = json!({"provider": "azure_openai", "api_key": AZURE_KEY, "base_url": azure.base_url()});
    let created = server.post_body(USER, &body).await;
    assert_eq!(created.json["status"], "valid", "{}", created.text);
    azure.answer(AZURE_KEY, azure.invalid_key_response()).await;
    let stored = wait_for_status(&server, "azure_openai", |s| s["status"] == "invalid").await;
    assert_eq!(stored["base_url"], azure.base_url(), "{stored}");
    assert!(asked_with(&azure, AZURE_KEY).await >= 2);
}
