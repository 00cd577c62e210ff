//! One `SYNC_SCHEMA` run: reads the publication's tables from the source and from every
//! destination shard, compares them ([`super::compare`]) and applies what differs on each
//! shard (shards at once, statements in order, each in its own transaction), recording every
//! statement, applied or left alone, in the schema-sync log under phase `sync`. A failed
//! statement does not stop the others; the report names each failure.

use std::collections::BTreeSet;

use pgdog_config::ConfigAndUsers;
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::apply;
use super::catalog;
use super::compare::{self, Change, CompareOptions, TableDef};
use super::facts::{ColumnName, Name, SourceFacts};
use super::log::{Origin, SchemaSyncLog, StatementState};
use super::Phase;
use crate::reshard::conn::ConnError;
use crate::reshard::endpoints::{ClusterEndpoints, EndpointError};
use crate::reshard::publication;
use crate::reshard::tasks::TaskHandle;

/// What to compare.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Source database (pgdog.toml name).
    pub from: String,
    /// The source shard to read (a stream reads one).
    pub source_shard: usize,
    /// Destination database (pgdog.toml name).
    pub to: String,
    /// Publication naming the tables.
    pub publication: String,
    /// Create, drop and replace indexes too.
    pub indexes: bool,
}

/// Why a run could not compare at all.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Source or destination unusable in the config.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// The source could not be read.
    #[error("reading the source: {0}")]
    Source(#[from] ConnError),
    /// The publication does not exist.
    #[error("publication \"{publication}\" does not exist on the source database \"{database}\"")]
    NoPublication {
        /// Its name.
        publication: String,
        /// Source database.
        database: String,
    },
    /// Stopped by STOP_TASK.
    #[error("stopped")]
    Stopped,
}

/// A statement that failed on a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The table, `schema.name` (empty when the shard could not be read).
    pub table: String,
    /// What the statement did (`ADD COLUMN ...`).
    pub kind: String,
    /// The server's error.
    pub error: String,
}

/// How one shard went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardSync {
    /// Shard number.
    pub shard: usize,
    /// Statements applied.
    pub applied: usize,
    /// Differences left alone on purpose.
    pub skipped: usize,
    /// Statements that failed (or the shard's catalog that could not be read).
    pub failures: Vec<Failure>,
}

/// What a run did, per shard.
#[derive(Debug, Clone, Default)]
pub struct SyncReport {
    /// One entry per destination shard, in shard order.
    pub shards: Vec<ShardSync>,
}

impl SyncReport {
    /// Whether any statement failed.
    pub fn failed(&self) -> bool {
        self.shards.iter().any(|s| !s.failures.is_empty())
    }

