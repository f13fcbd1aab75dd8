//! The in-process cache every spec store runs behind, and the counters that
//! `/metrics` shows. Keys are content-addressed, so a cached object can never
//! go stale: the cache only has to stay within its byte budget.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use moka::future::Cache;

use super::{PutOutcome, SharedSpecStore, SpecStore, StoreError};

/// Wraps any store with a byte-bounded cache for reads and with a bounded
/// number of concurrent object reads per batch.
pub struct CachedSpecStore {
    inner: SharedSpecStore,
    cache: Cache<String, Bytes>,
    fetch_concurrency: usize,
    /// Whether objects are kept at all (`cache_bytes` above 0).
    caching: bool,
    metrics: StoreMetrics,
}

impl CachedSpecStore {
    /// `cache_bytes` of 0 disables caching (every read goes to the store);
    /// `fetch_concurrency` is raised to at least 1.
    pub fn new(inner: SharedSpecStore, cache_bytes: u64, fetch_concurrency: usize) -> Self {
        let cache = Cache::builder()
            .max_capacity(cache_bytes)
            // Weigh by bytes held, so the budget is memory and not a count of
            // specs whose sizes range from a line to a megabyte.
            .weigher(|key: &String, value: &Bytes| {
                u32::try_from(key.len() + value.len()).unwrap_or(u32::MAX)
            })
            .build();
        CachedSpecStore {
            inner,
            cache,
            fetch_concurrency: fetch_concurrency.max(1),
            caching: cache_bytes > 0,
            metrics: StoreMetrics::default(),
        }
    }

