//! Test harness shared by the integration and end-to-end tests: the real
//! local server as a process, fake providers, and the store and keyring
//! contract suites every adapter must pass.

pub mod aws_proxy;
pub mod fake_providers;
pub mod keyring_contract;
pub mod lambda_emulator;
pub mod local_server;
pub mod moto;
pub mod store_contract;

use std::path::PathBuf;

/// A binary of this workspace, built by `cargo build --workspace --bins`
/// (the README's test command does that first).
pub fn workspace_binary(name: &str) -> PathBuf {
    // Test executables live in target/<profile>/deps; binaries one level up.
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable inside target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the workspace binaries first (cargo build --workspace --bins), \
         or run the README's test command",
        path.display()
    );
    path
}

/// The repository root (the workspace).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace root")
        .to_owned()
}

/// The Lambda functions, sorted: one crate per folder `functions/<name>/`
/// (the folder holds a Cargo.toml), each building the binary `<name>`. The
/// one list every test, benchmark and script derives the functions from.
pub fn function_names() -> Vec<String> {
    let dir = repo_root().join("functions");
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut names: Vec<String> = entries
        .map(|entry| entry.unwrap_or_else(|e| panic!("{}: {e}", dir.display())).path())
        .filter(|path| path.join("Cargo.toml").is_file())
        .map(|path| path.file_name().expect("a folder name").to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no function crate under {}", dir.display());
    names
}

/// Whether `function` serves an HTTP API route: its event payload
/// (`events/<function>.json`) is an HTTP API v2 event, with
/// `requestContext.http`. The other functions serve the WebSocket API.
pub fn is_rest_function(function: &str) -> bool {
    event(function).pointer("/requestContext/http").is_some()
}

/// The functions behind the HTTP API (see [`is_rest_function`]), sorted.
pub fn rest_function_names() -> Vec<String> {
    function_names().into_iter().filter(|f| is_rest_function(f)).collect()
}

/// Whether `function` is invoked directly by other MailMind functions
/// (`lambda:InvokeFunction`, no API in front): its payload is the request
/// itself, an object with an `action` and no `requestContext`.
pub fn is_invoked_function(function: &str) -> bool {
    let payload = event(function);
    payload.get("action").is_some_and(serde_json::Value::is_string) && payload.get("requestContext").is_none()
}

/// The functions other MailMind functions invoke (see [`is_invoked_function`]), sorted.
pub fn invoked_function_names() -> Vec<String> {
    function_names()
        .into_iter()
        .filter(|f| is_invoked_function(f))
        .collect()
}

/// Whether `function` runs on a schedule (EventBridge), with no API in
/// front: its payload is a scheduled event (`source` `aws.events`,
/// `detail-type` `Scheduled Event`).
pub fn is_scheduled_function(function: &str) -> bool {
    let payload = event(function);
    payload.get("source").and_then(serde_json::Value::as_str) == Some("aws.events")
        && payload.get("detail-type").and_then(serde_json::Value::as_str) == Some("Scheduled Event")
}

/// The functions EventBridge runs on a schedule (see [`is_scheduled_function`]), sorted.
pub fn scheduled_function_names() -> Vec<String> {
    function_names()
        .into_iter()
        .filter(|f| is_scheduled_function(f))
        .collect()
}

/// Whether `function` serves the WebSocket API (its authorizer included):
/// none of the other three kinds.
pub fn is_websocket_function(function: &str) -> bool {
    !is_rest_function(function) && !is_invoked_function(function) && !is_scheduled_function(function)
}

/// The functions behind the WebSocket API, its authorizer included, sorted.
pub fn websocket_function_names() -> Vec<String> {
    function_names()
        .into_iter()
        .filter(|f| is_websocket_function(f))
        .collect()
}

/// An API Gateway event payload from `events/`, as the functions receive it.
pub fn event(name: &str) -> serde_json::Value {
    let path = repo_root().join("events").join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A REST event from `events/` as `user` (the verified `sub` claim).
pub fn rest_event(name: &str, user: &str) -> serde_json::Value {
    let mut event = event(name);
    if let Some(claims) = event.pointer_mut("/requestContext/authorizer/jwt/claims") {
        claims["sub"] = serde_json::json!(user);
    }
    event
}

/// `event` carrying `body` as its JSON text, the way API Gateway delivers it.
pub fn with_body(mut event: serde_json::Value, body: serde_json::Value) -> serde_json::Value {
    event["body"] = serde_json::json!(body.to_string());
    event["isBase64Encoded"] = serde_json::json!(false);
    event
}
