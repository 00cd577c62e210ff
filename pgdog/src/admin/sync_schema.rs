//! `SYNC_SCHEMA <task_id> [SKIP_INDEXES]`: compares the source and destination schema of a
//! stream's tables and applies what differs, each statement listed in `SHOW SCHEMA_SYNC`.

use std::sync::Arc;

use super::Reply;
use crate::net::{sqlstate, ErrorResponse};
use crate::state::PoolerState;

/// Starts the comparison for the stream of task `task_id`.
pub fn start(
    _state: &Arc<PoolerState>,
    task_id: u64,
    _indexes: bool,
) -> Result<Reply, ErrorResponse> {
    Err(ErrorResponse::error(
        sqlstate::FEATURE_NOT_SUPPORTED,
        format!("SYNC_SCHEMA {task_id}: not available yet"),
    ))
}
