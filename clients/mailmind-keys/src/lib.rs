//! The client other MailMind functions use to obtain a user's provider key
//! from the credential service, and to report how the provider treated it.
//!
//! It invokes the function `credentials-resolve` (`lambda:InvokeFunction`;
//! the consumer's role attaches the stack's `KeyConsumerPolicy`), which
//! answers the key sealed as stored; the client opens it with the consumer's
//! own `kms:Decrypt` (the role's ARN must be in the stack's
//! `KeyConsumerRoleArns`) and AES-256-GCM, exactly as the service sealed it.
//! The key comes back in a [`SecretString`]: never printed by `Debug`,
//! wiped on drop.
//!
//! Data keys are remembered for a while ([`KeyClient::with_data_key_cache`]),
//! so a warm resolve of a known key costs one invoke and no KMS call; the
//! sealed records too if asked ([`KeyClient::with_record_cache`]), so a
//! repeated resolve costs no call at all.
//!
//! ```no_run
//! use mailmind_keys::{KeyClient, Outcome};
//! use secrecy::ExposeSecret;
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let config = aws_config::load_from_env().await;
//! let keys = KeyClient::new(
//!     aws_sdk_lambda::Client::new(&config),
//!     aws_sdk_kms::Client::new(&config),
//!     std::env::var("MAILMIND_RESOLVE_FUNCTION")?,
//! );
//! let key = keys.resolve("user-sub", "groq").await?; // ResolvedKey
//! // call the provider at key.base_url with key.api_key.expose_secret() ...
//! # let _ = key.api_key.expose_secret();
//! // and if it answered 401:
//! keys.report("user-sub", "groq", &key.key_revision, Outcome::Rejected).await?;
//! # Ok(())
//! # }
//! ```
//!
//! Locally, point both clients at `mailmind-local`
//! (`AWS_ENDPOINT_URL_LAMBDA` and `AWS_ENDPOINT_URL_KMS`, e.g.
//! `http://127.0.0.1:3000`) with the access key it writes to its data
//! directory (`AWS_SHARED_CREDENTIALS_FILE=<data-dir>/aws-credentials`; it
//! refuses any other credentials): it plays Lambda's Invoke API for this
//! function and KMS's `Decrypt` for its own keyring.

#![warn(missing_docs)]

mod cache;
mod seal;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_kms::error::ProvideErrorMetadata as _;
use aws_sdk_lambda::primitives::Blob;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

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
    /// Rate limited: the key rests for a minute (see
    /// [`KeyClient::report_rate_limited`] to pass the provider's wait) and
    /// resolves fall back to the user's next key meanwhile.
    RateLimited,
}

/// `chosen` of a resolve's answer.
#[derive(Debug, Clone, Deserialize)]
struct ChosenAnswer {
    because: String,
}

/// A user's key. `Debug` shows everything but the key.
#[derive(Debug)]
pub struct ResolvedKey {
    /// The provider id, e.g. `groq`.
    pub provider: String,
    /// The key itself.
    pub api_key: SecretString,
    /// Identifies this key; pass it back in [`KeyClient::report`].
    pub key_revision: String,
    /// The stored status (`valid`, `error` without a verdict, `unchecked`).
    pub status: String,
    /// The provider root the key is for, e.g. `https://api.groq.com`.
    pub base_url: String,
    /// Which of the provider's keys the service chose (the user's order,
    /// passing over keys switched off, invalid, out of credit or resting).
    pub key_id: String,
    /// The user's name for it.
    pub key_name: String,
    /// `true` when it is not the primary key: one before it was passed over.
    pub fallback: bool,
}

/// What a report did.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ReportResult {
    /// `rechecked`, `recorded`, `debounced` or `stale`.
    pub result: String,
    /// The key's status now.
    pub status: String,
    /// The key the report was about (`None` for a `stale` report of a key
    /// that was replaced).
    #[serde(default)]
    pub key_id: Option<String>,
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
    /// KMS did not unwrap the data key: `code` is KMS's error code, e.g.
    /// `AccessDeniedException` when this role is not in `KeyConsumerRoleArns`.
    #[error("KMS did not open the key ({code}): {detail}")]
    KeyService {
        /// KMS's error code (empty when the call did not reach KMS).
        code: String,
        /// What happened.
        detail: String,
    },
    /// The sealed key does not open under the user and provider asked for:
    /// it was altered or is someone else's.
    #[error("the sealed key does not open for this user and provider")]
    Tampered,
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
            KeyError::KeyService { code, .. } => !matches!(
                code.as_str(),
                "AccessDeniedException" | "InvalidCiphertextException" | "IncorrectKeyException" | "NotFoundException"
            ),
            KeyError::Function(_) | KeyError::Answer(_) | KeyError::Tampered => false,
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
        consumer: &'a str,
    },
    Report {
        user_id: &'a str,
        provider: &'a str,
        key_revision: &'a str,
        outcome: Outcome,
        consumer: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after_seconds: Option<u64>,
    },
}