    /// One read from the backing store, counted.
    async fn fetch(&self, key: &str) -> Result<Bytes, StoreError> {
        let metrics = &self.metrics;
        metrics.gets.fetch_add(1, Ordering::Relaxed);
        let in_flight = metrics.gets_in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        metrics
            .gets_in_flight_max
            .fetch_max(in_flight, Ordering::Relaxed);
        let result = self.inner.get(key).await;
        metrics.gets_in_flight.fetch_sub(1, Ordering::Relaxed);
        if result.is_err() {
            metrics.get_errors.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// A read through the cache. Concurrent misses of one key (two requests
    /// showing the same plan) share a single store read. With the cache off
    /// the read goes straight to the store: a cache of no capacity would
    /// only add an insertion and an eviction to every read, and its
    /// bookkeeping can hold reads back behind each other.
    async fn load(&self, key: &str) -> Result<Bytes, StoreError> {
        if !self.caching {
            return self.fetch(key).await;
        }
        self.cache
            .try_get_with_by_ref(key, self.fetch(key))
            .await
            .map_err(|error| (*error).clone())
    }
}

#[async_trait]
impl SpecStore for CachedSpecStore {
    /// Writes are not cached: a spec is written far more often than it is
    /// read back at once, and the budget is better spent on what is read.
    async fn put(&self, key: &str, bytes: &[u8]) -> Result<PutOutcome, StoreError> {
        let metrics = &self.metrics;
        metrics.puts.fetch_add(1, Ordering::Relaxed);
        let result = self.inner.put(key, bytes).await;
        match &result {
            Ok(PutOutcome::Written) => {}
            Ok(PutOutcome::AlreadyPresent) => {
                metrics.puts_already_present.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                metrics.put_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        if let Some(bytes) = self.cache.get(key).await {
            self.metrics.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(bytes);
        }
        self.metrics.cache_misses.fetch_add(1, Ordering::Relaxed);
        self.load(key).await
    }

    async fn cached(&self, key: &str) -> Option<Bytes> {
        let bytes = self.cache.get(key).await?;
        self.metrics.cache_hits.fetch_add(1, Ordering::Relaxed);
        Some(bytes)
    }

    /// Cached objects are answered at once; the misses go to the store as
    /// one batch of concurrent reads. A missing object is left out of the
    /// result (its field reports it) instead of failing the whole page; an
    /// outage fails the batch as soon as one read reports it.
    async fn get_many(&self, keys: &[String]) -> Result<Vec<(String, Bytes)>, StoreError> {
        let mut found = Vec::with_capacity(keys.len());
        let mut misses = Vec::new();
        for key in keys {
            match self.cache.get(key).await {
                Some(bytes) => found.push((key.clone(), bytes)),
                None => misses.push(key.clone()),
            }
        }
        let metrics = &self.metrics;
        metrics
            .cache_hits
            .fetch_add(found.len() as u64, Ordering::Relaxed);
        metrics
            .cache_misses
            .fetch_add(misses.len() as u64, Ordering::Relaxed);
        if misses.is_empty() {
            return Ok(found);
        }
        metrics.batches.fetch_add(1, Ordering::Relaxed);
        metrics
            .batch_keys
            .fetch_add(misses.len() as u64, Ordering::Relaxed);
        let fetched: Vec<Option<(String, Bytes)>> = futures::stream::iter(misses)
            .map(|key| async move {
                match self.load(&key).await {
                    Ok(bytes) => Ok(Some((key, bytes))),
                    Err(StoreError::Missing(missing)) => {
                        tracing::error!(key = %missing, "spec object missing");
                        Ok(None)
                    }
                    Err(error) => Err(error),
                }
            })
            .buffer_unordered(self.fetch_concurrency)
            .try_collect()
            .await?;
        found.extend(fetched.into_iter().flatten());
        Ok(found)
    }

    async fn check(&self) -> Result<(), StoreError> {
        let metrics = &self.metrics;
        metrics.checks.fetch_add(1, Ordering::Relaxed);
        let result = self.inner.check().await;
        if result.is_err() {
            metrics.check_errors.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn metrics(&self) -> Option<&StoreMetrics> {
        Some(&self.metrics)
    }
}

/// Counters of store traffic since the process started. Plain atomics: they
/// are bumped on every read, and a few relaxed adds cost nothing next to I/O.
#[derive(Debug, Default)]
pub struct StoreMetrics {
    gets: AtomicU64,
    get_errors: AtomicU64,
    gets_in_flight: AtomicU64,
    gets_in_flight_max: AtomicU64,
    puts: AtomicU64,
    put_errors: AtomicU64,
    puts_already_present: AtomicU64,
    checks: AtomicU64,
    check_errors: AtomicU64,
    batches: AtomicU64,
    batch_keys: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
}

impl StoreMetrics {
    /// The counters in the Prometheus text exposition format.
    pub fn prometheus_text(&self) -> String {
        let value = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let mut text = String::new();
        let mut family = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(text, "# HELP {name} {help}");
            let _ = writeln!(text, "# TYPE {name} {kind}");
            for (labels, sample) in samples {
                let _ = writeln!(text, "{name}{labels} {sample}");
            }
        };
        family(
            "plangraph_spec_store_calls_total",
            "counter",
            "Calls made to the spec store behind the cache, by operation.",
            &[
                ("{operation=\"get\"}", value(&self.gets)),
                ("{operation=\"put\"}", value(&self.puts)),
                ("{operation=\"check\"}", value(&self.checks)),
            ],
        );
        family(
            "plangraph_spec_store_errors_total",
            "counter",
            "Spec store calls that failed (outage or missing object), by operation.",
            &[
                ("{operation=\"get\"}", value(&self.get_errors)),
                ("{operation=\"put\"}", value(&self.put_errors)),
                ("{operation=\"check\"}", value(&self.check_errors)),
            ],
        );
        family(
            "plangraph_spec_store_puts_already_present_total",
            "counter",
            "Spec writes whose content-addressed object already existed and was left alone.",
            &[("", value(&self.puts_already_present))],
        );
        family(
            "plangraph_spec_store_batches_total",
            "counter",
            "Batched spec reads that reached the store (at least one cache miss).",
            &[("", value(&self.batches))],
        );
        family(
            "plangraph_spec_store_batch_keys_total",
            "counter",
            "Objects requested from the store by those batches.",
            &[("", value(&self.batch_keys))],
        );
        family(
            "plangraph_spec_store_gets_in_flight",
            "gauge",
            "Object reads from the store running right now.",
            &[("", value(&self.gets_in_flight))],
        );
        family(
            "plangraph_spec_store_gets_in_flight_max",
            "gauge",
            "Most object reads from the store ever running at once.",
            &[("", value(&self.gets_in_flight_max))],
        );
        family(
            "plangraph_spec_cache_hits_total",
            "counter",
            "Spec reads answered by the in-process cache.",
            &[("", value(&self.cache_hits))],
        );
        family(
            "plangraph_spec_cache_misses_total",
            "counter",
            "Spec reads the in-process cache could not answer.",
            &[("", value(&self.cache_misses))],
        );
        text
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::storage::MemorySpecStore;

    fn keys(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    #[tokio::test]
    async fn a_second_read_is_a_hit_and_never_reaches_the_store() {
        let memory = Arc::new(MemorySpecStore::default());
        memory.put("a", b"one").await.expect("put");
        memory.put("b", b"two").await.expect("put");
        let store = CachedSpecStore::new(memory.clone(), 1024, 4);
        let first = store.get_many(&keys(&["a", "b"])).await.expect("first");
        let second = store.get_many(&keys(&["a", "b"])).await.expect("second");
        assert_eq!(first.len(), 2);
        assert_eq!(second.len(), 2);
        assert_eq!(memory.reads(), 2, "only the first batch reads the store");
        let text = store.metrics().expect("metrics").prometheus_text();
        assert!(
            text.contains("plangraph_spec_cache_hits_total 2\n"),
            "{text}"
        );
        assert!(
            text.contains("plangraph_spec_cache_misses_total 2\n"),
            "{text}"
        );
        assert!(
            text.contains("plangraph_spec_store_batches_total 1\n"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_missing_object_leaves_the_rest_of_the_batch_intact() {
        let memory = Arc::new(MemorySpecStore::default());
        memory.put("a", b"one").await.expect("put");
        let store = CachedSpecStore::new(memory, 1024, 4);
        let found = store.get_many(&keys(&["a", "gone"])).await.expect("batch");
        assert_eq!(found, vec![("a".to_owned(), Bytes::from_static(b"one"))]);
    }

    #[tokio::test]
    async fn an_outage_fails_the_batch_and_is_not_cached() {
        let memory = Arc::new(MemorySpecStore::default());
        memory.put("a", b"one").await.expect("put");
        let store = CachedSpecStore::new(memory.clone(), 1024, 4);
        memory.set_offline(true);
        assert!(matches!(
            store.get_many(&keys(&["a"])).await,
            Err(StoreError::Unavailable(_))
        ));
        memory.set_offline(false);
        let found = store.get_many(&keys(&["a"])).await.expect("recovered");
        assert_eq!(found.len(), 1);
    }

    #[tokio::test]
    async fn a_zero_byte_budget_disables_caching() {
        let memory = Arc::new(MemorySpecStore::default());
        memory.put("a", b"one").await.expect("put");
        let store = CachedSpecStore::new(memory.clone(), 0, 4);
        store.get("a").await.expect("first");
        store.get("a").await.expect("second");
        assert_eq!(memory.reads(), 2);
    }
}
