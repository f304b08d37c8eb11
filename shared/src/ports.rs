//! Ports: what the services need from the outside world. Adapters implement
//! them for AWS (DynamoDB, KMS, API Gateway) and for one machine (SQLite, a
//! local master key, the local server's `@connections` endpoint).
//!
//! Providers cross the ports as entries of the registry: `&ProviderSpec`
//! where a call borrows one, `&'static ProviderSpec` where a value keeps one.
//! `domain::provider::PROVIDERS` is the only place a `ProviderSpec` is made,
//! so no port can be handed an unknown provider id, and no newtype is needed
//! to say so: the entry is already the typed id, and it carries what adapters
//! need beside it (the name, the base URL). Stores and keyrings still write
//! `ProviderSpec::id`, so stored keys, rows and encryption contexts are the
//! same strings as ever.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use zeroize::Zeroizing;

use crate::domain::activity::{ActivityEntry, ActivityPage, ActivityQuery, ConsumerUses};
use crate::domain::endpoint::{Endpoint, EndpointRefusal};
use crate::domain::named_key::{KeyId, KeyMeta};
use crate::domain::{
    ApiKey, CheckOutcome, CheckState, FailedAttempt, ModelInfo, ModelList, PreviousKey, ProviderSpec, StoredCredential,
    UserId,
};

/// Storage failures, in the terms the API answers with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The item the write expected is not there (update, check, delete).
    #[error("not found")]
    NotFound,
    /// The write lost a race: the item exists (create) or changed (check).
    #[error("conflict")]
    Conflict,
    /// Throttled, unreachable, timed out: safe to retry.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Anything else (corrupt item, misconfiguration).
    #[error("store failure: {0}")]
    Internal(String),
}

/// How a write treats the stored model list.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelsUpdate {
    /// Leave the stored list (and `models_count`) as they are.
    Keep,
    /// Replace the whole list in the same atomic step as the credential.
    Replace(Vec<ModelInfo>),
}

/// Where one key is: its owner, its provider and its id within the provider.
#[derive(Debug, Clone, Copy)]
pub struct KeyAt<'a> {
    /// The owner.
    pub user: &'a UserId,
    /// The provider.
    pub provider: &'a ProviderSpec,
    /// Which of the provider's keys.
    pub key: &'a KeyId,
}

impl<'a> KeyAt<'a> {
    /// `user`'s key `key` of `provider`.
    pub fn new(user: &'a UserId, provider: &'a ProviderSpec, key: &'a KeyId) -> KeyAt<'a> {
        KeyAt { user, provider, key }
    }

    /// Where `credential` is stored.
    pub fn of(credential: &'a StoredCredential) -> KeyAt<'a> {
        KeyAt::new(&credential.user_id, credential.provider, &credential.key.id)
    }
}

/// What the user decided about one key (name, priority, enabled), to store
/// on its own: `meta.id` names the key.
#[derive(Debug, Clone, Copy)]
pub struct MetaChange<'a> {
    /// The owner.
    pub user: &'a UserId,
    /// The provider.
    pub provider: &'a ProviderSpec,
    /// The key's id and its new settings.
    pub meta: &'a KeyMeta,
    /// The revision the key must still have, if any.
    pub if_revision: Option<&'a str>,
}

/// Which key a write is about: `user`'s credential for `provider` while it
/// holds the key with `revision`. Writes that name one change nothing once
/// that key is gone: `NotFound` when the credential was deleted, `Conflict`
/// when its key was replaced (unless the method says otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRevision {
    /// The owner.
    pub user: UserId,
    /// The provider.
    pub provider: &'static ProviderSpec,
    /// Which of the provider's keys.
    pub key: KeyId,
    /// The key's revision as it was read.
    pub revision: String,
}

impl KeyRevision {
    /// Where the key is.
    pub fn at(&self) -> KeyAt<'_> {
        KeyAt::new(&self.user, self.provider, &self.key)
    }

    /// The key `credential` holds.
    pub fn of(credential: &StoredCredential) -> KeyRevision {
        KeyRevision {
            user: credential.user_id.clone(),
            provider: credential.provider,
            key: credential.key.id.clone(),
            revision: credential.revision.clone(),
        }
    }
}

