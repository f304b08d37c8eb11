//! Background re-validation: every stored verdict older than
//! `REVALIDATE_AFTER` is checked again without the user asking, by the
//! scheduled `credentials-revalidate` function and by `mailmind-local` alike.
//!
//! - Due credentials come from the store's due index, per provider, oldest
//!   first (never a scan). Each provider has its own workers, at most
//!   `concurrency_per_provider` checks in flight: a slow or rate-limiting
//!   provider holds up only its own queue.
//! - A credential is claimed (one conditional write moving its freshness
//!   time on by a lease) before it is checked, so overlapping runs never check
//!   it twice, and a run that dies leaves it due again once the lease ends.
//! - A run claims nothing new after its time budget; what it did not reach is
//!   still due, and the next run starts there (oldest first).
//! - A verdict (`valid`, `invalid`, and `quota_exhausted`, which is about the
//!   account) is stored with the models and pushed exactly as a user's check;
//!   a transient failure keeps the stored verdict, records the attempt, and
//!   backs off. This calls the provider directly, never the user-facing
//!   entry points, so it spends no user's budget and pushes no `checking`.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use chrono::Utc;
use futures_util::future::join_all;
use serde::Serialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{CredentialService, ServiceError};
use crate::deadline::{self, Budgets, DEFAULT_REQUEST_BUDGET};
use crate::domain::provider::PROVIDERS;
use crate::domain::{CheckOutcome, FailedAttempt, ProviderSpec, StoredCredential, UserId};
use crate::envelope;
use crate::ports::{Deferral, DueCredential, DueQuery, EncryptionContext, KeyRevision, StoreError};

/// How background re-validation runs (`crate::config` reads it from the
/// environment; the local server from its flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevalidationPolicy {
    /// A stored verdict older than this is checked again.
    pub revalidate_after: Duration,
    /// A run claims no new credential after this long.
    pub budget: Duration,
    /// Checks in flight per provider.
    pub concurrency_per_provider: usize,
}

/// The first back-off after a check without a verdict; it doubles with each
/// further one, up to `revalidate_after`.
const FIRST_BACKOFF: Duration = Duration::from_secs(5 * 60);

/// How long a claim holds beyond the budget: one provider check is bounded
/// well inside this (`PROVIDER_TIMEOUT_MS`, 10 s by default).
const CLAIM_MARGIN: Duration = Duration::from_secs(120);

impl RevalidationPolicy {
    /// `REVALIDATE_AFTER` when unset.
    pub const DEFAULT_AFTER: Duration = Duration::from_secs(24 * 3600);
    /// `REVALIDATE_BUDGET` when unset (the function's timeout is 15 minutes).
    pub const DEFAULT_BUDGET: Duration = Duration::from_secs(10 * 60);
    /// `REVALIDATE_CONCURRENCY` when unset.
    pub const DEFAULT_CONCURRENCY: usize = 8;

    fn after(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.revalidate_after).unwrap_or(chrono::Duration::MAX)
    }

    /// Where a claim moves the freshness time: due again once the lease ends.
    fn lease_until(&self) -> chrono::DateTime<Utc> {
        let lease = chrono::Duration::from_std(self.budget + CLAIM_MARGIN).unwrap_or(chrono::Duration::MAX);
        Utc::now() - self.after() + lease
    }

    /// The wait before the next check after `failures` in a row without a
    /// verdict (at least what the provider asked for).
    fn backoff(&self, failures: u32, retry_after_secs: Option<u64>) -> Duration {
        let doubled = FIRST_BACKOFF.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
        doubled
            .min(self.revalidate_after)
            .max(Duration::from_secs(retry_after_secs.unwrap_or(0)))
    }
}

/// What one run did.
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct RevalidationRun {
    /// Verdicts stored and pushed.
    pub checked: u32,
    /// Checks without a verdict: the verdict kept, the attempt recorded.
    pub deferred: u32,
    /// Claimed by another run, refreshed, replaced or deleted meanwhile.
    pub skipped: u32,
    /// Store, key service or other failures; the credential is due again
    /// once its claim ends.
    pub failed: u32,
}

impl std::ops::AddAssign for RevalidationRun {
    fn add_assign(&mut self, other: Self) {
        self.checked += other.checked;
        self.deferred += other.deferred;
        self.skipped += other.skipped;
        self.failed += other.failed;
    }
}

