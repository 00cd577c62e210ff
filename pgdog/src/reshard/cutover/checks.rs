//! What a cutover checks before it pauses anyone: the stream's records (one per source shard),
//! that they are healthy, that the copy they continue was verified on every shard, and that
//! their lag is small.

use std::time::{Duration, Instant};

use pgdog_config::ConfigAndUsers;

use super::CutoverError;
use crate::quote;
use crate::reshard::endpoints::ClusterEndpoints;
use crate::reshard::stream::{ReplicationRecord, StreamStatus};
use crate::reshard::tasks::TaskHandle;
use crate::state::PoolerState;

/// Whether a stream in this status can be cut over (one reconnecting after an error it may
/// get past, such as a server restarting, is waited for).
pub fn running(status: &StreamStatus) -> bool {
    matches!(
        status,
        StreamStatus::Streaming
            | StreamStatus::CatchingUp
            | StreamStatus::SyncingSchema
            | StreamStatus::Starting
            | StreamStatus::Retrying(_)
    )
}

/// The records of the stream task `task_id` as they are now (one per source shard).
pub fn records(state: &PoolerState, task_id: u64) -> Vec<ReplicationRecord> {
    state
        .replication
        .all()
        .into_iter()
        .filter(|r| r.task_id == Some(task_id))
        .collect()
}

/// Every record of the stream is running.
pub fn healthy(streams: &[ReplicationRecord]) -> Result<(), CutoverError> {
    for record in streams {
        if !running(&record.status) {
            return Err(CutoverError::NotStreaming {
                slot: record.slot.clone(),
                status: record.status.describe(),
            });
        }
    }
    Ok(())
}

/// Every table the stream's copy moved was verified on every shard.
pub async fn verified(
    config: &ConfigAndUsers,
    stream: &ReplicationRecord,
) -> Result<(), CutoverError> {
    let destination = ClusterEndpoints::resolve(config, &stream.destination)?;
    for shard in 0..destination.shards.len() {
        let mut conn = destination.connect_primary(shard).await?;
        let rows = conn
            .query(&format!(
                "SELECT count(*), count(*) FILTER (WHERE verified_at IS NULL) \
                 FROM pgdog.copy_tables WHERE slot = {}",
                quote::literal(&stream.slot)
            ))
            .await;
        conn.close().await;
        let detail = match rows {
            Ok(rows) => {
                let total: u64 = rows.get(0, 0).and_then(|v| v.parse().ok()).unwrap_or(0);
                let unverified: u64 = rows.get(0, 1).and_then(|v| v.parse().ok()).unwrap_or(0);
                if total > 0 && unverified == 0 {
                    continue;
                }
                if total == 0 {
                    "no table copied for this slot".to_string()
                } else {
                    format!("{unverified} of {total} tables not verified")
                }
            }
            Err(e) if matches!(e.code(), Some("42P01") | Some("3F000")) => {
                "no copy ran there".to_string()
            }
            Err(e) => return Err(e.into()),
        };
        return Err(CutoverError::NotVerified {
            slot: stream.slot.clone(),
            shard,
            detail,
        });
    }
    Ok(())
}

/// Waits until every record of stream task `task_id` is at most `threshold` bytes behind its
/// source, for up to `timeout` (`None`: until stopped or failed).
pub async fn wait_lag(
    state: &PoolerState,
    task_id: u64,
    task: &TaskHandle,
    what: &'static str,
    threshold: u64,
    timeout: Option<Duration>,
) -> Result<(), CutoverError> {
    let started = Instant::now();
    loop {
        let streams = records(state, task_id);
        if streams.is_empty() {
            // A stream task just started registers its stream when it runs.
            let starting = timeout.is_none()
                && started.elapsed() < Duration::from_secs(60)
                && state
                    .tasks
                    .list()
                    .iter()
                    .any(|t| t.id == task_id && !t.status.is_over());
            if !starting {
                return Err(CutoverError::NoStream(task_id));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let mut lag = 0u64;
        for record in &streams {
            // Measured once the stream runs (its first look at the source's WAL).
            let behind = match (&record.status, record.lag_bytes) {
                // A stream changing a table (copying it again) is not caught up, whatever its
                // position says: wait for it.
                (StreamStatus::Streaming | StreamStatus::CatchingUp, Some(lag)) => lag,
                // Starting or reconnecting: wait for it (up to the timeout).
                (
                    StreamStatus::Streaming
                    | StreamStatus::CatchingUp
                    | StreamStatus::SyncingSchema
                    | StreamStatus::Starting
                    | StreamStatus::Retrying(_),
                    _,
                ) => u64::MAX,
                (other, _) => {
                    return Err(CutoverError::NotStreaming {
                        slot: record.slot.clone(),
                        status: other.describe(),
                    })
                }
            };
            lag = lag.max(behind);
        }
        if lag <= threshold {
            return Ok(());
        }
        if task.is_stopping() {
            return Err(CutoverError::Stopped);
        }
        if let Some(timeout) = timeout.filter(|t| started.elapsed() >= *t) {
            return Err(CutoverError::Lag {
                what,
                lag,
                threshold,
                ms: timeout.as_millis(),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
