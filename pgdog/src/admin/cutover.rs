//! The end of a move from the admin database: `CUTOVER [task_id]` (the switch of a running
//! stream, as a background task), `RESHARD` (the whole move unattended: copy, stream, then
//! cutover once the lag is small) and `SHOW CUTOVER` (each cutover and the pause it caused).

use std::sync::Arc;
use std::time::Duration;

use pgdog_admin::{ColumnType, CopyData, ResultTable};
use tracing::{info, warn};

use super::resharding::{
    checked_slot, copy_step, move_options, start_stream, stream_reply, task_reply,
};
use super::show::{push, timestamp, Row};
use super::Reply;
use crate::net::{sqlstate, ErrorResponse};
use crate::reshard::cutover::{self, checks, CutoverError, CutoverReport};
use crate::reshard::{TaskHandle, TaskKind};
use crate::state::PoolerState;

/// Cutover attempts `RESHARD` makes when traffic could not be paused or the shards did not
/// catch up in time (the stream goes on between attempts).
const RESHARD_ATTEMPTS: u32 = 3;

/// Starts the cutover of the stream of task `task_id` (or of the only running stream).
pub fn start(state: &Arc<PoolerState>, task_id: Option<u64>) -> Result<Reply, ErrorResponse> {
    let mut running: Vec<u64> = state
        .replication
        .all()
        .into_iter()
        .filter(|r| checks::running(&r.status))
        .filter_map(|r| r.task_id)
        .collect();
    running.sort_unstable();
    running.dedup();
    let stream = match task_id {
        Some(id) if running.contains(&id) => id,
        Some(id) => {
            return Err(ErrorResponse::error(
                sqlstate::UNDEFINED_OBJECT,
                format!("task {id} is not a running stream"),
            )
            .hint("SHOW REPLICATION lists the streams and their task ids"))
        }
        None => match running.as_slice() {
            [one] => *one,
            [] => {
                return Err(ErrorResponse::error(
                    sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
                    "no stream is running: nothing to cut over".to_string(),
                )
                .hint("start one with COPY_DATA or REPLICATE, and wait for SHOW REPLICATION to show a small lag"))
            }
            many => {
                let ids: Vec<String> = many.iter().map(u64::to_string).collect();
                return Err(ErrorResponse::error(
                    sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
                    format!("{} streams are running (tasks {})", many.len(), ids.join(", ")),
                )
                .hint("name one: CUTOVER <task_id>"));
            }
        },
    };
    let shared = state.clone();
    let id = state
        .tasks
        .start(TaskKind::Cutover, move |task| async move {
            let report = cutover::run(&shared, stream, &task)
                .await
                .map_err(|e| e.to_string())?;
            task.set_step(done(&report));
            Ok(())
        });
    Ok(task_reply(id))
}

/// The last step of a finished cutover.
fn done(report: &CutoverReport) -> String {
    let mut text = format!(
        "done: clients of {} now reach {}; traffic paused {} ms",
        report.source,
        report.destination,
        report.pause.as_millis()
    );
    if report.forced {
        text.push_str(" (timeout: switched with changes not applied)");
    }
    if let Some(id) = report.reverse_task {
        text.push_str(&format!(
            "; task {id} streams changes back (CUTOVER {id} rolls back)"
        ));
    }
    text
}

/// `RESHARD <source> <destination> <publication> [slot]`: pre-flight, schema, copy and
/// verification, then a stream of its own (a separate task), then the cutover once the lag is
/// under `cutover_traffic_stop_threshold`. Replies like `COPY_DATA`.
pub fn reshard(state: &Arc<PoolerState>, command: &CopyData) -> Result<Reply, ErrorResponse> {
    let config = state.databases().config().clone();
    let slot = checked_slot(state, &config, command)?;
    let (options, stream) = move_options(state, command, &slot);
    let shared = state.clone();
    let id = state
        .tasks
        .start(TaskKind::Reshard, move |task| async move {
            let (_, copied) = copy_step(&shared, &config, &options, &task).await?;
            if task.is_stopping() {
                task.set_step(format!("copy done: {copied}; stopped before streaming"));
                return Ok(());
            }
            let stream_task = start_stream(&shared, config.clone(), stream);
            info!("task {}: streaming as task {stream_task}", task.id());
            switch_when_ready(&shared, stream_task, &task).await
        });
    state.slot_claims.claim(id, &command.from, &slot);
    Ok(stream_reply(id, slot))
}

/// Waits for the stream's lag to be small, then cuts over (a few attempts). Stopping the task
/// stops the stream too (its slot keeps its place).
async fn switch_when_ready(
    state: &Arc<PoolerState>,
    stream_task: u64,
    task: &TaskHandle,
) -> Result<(), String> {
    let threshold = state
        .databases()
        .config()
        .config
        .general
        .cutover_traffic_stop_threshold;
    let mut attempt = 0;
    loop {
        attempt += 1;
        task.set_step(format!(
            "streaming (task {stream_task}); waiting for the lag to fall under {threshold} bytes"
        ));
        let ready = checks::wait_lag(state, stream_task, task, "streaming", threshold, None).await;
        let result = match ready {
            Ok(()) => cutover::run(state, stream_task, task).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(report) => {
                task.set_step(done(&report));
                return Ok(());
            }
            Err(CutoverError::Stopped) => {
                let _ = state.tasks.stop(stream_task);
                task.set_step(format!(
                    "stopped before the cutover; the stream (task {stream_task}) stops too, its slot keeps its place"
                ));
                return Ok(());
            }
            Err(e @ (CutoverError::Lag { .. } | CutoverError::Pause { .. }))
                if attempt < RESHARD_ATTEMPTS =>
            {
                warn!(
                    "task {}: cutover attempt {attempt} failed ({e}); traffic runs on the source, trying again",
                    task.id()
                );
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            Err(e) => {
                return Err(format!(
                    "cutover: {e}; the stream goes on (task {stream_task}): CUTOVER {stream_task} tries again"
                ))
            }
        }
    }
}

/// `SHOW CUTOVER`: every cutover of this process.
pub fn table(state: &PoolerState) -> ResultTable {
    use ColumnType::{BigInt, Bool, Text};
    let mut table = ResultTable::new(&[
        ("task_id", BigInt),
        ("stream_task_id", BigInt),
        ("source", Text),
        ("destination", Text),
        ("status", Text),
        ("step", Text),
        ("pause_ms", BigInt),
        ("lsn", Text),
        ("forced", Bool),
        ("reverse_task_id", BigInt),
        ("started_at", Text),
        ("error", Text),
    ]);
    for record in state.cutovers.all() {
        push(
            &mut table,
            Row::default()
                .text(record.task_id)
                .text(record.stream_task_id)
                .text(&record.source)
                .text(&record.destination)
                .text(record.status)
                .text(&record.step)
                .opt(record.pause.map(|p| p.as_millis().to_string()))
                .opt(record.lsn.clone())
                .text(record.forced)
                .opt(record.reverse_task_id.map(|id| id.to_string()))
                .text(timestamp(record.started_at))
                .opt(record.error.clone()),
        );
    }
    table
}