/// A new key taking the place of a stored one (same id).
#[derive(Debug, Clone, Copy)]
pub struct Replacement<'a> {
    /// The key as it is to be stored (its `previous` is not read: the
    /// stores write that note from `retired`).
    pub credential: &'a StoredCredential,
    /// Its model list.
    pub models: &'a [ModelInfo],
    /// The revision the stored key must still have, if any.
    pub if_revision: Option<&'a str>,
    /// The key it replaces, kept as its previous version (any older one is
    /// forgotten); `None` keeps none.
    pub retired: Option<&'a PreviousKey>,
}

impl<'a> Replacement<'a> {
    /// `credential` with `models`, unconditionally, keeping no previous version.
    pub fn of(credential: &'a StoredCredential, models: &'a [ModelInfo]) -> Replacement<'a> {
        Replacement {
            credential,
            models,
            if_revision: None,
            retired: None,
        }
    }

    /// Only while the stored key is at `revision`.
    pub fn if_revision(self, revision: &'a str) -> Replacement<'a> {
        Replacement {
            if_revision: Some(revision),
            ..self
        }
    }

    /// Keeping `previous` as the previous version.
    pub fn retiring(self, previous: &'a PreviousKey) -> Replacement<'a> {
        Replacement {
            retired: Some(previous),
            ..self
        }
    }
}

/// A time a store writes at most once per window, in one conditional write
/// so that concurrent writers agree: `at`, unless a time at or after
/// `unless_since` is stored already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OncePerWindow {
    /// The time to write.
    pub at: DateTime<Utc>,
    /// The start of the window.
    pub unless_since: DateTime<Utc>,
}

/// A use of a key worth recording: its consumer's first this hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUse {
    /// The consumer map as the resolve read it (the write's condition).
    pub seen: ConsumerUses,
    /// The map to store: `seen` with this consumer's use.
    pub uses: ConsumerUses,
    /// The `used` entry, whose time is also the new `last_used_at`.
    pub entry: ActivityEntry,
}

/// Which due credentials to list: up to `limit` of `provider`'s with
/// `fresh_at` at or before `before`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DueQuery {
    /// The provider whose queue to read.
    pub provider: &'static ProviderSpec,
    /// The freshness cut-off.
    pub before: DateTime<Utc>,
    /// The most to return.
    pub limit: usize,
}

/// A credential the due index lists for a background re-check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueCredential {
    /// The owner.
    pub user: UserId,
    /// The provider.
    pub provider: &'static ProviderSpec,
    /// Which of the provider's keys.
    pub key: KeyId,
    /// Its freshness time as the index showed it; a claim holds only if it is unchanged.
    pub fresh_at: DateTime<Utc>,
}

/// A background check that reached no verdict, as it is recorded: the
/// attempt, and `fresh_until`, which puts the credential back in the due
/// queue once its back-off has passed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Deferral {
    /// The attempt (when, why, how many in a row).
    pub attempt: FailedAttempt,
    /// The freshness time to store.
    pub fresh_until: DateTime<Utc>,
}

