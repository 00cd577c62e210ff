//! Admin commands that start resharding tasks (`SCHEMA_SYNC`, `COPY_DATA`, `REPLICATE`):
//! checked against the configuration at once (so a typo is an error now, not a failed task
//! later), then run in the background; the reply is the task's id. `COPY_DATA` goes on
//! streaming changes after the copy; `REPLICATE` only streams. Both run until `STOP_TASK`.

use std::sync::Arc;

use pgdog_admin::{ColumnType, CopyData, ResultTable, SchemaSync, SyncPhase};
use pgdog_config::ConfigAndUsers;
use tracing::{info, warn};

use super::Reply;
use crate::net::{sqlstate, ErrorResponse};
use crate::reshard::copy::{self, slot, DataSyncOptions};
use crate::reshard::schema::{self, Phase, SchemaSyncOptions};
use crate::reshard::stream::{self, StreamOptions};
use crate::reshard::{ClusterEndpoints, EndpointError, TaskKind};
use crate::state::PoolerState;

/// The admin error for a database that cannot be a source or destination.
pub fn endpoint_error(error: EndpointError) -> ErrorResponse {
    let code = match error {
        EndpointError::UnknownDatabase { .. } => sqlstate::INVALID_CATALOG_NAME,
        EndpointError::NoSchemaAdmin { .. } => sqlstate::INSUFFICIENT_PRIVILEGE,
        EndpointError::UnknownUser { .. } => sqlstate::UNDEFINED_OBJECT,
        EndpointError::NoPrimary { .. } => sqlstate::CONFIG_FILE_ERROR,
    };
    ErrorResponse::error(code, error.to_string())
}

/// The one-row reply `task_id`.
pub fn task_reply(id: u64) -> Reply {
    let mut table = ResultTable::new(&[("task_id", ColumnType::BigInt)]);
    let _ = table.push(vec![Some(id.to_string())]);
    Reply::Table {
        table,
        tag: "SELECT 1".into(),
    }
}

/// `SCHEMA_SYNC`: starts the phase as a background task.
pub fn schema_sync(state: &Arc<PoolerState>, command: &SchemaSync) -> Result<Reply, ErrorResponse> {
    let config = state.databases().config().clone();
    for database in [&command.from, &command.to] {
        ClusterEndpoints::resolve(&config, database).map_err(endpoint_error)?;
    }
    let options = SchemaSyncOptions {
        from: command.from.clone(),
        to: command.to.clone(),
        publication: command.publication.clone(),
        phase: match command.phase {
            SyncPhase::Pre => Phase::Pre,
            SyncPhase::Post => Phase::Post,
            SyncPhase::Cutover => Phase::Cutover,
        },
        dry_run: command.dry_run,
        ignore_errors: command.ignore_errors,
        force: command.force,
        index_jobs: None,
        sequence_margin: None,
        skip_preflight: false,
        keys: Default::default(),
        only_tables: None,
    };
    let log = state.schema_sync.clone();
    let id = state.tasks.start(TaskKind::SchemaSync, move |task| async move {
        let report = schema::run(&config, &options, &log, Some(&task), |problems| {
            for problem in problems {
                warn!("task {}: pre-flight: {problem}", task.id());
            }
        })
        .await
        .map_err(|e| e.to_string())?;
        let differs = report.shards.iter().any(|s| s.differ > 0);
        if report.is_clean() || (options.ignore_errors && !differs) {
            task.set_step(format!("done: {}", report.summary()));
            Ok(())
        } else {
            Err(format!(
                "schema sync {} did not complete cleanly: {} (SHOW SCHEMA_SYNC lists each statement)",
                options.phase.as_str(),
                report.summary()
            ))
        }
    });
    Ok(task_reply(id))
}

/// SQLSTATE `object_in_use`.
pub const OBJECT_IN_USE: &str = "55006";

/// The slot a `COPY_DATA` / `REPLICATE` uses, after checking both databases resolve and no
/// running task of this process already uses that slot of the source.
pub(super) fn checked_slot(
    state: &PoolerState,
    config: &ConfigAndUsers,
    command: &CopyData,
) -> Result<String, ErrorResponse> {
    for database in [&command.from, &command.to] {
        ClusterEndpoints::resolve(config, database).map_err(endpoint_error)?;
    }
    let slot = command
        .slot
        .clone()
        .unwrap_or_else(|| slot::default_name(&command.publication));
    let holders =
        state
            .slot_claims
            .holders(&state.tasks, std::slice::from_ref(&command.from), &slot);
    if let Some(task) = holders.first() {
        return Err(ErrorResponse::error(
            OBJECT_IN_USE,
            format!(
                "replication slot \"{slot}\" of database \"{}\" is in use by task {task}",
                command.from
            ),
        )
        .hint(format!(
            "stop task {task} first (STOP_TASK {task}), or choose another slot"
        )));
    }
    Ok(slot)
}

/// What `COPY_DATA` and `REPLICATE` reply: `task_id`, `replication_slot`.
pub(super) fn stream_reply(id: u64, slot: String) -> Reply {
    let mut table = ResultTable::new(&[
        ("task_id", ColumnType::BigInt),
        ("replication_slot", ColumnType::Text),
    ]);
    let _ = table.push(vec![Some(id.to_string()), Some(slot)]);
    Reply::Table {
        table,
        tag: "SELECT 1".into(),
    }
}

