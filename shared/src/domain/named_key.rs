//! Several keys per provider: each stored key has an id, a name
//! the user chooses, a place in the provider's priority order and an
//! `enabled` flag. A credential stored before keys had ids is the key
//! [`KeyId::DEFAULT`], named `default`, first, enabled: it reads as such
//! with no backfill.

use std::fmt;

/// Keys one user may keep per provider.
pub const MAX_KEYS_PER_PROVIDER: usize = 5;

/// Longest key name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// A key's id within its provider: `default`, or `k` and 10 lowercase hex
/// digits. Lowercase ASCII only, so it sorts and compares the same in every
/// store, and never looks like a model-list chunk number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    /// The id of the first key, and of every key stored before keys had ids.
    pub const DEFAULT: &'static str = "default";

    /// The first key's id.
    pub fn default_key() -> KeyId {
        KeyId(Self::DEFAULT.to_owned())
    }

    /// A fresh id for another key.
    pub fn random() -> KeyId {
        KeyId(format!("k{}", crate::ids::random_hex(5)))
    }

    /// An id as a path or a store gives it, if it is one.
    pub fn parse(text: &str) -> Option<KeyId> {
        let generated = text.len() == 11
            && text.starts_with('k')
            && text[1..]
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        (text == Self::DEFAULT || generated).then(|| KeyId(text.to_owned()))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the first key's id.
    pub fn is_default(&self) -> bool {
        self.0 == Self::DEFAULT
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a key name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Nothing but whitespace.
    #[error("name must not be empty.")]
    Empty,
    /// Over [`MAX_NAME_CHARS`].
    #[error("name must be at most 64 characters.")]
    TooLong,
    /// A control character.
    #[error("name must not contain control characters.")]
    ControlCharacter,
}

/// A key name as the user typed it: trimmed, 1 to 64 characters, no control
/// characters. Names are unique per provider (the service's rule).
pub fn parse_name(raw: &str) -> Result<String, NameError> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(NameError::TooLong);
    }
    if name.chars().any(char::is_control) {
        return Err(NameError::ControlCharacter);
    }
    Ok(name.to_owned())
}

/// What the user decides about one key besides the key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMeta {
    /// Its id within the provider.
    pub id: KeyId,
    /// The user's name for it.
    pub name: String,
    /// Its place in the provider's order: lower first.
    pub priority: u32,
    /// Whether it may be chosen at all.
    pub enabled: bool,
}

impl KeyMeta {
    /// The first key: `default`, first, enabled.
    pub fn default_key() -> KeyMeta {
        KeyMeta {
            id: KeyId::default_key(),
            name: KeyId::DEFAULT.to_owned(),
            priority: 0,
            enabled: true,
        }
    }
}

/// The provider's order of its keys: priority, then age, then id.
pub fn provider_order(a: &super::StoredCredential, b: &super::StoredCredential) -> std::cmp::Ordering {
    (a.key.priority, a.created_at, &a.key.id).cmp(&(b.key.priority, b.created_at, &b.key.id))
}

/// The provider's primary key among `keys` (in the provider's order): the
/// first enabled one, else the first. The contract's routes act on it.
pub fn primary(keys: &[super::StoredCredential]) -> Option<&super::StoredCredential> {
    keys.iter().find(|k| k.key.enabled).or(keys.first())
}

/// How long a key rate limited in use rests when the provider named no wait.
pub const DEFAULT_COOLDOWN_SECS: u64 = 60;

/// Why a key is passed over when one is chosen for use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unusable {
    /// Switched off by the user.
    Disabled,
    /// The provider said it is not valid.
    Invalid,
    /// Its account is out of credit, until a check finds it valid again.
    QuotaExhausted,
    /// Rate limited in use, resting until then.
    RateLimited(chrono::DateTime<chrono::Utc>),
}

impl Unusable {
    /// The wire word.
    pub fn as_str(self) -> &'static str {
        match self {
            Unusable::Disabled => "disabled",
            Unusable::Invalid => "invalid",
            Unusable::QuotaExhausted => "quota_exhausted",
            Unusable::RateLimited(_) => "rate_limited",
        }
    }

    /// Until when, for a resting key.
    pub fn until(self) -> Option<chrono::DateTime<chrono::Utc>> {
        match self {
            Unusable::RateLimited(until) => Some(until),
            _ => None,
        }
    }

    /// Why `key` cannot be used at `now`, or `None` when it can.
    pub fn of(key: &super::StoredCredential, now: chrono::DateTime<chrono::Utc>) -> Option<Unusable> {
        use super::{CredentialStatus, ErrorReason};
        Some(match () {
            _ if !key.key.enabled => Unusable::Disabled,
            _ if key.check.status == CredentialStatus::Invalid => Unusable::Invalid,
            _ if key.check.status == CredentialStatus::Error
                && key.check.reason == Some(ErrorReason::QuotaExhausted) =>
            {
                Unusable::QuotaExhausted
            }
            _ => match key.cooling_until {
                Some(until) if until > now => Unusable::RateLimited(until),
                _ => return None,
            },
        })
    }
}

/// The key chosen for use and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice<'a> {
    /// The key.
    pub key: &'a super::StoredCredential,
    /// It is not the primary key: those before it were passed over.
    pub fallback: bool,
    /// The enabled keys before it that were passed over, and why.
    pub skipped: Vec<(&'a KeyId, Unusable)>,
}

/// The first usable key of `keys` (in the provider's order) at `now`; when
/// none is, every key with why it is not.
pub fn choose(
    keys: &[super::StoredCredential],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Choice<'_>, Vec<(&KeyId, Unusable)>> {
    let mut passed = Vec::new();
    for key in keys {
        match Unusable::of(key, now) {
            None => {
                let skipped: Vec<_> = passed
                    .iter()
                    .copied()
                    .filter(|(_, why)| *why != Unusable::Disabled)
                    .collect();
                return Ok(Choice {
                    key,
                    fallback: !skipped.is_empty(),
                    skipped,
                });
            }
            Some(why) => passed.push((&key.key.id, why)),
        }
    }
    Err(passed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_default_or_generated_and_nothing_else() {
        assert!(KeyId::parse("default").unwrap().is_default());
        let fresh = KeyId::random();
        assert_eq!(KeyId::parse(fresh.as_str()), Some(fresh.clone()));
        assert_ne!(fresh, KeyId::random());
        for bad in [
            "",
            "Default",
            "k012345678",
            "k0123456789ab",
            "kABCDEF0123",
            "x0123456789",
            "1",
            "k012345678g",
        ] {
            assert_eq!(KeyId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn names_are_trimmed_bounded_and_printable() {
        assert_eq!(parse_name("  Work key "), Ok("Work key".to_owned()));
        assert_eq!(parse_name(&"é".repeat(64)), Ok("é".repeat(64)));
        assert_eq!(parse_name(&"é".repeat(65)), Err(NameError::TooLong));
        assert_eq!(parse_name(" \t"), Err(NameError::Empty));
        assert_eq!(parse_name("a\u{7}b"), Err(NameError::ControlCharacter));
    }
}
