//! A warm function's memory of unwrapped data keys, so repeated resolves of
//! the same credential make no KMS call.
//!
//! [`CachingKeyring`] wraps any [`Keyring`] and remembers what
//! `decrypt_data_key` returned, keyed on everything that call depends on:
//! the master key id, the wrapped data key bytes and the encryption context
//! (user and provider). That is safe because unwrapping is a pure function of
//! exactly these inputs: the same wrapped bytes under the same context always
//! unwrap to the same data key, and any other context (a record copied to
//! another user's row) is a different cache entry, so it still goes to the
//! key service and is refused there. The wrapped bytes are also stricter than
//! a key revision: every write seals under a fresh data key, so a replaced
//! key never finds the old entry. Entries live at most [`KEY_TTL`], there are
//! at most [`MAX_ENTRIES`], and a dropped entry is wiped (`Zeroizing`).
//! Wrapping keys (`generate_data_key`) is never cached.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use zeroize::Zeroizing;

use crate::ports::{DataKey, EncryptionContext, Keyring, KeyringError, WrappedKey};

/// How long an unwrapped data key may be reused.
pub const KEY_TTL: Duration = Duration::from_secs(5 * 60);

/// Most data keys held at once (32 bytes each, plus the lookup key).
pub const MAX_ENTRIES: usize = 256;

#[derive(Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    key_id: String,
    wrapped: Vec<u8>,
    user: String,
    provider: &'static str,
}

struct Entry {
    data_key: Zeroizing<[u8; 32]>,
    stored_at: Instant,
}

/// A [`Keyring`] that reuses unwrapped data keys for a while (see the module comment).
pub struct CachingKeyring<K> {
    inner: K,
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<CacheKey, Entry>>,
}

impl<K: Keyring> CachingKeyring<K> {
    /// `inner` with [`KEY_TTL`] and [`MAX_ENTRIES`].
    pub fn new(inner: K) -> CachingKeyring<K> {
        Self::with_limits(inner, KEY_TTL, MAX_ENTRIES)
    }

    /// `inner` with other limits (tests).
    pub fn with_limits(inner: K, ttl: Duration, capacity: usize) -> CachingKeyring<K> {
        CachingKeyring {
            inner,
            ttl,
            capacity: capacity.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// How many data keys are held now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no data key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, Entry>> {
        // Entries are whole values: a panic elsewhere cannot leave one half-written.
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lookup(&self, key: &CacheKey) -> Option<Zeroizing<[u8; 32]>> {
        let mut entries = self.lock();
        let fresh = entries.get(key).map(|e| e.stored_at.elapsed() < self.ttl)?;
        if fresh {
            entries.get(key).map(|e| e.data_key.clone())
        } else {
            entries.remove(key);
            None
        }
    }

    fn remember(&self, key: CacheKey, data_key: &Zeroizing<[u8; 32]>) {
        let mut entries = self.lock();
        let ttl = self.ttl;
        entries.retain(|_, e| e.stored_at.elapsed() < ttl);
        while entries.len() >= self.capacity {
            let oldest = entries.iter().min_by_key(|(_, e)| e.stored_at).map(|(k, _)| k.clone());
            match oldest {
                Some(k) => entries.remove(&k),
                None => break,
            };
        }
        entries.insert(
            key,
            Entry {
                data_key: data_key.clone(),
                stored_at: Instant::now(),
            },
        );
    }
}

#[async_trait]
impl<K: Keyring> Keyring for CachingKeyring<K> {
    async fn generate_data_key(&self, context: &EncryptionContext) -> Result<DataKey, KeyringError> {
        self.inner.generate_data_key(context).await
    }

    async fn decrypt_data_key(
        &self,
        wrapped: WrappedKey<'_>,
        context: &EncryptionContext,
    ) -> Result<Zeroizing<[u8; 32]>, KeyringError> {
        let key = CacheKey {
            key_id: wrapped.key_id.to_owned(),
            wrapped: wrapped.bytes.to_vec(),
            user: context.user.as_str().to_owned(),
            provider: context.provider.id,
        };
        if let Some(data_key) = self.lookup(&key) {
            return Ok(data_key);
        }
        // Only successes are remembered: a refusal is asked again next time.
        let data_key = self.inner.decrypt_data_key(wrapped, context).await?;
        self.remember(key, &data_key);
        Ok(data_key)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::domain::UserId;

    /// Unwraps by XOR with the context's length, counting calls; refuses user "mallory".
    #[derive(Default)]
    struct Counting(AtomicUsize);

    #[async_trait]
    impl Keyring for Counting {
        async fn generate_data_key(&self, _: &EncryptionContext) -> Result<DataKey, KeyringError> {
            Err(KeyringError::Internal("not used".into()))
        }

        async fn decrypt_data_key(
            &self,
            wrapped: WrappedKey<'_>,
            context: &EncryptionContext,
        ) -> Result<Zeroizing<[u8; 32]>, KeyringError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            if context.user.as_str() == "mallory" {
                return Err(KeyringError::Rejected);
            }
            Ok(Zeroizing::new([wrapped.bytes[0]; 32]))
        }
    }

    fn wrapped(bytes: &[u8]) -> WrappedKey<'_> {
        WrappedKey { key_id: "k", bytes }
    }

    fn context(user: &str) -> EncryptionContext {
        EncryptionContext::new(
            &UserId::parse(user).unwrap(),
            crate::domain::provider::find("groq").unwrap(),
        )
    }

    #[tokio::test]
    async fn a_second_unwrap_is_served_from_memory_per_context_and_bytes() {
        let cache = CachingKeyring::new(Counting::default());
        let a = cache
            .decrypt_data_key(wrapped(&[1, 2]), &context("alice"))
            .await
            .unwrap();
        let b = cache
            .decrypt_data_key(wrapped(&[1, 2]), &context("alice"))
            .await
            .unwrap();
        assert_eq!(*a, *b);
        assert_eq!(cache.inner.0.load(Ordering::SeqCst), 1);
        // Other bytes (a replaced key) or another owner: asked again.
        cache
            .decrypt_data_key(wrapped(&[3, 2]), &context("alice"))
            .await
            .unwrap();
        assert_eq!(cache.inner.0.load(Ordering::SeqCst), 2);
        assert!(matches!(
            cache.decrypt_data_key(wrapped(&[1, 2]), &context("mallory")).await,
            Err(KeyringError::Rejected)
        ));
        assert!(matches!(
            cache.decrypt_data_key(wrapped(&[1, 2]), &context("mallory")).await,
            Err(KeyringError::Rejected)
        ));
        assert_eq!(cache.inner.0.load(Ordering::SeqCst), 4, "refusals are never cached");
    }

    #[tokio::test]
    async fn entries_expire_and_the_cache_stays_bounded() {
        let cache = CachingKeyring::with_limits(Counting::default(), Duration::from_millis(50), 3);
        for byte in 0..10u8 {
            cache
                .decrypt_data_key(wrapped(&[byte]), &context("alice"))
                .await
                .unwrap();
        }
        assert_eq!(cache.len(), 3);
        // The newest are kept.
        cache.decrypt_data_key(wrapped(&[9]), &context("alice")).await.unwrap();
        assert_eq!(cache.inner.0.load(Ordering::SeqCst), 10);
        tokio::time::sleep(Duration::from_millis(80)).await;
        cache.decrypt_data_key(wrapped(&[9]), &context("alice")).await.unwrap();
        assert_eq!(
            cache.inner.0.load(Ordering::SeqCst),
            11,
            "an expired key is unwrapped again"
        );
        assert_eq!(cache.len(), 1, "expired entries are dropped");
    }
}
