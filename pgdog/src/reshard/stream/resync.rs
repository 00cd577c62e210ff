//! Copying tables while a move streams: a table added to the publication (found by its
//! first change or by the publication's table list), a table named by `RESYNC_TABLE`, and a
//! table whose copy an earlier run left unfinished. [`copy_tables`] runs while the stream's
//! session is over (every shard's batches committed); [`copy_beside`] while it goes on (see
//! [`super::side`]). Either way the table is created where missing (schema sync), emptied on
//! the shards, copied at a fresh snapshot whose position becomes its watermark, verified, and
//! indexed; the stream skips the table's changes before the watermark and applies the rest,
//! so the table ends exactly like the source. A crash in between leaves the table's copy
//! unfinished, which the next session finds and redoes.

use std::time::{Duration, Instant};

use pgdog_config::ConfigAndUsers;
use tracing::{info, warn};

use super::run::StreamOptions;
use super::schema::{
    forget_shapes, plan, shard_columns, source_table_columns, statements, SchemaChange,
};
use super::StreamError;
use crate::reshard::conn::Conn;
use crate::reshard::copy::{self, slot, state, DataSyncOptions};
use crate::reshard::endpoints::ClusterEndpoints;
use crate::reshard::publication::TableRef;
use crate::reshard::schema::{self, KeyPlacement, Phase, SchemaSyncOptions};
use crate::reshard::tasks::TaskHandle;

/// The tables of the move whose copy is unfinished on a shard, or that a shard lacks.
pub async fn unfinished(
    shards: &mut [Conn],
    slot: &str,
    tables: &[TableRef],
) -> Result<Vec<TableRef>, StreamError> {
    let mut found: Vec<TableRef> = Vec::new();
    for conn in shards.iter_mut() {
        let states = match state::read(conn, slot).await {
            Ok(states) => states,
            // No copy ever ran on this shard (REPLICATE after an external copy).
            Err(e) if e.is_missing_table() => Default::default(),
            Err(e) => return Err(e.into()),
        };
        for table in tables {
            let unfinished = states
                .get(&(table.schema.clone(), table.name.clone()))
                .is_some_and(|s| !s.complete());
            let missing = if unfinished {
                false
            } else {
                conn.query(&format!(
                    "SELECT pg_catalog.to_regclass({}) IS NULL",
                    crate::quote::literal(&table.qualified())
                ))
                .await?
                .scalar()
                    == Some("t")
            };
            if (unfinished || missing) && !found.contains(table) {
                found.push(table.clone());
            }
        }
    }
    Ok(found)
}

/// Copies `tables` (marked unfinished, or new: the copy empties those it finds with rows)
/// while the stream's session is over; a warning when an index or constraint could not be
/// made.
pub async fn copy_tables(
    config: &ConfigAndUsers,
    options: &StreamOptions,
    slot_name: &str,
    tables: &[TableRef],
    task: Option<&TaskHandle>,
) -> Result<Option<String>, StreamError> {
    let names: Vec<String> = tables.iter().map(TableRef::qualified).collect();
    info!("copying {} while the stream waits", names.join(", "));
    let source = ClusterEndpoints::resolve_as(config, &options.from, options.from_user.as_deref())?;
    // The session's walsender may take a moment to let go of the slot.
    let mut conn = source.connect_primary(options.source_shard).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while slot::find(&mut conn, slot_name)
        .await?
        .is_some_and(|s| s.active)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    conn.close().await;
    let step = format!("copying {} while the stream waits", names.join(", "));
    let copied = showing_step(task, slot_name, step, async {
        copy_rows(config, options, slot_name, tables, false, false, task).await?;
        indexes(config, options, tables, task).await
    })
    .await;
    let warning = copied?;
    info!("copied {}; streaming again", names.join(", "));
    Ok(warning)
}

/// Runs `copy` with `step` as the task's step, then puts back the streaming step (the
/// copy's schema sync and data copy set steps of their own meanwhile).
pub(super) async fn showing_step<T>(
    task: Option<&TaskHandle>,
    slot_name: &str,
    step: String,
    copy: impl std::future::Future<Output = T>,
) -> T {
    if let Some(task) = task {
        task.set_step(step);
    }
    let result = copy.await;
    if let Some(task) = task {
        task.set_step(format!("streaming changes from slot {slot_name}"));
    }
    result
}

