//! `docs/asyncapi.yaml` against the real socket: every message captured from
//! `mailmind-local` (status pushes of a create and a check, a pong, the
//! errors of an unknown action, of text that is not JSON and of socket
//! `check`s) validates against the document's schema for its `type`, and the
//! document's `api_key_status` fields, providers and reasons are the Rust
//! types' own.

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use mailmind::domain::{ErrorReason, StatusEvent};
use mailmind_tests::fake_providers::FakeProvider;
use mailmind_tests::local_server::LocalServer;
use mailmind_tests::repo_root;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use utoipa::PartialSchema;

const GROQ_KEY: &str = "gsk_asyncapi456789abcdefghijklmnopqrstuvwxyzABCDEF9xQa";

fn document() -> Value {
    let text = std::fs::read_to_string(repo_root().join("docs/asyncapi.yaml")).expect("docs/asyncapi.yaml");
    serde_yaml_ng::from_str(&text).expect("docs/asyncapi.yaml is YAML")
}

/// A validator for `#/components/schemas/<name>` of the document (its
/// references resolve inside the document).
fn validator(doc: &Value, name: &str) -> jsonschema::Validator {
    let schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": format!("#/components/schemas/{name}"),
        "components": doc["components"],
    });
    jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("schema {name}: {e}"))
}

/// The schema the document gives a server message of this `type`.
fn schema_for(message: &Value) -> &'static str {
    match message["type"].as_str() {
        Some("api_key_status") => "ApiKeyStatusMessage",
        Some("pong") => "PongMessage",
        Some("error") => "ErrorMessage",
        other => panic!("a message type the document does not describe: {other:?} in {message}"),
    }
}

fn assert_valid(doc: &Value, name: &str, message: &Value) {
    let validator = validator(doc, name);
    let errors: Vec<String> = validator.iter_errors(message).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{message} does not match {name}: {errors:?}");
}

fn property_names(schema: &Value) -> BTreeSet<String> {
    schema["properties"]
        .as_object()
        .expect("properties")
        .keys()
        .cloned()
        .collect()
}

#[test]
fn document_agrees_with_the_rust_types() {
    let doc = document();
    assert_eq!(doc["asyncapi"], "3.0.0");
    let schemas = &doc["components"]["schemas"];
    // api_key_status's data: the fields StatusEvent serializes.
    let rust = serde_json::to_value(StatusEvent::schema()).unwrap();
    assert_eq!(property_names(&schemas["StatusData"]), property_names(&rust));
    let reasons: Vec<&str> = ErrorReason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(schemas["ErrorReason"]["enum"], json!(reasons));
    // The providers: `provider_enum_is_the_declared_providers` below.
    // The documented examples hold to the schemas, both directions.
    for (message, schema) in [
        ("apiKeyStatus", "ApiKeyStatusMessage"),
        ("pong", "PongMessage"),
        ("error", "ErrorMessage"),
        ("ping", "PingAction"),
        ("check", "CheckAction"),
    ] {
        let examples = doc["components"]["messages"][message]["examples"].as_array().unwrap();
        assert!(!examples.is_empty(), "{message} has examples");
        for example in examples {
            assert_valid(&doc, schema, &example["payload"]);
        }
    }
    // The schemas are not vacuous: a wrong status, a missing field, an
    // unknown field are refused.
    let validator = validator(&doc, "ApiKeyStatusMessage");
    for bad in [
        json!({"type": "api_key_status", "data": {"provider": "groq", "provider_name": "Groq", "status": "done", "message": "x"}}),
        json!({"type": "api_key_status", "data": {"provider": "groq", "provider_name": "Groq", "status": "valid", "message": "x"}}),
        json!({"type": "api_key_status", "data": {"provider": "groq", "provider_name": "Groq", "status": "checking", "message": "x", "extra": 1}}),
        json!({"type": "api_key_status", "data": {"provider": "groq", "provider_name": "Groq", "status": "error", "message": "x", "models_count": 0, "checked_at": "2026-11-24T19:00:00Z"}}),
    ] {
        assert!(!validator.is_valid(&bad), "accepted {bad}");
    }
    let errors = self::validator(&doc, "ErrorMessage");
    assert!(!errors.is_valid(&json!({"type": "error", "data": {"code": "nope", "detail": "x"}})));
    // One shape for every socket error: the flat form is gone.
    assert!(!errors.is_valid(&json!({"type": "error", "code": "unknown_action", "detail": "x"})));
}

