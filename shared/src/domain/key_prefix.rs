//! Keys pasted under the wrong provider: a key that starts with a prefix only
//! one provider issues was meant for that provider. Checked before any
//! network call, so the user hears "This looks like an Anthropic key."
//! instead of a vague rejection after a round trip.
//!
//! Only prefixes that no other supported provider's keys can start with are
//! listed (docs/PROVIDERS.md). A bare `sk-` is ambiguous (OpenAI, DeepSeek,
//! and the start of Anthropic's and OpenRouter's keys too) and never counts;
//! nor do OpenAI's `sk-proj-`/`sk-svcacct-`/`sk-admin-`, which OpenAI-shaped
//! gateways and proxies also hand out. Mistral and Cohere keys have no
//! prefix at all.

use super::api_key::ApiKey;
use super::provider::{self, ProviderSpec};

/// `(prefix, provider id)`: a key starting with `prefix` is `provider`'s.
/// Checked in order; `sk-ant-` and `sk-or-` are distinctive although `sk-` is not.
pub const DISTINCTIVE_PREFIXES: &[(&str, &str)] = &[
    ("sk-ant-", "anthropic"),
    ("sk-or-", "openrouter"),
    ("gsk_", "groq"),
    ("AIza", "google_gemini"),
    ("xai-", "xai"),
    ("tgp_v1_", "together"),
];

/// The provider `key` evidently belongs to, when that is not `provider`.
pub fn belongs_elsewhere(provider: &ProviderSpec, key: &ApiKey) -> Option<&'static ProviderSpec> {
    let key = key.expose();
    DISTINCTIVE_PREFIXES
        .iter()
        .find(|(prefix, _)| key.starts_with(prefix))
        .and_then(|(_, owner)| provider::find(owner))
        .filter(|owner| owner.id != provider.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::provider::PROVIDERS;

    /// One key in each shape a provider issues (docs/PROVIDERS.md), by provider.
    pub(crate) const OWN_KEYS: &[(&str, &str)] = &[
        (
            "anthropic",
            "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-AbCdEfGhIjKlMnOpQ-AA",
        ),
        ("cohere", "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789AbCd"),
        ("deepseek", "sk-0123456789abcdef0123456789abcdef"),
        ("google_gemini", "AIzaSyD-0123456789abcdefghijklmnopqrstu"),
        ("groq", "gsk_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP"),
        ("mistral", "AbCdEfGhIjKlMnOpQrStUvWxYz012345"),
        (
            "openai",
            "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
        ),
        (
            "openai",
            "sk-svcacct-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789AbCdEfGhIjKlMnOpQrStUvWxYz012345",
        ),
        (
            "openai",
            "sk-admin-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
        ),
        ("openai", "sk-AbCdEfGhIjKlMnOpQrStT3BlbkFJAbCdEfGhIjKlMnOpQrSt"),
        (
            "openrouter",
            "sk-or-v1-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ),
        ("together", "tgp_v1_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789AbCdEfG"),
        (
            "xai",
            "xai-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789AbCdEfGhIjKlMnOpQrStUvWxYz0123456789AbCdEfGh",
        ),
    ];

    fn key(text: &str) -> ApiKey {
        ApiKey::parse(text).unwrap()
    }

    #[test]
    fn a_providers_own_key_is_never_refused_and_ambiguous_keys_go_anywhere() {
        for (id, own) in OWN_KEYS {
            let provider = provider::find(id).unwrap();
            assert_eq!(
                belongs_elsewhere(provider, &key(own)).map(|p| p.id),
                None,
                "{id}: {own}"
            );
        }
        // Keys with no distinctive prefix are no provider's in particular.
        for ambiguous in [
            "sk-0123456789abcdef0123456789abcdef",
            "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
            "AbCdEfGhIjKlMnOpQrStUvWxYz012345",
            "sk-an-almost-anthropic",
            "sk-o-almost-openrouter",
            "gsk-not-groq",
            "aiza-lowercase",
        ] {
            for provider in PROVIDERS {
                assert_eq!(
                    belongs_elsewhere(provider, &key(ambiguous)),
                    None,
                    "{ambiguous} for {}",
                    provider.id
                );
            }
        }
    }

    #[test]
    fn a_distinctive_prefix_under_any_other_provider_names_its_owner() {
        for (prefix, owner) in DISTINCTIVE_PREFIXES {
            let own = OWN_KEYS
                .iter()
                .find(|(id, k)| id == owner && k.starts_with(prefix))
                .unwrap()
                .1;
            for provider in PROVIDERS {
                let found = belongs_elsewhere(provider, &key(own)).map(|p| p.id);
                let expected = (provider.id != *owner).then_some(*owner);
                assert_eq!(found, expected, "{prefix} key under {}", provider.id);
            }
        }
    }

    #[test]
    fn every_distinctive_prefix_names_a_registered_provider_and_no_other_claims_it() {
        for (prefix, owner) in DISTINCTIVE_PREFIXES {
            let owner = provider::find(owner).unwrap_or_else(|| panic!("{owner} is not a provider"));
            // The prefix is one of the owner's known key shapes (or starts one).
            assert!(
                owner
                    .key_prefixes
                    .iter()
                    .any(|p| p.starts_with(prefix) || prefix.starts_with(p)),
                "{prefix} is not among {}'s key prefixes",
                owner.id
            );
            // No other provider's known key shape starts with it.
            for other in PROVIDERS.iter().filter(|p| p.id != owner.id) {
                assert!(
                    other.key_prefixes.iter().all(|p| !p.starts_with(prefix)),
                    "{prefix} is also a {} key prefix",
                    other.id
                );
            }
        }
    }
}
