//! A user's provider API key: the only plaintext secret the service handles.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

use super::provider::ProviderSpec;

/// The hint of the empty key.
pub const NO_KEY_HINT: &str = "(no key)";

/// Longest accepted key, in bytes, after trimming.
pub const MAX_KEY_BYTES: usize = 4096;

/// A provider API key. The plaintext lives in a zeroize-on-drop buffer, and
/// neither `Debug` nor `Display` ever shows it.
pub struct ApiKey(SecretString);

/// Why a pasted key was refused before anyone saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyInputError {
    /// Nothing but whitespace.
    #[error("api_key must not be empty.")]
    Empty,
    /// Over [`MAX_KEY_BYTES`].
    #[error("api_key must be at most 4096 bytes.")]
    TooLong,
    /// Inner whitespace or a control character.
    #[error("api_key must not contain spaces, tabs, line breaks or other control characters.")]
    ForbiddenCharacter,
}

impl ApiKey {
    /// Applies the input rules: surrounding whitespace is trimmed (keys are
    /// pasted), then 1 to 4096 bytes with no inner whitespace or control character.
    pub fn parse(raw: &str) -> Result<ApiKey, KeyInputError> {
        let key = raw.trim();
        if key.is_empty() {
            return Err(KeyInputError::Empty);
        }
        if key.len() > MAX_KEY_BYTES {
            return Err(KeyInputError::TooLong);
        }
        if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(KeyInputError::ForbiddenCharacter);
        }
        Ok(ApiKey(SecretString::from(key)))
    }

    /// [`parse`](Self::parse) for `provider`: where a key is optional (a
    /// local model server), nothing but whitespace is the empty key.
    pub fn parse_for(provider: &ProviderSpec, raw: &str) -> Result<ApiKey, KeyInputError> {
        match ApiKey::parse(raw) {
            Err(KeyInputError::Empty) if provider.key_optional => Ok(ApiKey(SecretString::from(""))),
            parsed => parsed,
        }
    }

    /// Whether this is the empty key of a server that needs none.
    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }

    /// Restores a key decrypted from storage (already validated when stored).
    pub(crate) fn from_decrypted(bytes: zeroize::Zeroizing<Vec<u8>>) -> Option<ApiKey> {
        let text = std::str::from_utf8(&bytes).ok()?;
        Some(ApiKey(SecretString::from(text)))
    }

    /// The plaintext, for the one place that needs it: the provider request.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// What may be shown of the key: its known prefix and last four characters,
    /// e.g. `gsk_…9xQa`. Short keys show no tail, so a hint never gives away a
    /// meaningful part of a key.
    pub fn hint(&self, provider: &ProviderSpec) -> String {
        let key = self.expose();
        if key.is_empty() {
            return NO_KEY_HINT.to_owned();
        }
        let prefix = provider
            .key_prefixes
            .iter()
            .find(|p| key.starts_with(**p) && key.len() > p.len())
            .copied()
            .unwrap_or("");
        let rest = &key[prefix.len()..];
        let rest_chars = rest.chars().count();
        // Show the last four only when at least 12 other characters stay hidden.
        if rest_chars >= 16 {
            let tail: String = rest.chars().skip(rest_chars - 4).collect();
            format!("{prefix}…{tail}")
        } else {
            format!("{prefix}…")
        }
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::provider;

    #[test]
    fn trims_pasted_whitespace() {
        let key = ApiKey::parse("  \n\tgsk_abc123\r\n ").unwrap();
        assert_eq!(key.expose(), "gsk_abc123");
    }

    #[test]
    fn refuses_empty_long_and_inner_whitespace() {
        assert_eq!(ApiKey::parse("").unwrap_err(), KeyInputError::Empty);
        assert_eq!(ApiKey::parse(" \n ").unwrap_err(), KeyInputError::Empty);
        assert_eq!(ApiKey::parse(&"a".repeat(4097)).unwrap_err(), KeyInputError::TooLong);
        assert!(ApiKey::parse(&"a".repeat(4096)).is_ok());
        // 4096 bytes of key plus surrounding whitespace is still fine.
        assert!(ApiKey::parse(&format!("  {}  ", "a".repeat(4096))).is_ok());
        for bad in [
            "gsk_ab c",
            "gsk_ab\tc",
            "gsk_ab\nc",
            "gsk_ab\u{0}c",
            "gsk_ab\u{7f}c",
            "ab\u{a0}c",
        ] {
            assert_eq!(
                ApiKey::parse(bad).unwrap_err(),
                KeyInputError::ForbiddenCharacter,
                "{bad:?}"
            );
        }
        // Non-ASCII printable characters are not our business to refuse.
        assert!(ApiKey::parse("clé-ü").is_ok());
    }

    #[test]
    fn hint_shows_prefix_and_last_four_only() {
        let groq = provider::find("groq").unwrap();
        let key = ApiKey::parse("gsk_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH9xQa").unwrap();
        assert_eq!(key.hint(groq), "gsk_…9xQa");
        // Unknown prefix: only the tail.
        let other = ApiKey::parse("zz0123456789abcdefghWXYZ").unwrap();
        assert_eq!(other.hint(groq), "…WXYZ");
        // Too short to show a tail safely.
        assert_eq!(ApiKey::parse("gsk_short").unwrap().hint(groq), "gsk_…");
        assert_eq!(ApiKey::parse("abc").unwrap().hint(groq), "…");
        // A key that is only the prefix does not count as having it.
        assert_eq!(ApiKey::parse("gsk_").unwrap().hint(groq), "…");
    }

    #[test]
    fn only_a_provider_with_optional_keys_takes_an_empty_one() {
        let compatible = provider::find("openai_compatible").unwrap();
        let key = ApiKey::parse_for(compatible, "  ").unwrap();
        assert!(key.is_empty());
        assert_eq!(key.hint(compatible), "(no key)");
        assert_eq!(
            ApiKey::parse_for(provider::find("groq").unwrap(), "").unwrap_err(),
            KeyInputError::Empty
        );
        assert_eq!(
            ApiKey::parse_for(compatible, "a b").unwrap_err(),
            KeyInputError::ForbiddenCharacter
        );
    }

    #[test]
    fn debug_never_prints_the_key() {
        let key = ApiKey::parse("gsk_supersecretvalue").unwrap();
        assert!(!format!("{key:?}").contains("supersecret"));
    }
}
