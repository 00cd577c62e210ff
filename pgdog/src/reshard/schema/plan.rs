//! Choosing the dump entries a phase creates: only what the publication's tables need, each
//! in its phase (tables and primary keys before the copy, indexes, constraints and triggers
//! after it), with integer keys widened to bigint.

use std::collections::BTreeSet;

use super::dump::DumpEntry;
use super::facts::SourceFacts;
use super::rewrite;
use super::Phase;

/// One object to create on every destination shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// The dump entry, with the statements to run (rewritten where needed).
    pub entry: DumpEntry,
    /// Built concurrently with others of its kind (secondary indexes).
    pub parallel: bool,
}

/// Where primary keys go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyPlacement {
    /// With the tables, before the copy (what `schema-sync` does: the destination is usable
    /// for writes as soon as the pre phase is done).
    #[default]
    WithTables,
    /// After the copy, with the other indexes (what the data copy does: loading into tables
    /// without an index is faster, and building the key afterwards also proves the copy has
    /// no duplicate key).
    AfterCopy,
}

/// Where a dump entry goes, if anywhere.
fn phase_of(entry: &DumpEntry, facts: &SourceFacts, keys: KeyPlacement) -> Option<Phase> {
    let key_phase = match keys {
        KeyPlacement::WithTables => Phase::Pre,
        KeyPlacement::AfterCopy => Phase::Post,
    };
    let schema = entry.schema.clone().unwrap_or_default();
    let own = (schema.clone(), entry.name.clone());
    let first = entry.statements.first().map(String::as_str).unwrap_or("");
    let on_table = || {
        rewrite::target_of(first)
            .map(|(s, t)| {
                facts
                    .tables
                    .contains(&(if s.is_empty() { schema.clone() } else { s }, t))
            })
            .unwrap_or(false)
    };
    match entry.kind.as_str() {
        "SCHEMA" => facts.schemas.contains(&entry.name).then_some(Phase::Pre),
        "EXTENSION" => facts
            .extensions
            .contains_key(&entry.name)
            .then_some(Phase::Pre),
        "TYPE" | "DOMAIN" => facts.types.contains(&own).then_some(Phase::Pre),
        "FUNCTION" | "PROCEDURE" | "AGGREGATE" => {
            facts.functions.contains(&own).then_some(Phase::Pre)
        }
        "COLLATION" => facts.collations.contains(&own).then_some(Phase::Pre),
        "TABLE" => facts.tables.contains(&own).then_some(Phase::Pre),
        "SEQUENCE" | "SEQUENCE OWNED BY" => facts.sequences.contains(&own).then_some(Phase::Pre),
        "DEFAULT" | "TABLE ATTACH" => on_table().then_some(Phase::Pre),
        "CONSTRAINT" => on_table().then(|| {
            if rewrite::adds_primary_key(first) {
                key_phase
            } else {
                Phase::Post
            }
        }),
        "INDEX ATTACH" => {
            let index = rewrite::target_of(first)?;
            if facts.primary_key_indexes.contains(&index) {
                Some(key_phase)
            } else {
                facts.indexes.contains(&index).then_some(Phase::Post)
            }
        }
        "FK CONSTRAINT" | "INDEX" | "TRIGGER" | "RULE" | "POLICY" | "ROW SECURITY" => {
            on_table().then_some(Phase::Post)
        }
        _ => None,
    }
}

