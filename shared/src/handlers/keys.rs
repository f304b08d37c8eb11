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

use serde::Serialize;
use serde_json::{Map, Value};

use super::protocol::ApiError;
use crate::AppState;
use crate::domain::activity::Consumer;
use crate::domain::{CredentialStatus, ProviderSpec, ReportResult, UsageOutcome, UserId, provider};
use crate::service::{ReportAnswer, ResolvedKey};

/// A request, as read from the event.
#[derive(Debug)]
enum KeyRequest {
    Resolve {
        user: UserId,
        provider: &'static ProviderSpec,
        consumer: Consumer,
    },
    Report {
        user: UserId,
        provider: &'static ProviderSpec,
        revision: String,
        outcome: UsageOutcome,
        consumer: Consumer,
    },
}

/// The answer to one invocation of `credentials-resolve`: the same shared
/// handler on Lambda and behind the local server's Invoke emulation.
pub async fn invoke(state: &AppState, event: Value) -> KeyAnswer {
    let started = Instant::now();
    let request = parse(&event);
    let (action, answer) = match &request {
        Err(error) => ("invalid", Answer::Failed(error.clone())),
        Ok(KeyRequest::Resolve {
            user,
            provider,
            consumer,
        }) => match state.credentials.resolve(user, provider, consumer).await {
            Ok(key) => (
                "resolve",
                Answer::Resolved {
                    provider: provider.id,
                    key,
                },
            ),
            Err(e) => ("resolve", Answer::Failed(ApiError::from(e))),
        },
        Ok(KeyRequest::Report {
            user,
            provider,
            revision,
            outcome,
            consumer,
        }) => match state
            .credentials
            .report(user, provider, revision, *outcome, consumer)
            .await
        {
            Ok(report) => ("report", Answer::Reported(report)),
            Err(e) => ("report", Answer::Failed(ApiError::from(e))),
        },
    };
    let answer = KeyAnswer(answer);
    count(&request, &answer);
    tracing::info!(
        route = "credentials-resolve",
        action,
        ok = answer.error_code().is_none(),
        code = answer.error_code().unwrap_or(""),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "request handled"
    );
    answer
}

/// Counts a resolve or report in the metrics (an unreadable request names
/// no provider: the log line above says enough).
fn count(request: &Result<KeyRequest, ApiError>, answer: &KeyAnswer) {
    match (request, &answer.0) {
        (Ok(KeyRequest::Resolve { provider, .. }), _) => {
            crate::metrics::resolve(provider, answer.error_code().unwrap_or("ok"));
        }
        (Ok(KeyRequest::Report { provider, outcome, .. }), Answer::Reported(report)) => {
            crate::metrics::report(provider, *outcome, report.result.as_str());
        }
        (Ok(KeyRequest::Report { provider, outcome, .. }), _) => {
            crate::metrics::report(provider, *outcome, answer.error_code().unwrap_or("internal"));
        }
        (Err(_), _) => {}
    }
}

/// What `credentials-resolve` answers: serializes to the contract's JSON
/// object. A resolved key stays in its zeroizing form until it is
/// serialized; `Debug` never shows it.
#[derive(Debug)]
pub struct KeyAnswer(Answer);

#[derive(Debug)]
enum Answer {
    Resolved { provider: &'static str, key: ResolvedKey },
    Reported(ReportAnswer),
    Failed(ApiError),
}

impl KeyAnswer {
    /// The error code, when the answer is a failure.
    pub fn error_code(&self) -> Option<&'static str> {
        match &self.0 {
            Answer::Failed(error) => Some(error.code),
            _ => None,
        }
    }
}

impl Serialize for KeyAnswer {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Resolved<'a> {
            ok: bool,
            provider: &'a str,
            api_key: &'a str,
            key_revision: &'a str,
            status: CredentialStatus,
            base_url: &'a str,
        }
        #[derive(Serialize)]
        struct Reported {
            ok: bool,
            result: ReportResult,
            status: CredentialStatus,
        }
        #[derive(Serialize)]
        struct Failed<'a> {
            ok: bool,
            error: ErrorBody<'a>,
        }
        #[derive(Serialize)]
        struct ErrorBody<'a> {
            code: &'a str,
            detail: &'a str,
        }
        match &self.0 {
            Answer::Resolved { provider, key } => Resolved {
                ok: true,
                provider,
                api_key: key.api_key.expose(),
                key_revision: &key.key_revision,
                status: key.status,
                base_url: &key.base_url,
            }
            .serialize(serializer),
            Answer::Reported(report) => Reported {
                ok: true,
                result: report.result,
                status: report.status,
            }
            .serialize(serializer),
            Answer::Failed(error) => Failed {
                ok: false,
                error: ErrorBody {
                    code: error.code,
                    detail: &error.detail,
                },
            }
            .serialize(serializer),
        }
    }
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
    // A label the caller chooses, not proof of who it is.
    let consumer = match fields.get("consumer") {
        None | Some(Value::Null) => Consumer::unknown(),
        Some(_) => Consumer::parse(string(fields, "consumer")?)
            .ok_or_else(|| invalid("consumer must be 1 to 128 printable ASCII characters."))?,
    };
    match action {
        "resolve" => Ok(KeyRequest::Resolve {
            user,
            provider,
            consumer,
        }),
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
                consumer,
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
    use serde_json::json;

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
        let mut bad = report.clone();
        bad["key_revision"] = json!("");
        assert_eq!(code(bad), "invalid_request");
        for (consumer, expected) in [
            (json!("digest"), "ok"),
            (json!(null), "ok"),
            (json!("x".repeat(128)), "ok"),
            (json!("x".repeat(129)), "invalid_request"),
            (json!(""), "invalid_request"),
            (json!("new\nline"), "invalid_request"),
            (json!(7), "invalid_request"),
        ] {
            let mut request = report.clone();
            request["consumer"] = consumer.clone();
            assert_eq!(code(request), expected, "{consumer}");
        }
    }

    #[test]
    fn answers_serialize_to_the_contract() {
        let failed = KeyAnswer(Answer::Failed(ApiError::invalid_request("x is required.")));
        assert_eq!(
            serde_json::to_value(&failed).unwrap(),
            json!({"ok": false, "error": {"code": "invalid_request", "detail": "x is required."}})
        );
        let reported = KeyAnswer(Answer::Reported(ReportAnswer {
            result: ReportResult::Debounced,
            status: CredentialStatus::Invalid,
        }));
        assert_eq!(
            serde_json::to_value(&reported).unwrap(),
            json!({"ok": true, "result": "debounced", "status": "invalid"})
        );
        let key = crate::domain::ApiKey::parse("gsk_secret_for_the_test").unwrap();
        let resolved = KeyAnswer(Answer::Resolved {
            provider: "groq",
            key: ResolvedKey {
                api_key: key,
                key_revision: "r1".into(),
                status: CredentialStatus::Valid,
                base_url: "https://api.groq.com".into(),
            },
        });
        assert!(!format!("{resolved:?}").contains("gsk_secret_for_the_test"));
        assert_eq!(
            serde_json::to_value(&resolved).unwrap(),
            json!({"ok": true, "provider": "groq", "api_key": "gsk_secret_for_the_test",
                   "key_revision": "r1", "status": "valid", "base_url": "https://api.groq.com"})
        );
    }
}
