//! The `CredentialStore` contract, one async fn per rule. Every store adapter
//! runs the whole suite through [`store_contract_tests!`](crate::store_contract_tests).

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use mailmind::domain::activity::{
    ActivityEntry, ActivityEvent, ActivityQuery, CheckedBy, Consumer, ConsumerUses, RETENTION,
};
use mailmind::domain::endpoint::Endpoint;
use mailmind::domain::named_key::{KeyId, KeyMeta};
use mailmind::domain::{
    CheckState, CredentialStatus, ErrorReason, FailedAttempt, ModelInfo, ModelList, PreviousKey, ProviderSpec,
    SealedKey, StoredCredential, UserId,
};
use mailmind::ports::{
    ActivityStore, Budget, Connection, ConnectionStore, CredentialStore, Deferral, DueCredential, DueQuery, KeyAt,
    KeyRevision, KeyUse, LimitStore, ModelsUpdate, OncePerWindow, Replacement, Spend, StoreError,
};

/// What the contract runs over: an adapter that keeps credentials,
/// connections, budgets and activity.
pub trait Store: CredentialStore + ConnectionStore + LimitStore + ActivityStore + 'static {}
impl<S: CredentialStore + ConnectionStore + LimitStore + ActivityStore + 'static> Store for S {}

/// A user id (the test ids are all valid).
pub fn user(id: &str) -> UserId {
    UserId::parse(id).expect("a valid user id")
}

/// A provider of the registry by its id.
pub fn provider(id: &str) -> &'static ProviderSpec {
    mailmind::domain::provider::find(id).expect("a known provider")
}

/// Groq, the provider most rules store under.
pub fn groq() -> &'static ProviderSpec {
    provider("groq")
}

/// Google Gemini, the other provider.
pub fn gemini() -> &'static ProviderSpec {
    provider("google_gemini")
}

/// The key with `revision` of `user`'s credential for `provider`.
pub fn key(user: &UserId, provider: &str, revision: &str) -> KeyRevision {
    KeyRevision {
        user: user.clone(),
        provider: self::provider(provider),
        key: first_key(),
        revision: revision.to_owned(),
    }
}

/// `at`, unless a time at or after `unless_since` is stored.
pub fn once(at: DateTime<Utc>, unless_since: DateTime<Utc>) -> OncePerWindow {
    OncePerWindow { at, unless_since }
}

/// Up to `limit` of `provider`'s credentials fresh at or before `before`.
pub fn due_query(provider: &str, before: DateTime<Utc>, limit: usize) -> DueQuery {
    DueQuery {
        provider: self::provider(provider),
        before,
        limit,
    }
}

/// `limit` units of `bucket` per `window`.
pub fn budget(bucket: &'static str, limit: u32, window: Duration) -> Budget {
    Budget { bucket, limit, window }
}

/// A fixed instant with whole milliseconds, so values survive any store's rounding.
pub fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_795_000_000 + secs, 0).single().expect("valid time")
}

/// The provider's first key, which every credential from before several
/// keys per provider is.
pub fn first_key() -> KeyId {
    KeyId::default_key()
}

/// `user`'s first `provider` key as the store returns it.
pub async fn first_stored(store: &impl Store, user: &str, provider: &str) -> Option<StoredCredential> {
    let (user, key) = (self::user(user), first_key());
    store
        .get(KeyAt::new(&user, self::provider(provider), &key))
        .await
        .unwrap()
}

/// The stored model list of `user`'s first `provider` key.
pub async fn first_models(store: &impl Store, user: &str, provider: &str) -> Option<ModelList> {
    let (user, key) = (self::user(user), first_key());
    store
        .models(KeyAt::new(&user, self::provider(provider), &key))
        .await
        .unwrap()
}

pub fn credential(user: &str, provider: &str, revision: &str) -> StoredCredential {
    StoredCredential {
        user_id: self::user(user),
        provider: self::provider(provider),
        key: KeyMeta::default_key(),
        sealed: SealedKey {
            format_version: 1,
            key_id: "local:0011223344556677".to_owned(),
            wrapped_data_key: vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13],
            nonce: vec![9; 12],
            ciphertext: format!("ciphertext-of-{user}-{provider}-{revision}").into_bytes(),
        },
        key_hint: "gsk_…9xQa".to_owned(),
        endpoint: self::provider(provider)
            .endpoint_per_key()
            .then(|| Endpoint::accepted(format!("https://{user}.llm.example.com/v1"))),
        check: CheckState {
            status: CredentialStatus::Valid,
            reason: None,
            retry_after_secs: None,
            checked_at: Some(at(1)),
            quota: None,
        },
        models_count: 2,
        revision: revision.to_owned(),
        created_at: at(0),
        updated_at: at(1),
        last_used_at: None,
        consumer_uses: ConsumerUses::default(),
        last_recheck_at: None,
        last_attempt: None,
        cooling_until: None,
        previous: None,
    }
}

/// A consumer name.
pub fn consumer(name: &str) -> Consumer {
    Consumer::parse(name).expect("a valid consumer")
}

/// `consumer`'s use at `at`, recorded over `seen` (the map as read).
pub fn key_use(seen: &ConsumerUses, name: &str, at: DateTime<Utc>) -> KeyUse {
    KeyUse {
        seen: seen.clone(),
        uses: seen.with_use(&consumer(name), at),
        entry: ActivityEntry::new(
            at,
            ActivityEvent::Used {
                consumer: name.to_owned(),
            },
        ),
    }
}

/// The first page (up to `limit`) of a history, as of `now`.
pub fn first_page(limit: usize, now: DateTime<Utc>) -> ActivityQuery {
    ActivityQuery {
        limit,
        before: None,
        now,
    }
}

/// The events of every entry of `user`'s `provider` history, newest first.
pub async fn history(store: &impl Store, user: &UserId, provider: &ProviderSpec) -> Vec<ActivityEvent> {
    let page = store
        .activity(user, provider, &first_page(100, Utc::now()))
        .await
        .unwrap();
    page.entries.into_iter().map(|e| e.event).collect()
}

pub fn models(ids: &[&str]) -> Vec<ModelInfo> {
    ids.iter()
        .map(|id| ModelInfo {
            model_id: (*id).to_owned(),
            model_name: format!("{id} (name)"),
            context_window: Some(131072),
            max_output_tokens: None,
            owned_by: Some("Meta".to_owned()),
            first_seen_at: None,
        })
        .collect()
}

pub async fn insert_then_get_round_trips(store: Arc<impl Store>) {
    let c = credential("user-a", "groq", "r1");
    store.insert(&c, &models(&["a", "b"])).await.unwrap();
    assert_eq!(first_stored(&*store, "user-a", "groq").await, Some(c));
    let list = first_models(&*store, "user-a", "groq").await.expect("models stored");
    assert_eq!(list.models, models(&["a", "b"]));
    assert_eq!(list.discovered_at, at(1));
    assert_eq!(first_stored(&*store, "user-a", "google_gemini").await, None);
    assert_eq!(first_models(&*store, "user-a", "google_gemini").await, None);
}

