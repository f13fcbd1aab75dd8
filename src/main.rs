//! The `plangraph` command line: `serve` (default), `migrate`, `print-schema`, `admin …`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use plangraph::StartupError;
use plangraph::config::Config;
use plangraph::service::Services;
use plangraph::shutdown::Shutdown;

/// A GraphQL response is built from many small allocations on every worker
/// thread at once; glibc's allocator spent a fifth of the dashboard
/// benchmark's server CPU in malloc/free and on its arena locks.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "plangraph",
    version,
    about = "GraphQL API server for plan-driven development"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
}

#[derive(Subcommand)]
enum Command {
    /// Serve GraphQL over HTTP (the default).
    Serve,
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Print the GraphQL schema (SDL) to stdout.
    PrintSchema,
    /// Administration from the command line.
    #[command(subcommand)]
    Admin(AdminCommand),
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create a user; prints their API key alone on the last line.
    CreateUser {
        /// The user's email.
        #[arg(long)]
        email: String,
        /// Name to show.
        #[arg(long)]
        display_name: Option<String>,
        /// Make the user a server administrator.
        #[arg(long)]
        admin: bool,
    },
    /// Create another API key for an existing user; prints it alone on the last line.
    CreateKey {
        /// The user's email.
        #[arg(long)]
        email: String,
        /// A name to recognise the key by.
        #[arg(long, default_value = "cli")]
        label: String,
    },
    /// Check that the spec store is usable (credentials, bucket, write and read
    /// back a probe object); prints a verdict and exits non-zero when it is not.
    CheckStore,
    /// Add a realistic demo data set (for demos and benchmarks): a demo admin
    /// and six people in every project, features with specs, plans in every
    /// status with their history. Prints `project:`, `feature:` and `key:`
    /// lines for a dashboard to use; running it again adds another set.
    SeedDemo {
        /// Projects to create.
        #[arg(long, default_value_t = 10)]
        projects: usize,
        /// Features per project.
        #[arg(long, default_value_t = 50)]
        features: usize,
        /// Plans per feature, on average (busy features get more).
        #[arg(long, default_value_t = 20)]
        plans: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    plangraph::observability::init_logging(cli.config.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("plangraph: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("plangraph: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), StartupError> {
    let config = cli.config;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Migrate => {
            plangraph::connect_database(&config).await?;
            println!("plangraph: database is up to date");
            Ok(())
        }
        Command::PrintSchema => {
            print!("{}", plangraph::graphql::sdl());
            Ok(())
        }
        // Needs no database: it must work before one is set up.
        Command::Admin(AdminCommand::CheckStore) => check_store(&config).await,
        Command::Admin(command) => admin(config, command).await,
    }
}

fn failed(error: plangraph::error::AppError) -> StartupError {
    error.log_if_internal("command line");
    StartupError(error.message())
}

async fn admin(config: Config, command: AdminCommand) -> Result<(), StartupError> {
    let services = plangraph::services(&config).await?;
    match command {
        AdminCommand::CheckStore => check_store(&config).await?,
        AdminCommand::CreateUser {
            email,
            display_name,
            admin,
        } => {
            let created = services
                .create_user_unchecked(&email, display_name, admin)
                .await
                .map_err(failed)?;
            println!(
                "Created user {} (id {}). API key, shown once:",
                created.user.email, created.user.id
            );
            println!("{}", created.key.token);
        }
        AdminCommand::SeedDemo {
            projects,
            features,
            plans,
        } => seed_demo(&services, projects, features, plans).await?,
        AdminCommand::CreateKey { email, label } => {
            let user = services
                .user_by_email(&email)
                .await
                .map_err(failed)?
                .ok_or_else(|| StartupError(format!("no user with email {email}")))?;
            let created = services
                .create_key_for(user.id, &label)
                .await
                .map_err(failed)?;
            println!(
                "Created key {:?} for {}. API key, shown once:",
                label, user.email
            );
            println!("{}", created.token);
        }
    }
    Ok(())
}

/// Prints a summary, then one `name: value` line per thing a benchmark or a
/// person needs next, the key last, as `create-user` does.
async fn seed_demo(
    services: &Services,
    projects: usize,
    features: usize,
    plans: usize,
) -> Result<(), StartupError> {
    use plangraph::service::demo::DemoSize;
    let started = std::time::Instant::now();
    let size = DemoSize {
        projects,
        features_per_project: features,
        plans_per_feature: plans,
    };
    let data = services.seed_demo(size).await.map_err(failed)?;
    println!(
        "Seeded demo data in {:.1}s: {} users, {} projects, {} features ({} to {} plans each), \
         {} plans, {} feature versions, {} plan events, {} spec objects",
        started.elapsed().as_secs_f64(),
        data.users,
        data.projects,
        data.features,
        data.fewest_plans_per_feature,
        data.most_plans_per_feature,
        data.plans,
        data.feature_versions,
        data.plan_events,
        data.spec_objects,
    );
    let statuses: Vec<String> = data
        .plans_by_status
        .iter()
        .map(|(status, count)| format!("{status} {count}"))
        .collect();
    println!("plans by status: {}", statuses.join(", "));
    println!("admin: {}", data.admin_email);
    println!("project: {}", data.sample_project);
    println!("feature: {}", data.sample_feature);
    println!("feature plans: {}", data.sample_feature_plans);
    println!("key: {}", data.admin_key);
    Ok(())
}

/// The verdict is one line on stdout; a failure also exits non-zero, so
/// deployment scripts can gate on it.
async fn check_store(config: &Config) -> Result<(), StartupError> {
    use plangraph::config::SpecStoreConfig;
    let described = match config.spec_store().map_err(StartupError)? {
        SpecStoreConfig::Fs(directory) => format!("fs:{}", directory.display()),
        SpecStoreConfig::Memory => "memory".to_owned(),
        SpecStoreConfig::Gcs { bucket, prefix } => match &config.gcs_endpoint {
            Some(endpoint) => format!("gcs://{bucket}/{prefix} at {endpoint}"),
            None => format!("gcs://{bucket}/{prefix}"),
        },
    };
    let store = plangraph::spec_store(config).await?;
    match plangraph::storage::probe(&*store).await {
        Ok(()) => {
            println!(
                "spec store {described}: OK (wrote, read back and compared {})",
                plangraph::storage::PROBE_KEY
            );
            Ok(())
        }
        Err(reason) => {
            println!("spec store {described}: FAILED: {reason}");
            Err(StartupError(format!(
                "the spec store {described} is not usable"
            )))
        }
    }
}

async fn serve(config: Config) -> Result<(), StartupError> {
    let services = plangraph::services(&config).await?;
    print_bootstrap_key(&services).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|error| StartupError(format!("cannot listen on {}: {error}", config.listen)))?;
    let address = listener
        .local_addr()
        .map_err(|error| StartupError(format!("cannot read the listening address: {error}")))?;
    let background = plangraph::spawn_background_tasks(&config, &services);
    let shutdown = Shutdown::default();
    let metrics = plangraph::observability::install_metrics();
    if let Some(metrics_address) = config.metrics_listen {
        let metrics_listener = tokio::net::TcpListener::bind(metrics_address)
            .await
            .map_err(|error| {
                StartupError(format!("cannot listen on {metrics_address}: {error}"))
            })?;
        let bound = metrics_listener
            .local_addr()
            .map_err(|error| StartupError(format!("cannot read the metrics address: {error}")))?;
        let metrics_app = plangraph::metrics_app(&config, services.clone(), metrics.clone());
        tokio::spawn(async move {
            if let Err(error) = axum::serve(metrics_listener, metrics_app).await {
                tracing::error!(%error, "the metrics listener stopped");
            }
        });
        println!("plangraph: metrics on http://{bound}/metrics");
    }
    let app = plangraph::app(&config, services, shutdown.clone(), metrics);
    println!("plangraph: listening on http://{address}/graphql");
    let signal = shutdown.clone();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            signal.begin();
        })
        .await;
    // WebSocket connections live outside axum's graceful shutdown; give them
    // a moment to send `complete` and close.
    shutdown.begin();
    shutdown.drain(std::time::Duration::from_secs(5)).await;
    for task in background {
        task.abort();
    }
    served.map_err(|error| StartupError(format!("server failed: {error}")))
}

async fn print_bootstrap_key(services: &Services) -> Result<(), StartupError> {
    if let Some(created) = services.bootstrap_admin().await.map_err(failed)? {
        println!(
            "plangraph: created the first admin user {}; its API key (shown once):",
            created.user.email
        );
        println!("{}", created.key.token);
    }
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}
