//! The DynamoDB store: the same store contract as SQLite, on `moto_server`,
//! plus the faults a real table can have.

use std::sync::Arc;

use mailmind::adapters::dynamo_store::DynamoStore;
use mailmind::ports::{CredentialStore, StoreError};
use mailmind_tests::moto::moto;
use mailmind_tests::store_contract::{credential, models, user};
use mailmind_tests::store_contract_tests;

async fn dynamo_store() -> (Arc<DynamoStore>, ()) {
    let moto = moto();
    let table = moto.create_table().await;
    let client = aws_sdk_dynamodb::Client::new(&moto.sdk_config().await);
    (Arc::new(DynamoStore::new(client, table)), ())
}

store_contract_tests!(dynamo_store());

#[tokio::test]
async fn items_follow_the_single_table_layout() {
    let moto = moto();
    let table = moto.create_table().await;
    let client = aws_sdk_dynamodb::Client::new(&moto.sdk_config().await);
    let store = DynamoStore::new(client.clone(), table.clone());
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

#[tokio::test]
async fn a_missing_table_is_an_internal_error() {
    let moto = moto();
    let client = aws_sdk_dynamodb::Client::new(&moto.sdk_config().await);
    let store = DynamoStore::new(client, "no-such-table");
    assert!(matches!(
        store.get(&user("user-a"), "groq").await,
        Err(StoreError::Internal(_))
    ));
}

#[tokio::test]
async fn an_unreachable_dynamodb_is_unavailable() {
    let config = mailmind_tests::moto::unreachable_sdk_config().await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&config), "t");
    assert!(matches!(
        store.get(&user("user-a"), "groq").await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        store.insert(&credential("user-a", "groq", "r1"), &[]).await,
        Err(StoreError::Unavailable(_))
    ));
}