pub async fn a_keys_own_endpoint_round_trips_and_moves_with_a_replacement(store: Arc<impl Store>) {
    let compatible = provider("openai_compatible");
    let c = credential("user-a", "openai_compatible", "r1");
    assert!(c.endpoint.is_some());
    store.insert(&c, &models(&["llama3.2:latest"])).await.unwrap();
    assert_eq!(
        store
            .get(KeyAt::new(&user("user-a"), compatible, &first_key()))
            .await
            .unwrap(),
        Some(c.clone())
    );
    let mut moved = credential("user-a", "openai_compatible", "r2");
    moved.endpoint = Some(Endpoint::accepted("https://other.example/v1".to_owned()));
    store.replace(Replacement::of(&moved, &[])).await.unwrap();
    let stored = store
        .get(KeyAt::new(&user("user-a"), compatible, &first_key()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.endpoint, moved.endpoint);
    // A provider with a fixed root stores none.
    let groq = credential("user-a", "groq", "r1");
    store.insert(&groq, &[]).await.unwrap();
    assert_eq!(
        store
            .get(KeyAt::new(&user("user-a"), self::groq(), &first_key()))
            .await
            .unwrap()
            .unwrap()
            .endpoint,
        None
    );
}

pub async fn a_replaced_key_is_kept_as_the_previous_version_until_its_keeping_ends(store: Arc<impl Store>) {
    let (u, compatible, key) = (user("user-a"), provider("openai_compatible"), first_key());
    let at = KeyAt::new(&u, compatible, &key);
    let first = credential("user-a", "openai_compatible", "r1");
    store.insert(&first, &[]).await.unwrap();
    assert_eq!(store.previous(at).await.unwrap(), None);

    // Replaced: the old key, sealed as it was and with its endpoint, is kept,
    // and the key's record notes it (the store derives the note itself).
    let now = chrono::SubsecRound::trunc_subsecs(Utc::now(), 3);
    let mut second = credential("user-a", "openai_compatible", "r2");
    second.endpoint = Some(Endpoint::accepted("https://other.example/v1".to_owned()));
    let kept = PreviousKey::retire(&first, now, Duration::days(7));
    store
        .replace(Replacement::of(&second, &[]).retiring(&kept))
        .await
        .unwrap();
    let read = store.previous(at).await.unwrap();
    assert_eq!(read.as_ref(), Some(&kept));
    assert_eq!(read.unwrap().sealed, first.sealed);
    let stored = store.get(at).await.unwrap().unwrap();
    assert_eq!(stored.previous, Some(kept.note()));
    // Another user, another key: nothing.
    let other = user("user-b");
    assert_eq!(
        store.previous(KeyAt::new(&other, compatible, &key)).await.unwrap(),
        None
    );

    // Replaced again: only the latest replaced key is kept.
    let third = credential("user-a", "openai_compatible", "r3");
    let kept_second = PreviousKey::retire(&second, now, Duration::days(7));
    store
        .replace(Replacement::of(&third, &[]).retiring(&kept_second))
        .await
        .unwrap();
    let read = store.previous(at).await.unwrap().unwrap();
    assert_eq!(
        (read.endpoint, read.sealed),
        (second.endpoint.clone(), second.sealed.clone())
    );
    assert_eq!(store.get(at).await.unwrap().unwrap().previous, Some(kept_second.note()));

    // Past its keeping it is gone, whether or not the store has removed it yet.
    let fourth = credential("user-a", "openai_compatible", "r4");
    let expired = PreviousKey::retire(&third, now - Duration::days(8), Duration::days(7));
    store
        .replace(Replacement::of(&fourth, &[]).retiring(&expired))
        .await
        .unwrap();
    assert_eq!(store.previous(at).await.unwrap(), None);

    // A replacement keeping none forgets any, note and all; a deleted key
    // takes its own along.
    let keeping = Replacement::of(&third, &[]).retiring(&kept_second);
    store.replace(keeping).await.unwrap();
    store.replace(Replacement::of(&fourth, &[])).await.unwrap();
    assert_eq!(store.previous(at).await.unwrap(), None);
    assert_eq!(store.get(at).await.unwrap().unwrap().previous, None);
    store.replace(keeping).await.unwrap();
    store.delete_key(at, None).await.unwrap();
    store.insert(&first, &[]).await.unwrap();
    assert_eq!(store.previous(at).await.unwrap(), None);
    store.replace(keeping).await.unwrap();
    store.delete(&u, compatible).await.unwrap();
    store.insert(&first, &[]).await.unwrap();
    assert_eq!(store.previous(at).await.unwrap(), None);
}

/// Another key of `provider` for `user`: named, placed at `priority`.
pub fn another_key(user: &str, provider: &str, revision: &str, name: &str, priority: u32) -> StoredCredential {
    let mut c = credential(user, provider, revision);
    c.key = KeyMeta {
        id: KeyId::random(),
        name: name.to_owned(),
        priority,
        enabled: true,
    };
    c
}

pub async fn several_keys_of_a_provider_are_kept_apart_and_listed_in_order(store: Arc<impl Store>) {
    let u = user("user-a");
    let first = credential("user-a", "openai", "r1");
    let mut backup = another_key("user-a", "openai", "r2", "backup", 2);
    backup.created_at = at(5);
    let mut work = another_key("user-a", "openai", "r3", "work", 1);
    work.key.enabled = false;
    store.insert(&first, &models(&["gpt-4o"])).await.unwrap();
    store.insert(&backup, &models(&["gpt-4o-mini"])).await.unwrap();
    store.insert(&work, &models(&["o3", "o4-mini"])).await.unwrap();
    // A provider whose id begins with this one's is another provider.
    store
        .insert(
            &credential("user-a", "openai_compatible", "r4"),
            &models(&["llama3.2:latest"]),
        )
        .await
        .unwrap();
    let openai = provider("openai");
    assert_eq!(
        store.keys(&u, openai).await.unwrap(),
        [first.clone(), work.clone(), backup.clone()]
    );
    assert_eq!(
        store.get(KeyAt::new(&u, openai, &work.key.id)).await.unwrap(),
        Some(work.clone())
    );
    let listed = |key: &KeyId| {
        let (store, u, key) = (Arc::clone(&store), u.clone(), key.clone());
        async move {
            let list = store.models(KeyAt::new(&u, openai, &key)).await.unwrap();
            list.map(|l| l.models.into_iter().map(|m| m.model_id).collect::<Vec<_>>())
        }
    };
    assert_eq!(listed(&backup.key.id).await, Some(vec!["gpt-4o-mini".to_owned()]));
    assert_eq!(listed(&first.key.id).await, Some(vec!["gpt-4o".to_owned()]));
    assert_eq!(store.list(&u).await.unwrap().len(), 4);

    // A check of one key is that key's alone; a stale revision of it is refused.
    let mut check = backup.check.clone();
    check.status = CredentialStatus::Invalid;
    check.checked_at = Some(at(9));
    store
        .record_check(KeyRevision::of(&backup), &check, ModelsUpdate::Replace(Vec::new()))
        .await
        .unwrap();
    assert_eq!(
        store
            .get(KeyAt::new(&u, openai, &backup.key.id))
            .await
            .unwrap()
            .unwrap()
            .check,
        check
    );
    assert_eq!(
        store.get(KeyAt::new(&u, openai, &first.key.id)).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(listed(&first.key.id).await, Some(vec!["gpt-4o".to_owned()]));
    let mut stale = KeyRevision::of(&work);
    stale.revision = "r-old".into();
    assert!(matches!(
        store.record_check(stale, &check, ModelsUpdate::Keep).await,
        Err(StoreError::Conflict)
    ));

    // A replacement under a revision condition: refused once the key moved on.
    let mut rotated = backup.clone();
    rotated.revision = "r2-next".into();
    assert!(matches!(
        store
            .replace(Replacement::of(&rotated, &[]).if_revision("not-r2"))
            .await,
        Err(StoreError::Conflict)
    ));
    store
        .replace(Replacement::of(&rotated, &[]).if_revision("r2"))
        .await
        .unwrap();
    assert_eq!(
        store
            .get(KeyAt::new(&u, openai, &backup.key.id))
            .await
            .unwrap()
            .unwrap()
            .revision,
        "r2-next"
    );

    // One key goes with its list; then the provider's others, all at once.
    store
        .delete_key(KeyAt::new(&u, openai, &backup.key.id), None)
        .await
        .unwrap();
    assert_eq!(listed(&backup.key.id).await, None);
    assert!(matches!(
        store.delete_key(KeyAt::new(&u, openai, &backup.key.id), None).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(store.keys(&u, openai).await.unwrap(), [first.clone(), work.clone()]);
    store.delete(&u, openai).await.unwrap();
    assert_eq!(store.keys(&u, openai).await.unwrap(), []);
    assert_eq!(listed(&first.key.id).await, None);
    assert_eq!(listed(&work.key.id).await, None);
    assert!(matches!(store.delete(&u, openai).await, Err(StoreError::NotFound)));
    assert_eq!(store.keys(&u, provider("openai_compatible")).await.unwrap().len(), 1);
}

pub async fn another_key_is_due_and_claimed_on_its_own(store: Arc<impl Store>) {
    let first = checked_at("user-a", "groq", "5d01", 40);
    let mut second = another_key("user-a", "groq", "5d02", "backup", 1);
    second.check.checked_at = Some(at(10));
    store.insert(&first, &[]).await.unwrap();
    store.insert(&second, &[]).await.unwrap();
    let due = store.due(due_query("groq", at(50), 10)).await.unwrap();
    let keys: Vec<&KeyId> = due.iter().map(|d| &d.key).collect();
    assert_eq!(keys, [&second.key.id, &first.key.id], "oldest first");
    let claimed = store.claim_due(&due[0], at(500)).await.unwrap().unwrap();
    assert_eq!(claimed.key, second.key);
    let after = store.due(due_query("groq", at(50), 10)).await.unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].key, first.key.id);
}

pub async fn error_state_round_trips(store: Arc<impl Store>) {
    let mut c = credential("user-a", "groq", "r1");
    c.check = CheckState {
        status: CredentialStatus::Error,
        reason: Some(ErrorReason::RateLimited),
        retry_after_secs: Some(58),
        checked_at: Some(at(5)),
        quota: None,
    };
    c.models_count = 0;
    store.insert(&c, &[]).await.unwrap();
    assert_eq!(first_stored(&*store, "user-a", "groq").await, Some(c));
    assert_eq!(
        first_models(&*store, "user-a", "groq").await.map(|l| l.models),
        Some(vec![])
    );
}

pub async fn second_insert_conflicts_and_changes_nothing(store: Arc<impl Store>) {
    let first = credential("user-a", "groq", "r1");
    store.insert(&first, &models(&["a"])).await.unwrap();
    let second = credential("user-a", "groq", "r2");
    assert!(matches!(
        store.insert(&second, &models(&["z"])).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(first_stored(&*store, "user-a", "groq").await, Some(first));
    assert_eq!(
        first_models(&*store, "user-a", "groq").await.unwrap().models,
        models(&["a"])
    );
}

pub async fn concurrent_inserts_have_exactly_one_winner(store: Arc<impl Store>) {
    let attempts = (0..8).map(|i| {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let c = credential("user-a", "groq", &format!("r{i}"));
            store.insert(&c, &models(&[&format!("m{i}")])).await
        })
    });
    let results = futures_util::future::join_all(attempts).await;
    let wins = results.iter().filter(|r| matches!(r, Ok(Ok(())))).count();
    let conflicts = results
        .iter()
        .filter(|r| matches!(r, Ok(Err(StoreError::Conflict))))
        .count();
    assert_eq!((wins, conflicts), (1, 7), "{results:?}");
    // The winner's models are the ones stored.
    let stored = first_stored(&*store, "user-a", "groq").await.unwrap();
    let winner = stored.revision.trim_start_matches('r').to_owned();
    assert_eq!(
        first_models(&*store, "user-a", "groq").await.unwrap().models,
        models(&[&format!("m{winner}")])
    );
}

pub async fn replace_needs_an_existing_credential(store: Arc<impl Store>) {
    let c = credential("user-a", "groq", "r1");
    assert!(matches!(
        store.replace(Replacement::of(&c, &models(&["a"]))).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(first_stored(&*store, "user-a", "groq").await, None);
    assert_eq!(first_models(&*store, "user-a", "groq").await, None);
}

pub async fn replace_swaps_key_status_and_models_but_keeps_created_at(store: Arc<impl Store>) {
    let original = credential("user-a", "groq", "r1");
    store.insert(&original, &models(&["a", "b"])).await.unwrap();
    let mut newer = credential("user-a", "groq", "r2");
    newer.created_at = at(100); // must be ignored
    newer.updated_at = at(200);
    newer.key_hint = "gsk_…NEW1".to_owned();
    newer.check.checked_at = Some(at(200));
    newer.models_count = 1;
    store.replace(Replacement::of(&newer, &models(&["c"]))).await.unwrap();
    let stored = first_stored(&*store, "user-a", "groq").await.unwrap();
    assert_eq!(stored.created_at, original.created_at);
    assert_eq!(stored.revision, "r2");
    assert_eq!(stored.sealed, newer.sealed);
    assert_eq!(stored.key_hint, "gsk_…NEW1");
    assert_eq!(stored.updated_at, at(200));
    assert_eq!(stored.models_count, 1);
    let list = first_models(&*store, "user-a", "groq").await.unwrap();
    assert_eq!(list.models, models(&["c"]));
    assert_eq!(list.discovered_at, at(200));
}

pub async fn record_check_updates_status_and_models(store: Arc<impl Store>) {
    store
        .insert(&credential("user-a", "groq", "r1"), &models(&["a", "b"]))
        .await
        .unwrap();
    let rate_limited = CheckState {
        status: CredentialStatus::Error,
        reason: Some(ErrorReason::RateLimited),
        retry_after_secs: Some(7),
        checked_at: Some(at(50)),
        quota: None,
    };
    store
        .record_check(key(&user("user-a"), "groq", "r1"), &rate_limited, ModelsUpdate::Keep)
        .await
        .unwrap();
    let stored = first_stored(&*store, "user-a", "groq").await.unwrap();
    assert_eq!(stored.check, rate_limited);
    assert_eq!(stored.models_count, 2, "Keep leaves the count");
    assert_eq!(stored.updated_at, at(50));
    assert_eq!(
        first_models(&*store, "user-a", "groq").await.unwrap().models,
        models(&["a", "b"])
    );

    let valid = CheckState {
        status: CredentialStatus::Valid,
        reason: None,
        retry_after_secs: None,
        checked_at: Some(at(60)),
        quota: None,
    };
    let three = models(&["x", "y", "z"]);
    store
        .record_check(
            key(&user("user-a"), "groq", "r1"),
            &valid,
            ModelsUpdate::Replace(three.clone()),
        )
        .await
        .unwrap();
    let stored = first_stored(&*store, "user-a", "groq").await.unwrap();
    assert_eq!(stored.check, valid);
    assert_eq!(stored.models_count, 3);
    let list = first_models(&*store, "user-a", "groq").await.unwrap();
    assert_eq!(list.models, three);
    assert_eq!(list.discovered_at, at(60));
}

pub async fn record_check_refuses_stale_or_missing_credentials(store: Arc<impl Store>) {
    let check = CheckState {
        status: CredentialStatus::Invalid,
        reason: None,
        retry_after_secs: None,
        checked_at: Some(at(9)),
        quota: None,
    };
    assert!(matches!(
        store
            .record_check(
                key(&user("user-a"), "groq", "r1"),
                &check,
                ModelsUpdate::Replace(vec![])
            )
            .await,
        Err(StoreError::NotFound)
    ));
    let original = credential("user-a", "groq", "r2");
    store.insert(&original, &models(&["a"])).await.unwrap();
    assert!(matches!(
        store
            .record_check(
                key(&user("user-a"), "groq", "r1"),
                &check,
                ModelsUpdate::Replace(vec![])
            )
            .await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(first_stored(&*store, "user-a", "groq").await, Some(original));
    assert_eq!(
        first_models(&*store, "user-a", "groq").await.unwrap().models,
        models(&["a"])
    );
}

pub async fn delete_removes_credential_and_models(store: Arc<impl Store>) {
    assert!(matches!(
        store.delete(&user("user-a"), groq()).await,
        Err(StoreError::NotFound)
    ));
    store
        .insert(&credential("user-a", "groq", "r1"), &models(&["a"]))
        .await
        .unwrap();
    store
        .insert(&credential("user-a", "google_gemini", "r1"), &models(&["g"]))
        .await
        .unwrap();
    store.delete(&user("user-a"), groq()).await.unwrap();
    assert_eq!(first_stored(&*store, "user-a", "groq").await, None);
    assert_eq!(first_models(&*store, "user-a", "groq").await, None);
    assert!(matches!(
        store.delete(&user("user-a"), groq()).await,
        Err(StoreError::NotFound)
    ));
    // The other provider is untouched.
    assert!(first_stored(&*store, "user-a", "google_gemini").await.is_some());
    assert!(first_models(&*store, "user-a", "google_gemini").await.is_some());
    // A deleted credential can be created again.
    store.insert(&credential("user-a", "groq", "r9"), &[]).await.unwrap();
}

pub async fn users_never_see_each_other(store: Arc<impl Store>) {
    let a = credential("user-a", "groq", "r1");
    store.insert(&a, &models(&["a"])).await.unwrap();
    assert_eq!(first_stored(&*store, "user-b", "groq").await, None);
    assert!(store.list(&user("user-b")).await.unwrap().is_empty());
    assert_eq!(first_models(&*store, "user-b", "groq").await, None);
    assert!(matches!(
        store.delete(&user("user-b"), groq()).await,
        Err(StoreError::NotFound)
    ));
    let b_version = credential("user-b", "groq", "r1");
    assert!(matches!(
        store.replace(Replacement::of(&b_version, &[])).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store
            .record_check(
                key(&user("user-b"), "groq", "r1"),
                &a.check,
                ModelsUpdate::Replace(vec![])
            )
            .await,
        Err(StoreError::NotFound)
    ));
    // B may have its own credential for the same provider.
    store.insert(&b_version, &models(&["b"])).await.unwrap();
    assert_eq!(first_stored(&*store, "user-a", "groq").await, Some(a));
    assert_eq!(
        first_models(&*store, "user-a", "groq").await.unwrap().models,
        models(&["a"])
    );
    assert_eq!(store.list(&user("user-a")).await.unwrap().len(), 1);
    // Ids that merely share a prefix are different users.
    assert!(store.list(&user("user")).await.unwrap().is_empty());
    assert!(store.list(&user("user-a-2")).await.unwrap().is_empty());
}

pub async fn list_returns_all_of_a_users_credentials(store: Arc<impl Store>) {
    assert!(store.list(&user("user-a")).await.unwrap().is_empty());
    for provider in ["groq", "google_gemini"] {
        store
            .insert(&credential("user-a", provider, "r1"), &models(&["m"]))
            .await
            .unwrap();
    }
    let mut providers: Vec<&str> = store
        .list(&user("user-a"))
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.provider.id)
        .collect();
    providers.sort();
    assert_eq!(providers, ["google_gemini", "groq"]);
}

pub async fn readers_never_see_a_half_written_model_list(store: Arc<impl Store>) {
    let small = models(&["a", "b"]);
    let ids: Vec<String> = (0..60).map(|i| format!("model-{i:03}")).collect();
    let large = models(&ids.iter().map(String::as_str).collect::<Vec<_>>());
    store.insert(&credential("user-a", "groq", "r1"), &small).await.unwrap();
    let writer = {
        let (store, small, large) = (Arc::clone(&store), small.clone(), large.clone());
        tokio::spawn(async move {
            for i in 0..20 {
                let list = if i % 2 == 0 { &large } else { &small };
                let check = CheckState {
                    status: CredentialStatus::Valid,
                    reason: None,
                    retry_after_secs: None,
                    checked_at: Some(at(10 + i)),
                    quota: None,
                };
                store
                    .record_check(
                        key(&user("user-a"), "groq", "r1"),
                        &check,
                        ModelsUpdate::Replace(list.clone()),
                    )
                    .await
                    .unwrap();
            }
        })
    };
    let mut reads = 0;
    let (reader, key) = (user("user-a"), first_key());
    while !writer.is_finished() {
        let (credential, list) = tokio::join!(
            store.get(KeyAt::new(&reader, groq(), &key)),
            store.models(KeyAt::new(&reader, groq(), &key))
        );
        let list = list.unwrap().unwrap().models;
        assert!(list == small || list == large, "a mixed list of {} models", list.len());
        assert!(credential.unwrap().is_some());
        reads += 1;
    }
    writer.await.unwrap();
    assert!(reads > 0);
}

pub async fn connections_are_per_user_and_expire(store: Arc<impl Store>) {
    let now = Utc::now();
    let connection = |user: &str, id: &str, expires_in: Duration| Connection {
        user: self::user(user),
        connection_id: id.to_owned(),
        connected_at: now,
        expires_at: now + expires_in,
    };
    assert!(store.connections(&user("user-a")).await.unwrap().is_empty());
    store
        .save_connection(&connection("user-a", "c1", Duration::hours(2)))
        .await
        .unwrap();
    store
        .save_connection(&connection("user-a", "c2", Duration::hours(2)))
        .await
        .unwrap();
    store
        .save_connection(&connection("user-b", "c3", Duration::hours(2)))
        .await
        .unwrap();
    store
        .save_connection(&connection("user-a", "old", Duration::seconds(-5)))
        .await
        .unwrap();
    let mut a = store.connections(&user("user-a")).await.unwrap();
    a.sort();
    assert_eq!(a, ["c1", "c2"]);
    assert_eq!(store.connections(&user("user-b")).await.unwrap(), ["c3"]);
    // Another user cannot remove a connection that is not theirs.
    store.remove_connection(&user("user-b"), "c1").await.unwrap();
    assert_eq!(store.connections(&user("user-a")).await.unwrap().len(), 2);
    store.remove_connection(&user("user-a"), "c1").await.unwrap();
    assert_eq!(store.connections(&user("user-a")).await.unwrap(), ["c2"]);
    // Forgetting twice is fine.
    store.remove_connection(&user("user-a"), "c1").await.unwrap();
}

pub async fn record_use_writes_the_consumer_map_and_one_entry_only_for_the_current_key(store: Arc<impl Store>) {
    let u = user("user-a");
    let none = ConsumerUses::default();
    assert!(
        !store
            .record_use(key(&u, "groq", "r1"), &key_use(&none, "digest", at(10)))
            .await
            .unwrap(),
        "nothing to record on"
    );
    assert_eq!(history(&*store, &u, groq()).await, vec![]);
    store
        .insert(&credential("user-a", "groq", "r1"), &models(&["a"]))
        .await
        .unwrap();
    let first = key_use(&none, "digest", at(100));
    assert!(store.record_use(key(&u, "groq", "r1"), &first).await.unwrap());
    let stored = store.get(KeyAt::new(&u, groq(), &first_key())).await.unwrap().unwrap();
    assert_eq!(stored.last_used_at, Some(at(100)));
    assert_eq!(stored.consumer_uses, first.uses);
    assert!(stored.consumer_uses.recorded_since(&consumer("digest"), at(100)));
    // A writer that read the map before that write changes nothing.
    assert!(
        !store
            .record_use(key(&u, "groq", "r1"), &key_use(&none, "digest", at(120)))
            .await
            .unwrap()
    );
    // A replaced key: no write.
    assert!(
        !store
            .record_use(key(&u, "groq", "r0"), &key_use(&first.uses, "other", at(130)))
            .await
            .unwrap()
    );
    // Another consumer, over the map as it stands: written, both kept.
    let second = key_use(&first.uses, "other", at(500));
    assert!(store.record_use(key(&u, "groq", "r1"), &second).await.unwrap());
    let stored = store.get(KeyAt::new(&u, groq(), &first_key())).await.unwrap().unwrap();
    assert_eq!(stored.last_used_at, Some(at(500)));
    assert_eq!(stored.consumer_uses.len(), 2);
    // Nothing else changed, and a key replacement keeps last use and map.
    assert_eq!(stored.check, credential("user-a", "groq", "r1").check);
    let mut replaced = credential("user-a", "groq", "r2");
    replaced.created_at = at(600);
    store
        .replace(Replacement::of(&replaced, &models(&["b"])))
        .await
        .unwrap();
    let stored = store.get(KeyAt::new(&u, groq(), &first_key())).await.unwrap().unwrap();
    assert_eq!(stored.last_used_at, Some(at(500)));
    assert_eq!(stored.consumer_uses, second.uses);
    // One entry per write that won, newest first.
    assert_eq!(
        store
            .activity(&u, groq(), &first_page(10, at(1000)))
            .await
            .unwrap()
            .entries,
        vec![second.entry, first.entry]
    );
    // Nobody else's credential is touched.
    assert_eq!(first_stored(&*store, "user-b", "groq").await, None);
}

pub async fn concurrent_uses_record_one_entry(store: Arc<impl Store>) {
    let u = user("user-a");
    store
        .insert(&credential("user-a", "groq", "r1"), &models(&["a"]))
        .await
        .unwrap();
    // Two resolves that both read the credential before either wrote.
    let seen = ConsumerUses::default();
    let writes = (0..2).map(|i| {
        let store = Arc::clone(&store);
        let use_ = key_use(&seen, "digest", at(100 + i));
        let key = key(&u, "groq", "r1");
        tokio::spawn(async move { store.record_use(key, &use_).await.unwrap() })
    });
    let won: Vec<bool> = futures_util::future::join_all(writes)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
    assert_eq!(
        history(&*store, &u, groq()).await,
        vec![ActivityEvent::Used {
            consumer: "digest".into()
        }]
    );
}

pub async fn activity_pages_newest_first_per_user_and_provider(store: Arc<impl Store>) {
    let (a, b) = (user("user-a"), user("user-b"));
    let now = at(10_000);
    let checked = |secs: i64| {
        ActivityEntry::new(
            at(secs),
            ActivityEvent::Checked {
                status: CredentialStatus::Valid,
                reason: None,
                by: CheckedBy::User,
            },
        )
    };
    let entries: Vec<ActivityEntry> = (1..=5).map(checked).collect();
    for entry in &entries {
        store.append(&a, groq(), entry).await.unwrap();
    }
    // Two entries of the same millisecond are both kept.
    let twin = ActivityEntry::new(at(5), ActivityEvent::Deleted);
    store.append(&a, groq(), &twin).await.unwrap();
    store.append(&a, gemini(), &checked(7)).await.unwrap();
    let b_entry = checked(8);
    store.append(&b, groq(), &b_entry).await.unwrap();

    let mut newest_first: Vec<ActivityEntry> = entries.iter().cloned().chain([twin]).collect();
    newest_first.sort_by_key(|e| std::cmp::Reverse(e.position()));
    let mut seen = Vec::new();
    let mut query = first_page(4, now);
    loop {
        let page = store.activity(&a, groq(), &query).await.unwrap();
        assert!(page.entries.len() <= 4);
        seen.extend(page.entries);
        match page.next {
            Some(next) => query.before = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, newest_first);
    // A page that holds exactly the rest says there is no next one.
    let all = store.activity(&a, groq(), &first_page(6, now)).await.unwrap();
    assert_eq!((all.entries.len(), all.next), (6, None));
    let one = store.activity(&a, groq(), &first_page(1, now)).await.unwrap();
    assert_eq!(one.entries, newest_first[..1]);
    assert!(one.next.is_some());
    // Each user and provider has its own history.
    assert_eq!(
        store
            .activity(&a, gemini(), &first_page(100, now))
            .await
            .unwrap()
            .entries
            .len(),
        1
    );
    assert_eq!(
        store.activity(&b, groq(), &first_page(100, now)).await.unwrap().entries,
        vec![b_entry]
    );
    assert_eq!(
        store
            .activity(&user("user-c"), groq(), &first_page(100, now))
            .await
            .unwrap()
            .entries,
        vec![]
    );
}

pub async fn activity_leaves_out_expired_entries_and_survives_the_credential(store: Arc<impl Store>) {
    let u = user("user-a");
    let now = Utc::now();
    let old = ActivityEntry::new(now - RETENTION - Duration::days(1), ActivityEvent::Deleted);
    let fresh = ActivityEntry::new(now - Duration::seconds(1), ActivityEvent::Deleted);
    store.append(&u, groq(), &old).await.unwrap();
    store.append(&u, groq(), &fresh).await.unwrap();
    store
        .insert(&credential("user-a", "groq", "r1"), &models(&["a"]))
        .await
        .unwrap();
    store.delete(&u, groq()).await.unwrap();
    let page = store.activity(&u, groq(), &first_page(10, now)).await.unwrap();
    assert_eq!(page.entries, vec![fresh]);
    assert_eq!(page.next, None);
}

pub async fn claim_recheck_lets_one_caller_per_window_and_tells_stale_from_gone(store: Arc<impl Store>) {
    let u = user("user-a");
    assert!(matches!(
        store.claim_recheck(key(&u, "groq", "r1"), once(at(10), at(0))).await,
        Err(StoreError::NotFound)
    ));
    store
        .insert(&credential("user-a", "groq", "r1"), &models(&["a"]))
        .await
        .unwrap();
    // Concurrent claims: exactly one wins.
    let claims = futures_util::future::join_all((0..4).map(|_| {
        let store = Arc::clone(&store);
        let u = u.clone();
        async move {
            store
                .claim_recheck(key(&u, "groq", "r1"), once(at(100), at(-200)))
                .await
                .unwrap()
        }
    }))
    .await;
    assert_eq!(claims.iter().filter(|won| **won).count(), 1, "{claims:?}");
    assert_eq!(
        store
            .get(KeyAt::new(&u, groq(), &first_key()))
            .await
            .unwrap()
            .unwrap()
            .last_recheck_at,
        Some(at(100))
    );
    assert!(
        !store
            .claim_recheck(key(&u, "groq", "r1"), once(at(399), at(99)))
            .await
            .unwrap()
    );
    assert!(
        store
            .claim_recheck(key(&u, "groq", "r1"), once(at(401), at(101)))
            .await
            .unwrap()
    );
    assert!(matches!(
        store.claim_recheck(key(&u, "groq", "r0"), once(at(900), at(600))).await,
        Err(StoreError::Conflict)
    ));
    // A new key starts with a window of its own.
    store
        .replace(Replacement::of(&credential("user-a", "groq", "r2"), &models(&["b"])))
        .await
        .unwrap();
    assert_eq!(
        store
            .get(KeyAt::new(&u, groq(), &first_key()))
            .await
            .unwrap()
            .unwrap()
            .last_recheck_at,
        None
    );
    assert!(
        store
            .claim_recheck(key(&u, "groq", "r2"), once(at(402), at(102)))
            .await
            .unwrap()
    );
}

pub async fn spend_grants_the_limit_per_window_then_refuses_until_it_ends(store: Arc<impl Store>) {
    let (u, other) = (user("user-a"), user("user-b"));
    let minute = Duration::seconds(60);
    for t in 0..3 {
        assert_eq!(
            store.spend(&u, &budget("validations", 3, minute), at(t)).await.unwrap(),
            Spend::Granted
        );
    }
    // The window opened at the first spend (at 0) and ends at 60.
    assert_eq!(
        store
            .spend(&u, &budget("validations", 3, minute), at(10))
            .await
            .unwrap(),
        Spend::Refused {
            retry_after: Duration::seconds(50)
        }
    );
    assert_eq!(
        store
            .spend(&u, &budget("validations", 3, minute), at(59))
            .await
            .unwrap(),
        Spend::Refused {
            retry_after: Duration::seconds(1)
        }
    );
    // Other users and other buckets have budgets of their own.
    assert_eq!(
        store
            .spend(&other, &budget("validations", 3, minute), at(10))
            .await
            .unwrap(),
        Spend::Granted
    );
    assert_eq!(
        store.spend(&u, &budget("other", 3, minute), at(10)).await.unwrap(),
        Spend::Granted
    );
    // A new window opens at the first spend after the old one ended.
    for t in [75, 80, 90] {
        assert_eq!(
            store.spend(&u, &budget("validations", 3, minute), at(t)).await.unwrap(),
            Spend::Granted
        );
    }
    assert_eq!(
        store
            .spend(&u, &budget("validations", 3, minute), at(100))
            .await
            .unwrap(),
        Spend::Refused {
            retry_after: Duration::seconds(35)
        }
    );
}

pub async fn parallel_spenders_never_exceed_the_limit(store: Arc<impl Store>) {
    let u = user("user-a");
    let minute = Duration::seconds(60);
    // Twice: racing to open the first window, then racing to open the next.
    for now in [at(0), at(120)] {
        let spenders: Vec<_> = (0..24)
            .map(|_| {
                let (store, u) = (Arc::clone(&store), u.clone());
                tokio::spawn(async move { store.spend(&u, &budget("validations", 10, minute), now).await })
            })
            .collect();
        let mut granted = 0;
        for spender in spenders {
            match spender.await.unwrap() {
                Ok(Spend::Granted) => granted += 1,
                Ok(Spend::Refused { retry_after }) => assert_eq!(retry_after, minute),
                // A spender that lost every race is told to retry, never granted.
                Err(StoreError::Unavailable(_)) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(granted, 10, "at {now}");
    }
}

/// A credential whose verdict was reached at `checked` (seconds after [`at`]`(0)`).
fn checked_at(user: &str, provider: &str, revision: &str, checked: i64) -> StoredCredential {
    let mut c = credential(user, provider, revision);
    c.check.checked_at = Some(at(checked));
    c.updated_at = at(checked);
    c
}

fn due_users(due: &[DueCredential]) -> Vec<&str> {
    due.iter().map(|d| d.user.as_str()).collect()
}

pub async fn due_lists_a_providers_stale_credentials_oldest_first_and_nothing_else(store: Arc<impl Store>) {
    // Revisions start with different hex digits: different shards.
    for c in [
        checked_at("user-1", "groq", "3a01", 10),
        checked_at("user-2", "groq", "c702", 5),
        checked_at("user-3", "groq", "0f03", 100),
        checked_at("user-4", "openai", "7704", 1),
        checked_at("user-5", "groq", "e505", 20),
    ] {
        store.insert(&c, &models(&["m"])).await.unwrap();
    }
    let due = store.due(due_query("groq", at(50), 10)).await.unwrap();
    assert_eq!(due_users(&due), ["user-2", "user-1", "user-5"]);
    assert!(due.iter().all(|d| d.provider.id == "groq"));
    assert_eq!(due[0].fresh_at, at(5));
    assert_eq!(
        due_users(&store.due(due_query("groq", at(50), 2)).await.unwrap()),
        ["user-2", "user-1"]
    );
    assert_eq!(
        due_users(&store.due(due_query("openai", at(50), 10)).await.unwrap()),
        ["user-4"]
    );
    assert!(
        store
            .due(due_query("google_gemini", at(50), 10))
            .await
            .unwrap()
            .is_empty()
    );
    // A new verdict makes it fresh; a deleted credential is gone from the queue.
    let fresh = CheckState {
        checked_at: Some(at(200)),
        ..credential("user-2", "groq", "c702").check
    };
    store
        .record_check(key(&user("user-2"), "groq", "c702"), &fresh, ModelsUpdate::Keep)
        .await
        .unwrap();
    store.delete(&user("user-1"), groq()).await.unwrap();
    assert_eq!(
        due_users(&store.due(due_query("groq", at(50), 10)).await.unwrap()),
        ["user-5"]
    );
    // A replaced key is fresh from its own check.
    store
        .replace(Replacement::of(
            &checked_at("user-5", "groq", "1b06", 300),
            &models(&["n"]),
        ))
        .await
        .unwrap();
    assert!(store.due(due_query("groq", at(50), 10)).await.unwrap().is_empty());
    assert_eq!(
        due_users(&store.due(due_query("groq", at(300), 10)).await.unwrap()),
        ["user-3", "user-2", "user-5"]
    );
}

pub async fn claim_due_has_one_winner_and_moves_the_credential_out_of_the_queue(store: Arc<impl Store>) {
    let stored = checked_at("user-a", "groq", "5d01", 10);
    store.insert(&stored, &models(&["m"])).await.unwrap();
    let [due] = <[DueCredential; 1]>::try_from(store.due(due_query("groq", at(50), 10)).await.unwrap()).unwrap();
    // Claims in turn: the first wins. (Not concurrently: moto_server does
    // not serialise conditional writes to one item, DynamoDB does.)
    let won = store
        .claim_due(&due, at(1000))
        .await
        .unwrap()
        .expect("the first claim wins");
    assert_eq!(store.claim_due(&due, at(1001)).await.unwrap(), None);
    // The claim returns the whole credential, sealed key included.
    assert_eq!(won.sealed, stored.sealed);
    assert_eq!(won.revision, "5d01");
    assert!(store.due(due_query("groq", at(999), 10)).await.unwrap().is_empty());
    let requeued = store.due(due_query("groq", at(1000), 10)).await.unwrap();
    assert_eq!(requeued[0].fresh_at, at(1000));
    // What the queue showed before the claim claims nothing any more.
    assert_eq!(store.claim_due(&due, at(2000)).await.unwrap(), None);
    // Nor does a deleted credential.
    store.delete(&user("user-a"), groq()).await.unwrap();
    assert_eq!(store.claim_due(&requeued[0], at(2000)).await.unwrap(), None);
}

pub async fn record_attempt_keeps_the_verdict_and_backs_off(store: Arc<impl Store>) {
    let u = user("user-a");
    let attempt = FailedAttempt {
        at: at(300),
        reason: ErrorReason::RateLimited,
        failures: 2,
    };
    assert!(matches!(
        store
            .record_attempt(
                key(&u, "groq", "9a01"),
                Deferral {
                    attempt,
                    fresh_until: at(400)
                }
            )
            .await,
        Err(StoreError::NotFound)
    ));
    store
        .insert(&checked_at("user-a", "groq", "9a01", 10), &models(&["m1", "m2"]))
        .await
        .unwrap();
    store
        .record_attempt(
            key(&u, "groq", "9a01"),
            Deferral {
                attempt,
                fresh_until: at(400),
            },
        )
        .await
        .unwrap();
    let after = store.get(KeyAt::new(&u, groq(), &first_key())).await.unwrap().unwrap();
    assert_eq!(after.check.status, CredentialStatus::Valid);
    assert_eq!(after.check.reason, None);
    assert_eq!(after.check.checked_at, Some(at(10)));
    assert_eq!(after.models_count, 2);
    assert_eq!(after.last_attempt, Some(attempt));
    assert_eq!(
        store
            .models(KeyAt::new(&u, groq(), &first_key()))
            .await
            .unwrap()
            .unwrap()
            .models
            .len(),
        2
    );
    // Due again only after the back-off.
    assert!(store.due(due_query("groq", at(399), 10)).await.unwrap().is_empty());
    assert_eq!(
        due_users(&store.due(due_query("groq", at(400), 10)).await.unwrap()),
        ["user-a"]
    );
    assert!(matches!(
        store
            .record_attempt(
                key(&u, "groq", "0000"),
                Deferral {
                    attempt,
                    fresh_until: at(400)
                }
            )
            .await,
        Err(StoreError::Conflict)
    ));
    // A verdict clears the attempt.
    let verdict = CheckState {
        checked_at: Some(at(500)),
        ..after.check.clone()
    };
    store
        .record_check(key(&u, "groq", "9a01"), &verdict, ModelsUpdate::Keep)
        .await
        .unwrap();
    assert_eq!(
        store
            .get(KeyAt::new(&u, groq(), &first_key()))
            .await
            .unwrap()
            .unwrap()
            .last_attempt,
        None
    );
    // So does a new key.
    store
        .record_attempt(
            key(&u, "groq", "9a01"),
            Deferral {
                attempt,
                fresh_until: at(600),
            },
        )
        .await
        .unwrap();
    store
        .replace(Replacement::of(
            &checked_at("user-a", "groq", "ab02", 700),
            &models(&["m3"]),
        ))
        .await
        .unwrap();
    assert_eq!(
        store
            .get(KeyAt::new(&u, groq(), &first_key()))
            .await
            .unwrap()
            .unwrap()
            .last_attempt,
        None
    );
}

/// Expands to one `#[tokio::test]` per contract rule, each on a fresh store from `$make`
/// (an async expression yielding `(Arc<S>, guard)` for a `S: Store`; the guard lives to the end).
#[macro_export]
macro_rules! store_contract_tests {
    ($make:expr) => {
        $crate::store_contract_tests!(@each $make;
            insert_then_get_round_trips,
            a_keys_own_endpoint_round_trips_and_moves_with_a_replacement,
            a_replaced_key_is_kept_as_the_previous_version_until_its_keeping_ends,
            several_keys_of_a_provider_are_kept_apart_and_listed_in_order,
            another_key_is_due_and_claimed_on_its_own,
            error_state_round_trips,
            second_insert_conflicts_and_changes_nothing,
            concurrent_inserts_have_exactly_one_winner,
            replace_needs_an_existing_credential,
            replace_swaps_key_status_and_models_but_keeps_created_at,
            record_check_updates_status_and_models,
            record_check_refuses_stale_or_missing_credentials,
            delete_removes_credential_and_models,
            users_never_see_each_other,
            list_returns_all_of_a_users_credentials,
            readers_never_see_a_half_written_model_list,
            connections_are_per_user_and_expire,
            record_use_writes_the_consumer_map_and_one_entry_only_for_the_current_key,
            concurrent_uses_record_one_entry,
            activity_pages_newest_first_per_user_and_provider,
            activity_leaves_out_expired_entries_and_survives_the_credential,
            claim_recheck_lets_one_caller_per_window_and_tells_stale_from_gone,
            a_large_catalogue_of_long_ids_round_trips_exactly,
            an_incompressible_list_at_the_cap_round_trips_and_shrinks_without_leftovers,
            delete_removes_every_part_of_a_large_list,
            spend_grants_the_limit_per_window_then_refuses_until_it_ends,
            parallel_spenders_never_exceed_the_limit,
            due_lists_a_providers_stale_credentials_oldest_first_and_nothing_else,
            claim_due_has_one_winner_and_moves_the_credential_out_of_the_queue,
            record_attempt_keeps_the_verdict_and_backs_off,
        );
    };
    (@each $make:expr; $($rule:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $rule() {
                let (store, _guard) = $make.await;
                $crate::store_contract::$rule(store).await;
            }
        )*
    };
}

/// `n` models with long ids, as a large catalogue (an aggregator's) lists them.
pub fn long_id_models(n: usize) -> Vec<ModelInfo> {
    (0..n)
        .map(|i| ModelInfo {
            model_id: format!(
                "accounts/some-aggregator/models/{}-{i:05}",
                "a-rather-long-model-name".repeat(8)
            ),
            model_name: format!("A Rather Long Model Name, variant {i}"),
            context_window: Some(131_072),
            max_output_tokens: Some(8192),
            owned_by: Some("some-aggregator".to_owned()),
            first_seen_at: None,
        })
        .collect()
}

/// Models whose ids do not compress (pseudo-random), filling the stored cap
/// ([`mailmind::domain::model::MAX_LIST_JSON_BYTES`]) as far as it goes.
pub fn incompressible_models_at_the_cap() -> Vec<ModelInfo> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let all: Vec<ModelInfo> = (0..12_000)
        .map(|_| {
            let id: String = (0..240)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    char::from(b'0' + (state % 75) as u8)
                })
                .collect();
            ModelInfo {
                model_name: id.clone(),
                model_id: id,
                context_window: None,
                max_output_tokens: None,
                owned_by: None,
                first_seen_at: None,
            }
        })
        .collect();
    mailmind::domain::model::bounded(mailmind::domain::model::canonical(all))
}

pub async fn a_large_catalogue_of_long_ids_round_trips_exactly(store: Arc<impl Store>) {
    let large = long_id_models(1800);
    let json = serde_json::to_vec(&large).unwrap().len();
    assert!(json > 400 * 1024, "over a DynamoDB item as plain JSON: {json}");
    let mut c = credential("user-a", "groq", "r1");
    c.models_count = 1800;
    store.insert(&c, &large).await.unwrap();
    let list = first_models(&*store, "user-a", "groq").await.unwrap();
    assert_eq!(list.models, large);
    assert_eq!(list.discovered_at, c.updated_at);
    // And through the other two writes that store a list.
    let mut newer = credential("user-a", "groq", "r2");
    newer.models_count = 1800;
    store.replace(Replacement::of(&newer, &large)).await.unwrap();
    let check = CheckState {
        status: CredentialStatus::Valid,
        reason: None,
        retry_after_secs: None,
        quota: None,
        checked_at: Some(at(50)),
    };
    store
        .record_check(
            key(&user("user-a"), "groq", "r2"),
            &check,
            ModelsUpdate::Replace(large.clone()),
        )
        .await
        .unwrap();
    assert_eq!(first_models(&*store, "user-a", "groq").await.unwrap().models, large);
}

pub async fn an_incompressible_list_at_the_cap_round_trips_and_shrinks_without_leftovers(store: Arc<impl Store>) {
    let huge = incompressible_models_at_the_cap();
    assert!(huge.len() > 3000, "{}", huge.len());
    store.insert(&credential("user-a", "groq", "r1"), &huge).await.unwrap();
    assert_eq!(first_models(&*store, "user-a", "groq").await.unwrap().models, huge);
    // Shrink it, then grow it to a mid size, then shrink again: each read
    // sees exactly the last list, nothing of an earlier, longer one.
    let check = |secs| CheckState {
        status: CredentialStatus::Valid,
        reason: None,
        retry_after_secs: None,
        quota: None,
        checked_at: Some(at(secs)),
    };
    store
        .record_check(
            key(&user("user-a"), "groq", "r1"),
            &check(10),
            ModelsUpdate::Replace(models(&["short"])),
        )
        .await
        .unwrap();
    assert_eq!(
        first_models(&*store, "user-a", "groq").await.unwrap().models,
        models(&["short"])
    );
    let half = &huge[..huge.len() / 2];
    store
        .replace(Replacement::of(&credential("user-a", "groq", "r2"), half))
        .await
        .unwrap();
    assert_eq!(first_models(&*store, "user-a", "groq").await.unwrap().models, half);
    store
        .replace(Replacement::of(&credential("user-a", "groq", "r3"), &[]))
        .await
        .unwrap();
    assert_eq!(first_models(&*store, "user-a", "groq").await.unwrap().models, vec![]);
}

pub async fn delete_removes_every_part_of_a_large_list(store: Arc<impl Store>) {
    store
        .insert(&credential("user-a", "groq", "r1"), &incompressible_models_at_the_cap())
        .await
        .unwrap();
    store.delete(&user("user-a"), groq()).await.unwrap();
    assert_eq!(first_models(&*store, "user-a", "groq").await, None);
    // Created again with a short list, only that list is there.
    store
        .insert(&credential("user-a", "groq", "r2"), &models(&["a"]))
        .await
        .unwrap();
    assert_eq!(
        first_models(&*store, "user-a", "groq").await.unwrap().models,
        models(&["a"])
    );
}
