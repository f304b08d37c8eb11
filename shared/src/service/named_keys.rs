//! The routes of one named key (`/credentials/{provider}/keys/...`): list,
//! add, read, rename / reorder / switch, delete. Adding runs the same path
//! as `POST /credentials/` (guard, seal, check, one write).

use super::{CredentialService, KeyInput, Result, ServiceError, Slot, audited};
use crate::audit::AuditAction;
use crate::domain::activity::ActivityEvent;
use crate::domain::named_key::{KeyId, KeyMeta, MAX_KEYS_PER_PROVIDER};
use crate::domain::{CredentialView, ProviderSpec, StoredCredential, UserId};
use crate::envelope;
use crate::ports::{EncryptionContext, KeyAt, MetaChange, StoreError};

/// What `PATCH .../keys/{key_id}/` may change; `None` leaves it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPatch {
    /// A new name (already parsed).
    pub name: Option<String>,
    /// A new place in the order.
    pub priority: Option<u32>,
    /// Switched on or off.
    pub enabled: Option<bool>,
}

/// Refuses one more key beside `keys`: over the limit, or a name one of
/// them has (names are compared as typed, case-insensitively).
pub(super) fn admit_another(provider: &'static ProviderSpec, keys: &[StoredCredential], meta: &KeyMeta) -> Result<()> {
    if keys.len() >= MAX_KEYS_PER_PROVIDER {
        return Err(ServiceError::TooManyKeys(provider));
    }
    refuse_taken_name(provider, keys, &meta.name, None)
}

fn refuse_taken_name(
    provider: &'static ProviderSpec,
    keys: &[StoredCredential],
    name: &str,
    except: Option<&KeyId>,
) -> Result<()> {
    let taken = keys
        .iter()
        .filter(|k| Some(&k.key.id) != except)
        .any(|k| k.key.name.to_lowercase() == name.to_lowercase());
    if taken {
        return Err(ServiceError::KeyNameTaken(provider, name.to_owned()));
    }
    Ok(())
}

impl CredentialService {
    /// Every key of the provider, in its order; empty when it has none.
    pub async fn list_keys(&self, user: &UserId, provider: &'static ProviderSpec) -> Result<Vec<CredentialView>> {
        let keys = self.store.keys(user, provider).await?;
        Ok(keys.iter().map(|k| CredentialView::of(provider, k)).collect())
    }

    /// Adds a key named `name`, placed at `priority` (default: last), once
    /// the provider has had its say, as `POST /credentials/` stores one.
    /// Writes an audit line whatever the outcome.
    pub async fn add_key(
        &self,
        user: &UserId,
        provider: &'static ProviderSpec,
        name: String,
        priority: Option<u32>,
        input: KeyInput,
    ) -> Result<CredentialView> {
        let work = async {
            // A cheap answer before any provider call; the write re-reads.
            let keys = self.store.keys(user, provider).await?;
            let priority = priority.unwrap_or_else(|| keys.iter().map(|k| k.key.priority + 1).max().unwrap_or(0));
            let id = if keys.is_empty() {
                KeyId::default_key()
            } else {
                KeyId::random()
            };
            let meta = KeyMeta {
                id,
                name,
                priority,
                enabled: true,
            };
            admit_another(provider, &keys, &meta)?;
            let (written, _) = self.put_key(user, provider, input, Slot::Another(meta)).await?;
            Ok(CredentialView::of(provider, &written))
        };
        audited(user, AuditAction::Create, provider, work).await
    }

    /// Rotates a key: the new one is checked first and replaces the old one
    /// only when the provider finds it valid (`422` if invalid, `503
    /// key_not_verified` without a verdict: the old key stays either way).
    /// Writes an audit line whatever the outcome.
    pub async fn rotate_key(
        &self,
        user: &UserId,
        provider: &'static ProviderSpec,
        key: &KeyId,
        input: KeyInput,
        if_match: IfMatch,
    ) -> Result<CredentialView> {
        let stored = self.put_key(user, provider, input, Slot::Rotate(key.clone(), if_match));
        let viewed = async { Ok(CredentialView::of(provider, &stored.await?.0)) };
        audited(user, AuditAction::Update, provider, viewed).await
    }

