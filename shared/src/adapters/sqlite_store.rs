//! The embedded store: one SQLite file in the data directory, WAL mode,
//! schema migrated on open, every multi-row write in one transaction.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection as Db, OptionalExtension, Row, TransactionBehavior, params};

use crate::domain::{CheckState, CredentialStatus, ErrorReason, ModelInfo, ModelList, SealedKey, StoredCredential};
use crate::ports::{Connection, CredentialStore, ModelsUpdate, StoreError};

/// Schema versions, applied in order; `PRAGMA user_version` records how far a file got.
const MIGRATIONS: &[&str] = &[r#"
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
"#];

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
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse_ts(s: &str) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))
}

fn corrupt(what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, format!("unreadable {what}").into())
}

const CREDENTIAL_COLUMNS: &str = "user_id, provider, format_version, key_id, wrapped_data_key, nonce, ciphertext, \
     key_hint, status, status_reason, retry_after_secs, last_checked_at, models_count, revision, created_at, updated_at";

fn credential_from_row(row: &Row<'_>) -> rusqlite::Result<StoredCredential> {
    let status: String = row.get(8)?;
    let reason: Option<String> = row.get(9)?;
    let last_checked: Option<String> = row.get(11)?;
    Ok(StoredCredential {
        user_id: row.get(0)?,
        provider: row.get(1)?,
        sealed: SealedKey {
            format_version: row.get(2)?,
            key_id: row.get(3)?,
            wrapped_data_key: row.get(4)?,
            nonce: row.get(5)?,
            ciphertext: row.get(6)?,
        },
        key_hint: row.get(7)?,
        check: CheckState {
            status: CredentialStatus::parse(&status).ok_or_else(|| corrupt("status"))?,
            reason: reason
                .map(|r| ErrorReason::parse(&r).ok_or_else(|| corrupt("status reason")))
                .transpose()?,
            retry_after_secs: row.get::<_, Option<i64>>(10)?.map(|s| s.max(0) as u64),
            checked_at: last_checked.as_deref().map(parse_ts).transpose()?,
        },
        models_count: row.get(12)?,
        revision: row.get(13)?,
        created_at: parse_ts(&row.get::<_, String>(14)?)?,
        updated_at: parse_ts(&row.get::<_, String>(15)?)?,
    })
}

fn write_models(
    tx: &rusqlite::Transaction<'_>,
    user_id: &str,
    provider: &str,
    discovered_at: &DateTime<Utc>,
    models: &[ModelInfo],
) -> Result<(), StoreError> {
    let json = serde_json::to_string(models).map_err(|e| StoreError::Internal(e.to_string()))?;
    tx.execute(
        "INSERT INTO models (user_id, provider, discovered_at, models_json) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (user_id, provider) DO UPDATE SET discovered_at = excluded.discovered_at,
                                                       models_json = excluded.models_json",
        params![user_id, provider, ts(discovered_at), json],
    )
    .map_err(internal)?;
    Ok(())
}

#[async_trait]
impl CredentialStore for SqliteStore {
    async fn get(&self, user_id: &str, provider: &str) -> Result<Option<StoredCredential>, StoreError> {
        let (user_id, provider) = (user_id.to_owned(), provider.to_owned());
        self.with_db(move |db| {
            db.query_row(
                &format!("SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE user_id = ?1 AND provider = ?2"),
                params![user_id, provider],
                credential_from_row,
            )
            .optional()
            .map_err(internal)
        })
        .await
    }

    async fn list(&self, user_id: &str) -> Result<Vec<StoredCredential>, StoreError> {
        let user_id = user_id.to_owned();
        self.with_db(move |db| {
            let mut stmt = db
                .prepare_cached(&format!(
                    "SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE user_id = ?1"
                ))
                .map_err(internal)?;
            let rows = stmt
                .query_map(params![user_id], credential_from_row)
                .map_err(internal)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(internal)
        })
        .await
    }

