//! Which tables `VERIFY` compares: every server's user tables (ordinary and partitioned,
//! outside pgdog's and the system's schemas), the one a name stands for, and where a table is
//! missing.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{bounded, VerifyError, VerifyOptions};
use crate::reshard::conn::{Conn, Rows};

/// The user tables of a database: ordinary and partitioned, outside pgdog's and the system's
/// schemas, not temporary.
pub(super) const TABLES_SQL: &str = "SELECT n.nspname, c.relname, c.oid, c.relkind::text \
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
    WHERE c.relkind IN ('r', 'p') AND c.relpersistence <> 't' \
    AND n.nspname NOT IN ('pgdog', 'pg_catalog', 'information_schema') \
    ORDER BY 1, 2";

/// A table as one server lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Listed {
    /// Its OID there.
    pub(super) oid: u32,
    /// A partitioned table (its rows are in its partitions).
    pub(super) partitioned: bool,
}

/// The tables of one server by (schema, name).
pub(super) type Listing = BTreeMap<(String, String), Listed>;

/// The tables [`TABLES_SQL`] returned.
pub(super) fn listing(rows: &Rows) -> Listing {
    let mut out = Listing::new();
    for r in 0..rows.rows.len() {
        let (Some(schema), Some(name), Some(oid)) = (
            rows.get(r, 0),
            rows.get(r, 1),
            rows.get(r, 2).and_then(|v| v.parse().ok()),
        ) else {
            continue;
        };
        out.insert(
            (schema.to_string(), name.to_string()),
            Listed {
                oid,
                partitioned: rows.get(r, 3) == Some("p"),
            },
        );
    }
    out
}

/// The tables to compare: the source's ordinary tables (partitions included, their
/// partitioned parents not: the rows are in the partitions), or the one named (a partitioned
/// table stands for its partitions).
pub(super) async fn chosen_tables(
    conn: &mut Conn,
    listing: &Listing,
    options: &VerifyOptions,
    database: &str,
    limit: Duration,
) -> Result<Vec<(String, String)>, VerifyError> {
    let Some(wanted) = &options.table else {
        return Ok(listing
            .iter()
            .filter(|(_, t)| !t.partitioned)
            .map(|(key, _)| key.clone())
            .collect());
    };
    let key = find_table(listing, wanted, database)?;
    let Some(found) = listing.get(&key) else {
        return Ok(vec![key]);
    };
    if !found.partitioned {
        return Ok(vec![key]);
    }
    let rows = bounded(
        limit,
        conn.addr().to_string(),
        conn.query(&format!(
            "SELECT relid::oid FROM pg_catalog.pg_partition_tree({}) WHERE isleaf",
            found.oid
        )),
    )
    .await?;
    let leaves: Vec<u32> = rows
        .rows
        .iter()
        .filter_map(|r| r.first()?.as_deref()?.parse().ok())
        .collect();
    Ok(listing
        .iter()
        .filter(|(_, t)| !t.partitioned && leaves.contains(&t.oid))
        .map(|(key, _)| key.clone())
        .collect())
}

/// The table `wanted` names: `schema.name` exactly, else a `name` of one schema (of
/// `public` when several have it).
pub(super) fn find_table(
    listing: &Listing,
    wanted: &str,
    database: &str,
) -> Result<(String, String), VerifyError> {
    if let Some((key, _)) = listing
        .iter()
        .find(|((schema, name), _)| format!("{schema}.{name}") == wanted)
    {
        return Ok(key.clone());
    }
    let named: Vec<&(String, String)> = listing.keys().filter(|(_, name)| name == wanted).collect();
    match named.as_slice() {
        [] => Err(VerifyError::UnknownTable {
            table: wanted.to_string(),
            database: database.to_string(),
        }),
        [one] => Ok((*one).clone()),
        several => {
            if let Some(public) = several.iter().find(|(schema, _)| schema == "public") {
                return Ok((*public).clone());
            }
            Err(VerifyError::AmbiguousTable {
                table: wanted.to_string(),
                database: database.to_string(),
                candidates: several
                    .iter()
                    .map(|(schema, name)| format!("{schema}.{name}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
    }
}

/// Where the table is not an ordinary table: `not on destination shard 1`.
pub(super) fn absent(name: &str, listings: &[Listing], key: &(String, String)) -> Option<String> {
    let missing: Vec<usize> = listings
        .iter()
        .enumerate()
        .filter(|(_, l)| l.get(key).is_none_or(|t| t.partitioned))
        .map(|(shard, _)| shard)
        .collect();
    if missing.is_empty() {
        return None;
    }
    let list: Vec<String> = missing.iter().map(usize::to_string).collect();
    Some(match (listings.len(), missing.len()) {
        (1, _) => format!("not on {name}"),
        (_, 1) => format!("not on {name} shard {}", list.join("")),
        _ => format!("not on {name} shards {}", list.join(", ")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(entries: &[(&str, &str, u32, bool)]) -> Listing {
        entries
            .iter()
            .map(|(schema, name, oid, partitioned)| {
                (
                    (schema.to_string(), name.to_string()),
                    Listed {
                        oid: *oid,
                        partitioned: *partitioned,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn tables_are_found_by_name() {
        let listing = listed(&[
            ("public", "orders", 1, false),
            ("Sales", "orders", 2, false),
            ("Sales", "refunds", 3, false),
            ("a", "dup", 4, false),
            ("b", "dup", 5, false),
            ("public", "odd.name", 6, false),
        ]);
        let key = |s: &str, n: &str| (s.to_string(), n.to_string());
        assert_eq!(
            find_table(&listing, "Sales.orders", "db").unwrap(),
            key("Sales", "orders")
        );
        assert_eq!(
            find_table(&listing, "orders", "db").unwrap(),
            key("public", "orders")
        );
        assert_eq!(
            find_table(&listing, "refunds", "db").unwrap(),
            key("Sales", "refunds")
        );
        assert_eq!(
            find_table(&listing, "odd.name", "db").unwrap(),
            key("public", "odd.name")
        );
        let error = find_table(&listing, "nope", "db").unwrap_err();
        assert!(matches!(error, VerifyError::UnknownTable { .. }), "{error}");
        assert_eq!(
            error.to_string(),
            "table \"nope\" does not exist on the source database \"db\""
        );
        let error = find_table(&listing, "dup", "db").unwrap_err().to_string();
        assert!(error.contains("a.dup, b.dup"), "{error}");
    }

    #[test]
    fn absences_name_the_shards() {
        let key = ("public".to_string(), "t".to_string());
        let with = listed(&[("public", "t", 1, false)]);
        let without = listed(&[]);
        let parent = listed(&[("public", "t", 1, true)]);
        assert_eq!(absent("d", &[with.clone(), with.clone()], &key), None);
        assert_eq!(
            absent("d", std::slice::from_ref(&without), &key).as_deref(),
            Some("not on d")
        );
        assert_eq!(
            absent("d", &[with.clone(), without.clone()], &key).as_deref(),
            Some("not on d shard 1")
        );
        assert_eq!(
            absent("d", &[parent, without, with], &key).as_deref(),
            Some("not on d shards 0, 1")
        );
    }
}
