//! One destination shard's applier: a task with its own connection that runs the SQL the
//! stream routes to it. Source transactions arrive in batches; a batch is applied in one
//! destination transaction that ends by recording the batch's last commit LSN, so a batch is
//! on the shard entirely or not at all. Batches commit in order, and each commit is reported
//! back so the stream can confirm positions every shard has.

use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::schema::{self, SchemaChange};
use super::state;
use super::wal::Lsn;
use crate::reshard::conn::{Conn, ConnError};

/// What the stream sends a shard.
#[derive(Debug)]
pub enum Work {
    /// Statements of a batch still open (a large transaction, sent before it ends), after
    /// the PREPAREs they need (each run as a query of its own).
    Sql {
        /// PREPAREs to run first.
        prepare: Vec<String>,
        /// Statements.
        sql: String,
    },
    /// The batch's last statements; commit it, recording the position.
    Commit {
        /// PREPAREs to run first.
        prepare: Vec<String>,
        /// Statements (may be empty).
        sql: String,
        /// The batch.
        batch: u64,
        /// Commit LSN of its last transaction.
        commit_lsn: Lsn,
        /// End LSN of its last transaction.
        end_lsn: Lsn,
        /// Source commit time of its last transaction.
        commit_time: i64,
    },
    /// The changes of tables copied beside the stream that waited for their copy: run in a
    /// transaction of their own (between batches) that ends with `finish` (clearing the
    /// tables' `drain_pending` mark).
    Drain {
        /// PREPAREs to run first.
        prepare: Vec<String>,
        /// Statements (may be empty).
        sql: String,
        /// What marks the tables done.
        finish: String,
        /// Its number among the batches (reported like a batch's commit).
        batch: u64,
    },
    /// A table's new shape: compare it with this shard's catalog and run the DDL that
    /// makes them match, in the open batch (before the changes that use it).
    Schema {
        /// The new shape.
        change: Arc<SchemaChange>,
        /// The batch it is part of.
        batch: u64,
    },
    /// DDL an application ran through pgdog on the source, replayed in the open batch with
    /// the search_path it ran with. Statements that find their work done (the column
    /// exists, the index is gone) are skipped.
    Ddl {
        /// The session's search_path on the source.
        search_path: String,
        /// The statements.
        sql: String,
        /// The batch it is part of.
        batch: u64,
    },
}

/// Applying one piece of work slower than this is logged.
const SLOW_APPLY: std::time::Duration = std::time::Duration::from_millis(200);

/// SQLSTATEs of DDL whose work is already done: duplicate column, table, object, schema,
/// function; undefined column, table, object.
const ALREADY_DONE: [&str; 8] = [
    "42701", "42P07", "42710", "42P06", "42723", "42703", "42P01", "42704",
];

/// What a shard reports back.
#[derive(Debug)]
pub enum Report {
    /// The batch is committed.
    Committed {
        /// The shard.
        shard: usize,
        /// The batch.
        batch: u64,
    },
    /// The shard failed; its task ended and the open batch is rolled back.
    Failed {
        /// The shard.
        shard: usize,
        /// Why.
        error: ConnError,
    },
    /// A column was added whose values in the existing rows only a copy can bring (a
    /// volatile default, or one the source catalog no longer keeps for those rows): the
    /// table must be copied again once the batch is in.
    CopyAgain {
        /// The table, `schema.name`.
        table: String,
        /// The batch whose commit the copy must wait for (it adds the column).
        batch: u64,
    },
    /// A schema change could not be applied; the task ended, the batch is rolled back.
    SchemaFailed {
        /// The shard.
        shard: usize,
        /// The table (or DDL) it was about.
        statement: String,
        /// Why.
        error: String,
    },
}

