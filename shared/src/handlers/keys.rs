//! `credentials-resolve`: the function other MailMind functions invoke
//! (`lambda:InvokeFunction`, IAM is the authentication) to obtain a user's
//! key and to report how the provider treated it. Not behind API Gateway.
//!
//! Every request gets a JSON object back, never a function error for an
//! expected failure (so async callers are not retried blindly):
//! `{"ok": true, ...}` or `{"ok": false, "error": {"code", "detail"}}` with
//! codes `invalid_request`, `unknown_provider`, `credential_not_found`,
//! `service_unavailable` (safe to retry) and `internal`. docs/API.md has the
//! payloads.

use std::time::Instant;

use serde_json::{Map, Value, json};

use super::protocol::ApiError;
use crate::AppState;
use crate::domain::{ProviderSpec, UsageOutcome, UserId, provider};

/// A request, as read from the event.
#[derive(Debug)]
enum KeyRequest {
    Resolve {
        user: UserId,
        provider: &'static ProviderSpec,
    },
    Report {
        user: UserId,
        provider: &'static ProviderSpec,
        revision: String,
        outcome: UsageOutcome,
    },
}

/// The answer to one invocation of `credentials-resolve`: the same shared
/// handler on Lambda and behind the local server's Invoke emulation.
pub async fn invoke(state: &AppState, event: Value) -> Value {
    let started = Instant::now();
    let (action, answer) = match parse(&event) {
        Err(error) => ("invalid", failure(&error)),
        Ok(KeyRequest::Resolve { user, provider }) => match state.credentials.resolve(&user, provider).await {
            Ok(key) => (
                "resolve",
                json!({
                    "ok": true,
                    "provider": provider.id,
                    "api_key": key.api_key.expose(),
                    "key_revision": key.key_revision,
                    "status": key.status,
                    "base_url": key.base_url,
                }),
            ),
            Err(e) => ("resolve", failure(&ApiError::from(e))),
        },
        Ok(KeyRequest::Report {
            user,
            provider,
            revision,
            outcome,
        }) => match state.credentials.report(&user, provider, &revision, outcome).await {
            Ok(report) => (
                "report",
                json!({"ok": true, "result": report.result, "status": report.status}),
            ),
            Err(e) => ("report", failure(&ApiError::from(e))),
        },
    };
    let code = answer.pointer("/error/code").and_then(Value::as_str).unwrap_or("");
    tracing::info!(
        route = "credentials-resolve",
        action,
        ok = code.is_empty(),
        code,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "request handled"
    );
    answer
}

fn failure(error: &ApiError) -> Value {
    json!({"ok": false, "error": {"code": error.code, "detail": error.detail}})
}

fn invalid(detail: &str) -> ApiError {
    ApiError::invalid_request(detail)
}

fn parse(event: &Value) -> Result<KeyRequest, ApiError> {
    let Some(fields) = event.as_object() else {
        return Err(invalid("The request must be a JSON object."));
    };
    let action = string(fields, "action")?;
    let user = UserId::parse(string(fields, "user_id")?)
        .ok_or_else(|| invalid("user_id must be 1 to 256 printable characters."))?;
    let given = string(fields, "provider")?;
    let provider = provider::find(given).ok_or_else(|| ApiError::unknown_provider(400, given))?;
    match action {
        "resolve" => Ok(KeyRequest::Resolve { user, provider }),
        "report" => {
            let revision = string(fields, "key_revision")?;
            if revision.is_empty() {
                return Err(invalid("key_revision must not be empty."));
            }
            let outcome = UsageOutcome::parse(string(fields, "outcome")?)
                .ok_or_else(|| invalid("outcome must be one of rejected, quota_exhausted, rate_limited."))?;
            Ok(KeyRequest::Report {
                user,
                provider,
                revision: revision.to_owned(),
                outcome,
            })
        }
        _ => Err(invalid("action must be resolve or report.")),
    }
}

fn string<'a>(fields: &'a Map<String, Value>, name: &str) -> Result<&'a str, ApiError> {
    match fields.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(invalid(&format!("{name} must be a string."))),
        None => Err(invalid(&format!("{name} is required."))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(event: Value) -> &'static str {
        parse(&event).map(|_| "ok").unwrap_or_else(|e| e.code)
    }

    #[test]
    fn requests_are_read_strictly() {
        let ok = json!({"action": "resolve", "user_id": "u", "provider": "groq"});
        assert_eq!(code(ok), "ok");
        assert_eq!(code(json!("resolve")), "invalid_request");
        assert_eq!(code(json!({"action": "resolve", "user_id": "u"})), "invalid_request");
        assert_eq!(
            code(json!({"action": "resolve", "user_id": 7, "provider": "groq"})),
            "invalid_request"
        );
        assert_eq!(
            code(json!({"action": "delete", "user_id": "u", "provider": "groq"})),
            "invalid_request"
        );
        assert_eq!(
            code(json!({"action": "resolve", "user_id": "u", "provider": "nope"})),
            "unknown_provider"
        );
        let report = json!({"action": "report", "user_id": "u", "provider": "groq",
                            "key_revision": "r", "outcome": "rejected"});
        assert_eq!(code(report.clone()), "ok");
        let mut bad = report.clone();
        bad["outcome"] = json!("exploded");
        assert_eq!(code(bad), "invalid_request");
        let mut bad = report;
        bad["key_revision"] = json!("");
        assert_eq!(code(bad), "invalid_request");
    }
}