/// One provider's due credentials, fetched a page at a time and shared by
/// its workers. `seen` keeps one run from taking a credential twice (the
/// index may still list one just claimed, or one backed off for less than a run).
struct DueQueue {
    waiting: VecDeque<DueCredential>,
    seen: HashSet<UserId>,
    exhausted: bool,
}

/// How much of each provider's backlog a run's progress metric counts.
const BACKLOG_SAMPLE: usize = 100;

impl CredentialService {
    /// One re-validation run over every provider, within `policy`'s budget.
    pub async fn revalidate_due(&self, policy: &RevalidationPolicy) -> RevalidationRun {
        let deadline = Instant::now() + policy.budget;
        let runs = PROVIDERS
            .iter()
            .map(|provider| self.revalidate_provider(provider, policy, deadline));
        let mut total = RevalidationRun::default();
        for run in join_all(runs).await {
            total += run;
        }
        tracing::info!(
            checked = total.checked,
            deferred = total.deferred,
            skipped = total.skipped,
            failed = total.failed,
            "re-validation run finished"
        );
        let (due_remaining, lag) = self.backlog(policy).await;
        crate::metrics::revalidation_run(u64::from(total.checked), due_remaining, lag);
        total
    }

    /// What is still due after a run, for the progress metric: counted up
    /// to [`BACKLOG_SAMPLE`] per provider (one keys-only page each), and how
    /// long the oldest of it has been due (zero when nothing is).
    async fn backlog(&self, policy: &RevalidationPolicy) -> (u64, Duration) {
        let cutoff = Utc::now() - policy.after();
        let pages = PROVIDERS.iter().map(|provider| {
            self.store.due(DueQuery {
                provider,
                before: cutoff,
                limit: BACKLOG_SAMPLE,
            })
        });
        let mut remaining = 0;
        let mut oldest = None;
        for page in join_all(pages).await {
            match page {
                Ok(due) => {
                    remaining += due.len() as u64;
                    oldest = due.iter().map(|d| d.fresh_at).chain(oldest).min();
                }
                Err(e) => tracing::warn!(error = %e, "cannot measure the re-validation backlog"),
            }
        }
        let lag = oldest.map_or(Duration::ZERO, |fresh_at| {
            (cutoff - fresh_at).to_std().unwrap_or_default()
        });
        (remaining, lag)
    }

    async fn revalidate_provider(
        &self,
        provider: &'static ProviderSpec,
        policy: &RevalidationPolicy,
        deadline: Instant,
    ) -> RevalidationRun {
        let queue = Mutex::new(DueQueue {
            waiting: VecDeque::new(),
            seen: HashSet::new(),
            exhausted: false,
        });
        let workers = (0..policy.concurrency_per_provider.max(1))
            .map(|_| self.revalidation_worker(provider, policy, deadline, &queue));
        let mut total = RevalidationRun::default();
        for run in join_all(workers).await {
            total += run;
        }
        total
    }

    async fn revalidation_worker(
        &self,
        provider: &'static ProviderSpec,
        policy: &RevalidationPolicy,
        deadline: Instant,
        queue: &Mutex<DueQueue>,
    ) -> RevalidationRun {
        let mut run = RevalidationRun::default();
        while Instant::now() < deadline {
            let Some(due) = self.next_due(provider, policy, queue).await else {
                break;
            };
            match self.store.claim_due(&due, policy.lease_until()).await {
                Ok(Some(credential)) => {
                    // Each re-check is a request of its own with its own
                    // deadline, not a share of the whole run's (`crate::deadline`).
                    let request = Budgets::new(DEFAULT_REQUEST_BUDGET);
                    run += deadline::scope(request, self.revalidate_claimed(provider, credential, policy)).await
                }
                Ok(None) => run.skipped += 1,
                Err(e) => {
                    tracing::warn!(provider = provider.id, error = %e, "cannot claim a due credential");
                    run.failed += 1;
                }
            }
        }
        run
    }

