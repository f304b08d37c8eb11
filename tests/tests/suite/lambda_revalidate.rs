//! `credentials-revalidate` as real processes under the Lambda Runtime API
//! emulator, against DynamoDB (table and due index built from template.yaml)
//! and KMS on `moto_server` behind the counting proxy, and a fake provider
//! that counts the checks per key.

use std::sync::Arc;

use chrono::{Duration, Utc};
use mailmind::adapters::dynamo_store::DynamoStore;
use mailmind::adapters::kms_keyring::KmsKeyring;
use mailmind::domain::{ApiKey, CheckState, CredentialStatus, StoredCredential, UserId, provider};
use mailmind::ports::{CredentialStore, EncryptionContext};
use mailmind_tests::aws_proxy::{CountingProxy, through_proxy};
use mailmind_tests::fake_providers::FakeProvider;
use mailmind_tests::lambda_emulator::LambdaProcess;
use mailmind_tests::moto::moto;
use mailmind_tests::workspace_binary;

/// Verdicts this old are due (REVALIDATE_AFTER=1h).
const STALE: Duration = Duration::hours(3);

fn key(n: usize) -> String {
    format!("gsk_revalidate{n:02}abcdefghijklmnopqrstuvwxyzABCDEFGHIJ9xQa")
}

/// How many checks the fake provider got with `key`.
async fn checks_with(groq: &FakeProvider, key: &str) -> usize {
    let bearer = format!("Bearer {key}");
    groq.requests()
        .await
        .iter()
        .filter(|r| r.headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(bearer.as_str()))
        .filter(|r| r.url.path().contains("models"))
        .count()
}

/// Stores `key` for `user` as checked `age` ago, sealed with the real KMS keyring.
async fn seed(store: &DynamoStore, keyring: &KmsKeyring, user: &str, key: &str, age: Duration) {
    let spec = provider::find("groq").unwrap();
    let user = UserId::parse(user).unwrap();
    let api_key = ApiKey::parse(key).unwrap();
    let sealed = mailmind::envelope::seal(keyring, &EncryptionContext::new(&user, spec), &api_key)
        .await
        .unwrap();
    let checked = Utc::now() - age;
    let credential = StoredCredential {
        user_id: user,
        provider: spec,
        sealed,
        key: mailmind::domain::named_key::KeyMeta::default_key(),
        key_hint: api_key.hint(spec),
        endpoint: None,
        check: CheckState {
            status: CredentialStatus::Valid,
            reason: None,
            retry_after_secs: None,
            checked_at: Some(checked),
            quota: None,
        },
        models_count: 1,
        revision: mailmind::ids::random_hex(16),
        created_at: checked,
        updated_at: checked,
        last_used_at: None,
        consumer_uses: Default::default(),
        last_recheck_at: None,
        last_attempt: None,
        cooling_until: None,
        previous: None,
    };
    store.insert(&credential, &[]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_overlapping_runs_check_each_due_credential_once_and_nothing_else_without_a_scan() {
    let moto = moto();
    let table = moto.create_table().await;
    let kms_key = moto.create_kms_key().await;
    let config = moto.sdk_config().await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&config), table.clone());
    let keyring = KmsKeyring::new(aws_sdk_kms::Client::new(&config), kms_key.clone());
    let groq = Arc::new(FakeProvider::start("groq").await);

    // Six credentials checked hours ago (due), four minutes ago (not due).
    let due: Vec<usize> = (0..6).collect();
    let fresh: Vec<usize> = (6..10).collect();
    for n in due.iter().chain(&fresh) {
        groq.accept(&key(*n), &["llama-3.1-8b-instant", "gemma2-9b-it"]).await;
        let age = if due.contains(n) { STALE } else { Duration::minutes(5) };
        seed(&store, &keyring, &format!("user-{n}"), &key(*n), age).await;
    }
    // One due key the provider now refuses: its verdict turns invalid.
    groq.answer(&key(0), groq.invalid_key_response()).await;

    let (proxy, proxy_url) = CountingProxy::start(&moto.endpoint).await;
    let mut env = through_proxy(moto.env(), &proxy_url);
    env.extend([
        ("TABLE_NAME".to_owned(), table),
        ("KMS_KEY_ID".to_owned(), kms_key),
        ("REVALIDATE_AFTER".to_owned(), "1h".to_owned()),
        ("REVALIDATE_CONCURRENCY".to_owned(), "2".to_owned()),
        groq.env(),
    ]);
    let binary = workspace_binary("credentials-revalidate");
    let (first, second) = tokio::join!(LambdaProcess::start(&binary, &env), LambdaProcess::start(&binary, &env));
    proxy.take();
    let event = mailmind_tests::event("credentials-revalidate");
    let (a, b) = tokio::join!(first.invoke(event.clone()), second.invoke(event));
    let (a, b) = (a.response(), b.response());

    let total = |field: &str| a[field].as_u64().unwrap() + b[field].as_u64().unwrap();
    assert_eq!(total("checked"), 6, "{a} {b}\n{}\n{}", first.logs(), second.logs());
    assert_eq!(total("failed"), 0, "{a} {b}");
    for n in &due {
        assert_eq!(checks_with(&groq, &key(*n)).await, 1, "due key {n}");
    }
    for n in &fresh {
        assert_eq!(checks_with(&groq, &key(*n)).await, 0, "fresh key {n}");
    }
    let calls = proxy.take();
    assert!(!calls.iter().any(|c| c == "Scan"), "{calls:?}");
    assert!(calls.iter().any(|c| c == "Query"), "{calls:?}");

    // The verdicts are stored as a user's check stores them.
    let revoked = mailmind_tests::store_contract::first_stored(&store, "user-0", "groq")
        .await
        .unwrap();
    assert_eq!(revoked.check.status, CredentialStatus::Invalid);
    assert_eq!(revoked.models_count, 0);
    let renewed = mailmind_tests::store_contract::first_stored(&store, "user-1", "groq")
        .await
        .unwrap();
    assert_eq!(renewed.check.status, CredentialStatus::Valid);
    assert!(renewed.check.checked_at.unwrap() > Utc::now() - Duration::minutes(10));
    assert_eq!(renewed.models_count, 2);

    // Nothing is due any more: a third run checks nothing.
    let again = first
        .invoke(mailmind_tests::event("credentials-revalidate"))
        .await
        .response();
    assert_eq!(again["checked"], 0, "{again}");
    assert_eq!(checks_with(&groq, &key(1)).await, 1);
}
