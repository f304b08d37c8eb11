//! The DynamoDB store: one table, `pk`/`sk` strings.
//!
//! | item | pk | sk |
//! |---|---|---|
//! | key + status | `USER#<sub>` | `CRED#<stem>` |
//! | its model list (deflated JSON, first chunk) | `USER#<sub>` | `MODELS#<stem>` |
//! | its model list, further chunks (large lists only) | `USER#<sub>` | `MODELS#<stem>#<n>` |
//! | the key it replaced, sealed (TTL `expires_at`) | `USER#<sub>` | `PREV#<stem>` |
//! | WebSocket connection (TTL `expires_at`) | `USER#<sub>` | `CONN#<connection id>` |
//! | budget window, e.g. validations (TTL `expires_at`) | `USER#<sub>` | `LIMIT#<bucket>` |
//! | activity entry (TTL `expires_at`) | `USER#<sub>` | `ACTIVITY#<provider>#<time>#<id>` |
//!
//! A key's `<stem>` is its provider's id for the provider's first key,
//! `default` (so every item from before several keys per provider is that
//! key, unchanged), and `<provider>#<key id>` for the others (key ids start
//! with `k`, chunk numbers with a digit). A provider's keys are the one
//! `Query` `sk BETWEEN CRED#<provider> AND CRED#<provider>#~`: `#` sorts
//! before `_`, so `CRED#openai_compatible` is outside `openai`'s range.
//!
//! The sparse global secondary index `DueIndex` (keys only) lists credential
//! items alone, the only ones with `due_shard` (`<provider>#<0..7>`, from the
//! key's random revision) and `fresh_at`: background re-validation queries
//! each of a provider's shards for `fresh_at <= now - REVALIDATE_AFTER`,
//! oldest first, and never scans the table (docs/ARCHITECTURE.md).
//!
//! Every key is under the user's partition, so no request can reach another
//! user's items. Credential and model list change together in one
//! `TransactWriteItems`; conditions (not reads) stop create/create and
//! update/delete races. A model list is stored as [`model_chunks`] says: one
//! item for ordinary lists, up to [`MAX_CHUNKS`] for the largest.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, Get, Put, ReturnValuesOnConditionCheckFailure, TransactGetItem, TransactWriteItem, Update,
};
use chrono::{DateTime, Utc};

use super::aws_errors::{AwsFailure, Sorted};
use super::credential_record::{self, Fields, Read, Unreadable, page_of};
use super::model_chunks::{self, MAX_CHUNKS};
use crate::domain::activity::{ActivityEntry, ActivityPage, ActivityQuery};
use crate::domain::named_key::KeyId;
use crate::domain::{
    CheckState, FailedAttempt, ModelInfo, ModelList, PreviousKey, ProviderSpec, StoredCredential, UserId,
};
use crate::metrics::AwsService;
use crate::ports::{
    ActivityStore, Budget, Connection, ConnectionStore, CredentialStore, Deferral, DueCredential, DueQuery, KeyAt,
    KeyRevision, KeyUse, LimitStore, MetaChange, ModelsUpdate, OncePerWindow, Replacement, Spend, StoreError,
};
use crate::time;

type Item = HashMap<String, AttributeValue>;

/// The global secondary index of due credentials (template.yaml).
pub const DUE_INDEX: &str = "DueIndex";

/// Index partitions per provider: writes of the freshness time spread over
/// this many partition keys, so no provider's re-validation has a hot one.
pub const DUE_SHARDS: u8 = 8;

/// The due index partition of a credential: its provider and a shard taken
/// from its revision (random hex), so shards fill evenly.
fn due_shard(provider: &str, revision: &str) -> String {
    let digit = revision.chars().next().and_then(|c| c.to_digit(16)).unwrap_or(0);
    format!("{provider}#{}", digit % u32::from(DUE_SHARDS))
}

/// Transactions that collide with another in-flight transaction are retried this often.
const TRANSACTION_ATTEMPTS: u32 = 3;

