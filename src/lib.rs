//! plangraph: a GraphQL API server for plan-driven development.
//!
//! `build` assembles the whole application from a [`Config`]; the binary and
//! the black-box tests both start the server through it.

pub mod application;
pub mod auth;
pub mod cli;
pub mod config;
pub mod demo;
pub mod drift;
pub mod error;
pub mod events;
pub mod graphql;
pub mod http;
pub mod markdown;
pub mod mcp;
pub mod metrics;
pub mod observability;
pub mod service;
pub mod shutdown;
pub mod storage;
pub mod sweeper;
pub mod webhooks;
pub mod workflow;

use std::sync::Arc;

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, Database, DatabaseConnection};

use crate::config::{Config, SpecStoreConfig, database_host};
use crate::events::EventBus;
use crate::service::{Limits, Services};
use crate::shutdown::Shutdown;
use crate::storage::{
    CachedSpecStore, FsSpecStore, GcsOptions, GcsSpecStore, MemorySpecStore, S3Options,
    S3SpecStore, SharedSpecStore,
};

/// A start-up failure, as one line for the operator.
#[derive(Debug)]
pub struct StartupError(pub String);

impl std::fmt::Display for StartupError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl std::error::Error for StartupError {}

/// Connects to the configured database and brings its schema up to date.
pub async fn connect_database(config: &Config) -> Result<DatabaseConnection, StartupError> {
    let url = config.database_url();
    if url.starts_with("sqlite:") && config.database_url.is_none() {
        std::fs::create_dir_all(&config.data_dir).map_err(|error| {
            StartupError(format!(
                "cannot create the data directory {}: {error}",
                config.data_dir.display()
            ))
        })?;
    }
    let options = pool_options(config, &url, config.database_max_connections);
    let host = database_host(&url);
    let db = Database::connect(options).await.map_err(|error| {
        StartupError(format!(
            "cannot connect to the database at {host}: {}",
            short(&error)
        ))
    })?;
    migrate(&db).await.map_err(|error| {
        StartupError(format!(
            "cannot migrate the database at {host}: {}",
            short(&error)
        ))
    })?;
    Ok(db)
}

/// On PostgreSQL, the pool whose connections hold webhooks while their
/// receivers answer (`--webhook-concurrency` of them), apart from the
/// request pool so that slow receivers cannot use up the connections
/// requests wait for. Connected on first use: most servers never send a
/// webhook. SQLite needs none: its deliveries hold no connection.
pub async fn connect_webhook_pool(config: &Config) -> Result<DatabaseConnection, StartupError> {
    let url = config.database_url();
    let size = u32::try_from(config.webhook_concurrency.get()).unwrap_or(u32::MAX);
    let mut options = pool_options(config, &url, size);
    options.connect_lazy(true);
    let pool = Database::connect(options).await.map_err(|error| {
        StartupError(format!(
            "cannot set up the webhook connections to the database at {}: {}",
            database_host(&url),
            short(&error)
        ))
    })?;
    Ok(pool)
}

fn pool_options(config: &Config, url: &str, max_connections: u32) -> ConnectOptions {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(max_connections)
        .acquire_timeout(config.database_acquire_timeout)
        // sqlx pings every connection when it returns to the pool, so a
        // connection that goes idle is known to work; pinging it again on
        // every acquire would add a round trip to each statement. Only one
        // idle long enough to have been cut off (a database restart, a
        // network outage) is checked before use.
        .test_before_acquire_if_idle_for(std::time::Duration::from_secs(1))
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|options| {
            use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
            // WAL lets readers proceed while the single writer commits; with
            // NORMAL sync a commit is durable once the WAL is synced.
            options
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(std::time::Duration::from_secs(10))
        });
    options
}

/// Brings the schema up to date. On PostgreSQL several instances may start at
/// once: the migrations run in one transaction holding an advisory lock, so the
/// second instance waits and then finds nothing left to do. SQLite has a single
/// instance and its own file lock.
async fn migrate(db: &DatabaseConnection) -> Result<(), sea_orm::DbErr> {
    use sea_orm::{ConnectionTrait, DbBackend, TransactionTrait};
    /// Arbitrary but fixed: "plangraph" in ASCII, as a bigint.
    const MIGRATION_LOCK: i64 = 0x706c_616e_6772_6170;
    if db.get_database_backend() != DbBackend::Postgres {
        return Migrator::up(db, None).await;
    }
    let txn = db.begin().await?;
    txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
        .await?;
    Migrator::up(&txn, None).await?;
    txn.commit().await
}

/// The first line of a driver error, without anything that looks like a URL.
fn short(error: &sea_orm::DbErr) -> String {
    let text = error.to_string();
    let line = text.lines().next().unwrap_or_default();
    if line.contains("://") {
        "connection failed".into()
    } else {
        line.to_owned()
    }
}

