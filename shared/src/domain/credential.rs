//! Credentials, their check status, and the views the API and WebSocket show.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::model::{ListChange, ModelInfo};
use super::provider::ProviderSpec;
use super::quota::Quota;
use super::user::UserId;
use super::wire_enum::wire_enum;
use crate::time;

wire_enum! {
    /// Where a stored key stands after its last check.
    pub enum CredentialStatus {
        /// Stored but never checked (no answer from the provider yet).
        Unchecked = "unchecked",
        /// The provider accepted the key.
        Valid = "valid",
        /// The provider said the key is not valid.
        Invalid = "invalid",
        /// No verdict: see the [`ErrorReason`].
        Error = "error",
    }
}

wire_enum! {
    /// Why a check could not reach a verdict on the key. The key may well be good.
    pub enum ErrorReason {
        /// The provider answered 429.
        RateLimited = "rate_limited",
        /// The account is out of quota or credit (402, OpenAI's `insufficient_quota`).
        QuotaExhausted = "quota_exhausted",
        /// No answer within the check's time budget.
        Timeout = "timeout",
        /// Unreachable, refused, or a 5xx.
        ProviderUnavailable = "provider_unavailable",
        /// A 2xx that is not a model list.
        BadResponse = "bad_response",
        /// The key's own endpoint is one this deployment may not call (it
        /// now resolves to an internal address, or the operator's policy changed).
        EndpointNotAllowed = "endpoint_not_allowed",
    }
}

impl ErrorReason {
    /// Whether the failure says nothing about the key itself (rate limit,
    /// timeout, outage, unreadable answer): a background re-check that ends
    /// so keeps the stored verdict. `quota_exhausted` is about the account,
    /// and is stored like any verdict.
    pub fn is_transient(self) -> bool {
        !matches!(self, ErrorReason::QuotaExhausted | ErrorReason::EndpointNotAllowed)
    }
}

/// A background re-check that reached no verdict: the stored verdict stands,
/// and this records the attempt so the next one backs off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FailedAttempt {
    /// When the provider was asked.
    pub at: DateTime<Utc>,
    /// Why there was no verdict (always a transient reason).
    pub reason: ErrorReason,
    /// Background attempts without a verdict in a row, this one included.
    pub failures: u32,
}

/// What asking the provider about a key found out.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckOutcome {
    /// The provider accepted the key and listed these models.
    Valid {
        /// Sorted by id, without repeats.
        models: Vec<ModelInfo>,
    },
    /// The provider said the key is not valid.
    Invalid,
    /// No verdict: rate limit, quota, timeout, outage or an unreadable answer.
    Failed {
        /// Why there is no verdict.
        reason: ErrorReason,
        /// When the provider said to try again, in seconds.
        retry_after_secs: Option<u64>,
    },
}

impl CheckOutcome {
    /// The status the outcome comes to, and why there is no verdict when it
    /// is `error`: what the stored state, the logs and the metrics say.
    pub fn verdict(&self) -> (CredentialStatus, Option<ErrorReason>) {
        match self {
            CheckOutcome::Valid { .. } => (CredentialStatus::Valid, None),
            CheckOutcome::Invalid => (CredentialStatus::Invalid, None),
            CheckOutcome::Failed { reason, .. } => (CredentialStatus::Error, Some(*reason)),
        }
    }
}

/// The result of the last check, as stored with the credential.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckState {
    /// The verdict.
    pub status: CredentialStatus,
    /// Why there is none (with `Error` only).
    pub reason: Option<ErrorReason>,
    /// When the provider said to try again, in seconds.
    pub retry_after_secs: Option<u64>,
    /// When the provider was asked.
    pub checked_at: Option<DateTime<Utc>>,
    /// The key's credit, when the provider told it at this check.
    pub quota: Option<Quota>,
}

