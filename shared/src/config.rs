//! Settings: how the environment (on Lambda) and the local server's flags
//! become the plain values the services take. Read once, at start-up, by the
//! composition root (`crate::state`, `mailmind-local`); the services read no
//! environment.

use std::time::Duration;

use crate::service::{
    DEFAULT_MAX_CONNECTIONS_PER_USER, DEFAULT_PREVIOUS_KEY_DAYS, RevalidationPolicy, ValidationLimit,
};

/// Configuration that keeps the service from starting, said in one sentence.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The variable `name`, trimmed; unset and empty alike are `None`.
pub fn env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// The abuse limits (docs/API.md, "Limits"): validations per user per
/// window, and live sockets per user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// User-initiated validations (create, update, check) per user per window.
    pub validations: ValidationLimit,
    /// Live WebSocket connections per user; 0: no cap.
    pub max_connections_per_user: u32,
    /// Days a replaced key is kept sealed to roll back to.
    pub previous_key_days: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            validations: ValidationLimit::default(),
            max_connections_per_user: DEFAULT_MAX_CONNECTIONS_PER_USER,
            previous_key_days: DEFAULT_PREVIOUS_KEY_DAYS,
        }
    }
}

impl Limits {
    /// From `VALIDATION_LIMIT` (validations per window, 0 = off),
    /// `VALIDATION_LIMIT_WINDOW_SECONDS` (1 to 86400) and
    /// `MAX_CONNECTIONS_PER_USER` and `PREVIOUS_KEY_DAYS`; unset or empty
    /// means the default.
    pub fn from_env() -> Result<Limits, ConfigError> {
        let validations = validation_limit(
            env("VALIDATION_LIMIT").as_deref(),
            env("VALIDATION_LIMIT_WINDOW_SECONDS").as_deref(),
        )
        .map_err(ConfigError)?;
        let max_connections_per_user = match env("MAX_CONNECTIONS_PER_USER") {
            Some(text) => max_connections(&text).map_err(ConfigError)?,
            None => DEFAULT_MAX_CONNECTIONS_PER_USER,
        };
        let previous_key_days = match env("PREVIOUS_KEY_DAYS") {
            Some(text) => previous_key_days(&text).map_err(ConfigError)?,
            None => DEFAULT_PREVIOUS_KEY_DAYS,
        };
        Ok(Limits {
            validations,
            max_connections_per_user,
            previous_key_days,
        })
    }
}

/// The validation limit from its two settings as text (`None`: the
/// default), as the environment and the local server's flags give them.
pub fn validation_limit(per_window: Option<&str>, window_secs: Option<&str>) -> Result<ValidationLimit, String> {
    let mut limit = ValidationLimit::default();
    if let Some(text) = per_window {
        limit.per_window = text
            .parse()
            .map_err(|_| format!("the validation limit must be a whole number of at least 0, not '{text}'"))?;
    }
    if let Some(text) = window_secs {
        let secs: i64 = text
            .parse()
            .ok()
            .filter(|s| (1..=86_400).contains(s))
            .ok_or_else(|| format!("the validation window must be 1 to 86400 seconds, not '{text}'"))?;
        limit.window = chrono::Duration::seconds(secs);
    }
    Ok(limit)
}

/// A connection cap as text: a whole number, 0 for none.
pub fn max_connections(text: &str) -> Result<u32, String> {
    text.parse()
        .map_err(|_| format!("the connection cap must be a whole number of at least 0, not '{text}'"))
}

/// Days a replaced key is kept to roll back to, 1 to 90.
pub fn previous_key_days(text: &str) -> Result<u32, String> {
    text.trim()
        .parse()
        .ok()
        .filter(|days| (1..=90).contains(days))
        .ok_or_else(|| format!("PREVIOUS_KEY_DAYS must be a whole number of days from 1 to 90, not '{text}'"))
}

/// The re-validation policy from `REVALIDATE_AFTER` and `REVALIDATE_BUDGET`
/// (durations like `24h`, `90s`) and `REVALIDATE_CONCURRENCY` (checks per
/// provider, 1 to 256); unset or empty means the default.
pub fn revalidation_policy_from_env() -> Result<RevalidationPolicy, ConfigError> {
    let duration = |name: &str, default| match env(name) {
        Some(text) => parse_duration(&text).map_err(|e| ConfigError(format!("{name}: {e}"))),
        None => Ok(default),
    };
    let concurrency = match env("REVALIDATE_CONCURRENCY") {
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=256).contains(n))
            .ok_or_else(|| ConfigError("REVALIDATE_CONCURRENCY must be a number from 1 to 256".into()))?,
        None => RevalidationPolicy::DEFAULT_CONCURRENCY,
    };
    let policy = RevalidationPolicy {
        revalidate_after: duration("REVALIDATE_AFTER", RevalidationPolicy::DEFAULT_AFTER)?,
        budget: duration("REVALIDATE_BUDGET", RevalidationPolicy::DEFAULT_BUDGET)?,
        concurrency_per_provider: concurrency,
    };
    if policy.revalidate_after.is_zero() {
        return Err(ConfigError("REVALIDATE_AFTER must be more than 0".into()));
    }
    Ok(policy)
}

/// A duration like `24h`, `90s`, `1h 30m` or `0` (humantime's syntax).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| format!("{e} (a duration like 24h, 90s or 1h30m)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_with_defaults_and_bounds() {
        assert_eq!(validation_limit(None, None).unwrap(), ValidationLimit::default());
        assert_eq!(ValidationLimit::default().per_window, 10);
        let custom = validation_limit(Some("3"), Some("3600")).unwrap();
        assert_eq!(custom.per_window, 3);
        assert_eq!(custom.window, chrono::Duration::hours(1));
        assert_eq!(validation_limit(Some("0"), None).unwrap().per_window, 0);
        assert!(validation_limit(Some("-1"), None).is_err());
        assert!(validation_limit(Some("ten"), None).is_err());
        assert!(validation_limit(None, Some("0")).is_err());
        assert!(validation_limit(None, Some("86401")).is_err());
        assert_eq!(previous_key_days(" 30 "), Ok(30));
        for wrong in ["0", "91", "-1", "7d", ""] {
            assert!(previous_key_days(wrong).is_err(), "{wrong:?}");
        }
    }

    #[test]
    fn durations_parse_like_the_flags_say() {
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("").is_err());
    }
}
