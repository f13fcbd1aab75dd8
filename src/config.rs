//! One configuration struct from flags and `PLANGRAPH_*` environment
//! variables. Every default runs locally with nothing installed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use crate::observability::LogFormat;

/// Who may introspect the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Introspection {
    /// Anyone, with or without an API key.
    #[default]
    Public,
    /// Only callers with an API key (GraphiQL works once a key is set).
    Authenticated,
    /// Nobody.
    Off,
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to serve on; port 0 picks a free port.
    #[arg(
        long,
        env = "PLANGRAPH_LISTEN",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub listen: SocketAddr,

    /// Directory for the embedded database and the fs spec store.
    #[arg(
        long,
        env = "PLANGRAPH_DATA_DIR",
        default_value = "./data",
        global = true
    )]
    pub data_dir: PathBuf,

    /// Database URL: sqlite://PATH or postgres://USER@HOST/DB.
    /// Default: SQLite at DATA_DIR/plangraph.db.
    #[arg(long, env = "PLANGRAPH_DATABASE_URL", global = true)]
    pub database_url: Option<String>,

    /// Largest number of pooled database connections.
    #[arg(
        long,
        env = "PLANGRAPH_DATABASE_MAX_CONNECTIONS",
        default_value_t = 10,
        global = true
    )]
    pub database_max_connections: u32,

    /// How long a request waits for a pooled connection before failing.
    #[arg(long, env = "PLANGRAPH_DATABASE_ACQUIRE_TIMEOUT", default_value = "5s", value_parser = parse_duration, global = true)]
    pub database_acquire_timeout: Duration,

    /// Spec store: fs:DIR, memory, gcs://BUCKET/PREFIX or s3://BUCKET/PREFIX.
    /// Default: fs:DATA_DIR/specs.
    #[arg(long, env = "PLANGRAPH_SPEC_STORE", global = true)]
    pub spec_store: Option<String>,

    /// URL of a GCS emulator, reached with anonymous credentials. Without it
    /// the gcs store talks to Google Cloud Storage with Application Default Credentials.
    #[arg(long, env = "PLANGRAPH_GCS_ENDPOINT", global = true)]
    pub gcs_endpoint: Option<String>,

    /// Deadline of one GCS call, retries included.
    #[arg(long, env = "PLANGRAPH_GCS_TIMEOUT", default_value = "10s", value_parser = parse_duration, global = true)]
    pub gcs_timeout: Duration,

    /// URL of an S3-compatible store or emulator, addressed path-style
    /// (URL/BUCKET/KEY). Without it the s3 store talks to Amazon S3.
    /// Credentials come from the standard AWS chain either way.
    #[arg(long, env = "PLANGRAPH_S3_ENDPOINT", global = true)]
    pub s3_endpoint: Option<String>,

    /// Region of the S3 bucket, instead of the AWS chain's (AWS_REGION, the
    /// profile's region, the instance's). With --s3-endpoint it defaults to
    /// us-east-1.
    #[arg(long, env = "PLANGRAPH_S3_REGION", global = true)]
    pub s3_region: Option<String>,

    /// Deadline of one S3 call, retries included.
    #[arg(long, env = "PLANGRAPH_S3_TIMEOUT", default_value = "10s", value_parser = parse_duration, global = true)]
    pub s3_timeout: Duration,

    /// Most spec objects read from the store at once for one batch (a page of
    /// specs). The default is the largest page, so a page of specs costs one
    /// round trip to the store, not several.
    #[arg(
        long,
        env = "PLANGRAPH_SPEC_FETCH_CONCURRENCY",
        default_value = "100",
        global = true
    )]
    pub spec_fetch_concurrency: std::num::NonZeroUsize,

    /// Memory for cached spec objects, in bytes; 0 turns the cache off.
    #[arg(long, env = "PLANGRAPH_SPEC_CACHE_BYTES", default_value_t = 64 * 1024 * 1024, global = true)]
    pub spec_cache_bytes: u64,

    /// Claimed or in-progress plans without activity for this long become
    /// STALLED: the lease of a claim that asks for no lease of its own.
    #[arg(long, env = "PLANGRAPH_STALE_AFTER", default_value = "24h", value_parser = parse_duration, global = true)]
    pub stale_after: Duration,

    /// How often the stale sweeper runs.
    #[arg(long, env = "PLANGRAPH_SWEEP_EVERY", default_value = "1m", value_parser = parse_duration, global = true)]
    pub sweep_every: Duration,

    /// Largest accepted spec or work-artifacts document, in bytes.
    #[arg(long, env = "PLANGRAPH_MAX_SPEC_BYTES", default_value_t = 1024 * 1024, global = true)]
    pub max_spec_bytes: usize,

    /// Longest accepted description (projects, features, plans), in characters.
    /// Titles are capped at 255 characters by the schema.
    #[arg(
        long,
        env = "PLANGRAPH_MAX_DESCRIPTION_CHARS",
        default_value_t = 10_000,
        global = true
    )]
    pub max_description_chars: usize,

    /// Most operations one batched request (a JSON array of requests, as
    /// Apollo's BatchHttpLink sends) may hold; each runs under every limit
    /// of its own.
    #[arg(
        long,
        env = "PLANGRAPH_MAX_BATCH_OPERATIONS",
        default_value_t = 10,
        global = true
    )]
    pub max_batch_operations: usize,

    /// Largest accepted HTTP request body, in bytes.
    #[arg(long, env = "PLANGRAPH_MAX_BODY_BYTES", default_value_t = 4 * 1024 * 1024, global = true)]
    pub max_body_bytes: usize,

    /// Longest a client may take to send a request's headers, counted from
    /// when its connection can take a request (just opened, or done with the
    /// previous one); the connection is then closed. A client dribbling its
    /// headers, or saying nothing, cannot hold a connection longer. It is
    /// also how long an idle keep-alive connection stays open.
    #[arg(long, env = "PLANGRAPH_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration, global = true)]
    pub header_read_timeout: Duration,

    /// Longest a request's whole body may take to arrive after its headers;
    /// a later one is answered with HTTP 408 and its connection closed. A
    /// client sending a byte now and then cannot hold a request open.
    #[arg(long, env = "PLANGRAPH_BODY_READ_TIMEOUT", default_value = "30s", value_parser = parse_duration, global = true)]
    pub body_read_timeout: Duration,

    /// Most connections, HTTP and WebSocket, open at once on this instance.
    /// At the limit no more are accepted until one closes (the kernel's
    /// backlog holds the next ones), so clients cannot take every file
    /// descriptor the database and the spec store also need.
    #[arg(
        long,
        env = "PLANGRAPH_MAX_CONNECTIONS",
        default_value = "10000",
        global = true
    )]
    pub max_connections: std::num::NonZeroUsize,

    /// Log line format: pretty or json.
    #[arg(long, env = "PLANGRAPH_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty, global = true)]
    pub log_format: LogFormat,

    /// Browser origin allowed to call the API (CORS); repeat for several.
    /// None by default: browsers on other origins are refused.
    #[arg(
        long = "cors-origin",
        env = "PLANGRAPH_CORS_ORIGIN",
        value_delimiter = ',',
        global = true
    )]
    pub cors_origins: Vec<String>,

    /// Turn off GraphiQL and schema introspection (e.g. for a locked-down deployment).
    #[arg(long, env = "PLANGRAPH_NO_PLAYGROUND", global = true)]
    pub no_playground: bool,

    /// Who may introspect the schema (`__schema`, `__type`): anyone
    /// (`public`), callers with an API key (`authenticated`), or nobody
    /// (`off`). `__typename` always works.
    #[arg(long, env = "PLANGRAPH_INTROSPECTION", value_enum, default_value_t = Introspection::Public, global = true)]
    pub introspection: Introspection,

    /// Run only the documents of this manifest (trusted documents): an
    /// Apollo persisted query manifest or a JSON object of SHA-256 hash to
    /// document. Clients send a document or its hash; anything else is
    /// refused. Without it, any document runs and clients may register
    /// theirs by hash (automatic persisted queries).
    #[arg(long, env = "PLANGRAPH_TRUSTED_DOCUMENTS", value_parser = TrustedDocuments::read, global = true)]
    pub trusted_documents: Option<TrustedDocuments>,

    /// Most requests without an API key one client address may have open at
    /// once; the next is refused with RATE_LIMITED (HTTP 429). Bounds what
    /// anonymous clients, who can only introspect, may take of the server.
    #[arg(
        long,
        env = "PLANGRAPH_MAX_ANONYMOUS_REQUESTS_PER_ADDRESS",
        default_value_t = 4,
        global = true
    )]
    pub max_anonymous_requests_per_address: usize,

    /// Deepest selection nesting a query may have.
    #[arg(
        long,
        env = "PLANGRAPH_MAX_QUERY_DEPTH",
        default_value_t = 16,
        global = true
    )]
    pub max_query_depth: usize,

    /// Largest query complexity (roughly, fields to resolve) a query may have.
    #[arg(
        long,
        env = "PLANGRAPH_MAX_QUERY_COMPLEXITY",
        default_value_t = 5000,
        global = true
    )]
    pub max_query_complexity: usize,

    /// Longest query document, in bytes (values belong in variables, which
    /// only the body limit bounds): bounds the work of parsing one.
    #[arg(long, env = "PLANGRAPH_MAX_QUERY_BYTES", default_value_t = 128 * 1024, global = true)]
    pub max_query_bytes: usize,

    /// Most fields a query document may select once its fragments are expanded
    /// (aliases count): bounds the work of validating a small document whose
    /// fragments spread each other many times over.
    #[arg(
        long,
        env = "PLANGRAPH_MAX_QUERY_FIELDS",
        default_value_t = 2000,
        global = true
    )]
    pub max_query_fields: usize,

    /// Most bytes of specs and work artifacts one response (or one
    /// subscription event) may carry: bounds the memory of one request.
    #[arg(long, env = "PLANGRAPH_MAX_RESPONSE_DOCUMENT_BYTES", default_value_t = 16 * 1024 * 1024, global = true)]
    pub max_response_document_bytes: usize,

    /// Most bytes of JSON one response (or one subscription event) may be,
    /// whatever its fields: counted while it is written, so no request can
    /// make the server send (or buffer for sending) more.
    #[arg(long, env = "PLANGRAPH_MAX_RESPONSE_BYTES", default_value_t = 32 * 1024 * 1024, global = true)]
    pub max_response_bytes: usize,

    /// Most spec diffs computed at once on this instance, over all requests:
    /// a diff is CPU-bound work of up to its deadline, and requests beyond
    /// this wait their turn instead of taking every core.
    #[arg(
        long,
        env = "PLANGRAPH_MAX_CONCURRENT_DIFFS",
        default_value_t = 2,
        global = true
    )]
    pub max_concurrent_diffs: usize,

    /// Longest a query may run before it is stopped (mutations run to the end).
    #[arg(long, env = "PLANGRAPH_QUERY_TIMEOUT", default_value = "30s", value_parser = parse_duration, global = true)]
    pub query_timeout: Duration,

    /// Most operations (subscriptions included) open at once on one WebSocket.
    #[arg(
        long,
        env = "PLANGRAPH_MAX_OPERATIONS_PER_CONNECTION",
        default_value_t = 100,
        global = true
    )]
    pub max_operations_per_connection: usize,

    /// Most WebSocket connections one API key may hold open on this instance.
    #[arg(
        long,
        env = "PLANGRAPH_MAX_CONNECTIONS_PER_KEY",
        default_value_t = 50,
        global = true
    )]
    pub max_connections_per_key: usize,

    /// Serve `/metrics` on this separate address (e.g. 127.0.0.1:9090)
    /// instead of the main one, so it can be kept off the public network.
    #[arg(long, env = "PLANGRAPH_METRICS_LISTEN", global = true)]
    pub metrics_listen: Option<SocketAddr>,

    /// Require `Authorization: Bearer <token>` on `/metrics`.
    #[arg(long, env = "PLANGRAPH_METRICS_TOKEN", global = true)]
    pub metrics_token: Option<MetricsToken>,

    /// Live events a subscriber may fall behind by before its subscription is
    /// ended with an error asking it to resume from its last cursor.
    #[arg(
        long,
        env = "PLANGRAPH_SUBSCRIBER_BUFFER",
        default_value_t = 1024,
        global = true
    )]
    pub subscriber_buffer: usize,

    /// Resolve every `planEvents` subscription on its own instead of once per
    /// group of identical subscriptions (the behaviour before grouping; for
    /// side-by-side benchmarks).
    #[arg(long, env = "PLANGRAPH_UNGROUPED_SUBSCRIPTIONS", global = true)]
    pub ungrouped_subscriptions: bool,

    /// How often idle WebSocket connections get a keep-alive ping.
    #[arg(long, env = "PLANGRAPH_WS_KEEPALIVE", default_value = "15s", value_parser = parse_duration, global = true)]
    pub ws_keepalive: Duration,

    /// Let webhooks call loopback, private and link-local addresses (a
    /// receiver on the same network; tests). Off: only public addresses,
    /// checked when a webhook is saved and again at every delivery.
    #[arg(long, env = "PLANGRAPH_WEBHOOK_ALLOW_PRIVATE", global = true)]
    pub webhook_allow_private: bool,

    /// Longest one webhook delivery may take, connecting and answering
    /// included. A receiver that cannot answer holds a delivery slot this
    /// long per attempt; receivers are expected to answer at once and do
    /// their work afterwards.
    #[arg(long, env = "PLANGRAPH_WEBHOOK_TIMEOUT", default_value = "5s", value_parser = parse_duration, global = true)]
    pub webhook_timeout: Duration,

    /// Longest a webhook delivery may take to connect (TLS included), within
    /// --webhook-timeout: a target that does not accept connections is given
    /// up on quickly.
    #[arg(long, env = "PLANGRAPH_WEBHOOK_CONNECT_TIMEOUT", default_value = "2s", value_parser = parse_duration, global = true)]
    pub webhook_connect_timeout: Duration,

    /// Send webhook deliveries through this HTTP(S) proxy. The proxy then
    /// resolves the targets' names and decides what is reachable; without
    /// this flag deliveries connect directly, whatever `HTTP_PROXY`,
    /// `HTTPS_PROXY` or `ALL_PROXY` say, so that the public-only resolver
    /// is the one that picks the address.
    #[arg(long, env = "PLANGRAPH_WEBHOOK_PROXY", global = true)]
    pub webhook_proxy: Option<ProxyUrl>,

    /// Wait before the first retry of a failed delivery; it doubles with
    /// each further failure (with jitter), up to --webhook-retry-max.
    #[arg(long, env = "PLANGRAPH_WEBHOOK_RETRY_BASE", default_value = "1s", value_parser = parse_duration, global = true)]
    pub webhook_retry_base: Duration,

    /// Longest wait between retries of a failed delivery.
    #[arg(long, env = "PLANGRAPH_WEBHOOK_RETRY_MAX", default_value = "5m", value_parser = parse_duration, global = true)]
    pub webhook_retry_max: Duration,

    /// A webhook is disabled (with a reason) once its deliveries have failed
    /// this many times in a row …
    #[arg(
        long,
        env = "PLANGRAPH_WEBHOOK_DISABLE_AFTER_FAILURES",
        default_value_t = 10,
        global = true
    )]
    pub webhook_disable_after_failures: u32,

    /// … and kept failing for at least this long.
    #[arg(long, env = "PLANGRAPH_WEBHOOK_DISABLE_AFTER", default_value = "1h", value_parser = parse_duration, global = true)]
    pub webhook_disable_after: Duration,

    /// How often the webhook worker looks for work besides being woken by
    /// new events.
    #[arg(long, env = "PLANGRAPH_WEBHOOK_POLL_EVERY", default_value = "5s", value_parser = parse_duration, global = true)]
    pub webhook_poll_every: Duration,

    /// Most webhook deliveries one instance makes at once, all projects
    /// together. On PostgreSQL each holds a connection, from a pool of this
    /// size kept apart from --database-max-connections, so receivers that
    /// are slow to answer never take connections that requests need.
    #[arg(
        long,
        env = "PLANGRAPH_WEBHOOK_CONCURRENCY",
        default_value = "16",
        global = true
    )]
    pub webhook_concurrency: std::num::NonZeroUsize,

    /// Most deliveries of one project's webhooks one instance makes at once
    /// (at most --webhook-concurrency): one project whose receivers hang
    /// cannot take every slot and delay the other projects' deliveries.
    #[arg(
        long,
        env = "PLANGRAPH_WEBHOOK_PROJECT_CONCURRENCY",
        default_value = "4",
        global = true
    )]
    pub webhook_project_concurrency: std::num::NonZeroUsize,
}

