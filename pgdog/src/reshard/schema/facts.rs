//! What the source's catalog says about the publication's tables: the objects they depend on
//! (types, functions, sequences, extensions, collations, schemas), their indexes, and which
//! integer key columns become bigint on the destination.

use std::collections::{BTreeMap, BTreeSet};

use crate::reshard::conn::{Conn, ConnError};
use crate::reshard::publication::TableRef;

/// A schema-qualified name, unquoted.
pub type Name = (String, String);

/// A column: schema, table, column.
pub type ColumnName = (String, String, String);

/// The source objects a schema sync creates, and the columns it widens.
#[derive(Debug, Default, Clone)]
pub struct SourceFacts {
    /// The publication's tables (whole partition trees).
    pub tables: BTreeSet<Name>,
    /// Types, domains and composite types the tables need.
    pub types: BTreeSet<Name>,
    /// Functions, as pg_dump names them: `name(argument types)`.
    pub functions: BTreeSet<Name>,
    /// Sequences owned by or used in defaults of the tables.
    pub sequences: BTreeSet<Name>,
    /// Collations the tables need.
    pub collations: BTreeSet<Name>,
    /// Extensions the tables need (by name), with the tables that need them.
    pub extensions: BTreeMap<String, BTreeSet<Name>>,
    /// Schemas holding any of the above.
    pub schemas: BTreeSet<String>,
    /// Indexes of the tables.
    pub indexes: BTreeSet<Name>,
    /// Indexes that back primary keys.
    pub primary_key_indexes: BTreeSet<Name>,
    /// Integer columns that become bigint: primary keys, columns referencing them, and the
    /// same columns across each partition tree.
    pub widened: BTreeSet<ColumnName>,
    /// Sequences owned by widened columns: `AS bigint`.
    pub widened_sequences: BTreeSet<Name>,
    /// For each table, the sequences its columns use (owned or in defaults).
    pub table_sequences: BTreeMap<Name, BTreeSet<Name>>,
}

