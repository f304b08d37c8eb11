//! `CredentialService::resolve` over a real SQLite file whose `last_used_at`
//! write fails: the resolve still answers (the last use is bookkeeping, the
//! key is what the caller needs), and tries to record it again next time.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mailmind::adapters::local_keyring::LocalKeyring;
use mailmind::adapters::notifier::NoNotifier;
use mailmind::adapters::sqlite_store::SqliteStore;
use mailmind::domain::{
    ApiKey, CheckOutcome, CheckState, CredentialStatus, ModelInfo, ModelList, ProviderSpec, StoredCredential, UserId,
    provider,
};
use mailmind::ports::{
    CredentialStore, Deferral, DueCredential, DueQuery, KeyRevision, ModelsUpdate, OncePerWindow, ProviderClient,
    StoreError,
};
use mailmind::service::CredentialService;
use zeroize::Zeroizing;

const KEY: &str = "gsk_service0123456789abcdefghijklmnopqrstuvwxyzAB9xQa";

/// SQLite, except that recording a use is throttled.
struct ThrottledUse {
    inner: SqliteStore,
    attempts: AtomicUsize,
}

#[async_trait]
impl CredentialStore for ThrottledUse {
    async fn get(&self, user: &UserId, provider: &ProviderSpec) -> Result<Option<StoredCredential>, StoreError> {
        self.inner.get(user, provider).await
    }
    async fn list(&self, user: &UserId) -> Result<Vec<StoredCredential>, StoreError> {
        self.inner.list(user).await
    }
    async fn insert(&self, credential: &StoredCredential, models: &[ModelInfo]) -> Result<(), StoreError> {
        self.inner.insert(credential, models).await
    }
    async fn replace(&self, credential: &StoredCredential, models: &[ModelInfo]) -> Result<(), StoreError> {
        self.inner.replace(credential, models).await
    }
    async fn record_check(&self, key: KeyRevision, check: &CheckState, models: ModelsUpdate) -> Result<(), StoreError> {
        self.inner.record_check(key, check, models).await
    }
    async fn record_use(&self, _: KeyRevision, _: OncePerWindow) -> Result<bool, StoreError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        Err(StoreError::Unavailable("ThrottlingException".into()))
    }
    async fn claim_recheck(&self, key: KeyRevision, when: OncePerWindow) -> Result<bool, StoreError> {
        self.inner.claim_recheck(key, when).await
    }
    async fn delete(&self, user: &UserId, provider: &ProviderSpec) -> Result<(), StoreError> {
        self.inner.delete(user, provider).await
    }
    async fn models(&self, user: &UserId, provider: &ProviderSpec) -> Result<Option<ModelList>, StoreError> {
        self.inner.models(user, provider).await
    }
    async fn due(&self, query: DueQuery) -> Result<Vec<DueCredential>, StoreError> {
        self.inner.due(query).await
    }
    async fn claim_due(
        &self,
        due: &DueCredential,
        fresh_until: DateTime<Utc>,
    ) -> Result<Option<StoredCredential>, StoreError> {
        self.inner.claim_due(due, fresh_until).await
    }
    async fn record_attempt(&self, key: KeyRevision, deferral: Deferral) -> Result<(), StoreError> {
        self.inner.record_attempt(key, deferral).await
    }
}

/// Every key is valid and unlocks nothing.
struct AcceptsAll;

#[async_trait]
impl ProviderClient for AcceptsAll {
    async fn check(&self, _: &'static ProviderSpec, _: &ApiKey) -> CheckOutcome {
        CheckOutcome::Valid { models: Vec::new() }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_last_use_write_never_fails_the_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(ThrottledUse {
        inner: SqliteStore::open(&dir.path().join("mailmind.db")).unwrap(),
        attempts: AtomicUsize::new(0),
    });
    let keyring = Arc::new(LocalKeyring::from_master(Zeroizing::new([7u8; 32])));
    let service = CredentialService::new(
        Arc::clone(&store) as _,
        Arc::clone(&keyring) as _,
        Arc::new(AcceptsAll),
        Arc::new(NoNotifier),
    );
    let user = UserId::parse("user-a").unwrap();
    let groq = provider::find("groq").unwrap();
    service.create(&user, groq, ApiKey::parse(KEY).unwrap()).await.unwrap();

    for attempt in 1..=2 {
        let key = service.resolve(&user, groq).await.expect("the resolve answers");
        // Sealed as stored: it opens under its context, for whoever may.
        let opened = mailmind::envelope::open(keyring.as_ref(), &key.context, &key.sealed)
            .await
            .unwrap();
        assert_eq!(opened.expose(), KEY);
        assert_eq!(key.status, CredentialStatus::Valid);
        assert_eq!(key.base_url, groq.default_base_url);
        // Not recorded, so tried again on the next resolve.
        assert_eq!(store.attempts.load(Ordering::SeqCst), attempt);
    }
    assert_eq!(service.get(&user, groq).await.unwrap().last_used_at, None);
}