    /// Restores the key's previous version (kept after a replacement) once
    /// the provider finds it valid again, as a rotation to it would; the key
    /// it replaces becomes the previous version in turn, so a rollback can
    /// be undone. Writes an audit line whatever the outcome.
    pub async fn rollback_key(
        &self,
        user: &UserId,
        provider: &'static ProviderSpec,
        key: &KeyId,
        if_match: IfMatch,
    ) -> Result<CredentialView> {
        let at = KeyAt::new(user, provider, key);
        let work = async {
            let Some(previous) = self.store.previous(at).await? else {
                return Err(match self.store.get(at).await? {
                    Some(_) => ServiceError::NoPreviousKey(provider),
                    None => ServiceError::KeyNotFound(provider),
                });
            };
            let context = EncryptionContext::new(user, provider).at(previous.endpoint.as_ref());
            let opened = envelope::open(self.keyring.as_ref(), &context, &previous.sealed)
                .await
                .inspect_err(|e| {
                    tracing::error!(provider = provider.id, error = %e, "previous key does not open");
                    crate::audit::record_if_tampered(user, AuditAction::Rollback, provider, e);
                })?;
            let slot = Slot::Rollback(key.clone(), if_match, Box::new(previous));
            let (restored, _) = self.put_key(user, provider, opened.into(), slot).await?;
            Ok(CredentialView::of(provider, &restored))
        };
        audited(user, AuditAction::Rollback, provider, work).await
    }

    /// One key's status.
    pub async fn get_key(&self, user: &UserId, provider: &'static ProviderSpec, key: &KeyId) -> Result<CredentialView> {
        let at = KeyAt::new(user, provider, key);
        match self.store.get(at).await? {
            Some(stored) => Ok(CredentialView::of(provider, &stored)),
            None => Err(ServiceError::KeyNotFound(provider)),
        }
    }

    /// Checks one key again, now (the validation budget as for `check`).
    pub async fn check_key(
        &self,
        user: &UserId,
        provider: &'static ProviderSpec,
        key: &KeyId,
    ) -> Result<CredentialView> {
        let at = KeyAt::new(user, provider, key);
        let (stored, audience) = tokio::join!(self.store.get(at), self.notifier.audience(user));
        let Some(stored) = stored? else {
            return Err(ServiceError::KeyNotFound(provider));
        };
        self.admit_validation(user).await?;
        let checked = self
            .recheck(
                user,
                provider,
                stored,
                audience,
                crate::domain::activity::CheckedBy::User,
            )
            .await?;
        Ok(CredentialView::of(provider, &checked))
    }

    /// One key's stored models, sorted by id; `404` for a key the provider lacks.
    pub async fn key_models(
        &self,
        user: &UserId,
        provider: &'static ProviderSpec,
        key: &KeyId,
    ) -> Result<Vec<crate::domain::ModelView>> {
        let at = KeyAt::new(user, provider, key);
        let (stored, list) = tokio::join!(self.store.get(at), self.store.models(at));
        if stored?.is_none() {
            return Err(ServiceError::KeyNotFound(provider));
        }
        Ok(list?
            .map(|list| crate::domain::ModelView::list(provider.id, list))
            .unwrap_or_default())
    }

    /// Renames, moves or switches a key; the key itself and its status stay.
    pub async fn patch_key(
        &self,
        user: &UserId,
        provider: &'static ProviderSpec,
        key: &KeyId,
        patch: KeyPatch,
        if_match: &IfMatch,
    ) -> Result<CredentialView> {
        let keys = self.store.keys(user, provider).await?;
        let Some(mut stored) = keys.iter().find(|k| &k.key.id == key).cloned() else {
            return Err(ServiceError::KeyNotFound(provider));
        };
        if !if_match.admits(&stored.revision) {
            return Err(ServiceError::PreconditionFailed(provider));
        }
        if let Some(name) = &patch.name {
            refuse_taken_name(provider, &keys, name, Some(key))?;
        }
        let meta = KeyMeta {
            id: key.clone(),
            name: patch.name.unwrap_or(stored.key.name.clone()),
            priority: patch.priority.unwrap_or(stored.key.priority),
            enabled: patch.enabled.unwrap_or(stored.key.enabled),
        };
        let condition = if_match.is_set().then_some(stored.revision.as_str());
        let change = MetaChange {
            user,
            provider,
            meta: &meta,
            if_revision: condition,
        };
        match self.store.set_meta(change).await {
            Ok(()) => {}
            Err(StoreError::NotFound) => return Err(ServiceError::KeyNotFound(provider)),
            Err(StoreError::Conflict) => return Err(ServiceError::PreconditionFailed(provider)),
            Err(e) => return Err(e.into()),
        }
        tracing::info!(provider = provider.id, key = key.as_str(), "key settings changed");
        stored.key = meta;
        Ok(CredentialView::of(provider, &stored))
    }

