//! The KMS keyring: `GenerateDataKey` (AES-256) per write and `Decrypt`, both
//! under the encryption context `{app, user, provider}`, which KMS binds to the
//! wrapped data key (and the key policy can require).

use async_trait::async_trait;
use aws_sdk_kms::Client;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use zeroize::{Zeroize, Zeroizing};

use super::aws_errors::{AwsFailure, Sorted};
use crate::metrics::AwsService;
use crate::ports::{DataKey, EncryptionContext, Keyring, KeyringError, WrappedKey};

/// Data keys from KMS, wrapped under one KMS key.
pub struct KmsKeyring {
    client: Client,
    key_id: String,
}

impl KmsKeyring {
    /// `key_id`: the key's ARN (or id or alias) that wraps new data keys.
    pub fn new(client: Client, key_id: impl Into<String>) -> KmsKeyring {
        KmsKeyring {
            client,
            key_id: key_id.into(),
        }
    }
}

fn context_map(context: &EncryptionContext) -> std::collections::HashMap<String, String> {
    context
        .pairs()
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Copies KMS's plaintext into a zeroizing array and wipes the SDK's buffer.
fn take_plaintext(blob: Option<Blob>) -> Result<Zeroizing<[u8; 32]>, KeyringError> {
    let mut bytes = blob.map(Blob::into_inner).unwrap_or_default();
    let result = if bytes.len() == 32 {
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&bytes);
        Ok(key)
    } else {
        Err(KeyringError::Internal(format!(
            "KMS returned a {}-byte data key",
            bytes.len()
        )))
    };
    bytes.zeroize();
    result
}

/// KMS's error codes worth a retry.
const RETRYABLE: &[&str] = &[
    "ThrottlingException",
    "LimitExceededException",
    "KMSInternalException",
    "KeyUnavailableException",
    "DependencyTimeoutException",
];

/// KMS's error codes for a ciphertext that does not open under this context.
const REJECTED: &[&str] = &["InvalidCiphertextException", "IncorrectKeyException"];

/// Sorts KMS failures: throttling, outages and timeouts are retryable; a
/// ciphertext that does not open under this context fails closed.
fn kms_error<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    error: SdkError<E, R>,
) -> KeyringError {
    match AwsFailure::sort(&error, AwsService::Kms, RETRYABLE, REJECTED) {
        Sorted::Retry(detail) => KeyringError::Unavailable(detail),
        Sorted::Refused(_) => KeyringError::Rejected,
        Sorted::Failed(detail) => KeyringError::Internal(detail),
    }
}

#[async_trait]
impl Keyring for KmsKeyring {
    async fn generate_data_key(&self, context: &EncryptionContext) -> Result<DataKey, KeyringError> {
        let output = self
            .client
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(Some(context_map(context)))
            .send()
            .await
            .map_err(kms_error)?;
        let key_id = output.key_id().unwrap_or(&self.key_id).to_owned();
        let wrapped = output
            .ciphertext_blob()
            .map(|b| b.as_ref().to_vec())
            .ok_or_else(|| KeyringError::Internal("KMS returned no ciphertext".into()))?;
        let plaintext = take_plaintext(output.plaintext)?;
        Ok(DataKey {
            plaintext,
            wrapped,
            key_id,
        })
    }

    async fn decrypt_data_key(
        &self,
        wrapped: WrappedKey<'_>,
        context: &EncryptionContext,
    ) -> Result<Zeroizing<[u8; 32]>, KeyringError> {
        let output = self
            .client
            .decrypt()
            // Naming the key makes KMS refuse a ciphertext of any other key.
            .key_id(wrapped.key_id)
            .ciphertext_blob(Blob::new(wrapped.bytes))
            .set_encryption_context(Some(context_map(context)))
            .send()
            .await
            .map_err(kms_error)?;
        take_plaintext(output.plaintext)
    }
}
