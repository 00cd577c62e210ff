//! Running a phase's statements on one destination shard: compare each object with what the
//! shard already has (skip identical ones, report different ones), then create the rest in
//! order, secondary indexes several at a time, and record every statement in the log.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::dump::DumpEntry;
use super::facts::Name;
use super::log::{Origin, RecordId, SchemaSyncLog, StatementState};
use super::plan::Planned;
use super::rewrite::{canonical, target_of};
use super::Phase;
use crate::reshard::conn::{Conn, ConnError};
use crate::reshard::endpoints::ClusterEndpoints;
use crate::reshard::tasks::TaskHandle;

/// Session settings pg_dump's output expects (it qualifies every name itself).
pub const SESSION: &str = "SET statement_timeout = 0; SET lock_timeout = 0; \
    SET idle_in_transaction_session_timeout = 0; SET client_encoding = 'UTF8'; \
    SET standard_conforming_strings = on; SELECT pg_catalog.set_config('search_path', '', false); \
    SET check_function_bodies = false; SET xmloption = content; SET client_min_messages = warning; \
    SET row_security = off; SET default_table_access_method = heap";

/// Index builds beside the copy use no parallel maintenance workers ([`RunOptions::beside_copy`]).
const NO_PARALLEL_WORKERS: &str = "SET max_parallel_maintenance_workers = 0";

/// One statement to run on a shard, already compared with what the shard has.
#[derive(Debug, Clone)]
pub struct Step {
    /// Object type (`TABLE`, `INDEX`, `ANALYZE`, `SEQUENCE VALUE`, ...).
    pub kind: String,
    /// `schema.name`.
    pub object: String,
    /// The SQL (statements separated by `;\n`).
    pub sql: String,
    /// `Pending` to run, `Exists` / `Differs` to leave alone.
    pub state: StatementState,
    /// What differs.
    pub note: Option<String>,
    /// May run concurrently with the other parallel steps (secondary indexes).
    pub parallel: bool,
    /// Not a schema object (ANALYZE): not counted as created.
    pub maintenance: bool,
    /// The table it acts on (schema, name), where there is one.
    pub table: Option<Name>,
}

impl Step {
    /// A step to run.
    pub fn run(kind: &str, object: &str, sql: String) -> Step {
        Step {
            kind: kind.to_string(),
            object: object.to_string(),
            sql,
            state: StatementState::Pending,
            note: None,
            parallel: false,
            maintenance: false,
            table: None,
        }
    }

    /// Whether it needs nothing but its own table: an index, a key, a check or exclusion
    /// constraint, ANALYZE (not a foreign key, trigger, rule or policy, which may name
    /// other objects).
    pub fn table_local(&self) -> bool {
        matches!(self.kind.as_str(), "INDEX" | "CONSTRAINT" | "ANALYZE")
    }
}

/// Canonical text of an entry's statements, for comparing definitions.
fn canonical_entry(entry: &DumpEntry) -> String {
    entry
        .statements
        .iter()
        .map(|s| canonical(s))
        .collect::<Vec<_>>()
        .join(";\n")
}

/// Objects that only need to exist (their dumped definition has no details to compare).
fn existence_is_enough(kind: &str) -> bool {
    matches!(kind, "SCHEMA" | "EXTENSION")
}

/// Compares the planned objects with the shard's own dump and turns them into steps.
pub fn compare(planned: &[Planned], shard_dump: &[DumpEntry]) -> Vec<Step> {
    let existing: HashMap<_, _> = shard_dump.iter().map(|e| (e.key(), e)).collect();
    planned
        .iter()
        .map(|p| {
            let entry = &p.entry;
            let object = match &entry.schema {
                Some(schema) => format!("{schema}.{}", entry.name),
                None => entry.name.clone(),
            };
            let mut step = Step::run(&entry.kind, &object, entry.statements.join(";\n"));
            step.parallel = p.parallel;
            step.table = entry.statements.first().and_then(|sql| target_of(sql)).map(
                |(schema, name)| match (schema.is_empty(), &entry.schema) {
                    (true, Some(own)) => (own.clone(), name),
                    _ => (schema, name),
                },
            );
            if let Some(there) = existing.get(&entry.key()) {
                if existence_is_enough(&entry.kind)
                    || canonical_entry(there) == canonical_entry(entry)
                {
                    step.state = StatementState::Exists;
                } else {
                    step.state = StatementState::Differs;
                    step.note = Some(format!(
                        "exists on the shard with a different definition: {}",
                        there.statements.join("; ")
                    ));
                }
            }
            step
        })
        .collect()
}

