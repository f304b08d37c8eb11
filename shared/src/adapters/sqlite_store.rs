//! The embedded store: one SQLite file in the data directory, WAL mode,
//! schema migrated on open, every multi-row write in one transaction.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::types::Value;
use rusqlite::{Connection as Db, OptionalExtension, Row, TransactionBehavior, named_params};

use super::credential_record::{self, Fields, Read, Unreadable, page_of};
use crate::domain::activity::{ActivityEntry, ActivityPage, ActivityQuery};
use crate::domain::named_key::KeyId;
use crate::domain::{
    CheckState, ErrorReason, ModelInfo, ModelList, PreviousKey, ProviderSpec, StoredCredential, UserId,
};
use crate::ports::{
    ActivityStore, Budget, Connection, ConnectionStore, CredentialStore, Deferral, DueCredential, DueQuery, KeyAt,
    KeyRevision, KeyUse, LimitStore, MetaChange, ModelsUpdate, OncePerWindow, Replacement, Spend, StoreError,
};
use crate::time;

/// Schema versions, applied in order; `PRAGMA user_version` records how far a file got.
const MIGRATIONS: &[&str] = &[
    r#"
    CREATE TABLE credentials (
        user_id          TEXT    NOT NULL,
        provider         TEXT    NOT NULL,
        format_version   INTEGER NOT NULL,
        key_id           TEXT    NOT NULL,
        wrapped_data_key BLOB    NOT NULL,
        nonce            BLOB    NOT NULL,
        ciphertext       BLOB    NOT NULL,
        key_hint         TEXT    NOT NULL,
        status           TEXT    NOT NULL,
        status_reason    TEXT,
        retry_after_secs INTEGER,
        last_checked_at  TEXT,
        models_count     INTEGER NOT NULL,
        revision         TEXT    NOT NULL,
        created_at       TEXT    NOT NULL,
        updated_at       TEXT    NOT NULL,
        PRIMARY KEY (user_id, provider)
    ) WITHOUT ROWID;
    CREATE TABLE models (
        user_id       TEXT NOT NULL,
        provider      TEXT NOT NULL,
        discovered_at TEXT NOT NULL,
        models_json   TEXT NOT NULL,
        PRIMARY KEY (user_id, provider)
    ) WITHOUT ROWID;
    CREATE TABLE connections (
        connection_id TEXT PRIMARY KEY,
        user_id       TEXT NOT NULL,
        connected_at  TEXT NOT NULL,
        expires_at    TEXT NOT NULL
    );
    CREATE INDEX connections_by_user ON connections (user_id, expires_at);
"#,
    r#"
    ALTER TABLE credentials ADD COLUMN last_used_at TEXT;
    ALTER TABLE credentials ADD COLUMN last_recheck_at TEXT;
"#,
    r#"
    CREATE TABLE limits (
        user_id        TEXT    NOT NULL,
        bucket         TEXT    NOT NULL,
        spent          INTEGER NOT NULL,
        window_ends_ms INTEGER NOT NULL,
        PRIMARY KEY (user_id, bucket)
    ) WITHOUT ROWID;
"#,
    // Background re-validation: the freshness time and its index (the due
    // queue, per provider, oldest first), the last attempt without a verdict.
    r#"
    ALTER TABLE credentials ADD COLUMN fresh_at TEXT;
    ALTER TABLE credentials ADD COLUMN last_attempt_at TEXT;
    ALTER TABLE credentials ADD COLUMN last_attempt_reason TEXT;
    ALTER TABLE credentials ADD COLUMN attempt_failures INTEGER NOT NULL DEFAULT 0;
    UPDATE credentials SET fresh_at = COALESCE(last_checked_at, updated_at);
    CREATE INDEX credentials_due ON credentials (provider, fresh_at);
"#,
    // The key's credit as the provider last told it (JSON).
    r#"
    ALTER TABLE credentials ADD COLUMN quota_json TEXT;
"#,
    // Activity: per consumer the last recorded use, and each key's history
    // (kept after a delete; rows past `expires_at`, epoch seconds, are pruned).
    r#"
    ALTER TABLE credentials ADD COLUMN consumer_uses TEXT;
    CREATE TABLE activity (
        user_id    TEXT    NOT NULL,
        provider   TEXT    NOT NULL,
        position   TEXT    NOT NULL,
        detail     TEXT    NOT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (user_id, provider, position)
    ) WITHOUT ROWID;
    CREATE INDEX activity_expiry ON activity (user_id, expires_at);
"#,
    // The endpoint a user gave (openai_compatible, azure_openai).
    r#"
    ALTER TABLE credentials ADD COLUMN endpoint TEXT;
"#,
    // Several keys per provider: each row is one key, `key_ref` its id
    // within the provider (rows from before are the key `default`), with
    // the user's name, order and switch; a model list per key. SQLite
    // cannot change a primary key in place: the tables are rebuilt.
    r#"
    CREATE TABLE credentials_by_key (
        user_id             TEXT    NOT NULL,
        provider            TEXT    NOT NULL,
        key_ref             TEXT    NOT NULL DEFAULT 'default',
        key_name            TEXT    NOT NULL DEFAULT 'default',
        priority            INTEGER NOT NULL DEFAULT 0,
        enabled             INTEGER NOT NULL DEFAULT 1,
        format_version      INTEGER NOT NULL,
        key_id              TEXT    NOT NULL,
        wrapped_data_key    BLOB    NOT NULL,
        nonce               BLOB    NOT NULL,
        ciphertext          BLOB    NOT NULL,
        key_hint            TEXT    NOT NULL,
        endpoint            TEXT,
        status              TEXT    NOT NULL,
        status_reason       TEXT,
        retry_after_secs    INTEGER,
        last_checked_at     TEXT,
        models_count        INTEGER NOT NULL,
        revision            TEXT    NOT NULL,
        created_at          TEXT    NOT NULL,
        updated_at          TEXT    NOT NULL,
        last_used_at        TEXT,
        last_recheck_at     TEXT,
        fresh_at            TEXT,
        last_attempt_at     TEXT,
        last_attempt_reason TEXT,
        attempt_failures    INTEGER NOT NULL DEFAULT 0,
        quota_json          TEXT,
        consumer_uses       TEXT,
        PRIMARY KEY (user_id, provider, key_ref)
    ) WITHOUT ROWID;
    INSERT INTO credentials_by_key (user_id, provider, format_version, key_id, wrapped_data_key, nonce,
        ciphertext, key_hint, endpoint, status, status_reason, retry_after_secs, last_checked_at, models_count,
        revision, created_at, updated_at, last_used_at, last_recheck_at, fresh_at, last_attempt_at,
        last_attempt_reason, attempt_failures, quota_json, consumer_uses)
    SELECT user_id, provider, format_version, key_id, wrapped_data_key, nonce,
        ciphertext, key_hint, endpoint, status, status_reason, retry_after_secs, last_checked_at, models_count,
        revision, created_at, updated_at, last_used_at, last_recheck_at, fresh_at, last_attempt_at,
        last_attempt_reason, attempt_failures, quota_json, consumer_uses
    FROM credentials;
    DROP TABLE credentials;
    ALTER TABLE credentials_by_key RENAME TO credentials;
    CREATE INDEX credentials_due ON credentials (provider, fresh_at);
    CREATE TABLE models_by_key (
        user_id       TEXT NOT NULL,
        provider      TEXT NOT NULL,
        key_ref       TEXT NOT NULL DEFAULT 'default',
        discovered_at TEXT NOT NULL,
        models_json   TEXT NOT NULL,
        PRIMARY KEY (user_id, provider, key_ref)
    ) WITHOUT ROWID;
    INSERT INTO models_by_key (user_id, provider, discovered_at, models_json)
    SELECT user_id, provider, discovered_at, models_json FROM models;
    DROP TABLE models;
    ALTER TABLE models_by_key RENAME TO models;
"#,
    // A key rate limited in use rests until then (resolve passes it over).
    r#"
    ALTER TABLE credentials ADD COLUMN cooling_until TEXT;
"#,
    // A replaced key is kept sealed for a while, to roll back to; its row
    // goes with the key's, and is pruned once past its keeping.
    r#"
    ALTER TABLE credentials ADD COLUMN previous_hint TEXT;
    ALTER TABLE credentials ADD COLUMN previous_until TEXT;
    CREATE TABLE previous_keys (
        user_id TEXT NOT NULL,
        provider TEXT NOT NULL,
        key_ref TEXT NOT NULL,
        format_version INTEGER NOT NULL,
        key_id TEXT NOT NULL,
        wrapped_data_key BLOB NOT NULL,
        nonce BLOB NOT NULL,
        ciphertext BLOB NOT NULL,
        key_hint TEXT NOT NULL,
        endpoint TEXT,
        replaced_at TEXT NOT NULL,
        kept_until TEXT NOT NULL,
        PRIMARY KEY (user_id, provider, key_ref),
        FOREIGN KEY (user_id, provider, key_ref)
            REFERENCES credentials (user_id, provider, key_ref) ON DELETE CASCADE
    ) WITHOUT ROWID;
    CREATE INDEX previous_keys_expiry ON previous_keys (kept_until);
"#,
];

