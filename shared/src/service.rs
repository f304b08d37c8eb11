//! The credential service: every behaviour of the REST API, written once over
//! the ports, and used alike by the Lambda functions and the local server.
//!
//! A validation (create, update, check) runs: spend one of the user's
//! validations ([`ValidationLimit`]; a refusal calls and stores nothing) →
//! seal the key (so a key service outage fails before anything is announced)
//! → push `checking` while asking the provider → store key, status and models in one atomic write → push the
//! final status. Any failure leaves the stored state as it was.

use std::sync::Arc;

use chrono::Utc;

use crate::audit::{self, AuditAction, AuditedOutcome};
use crate::domain::activity::{ActivityEvent, CheckedBy};
use crate::domain::endpoint::{Endpoint, EndpointRefusal};
use crate::domain::key_prefix;
use crate::domain::model::{ListChange, carry_history};
use crate::domain::named_key::{self, KeyId, KeyMeta};
use crate::domain::provider::PROVIDERS;
use crate::domain::quota::Quota;
use crate::domain::{
    ApiKey, CheckOutcome, CheckState, CredentialStatus, CredentialView, ModelInfo, ModelView, PreviousKey,
    ProviderSpec, SealedKey, StatusChange, StatusEvent, StoredCredential, UserId,
};
use crate::envelope;
use named_keys::admit_another;
pub use named_keys::{IfMatch, KeyPatch};

mod activity;
mod keys;
mod limits;
mod named_keys;
mod revalidate;

use crate::ports::{
    ActivityStore, Audience, Connection, ConnectionStore, CredentialStore, EncryptionContext, KeyAt, KeyRevision,
    Keyring, KeyringError, ModelsUpdate, Notifier, ProviderClient, Replacement, StatusEvents, StoreError,
};
pub use activity::NoActivity;
pub use keys::{Chosen, LAST_USE_RESOLUTION, RECHECK_INTERVAL, ReportAnswer, ResolvedKey};
pub use limits::{DEFAULT_MAX_CONNECTIONS_PER_USER, VALIDATIONS_BUCKET, ValidationLimit};
pub use revalidate::{RevalidationPolicy, RevalidationRun};

