//! `credentials-revalidate`: the scheduled (EventBridge) run that checks
//! every credential whose verdict is older than `REVALIDATE_AFTER`
//! ([`crate::service::CredentialService::revalidate_due`]), and the
//! function `credentials-resolve` relays its `rejected` reports to (their
//! re-check opens the key, which only this function of the two may do).

use serde::Serialize;
use serde_json::Value;

use super::keys::{self, KeyAnswer};
use crate::service::RevalidationRun;
use crate::state::RevalidationState;

/// What one invocation did.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum RevalidateAnswer {
    /// A scheduled run (whose event says nothing the run needs).
    Run(RevalidationRun),
    /// A relayed report, answered as `credentials-resolve` answers.
    Report(Box<KeyAnswer>),
}

/// A relayed report (an event with `"action": "report"`) is answered as
/// `credentials-resolve` would; any other event starts a run.
pub async fn revalidate(state: &RevalidationState, event: Value) -> RevalidateAnswer {
    if event.get("action").and_then(Value::as_str) == Some("report") {
        return RevalidateAnswer::Report(Box::new(keys::invoke(&state.app, None, event).await));
    }
    RevalidateAnswer::Run(state.app.credentials.revalidate_due(&state.policy).await)
}
