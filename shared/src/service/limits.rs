//! Abuse limits: a per-user budget of provider-calling validations, kept in
//! the store ([`LimitStore`]) so it holds across processes and Lambda
//! instances, and the number of sockets a user may hold open.

use std::sync::Arc;

use chrono::Utc;

use super::{CredentialService, Result, ServiceError};
use crate::domain::UserId;
use crate::ports::{Budget, LimitStore, Spend};

/// The budget bucket user-initiated validations (create, update, check) spend from.
pub const VALIDATIONS_BUCKET: &str = "validations";

/// How many validations a user may start per window (`crate::config` reads
/// it from the environment or the local server's flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidationLimit {
    /// Validations per window; 0 turns the limit off.
    pub per_window: u32,
    /// The window's length.
    pub window: chrono::Duration,
}

impl Default for ValidationLimit {
    /// 10 per user per minute.
    fn default() -> Self {
        ValidationLimit {
            per_window: 10,
            window: chrono::Duration::seconds(60),
        }
    }
}

/// The limiter a [`CredentialService`] spends from.
pub(super) struct Limiter {
    pub(super) store: Arc<dyn LimitStore>,
    pub(super) limit: ValidationLimit,
}

impl CredentialService {
    /// Spends budget from `store`, `limit` validations per user per window.
    /// Without this the service does not limit (only tests build it so).
    pub fn with_validation_limit(mut self, store: Arc<dyn LimitStore>, limit: ValidationLimit) -> CredentialService {
        self.limiter = Some(Limiter { store, limit });
        self
    }

    /// The one gate of user-initiated validations (create, update, check, and
    /// whatever else calls those): spends one unit of the user's budget
    /// before any key service or provider call, or refuses with
    /// [`ServiceError::TooManyRequests`]. Report re-checks and background
    /// re-validation do not pass here, so they never spend it.
    pub(super) async fn admit_validation(&self, user: &UserId) -> Result<()> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        let limit = limiter.limit;
        if limit.per_window == 0 {
            return Ok(());
        }
        let budget = Budget {
            bucket: VALIDATIONS_BUCKET,
            limit: limit.per_window,
            window: limit.window,
        };
        match limiter.store.spend(user, &budget, Utc::now()).await? {
            Spend::Granted => Ok(()),
            Spend::Refused { retry_after } => {
                // Whole seconds, rounded up: retrying at once never lands early.
                let retry_after_secs = (retry_after.num_milliseconds().max(1) as u64).div_ceil(1000);
                tracing::warn!(retry_after_secs, "validation refused: limit reached");
                crate::metrics::rate_limited(crate::metrics::RateLimit::Validations);
                Err(ServiceError::TooManyRequests {
                    limit: limit.per_window,
                    window_secs: limit.window.num_seconds().max(1) as u64,
                    retry_after_secs,
                })
            }
        }
    }
}

/// How many WebSocket connections a user may have open at once.
pub const DEFAULT_MAX_CONNECTIONS_PER_USER: u32 = 10;
