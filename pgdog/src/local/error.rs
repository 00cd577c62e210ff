//! [`LocalError`]: every failure says what was being done; failed commands
//! carry their stderr, and a server that would not start its log tail.

use std::io;
use std::path::Path;

/// Everything that can go wrong creating or driving a [`super::LocalCluster`].
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The PostgreSQL binaries were not found (what was looked for).
    #[error(
        "PostgreSQL not found: {0}; install postgresql-15 \
         (apt-get install -y postgresql) or point PG_BINDIR at its bin directory"
    )]
    NotInstalled(String),
    /// A command could not be started: (command line, OS error).
    #[error("could not run `{0}`: {1}")]
    Spawn(String, #[source] io::Error),
    /// A command exited unsuccessfully: (command line, exit status, stderr).
    #[error("`{0}` failed ({1}): {2}")]
    Command(String, String, String),
    /// The server did not start.
    #[error("PostgreSQL in {data_dir} failed to start: {reason}\n--- server log ---\n{log_tail}")]
    Start {
        /// The cluster's data directory (already deleted again, unless kept).
        data_dir: String,
        /// The pg_ctl error.
        reason: String,
        /// The last lines of the server log.
        log_tail: String,
    },
    /// A file system or socket operation failed: (what was done, OS error).
    #[error("{0}: {1}")]
    Io(String, #[source] io::Error),
    /// The OS user `pgdog_test`, needed when running as root, could not be made.
    #[error("could not create OS user pgdog_test to run PostgreSQL as (we are root): {0}")]
    User(String),
    /// The shared template data directory is unusable: (path, problem).
    #[error("template data directory {0}: {1}")]
    Template(String, String),
    /// An option cannot be written into the configuration.
    #[error("invalid option: {0}")]
    InvalidOption(String),
}

/// `map_err` adapter turning an I/O error on `path` into [`LocalError::Io`].
pub(super) fn io_err(what: &str, path: &Path) -> impl FnOnce(io::Error) -> LocalError {
    let what = format!("{what} {}", path.display());
    move |err| LocalError::Io(what, err)
}
