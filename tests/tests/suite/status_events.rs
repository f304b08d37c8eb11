//! Status change events: the real create, check and resolve functions with
//! `STATUS_EVENTS=eventbridge` against EventBridge on `moto_server`, where a
//! rule on the default bus (the template's `StatusChangedEventPattern`, for
//! this test's user only) sends to an SQS queue: exactly one event per change,
//! none for a check that changes nothing, never the key. And the local
//! server's `--events-file`.

use mailmind_tests::fake_providers::FakeProvider;
use mailmind_tests::lambda_emulator::LambdaProcess;
use mailmind_tests::local_server::LocalServer;
use mailmind_tests::moto::moto;
use mailmind_tests::{rest_event, with_body, workspace_binary};
use serde_json::{Value, json};

const GROQ_KEY: &str = "gsk_events456789abcdefghijklmnopqrstuvwxyzABCDEFGH9xQa";

/// The events the queue received so far, oldest first (by `changed_at`,
/// then arrival), each the event as a rule's target gets it.
async fn drain(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Vec<Value> {
    let mut events = Vec::new();
    loop {
        let answer = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(0)
            .send()
            .await
            .unwrap();
        let messages = answer.messages();
        if messages.is_empty() {
            return events;
        }
        for message in messages {
            events.push(serde_json::from_str(message.body().unwrap()).unwrap());
            sqs.delete_message()
                .queue_url(queue_url)
                .receipt_handle(message.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
}

/// The body of a REST function's answer to `event`.
async fn rest(process: &LambdaProcess, event: Value) -> Value {
    let answer = process.invoke(event).await.response();
    serde_json::from_str(answer["body"].as_str().unwrap()).unwrap()
}

fn change(event: &Value) -> (Value, Value, Value, Value) {
    let detail = &event["detail"];
    (
        detail["old_status"].clone(),
        detail["new_status"].clone(),
        detail["reason"].clone(),
        detail["cause"].clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_status_change_reaches_a_rule_once_and_nothing_else_does() {
    let moto = moto();
    let config = moto.sdk_config().await;
    let user = format!("events-{}", mailmind::ids::random_hex(6));
    let sqs = aws_sdk_sqs::Client::new(&config);
    let queue_url = sqs
        .create_queue()
        .queue_name(format!("status-{user}"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    // The template's pattern, narrowed to this test's user (other tests share the bus).
    let mut pattern: Value = serde_json::from_str(&mailmind::deploy::template::status_event_pattern()).unwrap();
    pattern["detail"] = json!({"user_id": [user]});
    let events = aws_sdk_eventbridge::Client::new(&config);
    events
        .put_rule()
        .name(format!("status-{user}"))
        .event_pattern(pattern.to_string())
        .send()
        .await
        .unwrap();
    events
        .put_targets()
        .rule(format!("status-{user}"))
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("queue")
                .arn(queue_arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    let groq = FakeProvider::start("groq").await;
    groq.accept(GROQ_KEY, &["llama-3.3-70b-versatile"]).await;
    let (table, key) = (moto.create_table().await, moto.create_kms_key().await);
    let mut env = moto.function_env(&table, &key);
    env.extend([("STATUS_EVENTS".to_owned(), "eventbridge".to_owned()), groq.env()]);
    let create = LambdaProcess::start(&workspace_binary("credentials-create"), &env).await;
    let check = LambdaProcess::start(&workspace_binary("credentials-check"), &env).await;
    let resolve = LambdaProcess::start(&workspace_binary("credentials-resolve"), &env).await;

    // A new key: one event, from nothing to valid, by the user.
    let created = rest(
        &create,
        with_body(
            rest_event("credentials-create", &user),
            json!({"provider": "groq", "api_key": GROQ_KEY}),
        ),
    )
    .await;
    assert_eq!(created["status"], "valid", "{created}");
    let first = drain(&sqs, &queue_url).await;
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0]["source"], "mailmind.credentials");
    assert_eq!(first[0]["detail-type"], "Credential Status Changed");
    assert_eq!(first[0]["detail"]["user_id"], user.as_str());
    assert_eq!(first[0]["detail"]["provider"], "groq");
    assert!(first[0]["detail"]["changed_at"].is_string());
    assert_eq!(
        change(&first[0]),
        (Value::Null, json!("valid"), Value::Null, json!("user"))
    );

    // A check that finds the same: nothing.
    assert_eq!(
        rest(&check, rest_event("credentials-check", &user)).await["status"],
        "valid"
    );
    assert_eq!(drain(&sqs, &queue_url).await, Vec::<Value>::new());

    // What a consumer holds (the key's revision), before the provider refuses it.
    let revision = resolve
        .invoke(json!({"action": "resolve", "user_id": user, "provider": "groq"}))
        .await
        .response()["key_revision"]
        .clone();
    // The provider now refuses the key: valid to invalid.
    groq.answer(GROQ_KEY, groq.invalid_key_response()).await;
    assert_eq!(
        rest(&check, rest_event("credentials-check", &user)).await["status"],
        "invalid"
    );
    // A report that the key is out of credit: invalid to error, by the report.
    let reported = resolve
        .invoke(json!({"action": "report", "user_id": user, "provider": "groq",
                       "key_revision": revision, "outcome": "quota_exhausted"}))
        .await
        .response();
    assert_eq!(reported["result"], "recorded", "{reported}");
    let later = drain(&sqs, &queue_url).await;
    let mut changes: Vec<_> = later.iter().map(change).collect();
    changes.sort_by_key(|(old, ..)| old.to_string());
    assert_eq!(
        changes,
        [
            (
                json!("invalid"),
                json!("error"),
                json!("quota_exhausted"),
                json!("report")
            ),
            (json!("valid"), json!("invalid"), Value::Null, json!("user")),
        ]
    );
    for event in first.iter().chain(&later) {
        assert!(!event.to_string().contains(GROQ_KEY), "{event}");
    }
    let logs = create.logs() + &check.logs() + &resolve.logs();
    assert!(logs.contains("status change published"), "{logs}");
    assert!(!logs.contains("not published"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_server_appends_each_change_to_its_events_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    let groq = FakeProvider::start("groq").await;
    groq.accept(GROQ_KEY, &["llama-3.3-70b-versatile"]).await;
    let server = LocalServer::start_with_args(
        &dir.path().join("data"),
        &[groq.env()],
        &["--events-file", file.to_str().unwrap()],
    )
    .await;
    assert_eq!(server.post_key("alice", "groq", GROQ_KEY).await.status, 201);
    let check = "/api/v1/credentials/groq/check/";
    assert_eq!(
        server.call_as("alice", "POST", check, None).await.json["status"],
        "valid"
    );
    groq.answer(GROQ_KEY, groq.invalid_key_response()).await;
    assert_eq!(
        server.call_as("alice", "POST", check, None).await.json["status"],
        "invalid"
    );

    let text = std::fs::read_to_string(&file).unwrap();
    let events: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(
        events.iter().map(change).collect::<Vec<_>>(),
        [
            (Value::Null, json!("valid"), Value::Null, json!("user")),
            (json!("valid"), json!("invalid"), Value::Null, json!("user")),
        ]
    );
    assert!(events.iter().all(|e| e["detail"]["user_id"] == "alice"));
    assert!(!text.contains(GROQ_KEY));
}
