//! `CUTOVER [task_id]`: starts the cutover of a running stream as a background task (its
//! steps and pause length in `SHOW TASKS`).

use std::sync::Arc;

use super::resharding::task_reply;
use super::Reply;
use crate::net::{sqlstate, ErrorResponse};
use crate::reshard::cutover;
use crate::reshard::stream::StreamStatus;
use crate::reshard::TaskKind;
use crate::state::PoolerState;

/// Starts the cutover of the stream of task `task_id` (or of the only running stream).
pub fn start(state: &Arc<PoolerState>, task_id: Option<u64>) -> Result<Reply, ErrorResponse> {
    let running: Vec<_> = state
        .replication
        .all()
        .into_iter()
        .filter(|r| {
            r.task_id.is_some()
                && matches!(
                    r.status,
                    StreamStatus::Streaming | StreamStatus::CatchingUp | StreamStatus::Starting
                )
        })
        .collect();
    let stream = match task_id {
        Some(id) => running.iter().find(|r| r.task_id == Some(id)).cloned().ok_or_else(|| {
            ErrorResponse::error(
                sqlstate::UNDEFINED_OBJECT,
                format!("task {id} is not a running stream"),
            )
            .hint("SHOW REPLICATION lists the streams and their task ids")
        })?,
        None => match running.as_slice() {
            [one] => one.clone(),
            [] => {
                return Err(ErrorResponse::error(
                    sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
                    "no stream is running: nothing to cut over".to_string(),
                )
                .hint("start one with COPY_DATA or REPLICATE, and wait for SHOW REPLICATION to show a small lag"))
            }
            many => {
                let ids: Vec<String> = many
                    .iter()
                    .filter_map(|r| r.task_id.map(|id| id.to_string()))
                    .collect();
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
            let report = cutover::run(&shared, &stream, &task)
                .await
                .map_err(|e| e.to_string())?;
            task.set_step(format!(
                "done: clients of {} now reach {}; traffic paused {} ms{}",
                report.source,
                report.destination,
                report.pause.as_millis(),
                if report.forced {
                    " (timeout: switched with changes not applied)"
                } else {
                    ""
                }
            ));
            Ok(())
        });
    Ok(task_reply(id))
}
