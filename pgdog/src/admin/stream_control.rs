//! `PAUSE_REPLICATION`, `RESUME_REPLICATION` and `RESYNC_TABLE`: operator control of a
//! running stream, found by its task id (`SHOW REPLICATION` lists it). The stream acts on
//! the request between transactions; the slot keeps its place throughout.

use std::sync::Arc;

use super::Reply;
use crate::net::{sqlstate, ErrorResponse};
use crate::reshard::stream::ReplicationRecord;
use crate::state::PoolerState;

/// The live streams of task `task_id`, or an error naming what is wrong.
pub(crate) fn streams_of(
    state: &PoolerState,
    task_id: u64,
) -> Result<Vec<ReplicationRecord>, ErrorResponse> {
    let streams = state.replication.live_of_task(task_id);
    if !streams.is_empty() {
        return Ok(streams);
    }
    let ended = state
        .replication
        .all()
        .iter()
        .any(|r| r.task_id == Some(task_id));
    let message = if ended {
        format!("the stream of task {task_id} has ended; start it again with REPLICATE")
    } else {
        format!("task {task_id} has no replication stream")
    };
    Err(
        ErrorResponse::error(sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE, message)
            .hint("SHOW REPLICATION lists the streams and their task ids"),
    )
}

/// `PAUSE_REPLICATION <task_id>`.
pub fn pause(state: &Arc<PoolerState>, task_id: u64) -> Result<Reply, ErrorResponse> {
    for stream in streams_of(state, task_id)? {
        stream.control.pause();
    }
    Ok(Reply::done("PAUSE_REPLICATION"))
}

/// `RESUME_REPLICATION <task_id>`.
pub fn resume(state: &Arc<PoolerState>, task_id: u64) -> Result<Reply, ErrorResponse> {
    for stream in streams_of(state, task_id)? {
        stream.control.resume();
    }
    Ok(Reply::done("RESUME_REPLICATION"))
}

/// `RESYNC_TABLE <task_id> <table>`.
pub fn resync(state: &Arc<PoolerState>, task_id: u64, table: &str) -> Result<Reply, ErrorResponse> {
    let streams = streams_of(state, task_id)?;
    if streams
        .iter()
        .all(|s| s.control.has_table(table) == Some(false))
    {
        return Err(ErrorResponse::error(
            sqlstate::UNDEFINED_TABLE,
            format!("{table} is not a table of the move of task {task_id}"),
        )
        .hint("name a table of the stream's publication, as table or schema.table"));
    }
    for stream in streams {
        stream.control.request_resync(table);
    }
    Ok(Reply::done("RESYNC_TABLE"))
}
