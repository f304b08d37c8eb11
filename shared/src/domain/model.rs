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
    /// RFC 3339 time (to the second) this credential's list first held the
    /// model, kept across re-discoveries. Set by the service, never by a provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen_at: Option<String>,
}

impl ModelInfo {
    /// A model known by its id and name; the facts a provider may add are unset.
    pub fn named(model_id: impl Into<String>, model_name: impl Into<String>) -> ModelInfo {
        ModelInfo {
            model_id: model_id.into(),
            model_name: model_name.into(),
            context_window: None,
            max_output_tokens: None,
            owned_by: None,
            first_seen_at: None,
        }
    }
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
    /// The provider's keys that unlock the model (the provider's list only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false, example = json!(["default"])))]
    pub key_ids: Option<Vec<String>>,
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
                key_ids: None,
            })
            .collect()
    }

    /// What several keys' lists unlock together, sorted by id: each model
    /// once, as the first key (in the order given) lists it, with every key
    /// that lists it; `discovered_at` is the latest of those keys' lists.
    pub fn union(provider: &'static str, lists: Vec<(super::named_key::KeyId, ModelList)>) -> Vec<ModelView> {
        let mut by_id: std::collections::BTreeMap<String, ModelView> = std::collections::BTreeMap::new();
        for (key, list) in lists {
            let discovered_at = time::to_api(&list.discovered_at);
            for model in list.models {
                let view = by_id.entry(model.model_id.clone()).or_insert_with(|| ModelView {
                    provider,
                    model,
                    discovered_at: discovered_at.clone(),
                    key_ids: Some(Vec::new()),
                });
                view.discovered_at = view.discovered_at.clone().max(discovered_at.clone());
                view.key_ids.get_or_insert_with(Vec::new).push(key.to_string());
            }
        }
        by_id.into_values().collect()
    }
}

/// Sorts by id and drops repeated ids, so every stored list is canonical.
pub fn canonical(mut models: Vec<ModelInfo>) -> Vec<ModelInfo> {
    models.sort_by(|a, b| a.model_id.cmp(&b.model_id));
    models.dedup_by(|a, b| a.model_id == b.model_id);
    models
}

/// Most models stored per credential. Beyond it a list is cut (see [`bounded`]).
pub const MAX_MODELS: usize = 10_000;

/// Most bytes a stored list takes as JSON. Beyond it a list is cut (see
/// [`bounded`]); the DynamoDB store's chunking is sized so that a list this
/// large fits one transaction even if it does not compress at all.
pub const MAX_LIST_JSON_BYTES: usize = 2 * 1024 * 1024;

/// Cuts a list to what the stores keep: its first [`MAX_MODELS`] models and
/// no more than [`MAX_LIST_JSON_BYTES`] of JSON. Applied to a canonical
/// (id-sorted) list the cut is deterministic: the models with the smallest
/// ids are kept, the same ones on every check.
pub fn bounded(mut models: Vec<ModelInfo>) -> Vec<ModelInfo> {
    // "[" + "]" and one comma between entries.
    let mut bytes = 2;
    let mut keep = 0;
    for model in models.iter().take(MAX_MODELS) {
        let size = serde_json::to_vec(model).map(|v| v.len()).unwrap_or(usize::MAX) + 1;
        if bytes + size > MAX_LIST_JSON_BYTES {
            break;
        }
        bytes += size;
        keep += 1;
    }
    if keep < models.len() {
        tracing::warn!(listed = models.len(), kept = keep, "model list cut to the stored cap");
        models.truncate(keep);
    }
    models
}

/// How a re-discovery changed a stored model list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListChange {
    /// Ids in the new list that the old one did not have.
    pub added: u32,
    /// Ids of the old list that the new one lacks.
    pub removed: u32,
}