    /// Deletes one key and its models, if it meets `if_match`. Writes an
    /// audit line whatever the outcome.
    pub async fn delete_named_key(
        &self,
        user: &UserId,
        provider: &'static ProviderSpec,
        key: &KeyId,
        if_match: &IfMatch,
    ) -> Result<()> {
        let at = KeyAt::new(user, provider, key);
        let work = async {
            // Only a precondition naming revisions needs the key read first.
            let condition = match if_match {
                IfMatch::Any => None,
                IfMatch::Revisions(_) => {
                    let Some(stored) = self.store.get(at).await? else {
                        return Err(ServiceError::KeyNotFound(provider));
                    };
                    if !if_match.admits(&stored.revision) {
                        return Err(ServiceError::PreconditionFailed(provider));
                    }
                    Some(stored.revision)
                }
            };
            match self.store.delete_key(at, condition.as_deref()).await {
                Ok(()) => Ok(()),
                Err(StoreError::NotFound) => Err(ServiceError::KeyNotFound(provider)),
                Err(StoreError::Conflict) => Err(ServiceError::PreconditionFailed(provider)),
                Err(e) => Err(e.into()),
            }
        };
        audited(user, AuditAction::Delete, provider, work).await?;
        tracing::info!(provider = provider.id, key = key.as_str(), "key deleted");
        self.note(user, provider, ActivityEvent::Deleted).await;
        Ok(())
    }
}

/// An `If-Match` header (RFC 9110, 13.1.1): absent or `*` admits any
/// existing key; else the key's ETag must be one of those listed (strong
/// comparison: a weak `W/` one never matches).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    /// No header, or `*`.
    Any,
    /// The listed entity tags' values (quotes removed).
    Revisions(Vec<String>),
}

impl IfMatch {
    /// The header's value as sent (`None` when absent).
    pub fn parse(header: Option<&str>) -> IfMatch {
        match header.map(str::trim) {
            None | Some("*") => IfMatch::Any,
            Some(list) => IfMatch::Revisions(
                list.split(',')
                    .map(str::trim)
                    .filter(|tag| !tag.starts_with("W/"))
                    .map(|tag| tag.trim_matches('"').to_owned())
                    .collect(),
            ),
        }
    }

    /// Whether a key at `revision` meets it.
    pub fn admits(&self, revision: &str) -> bool {
        match self {
            IfMatch::Any => true,
            IfMatch::Revisions(tags) => tags.iter().any(|tag| tag == revision),
        }
    }

    /// Whether it names revisions (so the write must hold to one).
    pub fn is_set(&self) -> bool {
        matches!(self, IfMatch::Revisions(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_takes_a_list_of_strong_tags_or_any() {
        assert!(IfMatch::parse(None).admits("r1"));
        assert!(IfMatch::parse(Some("*")).admits("r1"));
        let listed = IfMatch::parse(Some(r#""r0", "r1""#));
        assert!(listed.admits("r1") && !listed.admits("r2"));
        assert!(!IfMatch::parse(Some(r#"W/"r1""#)).admits("r1"), "weak tags never match");
        assert!(!IfMatch::parse(Some("")).admits("r1"));
    }

    #[test]
    fn names_are_unique_per_provider_whatever_their_case() {
        let groq = crate::domain::provider::find("groq").unwrap();
        assert!(refuse_taken_name(groq, &[], "Work", None).is_ok());
    }
}
