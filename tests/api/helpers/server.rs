//! The server under test: the real `plangraph` binary started on an ephemeral
//! port against a database of the test's own (a SQLite file in a temp dir, or
//! a new PostgreSQL database), and what it exposes to operators.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::{Client, eventually, running_in_ci};

const POSTGRES_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Which database a test server runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// PostgreSQL when it is reachable. Under `CI=true` an unreachable
    /// PostgreSQL fails the test loudly instead of skipping it.
    pub async fn postgres() -> Option<Backend> {
        let reachable = tokio::time::timeout(
            Duration::from_secs(5),
            sea_orm::Database::connect(POSTGRES_ADMIN_URL),
        )
        .await
        .is_ok_and(|connection| connection.is_ok());
        if reachable {
            return Some(Backend::Postgres);
        }
        if running_in_ci() {
            panic!(
                "PostgreSQL at {POSTGRES_ADMIN_URL} is required when CI=true but is unreachable"
            );
        }
        eprintln!(
            "SKIPPED: PostgreSQL at {POSTGRES_ADMIN_URL} is unreachable (set CI=true to make this fatal)"
        );
        None
    }
}

/// A database that outlives server restarts and is removed with the last handle.
pub struct Database {
    /// Data directory (the SQLite file and the fs spec store live here).
    pub data_dir: tempfile::TempDir,
    postgres_name: Option<String>,
}

