//! The publication and its tables on a source shard: the publication exists and has tables,
//! every table can replicate UPDATE and DELETE (primary key or usable replica identity), and
//! which extensions the tables need (for the destination check).

use super::servers::Server;
use super::{left_behind, ExtensionUse, Problem, SourceFacts};
use crate::quote;
use crate::reshard::publication::{self, TableRef};
use crate::reshard::schema::facts::SourceFacts as Dependencies;

/// How a publication picks its tables.
#[derive(Debug, Clone, Copy)]
pub(super) struct Publication {
    /// `FOR ALL TABLES`.
    pub all_tables: bool,
    /// `FOR TABLES IN SCHEMA` (PostgreSQL 15+).
    pub by_schema: bool,
}

/// Runs the publication and table checks on one source shard and records its tables and the
/// extensions they need in `facts`.
pub(super) async fn check(
    server: &mut Server,
    name: &str,
    facts: &mut SourceFacts,
    problems: &mut Vec<Problem>,
) {
    let Some(found) = find(server, name, problems).await else {
        return;
    };
    let tables = match publication::tables(&mut server.conn, name).await {
        Ok(tables) => tables,
        Err(e) => return problems.push(Problem::unchecked("publication", &server.label, &e)),
    };
    left_behind::unpublished(server, name, found, problems).await;
    facts.tables_known = true;
    if tables.is_empty() {
        return problems.push(Problem::warning(
            "publication",
            &server.label,
            format!(
                "publication {} contains no tables: nothing would be moved",
                quote::ident(name)
            ),
            format!(
                "add the tables to move: ALTER PUBLICATION {} ADD TABLE ...; (or recreate it \
                 FOR ALL TABLES)",
                quote::ident(name)
            ),
        ));
    }
    facts
        .tables
        .extend(tables.iter().map(|t| (t.schema.clone(), t.name.clone())));
    replica_identity(server, &tables, problems).await;
    extensions(server, &tables, facts, problems).await;
}

/// The publication, or a problem when it does not exist.
async fn find(server: &mut Server, name: &str, problems: &mut Vec<Problem>) -> Option<Publication> {
    let by_schema = match server.version {
        Some(version) if version >= 150_000 => {
            "EXISTS (SELECT 1 FROM pg_catalog.pg_publication_namespace s WHERE s.pnpubid = p.oid)"
        }
        _ => "false",
    };
    let sql = format!(
        "SELECT p.puballtables, {by_schema}
         FROM pg_catalog.pg_publication p
         WHERE p.pubname = {}",
        quote::literal(name)
    );
    let rows = match server.conn.query(&sql).await {
        Ok(rows) => rows,
        Err(e) => {
            problems.push(Problem::unchecked("publication", &server.label, &e));
            return None;
        }
    };
    if rows.rows.is_empty() {
        problems.push(Problem::error(
            "publication",
            &server.label,
            format!(
                "publication {} does not exist in this database; it names the tables to move \
                 and the changes to stream",
                quote::ident(name)
            ),
            format!(
                "create it on that database: CREATE PUBLICATION {} FOR ALL TABLES; (or FOR \
                 TABLE a, b, ... to move only some tables)",
                quote::ident(name)
            ),
        ));
        return None;
    }
    Some(Publication {
        all_tables: rows.get(0, 0) == Some("t"),
        by_schema: rows.get(0, 1) == Some("t"),
    })
}

/// `'{1,2,3}'::oid[]`.
fn oid_array(tables: &[TableRef]) -> String {
    let oids: Vec<String> = tables.iter().map(|t| t.oid.to_string()).collect();
    format!(
        "{}::oid[]",
        quote::literal(&format!("{{{}}}", oids.join(",")))
    )
}

