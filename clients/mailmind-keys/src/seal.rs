//! Opening a sealed key as the service sealed it (`shared/src/envelope.rs`):
//! AES-256-GCM under a data key that KMS unwraps, with the owner and
//! provider as both the KMS encryption context and the associated data.
//! The context is built from what the consumer asked for, never taken from
//! the answer, so a record of another user or provider fails to open.

use std::collections::HashMap;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use secrecy::SecretString;
use serde::{Deserialize, Deserializer};
use zeroize::Zeroizing;

use crate::KeyError;

/// The envelope format this client opens.
const FORMAT_V1: u8 = 1;

/// The `app` entry of every context.
const APP: &str = "mailmind";

/// `sealed_key` of a resolve's answer.
#[derive(Clone, Deserialize)]
pub(crate) struct SealedKey {
    format: u8,
    pub kms_key_id: String,
    #[serde(deserialize_with = "base64")]
    pub wrapped_data_key: Vec<u8>,
    #[serde(deserialize_with = "base64")]
    nonce: Vec<u8>,
    #[serde(deserialize_with = "base64")]
    ciphertext: Vec<u8>,
    encryption_context: HashMap<String, String>,
}

impl std::fmt::Debug for SealedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedKey")
            .field("format", &self.format)
            .field("kms_key_id", &self.kms_key_id)
            .finish_non_exhaustive()
    }
}

fn base64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    let text = <&str>::deserialize(deserializer)?;
    BASE64.decode(text).map_err(serde::de::Error::custom)
}

impl SealedKey {
    /// Whether the key is bound to an endpoint of the user's (`azure_openai`,
    /// `openai_compatible`): then that endpoint is the answer's `base_url`,
    /// and KMS refuses the data key if the two differ from what was sealed.
    pub fn names_an_endpoint(&self) -> bool {
        self.encryption_context.contains_key("endpoint")
    }
}

/// Whose key the consumer asked for, and where the answer says it is used.
pub(crate) struct Context<'a> {
    pub user_id: &'a str,
    pub provider: &'a str,
    pub endpoint: Option<&'a str>,
}

impl Context<'_> {
    /// The context's pairs, sorted by name.
    fn sorted(&self) -> Vec<(&'static str, &str)> {
        let mut pairs = vec![("app", APP)];
        pairs.extend(self.endpoint.map(|url| ("endpoint", url)));
        pairs.extend([("provider", self.provider), ("user", self.user_id)]);
        pairs
    }

    /// The KMS encryption context.
    pub fn pairs(&self) -> HashMap<String, String> {
        self.sorted()
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect()
    }

    /// The AES-GCM associated data: the context as canonical JSON, keys
    /// sorted, strings as serde_json writes them (what the service uses).
    fn aad(&self) -> Vec<u8> {
        let quoted = |s: &str| serde_json::Value::from(s).to_string();
        let fields: Vec<String> = self
            .sorted()
            .into_iter()
            .map(|(name, value)| format!("{}:{}", quoted(name), quoted(value)))
            .collect();
        format!("{{{}}}", fields.join(",")).into_bytes()
    }
}

/// The answer must be for the user and provider asked for, in a format
/// this client knows (checked before any KMS call).
pub(crate) fn check_context(sealed: &SealedKey, context: &Context<'_>) -> Result<(), KeyError> {
    if sealed.format != FORMAT_V1 {
        return Err(KeyError::Answer(format!(
            "unknown envelope format {}: update mailmind-keys",
            sealed.format
        )));
    }
    if sealed.encryption_context != context.pairs() {
        return Err(KeyError::Tampered);
    }
    Ok(())
}