/// What the service's operations answer: their value, or why not.
pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// Failures, each saying what happened; `handlers::protocol` words them for
/// people (the API's `detail`).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// `POST` for a provider that already has a key.
    #[error("a {} key is stored already", .0.id)]
    CredentialExists(&'static ProviderSpec),
    /// No key is set for that provider.
    #[error("no {} key is stored", .0.id)]
    CredentialNotFound(&'static ProviderSpec),
    /// The provider said the new key is not valid; nothing was stored.
    #[error("{} rejected the new key; nothing was stored", .0.id)]
    KeyRejected(&'static ProviderSpec),
    /// The user has started as many validations as the window allows;
    /// nothing was called or stored.
    #[error("validation budget spent ({limit} per {window_secs} s); the window ends in {retry_after_secs} s")]
    TooManyRequests {
        /// Validations per window.
        limit: u32,
        /// The window's length.
        window_secs: u64,
        /// Until the window ends, whole seconds rounded up.
        retry_after_secs: u64,
    },
    /// The user has as many sockets open as allowed; the new one is refused.
    #[error("the user has the most live connections allowed ({0})")]
    TooManyConnections(u32),
    /// The key carries another provider's distinctive prefix: it was pasted
    /// under the wrong provider. Refused before any network call.
    #[error("the key carries a {} key prefix", .0.id)]
    KeyProviderMismatch(&'static ProviderSpec),
    /// No such key of the provider.
    #[error("no such {} key", .0.id)]
    KeyNotFound(&'static ProviderSpec),
    /// Another key of the provider has that name.
    #[error("a {} key is named so already", .0.id)]
    KeyNameTaken(&'static ProviderSpec, String),
    /// Every key of the provider is off, invalid, out of credit or resting.
    #[error("no {} key can be used now", .0.id)]
    NoUsableKey(
        &'static ProviderSpec,
        Vec<(crate::domain::named_key::KeyId, crate::domain::named_key::Unusable)>,
    ),
    /// A rotation's new key got no verdict (rate limit, outage...): the old
    /// key stays; try again (after the provider's wait, if it named one).
    #[error("the new {} key could not be checked; the old one stays", .0.id)]
    KeyNotVerified(&'static ProviderSpec, Option<u64>),
    /// `If-Match` named a revision the key no longer has; nothing changed.
    #[error("the {} key changed since it was read", .0.id)]
    PreconditionFailed(&'static ProviderSpec),
    /// A rollback of a key that has no previous version kept.
    #[error("the {} key has no previous version to roll back to", .0.id)]
    NoPreviousKey(&'static ProviderSpec),
    /// The provider has as many keys as allowed.
    #[error("the {} keys are at their limit", .0.id)]
    TooManyKeys(&'static ProviderSpec),
    /// The endpoint a user gave is not one this deployment may call.
    #[error("endpoint refused: {0}")]
    EndpointNotAllowed(EndpointRefusal),
    /// Storage or key service failed in a way that is safe to retry.
    #[error("{0}")]
    Unavailable(String),
    /// Anything else; nothing was changed.
    #[error("{0}")]
    Internal(String),
}

impl ServiceError {
    /// The API's error code for this failure (docs/API.md, "Errors"): what
    /// the handlers answer with and what an audit line says of a refusal.
    pub fn code(&self) -> &'static str {
        match self {
            ServiceError::CredentialExists(_) => "credential_exists",
            ServiceError::CredentialNotFound(_) => "credential_not_found",
            ServiceError::KeyRejected(_) => "key_rejected",
            ServiceError::KeyProviderMismatch(_) => "key_provider_mismatch",
            ServiceError::EndpointNotAllowed(_) => "endpoint_not_allowed",
            ServiceError::KeyNotFound(_) => "key_not_found",
            ServiceError::KeyNameTaken(..) => "key_name_taken",
            ServiceError::TooManyKeys(_) => "too_many_keys",
            ServiceError::NoPreviousKey(_) => "no_previous_key",
            ServiceError::NoUsableKey(..) => "no_usable_key",
            ServiceError::PreconditionFailed(_) => "precondition_failed",
            ServiceError::KeyNotVerified(..) => "key_not_verified",
            ServiceError::Unavailable(_) => "service_unavailable",
            ServiceError::TooManyRequests { .. } => "too_many_requests",
            ServiceError::TooManyConnections(_) => "too_many_connections",
            ServiceError::Internal(_) => "internal",
        }
    }
}

impl AuditedOutcome for ServiceError {
    fn outcome(&self) -> &'static str {
        self.code()
    }
}

/// Runs `work` and writes its audit line ([`crate::audit`]) whatever the outcome.
async fn audited<T: AuditedOutcome>(
    user: &UserId,
    action: AuditAction,
    provider: &'static ProviderSpec,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let result = work.await;
    audit::record_result(user, action, provider, &result);
    result
}

/// Refuses a key that evidently belongs to another provider (see
/// [`crate::domain::key_prefix`]).
fn refuse_foreign_key(provider: &'static ProviderSpec, key: &ApiKey) -> Result<()> {
    match key_prefix::belongs_elsewhere(provider, key) {
        Some(owner) => Err(ServiceError::KeyProviderMismatch(owner)),
        None => Ok(()),
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(detail) => ServiceError::Unavailable(detail),
            other => ServiceError::Internal(other.to_string()),
        }
    }
}

impl From<KeyringError> for ServiceError {
    fn from(e: KeyringError) -> Self {
        match e {
            KeyringError::Unavailable(detail) => ServiceError::Unavailable(detail),
            other => ServiceError::Internal(other.to_string()),
        }
    }
}

/// Which write stores a new key.
#[derive(Debug, Clone)]
enum Slot {
    /// `POST /credentials/`: the provider's first key; it must have none.
    First,
    /// `PUT /credentials/{provider}/`: the new key replaces the primary one.
    Primary,
    /// `POST .../keys/`: one more key, named and placed so.
    Another(KeyMeta),
    /// `PUT .../keys/{key_id}/`: a rotation: the new key replaces that key
    /// only once the provider found it valid, if it still meets `If-Match`.
    Rotate(KeyId, IfMatch),
    /// `POST .../keys/{key_id}/rollback/`: the key's previous version (the
    /// key given is it, opened) takes its place again, as a rotation would.
    Rollback(KeyId, IfMatch, Box<PreviousKey>),
}

impl Slot {
    /// Whether the write adds a key (else it replaces one).
    fn adds(&self) -> bool {
        matches!(self, Slot::First | Slot::Another(_))
    }

    /// The key it replaces and the `If-Match` that key must meet, for the
    /// writes that act on one key (rotation, rollback), which also swap
    /// only a key found valid.
    fn one_key(&self) -> Option<(&KeyId, &IfMatch)> {
        match self {
            Slot::Rotate(id, if_match) | Slot::Rollback(id, if_match, _) => Some((id, if_match)),
            _ => None,
        }
    }
}

/// A key as a user gives it: the key, and for a provider whose keys name
/// their endpoint, that endpoint (required on create; a replacement without
/// one keeps the stored endpoint).
pub struct KeyInput {
    /// The key.
    pub key: ApiKey,
    /// The endpoint as given, not yet guarded.
    pub base_url: Option<String>,
}

impl From<ApiKey> for KeyInput {
    fn from(key: ApiKey) -> KeyInput {
        KeyInput { key, base_url: None }
    }
}

/// A new key, sealed and checked, ready to be stored.
struct NewKey {
    sealed: SealedKey,
    key_hint: String,
    check: CheckState,
    models: Vec<ModelInfo>,
    audience: Audience,
}

/// Create, read, update, check and delete a user's credentials.
pub struct CredentialService {
    store: Arc<dyn CredentialStore>,
    keyring: Arc<dyn Keyring>,
    providers: Arc<dyn ProviderClient>,
    notifier: Arc<dyn Notifier>,
    events: Option<Arc<dyn StatusEvents>>,
    limiter: Option<limits::Limiter>,
    activity: Arc<dyn ActivityStore>,
    previous_kept_for: chrono::Duration,
}

/// How long a replaced key is kept to roll back to, unless configured
/// (`PREVIOUS_KEY_DAYS`).
pub const DEFAULT_PREVIOUS_KEY_DAYS: u32 = 7;

impl CredentialService {
    /// The service over its ports.
    pub fn new(
        store: Arc<dyn CredentialStore>,
        keyring: Arc<dyn Keyring>,
        providers: Arc<dyn ProviderClient>,
        notifier: Arc<dyn Notifier>,
    ) -> CredentialService {
        CredentialService {
            store,
            keyring,
            providers,
            notifier,
            events: None,
            limiter: None,
            activity: Arc::new(NoActivity),
            previous_kept_for: chrono::Duration::days(DEFAULT_PREVIOUS_KEY_DAYS.into()),
        }
    }

    /// Keeps a replaced key for `days` to roll back to.
    pub fn with_previous_key_days(mut self, days: u32) -> CredentialService {
        self.previous_kept_for = chrono::Duration::days(days.into());
        self
    }

    /// Publishes every change of a key's status to `events`.
    pub fn with_status_events(mut self, events: Arc<dyn StatusEvents>) -> CredentialService {
        self.events = Some(events);
        self
    }

    /// Tells `events` of the change from `old` to `new`, if it is one.
    async fn publish_change(
        &self,
        user: &UserId,
        provider: &'static ProviderSpec,
        old: Option<&CheckState>,
        new: &CheckState,
        cause: CheckedBy,
    ) {
        let Some(events) = &self.events else { return };
        if let Some(change) = StatusChange::between(user, provider, old, new, cause, Utc::now()) {
            events.publish(&change).await;
        }
    }

    /// One entry per supported provider, sorted by id: its primary key's
    /// status, with its keys in brief.
    pub async fn list(&self, user: &UserId) -> Result<Vec<CredentialView>> {
        let mut stored = self.store.list(user).await?;
        stored.sort_by(named_key::provider_order);
        Ok(PROVIDERS
            .iter()
            .map(|p| {
                let keys: Vec<StoredCredential> = stored.iter().filter(|c| c.provider.id == p.id).cloned().collect();
                CredentialView::of_provider(p, &keys)
            })
            .collect())
    }

    /// The provider's status: its primary key's, with its keys in brief.
    pub async fn get(&self, user: &UserId, provider: &'static ProviderSpec) -> Result<CredentialView> {
        let keys = self.keys_of(user, provider).await?;
        Ok(CredentialView::of_provider(provider, &keys))
    }

    /// The provider's keys in its order; `CredentialNotFound` when it has none.
    async fn keys_of(&self, user: &UserId, provider: &'static ProviderSpec) -> Result<Vec<StoredCredential>> {
        let keys = self.store.keys(user, provider).await?;
        if keys.is_empty() {
            return Err(ServiceError::CredentialNotFound(provider));
        }
        Ok(keys)
    }

    /// Stores a new key once the provider has had its say (see the module
    /// comment). Writes an audit line ([`crate::audit`]) whatever the outcome.
    pub async fn create(
        &self,
        user: &UserId,
        provider: &'static ProviderSpec,
        key: KeyInput,
    ) -> Result<CredentialView> {
        self.write_provider_key(user, provider, key, Slot::First).await
    }

    /// Replaces the primary key; a rejected new key leaves the old one
    /// untouched. Writes an audit line ([`crate::audit`]) whatever the outcome.
    pub async fn update(
        &self,
        user: &UserId,
        provider: &'static ProviderSpec,
        key: KeyInput,
    ) -> Result<CredentialView> {
        self.write_provider_key(user, provider, key, Slot::Primary).await
    }

    /// [`Self::put_key`] for the provider routes, audited, answering the provider's status.
    async fn write_provider_key(
        &self,
        user: &UserId,
        provider: &'static ProviderSpec,
        key: KeyInput,
        slot: Slot,
    ) -> Result<CredentialView> {
        let action = if slot.adds() {
            AuditAction::Create
        } else {
            AuditAction::Update
        };
        let stored = self.put_key(user, provider, key, slot);
        let viewed = async { Ok(CredentialView::of_provider(provider, &stored.await?.1)) };
        audited(user, action, provider, viewed).await
    }

    /// Create, update and adding a key, one path: they differ in which key
    /// must be stored already and which write stores the new one. The key
    /// written, and the provider's keys after the write, in order.
    async fn put_key(
        &self,
        user: &UserId,
        provider: &'static ProviderSpec,
        KeyInput { key, base_url }: KeyInput,
        slot: Slot,
    ) -> Result<(StoredCredential, Vec<StoredCredential>)> {
        refuse_foreign_key(provider, &key)?;
        // Not a guard (the write's condition is): a duplicate, or a PUT that
        // would create, is answered at once, without a provider call or a
        // stray `checking` message.
        let (keys, audience) = tokio::join!(self.store.keys(user, provider), self.notifier.audience(user));
        let mut keys = keys?;
        let existing = match &slot {
            Slot::First if !keys.is_empty() => return Err(ServiceError::CredentialExists(provider)),
            Slot::Primary => match named_key::primary(&keys) {
                Some(primary) => Some(primary.clone()),
                None => return Err(ServiceError::CredentialNotFound(provider)),
            },
            Slot::Another(meta) => {
                admit_another(provider, &keys, meta)?;
                None
            }
            Slot::Rotate(id, if_match) | Slot::Rollback(id, if_match, _) => {
                match keys.iter().find(|k| &k.key.id == id) {
                    Some(old) if !if_match.admits(&old.revision) => {
                        return Err(ServiceError::PreconditionFailed(provider));
                    }
                    Some(old) => Some(old.clone()),
                    None => return Err(ServiceError::KeyNotFound(provider)),
                }
            }
            Slot::First => None,
        };
        // A new endpoint is guarded before anything is sealed or counted; a
        // replaced key keeps its endpoint unless another is given.
        let endpoint = match (&slot, provider.endpoint_per_key(), base_url) {
            (_, false, _) => None,
            // Admitted when it was stored; every call checks it again.
            (Slot::Rollback(_, _, previous), true, _) => previous.endpoint.clone(),
            (_, true, Some(given)) => Some(
                self.providers
                    .admit_endpoint(&given)
                    .await
                    .map_err(ServiceError::EndpointNotAllowed)?,
            ),
            (_, true, None) => existing.as_ref().and_then(|old| old.endpoint.clone()),
        };
        if provider.endpoint_per_key() && endpoint.is_none() {
            return Err(ServiceError::EndpointNotAllowed(EndpointRefusal::NotAUrl));
        }
        self.admit_validation(user).await?;
        let context = EncryptionContext::new(user, provider).at(endpoint.as_ref());
        let meta = match (&slot, &existing) {
            (Slot::Another(meta), _) => meta.clone(),
            (_, Some(old)) => old.key.clone(),
            _ => KeyMeta::default_key(),
        };
        // A rejected key ends here: an old key stays exactly as it was.
        let NewKey {
            sealed,
            key_hint,
            check,
            models,
            mut audience,
        } = self.seal_and_check(&context, &meta, &key, audience, &slot).await?;
        // A rotation swaps only a key the provider accepted: without a
        // verdict, the old key stays in use (its status was not announced
        // as changed: the message said the new key's state).
        if slot.one_key().is_some() && matches!(check.status, CredentialStatus::Error | CredentialStatus::Unchecked) {
            return Err(ServiceError::KeyNotVerified(provider, check.retry_after_secs));
        }
        let now = check.checked_at.unwrap_or_else(Utc::now);
        // Only a discovery reads the old list (for the models' history); no
        // verdict just leaves the list empty.
        let previous = match (&existing, check.status) {
            (Some(old), CredentialStatus::Valid) => self.store.models(KeyAt::new(user, provider, &old.key.id)).await?,
            _ => None,
        };
        let (models, change) = carry_history(previous.as_ref(), models, &now);
        let mut credential = StoredCredential {
            user_id: user.clone(),
            provider,
            key: meta,
            sealed,
            key_hint,
            endpoint,
            check,
            models_count: models.len() as u32,
            revision: crate::ids::random_hex(16),
            created_at: now,
            updated_at: now,
            last_used_at: None,
            consumer_uses: Default::default(),
            // A new key has a re-check window of its own, and no rest.
            last_recheck_at: None,
            last_attempt: None,
            cooling_until: None,
            previous: None,
        };
        let old_check = existing.as_ref().map(|old| old.check.clone());
        let old_revision = existing.as_ref().map(|old| old.revision.clone());
        // The key replaced is kept sealed, to roll back to.
        let retired = existing
            .as_ref()
            .map(|old| PreviousKey::retire(old, now, self.previous_kept_for));
        // For the answer; the store writes the note from `retired` itself.
        credential.previous = retired.as_ref().map(PreviousKey::note);
        if let Some(old) = existing {
            // The credential keeps its name, place, birth and last use.
            credential.key = old.key;
            credential.created_at = old.created_at;
            credential.last_used_at = old.last_used_at;
            credential.consumer_uses = old.consumer_uses;
        }
        write_fits_before_deadline(provider)?;
        // A rotation under If-Match writes only over the revision it checked.
        let if_revision = match (slot.one_key(), &old_revision) {
            (Some((_, if_match)), Some(revision)) if if_match.is_set() => Some(revision.as_str()),
            _ => None,
        };
        let written = if slot.adds() {
            self.store.insert(&credential, &models).await
        } else {
            let replacement = Replacement {
                credential: &credential,
                models: &models,
                if_revision,
                retired: retired.as_ref(),
            };
            self.store.replace(replacement).await
        };
        match (&slot, written) {
            (_, Ok(())) => {}
            (Slot::First, Err(StoreError::Conflict)) => return Err(ServiceError::CredentialExists(provider)),
            // Two adds raced for one id: astronomically rare, and safe to retry.
            (Slot::Another(_), Err(StoreError::Conflict)) => {
                return Err(ServiceError::Unavailable("key id taken".into()));
            }
            (Slot::Primary, Err(StoreError::NotFound)) => return Err(ServiceError::CredentialNotFound(provider)),
            (Slot::Rotate(..) | Slot::Rollback(..), Err(StoreError::NotFound)) => {
                return Err(ServiceError::KeyNotFound(provider));
            }
            (Slot::Rotate(..) | Slot::Rollback(..), Err(StoreError::Conflict)) => {
                return Err(ServiceError::PreconditionFailed(provider));
            }
            (_, Err(e)) => return Err(e.into()),
        }
        tracing::info!(
            provider = provider.id,
            key = credential.key.id.as_str(),
            status = credential.check.status.as_str(),
            models = credential.models_count,
            "credential {}",
            if slot.adds() { "created" } else { "replaced" }
        );
        let key_hint = credential.key_hint.clone();
        let event = if slot.adds() {
            ActivityEvent::Set { key_hint }
        } else {
            ActivityEvent::Replaced { key_hint }
        };
        self.note(user, provider, event).await;
        self.announce_change(
            &mut audience,
            provider,
            &credential.key,
            &credential.check,
            credential.models_count,
            change,
        )
        .await;
        self.publish_change(user, provider, old_check.as_ref(), &credential.check, CheckedBy::User)
            .await;
        keys.retain(|k| k.key.id != credential.key.id);
        keys.push(credential.clone());
        keys.sort_by(named_key::provider_order);
        Ok((credential, keys))
    }

    /// Checks the provider's primary key again, now.
    pub async fn check(&self, user: &UserId, provider: &'static ProviderSpec) -> Result<CredentialView> {
        let (keys, audience) = tokio::join!(self.keys_of(user, provider), self.notifier.audience(user));
        let mut keys = keys?;
        let Some(primary) = named_key::primary(&keys).cloned() else {
            return Err(ServiceError::CredentialNotFound(provider));
        };
        self.admit_validation(user).await?;
        let checked = self.recheck(user, provider, primary, audience, CheckedBy::User).await?;
        for key in keys.iter_mut().filter(|k| k.key.id == checked.key.id) {
            *key = checked.clone();
        }
        Ok(CredentialView::of_provider(provider, &keys))
    }

    /// The check of a stored key, for `check` and for a usage report: open
    /// it, ask the provider (pushing `checking`), record the verdict and
    /// models against the key's revision in one write, push the verdict.
    async fn recheck(
        &self,
        user: &UserId,
        provider: &'static ProviderSpec,
        existing: StoredCredential,
        audience: Audience,
        by: CheckedBy,
    ) -> Result<StoredCredential> {
        let context = EncryptionContext::of(&existing);
        let key = envelope::open(self.keyring.as_ref(), &context, &existing.sealed)
            .await
            .inspect_err(|e| {
                tracing::error!(provider = provider.id, error = %e, "stored key does not open");
                audit::record_if_tampered(user, AuditAction::Check, provider, e);
            })?;
        let (outcome, quota, audience) = self
            .validate(provider, &existing.key, existing.endpoint.as_ref(), &key, audience)
            .await;
        drop(key);
        self.record_outcome(user, provider, existing, (outcome, quota), audience, by)
            .await
    }

    /// Stores what checking a stored key found (verdict and models, against
    /// the key's revision, in one write) and pushes it: the end of a user's
    /// check, of a report's re-check and of a background re-check alike.
    async fn record_outcome(
        &self,
        user: &UserId,
        provider: &'static ProviderSpec,
        existing: StoredCredential,
        (outcome, quota): (CheckOutcome, Option<Quota>),
        mut audience: Audience,
        by: CheckedBy,
    ) -> Result<StoredCredential> {
        let now = Utc::now();
        let (outcome, change) = match outcome {
            // Only a fresh list needs the stored one (for the models'
            // history): one read, and only then.
            CheckOutcome::Valid { models } => {
                let previous = self.store.models(KeyAt::new(user, provider, &existing.key.id)).await?;
                let (models, change) = carry_history(previous.as_ref(), models, &now);
                (CheckOutcome::Valid { models }, change)
            }
            other => (other, None),
        };
        let check = CheckState {
            quota,
            ..CheckState::from_outcome(&outcome, now)
        };
        let (models_update, models_count) = match outcome {
            CheckOutcome::Valid { models } => {
                let count = models.len() as u32;
                (ModelsUpdate::Replace(models), count)
            }
            // A rejected key unlocks nothing.
            CheckOutcome::Invalid => (ModelsUpdate::Replace(Vec::new()), 0),
            // No verdict: what we knew still stands.
            CheckOutcome::Failed { .. } => (ModelsUpdate::Keep, existing.models_count),
        };
        write_fits_before_deadline(provider)?;
        match self
            .store
            .record_check(KeyRevision::of(&existing), &check, models_update)
            .await
        {
            Ok(()) => {}
            Err(StoreError::NotFound) => return Err(ServiceError::CredentialNotFound(provider)),
            // The key was replaced while we checked the old one: the newer
            // state wins, and its own validation announces itself.
            Err(StoreError::Conflict) => {
                return self
                    .store
                    .get(KeyAt::new(user, provider, &existing.key.id))
                    .await?
                    .ok_or(ServiceError::CredentialNotFound(provider));
            }
            Err(e) => return Err(e.into()),
        }
        let old_check = existing.check.clone();
        let credential = StoredCredential {
            check,
            models_count,
            updated_at: now,
            last_attempt: None,
            ..existing
        };
        tracing::info!(
            provider = provider.id,
            status = credential.check.status.as_str(),
            models = models_count,
            "credential checked"
        );
        audit::record(user, AuditAction::Check, provider, credential.check.status.as_str());
        let checked = ActivityEvent::Checked {
            status: credential.check.status,
            reason: credential.check.reason,
            by,
        };
        self.note(user, provider, checked).await;
        self.announce_change(
            &mut audience,
            provider,
            &credential.key,
            &credential.check,
            models_count,
            change,
        )
        .await;
        self.publish_change(user, provider, Some(&old_check), &credential.check, by)
            .await;
        Ok(credential)
    }

    /// Deletes the key and its models. Writes an audit line ([`crate::audit`]).
    pub async fn delete(&self, user: &UserId, provider: &'static ProviderSpec) -> Result<()> {
        let result = self.delete_unaudited(user, provider).await;
        audit::record_result(user, AuditAction::Delete, provider, &result);
        if result.is_ok() {
            self.note(user, provider, ActivityEvent::Deleted).await;
        }
        result
    }

    async fn delete_unaudited(&self, user: &UserId, provider: &'static ProviderSpec) -> Result<()> {
        match self.store.delete(user, provider).await {
            Ok(()) => {
                tracing::info!(provider = provider.id, "credential deleted");
                Ok(())
            }
            Err(StoreError::NotFound) => Err(ServiceError::CredentialNotFound(provider)),
            Err(e) => Err(e.into()),
        }
    }

    /// What the provider's enabled keys unlock together (not those found
    /// `invalid`: a key without a verdict keeps what it was known to unlock),
    /// sorted by id, each model with the keys that unlock it; empty when
    /// nothing was discovered. One read of the keys and one of each list.
    pub async fn models(&self, user: &UserId, provider: &'static ProviderSpec) -> Result<Vec<ModelView>> {
        let keys = self.store.keys(user, provider).await?;
        let usable = keys
            .iter()
            .filter(|k| k.key.enabled && k.check.status != CredentialStatus::Invalid);
        let lists = futures_util::future::try_join_all(usable.map(|k| async move {
            let list = self.store.models(KeyAt::new(user, provider, &k.key.id)).await?;
            Ok::<_, StoreError>(list.map(|list| (k.key.id.clone(), list)))
        }))
        .await?;
        Ok(ModelView::union(provider.id, lists.into_iter().flatten().collect()))
    }

    /// The part of create and update that is the same: seal the new key
    /// under `context` (a key service outage fails here, before anything is
    /// announced; a rollback's key is sealed already), check it with the
    /// provider, and refuse it — announced, nothing stored — if the
    /// provider rejects it. Without a verdict the key is kept with no models:
    /// whatever an older key unlocked says nothing about this one.
    async fn seal_and_check(
        &self,
        context: &EncryptionContext,
        meta: &KeyMeta,
        key: &ApiKey,
        audience: Audience,
        slot: &Slot,
    ) -> Result<NewKey> {
        let (provider, endpoint) = (context.provider, context.endpoint.as_ref());
        let sealed = match slot {
            // Restored as it was sealed: no new data key.
            Slot::Rollback(_, _, previous) => previous.sealed.clone(),
            _ => envelope::seal(self.keyring.as_ref(), context, key).await?,
        };
        let (outcome, quota, mut audience) = self.validate(provider, meta, endpoint, key, audience).await;
        let check = CheckState {
            quota,
            ..CheckState::from_outcome(&outcome, Utc::now())
        };
        let models = match outcome {
            CheckOutcome::Invalid => {
                self.announce(&mut audience, provider, meta, &check, 0).await;
                return Err(ServiceError::KeyRejected(provider));
            }
            CheckOutcome::Valid { models } => models,
            CheckOutcome::Failed { .. } => Vec::new(),
        };
        Ok(NewKey {
            sealed,
            key_hint: key.hint(provider),
            check,
            models,
            audience,
        })
    }

    /// Asks the provider, announcing `checking` to the user's sockets meanwhile.
    async fn validate(
        &self,
        provider: &'static ProviderSpec,
        meta: &KeyMeta,
        endpoint: Option<&Endpoint>,
        key: &ApiKey,
        mut audience: Audience,
    ) -> (CheckOutcome, Option<Quota>, Audience) {
        let checking = StatusEvent::checking(provider).for_key(meta).to_message();
        let ((), (outcome, quota)) = tokio::join!(
            self.notifier.push(&mut audience, &checking),
            self.ask_provider(provider, endpoint, key)
        );
        (outcome, quota, audience)
    }

    /// Asks the provider about a key (with its credit where the provider
    /// tells it). Every provider check of the service, user's or background,
    /// goes through here: the one place it is counted.
    async fn ask_provider(
        &self,
        provider: &'static ProviderSpec,
        endpoint: Option<&Endpoint>,
        key: &ApiKey,
    ) -> (CheckOutcome, Option<Quota>) {
        let started = std::time::Instant::now();
        let check = self.providers.check_with_quota(provider, endpoint, key);
        // The check gets what the request's deadline leaves it (`crate::deadline`).
        let (outcome, quota) = match crate::deadline::provider_budget() {
            Some(budget) => tokio::time::timeout(budget, check).await.unwrap_or((
                CheckOutcome::Failed {
                    reason: crate::domain::ErrorReason::Timeout,
                    retry_after_secs: None,
                },
                None,
            )),
            None => check.await,
        };
        crate::metrics::validation(provider, &outcome, started.elapsed());
        (outcome, quota)
    }

    async fn announce(
        &self,
        audience: &mut Audience,
        provider: &'static ProviderSpec,
        meta: &KeyMeta,
        check: &CheckState,
        models_count: u32,
    ) {
        self.announce_change(audience, provider, meta, check, models_count, None)
            .await;
    }

    /// The final message, saying how a re-discovery changed the model list.
    async fn announce_change(
        &self,
        audience: &mut Audience,
        provider: &'static ProviderSpec,
        meta: &KeyMeta,
        check: &CheckState,
        models_count: u32,
        change: Option<ListChange>,
    ) {
        let message = StatusEvent::finished(provider, check, models_count)
            .for_key(meta)
            .with_list_change(change)
            .to_message();
        self.notifier.push(audience, &message).await;
    }
}

/// The users' WebSocket connections: `$connect` remembers one, `$disconnect`
/// forgets it, so pushes know where to go.
pub struct ConnectionService {
    connections: Arc<dyn ConnectionStore>,
    max_per_user: u32,
}

/// API Gateway closes a WebSocket after 2 hours; stored connections live a
/// little longer, then expire on their own (TTL) if `$disconnect` never came.
pub const CONNECTION_TTL: chrono::Duration = chrono::Duration::minutes(130);

impl ConnectionService {
    /// The service over its store.
    pub fn new(connections: Arc<dyn ConnectionStore>) -> ConnectionService {
        ConnectionService {
            connections,
            max_per_user: DEFAULT_MAX_CONNECTIONS_PER_USER,
        }
    }

    /// At most `max` live connections per user (0: no limit).
    pub fn with_max_per_user(mut self, max: u32) -> ConnectionService {
        self.max_per_user = max;
        self
    }

    /// Remembers `connection_id` as `user`'s, opened at `connected_at`,
    /// unless the user already has the most connections allowed: then the
    /// new one is refused ([`ServiceError::TooManyConnections`]) and the open
    /// ones stay. Stored first and counted after, so parallel connects can
    /// refuse each other but never exceed the cap together.
    pub async fn connect(
        &self,
        user: UserId,
        connection_id: String,
        connected_at: chrono::DateTime<Utc>,
    ) -> Result<()> {
        let connection = Connection {
            user,
            connection_id,
            connected_at,
            expires_at: connected_at + CONNECTION_TTL,
        };
        self.connections.save_connection(&connection).await?;
        if self.max_per_user > 0 {
            let open = self.connections.connections(&connection.user).await;
            let over = open.map(|ids| ids.len() > self.max_per_user as usize);
            if !matches!(over, Ok(false)) {
                // Over the cap, or not known to be under it: forget it again.
                self.connections
                    .remove_connection(&connection.user, &connection.connection_id)
                    .await?;
                over?;
                tracing::warn!(
                    connection_id = %connection.connection_id,
                    max = self.max_per_user,
                    "connection refused: too many open"
                );
                crate::metrics::rate_limited(crate::metrics::RateLimit::Sockets);
                return Err(ServiceError::TooManyConnections(self.max_per_user));
            }
        }
        tracing::info!(connection_id = %connection.connection_id, "connected");
        Ok(())
    }

    /// Forgets the connection (its TTL cleans up should this fail).
    pub async fn disconnect(&self, user: &UserId, connection_id: &str) -> Result<()> {
        self.connections.remove_connection(user, connection_id).await?;
        tracing::info!(connection_id, "disconnected");
        Ok(())
    }
}

/// Refuses to start a store write that might still be running at the
/// request's deadline (`crate::deadline`): past it the client sees a gateway
/// error while the write may commit, and its retry a `409`. A `503` with
/// nothing stored is honest and safe to retry.
fn write_fits_before_deadline(provider: &'static ProviderSpec) -> Result<()> {
    if crate::deadline::write_fits() {
        return Ok(());
    }
    tracing::warn!(
        provider = provider.id,
        "too close to the deadline to start a store write"
    );
    Err(ServiceError::Unavailable(
        "too close to the request's deadline to start a store write".into(),
    ))
}