    async fn insert(&self, credential: &StoredCredential, models: &[ModelInfo]) -> Result<(), StoreError> {
        let (c, models) = (credential.clone(), models.to_vec());
        self.with_db(move |db| {
            let tx = db
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(internal)?;
            let inserted = tx
                .execute(
                    &format!(
                        "INSERT INTO credentials ({CREDENTIAL_COLUMNS})
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
                         ON CONFLICT (user_id, provider) DO NOTHING"
                    ),
                    params![
                        c.user_id,
                        c.provider,
                        c.sealed.format_version,
                        c.sealed.key_id,
                        c.sealed.wrapped_data_key,
                        c.sealed.nonce,
                        c.sealed.ciphertext,
                        c.key_hint,
                        c.check.status.as_str(),
                        c.check.reason.map(ErrorReason::as_str),
                        c.check.retry_after_secs.map(|s| s as i64),
                        c.check.checked_at.as_ref().map(ts),
                        c.models_count,
                        c.revision,
                        ts(&c.created_at),
                        ts(&c.updated_at),
                    ],
                )
                .map_err(internal)?;
            if inserted == 0 {
                return Err(StoreError::Conflict);
            }
            write_models(&tx, &c.user_id, &c.provider, &c.updated_at, &models)?;
            tx.commit().map_err(internal)
        })
        .await
    }

    async fn replace(&self, credential: &StoredCredential, models: &[ModelInfo]) -> Result<(), StoreError> {
        let (c, models) = (credential.clone(), models.to_vec());
        self.with_db(move |db| {
            let tx = db
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(internal)?;
            let updated = tx
                .execute(
                    "UPDATE credentials SET format_version = ?3, key_id = ?4, wrapped_data_key = ?5, nonce = ?6,
                            ciphertext = ?7, key_hint = ?8, status = ?9, status_reason = ?10,
                            retry_after_secs = ?11, last_checked_at = ?12, models_count = ?13,
                            revision = ?14, updated_at = ?15
                     WHERE user_id = ?1 AND provider = ?2",
                    params![
                        c.user_id,
                        c.provider,
                        c.sealed.format_version,
                        c.sealed.key_id,
                        c.sealed.wrapped_data_key,
                        c.sealed.nonce,
                        c.sealed.ciphertext,
                        c.key_hint,
                        c.check.status.as_str(),
                        c.check.reason.map(ErrorReason::as_str),
                        c.check.retry_after_secs.map(|s| s as i64),
                        c.check.checked_at.as_ref().map(ts),
                        c.models_count,
                        c.revision,
                        ts(&c.updated_at),
                    ],
                )
                .map_err(internal)?;
            if updated == 0 {
                return Err(StoreError::NotFound);
            }
            write_models(&tx, &c.user_id, &c.provider, &c.updated_at, &models)?;
            tx.commit().map_err(internal)
        })
        .await
    }

    async fn record_check(
        &self,
        user_id: &str,
        provider: &str,
        revision: &str,
        check: &CheckState,
        models: ModelsUpdate<'_>,
    ) -> Result<(), StoreError> {
        let (user_id, provider, revision, check) = (
            user_id.to_owned(),
            provider.to_owned(),
            revision.to_owned(),
            check.clone(),
        );
        let models = match models {
            ModelsUpdate::Keep => None,
            ModelsUpdate::Replace(list) => Some(list.to_vec()),
        };
        self.with_db(move |db| {
            let tx = db
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(internal)?;
            let now = check.checked_at.unwrap_or_else(Utc::now);
            let updated = tx
                .execute(
                    "UPDATE credentials SET status = ?4, status_reason = ?5, retry_after_secs = ?6,
                            last_checked_at = ?7, models_count = COALESCE(?8, models_count), updated_at = ?9
                     WHERE user_id = ?1 AND provider = ?2 AND revision = ?3",
                    params![
                        user_id,
                        provider,
                        revision,
                        check.status.as_str(),
                        check.reason.map(ErrorReason::as_str),
                        check.retry_after_secs.map(|s| s as i64),
                        check.checked_at.as_ref().map(ts),
                        models.as_ref().map(|m| m.len() as u32),
                        ts(&now),
                    ],
                )
                .map_err(internal)?;
            if updated == 0 {
                let exists: bool = tx
                    .query_row(
                        "SELECT EXISTS (SELECT 1 FROM credentials WHERE user_id = ?1 AND provider = ?2)",
                        params![user_id, provider],
                        |row| row.get(0),
                    )
                    .map_err(internal)?;
                return Err(if exists {
                    StoreError::Conflict
                } else {
                    StoreError::NotFound
                });
            }
            if let Some(models) = &models {
                write_models(&tx, &user_id, &provider, &now, models)?;
            }
            tx.commit().map_err(internal)
        })
        .await
    }

