//! The WebSocket function binaries as real processes under the Runtime API
//! emulator, fed the WebSocket payloads of `events/` (no `httpMethod`;
//! `connectedAt` and `requestTimeEpoch` present), against `moto_server`; and
//! the check function pushing to a management endpoint that answers 410 for
//! one connection.

use mailmind_tests::lambda_emulator::LambdaProcess;
use mailmind_tests::moto::moto;
use mailmind_tests::{event, rest_event, with_body, workspace_binary};
use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

const USER: &str = "11111111-2222-3333-4444-555555555555";
const GROQ_KEY: &str = "gsk_wslambda456789abcdefghijklmnopqrstuvwxyzABCDEFG9xQa";

pub(crate) fn ws_event(name: &str, connection_id: &str, user: &str) -> Value {
    let mut e = event(name);
    assert!(
        e.get("httpMethod").is_none() && e["requestContext"].get("httpMethod").is_none(),
        "{name}"
    );
    assert!(e["requestContext"]["connectedAt"].is_i64(), "{name}");
    assert!(e["requestContext"]["requestTimeEpoch"].is_i64(), "{name}");
    e["requestContext"]["connectionId"] = json!(connection_id);
    // A connection made now (the recorded one would long have expired).
    let now = chrono::Utc::now().timestamp_millis();
    e["requestContext"]["connectedAt"] = json!(now);
    e["requestContext"]["requestTimeEpoch"] = json!(now);
    if e["requestContext"].get("authorizer").is_some() {
        e["requestContext"]["authorizer"]["principalId"] = json!(user);
        e["requestContext"]["authorizer"]["sub"] = json!(user);
    }
    e
}

