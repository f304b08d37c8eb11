//! The client other MailMind functions use to obtain a user's provider key
//! from the credential service, and to report how the provider treated it.
//!
//! It invokes the function `credentials-resolve` (`lambda:InvokeFunction`;
//! the consumer's role attaches the stack's `KeyConsumerPolicy`). The key
//! comes back in a [`SecretString`]: never printed by `Debug`, wiped on drop.
//!
//! ```no_run
//! use mailmind_keys::{KeyClient, Outcome};
//! use secrecy::ExposeSecret;
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let config = aws_config::load_from_env().await;
//! let keys = KeyClient::new(aws_sdk_lambda::Client::new(&config), std::env::var("MAILMIND_RESOLVE_FUNCTION")?);
//! let key = keys.resolve("user-sub", "groq").await?; // ResolvedKey
//! // call the provider at key.base_url with key.api_key.expose_secret() ...
//! # let _ = key.api_key.expose_secret();
//! // and if it answered 401:
//! keys.report("user-sub", "groq", &key.key_revision, Outcome::Rejected).await?;
//! # Ok(())
//! # }
//! ```
//!
//! Locally, point the Lambda client at `mailmind-local`
//! (`AWS_ENDPOINT_URL_LAMBDA=http://127.0.0.1:3000`), which plays Lambda's
//! Invoke API for this function, with the access key it made in its data
//! directory (`AWS_SHARED_CREDENTIALS_FILE=<data-dir>/aws-credentials`): it
//! refuses any other credentials.

#![warn(missing_docs)]

use aws_sdk_lambda::primitives::Blob;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

/// The function's name as the stack deploys it is `<stack>-credentials-resolve`;
/// this is the name `mailmind-local` answers to (it also takes the stack form).
pub const LOCAL_FUNCTION_NAME: &str = "credentials-resolve";

/// How the provider refused a key the caller used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The provider said the key is not valid (401/403): the service re-checks it.
    Rejected,
    /// The account is out of quota or credit: recorded as the key's status.
    QuotaExhausted,
    /// Rate limited: counted only.
    RateLimited,
}

/// A user's key. `Debug` shows everything but the key.
#[derive(Debug, Deserialize)]
pub struct ResolvedKey {
    /// The provider id, e.g. `groq`.
    pub provider: String,
    /// The key itself.
    pub api_key: SecretString,
    /// Identifies this key; pass it back in [`KeyClient::report`].
    pub key_revision: String,
    /// The stored status (`valid`, `invalid`, `error`, `unchecked`): the key is
    /// returned whatever it is, the caller decides.
    pub status: String,
    /// The provider root the key is for, e.g. `https://api.groq.com`.
    pub base_url: String,
}

/// What a report did.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ReportResult {
    /// `rechecked`, `recorded`, `debounced` or `stale`.
    pub result: String,
    /// The key's status now.
    pub status: String,
}

/// Why a resolve or report failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The service answered with an error: `code` is one of `invalid_request`,
    /// `unknown_provider`, `credential_not_found`, `service_unavailable`, `internal`.
    #[error("{code}: {detail}")]
    Service {
        /// The contract's error code.
        code: String,
        /// A sentence for people.
        detail: String,
    },
    /// The invocation itself failed (permissions, network, throttling).
    #[error("invoking the credential service failed: {0}")]
    Invoke(String),
    /// The function failed instead of answering (never expected).
    #[error("the credential service failed: {0}")]
    Function(String),
    /// The answer could not be read.
    #[error("unreadable answer from the credential service: {0}")]
    Answer(String),
}

impl KeyError {
    /// The contract's error code, for a [`KeyError::Service`].
    pub fn code(&self) -> Option<&str> {
        match self {
            KeyError::Service { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            KeyError::Service { code, .. } => code == "service_unavailable",
            KeyError::Invoke(_) => true,
            KeyError::Function(_) | KeyError::Answer(_) => false,
        }
    }
}

#[derive(Deserialize)]
struct Failure {
    code: String,
    detail: String,
}

#[derive(Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
enum Request<'a> {
    Resolve {
        user_id: &'a str,
        provider: &'a str,
    },
    Report {
        user_id: &'a str,
        provider: &'a str,
        key_revision: &'a str,
        outcome: Outcome,
    },
}

