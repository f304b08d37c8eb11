//! The report relay on AWS: `credentials-resolve` invokes the function that
//! may open keys (`credentials-revalidate`, named by `REPORT_RELAY_FUNCTION`)
//! with the request as it came, and answers what that function answers.

use async_trait::async_trait;
use aws_sdk_lambda::Client;
use aws_sdk_lambda::primitives::Blob;

use crate::ports::{RelayError, ReportRelay};

/// Invokes `function` synchronously (`RequestResponse`).
pub struct LambdaReportRelay {
    client: Client,
    function: String,
}

impl LambdaReportRelay {
    /// A relay to `function` (name or ARN) through `client`, whose timeouts
    /// must allow a re-check with the provider.
    pub fn new(client: Client, function: impl Into<String>) -> LambdaReportRelay {
        LambdaReportRelay {
            client,
            function: function.into(),
        }
    }
}

#[async_trait]
impl ReportRelay for LambdaReportRelay {
    async fn relay(&self, event: &serde_json::Value) -> Result<serde_json::Value, RelayError> {
        let payload = serde_json::to_vec(event).map_err(|e| RelayError(e.to_string()))?;
        let output = self
            .client
            .invoke()
            .function_name(&self.function)
            .payload(Blob::new(payload))
            .send()
            .await
            .map_err(|e| RelayError(aws_sdk_lambda::error::DisplayErrorContext(e).to_string()))?;
        if let Some(error) = output.function_error {
            return Err(RelayError(format!("{} failed: {error}", self.function)));
        }
        let bytes = output.payload.map(Blob::into_inner).unwrap_or_default();
        // A report's answer holds no key: a result and a status, or an error.
        serde_json::from_slice(&bytes).map_err(|e| RelayError(format!("unreadable answer: {e}")))
    }
}