    /// `shard 0: 2 applied, 1 left alone; ...`.
    pub fn summary(&self) -> String {
        self.shards
            .iter()
            .map(|s| {
                let mut line = format!(
                    "shard {}: {} applied, {} left alone",
                    s.shard, s.applied, s.skipped
                );
                if !s.failures.is_empty() {
                    line.push_str(&format!(", {} failed", s.failures.len()));
                }
                line
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Every failure: `table public.t on shard 1: ADD COLUMN: <error>`.
    pub fn failures(&self) -> String {
        self.shards
            .iter()
            .flat_map(|s| {
                s.failures.iter().map(move |f| {
                    if f.table.is_empty() {
                        format!("shard {}: {}: {}", s.shard, f.kind, f.error)
                    } else {
                        format!(
                            "table {} on shard {}: {}: {}",
                            f.table, s.shard, f.kind, f.error
                        )
                    }
                })
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// What every shard is compared with.
struct Source {
    tables: Vec<TableDef>,
    names: Vec<Name>,
    widened: BTreeSet<ColumnName>,
}

/// Compares the source with every destination shard and applies the differences.
pub async fn run(
    config: &ConfigAndUsers,
    options: &SyncOptions,
    log: &SchemaSyncLog,
    task: Option<&TaskHandle>,
) -> Result<SyncReport, SyncError> {
    let step = |text: &str| {
        info!("sync schema: {text}");
        if let Some(task) = task {
            task.set_step(text);
        }
    };
    let source = ClusterEndpoints::resolve(config, &options.from)?;
    let destination = ClusterEndpoints::resolve(config, &options.to)?;
    step("reading the source catalog");
    let described = read_source(&source, options).await?;
    stopped(task)?;
    let shards = destination.shards.len();
    step(&format!(
        "comparing and applying on {shards} destination shard(s)"
    ));
    let described = std::sync::Arc::new(described);
    let mut set = JoinSet::new();
    for shard in 0..shards {
        let destination = destination.clone();
        let described = described.clone();
        let log = log.clone();
        let task = task.cloned();
        let compare_options = CompareOptions {
            indexes: options.indexes,
        };
        set.spawn(async move {
            sync_shard(
                &destination,
                shard,
                &described,
                compare_options,
                &log,
                task.as_ref(),
            )
            .await
        });
    }
    let mut report = SyncReport::default();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(outcome) => report.shards.push(outcome),
            Err(e) => warn!("sync schema: a shard's task ended abnormally: {e}"),
        }
    }
    report.shards.sort_by_key(|s| s.shard);
    stopped(task)?;
    Ok(report)
}

/// The publication's tables as the source describes them, and its widened columns.
async fn read_source(
    source: &ClusterEndpoints,
    options: &SyncOptions,
) -> Result<Source, SyncError> {
    let mut conn = source.connect_primary(options.source_shard).await?;
    let result = async {
        if !publication::exists(&mut conn, &options.publication).await? {
            return Err(SyncError::NoPublication {
                publication: options.publication.clone(),
                database: options.from.clone(),
            });
        }
        let refs = publication::tables(&mut conn, &options.publication).await?;
        let facts = SourceFacts::read(&mut conn, &refs).await?;
        let names: Vec<Name> = refs
            .iter()
            .map(|t| (t.schema.clone(), t.name.clone()))
            .collect();
        catalog::qualify_names(&mut conn).await?;
        let tables = catalog::read(&mut conn, &names).await?;
        Ok(Source {
            tables,
            names,
            widened: facts.widened,
        })
    }
    .await;
    conn.close().await;
    result
}

/// Reads shard `shard`, compares it with the source and applies the changes in order.
async fn sync_shard(
    destination: &ClusterEndpoints,
    shard: usize,
    source: &Source,
    options: CompareOptions,
    log: &SchemaSyncLog,
    task: Option<&TaskHandle>,
) -> ShardSync {
    let mut outcome = ShardSync {
        shard,
        ..Default::default()
    };
    let origin = Origin {
        task_id: task.map(TaskHandle::id),
        shard,
        phase: Phase::Sync,
    };
    let connected = async {
        let mut conn = apply::connect(destination, shard).await?;
        let tables = catalog::read(&mut conn, &source.names).await;
        match tables {
            Ok(tables) => Ok((conn, tables)),
            Err(e) => {
                conn.close().await;
                Err(e)
            }
        }
    }
    .await;
    let (mut conn, tables) = match connected {
        Ok(read) => read,
        Err(e) => {
            let error = e.short();
            warn!("sync schema: shard {shard}: reading the catalog: {error}");
            let id = log.add(origin, "CATALOG", "", "", StatementState::Failed);
            log.finish(id, StatementState::Failed, Some(error.clone()));
            outcome.failures.push(Failure {
                table: String::new(),
                kind: "reading the catalog".into(),
                error,
            });
            return outcome;
        }
    };
    let changes = compare::compare(&source.tables, &tables, &source.widened, options);
    info!(
        "sync schema: shard {shard}: {} difference(s)",
        changes.len()
    );
    let mut queue = Vec::new();
    for change in changes {
        let state = match change.skip {
            Some(_) => StatementState::Skipped,
            None => StatementState::Pending,
        };
        let id = log.add(origin, change.kind, &change.object, &change.sql, state);
        match &change.skip {
            Some(reason) => {
                outcome.skipped += 1;
                log.finish(id, StatementState::Skipped, Some(reason.clone()));
            }
            None => queue.push((change, id)),
        }
    }
    let mut lost: Option<String> = None;
    for (change, id) in queue {
        if let Some(reason) = &lost {
            log.finish(id, StatementState::Skipped, Some(reason_skipped(reason)));
            continue;
        }
        if task.is_some_and(|t| t.is_stopping()) {
            log.finish(id, StatementState::Skipped, Some("stopped".into()));
            continue;
        }
        log.start(id);
        match conn.execute(&change.sql).await {
            Ok(_) => {
                log.finish(id, StatementState::Done, None);
                outcome.applied += 1;
            }
            Err(e) => {
                let error = e.short();
                warn!(
                    "sync schema: shard {shard}: {} {} failed: {error}",
                    change.kind, change.object
                );
                log.finish(id, StatementState::Failed, Some(error.clone()));
                outcome.failures.push(failure(&change, error.clone()));
                if matches!(e, ConnError::Lost { .. }) {
                    lost = Some(error);
                }
            }
        }
    }
    conn.close().await;
    outcome
}

fn reason_skipped(lost: &str) -> String {
    format!("not run: the connection to the shard was lost ({lost})")
}

fn failure(change: &Change, error: String) -> Failure {
    Failure {
        table: format!("{}.{}", change.table.0, change.table.1),
        kind: format!("{} {}", change.kind, change.object),
        error,
    }
}

fn stopped(task: Option<&TaskHandle>) -> Result<(), SyncError> {
    match task {
        Some(task) if task.is_stopping() => Err(SyncError::Stopped),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_and_failures_name_table_and_shard() {
        let report = SyncReport {
            shards: vec![
                ShardSync {
                    shard: 0,
                    applied: 2,
                    skipped: 1,
                    failures: Vec::new(),
                },
                ShardSync {
                    shard: 1,
                    applied: 1,
                    skipped: 0,
                    failures: vec![Failure {
                        table: "public.t".into(),
                        kind: "ALTER COLUMN public.t.c".into(),
                        error: "boom (SQLSTATE 22P02)".into(),
                    }],
                },
            ],
        };
        assert!(report.failed());
        assert_eq!(
            report.summary(),
            "shard 0: 2 applied, 1 left alone; shard 1: 1 applied, 0 left alone, 1 failed"
        );
        assert_eq!(
            report.failures(),
            "table public.t on shard 1: ALTER COLUMN public.t.c: boom (SQLSTATE 22P02)"
        );
    }
}
