//! Audit lines: one structured log line per create, update, delete, check
//! verdict, resolve, usage report and tamper refusal, written by the credential service (so Lambda
//! and the local server both write them). A line says who (`user_id`), what
//! (`action`), which `provider`, and the `outcome`; never the key, a token or
//! a body. Format (JSON, one line, target `mailmind::audit`):
//!
//! ```text
//! {"timestamp":"…","level":"INFO","message":"audit","audit":true,"user_id":"…",
//!  "action":"create","provider":"groq","outcome":"valid","target":"mailmind::audit"}
//! ```
//!
//! `outcome` is the stored status (`valid`, `invalid`, `error`) after a
//! successful create, update or check, `deleted` after a delete,
//! `tamper_refused` when a stored key fails to open (its record was altered),
//! else the API error code of the refusal (e.g. `credential_exists`).
//! Resolve and report lines (actions `resolve`, `report`) also carry
//! `key_revision`, `consumer` (the caller's own label, not proof) and, for a
//! report, `reported` (the outcome the caller reported); their `outcome` is
//! `resolved` or what the report did (`rechecked`, `recorded`, …).
//!
//! Audit lines are written whatever the log filter says
//! (`crate::telemetry` always enables the target at `info`).

use crate::domain::activity::Consumer;
use crate::domain::{CredentialView, ProviderSpec, UsageOutcome, UserId};
use crate::ports::KeyringError;

/// What was done to a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    /// `POST /credentials`.
    Create,
    /// `PUT /credentials/{provider}`.
    Update,
    /// `DELETE /credentials/{provider}`.
    Delete,
    /// A re-check of a stored key (the check route, a usage report).
    Check,
    /// A key handed to another MailMind function (every resolve is audited).
    Resolve,
    /// A MailMind function's usage report (every report is audited).
    Report,
    /// `POST /credentials/{provider}/keys/{key_id}/rollback`.
    Rollback,
}

impl AuditAction {
    /// The `action` field.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Create => "create",
            AuditAction::Update => "update",
            AuditAction::Delete => "delete",
            AuditAction::Check => "check",
            AuditAction::Resolve => "resolve",
            AuditAction::Report => "report",
            AuditAction::Rollback => "rollback",
        }
    }
}

/// The `outcome` of a stored key that does not open: its record was altered.
pub const TAMPER_REFUSED: &str = "tamper_refused";

/// Writes one audit line.
pub fn record(user: &UserId, action: AuditAction, provider: &ProviderSpec, outcome: &str) {
    write(user, action, provider, KeyUse::default(), outcome);
}

/// What an audit line of a key's use adds (absent fields are left out).
#[derive(Default)]
struct KeyUse<'a> {
    key_revision: Option<&'a str>,
    consumer: Option<&'a str>,
    reported: Option<&'static str>,
}

/// The one place an audit line is written.
fn write(user: &UserId, action: AuditAction, provider: &ProviderSpec, key_use: KeyUse<'_>, outcome: &str) {
    tracing::info!(
        target: "mailmind::audit",
        audit = true,
        user_id = user.as_str(),
        action = action.as_str(),
        provider = provider.id,
        key_revision = key_use.key_revision,
        consumer = key_use.consumer,
        reported = key_use.reported,
        outcome,
        "audit"
    );
}

/// Writes the audit line of a resolve or report: also the key's
/// `key_revision` (when known), the caller's self-chosen `consumer` label,
/// and for a report what was `reported`. `outcome` is `resolved`, what the
/// report did (`rechecked`, `recorded`, `debounced`, `stale`), or the error code.
pub fn record_key_use(
    user: &UserId,
    action: AuditAction,
    provider: &ProviderSpec,
    key_revision: Option<&str>,
    consumer: &Consumer,
    outcome: &str,
    reported: Option<UsageOutcome>,
) {
    let key_use = KeyUse {
        key_revision,
        consumer: Some(consumer.as_str()),
        reported: reported.map(UsageOutcome::as_str),
    };
    write(user, action, provider, key_use, outcome);
}

/// Writes the audit line of a create, update or delete that ended in `result`.
pub fn record_result<T: AuditedOutcome, E: AuditedOutcome>(
    user: &UserId,
    action: AuditAction,
    provider: &ProviderSpec,
    result: &Result<T, E>,
) {
    let outcome = match result {
        Ok(done) => done.outcome(),
        Err(refusal) => refusal.outcome(),
    };
    record(user, action, provider, outcome);
}

/// Writes the audit line of a stored key that did not open, if that is what
/// `error` says.
pub fn record_if_tampered(user: &UserId, action: AuditAction, provider: &ProviderSpec, error: &KeyringError) {
    if matches!(error, KeyringError::Rejected) {
        record(user, action, provider, TAMPER_REFUSED);
    }
}

/// What an operation's audit line says: the stored status or `deleted` for
/// a success, the API error code for a refusal (the service says which).
pub trait AuditedOutcome {
    /// The `outcome` field.
    fn outcome(&self) -> &'static str;
}

impl AuditedOutcome for CredentialView {
    fn outcome(&self) -> &'static str {
        self.status.as_str()
    }
}

impl AuditedOutcome for () {
    fn outcome(&self) -> &'static str {
        "deleted"
    }
}
