//! Command-line interface: `pgdog [run]`, `configcheck`, `hash` and `demo`.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use pgdog_config::ConfigAndUsers;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info};

use crate::frontend::listener;
use crate::state::PoolerState;

/// pgdog: PostgreSQL connection pooler that can reshard a live database.
#[derive(Debug, Parser)]
#[command(name = "pgdog", version, about)]
pub struct Cli {
    /// Path to pgdog.toml.
    #[arg(
        short = 'c',
        long,
        default_value = "pgdog.toml",
        global = true,
        env = "PGDOG_CONFIG"
    )]
    pub config: PathBuf,
    /// Path to users.toml.
    #[arg(
        short = 'u',
        long,
        default_value = "users.toml",
        global = true,
        env = "PGDOG_USERS"
    )]
    pub users: PathBuf,
    /// What to do (default: run the pooler).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the pooler (the default).
    Run,
    /// Validate pgdog.toml and users.toml and exit.
    Configcheck,
    /// Print a SCRAM-SHA-256 secret for users.toml's `password_hash`.
    Hash {
        /// The password to hash.
        password: String,
    },
}

/// Errors that end a CLI command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] pgdog_config::ConfigError),
    /// TLS files unusable.
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// Could not listen.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// host:port.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Any other I/O failure.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Loads and validates both files.
pub fn load(cli: &Cli) -> Result<ConfigAndUsers, CliError> {
    Ok(ConfigAndUsers::load(&cli.config, &cli.users)?)
}

/// Runs the pooler until SIGINT/SIGTERM, reloading on SIGHUP.
pub async fn run(config: ConfigAndUsers, cli: &Cli) -> Result<(), CliError> {
    let addr = format!(
        "{}:{}",
        config.config.general.host, config.config.general.port
    );
    let state = PoolerState::new(config)?;
    let listener = TcpListener::bind(&addr)
        .await
        .map_err(|source| CliError::Listen {
            addr: addr.clone(),
            source,
        })?;
    info!(
        "pgdog listening on {}",
        listener.local_addr().map(|a| a.to_string()).unwrap_or(addr)
    );
    tokio::spawn(listener::maintain_pools(state.clone()));
    tokio::spawn(reload_on_sighup(
        state.clone(),
        cli.config.clone(),
        cli.users.clone(),
    ));
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = interrupt.recv() => info!("SIGINT received"),
            _ = terminate.recv() => info!("SIGTERM received"),
        }
    };
    listener::run(listener, state, shutdown).await;
    info!("pgdog stopped");
    Ok(())
}

async fn reload_on_sighup(state: Arc<PoolerState>, config: PathBuf, users: PathBuf) {
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        error!("cannot install the SIGHUP handler; reload is unavailable");
        return;
    };
    while hangup.recv().await.is_some() {
        info!(
            "SIGHUP received: reloading {} and {}",
            config.display(),
            users.display()
        );
        match ConfigAndUsers::load(&config, &users) {
            Ok(new) => {
                if let Err(e) = state.reload(new) {
                    error!("reload failed, keeping the previous configuration: {e}");
                }
            }
            Err(e) => error!("reload failed, keeping the previous configuration: {e}"),
        }
    }
}

/// A SCRAM-SHA-256 secret for `password`.
pub fn hash(password: &str) -> String {
    postgres_protocol::password::scram_sha_256(password.as_bytes())
}
