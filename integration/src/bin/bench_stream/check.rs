//! The correctness check after a tool's turn, once its slot confirmed everything the source
//! wrote: every table's row count and balance sum on the source against the destination. A
//! sharded table's shards must add up to the source; the omnisharded heartbeat must be whole
//! on every shard.

use tokio_postgres::Client;

use crate::config::{HEARTBEAT, SHARDED};
use crate::setup::Bench;
use crate::Tool;

/// `(table, summed column)` of the tables compared; `None`: count only.
const TABLES: [(&str, Option<&str>); 5] = [
    ("pgbench_accounts", Some("abalance")),
    ("pgbench_tellers", Some("tbalance")),
    ("pgbench_branches", Some("bbalance")),
    ("pgbench_history", Some("delta")),
    (HEARTBEAT, None),
];

/// `(rows, sum)` of a table.
async fn measure(client: &Client, table: &str, column: Option<&str>) -> Result<(i64, i64), String> {
    let sum = column.map_or("0".to_string(), |c| format!("coalesce(sum({c}), 0)"));
    let sql = format!("SELECT count(*), ({sum})::bigint FROM public.{table}");
    let row = client
        .query_one(&sql, &[])
        .await
        .map_err(|e| format!("{sql}: {e}"))?;
    Ok((row.get(0), row.get(1)))
}

/// Whether `shards` (one `(rows, sum)` each) hold `source`'s rows: added up for a sharded
/// table, each whole for a table on every shard.
fn matches(source: (i64, i64), shards: &[(i64, i64)], sharded: bool) -> bool {
    match sharded {
        true => {
            let rows = shards.iter().map(|s| s.0).sum::<i64>();
            let sum = shards.iter().map(|s| s.1).sum::<i64>();
            (rows, sum) == source
        }
        false => shards.iter().all(|s| *s == source),
    }
}

/// One line per table that differs; empty when all match.
pub(crate) async fn problems(bench: &Bench, tool: Tool) -> Result<Vec<String>, String> {
    let source = bench.source_client().await?;
    let mut shards = Vec::new();
    for (k, database) in tool.databases() {
        shards.push(bench.dest_client(k, &database).await?);
    }
    let mut problems = Vec::new();
    for (table, column) in TABLES {
        let expected = measure(&source, table, column).await?;
        let mut found = Vec::new();
        for shard in &shards {
            found.push(measure(shard, table, column).await?);
        }
        let sharded = shards.len() > 1 && SHARDED.iter().any(|(t, _)| *t == table);
        if !matches(expected, &found, sharded) {
            let what = column.map_or("rows".to_string(), |c| format!("(rows, sum({c}))"));
            problems.push(format!(
                "{table}: source {what} = {expected:?}, destination {found:?}"
            ));
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sharded_and_everywhere() {
        assert!(matches((10, 5), &[(4, 2), (6, 3)], true));
        assert!(!matches((10, 5), &[(4, 2), (6, 2)], true));
        assert!(matches((10, 0), &[(10, 0), (10, 0)], false));
        assert!(!matches((10, 0), &[(10, 0), (9, 0)], false));
        assert!(matches((10, 5), &[(10, 5)], true));
    }
}