impl SourceFacts {
    /// Reads the facts for `tables` from the source.
    pub async fn read(conn: &mut Conn, tables: &[TableRef]) -> Result<SourceFacts, ConnError> {
        let mut facts = SourceFacts {
            tables: tables
                .iter()
                .map(|t| (t.schema.clone(), t.name.clone()))
                .collect(),
            ..Default::default()
        };
        if tables.is_empty() {
            return Ok(facts);
        }
        let oids = format!(
            "ARRAY[{}]::oid[]",
            tables
                .iter()
                .map(|t| t.oid.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        for row in conn.query(&dependencies_sql(&oids)).await?.rows {
            let [Some(kind), Some(schema), Some(name)] = [&row[0], &row[1], &row[2]] else {
                continue;
            };
            let entry = (schema.clone(), name.clone());
            if kind == "extension" {
                if let Some(Some(extension)) = row.get(3) {
                    facts
                        .extensions
                        .entry(extension.clone())
                        .or_default()
                        .insert(entry);
                }
                continue;
            }
            match kind.as_str() {
                "type" => facts.types.insert(entry),
                "function" => facts.functions.insert(entry),
                "sequence" => facts.sequences.insert(entry),
                "collation" => facts.collations.insert(entry),
                "index" => facts.indexes.insert(entry),
                "pk_index" => {
                    facts.indexes.insert(entry.clone());
                    facts.primary_key_indexes.insert(entry)
                }
                _ => false,
            };
            facts.schemas.insert(schema.clone());
        }
        for (schema, _) in &facts.tables {
            facts.schemas.insert(schema.clone());
        }
        for row in conn.query(&table_sequences_sql(&oids)).await?.rows {
            if let [Some(ts), Some(tn), Some(ss), Some(sn)] = [&row[0], &row[1], &row[2], &row[3]] {
                let sequence = (ss.clone(), sn.clone());
                facts.sequences.insert(sequence.clone());
                facts.schemas.insert(ss.clone());
                facts
                    .table_sequences
                    .entry((ts.clone(), tn.clone()))
                    .or_default()
                    .insert(sequence);
            }
        }
        let keys = KeyFacts::read(conn, &oids).await?;
        facts.widened = keys.widened();
        facts.widened_sequences = keys
            .owned_sequences
            .iter()
            .filter(|(column, _)| facts.widened.contains(column))
            .map(|(_, sequence)| sequence.clone())
            .collect();
        Ok(facts)
    }
}

/// Objects the tables depend on, walking pg_depend from the tables and their parts
/// (defaults, constraints, triggers, indexes, policies, rules, owned sequences) through types,
/// functions, operator classes, sequences and composite types (domain constraints are followed
/// from their domains) up to the extensions that own any of them, remembering which table
/// each walk started from.
fn dependencies_sql(oids: &str) -> String {
    format!(
        "WITH RECURSIVE roots(root, classid, objid) AS (
            SELECT oid, 'pg_class'::regclass::oid, oid FROM pg_class WHERE oid = ANY({oids})
            UNION ALL SELECT adrelid, 'pg_attrdef'::regclass::oid, oid FROM pg_attrdef WHERE adrelid = ANY({oids})
            UNION ALL SELECT conrelid, 'pg_constraint'::regclass::oid, oid FROM pg_constraint WHERE conrelid = ANY({oids})
            UNION ALL SELECT tgrelid, 'pg_trigger'::regclass::oid, oid FROM pg_trigger WHERE tgrelid = ANY({oids}) AND NOT tgisinternal
            UNION ALL SELECT indrelid, 'pg_class'::regclass::oid, indexrelid FROM pg_index WHERE indrelid = ANY({oids})
            UNION ALL SELECT polrelid, 'pg_policy'::regclass::oid, oid FROM pg_policy WHERE polrelid = ANY({oids})
            UNION ALL SELECT ev_class, 'pg_rewrite'::regclass::oid, oid FROM pg_rewrite WHERE ev_class = ANY({oids})
            UNION ALL SELECT d.refobjid, d.classid, d.objid FROM pg_depend d
                WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = ANY({oids})
                  AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
        ), deps(root, classid, objid) AS (
            SELECT root, classid, objid FROM roots
            UNION
            SELECT deps.root, step.classid, step.objid FROM deps, LATERAL (
                SELECT d.refclassid AS classid, d.refobjid AS objid FROM pg_depend d
                WHERE d.classid = deps.classid AND d.objid = deps.objid
                  AND d.deptype IN ('n', 'a', 'i', 'e')
                  AND (d.refclassid <> 'pg_class'::regclass
                       OR (SELECT relkind FROM pg_class WHERE oid = d.refobjid) IN ('S', 'c'))
                UNION ALL
                SELECT 'pg_constraint'::regclass::oid, c.oid FROM pg_constraint c
                WHERE deps.classid = 'pg_type'::regclass AND c.contypid = deps.objid
            ) step
            WHERE deps.classid <> 'pg_extension'::regclass
        )
        SELECT 'type', n.nspname, t.typname, NULL FROM deps JOIN pg_type t ON deps.classid = 'pg_type'::regclass AND t.oid = deps.objid
            JOIN pg_namespace n ON n.oid = t.typnamespace
            WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
        UNION
        SELECT 'function', n.nspname, p.proname || '(' || oidvectortypes(p.proargtypes) || ')', NULL
            FROM deps JOIN pg_proc p ON deps.classid = 'pg_proc'::regclass AND p.oid = deps.objid
            JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
        UNION
        SELECT CASE WHEN c.relkind = 'S' THEN 'sequence' WHEN c.relkind = 'c' THEN 'type' WHEN c.relkind IN ('i', 'I') THEN
                   CASE WHEN EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = c.oid AND k.contype = 'p') THEN 'pk_index' ELSE 'index' END
                   ELSE 'relation' END,
               n.nspname, c.relname, NULL
            FROM deps JOIN pg_class c ON deps.classid = 'pg_class'::regclass AND c.oid = deps.objid
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('S', 'c', 'i', 'I')
        UNION
        SELECT 'collation', n.nspname, c.collname, NULL FROM deps JOIN pg_collation c ON deps.classid = 'pg_collation'::regclass AND c.oid = deps.objid
            JOIN pg_namespace n ON n.oid = c.collnamespace
            WHERE n.nspname <> 'pg_catalog'
        UNION
        SELECT 'extension', rn.nspname, r.relname, e.extname FROM deps
            JOIN pg_extension e ON deps.classid = 'pg_extension'::regclass AND e.oid = deps.objid
            JOIN pg_class r ON r.oid = deps.root JOIN pg_namespace rn ON rn.oid = r.relnamespace"
    )
}

