//! `credentials-revalidate`: the scheduled (EventBridge) run that checks
//! every credential whose verdict is older than `REVALIDATE_AFTER`
//! ([`crate::service::CredentialService::revalidate_due`]).

use crate::service::RevalidationRun;
use crate::state::RevalidationState;

/// One run per scheduled event (whose content says nothing the run needs);
/// answers what it did.
pub async fn revalidate(state: &RevalidationState, _event: serde_json::Value) -> RevalidationRun {
    state.app.credentials.revalidate_due(&state.policy).await
}
