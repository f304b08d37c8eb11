//! Keys in use: other MailMind functions obtain a user's key here
//! (`resolve`), sealed as stored, and open it with their own KMS permission;
//! they say when the provider refused it (`report`), so the stored status and
//! the user's open sockets follow what using the key found.

use chrono::Utc;

use super::{CredentialService, Result, ServiceError};
use crate::audit::AuditAction;
use crate::domain::StoredCredential;
use crate::domain::activity::{ActivityEntry, ActivityEvent, CheckedBy, Consumer};
use crate::domain::named_key::{self, KeyId, KeyMeta, Unusable};
use crate::domain::{
    CheckState, CredentialStatus, ErrorReason, ProviderSpec, ReportResult, SealedKey, UsageOutcome, UserId,
};
use crate::ports::{EncryptionContext, KeyRevision, KeyUse, ModelsUpdate, OncePerWindow, StoreError};

/// At most one report-triggered re-check per credential and key in this window.
pub const RECHECK_INTERVAL: chrono::Duration = chrono::Duration::minutes(5);

/// `last_used_at` is written at most this often per credential.
pub const LAST_USE_RESOLUTION: chrono::Duration = chrono::Duration::hours(1);

/// A user's key for a MailMind function, sealed exactly as stored: only a
/// holder of `kms:Decrypt` under its context (the key policy lists the
/// consumers' roles) can open it.
#[derive(Debug)]
pub struct ResolvedKey {
    /// The sealed key.
    pub sealed: SealedKey,
    /// What it is bound to: the KMS encryption context, and (as
    /// [`crate::envelope::aad`]) the AES-GCM associated data.
    pub context: EncryptionContext,
    /// Identifies this key; a report names it, so a report about a key that
    /// was replaced meanwhile changes nothing.
    pub key_revision: String,
    /// The stored status; the key is returned whatever it is.
    pub status: CredentialStatus,
    /// The provider root the key is for (the same one checks use).
    pub base_url: String,
    /// Which of the provider's keys was chosen, and why.
    pub chosen: Chosen,
}

/// Which key a resolve chose, and which it passed over.
#[derive(Debug, Clone, PartialEq)]
pub struct Chosen {
    /// The key.
    pub key: KeyMeta,
    /// Not the primary key: the keys in `skipped` came first.
    pub fallback: bool,
    /// Enabled keys passed over, in order, and why.
    pub skipped: Vec<(KeyId, Unusable)>,
}

/// One usage report, as a consumer made it.
#[derive(Clone, Copy)]
struct UsageReport<'a> {
    revision: &'a str,
    outcome: UsageOutcome,
    consumer: &'a Consumer,
    /// The provider's wait with a `rate_limited`, when the caller passed it on.
    retry_after_secs: Option<u64>,
}

/// What a usage report did, and the credential's status afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportAnswer {
    /// `rechecked`, `recorded`, `debounced` or `stale`.
    pub result: ReportResult,
    /// The stored status now.
    pub status: CredentialStatus,
    /// The key the report was about, when its revision named one.
    pub key_id: Option<KeyId>,
}

impl CredentialService {
    /// The user's key for `provider`, sealed as stored: one store read and
    /// no key service call (the consumer opens it). A successful resolve
    /// records the use ([`Self::record_use`]); that write failing never
    /// fails the resolve.
    /// `consumer` is the caller's label for itself: the audit line (every
    /// resolve has one) and the `used` activity entry name it.
    pub async fn resolve(
        &self,
        user: &UserId,
        provider: &'static ProviderSpec,
        consumer: &Consumer,
    ) -> Result<ResolvedKey> {
        let result = self.resolve_key(user, provider, consumer).await;
        let (revision, outcome) = match &result {
            Ok(key) => (Some(key.key_revision.as_str()), "resolved"),
            Err(e) => (None, e.code()),
        };
        crate::audit::record_key_use(user, AuditAction::Resolve, provider, revision, consumer, outcome, None);
        result
    }