/// The SQLite adapter. One connection behind a mutex: the local server is one
/// process, and SQLite serialises writers anyway.
#[derive(Clone)]
pub struct SqliteStore {
    db: Arc<Mutex<Db>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        // Owner-only from the start; SQLite gives its -wal and -shm files the same mode.
        let file_err = |e: std::io::Error| StoreError::Internal(format!("cannot create {}: {e}", path.display()));
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(file_err)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(file_err)?;
        let mut db = Db::open(path).map_err(internal)?;
        db.busy_timeout(std::time::Duration::from_secs(5)).map_err(internal)?;
        db.pragma_update(None, "journal_mode", "WAL").map_err(internal)?;
        db.pragma_update(None, "synchronous", "NORMAL").map_err(internal)?;
        db.pragma_update(None, "foreign_keys", "ON").map_err(internal)?;
        migrate(&mut db)?;
        Ok(SqliteStore {
            db: Arc::new(Mutex::new(db)),
        })
    }

    /// Runs `work` on the connection off the async threads.
    async fn with_db<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Db) -> Result<T, StoreError> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave a half-done
            // transaction behind (it rolls back on drop), so the data is sound.
            let mut guard = db.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            work(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Internal(format!("store task failed: {e}")))?
    }

    /// Runs `work` in one `IMMEDIATE` transaction, committed when `work`
    /// succeeds (and rolled back when it fails).
    async fn in_transaction<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.with_db(move |db| {
            let tx = db
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(internal)?;
            let done = work(&tx)?;
            tx.commit().map_err(internal)?;
            Ok(done)
        })
        .await
    }

    /// Stores a new key (`sql`: the insert or the replacement) with its
    /// model list and previous version in one transaction; `on_miss` when
    /// `sql` wrote no row.
    async fn write_key(&self, sql: &'static str, key: Replacement<'_>, on_miss: StoreError) -> Result<(), StoreError> {
        let (c, models) = (key.credential.clone(), key.models.to_vec());
        let (if_revision, retired) = (key.if_revision.map(str::to_owned), key.retired.cloned());
        self.in_transaction(move |tx| {
            let mut values = credential_values(&c);
            values.extend(previous_note_values(retired.as_ref()));
            let conditional = if_revision.is_some();
            values.push(("if_revision", if_revision.map_or(Value::Null, Value::Text)));
            if execute_named(tx, sql, &values)? == 0 {
                return Err(if conditional {
                    exists(tx, &c.user_id, c.provider.id, &c.key.id)?
                } else {
                    on_miss
                });
            }
            write_previous(tx, &c, retired.as_ref())?;
            write_models(tx, &KeyRevision::of(&c), &c.updated_at, &models)
        })
        .await
    }
}

