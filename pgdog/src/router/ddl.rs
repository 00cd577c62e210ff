//! Schema changes (DDL) in client queries that a database move must carry to the destination,
//! and the logical message that carries them.
//!
//! [`ddl_statements`] parses a query with pg_query and returns the text of each statement that
//! creates, alters or drops a schema object the move copies: tables, indexes, sequences, views,
//! materialized views, types (enums, domains, ranges, composite types), functions and
//! procedures, triggers, rules, policies, statistics, schemas and extensions; renames,
//! `COMMENT ON`, `ALTER ... SET SCHEMA` / `OWNER TO`, and `GRANT`/`REVOKE` on tables and
//! sequences. Not DDL here: transaction control, `SET`/`RESET`/`SHOW`, maintenance (`VACUUM`,
//! `ANALYZE`, `CLUSTER`, `REINDEX`, `REFRESH`), `LISTEN`/`NOTIFY`, `COPY`, `EXPLAIN`,
//! `PREPARE`/`EXECUTE`/`DEALLOCATE`, `LOCK`, `DISCARD`, `CHECKPOINT`, `TRUNCATE` (logical
//! replication carries it), `DO` blocks, cluster-wide objects (databases, roles, tablespaces),
//! publications and subscriptions, and anything on temporary objects: created `TEMP`, in
//! `pg_temp`, or named like a temporary relation the session created before
//! ([`TempRelations`]).
//!
//! [`may_contain_ddl`] is the byte-level pre-check that keeps ordinary traffic from being
//! parsed at all; [`emit_sql`] and [`split_message`] are the two ends of the message
//! (`pg_logical_emit_message` with prefix [`MESSAGE_PREFIX`]) that puts the DDL in the WAL.

use std::collections::HashSet;

use pg_query::protobuf::{Node, ObjectType, RangeVar};
use pg_query::{NodeEnum, ParserOptions};

/// The prefix of the logical messages that carry DDL run through pgdog.
pub const MESSAGE_PREFIX: &str = "pgdog_ddl";

/// At most this many temporary relation names are remembered per session.
const MAX_TEMP_RELATIONS: usize = 1024;

/// Statement keywords that may start DDL (ASCII case ignored).
const DDL_KEYWORDS: [&[u8]; 6] = [
    b"create", b"alter", b"drop", b"comment", b"grant", b"revoke",
];

/// The unqualified names of the temporary relations a session created, so statements on them
/// are not taken for DDL on permanent ones.
#[derive(Debug, Default, Clone)]
pub struct TempRelations {
    names: HashSet<String>,
}

