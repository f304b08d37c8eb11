//! Live key status over WebSocket, end to end through the real
//! `mailmind-local` with a real WebSocket client.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use mailmind_tests::fake_providers::FakeProvider;
use mailmind_tests::local_server::LocalServer;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

const GROQ_KEY: &str = "gsk_socket0123456789abcdefghijklmnopqrstuvwxyzABCDEF9xQa";
const GROQ_KEY_2: &str = "gsk_socketnext6789abcdefghijklmnopqrstuvwxyzABCDEFzzZZ";
const GROQ_BAD_KEY: &str = "gsk_socketbad56789abcdefghijklmnopqrstuvwxyzABCDEFbad1";

struct World {
    _dir: tempfile::TempDir,
    _groq: FakeProvider,
    server: LocalServer,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let groq = FakeProvider::start("groq").await;
    groq.accept(
        GROQ_KEY,
        &["llama-3.3-70b-versatile", "llama-3.1-8b-instant", "gemma2-9b-it"],
    )
    .await;
    groq.accept(GROQ_KEY_2, &["llama-3.1-8b-instant"]).await;
    let server = LocalServer::start(&dir.path().join("data"), &[groq.env()]).await;
    World {
        _dir: dir,
        _groq: groq,
        server,
    }
}

pub(crate) fn ws_url(server: &LocalServer, token: Option<&str>) -> String {
    let base = server.base_url.replacen("http://", "ws://", 1);
    match token {
        Some(token) => format!("{base}/ws?token={token}"),
        None => format!("{base}/ws"),
    }
}

pub(crate) async fn connect(server: &LocalServer, user: &str) -> Socket {
    let (socket, response) = tokio_tungstenite::connect_async(ws_url(server, Some(&server.token(user))))
        .await
        .expect("WebSocket connects");
    assert_eq!(response.status(), 101);
    socket
}

/// The next JSON message, or `None` if nothing arrives within `wait`.
pub(crate) async fn next_message(socket: &mut Socket, wait: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(wait, socket.next()).await {
            Err(_) => return None,
            Ok(Some(Ok(Message::Text(text)))) => return Some(serde_json::from_str(&text).expect("JSON message")),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(other) => panic!("unexpected socket event: {other:?}"),
        }
    }
}

/// The two `api_key_status` messages of one validation: `checking`, then the verdict.
pub(crate) async fn validation_messages(socket: &mut Socket) -> (Value, Value) {
    let checking = next_message(socket, Duration::from_secs(10))
        .await
        .expect("a checking message");
    let verdict = next_message(socket, Duration::from_secs(10))
        .await
        .expect("a final message");
    (checking, verdict)
}

pub(crate) fn assert_checking(message: &Value, provider: &str) {
    assert_eq!(message["type"], "api_key_status", "{message}");
    assert_eq!(message["data"]["provider"], provider);
    assert_eq!(message["data"]["status"], "checking");
    assert_eq!(message["data"]["message"], "Checking Groq API key...");
}

#[tokio::test]
async fn every_validation_reaches_all_of_the_users_sockets_and_nobody_else() {
    let w = world().await;
    let s = &w.server;
    let mut a1 = connect(s, "user-a").await;
    let mut a2 = connect(s, "user-a").await;
    let mut b1 = connect(s, "user-b").await;

    // Create.
    let created = s.post_key("user-a", "groq", GROQ_KEY).await;
    assert_eq!(created.status, 201);
    for socket in [&mut a1, &mut a2] {
        let (checking, verdict) = validation_messages(socket).await;
        assert_checking(&checking, "groq");
        assert_eq!(verdict["type"], "api_key_status");
        assert_eq!(verdict["data"]["status"], "valid");
        assert_eq!(verdict["data"]["message"], "Groq API key is valid.");
        assert_eq!(verdict["data"]["models_count"], 3);
        assert_eq!(verdict["data"]["checked_at"], created.json["last_checked_at"]);
        assert!(verdict["data"].get("reason").is_none());
    }

    // Update: the final message comes after the new state is stored.
    s.put_key("user-a", "groq", GROQ_KEY_2).await;
    let (checking, verdict) = validation_messages(&mut a1).await;
    assert_checking(&checking, "groq");
    assert_eq!(verdict["data"]["models_count"], 1);
    let reread = s.call_as("user-a", "GET", "/api/v1/credentials/groq/", None).await;
    assert_eq!(reread.json["key_hint"], "gsk_…zzZZ");
    assert_eq!(reread.json["last_checked_at"], verdict["data"]["checked_at"]);
    let (_, verdict2) = validation_messages(&mut a2).await;
    assert_eq!(verdict2, verdict);

    // Check.
    s.call_as("user-a", "POST", "/api/v1/credentials/groq/check/", None)
        .await;
    for socket in [&mut a1, &mut a2] {
        let (checking, verdict) = validation_messages(socket).await;
        assert_checking(&checking, "groq");
        assert_eq!(verdict["data"]["status"], "valid");
    }

    // A rejected key is announced as invalid too.
    let rejected = s.put_key("user-a", "groq", GROQ_BAD_KEY).await;
    assert_eq!(rejected.status, 422);
    for socket in [&mut a1, &mut a2] {
        let (checking, verdict) = validation_messages(socket).await;
        assert_checking(&checking, "groq");
        assert_eq!(verdict["data"]["status"], "invalid");
    }

    // User B saw none of it.
    assert_eq!(next_message(&mut b1, Duration::from_millis(500)).await, None);

    // B's own validation reaches B only.
    s.post_key("user-b", "groq", GROQ_KEY).await;
    let (checking, verdict) = validation_messages(&mut b1).await;
    assert_checking(&checking, "groq");
    assert_eq!(verdict["data"]["status"], "valid");
    assert_eq!(next_message(&mut a1, Duration::from_millis(300)).await, None);
    // Nothing but validations is pushed: reads and deletes are silent.
    s.call_as("user-a", "GET", "/api/v1/credentials/", None).await;
    s.call_as("user-a", "DELETE", "/api/v1/credentials/groq/", None).await;
    assert_eq!(next_message(&mut a2, Duration::from_millis(300)).await, None);
}