/// Tables (not partitioned parents, which hold no rows) whose UPDATE and DELETE cannot be
/// replicated, or only slowly.
async fn replica_identity(server: &mut Server, tables: &[TableRef], problems: &mut Vec<Problem>) {
    // `candidate`: a unique, immediate, non-partial index on NOT NULL columns, usable as the
    // replica identity.
    let sql = format!(
        "SELECT n.nspname, c.relname, c.relreplident,
                EXISTS (SELECT 1 FROM pg_catalog.pg_index i
                        WHERE i.indrelid = c.oid AND i.indisprimary) AS has_primary_key,
                EXISTS (SELECT 1 FROM pg_catalog.pg_index i
                        WHERE i.indrelid = c.oid AND i.indisreplident) AS has_identity_index,
                (SELECT ic.relname FROM pg_catalog.pg_index i
                 JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
                 WHERE i.indrelid = c.oid AND i.indisunique AND i.indimmediate AND i.indisvalid
                   AND i.indpred IS NULL AND i.indexprs IS NULL
                   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                                   WHERE a.attrelid = c.oid AND a.attnum = ANY (i.indkey)
                                     AND NOT a.attnotnull)
                 ORDER BY ic.relname LIMIT 1) AS candidate
         FROM pg_catalog.pg_class c
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE c.oid = ANY ({}) AND c.relkind = 'r'
         ORDER BY 1, 2",
        oid_array(tables)
    );
    let rows = match server.conn.query(&sql).await {
        Ok(rows) => rows,
        Err(e) => return problems.push(Problem::unchecked("primary_key", &server.label, &e)),
    };
    for r in 0..rows.rows.len() {
        let identity = Identity {
            table: quote::qualified(rows.get(r, 0).unwrap_or(""), rows.get(r, 1).unwrap_or("")),
            replident: rows.get(r, 2).unwrap_or("d").to_string(),
            has_primary_key: rows.get(r, 3) == Some("t"),
            has_identity_index: rows.get(r, 4) == Some("t"),
            candidate: rows.get(r, 5).map(str::to_string),
        };
        problems.extend(identity.problem());
    }
}

/// How a table's UPDATE and DELETE are identified in the WAL.
#[derive(Debug)]
struct Identity {
    /// `"schema"."table"`.
    table: String,
    /// `pg_class.relreplident`: `d`efault, `n`othing, `f`ull, `i`ndex.
    replident: String,
    has_primary_key: bool,
    /// The index named by `REPLICA IDENTITY USING INDEX` exists.
    has_identity_index: bool,
    /// A unique index on NOT NULL columns that could serve as the identity.
    candidate: Option<String>,
}

impl Identity {
    fn problem(&self) -> Option<Problem> {
        let table = &self.table;
        let lost = "UPDATE and DELETE on it cannot be replicated (while it is in a publication \
                    that publishes them, the source even rejects them)";
        let add_key = format!("add a primary key: ALTER TABLE {table} ADD PRIMARY KEY (...)");
        let use_index = self.candidate.as_ref().map(|index| {
            format!(
                "use its unique index on NOT NULL columns: ALTER TABLE {table} REPLICA \
                 IDENTITY USING INDEX {};",
                quote::ident(index)
            )
        });
        let fix = match &use_index {
            Some(use_index) => format!("{use_index} or {add_key}"),
            None => format!(
                "{add_key}; or ALTER TABLE {table} REPLICA IDENTITY USING INDEX <a unique index \
                 on NOT NULL columns>; REPLICA IDENTITY FULL works too, but makes every UPDATE \
                 and DELETE slow on the destination"
            ),
        };
        let error = |message: String, hint: String| {
            Some(Problem::error("primary_key", table.clone(), message, hint))
        };
        match (self.replident.as_str(), self.has_primary_key) {
            ("n", true) => error(
                format!("has REPLICA IDENTITY NOTHING: {lost}"),
                format!("ALTER TABLE {table} REPLICA IDENTITY DEFAULT; (it has a primary key)"),
            ),
            ("n", false) => error(
                format!("has no primary key and REPLICA IDENTITY NOTHING: {lost}"),
                fix,
            ),
            ("d", false) => error(
                format!("has no primary key (replica identity DEFAULT): {lost}"),
                fix,
            ),
            ("i", _) if !self.has_identity_index => error(
                format!("its REPLICA IDENTITY USING INDEX names no existing index: {lost}"),
                fix,
            ),
            ("f", false) => Some(Problem::warning(
                "primary_key",
                table.clone(),
                "has no primary key and REPLICA IDENTITY FULL: replication works, but every \
                 UPDATE and DELETE on the destination has to find the row by all its columns \
                 (a full scan without a matching index), which is slow on big tables"
                    .into(),
                match use_index {
                    Some(use_index) => format!("{use_index} or {add_key}"),
                    None => add_key,
                },
            )),
            _ => None,
        }
    }
}