    /// The next due credential of `provider`, fetching a page when none waits.
    async fn next_due(
        &self,
        provider: &'static ProviderSpec,
        policy: &RevalidationPolicy,
        queue: &Mutex<DueQueue>,
    ) -> Option<DueCredential> {
        let mut queue = queue.lock().await;
        if queue.waiting.is_empty() && !queue.exhausted {
            let page_size = policy.concurrency_per_provider.max(1) * 4;
            let before = Utc::now() - policy.after();
            let query = DueQuery {
                provider,
                before,
                limit: page_size,
            };
            match self.store.due(query).await {
                Ok(page) => {
                    let queue = &mut *queue;
                    let fresh: Vec<DueCredential> =
                        page.into_iter().filter(|d| queue.seen.insert(d.user.clone())).collect();
                    queue.exhausted = fresh.is_empty();
                    queue.waiting.extend(fresh);
                }
                Err(e) => {
                    tracing::warn!(provider = provider.id, error = %e, "cannot list due credentials");
                    queue.exhausted = true;
                }
            }
        }
        queue.waiting.pop_front()
    }

    /// Checks a claimed credential with the provider and records the result.
    async fn revalidate_claimed(
        &self,
        provider: &'static ProviderSpec,
        credential: StoredCredential,
        policy: &RevalidationPolicy,
    ) -> RevalidationRun {
        let done = |field: fn(&mut RevalidationRun)| {
            let mut run = RevalidationRun::default();
            field(&mut run);
            run
        };
        let user = credential.user_id.clone();
        let context = EncryptionContext::of(&credential);
        let key = match envelope::open(self.keyring.as_ref(), &context, &credential.sealed).await {
            Ok(key) => key,
            Err(e) => {
                tracing::error!(provider = provider.id, error = %e, "stored key does not open");
                return done(|r| r.failed += 1);
            }
        };
        let (outcome, quota) = self.ask_provider(provider, credential.endpoint.as_ref(), &key).await;
        drop(key);
        match outcome {
            CheckOutcome::Failed {
                reason,
                retry_after_secs,
            } if reason.is_transient() => {
                let now = Utc::now();
                let failures = credential.last_attempt.map_or(1, |a| a.failures.saturating_add(1));
                let wait = policy.backoff(failures, retry_after_secs);
                let attempt = FailedAttempt {
                    at: now,
                    reason,
                    failures,
                };
                let deferral = Deferral {
                    attempt,
                    fresh_until: now - policy.after()
                        + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX),
                };
                match self.store.record_attempt(KeyRevision::of(&credential), deferral).await {
                    Ok(()) => {
                        tracing::info!(
                            provider = provider.id,
                            reason = reason.as_str(),
                            failures,
                            retry_in_secs = wait.as_secs(),
                            "re-check without a verdict; the stored verdict stands"
                        );
                        done(|r| r.deferred += 1)
                    }
                    Err(StoreError::NotFound | StoreError::Conflict) => done(|r| r.skipped += 1),
                    Err(e) => {
                        tracing::warn!(provider = provider.id, error = %e, "cannot record a re-check attempt");
                        done(|r| r.failed += 1)
                    }
                }
            }
            outcome => {
                let audience = self.notifier.audience(&user).await;
                match self
                    .record_outcome(
                        &user,
                        provider,
                        credential,
                        (outcome, quota),
                        audience,
                        crate::domain::activity::CheckedBy::Background,
                    )
                    .await
                {
                    Ok(_) => done(|r| r.checked += 1),
                    Err(ServiceError::CredentialNotFound(_)) => done(|r| r.skipped += 1),
                    Err(e) => {
                        tracing::warn!(provider = provider.id, error = %e, "cannot record a re-check");
                        done(|r| r.failed += 1)
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(after_secs: u64) -> RevalidationPolicy {
        RevalidationPolicy {
            revalidate_after: Duration::from_secs(after_secs),
            budget: Duration::from_secs(60),
            concurrency_per_provider: 2,
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_revalidation_age_and_honours_retry_after() {
        let p = policy(24 * 3600);
        assert_eq!(p.backoff(1, None), Duration::from_secs(300));
        assert_eq!(p.backoff(2, None), Duration::from_secs(600));
        assert_eq!(p.backoff(3, Some(3600)), Duration::from_secs(3600));
        assert_eq!(p.backoff(40, None), Duration::from_secs(24 * 3600));
        assert_eq!(policy(2).backoff(1, None), Duration::from_secs(2));
    }
}