    async fn delete(&self, user_id: &str, provider: &str) -> Result<(), StoreError> {
        let (user_id, provider) = (user_id.to_owned(), provider.to_owned());
        self.with_db(move |db| {
            let tx = db
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(internal)?;
            let deleted = tx
                .execute(
                    "DELETE FROM credentials WHERE user_id = ?1 AND provider = ?2",
                    params![user_id, provider],
                )
                .map_err(internal)?;
            if deleted == 0 {
                return Err(StoreError::NotFound);
            }
            tx.execute(
                "DELETE FROM models WHERE user_id = ?1 AND provider = ?2",
                params![user_id, provider],
            )
            .map_err(internal)?;
            tx.commit().map_err(internal)
        })
        .await
    }

    async fn models(&self, user_id: &str, provider: &str) -> Result<Option<ModelList>, StoreError> {
        let (user_id, provider) = (user_id.to_owned(), provider.to_owned());
        self.with_db(move |db| {
            let row: Option<(String, String)> = db
                .query_row(
                    "SELECT discovered_at, models_json FROM models WHERE user_id = ?1 AND provider = ?2",
                    params![user_id, provider],
                    |row| Ok((row.get(0)?, row.get(1)?)),
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

    async fn save_connection(&self, connection: &Connection) -> Result<(), StoreError> {
        let c = connection.clone();
        self.with_db(move |db| {
            let tx = db
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(internal)?;
            // Expired rows are swept here, the way DynamoDB's TTL does it there.
            tx.execute(
                "DELETE FROM connections WHERE expires_at <= ?1",
                params![ts(&Utc::now())],
            )
            .map_err(internal)?;
            tx.execute(
                "INSERT INTO connections (connection_id, user_id, connected_at, expires_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (connection_id) DO UPDATE SET user_id = excluded.user_id,
                     connected_at = excluded.connected_at, expires_at = excluded.expires_at",
                params![c.connection_id, c.user_id, ts(&c.connected_at), ts(&c.expires_at)],
            )
            .map_err(internal)?;
            tx.commit().map_err(internal)
        })
        .await
    }

    async fn remove_connection(&self, user_id: &str, connection_id: &str) -> Result<(), StoreError> {
        let (user_id, connection_id) = (user_id.to_owned(), connection_id.to_owned());
        self.with_db(move |db| {
            db.execute(
                "DELETE FROM connections WHERE connection_id = ?1 AND user_id = ?2",
                params![connection_id, user_id],
            )
            .map_err(internal)?;
            Ok(())
        })
        .await
    }

    async fn connections(&self, user_id: &str) -> Result<Vec<String>, StoreError> {
        let user_id = user_id.to_owned();
        self.with_db(move |db| {
            let mut stmt = db
                .prepare_cached(
                    "SELECT connection_id FROM connections WHERE user_id = ?1 AND expires_at > ?2 ORDER BY connection_id",
                )
                .map_err(internal)?;
            let rows = stmt
                .query_map(params![user_id, ts(&Utc::now())], |row| row.get(0))
                .map_err(internal)?;
            rows.collect::<rusqlite::Result<Vec<String>>>().map_err(internal)
        })
        .await
    }
}
