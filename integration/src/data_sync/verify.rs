//! Judging a copy with SQL alone: per table, the row count and an order-independent checksum
//! (`sum(hashtextextended(row::text, 0))`, so duplicates count) of the source rows that belong
//! on shard `k` must equal those of shard `k`'s table. PostgreSQL decides where a row belongs:
//! `satisfies_hash_partition` on temporary hash-partitioned helper tables (the rule pgdog's
//! router follows, NULL keys on shard 0). Rows print the same whether a column is int4 on the
//! source and int8 on the shard, and every session uses `TimeZone = UTC`.

use tokio_postgres::Client;

use super::dataset::{Placement, TableSpec};

/// Temporary helper tables whose hash partitioning is the placement rule, per key type.
const HELPERS: &str =
    "CREATE TEMP TABLE IF NOT EXISTS pgdog_it_hp_bigint (k bigint) PARTITION BY HASH (k); \
     CREATE TEMP TABLE IF NOT EXISTS pgdog_it_hp_varchar (k varchar) PARTITION BY HASH (k); \
     CREATE TEMP TABLE IF NOT EXISTS pgdog_it_hp_uuid (k uuid) PARTITION BY HASH (k);";

/// The row count and checksum of a set of rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    /// How many rows.
    pub rows: i64,
    /// `sum(hashtextextended(row::text, 0))` as text (0 for no rows).
    pub sum: String,
}

/// Creates the helper tables in `client`'s session (once per session is enough).
pub async fn install_helpers(client: &Client) {
    client
        .batch_execute(HELPERS)
        .await
        .unwrap_or_else(|e| panic!("helper tables: {e:?}"));
}

/// The SQL condition "the row `t` belongs on shard `k` of `shards`", or `None` when every row
/// belongs on every shard. Needs [`install_helpers`] in the session.
pub fn belongs_on(spec: &TableSpec, shards: usize, k: usize) -> Option<String> {
    match spec.placement {
        Placement::Hash { column, data_type } => Some(format!(
            "satisfies_hash_partition('pg_temp.pgdog_it_hp_{data_type}'::regclass, {shards}, {k}, t.{}::{data_type})",
            super::dataset::quote(column)
        )),
        Placement::Everywhere => None,
    }
}

/// The digest of `spec`'s rows in `client`'s database (`FROM ONLY`), restricted to `filter`.
pub async fn digest(client: &Client, spec: &TableSpec, filter: Option<&str>) -> Digest {
    let sql = format!(
        "SELECT count(*), coalesce(sum(hashtextextended(t::text, 0)), 0)::text FROM ONLY {} AS t{}",
        spec.sql_name(),
        filter.map(|f| format!(" WHERE {f}")).unwrap_or_default()
    );
    let row = client
        .query_one(sql.as_str(), &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    Digest {
        rows: row.get(0),
        sum: row.get(1),
    }
}

/// Rows of `spec` on shard `k` (`client`) that belong elsewhere; 0 for tables on every shard.
/// Installs the helpers in the session.
pub async fn misplaced(client: &Client, spec: &TableSpec, shards: usize, k: usize) -> i64 {
    let Some(condition) = belongs_on(spec, shards, k) else {
        return 0;
    };
    install_helpers(client).await;
    let sql = format!(
        "SELECT count(*) FROM ONLY {} AS t WHERE NOT {condition}",
        spec.sql_name()
    );
    client
        .query_one(sql.as_str(), &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .get(0)
}

/// Compares every table of `tables` between `source` (helpers are installed there) and the
/// shards (`shards[k]` is shard `k`). Returns one line per difference, empty when the shards
/// hold exactly the source rows, each on its shard.
pub async fn compare(source: &Client, shards: &[Client], tables: &[TableSpec]) -> Vec<String> {
    install_helpers(source).await;
    let mut problems = Vec::new();
    for spec in tables {
        let whole = digest(source, spec, None).await;
        let mut placed = 0;
        for (k, shard) in shards.iter().enumerate() {
            let condition = belongs_on(spec, shards.len(), k);
            let expected = match &condition {
                Some(condition) => digest(source, spec, Some(condition)).await,
                None => whole.clone(),
            };
            placed += expected.rows;
            let actual = digest(shard, spec, None).await;
            if actual != expected {
                let wrong = misplaced(shard, spec, shards.len(), k).await;
                problems.push(format!(
                    "{} on shard {k}: expected {} rows (checksum {}), found {} rows (checksum {}); \
                     {wrong} of them belong on another shard",
                    spec.label(),
                    expected.rows,
                    expected.sum,
                    actual.rows,
                    actual.sum
                ));
            }
        }
        if condition_is_hash(spec) && placed != whole.rows {
            problems.push(format!(
                "{}: the placement rule puts {placed} of the source's {} rows on some shard \
                 (harness bug)",
                spec.label(),
                whole.rows
            ));
        }
    }
    problems
}

fn condition_is_hash(spec: &TableSpec) -> bool {
    matches!(spec.placement, Placement::Hash { .. })
}