/// How a shard's phase went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardOutcome {
    /// Shard number.
    pub shard: usize,
    /// Objects created.
    pub created: usize,
    /// Objects that already existed identically.
    pub existed: usize,
    /// Objects that exist with another definition (left alone).
    pub differ: usize,
    /// Statements that failed.
    pub failed: usize,
    /// Maintenance statements run (ANALYZE).
    pub maintenance: usize,
    /// Statements that would run (`--dry-run`).
    pub would_run: usize,
    /// The first error, if any.
    pub first_error: Option<String>,
}

impl std::fmt::Display for ShardOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "shard {}: {} created, {} already existed, {} differ, {} failed",
            self.shard, self.created, self.existed, self.differ, self.failed
        )?;
        if self.would_run > 0 {
            write!(f, ", {} would run", self.would_run)?;
        }
        if self.maintenance > 0 {
            write!(f, ", {} analyzed", self.maintenance)?;
        }
        Ok(())
    }
}

/// How to run the steps.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The task running them (`None` from the CLI).
    pub task_id: Option<u64>,
    /// The phase, for the log.
    pub phase: Phase,
    /// Record what would run; change nothing.
    pub dry_run: bool,
    /// Keep going after a failed statement.
    pub ignore_errors: bool,
    /// Parallel steps at once.
    pub index_jobs: usize,
    /// The steps build a copied table's indexes while the copy goes on with other tables:
    /// one at a time per shard and without parallel maintenance workers, so that the copy
    /// (which holds a snapshot open on the source) keeps most of the machine.
    pub beside_copy: bool,
}

/// Runs `steps` on shard `shard` of `destination`, recording each in `log`; serial steps run
/// on `conn` when given (opened with [`connect`]), else on a new connection.
pub async fn run_steps(
    destination: &ClusterEndpoints,
    shard: usize,
    steps: Vec<Step>,
    conn: Option<Conn>,
    options: &RunOptions,
    log: &SchemaSyncLog,
    task: Option<&TaskHandle>,
) -> ShardOutcome {
    let mut outcome = ShardOutcome {
        shard,
        ..Default::default()
    };
    let mut queue: Vec<(Step, RecordId)> = Vec::new();
    for step in steps {
        let state = match step.state {
            StatementState::Pending if options.dry_run => StatementState::DryRun,
            other => other,
        };
        let origin = Origin {
            task_id: options.task_id,
            shard,
            phase: options.phase,
        };
        let id = log.add(origin, &step.kind, &step.object, &step.sql, state);
        match state {
            StatementState::Exists => outcome.existed += 1,
            StatementState::Differs => {
                outcome.differ += 1;
                warn!(
                    "shard {shard}: {} {} differs: {}",
                    step.kind,
                    step.object,
                    step.note.as_deref().unwrap_or("")
                );
                log.finish(id, StatementState::Differs, step.note.clone());
            }
            StatementState::DryRun => outcome.would_run += 1,
            _ => queue.push((step, id)),
        }
    }
    if options.dry_run || queue.is_empty() {
        if let Some(conn) = conn {
            conn.close().await;
        }
        return outcome;
    }
    let opened = match conn {
        Some(conn) => Ok(conn),
        None => connect(destination, shard).await,
    };
    let mut conn = match opened {
        Ok(conn) => conn,
        Err(e) => {
            outcome.failed += 1;
            outcome.first_error = Some(e.to_string());
            for (_, id) in &queue {
                log.finish(*id, StatementState::Skipped, Some(e.to_string()));
            }
            return outcome;
        }
    };
    let (parallel, serial): (Vec<_>, Vec<_>) = queue.into_iter().partition(|(s, _)| s.parallel);
    let mut stop = false;
    if !parallel.is_empty() {
        stop = !run_parallel(
            destination,
            shard,
            parallel,
            options,
            log,
            task,
            &mut outcome,
        )
        .await;
    }
    for (step, id) in serial {
        if stop || task.is_some_and(|t| t.is_stopping()) {
            log.finish(id, StatementState::Skipped, None);
            continue;
        }
        log.start(id);
        match conn.execute(&step.sql).await {
            Ok(_) => {
                log.finish(id, StatementState::Done, None);
                count_done(&step, &mut outcome);
            }
            Err(e) => {
                stop = !record_failure(shard, &step, id, &e, options, log, &mut outcome);
                if matches!(e, ConnError::Lost { .. }) {
                    stop = true;
                }
            }
        }
    }
    conn.close().await;
    outcome
}

