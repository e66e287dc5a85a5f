//! Subcommands of the `api` binary: `serve` (default), `migrate`, `create-superadmin`, `seed-demo`, `openapi`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use migration::{Migrator, MigratorTrait};
use poem::listener::{Acceptor, Listener, TcpListener};
use sea_orm::{ConnectionTrait, Database};
use secrecy::ExposeSecret;
use shared::{Infra, Settings, db, demo};

use crate::state::AppState;

#[derive(Parser)]
#[command(name = "api", version, about = "Corredor HTTP API")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (default)
    Serve,
    /// Create the database if missing and apply every pending migration
    Migrate,
    /// Create the platform superadmin, or reset its password
    CreateSuperadmin {
        #[arg(long)]
        email: String,
        /// Falls back to SUPERADMIN_PASSWORD
        #[arg(long, env = "SUPERADMIN_PASSWORD", hide_env_values = true)]
        password: String,
    },
    /// Create (or refresh) the demo broker with an ADMIN, an AGENT and ~50 leads
    SeedDemo,
    /// Print the OpenAPI spec
    Openapi,
}

pub async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Openapi) = cli.command {
        println!("{}", crate::openapi::spec_json());
        return ExitCode::SUCCESS;
    }
    shared::install_crypto_provider();
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    shared::telemetry::init(&settings.log_format);
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings).await,
        Command::Migrate => migrate(&settings).await,
        Command::CreateSuperadmin { email, password } => create_superadmin(settings, &email, &password).await,
        Command::SeedDemo => seed_demo(settings).await,
        Command::Openapi => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "command failed");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Creates the database when missing and applies migrations under an advisory lock, so several
/// processes starting together migrate once.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    db::ensure_database(&settings.database_url).await?;
    // One connection, so the advisory lock and unlock happen on the session that migrates.
    let mut opts = sea_orm::ConnectOptions::new(settings.database_url.clone());
    opts.max_connections(1).min_connections(1).sqlx_logging(false);
    let conn = Database::connect(opts).await?;
    conn.execute_unprepared("SELECT pg_advisory_lock(727274)").await?;
    let result = Migrator::up(&conn, None).await;
    conn.execute_unprepared("SELECT pg_advisory_unlock(727274)").await?;
    result?;
    tracing::info!("migrations applied");
    Ok(())
}

async fn create_superadmin(settings: Settings, email: &str, password: &str) -> anyhow::Result<()> {
    let infra = Infra::connect(settings).await?;
    let created = shared::auth::service::upsert_superadmin(&infra.db, email, password, true).await?;
    println!("{} superadmin {email}", if created { "created" } else { "updated" });
    Ok(())
}

async fn seed_demo(settings: Settings) -> anyhow::Result<()> {
    let infra = Infra::connect(settings).await?;
    let password = std::env::var("DEMO_PASSWORD").ok().filter(|p| !p.is_empty());
    let seeded = demo::seed(&infra, password).await?;
    println!("demo broker '{}' (id {}): {} leads", seeded.broker_slug, seeded.broker_id, seeded.leads);
    println!("  ADMIN  {}  password: {}", seeded.admin_email, seeded.password);
    println!("  AGENT  {}  password: {}", seeded.agent_email, seeded.password);
    Ok(())
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let addr = format!("{}:{}", settings.host, settings.port);
    let superadmin = settings.superadmin_email.clone().zip(settings.superadmin_password.clone());
    let infra = Infra::connect(settings).await?;
    if let Some((email, password)) = superadmin {
        let created =
            shared::auth::service::upsert_superadmin(&infra.db, &email, password.expose_secret(), false).await?;
        if created {
            tracing::info!(email = %email, "superadmin created from SUPERADMIN_EMAIL");
        }
    }
    let acceptor = TcpListener::bind(addr).into_acceptor().await?;
    let local = acceptor.local_addr();
    let bound = local.first().map(|a| a.to_string()).unwrap_or_default();
    tracing::info!(addr = %bound, "Corredor API listening; docs at /docs");
    crate::serve(crate::NoDelay(acceptor), AppState::new(infra), shutdown_signal()).await?;
    tracing::info!("API stopped");
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; draining");
}
