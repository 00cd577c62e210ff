//! Reading and changing pg_dump's DDL with the PostgreSQL parser: which table a statement
//! belongs to, widening integer columns to bigint, and a canonical text for comparing the
//! source's definition of an object with a destination's.

use std::collections::BTreeSet;

use pg_query::protobuf::{ConstrType, Node, ParseResult, RawStmt};
use pg_query::NodeEnum;

/// A schema-qualified name, unquoted.
pub type Name = (String, String);

/// Parses one statement.
fn parse_one(sql: &str) -> Result<(i32, NodeEnum), String> {
    let parsed = std::panic::catch_unwind(|| pg_query::parse(sql, 0))
        .map_err(|_| "the SQL parser failed".to_string())?
        .map_err(|e| e.to_string())?;
    let version = parsed.protobuf.version;
    let node = parsed
        .protobuf
        .stmts
        .into_iter()
        .next()
        .and_then(|s| s.stmt)
        .and_then(|n| n.node)
        .ok_or_else(|| "no statement".to_string())?;
    Ok((version, node))
}

/// Turns one statement back into SQL.
fn deparse_one(version: i32, node: NodeEnum) -> Result<String, String> {
    let tree = ParseResult {
        version,
        stmts: vec![RawStmt {
            stmt: Some(Box::new(Node { node: Some(node) })),
            stmt_location: 0,
            stmt_len: 0,
        }],
    };
    std::panic::catch_unwind(|| pg_query::deparse(&tree, Default::default()))
        .map_err(|_| "the SQL deparser failed".to_string())?
        .map_err(|e| e.to_string())
}

/// The statement as the parser would print it (formatting and redundant syntax gone), or
/// with whitespace collapsed when it cannot be reprinted.
pub fn canonical(sql: &str) -> String {
    parse_one(sql)
        .and_then(|(version, node)| deparse_one(version, node))
        .unwrap_or_else(|_| sql.split_whitespace().collect::<Vec<_>>().join(" "))
}

fn range_var_name(range: &pg_query::protobuf::RangeVar) -> Name {
    (range.schemaname.clone(), range.relname.clone())
}

/// The table (or, for `ALTER INDEX`, index; for sequences, sequence) a statement acts on.
pub fn target_of(sql: &str) -> Option<Name> {
    let (_, node) = parse_one(sql).ok()?;
    let range = match &node {
        NodeEnum::CreateStmt(s) => s.relation.as_ref(),
        NodeEnum::AlterTableStmt(s) => s.relation.as_ref(),
        NodeEnum::IndexStmt(s) => s.relation.as_ref(),
        NodeEnum::CreateTrigStmt(s) => s.relation.as_ref(),
        NodeEnum::CreatePolicyStmt(s) => s.table.as_ref(),
        NodeEnum::RuleStmt(s) => s.relation.as_ref(),
        NodeEnum::CreateSeqStmt(s) => s.sequence.as_ref(),
        NodeEnum::AlterSeqStmt(s) => s.sequence.as_ref(),
        _ => None,
    }?;
    Some(range_var_name(range))
}

/// Whether the statement is a `CREATE TABLE`.
pub fn creates_table(sql: &str) -> bool {
    matches!(parse_one(sql), Ok((_, NodeEnum::CreateStmt(_))))
}

/// Whether the statement is `ALTER TABLE ... ADD [CONSTRAINT c] PRIMARY KEY ...`.
pub fn adds_primary_key(sql: &str) -> bool {
    let Ok((_, NodeEnum::AlterTableStmt(stmt))) = parse_one(sql) else {
        return false;
    };
    stmt.cmds.iter().any(|cmd| match &cmd.node {
        Some(NodeEnum::AlterTableCmd(cmd)) => {
            match cmd.def.as_ref().and_then(|d| d.node.as_ref()) {
                Some(NodeEnum::Constraint(c)) => c.contype == ConstrType::ConstrPrimary as i32,
                _ => false,
            }
        }
        _ => false,
    })
}

/// Whether a type name is `smallint` / `integer` (not an array).
fn is_small_integer(type_name: &pg_query::protobuf::TypeName) -> bool {
    if !type_name.array_bounds.is_empty() {
        return false;
    }
    let last = type_name.names.last().and_then(|n| match &n.node {
        Some(NodeEnum::String(s)) => Some(s.sval.as_str()),
        _ => None,
    });
    matches!(last, Some("int2" | "int4" | "smallint" | "integer" | "int"))
}

