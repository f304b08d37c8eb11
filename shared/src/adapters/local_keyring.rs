//! The local keyring: a 256-bit master key in a file of the data directory
//! plays the part KMS plays on AWS, wrapping each write's data key with
//! AES-256-GCM under the encryption context.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use async_trait::async_trait;
use zeroize::Zeroizing;

use crate::envelope::{self, aes_gcm_open, aes_gcm_seal};
use crate::ports::{DataKey, EncryptionContext, Keyring, KeyringError, WrappedKey};

/// Raw 32 bytes; anything else in the file is refused.
const MASTER_KEY_LEN: usize = 32;

/// Why the master key file cannot be used; the server refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    /// The file exists but cannot be read.
    #[error("cannot read the master key file {path}: {source}")]
    Unreadable {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    #[error(
        "the master key file {path} is malformed: expected exactly {MASTER_KEY_LEN} bytes, found {found}; refusing to start rather than make a new key that cannot open stored credentials"
    )]
    /// Not exactly 32 bytes.
    Malformed {
        /// The file.
        path: String,
        /// How many bytes it has.
        found: usize,
    },
    /// A new file could not be written.
    #[error("cannot create the master key file {path}: {source}")]
    Create {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Wraps data keys under a master key held in memory (zeroized on drop).
pub struct LocalKeyring {
    master: Zeroizing<[u8; MASTER_KEY_LEN]>,
    key_id: String,
}

impl LocalKeyring {
    /// Loads the master key from `path`, creating it (mode 0600) on first run.
    /// An existing file that cannot be read or is not exactly 32 bytes is an
    /// error: silently replacing it would orphan every stored credential.
    pub fn open_or_create(path: &Path) -> Result<LocalKeyring, MasterKeyError> {
        let shown = path.display().to_string();
        match OpenOptions::new().read(true).open(path) {
            Ok(mut file) => {
                let mut bytes = Zeroizing::new(Vec::with_capacity(MASTER_KEY_LEN + 1));
                // Read one byte more than needed, to tell "too long" from "right".
                Read::by_ref(&mut file)
                    .take(MASTER_KEY_LEN as u64 + 1)
                    .read_to_end(&mut bytes)
                    .map_err(|source| MasterKeyError::Unreadable {
                        path: shown.clone(),
                        source,
                    })?;
                if bytes.len() != MASTER_KEY_LEN {
                    return Err(MasterKeyError::Malformed {
                        path: shown,
                        found: bytes.len(),
                    });
                }
                let mut master = Zeroizing::new([0u8; MASTER_KEY_LEN]);
                master.copy_from_slice(&bytes);
                Ok(LocalKeyring::from_master(master))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Self::create(path),
            Err(source) => Err(MasterKeyError::Unreadable { path: shown, source }),
        }
    }

    fn create(path: &Path) -> Result<LocalKeyring, MasterKeyError> {
        let shown = path.display().to_string();
        let create_err = |source| MasterKeyError::Create {
            path: shown.clone(),
            source,
        };
        let mut master = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        aws_lc_rs::rand::fill(master.as_mut_slice()).map_err(|_| create_err(std::io::Error::other("no randomness")))?;
        // create_new: if another process made the file meanwhile, use theirs.
        let mut file = match OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return Self::open_or_create(path),
            Err(e) => return Err(create_err(e)),
        };
        file.write_all(master.as_slice())
            .and_then(|()| file.sync_all())
            .map_err(create_err)?;
        // The mode above is filtered by the umask; make sure it is 0600.
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(create_err)?;
        Ok(LocalKeyring::from_master(master))
    }

    /// A keyring over a given master key (tests, tools).
    pub fn from_master(master: Zeroizing<[u8; MASTER_KEY_LEN]>) -> LocalKeyring {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, master.as_slice());
        let fingerprint = crate::ids::hex(&digest.as_ref()[..8]);
        LocalKeyring {
            master,
            key_id: format!("local:{fingerprint}"),
        }
    }

    /// The master key's id (a fingerprint), stored with every sealed key.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }
}

#[async_trait]
impl Keyring for LocalKeyring {
    async fn generate_data_key(&self, context: &EncryptionContext) -> Result<DataKey, KeyringError> {
        let mut plaintext = Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::fill(plaintext.as_mut_slice()).map_err(|_| KeyringError::Internal("no randomness".into()))?;
        let (nonce, sealed) = aes_gcm_seal(&self.master, &envelope::aad(context), plaintext.as_slice())?;
        let mut wrapped = nonce;
        wrapped.extend_from_slice(&sealed);
        Ok(DataKey {
            plaintext,
            wrapped,
            key_id: self.key_id.clone(),
        })
    }

    async fn decrypt_data_key(
        &self,
        wrapped: WrappedKey<'_>,
        context: &EncryptionContext,
    ) -> Result<Zeroizing<[u8; 32]>, KeyringError> {
        if wrapped.key_id != self.key_id {
            return Err(KeyringError::Rejected);
        }
        if wrapped.bytes.len() < aws_lc_rs::aead::NONCE_LEN {
            return Err(KeyringError::Rejected);
        }
        let (nonce, sealed) = wrapped.bytes.split_at(aws_lc_rs::aead::NONCE_LEN);
        let opened = aes_gcm_open(&self.master, &envelope::aad(context), nonce, sealed)?;
        if opened.len() != 32 {
            return Err(KeyringError::Rejected);
        }
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&opened);
        Ok(key)
    }
}
