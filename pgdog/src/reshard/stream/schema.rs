//! Schema changes carried by the stream. pgoutput sends a Relation message before the first
//! change of a table whose definition changed; the stream describes the table's new shape
//! ([`SchemaChange`], with what the source catalog says about each column) and each shard's
//! applier compares it with its own catalog, inside the transaction that applies the next
//! changes, and runs the DDL that makes the two match ([`plan`]). The DDL commits together
//! with those changes and the shard's position, so a crash anywhere resumes correctly: the
//! shard's catalog always matches the position it records.
//!
//! Columns are matched by name; a column that is gone from one side and new on the other is
//! a rename when the source gave both names the same attribute number (or, when that is not
//! known, when they sit at the same place with the same type). The sharding key column may
//! not be dropped, renamed or change type to something else: such changes stop the stream
//! with the reason (it pauses; the operator decides).

use std::collections::{HashMap, HashSet};

use crate::quote;
use crate::reshard::conn::{Conn, ConnError};
use crate::reshard::publication::TableRef;

/// A column as the source publishes it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceColumn {
    /// Its name.
    pub name: String,
    /// Its type as SQL (`format_type` of the Relation message's type and modifier).
    pub sql_type: String,
    /// Its attribute number on the source (`None`: the catalog no longer has this name).
    pub attnum: Option<i16>,
    /// Its default expression.
    pub default: Option<String>,
    /// The value rows that existed when it was added read (a constant default), as text.
    pub missing: Option<String>,
    /// `NOT NULL`.
    pub not_null: bool,
    /// The catalog cannot say what the rows that existed when it was added read: it has a
    /// default or is `NOT NULL`, but no value kept for those rows. Either each row got its own
    /// (a volatile default or an identity: a table rewrite, which logical replication does
    /// not carry), or a later rewrite (`ALTER COLUMN ... TYPE`, `VACUUM FULL`, `CLUSTER`)
    /// cleared the kept value before the stream read the catalog, or the default came later
    /// and those rows read NULL. Adding it means copying the table again.
    pub copy_when_added: bool,
}

/// A table's shape after a change, sent to every shard that applies the transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaChange {
    /// The table on the source.
    pub source: TableRef,
    /// `"schema"."table"`.
    pub table: String,
    /// The sharding key column (`None`: the table is on every shard).
    pub key: Option<String>,
    /// The published columns in order.
    pub columns: Vec<SourceColumn>,
    /// Every name the source gave a column during this session, with its attribute number
    /// (a column renamed since keeps its number).
    pub attnums: HashMap<String, i16>,
    /// The stream back after a cutover: the destination (the old database) keeps the
    /// integer columns the shards widened.
    pub back: bool,
}

/// A column as a shard has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardColumn {
    /// Its name.
    pub name: String,
    /// Its type as SQL.
    pub sql_type: String,
}

/// One statement of a schema change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ddl {
    /// The SQL.
    pub sql: String,
    /// Whether the changes that follow need it (a failure pauses the stream); a default
    /// that cannot be set is only reported.
    pub essential: bool,
}

impl Ddl {
    fn essential(sql: String) -> Ddl {
        Ddl {
            sql,
            essential: true,
        }
    }
}

/// Types equal for the move: schema sync widens integer keys to bigint on the shards (and
/// the stream back after a cutover meets them narrower on the old database: `back`).
fn same_type(source: &str, shard: &str, back: bool) -> bool {
    let widened =
        |narrow: &str, wide: &str| wide == "bigint" && matches!(narrow, "integer" | "smallint");
    source == shard || widened(source, shard) || (back && widened(shard, source))
}

/// One step from a table's previous shape to its new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `RENAME COLUMN from TO to`.
    Rename {
        /// The old name.
        from: String,
        /// The new name.
        to: String,
    },
    /// `DROP COLUMN`.
    Drop(String),
    /// `ALTER COLUMN ... TYPE`.
    Retype {
        /// The column.
        name: String,
        /// Its new type.
        sql_type: String,
    },
    /// `ADD COLUMN`.
    Add(SourceColumn),
}