/// Credentials, model lists and connections in one DynamoDB table.
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    /// The store over `table`, reached with `client`.
    pub fn new(client: Client, table: impl Into<String>) -> DynamoStore {
        DynamoStore {
            client,
            table: table.into(),
        }
    }

    fn key(user: &UserId, sk: String) -> Item {
        HashMap::from([("pk".to_owned(), s(format!("USER#{user}"))), ("sk".to_owned(), s(sk))])
    }

    fn credential_key(user: &UserId, stem: &str) -> Item {
        Self::key(user, format!("CRED#{stem}"))
    }

    /// The key of an activity entry: newest last in the user's partition,
    /// so a backwards `Query` on the prefix pages newest first.
    fn activity_key(user: &UserId, provider: &str, entry: &ActivityEntry) -> Item {
        Self::key(user, format!("ACTIVITY#{provider}#{}", entry.position().0))
    }

    fn activity_item(user: &UserId, provider: &str, entry: &ActivityEntry) -> Item {
        let mut item = Self::activity_key(user, provider, entry);
        item.insert("detail".into(), s(entry.detail_json()));
        // DynamoDB's TTL wants epoch seconds.
        item.insert("expires_at".into(), n(entry.expires_at()));
        item
    }

    fn models_key(user: &UserId, stem: &str) -> Item {
        Self::key(user, format!("MODELS#{stem}"))
    }

    /// Chunk `index` (1 and up) of a model list too large for one item.
    fn models_chunk_key(user: &UserId, stem: &str, index: usize) -> Item {
        Self::key(user, format!("MODELS#{stem}#{index}"))
    }

    /// The writes that store `models`: the head item (first chunk, chunk
    /// count, discovery time), any further chunks, and deletes of the chunks
    /// a longer previous list may have left (a delete of a missing item is a
    /// no-op, and this way no read is needed before the write).
    fn put_models(
        &self,
        user: &UserId,
        stem: &str,
        discovered_at: &DateTime<Utc>,
        models: &[ModelInfo],
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let chunks = model_chunks::encode(models)?;
        let mut writes = Vec::with_capacity(MAX_CHUNKS);
        for (index, chunk) in chunks.iter().enumerate() {
            let mut item = if index == 0 {
                let mut head = Self::models_key(user, stem);
                head.insert("discovered_at".into(), s(time::to_stored(discovered_at)));
                head.insert("chunks".into(), n(chunks.len()));
                head
            } else {
                Self::models_chunk_key(user, stem, index)
            };
            item.insert("models_z".into(), b(chunk));
            writes.push(self.transact_item(Write::Put(item), None)?);
        }
        writes.extend(self.delete_model_chunks(user, stem, chunks.len())?);
        Ok(writes)
    }

    /// The previous version of the key at `stem`.
    fn previous_key(user: &UserId, stem: &str) -> Item {
        Self::key(user, format!("PREV#{stem}"))
    }

    /// The deletes of one key (which must exist), its previous version and
    /// its whole model list.
    fn delete_key_items(&self, user: &UserId, stem: &str) -> Result<Vec<TransactWriteItem>, StoreError> {
        let credential = Write::Delete(Self::credential_key(user, stem));
        let mut items = vec![
            self.transact_item(credential, Some("attribute_exists(pk)"))?,
            self.transact_item(Write::Delete(Self::previous_key(user, stem)), None)?,
            self.transact_item(Write::Delete(Self::models_key(user, stem)), None)?,
        ];
        items.extend(self.delete_model_chunks(user, stem, 1)?);
        Ok(items)
    }

    /// Deletes of chunks `from..MAX_CHUNKS` (never the head item).
    fn delete_model_chunks(
        &self,
        user: &UserId,
        stem: &str,
        from: usize,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        (from.max(1)..MAX_CHUNKS)
            .map(|index| self.transact_item(Write::Delete(Self::models_chunk_key(user, stem, index)), None))
            .collect()
    }

    /// Reads a list stored over `count` chunks in one atomic read, so a
    /// concurrent write cannot mix two lists. `None` when the head item now
    /// says another count (the list was replaced between the reads).
    async fn read_model_chunks(
        &self,
        user: &UserId,
        stem: &str,
        count: usize,
    ) -> Result<Option<(Item, Vec<ModelInfo>)>, StoreError> {
        let keys = std::iter::once(Self::models_key(user, stem))
            .chain((1..count).map(|index| Self::models_chunk_key(user, stem, index)));
        let mut gets = Vec::with_capacity(count);
        for key in keys {
            let get = Get::builder()
                .table_name(&self.table)
                .set_key(Some(key))
                .build()
                .map_err(build_err)?;
            gets.push(TransactGetItem::builder().get(get).build());
        }
        let output = self
            .client
            .transact_get_items()
            .set_transact_items(Some(gets))
            .send()
            .await
            .map_err(sdk_error)?;
        let items: Vec<Option<&Item>> = output.responses().iter().map(|r| r.item()).collect();
        let Some(Some(head)) = items.first() else {
            return Ok(None);
        };
        if Read(*head).opt_number::<usize>("chunks")? != Some(count) || items.len() != count {
            return Ok(None);
        }
        let mut parts = Vec::with_capacity(count);
        for item in &items {
            let item = item.ok_or_else(|| corrupt("models_z"))?;
            let chunk = item.get("models_z").and_then(|v| v.as_b().ok());
            parts.push(chunk.ok_or_else(|| corrupt("models_z"))?.as_ref());
        }
        let models = model_chunks::decode(&parts)?;
        Ok(Some(((*head).clone(), models)))
    }

    /// Runs a transaction; a condition failure comes back as `on_condition`.
    async fn transact(&self, items: Vec<TransactWriteItem>, on_condition: StoreError) -> Result<(), StoreError> {
        let mut attempt = 1;
        loop {
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            let error = match result {
                Ok(_) => return Ok(()),
                Err(error) => error,
            };
            if let SdkError::ServiceError(service) = &error
                && let TransactWriteItemsError::TransactionCanceledException(cancelled) = service.err()
            {
                let codes: Vec<&str> = cancelled
                    .cancellation_reasons()
                    .iter()
                    .filter_map(|r| r.code())
                    .collect();
                if codes.contains(&"ConditionalCheckFailed") {
                    return Err(on_condition);
                }
                if codes.contains(&"TransactionConflict") && attempt < TRANSACTION_ATTEMPTS {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
                    continue;
                }
                // Throttled or conflicting to the end: safe to retry later.
                if codes.contains(&"ThrottlingError") {
                    crate::metrics::aws_throttled(AwsService::DynamoDb);
                }
                return Err(StoreError::Unavailable(format!("transaction cancelled: {codes:?}")));
            }
            return Err(sdk_error(error));
        }
    }

    /// After a failed `revision` condition: was the credential gone, or replaced?
    async fn gone_or_changed(&self, key: &KeyRevision) -> StoreError {
        match self.get(key.at()).await {
            Ok(Some(_)) => StoreError::Conflict,
            Ok(None) => StoreError::NotFound,
            Err(e) => e,
        }
    }

    /// One item, read strongly consistent; `projection`: only those attributes.
    async fn get_item(&self, key: Item, projection: Option<&str>) -> Result<Option<Item>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .set_projection_expression(projection.map(str::to_owned))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(output.item)
    }

    /// One write of a transaction on this table, on `condition` if any.
    fn transact_item(&self, write: Write, condition: Option<&str>) -> Result<TransactWriteItem, StoreError> {
        let (table, condition) = (Some(self.table.clone()), condition.map(str::to_owned));
        let write = match write {
            Write::Put(item) => TransactWriteItem::builder().put(
                Put::builder()
                    .set_table_name(table)
                    .set_item(Some(item))
                    .set_condition_expression(condition)
                    .build()
                    .map_err(build_err)?,
            ),
            Write::Delete(key) => TransactWriteItem::builder().delete(
                Delete::builder()
                    .set_key(Some(key))
                    .set_table_name(table)
                    .set_condition_expression(condition)
                    .build()
                    .map_err(build_err)?,
            ),
        };
        Ok(write.build())
    }

    /// An update of the credential at `key` that sets (or, for `None`,
    /// removes) `attributes`, only while the credential is there and, given
    /// a `revision`, holds that key still.
    fn credential_update(
        &self,
        key: Item,
        attributes: Vec<(&'static str, Option<AttributeValue>)>,
        revision: Option<&str>,
    ) -> Result<Update, StoreError> {
        let (expression, mut names, mut values) = update_expression(attributes);
        let mut condition = "attribute_exists(pk)".to_owned();
        if let Some(revision) = revision {
            names.insert("#revision".into(), "revision".into());
            values.insert(":revision".into(), s(revision));
            condition.push_str(" AND #revision = :revision");
        }
        Update::builder()
            .table_name(&self.table)
            .set_key(Some(key))
            .update_expression(expression)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .condition_expression(condition)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_err)
    }

    /// Sends `update` on its own, as one conditional `UpdateItem` (half of
    /// what a one-item transaction costs). A key it no longer finds is
    /// `NotFound`, one replaced meanwhile `Conflict`: the failed condition
    /// returns the item as it was.
    async fn send_update(&self, update: Update) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(update.table_name)
            .set_key(Some(update.key))
            .update_expression(update.update_expression)
            .set_condition_expression(update.condition_expression)
            .set_expression_attribute_names(update.expression_attribute_names)
            .set_expression_attribute_values(update.expression_attribute_values)
            .set_return_values_on_condition_check_failure(update.return_values_on_condition_check_failure)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) => match e.err() {
                UpdateItemError::ConditionalCheckFailedException(failed) => Err(match failed.item() {
                    Some(_) => StoreError::Conflict,
                    None => StoreError::NotFound,
                }),
                _ => Err(sdk_error(SdkError::ServiceError(e))),
            },
            Err(e) => Err(sdk_error(e)),
        }
    }

    /// Stores `write` (of `credential`) and its model list in one
    /// transaction; a failed condition is `on_condition`.
    async fn write_key(
        &self,
        mut items: Vec<TransactWriteItem>,
        credential: &StoredCredential,
        models: &[ModelInfo],
        on_condition: StoreError,
    ) -> Result<(), StoreError> {
        items.extend(self.put_models(
            &credential.user_id,
            &stem(credential.provider.id, &credential.key.id),
            &credential.updated_at,
            models,
        )?);
        self.transact(items, on_condition).await
    }
}

