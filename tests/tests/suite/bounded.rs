//! Bounded work: large catalogues stored whole on both stores and
//! through both deployments, provider answers capped in size.

use std::time::Duration;

use mailmind::adapters::providers::{HttpProviderClient, MAX_BODY_BYTES, ProviderClientConfig};
use mailmind::domain::{ApiKey, CheckOutcome, ErrorReason};
use mailmind::ports::ProviderClient;
use mailmind_tests::fake_providers::FakeProvider;
use mailmind_tests::lambda_emulator::LambdaProcess;
use mailmind_tests::local_server::LocalServer;
use mailmind_tests::{rest_event as event, workspace_binary};
use serde_json::{Value, json};
use wiremock::ResponseTemplate;

const GROQ_KEY: &str = "gsk_bounded0123456789abcdefghijklmnopqrstuvwxyzABCDEF9xQa";

fn refs(ids: &[String]) -> Vec<&str> {
    ids.iter().map(String::as_str).collect()
}

fn ids_of(models: &Value) -> Vec<String> {
    models
        .as_array()
        .expect("a list of models")
        .iter()
        .map(|m| m["model_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_catalogue_is_created_and_listed_whole_on_the_local_server() {
    let groq = FakeProvider::start("groq").await;
    let ids = mailmind_tests::fake_providers::large_catalogue();
    groq.accept(GROQ_KEY, &refs(&ids)).await;
    let dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start(&dir.path().join("data"), &[groq.env()]).await;
    let created = server.post_key("user-a", "groq", GROQ_KEY).await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.json["models_count"], 1800);
    let models = server
        .call_as("user-a", "GET", "/api/v1/credentials/groq/models/", None)
        .await;
    assert_eq!(models.status, 200);
    assert_eq!(ids_of(&models.json), ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_catalogue_is_created_and_listed_whole_by_the_lambda_functions() {
    let (moto, table, key, groq) = mailmind_tests::deployment().await;
    let ids = mailmind_tests::fake_providers::large_catalogue();
    groq.accept(GROQ_KEY, &refs(&ids)).await;
    let mut env = moto.function_env(&table, &key);
    env.extend([groq.env()]);
    let user = "11111111-2222-3333-4444-555555555555";
    let create = LambdaProcess::start(&workspace_binary("credentials-create"), &env).await;
    mailmind_tests::create_groq_key(&create, user, GROQ_KEY).await;
    let list = LambdaProcess::start(&workspace_binary("models-list"), &env).await;
    let response = list.invoke(event("models-list", user)).await.response();
    assert_eq!(response["statusCode"], 200, "{response}");
    let models: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    assert_eq!(ids_of(&models), ids);
}

/// A well-formed Groq model page of about `bytes` bytes (long descriptions).
fn page_of_size(bytes: usize) -> String {
    let entry = |i: usize| {
        json!({"id": format!("model-{i}"), "object": "model", "owned_by": "x", "active": true,
               "description": "d".repeat(4000)})
        .to_string()
    };
    let per_entry = entry(0).len() + 1;
    let entries: Vec<String> = (0..bytes / per_entry + 1).map(entry).collect();
    format!(r#"{{"object":"list","data":[{}]}}"#, entries.join(","))
}

async fn check_with_page(bytes: usize) -> CheckOutcome {
    let groq = FakeProvider::start("groq").await;
    groq.answer(
        GROQ_KEY,
        ResponseTemplate::new(200).set_body_raw(page_of_size(bytes), "application/json"),
    )
    .await;
    let mut config = ProviderClientConfig::default();
    config.base_urls.insert("groq", groq.base_url());
    config.check_timeout = Duration::from_secs(30);
    HttpProviderClient::new(config)
        .check(
            mailmind::domain::provider::find("groq").unwrap(),
            None,
            &ApiKey::parse(GROQ_KEY).unwrap(),
        )
        .await
}

#[tokio::test]
async fn an_answer_over_the_page_cap_is_a_bad_response() {
    // Just over the cap (and well under the 16 MiB read before).
    let outcome = check_with_page(MAX_BODY_BYTES + 1024 * 1024).await;
    assert_eq!(
        outcome,
        CheckOutcome::Failed {
            reason: ErrorReason::BadResponse,
            retry_after_secs: None
        }
    );
    // Under the cap, the same page is a model list.
    match check_with_page(MAX_BODY_BYTES - 256 * 1024).await {
        CheckOutcome::Valid { models } => assert!(models.len() > 900, "{}", models.len()),
        other => panic!("expected valid, got {other:?}"),
    }
}

#[tokio::test]
async fn a_twenty_mib_answer_is_a_bad_response() {
    assert_eq!(
        check_with_page(20 * 1024 * 1024).await,
        CheckOutcome::Failed {
            reason: ErrorReason::BadResponse,
            retry_after_secs: None
        }
    );
}

#[tokio::test]
async fn a_page_of_millions_of_entries_is_a_bad_response() {
    let page = mailmind_tests::fake_providers::page_of_zeros();
    assert!(page.len() < MAX_BODY_BYTES, "under the byte cap: {}", page.len());
    let groq = FakeProvider::start("groq").await;
    groq.answer(
        GROQ_KEY,
        ResponseTemplate::new(200).set_body_raw(page, "application/json"),
    )
    .await;
    let mut config = ProviderClientConfig::default();
    config.base_urls.insert("groq", groq.base_url());
    config.check_timeout = Duration::from_secs(30);
    let outcome = HttpProviderClient::new(config)
        .check(
            mailmind::domain::provider::find("groq").unwrap(),
            None,
            &ApiKey::parse(GROQ_KEY).unwrap(),
        )
        .await;
    assert_eq!(
        outcome,
        CheckOutcome::Failed {
            reason: ErrorReason::BadResponse,
            retry_after_secs: None
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_refuses_to_start_with_a_plain_http_provider_override() {
    let groq = FakeProvider::start("groq").await;
    let (var, url) = groq.env();
    // Without the tests' loopback switch, as the template deploys it.
    let env = [
        (var.clone(), url.clone()),
        (
            mailmind::adapters::providers::ALLOW_LOOPBACK_HTTP.to_owned(),
            String::new(),
        ),
        ("TABLE_NAME".to_owned(), "t".to_owned()),
        ("KMS_KEY_ID".to_owned(), "k".to_owned()),
        ("AWS_REGION".to_owned(), "us-east-1".to_owned()),
    ];
    let mut process = LambdaProcess::start(&workspace_binary("credentials-check"), &env).await;
    let (status, logs) = process
        .exit(Duration::from_secs(10))
        .await
        .expect("credentials-check must stop with an http:// override");
    assert!(!status.success());
    assert!(
        logs.contains(&format!("{var} must be an https:// URL (got {url}")),
        "{logs}"
    );
}
