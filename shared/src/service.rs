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
use crate::domain::named_key::{KeyId, KeyMeta};
use crate::domain::provider::PROVIDERS;
use crate::domain::quota::Quota;
use crate::domain::{
    ApiKey, CheckOutcome, CheckState, CredentialStatus, CredentialView, ModelInfo, ModelView, ProviderSpec, SealedKey,
    StatusChange, StatusEvent, StoredCredential, UserId,
};
use crate::envelope;

mod activity;
mod keys;
mod limits;
mod revalidate;

use crate::ports::{
    ActivityStore, Audience, Connection, ConnectionStore, CredentialStore, EncryptionContext, KeyRevision, Keyring,
    KeyringError, ModelsUpdate, Notifier, ProviderClient, StatusEvents, StoreError,
};
pub use activity::NoActivity;
pub use keys::{LAST_USE_RESOLUTION, RECHECK_INTERVAL, ReportAnswer, ResolvedKey};
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
#[derive(Debug, Clone, Copy)]
enum KeyWrite {
    /// `POST`: there must be none yet.
    Create,
    /// `PUT`: there must be one, which the new key replaces.
    Update,
}

impl KeyWrite {
    /// What the log line says was done.
    fn done(self) -> &'static str {
        match self {
            KeyWrite::Create => "created",
            KeyWrite::Update => "replaced",
        }
    }
}

