//! Ports: what the services need from the outside world. Adapters implement
//! them for AWS (DynamoDB, KMS, API Gateway) and for one machine (SQLite, a
//! local master key, the local server's `@connections` endpoint).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use zeroize::Zeroizing;

use crate::domain::{
    ApiKey, CheckOutcome, CheckState, FailedAttempt, ModelInfo, ModelList, ProviderSpec, StoredCredential, UserId,
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
#[derive(Debug, Clone, Copy)]
pub enum ModelsUpdate<'a> {
    /// Leave the stored list (and `models_count`) as they are.
    Keep,
    /// Replace the whole list in the same atomic step as the credential.
    Replace(&'a [ModelInfo]),
}

/// A credential the due index lists for a background re-check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueCredential {
    /// The owner.
    pub user: UserId,
    /// The provider id.
    pub provider: String,
    /// Its freshness time as the index showed it; a claim holds only if it is unchanged.
    pub fresh_at: DateTime<Utc>,
}

/// Credentials and their model lists, always scoped to one user.
#[async_trait]
pub trait CredentialStore: Send + Sync {
    /// The user's credential for a provider (strongly consistent).
    async fn get(&self, user: &UserId, provider: &str) -> Result<Option<StoredCredential>, StoreError>;

    /// All of the user's credentials, in any order.
    async fn list(&self, user: &UserId) -> Result<Vec<StoredCredential>, StoreError>;

    /// Stores a new credential with its model list in one atomic step.
    /// `Conflict` when the user already has one for the provider.
    async fn insert(&self, credential: &StoredCredential, models: &[ModelInfo]) -> Result<(), StoreError>;

    /// Replaces key, hint, status and model list of an existing credential in
    /// one atomic step, keeping `created_at`. `NotFound` when there is none.
    async fn replace(&self, credential: &StoredCredential, models: &[ModelInfo]) -> Result<(), StoreError>;

    /// Records the result of checking the key with `revision`. `NotFound` when
    /// the credential is gone, `Conflict` when its key was replaced meanwhile.
    async fn record_check(
        &self,
        user: &UserId,
        provider: &str,
        revision: &str,
        check: &CheckState,
        models: ModelsUpdate<'_>,
    ) -> Result<(), StoreError>;

    /// Records that the key with `revision` was used `at`, in one conditional
    /// write, unless a use at or after `unless_since` is recorded already.
    /// `Ok(false)` when nothing was written: used recently, or the key was
    /// replaced or deleted meanwhile (nothing to record then).
    async fn record_use(
        &self,
        user: &UserId,
        provider: &str,
        revision: &str,
        at: DateTime<Utc>,
        unless_since: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Claims the one re-check of the key with `revision` a window allows, in
    /// one conditional write, so concurrent callers agree: `Ok(true)` records
    /// `at` as the re-check time, `Ok(false)` means a re-check at or after
    /// `unless_since` was claimed already. `NotFound` when the credential is
    /// gone, `Conflict` when its key was replaced.
    async fn claim_recheck(
        &self,
        user: &UserId,
        provider: &str,
        revision: &str,
        at: DateTime<Utc>,
        unless_since: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Deletes the credential and its models together. `NotFound` when there is none.
    async fn delete(&self, user: &UserId, provider: &str) -> Result<(), StoreError>;

    /// The stored model list, if any.
    async fn models(&self, user: &UserId, provider: &str) -> Result<Option<ModelList>, StoreError>;

    // Background re-validation. Every credential carries a freshness time
    // `fresh_at`: the check time of its stored verdict (insert, replace and
    // record_check set it), moved on by claims and failed attempts. An index
    // on (provider, fresh_at) finds what is due without reading the rest.

    /// Up to `limit` of `provider`'s credentials with `fresh_at` at or before
    /// `before`, oldest first, through the due index (never a scan).
    async fn due(&self, provider: &str, before: DateTime<Utc>, limit: usize) -> Result<Vec<DueCredential>, StoreError>;

    /// Claims `due` for one background check in one conditional write: moves
    /// its `fresh_at` to `fresh_until` if it is still `due.fresh_at`, and
    /// returns the credential as it now stands. `Ok(None)` when another run
    /// claimed it, a check refreshed it, or it was deleted meanwhile.
    async fn claim_due(
        &self,
        due: &DueCredential,
        fresh_until: DateTime<Utc>,
    ) -> Result<Option<StoredCredential>, StoreError>;

    /// Records a background check of the key with `revision` that reached no
    /// verdict: status, reason and models stay; the attempt is recorded and
    /// `fresh_at` set to `fresh_until` (the back-off). `NotFound` when the
    /// credential is gone, `Conflict` when its key was replaced meanwhile.
    async fn record_attempt(
        &self,
        user: &UserId,
        provider: &str,
        revision: &str,
        attempt: &FailedAttempt,
        fresh_until: DateTime<Utc>,
    ) -> Result<(), StoreError>;
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

/// Per-user budgets of costly work (provider-calling validations), kept in
/// the store so every process and Lambda instance spends from the same one.
#[async_trait]
pub trait LimitStore: Send + Sync {
    /// Spends one of the `limit` (at least 1) units `user` has for `bucket`
    /// in a fixed window of length `window`, in one atomic step, so parallel
    /// spenders never exceed `limit`. A window opens at the first spend after
    /// the previous one ended (`now` is the clock, passed in).
    async fn spend(
        &self,
        user: &UserId,
        bucket: &str,
        limit: u32,
        window: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<Spend, StoreError>;
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

/// Binds a sealed key to its owner and provider: the KMS encryption context,
/// and (in the byte form `envelope` gives it) the AES-GCM associated data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptionContext {
    /// The owner.
    pub user: UserId,
    /// The provider id.
    pub provider: String,
}

impl EncryptionContext {
    /// The `app` entry every context carries; key policies can require it.
    pub const APP: &'static str = "mailmind";

    /// The context of `user`'s key for `provider`.
    pub fn new(user: &UserId, provider: &str) -> EncryptionContext {
        EncryptionContext {
            user: user.clone(),
            provider: provider.to_owned(),
        }
    }

    /// The context as key/value pairs, sorted by key (KMS `EncryptionContext`).
    pub fn pairs(&self) -> [(&'static str, &str); 3] {
        [
            ("app", Self::APP),
            ("provider", &self.provider),
            ("user", self.user.as_str()),
        ]
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
        key_id: &str,
        wrapped: &[u8],
        context: &EncryptionContext,
    ) -> Result<Zeroizing<[u8; 32]>, KeyringError>;
}

/// Asks a provider whether a key works and which models it unlocks.
#[async_trait]
pub trait ProviderClient: Send + Sync {
    /// Never fails: every failure is a classified [`CheckOutcome::Failed`].
    async fn check(&self, provider: &'static ProviderSpec, key: &ApiKey) -> CheckOutcome;

    /// [`check`](Self::check), with the key's credit where the provider
    /// tells it (OpenRouter's key endpoint); `None` elsewhere.
    async fn check_with_quota(
        &self,
        provider: &'static ProviderSpec,
        key: &ApiKey,
    ) -> (CheckOutcome, Option<crate::domain::quota::Quota>) {
        (self.check(provider, key).await, None)
    }

    /// The root of `provider`'s API this client talks to (its
    /// `PROVIDER_BASE_URL_<ID>` override, else the production URL), which is
    /// also where a key from this service is meant to be used.
    fn base_url(&self, provider: &'static ProviderSpec) -> String {
        provider.default_base_url.to_owned()
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