/// Sequences each table uses: owned by one of its columns (serial, identity) or named in
/// one of its defaults.
fn table_sequences_sql(oids: &str) -> String {
    format!(
        "SELECT tn.nspname, t.relname, sn.nspname, s.relname FROM pg_depend d
            JOIN pg_class s ON d.classid = 'pg_class'::regclass AND s.oid = d.objid AND s.relkind = 'S'
            JOIN pg_class t ON d.refclassid = 'pg_class'::regclass AND t.oid = d.refobjid
            JOIN pg_namespace sn ON sn.oid = s.relnamespace JOIN pg_namespace tn ON tn.oid = t.relnamespace
            WHERE t.oid = ANY({oids}) AND d.deptype IN ('a', 'i')
        UNION
        SELECT tn.nspname, t.relname, sn.nspname, s.relname FROM pg_attrdef a
            JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = a.oid AND d.refclassid = 'pg_class'::regclass
            JOIN pg_class s ON s.oid = d.refobjid AND s.relkind = 'S'
            JOIN pg_class t ON t.oid = a.adrelid
            JOIN pg_namespace sn ON sn.oid = s.relnamespace JOIN pg_namespace tn ON tn.oid = t.relnamespace
            WHERE a.adrelid = ANY({oids})"
    )
}

/// Key columns and how they relate, to decide which integer columns become bigint.
#[derive(Debug, Default)]
struct KeyFacts {
    /// Integer (int2/int4) columns of the tables.
    integer_columns: BTreeSet<ColumnName>,
    /// Primary-key columns.
    primary_key_columns: BTreeSet<ColumnName>,
    /// Foreign-key column → referenced column.
    references: Vec<(ColumnName, ColumnName)>,
    /// Partition → parent.
    parents: Vec<(Name, Name)>,
    /// Column → sequence it owns.
    owned_sequences: Vec<(ColumnName, Name)>,
}

