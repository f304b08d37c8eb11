//! `credentials-resolve`: the function other MailMind functions invoke
//! (`lambda:InvokeFunction`, IAM is the authentication) to obtain a user's
//! key, sealed as stored (the consumer opens it with its own `kms:Decrypt`),
//! and to report how the provider treated it. Not behind API Gateway.
//!
//! The function holds no KMS permission, so a `rejected` report, whose
//! re-check must open the key, is relayed to a function that may
//! ([`ReportRelay`]); the answer is the same wherever it ran.
//!
//! Every request gets a JSON object back, never a function error for an
//! expected failure (so async callers are not retried blindly):
//! `{"ok": true, ...}` or `{"ok": false, "error": {"code", "detail"}}` with
//! codes `invalid_request`, `unknown_provider`, `credential_not_found`,
//! `service_unavailable` (safe to retry) and `internal`. docs/API.md has the
//! payloads.

use std::collections::BTreeMap;
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use serde::Serialize;
use serde_json::{Map, Value};

use super::protocol::ApiError;
use crate::AppState;
use crate::domain::activity::Consumer;
use crate::domain::named_key::{KeyId, Unusable};
use crate::domain::{CredentialStatus, ProviderSpec, ReportResult, UsageOutcome, UserId, provider};
use crate::ports::ReportRelay;
use crate::service::{ReportAnswer, ResolvedKey};

/// The error codes an answer may carry (docs/API.md).
const ERROR_CODES: &[&str] = &[
    "invalid_request",
    "unknown_provider",
    "credential_not_found",
    "no_usable_key",
    "service_unavailable",
    "internal",
];

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
        retry_after_secs: Option<u64>,
    },
}

/// `credentials-resolve` on Lambda: [`invoke`] with its relay.
pub async fn resolve_function(state: &crate::state::ResolveState, event: Value) -> KeyAnswer {
    invoke(&state.app, Some(state.relay.as_ref()), event).await
}

/// The answer to one invocation of `credentials-resolve`: the same shared
/// handler on Lambda and behind the local server's Invoke emulation, where
/// the process may open keys and `relay` is `None`.
pub async fn invoke(state: &AppState, relay: Option<&dyn ReportRelay>, event: Value) -> KeyAnswer {
    let started = Instant::now();
    let request = parse(&event);
    let relay_to = match (&request, relay) {
        (
            Ok(KeyRequest::Report {
                outcome: UsageOutcome::Rejected,
                ..
            }),
            Some(relay),
        ) => Some(relay),
        _ => None,
    };
    let (action, answer) = if let Some(relay) = relay_to {
        match relay.relay(&event).await {
            Ok(answer) => ("report", Answer::Relayed(answer)),
            Err(e) => {
                tracing::error!(error = %e, "cannot relay a report");
                let e = crate::service::ServiceError::Unavailable(e.to_string());
                ("report", Answer::Failed(ApiError::from(e)))
            }
        }
    } else {
        match &request {
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
                        key: Box::new(key),
                    },
                ),
                Err(crate::service::ServiceError::NoUsableKey(p, states)) => {
                    let error = ApiError::from(crate::service::ServiceError::NoUsableKey(p, states.clone()));
                    ("resolve", Answer::Unusable(error, states))
                }
                Err(e) => ("resolve", Answer::Failed(ApiError::from(e))),
            },
            Ok(KeyRequest::Report {
                user,
                provider,
                revision,
                outcome,
                consumer,
                retry_after_secs,
            }) => match state
                .credentials
                .report(user, provider, revision, *outcome, consumer, *retry_after_secs)
                .await
            {
                Ok(report) => ("report", Answer::Reported(report)),
                Err(e) => ("report", Answer::Failed(ApiError::from(e))),
            },
        }
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
        // The function that ran it counted it.
        (_, Answer::Relayed(_)) => {}
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
    Resolved {
        provider: &'static str,
        key: Box<ResolvedKey>,
    },
    Reported(ReportAnswer),
    /// What the function that ran a relayed report answered, as it answered.
    Relayed(Value),
    Failed(ApiError),
    /// `no_usable_key`, with why each key cannot be used.
    Unusable(ApiError, Vec<(KeyId, Unusable)>),
}

