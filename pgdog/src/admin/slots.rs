//! `SHOW REPLICATION_SLOTS` and `DROP_SLOT`: the logical replication slots of every configured
//! database's primaries (see [`super::primaries`]), asked over the network from the admin
//! client's task. A server that cannot be reached is one row with its error, never a failed
//! command; `DROP_SLOT` refuses a slot that is active or that a task of this process uses.

use std::sync::Arc;

use pgdog_admin::{ColumnType, ResultTable};
use tracing::{info, warn};

use super::primaries::{self, Primary};
use super::resharding::OBJECT_IN_USE;
use super::show::{push, Row};
use super::Reply;
use crate::net::{sqlstate, ErrorResponse};
use crate::quote;
use crate::reshard::conn::Rows;
use crate::reshard::human;
use crate::state::PoolerState;

use ColumnType::{BigInt, Bool, Text};

/// The columns of `SHOW REPLICATION_SLOTS`, in order.
pub const COLUMNS: [(&str, ColumnType); 13] = [
    ("database", Text),
    ("host", Text),
    ("port", BigInt),
    ("slot_name", Text),
    ("plugin", Text),
    ("active", Bool),
    ("restart_lsn", Text),
    ("confirmed_flush_lsn", Text),
    ("current_wal_lsn", Text),
    ("lag_bytes", BigInt),
    ("lag_bytes_human", Text),
    ("wal_status", Text),
    ("error", Text),
];

/// The logical slots of the connected database: name, plugin, active, restart_lsn,
/// confirmed_flush_lsn, the server's WAL position, the slot's lag behind it in bytes, and
/// `wal_status` (NULL before PostgreSQL 13).
fn list_sql(server_version: Option<u32>) -> String {
    let wal_status = if server_version.is_some_and(|v| v >= 130_000) {
        "wal_status::text"
    } else {
        "NULL::text"
    };
    format!(
        "SELECT slot_name::text, plugin::text, active, restart_lsn::text, \
         confirmed_flush_lsn::text, w.lsn::text, \
         greatest(pg_catalog.pg_wal_lsn_diff(w.lsn, confirmed_flush_lsn), 0)::bigint, {wal_status} \
         FROM pg_catalog.pg_replication_slots, \
         LATERAL (SELECT CASE WHEN pg_catalog.pg_is_in_recovery() \
                  THEN pg_catalog.pg_last_wal_replay_lsn() \
                  ELSE pg_catalog.pg_current_wal_lsn() END AS lsn) AS w \
         WHERE slot_type = 'logical' AND database = pg_catalog.current_database() \
         ORDER BY slot_name"
    )
}

/// The `SHOW REPLICATION_SLOTS` table.
pub async fn table(state: &PoolerState) -> ResultTable {
    let config = state.databases().config().clone();
    let (primaries, unresolved) = primaries::configured(&config);
    let results = primaries::each(&primaries, |primary| async move {
        let mut conn = primary.connect().await?;
        let rows = conn.query(&list_sql(conn.server_version_num())).await;
        conn.close().await;
        rows
    })
    .await;
    let mut table = ResultTable::new(&COLUMNS);
    for (primary, result) in primaries.iter().zip(results) {
        match result {
            Ok(rows) => slot_rows(&mut table, primary, &rows),
            Err(error) => push(
                &mut table,
                error_row(
                    Row::default()
                        .text(primary.name())
                        .text(&primary.addr.host)
                        .text(primary.addr.port),
                    error,
                ),
            ),
        }
    }
    for database in unresolved {
        push(
            &mut table,
            error_row(
                Row::default()
                    .text(&database.name)
                    .opt(None::<&str>)
                    .opt(None::<&str>),
                database.error,
            ),
        );
    }
    table
}

/// One row per slot of `rows` (columns as [`list_sql`] selects them).
fn slot_rows(table: &mut ResultTable, primary: &Primary, rows: &Rows) {
    for r in 0..rows.rows.len() {
        let lag = rows.get(r, 6).and_then(|v| v.parse::<u64>().ok());
        let mut row = Row::default()
            .text(primary.name())
            .text(&primary.addr.host)
            .text(primary.addr.port);
        for column in 0..6 {
            row = row.opt(rows.get(r, column));
        }
        row = row
            .opt(lag)
            .opt(lag.map(human::bytes))
            .opt(rows.get(r, 7))
            .opt(None::<&str>);
        push(table, row);
    }
}

/// `row` (database, host, port) completed with NULLs and the error.
fn error_row(mut row: Row, error: String) -> Row {
    while row.0.len() < COLUMNS.len() - 1 {
        row = row.opt(None::<&str>);
    }
    row.text(error)
}

/// The slot as found on one primary.
#[derive(Debug, Clone)]
struct Found {
    active: bool,
    pid: Option<String>,
}