/// A new key, sealed and checked, ready to be stored.
/// The key the contract's routes act on: the provider's first key. (Several
/// keys per provider are stored by key; their routes come with issue 19.)
pub(crate) static FIRST_KEY: std::sync::LazyLock<KeyId> = std::sync::LazyLock::new(KeyId::default_key);

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
}

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
        }
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

    /// One entry per supported provider, sorted by id.
    pub async fn list(&self, user: &UserId) -> Result<Vec<CredentialView>> {
        let stored = self.store.list(user).await?;
        Ok(PROVIDERS
            .iter()
            .map(
                |p| match stored.iter().find(|c| c.provider.id == p.id && c.key.id == *FIRST_KEY) {
                    Some(c) => CredentialView::of(p, c),
                    None => CredentialView::not_set(p),
                },
            )
            .collect())
    }

    /// One credential's status.
    pub async fn get(&self, user: &UserId, provider: &'static ProviderSpec) -> Result<CredentialView> {
        match self.store.get(user, provider, &FIRST_KEY).await? {
            Some(c) => Ok(CredentialView::of(provider, &c)),
            None => Err(ServiceError::CredentialNotFound(provider)),
        }
    }

    /// Stores a new key once the provider has had its say (see the module
    /// comment). Writes an audit line ([`crate::audit`]) whatever the outcome.
    pub async fn create(
        &self,
        user: &UserId,
        provider: &'static ProviderSpec,
        key: KeyInput,
    ) -> Result<CredentialView> {
        let result = self.put_key(user, provider, key, KeyWrite::Create).await;
        audit::record_result(user, AuditAction::Create, provider, &result);
        result
    }

    /// Replaces a stored key; a rejected new key leaves the old one untouched.
    /// Writes an audit line ([`crate::audit`]) whatever the outcome.
    pub async fn update(
        &self,
        user: &UserId,
        provider: &'static ProviderSpec,
        key: KeyInput,
    ) -> Result<CredentialView> {
        let result = self.put_key(user, provider, key, KeyWrite::Update).await;
        audit::record_result(user, AuditAction::Update, provider, &result);
        result
    }

    /// Create and update, one path: they differ only in whether a key must
    /// be stored already and which write stores the new one.
    async fn put_key(
        &self,
        user: &UserId,
        provider: &'static ProviderSpec,
        KeyInput { key, base_url }: KeyInput,
        write: KeyWrite,
    ) -> Result<CredentialView> {
        refuse_foreign_key(provider, &key)?;
        // Not a guard (the write's condition is): a duplicate, or a PUT that
        // would create, is answered at once, without a provider call or a
        // stray `checking` message.
        let (existing, audience) =
            tokio::join!(self.store.get(user, provider, &FIRST_KEY), self.notifier.audience(user));
        let existing = match (write, existing?) {
            (KeyWrite::Create, Some(_)) => return Err(ServiceError::CredentialExists(provider)),
            (KeyWrite::Update, None) => return Err(ServiceError::CredentialNotFound(provider)),
            (_, existing) => existing,
        };
        // A new endpoint is guarded before anything is sealed or counted; a
        // replaced key keeps its endpoint unless another is given.
        let endpoint = match (provider.endpoint_per_key(), base_url) {
            (false, _) => None,
            (true, Some(given)) => Some(
                self.providers
                    .admit_endpoint(&given)
                    .await
                    .map_err(ServiceError::EndpointNotAllowed)?,
            ),
            (true, None) => existing.as_ref().and_then(|old| old.endpoint.clone()),
        };
        if provider.endpoint_per_key() && endpoint.is_none() {
            return Err(ServiceError::EndpointNotAllowed(EndpointRefusal::NotAUrl));
        }
        self.admit_validation(user).await?;
        // A rejected key ends here: an old key stays exactly as it was.
        let NewKey {
            sealed,
            key_hint,
            check,
            models,
            mut audience,
        } = self
            .seal_and_check(user, provider, endpoint.as_ref(), &key, audience)
            .await?;
        let now = check.checked_at.unwrap_or_else(Utc::now);
        // Only a discovery reads the old list (for the models' history); no
        // verdict just leaves the list empty.
        let previous = match (&existing, check.status) {
            (Some(_), CredentialStatus::Valid) => self.store.models(user, provider, &FIRST_KEY).await?,
            _ => None,
        };
        let (models, change) = carry_history(previous.as_ref(), models, &now);
        let mut credential = StoredCredential {
            user_id: user.clone(),
            provider,
            key: KeyMeta::default_key(),
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
            // A new key has a re-check window of its own.
            last_recheck_at: None,
            last_attempt: None,
        };
        let old_check = existing.as_ref().map(|old| old.check.clone());
        if let Some(old) = existing {
            // The credential keeps its name, place, birth and last use.
            credential.key = old.key;
            credential.created_at = old.created_at;
            credential.last_used_at = old.last_used_at;
            credential.consumer_uses = old.consumer_uses;
        }
        write_fits_before_deadline(provider)?;
        let written = match write {
            KeyWrite::Create => self.store.insert(&credential, &models).await,
            KeyWrite::Update => self.store.replace(&credential, &models).await,
        };
        match (write, written) {
            (_, Ok(())) => {}
            (KeyWrite::Create, Err(StoreError::Conflict)) => return Err(ServiceError::CredentialExists(provider)),
            (KeyWrite::Update, Err(StoreError::NotFound)) => return Err(ServiceError::CredentialNotFound(provider)),
            (_, Err(e)) => return Err(e.into()),
        }
        tracing::info!(
            provider = provider.id,
            status = credential.check.status.as_str(),
            models = credential.models_count,
            "credential {}",
            write.done()
        );
        let key_hint = credential.key_hint.clone();
        let event = match write {
            KeyWrite::Create => ActivityEvent::Set { key_hint },
            KeyWrite::Update => ActivityEvent::Replaced { key_hint },
        };
        self.note(user, provider, event).await;
        self.announce_change(
            &mut audience,
            provider,
            &credential.check,
            credential.models_count,
            change,
        )
        .await;
        self.publish_change(user, provider, old_check.as_ref(), &credential.check, CheckedBy::User)
            .await;
        Ok(CredentialView::of(provider, &credential))
    }

    /// Checks the stored key again, now.
    pub async fn check(&self, user: &UserId, provider: &'static ProviderSpec) -> Result<CredentialView> {
        let (existing, audience) =
            tokio::join!(self.store.get(user, provider, &FIRST_KEY), self.notifier.audience(user));
        let Some(existing) = existing? else {
            return Err(ServiceError::CredentialNotFound(provider));
        };
        self.admit_validation(user).await?;
        self.recheck(user, provider, existing, audience, CheckedBy::User).await
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
    ) -> Result<CredentialView> {
        let context = EncryptionContext::of(&existing);
        let key = envelope::open(self.keyring.as_ref(), &context, &existing.sealed)
            .await
            .inspect_err(|e| {
                tracing::error!(provider = provider.id, error = %e, "stored key does not open");
                audit::record_if_tampered(user, AuditAction::Check, provider, e);
            })?;
        let (outcome, quota, audience) = self
            .validate(provider, existing.endpoint.as_ref(), &key, audience)
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
    ) -> Result<CredentialView> {
        let now = Utc::now();
        let (outcome, change) = match outcome {
            // Only a fresh list needs the stored one (for the models'
            // history): one read, and only then.
            CheckOutcome::Valid { models } => {
                let previous = self.store.models(user, provider, &existing.key.id).await?;
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
            Err(StoreError::Conflict) => return self.get(user, provider).await,
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
        self.announce_change(&mut audience, provider, &credential.check, models_count, change)
            .await;
        self.publish_change(user, provider, Some(&old_check), &credential.check, by)
            .await;
        Ok(CredentialView::of(provider, &credential))
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

    /// The stored model list, sorted by id; empty when nothing was discovered.
    pub async fn models(&self, user: &UserId, provider: &'static ProviderSpec) -> Result<Vec<ModelView>> {
        Ok(match self.store.models(user, provider, &FIRST_KEY).await? {
            Some(list) => ModelView::list(provider.id, list),
            None => Vec::new(),
        })
    }

    /// The part of create and update that is the same: seal the new key (a
    /// key service outage fails here, before anything is announced), check it
    /// with the provider, and refuse it — announced, nothing stored — if the
    /// provider rejects it. Without a verdict the key is kept with no models:
    /// whatever an older key unlocked says nothing about this one.
    async fn seal_and_check(
        &self,
        user: &UserId,
        provider: &'static ProviderSpec,
        endpoint: Option<&Endpoint>,
        key: &ApiKey,
        audience: Audience,
    ) -> Result<NewKey> {
        let context = EncryptionContext::new(user, provider).at(endpoint);
        let sealed = envelope::seal(self.keyring.as_ref(), &context, key).await?;
        let (outcome, quota, mut audience) = self.validate(provider, endpoint, key, audience).await;
        let check = CheckState {
            quota,
            ..CheckState::from_outcome(&outcome, Utc::now())
        };
        let models = match outcome {
            CheckOutcome::Invalid => {
                self.announce(&mut audience, provider, &check, 0).await;
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
        endpoint: Option<&Endpoint>,
        key: &ApiKey,
        mut audience: Audience,
    ) -> (CheckOutcome, Option<Quota>, Audience) {
        let checking = StatusEvent::checking(provider).to_message();
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
        check: &CheckState,
        models_count: u32,
    ) {
        self.announce_change(audience, provider, check, models_count, None)
            .await;
    }

    /// The final message, saying how a re-discovery changed the model list.
    async fn announce_change(
        &self,
        audience: &mut Audience,
        provider: &'static ProviderSpec,
        check: &CheckState,
        models_count: u32,
        change: Option<ListChange>,
    ) {
        let message = StatusEvent::finished(provider, check, models_count)
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
