//! Where spec documents live. Objects are immutable and content-addressed, so a
//! key, once written, always means the same bytes: callers write the object
//! before committing the row that points at it, and readers may cache forever.

mod fs;
mod memory;

use std::sync::Arc;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub use fs::FsSpecStore;
pub use memory::MemorySpecStore;

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
                tracing::error!(%key, "spec object missing");
                crate::error::AppError::Internal(format!("spec object {key} is missing"))
            }
            StoreError::Unavailable(reason) => {
                tracing::warn!(%reason, "spec store unavailable");
                crate::error::AppError::StorageUnavailable(reason)
            }
        }
    }
}

#[async_trait]
pub trait SpecStore: Send + Sync {
    /// Stores `bytes` under `key`. Writing an existing key is a cheap no-op,
    /// since the key is derived from the content.
    async fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError>;

    async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError>;

    /// Fetches several objects concurrently; the default runs `get` for each,
    /// bounded so that a page of specs does not open a socket per row at once.
    async fn get_many(&self, keys: &[String]) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
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

    /// Cheap reachability check for `/readyz`.
    async fn check(&self) -> Result<(), StoreError>;
}

pub type SharedSpecStore = Arc<dyn SpecStore>;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_content_addressed() {
        let project = Uuid::now_v7();
        let plan = Uuid::now_v7();
        let first = spec_key(project, SpecOwner::Plan(plan), "# spec");
        let same = spec_key(project, SpecOwner::Plan(plan), "# spec");
        let other = spec_key(project, SpecOwner::Plan(plan), "# spec v2");
        assert_eq!(first.key, same.key);
        assert_ne!(first.key, other.key);
        assert_eq!(
            first.key,
            format!("projects/{project}/plans/{plan}/{}.md", first.sha256)
        );
        assert_eq!(first.size, 6);
        let feature = spec_key(project, SpecOwner::Feature(plan), "# spec");
        assert!(feature.key.contains("/features/"));
    }
}
