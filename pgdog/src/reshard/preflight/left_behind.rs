//! What logical replication would silently leave on the source: large objects, and, when the
//! publication picks tables by itself (`FOR ALL TABLES`, `FOR TABLES IN SCHEMA`), the unlogged
//! tables, foreign tables and materialized views it skips.

use super::servers::Server;
use super::tables::Publication;
use super::Problem;
use crate::quote;

/// Large objects on a source shard: never replicated.
pub(super) async fn large_objects(server: &mut Server, problems: &mut Vec<Problem>) {
    let sql = "SELECT count(*) FROM pg_catalog.pg_largeobject_metadata";
    let count: u64 = match server.conn.query(sql).await {
        Ok(rows) => rows.scalar().and_then(|v| v.parse().ok()).unwrap_or(0),
        Err(e) => return problems.push(Problem::unchecked("large_objects", &server.label, &e)),
    };
    if count > 0 {
        problems.push(Problem::error(
            "large_objects",
            &server.label,
            format!(
                "the database has {count} large object(s) (pg_largeobject_metadata): logical \
                 replication does not carry large objects, they would be lost in the move"
            ),
            "store their contents in bytea columns before the move (lo_get(oid)) and remove \
             them (lo_unlink), or copy them yourself after the cutover (lo_export / lo_import) \
             with writes to them stopped"
                .into(),
        ));
    }
}

/// Relations the publication would skip without a word.
pub(super) async fn unpublished(
    server: &mut Server,
    name: &str,
    publication: Publication,
    problems: &mut Vec<Problem>,
) {
    let scope = if publication.all_tables {
        // User schemas: `pg_*` names are reserved for the system (catalog, toast, temp).
        "n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'".to_string()
    } else if publication.by_schema {
        format!(
            "n.oid IN (SELECT s.pnnspid FROM pg_catalog.pg_publication_namespace s
                       JOIN pg_catalog.pg_publication p ON p.oid = s.pnpubid
                       WHERE p.pubname = {})",
            quote::literal(name)
        )
    } else {
        // A table list: unlogged and foreign tables cannot be added to it at all.
        return;
    };
    let sql = format!(
        "SELECT n.nspname, c.relname, c.relkind
         FROM pg_catalog.pg_class c
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE ((c.relkind IN ('r', 'p') AND c.relpersistence = 'u') OR c.relkind IN ('f', 'm'))
           AND {scope}
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend e
                           WHERE e.classid = 'pg_catalog.pg_class'::regclass
                             AND e.objid = c.oid AND e.deptype = 'e')
         ORDER BY 1, 2"
    );
    let rows = match server.conn.query(&sql).await {
        Ok(rows) => rows,
        Err(e) => return problems.push(Problem::unchecked("unlogged_tables", &server.label, &e)),
    };
    let publication = quote::ident(name);
    for r in 0..rows.rows.len() {
        let object = quote::qualified(rows.get(r, 0).unwrap_or(""), rows.get(r, 1).unwrap_or(""));
        let problem = match rows.get(r, 2) {
            Some("f") => Problem::warning(
                "unlogged_tables",
                object.clone(),
                format!(
                    "is a foreign table: publication {publication} skips it, so neither its \
                     definition nor anything written through it moves"
                ),
                format!(
                    "recreate it on the destination after the move (CREATE SERVER, CREATE USER \
                     MAPPING, CREATE FOREIGN TABLE {object} ...), or leave it behind knowingly"
                ),
            ),
            Some("m") => Problem::warning(
                "unlogged_tables",
                object.clone(),
                format!(
                    "is a materialized view: publication {publication} skips it, so it does \
                     not move"
                ),
                format!(
                    "recreate it on the destination after the copy (CREATE MATERIALIZED VIEW \
                     {object} AS ...) and REFRESH MATERIALIZED VIEW it there"
                ),
            ),
            _ => Problem::error(
                "unlogged_tables",
                object.clone(),
                format!(
                    "is an unlogged table: publication {publication} takes every table, but \
                     logical replication skips unlogged ones, so its rows would silently stay \
                     behind"
                ),
                format!(
                    "ALTER TABLE {object} SET LOGGED; before the move, or leave it out \
                     knowingly with a publication that lists its tables (CREATE PUBLICATION \
                     ... FOR TABLE ...)"
                ),
            ),
        };
        problems.push(problem);
    }
}