/// The documents of `--trusted-documents`, by hash, read and checked at start.
#[derive(Clone)]
pub struct TrustedDocuments(pub Arc<HashMap<String, Arc<str>>>);

impl TrustedDocuments {
    fn read(path: &str) -> Result<TrustedDocuments, String> {
        crate::graphql::PersistedQueries::read_manifest(std::path::Path::new(path))
            .map(|documents| TrustedDocuments(Arc::new(documents)))
    }
}

impl std::fmt::Debug for TrustedDocuments {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "TrustedDocuments({} documents)", self.0.len())
    }
}

/// The bearer token that guards `/metrics`; never printed, not even in `Debug`.
#[derive(Clone)]
pub struct MetricsToken(pub String);

impl std::fmt::Debug for MetricsToken {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("MetricsToken(…)")
    }
}

impl std::str::FromStr for MetricsToken {
    type Err = String;
    fn from_str(text: &str) -> Result<MetricsToken, String> {
        if text.trim().len() < 16 {
            return Err("the metrics token must be at least 16 characters".into());
        }
        Ok(MetricsToken(text.trim().to_owned()))
    }
}

/// The webhook proxy's URL, which may carry the proxy's credentials: `Debug`
/// shows where it points, never its user name or password.
#[derive(Clone)]
pub struct ProxyUrl(pub url::Url);

