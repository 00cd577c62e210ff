//! The tables a stream applies changes to: for each source relation OID, where its rows go
//! (the router's rule, or every shard), its primary key, and the copy's watermark; and, once
//! the source sent its Relation message, how the message's columns map to SQL.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::pgoutput::{Relation, ReplicaIdentity};
use super::schema::SourceColumn;
use super::wal::Lsn;
use super::StreamError;
use crate::quote;
use crate::reshard::conn::Conn;
use crate::reshard::copy::tables::rule_of;
use crate::reshard::publication::{self, TableRef};
use crate::router::plan::{ShardingSchema, TableRule};

/// One table of the move, as read from the source catalog when the stream starts.
#[derive(Debug, Clone)]
pub struct TableInfo {
    /// The table.
    pub table: TableRef,
    /// How its rows are placed (`None`: every shard holds every row).
    pub rule: Option<TableRule>,
    /// Its primary key columns (empty without one).
    pub primary_key: Vec<String>,
    /// It has a unique index or exclusion constraint besides the primary key (its changes
    /// must be applied in their own order).
    pub other_unique: bool,
    /// Each column's type as SQL (`format_type`), by column name.
    pub types: HashMap<String, String>,
    /// Each column's attribute number on the source, by name (names a column had earlier
    /// in the session stay: a renamed column keeps its number).
    pub attnums: HashMap<String, i16>,
    /// Changes committed before this position are in the copied rows already.
    pub watermark: Lsn,
}

#[cfg(test)]
impl TableInfo {
    /// `public.t` (OID 1) with primary key `id`, for unit tests.
    pub fn test_table(rule: Option<TableRule>, other_unique: bool) -> TableInfo {
        TableInfo {
            table: TableRef {
                schema: "public".into(),
                name: "t".into(),
                oid: 1,
            },
            rule,
            primary_key: vec!["id".into()],
            other_unique,
            types: HashMap::new(),
            attnums: HashMap::new(),
            watermark: Lsn::ZERO,
        }
    }
}

/// A table with the shape of its last Relation message.
#[derive(Debug, Clone)]
pub struct Target {
    /// The table.
    pub info: Arc<TableInfo>,
    /// `"schema"."table"`.
    pub qualified: String,
    /// The quoted column names, in the order of the messages' tuples.
    pub columns: Vec<String>,
    /// Positions of the columns that identify a row in UPDATE and DELETE.
    pub identity: Vec<usize>,
    /// The identity is the whole row (REPLICA IDENTITY FULL without a usable primary key):
    /// match one row by every column.
    pub whole_row: bool,
    /// The old tuple of an UPDATE/DELETE has every column (REPLICA IDENTITY FULL).
    pub full_old_tuple: bool,
    /// Position of the sharding key column (`None`: every shard).
    pub key: Option<usize>,
    /// Whether the identity includes the sharding key (an UPDATE then says where the row was).
    pub identity_has_key: bool,
    /// Column type OIDs (to compare values that have no equality operator).
    pub type_oids: Vec<u32>,
    /// Column types as SQL, for casts (`text` when the catalog did not say).
    pub types: Vec<String>,
}

/// Every table of the move by source OID.
#[derive(Debug, Default)]
pub struct Tables {
    by_oid: HashMap<u32, Arc<TableInfo>>,
    targets: HashMap<u32, Arc<Target>>,
    /// The last Relation message of each table in this session.
    shapes: HashMap<u32, Relation>,
}

impl Tables {
    /// Reads the publication's tables, their rules and primary keys from the source.
    pub async fn load(
        source: &mut Conn,
        publication: &str,
        sharding: &ShardingSchema,
        watermarks: &BTreeMap<(String, String), Lsn>,
    ) -> Result<Tables, StreamError> {
        let mut tables = Tables::default();
        for table in publication::tables(source, publication).await? {
            let watermark = watermarks
                .get(&(table.schema.clone(), table.name.clone()))
                .copied()
                .unwrap_or(Lsn::ZERO);
            tables.add(source, table, sharding, watermark).await?;
        }
        Ok(tables)
    }