/// Gives every model of a fresh (canonical) list its `first_seen_at`: kept
/// from `previous` for a model it held (its discovery time for a model stored
/// before models had one), `now` for a new one. Also says how the list
/// changed, when there was a previous list and it differs.
pub fn carry_history(
    previous: Option<&ModelList>,
    mut fresh: Vec<ModelInfo>,
    now: &DateTime<Utc>,
) -> (Vec<ModelInfo>, Option<ListChange>) {
    let now = time::to_api(now);
    let old: &[ModelInfo] = previous.map(|p| p.models.as_slice()).unwrap_or_default();
    let find = |id: &str| {
        old.binary_search_by(|m| m.model_id.as_str().cmp(id))
            .ok()
            .map(|i| &old[i])
    };
    let mut added = 0;
    for model in &mut fresh {
        model.first_seen_at = Some(match (find(&model.model_id), previous) {
            (Some(seen), Some(list)) => seen
                .first_seen_at
                .clone()
                .unwrap_or_else(|| time::to_api(&list.discovered_at)),
            _ => {
                added += 1;
                now.clone()
            }
        });
    }
    let kept = fresh.len() as u32 - added;
    let change = previous
        .map(|_| ListChange {
            added,
            removed: old.len() as u32 - kept,
        })
        .filter(|c| c.added + c.removed > 0);
    (fresh, change)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(id: String) -> ModelInfo {
        ModelInfo::named(id.clone(), id)
    }

    #[test]
    fn bounded_keeps_the_first_models_within_both_caps() {
        let many: Vec<ModelInfo> = (0..MAX_MODELS + 5).map(|i| model(format!("m{i:06}"))).collect();
        let kept = bounded(many.clone());
        assert_eq!(kept.len(), MAX_MODELS);
        assert_eq!(kept[..], many[..MAX_MODELS]);

        let long: Vec<ModelInfo> = (0..9000).map(|i| model(format!("{i:06}{}", "x".repeat(250)))).collect();
        let kept = bounded(long.clone());
        assert!(kept.len() < long.len());
        assert_eq!(kept[..], long[..kept.len()]);
        let json = serde_json::to_vec(&kept).unwrap().len();
        assert!(json <= MAX_LIST_JSON_BYTES, "{json}");
        let one_more = serde_json::to_vec(&long[..kept.len() + 1]).unwrap().len();
        assert!(one_more > MAX_LIST_JSON_BYTES, "the cut is at the cap, not before");

        let few = vec![model("a".into()), model("b".into())];
        assert_eq!(bounded(few.clone()), few);
    }

    fn models(ids: &[&str], seen: Option<&str>) -> Vec<ModelInfo> {
        canonical(
            ids.iter()
                .map(|id| ModelInfo {
                    first_seen_at: seen.map(str::to_owned),
                    ..ModelInfo::named(*id, *id)
                })
                .collect(),
        )
    }

    #[test]
    fn first_seen_at_is_kept_and_changes_are_counted() {
        let then = time::parse("2026-01-05T10:00:00Z").unwrap();
        let now = time::parse("2026-03-01T12:00:00Z").unwrap();
        let (first, change) = carry_history(None, models(&["a", "b"], None), &then);
        assert_eq!(change, None, "a first discovery changes nothing");
        assert!(
            first
                .iter()
                .all(|m| m.first_seen_at.as_deref() == Some("2026-01-05T10:00:00Z"))
        );
        let previous = ModelList {
            discovered_at: then,
            models: first,
        };
        let (next, change) = carry_history(Some(&previous), models(&["b", "c", "d"], None), &now);
        assert_eq!(change, Some(ListChange { added: 2, removed: 1 }));
        let seen: Vec<_> = next
            .iter()
            .map(|m| (m.model_id.as_str(), m.first_seen_at.as_deref().unwrap()))
            .collect();
        assert_eq!(
            seen,
            [
                ("b", "2026-01-05T10:00:00Z"),
                ("c", "2026-03-01T12:00:00Z"),
                ("d", "2026-03-01T12:00:00Z")
            ]
        );
        let (_, same) = carry_history(Some(&previous), models(&["a", "b"], None), &now);
        assert_eq!(same, None, "an unchanged list reports no change");
        // A list stored before models had a first sighting: its discovery time stands in.
        let legacy = ModelList {
            discovered_at: then,
            models: models(&["a"], None),
        };
        let (kept, _) = carry_history(Some(&legacy), models(&["a"], None), &now);
        assert_eq!(kept[0].first_seen_at.as_deref(), Some("2026-01-05T10:00:00Z"));
    }
}
