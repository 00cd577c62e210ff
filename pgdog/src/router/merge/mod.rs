//! The results of one statement on several shards combined into the one result the client
//! gets, as a [`MergeSpec`] says: group and aggregate, then `DISTINCT`, then order (a k-way
//! merge of the shards' sorted rows, or a full sort of the groups), then `OFFSET` and `LIMIT`;
//! hidden helper columns are dropped and CommandComplete tags are combined.
//!
//! - `message`: RowDescription/DataRow decoding and encoding.
//! - `value`, `numeric`, `float`, `datetime`, `bignum`: typed values, their order and output.
//! - `aggregate`, `group`: combining aggregate columns per group.
//! - `order`: sort keys, k-way merge and sort.
//! - `tags`: [`combine_tags`].
//!
//! Concatenation (the default spec) neither decodes nor copies field by field: each DataRow is
//! only checked for framing and appended.

mod aggregate;
mod bignum;
mod datetime;
mod float;
mod group;
mod message;
mod numeric;
mod order;
mod tags;
mod value;

use std::collections::HashSet;

use bytes::{Bytes, BytesMut};

pub use tags::combine_tags;

use crate::net::{sqlstate, ErrorResponse};
use crate::router::route::{AggregateFunction, MergeSpec};
use group::{equality_key, EqualityKey, Grouper};
use message::{check_row, parse_description, parse_row, put_row, Column, Fields};
use order::{KWayMerge, SortPlan};

/// One shard's answer to one statement execution.
#[derive(Debug, Clone, Default)]
pub struct ShardRows {
    /// The whole RowDescription message (tag, length, body), or `None` when the statement
    /// returns no rows (e.g. an INSERT without RETURNING).
    pub description: Option<Bytes>,
    /// Whole DataRow messages in the order the shard sent them.
    pub rows: Vec<Bytes>,
    /// The CommandComplete tag, e.g. `SELECT 3`, `INSERT 0 2`, `CREATE TABLE`.
    pub tag: Option<String>,
}

/// The combined result the client gets.
#[derive(Debug, Clone, Default)]
pub struct Merged {
    /// The RowDescription (without hidden columns, `avg` columns retyped), if rows are returned.
    pub description: Option<Bytes>,
    /// DataRow messages back to back.
    pub rows: BytesMut,
    /// How many DataRows `rows` holds.
    pub row_count: u64,
    /// The CommandComplete tag (`SELECT n` counts the rows sent).
    pub tag: Option<String>,
}

/// One row on its way to the client: the shard's message while it is unchanged (sent as is
/// when no column is hidden), and its fields once decoded.
#[derive(Debug, Clone)]
pub struct Row {
    /// The DataRow as the shard sent it; `None` once the fields changed.
    pub original: Option<Bytes>,
    /// The decoded fields (empty when the row was never decoded).
    pub fields: Fields,
}

/// Combines the shards' answers to one statement as `spec` says.
pub fn merge(spec: &MergeSpec, shards: Vec<ShardRows>) -> Result<Merged, ErrorResponse> {
    let tag = combined_tag(&shards)?;
    let Some(first) = shards.iter().find_map(|s| s.description.clone()) else {
        if shards.iter().any(|s| !s.rows.is_empty()) {
            return Err(message::malformed("DataRow without a RowDescription"));
        }
        return Ok(Merged {
            tag,
            ..Merged::default()
        });
    };
    let columns = parse_description(&first)?;
    for shard in &shards {
        match &shard.description {
            Some(other) if *other != first => compatible(&columns, &parse_description(other)?)?,
            _ => {}
        }
    }
    let named;
    let spec = if spec.order_by_names.is_empty() {
        spec
    } else {
        named = resolve_names(spec, &columns)?;
        &named
    };
    check_spec(spec, columns.len())?;
    let rows: Vec<Vec<Bytes>> = shards.into_iter().map(|s| s.rows).collect();
    let grouping = !spec.aggregates.is_empty() || !spec.group_by.is_empty();

    let mut out_columns = columns.clone();
    let mut sink;
    if grouping {
        let mut grouper = Grouper::new(spec, &columns)?;
        for message in rows.into_iter().flatten() {
            grouper.push(parse_row(&message, columns.len())?)?;
        }
        out_columns = grouper.output_columns();
        let mut groups: Vec<Row> = grouper
            .finish()?
            .into_iter()
            .map(|fields| Row {
                original: None,
                fields,
            })
            .collect();
        if !spec.order_by.is_empty() {
            groups = SortPlan::new(&spec.order_by, &out_columns)?.sort(&out_columns, groups)?;
        }
        sink = Sink::new(spec, &out_columns, 0);
        for row in groups {
            if !sink.push(row)? {
                break;
            }
        }
    } else if !spec.order_by.is_empty() {
        let plan = SortPlan::new(&spec.order_by, &columns)?;
        let mut merge = KWayMerge::new(&plan, &columns, rows)?;
        sink = Sink::new(spec, &columns, 0);
        while let Some(row) = merge.next_row()? {
            if !sink.push(row)? {
                break;
            }
        }
    } else {
        let decode = spec.distinct || spec.hidden_columns > 0;
        let size: usize = rows.iter().flatten().map(Bytes::len).sum();
        sink = Sink::new(spec, &columns, if decode { 0 } else { size });
        for message in rows.into_iter().flatten() {
            let row = if decode {
                Row {
                    fields: parse_row(&message, columns.len())?,
                    original: Some(message),
                }
            } else {
                check_row(&message, columns.len())?;
                Row {
                    original: Some(message),
                    fields: Vec::new(),
                }
            };
            if !sink.push(row)? {
                break;
            }
        }
    }

    let visible = columns.len() - spec.hidden_columns;
    let description = if out_columns == columns && spec.hidden_columns == 0 {
        first
    } else {
        message::description(&out_columns[..visible])
    };
    let row_count = sink.count;
    Ok(Merged {
        description: Some(description),
        rows: sink.out,
        row_count,
        tag: tag.map(|t| tags::with_row_count(t, row_count)),
    })
}