/// The configured spec store behind its cache, which also bounds how many
/// objects one batch reads at once and counts store traffic for `/metrics`.
pub async fn spec_store(config: &Config) -> Result<SharedSpecStore, StartupError> {
    let store: SharedSpecStore = match config.spec_store().map_err(StartupError)? {
        SpecStoreConfig::Fs(directory) => Arc::new(FsSpecStore::new(directory)),
        SpecStoreConfig::Memory => Arc::new(MemorySpecStore::default()),
        SpecStoreConfig::Gcs { bucket, prefix } => {
            let options = GcsOptions {
                bucket,
                prefix,
                endpoint: config.gcs_endpoint.clone(),
                timeout: config.gcs_timeout,
            };
            let store = GcsSpecStore::connect(options)
                .await
                .map_err(|error| StartupError(error.reason()))?;
            Arc::new(store)
        }
        SpecStoreConfig::S3 { bucket, prefix } => {
            let options = S3Options {
                bucket,
                prefix,
                endpoint: config.s3_endpoint.clone(),
                region: config.s3_region.clone(),
                timeout: config.s3_timeout,
            };
            let store = S3SpecStore::connect(options)
                .await
                .map_err(|error| StartupError(error.reason()))?;
            Arc::new(store)
        }
    };
    Ok(Arc::new(CachedSpecStore::new(
        store,
        config.spec_cache_bytes,
        config.spec_fetch_concurrency.get(),
    )))
}

/// Database, spec store and services, ready to serve or to run a CLI command.
pub async fn services(config: &Config) -> Result<Services, StartupError> {
    let db = connect_database(config).await?;
    let specs = spec_store(config).await?;
    let limits = Limits {
        max_spec_bytes: config.max_spec_bytes,
        max_description_chars: config.max_description_chars,
        ..Limits::default()
    };
    let on_postgres = db.get_database_backend() == sea_orm::DbBackend::Postgres;
    if on_postgres && let Ok(SpecStoreConfig::Fs(directory)) = config.spec_store() {
        // PostgreSQL is how instances share their state; a directory is not.
        tracing::warn!(
            directory = %directory.display(),
            "specs are kept in a local directory while the database is PostgreSQL: if other instances share this database, specs written through one are missing on the others (STORAGE_UNAVAILABLE, /readyz not ready); give every instance the same --spec-store gcs://… or s3://…"
        );
    }
    let events = EventBus::new(config.subscriber_buffer, on_postgres);
    let webhook_pool = if on_postgres {
        Some(connect_webhook_pool(config).await?)
    } else {
        None
    };
    Ok(Services::new(db, specs, events, limits)
        .with_webhooks(config.webhook_settings(), webhook_pool)
        .with_default_lease(config.stale_after)
        .with_concurrent_diffs(config.max_concurrent_diffs))
}

/// The HTTP application for these services. `/metrics` is part of it unless
/// `--metrics-listen` moves it to [`metrics_app`]. `requests` is the runtime
/// that serves requests, where WebSocket queries and mutations run too.
pub fn app(
    config: &Config,
    services: Services,
    shutdown: Shutdown,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    requests: tokio::runtime::Handle,
) -> axum::Router {
    let limits = graphql::QueryLimits {
        max_query_bytes: config.max_query_bytes,
        max_depth: config.max_query_depth,
        max_complexity: config.max_query_complexity,
        max_fields: config.max_query_fields,
        max_document_bytes: config.max_response_document_bytes,
        max_response_bytes: config.max_response_bytes,
        query_timeout: config.query_timeout,
        max_operations_per_connection: config.max_operations_per_connection,
    };
    let introspection = if config.no_playground {
        config::Introspection::Off
    } else {
        config.introspection
    };
    let persisted = graphql::PersistedQueries::new(
        config
            .trusted_documents
            .as_ref()
            .map(|trusted| Arc::clone(&trusted.0)),
    );
    let schema = graphql::build_schema(
        services.clone(),
        shutdown.clone(),
        limits,
        introspection,
        persisted,
    );
    let metrics = http::MetricsEndpoint::new(metrics, config);
    if metrics.refused {
        tracing::warn!(
            listen = %config.listen,
            "/metrics is refused: set --metrics-token, or --metrics-listen to serve it on an address of its own"
        );
    }
    let fanout = http::websocket::Fanout::new(
        schema.clone(),
        services.clone(),
        http::websocket::FanoutSettings {
            capacity: config.subscriber_buffer,
            max_operations_per_connection: config.max_operations_per_connection,
            grouped: !config.ungrouped_subscriptions,
        },
    );
    http::router(http::HttpState::new(http::SharedState {
        schema,
        services,
        fanout,
        requests,
        max_body_bytes: config.max_body_bytes,
        max_batch_operations: config.max_batch_operations,
        shutdown,
        ws_keepalive: config.ws_keepalive,
        connections_per_key: http::websocket::ConnectionsPerKey::new(
            config.max_connections_per_key,
        ),
        metrics,
        operation_series: Arc::default(),
        playground: !config.no_playground,
        cors_origins: config.cors_origins.clone(),
        anonymous: http::anonymous::AnonymousRequests::new(
            config.max_anonymous_requests_per_address,
        ),
    }))
}

/// `/metrics` alone, for the separate address of `--metrics-listen`.
pub fn metrics_app(
    config: &Config,
    services: Services,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
) -> axum::Router {
    http::metrics_router(services, http::MetricsEndpoint::new(metrics, config))
}

/// Background work of a serving instance: the stale sweeper, the webhook
/// worker, and on PostgreSQL the event listener that feeds live
/// subscriptions (and wakes the webhook worker).
pub fn spawn_background_tasks(
    config: &Config,
    services: &Services,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = vec![tokio::spawn(sweeper::run(
        services.clone(),
        config.stale_after,
        config.sweep_every,
    ))];
    tasks.push(tokio::spawn(webhooks::worker::run(services.clone())));
    if services.db.get_database_backend() == sea_orm::DbBackend::Postgres {
        tasks.push(tokio::spawn(events::run_postgres_listener(
            config.database_url(),
            services.db.clone(),
            services.events.clone(),
        )));
    }
    tasks
}

#[cfg(test)]
mod module_graph_tests;
