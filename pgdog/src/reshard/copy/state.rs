//! The copy's progress, kept on every destination shard in `pgdog.copy_tables` (one row per
//! table: its watermark LSN and range count) and `pgdog.copy_ranges` (one row per range
//! copied to that shard: rows and digest). A range's row is committed in the same transaction
//! as its data, so after any crash the state says exactly what each shard holds.

use std::collections::BTreeMap;

use super::digest::Digest;
use crate::quote;
use crate::reshard::conn::{Conn, ConnError};
use crate::reshard::publication::TableRef;

/// Creates the state tables if missing.
pub const CREATE: &str = "CREATE SCHEMA IF NOT EXISTS pgdog; \
    CREATE TABLE IF NOT EXISTS pgdog.copy_tables (\
        slot text NOT NULL, schema_name text NOT NULL, table_name text NOT NULL, \
        watermark_lsn pg_lsn NOT NULL, ranges integer NOT NULL, \
        started_at timestamptz NOT NULL DEFAULT now(), verified_at timestamptz, \
        PRIMARY KEY (slot, schema_name, table_name)); \
    CREATE TABLE IF NOT EXISTS pgdog.copy_ranges (\
        slot text NOT NULL, schema_name text NOT NULL, table_name text NOT NULL, \
        range_no integer NOT NULL, rows bigint NOT NULL, digest bigint NOT NULL, \
        copied_at timestamptz NOT NULL DEFAULT now(), \
        PRIMARY KEY (slot, schema_name, table_name, range_no)); \
    DO $pgdog$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute \
        WHERE attrelid = 'pgdog.copy_tables'::regclass AND attname = 'drain_pending') THEN \
        ALTER TABLE pgdog.copy_tables ADD COLUMN IF NOT EXISTS drain_pending boolean NOT NULL \
        DEFAULT false; END IF; \
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute \
        WHERE attrelid = 'pgdog.copy_tables'::regclass AND attname = 'digest_method') THEN \
        ALTER TABLE pgdog.copy_tables ADD COLUMN IF NOT EXISTS digest_method text NOT NULL \
        DEFAULT 'bytes'; END IF; END $pgdog$";

/// What one shard has of one table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableState {
    /// The snapshot position the table was copied at.
    pub watermark: String,
    /// Ranges the table was split into.
    pub ranges: usize,
    /// Whether it was verified.
    pub verified: bool,
    /// Copied beside a running stream, whose changes of the table since the copy's snapshot
    /// are not on the shard yet: unfinished until they are.
    pub drain_pending: bool,
    /// Ranges committed on this shard, with what they hold.
    pub done: BTreeMap<usize, Digest>,
    /// How the range digests were computed ([`super::tables::TableJob::digest_method`]).
    pub digest_method: String,
}

impl TableState {
    /// Every range is on the shard.
    pub fn complete(&self) -> bool {
        self.ranges > 0
            && !self.drain_pending
            && (0..self.ranges).all(|r| self.done.contains_key(&r))
    }

    /// What the shard should hold of the table: the sum of its ranges.
    pub fn expected(&self) -> Digest {
        let mut total = Digest::default();
        for digest in self.done.values() {
            total.merge(*digest);
        }
        total
    }
}

fn key(slot: &str, table: &TableRef) -> String {
    format!(
        "slot = {} AND schema_name = {} AND table_name = {}",
        quote::literal(slot),
        quote::literal(&table.schema),
        quote::literal(&table.name)
    )
}

/// Every table's state on one shard for `slot`.
pub async fn read(
    conn: &mut Conn,
    slot: &str,
) -> Result<BTreeMap<(String, String), TableState>, ConnError> {
    conn.create_if_missing(CREATE).await?;
    let mut states: BTreeMap<(String, String), TableState> = BTreeMap::new();
    let tables = conn
        .query(&format!(
            "SELECT schema_name, table_name, watermark_lsn::text, ranges, verified_at IS NOT NULL, \
             drain_pending, digest_method FROM pgdog.copy_tables WHERE slot = {}",
            quote::literal(slot)
        ))
        .await?;
    for row in tables.rows {
        let text = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        states.insert(
            (text(0), text(1)),
            TableState {
                watermark: text(2),
                ranges: text(3).parse().unwrap_or(0),
                verified: text(4) == "t",
                drain_pending: text(5) == "t",
                done: BTreeMap::new(),
                digest_method: text(6),
            },
        );
    }
    let ranges = conn
        .query(&format!(
            "SELECT schema_name, table_name, range_no, rows, digest FROM pgdog.copy_ranges WHERE slot = {}",
            quote::literal(slot)
        ))
        .await?;
    for row in ranges.rows {
        let text = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        if let Some(state) = states.get_mut(&(text(0), text(1))) {
            let digest = Digest {
                rows: text(3).parse().unwrap_or(0),
                sum: text(4).parse::<i64>().unwrap_or(0) as u64,
            };
            state.done.insert(text(2).parse().unwrap_or(0), digest);
        }
    }
    Ok(states)
}

/// What [`begin_table`] records about a table's copy.
#[derive(Debug, Clone, Copy)]
pub struct TableStart<'a> {
    /// The snapshot position it is copied at.
    pub watermark: &'a str,
    /// Ranges it is split into.
    pub ranges: usize,
    /// Beside a running stream, which finishes it with [`drained`].
    pub drain_pending: bool,
    /// How its range digests are computed.
    pub digest_method: &'a str,
}