/// Session settings of an applier: values read like the source printed them, no timeouts,
/// row lookups by index, and (where the role may) triggers and foreign keys off like
/// PostgreSQL's own apply workers. Returns whether they are off.
pub async fn prepare(conn: &mut Conn) -> Result<bool, ConnError> {
    conn.execute(super::source::VALUE_SETTINGS).await?;
    // Every UPDATE and DELETE finds its rows by key: always through the key's index, like
    // PostgreSQL's apply workers (the planner would scan small, bloated tables instead, or
    // hash a whole table to join it with a few thousand keys of a set-based statement).
    conn.execute(
        "SET statement_timeout = 0; SET lock_timeout = 0; \
         SET idle_in_transaction_session_timeout = 0; SET enable_seqscan = off; \
         SET enable_hashjoin = off; SET enable_mergejoin = off",
    )
    .await?;
    if let Err(e) = conn.execute("SET session_replication_role = replica").await {
        if e.code() != Some("42501") {
            return Err(e);
        }
        warn!(
            "{}: may not set session_replication_role (needs superuser): triggers and foreign keys stay on while applying",
            conn.addr()
        );
        return Ok(false);
    }
    Ok(true)
}

/// Starts shard `shard`'s applier on `conn`; `queue` bounds the batches waiting.
pub fn spawn(
    shard: usize,
    conn: Conn,
    slot: String,
    queue: usize,
    reports: mpsc::UnboundedSender<Report>,
) -> mpsc::Sender<Work> {
    let (tx, rx) = mpsc::channel(queue.max(1));
    tokio::spawn(apply(shard, conn, slot, rx, reports));
    tx
}

async fn apply(
    shard: usize,
    mut conn: Conn,
    slot: String,
    mut work: mpsc::Receiver<Work>,
    reports: mpsc::UnboundedSender<Report>,
) {
    let mut open = false;
    while let Some(item) = work.recv().await {
        if matches!(item, Work::Schema { .. } | Work::Ddl { .. }) {
            if !open {
                if let Err(error) = conn.execute("BEGIN").await {
                    let _ = reports.send(Report::Failed { shard, error });
                    conn.close().await;
                    return;
                }
                open = true;
            }
            let (result, batch) = match item {
                Work::Schema { change, batch } => {
                    let result = apply_change(&mut conn, &slot, &change).await.map(|again| {
                        again.then(|| format!("{}.{}", change.source.schema, change.source.name))
                    });
                    (result, batch)
                }
                Work::Ddl {
                    search_path,
                    sql,
                    batch,
                } => (replay(&mut conn, &search_path, &sql).await, batch),
                Work::Sql { .. } | Work::Commit { .. } | Work::Drain { .. } => continue,
            };
            match result {
                Ok(Some(table)) => {
                    let _ = reports.send(Report::CopyAgain { table, batch });
                }
                Ok(None) => {}
                Err(failure) => {
                    let _ = reports.send(failure.into_report(shard));
                    conn.close().await;
                    return;
                }
            }
            continue;
        }
        let prepares = match &item {
            Work::Sql { prepare, .. }
            | Work::Commit { prepare, .. }
            | Work::Drain { prepare, .. } => prepare,
            Work::Schema { .. } | Work::Ddl { .. } => continue,
        };
        for statement in prepares {
            if let Err(error) = conn.execute(statement).await {
                let _ = reports.send(Report::Failed { shard, error });
                conn.close().await;
                return;
            }
        }
        let mut sql = String::new();
        if !open {
            sql.push_str("BEGIN;\n");
            open = true;
        }
        let committed = match item {
            Work::Sql {
                sql: statements, ..
            } => {
                sql.push_str(&statements);
                None
            }
            Work::Commit {
                sql: statements,
                batch,
                commit_lsn,
                end_lsn,
                commit_time,
                ..
            } => {
                let record = state::record(&slot, commit_lsn, end_lsn, commit_time);
                commit_with(&mut sql, &statements, &record);
                open = false;
                Some(batch)
            }
            Work::Drain {
                sql: statements,
                finish,
                batch,
                ..
            } => {
                commit_with(&mut sql, &statements, &finish);
                open = false;
                Some(batch)
            }
            Work::Schema { .. } | Work::Ddl { .. } => None,
        };
        let started = std::time::Instant::now();
        if let Err(error) = conn.execute(&sql).await {
            let _ = reports.send(Report::Failed { shard, error });
            conn.close().await;
            return;
        }
        let took = started.elapsed();
        if took >= SLOW_APPLY {
            debug!(
                "shard {shard}: {} bytes of statements took {} ms{}",
                sql.len(),
                took.as_millis(),
                if committed.is_some() {
                    " (with the commit)"
                } else {
                    ""
                }
            );
        }
        if let Some(batch) = committed {
            if reports.send(Report::Committed { shard, batch }).is_err() {
                break;
            }
        }
    }
    if open {
        let _ = conn.execute("ROLLBACK").await;
    }
    conn.close().await;
}

