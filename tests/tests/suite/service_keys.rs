//! `CredentialService::resolve` over a real SQLite file behind a wrapper that
//! counts the store's reads and writes (and can fail the use write): what a
//! resolve costs at steady state, and that a failing use write never fails
//! the resolve (the use is bookkeeping, the key is what the caller needs).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mailmind::adapters::local_keyring::LocalKeyring;
use mailmind::adapters::notifier::NoNotifier;
use mailmind::adapters::sqlite_store::SqliteStore;
use mailmind::domain::activity::{ActivityEntry, ActivityEvent, ActivityPage, ActivityQuery, Consumer};
use mailmind::domain::{
    ApiKey, CheckState, CredentialStatus, ModelInfo, ModelList, PreviousKey, ProviderSpec, StoredCredential, UserId,
    provider,
};
use mailmind::ports::{
    ActivityStore, CredentialStore, Deferral, DueCredential, DueQuery, KeyAt, KeyRevision, KeyUse, MetaChange,
    ModelsUpdate, OncePerWindow, Replacement, StoreError,
};
use mailmind::service::CredentialService;
use mailmind_tests::fake_providers::AcceptsAll;
use zeroize::Zeroizing;

const KEY: &str = "gsk_service0123456789abcdefghijklmnopqrstuvwxyzAB9xQa";

/// SQLite, counting reads of a credential and every write; recording a use
/// is throttled when `fail_uses` says so.
struct Counting {
    inner: SqliteStore,
    fail_uses: bool,
    /// `record_use` calls (each one conditional write, or one transaction of two items on DynamoDB).
    attempts: AtomicUsize,
    /// Other writes: insert, replace, record_check, delete, claims, activity appends.
    writes: AtomicUsize,
    /// `get` calls.
    reads: AtomicUsize,
}

impl Counting {
    fn over(inner: SqliteStore, fail_uses: bool) -> Counting {
        Counting {
            inner,
            fail_uses,
            attempts: AtomicUsize::new(0),
            writes: AtomicUsize::new(0),
            reads: AtomicUsize::new(0),
        }
    }

    /// (reads, use writes, other writes) so far.
    fn counts(&self) -> (usize, usize, usize) {
        (
            self.reads.load(Ordering::SeqCst),
            self.attempts.load(Ordering::SeqCst),
            self.writes.load(Ordering::SeqCst),
        )
    }

    fn wrote(&self) {
        self.writes.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl ActivityStore for Counting {
    async fn append(&self, user: &UserId, provider: &ProviderSpec, entry: &ActivityEntry) -> Result<(), StoreError> {
        self.wrote();
        self.inner.append(user, provider, entry).await
    }
    async fn activity(
        &self,
        user: &UserId,
        of: &ProviderSpec,
        page: &ActivityQuery,
    ) -> Result<ActivityPage, StoreError> {
        self.inner.activity(user, of, page).await
    }
}

#[async_trait]
impl CredentialStore for Counting {
    async fn get(&self, at: KeyAt<'_>) -> Result<Option<StoredCredential>, StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.get(at).await
    }
    async fn keys(&self, user: &UserId, provider: &ProviderSpec) -> Result<Vec<StoredCredential>, StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.keys(user, provider).await
    }
    async fn list(&self, user: &UserId) -> Result<Vec<StoredCredential>, StoreError> {
        self.inner.list(user).await
    }
    async fn insert(&self, credential: &StoredCredential, models: &[ModelInfo]) -> Result<(), StoreError> {
        self.wrote();
        self.inner.insert(credential, models).await
    }
    async fn replace(&self, replacement: Replacement<'_>) -> Result<(), StoreError> {
        self.wrote();
        self.inner.replace(replacement).await
    }
    async fn previous(&self, at: KeyAt<'_>) -> Result<Option<PreviousKey>, StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.previous(at).await
    }
    async fn record_check(&self, key: KeyRevision, check: &CheckState, models: ModelsUpdate) -> Result<(), StoreError> {
        self.wrote();
        self.inner.record_check(key, check, models).await
    }
    async fn record_use(&self, key: KeyRevision, use_: &KeyUse) -> Result<bool, StoreError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        if self.fail_uses {
            return Err(StoreError::Unavailable("ThrottlingException".into()));
        }
        self.inner.record_use(key, use_).await
    }
    async fn claim_recheck(&self, key: KeyRevision, when: OncePerWindow) -> Result<bool, StoreError> {
        self.wrote();
        self.inner.claim_recheck(key, when).await
    }
    async fn delete(&self, user: &UserId, provider: &ProviderSpec) -> Result<(), StoreError> {
        self.wrote();
        self.inner.delete(user, provider).await
    }
    async fn cool_down(&self, key: KeyRevision, until: DateTime<Utc>) -> Result<(), StoreError> {
        self.wrote();
        self.inner.cool_down(key, until).await
    }
    async fn set_meta(&self, change: MetaChange<'_>) -> Result<(), StoreError> {
        self.wrote();
        self.inner.set_meta(change).await
    }
    async fn delete_key(&self, at: KeyAt<'_>, if_revision: Option<&str>) -> Result<(), StoreError> {
        self.wrote();
        self.inner.delete_key(at, if_revision).await
    }
    async fn models(&self, at: KeyAt<'_>) -> Result<Option<ModelList>, StoreError> {
        self.inner.models(at).await
    }
    async fn due(&self, query: DueQuery) -> Result<Vec<DueCredential>, StoreError> {
        self.inner.due(query).await
    }
    async fn claim_due(
        &self,
        due: &DueCredential,
        fresh_until: DateTime<Utc>,
    ) -> Result<Option<StoredCredential>, StoreError> {
        self.wrote();
        self.inner.claim_due(due, fresh_until).await
    }
    async fn record_attempt(&self, key: KeyRevision, deferral: Deferral) -> Result<(), StoreError> {
        self.wrote();
        self.inner.record_attempt(key, deferral).await
    }
}

