//! Admin commands that start resharding tasks (`SCHEMA_SYNC`): checked against the
//! configuration at once (so a typo is an error now, not a failed task later), then run in
//! the background; the reply is the task's id.

use std::sync::Arc;

use pgdog_admin::{ColumnType, CopyData, ResultTable, SchemaSync, SyncPhase};
use tracing::warn;

use super::Reply;
use crate::net::{sqlstate, ErrorResponse};
use crate::reshard::copy::{self, slot, DataSyncOptions};
use crate::reshard::schema::{self, Phase, SchemaSyncOptions};
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

/// `COPY_DATA`: starts the data copy (pre-flight, schema sync, copy, schema sync after it) as
/// a background task; replies with its id and the replication slot it uses.
pub fn copy_data(state: &Arc<PoolerState>, command: &CopyData) -> Result<Reply, ErrorResponse> {
    let config = state.databases().config().clone();
    for database in [&command.from, &command.to] {
        ClusterEndpoints::resolve(&config, database).map_err(endpoint_error)?;
    }
    let slot = command
        .slot
        .clone()
        .unwrap_or_else(|| slot::default_name(&command.publication));
    let options = DataSyncOptions {
        from: command.from.clone(),
        to: command.to.clone(),
        publication: command.publication.clone(),
        slot: Some(slot.clone()),
        ..Default::default()
    };
    let progress = state.table_copies.clone();
    let log = state.schema_sync.clone();
    let id = state
        .tasks
        .start(TaskKind::CopyData, move |task| async move {
            let report = copy::run(
                &config,
                &options,
                &progress,
                &log,
                Some(&task),
                |problems| {
                    for problem in problems {
                        warn!("task {}: pre-flight: {problem}", task.id());
                    }
                },
            )
            .await
            .map_err(|e| e.to_string())?;
            let rows: u64 = report.copied.iter().map(|(_, rows, _)| rows).sum();
            task.set_step(format!(
                "done: {} table(s) copied ({rows} rows), {} already copied; slot {} at {}",
                report.copied.len(),
                report.skipped.len(),
                report.slot,
                report.slot_lsn
            ));
            Ok(())
        });
    let mut table = ResultTable::new(&[
        ("task_id", ColumnType::BigInt),
        ("replication_slot", ColumnType::Text),
    ]);
    let _ = table.push(vec![Some(id.to_string()), Some(slot)]);
    Ok(Reply::Table {
        table,
        tag: "SELECT 1".into(),
    })
}