/// Invokes `credentials-resolve`.
#[derive(Debug, Clone)]
pub struct KeyClient {
    lambda: aws_sdk_lambda::Client,
    function_name: String,
}

impl KeyClient {
    /// A client invoking `function_name` (name or ARN, e.g. the stack output
    /// `CredentialsResolveFunctionArn`) with `lambda`.
    pub fn new(lambda: aws_sdk_lambda::Client, function_name: impl Into<String>) -> KeyClient {
        KeyClient {
            lambda,
            function_name: function_name.into(),
        }
    }

    /// The user's key for `provider` (`user_id`: the user's `sub`).
    pub async fn resolve(&self, user_id: &str, provider: &str) -> Result<ResolvedKey, KeyError> {
        self.invoke(&Request::Resolve { user_id, provider }).await
    }

    /// Reports that the provider refused the key with `key_revision` (from
    /// [`KeyClient::resolve`]) with `outcome`.
    pub async fn report(
        &self,
        user_id: &str,
        provider: &str,
        key_revision: &str,
        outcome: Outcome,
    ) -> Result<ReportResult, KeyError> {
        self.invoke(&Request::Report {
            user_id,
            provider,
            key_revision,
            outcome,
        })
        .await
    }

    async fn invoke<T: serde::de::DeserializeOwned>(&self, request: &Request<'_>) -> Result<T, KeyError> {
        let payload = serde_json::to_vec(request).map_err(|e| KeyError::Answer(e.to_string()))?;
        let output = self
            .lambda
            .invoke()
            .function_name(&self.function_name)
            .payload(Blob::new(payload))
            .send()
            .await
            .map_err(|e| KeyError::Invoke(aws_sdk_lambda::error::DisplayErrorContext(e).to_string()))?;
        let mut bytes = output.payload.map(Blob::into_inner).unwrap_or_default();
        let answer = if let Some(error) = output.function_error {
            Err(KeyError::Function(error))
        } else {
            read(&bytes)
        };
        // The payload held the key in plaintext.
        bytes.zeroize();
        answer
    }
}

fn read<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, KeyError> {
    #[derive(Deserialize)]
    struct Head {
        ok: bool,
        error: Option<Failure>,
    }
    let head: Head = serde_json::from_slice(bytes).map_err(|e| KeyError::Answer(e.to_string()))?;
    if !head.ok {
        let failure = head.error.unwrap_or(Failure {
            code: "internal".into(),
            detail: "no error in a failed answer".into(),
        });
        return Err(KeyError::Service {
            code: failure.code,
            detail: failure.detail,
        });
    }
    serde_json::from_slice(bytes).map_err(|e| KeyError::Answer(e.to_string()))
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn answers_are_read_and_the_key_never_shows_in_debug() {
        let key: ResolvedKey = read(
            br#"{"ok":true,"provider":"groq","api_key":"gsk_secret","key_revision":"r1","status":"valid","base_url":"https://api.groq.com"}"#,
        )
        .unwrap();
        assert_eq!(key.api_key.expose_secret(), "gsk_secret");
        assert!(!format!("{key:?}").contains("gsk_secret"));
        let error = read::<ResolvedKey>(br#"{"ok":false,"error":{"code":"service_unavailable","detail":"retry"}}"#)
            .unwrap_err();
        assert_eq!(error.code(), Some("service_unavailable"));
        assert!(error.is_retryable());
        assert!(matches!(read::<ResolvedKey>(b"[]"), Err(KeyError::Answer(_))));
    }

    #[test]
    fn requests_have_the_contract_shape() {
        let report = serde_json::to_value(Request::Report {
            user_id: "u",
            provider: "groq",
            key_revision: "r",
            outcome: Outcome::QuotaExhausted,
        })
        .unwrap();
        assert_eq!(
            report,
            serde_json::json!({"action": "report", "user_id": "u", "provider": "groq",
                               "key_revision": "r", "outcome": "quota_exhausted"})
        );
    }
}