/// A write of a transaction: an item to put, or the key of one to delete.
enum Write {
    Put(Item),
    Delete(Item),
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn b(value: &[u8]) -> AttributeValue {
    AttributeValue::B(Blob::new(value))
}

fn build_err(e: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::Internal(format!("request build: {e}"))
}

/// DynamoDB's error codes worth a retry.
const RETRYABLE: &[&str] = &[
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionConflictException",
    "TransactionInProgressException",
];

/// Sorts SDK failures: throttling, timeouts and outages are retryable (`Unavailable`).
fn sdk_error<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    error: SdkError<E, R>,
) -> StoreError {
    match AwsFailure::sort(&error, AwsService::DynamoDb, RETRYABLE, &[]) {
        Sorted::Retry(detail) => StoreError::Unavailable(detail),
        Sorted::Refused(detail) | Sorted::Failed(detail) => StoreError::Internal(detail),
    }
}

/// An item's attributes, as a credential record reads them.
impl Fields for Item {
    const QUOTA: &'static str = "quota";

    fn text(&self, name: &'static str) -> Result<Option<String>, Unreadable> {
        present(self, name)
            .map(|v| v.as_s().cloned().map_err(|_| Unreadable(name)))
            .transpose()
    }

    fn integer(&self, name: &'static str) -> Result<Option<i64>, Unreadable> {
        present(self, name)
            .map(|v| v.as_n().ok().and_then(|n| n.parse().ok()).ok_or(Unreadable(name)))
            .transpose()
    }

    fn bytes(&self, name: &'static str) -> Result<Option<Vec<u8>>, Unreadable> {
        present(self, name)
            .map(|v| {
                v.as_b()
                    .map(|blob| blob.as_ref().to_vec())
                    .map_err(|_| Unreadable(name))
            })
            .transpose()
    }
}

/// The attribute `name`, unless it is absent or null.
fn present<'a>(item: &'a Item, name: &str) -> Option<&'a AttributeValue> {
    item.get(name).filter(|v| !v.is_null())
}

fn corrupt(field: &'static str) -> StoreError {
    Unreadable(field).into()
}

