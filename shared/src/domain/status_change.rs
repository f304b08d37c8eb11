//! A change of a stored key's status, as the rest of MailMind hears of it
//! (an EventBridge event on AWS, a JSON line locally): whoever caused it, so
//! a key that dies while nobody looks is still told to the user.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::activity::CheckedBy;
use super::{CheckState, CredentialStatus, ErrorReason, ProviderSpec, UserId};

/// The `source` of every event.
pub const EVENT_SOURCE: &str = "mailmind.credentials";
/// The `detail-type` of every event.
pub const EVENT_DETAIL_TYPE: &str = "Credential Status Changed";

/// The event's `detail`. Never the key, nor anything of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusChange {
    /// The user's `sub`.
    pub user_id: String,
    /// The provider id.
    pub provider: &'static str,
    /// The status before; `null` for a key that was not stored before.
    pub old_status: Option<CredentialStatus>,
    /// The status now.
    pub new_status: CredentialStatus,
    /// Why there is no verdict (with `error` only), e.g. `quota_exhausted`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<ErrorReason>,
    /// RFC 3339 time of the change.
    pub changed_at: String,
    /// What caused it.
    pub cause: CheckedBy,
}

impl StatusChange {
    /// The change from `old` (none: a new key) to `new`, or `None` when the
    /// status and its reason stay the same.
    pub fn between(
        user: &UserId,
        provider: &'static ProviderSpec,
        old: Option<&CheckState>,
        new: &CheckState,
        cause: CheckedBy,
        at: DateTime<Utc>,
    ) -> Option<StatusChange> {
        if old.is_some_and(|old| (old.status, old.reason) == (new.status, new.reason)) {
            return None;
        }
        Some(StatusChange {
            user_id: user.as_str().to_owned(),
            provider: provider.id,
            old_status: old.map(|old| old.status),
            new_status: new.status,
            reason: new.reason,
            changed_at: at.to_rfc3339_opts(SecondsFormat::Secs, true),
            cause,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(status: CredentialStatus, reason: Option<ErrorReason>) -> CheckState {
        CheckState {
            status,
            reason,
            retry_after_secs: None,
            checked_at: None,
            quota: None,
        }
    }

    #[test]
    fn only_a_different_status_or_reason_is_a_change() {
        let user = UserId::parse("u-1").unwrap();
        let groq = crate::domain::provider::find("groq").unwrap();
        let at = DateTime::parse_from_rfc3339("2026-12-05T12:00:00Z").unwrap().to_utc();
        let valid = state(CredentialStatus::Valid, None);
        let quota = state(CredentialStatus::Error, Some(ErrorReason::QuotaExhausted));
        let limited = state(CredentialStatus::Error, Some(ErrorReason::RateLimited));
        let change = |old: Option<&CheckState>, new: &CheckState| {
            StatusChange::between(&user, groq, old, new, CheckedBy::Report, at)
        };
        assert_eq!(change(Some(&valid), &valid), None);
        assert_eq!(change(Some(&quota), &quota), None);
        assert!(change(Some(&limited), &quota).is_some(), "another reason is a change");
        assert!(change(None, &valid).is_some(), "a new key is a change");
        assert_eq!(
            serde_json::to_value(change(Some(&valid), &quota).unwrap()).unwrap(),
            serde_json::json!({"user_id": "u-1", "provider": "groq", "old_status": "valid",
                               "new_status": "error", "reason": "quota_exhausted",
                               "changed_at": "2026-12-05T12:00:00Z", "cause": "report"})
        );
        assert_eq!(
            serde_json::to_value(change(None, &valid).unwrap()).unwrap()["old_status"],
            serde_json::Value::Null
        );
    }
}
