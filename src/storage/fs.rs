use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;

use super::{PutOutcome, SpecStore, StoreError};

/// The embedded default: objects as files under a directory. Writes go to a
/// temporary file that is synced and renamed into place, so a crash leaves
/// either the whole object or nothing.
pub struct FsSpecStore {
    root: PathBuf,
}

impl FsSpecStore {
    pub fn new(root: impl Into<PathBuf>) -> FsSpecStore {
        FsSpecStore { root: root.into() }
    }

    /// Keys are built by the server from UUIDs and hex digests, but refuse
    /// anything that could climb out of the root all the same.
    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        let safe = !key.is_empty()
            && key
                .split('/')
                .all(|part| !part.is_empty() && part != "." && part != "..");
        if safe {
            Ok(self.root.join(key))
        } else {
            Err(StoreError::Missing(key.to_owned()))
        }
    }
}

fn unavailable(path: &Path, error: std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("{}: {error}", path.display()))
}

#[async_trait]
impl SpecStore for FsSpecStore {
    async fn put(&self, key: &str, bytes: &[u8]) -> Result<PutOutcome, StoreError> {
        let path = self.path(key)?;
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(PutOutcome::AlreadyPresent);
        }
        let directory = path.parent().unwrap_or(&self.root).to_path_buf();
        let bytes = bytes.to_vec();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::io::Write;
            std::fs::create_dir_all(&directory)?;
            let mut file = tempfile::NamedTempFile::new_in(&directory)?;
            file.write_all(&bytes)?;
            file.as_file().sync_all()?;
            file.persist(&path).map_err(|error| error.error)?;
            std::fs::File::open(&directory)?.sync_all()
        })
        .await
        .map_err(|error| StoreError::Unavailable(format!("write task failed: {error}")))?
        .map_err(|error| unavailable(&self.root, error))?;
        Ok(PutOutcome::Written)
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let path = self.path(key)?;
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Bytes::from(bytes)),
            Err(error) if error.kind() == ErrorKind::NotFound => {
                Err(StoreError::Missing(key.to_owned()))
            }
            Err(error) => Err(unavailable(&path, error)),
        }
    }

    async fn check(&self) -> Result<(), StoreError> {
        tokio::fs::create_dir_all(&self.root)
            .await
            .map_err(|error| unavailable(&self.root, error))?;
        let metadata = tokio::fs::metadata(&self.root)
            .await
            .map_err(|error| unavailable(&self.root, error))?;
        if metadata.permissions().readonly() {
            return Err(StoreError::Unavailable(format!(
                "{} is read-only",
                self.root.display()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_atomically_and_refuses_escaping_keys() {
        let directory = tempfile::tempdir().expect("tempdir");
        let store = FsSpecStore::new(directory.path());
        let first = store
            .put("projects/p/plans/x/abc.md", b"# hi")
            .await
            .expect("put");
        let again = store
            .put("projects/p/plans/x/abc.md", b"# hi")
            .await
            .expect("idempotent put");
        assert_eq!(
            (first, again),
            (PutOutcome::Written, PutOutcome::AlreadyPresent)
        );
        assert_eq!(
            store.get("projects/p/plans/x/abc.md").await.expect("get"),
            &b"# hi"[..]
        );
        assert!(matches!(
            store.get("projects/p/none.md").await,
            Err(StoreError::Missing(_))
        ));
        assert!(store.put("../escape.md", b"x").await.is_err());
        assert!(store.get("a//b").await.is_err());
        store.check().await.expect("writable root");
    }
}
