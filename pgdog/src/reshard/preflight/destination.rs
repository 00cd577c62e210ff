//! The destination shards against what the source reported: a server version at least the
//! source's, the publication's tables absent or empty before the copy and present after it,
//! and the extensions those tables need available.

use std::collections::{BTreeMap, BTreeSet};

use super::servers::Server;
use super::{list, Problem, SourceFacts};
use crate::quote;
use crate::reshard::schema::Phase;

/// Problems found on several destination shards, reported once per table or extension.
#[derive(Debug, Default)]
pub(super) struct Findings {
    /// Tables that already have rows → the shards where they do.
    not_empty: BTreeMap<String, Vec<String>>,
    /// Extensions the tables need → the shards that do not have them.
    unavailable: BTreeMap<String, Vec<String>>,
}

/// Runs the checks on one destination shard.
pub(super) async fn check(
    server: &mut Server,
    phase: Phase,
    facts: &SourceFacts,
    findings: &mut Findings,
    problems: &mut Vec<Problem>,
) {
    server_version(server, facts, problems);
    extensions(server, facts, findings, problems).await;
    if !facts.tables_known || facts.tables.is_empty() {
        return;
    }
    let existing = match existing_tables(server, &facts.tables).await {
        Ok(existing) => existing,
        Err(e) => {
            let check = match phase {
                Phase::Pre => "destination_not_empty",
                Phase::Post | Phase::Cutover | Phase::Sync => "destination_missing_tables",
            };
            return problems.push(Problem::unchecked(check, &server.label, &e));
        }
    };
    match phase {
        Phase::Pre => not_empty(server, &existing, findings, problems).await,
        Phase::Post | Phase::Cutover | Phase::Sync => missing(server, facts, &existing, problems),
    }
}

fn server_version(server: &Server, facts: &SourceFacts, problems: &mut Vec<Problem>) {
    let (Some(source), Some(destination)) = (facts.version, server.version) else {
        return;
    };
    if let Some((source, destination)) = older_major(source, destination) {
        problems.push(Problem::error(
            "server_version",
            &server.label,
            format!(
                "runs PostgreSQL {destination} but the source runs PostgreSQL {source}: the \
                 source's schema (dumped by a pg_dump for {source}) may use syntax and features \
                 {destination} does not have"
            ),
            format!(
                "upgrade the destination to PostgreSQL {source} or newer (moving to a newer \
                 major version is fine)"
            ),
        ));
    }
}

/// The major versions (source, destination) when the destination's is older, from
/// `server_version_num`s.
fn older_major(source: u32, destination: u32) -> Option<(u32, u32)> {
    let (source, destination) = (source / 10_000, destination / 10_000);
    (destination < source).then_some((source, destination))
}

/// A destination table: (schema, name) → whether it is partitioned.
type Existing = BTreeMap<(String, String), bool>;

/// Which of `tables` exist on the server (as tables or partitioned tables).
async fn existing_tables(
    server: &mut Server,
    tables: &BTreeSet<(String, String)>,
) -> Result<Existing, crate::reshard::conn::ConnError> {
    let values: Vec<String> = tables
        .iter()
        .map(|(schema, name)| format!("({}, {})", quote::literal(schema), quote::literal(name)))
        .collect();
    let sql = format!(
        "SELECT n.nspname, c.relname, c.relkind = 'p'
         FROM pg_catalog.pg_class c
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'p')
           AND (n.nspname, c.relname) IN (VALUES {})",
        values.join(", ")
    );
    let rows = server.conn.query(&sql).await?;
    Ok(rows
        .rows
        .iter()
        .filter_map(|row| {
            let schema = row.first()?.clone()?;
            let name = row.get(1)?.clone()?;
            Some(((schema, name), row.get(2)?.as_deref() == Some("t")))
        })
        .collect())
}