fn count_done(step: &Step, outcome: &mut ShardOutcome) {
    if step.maintenance {
        outcome.maintenance += 1;
    } else {
        outcome.created += 1;
    }
}

/// Records a failed statement; whether to go on.
fn record_failure(
    shard: usize,
    step: &Step,
    id: RecordId,
    error: &ConnError,
    options: &RunOptions,
    log: &SchemaSyncLog,
    outcome: &mut ShardOutcome,
) -> bool {
    let message = error.short();
    warn!(
        "shard {shard}: {} {} failed: {message}",
        step.kind, step.object
    );
    log.finish(id, StatementState::Failed, Some(message.clone()));
    outcome.failed += 1;
    outcome
        .first_error
        .get_or_insert_with(|| format!("shard {shard}: {} {}: {message}", step.kind, step.object));
    options.ignore_errors
}

/// Runs the parallel steps `index_jobs` at a time, each on its own connection; whether to go on.
async fn run_parallel(
    destination: &ClusterEndpoints,
    shard: usize,
    steps: Vec<(Step, RecordId)>,
    options: &RunOptions,
    log: &SchemaSyncLog,
    task: Option<&TaskHandle>,
    outcome: &mut ShardOutcome,
) -> bool {
    let jobs = if options.beside_copy {
        1
    } else {
        options.index_jobs.max(1).min(steps.len())
    };
    let beside_copy = options.beside_copy;
    info!(
        "shard {shard}: building {} indexes, {jobs} at a time",
        steps.len()
    );
    let permits = Arc::new(Semaphore::new(jobs));
    let destination = Arc::new(destination.clone());
    let mut set = JoinSet::new();
    for (step, id) in steps {
        let permits = permits.clone();
        let destination = destination.clone();
        let log = log.clone();
        let stopping = task.cloned();
        set.spawn(async move {
            let _permit = permits.acquire_owned().await;
            if stopping.as_ref().is_some_and(|t| t.is_stopping()) {
                log.finish(id, StatementState::Skipped, None);
                return (step, id, None);
            }
            log.start(id);
            let result = match connect(&destination, shard).await {
                Ok(mut conn) => {
                    let result = async {
                        if beside_copy {
                            conn.execute(NO_PARALLEL_WORKERS).await?;
                        }
                        conn.execute(&step.sql).await
                    }
                    .await;
                    conn.close().await;
                    result.map(|_| ())
                }
                Err(e) => Err(e),
            };
            (step, id, Some(result))
        });
    }
    let mut go_on = true;
    while let Some(joined) = set.join_next().await {
        let Ok((step, id, result)) = joined else {
            go_on = false;
            continue;
        };
        match result {
            None => go_on = false,
            Some(Ok(())) => {
                log.finish(id, StatementState::Done, None);
                count_done(&step, outcome);
            }
            Some(Err(e)) => {
                if !record_failure(shard, &step, id, &e, options, log, outcome) {
                    go_on = false;
                }
            }
        }
    }
    go_on
}

/// A connection to the shard's primary with pg_dump's session settings.
pub async fn connect(destination: &ClusterEndpoints, shard: usize) -> Result<Conn, ConnError> {
    let mut conn = destination.connect_primary(shard).await?;
    conn.execute(SESSION).await?;
    Ok(conn)
}