/// Copies `tables` while the stream runs ([`super::side`]): emptied (`clean`, tables the
/// shards have) and marked unfinished, created where missing, copied at a fresh snapshot whose position
/// becomes their watermark, verified, and left `drain_pending` for the stream. Their indexes
/// come after the stream applied what it held ([`indexes`]).
pub async fn copy_beside(
    config: ConfigAndUsers,
    options: StreamOptions,
    slot_name: String,
    tables: Vec<TableRef>,
    clean: bool,
    task: Option<TaskHandle>,
) -> Result<(), StreamError> {
    let names: Vec<String> = tables.iter().map(TableRef::qualified).collect();
    info!("copying {} while the other tables stream", names.join(", "));
    let step = format!("copying {} while the other tables stream", names.join(", "));
    showing_step(task.as_ref(), &slot_name, step, async {
        copy_rows(
            &config,
            &options,
            &slot_name,
            &tables,
            clean,
            true,
            task.as_ref(),
        )
        .await
    })
    .await
}

/// The copy itself: empty (`clean`), schema, rows (`beside_stream`: see [`copy_beside`]).
async fn copy_rows(
    config: &ConfigAndUsers,
    options: &StreamOptions,
    slot_name: &str,
    tables: &[TableRef],
    clean: bool,
    beside_stream: bool,
    task: Option<&TaskHandle>,
) -> Result<(), StreamError> {
    let names: Vec<String> = tables.iter().map(TableRef::qualified).collect();
    let destination =
        ClusterEndpoints::resolve_as(config, &options.to, options.to_user.as_deref())?;
    let source = ClusterEndpoints::resolve_as(config, &options.from, options.from_user.as_deref())?;
    let mut source_conn = source.connect_primary(options.source_shard).await?;
    for shard in 0..destination.shards.len() {
        let mut conn = destination.connect_primary(shard).await?;
        // State tables of an earlier pgdog get the columns this one records.
        conn.create_if_missing(state::CREATE).await?;
        if clean {
            // Emptied and marked unfinished at once: a crash from here on leaves a copy
            // that the next session finds and redoes.
            conn.execute("BEGIN").await?;
            for table in tables {
                empty(&mut conn, slot_name, table).await?;
            }
            conn.execute("COMMIT").await?;
        }
        // The copy has the source's shape of the moment: shapes applied before mean nothing,
        // and the shard's table takes that shape first.
        forget_shapes(&mut conn, slot_name, &names).await?;
        for table in tables {
            align_columns(&mut source_conn, &mut conn, slot_name, table, options).await?;
        }
        conn.close().await;
    }
    source_conn.close().await;
    if let Some(error) = sync(config, options, Phase::Pre, names_of(tables), task).await? {
        return Err(failed(&names, "schema sync", error));
    }
    let copy = DataSyncOptions {
        from: options.from.clone(),
        to: options.to.clone(),
        from_user: options.from_user.clone(),
        to_user: options.to_user.clone(),
        publication: options.publication.clone(),
        slot: Some(slot_name.to_string()),
        skip_schema_sync: true,
        only: Some(names_of(tables)),
        beside_stream,
        ..Default::default()
    };
    copy::run(
        config,
        &copy,
        &options.table_copies,
        &options.schema_log,
        task,
        |_| {},
    )
    .await
    .map_err(|e| failed(&names, "copy", e.to_string()))?;
    Ok(())
}

/// Empties `table` on a shard and marks its copy unfinished (inside the caller's
/// transaction).
async fn empty(conn: &mut Conn, slot_name: &str, table: &TableRef) -> Result<(), StreamError> {
    state::clean(conn, slot_name, table).await?;
    let unfinished = state::TableStart {
        watermark: "0/0",
        ranges: 1,
        drain_pending: false,
        digest_method: crate::reshard::copy::tables::DIGEST_BYTES,
    };
    state::begin_table(conn, slot_name, table, unfinished).await?;
    Ok(())
}

