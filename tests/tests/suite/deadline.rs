//! One deadline per request: however its dependencies stall, a
//! validating request answers inside the function timeout, and never leaves
//! a key stored behind a gateway error (whose retry would be a `409`).
//! The real `credentials-create` binary under the Lambda Runtime API
//! emulator (which, like Lambda, turns an answer after the function timeout
//! into `Sandbox.Timedout`), DynamoDB and KMS on `moto_server` behind the
//! fault proxy, and a fake provider.

use std::sync::Arc;
use std::time::Duration;

use mailmind::adapters::local_keyring::LocalKeyring;
use mailmind::adapters::notifier::ApiGatewayNotifier;
use mailmind::adapters::providers::{HttpProviderClient, ProviderClientConfig};
use mailmind::adapters::sqlite_store::SqliteStore;
use mailmind::deadline::{self, Budgets, DEADLINE_ENV};
use mailmind::domain::{ApiKey, CredentialStatus, UserId, provider};
use mailmind::ports::{Connection, ConnectionStore, CredentialStore, KeyAt};
use mailmind::service::{CredentialService, ServiceError};
use mailmind_tests::aws_proxy::{CountingProxy, through_proxy};
use mailmind_tests::fake_providers::FakeProvider;
use mailmind_tests::lambda_emulator::LambdaProcess;
use mailmind_tests::moto::moto;
use mailmind_tests::{rest_event, with_body, workspace_binary};
use serde_json::{Value, json};
use zeroize::Zeroizing;

const KEY: &str = "gsk_deadline23456789abcdefghijklmnopqrstuvwxyzABCDEFdl9x";
const USER: &str = "d0000000-1111-2222-3333-444444444444";

fn create_event() -> Value {
    with_body(
        rest_event("credentials-create", USER),
        json!({"provider": "groq", "api_key": KEY}),
    )
}

/// `credentials-create` as a process with `request_deadline_ms` (if any),
/// behind the fault proxy, with groq's fake provider stalling on [`KEY`]
/// past every budget of its own (10 s by default), and a function timeout
/// of `function_timeout`.
async fn stalled_deployment(
    request_deadline_ms: Option<&str>,
    function_timeout: Duration,
) -> (LambdaProcess, CountingProxy, FakeProvider) {
    let moto = moto();
    let table = moto.create_table().await;
    let kms_key = moto.create_kms_key().await;
    let (proxy, proxy_url) = CountingProxy::start(&moto.endpoint).await;
    let groq = FakeProvider::start("groq").await;
    groq.answer(
        KEY,
        groq.slow_response(&["llama-3.1-8b-instant"], Duration::from_secs(60)),
    )
    .await;
    let mut env = through_proxy(moto.env(), &proxy_url);
    env.extend([
        ("TABLE_NAME".to_owned(), table),
        ("KMS_KEY_ID".to_owned(), kms_key),
        groq.env(),
    ]);
    if let Some(ms) = request_deadline_ms {
        env.push((DEADLINE_ENV.to_owned(), ms.to_owned()));
    }
    let create = LambdaProcess::start(&workspace_binary("credentials-create"), &env).await;
    create.api.set_function_timeout(function_timeout);
    (create, proxy, groq)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_provider_and_a_hung_write_answer_503_in_time_and_store_nothing() {
    // A short request deadline keeps the test quick; the function timeout
    // is well past it, as 29 s is past the default 25 s.
    let (create, proxy, groq) = stalled_deployment(Some("4000"), Duration::from_secs(9)).await;

    // Only the request's deadline can end the provider's check; and then
    // DynamoDB hangs on the write: it never reaches the table.
    proxy.stall("TransactWriteItems");
    let outcome = create.invoke(create_event()).await;
    let (status, body) = mailmind_tests::http_answer(&outcome.response());
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "service_unavailable", "{body}");
    assert!(
        proxy.take().iter().any(|op| op == "TransactWriteItems"),
        "the write was tried (and hung)"
    );

    // The client retries once things are well: the key was not stored, so
    // this is a create, not a `409`.
    proxy.unstall();
    groq.server.reset().await;
    groq.accept(KEY, &["llama-3.1-8b-instant"]).await;
    let (status, body) = mailmind_tests::http_answer(&create.invoke(create_event()).await.response());
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "valid", "{body}");
    assert_eq!(body["models_count"], 1, "{body}");
}

/// A function timeout shorter than the configured request: Lambda's own
/// deadline for the invocation (less 2 s) cuts the request, so the answer
/// still comes in time, and a write that could not finish is not started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_function_timeout_bounds_the_request_too() {
    let (create, proxy, _groq) = stalled_deployment(Some("29000"), Duration::from_secs(12)).await;
    let (status, body) = mailmind_tests::http_answer(&create.invoke(create_event()).await.response());
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "service_unavailable", "{body}");
    assert!(
        !proxy.take().iter().any(|op| op == "TransactWriteItems"),
        "no write started"
    );
}

/// The guard itself, over the service with real parts: a step with a bound
/// of its own (the `checking` push to a hung socket endpoint: 1.5 s,
/// `notifier.rs`) eats what a short request had reserved for the write, so
/// the write is not started: `503`-class `Unavailable`, nothing stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_write_starts_once_it_could_outlast_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("mailmind.db")).unwrap());
    let user = UserId::parse("user-deadline").unwrap();
    let groq = provider::find("groq").unwrap();

    // The user's one socket lives behind an endpoint that takes the
    // connection (the kernel's backlog) and never answers.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", hung.local_addr().unwrap());
    let now = chrono::Utc::now();
    store
        .save_connection(&Connection {
            user: user.clone(),
            connection_id: "conn-hung".into(),
            connected_at: now,
            expires_at: now + chrono::Duration::hours(1),
        })
        .await
        .unwrap();
    let notifier = ApiGatewayNotifier::new(
        ApiGatewayNotifier::local_client(&endpoint, "AKIALOCALTEST0000000", "unused-secret"),
        Arc::clone(&store) as _,
    );

    let fake = FakeProvider::start("groq").await;
    fake.accept(KEY, &["llama-3.1-8b-instant"]).await;
    let (var, url) = fake.env();
    let config = ProviderClientConfig::from_lookup(mailmind::adapters::providers::PlainHttp::Allowed, |name| {
        (name == var).then(|| url.clone())
    })
    .unwrap();
    let service = CredentialService::new(
        Arc::clone(&store) as _,
        Arc::new(LocalKeyring::from_master(Zeroizing::new([9u8; 32]))),
        Arc::new(HttpProviderClient::new(config)),
        Arc::new(notifier),
    );

    // 2 s in all: the write's reserve (750 ms) is gone once the push has
    // taken its 1.5 s.
    let short = Budgets::new(Duration::from_secs(2));
    let refused = deadline::scope(short, service.create(&user, groq, ApiKey::parse(KEY).unwrap().into())).await;
    assert!(matches!(refused, Err(ServiceError::Unavailable(_))), "{refused:?}");
    assert!(
        store
            .get(KeyAt::new(&user, groq, &mailmind_tests::store_contract::first_key()))
            .await
            .unwrap()
            .is_none(),
        "nothing stored"
    );

    // The retry, with time to spare: a create, not a conflict.
    let roomy = Budgets::new(Duration::from_secs(10));
    let created = deadline::scope(roomy, service.create(&user, groq, ApiKey::parse(KEY).unwrap().into()))
        .await
        .expect("the retry creates the key");
    assert_eq!(created.status, CredentialStatus::Valid);
    drop(hung);
}
