//! `pgdog demo [--reshard]`: pgdog's reason to exist in one command. Starts throwaway local
//! PostgreSQL clusters (a source with sample data, two empty shards), pgdog in front of them
//! (in this process) and a small write workload through pgdog; prints how to psql in. With
//! `--reshard` it moves the data onto the shards itself (RESHARD through the admin layer) with
//! live progress, cuts over while the workload runs and prints a summary. Ctrl-C at any time
//! stops everything and removes every cluster and file.
//!
//! This file owns the command's arguments, its errors and the order of things: setup (which
//! Ctrl-C may interrupt), pgdog's run, and the cleanup. [`clusters`] starts the servers,
//! [`config`] writes pgdog's files, [`drive`] runs inside pgdog (workload, move, summary).

pub mod clusters;
pub mod config;
pub mod drive;
pub mod instructions;
pub mod interrupt;
pub mod progress;
pub mod reshard;
pub mod summary;
pub mod workload;

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use clap::Args;
use tracing::info;

use crate::cli::{self, CliError};
use crate::local::LocalError;
use clusters::DemoClusters;
use interrupt::Interrupts;

/// Arguments of `pgdog demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Port for pgdog to listen on.
    #[arg(long, default_value_t = 6432)]
    pub port: u16,
    /// Move the data onto the two shards right away (RESHARD), with live progress, while the
    /// workload runs; then print a summary and keep running until Ctrl-C.
    #[arg(long)]
    pub reshard: bool,
    /// With `--reshard`: run the move as the admin commands it is made of, one after the
    /// other (COPY_DATA, a wait for a small lag, CUTOVER), instead of RESHARD.
    #[arg(long, requires = "reshard")]
    pub steps: bool,
}

/// Why the demo stopped early.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A PostgreSQL cluster did not start.
    #[error("could not start a PostgreSQL cluster: {0}")]
    Cluster(#[from] LocalError),
    /// A setup statement failed.
    #[error("{0}: {1}")]
    Sql(&'static str, LocalError),
    /// Anything else in the setup.
    #[error("{0}")]
    Setup(String),
    /// A config file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The generated config files are invalid (a bug).
    #[error(transparent)]
    Config(#[from] pgdog_config::ConfigError),
    /// Ctrl-C (or SIGTERM).
    #[error("interrupted")]
    Interrupted,
    /// The move did not complete.
    #[error("the move failed: {0}")]
    Reshard(String),
    /// I/O.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl From<DemoError> for CliError {
    fn from(error: DemoError) -> CliError {
        CliError::Demo(error.to_string())
    }
}

/// Where the demo's messages go (stdout in the binary), shared by its tasks.
#[derive(Clone)]
pub struct Out(Arc<Mutex<Box<dyn Write + Send>>>);

impl Out {
    /// Wraps a writer.
    pub fn new(writer: Box<dyn Write + Send>) -> Out {
        Out(Arc::new(Mutex::new(writer)))
    }

    /// Writes `text` and flushes; a closed output is ignored (the demo goes on).
    pub fn print(&self, text: &str) {
        let mut writer = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writer.write_all(text.as_bytes());
        let _ = writer.flush();
    }
}

/// Runs the demo until Ctrl-C (or until the move fails), then removes everything. Messages
/// go to `out`; `terminal` says whether it is a terminal (the progress line is redrawn there).
pub fn run(args: &DemoArgs, out: Box<dyn Write + Send>, terminal: bool) -> Result<(), CliError> {
    let out = Out::new(out);
    // From here on Ctrl-C no longer kills the process: it is noticed, and everything started
    // so far is removed.
    let interrupts = Interrupts::watch()?;
    out.print(&format!(
        "Starting {} throwaway PostgreSQL clusters and loading the sample data...\n",
        clusters::SHARDS + 1
    ));
    let clusters = match DemoClusters::start(interrupts.flag()) {
        Ok(clusters) => clusters,
        // A psql that Ctrl-C interrupted fails too: that is the interruption, not an error.
        Err(e) if matches!(e, DemoError::Interrupted) || interrupts.interrupted() => {
            out.print("Interrupted; the clusters started so far are removed.\n");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let config = clusters.write_config(args.port).map_err(CliError::from)?;
    let failure: Arc<Mutex<Option<String>>> = Arc::default();
    let plan = drive::Plan {
        port: args.port,
        reshard: args.reshard,
        steps: args.steps,
        source_port: clusters.source.port(),
        shard_ports: clusters.shard_ports(),
        dir: clusters.dir().to_path_buf(),
        out: out.clone(),
        terminal,
        failure: failure.clone(),
    };
    let result = cli::run_with(config, move |state| {
        // pgdog's own Ctrl-C handling takes over.
        let interrupted = interrupts.stop();
        if interrupted {
            state.begin_shutdown();
            return;
        }
        tokio::spawn(drive::drive(state.clone(), plan));
    });
    info!("removing the demo clusters");
    out.print("Removing the demo clusters and their files...\n");
    drop(clusters);
    out.print("Done.\n");
    result?;
    let failed = failure.lock().unwrap_or_else(|e| e.into_inner()).take();
    match failed {
        Some(message) => Err(CliError::Demo(message)),
        None => Ok(()),
    }
}
