//! A serving instance, built from a [`Config`]: listeners bound, database
//! migrated, the first admin created on an empty database, background tasks
//! started. The binary and anything else that needs a whole server (a
//! benchmark, a test) build it the same way.

use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::http::{OpenConnections, serve};
use crate::service::Services;
use crate::service::users::CreatedUser;
use crate::shutdown::Shutdown;
use crate::{StartupError, app, metrics_app, services, spawn_background_tasks};

/// How long open WebSockets get, once the listener stopped, to send their
/// `complete` messages and close.
const WEBSOCKET_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

pub struct Application {
    listener: TcpListener,
    address: SocketAddr,
    metrics: Option<(TcpListener, SocketAddr)>,
    config: Config,
    services: Services,
    bootstrap_admin: Option<CreatedUser>,
}

impl Application {
    /// Binds the configured addresses (port 0 picks a free port) and gets the
    /// database and spec store ready; nothing is served until
    /// [`Application::run_until_stopped`].
    pub async fn build(config: Config) -> Result<Application, StartupError> {
        let services = services(&config).await?;
        let bootstrap_admin = services
            .bootstrap_admin()
            .await
            .map_err(|error| StartupError(error.message()))?;
        let (listener, address) = bind(config.listen).await?;
        let metrics = match config.metrics_listen {
            Some(address) => Some(bind(address).await?),
            None => None,
        };
        Ok(Application {
            listener,
            address,
            metrics,
            config,
            services,
            bootstrap_admin,
        })
    }

    /// Where the API listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Where `/metrics` listens when it has an address of its own.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(_, address)| *address)
    }

    /// The first admin, when this start created it; its key exists only here.
    pub fn bootstrap_admin(&self) -> Option<&CreatedUser> {
        self.bootstrap_admin.as_ref()
    }

    /// Serves until `stop` completes, then stops taking requests, lets open
    /// WebSockets close, and ends the background tasks.
    pub async fn run_until_stopped(
        self,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartupError> {
        let Application {
            listener,
            metrics,
            config,
            services,
            ..
        } = self;
        let background = spawn_background_tasks(&config, &services);
        let shutdown = Shutdown::default();
        let recorder = crate::observability::install_metrics();
        let limits = config.connection_limits();
        let api_connections = OpenConnections::register("api");
        if let Some((metrics_listener, _)) = metrics {
            let metrics_app = metrics_app(&config, services.clone(), recorder.clone());
            // Serves until the process exits: a scrape during shutdown still
            // sees the last numbers.
            tokio::spawn(serve(
                metrics_listener,
                metrics_app,
                limits,
                OpenConnections::register("metrics"),
                std::future::pending(),
            ));
        }
        // This runtime serves the requests; WebSocket queries and mutations
        // are sent to it from the fan-out thread.
        let requests = tokio::runtime::Handle::current();
        let router = app(&config, services, shutdown.clone(), recorder, requests);
        let signal = shutdown.clone();
        serve(listener, router, limits, api_connections, async move {
            stop.await;
            signal.begin();
        })
        .await;
        // WebSocket connections live outside the listener's graceful shutdown.
        shutdown.begin();
        shutdown.drain(WEBSOCKET_DRAIN).await;
        for task in background {
            task.abort();
        }
        Ok(())
    }
}

async fn bind(address: SocketAddr) -> Result<(TcpListener, SocketAddr), StartupError> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(|error| StartupError(format!("cannot listen on {address}: {error}")))?;
    let bound = listener
        .local_addr()
        .map_err(|error| StartupError(format!("cannot read the address of {address}: {error}")))?;
    Ok((listener, bound))
}
