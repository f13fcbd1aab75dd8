//! The `plangraph` command line: `serve` (default), `migrate`, `print-schema`, `admin …`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use plangraph::config::Config;
use plangraph::service::Services;
use plangraph::{StartupError, sweeper};

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PLANGRAPH_LOG")
                .unwrap_or_else(|_| "plangraph=info,warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
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
        Command::Admin(command) => admin(config, command).await,
    }
}

fn failed(error: plangraph::error::AppError) -> StartupError {
    StartupError(error.message())
}

async fn admin(config: Config, command: AdminCommand) -> Result<(), StartupError> {
    let services = plangraph::services(&config).await?;
    match command {
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

async fn serve(config: Config) -> Result<(), StartupError> {
    let services = plangraph::services(&config).await?;
    print_bootstrap_key(&services).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|error| StartupError(format!("cannot listen on {}: {error}", config.listen)))?;
    let address = listener
        .local_addr()
        .map_err(|error| StartupError(format!("cannot read the listening address: {error}")))?;
    let sweeper = tokio::spawn(sweeper::run(
        services.clone(),
        config.stale_after,
        config.sweep_every,
    ));
    let app = plangraph::app(&config, services);
    println!("plangraph: listening on http://{address}/graphql");
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await;
    sweeper.abort();
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