pub(crate) async fn scan_connections(table: &str) -> Vec<(String, String, i64)> {
    let client = aws_sdk_dynamodb::Client::new(&moto().sdk_config().await);
    let scan = client.scan().table_name(table).send().await.unwrap();
    let mut rows: Vec<(String, String, i64)> = scan
        .items()
        .iter()
        .filter(|i| i["sk"].as_s().unwrap().starts_with("CONN#"))
        .map(|i| {
            (
                i["pk"].as_s().unwrap().clone(),
                i["sk"].as_s().unwrap().clone(),
                i["expires_at"].as_n().unwrap().parse().unwrap(),
            )
        })
        .collect();
    rows.sort();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_default_and_disconnect_functions_keep_the_table_right() {
    let moto = moto();
    let table = moto.create_table().await;
    let mut env = moto.env();
    env.push(("TABLE_NAME".into(), table.clone()));
    let connect = LambdaProcess::start(&workspace_binary("ws-connect"), &env).await;
    let default = LambdaProcess::start(&workspace_binary("ws-default"), &env).await;
    let disconnect = LambdaProcess::start(&workspace_binary("ws-disconnect"), &env).await;

    let connect_event = ws_event("ws-connect", "conn-1", USER);
    let connected_at = connect_event["requestContext"]["connectedAt"].as_i64().unwrap() / 1000;
    let connected = connect.invoke(connect_event).await.response();
    assert_eq!(connected["statusCode"], 200, "{connected}");
    let rows = scan_connections(&table).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].0.as_str(), rows[0].1.as_str()),
        (format!("USER#{USER}").as_str(), "CONN#conn-1")
    );
    // TTL a little past API Gateway's 2-hour connection limit.
    assert_eq!(rows[0].2 - connected_at, 130 * 60);

    let pong = default.invoke(ws_event("ws-default", "conn-1", USER)).await.response();
    assert_eq!(pong["statusCode"], 200);
    assert_eq!(
        serde_json::from_str::<Value>(pong["body"].as_str().unwrap()).unwrap(),
        json!({"type": "pong"})
    );
    let mut unknown = ws_event("ws-default", "conn-1", USER);
    unknown["body"] = json!(r#"{"action":"subscribe"}"#);
    let answer = default.invoke(unknown).await.response();
    assert_eq!(
        serde_json::from_str::<Value>(answer["body"].as_str().unwrap()).unwrap()["data"]["code"],
        "unknown_action"
    );

    let gone = disconnect
        .invoke(ws_event("ws-disconnect", "conn-1", USER))
        .await
        .response();
    assert_eq!(gone["statusCode"], 200);
    assert!(scan_connections(&table).await.is_empty());

    // A $connect that did not pass the authorizer is refused and stores nothing.
    let mut anonymous = ws_event("ws-connect", "conn-2", USER);
    anonymous["requestContext"]
        .as_object_mut()
        .unwrap()
        .remove("authorizer");
    let refused = connect.invoke(anonymous).await.response();
    assert_eq!(refused["statusCode"], 401);
    assert!(scan_connections(&table).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authorizer_function_allows_good_tokens_only() {
    let secret = "ws-authorizer-dev-secret-0123456789abcdef";
    // HS256 is refused on Lambda: this emulation says it is `sam local`.
    let env = vec![
        ("JWT_HS256_SECRET".to_owned(), secret.to_owned()),
        ("AWS_SAM_LOCAL".to_owned(), "true".to_owned()),
    ];
    let authorizer = LambdaProcess::start(&workspace_binary("ws-authorizer"), &env).await;
    let issue = |key: &str, ttl| mailmind::auth::Hs256Verifier::new(key.as_bytes()).issue(USER, ttl);
    let with_token = |token: &str| {
        let mut e = event("ws-authorizer");
        e["queryStringParameters"]["token"] = json!(token);
        e["multiValueQueryStringParameters"]["token"] = json!([token]);
        e
    };
    let allowed = authorizer.invoke(with_token(&issue(secret, 600))).await.response();
    assert_eq!(allowed["principalId"], USER);
    assert_eq!(allowed["policyDocument"]["Statement"][0]["Effect"], "Allow");
    assert_eq!(
        allowed["policyDocument"]["Statement"][0]["Resource"][0],
        event("ws-authorizer")["methodArn"]
    );
    for bad in [issue("another secret", 600), issue(secret, -600), "garbage".to_owned()] {
        let denied = authorizer.invoke(with_token(&bad)).await.response();
        assert_eq!(denied["policyDocument"]["Statement"][0]["Effect"], "Deny", "{bad}");
    }
    let mut missing = event("ws-authorizer");
    missing.as_object_mut().unwrap().remove("queryStringParameters");
    let denied = authorizer.invoke(missing).await.response();
    assert_eq!(denied["policyDocument"]["Statement"][0]["Effect"], "Deny");
    assert!(
        !authorizer.logs().contains(&issue(secret, 600)[..40]),
        "tokens never reach the logs"
    );
}

/// Starts ws-authorizer with `env`; it must refuse to start, saying `reason`.
async fn authorizer_refuses_to_start(env: &[(&str, &str)], reason: &str) {
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let mut process = LambdaProcess::start(&workspace_binary("ws-authorizer"), &env).await;
    let (status, logs) = process
        .exit(std::time::Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("ws-authorizer must stop with {env:?}"));
    assert!(!status.success());
    assert!(logs.contains(reason), "{env:?}: {logs}");
}

/// On Lambda (`AWS_LAMBDA_FUNCTION_NAME` set, no `AWS_SAM_LOCAL`) the HS256
/// development mode is refused; a short secret is refused anywhere; RS256
/// needs an audience.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authorizer_function_refuses_hs256_on_lambda_short_secrets_and_no_audience() {
    let long = "a-development-secret-of-40-bytes-0123456";
    authorizer_refuses_to_start(&[("JWT_HS256_SECRET", long)], "refused on Lambda").await;
    authorizer_refuses_to_start(
        &[("JWT_HS256_SECRET", long), ("AWS_SAM_LOCAL", "false")],
        "refused on Lambda",
    )
    .await;
    authorizer_refuses_to_start(
        &[("JWT_HS256_SECRET", "short-secret"), ("AWS_SAM_LOCAL", "true")],
        "at least 32",
    )
    .await;
    authorizer_refuses_to_start(&[("JWT_ISSUER", "https://issuer.example")], "JWT_AUDIENCE").await;
    authorizer_refuses_to_start(
        &[("JWT_ISSUER", "https://issuer.example"), ("JWT_AUDIENCE", " , ")],
        "JWT_AUDIENCE",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authorizer_function_refuses_to_start_without_a_verifier() {
    let mut process = LambdaProcess::start(&workspace_binary("ws-authorizer"), &[]).await;
    let (status, logs) = process
        .exit(std::time::Duration::from_secs(10))
        .await
        .expect("ws-authorizer must stop without configuration");
    assert!(!status.success());
    assert!(logs.contains("JWT_ISSUER"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_pushes_to_live_connections_and_forgets_gone_ones() {
    let (moto, table, key, groq) = mailmind_tests::deployment().await;
    groq.accept(GROQ_KEY, &["llama-3.1-8b-instant", "gemma2-9b-it"]).await;

    // The WebSocket API's management endpoint: one live connection, one gone.
    let management = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/production/@connections/live-conn"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&management)
        .await;
    Mock::given(method("POST"))
        .and(path_regex("^/production/@connections/gone-conn$"))
        .respond_with(
            ResponseTemplate::new(410)
                .insert_header("x-amzn-ErrorType", "GoneException")
                .set_body_json(json!({"message": null})),
        )
        .mount(&management)
        .await;

    let mut env = moto.function_env(&table, &key);
    env.extend([mailmind_tests::management_env(&management), groq.env()]);
    let connect = LambdaProcess::start(&workspace_binary("ws-connect"), &env).await;
    for id in ["live-conn", "gone-conn"] {
        let answer = connect.invoke(ws_event("ws-connect", id, USER)).await.response();
        assert_eq!(answer["statusCode"], 200);
    }
    // Someone else's connection must never be pushed to.
    connect
        .invoke(ws_event("ws-connect", "other-conn", "someone-else"))
        .await
        .response();
    assert_eq!(scan_connections(&table).await.len(), 3);

    let create = LambdaProcess::start(&workspace_binary("credentials-create"), &env).await;
    let check = LambdaProcess::start(&workspace_binary("credentials-check"), &env).await;
    let create_event = with_body(
        rest_event("credentials-create", USER),
        json!({"provider": "groq", "api_key": GROQ_KEY}),
    );
    let created = create.invoke(create_event).await.response();
    assert_eq!(created["statusCode"], 201, "{created}");
    // The create already met the gone connection and forgot it.
    let remaining: Vec<String> = scan_connections(&table).await.into_iter().map(|r| r.1).collect();
    assert_eq!(remaining, ["CONN#live-conn", "CONN#other-conn"]);

    let check_event = rest_event("credentials-check", USER);
    let checked = check.invoke(check_event).await.response();
    assert_eq!(checked["statusCode"], 200, "{checked}");

    let pushes: Vec<(String, Value)> = management
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.url.path().to_owned(), serde_json::from_slice(&r.body).unwrap()))
        .collect();
    let live: Vec<&Value> = pushes
        .iter()
        .filter(|(p, _)| p.ends_with("/live-conn"))
        .map(|(_, m)| m)
        .collect();
    let statuses: Vec<&str> = live.iter().map(|m| m["data"]["status"].as_str().unwrap()).collect();
    assert_eq!(
        statuses,
        ["checking", "valid", "checking", "valid"],
        "create then check"
    );
    assert!(
        live.iter()
            .all(|m| m["type"] == "api_key_status" && m["data"]["provider"] == "groq")
    );
    assert_eq!(live[3]["data"]["models_count"], 2);
    assert_eq!(
        pushes.iter().filter(|(p, _)| p.ends_with("/gone-conn")).count(),
        1,
        "gone is tried once, then forgotten"
    );
    assert!(
        pushes.iter().all(|(p, _)| !p.ends_with("/other-conn")),
        "never another user's connection"
    );
}
