//! Where spec documents live. Objects are immutable and content-addressed, so a
//! key, once written, always means the same bytes: callers write the object
//! before committing the row that points at it, and readers may cache forever.

mod cache;
mod fs;
mod gcs;
mod memory;
mod s3;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub use cache::{CachedSpecStore, StoreMetrics};
pub use fs::FsSpecStore;
pub use gcs::{GcsOptions, GcsSpecStore};
pub use memory::MemorySpecStore;
pub use s3::{S3Options, S3SpecStore};

/// Why a store call failed. `Missing` is a bug or lost data (a row points at an
/// object that is not there); `Unavailable` is an outage worth retrying.
#[derive(Debug, Clone)]
pub enum StoreError {
    Missing(String),
    Unavailable(String),
}

impl From<StoreError> for crate::error::AppError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Missing(key) => {
                tracing::error!(
                    %key,
                    "spec object missing from the spec store; instances that share a database must share the spec store"
                );
                crate::error::AppError::SpecMissing { key }
            }
            StoreError::Unavailable(reason) => {
                tracing::warn!(%reason, "spec store unavailable");
                crate::error::AppError::StorageUnavailable(reason)
            }
        }
    }
}

/// What a `put` found. Keys are content-addressed, so an object that is
/// already there holds exactly these bytes and is left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Written,
    AlreadyPresent,
}

#[async_trait]
pub trait SpecStore: Send + Sync {
    /// Stores `bytes` under `key`. Writing an existing key is a cheap no-op,
    /// since the key is derived from the content.
    async fn put(&self, key: &str, bytes: &[u8]) -> Result<PutOutcome, StoreError>;

    /// `Bytes` rather than `Vec<u8>` so that a cached object is shared, not
    /// copied, by every response that shows it.
    async fn get(&self, key: &str) -> Result<Bytes, StoreError>;

    /// Fetches several objects concurrently; the default runs `get` for each,
    /// bounded so that a page of specs does not open a socket per row at once.
    /// [`CachedSpecStore`], which every server runs behind, overrides this
    /// with its configured bound.
    async fn get_many(&self, keys: &[String]) -> Result<Vec<(String, Bytes)>, StoreError> {
        use futures::{StreamExt, TryStreamExt};
        futures::stream::iter(keys.iter().cloned())
            .map(|key| async move {
                let bytes = self.get(&key).await?;
                Ok::<_, StoreError>((key, bytes))
            })
            .buffer_unordered(16)
            .try_collect()
            .await
    }

    /// The object if it is already in memory, without any I/O. Lets a
    /// resolver answer a cached spec at once instead of waiting out a
    /// DataLoader batch window; the default (no memory) says `None`.
    async fn cached(&self, _key: &str) -> Option<Bytes> {
        None
    }

    /// Cheap reachability check for `/readyz`.
    async fn check(&self) -> Result<(), StoreError>;

    /// Counters for `/metrics`; only the caching wrapper keeps them, so that
    /// every backend is counted the same way.
    fn metrics(&self) -> Option<&StoreMetrics> {
        None
    }
}

pub type SharedSpecStore = Arc<dyn SpecStore>;

/// A spec object's text, the same for every reader (GraphQL and MCP). Specs
/// are stored as the UTF-8 they were written as; a damaged object still
/// reads, with replacement characters where its bytes are not UTF-8.
pub fn spec_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// What a spec row records about its object.
#[derive(Debug, Clone)]
pub struct StoredSpec {
    pub key: String,
    pub sha256: String,
    pub size: i64,
}

/// Which kind of document a spec belongs to, for its key.
#[derive(Debug, Clone, Copy)]
pub enum SpecOwner {
    Plan(Uuid),
    Feature(Uuid),
}

