//! The SQLite store: the store contract on a real file, and its schema life.

use std::sync::Arc;

use mailmind::adapters::sqlite_store::SqliteStore;
use mailmind::domain::PreviousKey;
use mailmind::ports::{CredentialStore, KeyAt, Replacement};
use mailmind_tests::store_contract::{credential, due_query, groq, models, user};
use mailmind_tests::store_contract_tests;

async fn sqlite_store() -> (Arc<SqliteStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("mailmind.db")).unwrap();
    (Arc::new(store), dir)
}

store_contract_tests!(sqlite_store());

#[tokio::test]
async fn reopening_keeps_data_and_uses_wal() {
    let c = credential("user-a", "groq", "r1");
    let (_dir, path) = database_with(&c, &models(&["a"])).await;
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        mailmind_tests::store_contract::first_stored(&store, "user-a", "groq").await,
        Some(c)
    );
    let db = rusqlite::Connection::open(&path).unwrap();
    let mode: String = db.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    let version: i64 = db.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, 10);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
}

/// A database file holding `c` with `listed`, written by this build; the
/// directory goes when the guard is dropped.
async fn database_with(
    c: &mailmind::domain::StoredCredential,
    listed: &[mailmind::domain::ModelInfo],
) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailmind.db");
    SqliteStore::open(&path).unwrap().insert(c, listed).await.unwrap();
    (dir, path)
}

/// The `PRAGMA user_version` of the file at `path`.
fn schema_version(path: &std::path::Path) -> i64 {
    let db = rusqlite::Connection::open(path).unwrap();
    db.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap()
}

/// Takes away what schema 10 added: previous versions of keys.
fn roll_back_to_schema_9(db: &rusqlite::Connection) {
    db.execute_batch(
        "DROP TABLE previous_keys;
         ALTER TABLE credentials DROP COLUMN previous_hint;
         ALTER TABLE credentials DROP COLUMN previous_until;
         PRAGMA user_version = 9;",
    )
    .unwrap();
}

/// A database of schema 9 (before previous versions) is migrated on open:
/// its keys have none, and the next replacement keeps one.
#[tokio::test]
async fn a_version_9_database_is_migrated_and_keeps_replaced_keys_from_then_on() {
    let c = credential("user-a", "groq", "r1");
    let (_dir, path) = database_with(&c, &models(&["a"])).await;
    roll_back_to_schema_9(&rusqlite::Connection::open(&path).unwrap());
    let store = SqliteStore::open(&path).unwrap();
    let (u, first) = (user("user-a"), mailmind_tests::store_contract::first_key());
    let at = KeyAt::new(&u, groq(), &first);
    assert_eq!(store.get(at).await.unwrap(), Some(c.clone()));
    assert_eq!(store.previous(at).await.unwrap(), None);
    let next = credential("user-a", "groq", "r2");
    let kept = PreviousKey::retire(
        &c,
        chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 3),
        chrono::Duration::days(7),
    );
    store
        .replace(Replacement::of(&next, &[]).retiring(&kept))
        .await
        .unwrap();
    assert_eq!(store.previous(at).await.unwrap(), Some(kept));
    assert_eq!(schema_version(&path), 10);
}

/// Versions past their keeping are deleted by the next replacement (of any
/// key), not merely hidden; a deleted key's version goes with it.
#[tokio::test]
async fn previous_versions_are_pruned_on_write() {
    let (store, dir) = sqlite_store().await;
    let rows = || {
        let db = rusqlite::Connection::open(dir.path().join("mailmind.db")).unwrap();
        db.query_row("SELECT COUNT(*) FROM previous_keys", [], |r| r.get::<_, i64>(0))
            .unwrap()
    };
    let now = chrono::Utc::now();
    let a = credential("user-a", "groq", "a1");
    store.insert(&a, &[]).await.unwrap();
    let expired = PreviousKey::retire(&a, now - chrono::Duration::days(9), chrono::Duration::days(7));
    store
        .replace(Replacement::of(&credential("user-a", "groq", "a2"), &[]).retiring(&expired))
        .await
        .unwrap();
    assert_eq!(rows(), 1, "written as given");
    let b = credential("user-b", "groq", "b1");
    store.insert(&b, &[]).await.unwrap();
    let kept = PreviousKey::retire(&b, now, chrono::Duration::days(7));
    store
        .replace(Replacement::of(&credential("user-b", "groq", "b2"), &[]).retiring(&kept))
        .await
        .unwrap();
    assert_eq!(rows(), 1, "user-a's expired version pruned, user-b's kept");
    store
        .delete_key(
            KeyAt::new(&user("user-b"), groq(), &mailmind_tests::store_contract::first_key()),
            None,
        )
        .await
        .unwrap();
    assert_eq!(rows(), 0);
}