    async fn resolve_key(
        &self,
        user: &UserId,
        provider: &'static ProviderSpec,
        consumer: &Consumer,
    ) -> Result<ResolvedKey> {
        let keys = self.store.keys(user, provider).await?;
        if keys.is_empty() {
            return Err(ServiceError::CredentialNotFound(provider));
        }
        let choice = named_key::choose(&keys, Utc::now()).map_err(|states| {
            let states = states.into_iter().map(|(id, why)| (id.clone(), why)).collect();
            ServiceError::NoUsableKey(provider, states)
        })?;
        let chosen = Chosen {
            key: choice.key.key.clone(),
            fallback: choice.fallback,
            skipped: choice.skipped.iter().map(|(id, why)| ((*id).clone(), *why)).collect(),
        };
        let existing = choice.key.clone();
        self.record_use(&existing, consumer).await;
        tracing::info!(
            provider = provider.id,
            key = existing.key.id.as_str(),
            fallback = chosen.fallback,
            status = existing.check.status.as_str(),
            "key resolved"
        );
        Ok(ResolvedKey {
            chosen,
            context: EncryptionContext::of(&existing),
            base_url: match &existing.endpoint {
                Some(endpoint) => endpoint.as_str().to_owned(),
                None => self.providers.base_url(provider),
            },
            sealed: existing.sealed,
            key_revision: existing.revision,
            status: existing.check.status,
        })
    }

    /// Records `consumer`'s use of the key, unless its `used` entry of the
    /// last [`LAST_USE_RESOLUTION`] is on the credential already: then no
    /// write at all. Else one conditional write of the credential's consumer
    /// map, `last_used_at` and the entry together, so concurrent resolves
    /// record one entry. A failure never fails the resolve.
    async fn record_use(&self, existing: &StoredCredential, consumer: &Consumer) {
        let provider = existing.provider;
        let now = Utc::now();
        if existing
            .consumer_uses
            .recorded_since(consumer, now - LAST_USE_RESOLUTION)
        {
            return;
        }
        let use_ = KeyUse {
            seen: existing.consumer_uses.clone(),
            uses: existing.consumer_uses.with_use(consumer, now),
            entry: ActivityEntry::new(
                now,
                ActivityEvent::Used {
                    consumer: consumer.as_str().to_owned(),
                },
            ),
        };
        match self.store.record_use(KeyRevision::of(existing), &use_).await {
            Ok(written) => tracing::debug!(provider = provider.id, written, "use recorded"),
            Err(e) => {
                tracing::warn!(provider = provider.id, error = %e, "cannot record the use");
                crate::metrics::activity_not_recorded("used");
            }
        }
    }

    /// A MailMind function (`consumer`, its own label) used the key with
    /// `revision` and the provider refused it with `outcome` (every report
    /// has an audit line; one about the current key, a `reported` entry):
    /// - a report about a replaced key is `stale` and changes nothing;
    /// - `rejected` re-checks the key now, as a check does (`rechecked`), at
    ///   most once per [`RECHECK_INTERVAL`] per key (else `debounced`);
    /// - `quota_exhausted` stores status `error` / `quota_exhausted` without
    ///   asking the provider and pushes it (`recorded`);
    /// - `rate_limited` is logged for metrics only (`recorded`).
    pub async fn report(
        &self,
        user: &UserId,
        provider: &'static ProviderSpec,
        revision: &str,
        outcome: UsageOutcome,
        consumer: &Consumer,
        retry_after_secs: Option<u64>,
    ) -> Result<ReportAnswer> {
        let report = UsageReport {
            revision,
            outcome,
            consumer,
            retry_after_secs,
        };
        let result = self.report_use(user, provider, report).await;
        let done = match &result {
            Ok(answer) => answer.result.as_str(),
            Err(e) => e.code(),
        };
        crate::audit::record_key_use(
            user,
            AuditAction::Report,
            provider,
            Some(revision),
            consumer,
            done,
            Some(outcome),
        );
        result
    }