fn bigint() -> Vec<Node> {
    ["pg_catalog", "int8"]
        .iter()
        .map(|s| Node {
            node: Some(NodeEnum::String(pg_query::protobuf::String {
                sval: s.to_string(),
            })),
        })
        .collect()
}

/// `CREATE TABLE` with the named integer columns changed to bigint. Returns the statement
/// unchanged (as written) when none of them is in it.
pub fn widen_columns(sql: &str, columns: &BTreeSet<String>) -> Result<String, String> {
    let (version, mut node) = parse_one(sql)?;
    let NodeEnum::CreateStmt(stmt) = &mut node else {
        return Ok(sql.to_string());
    };
    let mut changed = false;
    for element in &mut stmt.table_elts {
        if let Some(NodeEnum::ColumnDef(column)) = &mut element.node {
            if !columns.contains(&column.colname) {
                continue;
            }
            if let Some(type_name) = column.type_name.as_mut() {
                if is_small_integer(type_name) {
                    type_name.names = bigint();
                    type_name.typmods.clear();
                    changed = true;
                }
            }
        }
    }
    if !changed {
        return Ok(sql.to_string());
    }
    deparse_one(version, node)
}

/// `CREATE SEQUENCE ... AS integer` without the `AS` clause (a bigint sequence).
pub fn widen_sequence(sql: &str) -> Result<String, String> {
    let (version, mut node) = parse_one(sql)?;
    let NodeEnum::CreateSeqStmt(stmt) = &mut node else {
        return Ok(sql.to_string());
    };
    let before = stmt.options.len();
    stmt.options.retain(|o| match &o.node {
        Some(NodeEnum::DefElem(d)) => d.defname != "as",
        _ => true,
    });
    if stmt.options.len() == before {
        return Ok(sql.to_string());
    }
    deparse_one(version, node)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            target_of(r#"ALTER TABLE ONLY "Sales"."Customers" ADD CONSTRAINT c PRIMARY KEY (id)"#),
            Some(("Sales".into(), "Customers".into()))
        );
        assert_eq!(
            target_of("CREATE INDEX i ON ONLY inventory.events USING btree (body)"),
            Some(("inventory".into(), "events".into()))
        );
        assert_eq!(
            target_of("ALTER INDEX inventory.events_pkey ATTACH PARTITION inventory.e1"),
            Some(("inventory".into(), "events_pkey".into()))
        );
        assert_eq!(target_of("CREATE TYPE s.t AS ENUM ('a')"), None);
    }

    #[test]
    fn primary_keys() {
        assert!(adds_primary_key(
            "ALTER TABLE ONLY s.t\n    ADD CONSTRAINT t_pkey PRIMARY KEY (id)"
        ));
        assert!(!adds_primary_key(
            "ALTER TABLE ONLY s.t ADD CONSTRAINT t_key UNIQUE (id)"
        ));
    }

    #[test]
    fn widens_integer_columns_only() {
        let sql = "CREATE TABLE \"Sales\".orders (\n    id integer NOT NULL,\n    qty integer,\n    tags integer[],\n    customer_id smallint NOT NULL\n)";
        let columns: BTreeSet<String> = ["id", "tags", "customer_id"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let widened = widen_columns(sql, &columns).unwrap();
        assert_eq!(
            widened,
            "CREATE TABLE \"Sales\".orders (id bigint NOT NULL, qty int, tags int[], customer_id bigint NOT NULL)"
        );
        assert_eq!(
            canonical(&widened),
            canonical("CREATE TABLE \"Sales\".orders (id bigint NOT NULL, qty integer, tags integer[], customer_id bigint NOT NULL)")
        );
        assert_eq!(widen_columns(sql, &BTreeSet::new()).unwrap(), sql);
    }

    #[test]
    fn widens_sequences() {
        let sql = "CREATE SEQUENCE s.t_id_seq\n    AS integer\n    START WITH 1\n    INCREMENT BY 1\n    NO MINVALUE\n    NO MAXVALUE\n    CACHE 1";
        let widened = widen_sequence(sql).unwrap();
        assert!(!widened.contains("AS"), "{widened}");
        assert_eq!(
            canonical(&widened),
            canonical("CREATE SEQUENCE s.t_id_seq START WITH 1 INCREMENT BY 1 NO MINVALUE NO MAXVALUE CACHE 1")
        );
    }

    #[test]
    fn canonical_ignores_formatting() {
        assert_eq!(
            canonical("CREATE TABLE a (\n  x   integer\n)"),
            canonical("create table a (x INTEGER)")
        );
        assert_ne!(
            canonical("CREATE TABLE a (x integer)"),
            canonical("CREATE TABLE a (x integer, y text)")
        );
    }
}
