//! The `prmonitor` command line. Exit codes: 0 done, 1 failed while running,
//! 2 a usage or configuration error (nothing was started).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::config::{ConfigError, Settings};
use crate::startup::Application;
use crate::{db, telemetry};

#[derive(Debug, Parser)]
#[command(
    name = "prmonitor",
    version,
    about = "Keeps a PostgreSQL copy of GitHub pull requests and check runs"
)]
struct Cli {
    /// A TOML file with settings; environment variables override it.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service: webhook intake, health and readiness.
    Serve,
    /// Create the database if needed and apply pending migrations, then exit.
    Migrate,
}

const EXIT_FAILED: u8 = 1;
const EXIT_CONFIG: u8 = 2;

pub fn main() -> ExitCode {
    // clap prints its own message and exits 2 on a usage error.
    let cli = Cli::parse();
    let settings = match load_settings(&cli) {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("prmonitor: configuration error: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    telemetry::init(settings.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("prmonitor: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve => serve(settings).await,
            Command::Migrate => migrate(settings).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "prmonitor stopped with an error");
            eprintln!("prmonitor: {error:#}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

fn load_settings(cli: &Cli) -> Result<Settings, ConfigError> {
    let settings = Settings::load(cli.config.as_deref())?;
    if matches!(cli.command, Command::Serve) {
        settings.require_webhook_secrets()?;
    }
    Ok(settings)
}

/// Creates the database when missing and applies migrations (under an advisory lock).
async fn prepare_database(settings: &Settings) -> anyhow::Result<()> {
    db::create_database_if_missing(&settings.database_url).await?;
    let applied = db::run_migrations(&settings.database_url).await?;
    tracing::info!(applied = applied.len(), versions = ?applied, "migrations current");
    Ok(())
}

async fn migrate(settings: Settings) -> anyhow::Result<()> {
    prepare_database(&settings).await
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    prepare_database(&settings).await?;
    let pool = db::build_pool(&settings.database_url, settings.db_pool_size)?;
    let app = Application::build(&settings, pool)
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    tracing::info!(address = %app.address(), "listening");

    let handle = app.handle();
    tokio::spawn(async move {
        let signal = shutdown_signal().await;
        tracing::info!(signal, "stopping: finishing in-flight requests");
        handle.stop(true).await;
    });
    app.run_until_stopped().await.context("the HTTP server failed")?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM (the orchestrator) or SIGINT (Ctrl-C).
async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut sigterm) => tokio::select! {
                _ = sigterm.recv() => "SIGTERM",
                _ = tokio::signal::ctrl_c() => "SIGINT",
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}
