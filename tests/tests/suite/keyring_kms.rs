//! The KMS keyring: the same keyring contract as the local one, on
//! `moto_server`'s KMS, plus the faults a real key service can have.

use std::sync::Arc;

use mailmind::adapters::kms_keyring::KmsKeyring;
use mailmind::domain::ApiKey;
use mailmind::envelope;
use mailmind::ports::{EncryptionContext, Keyring, KeyringError};
use mailmind_tests::keyring_contract_tests;
use mailmind_tests::moto::moto;
use mailmind_tests::store_contract::{provider, user};

async fn kms_keyring() -> (Arc<dyn Keyring>, ()) {
    let moto = moto();
    let key = moto.create_kms_key().await;
    let client = aws_sdk_kms::Client::new(&moto.sdk_config().await);
    (Arc::new(KmsKeyring::new(client, key)), ())
}

keyring_contract_tests!(kms_keyring());

#[tokio::test]
async fn kms_binds_the_data_key_to_the_encryption_context() {
    let moto = moto();
    let key = moto.create_kms_key().await;
    let keyring = KmsKeyring::new(aws_sdk_kms::Client::new(&moto.sdk_config().await), key);
    let ctx = EncryptionContext::new(&user("user-a"), provider("groq"));
    let data_key = keyring.generate_data_key(&ctx).await.unwrap();
    // KMS itself refuses to unwrap the data key for another user.
    let other = EncryptionContext::new(&user("user-b"), provider("groq"));
    assert!(matches!(
        keyring.decrypt_data_key(data_key.wrapped_key(), &other).await,
        Err(KeyringError::Rejected)
    ));
    let unwrapped = keyring.decrypt_data_key(data_key.wrapped_key(), &ctx).await.unwrap();
    assert_eq!(*unwrapped, *data_key.plaintext);
}

#[tokio::test]
async fn a_sealed_key_from_another_kms_key_does_not_open() {
    let moto = moto();
    let config = moto.sdk_config().await;
    let first = KmsKeyring::new(aws_sdk_kms::Client::new(&config), moto.create_kms_key().await);
    let second = KmsKeyring::new(aws_sdk_kms::Client::new(&config), moto.create_kms_key().await);
    let ctx = EncryptionContext::new(&user("user-a"), provider("groq"));
    let mut sealed = envelope::seal(&first, &ctx, &ApiKey::parse("gsk_kms_test_key_0123456789").unwrap())
        .await
        .unwrap();
    let second_key = envelope::seal(&second, &ctx, &ApiKey::parse("gsk_other").unwrap())
        .await
        .unwrap();
    sealed.key_id = second_key.key_id;
    assert!(envelope::open(&first, &ctx, &sealed).await.is_err());
}

#[tokio::test]
async fn an_unknown_key_is_internal_and_an_unreachable_kms_is_unavailable() {
    let moto = moto();
    let ctx = EncryptionContext::new(&user("user-a"), provider("groq"));
    let missing = KmsKeyring::new(
        aws_sdk_kms::Client::new(&moto.sdk_config().await),
        "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000",
    );
    assert!(matches!(
        missing.generate_data_key(&ctx).await,
        Err(KeyringError::Internal(_))
    ));

    let config = mailmind_tests::moto::unreachable_sdk_config().await;
    let down = KmsKeyring::new(aws_sdk_kms::Client::new(&config), "alias/x");
    assert!(matches!(
        down.generate_data_key(&ctx).await,
        Err(KeyringError::Unavailable(_))
    ));
}
