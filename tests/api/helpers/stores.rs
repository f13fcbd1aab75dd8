//! The spec stores a scenario runs against — the fs store, a GCS emulator and
//! an S3 emulator — behind one view, so that each spec scenario is written
//! once and `on_every_store!` runs it on all three.

use std::path::{Path, PathBuf};

use super::{Backend, Gcs, PrivateGcs, PrivateS3, S3, Server};

/// Which kind of spec store a test server uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    Fs,
    Gcs,
    S3,
}

/// Generates one test per store kind for each scenario function
/// `name(StoreKind)`: `fs::name`, `gcs::name` and `s3::name` in the module
/// that calls it.
macro_rules! on_every_store {
    ($($name:ident),* $(,)?) => {
        $crate::helpers::on_every_store!(@kind fs, Fs, $($name),*);
        $crate::helpers::on_every_store!(@kind gcs, Gcs, $($name),*);
        $crate::helpers::on_every_store!(@kind s3, S3, $($name),*);
    };
    (@kind $module:ident, $kind:ident, $($name:ident),*) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::StoreKind::$kind).await
                }
            )*
        }
    };
}
pub(crate) use on_every_store;

/// Every object name starts with this: the servers keep specs under the
/// prefix `specs` of their bucket, or in the directory `specs` of the fs
/// store's root.
pub const SPECS_PREFIX: &str = "specs/";

/// Where a test's server keeps its specs — a directory of its own, or a bucket
/// of its own in an emulator — and the test's view of the objects there.
pub enum SpecBucket {
    Fs(tempfile::TempDir),
    Gcs { gcs: Gcs, bucket: String },
    S3 { s3: S3, bucket: String },
}

/// One stored object, with what changes when it is written again: the GCS
/// generation, the S3 version id, the file's inode and modification time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct StoredObject {
    pub name: String,
    pub generation: String,
}

impl SpecBucket {
    /// A new directory or bucket, in the suite-wide emulator of that kind;
    /// `None` (the test is skipped) when that emulator is missing outside CI.
    pub async fn new(kind: StoreKind) -> Option<SpecBucket> {
        Some(match kind {
            StoreKind::Fs => SpecBucket::Fs(tempfile::tempdir().expect("temp dir")),
            StoreKind::Gcs => SpecBucket::in_gcs(Gcs::shared().await?).await,
            StoreKind::S3 => SpecBucket::in_s3(S3::shared().await?).await,
        })
    }

    async fn in_gcs(gcs: Gcs) -> SpecBucket {
        let bucket = gcs.new_bucket().await;
        SpecBucket::Gcs { gcs, bucket }
    }

    async fn in_s3(s3: S3) -> SpecBucket {
        let bucket = s3.new_bucket().await;
        SpecBucket::S3 { s3, bucket }
    }

    /// The `--spec-store` value; `check-store` names the store by it.
    pub fn spec_store(&self) -> String {
        match self {
            SpecBucket::Fs(root) => format!("fs:{}", root.path().join("specs").display()),
            SpecBucket::Gcs { bucket, .. } => format!("gcs://{bucket}/specs"),
            SpecBucket::S3 { bucket, .. } => format!("s3://{bucket}/specs"),
        }
    }

    /// The server's arguments for this store, reached at `endpoint` (the
    /// emulator's own unless a test says otherwise).
    fn args_at(&self, endpoint: Option<&str>) -> Vec<String> {
        let mut args = vec!["--spec-store".to_owned(), self.spec_store()];
        let endpoint_flag = match self {
            SpecBucket::Fs(_) => None,
            SpecBucket::Gcs { gcs, .. } => Some(("--gcs-endpoint", &gcs.endpoint)),
            SpecBucket::S3 { s3, .. } => Some(("--s3-endpoint", &s3.endpoint)),
        };
        if let Some((flag, own)) = endpoint_flag {
            args.extend([flag.to_owned(), endpoint.unwrap_or(own).to_owned()]);
        }
        args
    }

    pub fn server_args(&self) -> Vec<String> {
        self.args_at(None)
    }

    /// The same store at an endpoint where nothing listens; for fs, a
    /// directory below a plain file, which can be neither read nor created.
    pub fn dead_server_args(&self) -> Vec<String> {
        match self {
            SpecBucket::Fs(root) => {
                let file = root.path().join("not-a-directory");
                std::fs::write(&file, "").expect("write a plain file");
                vec![
                    "--spec-store".to_owned(),
                    format!("fs:{}", file.join("specs").display()),
                ]
            }
            _ => self.args_at(Some("http://127.0.0.1:1")),
        }
    }

    /// What the server's process needs in its environment (AWS credentials).
    pub fn server_env(&self) -> Vec<(String, String)> {
        match self {
            SpecBucket::S3 { s3, .. } => s3.server_env(),
            _ => Vec::new(),
        }
    }

