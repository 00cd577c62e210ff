//! `SYNC_SCHEMA <task_id> [SKIP_INDEXES]`: compares the source and destination schema of a
//! stream's tables and applies what differs, each statement listed in `SHOW SCHEMA_SYNC`
//! (phase `sync`). Runs as a background task; the reply is its id.

use std::collections::BTreeSet;
use std::sync::Arc;

use tracing::info;

use super::resharding::{endpoint_error, task_reply};
use super::stream_control::streams_of;
use super::Reply;
use crate::net::ErrorResponse;
use crate::reshard::schema::sync::{self, SyncOptions};
use crate::reshard::{ClusterEndpoints, TaskKind};
use crate::state::PoolerState;

/// Starts the comparison for the stream of task `task_id` (`indexes`: also indexes).
pub fn start(
    state: &Arc<PoolerState>,
    task_id: u64,
    indexes: bool,
) -> Result<Reply, ErrorResponse> {
    let streams = streams_of(state, task_id)?;
    let config = state.databases().config().clone();
    // A stream back from N source shards runs one stream per shard, all alike: compare once
    // per source / destination / publication, from the lowest source shard.
    let mut runs: Vec<SyncOptions> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut ordered = streams;
    ordered.sort_by_key(|s| s.source_shard);
    for stream in ordered {
        let key = (
            stream.source.clone(),
            stream.destination.clone(),
            stream.publication.clone(),
        );
        if !seen.insert(key) {
            continue;
        }
        for database in [&stream.source, &stream.destination] {
            ClusterEndpoints::resolve(&config, database).map_err(endpoint_error)?;
        }
        runs.push(SyncOptions {
            from: stream.source,
            source_shard: stream.source_shard,
            to: stream.destination,
            publication: stream.publication,
            indexes,
        });
    }
    let log = state.schema_sync.clone();
    let id = state
        .tasks
        .start(TaskKind::SchemaSync, move |task| async move {
            let mut summaries = Vec::new();
            let mut failures = Vec::new();
            for options in &runs {
                let report = sync::run(&config, options, &log, Some(&task))
                    .await
                    .map_err(|e| format!("SYNC_SCHEMA of task {task_id}: {e}"))?;
                info!(
                    "task {}: sync schema of task {task_id} ({} -> {}): {}",
                    task.id(),
                    options.from,
                    options.to,
                    report.summary()
                );
                summaries.push(report.summary());
                if report.failed() {
                    failures.push(report.failures());
                }
            }
            let summary = summaries.join("; ");
            if failures.is_empty() {
                task.set_step(format!("done: {summary}"));
                Ok(())
            } else {
                task.set_step(format!("done with failures: {summary}"));
                Err(format!(
                    "SYNC_SCHEMA of task {task_id}: {} (SHOW SCHEMA_SYNC lists each statement)",
                    failures.join("; ")
                ))
            }
        });
    Ok(task_reply(id))
}