impl std::fmt::Debug for ProxyUrl {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = self.0.host_str().unwrap_or_default();
        match self.0.port() {
            Some(port) => write!(formatter, "ProxyUrl({}://{host}:{port})", self.0.scheme()),
            None => write!(formatter, "ProxyUrl({}://{host})", self.0.scheme()),
        }
    }
}

impl std::str::FromStr for ProxyUrl {
    type Err = String;
    fn from_str(text: &str) -> Result<ProxyUrl, String> {
        let url = url::Url::parse(text.trim())
            .map_err(|error| format!("not a URL ({error}); write it like http://proxy:3128"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err("the webhook proxy must be an http:// or https:// URL with a host".into());
        }
        Ok(ProxyUrl(url))
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|error| format!("{error}; write durations like 90s, 15m or 24h"))
}

/// Where specs live, parsed from `--spec-store`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecStoreConfig {
    Fs(PathBuf),
    Memory,
    Gcs { bucket: String, prefix: String },
    S3 { bucket: String, prefix: String },
}

impl Config {
    pub fn webhook_settings(&self) -> crate::webhooks::WebhookSettings {
        crate::webhooks::WebhookSettings {
            allow_private: self.webhook_allow_private,
            timeout: self.webhook_timeout,
            connect_timeout: self.webhook_connect_timeout,
            proxy: self.webhook_proxy.clone(),
            retry_base: self.webhook_retry_base,
            retry_max: self.webhook_retry_max,
            disable_after_failures: self.webhook_disable_after_failures,
            disable_after: self.webhook_disable_after,
            poll_every: self.webhook_poll_every,
            concurrency: self.webhook_concurrency.get(),
            project_concurrency: self.webhook_project_concurrency.get(),
        }
    }

