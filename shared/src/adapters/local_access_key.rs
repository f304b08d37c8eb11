//! The local server's AWS access key: the one credential its AWS-shaped doors
//! (Lambda Invoke, the `@connections` Management API, KMS `Decrypt`) accept.
//! Made once, on first start, in a file of the data directory (mode 0600,
//! so only processes of the same user can read it) and reused afterwards.
//!
//! The file is in the AWS shared-credentials format, so a consumer can point
//! `AWS_SHARED_CREDENTIALS_FILE` at it:
//!
//! ```ini
//! [default]
//! aws_access_key_id = AKIALOCAL...
//! aws_secret_access_key = ...
//! ```

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};

/// The prefix of the generated key ids (AWS's are `AKIA` + 16 characters).
pub const ACCESS_KEY_ID_PREFIX: &str = "AKIALOCAL";

/// An access key id and its secret; `Debug` never shows the secret.
#[derive(Clone)]
pub struct LocalAccessKey {
    access_key_id: String,
    secret: SecretString,
}

impl std::fmt::Debug for LocalAccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalAccessKey")
            .field("access_key_id", &self.access_key_id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Why the credentials file cannot be used; the server refuses to start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AccessKeyError(String);

impl LocalAccessKey {
    /// A key pair from its parts (tests, tools).
    pub fn new(access_key_id: impl Into<String>, secret: impl Into<String>) -> LocalAccessKey {
        LocalAccessKey {
            access_key_id: access_key_id.into(),
            secret: SecretString::from(secret.into()),
        }
    }

    /// The access key id (not secret: it is printed in the banner).
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    /// The secret access key.
    pub fn secret(&self) -> &SecretString {
        &self.secret
    }

    /// Reads the key pair from `path`, creating it (mode 0600) on first run.
    /// An existing file that is not readable or holds no key pair is an
    /// error rather than replaced: consumers may be configured with it.
    pub fn open_or_create(path: &Path) -> Result<LocalAccessKey, AccessKeyError> {
        let shown = path.display();
        match fs::read_to_string(path) {
            Ok(text) => Self::parse(&text).ok_or_else(|| {
                AccessKeyError(format!(
                    "the credentials file {shown} holds no [default] aws_access_key_id and \
                     aws_secret_access_key; fix or delete it (a new one is then made)"
                ))
            }),
            Err(e) if e.kind() == ErrorKind::NotFound => Self::create(path),
            Err(e) => Err(AccessKeyError(format!("cannot read the credentials file {shown}: {e}"))),
        }
    }

    /// The `[default]` profile's key pair in shared-credentials INI text.
    pub fn parse(text: &str) -> Option<LocalAccessKey> {
        let (mut section, mut id, mut secret) = (String::new(), None, None);
        for line in text.lines().map(str::trim) {
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.trim().to_owned();
            } else if section == "default"
                && let Some((name, value)) = line.split_once('=')
            {
                match name.trim() {
                    "aws_access_key_id" => id = Some(value.trim().to_owned()),
                    "aws_secret_access_key" => secret = Some(value.trim().to_owned()),
                    _ => {}
                }
            }
        }
        match (id, secret) {
            (Some(id), Some(secret)) if !id.is_empty() && !secret.is_empty() => Some(LocalAccessKey::new(id, secret)),
            _ => None,
        }
    }

    /// The file's text for this key pair.
    fn to_ini(&self) -> String {
        format!(
            "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            self.access_key_id,
            self.secret.expose_secret()
        )
    }

    /// A fresh key pair: `AKIALOCAL` + 11 random upper-case letters and
    /// digits (20 characters, like AWS's ids), and a 40-character secret.
    fn generate() -> Result<LocalAccessKey, AccessKeyError> {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        let no_randomness = |_| AccessKeyError("no randomness".to_owned());
        let mut id_bytes = [0u8; 11];
        aws_lc_rs::rand::fill(&mut id_bytes).map_err(no_randomness)?;
        let suffix: String = id_bytes
            .iter()
            .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
            .collect();
        let mut secret = zeroize::Zeroizing::new([0u8; 30]);
        aws_lc_rs::rand::fill(secret.as_mut_slice()).map_err(no_randomness)?;
        Ok(LocalAccessKey::new(
            format!("{ACCESS_KEY_ID_PREFIX}{suffix}"),
            base64::engine::general_purpose::STANDARD.encode(secret.as_slice()),
        ))
    }

    fn create(path: &Path) -> Result<LocalAccessKey, AccessKeyError> {
        let shown = path.display();
        let create_err = |e: std::io::Error| AccessKeyError(format!("cannot create the credentials file {shown}: {e}"));
        let key = Self::generate()?;
        // create_new: if another process made the file meanwhile, use theirs.
        let mut file = match OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return Self::open_or_create(path),
            Err(e) => return Err(create_err(e)),
        };
        let text = zeroize::Zeroizing::new(key.to_ini());
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(create_err)?;
        // The mode above is filtered by the umask; make sure it is 0600.
        fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(create_err)?;
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_pair_is_made_once_and_read_back() {
        let dir = std::env::temp_dir().join(format!("mailmind-access-key-{}", crate::ids::random_hex(6)));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("aws-credentials");
        let made = LocalAccessKey::open_or_create(&path).unwrap();
        assert!(made.access_key_id().starts_with(ACCESS_KEY_ID_PREFIX));
        assert_eq!(made.access_key_id().len(), 20);
        assert_eq!(made.secret().expose_secret().len(), 40);
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let again = LocalAccessKey::open_or_create(&path).unwrap();
        assert_eq!(again.access_key_id(), made.access_key_id());
        assert_eq!(again.secret().expose_secret(), made.secret().expose_secret());
        assert!(!format!("{made:?}").contains(made.secret().expose_secret()));
        fs::write(&path, "[other]\naws_access_key_id = x\n").unwrap();
        assert!(LocalAccessKey::open_or_create(&path).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_the_default_profile_counts() {
        let key = LocalAccessKey::parse(
            "[other]\naws_access_key_id = NO\naws_secret_access_key = NO\n\n[default]\n\
             aws_access_key_id=AKIALOCALX\n aws_secret_access_key = s/e+c \n",
        )
        .unwrap();
        assert_eq!(key.access_key_id(), "AKIALOCALX");
        assert_eq!(key.secret().expose_secret(), "s/e+c");
        assert!(LocalAccessKey::parse("[default]\naws_access_key_id = x\n").is_none());
    }
}