    async fn report_use(
        &self,
        user: &UserId,
        provider: &'static ProviderSpec,
        report: UsageReport<'_>,
    ) -> Result<ReportAnswer> {
        let UsageReport {
            revision,
            outcome,
            consumer,
            retry_after_secs,
        } = report;
        // The report names the key by its revision (each key has its own).
        let keys = self.store.keys(user, provider).await?;
        let reported = keys.iter().find(|k| k.revision == revision);
        let key_id = reported.map(|k| k.key.id.clone());
        let answer = |result, status| {
            tracing::info!(
                provider = provider.id,
                outcome = outcome.as_str(),
                result = ReportResult::as_str(result),
                status = CredentialStatus::as_str(status),
                "key usage reported"
            );
            Ok(ReportAnswer {
                result,
                status,
                key_id: key_id.clone(),
            })
        };
        let Some(existing) = reported.cloned() else {
            // No key has that revision any more: it was replaced.
            return match named_key::primary(&keys) {
                Some(primary) => answer(ReportResult::Stale, primary.check.status),
                None => Err(ServiceError::CredentialNotFound(provider)),
            };
        };
        let reported = ActivityEvent::Reported {
            outcome,
            consumer: consumer.as_str().to_owned(),
        };
        self.note(user, provider, reported).await;
        match outcome {
            UsageOutcome::RateLimited => {
                // Rests until the provider's wait is over; resolve takes the next key meanwhile.
                let wait = retry_after_secs.unwrap_or(named_key::DEFAULT_COOLDOWN_SECS).min(86_400);
                let until = Utc::now() + chrono::Duration::seconds(wait as i64);
                match self.store.cool_down(KeyRevision::of(&existing), until).await {
                    Ok(()) => answer(ReportResult::Recorded, existing.check.status),
                    Err(StoreError::Conflict) => answer(ReportResult::Stale, existing.check.status),
                    Err(StoreError::NotFound) => Err(ServiceError::CredentialNotFound(provider)),
                    Err(e) => Err(e.into()),
                }
            }
            UsageOutcome::QuotaExhausted => {
                let check = CheckState {
                    status: CredentialStatus::Error,
                    reason: Some(ErrorReason::QuotaExhausted),
                    retry_after_secs: None,
                    checked_at: Some(Utc::now()),
                    // The report tells nothing of how much credit is left.
                    quota: existing.check.quota.clone(),
                };
                super::write_fits_before_deadline(provider)?;
                match self
                    .store
                    .record_check(KeyRevision::of(&existing), &check, ModelsUpdate::Keep)
                    .await
                {
                    Ok(()) => {}
                    Err(StoreError::Conflict) => {
                        return answer(ReportResult::Stale, self.get(user, provider).await?.status);
                    }
                    Err(StoreError::NotFound) => return Err(ServiceError::CredentialNotFound(provider)),
                    Err(e) => return Err(e.into()),
                }
                let mut audience = self.notifier.audience(user).await;
                self.announce(&mut audience, provider, &existing.key, &check, existing.models_count)
                    .await;
                self.publish_change(user, provider, Some(&existing.check), &check, CheckedBy::Report)
                    .await;
                answer(ReportResult::Recorded, check.status)
            }
            UsageOutcome::Rejected => {
                let now = Utc::now();
                let when = OncePerWindow {
                    at: now,
                    unless_since: now - RECHECK_INTERVAL,
                };
                match self.store.claim_recheck(KeyRevision::of(&existing), when).await {
                    Ok(true) => {}
                    Ok(false) => return answer(ReportResult::Debounced, existing.check.status),
                    Err(StoreError::Conflict) => {
                        return answer(ReportResult::Stale, self.get(user, provider).await?.status);
                    }
                    Err(StoreError::NotFound) => return Err(ServiceError::CredentialNotFound(provider)),
                    Err(e) => return Err(e.into()),
                }
                let audience = self.notifier.audience(user).await;
                let checked = self
                    .recheck(user, provider, existing, audience, CheckedBy::Report)
                    .await?;
                answer(ReportResult::Rechecked, checked.check.status)
            }
        }
    }
}
