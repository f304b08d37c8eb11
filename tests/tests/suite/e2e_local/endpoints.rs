//! Keys with their own endpoint (`openai_compatible`, `azure_openai`) over
//! the local server's HTTP API: stored, checked at their endpoint, moved,
//! refused by the egress guard, and bound to their endpoint by the sealed
//! key's encryption context. Only loopback is ever connected to: every
//! refused endpoint is refused before any connection.

use mailmind_tests::fake_providers::FakeProvider;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::{assert_error, world};

const AZURE_KEY: &str = "0123456789abcdef0123456789abcdef";

/// An Ollama-shaped server (`GET /v1/models`, no key needed) on loopback.
async fn ollama() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"object": "list", "data": [
                {"id": "llama3.2:latest", "object": "model", "created": 1730000000, "owned_by": "library"},
                {"id": "qwen2.5:7b", "object": "model", "created": 1730000001, "owned_by": "library"}
            ]})),
        )
        .mount(&server)
        .await;
    server
}

fn key_body(provider: &str, api_key: Option<&str>, base_url: &str) -> Value {
    let mut body = json!({"provider": provider, "base_url": base_url});
    if let Some(key) = api_key {
        body["api_key"] = json!(key);
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_ollama_needs_no_key_and_its_models_are_listed() {
    let w = world().await;
    let ollama = ollama().await;
    let endpoint = format!("{}/v1/", ollama.uri());
    let created = w
        .server
        .post_body("alice", &key_body("openai_compatible", None, &endpoint))
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.json["status"], "valid");
    assert_eq!(created.json["key_hint"], "(no key)");
    // Stored as the guard accepted it: no trailing slash.
    assert_eq!(created.json["base_url"], format!("{}/v1", ollama.uri()));
    assert_eq!(created.json["models_count"], 2);
    let ids = w.server.model_ids("alice", "openai_compatible").await;
    assert_eq!(ids, ["llama3.2:latest", "qwen2.5:7b"]);
    // The empty key is sent as no key at all.
    let requests = ollama.received_requests().await.unwrap();
    assert!(!requests.is_empty());
    assert!(requests.iter().all(|r| !r.headers.contains_key("authorization")));

    // The list shows the endpoint; other providers carry none.
    let list = w.server.call_as("alice", "GET", "/api/v1/credentials/", None).await;
    for entry in list.json.as_array().unwrap() {
        let expected = match entry["provider"].as_str() {
            Some("openai_compatible") => json!(format!("{}/v1", ollama.uri())),
            _ => Value::Null,
        };
        assert_eq!(
            entry.get("base_url").cloned().unwrap_or(Value::Null),
            expected,
            "{entry}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_azure_resource_is_asked_for_its_deployments_with_its_api_key_header() {
    let w = world().await;
    let azure = FakeProvider::start("azure_openai").await;
    azure.accept(AZURE_KEY, &["gpt-4o-prod", "gpt-4o-mini-prod"]).await;
    let created = w
        .server
        .post_body("alice", &key_body("azure_openai", Some(AZURE_KEY), &azure.base_url()))
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.json["status"], "valid", "{}", created.text);
    assert_eq!(created.json["base_url"], azure.base_url());
    let models = w
        .server
        .call_as("alice", "GET", "/api/v1/credentials/azure_openai/models/", None)
        .await;
    assert_eq!(
        models.json[0],
        json!({"provider": "azure_openai", "model_id": "gpt-4o-mini-prod", "model_name": "gpt-4o",
               "owned_by": "organization-owner", "key_ids": ["default"], "discovered_at": models.json[0]["discovered_at"],
               "first_seen_at": models.json[0]["first_seen_at"]})
    );
    let request = &azure.requests().await[0];
    assert_eq!(request.url.path(), "/openai/deployments");
    assert_eq!(request.url.query(), Some("api-version=2022-12-01"));
    assert_eq!(request.headers["api-key"], AZURE_KEY);
    assert!(!request.headers.contains_key("authorization"));

    // Azure's own answer to a wrong key is a verdict: nothing stored.
    let rejected = w
        .server
        .post_body(
            "bob",
            &key_body(
                "azure_openai",
                Some("ffffffffffffffffffffffffffffffff"),
                &azure.base_url(),
            ),
        )
        .await;
    assert_error(&rejected, 422, "key_rejected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_keeps_or_moves_the_endpoint() {
    let w = world().await;
    let first = ollama().await;
    let second = ollama().await;
    let at = |server: &MockServer| format!("{}/v1", server.uri());
    let created = w
        .server
        .post_body("alice", &key_body("openai_compatible", Some(""), &at(&first)))
        .await;
    assert_eq!(created.status, 201, "{}", created.text);

    // A new key without base_url: the endpoint stays, and is asked again.
    let kept = w
        .server
        .call_as(
            "alice",
            "PUT",
            "/api/v1/credentials/openai_compatible/",
            Some(&json!({"api_key": "sk-local-0123456789abcdefghij"}).to_string()),
        )
        .await;
    assert_eq!(kept.status, 200, "{}", kept.text);
    assert_eq!(kept.json["base_url"], at(&first));
    let with_key = first.received_requests().await.unwrap();
    assert_eq!(
        with_key.last().unwrap().headers["authorization"],
        "Bearer sk-local-0123456789abcdefghij"
    );

    // With base_url: moved; the next check goes there only.
    let moved = w
        .server
        .call_as(
            "alice",
            "PUT",
            "/api/v1/credentials/openai_compatible/",
            Some(&json!({"api_key": "", "base_url": at(&second)}).to_string()),
        )
        .await;
    assert_eq!(moved.json["base_url"], at(&second), "{}", moved.text);
    let asked_first = first.received_requests().await.unwrap().len();
    let checked = w
        .server
        .call_as("alice", "POST", "/api/v1/credentials/openai_compatible/check/", None)
        .await;
    assert_eq!(checked.json["status"], "valid", "{}", checked.text);
    assert_eq!(first.received_requests().await.unwrap().len(), asked_first);
    assert_eq!(second.received_requests().await.unwrap().len(), 2);

    // base_url belongs to these providers only; they cannot do without one.
    let groq = w
        .server
        .post_body("alice", &key_body("groq", Some(super::GROQ_KEY), &at(&first)))
        .await;
    assert_error(&groq, 400, "invalid_request");
    let missing = w
        .server
        .post_body("bob", &json!({"provider": "azure_openai", "api_key": AZURE_KEY}))
        .await;
    assert_error(&missing, 400, "invalid_request");
    assert_eq!(
        missing.json["detail"],
        "Field 'base_url' is required for Azure OpenAI keys."
    );
}

/// Each refusal the issue names, over HTTP, before any connection: none of
/// these addresses is ever contacted (the guard answers from the URL alone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_the_guard_refuses_answer_400_and_store_nothing() {
    let w = world().await;
    let metadata = "169.254.169.254 is a link-local address";
    let cases = [
        ("https://169.254.169.254/latest/meta-data", metadata),
        // The same address spelled in decimal, hex and octal.
        ("https://2852039166/", metadata),
        ("https://0xa9.0xfe.0xa9.0xfe/", metadata),
        ("https://0251.0376.0251.0376/", metadata),
        (
            "https://good@169.254.169.254/",
            "the endpoint must not carry a user name or password",
        ),
        ("https://10.0.0.1/v1", "10.0.0.1 is a private address"),
        ("https://172.16.0.1/v1", "172.16.0.1 is a private address"),
        ("https://192.168.1.1/v1", "192.168.1.1 is a private address"),
        ("https://100.64.0.1/v1", "100.64.0.1 is a carrier-grade NAT address"),
        ("https://[fe80::1]/v1", "fe80::1 is a link-local address"),
        ("https://[fd00::1]/v1", "fd00::1 is a unique-local address"),
        (
            "https://[::ffff:a9fe:a9fe]/",
            "::ffff:169.254.169.254 is a link-local address",
        ),
        ("https://224.0.0.1/", "224.0.0.1 is a multicast address"),
        ("https://0.0.0.0/", "0.0.0.0 is an unspecified address"),
        ("http://10.0.0.1/v1", "the endpoint must use https"),
        ("ftp://llm.example.com/v1", "the endpoint must use https"),
        (
            "https://llm.example.com:8443/v1",
            "port 8443 is not allowed for endpoints",
        ),
        (
            "https://llm.example.com/v1?key=1",
            "the endpoint must not have a query or a fragment",
        ),
        ("not a url", "the endpoint is not a URL"),
    ];
    for (url, why) in cases {
        for provider in ["openai_compatible", "azure_openai"] {
            let answer = w
                .server
                .post_body("alice", &key_body(provider, Some(AZURE_KEY), url))
                .await;
            assert_error(&answer, 400, "endpoint_not_allowed");
            assert_eq!(
                answer.json["detail"],
                format!("This endpoint is not allowed: {why}. Nothing was stored."),
                "{url}"
            );
            assert!(!answer.text.contains(AZURE_KEY), "{}", answer.text);
        }
    }
    for provider in ["openai_compatible", "azure_openai"] {
        let stored = w
            .server
            .call_as("alice", "GET", &format!("/api/v1/credentials/{provider}/"), None)
            .await;
        assert_error(&stored, 404, "credential_not_found");
    }
    // Refused before the validation budget is spent, too: nothing was checked.
    let activity = w
        .server
        .call_as("alice", "GET", "/api/v1/credentials/azure_openai/activity/", None)
        .await;
    assert_eq!(activity.json["entries"], json!([]), "{}", activity.text);
    assert!(!w.server.logs().contains(AZURE_KEY), "a key reached the logs");
}

/// An endpoint changed in the table (by someone with write access to it,
/// not through the API) does not take the key along: the key is bound to
/// the endpoint it was sealed for, so it no longer opens and is sent nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_changed_in_the_table_leaves_the_key_sealed() {
    let w = world().await;
    let honest = ollama().await;
    let attacker = ollama().await;
    let body = key_body(
        "openai_compatible",
        Some("sk-local-secret-0123456789"),
        &format!("{}/v1", honest.uri()),
    );
    let created = w.server.post_body("alice", &body).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let db = rusqlite::Connection::open(w.server.data_dir.join("mailmind.db")).unwrap();
    db.execute(
        "UPDATE credentials SET endpoint = ?1 WHERE provider = 'openai_compatible'",
        [format!("{}/v1", attacker.uri())],
    )
    .unwrap();
    let checked = w
        .server
        .call_as("alice", "POST", "/api/v1/credentials/openai_compatible/check/", None)
        .await;
    assert_eq!(checked.status, 500, "{}", checked.text);
    assert!(
        attacker.received_requests().await.unwrap().is_empty(),
        "the key went to the new endpoint"
    );
    assert!(w.server.logs().contains("stored key does not open"));
}