/// Rebuilds the tables as schema 7 had them (one key per provider: no
/// `key_ref`, `key_name`, `priority` or `enabled`), rows kept.
fn roll_back_to_schema_7(db: &rusqlite::Connection) {
    roll_back_to_schema_9(db);
    let columns: Vec<String> = db
        .prepare("SELECT name FROM pragma_table_info('credentials')")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .filter(|name: &String| {
            !["key_ref", "key_name", "priority", "enabled", "cooling_until"].contains(&name.as_str())
        })
        .collect();
    let columns = columns.join(", ");
    db.execute_batch(&format!(
        "CREATE TABLE credentials_v7 AS SELECT {columns} FROM credentials;
         DROP TABLE credentials;
         ALTER TABLE credentials_v7 RENAME TO credentials;
         CREATE UNIQUE INDEX credentials_pk ON credentials (user_id, provider);
         CREATE INDEX credentials_due ON credentials (provider, fresh_at);
         CREATE TABLE models_v7 AS SELECT user_id, provider, discovered_at, models_json FROM models;
         DROP TABLE models;
         ALTER TABLE models_v7 RENAME TO models;
         CREATE UNIQUE INDEX models_pk ON models (user_id, provider);
         PRAGMA user_version = 7;"
    ))
    .unwrap();
}

/// A database of schema 7 (one key per provider) is migrated on open: each
/// credential becomes its provider's key `default`, models and all, and a
/// second key can be stored beside it.
#[tokio::test]
async fn a_version_7_database_is_migrated_to_keys_and_keeps_its_credentials() {
    let c = credential("user-a", "groq", "r1");
    let (_dir, path) = database_with(&c, &models(&["a", "b"])).await;
    roll_back_to_schema_7(&rusqlite::Connection::open(&path).unwrap());
    let store = SqliteStore::open(&path).unwrap();
    let (u, first) = (user("user-a"), mailmind_tests::store_contract::first_key());
    let at = KeyAt::new(&u, groq(), &first);
    assert_eq!(store.get(at).await.unwrap(), Some(c.clone()));
    assert_eq!(
        store.keys(&user("user-a"), groq()).await.unwrap(),
        std::slice::from_ref(&c)
    );
    let list = store.models(at).await.unwrap().unwrap();
    assert_eq!(list.models, models(&["a", "b"]));
    let mut second = credential("user-a", "groq", "r2");
    second.key = mailmind::domain::named_key::KeyMeta {
        id: mailmind::domain::named_key::KeyId::random(),
        name: "backup".into(),
        priority: 1,
        enabled: true,
    };
    store.insert(&second, &models(&["c"])).await.unwrap();
    assert_eq!(store.keys(&user("user-a"), groq()).await.unwrap(), [c, second]);
    assert_eq!(schema_version(&path), 10);
}

