//! What to copy of each table: its columns (generated ones left out), which ones widen from
//! integer to bigint, where its rows go (the router's rule for the table, or every shard),
//! and its CTID ranges, sized by heap plus TOAST bytes.

use std::sync::Arc;

use super::field_digest::FieldHashes;
use super::shape::{TupleShape, TypeTree};
use super::tuples::TupleHashing;
use crate::quote;
use crate::reshard::conn::{Conn, ConnError};
use crate::reshard::publication::TableRef;
use crate::router::plan::{ShardingSchema, TableRule};

/// A part of a table by physical position: pages `start..end` (`None`: to the end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtidRange {
    /// First page.
    pub start: u64,
    /// Page after the last (`None` for the last range).
    pub end: Option<u64>,
}

/// One table to copy.
#[derive(Debug, Clone)]
pub struct TableJob {
    /// The table (OID of the source).
    pub table: TableRef,
    /// Copied columns, in order.
    pub columns: Vec<String>,
    /// Positions (in `columns`) of integer columns that are bigint on the destination.
    pub widen: Vec<usize>,
    /// The key's position and placement rule; `None`: every shard gets every row.
    pub rule: Option<(usize, TableRule)>,
    /// Heap plus TOAST bytes on the source.
    pub bytes: u64,
    /// Where the copied columns' values carry type OIDs (for digests).
    pub shape: Option<Arc<TupleShape>>,
    /// The shards compute the table's digest themselves, hashing its columns this way (see
    /// [`super::field_digest`]); `None`: the copy reads each shard's table back instead.
    pub fields: Option<Arc<FieldHashes>>,
    /// Its ranges.
    pub ranges: Vec<CtidRange>,
}

/// [`TableJob::digest_method`] of tables whose shards compute their digest, hashing each
/// column by its type's own hash function where pgdog knows it. (An earlier pgdog recorded
/// `fields`: every column through its send function; such tables are copied again.)
pub const DIGEST_FIELDS: &str = "typed";
/// [`TableJob::digest_method`] of tables read back to be digested.
pub const DIGEST_BYTES: &str = "bytes";

/// Why a table cannot be copied as it is.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// A statement failed.
    #[error(transparent)]
    Conn(#[from] ConnError),
    /// Source and destination definitions do not match.
    #[error("table {table}: {detail}; make the destination match the source (pgdog schema-sync does) before copying")]
    Columns {
        /// The table.
        table: String,
        /// What differs.
        detail: String,
    },
}

/// A column as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Column {
    name: String,
    type_name: String,
    type_oid: u32,
    generated: bool,
}

async fn columns(conn: &mut Conn, table: &TableRef) -> Result<Option<Vec<Column>>, ConnError> {
    let name = quote::literal(&table.qualified());
    let rows = conn
        .query(&format!(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attgenerated <> '', a.atttypid \
             FROM pg_catalog.pg_attribute a \
             WHERE a.attrelid = to_regclass({name}) AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attnum"
        ))
        .await?;
    if rows.rows.is_empty() {
        let exists = conn
            .query(&format!("SELECT to_regclass({name}) IS NOT NULL"))
            .await?;
        if exists.scalar() != Some("t") {
            return Ok(None);
        }
    }
    Ok(Some(
        rows.rows
            .iter()
            .map(|row| Column {
                name: row.first().cloned().flatten().unwrap_or_default(),
                type_name: row.get(1).cloned().flatten().unwrap_or_default(),
                generated: row.get(2).cloned().flatten().as_deref() == Some("t"),
                type_oid: row
                    .get(3)
                    .cloned()
                    .flatten()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            })
            .collect(),
    ))
}

fn is_small_integer(type_name: &str) -> bool {
    matches!(type_name, "smallint" | "integer")
}

/// Compares the source's columns with one destination shard's: the copied columns and the
/// ones to widen, or what differs.
fn match_columns(
    table: &TableRef,
    source: &[Column],
    destination: &[Column],
    shard: usize,
) -> Result<(Vec<String>, Vec<usize>), TableError> {
    let differs = |detail: String| TableError::Columns {
        table: table.qualified(),
        detail,
    };
    let mut copied = Vec::new();
    let mut widen = Vec::new();
    for column in source.iter().filter(|c| !c.generated) {
        let Some(there) = destination.iter().find(|d| d.name == column.name) else {
            return Err(differs(format!(
                "column {} is missing on shard {shard}",
                quote::ident(&column.name)
            )));
        };
        if there.generated {
            return Err(differs(format!(
                "column {} is generated on shard {shard} but not on the source",
                quote::ident(&column.name)
            )));
        }
        if there.type_name != column.type_name {
            if is_small_integer(&column.type_name) && there.type_name == "bigint" {
                widen.push(copied.len());
            } else {
                return Err(differs(format!(
                    "column {} is {} on the source but {} on shard {shard}",
                    quote::ident(&column.name),
                    column.type_name,
                    there.type_name
                )));
            }
        }
        copied.push(column.name.clone());
    }
    for extra in destination.iter().filter(|d| !d.generated) {
        if !source.iter().any(|c| c.name == extra.name) {
            return Err(differs(format!(
                "shard {shard} has column {} that the source does not",
                quote::ident(&extra.name)
            )));
        }
    }
    Ok((copied, widen))
}

