//! The DynamoDB store: the same store contract as SQLite, on `moto_server`,
//! plus the faults a real table can have.

use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use mailmind::adapters::dynamo_store::DynamoStore;
use mailmind::ports::{CredentialStore, KeyAt, Replacement, StoreError};
use mailmind_tests::aws_proxy::CountingProxy;
use mailmind_tests::moto::moto;
use mailmind_tests::store_contract::{
    credential, groq, incompressible_models_at_the_cap, long_id_models, models, user,
};
use mailmind_tests::store_contract_tests;

async fn dynamo_store() -> (Arc<DynamoStore>, ()) {
    let moto = moto();
    let table = moto.create_table().await;
    let client = aws_sdk_dynamodb::Client::new(&moto.sdk_config().await);
    (Arc::new(DynamoStore::new(client, table)), ())
}

store_contract_tests!(dynamo_store());

/// A store over a fresh table, with the client and table name to read its items directly.
async fn fresh_store() -> (DynamoStore, aws_sdk_dynamodb::Client, String) {
    let moto = moto();
    let table = moto.create_table().await;
    let client = aws_sdk_dynamodb::Client::new(&moto.sdk_config().await);
    (DynamoStore::new(client.clone(), table.clone()), client, table)
}

#[tokio::test]
async fn items_follow_the_single_table_layout() {
    let (store, client, table) = fresh_store().await;
    store
        .insert(&credential("user-a", "groq", "r1"), &models(&["a", "b"]))
        .await
        .unwrap();
    let scan = client.scan().table_name(&table).send().await.unwrap();
    let mut keys: Vec<(String, String)> = scan
        .items()
        .iter()
        .map(|item| (item["pk"].as_s().unwrap().clone(), item["sk"].as_s().unwrap().clone()))
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            ("USER#user-a".to_owned(), "CRED#groq".to_owned()),
            ("USER#user-a".to_owned(), "MODELS#groq".to_owned())
        ]
    );
    let credential = scan
        .items()
        .iter()
        .find(|i| i["sk"].as_s().unwrap() == "CRED#groq")
        .unwrap();
    // Binary attributes hold the sealed key; the hint is the only readable part.
    assert!(credential["ciphertext"].as_b().is_ok());
    assert!(credential["wrapped_data_key"].as_b().is_ok());
    assert_eq!(credential["key_hint"].as_s().unwrap(), "gsk_…9xQa");
}

/// Another key of a provider lives beside the first under its own sort
/// keys; an item written before keys had ids (no key attributes) reads as
/// the first key, `default`, without a backfill.
#[tokio::test]
async fn another_key_has_its_own_items_and_an_old_item_is_the_default_key() {
    let (store, client, table) = fresh_store().await;
    let first = credential("user-a", "groq", "r1");
    let backup = mailmind_tests::store_contract::another_key("user-a", "groq", "r2", "backup", 1);
    store.insert(&first, &models(&["a"])).await.unwrap();
    store.insert(&backup, &models(&["b"])).await.unwrap();
    let mut keys = sort_keys(&client, &table).await;
    keys.sort();
    let id = backup.key.id.as_str();
    assert_eq!(
        keys,
        [
            "CRED#groq".to_owned(),
            format!("CRED#groq#{id}"),
            "MODELS#groq".to_owned(),
            format!("MODELS#groq#{id}"),
        ]
    );
    // As a build before several keys per provider wrote it.
    client
        .update_item()
        .table_name(&table)
        .key("pk", AttributeValue::S("USER#user-a".into()))
        .key("sk", AttributeValue::S("CRED#groq".into()))
        .update_expression("REMOVE key_ref, key_name, priority, enabled")
        .send()
        .await
        .unwrap();
    assert_eq!(store.keys(&user("user-a"), groq()).await.unwrap(), [first, backup]);
}

/// An item of a provider this build does not know (written by a newer
/// build, before a rollback) is left out of the list instead of failing it.
#[tokio::test]
async fn a_credential_of_an_unknown_provider_is_left_out_of_the_list() {
    let (store, client, table) = fresh_store().await;
    let c = credential("user-a", "groq", "r1");
    store.insert(&c, &models(&["a"])).await.unwrap();
    let mut retired = client
        .get_item()
        .table_name(&table)
        .key("pk", AttributeValue::S("USER#user-a".into()))
        .key("sk", AttributeValue::S("CRED#groq".into()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    retired.insert("sk".into(), AttributeValue::S("CRED#retired".into()));
    retired.insert("provider".into(), AttributeValue::S("retired".into()));
    client
        .put_item()
        .table_name(&table)
        .set_item(Some(retired))
        .send()
        .await
        .unwrap();
    assert_eq!(store.list(&user("user-a")).await.unwrap(), [c]);
}

#[tokio::test]
async fn a_missing_table_is_an_internal_error() {
    let moto = moto();
    let client = aws_sdk_dynamodb::Client::new(&moto.sdk_config().await);
    let store = DynamoStore::new(client, "no-such-table");
    let (u, key) = (user("user-a"), mailmind_tests::store_contract::first_key());
    assert!(matches!(
        store.get(KeyAt::new(&u, groq(), &key)).await,
        Err(StoreError::Internal(_))
    ));
}

#[tokio::test]
async fn an_unreachable_dynamodb_is_unavailable() {
    let config = mailmind_tests::moto::unreachable_sdk_config().await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&config), "t");
    let (u, key) = (user("user-a"), mailmind_tests::store_contract::first_key());
    assert!(matches!(
        store.get(KeyAt::new(&u, groq(), &key)).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        store.insert(&credential("user-a", "groq", "r1"), &[]).await,
        Err(StoreError::Unavailable(_))
    ));
}