impl KeyAnswer {
    /// The error code, when the answer is a failure.
    pub fn error_code(&self) -> Option<&'static str> {
        match &self.0 {
            Answer::Failed(error) | Answer::Unusable(error, _) => Some(error.code),
            Answer::Relayed(answer) => {
                let code = answer.pointer("/error/code").and_then(Value::as_str)?;
                Some(
                    ERROR_CODES
                        .iter()
                        .find(|known| **known == code)
                        .copied()
                        .unwrap_or("internal"),
                )
            }
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
            key_id: &'a str,
            key_name: &'a str,
            sealed_key: Sealed<'a>,
            key_revision: &'a str,
            status: CredentialStatus,
            base_url: &'a str,
            chosen: ChosenView<'a>,
        }
        #[derive(Serialize)]
        struct ChosenView<'a> {
            key_id: &'a str,
            because: &'static str,
            #[serde(skip_serializing_if = "Vec::is_empty")]
            skipped: Vec<KeyState<'a>>,
        }
        #[serde_with::skip_serializing_none]
        #[derive(Serialize)]
        struct KeyState<'a> {
            key_id: &'a str,
            reason: &'static str,
            until: Option<String>,
        }
        fn states(list: &[(KeyId, Unusable)]) -> Vec<KeyState<'_>> {
            list.iter()
                .map(|(id, why)| KeyState {
                    key_id: id.as_str(),
                    reason: why.as_str(),
                    until: why.until().as_ref().map(crate::time::to_api),
                })
                .collect()
        }
        /// Binary fields in standard base64, as KMS's own JSON API has them.
        #[derive(Serialize)]
        struct Sealed<'a> {
            format: u8,
            kms_key_id: &'a str,
            wrapped_data_key: String,
            nonce: String,
            ciphertext: String,
            encryption_context: BTreeMap<&'static str, &'a str>,
        }
        #[derive(Serialize)]
        struct Reported<'a> {
            ok: bool,
            result: ReportResult,
            status: CredentialStatus,
            #[serde(skip_serializing_if = "Option::is_none")]
            key_id: Option<&'a str>,
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
            #[serde(skip_serializing_if = "Option::is_none")]
            keys: Option<Vec<KeyState<'a>>>,
        }
        match &self.0 {
            Answer::Resolved { provider, key } => Resolved {
                ok: true,
                provider,
                key_id: key.chosen.key.id.as_str(),
                key_name: &key.chosen.key.name,
                chosen: ChosenView {
                    key_id: key.chosen.key.id.as_str(),
                    because: if key.chosen.fallback { "fallback" } else { "primary" },
                    skipped: states(&key.chosen.skipped),
                },
                sealed_key: Sealed {
                    format: key.sealed.format_version,
                    kms_key_id: &key.sealed.key_id,
                    wrapped_data_key: BASE64.encode(&key.sealed.wrapped_data_key),
                    nonce: BASE64.encode(&key.sealed.nonce),
                    ciphertext: BASE64.encode(&key.sealed.ciphertext),
                    encryption_context: key.context.pairs().into_iter().collect(),
                },
                key_revision: &key.key_revision,
                status: key.status,
                base_url: &key.base_url,
            }
            .serialize(serializer),
            Answer::Relayed(answer) => answer.serialize(serializer),
            Answer::Reported(report) => Reported {
                ok: true,
                result: report.result,
                status: report.status,
                key_id: report.key_id.as_ref().map(KeyId::as_str),
            }
            .serialize(serializer),
            Answer::Failed(error) => Failed {
                ok: false,
                error: ErrorBody {
                    code: error.code,
                    detail: &error.detail,
                    keys: None,
                },
            }
            .serialize(serializer),
            Answer::Unusable(error, list) => Failed {
                ok: false,
                error: ErrorBody {
                    code: error.code,
                    detail: &error.detail,
                    keys: Some(states(list)),
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
            // The wait the provider named with a 429, if the caller passes it on.
            let retry_after_secs = match fields.get("retry_after_seconds") {
                None | Some(Value::Null) => None,
                Some(wait) => Some(
                    wait.as_u64()
                        .filter(|s| *s <= 86_400)
                        .ok_or_else(|| invalid("retry_after_seconds must be a whole number from 0 to 86400."))?,
                ),
            };
            Ok(KeyRequest::Report {
                user,
                provider,
                revision: revision.to_owned(),
                outcome,
                consumer,
                retry_after_secs,
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
            key_id: Some(KeyId::default_key()),
        }));
        assert_eq!(
            serde_json::to_value(&reported).unwrap(),
            json!({"ok": true, "result": "debounced", "status": "invalid", "key_id": "default"})
        );
        let stale = KeyAnswer(Answer::Reported(ReportAnswer {
            result: ReportResult::Stale,
            status: CredentialStatus::Valid,
            key_id: None,
        }));
        assert_eq!(
            serde_json::to_value(&stale).unwrap(),
            json!({"ok": true, "result": "stale", "status": "valid"})
        );
        let user = UserId::parse("u-1").unwrap();
        let groq = provider::find("groq").unwrap();
        let resolved = KeyAnswer(Answer::Resolved {
            provider: "groq",
            key: Box::new(ResolvedKey {
                sealed: crate::domain::SealedKey {
                    format_version: 1,
                    key_id: "arn:aws:kms:eu-west-1:111122223333:key/k".into(),
                    wrapped_data_key: vec![1, 2, 3],
                    nonce: vec![4; 12],
                    ciphertext: vec![0xff, 0xfe],
                },
                context: crate::ports::EncryptionContext::new(&user, groq),
                key_revision: "r1".into(),
                status: CredentialStatus::Valid,
                base_url: "https://api.groq.com".into(),
                chosen: crate::service::Chosen {
                    key: crate::domain::named_key::KeyMeta {
                        id: KeyId::parse("k0123456789").unwrap(),
                        name: "spare".into(),
                        priority: 1,
                        enabled: true,
                    },
                    fallback: true,
                    skipped: vec![(
                        KeyId::default_key(),
                        Unusable::RateLimited(crate::time::parse("2026-11-24T19:01:00.000Z").unwrap()),
                    )],
                },
            }),
        });
        assert_eq!(
            serde_json::to_value(&resolved).unwrap(),
            json!({"ok": true, "provider": "groq", "key_id": "k0123456789", "key_name": "spare",
                   "key_revision": "r1", "status": "valid",
                   "base_url": "https://api.groq.com",
                   "chosen": {"key_id": "k0123456789", "because": "fallback",
                              "skipped": [{"key_id": "default", "reason": "rate_limited", "until": "2026-11-24T19:01:00Z"}]},
                   "sealed_key": {"format": 1, "kms_key_id": "arn:aws:kms:eu-west-1:111122223333:key/k",
                                  "wrapped_data_key": "AQID", "nonce": "BAQEBAQEBAQEBAQE", "ciphertext": "//4=",
                                  "encryption_context": {"app": "mailmind", "provider": "groq", "user": "u-1"}}})
        );
    }
}