/// Records the extensions the tables need, from the same dependency walk schema sync uses
/// to choose what to create (types, domains, array element types, functions, operator
/// classes, up to the extension owning any of them), with the tables needing each.
async fn extensions(
    server: &mut Server,
    tables: &[TableRef],
    facts: &mut SourceFacts,
    problems: &mut Vec<Problem>,
) {
    let needed = match Dependencies::read(&mut server.conn, tables).await {
        Ok(dependencies) => dependencies.extensions,
        Err(e) => return problems.push(Problem::unchecked("extensions", &server.label, &e)),
    };
    if needed.is_empty() {
        return;
    }
    let names: Vec<String> = needed.keys().map(|n| quote::literal(n)).collect();
    let sql = format!(
        "SELECT extname, extversion FROM pg_catalog.pg_extension WHERE extname IN ({})",
        names.join(", ")
    );
    let versions = match server.conn.query(&sql).await {
        Ok(rows) => rows.rows,
        Err(e) => return problems.push(Problem::unchecked("extensions", &server.label, &e)),
    };
    for (name, users) in needed {
        let version = versions
            .iter()
            .find(|row| row.first().cloned().flatten().as_deref() == Some(name.as_str()))
            .and_then(|row| row.get(1).cloned().flatten())
            .unwrap_or_default();
        let used: &mut ExtensionUse = facts.extensions.entry(name).or_default();
        used.version = version;
        used.tables.extend(
            users
                .iter()
                .map(|(schema, table)| quote::qualified(schema, table)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reshard::preflight::Severity;

    fn identity(replident: &str, has_primary_key: bool, candidate: Option<&str>) -> Identity {
        Identity {
            table: "\"public\".\"t\"".into(),
            replident: replident.into(),
            has_primary_key,
            has_identity_index: replident == "i",
            candidate: candidate.map(str::to_string),
        }
    }

    #[test]
    fn which_replica_identities_are_problems() {
        let severity = |i: Identity| i.problem().map(|p| p.severity);
        assert_eq!(severity(identity("d", true, None)), None);
        assert_eq!(severity(identity("i", false, None)), None);
        assert_eq!(severity(identity("f", true, None)), None);
        assert_eq!(severity(identity("d", false, None)), Some(Severity::Error));
        assert_eq!(severity(identity("n", true, None)), Some(Severity::Error));
        assert_eq!(severity(identity("n", false, None)), Some(Severity::Error));
        assert_eq!(
            severity(identity("f", false, None)),
            Some(Severity::Warning)
        );
        let mut dropped = identity("i", false, None);
        dropped.has_identity_index = false;
        assert_eq!(severity(dropped), Some(Severity::Error));
    }

    #[test]
    fn the_hint_names_a_usable_index() {
        let problem = identity("d", false, Some("t_id")).problem();
        let hint = problem.map(|p| p.hint).unwrap_or_default();
        assert!(
            hint.contains("REPLICA IDENTITY USING INDEX \"t_id\""),
            "{hint}"
        );
        let problem = identity("f", false, Some("t_id")).problem();
        let hint = problem.map(|p| p.hint).unwrap_or_default();
        assert!(hint.contains("USING INDEX \"t_id\""), "{hint}");
        assert!(!hint.contains("FULL"), "{hint}");
    }
}
