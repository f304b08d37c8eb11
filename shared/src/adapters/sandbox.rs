//! The sandbox provider client (`mailmind-local --sandbox`): answers every
//! check from a built-in simulator instead of the providers, so a frontend
//! can be built against every state of a key without real keys, in the
//! spirit of a payment provider's test cards. A key containing
//! `sandbox-<outcome>` gets that outcome from any provider; any other key is
//! `invalid` (no real key is ever sent anywhere in sandbox mode).
//!
//! Only the provider calls are simulated: sealing, storage, pushes and limits
//! run the real code. This module exists only in builds with the `local`
//! feature, no Lambda state builder selects it, and it refuses to start
//! inside Lambda (`AWS_LAMBDA_FUNCTION_NAME` set), so it cannot be enabled on AWS.

use async_trait::async_trait;

use super::providers::ProviderConfigError;
use crate::domain::endpoint::{Endpoint, EndpointRefusal};
use crate::domain::model::canonical;
use crate::domain::{ApiKey, CheckOutcome, ErrorReason, ModelInfo, ProviderSpec};
use crate::ports::ProviderClient;

/// What a `sandbox-rate-limited` key is told to wait, like a provider's `retry-after`.
pub const SANDBOX_RETRY_AFTER_SECS: u64 = 30;

/// Every outcome a sandbox key can ask for, by the word that follows `sandbox-`.
pub const OUTCOMES: &[&str] = &[
    "valid",
    "invalid",
    "rate-limited",
    "quota-exhausted",
    "timeout",
    "unavailable",
    "bad-response",
];

/// The set Lambda's runtime always sets; its presence means "this is AWS".
const LAMBDA_MARKER: &str = "AWS_LAMBDA_FUNCTION_NAME";

/// The simulator. Stateless: the key alone decides the outcome.
#[derive(Debug)]
pub struct SandboxProviderClient {
    _only_through_new: (),
}

impl SandboxProviderClient {
    /// The simulator, unless this process runs inside AWS Lambda.
    pub fn new() -> Result<SandboxProviderClient, ProviderConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`Self::new`] with the environment read through `lookup` (tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<SandboxProviderClient, ProviderConfigError> {
        if lookup(LAMBDA_MARKER).is_some() {
            return Err(ProviderConfigError::SandboxInLambda { marker: LAMBDA_MARKER });
        }
        Ok(SandboxProviderClient { _only_through_new: () })
    }
}

/// The outcome a key asks for: the first `sandbox-<outcome>` in it.
pub fn requested_outcome(key: &str) -> Option<&'static str> {
    key.match_indices("sandbox-").find_map(|(at, prefix)| {
        let rest = &key[at + prefix.len()..];
        // Longest first, so that no name shadows a longer one it begins.
        OUTCOMES
            .iter()
            .copied()
            .filter(|outcome| rest.starts_with(outcome))
            .max_by_key(|outcome| outcome.len())
    })
}

/// The simulated verdict for `key` at `provider`.
pub fn simulate(provider: &ProviderSpec, key: &str) -> CheckOutcome {
    let failed = |reason, retry_after_secs| CheckOutcome::Failed {
        reason,
        retry_after_secs,
    };
    match requested_outcome(key) {
        Some("valid") => CheckOutcome::Valid {
            models: models_of(provider),
        },
        Some("rate-limited") => failed(ErrorReason::RateLimited, Some(SANDBOX_RETRY_AFTER_SECS)),
        Some("quota-exhausted") => failed(ErrorReason::QuotaExhausted, None),
        // A simulated timeout answers at once: nobody waits for the sandbox.
        Some("timeout") => failed(ErrorReason::Timeout, None),
        Some("unavailable") => failed(ErrorReason::ProviderUnavailable, None),
        Some("bad-response") => failed(ErrorReason::BadResponse, None),
        // `sandbox-invalid`, and every key that asks for nothing.
        _ => CheckOutcome::Invalid,
    }
}

