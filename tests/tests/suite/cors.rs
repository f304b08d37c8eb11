//! CORS on the local server (`--cors-origin`, repeatable), end to end through
//! the real binary: the configured origins get the headers, every other
//! origin gets exactly the answer it gets without CORS.

use mailmind_tests::local_server::LocalServer;
use reqwest::header::HeaderMap;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const FRONTEND: &str = "http://localhost:5173";
const DEPLOYED: &str = "https://app.example.com";
const OTHER: &str = "https://evil.example";

async fn server(dir: &tempfile::TempDir, args: &[&str]) -> LocalServer {
    LocalServer::start_with_args(&dir.path().join("data"), &[], args).await
}

async fn cors_server(dir: &tempfile::TempDir) -> LocalServer {
    server(dir, &["--cors-origin", FRONTEND, "--cors-origin", DEPLOYED]).await
}

/// A browser's preflight for a `POST` with a JSON body and a bearer token.
async fn preflight(s: &LocalServer, origin: &str) -> (u16, HeaderMap) {
    let response = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, format!("{}/api/v1/credentials/", s.base_url))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization,content-type")
        .send()
        .await
        .expect("server answers");
    (response.status().as_u16(), response.headers().clone())
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in {headers:?}"))
        .to_str()
        .unwrap()
}

fn lower_list(value: &str) -> Vec<String> {
    value.split(',').map(|v| v.trim().to_ascii_lowercase()).collect()
}

fn assert_no_cors_headers(headers: &HeaderMap) {
    let cors: Vec<_> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("access-control-"))
        .collect();
    assert!(cors.is_empty(), "CORS headers for a foreign origin: {cors:?}");
}

#[tokio::test]
async fn preflight_from_a_configured_origin_is_allowed_for_exactly_that_origin() {
    let dir = tempfile::tempdir().unwrap();
    let s = cors_server(&dir).await;
    let needle = "CORS allowed for: http://localhost:5173, https://app.example.com";
    assert!(s.logs_with(needle).await.contains(needle));
    for origin in [FRONTEND, DEPLOYED] {
        let (status, headers) = preflight(&s, origin).await;
        assert!((200..300).contains(&status), "{status}");
        assert_eq!(header(&headers, "access-control-allow-origin"), origin);
        let methods = lower_list(header(&headers, "access-control-allow-methods"));
        for method in ["get", "post", "put", "delete"] {
            assert!(methods.contains(&method.to_owned()), "{methods:?}");
        }
        let allowed = lower_list(header(&headers, "access-control-allow-headers"));
        assert!(allowed.contains(&"authorization".to_owned()), "{allowed:?}");
        assert!(allowed.contains(&"content-type".to_owned()), "{allowed:?}");
        assert!(lower_list(header(&headers, "vary")).contains(&"origin".to_owned()));
        // Bearer tokens, not cookies: never credentials, never `*`.
        assert!(headers.get("access-control-allow-credentials").is_none());
    }
}

#[tokio::test]
async fn other_origins_get_no_cors_headers_and_the_usual_answer() {
    let dir = tempfile::tempdir().unwrap();
    let s = cors_server(&dir).await;
    let (status, headers) = preflight(&s, OTHER).await;
    assert_no_cors_headers(&headers);
    // What it answers without CORS: the route has no OPTIONS.
    assert_eq!(status, 405);
    assert_eq!(header(&headers, "allow"), "GET, POST");

    // A plain request from another origin: answered, but unreadable by its page.
    let token = s.token("cors-user");
    let response = reqwest::Client::new()
        .get(format!("{}/api/v1/credentials/", s.base_url))
        .header("origin", OTHER)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_no_cors_headers(response.headers());
}

#[tokio::test]
async fn requests_from_a_configured_origin_can_be_read_by_its_page() {
    let dir = tempfile::tempdir().unwrap();
    let s = cors_server(&dir).await;
    let response = reqwest::Client::new()
        .get(format!("{}/api/v1/credentials/", s.base_url))
        .header("origin", FRONTEND)
        .bearer_auth(s.token("cors-user"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers();
    assert_eq!(header(headers, "access-control-allow-origin"), FRONTEND);
    assert!(lower_list(header(headers, "access-control-expose-headers")).contains(&"retry-after".to_owned()));
    assert!(headers.get("access-control-allow-credentials").is_none());
    // Errors too, so the page can show their detail.
    let refused = reqwest::Client::new()
        .get(format!("{}/api/v1/credentials/", s.base_url))
        .header("origin", FRONTEND)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(header(refused.headers(), "access-control-allow-origin"), FRONTEND);
}

#[tokio::test]
async fn without_cors_origins_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(&dir, &[]).await;
    for origin in [FRONTEND, OTHER] {
        let (status, headers) = preflight(&s, origin).await;
        assert_eq!(status, 405);
        assert_no_cors_headers(&headers);
    }
}

/// A WebSocket upgrade from a page of `origin`: the HTTP status of the answer.
async fn socket_status(s: &LocalServer, origin: &str) -> u16 {
    let url = format!(
        "{}/ws?token={}",
        s.base_url.replacen("http://", "ws://", 1),
        s.token("cors-user")
    );
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert("origin", origin.parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Ok((_, response)) => response.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("{other}"),
    }
}

#[tokio::test]
async fn configured_origins_may_also_open_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let s = cors_server(&dir).await;
    assert_eq!(socket_status(&s, DEPLOYED).await, 101);
    assert_eq!(socket_status(&s, FRONTEND).await, 101);
    assert_eq!(socket_status(&s, OTHER).await, 403);

    let plain_dir = tempfile::tempdir().unwrap();
    let plain = server(&plain_dir, &[]).await;
    assert_eq!(socket_status(&plain, DEPLOYED).await, 403, "only when configured");
}