#[tokio::test]
async fn messages_captured_from_the_local_server_match_the_document() {
    let doc = document();
    let dir = tempfile::tempdir().unwrap();
    let groq = FakeProvider::start("groq").await;
    groq.accept(GROQ_KEY, &["llama-3.1-8b-instant", "gemma2-9b-it"]).await;
    let limited = "gsk_asyncapilimit9abcdefghijklmnopqrstuvwxyzABCDEFlimt";
    groq.answer(limited, groq.rate_limited_response(12)).await;
    let server = LocalServer::start(&dir.path().join("data"), &[groq.env()]).await;
    let url = format!(
        "{}/ws?token={}",
        server.base_url.replacen("http://", "ws://", 1),
        server.token("user-a")
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("socket connects");

    let created = server.post_key("user-a", "groq", GROQ_KEY).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let checked = server
        .call_as("user-a", "POST", "/api/v1/credentials/groq/check/", None)
        .await;
    assert_eq!(checked.status, 200);
    // A verdict-less check: an `error` push with its reason and wait.
    let replaced = server.put_key("user-a", "groq", limited).await;
    assert_eq!(replaced.status, 200);
    // The client's actions: ping, check (a stored key, an unknown provider,
    // one without a key), an unknown action and text that is not JSON.
    for action in [
        json!({"action": "ping"}).to_string(),
        json!({"action": "check", "provider": "groq"}).to_string(),
        json!({"action": "check", "provider": "nope"}).to_string(),
        json!({"action": "check", "provider": "openai"}).to_string(),
        json!({"action": "dance"}).to_string(),
        "not json".to_owned(),
    ] {
        socket.send(Message::text(action)).await.unwrap();
    }

    // Everything that arrives until the socket has been quiet for a while.
    let mut captured = Vec::new();
    while let Ok(Some(frame)) = tokio::time::timeout(Duration::from_secs(3), socket.next()).await {
        match frame.expect("socket stays open") {
            Message::Text(text) => captured.push(serde_json::from_str::<Value>(&text).expect("JSON message")),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
    let kinds: Vec<String> = captured
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["type"].as_str().unwrap_or("?"),
                m["data"]["status"].as_str().unwrap_or("")
            )
        })
        .collect();
    for expected in [
        "api_key_status/checking",
        "api_key_status/valid",
        "api_key_status/error",
        "pong/",
        "error/",
    ] {
        assert!(kinds.iter().any(|k| k == expected), "no {expected} among {kinds:?}");
    }
    for message in &captured {
        assert_valid(&doc, schema_for(message), message);
    }
}

/// The `enum:` line of `ProviderId` as the declared providers render it.
fn provider_enum_line() -> String {
    let ids: Vec<&str> = mailmind::domain::provider::PROVIDERS.iter().map(|p| p.id).collect();
    format!("      enum: [{}]", ids.join(", "))
}

/// The document's provider enum is rendered from `PROVIDERS`; after adding a
/// provider: `UPDATE_ASYNCAPI=1 cargo test -p mailmind-tests --test suite asyncapi`
/// (`scripts/regenerate.sh` renders every generated file).
#[test]
fn provider_enum_is_the_declared_providers() {
    let path = repo_root().join("docs/asyncapi.yaml");
    let text = std::fs::read_to_string(&path).expect("docs/asyncapi.yaml");
    let start = text.find("\n    ProviderId:\n").expect("a ProviderId schema");
    let enum_at = start + text[start..].find("\n      enum: [").expect("ProviderId has an enum") + 1;
    let enum_end = enum_at + text[enum_at..].find('\n').expect("a line end");
    let wanted = provider_enum_line();
    if std::env::var_os("UPDATE_ASYNCAPI").is_some_and(|v| v == "1") {
        let updated = format!("{}{}{}", &text[..enum_at], wanted, &text[enum_end..]);
        std::fs::write(&path, updated).expect("write docs/asyncapi.yaml");
        return;
    }
    assert_eq!(
        &text[enum_at..enum_end],
        wanted,
        "docs/asyncapi.yaml's ProviderId differs from PROVIDERS; render it with\n  \
         UPDATE_ASYNCAPI=1 cargo test -p mailmind-tests --test suite asyncapi"
    );
    assert_eq!(
        document()["components"]["schemas"]["ProviderId"]["enum"],
        json!(
            mailmind::domain::provider::PROVIDERS
                .iter()
                .map(|p| p.id)
                .collect::<Vec<_>>()
        )
    );
}