/// The steps from the table's `previous` shape (what this shard last applied, or its catalog)
/// to the source's new one, or why they cannot be applied automatically.
pub fn plan(previous: &[ShardColumn], change: &SchemaChange) -> Result<Vec<Op>, String> {
    let table = &change.table;
    let source_names: HashSet<&str> = change.columns.iter().map(|c| c.name.as_str()).collect();
    let previous_names: HashSet<&str> = previous.iter().map(|c| c.name.as_str()).collect();
    let gone: Vec<&ShardColumn> = previous
        .iter()
        .filter(|c| !source_names.contains(c.name.as_str()))
        .collect();
    let new: Vec<&SourceColumn> = change
        .columns
        .iter()
        .filter(|c| !previous_names.contains(c.name.as_str()))
        .collect();
    let renames = renames(previous, change, &gone, &new);
    let renamed_from: HashSet<&str> = renames.iter().map(|(from, _)| *from).collect();
    let renamed_to: HashSet<&str> = renames.iter().map(|(_, to)| *to).collect();
    let key = change.key.as_deref();
    let mut ops = Vec::new();

    for (from, to) in &renames {
        if Some(*from) == key {
            return Err(format!(
                "the sharding key column {} of {table} was renamed to {} on the source; rename it on the shards and in pgdog.toml ([[sharded_tables]] column), then RESUME_REPLICATION",
                quote::ident(from),
                quote::ident(to)
            ));
        }
        ops.push(Op::Rename {
            from: from.to_string(),
            to: to.to_string(),
        });
    }
    for column in gone
        .iter()
        .filter(|c| !renamed_from.contains(c.name.as_str()))
    {
        if Some(column.name.as_str()) == key {
            return Err(format!(
                "the sharding key column {} of {table} was dropped on the source; the shards cannot place its rows any more",
                quote::ident(&column.name)
            ));
        }
        ops.push(Op::Drop(column.name.clone()));
    }
    // Types of the columns both sides have (renamed ones under their new name).
    let previous_types: HashMap<&str, &str> = previous
        .iter()
        .map(|c| {
            let name = renames
                .iter()
                .find(|(from, _)| *from == c.name)
                .map(|(_, to)| *to)
                .unwrap_or(c.name.as_str());
            (name, c.sql_type.as_str())
        })
        .collect();
    for column in &change.columns {
        let Some(previous_type) = previous_types.get(column.name.as_str()) else {
            continue;
        };
        if !same_type(&column.sql_type, previous_type, change.back) {
            ops.push(Op::Retype {
                name: column.name.clone(),
                sql_type: column.sql_type.clone(),
            });
        }
    }
    for column in new.iter().filter(|c| !renamed_to.contains(c.name.as_str())) {
        ops.push(Op::Add((*column).clone()));
    }
    Ok(ops)
}

/// The statements that carry out `ops` on a shard whose table has `columns`, leaving out
/// what the shard already has (an operator's fix, `SYNC_SCHEMA`, or DDL replayed earlier).
pub fn statements(table: &str, ops: &[Op], columns: &[ShardColumn], back: bool) -> Vec<Ddl> {
    let mut columns = columns.to_vec();
    let mut statements = Vec::new();
    let position =
        |columns: &[ShardColumn], name: &str| columns.iter().position(|c| c.name == name);
    for op in ops {
        match op {
            Op::Rename { from, to } => {
                if let (Some(at), None) = (position(&columns, from), position(&columns, to)) {
                    statements.push(Ddl::essential(format!(
                        "ALTER TABLE {table} RENAME COLUMN {} TO {}",
                        quote::ident(from),
                        quote::ident(to)
                    )));
                    columns[at].name = to.clone();
                }
            }
            Op::Drop(name) => {
                if let Some(at) = position(&columns, name) {
                    statements.push(Ddl::essential(format!(
                        "ALTER TABLE {table} DROP COLUMN IF EXISTS {}",
                        quote::ident(name)
                    )));
                    columns.remove(at);
                }
            }
            Op::Retype { name, sql_type } => {
                if let Some(at) = position(&columns, name) {
                    if !same_type(sql_type, &columns[at].sql_type, back) {
                        statements.push(Ddl::essential(format!(
                            "ALTER TABLE {table} ALTER COLUMN {name} TYPE {sql_type} USING {name}::{sql_type}",
                            name = quote::ident(name)
                        )));
                        columns[at].sql_type = sql_type.clone();
                    }
                }
            }
            Op::Add(column) => {
                if position(&columns, &column.name).is_none() {
                    statements.extend(add_column(table, column));
                    columns.push(ShardColumn {
                        name: column.name.clone(),
                        sql_type: column.sql_type.clone(),
                    });
                }
            }
        }
    }
    statements
}

