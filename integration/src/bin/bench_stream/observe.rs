//! What the destination looked like right after the catch-up, to explain its speed: how many
//! destination transactions (batches) pgdog committed (writes to `pgdog.replication_state`,
//! one per batch), and for the small, hot pgbench tables their size on disk (versions of rows
//! updated again and again inside one open transaction cannot be pruned until it commits)
//! and how their rows were found (sequential or index scans). Counters come from
//! `pg_stat_user_tables`, which backends flush at most once a second: approximate.

use tokio_postgres::Client;

use crate::setup::Bench;
use crate::Tool;

/// The tables looked at: few rows, each updated by every pgbench transaction.
const HOT: [&str; 2] = ["pgbench_branches", "pgbench_tellers"];

/// One hot table, summed over the shards.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct HotTable {
    /// Its name.
    pub(crate) name: String,
    /// Rows.
    pub(crate) rows: i64,
    /// `pg_relation_size`, in bytes.
    pub(crate) bytes: i64,
    /// Sequential scans.
    pub(crate) seq_scans: i64,
    /// Index scans.
    pub(crate) idx_scans: i64,
}

/// The destination after the catch-up.
#[derive(Debug, Clone, Default)]
pub(crate) struct Observed {
    /// Batches committed (pgdog only), summed over the shards.
    pub(crate) batches: Option<i64>,
    /// The hot tables.
    pub(crate) hot: Vec<HotTable>,
}

impl Observed {
    /// One line for the report.
    pub(crate) fn describe(&self, changes: u64) -> String {
        let mut parts = Vec::new();
        if let Some(batches) = self.batches.filter(|b| *b > 0) {
            parts.push(format!(
                "{batches} destination transactions (batches, over all shards; about {} row \
                 changes each)",
                changes / batches as u64
            ));
        }
        for table in &self.hot {
            parts.push(format!(
                "`{}` {} rows in {:.1} MB, {} sequential and {} index scans",
                table.name,
                table.rows,
                table.bytes as f64 / (1024.0 * 1024.0),
                table.seq_scans,
                table.idx_scans
            ));
        }
        format!(
            "destination right after the catch-up (pg_stat_user_tables, approximate): {}",
            parts.join("; ")
        )
    }
}

async fn batches(shard: &Client) -> Result<Option<i64>, String> {
    let rows = shard
        .query(
            "SELECT (n_tup_ins + n_tup_upd)::bigint FROM pg_stat_user_tables \
             WHERE schemaname = 'pgdog' AND relname = 'replication_state'",
            &[],
        )
        .await
        .map_err(|e| format!("pg_stat_user_tables: {e}"))?;
    Ok(rows.first().map(|r| r.get(0)))
}

async fn hot(shard: &Client, table: &str) -> Result<HotTable, String> {
    let row = shard
        .query_one(
            "SELECT (SELECT count(*) FROM public.\"{t}\")::bigint, \
                    pg_relation_size(relid)::bigint, coalesce(seq_scan, 0)::bigint, \
                    coalesce(idx_scan, 0)::bigint \
             FROM pg_stat_user_tables WHERE schemaname = 'public' AND relname = $1"
                .replace("{t}", table)
                .as_str(),
            &[&table],
        )
        .await
        .map_err(|e| format!("pg_stat_user_tables of {table}: {e}"))?;
    Ok(HotTable {
        name: table.to_string(),
        rows: row.get(0),
        bytes: row.get(1),
        seq_scans: row.get(2),
        idx_scans: row.get(3),
    })
}

/// Reads the destination databases of `tool`.
pub(crate) async fn observe(bench: &Bench, tool: Tool) -> Result<Observed, String> {
    let mut observed = Observed::default();
    for table in HOT {
        observed.hot.push(HotTable {
            name: table.to_string(),
            ..HotTable::default()
        });
    }
    for (k, database) in tool.databases() {
        let shard = bench.dest_client(k, &database).await?;
        if let Some(n) = batches(&shard).await? {
            observed.batches = Some(observed.batches.unwrap_or(0) + n);
        }
        for (i, table) in HOT.iter().enumerate() {
            let one = hot(&shard, table).await?;
            let sum = &mut observed.hot[i];
            sum.rows += one.rows;
            sum.bytes += one.bytes;
            sum.seq_scans += one.seq_scans;
            sum.idx_scans += one.idx_scans;
        }
    }
    Ok(observed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes() {
        let observed = Observed {
            batches: Some(10),
            hot: vec![HotTable {
                name: "pgbench_branches".into(),
                rows: 10,
                bytes: 1024 * 1024,
                seq_scans: 5,
                idx_scans: 0,
            }],
        };
        let text = observed.describe(1000);
        assert!(text.contains("10 destination transactions"), "{text}");
        assert!(text.contains("about 100 row changes each"), "{text}");
        assert!(
            text.contains("`pgbench_branches` 10 rows in 1.0 MB, 5 sequential and 0 index scans"),
            "{text}"
        );
        assert!(!Observed::default()
            .describe(5)
            .contains("destination transactions"));
    }
}