#[async_trait]
impl ProviderClient for SandboxProviderClient {
    /// The same guard as the real client's, on the local server's policy,
    /// without the name lookup: the sandbox calls nobody, but a frontend
    /// should meet the same refusals.
    async fn admit_endpoint(&self, given: &str) -> Result<Endpoint, EndpointRefusal> {
        let policy = super::egress::EndpointPolicy {
            allow_loopback_http: true,
            ..Default::default()
        };
        let url = super::egress::check_base_url(&policy, given)?;
        Ok(Endpoint::accepted(url.as_str().trim_end_matches('/').to_owned()))
    }

    async fn check(&self, provider: &'static ProviderSpec, _: Option<&Endpoint>, key: &ApiKey) -> CheckOutcome {
        let outcome = simulate(provider, key.expose());
        let (verdict, reason) = outcome.verdict();
        tracing::info!(
            provider = provider.id,
            verdict = verdict.as_str(),
            reason = reason.map(ErrorReason::as_str),
            sandbox = true,
            "provider check simulated"
        );
        outcome
    }
}

/// A small, plausible catalogue, shaped like each provider's own ids:
/// (provider, model id, model name, context window).
const CATALOGUE: &[(&str, &str, &str, u64)] = &[
    ("anthropic", "claude-3-5-haiku-20241022", "Claude Haiku 3.5", 200_000),
    ("anthropic", "claude-opus-4-1-20250805", "Claude Opus 4.1", 200_000),
    ("anthropic", "claude-sonnet-4-20250514", "Claude Sonnet 4", 200_000),
    // A resource's deployments, named by whoever deployed them.
    ("azure_openai", "gpt-4o-mini-prod", "gpt-4o-mini", 128_000),
    ("azure_openai", "gpt-4o-prod", "gpt-4o", 128_000),
    ("cohere", "command-a-03-2025", "command-a-03-2025", 256_000),
    ("cohere", "command-r-08-2024", "command-r-08-2024", 128_000),
    ("cohere", "command-r-plus-08-2024", "command-r-plus-08-2024", 128_000),
    ("deepseek", "deepseek-chat", "deepseek-chat", 64_000),
    ("deepseek", "deepseek-reasoner", "deepseek-reasoner", 64_000),
    ("google_gemini", "gemini-2.0-flash", "Gemini 2.0 Flash", 1_048_576),
    ("google_gemini", "gemini-2.5-flash", "Gemini 2.5 Flash", 1_048_576),
    ("google_gemini", "gemini-2.5-pro", "Gemini 2.5 Pro", 1_048_576),
    ("groq", "gemma2-9b-it", "gemma2-9b-it", 8_192),
    ("groq", "llama-3.1-8b-instant", "llama-3.1-8b-instant", 131_072),
    ("groq", "llama-3.3-70b-versatile", "llama-3.3-70b-versatile", 131_072),
    ("mistral", "codestral-latest", "codestral-latest", 256_000),
    ("mistral", "mistral-large-latest", "mistral-large-latest", 131_072),
    ("mistral", "mistral-small-latest", "mistral-small-latest", 131_072),
    ("openai", "gpt-4.1", "gpt-4.1", 1_047_576),
    ("openai", "gpt-4o", "gpt-4o", 128_000),
    ("openai", "gpt-4o-mini", "gpt-4o-mini", 128_000),
    // What a local Ollama lists.
    ("openai_compatible", "llama3.2:latest", "llama3.2:latest", 131_072),
    ("openai_compatible", "qwen2.5:7b", "qwen2.5:7b", 32_768),
    (
        "openrouter",
        "anthropic/claude-sonnet-4",
        "Anthropic: Claude Sonnet 4",
        200_000,
    ),
    (
        "openrouter",
        "meta-llama/llama-3.3-70b-instruct",
        "Meta: Llama 3.3 70B Instruct",
        131_072,
    ),
    ("openrouter", "openai/gpt-4o-mini", "OpenAI: GPT-4o-mini", 128_000),
    (
        "together",
        "meta-llama/Llama-3.3-70B-Instruct-Turbo",
        "Meta Llama 3.3 70B Instruct Turbo",
        131_072,
    ),
    (
        "together",
        "mistralai/Mixtral-8x7B-Instruct-v0.1",
        "Mixtral-8x7B Instruct v0.1",
        32_768,
    ),
    ("xai", "grok-3", "grok-3", 131_072),
    ("xai", "grok-3-mini", "grok-3-mini", 131_072),
];

