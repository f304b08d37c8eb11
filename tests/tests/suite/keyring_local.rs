//! The local keyring: the keyring contract, and the master key file's life.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use mailmind::adapters::local_keyring::{LocalKeyring, MasterKeyError};
use mailmind::domain::ApiKey;
use mailmind::envelope;
use mailmind::ports::{EncryptionContext, Keyring};
use mailmind_tests::keyring_contract_tests;
use mailmind_tests::store_contract::{provider, user};

async fn local_keyring() -> (Arc<dyn Keyring>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let keyring = LocalKeyring::open_or_create(&dir.path().join("master.key")).unwrap();
    (Arc::new(keyring), dir)
}

keyring_contract_tests!(local_keyring());

#[tokio::test]
async fn master_key_is_created_owner_only_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    let first = LocalKeyring::open_or_create(&path).unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.len(), 32);

    let ctx = EncryptionContext::new(&user("user-a"), provider("groq"));
    let key = ApiKey::parse("gsk_restart_survivor_0123456789").unwrap();
    let sealed = envelope::seal(&first, &ctx, &key).await.unwrap();
    drop(first);
    // A new process (here: a new keyring) opens what the old one sealed.
    let second = LocalKeyring::open_or_create(&path).unwrap();
    assert_eq!(
        envelope::open(&second, &ctx, &sealed).await.unwrap().expose(),
        key.expose()
    );
    // Another master key does not.
    let other_dir = tempfile::tempdir().unwrap();
    let other = LocalKeyring::open_or_create(&other_dir.path().join("master.key")).unwrap();
    assert!(envelope::open(&other, &ctx, &sealed).await.is_err());
}

#[test]
fn malformed_master_key_files_are_refused_not_replaced() {
    for len in [0usize, 31, 33, 64] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        std::fs::write(&path, vec![7u8; len]).unwrap();
        match LocalKeyring::open_or_create(&path) {
            Err(MasterKeyError::Malformed { found, .. }) => assert_eq!(found, len.min(33)),
            other => panic!(
                "a {len}-byte master key must be refused, got {:?}",
                other.map(|k| k.key_id().to_owned())
            ),
        }
        assert_eq!(std::fs::read(&path).unwrap(), vec![7u8; len], "the file is left alone");
    }
}

#[test]
fn unreadable_master_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    // A directory where the file should be cannot be read, even by root.
    std::fs::create_dir(&path).unwrap();
    assert!(matches!(
        LocalKeyring::open_or_create(&path),
        Err(MasterKeyError::Unreadable { .. })
    ));
}