    /// Adds `table` (copied at `watermark`): its columns, primary key and rule, read from the
    /// source.
    pub async fn add(
        &mut self,
        source: &mut Conn,
        table: TableRef,
        sharding: &ShardingSchema,
        watermark: Lsn,
    ) -> Result<(), StreamError> {
        let rows = source
            .query(&format!(
                "SELECT a.attname, COALESCE(a.attnum = ANY(i.indkey), false), \
                 pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnum \
                 FROM pg_catalog.pg_attribute a \
                 LEFT JOIN pg_catalog.pg_index i ON i.indrelid = a.attrelid AND i.indisprimary \
                 WHERE a.attrelid = {} AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                table.oid
            ))
            .await?;
        let names: Vec<&str> = (0..rows.rows.len())
            .filter_map(|r| rows.get(r, 0))
            .collect();
        let primary_key = (0..rows.rows.len())
            .filter(|&r| rows.get(r, 1) == Some("t"))
            .filter_map(|r| rows.get(r, 0).map(str::to_string))
            .collect();
        let types = (0..rows.rows.len())
            .filter_map(|r| Some((rows.get(r, 0)?.to_string(), rows.get(r, 2)?.to_string())))
            .collect();
        let attnums = (0..rows.rows.len())
            .filter_map(|r| Some((rows.get(r, 0)?.to_string(), rows.get(r, 3)?.parse().ok()?)))
            .collect();
        let rule = rule_of(source, &table, &names, sharding).await?;
        let other_unique = source
            .query(&format!(
                "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_index \
                 WHERE indrelid = {oid} AND indisunique AND NOT indisprimary) \
                 OR EXISTS (SELECT 1 FROM pg_catalog.pg_constraint \
                 WHERE conrelid = {oid} AND contype = 'x')",
                oid = table.oid
            ))
            .await?
            .scalar()
            != Some("f");
        self.by_oid.insert(
            table.oid,
            Arc::new(TableInfo {
                table,
                rule,
                primary_key,
                other_unique,
                types,
                attnums,
                watermark,
            }),
        );
        Ok(())
    }

    /// Whether table `oid` is part of the move.
    pub fn contains(&self, oid: u32) -> bool {
        self.by_oid.contains_key(&oid)
    }

    /// Every table of the move.
    pub fn all(&self) -> Vec<TableRef> {
        self.by_oid.values().map(|i| i.table.clone()).collect()
    }

    /// The table named `name` (`table` or `schema.table`; unqualified names match any
    /// schema, `public` first).
    pub fn find(&self, name: &str) -> Option<TableRef> {
        let mut found: Vec<&TableRef> = self
            .by_oid
            .values()
            .map(|i| &i.table)
            .filter(|t| t.is_named(name))
            .collect();
        found.sort_by_key(|t| (t.schema != "public", t.schema.clone()));
        found.first().map(|t| (*t).clone())
    }

    /// Number of tables.
    pub fn len(&self) -> usize {
        self.by_oid.len()
    }

    /// Whether the move has no tables.
    pub fn is_empty(&self) -> bool {
        self.by_oid.is_empty()
    }

    /// Whether a Relation message needs the shards to check their table: `Some(false)` for
    /// the first of its table in this session (the shards may be behind it), `Some(true)` when
    /// it describes the table differently from the last one, `None` when nothing changed.
    pub fn is_new_shape(&self, relation: &Relation) -> Result<Option<bool>, StreamError> {
        if !self.by_oid.contains_key(&relation.oid) {
            return Err(StreamError::UnknownTable {
                table: quote::qualified(&relation.schema, &relation.name),
            });
        }
        let Some(last) = self.shapes.get(&relation.oid) else {
            return Ok(Some(false));
        };
        let same = last.columns.len() == relation.columns.len()
            && last.columns.iter().zip(&relation.columns).all(|(a, b)| {
                a.name == b.name && a.type_oid == b.type_oid && a.type_modifier == b.type_modifier
            });
        Ok((!same).then_some(true))
    }