/// The attributes of a credential that a key replacement rewrites.
fn key_and_status_attributes(c: &StoredCredential) -> Vec<(&'static str, Option<AttributeValue>)> {
    let mut attributes = vec![
        ("format_version", Some(n(c.sealed.format_version))),
        ("key_id", Some(s(&c.sealed.key_id))),
        ("wrapped_data_key", Some(b(&c.sealed.wrapped_data_key))),
        ("nonce", Some(b(&c.sealed.nonce))),
        ("ciphertext", Some(b(&c.sealed.ciphertext))),
        ("key_hint", Some(s(&c.key_hint))),
        ("endpoint", c.endpoint.as_ref().map(|e| s(e.as_str()))),
        // A new key does not rest.
        ("cooling_until", c.cooling_until.as_ref().map(|t| s(time::to_stored(t)))),
        ("revision", Some(s(&c.revision))),
        ("models_count", Some(n(c.models_count))),
        ("updated_at", Some(s(time::to_stored(&c.updated_at)))),
        // A new key has its own re-check window; `last_used_at` is the
        // credential's and stays.
        (
            "last_recheck_at",
            c.last_recheck_at.as_ref().map(|t| s(time::to_stored(t))),
        ),
        // The due index keys: a stored verdict is fresh from its check.
        ("due_shard", Some(s(due_shard(c.provider.id, &c.revision)))),
        (
            "fresh_at",
            Some(s(time::to_stored(&c.check.checked_at.unwrap_or(c.updated_at)))),
        ),
    ];
    attributes.extend(attempt_attributes(c.last_attempt.as_ref()));
    attributes.extend(status_attributes(&c.check));
    attributes
}

/// The key's note of its previous version, from the version kept (`None`
/// removes it), so that the two never disagree.
fn previous_note_attributes(retired: Option<&PreviousKey>) -> Vec<(&'static str, Option<AttributeValue>)> {
    vec![
        ("previous_hint", retired.map(|p| s(&p.key_hint))),
        ("previous_until", retired.map(|p| s(time::to_stored(&p.kept_until)))),
    ]
}

/// Status attributes; `None` means "remove it".
fn status_attributes(check: &CheckState) -> Vec<(&'static str, Option<AttributeValue>)> {
    vec![
        ("status", Some(s(check.status.as_str()))),
        ("status_reason", check.reason.map(|r| s(r.as_str()))),
        ("retry_after_secs", check.retry_after_secs.map(n)),
        (
            "last_checked_at",
            check.checked_at.as_ref().map(|t| s(time::to_stored(t))),
        ),
        // JSON: what the provider last told of the key's credit.
        (
            "quota",
            check.quota.as_ref().and_then(|q| serde_json::to_string(q).ok()).map(s),
        ),
    ]
}

/// The last attempt without a verdict; `None` removes it.
fn attempt_attributes(attempt: Option<&FailedAttempt>) -> Vec<(&'static str, Option<AttributeValue>)> {
    vec![
        ("last_attempt_at", attempt.map(|a| s(time::to_stored(&a.at)))),
        ("last_attempt_reason", attempt.map(|a| s(a.reason.as_str()))),
        ("attempt_failures", attempt.map(|a| n(a.failures))),
    ]
}

