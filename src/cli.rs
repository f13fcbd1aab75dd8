//! The `plangraph` command line: `serve` (the default), `migrate`,
//! `print-schema` and `admin …`. Each command parses its flags, builds what
//! it needs through the library and prints one clear result.

use clap::{Parser, Subcommand};

use crate::StartupError;
use crate::application::Application;
use crate::config::Config;
use crate::error::AppError;
use crate::service::Services;

/// The whole command line: a command and the configuration every command shares.
#[derive(Parser)]
#[command(
    name = "plangraph",
    version,
    about = "GraphQL API server for plan-driven development"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Subcommand)]
pub enum Command {
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
pub enum AdminCommand {
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

/// Runs one command to its end.
pub async fn run(cli: Cli) -> Result<(), StartupError> {
    let config = cli.config;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Migrate => {
            crate::connect_database(&config).await?;
            println!("plangraph: database is up to date");
            Ok(())
        }
        Command::PrintSchema => {
            print!("{}", crate::graphql::sdl());
            Ok(())
        }
        // Needs no database: it must work before one is set up.
        Command::Admin(AdminCommand::CheckStore) => check_store(&config).await,
        Command::Admin(command) => admin(config, command).await,
    }
}

fn failed(error: AppError) -> StartupError {
    error.log_if_internal("command line");
    StartupError(error.message())
}

async fn admin(config: Config, command: AdminCommand) -> Result<(), StartupError> {
    let services = crate::services(&config).await?;
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
    use crate::demo::DemoSize;
    let started = std::time::Instant::now();
    let size = DemoSize {
        projects,
        features_per_project: features,
        plans_per_feature: plans,
    };
    let data = crate::demo::seed(services, size).await.map_err(failed)?;
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
    use crate::config::SpecStoreConfig;
    let described = match config.spec_store().map_err(StartupError)? {
        SpecStoreConfig::Fs(directory) => format!("fs:{}", directory.display()),
        SpecStoreConfig::Memory => "memory".to_owned(),
        SpecStoreConfig::Gcs { bucket, prefix } => match &config.gcs_endpoint {
            Some(endpoint) => format!("gcs://{bucket}/{prefix} at {endpoint}"),
            None => format!("gcs://{bucket}/{prefix}"),
        },
        SpecStoreConfig::S3 { bucket, prefix } => match &config.s3_endpoint {
            Some(endpoint) => format!("s3://{bucket}/{prefix} at {endpoint}"),
            None => format!("s3://{bucket}/{prefix}"),
        },
    };
    let store = crate::spec_store(config).await?;
    match crate::storage::probe(&*store).await {
        Ok(()) => {
            println!(
                "spec store {described}: OK (wrote, read back and compared {})",
                crate::storage::PROBE_KEY
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
    let application = Application::build(config).await?;
    if let Some(created) = application.bootstrap_admin() {
        println!(
            "plangraph: created the first admin user {}; its API key (shown once):",
            created.user.email
        );
        println!("{}", created.key.token);
    }
    if let Some(address) = application.metrics_address() {
        println!("plangraph: metrics on http://{address}/metrics");
    }
    println!(
        "plangraph: listening on http://{}/graphql",
        application.address()
    );
    application.run_until_stopped(shutdown_signal()).await
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