/// A resolve's answer, the key still sealed (nothing in it is secret alone).
#[derive(Debug, Clone, Deserialize)]
struct SealedAnswer {
    provider: String,
    sealed_key: seal::SealedKey,
    key_revision: String,
    key_id: String,
    key_name: String,
    chosen: ChosenAnswer,
    status: String,
    base_url: String,
}

/// How many calls this client has made, for the curious and the tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Calls {
    /// Invocations of `credentials-resolve`.
    pub invokes: u64,
    /// KMS `Decrypt` calls.
    pub kms_decrypts: u64,
}

/// Default most data keys remembered.
pub const DATA_KEY_CAPACITY: usize = 256;
/// Default lifetime of a remembered data key.
pub const DATA_KEY_LIFETIME: Duration = Duration::from_secs(5 * 60);

type RecordId = (String, String);

/// Resolves through `credentials-resolve` and opens with KMS.
#[derive(Clone)]
pub struct KeyClient {
    inner: Arc<Inner>,
}

struct Inner {
    lambda: aws_sdk_lambda::Client,
    kms: aws_sdk_kms::Client,
    function_name: String,
    consumer: String,
    data_keys: cache::DataKeys,
    records: Option<cache::Expiring<RecordId, SealedAnswer>>,
    invokes: AtomicU64,
    kms_decrypts: AtomicU64,
}

impl std::fmt::Debug for KeyClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyClient")
            .field("function_name", &self.inner.function_name)
            .field("consumer", &self.inner.consumer)
            .field("record_cache", &self.inner.records.is_some())
            .finish_non_exhaustive()
    }
}