/// `DROP_SLOT <slot>`: drops the logical slot on every configured primary that has it. Refuses
/// (changing nothing) when it is active anywhere or a running task of this process uses it.
pub async fn drop(state: &Arc<PoolerState>, slot: &str) -> Result<Reply, ErrorResponse> {
    let config = state.databases().config().clone();
    let (primaries, unresolved) = primaries::configured(&config);
    let find_sql = format!(
        "SELECT active, active_pid::text FROM pg_catalog.pg_replication_slots \
         WHERE slot_name = {} AND slot_type = 'logical' \
         AND database = pg_catalog.current_database()",
        quote::literal(slot)
    );
    let found = primaries::each(&primaries, |primary| {
        let sql = find_sql.clone();
        async move {
            let mut conn = primary.connect().await?;
            let rows = conn.query(&sql).await;
            conn.close().await;
            let rows = rows?;
            Ok(rows.rows.first().map(|_| Found {
                active: rows.get(0, 0) == Some("t"),
                pid: rows.get(0, 1).map(str::to_string),
            }))
        }
    })
    .await;

    let mut targets = Vec::new();
    let mut unchecked: Vec<String> = unresolved
        .into_iter()
        .map(|u| format!("{} ({})", u.name, u.error))
        .collect();
    for (primary, result) in primaries.iter().zip(found) {
        match result {
            Ok(Some(found)) => targets.push((primary, found)),
            Ok(None) => {}
            Err(error) => unchecked.push(format!("{} ({error})", primary.name())),
        }
    }
    if targets.is_empty() {
        if !unchecked.is_empty() {
            return Err(ErrorResponse::error(
                sqlstate::CONNECTION_FAILURE,
                format!(
                    "replication slot \"{slot}\" is not on the databases that answered, and these could not be checked: {}",
                    unchecked.join("; ")
                ),
            )
            .detail("nothing was dropped"));
        }
        return Err(ErrorResponse::error(
            sqlstate::UNDEFINED_OBJECT,
            format!("replication slot \"{slot}\" does not exist"),
        )
        .hint("SHOW REPLICATION_SLOTS lists the slots of the configured databases"));
    }
    for (primary, _) in &targets {
        let holders = state
            .slot_claims
            .holders(&state.tasks, &primary.names, slot);
        if let Some(task) = holders.first() {
            return Err(ErrorResponse::error(
                OBJECT_IN_USE,
                format!(
                    "replication slot \"{slot}\" of database \"{}\" is used by task {task}; stop task {task} first (STOP_TASK {task})",
                    primary.name()
                ),
            )
            .detail("nothing was dropped"));
        }
    }
    for (primary, found) in &targets {
        if found.active {
            return Err(ErrorResponse::error(
                OBJECT_IN_USE,
                format!(
                    "replication slot \"{slot}\" of database \"{}\" is active (used by process {} on {}:{})",
                    primary.name(),
                    found.pid.as_deref().unwrap_or("?"),
                    primary.addr.host,
                    primary.addr.port
                ),
            )
            .detail("nothing was dropped")
            .hint("stop the replication connection using it (pg_stat_replication lists it), then DROP_SLOT again"));
        }
    }

    let drop_sql = format!(
        "SELECT pg_catalog.pg_drop_replication_slot({})",
        quote::literal(slot)
    );
    let mut table = ResultTable::new(&[("database", Text), ("slot", Text), ("dropped", Bool)]);
    let mut dropped: Vec<&str> = Vec::new();
    for (primary, _) in &targets {
        let work = async {
            let mut conn = primary.connect().await?;
            let result = conn.execute(&drop_sql).await;
            conn.close().await;
            result
        };
        let error = match tokio::time::timeout(primary.time_limit(), work).await {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some((
                e.code().unwrap_or(sqlstate::CONNECTION_FAILURE).to_string(),
                e.short(),
            )),
            Err(_) => Some((
                sqlstate::CONNECTION_FAILURE.to_string(),
                format!("no answer within {:?}", primary.time_limit()),
            )),
        };
        if let Some((code, message)) = error {
            let mut response = ErrorResponse::error(
                &code,
                format!(
                    "could not drop replication slot \"{slot}\" of database \"{}\": {message}",
                    primary.name()
                ),
            );
            if !dropped.is_empty() {
                response = response.detail(format!(
                    "it was dropped from database(s) {} before",
                    dropped.join(", ")
                ));
            }
            return Err(response);
        }
        info!(
            "dropped replication slot \"{slot}\" of database \"{}\" ({}:{}/{})",
            primary.name(),
            primary.addr.host,
            primary.addr.port,
            primary.addr.database
        );
        dropped.push(primary.name());
        push(
            &mut table,
            Row::default().text(primary.name()).text(slot).bool(true),
        );
    }
    if !unchecked.is_empty() {
        warn!("DROP_SLOT {slot}: could not check {}", unchecked.join("; "));
    }
    let tag = format!("SELECT {}", table.rows.len());
    Ok(Reply::Table { table, tag })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wal_status_only_where_it_exists() {
        assert!(list_sql(Some(150_004)).contains("wal_status::text"));
        assert!(list_sql(Some(120_000)).contains("NULL::text"));
        assert!(list_sql(None).contains("NULL::text"));
    }

    #[test]
    fn error_rows_fill_every_column() {
        let row = error_row(
            Row::default().text("prod").text("10.0.0.1").text(5432),
            "connection refused".into(),
        );
        assert_eq!(row.0.len(), COLUMNS.len());
        assert_eq!(row.0[3], None);
        assert_eq!(row.0[12].as_deref(), Some("connection refused"));
    }
}
