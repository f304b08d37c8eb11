//! `credentials-revalidate`: the scheduled (EventBridge) run that checks
//! every credential whose verdict is older than `REVALIDATE_AFTER`
//! ([`crate::service::CredentialService::revalidate_due`]).

use crate::AppState;
use crate::service::{RevalidationPolicy, RevalidationRun};

/// What the scheduled function holds: the validating services and its policy.
pub struct RevalidationState {
    /// Store, key service, provider client and pushes.
    pub app: AppState,
    /// Age, time budget and per-provider concurrency of a run.
    pub policy: RevalidationPolicy,
}

/// One run per scheduled event (whose content says nothing the run needs);
/// answers what it did.
pub async fn revalidate(state: &RevalidationState, _event: serde_json::Value) -> RevalidationRun {
    state.app.credentials.revalidate_due(&state.policy).await
}