impl KeyClient {
    /// A client invoking `function_name` (name or ARN, e.g. the stack output
    /// `CredentialsResolveFunctionArn`) with `lambda`, opening keys with
    /// `kms`. It names itself to the service by `AWS_LAMBDA_FUNCTION_NAME`
    /// (see [`KeyClient::with_consumer`]).
    pub fn new(
        lambda: aws_sdk_lambda::Client,
        kms: aws_sdk_kms::Client,
        function_name: impl Into<String>,
    ) -> KeyClient {
        let consumer = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "unknown".to_owned());
        KeyClient {
            inner: Arc::new(Inner {
                lambda,
                kms,
                function_name: function_name.into(),
                consumer,
                data_keys: cache::DataKeys::new(DATA_KEY_CAPACITY, DATA_KEY_LIFETIME),
                records: None,
                invokes: AtomicU64::new(0),
                kms_decrypts: AtomicU64::new(0),
            }),
        }
    }

    fn with(self, change: impl FnOnce(&mut Inner)) -> KeyClient {
        let mut inner = Arc::try_unwrap(self.inner).unwrap_or_else(|shared| Inner {
            lambda: shared.lambda.clone(),
            kms: shared.kms.clone(),
            function_name: shared.function_name.clone(),
            consumer: shared.consumer.clone(),
            data_keys: cache::DataKeys::new(DATA_KEY_CAPACITY, DATA_KEY_LIFETIME),
            records: None,
            invokes: AtomicU64::new(0),
            kms_decrypts: AtomicU64::new(0),
        });
        change(&mut inner);
        KeyClient { inner: Arc::new(inner) }
    }

    /// The name the service records for this consumer's resolves and
    /// reports (the user sees it in the key's activity). A label the caller
    /// chooses, not proof of who called.
    pub fn with_consumer(self, consumer: impl Into<String>) -> KeyClient {
        let consumer = consumer.into();
        self.with(|inner| inner.consumer = consumer)
    }

    /// Remember at most `capacity` data keys, each for at most `lifetime`
    /// (default [`DATA_KEY_CAPACITY`], [`DATA_KEY_LIFETIME`]); a zero lifetime
    /// makes every resolve call KMS.
    pub fn with_data_key_cache(self, capacity: usize, lifetime: Duration) -> KeyClient {
        self.with(|inner| inner.data_keys = cache::DataKeys::new(capacity, lifetime))
    }

    /// Also remember resolved records (still sealed) for `lifetime`, so a
    /// repeated resolve within it makes no call at all. Off by default: a
    /// key replaced or deleted meanwhile is then seen up to `lifetime`
    /// late, and the service records no use. A `rejected` report, or a
    /// report or resolve with another revision, drops the record.
    pub fn with_record_cache(self, lifetime: Duration) -> KeyClient {
        self.with(|inner| inner.records = Some(cache::Expiring::new(1024, lifetime)))
    }

    /// The calls made so far.
    pub fn calls(&self) -> Calls {
        Calls {
            invokes: self.inner.invokes.load(Ordering::Relaxed),
            kms_decrypts: self.inner.kms_decrypts.load(Ordering::Relaxed),
        }
    }

    /// The user's key for `provider` (`user_id`: the user's `sub`), opened.
    pub async fn resolve(&self, user_id: &str, provider: &str) -> Result<ResolvedKey, KeyError> {
        let id: RecordId = (user_id.to_owned(), provider.to_owned());
        let cached = self.inner.records.as_ref().and_then(|records| records.get(&id));
        let answer = match cached {
            Some(answer) => answer,
            None => {
                let answer: SealedAnswer = self
                    .invoke(&Request::Resolve {
                        user_id,
                        provider,
                        consumer: &self.inner.consumer,
                    })
                    .await?;
                if let Some(records) = &self.inner.records {
                    records.insert(id, answer.clone());
                }
                answer
            }
        };
        let endpoint = answer
            .sealed_key
            .names_an_endpoint()
            .then_some(answer.base_url.as_str());
        let context = seal::Context {
            user_id,
            provider,
            endpoint,
        };
        let data_key = self.data_key(&answer.sealed_key, &context).await?;
        let api_key = seal::open(&data_key, &context, &answer.sealed_key)?;
        Ok(ResolvedKey {
            provider: answer.provider,
            api_key,
            key_revision: answer.key_revision,
            status: answer.status,
            base_url: answer.base_url,
            key_id: answer.key_id,
            key_name: answer.key_name,
            fallback: answer.chosen.because == "fallback",
        })
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
        self.send_report(user_id, provider, key_revision, outcome, None).await
    }

    /// Reports a `429` with the provider's wait (its `Retry-After`): the key
    /// rests that long (a minute without one), and resolves fall back to the
    /// user's next key meanwhile.
    pub async fn report_rate_limited(
        &self,
        user_id: &str,
        provider: &str,
        key_revision: &str,
        retry_after: Option<Duration>,
    ) -> Result<ReportResult, KeyError> {
        let wait = retry_after.map(|wait| wait.as_secs().max(1));
        self.send_report(user_id, provider, key_revision, Outcome::RateLimited, wait)
            .await
    }

    async fn send_report(
        &self,
        user_id: &str,
        provider: &str,
        key_revision: &str,
        outcome: Outcome,
        retry_after_seconds: Option<u64>,
    ) -> Result<ReportResult, KeyError> {
        if let Some(records) = &self.inner.records {
            let id: RecordId = (user_id.to_owned(), provider.to_owned());
            let changed = records.get(&id).is_some_and(|r| r.key_revision != key_revision);
            if outcome == Outcome::Rejected || changed {
                records.remove(&id);
            }
        }
        self.invoke(&Request::Report {
            user_id,
            provider,
            key_revision,
            outcome,
            consumer: &self.inner.consumer,
            retry_after_seconds,
        })
        .await
    }

    /// The data key of `sealed`, from memory or from KMS.
    async fn data_key(
        &self,
        sealed: &seal::SealedKey,
        context: &seal::Context<'_>,
    ) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        seal::check_context(sealed, context)?;
        let id = cache::DataKeyId {
            kms_key_id: sealed.kms_key_id.clone(),
            wrapped: sealed.wrapped_data_key.clone(),
            user: context.user_id.to_owned(),
            provider: context.provider.to_owned(),
        };
        if let Some(key) = self.inner.data_keys.get(&id) {
            return Ok(key);
        }
        self.inner.kms_decrypts.fetch_add(1, Ordering::Relaxed);
        let output = self
            .inner
            .kms
            .decrypt()
            // Naming the key makes KMS refuse a ciphertext of any other key.
            .key_id(&sealed.kms_key_id)
            .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(sealed.wrapped_data_key.clone()))
            .set_encryption_context(Some(context.pairs()))
            .send()
            .await
            .map_err(|e| KeyError::KeyService {
                code: e.code().unwrap_or_default().to_owned(),
                detail: aws_sdk_kms::error::DisplayErrorContext(e).to_string(),
            })?;
        let mut plaintext = output
            .plaintext
            .map(aws_sdk_kms::primitives::Blob::into_inner)
            .unwrap_or_default();
        let key = if plaintext.len() == 32 {
            let mut key = Zeroizing::new([0u8; 32]);
            key.copy_from_slice(&plaintext);
            Ok(key)
        } else {
            Err(KeyError::KeyService {
                code: String::new(),
                detail: format!("KMS returned a {}-byte data key", plaintext.len()),
            })
        };
        plaintext.zeroize();
        let key = key?;
        self.inner.data_keys.insert(id, key.clone());
        Ok(key)
    }

    async fn invoke<T: serde::de::DeserializeOwned>(&self, request: &Request<'_>) -> Result<T, KeyError> {
        let payload = serde_json::to_vec(request).map_err(|e| KeyError::Answer(e.to_string()))?;
        self.inner.invokes.fetch_add(1, Ordering::Relaxed);
        let output = self
            .inner
            .lambda
            .invoke()
            .function_name(&self.inner.function_name)
            .payload(Blob::new(payload))
            .send()
            .await
            .map_err(|e| KeyError::Invoke(aws_sdk_lambda::error::DisplayErrorContext(e).to_string()))?;
        let bytes = output.payload.map(Blob::into_inner).unwrap_or_default();
        if let Some(error) = output.function_error {
            return Err(KeyError::Function(error));
        }
        read(&bytes)
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
    fn answers_are_read() {
        let answer: SealedAnswer = read(
            br#"{"ok":true,"provider":"groq","key_id":"default","key_name":"work","key_revision":"r1","status":"valid",
                 "base_url":"https://api.groq.com","chosen":{"key_id":"default","because":"primary"},
                 "sealed_key":{"format":1,"kms_key_id":"k","wrapped_data_key":"AQID","nonce":"BAQEBAQEBAQEBAQE",
                               "ciphertext":"//4=","encryption_context":{"app":"mailmind","provider":"groq","user":"u"}}}"#,
        )
        .unwrap();
        assert_eq!(answer.sealed_key.wrapped_data_key, vec![1, 2, 3]);
        assert_eq!(answer.key_revision, "r1");
        let error = read::<SealedAnswer>(br#"{"ok":false,"error":{"code":"service_unavailable","detail":"retry"}}"#)
            .unwrap_err();
        assert_eq!(error.code(), Some("service_unavailable"));
        assert!(error.is_retryable());
        assert!(matches!(read::<SealedAnswer>(b"[]"), Err(KeyError::Answer(_))));
        let not_base64 = br#"{"ok":true,"provider":"groq","key_revision":"r1","status":"valid","base_url":"b",
                 "sealed_key":{"format":1,"kms_key_id":"k","wrapped_data_key":"***","nonce":"","ciphertext":"",
                               "encryption_context":{}}}"#;
        assert!(matches!(read::<SealedAnswer>(not_base64), Err(KeyError::Answer(_))));
    }

    #[test]
    fn a_resolved_key_never_shows_in_debug() {
        let key = ResolvedKey {
            provider: "groq".into(),
            api_key: SecretString::from("gsk_secret".to_owned()),
            key_revision: "r1".into(),
            status: "valid".into(),
            base_url: "https://api.groq.com".into(),
            key_id: "default".into(),
            key_name: "default".into(),
            fallback: false,
        };
        assert_eq!(key.api_key.expose_secret(), "gsk_secret");
        assert!(!format!("{key:?}").contains("gsk_secret"));
    }

    #[test]
    fn requests_have_the_contract_shape() {
        let report = serde_json::to_value(Request::Report {
            user_id: "u",
            provider: "groq",
            key_revision: "r",
            outcome: Outcome::QuotaExhausted,
            consumer: "digest",
            retry_after_seconds: None,
        })
        .unwrap();
        assert_eq!(
            report,
            serde_json::json!({"action": "report", "user_id": "u", "provider": "groq",
                               "key_revision": "r", "outcome": "quota_exhausted", "consumer": "digest"})
        );
        let limited = serde_json::to_value(Request::Report {
            user_id: "u",
            provider: "groq",
            key_revision: "r",
            outcome: Outcome::RateLimited,
            consumer: "digest",
            retry_after_seconds: Some(90),
        })
        .unwrap();
        assert_eq!(limited["outcome"], "rate_limited");
        assert_eq!(limited["retry_after_seconds"], 90);
    }
}