/// Credentials and their model lists, always scoped to one user.
#[async_trait]
pub trait CredentialStore: Send + Sync {
    /// The key `at` names (strongly consistent).
    async fn get(&self, at: KeyAt<'_>) -> Result<Option<StoredCredential>, StoreError>;

    /// Every key the user keeps for a provider, in the provider's order
    /// (priority, then age, then id), in one read.
    async fn keys(&self, user: &UserId, provider: &ProviderSpec) -> Result<Vec<StoredCredential>, StoreError>;

    /// All of the user's credentials of supported providers, in any order.
    async fn list(&self, user: &UserId) -> Result<Vec<StoredCredential>, StoreError>;

    /// Stores a new credential with its model list in one atomic step.
    /// `Conflict` when the user already has one for the provider.
    async fn insert(&self, credential: &StoredCredential, models: &[ModelInfo]) -> Result<(), StoreError>;

    /// Replaces key, hint, status and model list of an existing credential,
    /// and its previous version, in one atomic step ([`Replacement`]),
    /// keeping `created_at`. `NotFound` when there is none; given
    /// `if_revision`, `Conflict` unless the stored key is that one.
    async fn replace(&self, replacement: Replacement<'_>) -> Result<(), StoreError>;

    /// The previous version of the key `at` names while it is kept (never one past
    /// its `kept_until`, whether or not the store has forgotten it yet).
    async fn previous(&self, at: KeyAt<'_>) -> Result<Option<PreviousKey>, StoreError>;

    /// Records the result of checking `key`: the check, and the models as
    /// `models` says, in one atomic step.
    async fn record_check(&self, key: KeyRevision, check: &CheckState, models: ModelsUpdate) -> Result<(), StoreError>;

    /// Records a use of `key` ([`KeyUse`]) in one atomic, conditional step:
    /// `last_used_at` and the consumer map set, and the `used` activity entry
    /// added, only while the key is `key.revision` and the stored consumer
    /// map is still `use_.seen`. `Ok(false)` when nothing was written: another
    /// writer recorded a use meanwhile, or the key was replaced or deleted
    /// (nothing to record then, and no error).
    async fn record_use(&self, key: KeyRevision, use_: &KeyUse) -> Result<bool, StoreError>;

    /// Claims the one re-check of `key` a window allows ([`OncePerWindow`]):
    /// `Ok(true)` records `when.at` as the re-check time, `Ok(false)` means a
    /// re-check in the window was claimed already.
    async fn claim_recheck(&self, key: KeyRevision, when: OncePerWindow) -> Result<bool, StoreError>;

    /// Deletes every key of the provider, their models and previous versions together.
    /// `NotFound` when there is none.
    async fn delete(&self, user: &UserId, provider: &ProviderSpec) -> Result<(), StoreError>;

    /// Rests `key` until `until` (a rate limit met in use), only while it
    /// is `key.revision`, and never sooner than a rest already stored:
    /// concurrent reports agree on the latest. `Conflict` / `NotFound` as
    /// for [`Self::record_check`].
    async fn cool_down(&self, key: KeyRevision, until: DateTime<Utc>) -> Result<(), StoreError>;

    /// Sets what the user decided about a key (name, priority, enabled),
    /// nothing else; given `if_revision`, only while the key is that one
    /// (`Conflict` otherwise). `NotFound` when there is no such key.
    async fn set_meta(&self, change: MetaChange<'_>) -> Result<(), StoreError>;

    /// Deletes one key, its models and its previous version together. `NotFound` when there is none.
    /// Given `if_revision`, only while the key is that one (`Conflict` otherwise).
    async fn delete_key(&self, at: KeyAt<'_>, if_revision: Option<&str>) -> Result<(), StoreError>;

    /// The stored model list of the key `at` names, if any.
    async fn models(&self, at: KeyAt<'_>) -> Result<Option<ModelList>, StoreError>;

    // Background re-validation. Every credential carries a freshness time
    // `fresh_at`: the check time of its stored verdict (insert, replace and
    // record_check set it), moved on by claims and failed attempts. An index
    // on (provider, fresh_at) finds what is due without reading the rest.

    /// The credentials `query` asks for, oldest first, through the due index
    /// (never a scan).
    async fn due(&self, query: DueQuery) -> Result<Vec<DueCredential>, StoreError>;

    /// Claims `due` for one background check in one conditional write: moves
    /// its `fresh_at` to `fresh_until` if it is still `due.fresh_at`, and
    /// returns the credential as it now stands. `Ok(None)` when another run
    /// claimed it, a check refreshed it, or it was deleted meanwhile.
    async fn claim_due(
        &self,
        due: &DueCredential,
        fresh_until: DateTime<Utc>,
    ) -> Result<Option<StoredCredential>, StoreError>;

    /// Records a background check of `key` that reached no verdict: status,
    /// reason and models stay; the attempt is recorded and `fresh_at` set to
    /// the deferral's `fresh_until` (the back-off).
    async fn record_attempt(&self, key: KeyRevision, deferral: Deferral) -> Result<(), StoreError>;
}

/// Each user's per-key activity history (`domain::activity`), in the same
/// store as the credentials. Entries outlive the credential and expire
/// [`crate::domain::activity::RETENTION`] after their time.
#[async_trait]
pub trait ActivityStore: Send + Sync {
    /// Adds one entry to `user`'s history of `provider`'s key.
    async fn append(&self, user: &UserId, provider: &ProviderSpec, entry: &ActivityEntry) -> Result<(), StoreError>;

    /// A page of that history, newest first, without expired entries.
    async fn activity(
        &self,
        user: &UserId,
        provider: &ProviderSpec,
        query: &ActivityQuery,
    ) -> Result<ActivityPage, StoreError>;
}

/// What spending one unit of a budget came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spend {
    /// Spent: go ahead.
    Granted,
    /// The window's budget is used up; it opens again after `retry_after`.
    Refused {
        /// Until the window ends (never zero or negative).
        retry_after: chrono::Duration,
    },
}

/// A per-user budget: `limit` units of `bucket` in each fixed window of
/// length `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// What the units are spent on, e.g. `validations`.
    pub bucket: &'static str,
    /// Units per window, at least 1.
    pub limit: u32,
    /// The window's length.
    pub window: chrono::Duration,
}

/// Per-user budgets of costly work (provider-calling validations), kept in
/// the store so every process and Lambda instance spends from the same one.
#[async_trait]
pub trait LimitStore: Send + Sync {
    /// Spends one unit of `user`'s `budget`, in one atomic step, so parallel
    /// spenders never exceed its limit. A window opens at the first spend
    /// after the previous one ended (`now` is the clock, passed in).
    async fn spend(&self, user: &UserId, budget: &Budget, now: DateTime<Utc>) -> Result<Spend, StoreError>;
}

/// A live WebSocket connection of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// Whose connection it is (the `$connect` authorizer's principal).
    pub user: UserId,
    /// API Gateway's id for it, the address of `@connections/{id}`.
    pub connection_id: String,
    /// When the socket opened.
    pub connected_at: DateTime<Utc>,
    /// After this the store may forget the connection by itself (DynamoDB TTL).
    pub expires_at: DateTime<Utc>,
}

/// The users' live WebSocket connections: who to push a status to.
#[async_trait]
pub trait ConnectionStore: Send + Sync {
    /// Remembers a connection (replacing one with the same id).
    async fn save_connection(&self, connection: &Connection) -> Result<(), StoreError>;

    /// Forgets a connection; forgetting an unknown one is not an error.
    async fn remove_connection(&self, user: &UserId, connection_id: &str) -> Result<(), StoreError>;

    /// Ids of the user's connections that have not expired.
    async fn connections(&self, user: &UserId) -> Result<Vec<String>, StoreError>;
}

/// Binds a sealed key to its owner and provider, and to its endpoint where
/// the user gave one: the KMS encryption context, and (in the byte form
/// `envelope` gives it) the AES-GCM associated data. A stored endpoint
/// changed behind the service's back makes the key unopenable, so nobody can
/// redirect a key by writing to the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptionContext {
    /// The owner.
    pub user: UserId,
    /// The provider (its id is what the context says).
    pub provider: &'static ProviderSpec,
    /// The user's endpoint, for a provider without a fixed one.
    pub endpoint: Option<crate::domain::endpoint::Endpoint>,
}

impl EncryptionContext {
    /// The `app` entry every context carries; key policies can require it.
    pub const APP: &'static str = "mailmind";

    /// The context of `user`'s key for `provider`.
    pub fn new(user: &UserId, provider: &'static ProviderSpec) -> EncryptionContext {
        EncryptionContext {
            user: user.clone(),
            provider,
            endpoint: None,
        }
    }

    /// The context `credential`'s key was sealed under.
    pub fn of(credential: &StoredCredential) -> EncryptionContext {
        EncryptionContext::new(&credential.user_id, credential.provider).at(credential.endpoint.as_ref())
    }

    /// The context of a key that lives at `endpoint` (`None` for a provider with a fixed one).
    pub fn at(self, endpoint: Option<&crate::domain::endpoint::Endpoint>) -> EncryptionContext {
        EncryptionContext {
            endpoint: endpoint.cloned(),
            ..self
        }
    }

    /// The context a KMS `EncryptionContext` map names: exactly `app`
    /// (`mailmind`), `user` (a valid user id), `provider` (a known provider)
    /// and, for a provider whose keys name their endpoint, `endpoint`;
    /// `None` for anything else (missing, extra or invalid entries).
    pub fn from_pairs(pairs: &std::collections::HashMap<String, String>) -> Option<EncryptionContext> {
        if pairs.get("app").map(String::as_str) != Some(Self::APP) {
            return None;
        }
        let user = UserId::parse(pairs.get("user")?)?;
        let provider = crate::domain::provider::find(pairs.get("provider")?)?;
        let endpoint = match (provider.endpoint_per_key(), pairs.get("endpoint")) {
            (true, Some(url)) => Some(crate::domain::endpoint::Endpoint::accepted(url.clone())),
            (false, None) => None,
            _ => return None,
        };
        let context = EncryptionContext::new(&user, provider).at(endpoint.as_ref());
        (pairs.len() == context.pairs().len()).then_some(context)
    }

    /// The context as key/value pairs, sorted by key (KMS `EncryptionContext`).
    pub fn pairs(&self) -> Vec<(&'static str, &str)> {
        let mut pairs = vec![("app", Self::APP)];
        if let Some(endpoint) = &self.endpoint {
            pairs.push(("endpoint", endpoint.as_str()));
        }
        pairs.extend([("provider", self.provider.id), ("user", self.user.as_str())]);
        pairs
    }
}

/// A 256-bit data key: plaintext for one seal or open, and its wrapped form.
pub struct DataKey {
    /// The key itself, wiped on drop.
    pub plaintext: Zeroizing<[u8; 32]>,
    /// The key encrypted under the master key, stored beside the ciphertext.
    pub wrapped: Vec<u8>,
    /// Which master key wrapped it.
    pub key_id: String,
}

impl DataKey {
    /// Its wrapped form, as [`Keyring::decrypt_data_key`] takes it.
    pub fn wrapped_key(&self) -> WrappedKey<'_> {
        WrappedKey {
            key_id: &self.key_id,
            bytes: &self.wrapped,
        }
    }
}

/// A data key as it is stored: wrapped under a master key, with the id of
/// that master key (neither means anything without the other).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrappedKey<'a> {
    /// Which master key wrapped it.
    pub key_id: &'a str,
    /// The wrapped bytes.
    pub bytes: &'a [u8],
}

