//! Who owns a credential: the `sub` claim of a verified token.

use std::fmt;

/// A user id as storage is keyed on it: the verified `sub` claim, non-empty,
/// at most 256 bytes, without control characters. Only [`UserId::parse`]
/// makes one, so every layer below the entry points holds a checked id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(String);

impl UserId {
    /// Longest accepted id, in bytes (Cognito's `sub` is a 36-byte UUID).
    pub const MAX_BYTES: usize = 256;

    /// Checks `sub` against the rule above.
    pub fn parse(sub: &str) -> Option<UserId> {
        let valid = !sub.is_empty() && sub.len() <= Self::MAX_BYTES && !sub.chars().any(char::is_control);
        valid.then(|| UserId(sub.to_owned()))
    }

    /// The id as text, e.g. for a storage key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_non_empty_bounded_and_printable() {
        assert_eq!(UserId::parse("user-a").unwrap().as_str(), "user-a");
        assert!(UserId::parse("").is_none());
        assert!(UserId::parse("a\nb").is_none());
        assert!(UserId::parse(&"x".repeat(256)).is_some());
        assert!(UserId::parse(&"x".repeat(257)).is_none());
    }
}
