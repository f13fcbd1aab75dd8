//! S3 emulators (moto's `moto_server`): the suite-wide one that
//! `scripts/test.sh` starts, and private ones a test may stop and start to
//! stage an outage. The tests see buckets through the same AWS SDK the server
//! uses, signed with the same made-up credentials.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use tokio::process::{Child, Command};

use super::{emulator_missing, eventually};

/// The emulator that `scripts/test.sh` starts for the whole run, and the
/// moto_server script it installed (for tests that run their own).
const S3_ENDPOINT_VAR: &str = "PLANGRAPH_TEST_S3_ENDPOINT";
const S3_EMULATOR_VAR: &str = "PLANGRAPH_TEST_S3_EMULATOR";
/// Where `scripts/setup.sh` installs the emulator when nothing else is said.
const S3_EMULATOR_VENV: &str = "/var/tmp/plangraph-s3-emulator";

/// The emulator accepts any credentials; the server gets these through the
/// standard AWS environment variables, as it would in production.
const ACCESS_KEY_ID: &str = "plangraph-test";
const SECRET_ACCESS_KEY: &str = "plangraph-test-secret";
const REGION: &str = "us-east-1";

/// An S3 emulator, as the tests' view of the bucket: they create buckets
/// and inspect objects with it.
#[derive(Clone)]
pub struct S3 {
    pub endpoint: String,
    client: aws_sdk_s3::Client,
    http: reqwest::Client,
}