impl CheckState {
    /// The state a check's outcome leaves, as of `checked_at`.
    pub fn from_outcome(outcome: &CheckOutcome, checked_at: DateTime<Utc>) -> CheckState {
        let (status, reason) = outcome.verdict();
        let retry_after_secs = match outcome {
            CheckOutcome::Failed { retry_after_secs, .. } => *retry_after_secs,
            _ => None,
        };
        CheckState {
            status,
            reason,
            retry_after_secs,
            checked_at: Some(checked_at),
            quota: None,
        }
    }

    /// The sentence the settings page shows for this state.
    pub fn message(&self, provider: &ProviderSpec) -> String {
        let name = provider.display_name;
        match self.status {
            CredentialStatus::Unchecked => format!("{name} API key has not been checked yet."),
            CredentialStatus::Valid => format!("{name} API key is valid."),
            CredentialStatus::Invalid => format!("{name} rejected this API key: it is not valid."),
            CredentialStatus::Error => {
                let why = match self.reason.unwrap_or(ErrorReason::ProviderUnavailable) {
                    ErrorReason::RateLimited => match self.retry_after_secs {
                        Some(secs) => {
                            format!("{name} is rate limiting requests; try again in {secs} s.")
                        }
                        None => format!("{name} is rate limiting requests; try again shortly."),
                    },
                    ErrorReason::QuotaExhausted => {
                        format!("the {name} account has run out of quota or credit.")
                    }
                    ErrorReason::Timeout => format!("{name} did not answer in time."),
                    ErrorReason::ProviderUnavailable => {
                        format!("{name} could not be reached or is failing.")
                    }
                    ErrorReason::BadResponse => {
                        format!("{name} sent an answer that could not be read.")
                    }
                    ErrorReason::EndpointNotAllowed => "its endpoint is not one this service may call.".to_owned(),
                };
                format!("Could not check the {name} API key: {why} The key was kept.")
            }
        }
    }
}

/// An API key sealed by envelope encryption: nothing here is secret on its own.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedKey {
    /// Envelope format, so the sealing can change without a migration.
    pub format_version: u8,
    /// Which master key (KMS key ARN or local key fingerprint) wrapped the data key.
    pub key_id: String,
    /// The data key, encrypted under the master key.
    pub wrapped_data_key: Vec<u8>,
    /// AES-GCM nonce used with the data key.
    pub nonce: Vec<u8>,
    /// The API key encrypted under the data key, with the GCM tag appended.
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for SealedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedKey")
            .field("format_version", &self.format_version)
            .field("key_id", &self.key_id)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

/// A key that a newer one replaced, kept sealed (as it was stored) so that
/// the user can roll back to it until `kept_until`; the stores forget it
/// then (DynamoDB's TTL, a prune on SQLite) and never return it after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviousKey {
    /// The key as it was sealed, under the context of its own endpoint.
    pub sealed: SealedKey,
    /// Its hint.
    pub key_hint: String,
    /// Its endpoint, for a provider whose keys name one.
    pub endpoint: Option<super::endpoint::Endpoint>,
    /// When it was replaced.
    pub replaced_at: DateTime<Utc>,
    /// The end of its keeping.
    pub kept_until: DateTime<Utc>,
}

impl PreviousKey {
    /// `old`'s key, replaced at `at` and kept for `kept_for`.
    pub fn retire(old: &StoredCredential, at: DateTime<Utc>, kept_for: chrono::Duration) -> PreviousKey {
        PreviousKey {
            sealed: old.sealed.clone(),
            key_hint: old.key_hint.clone(),
            endpoint: old.endpoint.clone(),
            replaced_at: at,
            kept_until: at + kept_for,
        }
    }

    /// What the current key's record says of it (no key material).
    pub fn note(&self) -> PreviousNote {
        PreviousNote {
            key_hint: self.key_hint.clone(),
            kept_until: self.kept_until,
        }
    }
}

/// What a key's record tells of its previous version, so that views can
/// offer the rollback without reading the sealed version itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviousNote {
    /// The previous key's hint.
    pub key_hint: String,
    /// Until when it can be rolled back to.
    pub kept_until: DateTime<Utc>,
}