/// Key service failures.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// Throttled or unreachable: safe to retry.
    #[error("key service unavailable: {0}")]
    Unavailable(String),
    /// The ciphertext does not open under this context (tampered, moved to
    /// another user, wrong key): fail closed.
    #[error("sealed key does not open")]
    Rejected,
    /// Access denied, misconfiguration, anything else.
    #[error("key service failure: {0}")]
    Internal(String),
}

/// Wraps and unwraps data keys under a master key (KMS, or a local key file).
#[async_trait]
pub trait Keyring: Send + Sync {
    /// A fresh data key for one write, wrapped under `context`.
    async fn generate_data_key(&self, context: &EncryptionContext) -> Result<DataKey, KeyringError>;

    /// Unwraps a data key; fails with `Rejected` unless `context` is the one it was wrapped under.
    async fn decrypt_data_key(
        &self,
        wrapped: WrappedKey<'_>,
        context: &EncryptionContext,
    ) -> Result<Zeroizing<[u8; 32]>, KeyringError>;
}

/// Asks a provider whether a key works and which models it unlocks.
#[async_trait]
pub trait ProviderClient: Send + Sync {
    /// Never fails: every failure is a classified [`CheckOutcome::Failed`].
    /// `endpoint` is the key's own, for a provider whose keys name one.
    async fn check(&self, provider: &'static ProviderSpec, endpoint: Option<&Endpoint>, key: &ApiKey) -> CheckOutcome;

    /// [`check`](Self::check), with the key's credit where the provider
    /// tells it (OpenRouter's key endpoint); `None` elsewhere.
    async fn check_with_quota(
        &self,
        provider: &'static ProviderSpec,
        endpoint: Option<&Endpoint>,
        key: &ApiKey,
    ) -> (CheckOutcome, Option<crate::domain::quota::Quota>) {
        (self.check(provider, endpoint, key).await, None)
    }

    /// The root of `provider`'s API this client talks to (its
    /// `PROVIDER_BASE_URL_<ID>` override, else the production URL), which is
    /// also where a key from this service is meant to be used; empty for a
    /// provider whose keys name their own.
    fn base_url(&self, provider: &'static ProviderSpec) -> String {
        provider.default_base_url().unwrap_or_default().to_owned()
    }

    /// The endpoint a user gave, if this deployment may call it (the egress
    /// guard: scheme, port, and every address its host resolves to), or why
    /// not. A client that calls no user-given endpoint refuses them all.
    async fn admit_endpoint(&self, given: &str) -> Result<Endpoint, EndpointRefusal> {
        let _ = given;
        Err(EndpointRefusal::NotCalled)
    }
}

/// The connections a user had when a validation started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audience {
    /// Whose connections these are.
    pub user: UserId,
    /// Their ids; pushes drop the ones that turn out to be gone.
    pub connection_ids: Vec<String>,
}

