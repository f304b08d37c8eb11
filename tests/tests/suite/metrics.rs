//! The EMF metric lines the real function binaries print, as CloudWatch
//! would read them: `credentials-create` and `credentials-resolve` run under
//! the Lambda Runtime API emulator against DynamoDB and KMS on `moto_server`,
//! a fake provider, and a fake WebSocket management endpoint; their stdout is
//! parsed line by line.

use chrono::Utc;
use mailmind::adapters::dynamo_store::DynamoStore;
use mailmind::domain::UserId;
use mailmind::metrics;
use mailmind::ports::{Connection, ConnectionStore};
use mailmind_tests::lambda_emulator::LambdaProcess;
use mailmind_tests::{rest_event, with_body, workspace_binary};
use serde_json::{Value, json};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

const USER: &str = "11111111-2222-3333-4444-555555555555";
const OTHER: &str = "99999999-8888-7777-6666-555555555555";
const GOOD_KEY: &str = "gsk_metrics6789abcdefghijklmnopqrstuvwxyzABCDEFGH9xQa";
const KEY_WHILE_DOWN: &str = "gsk_metricsdown89abcdefghijklmnopqrstuvwxyzABCDzzZZ";
const NAMESPACE: &str = "MailMindTest/metrics";

/// Every stdout line is an EMF document; each is checked against the EMF
/// rules (namespace, every dimension and metric present, units as declared
/// in `metrics::ALL`).
fn emf_documents(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|line| {
            let document: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
            let aws = &document["_aws"];
            assert!(aws["Timestamp"].as_i64().is_some_and(|t| t > 0), "{line}");
            let directives = aws["CloudWatchMetrics"].as_array().expect("CloudWatchMetrics");
            assert!(!directives.is_empty(), "{line}");
            for directive in directives {
                assert_eq!(directive["Namespace"], NAMESPACE, "{line}");
                for set in directive["Dimensions"].as_array().expect("Dimensions") {
                    for key in set.as_array().expect("a dimension set") {
                        assert!(document[key.as_str().unwrap()].is_string(), "{key} missing: {line}");
                    }
                }
                for metric in directive["Metrics"].as_array().expect("Metrics") {
                    let name = metric["Name"].as_str().unwrap();
                    let declared = metrics::ALL
                        .iter()
                        .find(|m| m.name == name)
                        .unwrap_or_else(|| panic!("{name} is not in metrics::ALL"));
                    assert_eq!(metric["Unit"], declared.unit.as_str(), "{line}");
                    assert!(document[name].is_number(), "{name} has no value: {line}");
                }
            }
            document
        })
        .collect()
}

/// The documents that carry `metric`.
fn with_metric<'a>(documents: &'a [Value], metric: &metrics::Metric) -> Vec<&'a Value> {
    documents.iter().filter(|d| d.get(metric.name).is_some()).collect()
}