/// `SET a = :a, ... REMOVE b, ...` with every name escaped (`status` is a
/// reserved word) and its values.
fn update_expression(
    attributes: Vec<(&'static str, Option<AttributeValue>)>,
) -> (String, HashMap<String, String>, Item) {
    let mut sets = Vec::new();
    let mut removes = Vec::new();
    let mut names = HashMap::new();
    let mut values = HashMap::new();
    for (i, (name, value)) in attributes.into_iter().enumerate() {
        names.insert(format!("#a{i}"), name.to_owned());
        match value {
            Some(value) => {
                sets.push(format!("#a{i} = :v{i}"));
                values.insert(format!(":v{i}"), value);
            }
            None => removes.push(format!("#a{i}")),
        }
    }
    let mut expression = format!("SET {}", sets.join(", "));
    if !removes.is_empty() {
        expression.push_str(&format!(" REMOVE {}", removes.join(", ")));
    }
    (expression, names, values)
}

/// The item of `credential`'s previous version `previous`.
fn previous_item(credential: &StoredCredential, previous: &PreviousKey) -> Item {
    let stem = stem(credential.provider.id, &credential.key.id);
    let mut item = DynamoStore::previous_key(&credential.user_id, &stem);
    let sealed = &previous.sealed;
    item.insert("format_version".into(), n(sealed.format_version));
    item.insert("key_id".into(), s(&sealed.key_id));
    item.insert("wrapped_data_key".into(), b(&sealed.wrapped_data_key));
    item.insert("nonce".into(), b(&sealed.nonce));
    item.insert("ciphertext".into(), b(&sealed.ciphertext));
    item.insert("key_hint".into(), s(&previous.key_hint));
    if let Some(endpoint) = &previous.endpoint {
        item.insert("endpoint".into(), s(endpoint.as_str()));
    }
    item.insert("replaced_at".into(), s(time::to_stored(&previous.replaced_at)));
    item.insert("kept_until".into(), s(time::to_stored(&previous.kept_until)));
    // DynamoDB's TTL (epoch seconds) deletes it some time after.
    item.insert("expires_at".into(), n(previous.kept_until.timestamp()));
    item
}

fn credential_item(c: &StoredCredential) -> Item {
    let mut item = DynamoStore::credential_key(&c.user_id, &stem(c.provider.id, &c.key.id));
    item.insert("provider".into(), s(c.provider.id));
    item.insert("key_ref".into(), s(c.key.id.as_str()));
    item.insert("key_name".into(), s(&c.key.name));
    item.insert("priority".into(), n(c.key.priority));
    item.insert("enabled".into(), n(u8::from(c.key.enabled)));
    item.insert("created_at".into(), s(time::to_stored(&c.created_at)));
    if let Some(t) = &c.last_used_at {
        item.insert("last_used_at".into(), s(time::to_stored(t)));
    }
    item.insert("consumer_uses".into(), s(c.consumer_uses.to_json()));
    for (name, value) in key_and_status_attributes(c) {
        if let Some(value) = value {
            item.insert(name.into(), value);
        }
    }
    item
}

/// The sort-key stem of `provider`'s key `key` (see the module comment).
fn stem(provider: &str, key: &KeyId) -> String {
    if key.is_default() {
        provider.to_owned()
    } else {
        format!("{provider}#{key}")
    }
}

/// The stem of the key `at` names.
fn stem_of(at: KeyAt<'_>) -> String {
    stem(at.provider.id, at.key)
}

fn credential_from_item(user: &UserId, item: &Item) -> Result<StoredCredential, StoreError> {
    Ok(credential_record::credential(user.clone(), item)?)
}

#[async_trait]
impl CredentialStore for DynamoStore {
    async fn get(&self, at: KeyAt<'_>) -> Result<Option<StoredCredential>, StoreError> {
        let item = self.get_item(Self::credential_key(at.user, &stem_of(at)), None).await?;
        item.map(|item| credential_from_item(at.user, &item)).transpose()
    }

    async fn keys(&self, user: &UserId, provider: &ProviderSpec) -> Result<Vec<StoredCredential>, StoreError> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk BETWEEN :first AND :last")
            .expression_attribute_values(":pk", s(format!("USER#{user}")))
            .expression_attribute_values(":first", s(format!("CRED#{}", provider.id)))
            .expression_attribute_values(":last", s(format!("CRED#{}#~", provider.id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        // At most five small items: one page.
        let mut keys = output
            .items()
            .iter()
            .map(|item| credential_from_item(user, item))
            .collect::<Result<Vec<_>, _>>()?;
        keys.sort_by(|a, b| (a.key.priority, a.created_at, &a.key.id).cmp(&(b.key.priority, b.created_at, &b.key.id)));
        Ok(keys)
    }

    async fn list(&self, user: &UserId) -> Result<Vec<StoredCredential>, StoreError> {
        let items = self.query_prefix(user, "CRED#").await?;
        // A provider this build does not know (a newer build's, after a
        // rollback) is left out, not an error.
        items
            .iter()
            .filter(|item| credential_record::of_known_provider(*item))
            .map(|item| credential_from_item(user, item))
            .collect()
    }

    async fn insert(&self, credential: &StoredCredential, models: &[ModelInfo]) -> Result<(), StoreError> {
        let put = Write::Put(credential_item(credential));
        let write = self.transact_item(put, Some("attribute_not_exists(pk)"))?;
        self.write_key(vec![write], credential, models, StoreError::Conflict)
            .await
    }

    async fn replace(&self, replacement: Replacement<'_>) -> Result<(), StoreError> {
        let Replacement {
            credential,
            models,
            if_revision,
            retired,
        } = replacement;
        let stem = stem(credential.provider.id, &credential.key.id);
        let key = Self::credential_key(&credential.user_id, &stem);
        let mut attributes = key_and_status_attributes(credential);
        attributes.extend(previous_note_attributes(retired));
        let update = self.credential_update(key, attributes, if_revision)?;
        let previous = match retired {
            Some(previous) => Write::Put(previous_item(credential, previous)),
            None => Write::Delete(Self::previous_key(&credential.user_id, &stem)),
        };
        let writes = vec![
            TransactWriteItem::builder().update(update).build(),
            self.transact_item(previous, None)?,
        ];
        match self.write_key(writes, credential, models, StoreError::NotFound).await {
            // The condition failed: the key is gone, or was replaced meanwhile.
            Err(StoreError::NotFound) if if_revision.is_some() => match self.get(KeyAt::of(credential)).await? {
                Some(_) => Err(StoreError::Conflict),
                None => Err(StoreError::NotFound),
            },
            other => other,
        }
    }

    async fn record_check(&self, key: KeyRevision, check: &CheckState, models: ModelsUpdate) -> Result<(), StoreError> {
        let now = check.checked_at.unwrap_or_else(Utc::now);
        let mut attributes = status_attributes(check);
        attributes.push(("updated_at", Some(s(time::to_stored(&now)))));
        // A verdict is fresh from now; it also (re)joins the due index.
        attributes.push(("fresh_at", Some(s(time::to_stored(&now)))));
        attributes.push(("due_shard", Some(s(due_shard(key.provider.id, &key.revision)))));
        attributes.extend(attempt_attributes(None));
        if let ModelsUpdate::Replace(list) = &models {
            attributes.push(("models_count", Some(n(list.len()))));
        }
        let item_key = Self::credential_key(&key.user, &stem_of(key.at()));
        let update = self.credential_update(item_key, attributes, Some(&key.revision))?;
        match models {
            ModelsUpdate::Keep => self.send_update(update).await,
            ModelsUpdate::Replace(list) => {
                let mut items = vec![TransactWriteItem::builder().update(update).build()];
                items.extend(self.put_models(&key.user, &stem_of(key.at()), &now, &list)?);
                match self.transact(items, StoreError::Conflict).await {
                    Err(StoreError::Conflict) => Err(self.gone_or_changed(&key).await),
                    other => other,
                }
            }
        }
    }

    async fn record_use(&self, key: KeyRevision, use_: &KeyUse) -> Result<bool, StoreError> {
        // One transaction: the credential's consumer map and `last_used_at`,
        // only while the key and the map are as the resolve read them, and
        // the `used` entry. Concurrent resolves: one wins, the others write
        // nothing (their consumer's entry, if still missing, comes with its
        // next resolve).
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(Self::credential_key(&key.user, &stem_of(key.at()))))
            .update_expression("SET #used = :at, #uses = :uses")
            .condition_expression("#revision = :revision AND (attribute_not_exists(#uses) OR #uses = :seen)")
            .expression_attribute_names("#used", "last_used_at")
            .expression_attribute_names("#uses", "consumer_uses")
            .expression_attribute_names("#revision", "revision")
            .expression_attribute_values(":at", s(time::to_stored(&use_.entry.at)))
            .expression_attribute_values(":uses", s(use_.uses.to_json()))
            .expression_attribute_values(":seen", s(use_.seen.to_json()))
            .expression_attribute_values(":revision", s(&key.revision))
            .build()
            .map_err(build_err)?;
        let put = Write::Put(Self::activity_item(&key.user, key.provider.id, &use_.entry));
        let items = vec![
            TransactWriteItem::builder().update(update).build(),
            self.transact_item(put, None)?,
        ];
        match self.transact(items, StoreError::Conflict).await {
            Ok(()) => Ok(true),
            Err(StoreError::Conflict) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn claim_recheck(&self, key: KeyRevision, when: OncePerWindow) -> Result<bool, StoreError> {
        // A refusal brings the item back (ALL_OLD): which condition failed
        // is known without another read.
        match self.set_time_unless_since(&key, "last_recheck_at", when).await? {
            None => Ok(true),
            Some(None) => Err(StoreError::NotFound),
            Some(Some(item)) if Read(&item).opt_text("revision")?.as_deref() != Some(key.revision.as_str()) => {
                Err(StoreError::Conflict)
            }
            Some(Some(_)) => Ok(false),
        }
    }

    async fn previous(&self, at: KeyAt<'_>) -> Result<Option<PreviousKey>, StoreError> {
        let item = self.get_item(Self::previous_key(at.user, &stem_of(at)), None).await?;
        let previous = item.map(|item| credential_record::previous_key(&item)).transpose()?;
        // TTL deletes lazily (up to days later): past its keeping, it is gone.
        Ok(previous.filter(|p| p.kept_until > Utc::now()))
    }

    async fn delete(&self, user: &UserId, provider: &ProviderSpec) -> Result<(), StoreError> {
        let keys = self.keys(user, provider).await?;
        if keys.is_empty() {
            return Err(StoreError::NotFound);
        }
        // Every key with its list and previous version, in one transaction
        // (5 keys × 10 items at most, under its 100); a key added meanwhile is left, not half-deleted.
        let mut items = Vec::new();
        for key in &keys {
            items.extend(self.delete_key_items(user, &stem(provider.id, &key.key.id))?);
        }
        self.transact(items, StoreError::NotFound).await
    }

    async fn cool_down(&self, key: KeyRevision, until: DateTime<Utc>) -> Result<(), StoreError> {
        // Written unless a rest as long or longer is stored already.
        let when = OncePerWindow {
            at: until,
            unless_since: until,
        };
        match self.set_time_unless_since(&key, "cooling_until", when).await? {
            None => Ok(()),
            Some(None) => Err(StoreError::NotFound),
            // Resting until later already: nothing to move.
            Some(Some(item)) if Read(&item).opt_text("revision")?.as_deref() == Some(key.revision.as_str()) => Ok(()),
            Some(Some(_)) => Err(StoreError::Conflict),
        }
    }

    async fn set_meta(&self, change: MetaChange<'_>) -> Result<(), StoreError> {
        let meta = change.meta;
        let attributes = vec![
            ("key_ref", Some(s(meta.id.as_str()))),
            ("key_name", Some(s(&meta.name))),
            ("priority", Some(n(meta.priority))),
            ("enabled", Some(n(u8::from(meta.enabled)))),
        ];
        let key = Self::credential_key(change.user, &stem(change.provider.id, &meta.id));
        self.send_update(self.credential_update(key, attributes, change.if_revision)?)
            .await
    }

    async fn delete_key(&self, at: KeyAt<'_>, if_revision: Option<&str>) -> Result<(), StoreError> {
        let stem = stem_of(at);
        let mut items = self.delete_key_items(at.user, &stem)?;
        if let Some(revision) = if_revision {
            // The key's own delete, conditioned on its revision too.
            let delete = Delete::builder()
                .table_name(&self.table)
                .set_key(Some(Self::credential_key(at.user, &stem)))
                .condition_expression("attribute_exists(pk) AND #revision = :revision")
                .expression_attribute_names("#revision", "revision")
                .expression_attribute_values(":revision", s(revision))
                .build()
                .map_err(build_err)?;
            items[0] = TransactWriteItem::builder().delete(delete).build();
        }
        match self.transact(items, StoreError::NotFound).await {
            Err(StoreError::NotFound) if if_revision.is_some() => match self.get(at).await? {
                Some(_) => Err(StoreError::Conflict),
                None => Err(StoreError::NotFound),
            },
            other => other,
        }
    }

    async fn models(&self, at: KeyAt<'_>) -> Result<Option<ModelList>, StoreError> {
        let (user, stem) = (at.user, stem_of(at));
        let Some(item) = self.get_item(Self::models_key(user, &stem), None).await? else {
            return Ok(None);
        };
        let r = Read(&item);
        // Lists written before compression are plain JSON in `models`.
        if let Some(json) = r.opt_text("models")? {
            let models =
                serde_json::from_str(&json).map_err(|e| StoreError::Internal(format!("unreadable model list: {e}")))?;
            return Ok(Some(ModelList {
                discovered_at: r.time("discovered_at")?,
                models,
            }));
        }
        let mut count: usize = r.number("chunks")?;
        if count <= 1 {
            return Ok(Some(ModelList {
                discovered_at: r.time("discovered_at")?,
                models: model_chunks::decode(&[&r.bytes("models_z")?])?,
            }));
        }
        // A large list: read all its chunks at once; if it was replaced by a
        // list of another size meanwhile, read again with the new count.
        for _ in 0..TRANSACTION_ATTEMPTS {
            match self.read_model_chunks(user, &stem, count).await? {
                Some((head, models)) => {
                    return Ok(Some(ModelList {
                        discovered_at: Read(&head).time("discovered_at")?,
                        models,
                    }));
                }
                None => match self.models_head_chunks(user, &stem).await? {
                    None => return Ok(None),
                    Some(now) if now <= 1 => return Box::pin(self.models(at)).await,
                    Some(now) => count = now,
                },
            }
        }
        Err(StoreError::Unavailable("model list kept changing while read".into()))
    }

    async fn due(&self, query: DueQuery) -> Result<Vec<DueCredential>, StoreError> {
        let limit_i32 = i32::try_from(query.limit).unwrap_or(i32::MAX);
        let before = s(time::to_stored(&query.before));
        // Each shard's oldest `limit`, together: their oldest `limit` overall.
        let queries = (0..DUE_SHARDS).map(|shard| {
            self.client
                .query()
                .table_name(&self.table)
                .index_name(DUE_INDEX)
                .key_condition_expression("due_shard = :shard AND fresh_at <= :before")
                .expression_attribute_values(":shard", s(format!("{}#{shard}", query.provider.id)))
                .expression_attribute_values(":before", before.clone())
                .limit(limit_i32)
                .send()
        });
        let pages = futures_util::future::try_join_all(queries).await.map_err(sdk_error)?;
        let mut due = Vec::new();
        for item in pages.iter().flat_map(|page| page.items()) {
            let r = Read(item);
            let user = r.text("pk")?;
            // `CRED#<provider>` or `CRED#<provider>#<key id>`.
            let sk = r.text("sk")?;
            let key = match sk.strip_prefix(&format!("CRED#{}", query.provider.id)) {
                Some("") => Some(KeyId::default_key()),
                Some(rest) => rest.strip_prefix('#').and_then(KeyId::parse),
                None => None,
            };
            due.push(DueCredential {
                user: user
                    .strip_prefix("USER#")
                    .and_then(UserId::parse)
                    .ok_or_else(|| corrupt("pk"))?,
                // The shard key names the provider: every item here is its.
                provider: query.provider,
                key: key.ok_or_else(|| corrupt("sk"))?,
                fresh_at: r.time("fresh_at")?,
            });
        }
        due.sort_by_key(|d| d.fresh_at);
        due.truncate(query.limit);
        Ok(due)
    }

    async fn claim_due(
        &self,
        due: &DueCredential,
        fresh_until: DateTime<Utc>,
    ) -> Result<Option<StoredCredential>, StoreError> {
        // The index lags the table a little: the condition, not the query,
        // decides, so two runs never both win one credential.
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::credential_key(&due.user, &stem(due.provider.id, &due.key))))
            .update_expression("SET fresh_at = :until")
            .condition_expression("fresh_at = :seen")
            .expression_attribute_values(":until", s(time::to_stored(&fresh_until)))
            .expression_attribute_values(":seen", s(time::to_stored(&due.fresh_at)))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(output) => output
                .attributes()
                .map(|item| credential_from_item(&due.user, item))
                .transpose(),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => Ok(None),
            Err(e) => Err(sdk_error(e)),
        }
    }

    async fn record_attempt(&self, key: KeyRevision, deferral: Deferral) -> Result<(), StoreError> {
        let mut attributes = attempt_attributes(Some(&deferral.attempt));
        attributes.push(("fresh_at", Some(s(time::to_stored(&deferral.fresh_until)))));
        let item_key = Self::credential_key(&key.user, &stem_of(key.at()));
        self.send_update(self.credential_update(item_key, attributes, Some(&key.revision))?)
            .await
    }
}

impl DynamoStore {
    /// The chunk count the head item states now (`None`: no list).
    async fn models_head_chunks(&self, user: &UserId, stem: &str) -> Result<Option<usize>, StoreError> {
        let head = self.get_item(Self::models_key(user, stem), Some("chunks")).await?;
        head.map(|item| Ok(Read(&item).opt_number("chunks")?.unwrap_or(1)))
            .transpose()
    }
}

#[async_trait]
impl ConnectionStore for DynamoStore {
    async fn save_connection(&self, connection: &Connection) -> Result<(), StoreError> {
        let mut item = Self::key(&connection.user, format!("CONN#{}", connection.connection_id));
        item.insert("connection_id".into(), s(&connection.connection_id));
        item.insert("connected_at".into(), s(time::to_stored(&connection.connected_at)));
        // DynamoDB's TTL wants epoch seconds.
        item.insert("expires_at".into(), n(connection.expires_at.timestamp()));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    async fn remove_connection(&self, user: &UserId, connection_id: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(user, format!("CONN#{connection_id}"))))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    async fn connections(&self, user: &UserId) -> Result<Vec<String>, StoreError> {
        let now = Utc::now().timestamp();
        let items = self.query_prefix(user, "CONN#").await?;
        // TTL deletes lazily (up to days later): filter what has expired.
        items
            .iter()
            .filter(|item| {
                Read(*item)
                    .opt_number::<i64>("expires_at")
                    .ok()
                    .flatten()
                    .is_some_and(|t| t > now)
            })
            .map(|item| Ok(Read(item).text("connection_id")?))
            .collect()
    }
}

impl DynamoStore {
    /// `SET <attribute> = :at` on the credential if its key is still
    /// `revision` and the attribute is absent or older than `unless_since`
    /// (stored times are fixed-width RFC 3339 UTC, so they compare as
    /// strings). `None` when written; when the condition failed, the item as
    /// it is (`Some(None)`: there is none).
    async fn set_time_unless_since(
        &self,
        key: &KeyRevision,
        attribute: &str,
        when: OncePerWindow,
    ) -> Result<Option<Option<Item>>, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::credential_key(&key.user, &stem_of(key.at()))))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .update_expression("SET #t = :at")
            .condition_expression("#revision = :revision AND (attribute_not_exists(#t) OR #t < :since)")
            .expression_attribute_names("#t", attribute)
            .expression_attribute_names("#revision", "revision")
            .expression_attribute_values(":at", s(time::to_stored(&when.at)))
            .expression_attribute_values(":since", s(time::to_stored(&when.unless_since)))
            .expression_attribute_values(":revision", s(&key.revision))
            .send()
            .await;
        match result {
            Ok(_) => Ok(None),
            Err(SdkError::ServiceError(e)) => match e.err() {
                UpdateItemError::ConditionalCheckFailedException(failed) => Ok(Some(failed.item().cloned())),
                _ => Err(sdk_error(SdkError::ServiceError(e))),
            },
            Err(e) => Err(sdk_error(e)),
        }
    }

    /// All of a user's items whose sort key starts with `prefix` (strongly consistent).
    async fn query_prefix(&self, user: &UserId, prefix: &str) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let output = self
                .client
                .query()
                .prefix_of(&self.table, user, prefix)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk_error)?;
            items.extend(output.items().iter().cloned());
            match output.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => return Ok(items),
            }
        }
    }
}

