//! How an AWS SDK failure is sorted, once for every AWS adapter: a transport
//! failure (timeout, unreachable, unreadable answer) is always worth a retry;
//! a service error is known by its error code, which each adapter weighs.

// Every AWS SDK crate re-exports these same smithy types; DynamoDB's names them.
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::metrics::AwsService;

/// What a failed AWS call comes to for the adapter that made it.
#[derive(Debug, PartialEq, Eq)]
pub enum Sorted {
    /// Throttled, timed out, unreachable, or a code worth a retry: the whole error.
    Retry(String),
    /// A code saying the request itself is refused (KMS: a ciphertext that
    /// does not open): the whole error.
    Refused(String),
    /// Anything else: the whole error.
    Failed(String),
}

/// What went wrong with one AWS call.
pub enum AwsFailure {
    /// Timed out, could not connect, or the answer could not be read: retryable.
    Transport(String),
    /// The service answered with this error code (`None` when it named none).
    Service {
        /// The error code, e.g. `ThrottlingException`.
        code: Option<String>,
        /// The whole error, for logs.
        detail: String,
    },
}

impl AwsFailure {
    /// Sorts a failed call to `service` by the codes its adapter weighs:
    /// `retryable` ones, and `refused` ones. Throttling is counted
    /// ([`crate::metrics::aws_throttled`]).
    pub fn sort<E, R>(error: &SdkError<E, R>, service: AwsService, retryable: &[&str], refused: &[&str]) -> Sorted
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let failure = AwsFailure::of(error);
        if failure.is_throttling() {
            crate::metrics::aws_throttled(service);
        }
        if failure.is_retryable(retryable) {
            Sorted::Retry(failure.into_detail())
        } else if failure.code().is_some_and(|code| refused.contains(&code)) {
            Sorted::Refused(failure.into_detail())
        } else {
            Sorted::Failed(failure.into_detail())
        }
    }

    /// Sorts `error`.
    pub fn of<E, R>(error: &SdkError<E, R>) -> AwsFailure
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let detail = DisplayErrorContext(error).to_string();
        match error {
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
                AwsFailure::Transport(detail)
            }
            SdkError::ServiceError(service) => AwsFailure::Service {
                code: service.err().code().map(str::to_owned),
                detail,
            },
            _ => AwsFailure::Service { code: None, detail },
        }
    }

    /// The service's error code, if it answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            AwsFailure::Service { code, .. } => code.as_deref(),
            AwsFailure::Transport(_) => None,
        }
    }

    /// True when the service refused the call for its request rate (the SDK
    /// has retried it already): counted by [`crate::metrics::aws_throttled`].
    pub fn is_throttling(&self) -> bool {
        const THROTTLING: &[&str] = &[
            "ThrottlingException",
            "ProvisionedThroughputExceededException",
            "RequestLimitExceeded",
            // KMS's name for a request quota exceeded.
            "LimitExceededException",
        ];
        self.code().is_some_and(|code| THROTTLING.contains(&code))
    }

    /// True for transport failures and for the service codes in `retryable`.
    pub fn is_retryable(&self, retryable: &[&str]) -> bool {
        match self {
            AwsFailure::Transport(_) => true,
            AwsFailure::Service { code, .. } => code.as_deref().is_some_and(|c| retryable.contains(&c)),
        }
    }

    /// The whole error, for logs (never contains a key: AWS calls carry none in clear).
    pub fn into_detail(self) -> String {
        match self {
            AwsFailure::Transport(detail) | AwsFailure::Service { detail, .. } => detail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::AwsFailure;

    fn service(code: Option<&str>) -> AwsFailure {
        AwsFailure::Service {
            code: code.map(str::to_owned),
            detail: String::new(),
        }
    }

    #[test]
    fn throttling_is_told_from_other_failures() {
        for code in [
            "ThrottlingException",
            "ProvisionedThroughputExceededException",
            "RequestLimitExceeded",
        ] {
            assert!(service(Some(code)).is_throttling(), "{code}");
        }
        assert!(!service(Some("ConditionalCheckFailedException")).is_throttling());
        assert!(!service(Some("KMSInternalException")).is_throttling());
        assert!(!service(None).is_throttling());
        assert!(!AwsFailure::Transport("timed out".into()).is_throttling());
    }
}
