//! The stream's position on every destination shard: `pgdog.replication_state`, one row per
//! slot holding the commit LSN of the last source transaction applied there. The row is
//! updated in the same destination transaction as the changes, so after any crash each shard
//! knows exactly which source transactions it has, and skips them when they come again.

use std::collections::BTreeMap;

use super::wal::Lsn;
use crate::quote;
use crate::reshard::conn::{Conn, ConnError};

/// Creates the state table if missing.
pub const CREATE: &str = "CREATE SCHEMA IF NOT EXISTS pgdog; \
    CREATE TABLE IF NOT EXISTS pgdog.replication_state (\
        slot text PRIMARY KEY, commit_lsn pg_lsn NOT NULL, end_lsn pg_lsn NOT NULL, \
        commit_time timestamptz, applied_at timestamptz NOT NULL DEFAULT now())";

/// The commit LSN of the last transaction applied on this shard (`Lsn::ZERO`: none yet).
pub async fn applied(conn: &mut Conn, slot: &str) -> Result<Lsn, ConnError> {
    for create in [CREATE, super::schema::CREATE_SHAPES] {
        conn.create_if_missing(create).await?;
    }
    let rows = conn
        .query(&format!(
            "SELECT commit_lsn::text FROM pgdog.replication_state WHERE slot = {}",
            quote::literal(slot)
        ))
        .await?;
    Ok(rows
        .scalar()
        .and_then(|text| text.parse().ok())
        .unwrap_or(Lsn::ZERO))
}

/// The statement recording that the transaction committed at `commit_lsn` (ending at
/// `end_lsn`, committed on the source at `commit_time`, microseconds since 2000) is applied;
/// runs inside the destination transaction that applies it.
pub fn record(slot: &str, commit_lsn: Lsn, end_lsn: Lsn, commit_time: i64) -> String {
    format!(
        "INSERT INTO pgdog.replication_state (slot, commit_lsn, end_lsn, commit_time, applied_at) \
         VALUES ({slot}, '{commit_lsn}', '{end_lsn}', \
         timestamptz '2000-01-01 00:00:00+00' + interval '{commit_time} microseconds', now()) \
         ON CONFLICT (slot) DO UPDATE SET commit_lsn = excluded.commit_lsn, \
         end_lsn = excluded.end_lsn, commit_time = excluded.commit_time, applied_at = now()",
        slot = quote::literal(slot),
    )
}

/// Forgets the slot's position (and the table shapes it applied) on this shard (`cleanup`).
pub async fn forget(conn: &mut Conn, slot: &str) -> Result<(), ConnError> {
    let sql = format!(
        "DELETE FROM pgdog.replication_state WHERE slot = {slot}; \
         DELETE FROM pgdog.replication_shapes WHERE slot = {slot}",
        slot = quote::literal(slot)
    );
    match conn.execute(&sql).await {
        Err(e) if !e.is_missing_table() => Err(e),
        _ => Ok(()),
    }
}

/// The copy's watermark of every table (`schema.table` → LSN) on this shard: changes of a
/// table committed before its watermark are already in the copied rows.
pub async fn watermarks(
    conn: &mut Conn,
    slot: &str,
) -> Result<BTreeMap<(String, String), Lsn>, ConnError> {
    let rows = conn
        .query(&format!(
            "SELECT schema_name, table_name, watermark_lsn::text FROM pgdog.copy_tables \
             WHERE slot = {}",
            quote::literal(slot)
        ))
        .await;
    let rows = match rows {
        Ok(rows) => rows,
        // No copy ran on this shard (REPLICATE after an external copy).
        Err(e) if e.is_missing_table() => return Ok(BTreeMap::new()),
        Err(e) => return Err(e),
    };
    let mut marks = BTreeMap::new();
    for row in 0..rows.rows.len() {
        if let (Some(schema), Some(table), Some(lsn)) =
            (rows.get(row, 0), rows.get(row, 1), rows.get(row, 2))
        {
            if let Ok(lsn) = lsn.parse() {
                marks.insert((schema.to_string(), table.to_string()), lsn);
            }
        }
    }
    Ok(marks)
}
