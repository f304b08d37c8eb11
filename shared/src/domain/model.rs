//! Models a key unlocks, as discovered from the provider's list-models endpoint.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::time;

/// One model, with the facts the provider gives about it. This is also the
/// stored form (a JSON array per credential), so fields are only ever added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelInfo {
    /// The id to call the model by.
    #[cfg_attr(feature = "openapi", schema(example = "llama-3.1-8b-instant"))]
    pub model_id: String,
    /// Its name for people (the id when the provider gives none).
    #[cfg_attr(feature = "openapi", schema(example = "llama-3.1-8b-instant"))]
    pub model_name: String,
    /// Input tokens it accepts, when the provider says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false, example = 131072))]
    pub context_window: Option<u64>,
    /// Output tokens it produces at most, when the provider says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false, example = 8192))]
    pub max_output_tokens: Option<u64>,
    /// Who publishes it, when the provider says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false, example = "Meta"))]
    pub owned_by: Option<String>,
}

/// The whole model list of one credential, replaced in one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelList {
    /// When the provider listed them.
    pub discovered_at: DateTime<Utc>,
    /// Sorted by id.
    pub models: Vec<ModelInfo>,
}

/// A model as `GET /credentials/{provider}/models/` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelView {
    /// Provider id.
    #[cfg_attr(feature = "openapi", schema(example = "groq"))]
    pub provider: &'static str,
    /// The model's facts, flattened into the object.
    #[serde(flatten)]
    pub model: ModelInfo,
    /// RFC 3339 time of the discovery.
    #[cfg_attr(feature = "openapi", schema(example = "2026-11-24T19:00:00Z", format = DateTime))]
    pub discovered_at: String,
}

impl ModelView {
    /// The views of a stored list.
    pub fn list(provider: &'static str, list: ModelList) -> Vec<ModelView> {
        let discovered_at = time::to_api(&list.discovered_at);
        list.models
            .into_iter()
            .map(|model| ModelView {
                provider,
                model,
                discovered_at: discovered_at.clone(),
            })
            .collect()
    }
}

/// Sorts by id and drops repeated ids, so every stored list is canonical.
pub fn canonical(mut models: Vec<ModelInfo>) -> Vec<ModelInfo> {
    models.sort_by(|a, b| a.model_id.cmp(&b.model_id));
    models.dedup_by(|a, b| a.model_id == b.model_id);
    models
}