/// What a provider without an entry in [`CATALOGUE`] (one added later) lists.
const FALLBACK_MODEL: (&str, &str, &str, u64) = ("", "sandbox-model", "Sandbox model", 8_192);

/// The models a valid sandbox key unlocks at `provider`, canonical like a real list.
pub fn models_of(provider: &ProviderSpec) -> Vec<ModelInfo> {
    let mut listed: Vec<_> = CATALOGUE.iter().filter(|(of, ..)| *of == provider.id).collect();
    if listed.is_empty() {
        listed.push(&FALLBACK_MODEL);
    }
    canonical(
        listed
            .into_iter()
            .map(|(_, id, name, context_window)| ModelInfo {
                context_window: Some(*context_window),
                ..ModelInfo::named(*id, *name)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::provider::{self, PROVIDERS};

    #[test]
    fn the_key_names_the_outcome() {
        assert_eq!(requested_outcome("gsk_sandbox-valid-1"), Some("valid"));
        assert_eq!(requested_outcome("sandbox-invalid"), Some("invalid"));
        assert_eq!(requested_outcome("x-sandbox-rate-limited"), Some("rate-limited"));
        assert_eq!(requested_outcome("sandbox-nothing-sandbox-timeout"), Some("timeout"));
        assert_eq!(requested_outcome("gsk_live0123456789"), None);
        assert_eq!(requested_outcome("sandbox-"), None);
        assert_eq!(requested_outcome("SANDBOX-valid"), None);
    }

    #[test]
    fn every_outcome_maps_onto_the_contract() {
        let groq = provider::find("groq").unwrap();
        let failed = |reason, retry_after_secs| CheckOutcome::Failed {
            reason,
            retry_after_secs,
        };
        assert!(matches!(simulate(groq, "sandbox-valid"), CheckOutcome::Valid { models } if models.len() == 3));
        assert_eq!(simulate(groq, "sandbox-invalid"), CheckOutcome::Invalid);
        assert_eq!(
            simulate(groq, "sandbox-rate-limited"),
            failed(ErrorReason::RateLimited, Some(SANDBOX_RETRY_AFTER_SECS))
        );
        assert_eq!(
            simulate(groq, "sandbox-quota-exhausted"),
            failed(ErrorReason::QuotaExhausted, None)
        );
        assert_eq!(simulate(groq, "sandbox-timeout"), failed(ErrorReason::Timeout, None));
        assert_eq!(
            simulate(groq, "sandbox-unavailable"),
            failed(ErrorReason::ProviderUnavailable, None)
        );
        assert_eq!(
            simulate(groq, "sandbox-bad-response"),
            failed(ErrorReason::BadResponse, None)
        );
        assert_eq!(simulate(groq, "gsk_a-real-looking-key"), CheckOutcome::Invalid);
    }

    #[test]
    fn every_provider_has_a_plausible_canonical_list() {
        for provider in PROVIDERS {
            let models = models_of(provider);
            assert!(models.len() >= 2, "{}", provider.id);
            assert!(
                models.iter().all(|m| m.model_id != "sandbox-model"),
                "{} has no catalogue of its own",
                provider.id
            );
            assert_eq!(models, canonical(models.clone()));
        }
    }

    #[test]
    fn refuses_to_run_in_lambda() {
        assert!(SandboxProviderClient::from_lookup(|_| None).is_ok());
        let inside_lambda = |name: &str| (name == LAMBDA_MARKER).then(|| "credentials-create".to_owned());
        let refusal = SandboxProviderClient::from_lookup(inside_lambda).unwrap_err();
        assert!(refusal.to_string().contains(LAMBDA_MARKER));
    }
}
