//! The pre-flight check: everything that would break a move later, found before anything is
//! created, and reported in one list. It connects once to every source and destination shard
//! primary, runs every check it can (a failed connection or query is reported, never fatal),
//! and closes the connections.
//!
//! Submodules: `servers` connects, `settings` checks source server settings, `tables` checks
//! the publication and its tables on the source, `left_behind` finds what replication would
//! skip, `tool` checks pg_dump and `destination` checks the new shards against what the
//! source reported.

mod destination;
mod left_behind;
mod servers;
mod settings;
mod tables;
mod tool;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::conn::ConnError;
use super::endpoints::ClusterEndpoints;
use super::schema::Phase;

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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

impl Problem {
    fn error(
        check: &'static str,
        object: impl Into<String>,
        message: String,
        hint: String,
    ) -> Self {
        Problem {
            severity: Severity::Error,
            check,
            object: object.into(),
            message,
            hint,
        }
    }

    fn warning(
        check: &'static str,
        object: impl Into<String>,
        message: String,
        hint: String,
    ) -> Self {
        Problem {
            severity: Severity::Warning,
            ..Problem::error(check, object, message, hint)
        }
    }

    /// A check whose query failed: it could not tell whether the problem exists.
    fn unchecked(check: &'static str, object: impl Into<String>, error: &ConnError) -> Self {
        Problem::error(
            check,
            object,
            format!("could not run this check: {}", error.short()),
            "resharding's schema_admin user must be able to read the catalogs, statistics views \
             and tables (make it a superuser, or fix the error above), then run the check again"
                .into(),
        )
    }
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

/// An extension the publication's tables need.
#[derive(Debug, Clone, Default)]
struct ExtensionUse {
    /// Its version on the source.
    version: String,
    /// The tables that need it (quoted, qualified).
    tables: BTreeSet<String>,
}

/// What the source shards reported, for the destination checks.
#[derive(Debug, Default)]
struct SourceFacts {
    /// The publication's tables (schema, name) over all source shards.
    tables: BTreeSet<(String, String)>,
    /// At least one source shard listed its publication tables.
    tables_known: bool,
    /// Extensions the tables need, by name.
    extensions: BTreeMap<String, ExtensionUse>,
    /// The newest source server (`server_version_num`).
    version: Option<u32>,
}

/// The pre-flight check found errors (and they were not overridden).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "pre-flight check failed with {} error(s): {}; fix them, or pass --force (FORCE in the admin command) to go on anyway",
    .0.len(),
    .0.iter().map(|p| format!("{} ({})", p.object, p.check)).collect::<Vec<_>>().join(", ")
)]
pub struct PreflightFailed(pub Vec<Problem>);

/// Lets a step go on unless `problems` has errors and `force` is off.
pub fn gate(problems: &[Problem], force: bool) -> Result<(), PreflightFailed> {
    let errors: Vec<Problem> = problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .cloned()
        .collect();
    if errors.is_empty() || force {
        Ok(())
    } else {
        Err(PreflightFailed(errors))
    }
}

/// Runs every check and returns the problems found (empty: go ahead).
pub async fn run(input: &PreflightInput<'_>) -> Vec<Problem> {
    let mut problems = Vec::new();
    let (mut sources, mut destinations) = servers::connect(input, &mut problems).await;

    // Slots and WAL senders are per server: source shards sharing one need one each.
    let mut per_server: HashMap<(String, u16), usize> = HashMap::new();
    for shard in &input.source.shards {
        *per_server
            .entry((shard.primary.host.clone(), shard.primary.port))
            .or_default() += 1;
    }

    let mut facts = SourceFacts::default();
    for server in &mut sources {
        let needed = per_server
            .get(&(server.addr.host.clone(), server.addr.port))
            .copied()
            .unwrap_or(1);
        settings::check(server, input.phase, needed, &mut problems).await;
        left_behind::large_objects(server, &mut problems).await;
        tables::check(server, input.publication, &mut facts, &mut problems).await;
        facts.version = facts.version.max(server.version);
    }
    tool::check(input.pg_dump_path, &sources, &destinations, &mut problems).await;
    let mut findings = destination::Findings::default();
    for server in &mut destinations {
        destination::check(server, input.phase, &facts, &mut findings, &mut problems).await;
    }
    findings.report(&facts, &mut problems);

    for server in sources.into_iter().chain(destinations) {
        server.conn.close().await;
    }
    dedup(&mut problems);
    tracing::info!(
        source = %input.source.database,
        destination = %input.destination.database,
        publication = %input.publication,
        phase = input.phase.as_str(),
        problems = problems.len(),
        "pre-flight check done"
    );
    problems
}

/// Drops repeats (the same table problem found on several source shards), keeping the order.
fn dedup(problems: &mut Vec<Problem>) {
    let mut seen = HashSet::with_capacity(problems.len());
    problems.retain(|problem| seen.insert(problem.clone()));
}

/// `a, b, c` with at most `limit` items, then `and N more`.
fn list(items: &[String], limit: usize) -> String {
    let mut text = items
        .iter()
        .take(limit)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > limit {
        text.push_str(&format!(" and {} more", items.len() - limit));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_cut_and_repeats_dropped() {
        let items: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        assert_eq!(list(&items, 5), "a, b, c");
        assert_eq!(list(&items, 2), "a, b and 1 more");
        let one = Problem::error("wal_level", "x", "m".into(), "h".into());
        let other = Problem::warning("wal_level", "x", "m".into(), "h".into());
        let mut problems = vec![one.clone(), other.clone(), one.clone()];
        dedup(&mut problems);
        assert_eq!(problems, [one, other]);
    }
}