    /// Every stored object, names relative to the bucket (or to the fs
    /// store's parent directory), sorted.
    pub async fn objects(&self) -> Vec<StoredObject> {
        let mut objects: Vec<StoredObject> = match self {
            SpecBucket::Fs(root) => files_under(root.path(), &root.path().join("specs")),
            SpecBucket::Gcs { gcs, bucket } => gcs
                .objects(bucket)
                .await
                .iter()
                .map(|object| StoredObject {
                    name: object["name"].as_str().unwrap_or_default().to_owned(),
                    generation: object["generation"].as_str().unwrap_or_default().to_owned(),
                })
                .collect(),
            SpecBucket::S3 { s3, bucket } => s3
                .versions(bucket)
                .await
                .into_iter()
                .map(|(name, generation)| StoredObject { name, generation })
                .collect(),
        };
        objects.sort();
        objects
    }

    pub async fn names(&self) -> Vec<String> {
        let objects = self.objects().await;
        objects.into_iter().map(|object| object.name).collect()
    }

    /// The stored text of one object, read straight from the store.
    pub async fn read(&self, name: &str) -> String {
        match self {
            SpecBucket::Fs(root) => {
                std::fs::read_to_string(root.path().join(name)).expect("read spec file")
            }
            SpecBucket::Gcs { gcs, bucket } => gcs.read(bucket, name).await,
            SpecBucket::S3 { s3, bucket } => s3.read(bucket, name).await,
        }
    }
}

/// The files below `directory`, named relative to `root`.
fn files_under(root: &Path, directory: &Path) -> Vec<StoredObject> {
    use std::os::unix::fs::MetadataExt;
    let mut files = Vec::new();
    let mut pending: Vec<PathBuf> = vec![directory.to_path_buf()];
    while let Some(directory) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&directory) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let metadata = entry.metadata().expect("file metadata");
            if metadata.is_dir() {
                pending.push(path);
            } else {
                files.push(StoredObject {
                    name: path
                        .strip_prefix(root)
                        .expect("below the root")
                        .display()
                        .to_string(),
                    generation: format!(
                        "inode {} modified {}.{:09}",
                        metadata.ino(),
                        metadata.mtime(),
                        metadata.mtime_nsec()
                    ),
                });
            }
        }
    }
    files
}

/// A store of the test's own that it can take down and bring back: a private
/// emulator process it kills and starts again, or for fs, the directory
/// swapped for a plain file (a volume gone) and put back.
pub struct OutageStore {
    pub bucket: SpecBucket,
    emulator: PrivateEmulator,
}

enum PrivateEmulator {
    Fs,
    Gcs(PrivateGcs),
    S3(PrivateS3),
}

impl OutageStore {
    pub async fn start(kind: StoreKind) -> Option<OutageStore> {
        Some(match kind {
            StoreKind::Fs => OutageStore {
                bucket: SpecBucket::Fs(tempfile::tempdir().expect("temp dir")),
                emulator: PrivateEmulator::Fs,
            },
            StoreKind::Gcs => {
                let emulator = PrivateGcs::start().await?;
                OutageStore {
                    bucket: SpecBucket::in_gcs(emulator.gcs.clone()).await,
                    emulator: PrivateEmulator::Gcs(emulator),
                }
            }
            StoreKind::S3 => {
                let emulator = PrivateS3::start().await?;
                OutageStore {
                    bucket: SpecBucket::in_s3(emulator.s3.clone()).await,
                    emulator: PrivateEmulator::S3(emulator),
                }
            }
        })
    }

    /// The fs store's directory, and where it is kept during an outage.
    fn fs_directories(&self) -> (PathBuf, PathBuf) {
        let SpecBucket::Fs(root) = &self.bucket else {
            unreachable!("only the fs store has directories");
        };
        (root.path().join("specs"), root.path().join("specs.away"))
    }

    pub async fn stop(&mut self) {
        match &mut self.emulator {
            PrivateEmulator::Fs => {
                let (specs, away) = self.fs_directories();
                std::fs::rename(&specs, &away).expect("move the specs away");
                std::fs::write(&specs, "").expect("a plain file in their place");
            }
            PrivateEmulator::Gcs(emulator) => emulator.stop().await,
            PrivateEmulator::S3(emulator) => emulator.stop().await,
        }
    }

    pub async fn restart(&mut self) {
        match &mut self.emulator {
            PrivateEmulator::Fs => {
                let (specs, away) = self.fs_directories();
                std::fs::remove_file(&specs).expect("remove the plain file");
                std::fs::rename(&away, &specs).expect("bring the specs back");
            }
            PrivateEmulator::Gcs(emulator) => emulator.restart().await,
            PrivateEmulator::S3(emulator) => emulator.restart().await,
        }
    }
}

impl Server {
    /// A server on SQLite whose specs live in `bucket`.
    pub async fn start_on_store(bucket: &SpecBucket, extra_args: &[&str]) -> Server {
        let database = super::Database::create(Backend::Sqlite).await;
        let mut args = bucket.server_args();
        args.extend(extra_args.iter().map(|arg| (*arg).to_owned()));
        Server::launch_with_env(database, args, bucket.server_env()).await
    }
}