#[tokio::test]
async fn provider_trouble_is_pushed_as_error_with_a_reason() {
    let w = world().await;
    let s = &w.server;
    let mut socket = connect(s, "user-a").await;
    let limited = "gsk_limitedsock789abcdefghijklmnopqrstuvwxyzABCDEFGlimt";
    w._groq.answer(limited, w._groq.rate_limited_response(12)).await;
    let created = s.post_key("user-a", "groq", limited).await;
    assert_eq!(created.status, 201);
    let (_, verdict) = validation_messages(&mut socket).await;
    assert_eq!(verdict["data"]["status"], "error");
    assert_eq!(verdict["data"]["reason"], "rate_limited");
    assert_eq!(verdict["data"]["retry_after_seconds"], 12);
}

#[tokio::test]
async fn ping_is_answered_with_pong() {
    let w = world().await;
    let mut socket = connect(&w.server, "user-a").await;
    socket.send(Message::text(r#"{"action":"ping"}"#)).await.unwrap();
    assert_eq!(
        next_message(&mut socket, Duration::from_secs(5)).await,
        Some(json!({"type": "pong"}))
    );
    socket.send(Message::text(r#"{"action":"dance"}"#)).await.unwrap();
    let answer = next_message(&mut socket, Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        (answer["type"].as_str(), answer["data"]["code"].as_str()),
        (Some("error"), Some("unknown_action"))
    );
    socket.send(Message::text("not json")).await.unwrap();
    let answer = next_message(&mut socket, Duration::from_secs(5)).await.unwrap();
    assert_eq!(answer["data"]["code"], "invalid_request");
    // Still connected and answering afterwards.
    socket.send(Message::text(r#"{"action":"ping"}"#)).await.unwrap();
    assert_eq!(
        next_message(&mut socket, Duration::from_secs(5)).await,
        Some(json!({"type": "pong"}))
    );
}

#[tokio::test]
async fn missing_forged_or_expired_tokens_are_refused_before_the_upgrade() {
    let w = world().await;
    let s = &w.server;
    let forged = mailmind::auth::Hs256Verifier::new(b"not the server's secret").issue("user-a", 3600);
    let expired = mailmind::auth::Hs256Verifier::new(mailmind_tests::local_server::TEST_JWT_SECRET.as_bytes())
        .issue("user-a", -3600);
    for token in [
        None,
        Some(""),
        Some("garbage"),
        Some(forged.as_str()),
        Some(expired.as_str()),
    ] {
        match tokio_tungstenite::connect_async(ws_url(s, token)).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 401, "token {token:?}");
            }
            Ok(_) => panic!("a WebSocket opened with token {token:?}"),
            Err(other) => panic!("unexpected failure for {token:?}: {other}"),
        }
    }
    // Nothing was stored for the refused attempts.
    let db = rusqlite::Connection::open(s.data_dir.join("mailmind.db")).unwrap();
    let count: i64 = db
        .query_row("SELECT COUNT(*) FROM connections", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, 0);
}

fn stored_connections(server: &LocalServer, user: &str) -> Vec<String> {
    let db = rusqlite::Connection::open(server.data_dir.join("mailmind.db")).unwrap();
    let mut stmt = db
        .prepare("SELECT connection_id FROM connections WHERE user_id = ?1")
        .unwrap();
    stmt.query_map([user], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test]
async fn a_vanished_socket_never_breaks_a_request_and_is_forgotten() {
    let w = world().await;
    let s = &w.server;
    let mut alive = connect(s, "user-a").await;
    let vanishing = connect(s, "user-a").await;
    assert_eq!(stored_connections(s, "user-a").len(), 2);

    // The client disappears without a close frame: the TCP connection just ends.
    drop(vanishing);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stored_connections(s, "user-a").len() != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the vanished connection was never forgotten"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A connection the store still lists but that is long gone (as after a
    // restart): the push gets 410 Gone, and the connection is forgotten.
    let db = rusqlite::Connection::open(s.data_dir.join("mailmind.db")).unwrap();
    db.execute(
        "INSERT INTO connections (connection_id, user_id, connected_at, expires_at) VALUES ('stale-one', 'user-a', '2026-01-01T00:00:00.000Z', '2999-01-01T00:00:00.000Z')",
        [],
    )
    .unwrap();
    let started = std::time::Instant::now();
    let created = s.post_key("user-a", "groq", GROQ_KEY).await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a dead socket must not hold the request up"
    );
    let (_, verdict) = validation_messages(&mut alive).await;
    assert_eq!(verdict["data"]["status"], "valid");
    assert_eq!(
        stored_connections(s, "user-a").len(),
        1,
        "the stale connection was forgotten"
    );
    assert!(!stored_connections(s, "user-a").contains(&"stale-one".to_owned()));
}

#[tokio::test]
async fn the_management_api_answers_like_api_gateway() {
    let w = world().await;
    let s = &w.server;
    let mut socket = connect(s, "user-a").await;
    let id = stored_connections(s, "user-a").pop().unwrap();
    let url = |id: &str| format!("{}/@connections/{id}", s.base_url);
    // Without the server's access key, nothing (the SDK signing is in local_doors).
    let refused = reqwest::Client::new().get(url(&id)).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(
        refused.headers()["x-amzn-errortype"],
        "MissingAuthenticationTokenException"
    );
    let mut with_key = reqwest::header::HeaderMap::new();
    let bearer = format!("Bearer {}", s.aws_credentials().secret().expose_secret());
    with_key.insert("authorization", bearer.parse().unwrap());
    let http = reqwest::Client::builder().default_headers(with_key).build().unwrap();

    let info = http.get(url(&id)).send().await.unwrap();
    assert_eq!(info.status(), 200);
    let info: Value = info.json().await.unwrap();
    assert!(info["ConnectedAt"].is_string() && info["Identity"]["SourceIp"] == "127.0.0.1");

    let posted = http.post(url(&id)).body(r#"{"hello":"socket"}"#).send().await.unwrap();
    assert_eq!(posted.status(), 200);
    assert_eq!(
        next_message(&mut socket, Duration::from_secs(5)).await,
        Some(json!({"hello": "socket"}))
    );

    for unknown in [
        http.post(url("nope")).body("x").send().await.unwrap(),
        http.get(url("nope")).send().await.unwrap(),
        http.delete(url("nope")).send().await.unwrap(),
    ] {
        assert_eq!(unknown.status(), 410);
        assert_eq!(unknown.headers()["x-amzn-errortype"], "GoneException");
    }

    let deleted = http.delete(url(&id)).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    match tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .unwrap()
    {
        Some(Ok(Message::Close(_))) | None => {}
        other => panic!("expected the server to close, got {other:?}"),
    }
}

/// A page of another site cannot open a socket in the user's name (its
/// `Origin` gives it away); pages of this machine and non-browser clients can.
#[tokio::test]
async fn sockets_from_pages_of_other_sites_are_refused() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let w = world().await;
    let s = &w.server;
    let port = s.base_url.rsplit(':').next().unwrap().to_owned();
    for (origin, allowed) in [
        ("https://evil.example", false),
        ("http://127.0.0.1.evil.example", false),
        ("null", false),
        ("http://localhost:5173", true),
        (&*format!("http://127.0.0.1:{port}"), true),
    ] {
        let mut request = ws_url(s, Some(&s.token("user-a"))).into_client_request().unwrap();
        request.headers_mut().insert("origin", origin.parse().unwrap());
        match tokio_tungstenite::connect_async(request).await {
            Ok((_, response)) => {
                assert!(allowed, "a socket opened from {origin}");
                assert_eq!(response.status(), 101);
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert!(!allowed, "{origin} refused: {}", response.status());
                assert_eq!(response.status(), 403, "{origin}");
            }
            Err(other) => panic!("{origin}: {other}"),
        }
    }
}
