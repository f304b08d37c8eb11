//! What a provider says about a key's credit, where it says anything:
//! OpenRouter's key endpoint (`GET /api/v1/key`). Kept with the status.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A key's credit as the provider last reported it. Every field is `null`
/// when the provider left it out; a `null` `limit` means no limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Quota {
    /// The credit limit (US dollars for OpenRouter); `None`: unlimited.
    pub limit: Option<f64>,
    /// Credit used so far.
    pub usage: Option<f64>,
    /// What is left of the limit; `None` without a limit.
    pub limit_remaining: Option<f64>,
    /// Whether the account is on the free tier.
    pub is_free_tier: Option<bool>,
}

impl Quota {
    /// Reads `{"data": {"limit", "usage", "limit_remaining", "is_free_tier", ..}}`;
    /// `None` unless `data` is an object. The remaining credit is worked out
    /// from limit and usage when the answer does not give it.
    pub fn from_key_info(body: &Value) -> Option<Quota> {
        let data = body.get("data")?.as_object()?;
        let number = |field: &str| data.get(field).and_then(Value::as_f64);
        let (limit, usage) = (number("limit"), number("usage"));
        let limit_remaining = number("limit_remaining").or_else(|| Some(limit? - usage?));
        Some(Quota {
            limit,
            usage,
            limit_remaining,
            is_free_tier: data.get("is_free_tier").and_then(Value::as_bool),
        })
    }

    /// Whether the credit is spent: nothing remains of a limit.
    pub fn used_up(&self) -> bool {
        self.limit_remaining.is_some_and(|left| left <= 0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_openrouters_key_answer() {
        let q = Quota::from_key_info(&json!({"data": {"label": "x", "limit": 100, "usage": 25.5,
            "limit_remaining": 74.5, "is_free_tier": false}}))
        .unwrap();
        assert_eq!(
            (q.limit, q.usage, q.limit_remaining, q.is_free_tier),
            (Some(100.0), Some(25.5), Some(74.5), Some(false))
        );
        assert!(!q.used_up());
        let unlimited = Quota::from_key_info(&json!({"data": {"limit": null, "usage": 3}})).unwrap();
        assert_eq!(unlimited.limit_remaining, None);
        assert!(!unlimited.used_up());
        let derived = Quota::from_key_info(&json!({"data": {"limit": 10, "usage": 10}})).unwrap();
        assert!(derived.used_up());
        assert_eq!(Quota::from_key_info(&json!({"data": []})), None);
    }
}