fn migrate(db: &mut Db) -> Result<(), StoreError> {
    let version: usize = db
        .pragma_query_value(None, "user_version", |row| row.get::<_, i64>(0))
        .map_err(internal)?
        .try_into()
        .map_err(|_| StoreError::Internal("negative schema version".into()))?;
    if version > MIGRATIONS.len() {
        return Err(StoreError::Internal(format!(
            "database schema version {version} is newer than this program ({}); refusing to touch it",
            MIGRATIONS.len()
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = db
            .transaction_with_behavior(TransactionBehavior::Exclusive)
            .map_err(internal)?;
        tx.execute_batch(sql).map_err(internal)?;
        tx.pragma_update(None, "user_version", (index + 1) as i64)
            .map_err(internal)?;
        tx.commit().map_err(internal)?;
    }
    Ok(())
}

fn internal(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::{DatabaseBusy, DatabaseLocked};
    match e.sqlite_error_code() {
        Some(DatabaseBusy | DatabaseLocked) => StoreError::Unavailable(e.to_string()),
        _ => StoreError::Internal(e.to_string()),
    }
}

fn ts(t: &DateTime<Utc>) -> String {
    time::to_stored(t)
}

fn parse_ts(s: &str) -> rusqlite::Result<DateTime<Utc>> {
    time::parse(s).ok_or_else(|| corrupt("timestamp"))
}

fn corrupt(what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, format!("unreadable {what}").into())
}

/// The columns of `credentials`: every statement below is written from this
/// one list, and every value is bound by name (`:column`).
const CREDENTIAL_COLUMNS: &[&str] = &[
    "user_id",
    "provider",
    "key_ref",
    "key_name",
    "priority",
    "enabled",
    "format_version",
    "key_id",
    "wrapped_data_key",
    "nonce",
    "ciphertext",
    "key_hint",
    "endpoint",
    "status",
    "status_reason",
    "retry_after_secs",
    "last_checked_at",
    "models_count",
    "revision",
    "created_at",
    "updated_at",
    "last_used_at",
    "last_recheck_at",
    "fresh_at",
    "last_attempt_at",
    "last_attempt_reason",
    "attempt_failures",
    "quota_json",
    "consumer_uses",
    "cooling_until",
    "previous_hint",
    "previous_until",
];

/// What a key replacement leaves alone: the row's identity, the user's
/// decisions about it, its birth and last use.
const KEPT_ON_REPLACE: &[&str] = &[
    "user_id",
    "provider",
    "key_ref",
    "key_name",
    "priority",
    "enabled",
    "created_at",
    "last_used_at",
    "consumer_uses",
];

static SELECT_CREDENTIAL: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {} FROM credentials", CREDENTIAL_COLUMNS.join(", ")));

static INSERT_CREDENTIAL: LazyLock<String> = LazyLock::new(|| {
    let placeholders: Vec<String> = CREDENTIAL_COLUMNS.iter().map(|c| format!(":{c}")).collect();
    format!(
        "INSERT INTO credentials ({}) VALUES ({}) ON CONFLICT (user_id, provider, key_ref) DO NOTHING",
        CREDENTIAL_COLUMNS.join(", "),
        placeholders.join(", ")
    )
});

static REPLACE_CREDENTIAL: LazyLock<String> = LazyLock::new(|| {
    let sets: Vec<String> = CREDENTIAL_COLUMNS
        .iter()
        .filter(|c| !KEPT_ON_REPLACE.contains(c))
        .map(|c| format!("{c} = :{c}"))
        .collect();
    format!(
        "UPDATE credentials SET {} WHERE {ONE_KEY} AND revision = COALESCE(:if_revision, revision)",
        sets.join(", ")
    )
});

/// The condition that picks one key's row (`:user_id`, `:provider`, `:key_ref`).
const ONE_KEY: &str = "user_id = :user_id AND provider = :provider AND key_ref = :key_ref";

/// A credential as column values, by column name.
fn credential_values(c: &StoredCredential) -> Vec<(&'static str, Value)> {
    let text = |s: &str| Value::Text(s.to_owned());
    let optional = |v: Option<Value>| v.unwrap_or(Value::Null);
    vec![
        ("user_id", text(c.user_id.as_str())),
        ("provider", text(c.provider.id)),
        ("key_ref", text(c.key.id.as_str())),
        ("key_name", text(&c.key.name)),
        ("priority", Value::Integer(c.key.priority.into())),
        ("enabled", Value::Integer(c.key.enabled.into())),
        ("format_version", Value::Integer(c.sealed.format_version.into())),
        ("key_id", text(&c.sealed.key_id)),
        ("wrapped_data_key", Value::Blob(c.sealed.wrapped_data_key.clone())),
        ("nonce", Value::Blob(c.sealed.nonce.clone())),
        ("ciphertext", Value::Blob(c.sealed.ciphertext.clone())),
        ("key_hint", text(&c.key_hint)),
        ("endpoint", optional(c.endpoint.as_ref().map(|e| text(e.as_str())))),
        ("status", text(c.check.status.as_str())),
        ("status_reason", optional(c.check.reason.map(|r| text(r.as_str())))),
        (
            "retry_after_secs",
            optional(
                c.check
                    .retry_after_secs
                    .map(|s| Value::Integer(s.min(i64::MAX as u64) as i64)),
            ),
        ),
        (
            "last_checked_at",
            optional(c.check.checked_at.as_ref().map(|t| Value::Text(ts(t)))),
        ),
        ("models_count", Value::Integer(c.models_count.into())),
        ("revision", text(&c.revision)),
        ("created_at", Value::Text(ts(&c.created_at))),
        ("updated_at", Value::Text(ts(&c.updated_at))),
        (
            "last_used_at",
            optional(c.last_used_at.as_ref().map(|t| Value::Text(ts(t)))),
        ),
        (
            "last_recheck_at",
            optional(c.last_recheck_at.as_ref().map(|t| Value::Text(ts(t)))),
        ),
        // A stored verdict is fresh from its check.
        ("fresh_at", Value::Text(ts(&c.check.checked_at.unwrap_or(c.updated_at)))),
        (
            "last_attempt_at",
            optional(c.last_attempt.as_ref().map(|a| Value::Text(ts(&a.at)))),
        ),
        (
            "last_attempt_reason",
            optional(c.last_attempt.map(|a| text(a.reason.as_str()))),
        ),
        (
            "attempt_failures",
            Value::Integer(c.last_attempt.map_or(0, |a| a.failures.into())),
        ),
        ("quota_json", optional(quota_json(&c.check))),
        ("consumer_uses", text(&c.consumer_uses.to_json())),
        (
            "cooling_until",
            optional(c.cooling_until.as_ref().map(|t| Value::Text(ts(t)))),
        ),
    ]
}

/// The key's note of its previous version, from the version kept (NULL
/// without one), so that the two never disagree.
fn previous_note_values(retired: Option<&PreviousKey>) -> [(&'static str, Value); 2] {
    [
        (
            "previous_hint",
            retired.map_or(Value::Null, |p| Value::Text(p.key_hint.clone())),
        ),
        (
            "previous_until",
            retired.map_or(Value::Null, |p| Value::Text(ts(&p.kept_until))),
        ),
    ]
}

fn quota_json(check: &CheckState) -> Option<Value> {
    check
        .quota
        .as_ref()
        .and_then(|q| serde_json::to_string(q).ok())
        .map(Value::Text)
}

/// Runs `sql` with those of `values` it names (`:column`).
fn execute_named(
    tx: &rusqlite::Transaction<'_>,
    sql: &str,
    values: &[(&'static str, Value)],
) -> Result<usize, StoreError> {
    let mut stmt = tx.prepare_cached(sql).map_err(internal)?;
    for (column, value) in values {
        if let Some(index) = stmt.parameter_index(&format!(":{column}")).map_err(internal)? {
            stmt.raw_bind_parameter(index, value).map_err(internal)?;
        }
    }
    stmt.raw_execute().map_err(internal)
}

/// A row's columns, as a credential record reads them.
impl Fields for Row<'_> {
    const QUOTA: &'static str = "quota_json";

    fn text(&self, name: &'static str) -> Result<Option<String>, Unreadable> {
        column(self, name)
    }

    fn integer(&self, name: &'static str) -> Result<Option<i64>, Unreadable> {
        column(self, name)
    }

    fn bytes(&self, name: &'static str) -> Result<Option<Vec<u8>>, Unreadable> {
        column(self, name)
    }
}

/// The column `name` of `row`; `None` for NULL.
fn column<T: rusqlite::types::FromSql>(row: &Row<'_>, name: &'static str) -> Result<Option<T>, Unreadable> {
    row.get(name).map_err(|_| Unreadable(name))
}

fn credential_from_row(row: &Row<'_>) -> rusqlite::Result<StoredCredential> {
    let read = || {
        let user = Read(row).parsed("user_id", UserId::parse)?;
        credential_record::credential(user, row)
    };
    read().map_err(|Unreadable(field)| corrupt(field))
}

/// `UPDATE credentials SET <sets>` of `key`'s row while it is at its
/// revision, `values` bound by name (`:name` in `sets`); `Conflict` or
/// `NotFound` when it changed nothing.
fn update_at_revision(
    tx: &rusqlite::Transaction<'_>,
    key: &KeyRevision,
    sets: &str,
    values: &[(&'static str, Value)],
) -> Result<(), StoreError> {
    let sql = format!("UPDATE credentials SET {sets} WHERE {ONE_KEY} AND revision = :revision");
    let mut all = vec![
        ("user_id", Value::Text(key.user.as_str().to_owned())),
        ("provider", Value::Text(key.provider.id.to_owned())),
        ("key_ref", Value::Text(key.key.as_str().to_owned())),
        ("revision", Value::Text(key.revision.clone())),
    ];
    all.extend(values.iter().cloned());
    if execute_named(tx, &sql, &all)? == 0 {
        return Err(stale_or_gone(tx, key)?);
    }
    Ok(())
}

/// Why a conditional write of one key changed nothing: the key is there
/// (its revision differs: `Conflict`), or gone (`NotFound`).
fn exists(tx: &rusqlite::Transaction, user: &UserId, provider: &str, key: &KeyId) -> Result<StoreError, StoreError> {
    stale_or_gone(
        tx,
        &KeyRevision {
            user: user.clone(),
            provider: crate::domain::provider::find(provider).ok_or(StoreError::NotFound)?,
            key: key.clone(),
            revision: String::new(),
        },
    )
}

/// Why a write guarded by the key's revision changed nothing: the
/// credential is there with another revision (`Conflict`), or gone (`NotFound`).
fn stale_or_gone(tx: &rusqlite::Transaction, key: &KeyRevision) -> Result<StoreError, StoreError> {
    let exists: bool = tx
        .query_row(
            &format!("SELECT EXISTS (SELECT 1 FROM credentials WHERE {ONE_KEY})"),
            named_params! {":user_id": key.user.as_str(), ":provider": key.provider.id, ":key_ref": key.key.as_str()},
            |row| row.get(0),
        )
        .map_err(internal)?;
    Ok(if exists {
        StoreError::Conflict
    } else {
        StoreError::NotFound
    })
}

/// Keeps `retired` as `c`'s previous version (none: forgets any), and
/// prunes every version past its keeping.
fn write_previous(
    tx: &rusqlite::Transaction,
    c: &StoredCredential,
    retired: Option<&PreviousKey>,
) -> Result<(), StoreError> {
    tx.execute(
        "DELETE FROM previous_keys WHERE kept_until <= :now",
        named_params! {":now": ts(&Utc::now())},
    )
    .map_err(internal)?;
    let one = named_params! {":user_id": c.user_id.as_str(), ":provider": c.provider.id, ":key_ref": c.key.id.as_str()};
    let Some(previous) = retired else {
        tx.execute(&format!("DELETE FROM previous_keys WHERE {ONE_KEY}"), one)
            .map_err(internal)?;
        return Ok(());
    };
    tx.execute(
        "INSERT OR REPLACE INTO previous_keys (user_id, provider, key_ref, format_version, key_id,
             wrapped_data_key, nonce, ciphertext, key_hint, endpoint, replaced_at, kept_until)
         VALUES (:user_id, :provider, :key_ref, :format_version, :key_id,
             :wrapped_data_key, :nonce, :ciphertext, :key_hint, :endpoint, :replaced_at, :kept_until)",
        named_params! {
            ":user_id": c.user_id.as_str(),
            ":provider": c.provider.id,
            ":key_ref": c.key.id.as_str(),
            ":format_version": previous.sealed.format_version,
            ":key_id": previous.sealed.key_id,
            ":wrapped_data_key": previous.sealed.wrapped_data_key,
            ":nonce": previous.sealed.nonce,
            ":ciphertext": previous.sealed.ciphertext,
            ":key_hint": previous.key_hint,
            ":endpoint": previous.endpoint.as_ref().map(|e| e.as_str()),
            ":replaced_at": ts(&previous.replaced_at),
            ":kept_until": ts(&previous.kept_until),
        },
    )
    .map_err(internal)?;
    Ok(())
}

/// Stores the model list of `key` (its revision is not checked here).
fn write_models(
    tx: &rusqlite::Transaction<'_>,
    key: &KeyRevision,
    discovered_at: &DateTime<Utc>,
    models: &[ModelInfo],
) -> Result<(), StoreError> {
    let json = serde_json::to_string(models).map_err(|e| StoreError::Internal(e.to_string()))?;
    tx.execute(
        "INSERT INTO models (user_id, provider, key_ref, discovered_at, models_json)
         VALUES (:user_id, :provider, :key_ref, :discovered_at, :models_json)
         ON CONFLICT (user_id, provider, key_ref) DO UPDATE SET discovered_at = excluded.discovered_at,
                                                                models_json = excluded.models_json",
        named_params! {
            ":user_id": key.user.as_str(),
            ":provider": key.provider.id,
            ":key_ref": key.key.as_str(),
            ":discovered_at": ts(discovered_at),
            ":models_json": json,
        },
    )
    .map_err(internal)?;
    Ok(())
}

/// Adds `entry` to the history, first pruning the user's expired entries
/// (what DynamoDB's TTL does there).
fn insert_activity(
    tx: &rusqlite::Transaction<'_>,
    user: &UserId,
    provider: &str,
    entry: &ActivityEntry,
) -> Result<(), StoreError> {
    tx.execute(
        "DELETE FROM activity WHERE user_id = :user_id AND expires_at <= :now",
        named_params! {":user_id": user.as_str(), ":now": Utc::now().timestamp()},
    )
    .map_err(internal)?;
    tx.execute(
        "INSERT INTO activity (user_id, provider, position, detail, expires_at)
         VALUES (:user_id, :provider, :position, :detail, :expires_at)
         ON CONFLICT (user_id, provider, position) DO NOTHING",
        named_params! {
            ":user_id": user.as_str(),
            ":provider": provider,
            ":position": entry.position().0,
            ":detail": entry.detail_json(),
            ":expires_at": entry.expires_at(),
        },
    )
    .map_err(internal)?;
    Ok(())
}

/// The time columns [`set_time_unless_since`] may set (never a name from outside).
#[derive(Clone, Copy)]
enum Column {
    LastRecheckAt,
}

/// Sets `column` to `at` if the key is still `revision` and the column is
/// empty or older than `unless_since` (stored times are fixed-width RFC 3339
/// UTC, so they compare as text). Whether it wrote.
fn set_time_unless_since(
    tx: &rusqlite::Transaction<'_>,
    key: &KeyRevision,
    column: Column,
    when: OncePerWindow,
) -> Result<bool, StoreError> {
    let sql = match column {
        Column::LastRecheckAt => {
            "UPDATE credentials SET last_recheck_at = :at
             WHERE user_id = :user_id AND provider = :provider AND key_ref = :key_ref AND revision = :revision
               AND (last_recheck_at IS NULL OR last_recheck_at < :since)"
        }
    };
    let updated = tx
        .execute(
            sql,
            named_params! {
                ":user_id": key.user.as_str(),
                ":provider": key.provider.id,
                ":key_ref": key.key.as_str(),
                ":revision": key.revision,
                ":at": ts(&when.at),
                ":since": ts(&when.unless_since),
            },
        )
        .map_err(internal)?;
    Ok(updated == 1)
}

#[async_trait]
impl CredentialStore for SqliteStore {
    async fn get(&self, at: KeyAt<'_>) -> Result<Option<StoredCredential>, StoreError> {
        let KeyAt { user, provider, key } = at;
        let (user, provider, key) = (user.clone(), provider.id, key.clone());
        self.with_db(move |db| {
            db.prepare_cached(&format!("{} WHERE {ONE_KEY}", *SELECT_CREDENTIAL))
                .and_then(|mut stmt| {
                    stmt.query_row(
                        named_params! {":user_id": user.as_str(), ":provider": provider, ":key_ref": key.as_str()},
                        credential_from_row,
                    )
                    .optional()
                })
                .map_err(internal)
        })
        .await
    }

    async fn keys(&self, user: &UserId, provider: &ProviderSpec) -> Result<Vec<StoredCredential>, StoreError> {
        let (user, provider) = (user.clone(), provider.id);
        self.with_db(move |db| {
            let mut stmt = db
                .prepare_cached(&format!(
                    "{} WHERE user_id = :user_id AND provider = :provider ORDER BY priority, created_at, key_ref",
                    *SELECT_CREDENTIAL
                ))
                .map_err(internal)?;
            let rows = stmt
                .query_map(
                    named_params! {":user_id": user.as_str(), ":provider": provider},
                    credential_from_row,
                )
                .map_err(internal)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(internal)
        })
        .await
    }

    async fn list(&self, user: &UserId) -> Result<Vec<StoredCredential>, StoreError> {
        let user = user.clone();
        self.with_db(move |db| {
            let mut stmt = db
                .prepare_cached(&format!("{} WHERE user_id = :user_id", *SELECT_CREDENTIAL))
                .map_err(internal)?;
            let rows = stmt
                .query_map(named_params! {":user_id": user.as_str()}, |row| {
                    // A provider this build does not know (a newer build's,
                    // after a rollback) is left out, not an error.
                    credential_record::of_known_provider(row)
                        .then(|| credential_from_row(row))
                        .transpose()
                })
                .map_err(internal)?;
            rows.filter_map(Result::transpose)
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(internal)
        })
        .await
    }

    async fn insert(&self, credential: &StoredCredential, models: &[ModelInfo]) -> Result<(), StoreError> {
        let new = Replacement {
            credential,
            models,
            if_revision: None,
            retired: None,
        };
        self.write_key(&INSERT_CREDENTIAL, new, StoreError::Conflict).await
    }

    async fn replace(&self, replacement: Replacement<'_>) -> Result<(), StoreError> {
        self.write_key(&REPLACE_CREDENTIAL, replacement, StoreError::NotFound)
            .await
    }

    async fn previous(&self, at: KeyAt<'_>) -> Result<Option<PreviousKey>, StoreError> {
        let KeyAt { user, provider, key } = at;
        let (user, provider, key) = (user.clone(), provider.id, key.clone());
        self.with_db(move |db| {
            db.prepare_cached(&format!(
                "SELECT * FROM previous_keys WHERE {ONE_KEY} AND kept_until > :now"
            ))
            .and_then(|mut stmt| {
                stmt.query_row(
                    named_params! {
                        ":user_id": user.as_str(),
                        ":provider": provider,
                        ":key_ref": key.as_str(),
                        ":now": ts(&Utc::now()),
                    },
                    |row| credential_record::previous_key(row).map_err(|Unreadable(field)| corrupt(field)),
                )
                .optional()
            })
            .map_err(internal)
        })
        .await
    }

    async fn record_check(&self, key: KeyRevision, check: &CheckState, models: ModelsUpdate) -> Result<(), StoreError> {
        let check = check.clone();
        let models = match models {
            ModelsUpdate::Keep => None,
            ModelsUpdate::Replace(list) => Some(list),
        };
        self.in_transaction(move |tx| {
            let now = check.checked_at.unwrap_or_else(Utc::now);
            let updated = tx
                .execute(
                    "UPDATE credentials SET status = :status, status_reason = :status_reason,
                            retry_after_secs = :retry_after_secs, last_checked_at = :last_checked_at,
                            models_count = COALESCE(:models_count, models_count), updated_at = :updated_at,
                            fresh_at = :updated_at, last_attempt_at = NULL, last_attempt_reason = NULL,
                            attempt_failures = 0, quota_json = :quota_json
                     WHERE user_id = :user_id AND provider = :provider AND key_ref = :key_ref
                       AND revision = :revision",
                    named_params! {
                        ":user_id": key.user.as_str(),
                        ":provider": key.provider.id,
                        ":key_ref": key.key.as_str(),
                        ":revision": key.revision,
                        ":status": check.status.as_str(),
                        ":status_reason": check.reason.map(ErrorReason::as_str),
                        ":retry_after_secs": check.retry_after_secs.map(|s| s.min(i64::MAX as u64) as i64),
                        ":last_checked_at": check.checked_at.as_ref().map(ts),
                        ":models_count": models.as_ref().map(|m| m.len() as u32),
                        ":updated_at": ts(&now),
                        ":quota_json": quota_json(&check),
                    },
                )
                .map_err(internal)?;
            if updated == 0 {
                return Err(stale_or_gone(tx, &key)?);
            }
            if let Some(models) = &models {
                write_models(tx, &key, &now, models)?;
            }
            Ok(())
        })
        .await
    }

    async fn record_use(&self, key: KeyRevision, use_: &KeyUse) -> Result<bool, StoreError> {
        let use_ = use_.clone();
        self.in_transaction(move |tx| {
            let updated = tx
                .execute(
                    "UPDATE credentials SET last_used_at = :at, consumer_uses = :uses
                     WHERE user_id = :user_id AND provider = :provider AND key_ref = :key_ref
                       AND revision = :revision AND COALESCE(consumer_uses, '{}') = :seen",
                    named_params! {
                        ":user_id": key.user.as_str(),
                        ":provider": key.provider.id,
                        ":key_ref": key.key.as_str(),
                        ":revision": key.revision,
                        ":at": ts(&use_.entry.at),
                        ":uses": use_.uses.to_json(),
                        ":seen": use_.seen.to_json(),
                    },
                )
                .map_err(internal)?;
            if updated == 0 {
                return Ok(false);
            }
            insert_activity(tx, &key.user, key.provider.id, &use_.entry)?;
            Ok(true)
        })
        .await
    }

    async fn claim_recheck(&self, key: KeyRevision, when: OncePerWindow) -> Result<bool, StoreError> {
        self.in_transaction(move |tx| {
            if set_time_unless_since(tx, &key, Column::LastRecheckAt, when)? {
                return Ok(true);
            }
            let stored: Option<String> = tx
                .query_row(
                    &format!("SELECT revision FROM credentials WHERE {ONE_KEY}"),
                    named_params! {":user_id": key.user.as_str(), ":provider": key.provider.id, ":key_ref": key.key.as_str()},
                    |row| row.get(0),
                )
                .optional()
                .map_err(internal)?;
            match stored {
                None => Err(StoreError::NotFound),
                Some(stored) if stored != key.revision => Err(StoreError::Conflict),
                Some(_) => Ok(false),
            }
        })
        .await
    }

    async fn delete(&self, user: &UserId, provider: &ProviderSpec) -> Result<(), StoreError> {
        let (user, provider) = (user.clone(), provider.id);
        self.in_transaction(move |tx| {
            let params = named_params! {":user_id": user.as_str(), ":provider": provider};
            let deleted = tx
                .execute(
                    "DELETE FROM credentials WHERE user_id = :user_id AND provider = :provider",
                    params,
                )
                .map_err(internal)?;
            if deleted == 0 {
                return Err(StoreError::NotFound);
            }
            tx.execute(
                "DELETE FROM models WHERE user_id = :user_id AND provider = :provider",
                params,
            )
            .map_err(internal)?;
            Ok(())
        })
        .await
    }

    async fn cool_down(&self, key: KeyRevision, until: DateTime<Utc>) -> Result<(), StoreError> {
        self.in_transaction(move |tx| {
            let sets = "cooling_until = MAX(COALESCE(cooling_until, ''), :until)";
            update_at_revision(tx, &key, sets, &[("until", Value::Text(ts(&until)))])
        })
        .await
    }

    async fn set_meta(&self, change: MetaChange<'_>) -> Result<(), StoreError> {
        let (user, provider, meta) = (change.user.clone(), change.provider.id, change.meta.clone());
        let if_revision = change.if_revision.map(str::to_owned);
        self.in_transaction(move |tx| {
            let updated = tx
                .execute(
                    &format!(
                        "UPDATE credentials SET key_name = :name, priority = :priority, enabled = :enabled
                         WHERE {ONE_KEY} AND revision = COALESCE(:if_revision, revision)"
                    ),
                    named_params! {
                        ":user_id": user.as_str(),
                        ":provider": provider,
                        ":key_ref": meta.id.as_str(),
                        ":name": meta.name,
                        ":priority": meta.priority,
                        ":enabled": meta.enabled,
                        ":if_revision": if_revision,
                    },
                )
                .map_err(internal)?;
            if updated == 0 {
                return Err(exists(tx, &user, provider, &meta.id)?);
            }
            Ok(())
        })
        .await
    }

    async fn delete_key(&self, at: KeyAt<'_>, if_revision: Option<&str>) -> Result<(), StoreError> {
        let KeyAt { user, provider, key } = at;
        let (user, provider, key) = (user.clone(), provider.id, key.clone());
        let if_revision = if_revision.map(str::to_owned);
        self.in_transaction(move |tx| {
            let params = named_params! {":user_id": user.as_str(), ":provider": provider, ":key_ref": key.as_str()};
            let deleted = tx
                .execute(
                    &format!("DELETE FROM credentials WHERE {ONE_KEY} AND revision = COALESCE(:if_revision, revision)"),
                    named_params! {
                        ":user_id": user.as_str(),
                        ":provider": provider,
                        ":key_ref": key.as_str(),
                        ":if_revision": if_revision,
                    },
                )
                .map_err(internal)?;
            if deleted == 0 {
                return Err(exists(tx, &user, provider, &key)?);
            }
            tx.execute(&format!("DELETE FROM models WHERE {ONE_KEY}"), params)
                .map_err(internal)?;
            Ok(())
        })
        .await
    }

    async fn models(&self, at: KeyAt<'_>) -> Result<Option<ModelList>, StoreError> {
        let KeyAt { user, provider, key } = at;
        let (user, provider, key) = (user.clone(), provider.id, key.clone());
        self.with_db(move |db| {
            let row = db
                .query_row(
                    &format!("SELECT discovered_at, models_json FROM models WHERE {ONE_KEY}"),
                    named_params! {":user_id": user.as_str(), ":provider": provider, ":key_ref": key.as_str()},
                    |row| {
                        Ok((
                            row.get::<_, String>("discovered_at")?,
                            row.get::<_, String>("models_json")?,
                        ))
                    },
                )
                .optional()
                .map_err(internal)?;
            row.map(|(at, json)| {
                Ok(ModelList {
                    discovered_at: parse_ts(&at).map_err(internal)?,
                    models: serde_json::from_str(&json)
                        .map_err(|e| StoreError::Internal(format!("unreadable model list: {e}")))?,
                })
            })
            .transpose()
        })
        .await
    }

    async fn due(&self, query: DueQuery) -> Result<Vec<DueCredential>, StoreError> {
        self.with_db(move |db| {
            let mut stmt = db
                .prepare_cached(
                    "SELECT user_id, key_ref, fresh_at FROM credentials
                     WHERE provider = :provider AND fresh_at <= :before ORDER BY fresh_at LIMIT :limit",
                )
                .map_err(internal)?;
            let rows = stmt
                .query_map(
                    named_params! {
                        ":provider": query.provider.id,
                        ":before": ts(&query.before),
                        ":limit": i64::try_from(query.limit).unwrap_or(i64::MAX),
                    },
                    |row| {
                        let user: String = row.get(0)?;
                        let key: String = row.get(1)?;
                        Ok(DueCredential {
                            user: UserId::parse(&user).ok_or_else(|| corrupt("user id"))?,
                            provider: query.provider,
                            key: KeyId::parse(&key).ok_or_else(|| corrupt("key_ref"))?,
                            fresh_at: parse_ts(&row.get::<_, String>(2)?)?,
                        })
                    },
                )
                .map_err(internal)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(internal)
        })
        .await
    }

    async fn claim_due(
        &self,
        due: &DueCredential,
        fresh_until: DateTime<Utc>,
    ) -> Result<Option<StoredCredential>, StoreError> {
        let due = due.clone();
        self.in_transaction(move |tx| {
            let params = named_params! {":user_id": due.user.as_str(), ":provider": due.provider.id, ":key_ref": due.key.as_str()};
            let claimed = tx
                .execute(
                    "UPDATE credentials SET fresh_at = :until
                     WHERE user_id = :user_id AND provider = :provider AND key_ref = :key_ref AND fresh_at = :seen",
                    named_params! {
                        ":user_id": due.user.as_str(),
                        ":provider": due.provider.id,
                        ":key_ref": due.key.as_str(),
                        ":until": ts(&fresh_until),
                        ":seen": ts(&due.fresh_at),
                    },
                )
                .map_err(internal)?;
            if claimed == 0 {
                return Ok(None);
            }
            let credential = tx
                .query_row(
                    &format!("{} WHERE {ONE_KEY}", *SELECT_CREDENTIAL),
                    params,
                    credential_from_row,
                )
                .map_err(internal)?;
            Ok(Some(credential))
        })
        .await
    }

    async fn record_attempt(&self, key: KeyRevision, deferral: Deferral) -> Result<(), StoreError> {
        let Deferral { attempt, fresh_until } = deferral;
        self.in_transaction(move |tx| {
            let sets = "last_attempt_at = :at, last_attempt_reason = :reason, attempt_failures = :failures, \
                        fresh_at = :fresh_until";
            let values = [
                ("at", Value::Text(ts(&attempt.at))),
                ("reason", Value::Text(attempt.reason.as_str().to_owned())),
                ("failures", Value::Integer(attempt.failures.into())),
                ("fresh_until", Value::Text(ts(&fresh_until))),
            ];
            update_at_revision(tx, &key, sets, &values)
        })
        .await
    }
}

#[async_trait]
impl ConnectionStore for SqliteStore {
    async fn save_connection(&self, connection: &Connection) -> Result<(), StoreError> {
        let c = connection.clone();
        self.in_transaction(move |tx| {
            // Expired rows are swept here, the way DynamoDB's TTL does it there.
            tx.execute(
                "DELETE FROM connections WHERE expires_at <= :now",
                named_params! {":now": ts(&Utc::now())},
            )
            .map_err(internal)?;
            tx.execute(
                "INSERT INTO connections (connection_id, user_id, connected_at, expires_at)
                 VALUES (:connection_id, :user_id, :connected_at, :expires_at)
                 ON CONFLICT (connection_id) DO UPDATE SET user_id = excluded.user_id,
                     connected_at = excluded.connected_at, expires_at = excluded.expires_at",
                named_params! {
                    ":connection_id": c.connection_id,
                    ":user_id": c.user.as_str(),
                    ":connected_at": ts(&c.connected_at),
                    ":expires_at": ts(&c.expires_at),
                },
            )
            .map_err(internal)?;
            Ok(())
        })
        .await
    }

    async fn remove_connection(&self, user: &UserId, connection_id: &str) -> Result<(), StoreError> {
        let (user, connection_id) = (user.clone(), connection_id.to_owned());
        self.with_db(move |db| {
            db.execute(
                "DELETE FROM connections WHERE connection_id = :connection_id AND user_id = :user_id",
                named_params! {":connection_id": connection_id, ":user_id": user.as_str()},
            )
            .map_err(internal)?;
            Ok(())
        })
        .await
    }

    async fn connections(&self, user: &UserId) -> Result<Vec<String>, StoreError> {
        let user = user.clone();
        self.with_db(move |db| {
            let mut stmt = db
                .prepare_cached(
                    "SELECT connection_id FROM connections
                     WHERE user_id = :user_id AND expires_at > :now ORDER BY connection_id",
                )
                .map_err(internal)?;
            let rows = stmt
                .query_map(
                    named_params! {":user_id": user.as_str(), ":now": ts(&Utc::now())},
                    |row| row.get(0),
                )
                .map_err(internal)?;
            rows.collect::<rusqlite::Result<Vec<String>>>().map_err(internal)
        })
        .await
    }
}

#[async_trait]
impl ActivityStore for SqliteStore {
    async fn append(&self, user: &UserId, provider: &ProviderSpec, entry: &ActivityEntry) -> Result<(), StoreError> {
        let (user, provider, entry) = (user.clone(), provider.id, entry.clone());
        self.in_transaction(move |tx| insert_activity(tx, &user, provider, &entry))
            .await
    }

    async fn activity(
        &self,
        user: &UserId,
        provider: &ProviderSpec,
        query: &ActivityQuery,
    ) -> Result<ActivityPage, StoreError> {
        let (user, provider, query) = (user.clone(), provider.id, query.clone());
        self.with_db(move |db| {
            let mut stmt = db
                .prepare_cached(
                    "SELECT position, detail FROM activity
                     WHERE user_id = :user_id AND provider = :provider AND position < :before
                       AND expires_at > :now
                     ORDER BY position DESC LIMIT :limit",
                )
                .map_err(internal)?;
            // Every position starts with a digit: `~` sorts after all of them.
            let before = query.before.as_ref().map_or("~", |p| p.0.as_str());
            let rows = stmt
                .query_map(
                    named_params! {
                        ":user_id": user.as_str(),
                        ":provider": provider,
                        ":before": before,
                        ":now": query.now.timestamp(),
                        ":limit": i64::try_from(query.limit + 1).unwrap_or(i64::MAX),
                    },
                    |row| {
                        let (position, detail): (String, String) = (row.get(0)?, row.get(1)?);
                        ActivityEntry::from_stored(&position, &detail).ok_or_else(|| corrupt("activity entry"))
                    },
                )
                .map_err(internal)?;
            let entries = rows.collect::<rusqlite::Result<Vec<_>>>().map_err(internal)?;
            Ok(page_of(entries, query.limit))
        })
        .await
    }
}

/// One row per user and bucket, read and written in one immediate
/// transaction, so parallel spenders never exceed the limit.
#[async_trait]
impl LimitStore for SqliteStore {
    async fn spend(&self, user: &UserId, budget: &Budget, now: DateTime<Utc>) -> Result<Spend, StoreError> {
        let (user, bucket, limit) = (user.clone(), budget.bucket, budget.limit);
        let now_ms = now.timestamp_millis();
        let ends_ms = (now + budget.window).timestamp_millis();
        self.in_transaction(move |tx| {
            let open: Option<(i64, i64)> = tx
                .query_row(
                    "SELECT spent, window_ends_ms FROM limits WHERE user_id = :user_id AND bucket = :bucket",
                    named_params! {":user_id": user.as_str(), ":bucket": bucket},
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()
                .map_err(internal)?
                .filter(|&(_, ends)| ends > now_ms);
            let spend = match open {
                Some((spent, ends)) if spent >= i64::from(limit) => {
                    return Ok(Spend::Refused {
                        retry_after: chrono::Duration::milliseconds(ends - now_ms),
                    });
                }
                Some(_) => tx.execute(
                    "UPDATE limits SET spent = spent + 1 WHERE user_id = :user_id AND bucket = :bucket",
                    named_params! {":user_id": user.as_str(), ":bucket": bucket},
                ),
                None => tx.execute(
                    "INSERT INTO limits (user_id, bucket, spent, window_ends_ms)
                     VALUES (:user_id, :bucket, 1, :ends)
                     ON CONFLICT (user_id, bucket) DO UPDATE SET spent = 1, window_ends_ms = excluded.window_ends_ms",
                    named_params! {":user_id": user.as_str(), ":bucket": bucket, ":ends": ends_ms},
                ),
            };
            spend.map_err(internal)?;
            Ok(Spend::Granted)
        })
        .await
    }
}