/// A credential as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCredential {
    /// The owner.
    pub user_id: UserId,
    /// The provider (stored as its id).
    pub provider: &'static ProviderSpec,
    /// Which of the provider's keys this is, and what the user decided about it.
    pub key: super::named_key::KeyMeta,
    /// The key, envelope-encrypted.
    pub sealed: SealedKey,
    /// What may be shown of the key, e.g. `gsk_…9xQa`.
    pub key_hint: String,
    /// Where the key is used, for a provider whose keys name their endpoint
    /// (bound to the sealed key by its encryption context).
    pub endpoint: Option<super::endpoint::Endpoint>,
    /// The last check.
    pub check: CheckState,
    /// How many models the stored list holds.
    pub models_count: u32,
    /// Changes with every new key, so a check of an old key cannot overwrite
    /// the state of a newer one.
    pub revision: String,
    /// When the first key was stored.
    pub created_at: DateTime<Utc>,
    /// When key or status last changed.
    pub updated_at: DateTime<Utc>,
    /// When another MailMind function last obtained the key (recorded at
    /// most hourly, so it is accurate to the hour).
    pub last_used_at: Option<DateTime<Utc>>,
    /// Per consumer, when its last `used` activity entry was recorded
    /// (kept across key replacements, like `last_used_at`).
    pub consumer_uses: super::activity::ConsumerUses,
    /// When a usage report last had this key re-checked; re-checks of one key
    /// are spaced out by this (a new key starts without one).
    pub last_recheck_at: Option<DateTime<Utc>>,
    /// The last background re-check, if it reached no verdict; any verdict
    /// (and a new key) clears it.
    pub last_attempt: Option<FailedAttempt>,
    /// Rate limited in use (a report): resolve passes the key over until
    /// then. A new key starts without.
    pub cooling_until: Option<DateTime<Utc>>,
    /// The key this one replaced, while it is kept to roll back to.
    pub previous: Option<PreviousNote>,
}