/// The stream of a `COPY_DATA` / `REPLICATE` task: reports its step, streams until the task
/// is stopped, and says where the slot was left.
async fn stream_step(
    config: &ConfigAndUsers,
    options: &StreamOptions,
    stats: &stream::ReplicationStats,
    task: &crate::reshard::TaskHandle,
    step: String,
) -> Result<(), String> {
    let slot = options.slot.clone().unwrap_or_default();
    task.set_step(step);
    stream::run(config, options, stats, Some(task))
        .await
        .map_err(|e| format!("replication from slot {slot}: {e}"))?;
    info!("task {}: stream from slot {slot} stopped", task.id());
    task.set_step(format!(
        "stopped streaming; slot {slot} keeps its place (REPLICATE {} {} {} {slot} resumes)",
        options.from, options.to, options.publication
    ));
    Ok(())
}

/// `COPY_DATA`: starts the data copy (pre-flight, schema sync, copy, schema sync after it) as
/// a background task that then streams changes from the slot until `STOP_TASK`; replies with
/// its id and the replication slot it uses.
pub fn copy_data(state: &Arc<PoolerState>, command: &CopyData) -> Result<Reply, ErrorResponse> {
    let config = state.databases().config().clone();
    let slot = checked_slot(state, &config, command)?;
    let (options, stream_options) = move_options(state, command, &slot);
    let stats = state.replication.clone();
    let shared = state.clone();
    let id = state
        .tasks
        .start(TaskKind::CopyData, move |task| async move {
            let (report, copied) = copy_step(&shared, &config, &options, &task).await?;
            if task.is_stopping() {
                task.set_step(format!("copy done: {copied}; stopped before streaming"));
                return Ok(());
            }
            let step = format!(
                "streaming changes from slot {} (copy done: {copied})",
                report.slot
            );
            stream_step(&config, &stream_options, &stats, &task, step).await
        });
    state.slot_claims.claim(id, &command.from, &slot);
    Ok(stream_reply(id, slot))
}

/// The copy's and the stream's options of a `COPY_DATA` / `RESHARD` using `slot`.
pub(super) fn move_options(
    state: &PoolerState,
    command: &CopyData,
    slot: &str,
) -> (DataSyncOptions, StreamOptions) {
    let copy = DataSyncOptions {
        from: command.from.clone(),
        to: command.to.clone(),
        publication: command.publication.clone(),
        slot: Some(slot.to_string()),
        ..Default::default()
    };
    let stream = StreamOptions {
        from: command.from.clone(),
        to: command.to.clone(),
        publication: command.publication.clone(),
        slot: Some(slot.to_string()),
        table_copies: state.table_copies.clone(),
        schema_log: state.schema_sync.clone(),
        ..Default::default()
    };
    (copy, stream)
}

/// The copy of a `COPY_DATA` / `RESHARD` task (pre-flight, schema sync, copy, verification,
/// indexes): its report and a one-line summary for the task's step.
pub(super) async fn copy_step(
    state: &PoolerState,
    config: &ConfigAndUsers,
    options: &DataSyncOptions,
    task: &crate::reshard::TaskHandle,
) -> Result<(copy::DataSyncReport, String), String> {
    let report = copy::run(
        config,
        options,
        &state.table_copies,
        &state.schema_sync,
        Some(task),
        |problems| {
            for problem in problems {
                warn!("task {}: pre-flight: {problem}", task.id());
            }
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    let rows: u64 = report.copied.iter().map(|(_, rows, _)| rows).sum();
    let copied = format!(
        "{} table(s) copied ({rows} rows), {} already copied",
        report.copied.len(),
        report.skipped.len(),
    );
    info!(
        "task {}: copy done: {copied}; slot {} at {}",
        task.id(),
        report.slot,
        report.slot_lsn
    );
    Ok((report, copied))
}

/// `REPLICATE`: streams changes from the slot (left by `COPY_DATA` or `pgdog data-sync`) to
/// the destination as a background task until `STOP_TASK`; replies like `COPY_DATA`.
pub fn replicate(state: &Arc<PoolerState>, command: &CopyData) -> Result<Reply, ErrorResponse> {
    let config = state.databases().config().clone();
    let slot = checked_slot(state, &config, command)?;
    let options = StreamOptions {
        from: command.from.clone(),
        to: command.to.clone(),
        publication: command.publication.clone(),
        slot: Some(slot.clone()),
        ..Default::default()
    };
    let id = start_stream(state, config, options);
    Ok(stream_reply(id, slot))
}

/// Starts a stream as a task of its own (its slot claimed by it); the task's id.
pub(super) fn start_stream(
    state: &Arc<PoolerState>,
    config: Arc<ConfigAndUsers>,
    mut options: StreamOptions,
) -> u64 {
    options.table_copies = state.table_copies.clone();
    options.schema_log = state.schema_sync.clone();
    let stats = state.replication.clone();
    let (from, slot) = (
        options.from.clone(),
        options.slot.clone().unwrap_or_default(),
    );
    let id = state
        .tasks
        .start(TaskKind::Replication, move |task| async move {
            let step = format!(
                "streaming changes from slot {}",
                options.slot.as_deref().unwrap_or_default()
            );
            stream_step(&config, &options, &stats, &task, step).await
        });
    state.slot_claims.claim(id, &from, &slot);
    id
}