/// The entries `phase` creates, in dump order (which respects dependencies), rewritten.
pub fn plan(
    entries: &[DumpEntry],
    facts: &SourceFacts,
    phase: Phase,
    keys: KeyPlacement,
) -> Result<Vec<Planned>, String> {
    let mut planned = Vec::new();
    for entry in entries {
        if phase_of(entry, facts, keys) != Some(phase) {
            continue;
        }
        let mut entry = entry.clone();
        let schema = entry.schema.clone().unwrap_or_default();
        let label = entry.label();
        match entry.kind.as_str() {
            "TABLE" => {
                let columns: BTreeSet<String> = facts
                    .widened
                    .iter()
                    .filter(|(s, t, _)| *s == schema && *t == entry.name)
                    .map(|(_, _, c)| c.clone())
                    .collect();
                if !columns.is_empty() {
                    for statement in &mut entry.statements {
                        *statement = rewrite::widen_columns(statement, &columns)
                            .map_err(|e| format!("{label}: {e}"))?;
                    }
                }
            }
            "SEQUENCE"
                if facts
                    .widened_sequences
                    .contains(&(schema.clone(), entry.name.clone())) =>
            {
                for statement in &mut entry.statements {
                    *statement =
                        rewrite::widen_sequence(statement).map_err(|e| format!("{label}: {e}"))?;
                }
            }
            _ => {}
        }
        // Secondary indexes, and primary keys built after the copy (one per table; the
        // attaches of partitions' keys run after every parallel step).
        let parallel = entry.kind == "INDEX"
            || (entry.kind == "CONSTRAINT"
                && phase == Phase::Post
                && entry
                    .statements
                    .first()
                    .is_some_and(|s| rewrite::adds_primary_key(s)));
        planned.push(Planned { entry, parallel });
    }
    Ok(planned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reshard::schema::dump;

    const DUMP: &str = include_str!("plan_test_dump.sql");

    fn name(schema: &str, name: &str) -> (String, String) {
        (schema.into(), name.into())
    }

    fn facts() -> SourceFacts {
        SourceFacts {
            tables: [
                name("Sales", "Customers"),
                name("Sales", "orders"),
                name("inventory", "events"),
                name("inventory", "events_2024"),
            ]
            .into(),
            types: [name("Sales", "status"), name("inventory", "positive_int")].into(),
            functions: [name("public", "touch()")].into(),
            sequences: [
                name("Sales", "Customers_id_seq"),
                name("Sales", "orders_id_seq"),
            ]
            .into(),
            schemas: [
                "Sales".to_string(),
                "inventory".to_string(),
                "public".to_string(),
            ]
            .into(),
            indexes: [
                name("inventory", "events_pkey"),
                name("inventory", "events_body"),
                name("inventory", "events_2024_pkey"),
                name("inventory", "events_2024_body_idx"),
            ]
            .into(),
            primary_key_indexes: [
                name("inventory", "events_pkey"),
                name("inventory", "events_2024_pkey"),
            ]
            .into(),
            widened: [
                (
                    "Sales".to_string(),
                    "Customers".to_string(),
                    "id".to_string(),
                ),
                (
                    "Sales".to_string(),
                    "orders".to_string(),
                    "customer_id".to_string(),
                ),
                ("Sales".to_string(), "orders".to_string(), "id".to_string()),
            ]
            .into(),
            widened_sequences: [name("Sales", "Customers_id_seq")].into(),
            ..Default::default()
        }
    }

    fn labels(planned: &[Planned]) -> Vec<String> {
        planned.iter().map(|p| p.entry.label()).collect()
    }

    #[test]
    fn pre_phase_has_tables_keys_and_dependencies() {
        let entries = dump::parse(DUMP).unwrap();
        let pre = plan(&entries, &facts(), Phase::Pre, KeyPlacement::WithTables).unwrap();
        assert_eq!(
            labels(&pre),
            [
                "SCHEMA Sales",
                "SCHEMA inventory",
                "TYPE Sales.status",
                "DOMAIN inventory.positive_int",
                "FUNCTION public.touch()",
                "TABLE Sales.Customers",
                "SEQUENCE Sales.Customers_id_seq",
                "SEQUENCE OWNED BY Sales.Customers_id_seq",
                "TABLE Sales.orders",
                "SEQUENCE Sales.orders_id_seq",
                "TABLE inventory.events",
                "TABLE inventory.events_2024",
                "TABLE ATTACH inventory.events_2024",
                "DEFAULT Sales.Customers id",
                "CONSTRAINT Sales.Customers Customers_pkey",
                "CONSTRAINT Sales.orders orders_pkey",
                "CONSTRAINT inventory.events events_pkey",
                "CONSTRAINT inventory.events_2024 events_2024_pkey",
                "INDEX ATTACH inventory.events_2024_pkey",
            ]
        );
        let customers = &pre[5].entry.statements[0];
        assert!(customers.contains("id bigint NOT NULL"), "{customers}");
        let orders = &pre[8].entry.statements[0];
        assert!(orders.contains("customer_id bigint NOT NULL"), "{orders}");
        assert!(
            !pre[6].entry.statements[0].contains("AS"),
            "{}",
            pre[6].entry.statements[0]
        );
    }

    #[test]
    fn post_phase_has_indexes_constraints_triggers() {
        let entries = dump::parse(DUMP).unwrap();
        let post = plan(&entries, &facts(), Phase::Post, KeyPlacement::WithTables).unwrap();
        assert_eq!(
            labels(&post),
            [
                "CONSTRAINT Sales.Customers Customers_Email_key",
                "INDEX Sales.orders_paid",
                "INDEX inventory.events_body",
                "INDEX inventory.events_2024_body_idx",
                "INDEX ATTACH inventory.events_2024_body_idx",
                "TRIGGER Sales.Customers customers_touch",
                "FK CONSTRAINT Sales.orders orders_customer_id_fkey",
            ]
        );
        assert!(post[1].parallel && !post[0].parallel);
    }

    #[test]
    fn keys_after_the_copy_move_to_post_and_build_in_parallel() {
        let entries = dump::parse(DUMP).unwrap();
        let pre = plan(&entries, &facts(), Phase::Pre, KeyPlacement::AfterCopy).unwrap();
        assert!(
            labels(&pre)
                .iter()
                .all(|l| !l.ends_with("_pkey") && !l.starts_with("INDEX ATTACH")),
            "{:?}",
            labels(&pre)
        );
        let post = plan(&entries, &facts(), Phase::Post, KeyPlacement::AfterCopy).unwrap();
        let keys: Vec<_> = post
            .iter()
            .filter(|p| p.entry.label().ends_with("_pkey"))
            .map(|p| (p.entry.label(), p.parallel))
            .collect();
        assert_eq!(
            keys,
            [
                (
                    "CONSTRAINT Sales.Customers Customers_pkey".to_string(),
                    true
                ),
                ("CONSTRAINT Sales.orders orders_pkey".to_string(), true),
                ("CONSTRAINT inventory.events events_pkey".to_string(), true),
                (
                    "CONSTRAINT inventory.events_2024 events_2024_pkey".to_string(),
                    true
                ),
                ("INDEX ATTACH inventory.events_2024_pkey".to_string(), false),
            ]
        );
    }
}