/// The API key in `sealed`, opened with `data_key`.
pub(crate) fn open(data_key: &[u8; 32], context: &Context<'_>, sealed: &SealedKey) -> Result<SecretString, KeyError> {
    let key = UnboundKey::new(&AES_256_GCM, data_key)
        .map(LessSafeKey::new)
        .map_err(|_| KeyError::Tampered)?;
    let nonce = Nonce::try_assume_unique_for_key(&sealed.nonce).map_err(|_| KeyError::Tampered)?;
    let mut in_out = Zeroizing::new(sealed.ciphertext.clone());
    let plaintext = key
        .open_in_place(nonce, Aad::from(context.aad()), in_out.as_mut_slice())
        .map_err(|_| KeyError::Tampered)?;
    let text = std::str::from_utf8(plaintext).map_err(|_| KeyError::Tampered)?;
    Ok(SecretString::from(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    /// Seals as the service does (shared/src/envelope.rs), for the tests.
    fn seal(data_key: &[u8; 32], context: &Context<'_>, text: &str) -> SealedKey {
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, data_key).unwrap());
        let nonce = [9u8; 12];
        let mut in_out = text.as_bytes().to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(context.aad()),
            &mut in_out,
        )
        .unwrap();
        SealedKey {
            format: FORMAT_V1,
            kms_key_id: "k".into(),
            wrapped_data_key: vec![1],
            nonce: nonce.to_vec(),
            ciphertext: in_out,
            encryption_context: context.pairs(),
        }
    }

    #[test]
    fn a_key_opens_only_for_its_own_user_and_provider() {
        let data_key = [3u8; 32];
        let alice = Context {
            user_id: "alice",
            provider: "groq",
            endpoint: None,
        };
        let sealed = seal(&data_key, &alice, "gsk_secret");
        check_context(&sealed, &alice).unwrap();
        assert_eq!(open(&data_key, &alice, &sealed).unwrap().expose_secret(), "gsk_secret");
        assert!(!format!("{sealed:?}").contains("ciphertext"));

        let bob = Context {
            user_id: "bob",
            provider: "groq",
            endpoint: None,
        };
        assert!(matches!(check_context(&sealed, &bob), Err(KeyError::Tampered)));
        assert!(matches!(open(&data_key, &bob, &sealed), Err(KeyError::Tampered)));
        let mut flipped = sealed.clone();
        flipped.ciphertext[0] ^= 1;
        assert!(matches!(open(&data_key, &alice, &flipped), Err(KeyError::Tampered)));
        assert!(matches!(open(&[4u8; 32], &alice, &sealed), Err(KeyError::Tampered)));
    }

    #[test]
    fn the_associated_data_is_the_services() {
        let context = Context {
            user_id: r#"a"b"#,
            provider: "groq",
            endpoint: None,
        };
        assert_eq!(
            String::from_utf8(context.aad()).unwrap(),
            r#"{"app":"mailmind","provider":"groq","user":"a\"b"}"#
        );
        let at = Context {
            user_id: "alice",
            provider: "openai_compatible",
            endpoint: Some("https://llm.example.com/v1"),
        };
        assert_eq!(
            String::from_utf8(at.aad()).unwrap(),
            r#"{"app":"mailmind","endpoint":"https://llm.example.com/v1","provider":"openai_compatible","user":"alice"}"#
        );
    }

    #[test]
    fn a_key_bound_to_an_endpoint_opens_only_at_that_endpoint() {
        let data_key = [5u8; 32];
        let context = |endpoint| Context {
            user_id: "alice",
            provider: "openai_compatible",
            endpoint: Some(endpoint),
        };
        let sealed = seal(&data_key, &context("https://llm.example.com/v1"), "sk-local");
        assert!(sealed.names_an_endpoint());
        check_context(&sealed, &context("https://llm.example.com/v1")).unwrap();
        // An answer whose base_url was moved elsewhere does not open.
        let moved = context("https://evil.example/v1");
        assert!(matches!(check_context(&sealed, &moved), Err(KeyError::Tampered)));
        assert!(matches!(open(&data_key, &moved, &sealed), Err(KeyError::Tampered)));
    }
}