/// Gives a shard's table the columns the source's table has now, which is the shape the
/// copy brings: the stream may not have reached the DDL behind them yet, or may have gone
/// past a shape the source no longer has. A table with rows is emptied first (the copy
/// replaces them anyway), so no statement has to convert data.
async fn align_columns(
    source: &mut Conn,
    shard: &mut Conn,
    slot_name: &str,
    table: &TableRef,
    options: &StreamOptions,
) -> Result<(), StreamError> {
    let qualified = table.qualified();
    let Some(columns) = shard_columns(shard, &qualified).await? else {
        // Schema sync creates it.
        return Ok(());
    };
    let change = SchemaChange {
        source: table.clone(),
        table: qualified.clone(),
        key: None,
        columns: source_table_columns(source, table.oid).await?,
        attnums: Default::default(),
        back: options.from_cutover,
    };
    let names = [qualified.clone()];
    let ops = plan(&columns, &change).map_err(|e| failed(&names, "schema change", e))?;
    let ddl = statements(&qualified, &ops, &columns, options.from_cutover);
    if ddl.is_empty() {
        return Ok(());
    }
    if state::has_rows(shard, table).await? {
        shard.execute("BEGIN").await?;
        empty(shard, slot_name, table).await?;
        shard.execute("COMMIT").await?;
    }
    for statement in ddl {
        match shard.execute(&statement.sql).await {
            Ok(_) => info!(
                "{}: {} (before copying it again)",
                shard.addr(),
                statement.sql
            ),
            Err(e) if statement.essential => {
                return Err(failed(&names, &statement.sql, e.to_string()))
            }
            Err(e) => warn!("{}: {} failed (left out): {e}", shard.addr(), statement.sql),
        }
    }
    Ok(())
}

/// Indexes and constraints of `tables` copied again, and foreign keys of the tables
/// referencing them (emptying a table drops those on the shards). The stream does not need
/// them: a failure is a warning (returned), not an error.
pub async fn indexes(
    config: &ConfigAndUsers,
    options: &StreamOptions,
    tables: &[TableRef],
    task: Option<&TaskHandle>,
) -> Result<Option<String>, StreamError> {
    let names: Vec<String> = tables.iter().map(TableRef::qualified).collect();
    let source = ClusterEndpoints::resolve_as(config, &options.from, options.from_user.as_deref())?;
    let mut post = names_of(tables);
    let mut source_conn = source.connect_primary(options.source_shard).await?;
    for referencing in referencing_tables(&mut source_conn, tables).await? {
        if !post.contains(&referencing) {
            post.push(referencing);
        }
    }
    source_conn.close().await;
    let warning = sync(config, options, Phase::Post, post, task).await?;
    if let Some(warning) = &warning {
        warn!(
            "after copying {}, an index or constraint could not be created: {warning}",
            names.join(", ")
        );
    }
    Ok(warning)
}

fn failed(names: &[String], what: &str, detail: String) -> StreamError {
    StreamError::SchemaApply {
        shard: 0,
        statement: format!("{what} of {}", names.join(", ")),
        error: detail,
    }
}

fn names_of(tables: &[TableRef]) -> Vec<(String, String)> {
    tables
        .iter()
        .map(|t| (t.schema.clone(), t.name.clone()))
        .collect()
}

/// One schema-sync phase for `only`. Objects that exist with another definition are left
/// alone: the stream keeps the shards' tables in line with the source's. The first
/// statement that failed, if any.
async fn sync(
    config: &ConfigAndUsers,
    options: &StreamOptions,
    phase: Phase,
    only: Vec<(String, String)>,
    task: Option<&TaskHandle>,
) -> Result<Option<String>, StreamError> {
    let names: Vec<String> = only.iter().map(|(s, t)| format!("{s}.{t}")).collect();
    let schema_options = SchemaSyncOptions {
        from: options.from.clone(),
        to: options.to.clone(),
        publication: options.publication.clone(),
        phase,
        dry_run: false,
        ignore_errors: true,
        force: true,
        index_jobs: None,
        sequence_margin: None,
        skip_preflight: true,
        keys: KeyPlacement::WithTables,
        only_tables: Some(only),
    };
    let report = schema::run(config, &schema_options, &options.schema_log, task, |_| {})
        .await
        .map_err(|e| failed(&names, "schema sync", e.to_string()))?;
    Ok(report.shards.iter().find_map(|s| {
        s.first_error.as_ref().map(|e| {
            format!(
                "shard {}: {e} (SHOW SCHEMA_SYNC lists each statement)",
                s.shard
            )
        })
    }))
}

/// The tables whose foreign keys reference `tables`.
async fn referencing_tables(
    conn: &mut Conn,
    tables: &[TableRef],
) -> Result<Vec<(String, String)>, StreamError> {
    let oids: Vec<String> = tables.iter().map(|t| t.oid.to_string()).collect();
    let rows = conn
        .query(&format!(
            "SELECT DISTINCT n.nspname, c.relname FROM pg_catalog.pg_constraint k \
             JOIN pg_catalog.pg_class c ON c.oid = k.conrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE k.contype = 'f' AND k.confrelid IN ({})",
            oids.join(", ")
        ))
        .await?;
    Ok((0..rows.rows.len())
        .filter_map(|r| Some((rows.get(r, 0)?.to_string(), rows.get(r, 1)?.to_string())))
        .collect())
}