/// The credential status object of the REST API (docs/API.md). Never holds the key.
// Every absent field is left out of the JSON, except `quota` (null by contract).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CredentialView {
    /// Provider id.
    #[cfg_attr(feature = "openapi", schema(example = "groq"))]
    pub provider: &'static str,
    /// Provider name for people.
    #[cfg_attr(feature = "openapi", schema(example = "Groq"))]
    pub provider_name: &'static str,
    /// Whether a key is stored.
    #[cfg_attr(feature = "openapi", schema(example = true))]
    pub api_key_set: bool,
    /// Known prefix and last four characters of the key.
    #[cfg_attr(feature = "openapi", schema(nullable = false, example = "gsk_…9xQa"))]
    pub key_hint: Option<String>,
    /// The key's own endpoint, for `azure_openai` and `openai_compatible`.
    #[cfg_attr(
        feature = "openapi",
        schema(nullable = false, example = "https://llm.example.com/v1")
    )]
    pub base_url: Option<String>,
    /// `unchecked`, `valid`, `invalid` or `error`.
    pub status: CredentialStatus,
    /// The sentence the settings page shows.
    #[cfg_attr(feature = "openapi", schema(example = "Groq API key is valid."))]
    pub status_message: String,
    /// Why there is no verdict (with `error` only).
    #[cfg_attr(feature = "openapi", schema(nullable = false, example = "rate_limited"))]
    pub status_reason: Option<ErrorReason>,
    /// When the provider said to try again.
    #[cfg_attr(feature = "openapi", schema(nullable = false, example = 58))]
    pub retry_after_seconds: Option<u64>,
    /// RFC 3339 time of the last check.
    #[cfg_attr(feature = "openapi", schema(nullable = false, example = "2026-11-24T19:00:00Z", format = DateTime))]
    pub last_checked_at: Option<String>,
    /// How many models the key unlocks, as last discovered.
    #[cfg_attr(feature = "openapi", schema(nullable = false, example = 21))]
    pub models_count: Option<u32>,
    /// RFC 3339 time the first key was stored.
    #[cfg_attr(feature = "openapi", schema(nullable = false, example = "2026-11-24T18:59:58Z", format = DateTime))]
    pub created_at: Option<String>,
    /// RFC 3339 time of the last change.
    #[cfg_attr(feature = "openapi", schema(nullable = false, example = "2026-11-24T19:00:00Z", format = DateTime))]
    pub updated_at: Option<String>,
    /// RFC 3339 time another MailMind function last obtained the key (to the
    /// hour); absent until it is first used.
    #[cfg_attr(feature = "openapi", schema(nullable = false, example = "2026-11-24T20:00:00Z", format = DateTime))]
    pub last_used_at: Option<String>,
    /// RFC 3339 time of the last background re-check, present only while
    /// it reached no verdict (the verdict above is then older and still stands).
    pub last_attempt_at: Option<String>,
    /// Why that re-check reached no verdict (a transient `status_reason`).
    pub last_attempt_reason: Option<ErrorReason>,
    /// The key's credit as the provider last told it (OpenRouter); `null`
    /// where the provider tells nothing.
    #[serialize_always]
    pub quota: Option<Quota>,
    /// The key's id within its provider (on the provider routes: the
    /// primary key's).
    #[cfg_attr(feature = "openapi", schema(nullable = false, example = "default"))]
    pub key_id: Option<String>,
    /// The user's name for the key.
    #[cfg_attr(feature = "openapi", schema(nullable = false, example = "default"))]
    pub key_name: Option<String>,
    /// The key's place in the provider's order, lower first (key routes).
    #[cfg_attr(feature = "openapi", schema(nullable = false, example = 0))]
    pub priority: Option<u32>,
    /// Whether the key may be chosen (key routes).
    #[cfg_attr(feature = "openapi", schema(nullable = false, example = true))]
    pub enabled: Option<bool>,
    /// How many keys the provider has (provider routes, key set).
    #[cfg_attr(feature = "openapi", schema(nullable = false, example = 1))]
    pub keys_count: Option<u32>,
    /// Each of the provider's keys, in its order (provider routes, key set).
    pub keys: Option<Vec<KeySummary>>,
    /// The hint of the key this one replaced, while it can be rolled back
    /// to (`POST .../keys/{key_id}/rollback/`).
    #[cfg_attr(feature = "openapi", schema(nullable = false, example = "gsk_…4fQe"))]
    pub previous_key_hint: Option<String>,
    /// RFC 3339 time until which that rollback is possible.
    #[cfg_attr(feature = "openapi", schema(nullable = false, example = "2026-12-01T19:00:00Z", format = DateTime))]
    pub rollback_until: Option<String>,
    /// The key's revision, for the `ETag` header of the key routes; never in the body.
    #[serde(skip)]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub etag: Option<String>,
}

/// One key of a provider, as the provider's status lists it.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KeySummary {
    /// The key's id.
    #[cfg_attr(feature = "openapi", schema(example = "default"))]
    pub key_id: String,
    /// The user's name for it.
    #[cfg_attr(feature = "openapi", schema(example = "default"))]
    pub key_name: String,
    /// Whether it may be chosen.
    pub enabled: bool,
    /// Its status.
    pub status: CredentialStatus,
    /// Why there is no verdict (with `error` only).
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub status_reason: Option<ErrorReason>,
}

impl CredentialView {
    /// The view of a stored credential.
    pub fn of(provider: &'static ProviderSpec, stored: &StoredCredential) -> CredentialView {
        // A store may still hold a version past its keeping (TTL is lazy).
        let kept = stored.previous.as_ref().filter(|p| p.kept_until > Utc::now());
        CredentialView {
            provider: provider.id,
            provider_name: provider.display_name,
            api_key_set: true,
            key_hint: Some(stored.key_hint.clone()),
            base_url: stored.endpoint.as_ref().map(|e| e.as_str().to_owned()),
            status: stored.check.status,
            status_message: stored.check.message(provider),
            status_reason: stored.check.reason,
            retry_after_seconds: stored.check.retry_after_secs,
            last_checked_at: stored.check.checked_at.as_ref().map(time::to_api),
            models_count: Some(stored.models_count),
            created_at: Some(time::to_api(&stored.created_at)),
            updated_at: Some(time::to_api(&stored.updated_at)),
            last_used_at: stored.last_used_at.as_ref().map(time::to_api),
            last_attempt_at: stored.last_attempt.as_ref().map(|a| time::to_api(&a.at)),
            last_attempt_reason: stored.last_attempt.map(|a| a.reason),
            quota: stored.check.quota.clone(),
            key_id: Some(stored.key.id.to_string()),
            key_name: Some(stored.key.name.clone()),
            priority: Some(stored.key.priority),
            enabled: Some(stored.key.enabled),
            keys_count: None,
            keys: None,
            previous_key_hint: kept.map(|p| p.key_hint.clone()),
            rollback_until: kept.map(|p| time::to_api(&p.kept_until)),
            etag: Some(stored.revision.clone()),
        }
    }