/// Before the copy: tables that already hold rows would get the source's rows a second time.
async fn not_empty(
    server: &mut Server,
    existing: &Existing,
    findings: &mut Findings,
    problems: &mut Vec<Problem>,
) {
    // Partitioned tables hold no rows themselves; their partitions are checked one by one.
    let leaves: Vec<String> = existing
        .iter()
        .filter(|(_, partitioned)| !**partitioned)
        .map(|((schema, name), _)| quote::qualified(schema, name))
        .collect();
    for chunk in leaves.chunks(200) {
        let probes: Vec<String> = chunk
            .iter()
            .map(|table| {
                format!(
                    "SELECT {} WHERE EXISTS (SELECT 1 FROM {table})",
                    quote::literal(table)
                )
            })
            .collect();
        let rows = match server.conn.query(&probes.join("\nUNION ALL\n")).await {
            Ok(rows) => rows,
            Err(e) => {
                return problems.push(Problem::unchecked(
                    "destination_not_empty",
                    &server.label,
                    &e,
                ))
            }
        };
        for r in 0..rows.rows.len() {
            if let Some(table) = rows.get(r, 0) {
                findings
                    .not_empty
                    .entry(table.to_string())
                    .or_default()
                    .push(server.label.clone());
            }
        }
    }
}

/// After the copy: every table must be there.
fn missing(server: &Server, facts: &SourceFacts, existing: &Existing, problems: &mut Vec<Problem>) {
    let missing: Vec<String> = facts
        .tables
        .iter()
        .filter(|table| !existing.contains_key(*table))
        .map(|(schema, name)| quote::qualified(schema, name))
        .collect();
    if missing.is_empty() {
        return;
    }
    problems.push(Problem::error(
        "destination_missing_tables",
        &server.label,
        format!(
            "{} of the publication's {} tables do not exist here: {}",
            missing.len(),
            facts.tables.len(),
            list(&missing, 10)
        ),
        "run the pre phase first (`pgdog schema-sync` without --data-sync-complete) and copy \
         the data; the post and cutover phases only complete tables that exist"
            .into(),
    ));
}

/// Extensions the tables need that the server cannot create.
async fn extensions(
    server: &mut Server,
    facts: &SourceFacts,
    findings: &mut Findings,
    problems: &mut Vec<Problem>,
) {
    if facts.extensions.is_empty() {
        return;
    }
    let names: Vec<String> = facts.extensions.keys().map(|n| quote::literal(n)).collect();
    let sql = format!(
        "SELECT name FROM pg_catalog.pg_available_extensions WHERE name IN ({})",
        names.join(", ")
    );
    let rows = match server.conn.query(&sql).await {
        Ok(rows) => rows,
        Err(e) => return problems.push(Problem::unchecked("extensions", &server.label, &e)),
    };
    let available: BTreeSet<&str> = (0..rows.rows.len())
        .filter_map(|r| rows.get(r, 0))
        .collect();
    for name in facts.extensions.keys() {
        if !available.contains(name.as_str()) {
            findings
                .unavailable
                .entry(name.clone())
                .or_default()
                .push(server.label.clone());
        }
    }
}

impl Findings {
    /// One problem per table with rows and per unavailable extension, naming every shard.
    pub(super) fn report(self, facts: &SourceFacts, problems: &mut Vec<Problem>) {
        for (table, shards) in self.not_empty {
            problems.push(Problem::error(
                "destination_not_empty",
                table.clone(),
                format!(
                    "already has rows on {}: copying the source's rows would add them a second \
                     time (duplicates, or a failed copy on a unique key)",
                    shards.join(", ")
                ),
                format!(
                    "if they are leftovers of an earlier attempt, TRUNCATE {table}; on those \
                     shards (or drop the destination tables: schema sync recreates them); if \
                     they are real data, move to empty shards"
                ),
            ));
        }
        for (name, shards) in self.unavailable {
            let (version, tables) = match facts.extensions.get(&name) {
                Some(used) => (used.version.clone(), used.tables.iter().cloned().collect()),
                None => (String::new(), Vec::new()),
            };
            problems.push(Problem::error(
                "extensions",
                format!("extension {}", quote::ident(&name)),
                format!(
                    "needed by {} (version {version} on the source), but not available on {} \
                     (not in pg_available_extensions): schema sync cannot create it there",
                    list(&tables, 5),
                    shards.join(", ")
                ),
                format!(
                    "install the package that provides extension {} (version {version} or \
                     newer) on those servers; contrib extensions come with the PostgreSQL \
                     contrib package",
                    quote::ident(&name)
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::older_major;

    #[test]
    fn only_older_major_versions_are_refused() {
        assert_eq!(older_major(150004, 140009), Some((15, 14)));
        assert_eq!(older_major(150004, 150001), None);
        assert_eq!(older_major(150004, 160002), None);
    }
}