/// A database of the first schema (before `last_used_at`) is migrated on
/// open, its credentials kept.
#[tokio::test]
async fn a_version_1_database_is_migrated_and_keeps_its_credentials() {
    let c = credential("user-a", "groq", "r1");
    let (_dir, path) = database_with(&c, &models(&["a"])).await;
    {
        // Back to schema 1: what the later migrations add removed.
        let db = rusqlite::Connection::open(&path).unwrap();
        roll_back_to_schema_7(&db);
        db.execute_batch(
            "DROP INDEX credentials_due;
             ALTER TABLE credentials DROP COLUMN fresh_at;
             ALTER TABLE credentials DROP COLUMN last_attempt_at;
             ALTER TABLE credentials DROP COLUMN last_attempt_reason;
             ALTER TABLE credentials DROP COLUMN attempt_failures;
             ALTER TABLE credentials DROP COLUMN last_used_at;
             ALTER TABLE credentials DROP COLUMN last_recheck_at;
             DROP TABLE limits;
             ALTER TABLE credentials DROP COLUMN quota_json;
             ALTER TABLE credentials DROP COLUMN consumer_uses;
             DROP TABLE activity;
             ALTER TABLE credentials DROP COLUMN endpoint;
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        mailmind_tests::store_contract::first_stored(&store, "user-a", "groq").await,
        Some(c.clone())
    );
    // Fresh from its last check: in the due queue from then on.
    let due = store
        .due(due_query("groq", c.check.checked_at.unwrap(), 10))
        .await
        .unwrap();
    assert_eq!(due.len(), 1, "{due:?}");
    assert_eq!(schema_version(&path), 10);
}

/// A row of a provider this build does not know (written by a newer build,
/// before a rollback) is left out of the list instead of failing it.
#[tokio::test]
async fn a_credential_of_an_unknown_provider_is_left_out_of_the_list() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailmind.db");
    let store = SqliteStore::open(&path).unwrap();
    let c = credential("user-a", "groq", "r1");
    store.insert(&c, &models(&["a"])).await.unwrap();
    let db = rusqlite::Connection::open(&path).unwrap();
    db.execute_batch(
        "CREATE TEMP TABLE copy AS SELECT * FROM credentials WHERE provider = 'groq';
         UPDATE copy SET provider = 'retired';
         INSERT INTO credentials SELECT * FROM copy;",
    )
    .unwrap();
    let rows: i64 = db
        .query_row("SELECT COUNT(*) FROM credentials", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 2);
    assert_eq!(store.list(&user("user-a")).await.unwrap(), [c]);
}

#[test]
fn a_database_from_a_newer_version_is_not_touched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailmind.db");
    let db = rusqlite::Connection::open(&path).unwrap();
    db.pragma_update(None, "user_version", 99).unwrap();
    drop(db);
    let err = SqliteStore::open(&path).err().expect("refused");
    assert!(err.to_string().contains("newer"), "{err}");
}

/// SQLite has no TTL: appending to a user's history first deletes the
/// user's entries past their `expires_at` (reads leave them out anyway).
#[tokio::test]
async fn expired_activity_is_pruned_on_write() {
    use chrono::Utc;
    use mailmind::domain::activity::{ActivityEntry, ActivityEvent, RETENTION};
    use mailmind::ports::ActivityStore;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailmind.db");
    let store = SqliteStore::open(&path).unwrap();
    let u = user("user-a");
    let now = Utc::now();
    let old = ActivityEntry::new(now - RETENTION - chrono::Duration::hours(1), ActivityEvent::Deleted);
    store.append(&u, groq(), &old).await.unwrap();
    let db = rusqlite::Connection::open(&path).unwrap();
    let rows = || -> i64 { db.query_row("SELECT COUNT(*) FROM activity", [], |r| r.get(0)).unwrap() };
    assert_eq!(rows(), 1);
    // The expiry is the entry's time plus the retention, in epoch seconds.
    let expires: i64 = db
        .query_row("SELECT expires_at FROM activity", [], |r| r.get(0))
        .unwrap();
    assert_eq!(expires, (old.at + RETENTION).timestamp());
    let fresh = ActivityEntry::new(now, ActivityEvent::Deleted);
    store.append(&u, groq(), &fresh).await.unwrap();
    assert_eq!(rows(), 1, "the expired entry is gone, the new one kept");
    let page = store
        .activity(&u, groq(), &mailmind_tests::store_contract::first_page(10, now))
        .await
        .unwrap();
    assert_eq!(page.entries, vec![fresh]);
}