/// A user's history of one key: items `ACTIVITY#<provider>#<time>#<id>`,
/// one `PutItem` each, read by a backwards `Query` on the prefix.
#[async_trait]
impl ActivityStore for DynamoStore {
    async fn append(&self, user: &UserId, provider: &ProviderSpec, entry: &ActivityEntry) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(Self::activity_item(user, provider.id, entry)))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    async fn activity(
        &self,
        user: &UserId,
        provider: &ProviderSpec,
        ActivityQuery { limit, before, now }: &ActivityQuery,
    ) -> Result<ActivityPage, StoreError> {
        let prefix = format!("ACTIVITY#{}#", provider.id);
        let start = before.as_ref().map(|before| {
            HashMap::from([
                ("pk".to_owned(), s(format!("USER#{user}"))),
                ("sk".to_owned(), s(format!("{prefix}{}", before.0))),
            ])
        });
        // One more than the page: if it comes, there is a next page.
        let output = self
            .client
            .query()
            .prefix_of(&self.table, user, &prefix)
            .scan_index_forward(false)
            .limit(i32::try_from(limit + 1).unwrap_or(i32::MAX))
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(sdk_error)?;
        let now = now.timestamp();
        let mut entries = Vec::new();
        for item in output.items() {
            let r = Read(item);
            // TTL deletes lazily: an expired entry, and all older ones, are gone.
            if r.opt_number::<i64>("expires_at")?.is_some_and(|t| t <= now) {
                break;
            }
            let sk = r.text("sk")?;
            let position = sk.strip_prefix(&prefix).ok_or_else(|| corrupt("sk"))?;
            entries.push(ActivityEntry::from_stored(position, &r.text("detail")?).ok_or_else(|| corrupt("detail"))?);
        }
        Ok(page_of(entries, *limit))
    }
}