    /// Records what the source catalog says about the columns of table `oid` (types, and
    /// attribute numbers under every name seen), and returns them.
    pub fn learn(&mut self, oid: u32, columns: &[SourceColumn]) -> Option<Arc<TableInfo>> {
        let info = self.by_oid.get(&oid)?;
        let mut info = TableInfo::clone(info);
        for column in columns {
            info.types
                .insert(column.name.clone(), column.sql_type.clone());
            if let Some(attnum) = column.attnum {
                info.attnums.insert(column.name.clone(), attnum);
            }
        }
        let info = Arc::new(info);
        self.by_oid.insert(oid, info.clone());
        Some(info)
    }

    /// Takes a Relation message: checks the table is part of the move and records its shape.
    pub fn relation(&mut self, relation: &Relation) -> Result<(), StreamError> {
        let Some(info) = self.by_oid.get(&relation.oid).cloned() else {
            return Err(StreamError::UnknownTable {
                table: quote::qualified(&relation.schema, &relation.name),
            });
        };
        let names: Vec<&str> = relation.columns.iter().map(|c| c.name.as_str()).collect();
        let key = info
            .rule
            .as_ref()
            .map(|rule| {
                names
                    .iter()
                    .position(|n| *n == rule.column())
                    .ok_or_else(|| StreamError::Schema {
                        table: info.table.qualified(),
                        detail: format!(
                            "the source no longer sends the sharding key column {}",
                            quote::ident(rule.column())
                        ),
                    })
            })
            .transpose()?;
        let full_old_tuple = relation.replica_identity == ReplicaIdentity::Full;
        let pk: Option<Vec<usize>> = (!info.primary_key.is_empty())
            .then(|| {
                info.primary_key
                    .iter()
                    .map(|c| names.iter().position(|n| n == c))
                    .collect()
            })
            .flatten();
        let (identity, whole_row) = match (relation.replica_identity, pk) {
            (ReplicaIdentity::Full, Some(pk)) => (pk, false),
            (ReplicaIdentity::Full, None) => ((0..names.len()).collect(), true),
            (ReplicaIdentity::Nothing, _) => (Vec::new(), false),
            _ => (
                relation
                    .columns
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.key)
                    .map(|(i, _)| i)
                    .collect(),
                false,
            ),
        };
        let identity_has_key = full_old_tuple || key.is_some_and(|k| identity.contains(&k));
        let types = names
            .iter()
            .map(|n| info.types.get(*n).cloned().unwrap_or_else(|| "text".into()))
            .collect();
        let target = Target {
            qualified: info.table.qualified(),
            info,
            columns: names.iter().map(|n| quote::ident(n)).collect(),
            identity,
            whole_row,
            full_old_tuple,
            key,
            identity_has_key,
            type_oids: relation.columns.iter().map(|c| c.type_oid).collect(),
            types,
        };
        self.targets.insert(relation.oid, Arc::new(target));
        self.shapes.insert(relation.oid, relation.clone());
        Ok(())
    }

    /// The shape of relation `oid` (a change before its Relation message is a protocol error).
    pub fn target(&self, oid: u32) -> Result<Arc<Target>, StreamError> {
        self.targets
            .get(&oid)
            .cloned()
            .ok_or(StreamError::Protocol(format!(
                "a change of relation {oid} came before its Relation message"
            )))
    }

    /// The table of `oid` (TRUNCATE names tables by OID).
    pub fn info(&self, oid: u32) -> Result<Arc<TableInfo>, StreamError> {
        self.by_oid
            .get(&oid)
            .cloned()
            .ok_or(StreamError::Protocol(format!(
                "relation {oid} is not part of the move"
            )))
    }
}