/// Records that `table` is being copied as `start` says.
pub async fn begin_table(
    conn: &mut Conn,
    slot: &str,
    table: &TableRef,
    start: TableStart<'_>,
) -> Result<(), ConnError> {
    conn.execute(&format!(
        "INSERT INTO pgdog.copy_tables \
         (slot, schema_name, table_name, watermark_lsn, ranges, drain_pending, digest_method) \
         VALUES ({}, {}, {}, {}, {}, {}, {})",
        quote::literal(slot),
        quote::literal(&table.schema),
        quote::literal(&table.name),
        quote::literal(start.watermark),
        start.ranges,
        start.drain_pending,
        quote::literal(start.digest_method)
    ))
    .await?;
    Ok(())
}

/// The statement that marks `table` finished once a stream applied the changes it held while
/// the table was copied beside it (in the same transaction).
pub fn drained(slot: &str, table: &TableRef) -> String {
    format!(
        "UPDATE pgdog.copy_tables SET drain_pending = false WHERE {}",
        key(slot, table)
    )
}

/// The statement that marks `table` unfinished until a stream applied the changes it holds
/// back for a copy beside it ([`drained`] clears it); recorded before the first change is
/// held, so a crash at any point after leads to a fresh copy of the table.
pub fn mark_pending(slot: &str, table: &TableRef) -> String {
    format!(
        "INSERT INTO pgdog.copy_tables \
         (slot, schema_name, table_name, watermark_lsn, ranges, drain_pending) \
         VALUES ({}, {}, {}, '0/0', 1, true) \
         ON CONFLICT (slot, schema_name, table_name) DO UPDATE SET drain_pending = true",
        quote::literal(slot),
        quote::literal(&table.schema),
        quote::literal(&table.name)
    )
}

/// The statement recording range `range` inside the transaction that copied it.
pub fn range_done(slot: &str, table: &TableRef, range: usize, digest: Digest) -> String {
    format!(
        "INSERT INTO pgdog.copy_ranges (slot, schema_name, table_name, range_no, rows, digest) \
         VALUES ({}, {}, {}, {range}, {}, {})",
        quote::literal(slot),
        quote::literal(&table.schema),
        quote::literal(&table.name),
        digest.rows,
        digest.sum as i64
    )
}

/// Whether range `range` is recorded on this shard (after an ambiguous commit).
pub async fn has_range(
    conn: &mut Conn,
    slot: &str,
    table: &TableRef,
    range: usize,
) -> Result<bool, ConnError> {
    let rows = conn
        .query(&format!(
            "SELECT 1 FROM pgdog.copy_ranges WHERE {} AND range_no = {range}",
            key(slot, table)
        ))
        .await?;
    Ok(!rows.rows.is_empty())
}

/// Marks the table verified.
pub async fn verified(conn: &mut Conn, slot: &str, table: &TableRef) -> Result<(), ConnError> {
    conn.execute(&format!(
        "UPDATE pgdog.copy_tables SET verified_at = now() WHERE {}",
        key(slot, table)
    ))
    .await?;
    Ok(())
}

/// Empties the table on this shard and forgets its progress, in one (implicit) transaction.
/// Foreign keys referencing it (made by an earlier run's schema sync after the copy) are
/// dropped first: TRUNCATE refuses them, and schema sync recreates them, validated, after
/// this copy.
pub async fn clean(conn: &mut Conn, slot: &str, table: &TableRef) -> Result<(), ConnError> {
    let references = conn
        .query(&format!(
            "SELECT n.nspname, c.relname, k.conname FROM pg_catalog.pg_constraint k \
             JOIN pg_catalog.pg_class c ON c.oid = k.conrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE k.contype = 'f' AND k.confrelid = to_regclass({}) AND k.conparentid = 0",
            quote::literal(&table.qualified())
        ))
        .await?;
    let mut sql = String::new();
    for row in &references.rows {
        if let [Some(schema), Some(name), Some(constraint)] = [&row[0], &row[1], &row[2]] {
            tracing::info!(
                "dropping foreign key {constraint} of {}.{} on the shard to empty {table}; \
                 schema sync recreates it after the copy",
                quote::ident(schema),
                quote::ident(name)
            );
            sql.push_str(&format!(
                "ALTER TABLE {} DROP CONSTRAINT {}; ",
                quote::qualified(schema, name),
                quote::ident(constraint)
            ));
        }
    }
    sql.push_str(&format!(
        "TRUNCATE ONLY {table}; DELETE FROM pgdog.copy_ranges WHERE {k}; \
         DELETE FROM pgdog.copy_tables WHERE {k}",
        table = table.qualified(),
        k = key(slot, table)
    ));
    conn.execute(&sql).await.map(|_| ())
}

/// Whether the table has any row on this shard.
pub async fn has_rows(conn: &mut Conn, table: &TableRef) -> Result<bool, ConnError> {
    let rows = conn
        .query(&format!(
            "SELECT EXISTS (SELECT 1 FROM ONLY {})",
            table.qualified()
        ))
        .await?;
    Ok(rows.scalar() == Some("t"))
}

/// What this shard should hold of the table: the ranges recorded for it, summed.
pub async fn table_digest(
    conn: &mut Conn,
    slot: &str,
    table: &TableRef,
) -> Result<Digest, ConnError> {
    let rows = conn
        .query(&format!(
            "SELECT rows, digest FROM pgdog.copy_ranges WHERE {}",
            key(slot, table)
        ))
        .await?;
    let mut total = Digest::default();
    for row in rows.rows {
        let number = |i: usize| {
            row.get(i)
                .cloned()
                .flatten()
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(0)
        };
        total.merge(Digest {
            rows: number(0) as u64,
            sum: number(1) as u64,
        });
    }
    Ok(total)
}
