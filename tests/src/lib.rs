//! Test harness shared by the integration and end-to-end tests: the real
//! local server as a process, fake providers, and the store and keyring
//! contract suites every adapter must pass.

pub mod aws_proxy;
pub mod bench;
pub mod fake_providers;
pub mod invoke_api;
pub mod keyring_contract;
pub mod lambda_emulator;
pub mod local_server;
pub mod moto;
pub mod store_contract;

use mailmind::deploy::{FUNCTIONS, Trigger};
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

/// The Lambda functions, sorted, as `mailmind::deploy::FUNCTIONS` declares
/// them: each builds from `functions/<name>/` (the consistency tests hold the
/// folders, the events and the template to this list).
pub fn function_names() -> Vec<String> {
    names_where(|_| true)
}

fn names_where(keep: impl Fn(&Trigger) -> bool) -> Vec<String> {
    FUNCTIONS
        .iter()
        .filter(|f| keep(&f.trigger))
        .map(|f| f.name.to_owned())
        .collect()
}

/// The functions behind the HTTP API, sorted.
pub fn rest_function_names() -> Vec<String> {
    names_where(|t| matches!(t, Trigger::Rest(_)))
}

/// The functions other MailMind functions invoke directly, sorted.
pub fn invoked_function_names() -> Vec<String> {
    names_where(|t| matches!(t, Trigger::Invoke))
}

/// The functions behind the WebSocket API, its authorizer included, sorted.
pub fn websocket_function_names() -> Vec<String> {
    names_where(|t| matches!(t, Trigger::WebSocket { .. } | Trigger::WebSocketAuthorizer))
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

/// What most Lambda tests deploy: the shared moto, a fresh table and KMS key
/// on it, and a fake Groq.
pub async fn deployment() -> (&'static moto::Moto, String, String, fake_providers::FakeProvider) {
    let moto = moto::moto();
    let table = moto.create_table().await;
    let key = moto.create_kms_key().await;
    (moto, table, key, fake_providers::FakeProvider::start("groq").await)
}

/// Runs `script` with `args` in the project venv's Python (`./scripts/venv.sh`
/// makes it) under exactly `env` and at most one AWS attempt per call; its
/// stdout, after asserting it succeeded.
pub async fn run_venv_python(script: &str, args: &[&str], env: impl IntoIterator<Item = (String, String)>) -> String {
    let python = repo_root().join(".venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run ./scripts/venv.sh",
        python.display()
    );
    let output = tokio::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .env_clear()
        .envs(env)
        .env("AWS_MAX_ATTEMPTS", "1")
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "python failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The IAM actions template.yaml lets function `name`'s role take: its
/// inline statements and the managed policies it references, `Allow` only.
pub fn granted_actions(name: &str) -> std::collections::BTreeSet<String> {
    let path = repo_root().join("template.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let root: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    let resources = &root["Resources"];
    let spec = mailmind::deploy::function(name).unwrap_or_else(|| panic!("{name} is not declared"));
    let policies = resources[spec.logical_id().as_str()]["Properties"]["Policies"]
        .as_sequence()
        .unwrap_or_else(|| panic!("{name} has no Policies"));
    let mut actions = std::collections::BTreeSet::new();
    for policy in policies {
        let document = match policy {
            // `!Ref SomePolicy`: a managed policy of the template.
            serde_yaml_ng::Value::Tagged(tagged) => {
                let referenced = tagged.value.as_str().unwrap();
                resources[referenced]["Properties"]["PolicyDocument"].clone()
            }
            inline => inline.clone(),
        };
        for statement in document["Statement"].as_sequence().into_iter().flatten() {
            if statement["Effect"] != "Allow" {
                continue;
            }
            let listed = match &statement["Action"] {
                serde_yaml_ng::Value::Sequence(list) => list.clone(),
                one => vec![one.clone()],
            };
            actions.extend(listed.iter().filter_map(|a| a.as_str()).map(str::to_owned));
        }
    }
    actions
}

/// Whether `granted` covers `action` as AWS authorizes it: a transaction
/// is allowed per item, so `TransactWriteItems` needs the item actions
/// (any one of them, at least) and `TransactGetItems` needs `GetItem`.
pub fn covers(granted: &std::collections::BTreeSet<String>, action: &str) -> bool {
    match action {
        "dynamodb:TransactWriteItems" => ["PutItem", "UpdateItem", "DeleteItem", "ConditionCheckItem"]
            .iter()
            .any(|a| granted.contains(&format!("dynamodb:{a}"))),
        "dynamodb:TransactGetItems" => granted.contains("dynamodb:GetItem"),
        _ => granted.contains(action),
    }
}

/// The element of the JSON array `list` whose `field` is `value`.
pub fn entry<'a>(list: &'a serde_json::Value, field: &str, value: &str) -> &'a serde_json::Value {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .find(|e| e[field] == value)
        .unwrap_or_else(|| panic!("no entry with {field} {value} in {list}"))
}

/// Status and JSON body of an API Gateway v2 response (`Null` without a body).
pub fn http_answer(response: &serde_json::Value) -> (u16, serde_json::Value) {
    let status = response["statusCode"].as_u64().expect("statusCode") as u16;
    let body = match response.get("body").and_then(serde_json::Value::as_str) {
        Some(text) if !text.is_empty() => serde_json::from_str(text).expect("JSON body"),
        _ => serde_json::Value::Null,
    };
    (status, body)
}

/// The string `field` of each element of the JSON array `list`, in order.
pub fn strings<'a>(list: &'a serde_json::Value, field: &str) -> Vec<&'a str> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|e| e[field].as_str().unwrap_or_else(|| panic!("no string {field} in {e}")))
        .collect()
}

/// The `WS_MANAGEMENT_ENDPOINT` variable of functions that push through
/// `management` (a fake of API Gateway's Management API, stage `production`).
pub fn management_env(management: &wiremock::MockServer) -> (String, String) {
    (
        "WS_MANAGEMENT_ENDPOINT".to_owned(),
        format!("{}/production", management.uri()),
    )
}

/// Stores `key` as `user`'s Groq key through a running `credentials-create`
/// function; its status object.
pub async fn create_groq_key(create: &lambda_emulator::LambdaProcess, user: &str, key: &str) -> serde_json::Value {
    let body = serde_json::json!({"provider": "groq", "api_key": key});
    let response = create
        .invoke(with_body(rest_event("credentials-create", user), body))
        .await
        .response();
    assert_eq!(response["statusCode"], 201, "{response}\n{}", create.logs());
    http_answer(&response).1
}

/// What `read` gives once it holds `needle`, or as it is after 10 s: a
/// process's output is collected as it comes, so a line printed just before
/// an answer may still be on its way when the answer arrives.
pub async fn once_it_holds(read: impl Fn() -> String, needle: &str) -> String {
    for _ in 0..200 {
        let text = read();
        if text.contains(needle) {
            return text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    read()
}