/// Ends `sql` (an open transaction) with `statements`, then `last`, then COMMIT.
fn commit_with(sql: &mut String, statements: &str, last: &str) {
    if !statements.is_empty() {
        sql.push_str(statements);
        sql.push_str(";\n");
    }
    sql.push_str(last);
    sql.push_str(";\nCOMMIT");
}

/// Why a schema step failed.
enum SchemaFailure {
    Conn(ConnError),
    Schema { statement: String, error: String },
}

impl SchemaFailure {
    fn into_report(self, shard: usize) -> Report {
        match self {
            SchemaFailure::Conn(error) => Report::Failed { shard, error },
            SchemaFailure::Schema { statement, error } => Report::SchemaFailed {
                shard,
                statement,
                error,
            },
        }
    }
}

impl From<ConnError> for SchemaFailure {
    fn from(error: ConnError) -> Self {
        SchemaFailure::Conn(error)
    }
}

/// Whether a failed statement means the server or connection is in trouble (retry later)
/// rather than the statement being wrong.
fn server_trouble(error: &ConnError) -> bool {
    match error {
        ConnError::Sql { .. } => error
            .code()
            .is_some_and(|c| ["08", "57", "53"].iter().any(|p| c.starts_with(p))),
        _ => true,
    }
}

/// Runs `sql` inside a savepoint: `Ok(Err(e))` when the statement failed and was undone.
async fn in_savepoint(conn: &mut Conn, sql: &str) -> Result<Result<(), ConnError>, ConnError> {
    conn.execute("SAVEPOINT pgdog_schema").await?;
    match conn.execute(sql).await {
        Ok(_) => {
            conn.execute("RELEASE SAVEPOINT pgdog_schema").await?;
            Ok(Ok(()))
        }
        Err(e) if server_trouble(&e) => Err(e),
        Err(e) => {
            conn.execute("ROLLBACK TO SAVEPOINT pgdog_schema; RELEASE SAVEPOINT pgdog_schema")
                .await?;
            Ok(Err(e))
        }
    }
}

/// Takes the table's new shape: the steps from the shape this shard applied last (or its
/// catalog, the first time) to the new one, minus what the shard already has, run in the
/// batch's transaction with the new shape recorded. True when the table must be copied
/// again (a column added whose existing values only a copy can bring).
async fn apply_change(
    conn: &mut Conn,
    slot: &str,
    change: &SchemaChange,
) -> Result<bool, SchemaFailure> {
    let Some(columns) = schema::shard_columns(conn, &change.table).await? else {
        return Err(SchemaFailure::Schema {
            statement: change.table.clone(),
            error: format!(
                "{} does not exist on this shard; create it (SYNC_SCHEMA or RESYNC_TABLE), then RESUME_REPLICATION",
                change.table
            ),
        });
    };
    let previous = schema::stored_shape(conn, slot, &change.table)
        .await?
        .unwrap_or_else(|| columns.clone());
    let ops = schema::plan(&previous, change).map_err(|error| SchemaFailure::Schema {
        statement: change.table.clone(),
        error,
    })?;
    for ddl in schema::statements(&change.table, &ops, &columns, change.back) {
        match in_savepoint(conn, &ddl.sql).await? {
            Ok(()) => info!("{}: {}", conn.addr(), ddl.sql),
            Err(error) if ddl.essential => {
                return Err(SchemaFailure::Schema {
                    statement: ddl.sql,
                    error: error.to_string(),
                })
            }
            Err(error) => warn!("{}: {} failed (left out): {error}", conn.addr(), ddl.sql),
        }
    }
    conn.execute(&schema::store_shape_sql(slot, change)).await?;
    Ok(schema::needs_copy(&ops))
}

