//! The tables a publication moves: its own tables plus, for partitioned tables, every ancestor
//! and descendant (pg_publication_tables lists leaves or roots depending on
//! `publish_via_partition_root`; the destination needs the whole tree).

use super::conn::{Conn, ConnError};
use crate::quote;

/// A table on the source.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableRef {
    /// Schema name (unquoted).
    pub schema: String,
    /// Table name (unquoted).
    pub name: String,
    /// Its OID on the server it was read from.
    pub oid: u32,
}

impl TableRef {
    /// `"schema"."name"`.
    pub fn qualified(&self) -> String {
        quote::qualified(&self.schema, &self.name)
    }

    /// Whether an operator's `table` or `schema.table` (unquoted) names this table.
    pub fn is_named(&self, name: &str) -> bool {
        match name.split_once('.') {
            Some((schema, table)) => self.schema == schema && self.name == table,
            None => self.name == name,
        }
    }
}

impl std::fmt::Display for TableRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.qualified())
    }
}

/// Whether `publication` exists on the server.
pub async fn exists(conn: &mut Conn, publication: &str) -> Result<bool, ConnError> {
    let rows = conn
        .query(&format!(
            "SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = {}",
            quote::literal(publication)
        ))
        .await?;
    Ok(!rows.rows.is_empty())
}

/// Every table the publication moves with its partition trees completed, ordered by schema
/// and name. Empty when the publication does not exist (check with [`exists`]).
pub async fn tables(conn: &mut Conn, publication: &str) -> Result<Vec<TableRef>, ConnError> {
    let sql = format!(
        "WITH published AS (
            SELECT c.oid FROM pg_catalog.pg_publication_tables t
            JOIN pg_catalog.pg_namespace n ON n.nspname = t.schemaname
            JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = t.tablename
            WHERE t.pubname = {pub}
        ), tree AS (
            SELECT oid FROM published
            UNION SELECT a.relid FROM published p, pg_catalog.pg_partition_ancestors(p.oid) a
        ), whole AS (
            SELECT oid FROM tree
            UNION SELECT t.relid FROM tree r, pg_catalog.pg_partition_tree(r.oid) t
        )
        SELECT n.nspname, c.relname, c.oid FROM whole w
        JOIN pg_catalog.pg_class c ON c.oid = w.oid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p')
        ORDER BY 1, 2",
        pub = quote::literal(publication)
    );
    Ok(table_refs(conn.query(&sql).await?))
}

/// The tables the publication lists itself (leaves or roots of partition trees, as it
/// publishes them), ordered by schema and name.
pub async fn published(conn: &mut Conn, publication: &str) -> Result<Vec<TableRef>, ConnError> {
    let sql = format!(
        "SELECT t.schemaname, t.tablename, c.oid FROM pg_catalog.pg_publication_tables t \
         JOIN pg_catalog.pg_namespace n ON n.nspname = t.schemaname \
         JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = t.tablename \
         WHERE t.pubname = {} ORDER BY 1, 2",
        quote::literal(publication)
    );
    Ok(table_refs(conn.query(&sql).await?))
}

/// Rows of (schema, name, oid).
fn table_refs(rows: super::conn::Rows) -> Vec<TableRef> {
    rows.rows
        .iter()
        .filter_map(|row| {
            Some(TableRef {
                schema: row.first()?.clone()?,
                name: row.get(1)?.clone()?,
                oid: row.get(2)?.as_deref()?.parse().ok()?,
            })
        })
        .collect()
}
