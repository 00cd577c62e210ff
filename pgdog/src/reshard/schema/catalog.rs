//! Reading what [`super::compare`] compares from one server's catalog: the columns (type,
//! default, NOT NULL, identity, generation) and indexes of named tables. Names in the text
//! come out qualified: the connection's `search_path` is emptied first.

use std::collections::BTreeMap;

use super::compare::{ColumnDef, Identity, IndexDef, TableDef};
use super::facts::Name;
use crate::quote;
use crate::reshard::conn::{Conn, ConnError};

/// Empties the session's `search_path`, so defaults, types and index definitions name
/// their schemas.
pub async fn qualify_names(conn: &mut Conn) -> Result<(), ConnError> {
    conn.execute("SELECT pg_catalog.set_config('search_path', '', false)")
        .await
        .map(|_| ())
}

/// `unnest(ARRAY[schemas], ARRAY[names]) AS wanted(s, t)` for `tables` (the multi-array
/// form exists in FROM only, unqualified).
fn wanted(tables: &[Name]) -> String {
    let list = |part: fn(&Name) -> &String| {
        tables
            .iter()
            .map(|t| quote::literal(part(t)))
            .collect::<Vec<_>>()
            .join(",")
    };
    format!(
        "unnest(ARRAY[{}]::text[], ARRAY[{}]::text[]) AS wanted(s, t)",
        list(|t| &t.0),
        list(|t| &t.1)
    )
}

fn flag(value: Option<&str>) -> bool {
    value == Some("t")
}

/// The tables of `tables` that exist on the server (ordinary or partitioned), described;
/// missing ones are left out. Call [`qualify_names`] on the connection first.
pub async fn read(conn: &mut Conn, tables: &[Name]) -> Result<Vec<TableDef>, ConnError> {
    if tables.is_empty() {
        return Ok(Vec::new());
    }
    let wanted = wanted(tables);
    let mut found: BTreeMap<Name, TableDef> = BTreeMap::new();
    let rows = conn
        .query(&format!(
            "SELECT n.nspname, c.relname, c.relkind = 'p', pn.nspname, p.relname
             FROM {wanted}
             JOIN pg_catalog.pg_namespace n ON n.nspname = wanted.s
             JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = wanted.t
             LEFT JOIN pg_catalog.pg_inherits i ON i.inhrelid = c.oid AND c.relispartition
             LEFT JOIN pg_catalog.pg_class p ON p.oid = i.inhparent
             LEFT JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace
             WHERE c.relkind IN ('r', 'p')"
        ))
        .await?;
    for row in &rows.rows {
        let [Some(schema), Some(name), partitioned, parent_schema, parent] = &row[..] else {
            continue;
        };
        let name = (schema.clone(), name.clone());
        let parent = match (parent_schema, parent) {
            (Some(s), Some(p)) => Some((s.clone(), p.clone())),
            _ => None,
        };
        found.insert(
            name.clone(),
            TableDef {
                name,
                parent,
                partitioned: flag(partitioned.as_deref()),
                ..Default::default()
            },
        );
    }
    let rows = conn
        .query(&format!(
            "SELECT n.nspname, c.relname, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod),
                    a.attnotnull, pg_catalog.pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated
             FROM {wanted}
             JOIN pg_catalog.pg_namespace n ON n.nspname = wanted.s
             JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = wanted.t
             JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
             WHERE c.relkind IN ('r', 'p')
             ORDER BY n.nspname, c.relname, a.attnum"
        ))
        .await?;
    for row in &rows.rows {
        let [Some(schema), Some(table), Some(name), Some(type_name), not_null, expression, identity, generated] =
            &row[..]
        else {
            continue;
        };
        let Some(table) = found.get_mut(&(schema.clone(), table.clone())) else {
            continue;
        };
        let generated = generated.as_deref().is_some_and(|g| !g.is_empty());
        table.columns.push(ColumnDef {
            name: name.clone(),
            type_name: type_name.clone(),
            not_null: flag(not_null.as_deref()),
            default: expression.clone().filter(|_| !generated),
            identity: match identity.as_deref() {
                Some("a") => Some(Identity::Always),
                Some("d") => Some(Identity::ByDefault),
                _ => None,
            },
            generated: expression.clone().filter(|_| generated),
        });
    }
    let rows = conn
        .query(&format!(
            "SELECT n.nspname, c.relname, ic.relname, pg_catalog.pg_get_indexdef(x.indexrelid),
                    x.indisvalid,
                    (SELECT pg_catalog.pg_get_constraintdef(k.oid) FROM pg_catalog.pg_constraint k
                     WHERE k.conindid = x.indexrelid AND k.conrelid = c.oid AND k.contype IN ('p', 'u', 'x')
                     LIMIT 1),
                    EXISTS (SELECT 1 FROM pg_catalog.pg_inherits h WHERE h.inhrelid = x.indexrelid)
             FROM {wanted}
             JOIN pg_catalog.pg_namespace n ON n.nspname = wanted.s
             JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = wanted.t
             JOIN pg_catalog.pg_index x ON x.indrelid = c.oid
             JOIN pg_catalog.pg_class ic ON ic.oid = x.indexrelid
             WHERE c.relkind IN ('r', 'p')
             ORDER BY n.nspname, c.relname, ic.relname"
        ))
        .await?;
    for row in &rows.rows {
        let [Some(schema), Some(table), Some(name), Some(definition), valid, constraint, child] =
            &row[..]
        else {
            continue;
        };
        let Some(table) = found.get_mut(&(schema.clone(), table.clone())) else {
            continue;
        };
        table.indexes.push(IndexDef {
            name: name.clone(),
            definition: definition.clone(),
            valid: flag(valid.as_deref()),
            constraint: constraint.clone(),
            partition_child: flag(child.as_deref()),
        });
    }
    Ok(found.into_values().collect())
}
