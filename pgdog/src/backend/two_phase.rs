//! Two-phase commit across shards, and the recovery that finishes what a crash interrupted.
//!
//! A transaction that wrote to several shards commits like this (`two_phase_commit = true`):
//! 1. on its first shard F, inside the transaction, a row with the transaction's id goes into
//!    `pgdog.two_phase_commits` (the decision record);
//! 2. every shard runs `PREPARE TRANSACTION '<id>_<shard>'`;
//! 3. `COMMIT PREPARED` on F first: from this moment the decision record exists, and the
//!    transaction is committed;
//! 4. `COMMIT PREPARED` on the other shards.
//!
//! If pgdog dies anywhere in between, prepared transactions stay behind. [`recover`] (run at
//! startup and periodically) finds them by their `pgdog_` ids and finishes them: commit if the
//! decision record is on F, roll back otherwise (rolling back F's own prepared transaction first
//! when it is still there, so the decision can no longer become "commit"). So every shard ends
//! committed, or every shard ends rolled back.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info, warn};

use super::exchange::{simple_query, text_column};
use super::pool::Pool;
use crate::state::PoolerState;

/// Schema and table of the decision records, created on every shard's primary.
pub const DECISION_TABLE: &str = "pgdog.two_phase_commits";

/// SQL creating the decision table (idempotent).
pub const CREATE_DECISION_TABLE: &str = "CREATE SCHEMA IF NOT EXISTS pgdog; \
     CREATE TABLE IF NOT EXISTS pgdog.two_phase_commits \
     (gid text PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT now())";

/// Prepared transactions younger than this are left alone by recovery: their commit may still
/// be running.
const GRACE: Duration = Duration::from_secs(10);

/// The id of one distributed transaction: `pgdog_<process>_<client>_<n>_f<first shard>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionId {
    /// The id without the shard suffix.
    pub base: String,
    /// The shard holding the decision record.
    pub first: usize,
}

impl TransactionId {
    /// A new id for a transaction of client `client` whose first shard is `first`.
    pub fn new(client: i32, counter: u64, first: usize) -> TransactionId {
        TransactionId {
            base: format!(
                "pgdog_{}_{}_{}_f{first}",
                std::process::id(),
                client.unsigned_abs(),
                counter
            ),
            first,
        }
    }

    /// The prepared transaction's name on `shard`.
    pub fn on_shard(&self, shard: usize) -> String {
        format!("{}_{shard}", self.base)
    }

    /// Reads a prepared transaction's name: the transaction id and the shard.
    pub fn parse(gid: &str) -> Option<(TransactionId, usize)> {
        if !gid.starts_with("pgdog_") {
            return None;
        }
        let (base, shard) = gid.rsplit_once('_')?;
        let shard = shard.parse().ok()?;
        let (_, first) = base.rsplit_once("_f")?;
        let first = first.parse().ok()?;
        Some((
            TransactionId {
                base: base.to_string(),
                first,
            },
            shard,
        ))
    }

    /// The INSERT of the decision record (run on the first shard inside the transaction).
    pub fn record_sql(&self) -> String {
        format!(
            "INSERT INTO {DECISION_TABLE} (gid) VALUES ('{}')",
            self.base
        )
    }
}

/// Creates the decision table on every shard primary of `shards`. Failures are logged: the
/// commits that need it then fail cleanly (rolled back everywhere).
pub async fn prepare_shards(shards: &[Pool]) {
    for pool in shards {
        match pool.get().await {
            Ok(mut server) => match simple_query(&mut server, CREATE_DECISION_TABLE).await {
                Ok(answer) => {
                    if let Some(error) = answer.error {
                        warn!(
                            "two_phase_commit: cannot create {DECISION_TABLE} on {}: {error}",
                            pool.addr()
                        );
                    }
                }
                Err(lost) => warn!("two_phase_commit: {}: {}", pool.addr(), lost.0),
            },
            Err(e) => debug!("two_phase_commit: {} unreachable: {e}", pool.addr()),
        }
    }
}

/// Finishes the prepared transactions pgdog left behind on `shards` (indexed by shard number;
/// primaries). Returns how many were committed and rolled back.
pub async fn recover(shards: &[Pool]) -> (usize, usize) {
    let mut committed = 0;
    let mut rolled_back = 0;
    for (shard, pool) in shards.iter().enumerate() {
        let Ok(mut server) = pool.get().await else {
            continue;
        };
        let sql = format!(
            "SELECT gid FROM pg_catalog.pg_prepared_xacts WHERE database = current_database() \
             AND gid LIKE 'pgdog\\_%' AND prepared < now() - interval '{} seconds'",
            GRACE.as_secs()
        );
        let Ok(answer) = simple_query(&mut server, &sql).await else {
            continue;
        };
        drop(server);
        for gid in answer.rows.iter().filter_map(|row| text_column(row, 0)) {
            let Some((id, on)) = TransactionId::parse(&gid) else {
                continue;
            };
            if on != shard {
                continue;
            }
            if let Some(commit) = decide(shards, &id).await {
                if finish(pool, &gid, commit).await {
                    if commit {
                        committed += 1;
                    } else {
                        rolled_back += 1;
                    }
                }
            }
        }
    }
    if committed + rolled_back > 0 {
        info!(
            "two-phase commit recovery: {committed} prepared transaction(s) committed, {rolled_back} rolled back"
        );
    }
    (committed, rolled_back)
}

