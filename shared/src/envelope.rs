//! Envelope encryption of API keys: a fresh data key per write (from the
//! [`Keyring`]), AES-256-GCM under it, with the owner-and-provider context as
//! associated data, so a sealed key moved to another record fails to open.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use zeroize::Zeroizing;

use crate::domain::{ApiKey, SealedKey};
use crate::ports::{EncryptionContext, Keyring, KeyringError, WrappedKey};

/// Canonical bytes of `context` for AES-GCM associated data:
/// `{"app":..,"provider":..,"user":..}` (with `"endpoint":..` after `app`
/// where there is one). Written out pair by pair in the sorted order of
/// [`EncryptionContext::pairs`] (not via a JSON map, whose key order depends
/// on serde_json features): stored ciphertexts depend on these exact bytes.
pub fn aad(context: &EncryptionContext) -> Vec<u8> {
    let quoted = |s: &str| serde_json::Value::from(s).to_string();
    let fields: Vec<String> = context
        .pairs()
        .into_iter()
        .map(|(name, value)| format!("{}:{}", quoted(name), quoted(value)))
        .collect();
    format!("{{{}}}", fields.join(",")).into_bytes()
}

/// The only format so far: AES-256-GCM, 96-bit random nonce, tag appended.
pub const FORMAT_V1: u8 = 1;

/// AES-256-GCM with a random nonce. The key is used for this one message only,
/// so a random nonce can never repeat under it.
pub fn aes_gcm_seal(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Result<(Vec<u8>, Vec<u8>), KeyringError> {
    let sealing = aead_key(key)?;
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| KeyringError::Internal("no randomness".into()))?;
    let mut in_out = plaintext.to_vec();
    sealing
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut in_out)
        .map_err(|_| KeyringError::Internal("AES-GCM seal failed".into()))?;
    Ok((nonce.to_vec(), in_out))
}

/// Opens what [`aes_gcm_seal`] sealed; any change to key, nonce, AAD or
/// ciphertext is `Rejected`. The plaintext comes back in a zeroizing buffer.
pub fn aes_gcm_open(
    key: &[u8; 32],
    aad: &[u8],
    nonce: &[u8],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, KeyringError> {
    let opening = aead_key(key)?;
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| KeyringError::Rejected)?;
    let mut in_out = Zeroizing::new(ciphertext.to_vec());
    let len = opening
        .open_in_place(nonce, Aad::from(aad), in_out.as_mut_slice())
        .map_err(|_| KeyringError::Rejected)?
        .len();
    in_out.truncate(len);
    Ok(in_out)
}

fn aead_key(key: &[u8; 32]) -> Result<LessSafeKey, KeyringError> {
    UnboundKey::new(&AES_256_GCM, key)
        .map(LessSafeKey::new)
        .map_err(|_| KeyringError::Internal("bad AES key".into()))
}

/// Seals `key` for the owner and provider named by `context`.
pub async fn seal(keyring: &dyn Keyring, context: &EncryptionContext, key: &ApiKey) -> Result<SealedKey, KeyringError> {
    let data_key = keyring.generate_data_key(context).await?;
    let (nonce, ciphertext) = aes_gcm_seal(&data_key.plaintext, &aad(context), key.expose().as_bytes())?;
    Ok(SealedKey {
        format_version: FORMAT_V1,
        key_id: data_key.key_id,
        wrapped_data_key: data_key.wrapped,
        nonce,
        ciphertext,
    })
}

/// Opens a sealed key; fails closed (`Rejected`) on any mismatch.
pub async fn open(
    keyring: &dyn Keyring,
    context: &EncryptionContext,
    sealed: &SealedKey,
) -> Result<ApiKey, KeyringError> {
    if sealed.format_version != FORMAT_V1 {
        return Err(KeyringError::Internal(format!(
            "unknown envelope format {}",
            sealed.format_version
        )));
    }
    let wrapped = WrappedKey {
        key_id: &sealed.key_id,
        bytes: &sealed.wrapped_data_key,
    };
    let data_key = keyring.decrypt_data_key(wrapped, context).await?;
    let plaintext = aes_gcm_open(&data_key, &aad(context), &sealed.nonce, &sealed.ciphertext)?;
    ApiKey::from_decrypted(plaintext).ok_or(KeyringError::Rejected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcm_round_trip_and_tamper_detection() {
        let key = [7u8; 32];
        let (nonce, ct) = aes_gcm_seal(&key, b"ctx", b"secret").unwrap();
        assert_eq!(&aes_gcm_open(&key, b"ctx", &nonce, &ct).unwrap()[..], b"secret");
        assert!(matches!(
            aes_gcm_open(&key, b"ctX", &nonce, &ct),
            Err(KeyringError::Rejected)
        ));
        let mut flipped = ct.clone();
        flipped[0] ^= 1;
        assert!(matches!(
            aes_gcm_open(&key, b"ctx", &nonce, &flipped),
            Err(KeyringError::Rejected)
        ));
        assert!(matches!(
            aes_gcm_open(&[8u8; 32], b"ctx", &nonce, &ct),
            Err(KeyringError::Rejected)
        ));
        assert!(matches!(
            aes_gcm_open(&key, b"ctx", &nonce[..11], &ct),
            Err(KeyringError::Rejected)
        ));
        // Two seals of the same text never look alike.
        let (nonce2, ct2) = aes_gcm_seal(&key, b"ctx", b"secret").unwrap();
        assert_ne!((nonce, ct), (nonce2, ct2));
    }

    #[test]
    fn aad_is_canonical_and_binds_every_field() {
        let user = |id: &str| crate::domain::UserId::parse(id).unwrap();
        let provider = |id: &str| crate::domain::provider::find(id).unwrap();
        let a = EncryptionContext::new(&user("user-a"), provider("groq"));
        assert_eq!(
            String::from_utf8(aad(&a)).unwrap(),
            r#"{"app":"mailmind","provider":"groq","user":"user-a"}"#
        );
        assert_ne!(
            aad(&a),
            aad(&EncryptionContext::new(&user("user-a"), provider("openai")))
        );
        assert_ne!(aad(&a), aad(&EncryptionContext::new(&user("user-b"), provider("groq"))));
        // No ambiguity from separators: quoting keeps a user id from posing as another field.
        let posing = EncryptionContext::new(&user(r#"a","provider":"openai"#), provider("groq"));
        assert_eq!(
            String::from_utf8(aad(&posing)).unwrap(),
            r#"{"app":"mailmind","provider":"groq","user":"a\",\"provider\":\"openai"}"#
        );
        // A user's endpoint is bound too: the same key at another URL is another context.
        let at = |url: &str| {
            EncryptionContext::new(&user("user-a"), provider("openai_compatible"))
                .at(Some(&crate::domain::endpoint::Endpoint::accepted(url.to_owned())))
        };
        assert_eq!(
            String::from_utf8(aad(&at("https://llm.example.com/v1"))).unwrap(),
            r#"{"app":"mailmind","endpoint":"https://llm.example.com/v1","provider":"openai_compatible","user":"user-a"}"#
        );
        assert_ne!(
            aad(&at("https://llm.example.com/v1")),
            aad(&at("https://evil.example/v1"))
        );
    }
}