fn service_over(store: &Arc<Counting>) -> CredentialService {
    CredentialService::new(
        Arc::clone(store) as _,
        Arc::new(LocalKeyring::from_master(Zeroizing::new([7u8; 32]))),
        Arc::new(AcceptsAll::default()),
        Arc::new(NoNotifier),
    )
    .with_activity(Arc::clone(store) as _)
}

fn counting_store(dir: &tempfile::TempDir, fail_uses: bool) -> Arc<Counting> {
    let inner = SqliteStore::open(&dir.path().join("mailmind.db")).unwrap();
    Arc::new(Counting::over(inner, fail_uses))
}

/// A service over a counting store (its uses failing, if `fail_uses`) in a
/// temporary directory, with `user-a`'s Groq key stored.
async fn with_a_groq_key(
    fail_uses: bool,
) -> (
    tempfile::TempDir,
    Arc<Counting>,
    Arc<CredentialService>,
    UserId,
    &'static ProviderSpec,
) {
    let dir = tempfile::tempdir().unwrap();
    let store = counting_store(&dir, fail_uses);
    let service = Arc::new(service_over(&store));
    let user = UserId::parse("user-a").unwrap();
    let groq = provider::find("groq").unwrap();
    service
        .create(&user, groq, ApiKey::parse(KEY).unwrap().into())
        .await
        .unwrap();
    (dir, store, service, user, groq)
}

fn consumer(name: &str) -> Consumer {
    Consumer::parse(name).unwrap()
}

async fn events(service: &CredentialService, user: &UserId, provider: &'static ProviderSpec) -> Vec<ActivityEvent> {
    let query = ActivityQuery {
        limit: 100,
        before: None,
        now: Utc::now(),
    };
    let page = service.activity(user, provider, &query).await.unwrap();
    page.entries.into_iter().map(|e| e.event).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_use_write_never_fails_the_resolve() {
    let (_dir, store, service, user, groq) = with_a_groq_key(true).await;

    for attempt in 1..=2 {
        let key = service
            .resolve(&user, groq, &consumer("digest"))
            .await
            .expect("the resolve answers");
        // Sealed as stored: it opens under its context, for whoever may.
        let keyring = LocalKeyring::from_master(Zeroizing::new([7u8; 32]));
        let opened = mailmind::envelope::open(&keyring, &key.context, &key.sealed)
            .await
            .unwrap();
        assert_eq!(opened.expose(), KEY);
        assert_eq!(key.status, CredentialStatus::Valid);
        assert_eq!(Some(key.base_url.as_str()), groq.default_base_url());
        // Not recorded, so tried again on the next resolve.
        assert_eq!(store.attempts.load(Ordering::SeqCst), attempt);
    }
    assert_eq!(service.get(&user, groq).await.unwrap().last_used_at, None);
}

/// The write cost of a resolve: the first of a consumer in the hour is one
/// conditional write (on DynamoDB one `TransactWriteItems` of the credential
/// update and the `used` item), every later one of that consumer in the hour
/// costs nothing but the one read every resolve does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steady_state_resolve_writes_nothing() {
    let (_dir, store, service, user, groq) = with_a_groq_key(false).await;

    let (reads, uses, writes) = store.counts();
    service.resolve(&user, groq, &consumer("digest")).await.unwrap();
    assert_eq!(
        store.counts(),
        (reads + 1, uses + 1, writes),
        "first use: one read, one write"
    );
    for n in 2..=5 {
        service.resolve(&user, groq, &consumer("digest")).await.unwrap();
        assert_eq!(
            store.counts(),
            (reads + n, uses + 1, writes),
            "steady state: one read, no write"
        );
    }
    // Another consumer's first use in the hour: one write again. Entries are
    // timed to the millisecond (ties are in no set order), so it comes a
    // millisecond or two later, to be the newest.
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    service.resolve(&user, groq, &consumer("reply")).await.unwrap();
    assert_eq!(store.counts(), (reads + 6, uses + 2, writes));
    let used: Vec<ActivityEvent> = events(&service, &user, groq)
        .await
        .into_iter()
        .filter(|e| matches!(e, ActivityEvent::Used { .. }))
        .collect();
    assert_eq!(
        used,
        vec![
            ActivityEvent::Used {
                consumer: "reply".into()
            },
            ActivityEvent::Used {
                consumer: "digest".into()
            },
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_resolves_record_one_use() {
    let (_dir, _store, service, user, groq) = with_a_groq_key(false).await;
    let resolves = (0..2).map(|_| {
        let (service, user) = (Arc::clone(&service), user.clone());
        tokio::spawn(async move { service.resolve(&user, groq, &consumer("digest")).await.map(|_| ()) })
    });
    for done in futures_util::future::join_all(resolves).await {
        done.unwrap().unwrap();
    }
    let events = events(&service, &user, groq).await;
    let used = events
        .iter()
        .filter(|e| matches!(e, ActivityEvent::Used { .. }))
        .count();
    assert_eq!(used, 1, "{events:?}");
}