/// Whether transaction `id` committed: its decision record exists on its first shard. If the
/// first shard still has the transaction prepared, it is rolled back there first (the
/// decision becomes "roll back"). `None` when the first shard cannot be asked.
async fn decide(shards: &[Pool], id: &TransactionId) -> Option<bool> {
    let first = shards.get(id.first)?;
    let mut server = first.get().await.ok()?;
    let record = simple_query(
        &mut server,
        &format!("SELECT 1 FROM {DECISION_TABLE} WHERE gid = '{}'", id.base),
    )
    .await
    .ok()?;
    if record.error.is_none() && !record.rows.is_empty() {
        return Some(true);
    }
    let own = id.on_shard(id.first);
    let pending = simple_query(
        &mut server,
        &format!("SELECT 1 FROM pg_catalog.pg_prepared_xacts WHERE gid = '{own}'"),
    )
    .await
    .ok()?;
    drop(server);
    if !pending.rows.is_empty() && !finish(first, &own, false).await {
        return None;
    }
    Some(false)
}

/// COMMIT PREPARED or ROLLBACK PREPARED `gid` on `pool`'s server.
async fn finish(pool: &Pool, gid: &str, commit: bool) -> bool {
    let Ok(mut server) = pool.get().await else {
        return false;
    };
    let verb = if commit { "COMMIT" } else { "ROLLBACK" };
    match simple_query(&mut server, &format!("{verb} PREPARED '{gid}'")).await {
        Ok(answer) if answer.error.is_none() => {
            info!(
                "two-phase commit recovery: {verb} PREPARED '{gid}' on {}",
                pool.addr()
            );
            true
        }
        Ok(answer) => {
            warn!(
                "two-phase commit recovery: {verb} PREPARED '{gid}' on {} failed: {}",
                pool.addr(),
                answer.error.map(|e| e.to_string()).unwrap_or_default()
            );
            false
        }
        Err(lost) => {
            warn!("two-phase commit recovery: {}: {}", pool.addr(), lost.0);
            false
        }
    }
}

/// Deletes decision records older than a day (their transactions are long finished).
pub async fn prune_records(shards: &[Pool]) {
    for pool in shards {
        if let Ok(mut server) = pool.get().await {
            let _ = simple_query(
                &mut server,
                &format!(
                    "DELETE FROM {DECISION_TABLE} WHERE created_at < now() - interval '1 day'"
                ),
            )
            .await;
        }
    }
}

/// How often recovery looks for prepared transactions left behind.
const RECOVERY_INTERVAL: Duration = Duration::from_secs(10);

/// Background task: while `two_phase_commit` is on, keeps the decision table on every shard
/// of every sharded database and finishes prepared transactions left behind by a crash.
pub async fn maintain(state: Arc<PoolerState>) {
    let mut rounds = 0u64;
    let mut shutdown = state.shutdown_signal();
    loop {
        let databases = state.databases().clone();
        if databases.config().config.general.two_phase_commit {
            let mut seen = HashSet::new();
            for cluster in databases.clusters() {
                if !cluster.is_sharded() || !seen.insert(cluster.database.clone()) {
                    continue;
                }
                let primaries: Option<Vec<Pool>> =
                    cluster.shards.iter().map(|s| s.primary.clone()).collect();
                let Some(primaries) = primaries else {
                    continue;
                };
                // Idempotent, and cheap enough to repeat: shards that were down get it later.
                prepare_shards(&primaries).await;
                recover(&primaries).await;
                if rounds.is_multiple_of(360) {
                    prune_records(&primaries).await;
                }
            }
        }
        rounds += 1;
        tokio::select! {
            _ = tokio::time::sleep(RECOVERY_INTERVAL) => {}
            _ = shutdown.wait_for(|down| *down) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        let id = TransactionId::new(-42, 7, 1);
        let gid = id.on_shard(3);
        assert_eq!(TransactionId::parse(&gid), Some((id.clone(), 3)));
        assert!(id.base.ends_with("_42_7_f1"));
        assert_eq!(TransactionId::parse("other_1_2"), None);
        assert_eq!(TransactionId::parse("pgdog_x"), None);
    }
}
