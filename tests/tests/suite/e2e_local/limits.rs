//! Abuse limits through the real `mailmind-local`: the per-user validation
//! budget (the 11th validation is a `429` with `Retry-After`, nothing called
//! or stored) and the cap on live sockets per user (the new one is refused).

use mailmind_tests::local_server::LocalServer;
use tokio_tungstenite::tungstenite::Error as WsError;

use super::*;

/// The default limit (10) in a window no test run outlasts.
async fn world_with_hour_window() -> World {
    super::world_with_args(&[], &["--validation-window", "3600"]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eleventh_validation_is_refused_and_calls_and_stores_nothing() {
    let w = world_with_hour_window().await;
    let s = &w.server;
    let created = s.post_key("user-a", "groq", GROQ_KEY).await;
    assert_eq!(created.status, 201, "{}", created.text);
    for _ in 2..=10 {
        let checked = s
            .call_as("user-a", "POST", "/api/v1/credentials/groq/check/", None)
            .await;
        assert_eq!(checked.status, 200, "{}", checked.text);
    }
    let groq_calls = w.groq.requests().await.len();

    // The 11th, whichever route: refused before any provider or key service.
    let attempts = [
        ("POST", "/api/v1/credentials/", Some(body("google_gemini", GEMINI_KEY))),
        (
            "PUT",
            "/api/v1/credentials/groq/",
            Some(json!({"api_key": GROQ_KEY_2}).to_string()),
        ),
        ("POST", "/api/v1/credentials/groq/check/", None),
    ];
    for (method, path, request) in attempts {
        let refused = s.call_as("user-a", method, path, request.as_deref()).await;
        assert_error(&refused, 429, "too_many_requests");
        let retry_after: u64 = refused.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .expect("Retry-After in whole seconds");
        assert!((1..=3600).contains(&retry_after), "{retry_after}");
        assert!(
            refused.json["detail"].as_str().unwrap().contains("at most 10"),
            "{}",
            refused.text
        );
        assert_no_secret(&refused);
    }
    assert_eq!(w.gemini.requests().await.len(), 0, "no provider request");
    assert_eq!(w.groq.requests().await.len(), groq_calls, "no provider request");
    // Nothing stored: no Gemini key, and the Groq key is the first one.
    let gemini = s
        .call_as("user-a", "GET", "/api/v1/credentials/google_gemini/", None)
        .await;
    assert_error(&gemini, 404, "credential_not_found");
    let groq = s.call_as("user-a", "GET", "/api/v1/credentials/groq/", None).await;
    assert_eq!(groq.json["key_hint"], "gsk_…9xQa");
    assert_eq!(groq.json["models_count"], 3);
    // Reads and deletes are not validations.
    let list = s.call_as("user-a", "GET", "/api/v1/credentials/", None).await;
    assert_eq!(list.status, 200);

    // Another user has a budget of their own.
    let other = s.post_key("user-b", "groq", GROQ_KEY).await;
    assert_eq!(other.status, 201, "{}", other.text);
}

fn ws_url(server: &LocalServer, user: &str) -> String {
    format!(
        "{}/ws?token={}",
        server.base_url.replacen("http://", "ws://", 1),
        server.token(user)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_over_the_per_user_cap_is_refused_and_the_open_ones_stay() {
    let dir = tempfile::tempdir().unwrap();
    let s = LocalServer::start_with_args(&dir.path().join("data"), &[], &["--max-connections-per-user", "2"]).await;
    let mut open = Vec::new();
    for _ in 0..2 {
        let (socket, response) = tokio_tungstenite::connect_async(ws_url(&s, "user-a")).await.unwrap();
        assert_eq!(response.status(), 101);
        open.push(socket);
    }
    match tokio_tungstenite::connect_async(ws_url(&s, "user-a")).await {
        Err(WsError::Http(response)) => {
            assert_eq!(response.status(), 429);
            let body: Value = serde_json::from_slice(response.body().as_deref().unwrap_or_default()).unwrap();
            assert_eq!(body["code"], "too_many_connections", "{body}");
        }
        other => panic!("the third socket must be refused: {other:?}"),
    }
    // The open ones still answer.
    for socket in &mut open {
        use futures_util::{SinkExt, StreamExt};
        socket
            .send(tokio_tungstenite::tungstenite::Message::text(r#"{"action":"ping"}"#))
            .await
            .unwrap();
        let pong = loop {
            match socket.next().await.unwrap().unwrap() {
                tokio_tungstenite::tungstenite::Message::Text(t) => break t.to_string(),
                _ => continue,
            }
        };
        assert_eq!(serde_json::from_str::<Value>(&pong).unwrap(), json!({"type": "pong"}));
    }
    // Other users are not affected.
    let (_, response) = tokio_tungstenite::connect_async(ws_url(&s, "user-b")).await.unwrap();
    assert_eq!(response.status(), 101);
    // Closing one makes room ($disconnect runs when the server sees the close).
    let mut closing = open.pop().unwrap();
    closing.close(None).await.unwrap();
    drop(closing);
    let mut reopened = None;
    for _ in 0..50 {
        if let Ok((socket, _)) = tokio_tungstenite::connect_async(ws_url(&s, "user-a")).await {
            reopened = Some(socket);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reopened.is_some(), "a closed socket frees its place");
}
