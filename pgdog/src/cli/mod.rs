//! Command-line interface: `pgdog [run]`, `configcheck`, `hash`, `demo` and the resharding
//! steps (`schema-sync`, `data-sync`, `cleanup`, `verify`).

pub mod cleanup;
pub mod data_sync;
pub mod databases;
pub mod schema_sync;
pub mod verify;

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
    /// Start throwaway local Postgres clusters (a source with sample data, two empty shards),
    /// pgdog in front of them and a small write workload; `--reshard` moves the data live.
    Demo(crate::demo::DemoArgs),
    /// Recreate the source schema on the destination shards (resharding). Without a phase flag:
    /// before the copy (schemas, types, tables, primary keys, sequences).
    SchemaSync(schema_sync::SchemaSyncArgs),
    /// Copy every row of the publication's tables to the destination shards (resharding):
    /// pre-flight check, schema sync, copy in one snapshot, verification, indexes.
    DataSync(data_sync::DataSyncArgs),
    /// Abandon a move: drop its replication slot on the source (so WAL stops piling up) and its
    /// bookkeeping on the destination shards.
    Cleanup(cleanup::CleanupArgs),
    /// Compare every table of two databases (row counts and checksums, shard by shard); exits
    /// non-zero unless every table matches.
    Verify(verify::VerifyArgs),
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
    /// The demo could not start its cluster.
    #[error("demo: {0}")]
    Demo(String),
    /// A resharding step failed.
    #[error("{0}")]
    Resharding(String),
    /// Any other I/O failure.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Loads and validates both files.
pub fn load(cli: &Cli) -> Result<ConfigAndUsers, CliError> {
    Ok(ConfigAndUsers::load(&cli.config, &cli.users)?)
}

/// Runs the pooler until SIGINT/SIGTERM, reloading on SIGHUP. Each of `workers` threads runs
/// its own single-threaded runtime and accepts on its own SO_REUSEPORT socket: a client lives
/// on one thread, so its traffic never crosses threads. Pools are shared by all threads.
pub fn run(config: ConfigAndUsers) -> Result<(), CliError> {
    run_with(config, |_| {})
}

/// [`run`], calling `ready` with the live state once pgdog listens. `ready` runs inside
/// pgdog's main runtime, so it may `tokio::spawn` work that lives as long as pgdog (the demo
/// drives its workload and the admin commands this way); calling
/// [`PoolerState::begin_shutdown`] stops pgdog as SIGINT does.
pub fn run_with(
    config: ConfigAndUsers,
    ready: impl FnOnce(&Arc<PoolerState>),
) -> Result<(), CliError> {
    raise_open_files_limit();
    let workers = config.config.general.workers.max(1);
    let addr = format!(
        "{}:{}",
        config.config.general.host, config.config.general.port
    );
    let listen_error = |source| CliError::Listen {
        addr: addr.clone(),
        source,
    };
    let socket_addr = std::net::ToSocketAddrs::to_socket_addrs(&addr)
        .map_err(listen_error)?
        .next()
        .ok_or_else(|| listen_error(std::io::ErrorKind::AddrNotAvailable.into()))?;
    let state = PoolerState::new(config)?;
    let runtime = current_thread()?;
    let _enter = runtime.enter();
    // Bound before the client port, so a taken metrics port stops startup with its address.
    let metrics = runtime.block_on(crate::metrics::bind(&state))?;
    let mut listeners = Vec::with_capacity(workers);
    for _ in 0..workers {
        listeners.push(listener::bind(socket_addr).map_err(listen_error)?);
    }
    info!("pgdog listening on {socket_addr} with {workers} worker thread(s)");
    let main_listener = listeners.remove(0);
    for (i, socket) in listeners.into_iter().enumerate() {
        let state = state.clone();
        let std_listener = socket.into_std()?;
        std::thread::Builder::new()
            .name(format!("pgdog-worker-{}", i + 1))
            .spawn(move || match current_thread() {
                Ok(runtime) => runtime.block_on(async move {
                    match TcpListener::from_std(std_listener) {
                        Ok(listener) => listener::accept(listener, state).await,
                        Err(e) => error!("worker cannot listen: {e}"),
                    }
                    // Keep serving this thread's clients while the main thread drains them;
                    // the process exits when the drain is over.
                    std::future::pending::<()>().await
                }),
                Err(e) => error!("cannot start worker runtime: {e}"),
            })?;
    }
    runtime.block_on(async move {
        if let Some(metrics) = metrics {
            tokio::spawn(crate::metrics::serve(metrics, state.clone()));
        }
        tokio::spawn(listener::maintain_pools(state.clone()));
        tokio::spawn(crate::backend::two_phase::maintain(state.clone()));
        tokio::spawn(reload_on_sighup(state.clone()));
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let accept = tokio::spawn(listener::accept(main_listener, state.clone()));
        ready(&state);
        let mut shutdown = state.shutdown_signal();
        tokio::select! {
            _ = interrupt.recv() => info!("SIGINT received"),
            _ = terminate.recv() => info!("SIGTERM received"),
            _ = shutdown.wait_for(|down| *down) => {}
        }
        state.begin_shutdown();
        let _ = accept.await;
        listener::drain(&state).await;
        info!("pgdog stopped");
        Ok(())
    })
}

/// Raises the soft limit on open files to the hard limit: every client and every server
/// connection is a file descriptor, and the usual soft limit (1024) is far too low for a pooler.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 || limit.rlim_cur >= limit.rlim_max
        {
            return;
        }
        let wanted = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
            info!(
                "open files limit raised from {} to {}",
                limit.rlim_cur, limit.rlim_max
            );
        }
    }
}

pub(crate) fn current_thread() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

async fn reload_on_sighup(state: Arc<PoolerState>) {
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        error!("cannot install the SIGHUP handler; reload is unavailable");
        return;
    };
    while hangup.recv().await.is_some() {
        info!("SIGHUP received: reloading the configuration files");
        if let Err(e) = state.reload_from_files() {
            error!("reload failed, keeping the previous configuration: {e}");
        }
    }
}

/// A SCRAM-SHA-256 secret for `password`.
pub fn hash(password: &str) -> String {
    postgres_protocol::password::scram_sha_256(password.as_bytes())
}