/// Pushes messages to a user's live WebSocket connections.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Looks up where to push; a failed lookup is logged and yields nobody.
    async fn audience(&self, user: &UserId) -> Audience;

    /// Posts `message` to every connection of `audience`, concurrently and
    /// within a short bound. Connections that are gone are forgotten and dropped
    /// from `audience`. Never fails.
    async fn push(&self, audience: &mut Audience, message: &str);
}

/// Why a relayed report got no answer.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RelayError(pub String);

/// Runs a `credentials-resolve` request in a function that may open keys,
/// for one that may not: `credentials-resolve` holds no KMS permission, and
/// a `rejected` report re-checks the key with the provider.
#[async_trait]
pub trait ReportRelay: Send + Sync {
    /// The other function's answer to `event`, as it answered.
    async fn relay(&self, event: &serde_json::Value) -> Result<serde_json::Value, RelayError>;
}

/// Where changes of a key's status are told to the rest of MailMind
/// (EventBridge on AWS, a file locally).
#[async_trait]
pub trait StatusEvents: Send + Sync {
    /// Publishes `change`. Never fails the caller: an adapter bounds its
    /// time, and logs and counts what it could not publish.
    async fn publish(&self, change: &crate::domain::StatusChange);
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn pairs(list: &[(&str, &str)]) -> HashMap<String, String> {
        list.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn an_encryption_context_comes_only_from_exactly_its_pairs() {
        let context =
            EncryptionContext::from_pairs(&pairs(&[("app", "mailmind"), ("user", "alice"), ("provider", "groq")]))
                .unwrap();
        assert_eq!(
            context.pairs(),
            [("app", "mailmind"), ("provider", "groq"), ("user", "alice")]
        );
        let at_endpoint = EncryptionContext::from_pairs(&pairs(&[
            ("app", "mailmind"),
            ("user", "alice"),
            ("provider", "openai_compatible"),
            ("endpoint", "https://llm.example.com/v1"),
        ]))
        .unwrap();
        assert_eq!(
            at_endpoint.pairs(),
            [
                ("app", "mailmind"),
                ("endpoint", "https://llm.example.com/v1"),
                ("provider", "openai_compatible"),
                ("user", "alice")
            ]
        );
        for bad in [
            pairs(&[("app", "other"), ("user", "alice"), ("provider", "groq")]),
            pairs(&[("app", "mailmind"), ("user", ""), ("provider", "groq")]),
            pairs(&[("app", "mailmind"), ("user", "alice"), ("provider", "nope")]),
            pairs(&[("app", "mailmind"), ("user", "alice")]),
            pairs(&[("app", "mailmind"), ("user", "alice"), ("provider", "groq"), ("x", "y")]),
            pairs(&[("app", "mailmind"), ("usr", "alice"), ("provider", "groq")]),
            // An endpoint only with a provider whose keys name one, and always with it.
            pairs(&[
                ("app", "mailmind"),
                ("user", "alice"),
                ("provider", "groq"),
                ("endpoint", "https://a.example"),
            ]),
            pairs(&[
                ("app", "mailmind"),
                ("user", "alice"),
                ("provider", "openai_compatible"),
            ]),
        ] {
            assert!(EncryptionContext::from_pairs(&bad).is_none(), "{bad:?}");
        }
    }
}