fn sum(documents: &[Value], metric: &metrics::Metric) -> f64 {
    with_metric(documents, metric)
        .iter()
        .map(|d| d[metric.name].as_f64().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_print_emf_metrics_with_closed_dimensions() {
    let (moto, table, key, groq) = mailmind_tests::deployment().await;
    groq.accept(GOOD_KEY, &["llama-3.3-70b-versatile"]).await;
    groq.answer(KEY_WHILE_DOWN, groq.unavailable_response()).await;
    let management = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex("^/production/@connections/conn-live$"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&management)
        .await;
    Mock::given(method("POST"))
        .and(path_regex("^/production/@connections/conn-gone$"))
        .respond_with(ResponseTemplate::new(410))
        .mount(&management)
        .await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&moto.sdk_config().await), table.clone());
    let now = Utc::now();
    for connection_id in ["conn-live", "conn-gone"] {
        store
            .save_connection(&Connection {
                user: UserId::parse(USER).unwrap(),
                connection_id: connection_id.to_owned(),
                connected_at: now,
                expires_at: now + chrono::Duration::hours(2),
            })
            .await
            .unwrap();
    }
    let mut env = moto.function_env(&table, &key);
    env.extend([
        mailmind_tests::management_env(&management),
        ("METRICS_NAMESPACE".to_owned(), NAMESPACE.to_owned()),
        ("MAILMIND_LOG".to_owned(), "debug".to_owned()),
        groq.env(),
    ]);
    let create = LambdaProcess::start(&workspace_binary("credentials-create"), &env).await;
    let resolve = LambdaProcess::start(&workspace_binary("credentials-resolve"), &env).await;

    for (user, api_key) in [(USER, GOOD_KEY), (OTHER, KEY_WHILE_DOWN)] {
        let event = with_body(
            rest_event("credentials-create", user),
            json!({"provider": "groq", "api_key": api_key}),
        );
        let created = create.invoke(event).await.response();
        assert_eq!(created["statusCode"], 201, "{created}");
    }
    let resolved = resolve
        .invoke(json!({"action": "resolve", "user_id": USER, "provider": "groq"}))
        .await
        .response();
    assert_eq!(resolved["ok"], true, "{resolved}");
    let missing = resolve
        .invoke(json!({"action": "resolve", "user_id": USER, "provider": "openai"}))
        .await
        .response();
    assert_eq!(missing["error"]["code"], "credential_not_found");
    let reported = resolve
        .invoke(json!({"action": "report", "user_id": USER, "provider": "groq",
                       "key_revision": resolved["key_revision"], "outcome": "rate_limited"}))
        .await
        .response();
    assert_eq!(reported["result"], "recorded", "{reported}");

    // credentials-create: one validation line per provider check.
    let created = emf_documents(&create.stdout_with("provider_unavailable").await);
    let validations = with_metric(&created, &metrics::VALIDATIONS);
    assert_eq!(validations.len(), 2, "{created:#?}");
    let dimensions = |d: &Value| {
        (
            d["Provider"].as_str().unwrap().to_owned(),
            d["Outcome"].as_str().unwrap().to_owned(),
            d["Reason"].as_str().unwrap().to_owned(),
        )
    };
    assert_eq!(
        dimensions(validations[0]),
        ("groq".into(), "valid".into(), "none".into())
    );
    assert_eq!(validations[0]["Validations"], 1.0);
    assert_eq!(validations[0]["ProviderUnavailable"], 0.0);
    assert!(validations[0]["ProviderLatency"].as_f64().unwrap() >= 0.0);
    assert_eq!(
        dimensions(validations[1]),
        ("groq".into(), "error".into(), "provider_unavailable".into())
    );
    assert_eq!(validations[1]["ProviderUnavailable"], 1.0);
    assert_eq!(
        validations[1]["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([["Provider", "Outcome", "Reason"], ["Provider"]])
    );
    // USER's two sockets: `checking` reached one and found the other gone
    // (then forgotten), the verdict reached the one left. OTHER has none.
    assert_eq!(sum(&created, &metrics::PUSHES_SENT), 2.0, "{created:#?}");
    assert_eq!(sum(&created, &metrics::CONNECTIONS_GONE), 1.0);
    assert_eq!(sum(&created, &metrics::PUSHES_FAILED), 0.0);

    // credentials-resolve: resolves and reports, by provider and result.
    let resolved_docs = emf_documents(&resolve.stdout_with(metrics::REPORTS.name).await);
    let results: Vec<(&str, &str)> = with_metric(&resolved_docs, &metrics::RESOLVES)
        .iter()
        .map(|d| (d["Provider"].as_str().unwrap(), d["Result"].as_str().unwrap()))
        .collect();
    assert_eq!(results, [("groq", "ok"), ("openai", "credential_not_found")]);
    let reports = with_metric(&resolved_docs, &metrics::REPORTS);
    assert_eq!(reports.len(), 1);
    assert_eq!(
        (&reports[0]["Provider"], &reports[0]["Outcome"], &reports[0]["Result"]),
        (&json!("groq"), &json!("rate_limited"), &json!("recorded"))
    );

    // Nothing but closed-set values: no key, no user, no token.
    let everything = create.stdout() + &resolve.stdout();
    for secret in [GOOD_KEY, KEY_WHILE_DOWN, USER, OTHER, "Bearer"] {
        assert!(!everything.contains(secret), "a metric line carries {secret}");
    }
}