/// A spend races at most this many window openings by other spenders.
const SPEND_ATTEMPTS: u32 = 4;

/// One item per user and bucket: `spent` units in the window ending at
/// `window_ends_ms` (epoch milliseconds). Each step is one conditional
/// update, so parallel spenders (any Lambda instance) never exceed the
/// limit: a spend in an open window is one request; opening a window, two.
#[async_trait]
impl LimitStore for DynamoStore {
    async fn spend(&self, user: &UserId, budget: &Budget, now: DateTime<Utc>) -> Result<Spend, StoreError> {
        let key = Self::key(user, format!("LIMIT#{}", budget.bucket));
        let now_ms = now.timestamp_millis();
        let ends_ms = (now + budget.window).timestamp_millis();
        // Both steps use the spent units, the window's end, one, and now.
        let update = || {
            self.client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key.clone()))
                .expression_attribute_names("#spent", "spent")
                .expression_attribute_names("#ends", "window_ends_ms")
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":now", n(now_ms))
        };
        for _ in 0..SPEND_ATTEMPTS {
            // Spend from the open window, if there is one with budget left.
            let result = update()
                .update_expression("SET #spent = #spent + :one")
                .condition_expression("#ends > :now AND #spent < :limit")
                .expression_attribute_values(":limit", n(budget.limit))
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .send()
                .await;
            match result {
                Ok(_) => return Ok(Spend::Granted),
                Err(SdkError::ServiceError(e)) => match e.err() {
                    UpdateItemError::ConditionalCheckFailedException(failed) => {
                        let open_until = failed
                            .item()
                            .and_then(|item| Read(item).opt_number::<i64>("window_ends_ms").ok().flatten())
                            .filter(|&ends| ends > now_ms);
                        if let Some(ends) = open_until {
                            return Ok(Spend::Refused {
                                retry_after: chrono::Duration::milliseconds(ends - now_ms),
                            });
                        }
                    }
                    _ => return Err(sdk_error(SdkError::ServiceError(e))),
                },
                Err(e) => return Err(sdk_error(e)),
            }
            // No open window: open one with this spend in it, unless another
            // spender just did (then spend from theirs).
            let result = update()
                .update_expression("SET #spent = :one, #ends = :ends, #ttl = :ttl")
                .condition_expression("attribute_not_exists(#ends) OR #ends <= :now")
                .expression_attribute_names("#ttl", "expires_at")
                .expression_attribute_values(":ends", n(ends_ms))
                // DynamoDB's TTL (epoch seconds) removes the item some time after.
                .expression_attribute_values(":ttl", n(ends_ms.div_euclid(1000) + 1))
                .send()
                .await;
            match result {
                Ok(_) => return Ok(Spend::Granted),
                Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => continue,
                Err(e) => return Err(sdk_error(e)),
            }
        }
        Err(StoreError::Unavailable("budget window contended; retry".into()))
    }
}

/// A Query of one user's items whose sort key starts with a prefix.
trait PrefixQuery {
    fn prefix_of(self, table: &str, user: &UserId, prefix: &str) -> Self;
}

impl PrefixQuery for aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
    fn prefix_of(self, table: &str, user: &UserId, prefix: &str) -> Self {
        self.table_name(table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(format!("USER#{user}")))
            .expression_attribute_values(":prefix", s(prefix))
    }
}