/// `projects/{project}/plans/{plan}/{sha256}.md`, likewise for features.
pub fn spec_key(project: Uuid, owner: SpecOwner, content: &str) -> StoredSpec {
    let sha256 = hex::encode(Sha256::digest(content.as_bytes()));
    let (kind, id) = match owner {
        SpecOwner::Plan(id) => ("plans", id),
        SpecOwner::Feature(id) => ("features", id),
    };
    StoredSpec {
        key: format!("projects/{project}/{kind}/{id}/{sha256}.md"),
        sha256,
        size: content.len() as i64,
    }
}

/// Writes a spec and returns what its row must record.
pub async fn store_spec(
    store: &dyn SpecStore,
    project: Uuid,
    owner: SpecOwner,
    content: &str,
) -> Result<StoredSpec, StoreError> {
    let spec = spec_key(project, owner, content);
    store.put(&spec.key, content.as_bytes()).await?;
    Ok(spec)
}

/// Where `plangraph admin check-store` writes its probe. It is a fixed,
/// tiny object rather than one per run because no backend is asked to delete
/// anything, so repeated checks must not pile up objects.
pub const PROBE_KEY: &str = ".plangraph/probe.md";
const PROBE_CONTENT: &[u8] = b"plangraph spec store probe\n";

/// Proves a store usable end to end: writes the probe object, reads it back,
/// compares, then runs the `/readyz` check. The error says which step failed.
pub async fn probe(store: &dyn SpecStore) -> Result<(), String> {
    store.put(PROBE_KEY, PROBE_CONTENT).await.map_err(|error| {
        format!(
            "writing the probe object {PROBE_KEY} failed: {}",
            error.reason()
        )
    })?;
    let read = store.get(PROBE_KEY).await.map_err(|error| {
        format!(
            "reading the probe object {PROBE_KEY} back failed: {}",
            error.reason()
        )
    })?;
    if read != PROBE_CONTENT {
        return Err(format!(
            "the probe object {PROBE_KEY} read back differs from what was written ({} bytes instead of {})",
            read.len(),
            PROBE_CONTENT.len()
        ));
    }
    store
        .check()
        .await
        .map_err(|error| format!("the readiness check failed: {}", error.reason()))
}

/// `PREFIX/key`, or `key` alone without a prefix: how the bucket stores
/// (gcs, s3) name objects.
fn in_prefix(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}/{key}")
    }
}

/// The `/readyz` check of the bucket stores: read the small probe object,
/// writing it on the first check. A read proves credentials, bucket and
/// network as well as any bucket-metadata call would, and needs no
/// permission beyond the object ones the server uses anyway.
async fn check_with_probe(store: &(impl SpecStore + ?Sized)) -> Result<(), StoreError> {
    match store.get(PROBE_KEY).await {
        Ok(_) => Ok(()),
        Err(StoreError::Missing(_)) => store.put(PROBE_KEY, PROBE_CONTENT).await.map(|_| ()),
        Err(error) => Err(error),
    }
}

/// For the bucket stores' unit tests: what a client sends to an endpoint
/// that reads one request until it contains `until` and hangs up
/// unanswered (so the client's call fails). Returns the endpoint's URL and
/// the request, once the call has been made.
#[cfg(test)]
async fn first_request_to(until: &'static str) -> (String, tokio::task::JoinHandle<String>) {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("address"));
    let capture = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut request = Vec::new();
        let mut buffer = [0; 4096];
        while !String::from_utf8_lossy(&request).contains(until) {
            let read = socket.read(&mut buffer).await.expect("read");
            if read == 0 {
                break;
            }
            request.extend_from_slice(&buffer[..read]);
        }
        String::from_utf8_lossy(&request).into_owned()
    });
    (endpoint, capture)
}

impl StoreError {
    /// One line for logs and the operator. Deliberately not `Display`, for the
    /// reason given on `AppError`: a `Display` error would slip into a
    /// resolver's `?` without its `extensions.code`.
    pub fn reason(&self) -> String {
        match self {
            StoreError::Missing(key) => format!("object {key} does not exist"),
            StoreError::Unavailable(reason) => reason.clone(),
        }
    }
}