    /// The provider's status: its primary key's ([`super::named_key::primary`]),
    /// with how many keys it has and each one briefly; unset without keys.
    /// `keys` in the provider's order.
    pub fn of_provider(provider: &'static ProviderSpec, keys: &[StoredCredential]) -> CredentialView {
        let Some(primary) = super::named_key::primary(keys) else {
            return CredentialView::not_set(provider);
        };
        CredentialView {
            // The key's own order and switch belong to the key routes.
            priority: None,
            enabled: None,
            keys_count: Some(keys.len() as u32),
            keys: Some(
                keys.iter()
                    .map(|k| KeySummary {
                        key_id: k.key.id.to_string(),
                        key_name: k.key.name.clone(),
                        enabled: k.key.enabled,
                        status: k.check.status,
                        status_reason: k.check.reason,
                    })
                    .collect(),
            ),
            ..CredentialView::of(provider, primary)
        }
    }

    /// A provider the user has no key for.
    pub fn not_set(provider: &'static ProviderSpec) -> CredentialView {
        CredentialView {
            provider: provider.id,
            provider_name: provider.display_name,
            api_key_set: false,
            key_hint: None,
            base_url: None,
            status: CredentialStatus::Unchecked,
            status_message: format!("No {} API key is set.", provider.display_name),
            status_reason: None,
            retry_after_seconds: None,
            last_checked_at: None,
            models_count: None,
            created_at: None,
            updated_at: None,
            last_used_at: None,
            last_attempt_at: None,
            last_attempt_reason: None,
            quota: None,
            key_id: None,
            key_name: None,
            priority: None,
            enabled: None,
            keys_count: None,
            keys: None,
            previous_key_hint: None,
            rollback_until: None,
            etag: None,
        }
    }
}

/// A live `api_key_status` message for the user's WebSocket connections.
/// docs/asyncapi.yaml describes it, examples included; the schema derived
/// here only lets a test hold that document's fields to these.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatusEvent {
    /// Provider id.
    pub provider: &'static str,
    /// Provider name for people.
    pub provider_name: &'static str,
    /// Which of the provider's keys (its id).
    pub key_id: Option<String>,
    /// The user's name for that key.
    pub key_name: Option<String>,
    /// `checking`, then `valid`, `invalid` or `error`.
    pub status: &'static str,
    /// The sentence to show.
    pub message: String,
    /// Why there is no verdict (final `error` only).
    pub reason: Option<ErrorReason>,
    /// When the provider said to try again.
    pub retry_after_seconds: Option<u64>,
    /// Models the key unlocks (final messages).
    pub models_count: Option<u32>,
    /// RFC 3339 time of the check (final messages).
    pub checked_at: Option<String>,
    /// Models a re-discovery added to the stored list (final messages,
    /// only when the list changed).
    pub models_added: Option<u32>,
    /// Models a re-discovery removed from the stored list (with `models_added`).
    pub models_removed: Option<u32>,
}

impl StatusEvent {
    /// Sent while the provider is asked.
    pub fn checking(provider: &'static ProviderSpec) -> StatusEvent {
        StatusEvent {
            provider: provider.id,
            provider_name: provider.display_name,
            status: "checking",
            message: format!("Checking {} API key...", provider.display_name),
            reason: None,
            retry_after_seconds: None,
            models_count: None,
            checked_at: None,
            models_added: None,
            models_removed: None,
            key_id: None,
            key_name: None,
        }
    }