impl S3 {
    fn at(endpoint: &str) -> S3 {
        let endpoint = endpoint.trim_end_matches('/').to_owned();
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::from_static(REGION))
            .credentials_provider(Credentials::new(
                ACCESS_KEY_ID,
                SECRET_ACCESS_KEY,
                None,
                None,
                "plangraph tests",
            ))
            .endpoint_url(&endpoint)
            .force_path_style(true)
            .http_client(
                aws_smithy_http_client::Builder::new()
                    .tls_provider(Provider::Rustls(CryptoMode::Ring))
                    .build_https(),
            )
            .build();
        super::install_crypto_provider();
        S3 {
            endpoint,
            client: aws_sdk_s3::Client::from_conf(config),
            http: reqwest::Client::new(),
        }
    }

    /// The suite-wide emulator from `PLANGRAPH_TEST_S3_ENDPOINT`.
    pub async fn shared() -> Option<S3> {
        let Ok(endpoint) = std::env::var(S3_ENDPOINT_VAR) else {
            return emulator_missing(&format!("an S3 emulator in {S3_ENDPOINT_VAR}"));
        };
        let s3 = S3::at(&endpoint);
        if !s3.reachable().await {
            return emulator_missing(&format!("the S3 emulator at {endpoint}"));
        }
        Some(s3)
    }

    /// Whether anything answers HTTP there (an anonymous request gets an
    /// error document, which is an answer all the same).
    pub async fn reachable(&self) -> bool {
        let request = self
            .http
            .get(format!("{}/", self.endpoint))
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        request.is_ok()
    }

    /// The environment that points a server's AWS chain at this emulator.
    pub fn server_env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
            ("AWS_REGION", REGION),
        ]
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .to_vec()
    }

    /// A versioned bucket of the test's own, so that tests never see each
    /// other's objects and a second write of a key shows as a new version.
    pub async fn new_bucket(&self) -> String {
        use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
        let name = format!("plangraph-test-{}", uuid::Uuid::now_v7().simple());
        self.client
            .create_bucket()
            .bucket(&name)
            .send()
            .await
            .unwrap_or_else(|error| panic!("create bucket {name}: {error:?}"));
        let versioning = VersioningConfiguration::builder()
            .status(BucketVersioningStatus::Enabled)
            .build();
        self.client
            .put_bucket_versioning()
            .bucket(&name)
            .versioning_configuration(versioning)
            .send()
            .await
            .unwrap_or_else(|error| panic!("enable versioning of {name}: {error:?}"));
        name
    }

    /// Every version of every object of a bucket, as (key, version id).
    pub async fn versions(&self, bucket: &str) -> Vec<(String, String)> {
        let listing = self
            .client
            .list_object_versions()
            .bucket(bucket)
            .send()
            .await
            .unwrap_or_else(|error| panic!("list versions of {bucket}: {error:?}"));
        assert_ne!(listing.is_truncated(), Some(true), "more than one page");
        listing
            .versions()
            .iter()
            .map(|version| {
                (
                    version.key().unwrap_or_default().to_owned(),
                    version.version_id().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// The stored bytes of one object, read straight from the emulator.
    pub async fn read(&self, bucket: &str, key: &str) -> String {
        let object = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|error| panic!("read {key}: {error:?}"));
        let bytes = object.body.collect().await.expect("object body");
        String::from_utf8(bytes.to_vec()).expect("UTF-8 object")
    }
}

/// The moto_server script: from `PLANGRAPH_TEST_S3_EMULATOR`, else from where
/// `scripts/setup.sh` installs it.
pub fn s3_emulator_binary() -> Option<PathBuf> {
    if let Ok(path) = std::env::var(S3_EMULATOR_VAR) {
        return Some(PathBuf::from(path));
    }
    let path = PathBuf::from(S3_EMULATOR_VENV).join("bin/moto_server");
    path.is_file().then_some(path)
}

/// An emulator process of the test's own, which it may stop and start again
/// on the same port to stage a store outage. moto keeps objects in memory
/// only; its recorder appends every request to a file, and a restart replays
/// that file, so objects survive the restart as they would in real S3.
pub struct PrivateS3 {
    pub s3: S3,
    port: u16,
    binary: PathBuf,
    recording: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivateS3 {
    pub async fn start() -> Option<PrivateS3> {
        let Some(binary) = s3_emulator_binary() else {
            return emulator_missing(&format!(
                "the moto_server script ({S3_EMULATOR_VAR} or under {S3_EMULATOR_VENV})"
            ));
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("free port")
            .port();
        let mut emulator = PrivateS3 {
            s3: S3::at(&format!("http://127.0.0.1:{port}")),
            port,
            binary,
            recording: tempfile::tempdir().expect("temp dir"),
            child: None,
        };
        emulator.restart().await;
        Some(emulator)
    }

    fn recording_file(&self) -> PathBuf {
        self.recording.path().join("requests.jsonl")
    }

    /// Kills the process outright, as a crash or a network cut would.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill emulator");
        }
        assert!(!self.s3.reachable().await, "the emulator still answers");
    }

    /// Starts the emulator (again) on its port, waits until it answers, and
    /// replays what the previous runs stored.
    pub async fn restart(&mut self) {
        let child = Command::new(&self.binary)
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .env("MOTO_ENABLE_RECORDING", "true")
            .env("MOTO_RECORDER_FILEPATH", self.recording_file())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn moto_server");
        self.child = Some(child);
        eventually(Duration::from_secs(60), async || {
            self.s3.reachable().await.then_some(())
        })
        .await;
        if self.recording_file().exists() {
            // Not recorded itself, and the replayed requests are not
            // recorded again.
            let replay = self
                .s3
                .http
                .post(format!(
                    "{}/moto-api/recorder/replay-recording",
                    self.s3.endpoint
                ))
                .send()
                .await
                .expect("replay the recording");
            assert!(
                replay.status().is_success(),
                "replaying answered {}",
                replay.status()
            );
        }
    }
}

/// A TCP relay to an emulator that keeps a copy of every byte sent to it, so
/// that a test can see the requests a server made (their signatures
/// included) while the emulator still answers them.
pub struct RecordingRelay {
    pub endpoint: String,
    sent: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl RecordingRelay {
    pub async fn start(target: &str) -> RecordingRelay {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let target = target
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind relay");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let sent = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let recorded = sent.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let Ok(outbound) = tokio::net::TcpStream::connect(&target).await else {
                    continue;
                };
                let (mut from_client, mut to_client) = inbound.into_split();
                let (mut from_emulator, mut to_emulator) = outbound.into_split();
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let mut buffer = [0; 8192];
                    while let Ok(read) = from_client.read(&mut buffer).await {
                        if read == 0 || to_emulator.write_all(&buffer[..read]).await.is_err() {
                            break;
                        }
                        recorded
                            .lock()
                            .expect("recording")
                            .extend_from_slice(&buffer[..read]);
                    }
                });
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut from_emulator, &mut to_client).await;
                });
            }
        });
        RecordingRelay { endpoint, sent }
    }

    /// Everything sent through the relay so far, as text.
    pub fn sent(&self) -> String {
        String::from_utf8_lossy(&self.sent.lock().expect("recording")).into_owned()
    }
}