/// The items under the user's partition, by sort key.
async fn sort_keys(client: &aws_sdk_dynamodb::Client, table: &str) -> Vec<String> {
    let scan = client.scan().table_name(table).send().await.unwrap();
    let mut keys: Vec<String> = scan.items().iter().map(|i| i["sk"].as_s().unwrap().clone()).collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn a_large_list_is_chunked_and_a_shorter_one_leaves_no_chunk_behind() {
    let (store, client, table) = fresh_store().await;
    let huge = incompressible_models_at_the_cap();
    store.insert(&credential("user-a", "groq", "r1"), &huge).await.unwrap();
    let keys = sort_keys(&client, &table).await;
    assert!(keys.len() > 3, "the list takes several items: {keys:?}");
    assert!(keys.iter().all(|k| k == "CRED#groq" || k.starts_with("MODELS#groq")));
    store
        .replace(Replacement::of(&credential("user-a", "groq", "r2"), &models(&["a"])))
        .await
        .unwrap();
    assert_eq!(sort_keys(&client, &table).await, ["CRED#groq", "MODELS#groq"]);
    store
        .replace(Replacement::of(&credential("user-a", "groq", "r3"), &huge))
        .await
        .unwrap();
    store.delete(&user("user-a"), groq()).await.unwrap();
    assert_eq!(sort_keys(&client, &table).await, Vec::<String>::new());
}

#[tokio::test]
async fn an_ordinary_large_catalogue_is_one_item_read_with_one_request() {
    let moto = moto();
    let table = moto.create_table().await;
    let (proxy, url) = CountingProxy::start(&moto.endpoint).await;
    let config = moto.sdk_config().await.into_builder().endpoint_url(url).build();
    let client = aws_sdk_dynamodb::Client::new(&config);
    let store = DynamoStore::new(client.clone(), table.clone());
    let large = long_id_models(1800);
    store.insert(&credential("user-a", "groq", "r1"), &large).await.unwrap();
    assert_eq!(sort_keys(&client, &table).await, ["CRED#groq", "MODELS#groq"]);
    proxy.take();
    let list = mailmind_tests::store_contract::first_models(&store, "user-a", "groq")
        .await
        .unwrap();
    assert_eq!(list.models, large);
    assert_eq!(proxy.take(), ["GetItem"]);
}

/// An activity entry is one item in the user's partition, `ACTIVITY#<provider>#<time>#<id>`,
/// with the table's TTL attribute `expires_at` at its time + 90 days (epoch seconds).
#[tokio::test]
async fn activity_items_carry_the_ttl_of_ninety_days() {
    use mailmind::domain::activity::{ActivityEntry, ActivityEvent};
    use mailmind::ports::ActivityStore;

    let (store, client, table) = fresh_store().await;
    let now = chrono::Utc::now();
    let entry = ActivityEntry::new(now, ActivityEvent::Deleted);
    store.append(&user("user-a"), groq(), &entry).await.unwrap();
    let scan = client.scan().table_name(&table).send().await.unwrap();
    let [item] = scan.items() else {
        panic!("one item: {:?}", scan.items())
    };
    assert_eq!(item["pk"].as_s().unwrap(), "USER#user-a");
    let sk = item["sk"].as_s().unwrap();
    assert_eq!(sk, &format!("ACTIVITY#groq#{}", entry.position().0));
    let expires: i64 = item["expires_at"].as_n().unwrap().parse().unwrap();
    assert_eq!(expires, (entry.at + chrono::Duration::days(90)).timestamp());
    assert!((expires - now.timestamp() - 90 * 86_400).abs() <= 1);
    assert_eq!(item["detail"].as_s().unwrap(), r#"{"event":"deleted"}"#);
}

/// What a resolve costs on DynamoDB, counted at the wire: a consumer's first
/// use in the hour is the one `GetItem` and one `TransactWriteItems`
/// (credential update + `used` item); every later resolve of that consumer
/// in the hour is the `GetItem` alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steady_state_resolve_is_one_read_and_no_write() {
    use mailmind::adapters::local_keyring::LocalKeyring;
    use mailmind::adapters::notifier::NoNotifier;
    use mailmind::domain::ApiKey;
    use mailmind::domain::activity::Consumer;
    use mailmind::service::CredentialService;

    let moto = moto();
    let table = moto.create_table().await;
    let (proxy, url) = CountingProxy::start(&moto.endpoint).await;
    let config = moto.sdk_config().await.into_builder().endpoint_url(url).build();
    let store = Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(&config), table));
    let service = CredentialService::new(
        Arc::clone(&store) as _,
        Arc::new(LocalKeyring::from_master(zeroize::Zeroizing::new([7u8; 32]))),
        Arc::new(mailmind_tests::fake_providers::AcceptsAll::default()),
        Arc::new(NoNotifier),
    )
    .with_activity(Arc::clone(&store) as _);
    let u = user("user-a");
    let key = ApiKey::parse("gsk_service0123456789abcdefghijklmnopqrstuvwxyzAB9xQa").unwrap();
    service.create(&u, groq(), key.into()).await.unwrap();
    proxy.take();
    let digest = Consumer::parse("digest").unwrap();
    service.resolve(&u, groq(), &digest).await.unwrap();
    assert_eq!(proxy.take(), ["Query", "TransactWriteItems"]);
    for _ in 0..3 {
        service.resolve(&u, groq(), &digest).await.unwrap();
        assert_eq!(proxy.take(), ["Query"]);
    }
}