    /// Says which of the provider's keys the message is about.
    pub fn for_key(mut self, key: &super::named_key::KeyMeta) -> StatusEvent {
        self.key_id = Some(key.id.to_string());
        self.key_name = Some(key.name.clone());
        self
    }

    /// Sent with the verdict, once it is stored.
    pub fn finished(provider: &'static ProviderSpec, check: &CheckState, models_count: u32) -> StatusEvent {
        StatusEvent {
            provider: provider.id,
            provider_name: provider.display_name,
            status: check.status.as_str(),
            message: check.message(provider),
            reason: check.reason,
            retry_after_seconds: check.retry_after_secs,
            models_count: Some(models_count),
            checked_at: check.checked_at.as_ref().map(time::to_api),
            models_added: None,
            models_removed: None,
            key_id: None,
            key_name: None,
        }
    }

    /// Says how a re-discovery changed the model list, if it did.
    pub fn with_list_change(mut self, change: Option<ListChange>) -> StatusEvent {
        if let Some(change) = change {
            self.models_added = Some(change.added);
            self.models_removed = Some(change.removed);
        }
        self
    }

    /// The wire form: `{"type":"api_key_status","data":{...}}`.
    pub fn to_message(&self) -> String {
        #[derive(Serialize)]
        struct Envelope<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            data: &'a StatusEvent,
        }
        serde_json::to_string(&Envelope {
            kind: "api_key_status",
            data: self,
        })
        .expect("a status event always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::provider;

    fn groq() -> &'static ProviderSpec {
        provider::find("groq").unwrap()
    }

    #[test]
    fn status_messages_name_the_provider_and_reason() {
        let at = "2026-11-24T19:00:00Z".parse().unwrap();
        let valid = CheckState::from_outcome(&CheckOutcome::Valid { models: vec![] }, at);
        assert_eq!(valid.message(groq()), "Groq API key is valid.");
        let limited = CheckState::from_outcome(
            &CheckOutcome::Failed {
                reason: ErrorReason::RateLimited,
                retry_after_secs: Some(58),
            },
            at,
        );
        assert_eq!(limited.status, CredentialStatus::Error);
        assert!(limited.message(groq()).contains("try again in 58 s"));
        let invalid = CheckState::from_outcome(&CheckOutcome::Invalid, at);
        assert_eq!(invalid.status, CredentialStatus::Invalid);
        assert_eq!(invalid.reason, None);
    }

    #[test]
    fn websocket_message_matches_the_contract() {
        let at = "2026-11-24T19:00:00Z".parse().unwrap();
        let checking: serde_json::Value = serde_json::from_str(&StatusEvent::checking(groq()).to_message()).unwrap();
        assert_eq!(
            checking,
            serde_json::json!({"type": "api_key_status", "data": {
                "provider": "groq", "provider_name": "Groq", "status": "checking",
                "message": "Checking Groq API key..."}})
        );
        let state = CheckState::from_outcome(&CheckOutcome::Valid { models: vec![] }, at);
        let done: serde_json::Value =
            serde_json::from_str(&StatusEvent::finished(groq(), &state, 21).to_message()).unwrap();
        assert_eq!(done["data"]["status"], "valid");
        assert_eq!(done["data"]["message"], "Groq API key is valid.");
        assert_eq!(done["data"]["models_count"], 21);
        assert_eq!(done["data"]["checked_at"], "2026-11-24T19:00:00Z");
        assert!(done["data"].get("reason").is_none());
    }

    #[test]
    fn unset_view_has_no_timestamps_or_hint() {
        let v = serde_json::to_value(CredentialView::not_set(groq())).unwrap();
        assert_eq!(v["api_key_set"], false);
        for absent in [
            "key_hint",
            "created_at",
            "updated_at",
            "last_checked_at",
            "last_used_at",
        ] {
            assert!(v.get(absent).is_none(), "{absent} should be absent");
        }
    }
}