    pub fn connection_limits(&self) -> crate::http::ConnectionLimits {
        crate::http::ConnectionLimits {
            header_read_timeout: self.header_read_timeout,
            body_read_timeout: self.body_read_timeout,
            max_connections: self.max_connections.get(),
        }
    }

    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("plangraph.db").display()
            ),
        }
    }

    pub fn spec_store(&self) -> Result<SpecStoreConfig, String> {
        let Some(value) = self.spec_store.as_deref() else {
            return Ok(SpecStoreConfig::Fs(self.data_dir.join("specs")));
        };
        if value == "memory" {
            return Ok(SpecStoreConfig::Memory);
        }
        if let Some(directory) = value.strip_prefix("fs:") {
            return Ok(SpecStoreConfig::Fs(PathBuf::from(directory)));
        }
        let bucket_and_prefix = |rest: &str| {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            (!bucket.is_empty()).then(|| (bucket.to_owned(), prefix.trim_matches('/').to_owned()))
        };
        if let Some((bucket, prefix)) = value.strip_prefix("gcs://").and_then(bucket_and_prefix) {
            return Ok(SpecStoreConfig::Gcs { bucket, prefix });
        }
        if let Some((bucket, prefix)) = value.strip_prefix("s3://").and_then(bucket_and_prefix) {
            return Ok(SpecStoreConfig::S3 { bucket, prefix });
        }
        Err(format!(
            "--spec-store {value:?} is not understood; use fs:DIR, memory, gcs://BUCKET/PREFIX or s3://BUCKET/PREFIX"
        ))
    }
}

