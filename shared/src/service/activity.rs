//! The user's activity history of each key (`domain::activity`): the service
//! notes an entry wherever it writes an audit line, and lists them.
//! Noting never fails the user's request: a failed write is logged and counted.

use std::sync::Arc;

use chrono::Utc;

use super::{CredentialService, Result};
use crate::domain::activity::{ActivityEntry, ActivityEvent, ActivityPage, ActivityQuery};
use crate::domain::{ProviderSpec, UserId};
use crate::ports::{ActivityStore, StoreError};

/// Keeps no history (the default of a bare [`CredentialService::new`]).
pub struct NoActivity;

#[async_trait::async_trait]
impl ActivityStore for NoActivity {
    async fn append(&self, _: &UserId, _: &ProviderSpec, _: &ActivityEntry) -> Result<(), StoreError> {
        Ok(())
    }

    async fn activity(&self, _: &UserId, _: &ProviderSpec, _: &ActivityQuery) -> Result<ActivityPage, StoreError> {
        Ok(ActivityPage {
            entries: Vec::new(),
            next: None,
        })
    }
}

impl CredentialService {
    /// Keeps the users' activity history in `store`.
    pub fn with_activity(mut self, store: Arc<dyn ActivityStore>) -> CredentialService {
        self.activity = store;
        self
    }

    /// Adds `event`, now, to the history of `user`'s `provider` key. A
    /// failure is logged and counted, never returned.
    pub(super) async fn note(&self, user: &UserId, provider: &'static ProviderSpec, event: ActivityEvent) {
        let name = event.name();
        let entry = ActivityEntry::new(Utc::now(), event);
        if let Err(e) = self.activity.append(user, provider, &entry).await {
            tracing::warn!(provider = provider.id, event = name, error = %e, "activity not recorded");
            crate::metrics::activity_not_recorded(name);
        }
    }

    /// A page of the history of `user`'s `provider` key, newest first.
    /// Empty (not an error) when there is none: a deleted key's history stays
    /// until it expires.
    pub async fn activity(
        &self,
        user: &UserId,
        provider: &'static ProviderSpec,
        query: &ActivityQuery,
    ) -> Result<ActivityPage> {
        Ok(self.activity.activity(user, provider, query).await?)
    }
}
