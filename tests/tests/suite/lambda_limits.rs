//! The abuse limits in the function binaries, under the Runtime API emulator
//! against DynamoDB and KMS on `moto_server`: the 11th validation of a user
//! (create, update or check) is `429` with `Retry-After`, calling and storing
//! nothing; `ws-connect` refuses a socket over the per-user cap.

use mailmind_tests::aws_proxy::{CountingProxy, through_proxy};
use mailmind_tests::lambda_emulator::LambdaProcess;
use mailmind_tests::moto::moto;
use mailmind_tests::{event, rest_event, with_body, workspace_binary};
use serde_json::{Value, json};

const USER: &str = "11111111-2222-3333-4444-555555555555";
const OTHER: &str = "99999999-2222-3333-4444-555555555555";
const GROQ_KEY: &str = "gsk_lambdalimit6789abcdefghijklmnopqrstuvwxyzABCDE9xQa";
const GROQ_KEY_2: &str = "gsk_lambdalimit2789abcdefghijklmnopqrstuvwxyzABCDEzzZZ";

async fn scan(
    table: &str,
    prefix: &str,
) -> Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
    let client = aws_sdk_dynamodb::Client::new(&moto().sdk_config().await);
    let scan = client.scan().table_name(table).send().await.unwrap();
    scan.items()
        .iter()
        .filter(|i| i["sk"].as_s().unwrap().starts_with(prefix))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eleventh_validation_is_refused_by_the_functions() {
    let (moto, table, key, groq) = mailmind_tests::deployment().await;
    groq.accept(GROQ_KEY, &["llama-3.1-8b-instant"]).await;
    groq.accept(GROQ_KEY_2, &["llama-3.1-8b-instant"]).await;
    let mut env = moto.function_env(&table, &key);
    env.extend([
        // The default limit (10), in a window no test run outlasts.
        ("VALIDATION_LIMIT_WINDOW_SECONDS".to_owned(), "3600".to_owned()),
        groq.env(),
    ]);
    // Every AWS call of the functions is counted on its way to moto.
    let (proxy, proxy_url) = CountingProxy::start(&moto.endpoint).await;
    let env = through_proxy(env, &proxy_url);
    let sorted = |mut calls: Vec<String>| {
        calls.sort();
        calls
    };
    let create = LambdaProcess::start(&workspace_binary("credentials-create"), &env).await;
    let update = LambdaProcess::start(&workspace_binary("credentials-update"), &env).await;
    let check = LambdaProcess::start(&workspace_binary("credentials-check"), &env).await;

    let create_event = |user: &str| {
        with_body(
            rest_event("credentials-create", user),
            json!({"provider": "groq", "api_key": GROQ_KEY}),
        )
    };
    proxy.take();
    let created = create.invoke(create_event(USER)).await.response();
    assert_eq!(created["statusCode"], 201, "{created}");
    // The first spend opens the window: two conditional updates; the
    // activity history's `set` entry is a PutItem of its own.
    assert_eq!(
        sorted(proxy.take()),
        [
            "GenerateDataKey",
            "PutItem",
            "Query",
            "TransactWriteItems",
            "UpdateItem",
            "UpdateItem"
        ]
    );
    for _ in 2..=10 {
        let checked = check.invoke(rest_event("credentials-check", USER)).await.response();
        assert_eq!(checked["statusCode"], 200, "{checked}");
        // A valid verdict reads the stored list once (the models' first
        // sightings); the `checked` activity entry is a PutItem.
        assert_eq!(
            sorted(proxy.take()),
            [
                "Decrypt",
                "GetItem",
                "PutItem",
                "Query",
                "TransactWriteItems",
                "UpdateItem"
            ]
        );
    }
    let provider_calls = groq.requests().await.len();
    let stored = scan(&table, "CRED#").await;

    let refusals = [
        check.invoke(rest_event("credentials-check", USER)).await.response(),
        update
            .invoke(with_body(
                rest_event("credentials-update", USER),
                json!({"api_key": GROQ_KEY_2}),
            ))
            .await
            .response(),
    ];
    // Each refusal: the existence read and the refused spend, no KMS call, no write.
    assert_eq!(sorted(proxy.take()), ["Query", "Query", "UpdateItem", "UpdateItem"]);
    for refused in refusals {
        let (status, body) = mailmind_tests::http_answer(&refused);
        assert_eq!(status, 429, "{refused}");
        assert_eq!(body["code"], "too_many_requests");
        let retry_after: u64 = refused["headers"]["retry-after"]
            .as_str()
            .expect("a Retry-After header")
            .parse()
            .unwrap();
        assert!((1..=3600).contains(&retry_after), "{retry_after}");
    }
    assert_eq!(groq.requests().await.len(), provider_calls, "no provider request");
    assert_eq!(scan(&table, "CRED#").await, stored, "nothing stored");
    // One budget item for the user, spent to the limit, expiring by TTL.
    let budget = scan(&table, "LIMIT#").await;
    assert_eq!(budget.len(), 1);
    assert_eq!(budget[0]["pk"].as_s().unwrap(), &format!("USER#{USER}"));
    assert_eq!(budget[0]["spent"].as_n().unwrap(), "10");
    assert!(budget[0]["expires_at"].as_n().is_ok());

    // Another user spends from a budget of their own.
    let theirs = create.invoke(create_event(OTHER)).await.response();
    assert_eq!(theirs["statusCode"], 201, "{theirs}");
}

fn connect_event(connection_id: &str, user: &str) -> Value {
    let mut e = event("ws-connect");
    e["requestContext"]["connectionId"] = json!(connection_id);
    let now = chrono::Utc::now().timestamp_millis();
    e["requestContext"]["connectedAt"] = json!(now);
    e["requestContext"]["requestTimeEpoch"] = json!(now);
    e["requestContext"]["authorizer"]["principalId"] = json!(user);
    e["requestContext"]["authorizer"]["sub"] = json!(user);
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_connect_refuses_a_socket_over_the_per_user_cap() {
    let moto = moto();
    let table = moto.create_table().await;
    let mut env = moto.env();
    env.push(("TABLE_NAME".into(), table.clone()));
    env.push(("MAX_CONNECTIONS_PER_USER".into(), "2".into()));
    let connect = LambdaProcess::start(&workspace_binary("ws-connect"), &env).await;

    for id in ["conn-1", "conn-2"] {
        let answer = connect.invoke(connect_event(id, USER)).await.response();
        assert_eq!(answer["statusCode"], 200, "{answer}");
    }
    let refused = connect.invoke(connect_event("conn-3", USER)).await.response();
    let (status, body) = mailmind_tests::http_answer(&refused);
    assert_eq!(status, 429, "{refused}");
    assert_eq!(body["code"], "too_many_connections");
    let ids = |rows: Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>>| {
        let mut ids: Vec<String> = rows.iter().map(|r| r["sk"].as_s().unwrap().clone()).collect();
        ids.sort();
        ids
    };
    assert_eq!(
        ids(scan(&table, "CONN#").await),
        ["CONN#conn-1", "CONN#conn-2"],
        "the open ones stay"
    );
    // Another user is not affected.
    let theirs = connect.invoke(connect_event("conn-4", OTHER)).await.response();
    assert_eq!(theirs["statusCode"], 200, "{theirs}");
}
