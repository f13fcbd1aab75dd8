use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use bytes::Bytes;

use super::{PutOutcome, SpecStore, StoreError};

/// In-process store for unit tests and throwaway servers. It can be switched
/// "offline" to exercise outage handling, and counts reads so tests can prove
/// laziness and batching.
#[derive(Default)]
pub struct MemorySpecStore {
    objects: Mutex<HashMap<String, Bytes>>,
    offline: AtomicBool,
    reads: AtomicUsize,
}

impl MemorySpecStore {
    pub fn set_offline(&self, offline: bool) {
        self.offline.store(offline, Ordering::SeqCst);
    }

    pub fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }

    fn ensure_online(&self) -> Result<(), StoreError> {
        if self.offline.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable(
                "memory store switched offline".into(),
            ))
        } else {
            Ok(())
        }
    }

    fn objects(&self) -> std::sync::MutexGuard<'_, HashMap<String, Bytes>> {
        // A panic while holding the lock cannot leave the map half-written
        // (every operation is a single insert or clone), so poison is harmless.
        self.objects
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

#[async_trait]
impl SpecStore for MemorySpecStore {
    async fn put(&self, key: &str, bytes: &[u8]) -> Result<PutOutcome, StoreError> {
        use std::collections::hash_map::Entry;
        self.ensure_online()?;
        match self.objects().entry(key.to_owned()) {
            Entry::Occupied(_) => Ok(PutOutcome::AlreadyPresent),
            Entry::Vacant(entry) => {
                entry.insert(Bytes::copy_from_slice(bytes));
                Ok(PutOutcome::Written)
            }
        }
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        self.ensure_online()?;
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.objects()
            .get(key)
            .cloned()
            .ok_or_else(|| StoreError::Missing(key.to_owned()))
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.ensure_online()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trips_and_goes_offline() {
        let store = MemorySpecStore::default();
        store.put("a", b"one").await.expect("put");
        assert_eq!(store.get("a").await.expect("get"), &b"one"[..]);
        assert!(matches!(store.get("b").await, Err(StoreError::Missing(_))));
        store.set_offline(true);
        assert!(matches!(
            store.get("a").await,
            Err(StoreError::Unavailable(_))
        ));
        store.set_offline(false);
        let many = store.get_many(&["a".to_owned()]).await.expect("get_many");
        assert_eq!(many, vec![("a".to_owned(), Bytes::from_static(b"one"))]);
    }
}
