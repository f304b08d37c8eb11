//! The client's two memories: unwrapped data keys (always on), so a warm
//! resolve of a known key costs no KMS call, and sealed records (off by
//! default), so a repeated resolve costs no invoke either.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

/// A bounded map whose entries live at most `lifetime`.
///
/// The table is allocated once for `capacity` entries and never holds more
/// (the oldest entry is evicted first), so it never grows and frees an old
/// table. Values sit behind a `Box`: a rehash in place moves the pointer,
/// never the value's bytes, and a dropped value wipes itself when it is
/// `Zeroizing`.
pub(crate) struct Expiring<K, V> {
    lifetime: Duration,
    capacity: usize,
    entries: Mutex<Table<K, V>>,
}

/// Each entry with when it was stored and its place in the insertion order.
struct Table<K, V> {
    map: HashMap<K, (Instant, u64, Box<V>)>,
    inserted: u64,
}

impl<K: Eq + Hash + Clone, V: Clone> Expiring<K, V> {
    pub(crate) fn new(capacity: usize, lifetime: Duration) -> Self {
        Expiring {
            lifetime,
            capacity: capacity.max(1),
            entries: Mutex::new(Table {
                map: HashMap::with_capacity(capacity.max(1)),
                inserted: 0,
            }),
        }
    }

    /// A copy of the live value under `key`.
    pub(crate) fn get(&self, key: &K) -> Option<V> {
        let mut table = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match table.map.get(key) {
            Some((stored, _, value)) if stored.elapsed() < self.lifetime => Some(V::clone(value)),
            Some(_) => {
                table.map.remove(key);
                None
            }
            None => None,
        }
    }

    pub(crate) fn insert(&self, key: K, value: V) {
        let mut table = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let map = &mut table.map;
        if !map.contains_key(&key) && map.len() >= self.capacity {
            let lifetime = self.lifetime;
            map.retain(|_, (stored, _, _)| stored.elapsed() < lifetime);
            if map.len() >= self.capacity {
                let oldest = map
                    .iter()
                    .min_by_key(|(_, (_, order, _))| *order)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    map.remove(&oldest);
                }
            }
        }
        table.inserted += 1;
        let order = table.inserted;
        table.map.insert(key, (Instant::now(), order, Box::new(value)));
    }

    pub(crate) fn remove(&self, key: &K) {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).map.remove(key);
    }

    #[cfg(test)]
    fn capacity_and_len(&self) -> (usize, usize) {
        let table = self.entries.lock().unwrap();
        (table.map.capacity(), table.map.len())
    }
}

/// What a data key is unwrapped from: everything KMS's answer depends on.
/// A record copied to another user's row is another entry, so it still goes
/// to KMS, which refuses it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct DataKeyId {
    pub kms_key_id: String,
    pub wrapped: Vec<u8>,
    pub user: String,
    pub provider: String,
}

/// Unwrapped data keys, wiped when they leave.
pub(crate) type DataKeys = Expiring<DataKeyId, Zeroizing<[u8; 32]>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_never_grows_and_the_oldest_entry_leaves_first() {
        let cache: Expiring<u32, Zeroizing<[u8; 32]>> = Expiring::new(4, Duration::from_secs(60));
        let (capacity, _) = cache.capacity_and_len();
        for i in 0..100u32 {
            cache.insert(i, Zeroizing::new([i as u8; 32]));
            let (now, len) = cache.capacity_and_len();
            assert_eq!(now, capacity, "the table was reallocated at entry {i}");
            assert!(len <= 4);
        }
        assert!(cache.get(&95).is_none(), "the oldest entries were evicted");
        assert_eq!(cache.get(&99).map(|k| k[0]), Some(99));
    }

    #[test]
    fn entries_expire() {
        let cache: Expiring<u32, u32> = Expiring::new(4, Duration::ZERO);
        cache.insert(1, 1);
        assert_eq!(cache.get(&1), None);
        let cache: Expiring<u32, u32> = Expiring::new(4, Duration::from_secs(60));
        cache.insert(1, 1);
        assert_eq!(cache.get(&1), Some(1));
        cache.remove(&1);
        assert_eq!(cache.get(&1), None);
    }
}
