//! One destination shard's applier: a task with its own connection that runs the SQL the
//! stream routes to it. Source transactions arrive in batches; a batch is applied in one
//! destination transaction that ends by recording the batch's last commit LSN, so a batch is
//! on the shard entirely or not at all. Batches commit in order, and each commit is reported
//! back so the stream can confirm positions every shard has.

use tokio::sync::mpsc;
use tracing::warn;

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
}

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
}

/// Session settings of an applier: values read like the source printed them, no timeouts,
/// row lookups by index, and (where the role may) triggers and foreign keys off like
/// PostgreSQL's own apply workers.
pub async fn prepare(conn: &mut Conn) -> Result<(), ConnError> {
    conn.execute(super::source::VALUE_SETTINGS).await?;
    // Every UPDATE and DELETE finds one row by its key: always through the key's index, like
    // PostgreSQL's apply workers (the planner would scan small, bloated tables instead).
    conn.execute(
        "SET statement_timeout = 0; SET lock_timeout = 0; \
         SET idle_in_transaction_session_timeout = 0; SET enable_seqscan = off",
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
    }
    Ok(())
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
        let prepares = match &item {
            Work::Sql { prepare, .. } | Work::Commit { prepare, .. } => prepare,
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
                if !statements.is_empty() {
                    sql.push_str(&statements);
                    sql.push_str(";\n");
                }
                sql.push_str(&state::record(&slot, commit_lsn, end_lsn, commit_time));
                sql.push_str(";\nCOMMIT");
                open = false;
                Some(batch)
            }
        };
        if let Err(error) = conn.execute(&sql).await {
            let _ = reports.send(Report::Failed { shard, error });
            conn.close().await;
            return;
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