/// The host part of a database URL, for messages that must not leak a password.
pub fn database_host(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "the configured database".into();
    };
    if scheme.starts_with("sqlite") {
        return rest.split('?').next().unwrap_or(rest).to_owned();
    }
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    host.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    #[test]
    fn defaults_run_locally() {
        let config = Cli::parse_from(["plangraph"]).config;
        assert_eq!(config.stale_after, Duration::from_secs(24 * 3600));
        assert_eq!(config.sweep_every, Duration::from_secs(60));
        assert!(config.database_url().starts_with("sqlite://"));
        assert_eq!(
            config.spec_store(),
            Ok(SpecStoreConfig::Fs(PathBuf::from("./data/specs")))
        );
    }

    #[test]
    fn connections_default_to_bounded_reads_and_a_cap_that_cannot_be_zero() {
        let limits = Cli::parse_from(["plangraph"]).config.connection_limits();
        assert_eq!(limits.header_read_timeout, Duration::from_secs(10));
        assert_eq!(limits.body_read_timeout, Duration::from_secs(30));
        assert_eq!(limits.max_connections, 10_000);
        assert!(Cli::try_parse_from(["plangraph", "--max-connections", "0"]).is_err());
    }

    #[test]
    fn webhooks_default_to_short_attempts_shared_fairly_and_no_proxy() {
        let settings = Cli::parse_from(["plangraph"]).config.webhook_settings();
        assert_eq!(settings.timeout, Duration::from_secs(5));
        assert_eq!(settings.connect_timeout, Duration::from_secs(2));
        assert_eq!(
            (settings.concurrency, settings.project_concurrency),
            (16, 4)
        );
        assert!(settings.proxy.is_none());
    }

    #[test]
    fn a_webhook_proxy_is_an_http_url_whose_credentials_never_print() {
        let config = Cli::parse_from([
            "plangraph",
            "--webhook-proxy",
            "http://user:hunter2@proxy.internal:3128",
        ])
        .config;
        let proxy = config.webhook_proxy.expect("a proxy");
        assert_eq!(proxy.0.host_str(), Some("proxy.internal"));
        let shown = format!("{proxy:?}");
        assert_eq!(shown, "ProxyUrl(http://proxy.internal:3128)");
        for refused in ["socks5://proxy:1080", "proxy:3128", "not a url"] {
            assert!(
                Cli::try_parse_from(["plangraph", "--webhook-proxy", refused]).is_err(),
                "{refused}"
            );
        }
    }

    #[test]
    fn spec_store_and_durations_parse() {
        let config = Cli::parse_from([
            "plangraph",
            "--spec-store",
            "gcs://bucket/some/prefix/",
            "--stale-after",
            "90s",
        ])
        .config;
        assert_eq!(config.stale_after, Duration::from_secs(90));
        assert_eq!(
            config.spec_store(),
            Ok(SpecStoreConfig::Gcs {
                bucket: "bucket".into(),
                prefix: "some/prefix".into()
            })
        );
        assert!(Cli::try_parse_from(["plangraph", "--sweep-every", "soon"]).is_err());
    }

    #[test]
    fn an_s3_store_parses_with_its_endpoint_and_region() {
        let config = Cli::parse_from([
            "plangraph",
            "--spec-store",
            "s3://bucket/some/prefix/",
            "--s3-endpoint",
            "http://127.0.0.1:9000",
            "--s3-region",
            "eu-central-1",
        ])
        .config;
        assert_eq!(
            config.spec_store(),
            Ok(SpecStoreConfig::S3 {
                bucket: "bucket".into(),
                prefix: "some/prefix".into()
            })
        );
        assert_eq!(config.s3_endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(config.s3_region.as_deref(), Some("eu-central-1"));
        assert_eq!(config.s3_timeout, Duration::from_secs(10));
        let bare = Cli::parse_from(["plangraph", "--spec-store", "s3://bucket"]).config;
        assert_eq!(
            bare.spec_store(),
            Ok(SpecStoreConfig::S3 {
                bucket: "bucket".into(),
                prefix: String::new()
            })
        );
        let nameless = Cli::parse_from(["plangraph", "--spec-store", "s3:///specs"]).config;
        assert!(
            nameless
                .spec_store()
                .is_err_and(|message| message.contains("s3://BUCKET/PREFIX"))
        );
    }

    #[test]
    fn database_host_hides_credentials() {
        assert_eq!(
            database_host("postgres://user:secret@db.internal:5432/app"),
            "db.internal:5432"
        );
        assert_eq!(
            database_host("sqlite://./data/x.db?mode=rwc"),
            "./data/x.db"
        );
    }

    #[test]
    fn spec_reads_default_to_a_bounded_batch_and_cache() {
        let config = Cli::parse_from(["plangraph"]).config;
        assert_eq!(config.spec_fetch_concurrency.get(), 100);
        assert_eq!(config.spec_cache_bytes, 64 * 1024 * 1024);
        assert_eq!(config.gcs_timeout, Duration::from_secs(10));
        assert_eq!(config.gcs_endpoint, None);
        assert!(Cli::try_parse_from(["plangraph", "--spec-fetch-concurrency", "0"]).is_err());
    }
}
