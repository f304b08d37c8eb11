//! Models a key unlocks, as discovered from the provider's list-models endpoint.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// One model, with the facts the provider gives about it. This is also the
/// stored form (a JSON array per credential), so fields are only ever added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub model_id: String,
    pub model_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_window: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owned_by: Option<String>,
}

/// The whole model list of one credential, replaced in one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelList {
    pub discovered_at: DateTime<Utc>,
    pub models: Vec<ModelInfo>,
}

/// A model as `GET /credentials/{provider}/models/` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ModelView {
    pub provider: &'static str,
    #[serde(flatten)]
    pub model: ModelInfo,
    pub discovered_at: String,
}

impl ModelView {
    pub fn list(provider: &'static str, list: ModelList) -> Vec<ModelView> {
        let discovered_at = list.discovered_at.to_rfc3339_opts(SecondsFormat::Secs, true);
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