impl KeyFacts {
    async fn read(conn: &mut Conn, oids: &str) -> Result<KeyFacts, ConnError> {
        let mut facts = KeyFacts::default();
        let columns = |row: &[Option<String>], at: usize| -> Option<ColumnName> {
            Some((
                row.get(at)?.clone()?,
                row.get(at + 1)?.clone()?,
                row.get(at + 2)?.clone()?,
            ))
        };
        let sql = format!(
            "SELECT n.nspname, c.relname, a.attname,
                    a.atttypid IN ('int2'::regtype, 'int4'::regtype),
                    EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'p' AND a.attnum = ANY(k.conkey))
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.oid = ANY({oids}) AND a.attnum > 0 AND NOT a.attisdropped"
        );
        for row in conn.query(&sql).await?.rows {
            let Some(column) = columns(&row, 0) else {
                continue;
            };
            if row.get(3).cloned().flatten().as_deref() == Some("t") {
                facts.integer_columns.insert(column.clone());
            }
            if row.get(4).cloned().flatten().as_deref() == Some("t") {
                facts.primary_key_columns.insert(column);
            }
        }
        let sql = format!(
            "SELECT n.nspname, c.relname, a.attname, rn.nspname, r.relname, ra.attname
             FROM pg_constraint k, unnest(k.conkey, k.confkey) AS u(col, refcol),
                  pg_class c, pg_namespace n, pg_attribute a, pg_class r, pg_namespace rn, pg_attribute ra
             WHERE k.contype = 'f' AND k.conrelid = ANY({oids})
               AND c.oid = k.conrelid AND n.oid = c.relnamespace AND a.attrelid = c.oid AND a.attnum = u.col
               AND r.oid = k.confrelid AND rn.oid = r.relnamespace AND ra.attrelid = r.oid AND ra.attnum = u.refcol"
        );
        for row in conn.query(&sql).await?.rows {
            if let (Some(from), Some(to)) = (columns(&row, 0), columns(&row, 3)) {
                facts.references.push((from, to));
            }
        }
        let sql = format!(
            "SELECT cn.nspname, c.relname, pn.nspname, p.relname FROM pg_inherits i
             JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace cn ON cn.oid = c.relnamespace
             JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace pn ON pn.oid = p.relnamespace
             WHERE i.inhrelid = ANY({oids})"
        );
        for row in conn.query(&sql).await?.rows {
            if let [Some(cs), Some(cn), Some(ps), Some(pn)] = [&row[0], &row[1], &row[2], &row[3]] {
                facts
                    .parents
                    .push(((cs.clone(), cn.clone()), (ps.clone(), pn.clone())));
            }
        }
        let sql = format!(
            "SELECT tn.nspname, t.relname, a.attname, sn.nspname, s.relname FROM pg_depend d
             JOIN pg_class s ON d.classid = 'pg_class'::regclass AND s.oid = d.objid AND s.relkind = 'S'
             JOIN pg_class t ON d.refclassid = 'pg_class'::regclass AND t.oid = d.refobjid
             JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
             JOIN pg_namespace sn ON sn.oid = s.relnamespace JOIN pg_namespace tn ON tn.oid = t.relnamespace
             WHERE t.oid = ANY({oids}) AND d.deptype IN ('a', 'i')"
        );
        for row in conn.query(&sql).await?.rows {
            if let (Some(column), [Some(ss), Some(sn)]) = (columns(&row, 0), [&row[3], &row[4]]) {
                facts
                    .owned_sequences
                    .push((column, (ss.clone(), sn.clone())));
            }
        }
        Ok(facts)
    }

    /// Integer primary-key columns, then (until nothing changes) integer columns that
    /// reference widened ones and the same column in the other tables of a partition tree.
    fn widened(&self) -> BTreeSet<ColumnName> {
        let mut widened: BTreeSet<ColumnName> = self
            .primary_key_columns
            .intersection(&self.integer_columns)
            .cloned()
            .collect();
        loop {
            let mut added = Vec::new();
            for (from, to) in &self.references {
                if widened.contains(to) && !widened.contains(from) {
                    added.push(from.clone());
                }
            }
            for (child, parent) in &self.parents {
                for (schema, table, column) in &widened {
                    let far = if (schema, table) == (&child.0, &child.1) {
                        parent
                    } else if (schema, table) == (&parent.0, &parent.1) {
                        child
                    } else {
                        continue;
                    };
                    let other = (far.0.clone(), far.1.clone(), column.clone());
                    if !widened.contains(&other) {
                        added.push(other);
                    }
                }
            }
            let added: Vec<ColumnName> = added
                .into_iter()
                .filter(|c| self.integer_columns.contains(c))
                .collect();
            if added.is_empty() {
                return widened;
            }
            widened.extend(added);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(table: &str, column: &str) -> ColumnName {
        ("s".into(), table.into(), column.into())
    }

    #[test]
    fn widens_keys_references_and_partitions() {
        let facts = KeyFacts {
            integer_columns: [
                col("users", "id"),
                col("orders", "id"),
                col("orders", "user_id"),
                col("orders", "qty"),
                col("events", "user_id"),
                col("events_1", "user_id"),
            ]
            .into(),
            primary_key_columns: [
                col("users", "id"),
                col("orders", "id"),
                col("codes", "code"),
            ]
            .into(),
            references: vec![
                (col("orders", "user_id"), col("users", "id")),
                (col("events_1", "user_id"), col("users", "id")),
            ],
            parents: vec![(
                ("s".into(), "events_1".into()),
                ("s".into(), "events".into()),
            )],
            owned_sequences: Vec::new(),
        };
        let widened = facts.widened();
        assert_eq!(
            widened,
            [
                col("users", "id"),
                col("orders", "id"),
                col("orders", "user_id"),
                col("events_1", "user_id"),
                col("events", "user_id"),
            ]
            .into()
        );
    }
}