impl Database {
    pub async fn create(backend: Backend) -> Arc<Database> {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let postgres_name = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                let name = format!("plangraph_test_{}", uuid::Uuid::now_v7().simple());
                let admin = sea_orm::Database::connect(POSTGRES_ADMIN_URL)
                    .await
                    .expect("connect to PostgreSQL");
                use sea_orm::ConnectionTrait;
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create test database");
                Some(name)
            }
        };
        Arc::new(Database {
            data_dir,
            postgres_name,
        })
    }

    pub fn url(&self) -> Option<String> {
        self.postgres_name
            .as_ref()
            .map(|name| format!("postgres://postgres@127.0.0.1:5432/{name}"))
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if std::thread::panicking() {
            print_server_errors(&self.data_dir.path().join("server.log"));
        }
        let Some(name) = self.postgres_name.take() else {
            return;
        };
        // Drop runs outside async context; use a short-lived runtime on a thread.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                use sea_orm::ConnectionTrait;
                if let Ok(admin) = sea_orm::Database::connect(POSTGRES_ADMIN_URL).await {
                    let _ = admin
                        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// A failing test's server log dies with its temporary directory: its
/// errors (the details behind an INTERNAL) go to the test's output first.
fn print_server_errors(log: &std::path::Path) {
    const MOST_LINES: usize = 20;
    let Ok(text) = std::fs::read_to_string(log) else {
        return;
    };
    let errors: Vec<&str> = text.lines().filter(|line| line.contains("ERROR")).collect();
    if errors.is_empty() {
        return;
    }
    eprintln!("--- {} ERROR line(s) in {}:", errors.len(), log.display());
    for line in errors.iter().take(MOST_LINES) {
        eprintln!("{line}");
    }
}

/// A running server process.
/// Server flags that keep background work (the stale sweep, the webhook
/// worker's poll every 5 s) from running statements while a test counts
/// the statements of a request.
pub const NO_BACKGROUND_STATEMENTS: [&str; 4] =
    ["--sweep-every", "1h", "--webhook-poll-every", "1h"];

pub struct Server {
    child: Child,
    pub base_url: String,
    /// Where `/metrics` is served when `--metrics-listen` moved it off the API.
    pub metrics_url: Option<String>,
    /// The first admin's key, printed by the server on first start (None after a restart).
    pub bootstrap_key: Option<String>,
    pub database: Arc<Database>,
    extra_args: Vec<String>,
    /// Environment variables set for the process, e.g. AWS credentials.
    env: Vec<(String, String)>,
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_plangraph"))
}

/// Arguments that point the binary at a test database.
pub fn database_args(database: &Database) -> Vec<String> {
    let mut args = vec![
        "--data-dir".to_owned(),
        database.data_dir.path().display().to_string(),
    ];
    if let Some(url) = database.url() {
        args.extend(["--database-url".to_owned(), url]);
    }
    args
}

impl Server {
    pub async fn start(backend: Backend) -> Server {
        Server::start_with(backend, &[]).await
    }

    pub async fn start_with(backend: Backend, extra_args: &[&str]) -> Server {
        let database = Database::create(backend).await;
        let extra_args = extra_args.iter().map(|arg| (*arg).to_owned()).collect();
        Server::launch(database, extra_args).await
    }

    /// Every server of a test: one on SQLite (a single-instance database),
    /// two sharing one database on PostgreSQL.
    pub async fn instances(backend: Backend, extra_args: &[&str]) -> Vec<Server> {
        let first = Server::start_with(backend, extra_args).await;
        let mut servers = vec![];
        if backend == Backend::Postgres {
            let args = extra_args.iter().map(|arg| (*arg).to_owned()).collect();
            servers.push(Server::launch(first.database.clone(), args).await);
        }
        servers.insert(0, first);
        servers
    }

    /// Starts a server on an existing database (a second instance, or after a stop).
    pub async fn launch(database: Arc<Database>, extra_args: Vec<String>) -> Server {
        Server::launch_with_env(database, extra_args, Vec::new()).await
    }

    /// Like `launch`, with environment variables of its own.
    pub async fn launch_with_env(
        database: Arc<Database>,
        extra_args: Vec<String>,
        env: Vec<(String, String)>,
    ) -> Server {
        super::install_crypto_provider();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(database.data_dir.path().join("server.log"))
            .expect("log file");
        let overrides_database = extra_args.iter().any(|arg| arg == "--database-url");
        let overrides_listen = extra_args.iter().any(|arg| arg == "--listen");
        let mut child = Command::new(binary())
            .arg("serve")
            .args(
                ["--listen", "127.0.0.1:0"]
                    .iter()
                    .filter(|_| !overrides_listen),
            )
            .args(
                database_args(&database)
                    .into_iter()
                    .take(if overrides_database { 2 } else { 4 }),
            )
            .args(&extra_args)
            .envs(env.iter().map(|(name, value)| (name, value)))
            .env("PLANGRAPH_LOG", "plangraph=debug,warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn plangraph");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut bootstrap_key = None;
        let mut metrics_url = None;
        let base_url = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await.expect("read stdout") {
                if line.starts_with("pg_") {
                    bootstrap_key = Some(line.trim().to_owned());
                } else if let Some(url) = line.strip_prefix("plangraph: metrics on ") {
                    metrics_url = Some(url.trim().to_owned());
                } else if let Some(url) = line.strip_prefix("plangraph: listening on ") {
                    return url.trim_end_matches("/graphql").to_owned();
                }
            }
            panic!(
                "server exited before listening; see {}",
                database.data_dir.path().join("server.log").display()
            );
        })
        .await
        .expect("server did not start within 60 s");
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Server {
            child,
            base_url,
            metrics_url,
            bootstrap_key,
            database,
            extra_args,
            env,
        }
    }

    /// The server's process id (for reading its memory use).
    #[allow(dead_code, reason = "only the benchmarks use it")]
    pub fn pid(&self) -> u32 {
        self.child.id().expect("server is running")
    }

    /// A client with the same key, talking to this server.
    pub fn as_client(&self, other: &Client) -> Client {
        self.client(other.key())
    }

    /// The admin client of a fresh server.
    pub fn admin(&self) -> Client {
        Client::new(&self.base_url, self.bootstrap_key.as_deref())
    }

    pub fn anonymous(&self) -> Client {
        Client::new(&self.base_url, None)
    }

    pub fn client(&self, key: &str) -> Client {
        Client::new(&self.base_url, Some(key))
    }

    /// Stops the process with SIGTERM and waits for it to exit.
    pub async fn stop(mut self) -> Arc<Database> {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("server did not stop within 20 s")
            .expect("wait for server");
        assert!(status.success(), "server exited with {status}");
        self.database.clone()
    }

    /// Kills the process with SIGKILL (a crash), leaving the database as it is.
    pub async fn kill(mut self) -> Arc<Database> {
        self.child.start_kill().expect("SIGKILL");
        self.child.wait().await.expect("wait for server");
        self.database.clone()
    }

    /// Starts the server again on the same database after `stop` or `kill`.
    pub async fn relaunch(database: Arc<Database>) -> Server {
        Server::launch(database, Vec::new()).await
    }

    /// Stops and starts the server again on the same database and data directory.
    pub async fn restart(self) -> Server {
        let extra_args = self.extra_args.clone();
        let env = self.env.clone();
        let database = self.stop().await;
        Server::launch_with_env(database, extra_args, env).await
    }

    /// Everything `/metrics` reports now, read from its own address when it
    /// has one.
    pub async fn metrics(&self) -> Metrics {
        let url = self
            .metrics_url
            .clone()
            .unwrap_or_else(|| format!("{}/metrics", self.base_url));
        let text = reqwest::get(url)
            .await
            .expect("GET /metrics")
            .error_for_status()
            .expect("metrics answer")
            .text()
            .await
            .expect("metrics text");
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .map(|line| {
                let (name, value) = line.rsplit_once(' ').expect("sample line");
                (name.to_owned(), value.parse().expect("sample value"))
            })
            .collect();
        Metrics(samples)
    }

    /// Waits until this server has `count` `planEvents` subscriptions open.
    /// A subscription starts after its `subscribe` message has been sent; from
    /// then on it receives every event committed, so a test that needs a live
    /// subscriber (rather than one replaying with `after`) waits for this
    /// before it makes the change.
    /// The counter `name` once it has stood still for `quiet` (reading
    /// `/metrics` changes no counter), waiting at most a minute.
    pub async fn settled_count(&self, name: &str, quiet: Duration) -> f64 {
        eventually(Duration::from_secs(60), async || {
            let first = self.metrics().await.count(name);
            tokio::time::sleep(quiet).await;
            let second = self.metrics().await.count(name);
            (first == second).then_some(second)
        })
        .await
    }

    pub async fn wait_for_subscriptions(&self, count: u32) {
        eventually(Duration::from_secs(15), async || {
            let metrics = self.metrics().await;
            let open = metrics.0.get("plangraph_active_subscriptions");
            (open == Some(&f64::from(count))).then_some(())
        })
        .await;
    }

    /// `/readyz`: its status code and body.
    pub async fn readyz(&self) -> (u16, Value) {
        let response = reqwest::get(format!("{}/readyz", self.base_url))
            .await
            .expect("GET /readyz");
        let status = response.status().as_u16();
        (status, response.json().await.expect("readyz JSON"))
    }
}

/// Counters from `/metrics`, by name with labels (e.g.
/// `plangraph_spec_store_calls_total{operation="get"}`).
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics(std::collections::BTreeMap<String, f64>);

impl Metrics {
    /// Every sample's name with its labels.
    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.0.keys()
    }

    /// A counter's value, 0 before it first counted (the exporter lists a
    /// counter only once it has a sample).
    pub fn count(&self, name: &str) -> f64 {
        self.0.get(name).copied().unwrap_or(0.0)
    }

    pub fn get(&self, name: &str) -> f64 {
        *self
            .0
            .get(name)
            .unwrap_or_else(|| panic!("no metric {name} in {:?}", self.0))
    }
}