/// The shards' tags combined; different commands are an error.
fn combined_tag(shards: &[ShardRows]) -> Result<Option<String>, ErrorResponse> {
    let tags: Vec<&str> = shards.iter().filter_map(|s| s.tag.as_deref()).collect();
    if tags.is_empty() {
        return Ok(None);
    }
    combine_tags(tags.iter().copied()).map(Some).ok_or_else(|| {
        ErrorResponse::error(
            sqlstate::INTERNAL_ERROR,
            format!(
                "shards completed the statement differently: {}",
                tags.join(", ")
            ),
        )
    })
}

/// Whether another shard's columns match the first shard's: same count and formats, same
/// types for built-in types (user-defined types may have other OIDs on other shards).
fn compatible(columns: &[Column], other: &[Column]) -> Result<(), ErrorResponse> {
    /// OIDs below this are assigned at initdb and the same on every server.
    const FIRST_NORMAL_OID: u32 = 16384;
    let same = columns.len() == other.len()
        && columns.iter().zip(other).all(|(a, b)| {
            a.binary == b.binary
                && (a.type_oid == b.type_oid
                    || a.type_oid >= FIRST_NORMAL_OID && b.type_oid >= FIRST_NORMAL_OID)
        });
    if same {
        Ok(())
    } else {
        Err(ErrorResponse::error(
            sqlstate::INTERNAL_ERROR,
            "shards returned different row descriptions for the same statement",
        ))
    }
}

/// Every column number of the spec exists.
fn check_spec(spec: &MergeSpec, columns: usize) -> Result<(), ErrorResponse> {
    let referenced = spec
        .order_by
        .iter()
        .map(|k| k.column)
        .chain(spec.group_by.iter().copied())
        .chain(spec.aggregates.iter().flat_map(|a| {
            let count = match a.function {
                AggregateFunction::Avg { count_column } => Some(count_column),
                _ => None,
            };
            std::iter::once(a.column).chain(count)
        }));
    let bad = referenced.filter(|c| *c >= columns).max();
    if bad.is_some() || spec.hidden_columns > columns {
        return Err(ErrorResponse::error(
            sqlstate::INTERNAL_ERROR,
            format!(
                "merge plan refers to column {} (with {} hidden) but the result has {columns} columns",
                bad.map_or(0, |c| c + 1),
                spec.hidden_columns
            ),
        ));
    }
    Ok(())
}

/// The end of the pipeline: DISTINCT, OFFSET, LIMIT and encoding.
struct Sink<'a> {
    columns: &'a [Column],
    visible: usize,
    distinct: Option<HashSet<EqualityKey>>,
    skip: u64,
    limit: Option<u64>,
    out: BytesMut,
    count: u64,
}

impl<'a> Sink<'a> {
    fn new(spec: &MergeSpec, columns: &'a [Column], capacity: usize) -> Sink<'a> {
        Sink {
            columns,
            visible: columns.len() - spec.hidden_columns.min(columns.len()),
            distinct: spec.distinct.then(HashSet::new),
            skip: spec.offset,
            limit: spec.limit,
            out: BytesMut::with_capacity(capacity),
            count: 0,
        }
    }

    /// Takes the next row in output order; `false` once no more rows are wanted.
    fn push(&mut self, row: Row) -> Result<bool, ErrorResponse> {
        if self.limit == Some(self.count) {
            return Ok(false);
        }
        if let Some(seen) = &mut self.distinct {
            let key = equality_key(self.columns, 0..self.visible, &row.fields)?;
            if !seen.insert(key) {
                return Ok(true);
            }
        }
        if self.skip > 0 {
            self.skip -= 1;
            return Ok(true);
        }
        match &row.original {
            Some(message) if self.visible == self.columns.len() => {
                self.out.extend_from_slice(message)
            }
            _ => put_row(
                &mut self.out,
                &row.fields[..self.visible.min(row.fields.len())],
            ),
        }
        self.count += 1;
        Ok(self.limit != Some(self.count))
    }
}

/// `spec` with its by-name ORDER BY keys pointed at the columns of that name.
fn resolve_names(spec: &MergeSpec, columns: &[Column]) -> Result<MergeSpec, ErrorResponse> {
    let mut resolved = spec.clone();
    for (index, name) in &spec.order_by_names {
        let mut found = columns.iter().enumerate().filter(|(_, c)| c.name == *name);
        let column = match (found.next(), found.next()) {
            (Some((column, _)), None) => column,
            (None, _) => {
                return Err(ErrorResponse::error(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    format!(
                        "ORDER BY {name} must appear in the select list for a cross-shard query"
                    ),
                ))
            }
            (Some(_), Some(_)) => {
                return Err(ErrorResponse::error(
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    format!("ORDER BY {name} is ambiguous in the result of a cross-shard query"),
                )
                .hint("list the columns instead of *"))
            }
        };
        if let Some(key) = resolved.order_by.get_mut(*index) {
            key.column = column;
        }
    }
    resolved.order_by_names.clear();
    Ok(resolved)
}

#[cfg(test)]
mod pg_cases;
#[cfg(test)]
mod tests;