/// Plans the copy of `tables` (partitioned parents are skipped: their partitions are copied).
pub async fn plan(
    source: &mut Conn,
    destinations: &mut [Conn],
    tables: &[TableRef],
    sharding: &ShardingSchema,
    range_bytes: u64,
) -> Result<Vec<TableJob>, TableError> {
    let mut jobs = Vec::new();
    for table in tables {
        let sizes = source
            .query(&format!(
                "SELECT c.relkind, pg_relation_size(c.oid), \
                 COALESCE(pg_total_relation_size(NULLIF(c.reltoastrelid, 0)), 0), \
                 current_setting('block_size') FROM pg_catalog.pg_class c WHERE c.oid = {}",
                table.oid
            ))
            .await?;
        if sizes.get(0, 0) != Some("r") {
            continue;
        }
        let number = |i: usize| {
            sizes
                .get(0, i)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let (heap, toast, block) = (number(1), number(2), number(3).max(1));
        let Some(source_columns) = columns(source, table).await? else {
            continue;
        };
        let mut planned: Option<(Vec<String>, Vec<usize>)> = None;
        for (shard, destination) in destinations.iter_mut().enumerate() {
            let Some(there) = columns(destination, table).await? else {
                return Err(TableError::Columns {
                    table: table.qualified(),
                    detail: format!("it does not exist on shard {shard}"),
                });
            };
            let matched = match_columns(table, &source_columns, &there, shard)?;
            if planned.as_ref().is_some_and(|p| p != &matched) {
                return Err(TableError::Columns {
                    table: table.qualified(),
                    detail: format!("shard {shard} differs from shard 0"),
                });
            }
            planned = Some(matched);
        }
        let Some((columns, widen)) = planned else {
            continue;
        };
        let names: Vec<&str> = columns.iter().map(String::as_str).collect();
        let type_oids: Vec<u32> = columns
            .iter()
            .filter_map(|name| source_columns.iter().find(|c| &c.name == name))
            .map(|c| c.type_oid)
            .collect();
        let mut types = Vec::with_capacity(type_oids.len());
        for oid in type_oids {
            types.push(TypeTree::read(source, oid).await?);
        }
        let shape = TupleShape::of_types(&types);
        let fields = FieldHashes::of_columns(&types, &widen).map(Arc::new);
        let rule = rule_of(source, table, &names, sharding)
            .await?
            .and_then(|rule| {
                let position = columns.iter().position(|c| c == rule.column())?;
                Some((position, rule))
            });
        jobs.push(TableJob {
            table: table.clone(),
            columns,
            widen,
            rule,
            bytes: heap + toast,
            shape,
            fields,
            ranges: ranges(heap / block, heap + toast, range_bytes),
        });
    }
    jobs.sort_by_key(|job| std::cmp::Reverse(job.bytes));
    Ok(jobs)
}

/// The rule placing the rows of `table` (whose columns are `columns`): its own entry, else its
/// partitioned root's (a partition is placed like its root). `None`: every shard gets them.
pub async fn rule_of(
    source: &mut Conn,
    table: &TableRef,
    columns: &[&str],
    sharding: &ShardingSchema,
) -> Result<Option<TableRule>, ConnError> {
    let root = source
        .query(&format!(
            "SELECT n.nspname, c.relname FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.oid = pg_partition_root({}) AND c.oid <> {}",
            table.oid, table.oid
        ))
        .await?;
    let mut candidates = vec![(table.schema.clone(), table.name.clone())];
    if let (Some(schema), Some(name)) = (root.get(0, 0), root.get(0, 1)) {
        candidates.push((schema.to_string(), name.to_string()));
    }
    Ok(candidates
        .iter()
        .find_map(|(schema, name)| sharding.table_rule(Some(schema), name, columns)))
}

/// Splits `pages` into ranges of about `range_bytes` of `bytes` each; the last range is open.
pub fn ranges(pages: u64, bytes: u64, range_bytes: u64) -> Vec<CtidRange> {
    let count = bytes.div_ceil(range_bytes.max(1)).clamp(1, pages.max(1));
    let per_range = pages.div_ceil(count).max(1);
    (0..count)
        .map(|i| CtidRange {
            start: i * per_range,
            end: (i + 1 < count).then_some((i + 1) * per_range),
        })
        .collect()
}

impl TableJob {
    fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|c| quote::ident(c))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The source's `COPY ... TO STDOUT` of range `range`.
    pub fn copy_out_sql(&self, range: usize) -> String {
        let filter = match self.ranges.get(range) {
            Some(CtidRange {
                start: 0,
                end: None,
            })
            | None => String::new(),
            Some(CtidRange { start, end: None }) => format!(" WHERE ctid >= '({start},0)'::tid"),
            Some(CtidRange {
                start,
                end: Some(end),
            }) => format!(" WHERE ctid >= '({start},0)'::tid AND ctid < '({end},0)'::tid"),
        };
        format!(
            "COPY (SELECT {} FROM ONLY {}{filter}) TO STDOUT (FORMAT binary)",
            self.column_list(),
            self.table.qualified()
        )
    }

    /// A shard's `COPY ... FROM STDIN`.
    pub fn copy_in_sql(&self) -> String {
        format!(
            "COPY {} ({}) FROM STDIN (FORMAT binary)",
            self.table.qualified(),
            self.column_list()
        )
    }

    /// How the copy hashes the table's tuples for its digests.
    pub fn hashing(&self) -> TupleHashing {
        match &self.fields {
            Some(fields) => TupleHashing::Fields(fields.clone()),
            None => TupleHashing::Bytes(self.shape.clone()),
        }
    }

    /// How the copy digests the table's tuples, as recorded in its state: `typed` (the
    /// shards compute it) or `bytes` (read back).
    pub fn digest_method(&self) -> &'static str {
        match self.fields {
            Some(_) => DIGEST_FIELDS,
            None => DIGEST_BYTES,
        }
    }

    /// A shard's whole table, read back for verification.
    pub fn read_back_sql(&self) -> String {
        format!(
            "COPY (SELECT {} FROM ONLY {}) TO STDOUT (FORMAT binary)",
            self.column_list(),
            self.table.qualified()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, type_name: &str) -> Column {
        Column {
            name: name.into(),
            type_name: type_name.into(),
            type_oid: 0,
            generated: false,
        }
    }

    fn table() -> TableRef {
        TableRef {
            schema: "s".into(),
            name: "t".into(),
            oid: 1,
        }
    }

    #[test]
    fn columns_match_with_widening() {
        let mut gross = column("gross", "numeric");
        gross.generated = true;
        let source = [column("id", "integer"), column("v", "text"), gross.clone()];
        let destination = [column("id", "bigint"), column("v", "text"), gross];
        let (copied, widen) = match_columns(&table(), &source, &destination, 0).unwrap();
        assert_eq!(copied, ["id", "v"]);
        assert_eq!(widen, [0]);
    }

    #[test]
    fn column_differences_are_named() {
        let source = [column("id", "bigint"), column("v", "text")];
        let error = match_columns(&table(), &source, &[column("id", "bigint")], 1)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("column \"v\" is missing on shard 1"),
            "{error}"
        );
        let error = match_columns(
            &table(),
            &source,
            &[column("id", "bigint"), column("v", "varchar(5)")],
            0,
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("is text on the source but varchar(5)"),
            "{error}"
        );
        let error = match_columns(
            &table(),
            &source,
            &[
                column("id", "bigint"),
                column("v", "text"),
                column("w", "int"),
            ],
            0,
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("has column \"w\""), "{error}");
    }

    #[test]
    fn ranges_cover_every_page() {
        assert_eq!(
            ranges(0, 0, 100),
            [CtidRange {
                start: 0,
                end: None
            }]
        );
        assert_eq!(
            ranges(10, 50, 100),
            [CtidRange {
                start: 0,
                end: None
            }]
        );
        let split = ranges(10, 400, 100);
        assert_eq!(split.len(), 4);
        assert_eq!(
            split[0],
            CtidRange {
                start: 0,
                end: Some(3)
            }
        );
        assert_eq!(
            split[3],
            CtidRange {
                start: 9,
                end: None
            }
        );
        // More ranges than pages: one page each at most.
        assert_eq!(ranges(2, 10_000, 100).len(), 2);
    }
}
