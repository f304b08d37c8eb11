//! The `Keyring` contract through envelope sealing, one async fn per rule;
//! every keyring runs it through [`keyring_contract_tests!`](crate::keyring_contract_tests).

use std::sync::Arc;

use mailmind::domain::ApiKey;
use mailmind::envelope;
use mailmind::ports::{EncryptionContext, Keyring, KeyringError};

use crate::store_contract::{provider, user};

const KEY: &str = "gsk_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKL9xQa";

fn key() -> ApiKey {
    ApiKey::parse(KEY).unwrap()
}

pub async fn sealed_key_opens_under_its_own_context(keyring: Arc<dyn Keyring>) {
    let ctx = EncryptionContext::new(&user("user-a"), provider("groq"));
    let sealed = envelope::seal(keyring.as_ref(), &ctx, &key()).await.unwrap();
    assert!(!sealed.ciphertext.windows(KEY.len()).any(|w| w == KEY.as_bytes()));
    let opened = envelope::open(keyring.as_ref(), &ctx, &sealed).await.unwrap();
    assert_eq!(opened.expose(), KEY);
}

pub async fn every_write_gets_a_fresh_data_key(keyring: Arc<dyn Keyring>) {
    let ctx = EncryptionContext::new(&user("user-a"), provider("groq"));
    let one = envelope::seal(keyring.as_ref(), &ctx, &key()).await.unwrap();
    let two = envelope::seal(keyring.as_ref(), &ctx, &key()).await.unwrap();
    assert_ne!(one.wrapped_data_key, two.wrapped_data_key);
    assert_ne!(one.ciphertext, two.ciphertext);
}

pub async fn flipped_bits_fail_closed(keyring: Arc<dyn Keyring>) {
    let ctx = EncryptionContext::new(&user("user-a"), provider("groq"));
    let sealed = envelope::seal(keyring.as_ref(), &ctx, &key()).await.unwrap();
    let mut cases = Vec::new();
    for i in [0, sealed.ciphertext.len() / 2, sealed.ciphertext.len() - 1] {
        let mut s = sealed.clone();
        s.ciphertext[i] ^= 0x01;
        cases.push(("ciphertext", s));
    }
    let mut s = sealed.clone();
    s.nonce[0] ^= 0x80;
    cases.push(("nonce", s));
    let mut s = sealed.clone();
    let last = s.wrapped_data_key.len() - 1;
    s.wrapped_data_key[last] ^= 0x01;
    cases.push(("wrapped data key", s));
    let mut s = sealed.clone();
    s.ciphertext.truncate(4);
    cases.push(("truncated ciphertext", s));
    for (what, tampered) in cases {
        match envelope::open(keyring.as_ref(), &ctx, &tampered).await {
            Err(KeyringError::Rejected) => {}
            other => panic!(
                "a flipped bit in the {what} must be rejected, got {:?}",
                other.map(|_| "a key")
            ),
        }
    }
}

pub async fn another_users_or_providers_context_fails_closed(keyring: Arc<dyn Keyring>) {
    let sealed = envelope::seal(
        keyring.as_ref(),
        &EncryptionContext::new(&user("user-a"), provider("groq")),
        &key(),
    )
    .await
    .unwrap();
    for (user, provider) in [
        ("user-b", "groq"),
        ("user-a", "google_gemini"),
        ("user-a ", "groq"),
        ("user-", "groq"),
        ("user-a", "openai"),
    ] {
        // (An empty user or provider cannot be asked for: UserId refuses
        // the one, and a context names only providers of the registry.)
        let ctx = EncryptionContext::new(&self::user(user), self::provider(provider));
        assert!(
            matches!(
                envelope::open(keyring.as_ref(), &ctx, &sealed).await,
                Err(KeyringError::Rejected)
            ),
            "a key sealed for user-a/groq opened as {user:?}/{provider:?}"
        );
    }
}

#[macro_export]
macro_rules! keyring_contract_tests {
    ($make:expr) => {
        $crate::keyring_contract_tests!(@each $make;
            sealed_key_opens_under_its_own_context,
            every_write_gets_a_fresh_data_key,
            flipped_bits_fail_closed,
            another_users_or_providers_context_fails_closed,
        );
    };
    (@each $make:expr; $($rule:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $rule() {
                let (keyring, _guard) = $make.await;
                $crate::keyring_contract::$rule(keyring).await;
            }
        )*
    };
}