/// Pairs of (shard name, source name) that are one column renamed.
fn renames<'a>(
    shard: &'a [ShardColumn],
    change: &'a SchemaChange,
    gone: &[&'a ShardColumn],
    new: &[&'a SourceColumn],
) -> Vec<(&'a str, &'a str)> {
    let mut pairs = Vec::new();
    let mut taken: HashSet<&str> = HashSet::new();
    // By attribute number: the source numbered both names the same.
    for column in gone {
        let Some(attnum) = change.attnums.get(&column.name) else {
            continue;
        };
        if let Some(to) = new
            .iter()
            .find(|n| n.attnum == Some(*attnum) && !taken.contains(n.name.as_str()))
        {
            taken.insert(to.name.as_str());
            pairs.push((column.name.as_str(), to.name.as_str()));
        }
    }
    // By place: the column before it is the same on both sides and so is the type, and
    // the source cannot tell (one of the numbers is unknown).
    let source_names: HashSet<&str> = change.columns.iter().map(|c| c.name.as_str()).collect();
    for column in gone {
        if pairs.iter().any(|(from, _)| *from == column.name) {
            continue;
        }
        if change.attnums.contains_key(&column.name) {
            continue;
        }
        let Some(index) = shard.iter().position(|c| c.name == column.name) else {
            continue;
        };
        let before = index
            .checked_sub(1)
            .and_then(|i| shard.get(i))
            .map(|c| c.name.as_str());
        let candidate = new.iter().find(|n| {
            if taken.contains(n.name.as_str())
                || !same_type(&n.sql_type, &column.sql_type, change.back)
            {
                return false;
            }
            let Some(at) = change.columns.iter().position(|c| c.name == n.name) else {
                return false;
            };
            let source_before = at
                .checked_sub(1)
                .and_then(|i| change.columns.get(i))
                .map(|c| c.name.as_str());
            source_before == before && before.is_none_or(|b| source_names.contains(b))
        });
        if let Some(to) = candidate {
            taken.insert(to.name.as_str());
            pairs.push((column.name.as_str(), to.name.as_str()));
        }
    }
    pairs
}

/// `ADD COLUMN`: rows already there get the value they have on the source (the constant
/// default they read when the column was added), then the column gets the source's default.
fn add_column(table: &str, column: &SourceColumn) -> Vec<Ddl> {
    let name = quote::ident(&column.name);
    let ty = &column.sql_type;
    let mut add = format!("ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {name} {ty}");
    if let Some(missing) = &column.missing {
        add.push_str(&format!(" DEFAULT {}::{ty}", quote::literal(missing)));
        if column.not_null {
            add.push_str(" NOT NULL");
        }
    }
    let mut statements = vec![Ddl::essential(add)];
    match (&column.default, &column.missing) {
        (Some(default), _) => statements.push(Ddl {
            sql: format!("ALTER TABLE {table} ALTER COLUMN {name} SET DEFAULT {default}"),
            essential: false,
        }),
        (None, Some(_)) => statements.push(Ddl::essential(format!(
            "ALTER TABLE {table} ALTER COLUMN {name} DROP DEFAULT"
        ))),
        (None, None) => {}
    }
    statements
}

/// Columns from rows of (name, type).
fn shard_columns_of(rows: &crate::reshard::conn::Rows) -> Vec<ShardColumn> {
    (0..rows.rows.len())
        .filter_map(|r| {
            Some(ShardColumn {
                name: rows.get(r, 0)?.to_string(),
                sql_type: rows.get(r, 1)?.to_string(),
            })
        })
        .collect()
}

/// Creates the table holding, per slot and table, the shape each shard last applied.
pub const CREATE_SHAPES: &str = "CREATE TABLE IF NOT EXISTS pgdog.replication_shapes (\
    slot text NOT NULL, table_name text NOT NULL, columns text[] NOT NULL, types text[] NOT NULL, \
    PRIMARY KEY (slot, table_name))";

/// The shape this shard last applied for `table` under `slot` (`None`: none recorded).
pub async fn stored_shape(
    conn: &mut Conn,
    slot: &str,
    table: &str,
) -> Result<Option<Vec<ShardColumn>>, ConnError> {
    let rows = conn
        .query(&format!(
            "SELECT x.n, x.t FROM pgdog.replication_shapes s, \
             unnest(s.columns, s.types) WITH ORDINALITY AS x(n, t, i) \
             WHERE s.slot = {} AND s.table_name = {} ORDER BY x.i",
            quote::literal(slot),
            quote::literal(table)
        ))
        .await?;
    if rows.rows.is_empty() {
        return Ok(None);
    }
    Ok(Some(shard_columns_of(&rows)))
}

/// Records `change` as the shape this shard applied (in the batch's transaction).
pub fn store_shape_sql(slot: &str, change: &SchemaChange) -> String {
    let array = |values: Vec<&str>| {
        format!(
            "ARRAY[{}]::text[]",
            values
                .into_iter()
                .map(quote::literal)
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    format!(
        "INSERT INTO pgdog.replication_shapes (slot, table_name, columns, types) \
         VALUES ({}, {}, {}, {}) ON CONFLICT (slot, table_name) DO UPDATE \
         SET columns = excluded.columns, types = excluded.types",
        quote::literal(slot),
        quote::literal(&change.table),
        array(change.columns.iter().map(|c| c.name.as_str()).collect()),
        array(change.columns.iter().map(|c| c.sql_type.as_str()).collect()),
    )
}

/// Forgets the shapes recorded for `tables` (copied again: the copy has the source's shape).
pub async fn forget_shapes(
    conn: &mut Conn,
    slot: &str,
    tables: &[String],
) -> Result<(), ConnError> {
    if tables.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = tables.iter().map(|t| quote::literal(t)).collect();
    let sql = format!(
        "DELETE FROM pgdog.replication_shapes WHERE slot = {} AND table_name IN ({})",
        quote::literal(slot),
        names.join(", ")
    );
    match conn.execute(&sql).await {
        Err(e) if !e.is_missing_table() => Err(e),
        _ => Ok(()),
    }
}

/// The columns `ops` adds whose existing rows have values only a copy can bring.
pub fn needs_copy(ops: &[Op]) -> bool {
    ops.iter()
        .any(|op| matches!(op, Op::Add(column) if column.copy_when_added))
}

/// Whether the catalog, read now and possibly after later DDL, cannot say what the rows that
/// existed when a column was added read: only a kept value, or neither a default nor
/// `NOT NULL` (those rows read NULL), tells.
fn existing_values_unknown(
    default: &Option<String>,
    missing: &Option<String>,
    not_null: bool,
) -> bool {
    missing.is_none() && (default.is_some() || not_null)
}

/// What the source says about the columns of a Relation message (`columns`: name, type OID,
/// type modifier), in the message's order.
pub async fn source_columns(
    source: &mut Conn,
    oid: u32,
    columns: &[(String, u32, i32)],
) -> Result<Vec<SourceColumn>, ConnError> {
    let names: Vec<String> = columns.iter().map(|(n, _, _)| quote::literal(n)).collect();
    let types: Vec<String> = columns.iter().map(|(_, t, _)| t.to_string()).collect();
    let mods: Vec<String> = columns.iter().map(|(_, _, m)| m.to_string()).collect();
    let rows = source
        .query(&format!(
            "SELECT x.n, pg_catalog.format_type(x.t, NULLIF(x.m, -1)), a.attnum, \
             pg_catalog.pg_get_expr(d.adbin, d.adrelid), \
             CASE WHEN a.atthasmissing THEN (a.attmissingval::text::text[])[1] END, \
             COALESCE(a.attnotnull, false) \
             FROM unnest(ARRAY[{}]::text[], ARRAY[{}]::oid[], ARRAY[{}]::int4[]) \
             WITH ORDINALITY AS x(n, t, m, i) \
             LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = {oid} AND a.attname = x.n \
             AND a.attnum > 0 AND NOT a.attisdropped \
             LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
             ORDER BY x.i",
            names.join(", "),
            types.join(", "),
            mods.join(", ")
        ))
        .await?;
    let columns = (0..rows.rows.len())
        .map(|r| {
            let default = rows.get(r, 3).map(str::to_string);
            let missing = rows.get(r, 4).map(str::to_string);
            let not_null = rows.get(r, 5) == Some("t");
            SourceColumn {
                name: rows.get(r, 0).unwrap_or_default().to_string(),
                sql_type: rows.get(r, 1).unwrap_or("text").to_string(),
                attnum: rows.get(r, 2).and_then(|a| a.parse().ok()),
                copy_when_added: existing_values_unknown(&default, &missing, not_null),
                default,
                missing,
                not_null,
            }
        })
        .collect();
    Ok(columns)
}

/// The published columns the source's table `oid` has now, in order (generated ones left
/// out, as pgoutput does).
pub async fn source_table_columns(
    source: &mut Conn,
    oid: u32,
) -> Result<Vec<SourceColumn>, ConnError> {
    let rows = source
        .query(&format!(
            "SELECT attname, atttypid, atttypmod FROM pg_catalog.pg_attribute \
             WHERE attrelid = {oid} AND attnum > 0 AND NOT attisdropped AND attgenerated = '' \
             ORDER BY attnum"
        ))
        .await?;
    let columns: Vec<(String, u32, i32)> = (0..rows.rows.len())
        .filter_map(|r| {
            Some((
                rows.get(r, 0)?.to_string(),
                rows.get(r, 1)?.parse().ok()?,
                rows.get(r, 2)?.parse().ok()?,
            ))
        })
        .collect();
    source_columns(source, oid, &columns).await
}

/// The columns a shard has for `table` (`"schema"."table"`), generated ones left out (they
/// are not published); `None` when the table does not exist there.
pub async fn shard_columns(
    conn: &mut Conn,
    table: &str,
) -> Result<Option<Vec<ShardColumn>>, ConnError> {
    let rows = conn
        .query(&format!(
            "SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) \
             FROM pg_catalog.pg_attribute a \
             WHERE a.attrelid = pg_catalog.to_regclass({}) AND a.attnum > 0 \
             AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum",
            quote::literal(table)
        ))
        .await?;
    if rows.rows.is_empty() {
        let exists = conn
            .query(&format!(
                "SELECT pg_catalog.to_regclass({}) IS NOT NULL",
                quote::literal(table)
            ))
            .await?;
        if exists.scalar() != Some("t") {
            return Ok(None);
        }
    }
    Ok(Some(shard_columns_of(&rows)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(columns: &[(&str, &str)]) -> Vec<ShardColumn> {
        columns
            .iter()
            .map(|(n, t)| ShardColumn {
                name: n.to_string(),
                sql_type: t.to_string(),
            })
            .collect()
    }

    fn source(columns: &[(&str, &str, Option<i16>)]) -> SchemaChange {
        SchemaChange {
            source: TableRef {
                schema: "public".into(),
                name: "orders".into(),
                oid: 1,
            },
            table: "\"public\".\"orders\"".into(),
            key: Some("user_id".into()),
            columns: columns
                .iter()
                .map(|(n, t, a)| SourceColumn {
                    name: n.to_string(),
                    sql_type: t.to_string(),
                    attnum: *a,
                    default: None,
                    missing: None,
                    not_null: false,
                    copy_when_added: false,
                })
                .collect(),
            attnums: columns
                .iter()
                .filter_map(|(n, _, a)| Some((n.to_string(), (*a)?)))
                .collect(),
            back: false,
        }
    }

    /// The statements for a shard whose table is `previous` (what it applied last).
    fn sql(previous: &[ShardColumn], change: &SchemaChange) -> Vec<String> {
        statements(
            &change.table,
            &plan(previous, change).unwrap(),
            previous,
            change.back,
        )
        .into_iter()
        .map(|d| d.sql)
        .collect()
    }

    const BASE: [(&str, &str); 3] = [("id", "bigint"), ("user_id", "bigint"), ("note", "text")];

    #[test]
    fn same_shape_needs_nothing_and_widened_keys_stay() {
        let change = source(&[
            ("id", "integer", Some(1)),
            ("user_id", "bigint", Some(2)),
            ("note", "text", Some(3)),
        ]);
        assert!(sql(&shard(&BASE), &change).is_empty());
    }

    #[test]
    fn the_stream_back_keeps_the_old_database_narrower() {
        let old = shard(&[("id", "integer"), ("user_id", "integer"), ("note", "text")]);
        let mut change = source(&[
            ("id", "bigint", Some(1)),
            ("user_id", "bigint", Some(2)),
            ("note", "text", Some(3)),
        ]);
        assert_eq!(sql(&old, &change).len(), 2);
        change.back = true;
        assert!(sql(&old, &change).is_empty());
    }

    #[test]
    fn added_column_gets_the_value_old_rows_read_then_the_default() {
        let mut change = source(&[
            ("id", "bigint", Some(1)),
            ("user_id", "bigint", Some(2)),
            ("note", "text", Some(3)),
            ("status", "text", Some(4)),
            ("plain", "integer", Some(5)),
        ]);
        change.columns[3].missing = Some("new".into());
        change.columns[3].default = Some("'new'::text".into());
        change.columns[3].not_null = true;
        assert_eq!(
            sql(&shard(&BASE), &change),
            vec![
                "ALTER TABLE \"public\".\"orders\" ADD COLUMN IF NOT EXISTS \"status\" text DEFAULT 'new'::text NOT NULL",
                "ALTER TABLE \"public\".\"orders\" ALTER COLUMN \"status\" SET DEFAULT 'new'::text",
                "ALTER TABLE \"public\".\"orders\" ADD COLUMN IF NOT EXISTS \"plain\" integer",
            ]
        );
    }

    #[test]
    fn dropped_retyped_and_renamed_columns() {
        // note renamed to comment (same attnum), a dropped column, a type change.
        let shard_columns = shard(&[
            ("id", "bigint"),
            ("user_id", "bigint"),
            ("note", "text"),
            ("old", "integer"),
            ("qty", "integer"),
        ]);
        let mut change = source(&[
            ("id", "bigint", Some(1)),
            ("user_id", "bigint", Some(2)),
            ("comment", "character varying(20)", Some(3)),
            ("qty", "bigint", Some(5)),
        ]);
        change.attnums.insert("note".into(), 3);
        change.attnums.insert("old".into(), 4);
        assert_eq!(
            sql(&shard_columns, &change),
            vec![
                "ALTER TABLE \"public\".\"orders\" RENAME COLUMN \"note\" TO \"comment\"",
                "ALTER TABLE \"public\".\"orders\" DROP COLUMN IF EXISTS \"old\"",
                "ALTER TABLE \"public\".\"orders\" ALTER COLUMN \"comment\" TYPE character varying(20) USING \"comment\"::character varying(20)",
                "ALTER TABLE \"public\".\"orders\" ALTER COLUMN \"qty\" TYPE bigint USING \"qty\"::bigint",
            ]
        );
    }

    #[test]
    fn drop_and_add_of_the_last_column_is_not_a_rename() {
        let mut change = source(&[
            ("id", "bigint", Some(1)),
            ("user_id", "bigint", Some(2)),
            ("label", "text", Some(4)),
        ]);
        change.attnums.insert("note".into(), 3);
        assert_eq!(
            sql(&shard(&BASE), &change),
            vec![
                "ALTER TABLE \"public\".\"orders\" DROP COLUMN IF EXISTS \"note\"",
                "ALTER TABLE \"public\".\"orders\" ADD COLUMN IF NOT EXISTS \"label\" text",
            ]
        );
    }

    #[test]
    fn unknown_numbers_fall_back_to_the_place_and_type() {
        // The source catalog no longer knows "note" (renamed before this session).
        let change = source(&[
            ("id", "bigint", Some(1)),
            ("user_id", "bigint", Some(2)),
            ("comment", "text", Some(3)),
        ]);
        assert_eq!(
            sql(&shard(&BASE), &change),
            vec!["ALTER TABLE \"public\".\"orders\" RENAME COLUMN \"note\" TO \"comment\""]
        );
    }

    #[test]
    fn work_the_shard_already_has_is_left_out() {
        // The shard already has the new type (an operator's fix) and the new column
        // (SYNC_SCHEMA); the rename was replayed from captured DDL.
        let previous = shard(&BASE);
        let mut change = source(&[
            ("id", "bigint", Some(1)),
            ("user_id", "bigint", Some(2)),
            ("comment", "integer", Some(3)),
            ("extra", "text", Some(4)),
        ]);
        change.attnums.insert("note".into(), 3);
        let ops = plan(&previous, &change).unwrap();
        assert_eq!(ops.len(), 3, "{ops:?}");
        let now = shard(&[
            ("id", "bigint"),
            ("user_id", "bigint"),
            ("comment", "integer"),
            ("extra", "text"),
        ]);
        assert!(statements(&change.table, &ops, &now, false).is_empty());
        // An old shape after a newer one the shard has: nothing to undo.
        let old = source(&[
            ("id", "bigint", Some(1)),
            ("user_id", "bigint", Some(2)),
            ("note", "text", Some(3)),
        ]);
        assert!(plan(&previous, &old).unwrap().is_empty());
    }

    #[test]
    fn columns_whose_existing_values_are_unknown_need_a_copy() {
        let default = Some("'basic'::text".to_string());
        let kept = Some("basic".to_string());
        // A constant default kept for the rows already there, or a plain column: known.
        assert!(!existing_values_unknown(&default, &kept, true));
        assert!(!existing_values_unknown(&None, &None, false));
        // A default or NOT NULL without a kept value: volatile, rewritten since, or later.
        assert!(existing_values_unknown(&default, &None, false));
        assert!(existing_values_unknown(&None, &None, true));
        let mut change = source(&[
            ("id", "bigint", Some(1)),
            ("user_id", "bigint", Some(2)),
            ("note", "text", Some(3)),
            ("at", "timestamp with time zone", Some(4)),
        ]);
        let ops = plan(&shard(&BASE), &change).unwrap();
        assert!(!needs_copy(&ops));
        change.columns[3].copy_when_added = true;
        let ops = plan(&shard(&BASE), &change).unwrap();
        assert!(needs_copy(&ops));
    }

    #[test]
    fn the_sharding_key_cannot_go() {
        let change = source(&[("id", "bigint", Some(1)), ("note", "text", Some(3))]);
        let error = plan(&shard(&BASE), &change).unwrap_err();
        assert!(error.contains("sharding key column \"user_id\""), "{error}");
        let mut change = source(&[
            ("id", "bigint", Some(1)),
            ("customer", "bigint", Some(2)),
            ("note", "text", Some(3)),
        ]);
        change.attnums.insert("user_id".into(), 2);
        let error = plan(&shard(&BASE), &change).unwrap_err();
        assert!(error.contains("renamed to \"customer\""), "{error}");
    }
}