impl TempRelations {
    /// Whether `name` (unqualified, as the parser folds it) is a temporary relation of the
    /// session.
    pub fn contains(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    fn insert(&mut self, name: &str) {
        if self.names.len() < MAX_TEMP_RELATIONS {
            self.names.insert(name.to_string());
        }
    }

    fn remove(&mut self, name: &str) {
        self.names.remove(name);
    }
}

/// Cheap check on a query's bytes (a trailing NUL and what follows are ignored): false when no
/// statement in it can be DDL, i.e. every piece between semicolons starts with a keyword other
/// than `CREATE`, `ALTER`, `DROP`, `COMMENT`, `GRANT` or `REVOKE`. A leading comment, or a
/// semicolon inside a literal, only costs a full parse.
pub fn may_contain_ddl(sql: &[u8]) -> bool {
    let end = sql.iter().position(|b| *b == 0).unwrap_or(sql.len());
    sql[..end].split(|b| *b == b';').any(|piece| {
        let start = piece
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(piece.len());
        let piece = &piece[start..];
        if piece.starts_with(b"--") || piece.starts_with(b"/*") {
            return true;
        }
        let len = piece
            .iter()
            .position(|b| !b.is_ascii_alphabetic())
            .unwrap_or(piece.len());
        let word = &piece[..len];
        DDL_KEYWORDS.iter().any(|k| word.eq_ignore_ascii_case(k))
    })
}

/// The DDL statements of `sql` (one or more statements), each as written (trimmed, without
/// its semicolon), in order. Empty when there is none or the text does not parse. `temp`
/// learns the temporary relations `sql` creates and forgets those it drops.
pub fn ddl_statements(sql: &str, temp: &mut TempRelations) -> Vec<String> {
    if !may_contain_ddl(sql.as_bytes()) {
        return Vec::new();
    }
    // pg_query's post-processing of a parse result indexes into the tree: a panic there must
    // not take the client down (the statement is then not captured).
    let Ok(Ok(parsed)) = std::panic::catch_unwind(|| pg_query::parse(sql, ParserOptions::DEFAULT))
    else {
        return Vec::new();
    };
    let mut ddl = Vec::new();
    for raw in &parsed.protobuf.stmts {
        let Some(node) = raw.stmt.as_deref().and_then(|stmt| stmt.node.as_ref()) else {
            continue;
        };
        if is_ddl(node, temp) {
            if let Some(text) = statement_text(sql, raw.stmt_location, raw.stmt_len) {
                ddl.push(text.to_string());
            }
        }
        track_temp(node, temp);
    }
    ddl
}

/// Joins DDL statements into one text: `;` and a new line between them (the new line before
/// the `;` too when a statement ends in a `--` comment).
pub fn join(statements: &[String]) -> String {
    let mut text = String::new();
    for (i, statement) in statements.iter().enumerate() {
        if i > 0 {
            let last_line = text.rsplit('\n').next().unwrap_or_default();
            if last_line.contains("--") {
                text.push('\n');
            }
            text.push_str(";\n");
        }
        text.push_str(statement);
    }
    text
}

/// The statement that writes `ddl` to the WAL as a transactional logical message with prefix
/// [`MESSAGE_PREFIX`]: its content is the session's `search_path`, a new line, then `ddl`.
pub fn emit_sql(ddl: &str) -> String {
    format!(
        "SELECT pg_logical_emit_message(true, '{MESSAGE_PREFIX}', \
         current_setting('search_path') || E'\\n' || {})",
        escaped_literal(ddl)
    )
}

/// A message's content split into the `search_path` it ran with and the DDL text.
pub fn split_message(content: &str) -> Option<(&str, &str)> {
    content.split_once('\n')
}

/// `text` as an `E'...'` literal: the same value whatever `standard_conforming_strings` is.
fn escaped_literal(text: &str) -> String {
    format!("E'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

/// The text of the statement at `location` (`len` bytes; 0: to the end), trimmed.
fn statement_text(sql: &str, location: i32, len: i32) -> Option<&str> {
    let start = usize::try_from(location).ok()?;
    let end = match usize::try_from(len).ok().filter(|len| *len > 0) {
        Some(len) => start.checked_add(len)?.min(sql.len()),
        None => sql.len(),
    };
    let text = sql.get(start..end)?.trim();
    let text = text.strip_suffix(';').unwrap_or(text).trim_end();
    (!text.is_empty()).then_some(text)
}

/// Whether one top-level statement is DDL to carry (see the module doc).
fn is_ddl(node: &NodeEnum, temp: &TempRelations) -> bool {
    match node {
        NodeEnum::CreateStmt(s) => !creates_temp(s.relation.as_ref()),
        NodeEnum::CreateTableAsStmt(s) => {
            !s.is_select_into && !creates_temp(s.into.as_deref().and_then(|into| into.rel.as_ref()))
        }
        NodeEnum::ViewStmt(s) => !creates_temp(s.view.as_ref()),
        NodeEnum::CreateSeqStmt(s) => !creates_temp(s.sequence.as_ref()),
        NodeEnum::CompositeTypeStmt(s) => !creates_temp(s.typevar.as_ref()),
        NodeEnum::AlterTableStmt(s) => !names_temp(s.relation.as_ref(), temp),
        NodeEnum::IndexStmt(s) => !names_temp(s.relation.as_ref(), temp),
        NodeEnum::AlterSeqStmt(s) => !names_temp(s.sequence.as_ref(), temp),
        NodeEnum::CreateTrigStmt(s) => !names_temp(s.relation.as_ref(), temp),
        NodeEnum::RuleStmt(s) => !names_temp(s.relation.as_ref(), temp),
        NodeEnum::CreatePolicyStmt(s) => !names_temp(s.table.as_ref(), temp),
        NodeEnum::AlterPolicyStmt(s) => !names_temp(s.table.as_ref(), temp),
        NodeEnum::CreateEnumStmt(_)
        | NodeEnum::AlterEnumStmt(_)
        | NodeEnum::CreateDomainStmt(_)
        | NodeEnum::AlterDomainStmt(_)
        | NodeEnum::CreateRangeStmt(_)
        | NodeEnum::AlterTypeStmt(_)
        | NodeEnum::CreateFunctionStmt(_)
        | NodeEnum::AlterFunctionStmt(_)
        | NodeEnum::CreateSchemaStmt(_)
        | NodeEnum::CreateExtensionStmt(_)
        | NodeEnum::AlterExtensionStmt(_)
        | NodeEnum::AlterExtensionContentsStmt(_)
        | NodeEnum::CreateStatsStmt(_)
        | NodeEnum::AlterStatsStmt(_) => true,
        NodeEnum::DefineStmt(s) => matches!(
            object_type(s.kind),
            ObjectType::ObjectType | ObjectType::ObjectAggregate | ObjectType::ObjectCollation
        ),
        NodeEnum::DropStmt(s) => {
            let kind = object_type(s.remove_type);
            carried(kind)
                && !(is_relation(kind)
                    && !s.objects.is_empty()
                    && s.objects.iter().all(|o| list_is_temp(o, temp)))
        }
        NodeEnum::RenameStmt(s) => {
            carried(object_type(s.rename_type)) && !names_temp(s.relation.as_ref(), temp)
        }
        NodeEnum::CommentStmt(s) => {
            let kind = object_type(s.objtype);
            carried(kind) && !comment_target_is_temp(kind, s.object.as_deref(), temp)
        }
        NodeEnum::GrantStmt(s) => matches!(
            object_type(s.objtype),
            ObjectType::ObjectTable | ObjectType::ObjectSequence
        ),
        NodeEnum::AlterObjectSchemaStmt(s) => {
            carried(object_type(s.object_type)) && !names_temp(s.relation.as_ref(), temp)
        }
        NodeEnum::AlterOwnerStmt(s) => carried(object_type(s.object_type)),
        _ => false,
    }
}

/// Records temporary relations created, forgets those dropped.
fn track_temp(node: &NodeEnum, temp: &mut TempRelations) {
    let created = match node {
        NodeEnum::CreateStmt(s) => s.relation.as_ref(),
        NodeEnum::CreateTableAsStmt(s) => s.into.as_deref().and_then(|into| into.rel.as_ref()),
        NodeEnum::ViewStmt(s) => s.view.as_ref(),
        NodeEnum::CreateSeqStmt(s) => s.sequence.as_ref(),
        NodeEnum::DropStmt(s) if is_relation(object_type(s.remove_type)) => {
            for object in &s.objects {
                let names = list_names(object);
                match names.as_slice() {
                    [name] => temp.remove(name),
                    [schema, name] if is_temp_schema(schema) => temp.remove(name),
                    _ => {}
                }
            }
            None
        }
        _ => None,
    };
    if let Some(relation) = created.filter(|r| creates_temp(Some(r))) {
        temp.insert(&relation.relname);
    }
}

fn object_type(value: i32) -> ObjectType {
    ObjectType::try_from(value).unwrap_or(ObjectType::Undefined)
}

/// Object kinds a move copies to the destination.
fn carried(kind: ObjectType) -> bool {
    matches!(
        kind,
        ObjectType::ObjectTable
            | ObjectType::ObjectIndex
            | ObjectType::ObjectSequence
            | ObjectType::ObjectView
            | ObjectType::ObjectMatview
            | ObjectType::ObjectColumn
            | ObjectType::ObjectAttribute
            | ObjectType::ObjectTabconstraint
            | ObjectType::ObjectType
            | ObjectType::ObjectDomain
            | ObjectType::ObjectDomconstraint
            | ObjectType::ObjectFunction
            | ObjectType::ObjectProcedure
            | ObjectType::ObjectRoutine
            | ObjectType::ObjectAggregate
            | ObjectType::ObjectTrigger
            | ObjectType::ObjectRule
            | ObjectType::ObjectPolicy
            | ObjectType::ObjectSchema
            | ObjectType::ObjectExtension
            | ObjectType::ObjectCollation
            | ObjectType::ObjectStatisticExt
    )
}

/// Kinds named like relations (`[schema.]name` lists in `DROP` and `COMMENT`).
fn is_relation(kind: ObjectType) -> bool {
    matches!(
        kind,
        ObjectType::ObjectTable
            | ObjectType::ObjectIndex
            | ObjectType::ObjectSequence
            | ObjectType::ObjectView
            | ObjectType::ObjectMatview
    )
}

fn is_temp_schema(schema: &str) -> bool {
    schema == "pg_temp" || schema.starts_with("pg_temp_")
}

/// A relation being created is temporary: `TEMP` or in `pg_temp`.
fn creates_temp(relation: Option<&RangeVar>) -> bool {
    relation.is_some_and(|r| r.relpersistence == "t" || is_temp_schema(&r.schemaname))
}

/// A relation referred to is temporary: in `pg_temp`, or unqualified and created temporary by
/// the session.
fn names_temp(relation: Option<&RangeVar>, temp: &TempRelations) -> bool {
    relation.is_some_and(|r| {
        is_temp_schema(&r.schemaname) || (r.schemaname.is_empty() && temp.contains(&r.relname))
    })
}

/// The strings of a `[schema.]name` list node.
fn list_names(node: &Node) -> Vec<&str> {
    match node.node.as_ref() {
        Some(NodeEnum::List(list)) => list
            .items
            .iter()
            .filter_map(|item| match item.node.as_ref() {
                Some(NodeEnum::String(s)) => Some(s.sval.as_str()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// A `[schema.]name` list names a temporary relation.
fn list_is_temp(node: &Node, temp: &TempRelations) -> bool {
    names_are_temp(&list_names(node), temp)
}

fn names_are_temp(names: &[&str], temp: &TempRelations) -> bool {
    match names {
        [name] => temp.contains(name),
        [schema, _] => is_temp_schema(schema),
        _ => false,
    }
}

/// The relation a `COMMENT ON` targets is temporary (a column's relation for `COLUMN`).
fn comment_target_is_temp(kind: ObjectType, object: Option<&Node>, temp: &TempRelations) -> bool {
    let Some(object) = object else {
        return false;
    };
    let names = list_names(object);
    match kind {
        ObjectType::ObjectColumn if !names.is_empty() => {
            names_are_temp(&names[..names.len() - 1], temp)
        }
        kind if is_relation(kind) => names_are_temp(&names, temp),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ddl(sql: &str) -> Vec<String> {
        ddl_statements(sql, &mut TempRelations::default())
    }

    fn is_captured(sql: &str) -> bool {
        !ddl(sql).is_empty()
    }

    #[test]
    fn schema_changes_are_ddl() {
        for sql in [
            "CREATE TABLE t (id bigint PRIMARY KEY, v text)",
            "create unlogged table t (id int)",
            "CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (1) TO (10)",
            "CREATE TABLE t2 AS SELECT * FROM t",
            "ALTER TABLE t ADD COLUMN c int DEFAULT 0",
            "ALTER TABLE t ALTER COLUMN c TYPE bigint",
            "ALTER TABLE t RENAME COLUMN c TO d",
            "ALTER TABLE t RENAME TO u",
            "ALTER TABLE IF EXISTS t DROP CONSTRAINT t_pkey",
            "ALTER TABLE t OWNER TO app",
            "ALTER TABLE t SET SCHEMA other",
            "DROP TABLE t",
            "DROP TABLE IF EXISTS a, b CASCADE",
            "CREATE INDEX t_v ON t (v)",
            "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS t_v ON t USING btree (lower(v))",
            "DROP INDEX CONCURRENTLY t_v",
            "ALTER INDEX t_v RENAME TO t_w",
            "CREATE SEQUENCE s START 10",
            "ALTER SEQUENCE s RESTART WITH 5",
            "DROP SEQUENCE s",
            "CREATE VIEW v AS SELECT 1",
            "CREATE OR REPLACE VIEW v AS SELECT 2",
            "DROP VIEW v",
            "CREATE MATERIALIZED VIEW mv AS SELECT 1",
            "DROP MATERIALIZED VIEW mv",
            "CREATE TYPE mood AS ENUM ('sad', 'ok')",
            "ALTER TYPE mood ADD VALUE 'happy'",
            "CREATE TYPE pair AS (a int, b int)",
            "CREATE TYPE floatrange AS RANGE (subtype = float8)",
            "DROP TYPE mood",
            "CREATE DOMAIN posint AS int CHECK (VALUE > 0)",
            "ALTER DOMAIN posint SET DEFAULT 1",
            "DROP DOMAIN posint",
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$",
            "CREATE OR REPLACE PROCEDURE p() LANGUAGE sql AS $$ SELECT 1 $$",
            "ALTER FUNCTION f() STABLE",
            "DROP FUNCTION f()",
            "DROP PROCEDURE p",
            "CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()",
            "DROP TRIGGER tr ON t",
            "CREATE SCHEMA app",
            "DROP SCHEMA app CASCADE",
            "ALTER SCHEMA app RENAME TO app2",
            "CREATE EXTENSION IF NOT EXISTS pgcrypto",
            "DROP EXTENSION pgcrypto",
            "COMMENT ON TABLE t IS 'x'",
            "COMMENT ON COLUMN t.v IS 'y'",
            "GRANT SELECT ON t TO app",
            "GRANT ALL ON ALL TABLES IN SCHEMA public TO app",
            "REVOKE INSERT ON TABLE t FROM app",
            "CREATE POLICY pol ON t USING (true)",
            "CREATE STATISTICS st ON a, b FROM t",
        ] {
            assert_eq!(ddl(sql), vec![sql.to_string()], "{sql}");
        }
    }

    #[test]
    fn other_statements_are_not() {
        for sql in [
            "SELECT 1",
            "INSERT INTO t VALUES (1)",
            "UPDATE t SET v = 'create table x'",
            "DELETE FROM t",
            "BEGIN",
            "COMMIT",
            "ROLLBACK",
            "SAVEPOINT s",
            "SET search_path TO app",
            "RESET ALL",
            "SHOW search_path",
            "VACUUM t",
            "ANALYZE t",
            "CLUSTER t USING t_pkey",
            "REINDEX TABLE t",
            "REFRESH MATERIALIZED VIEW mv",
            "LISTEN ch",
            "NOTIFY ch",
            "COPY t FROM STDIN",
            "EXPLAIN SELECT 1",
            "PREPARE q AS SELECT 1",
            "EXECUTE q",
            "DEALLOCATE q",
            "LOCK TABLE t",
            "DISCARD ALL",
            "CHECKPOINT",
            "TRUNCATE t",
            "DO $$ BEGIN CREATE TABLE x (); END $$",
            "CREATE DATABASE d",
            "DROP DATABASE d",
            "CREATE ROLE r",
            "ALTER ROLE r LOGIN",
            "DROP ROLE r",
            "GRANT r TO app",
            "CREATE TABLESPACE ts LOCATION '/tmp'",
            "CREATE PUBLICATION p FOR ALL TABLES",
            "ALTER PUBLICATION p ADD TABLE t",
            "DROP PUBLICATION p",
            "ALTER DATABASE d SET work_mem = '1MB'",
            "GRANT CONNECT ON DATABASE d TO app",
            "SELECT * INTO t3 FROM t",
            "CREATE TABLE broken (",
            "",
        ] {
            assert!(ddl(sql).is_empty(), "{sql}");
        }
    }

    #[test]
    fn temporary_objects_are_not_ddl() {
        let mut temp = TempRelations::default();
        for sql in [
            "CREATE TEMP TABLE tmp (id int)",
            "CREATE TEMPORARY TABLE tmp2 AS SELECT 1",
            "CREATE TABLE pg_temp.tmp3 (id int)",
            "CREATE TEMP VIEW tv AS SELECT 1",
            "CREATE TEMP SEQUENCE ts",
            "CREATE INDEX ON tmp (id)",
            "ALTER TABLE tmp ADD COLUMN c int",
            "COMMENT ON TABLE tmp IS 'x'",
            "COMMENT ON COLUMN tmp.id IS 'x'",
            "ALTER TABLE pg_temp.whatever ADD COLUMN c int",
            "DROP TABLE tmp, tmp2",
        ] {
            assert!(ddl_statements(sql, &mut temp).is_empty(), "{sql}");
        }
        // Dropped: the name is a permanent table's again.
        assert!(!ddl_statements("DROP TABLE tmp", &mut temp).is_empty());
        // A permanent table with a temporary one's name, schema-qualified.
        assert!(!ddl_statements("ALTER TABLE public.tv ADD c int", &mut temp).is_empty());
        // A DROP that includes a permanent table is DDL.
        assert!(!ddl_statements("DROP TABLE tmp3, real_one", &mut temp).is_empty());
        // Temporary names are per session.
        assert!(is_captured("ALTER TABLE tv RENAME TO tv2"));
    }

    #[test]
    fn several_statements_keep_only_the_ddl() {
        let sql = "INSERT INTO t VALUES (1); CREATE INDEX CONCURRENTLY i ON t (v);\n\
                   SET x = 1;  ALTER TABLE t ADD c int ; SELECT 1";
        assert_eq!(
            ddl(sql),
            vec![
                "CREATE INDEX CONCURRENTLY i ON t (v)".to_string(),
                "ALTER TABLE t ADD c int".to_string()
            ]
        );
        assert_eq!(
            ddl("CREATE INDEX i ON t (v); INSERT INTO t VALUES (1)"),
            vec!["CREATE INDEX i ON t (v)".to_string()]
        );
        assert_eq!(
            ddl("BEGIN; CREATE TABLE ü (v text DEFAULT 'é;'); COMMIT;"),
            vec!["CREATE TABLE ü (v text DEFAULT 'é;')".to_string()]
        );
        assert_eq!(
            ddl("/* migration 7 */ CREATE TABLE a (id int)"),
            vec!["CREATE TABLE a (id int)".to_string()]
        );
    }

    #[test]
    fn pre_check_skips_ordinary_queries() {
        assert!(!may_contain_ddl(b"SELECT 1"));
        assert!(!may_contain_ddl(b"  insert into t values (1);\0"));
        assert!(!may_contain_ddl(b"SELECT 1; UPDATE t SET a = 1; "));
        assert!(!may_contain_ddl(b"SELECT 1\0CREATE"));
        assert!(may_contain_ddl(b" create table t ()"));
        assert!(may_contain_ddl(b"SELECT 1;\n  Alter table t add c int"));
        assert!(may_contain_ddl(b"-- hi\nSELECT 1"));
        assert!(may_contain_ddl(b"/* x */ DROP TABLE t"));
        assert!(may_contain_ddl(b"GRANT SELECT ON t TO x"));
        assert!(may_contain_ddl(b"revoke all on t from x"));
        assert!(may_contain_ddl(b"COMMENT ON TABLE t IS 'x'"));
        assert!(!may_contain_ddl(b"created_at"));
    }

    #[test]
    fn joined_text_survives_line_comments() {
        let statements = vec![
            "CREATE TABLE a (id int) -- first".to_string(),
            "CREATE INDEX ON a (id)".to_string(),
            "DROP TABLE b".to_string(),
        ];
        assert_eq!(
            join(&statements),
            "CREATE TABLE a (id int) -- first\n;\nCREATE INDEX ON a (id);\nDROP TABLE b"
        );
        assert_eq!(join(&statements[2..]), "DROP TABLE b");
        // Every statement survives a parse of the joined text.
        let joined = join(&statements);
        assert_eq!(ddl(&joined).len(), 3);
    }

    #[test]
    fn message_statement_and_content() {
        let sql = emit_sql("COMMENT ON TABLE t IS 'it''s a \\ path'");
        assert_eq!(
            sql,
            "SELECT pg_logical_emit_message(true, 'pgdog_ddl', current_setting('search_path') \
             || E'\\n' || E'COMMENT ON TABLE t IS ''it''''s a \\\\ path''')"
        );
        assert!(pg_query::parse(&sql, ParserOptions::DEFAULT).is_ok());
        assert_eq!(
            split_message("\"$user\", public\nCREATE TABLE t ()\nWITH (fillfactor = 90)"),
            Some((
                "\"$user\", public",
                "CREATE TABLE t ()\nWITH (fillfactor = 90)"
            ))
        );
        assert_eq!(split_message("no newline"), None);
    }
}
