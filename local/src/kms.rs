//! AWS KMS played locally, for `Decrypt` only: a consumer that receives a
//! sealed key (wrapped data key, nonce, ciphertext, encryption context, key
//! id) opens the data key with its own `kms:Decrypt`, unchanged SDK code
//! pointed at this server (`endpoint_url` or `AWS_ENDPOINT_URL_KMS`). Here the
//! "KMS key" is the local keyring's master key. The JSON 1.1 protocol:
//! `POST /`, `X-Amz-Target: TrentService.Decrypt`, errors as
//! `{"__type": ..., "message": ...}`. Behind [`crate::doors`] (service `kms`).
//!
//! <https://docs.aws.amazon.com/kms/latest/APIReference/API_Decrypt.html>

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use mailmind::ports::{EncryptionContext, Keyring, KeyringError, WrappedKey};
use serde::Deserialize;
use serde_json::json;

use crate::LocalGateway;

/// The one operation played.
const DECRYPT_TARGET: &str = "TrentService.Decrypt";

/// The protocol's content type.
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// The `Decrypt` request's fields this server reads (others are ignored,
/// like `GrantTokens`).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DecryptRequest {
    ciphertext_blob: Option<String>,
    key_id: Option<String>,
    encryption_context: Option<HashMap<String, String>>,
    encryption_algorithm: Option<String>,
}

/// An error the way KMS sends it (JSON 1.1: `__type` and `message`).
pub fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = json!({"__type": kind, "message": message}).to_string();
    (status, [("content-type", CONTENT_TYPE)], body).into_response()
}

fn validation(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "ValidationException", message)
}

fn invalid_ciphertext() -> Response {
    // KMS says no more than this, whatever did not match.
    error(StatusCode::BAD_REQUEST, "InvalidCiphertextException", "")
}

/// `POST /` with `X-Amz-Target` (the doorkeeper has let it in).
pub async fn handle(State(gateway): State<Arc<LocalGateway>>, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok());
    if target != Some(DECRYPT_TARGET) {
        return error(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            "This local KMS plays only TrentService.Decrypt.",
        );
    }
    let Ok(request) = serde_json::from_slice::<DecryptRequest>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "SerializationException",
            "The request body is not a Decrypt request.",
        );
    };
    let Some(blob) = request.ciphertext_blob.filter(|b| !b.is_empty()) else {
        return validation(
            "1 validation error detected: Value at 'ciphertextBlob' failed to satisfy constraint: Member must not be null",
        );
    };
    let Ok(blob) = base64::engine::general_purpose::STANDARD.decode(blob) else {
        return error(
            StatusCode::BAD_REQUEST,
            "SerializationException",
            "CiphertextBlob is not base64.",
        );
    };
    if blob.len() > 6144 {
        return validation(
            "1 validation error detected: Value at 'ciphertextBlob' failed to satisfy constraint: Member must have length less than or equal to 6144",
        );
    }
    if request
        .encryption_algorithm
        .as_deref()
        .is_some_and(|a| a != "SYMMETRIC_DEFAULT")
    {
        return error(
            StatusCode::BAD_REQUEST,
            "IncorrectKeyException",
            "The local key is a symmetric key: EncryptionAlgorithm must be SYMMETRIC_DEFAULT.",
        );
    }
    let keyring = &gateway.kms_key;
    if let Some(key_id) = &request.key_id
        && key_id != keyring.key_id()
    {
        return error(
            StatusCode::BAD_REQUEST,
            "IncorrectKeyException",
            "The key ID in the request does not identify a KMS key that can perform this operation.",
        );
    }
    // A context that is not a MailMind key's opens nothing.
    let Some(context) = request
        .encryption_context
        .as_ref()
        .and_then(EncryptionContext::from_pairs)
    else {
        return invalid_ciphertext();
    };
    let wrapped = WrappedKey {
        key_id: keyring.key_id(),
        bytes: &blob,
    };
    match keyring.decrypt_data_key(wrapped, &context).await {
        Ok(plaintext) => {
            let plaintext =
                zeroize::Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(plaintext.as_slice()));
            let body = zeroize::Zeroizing::new(
                json!({
                    "KeyId": keyring.key_id(),
                    "Plaintext": plaintext.as_str(),
                    "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
                })
                .to_string(),
            );
            let mut response = (StatusCode::OK, body.as_str().to_owned()).into_response();
            response
                .headers_mut()
                .insert("content-type", HeaderValue::from_static(CONTENT_TYPE));
            response
        }
        Err(KeyringError::Rejected) => invalid_ciphertext(),
        Err(e) => {
            tracing::error!(error = %e, "local KMS Decrypt failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "KMSInternalException",
                "The local key could not be used.",
            )
        }
    }
}