/// Replays DDL captured on the source, with its search_path; work already done is skipped.
/// Returns the table (`schema.name`) to copy again when the DDL added a column whose rows
/// each got their own value (a volatile default: the shard computed its own, not the
/// source's).
async fn replay(
    conn: &mut Conn,
    search_path: &str,
    sql: &str,
) -> Result<Option<String>, SchemaFailure> {
    conn.execute(&format!(
        "SELECT pg_catalog.set_config('search_path', {}, true)",
        crate::quote::literal(search_path)
    ))
    .await?;
    let target = match crate::reshard::schema::rewrite::target_of(sql) {
        Some((schema, table)) => added_columns_probe(conn, &schema, &table).await?,
        None => None,
    };
    let result = in_savepoint(conn, sql).await?;
    conn.execute("RESET search_path").await?;
    match result {
        Ok(()) => info!("{}: replayed {sql}", conn.addr()),
        Err(error) if error.code().is_some_and(|c| ALREADY_DONE.contains(&c)) => {
            info!("{}: {sql}: already done ({error})", conn.addr());
            return Ok(None);
        }
        Err(error) => {
            return Err(SchemaFailure::Schema {
                statement: sql.to_string(),
                error: error.to_string(),
            })
        }
    }
    let Some((oid, name, before)) = target else {
        return Ok(None);
    };
    // A column added with a default but without a value kept for the rows already there:
    // the table was rewritten with a value per row.
    let rows = conn
        .query(&format!(
            "SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = {oid} AND attnum > 0 \
             AND NOT attisdropped AND atthasdef AND NOT atthasmissing AND attgenerated = ''"
        ))
        .await?;
    let rewritten = (0..rows.rows.len())
        .filter_map(|r| rows.get(r, 0))
        .any(|column| !before.iter().any(|b| b == column));
    Ok(rewritten.then_some(name))
}

/// The table a DDL acts on (as resolved with the session's search_path): its OID,
/// `schema.name`, and its columns before the DDL.
async fn added_columns_probe(
    conn: &mut Conn,
    schema: &str,
    table: &str,
) -> Result<Option<(String, String, Vec<String>)>, ConnError> {
    let name = if schema.is_empty() {
        crate::quote::ident(table)
    } else {
        crate::quote::qualified(schema, table)
    };
    let rows = conn
        .query(&format!(
            "SELECT c.oid::text, n.nspname || '.' || c.relname, \
             ARRAY(SELECT attname::text FROM pg_catalog.pg_attribute \
                   WHERE attrelid = c.oid AND attnum > 0 AND NOT attisdropped)::text \
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.oid = pg_catalog.to_regclass({})",
            crate::quote::literal(&name)
        ))
        .await?;
    let (Some(oid), Some(qualified), Some(columns)) =
        (rows.get(0, 0), rows.get(0, 1), rows.get(0, 2))
    else {
        return Ok(None);
    };
    let before = columns
        .trim_matches(|c| c == '{' || c == '}')
        .split(',')
        .map(|c| c.trim_matches('"').to_string())
        .collect();
    Ok(Some((oid.to_string(), qualified.to_string(), before)))
}
