//! The assertions most data-copy tests end with: the CLI's per-table lines and summary, the one
//! permanent slot on the source, the state tables on the shards, every row in place, and
//! "nothing done" after a run that must fail early.

use super::output::{self, parse_lsn, Summary, TableOutcome};
use super::{shard_database, state_rows, DataSyncSetup, Placement, TABLES};
use crate::schema_sync::describe;
use crate::tools::ToolOutput;

/// How a run's table lines must look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// A first run: every table copied and verified.
    Fresh,
    /// A resumed run: every table copied and verified, or `already copied`.
    Resumed,
    /// A resumed run after everything was copied: every table `already copied`.
    AllAlreadyCopied,
}

/// Whether `rows`, printed for `placement`, is the source's `count`: for tables on every
/// shard either the rows read or the rows written (read × shards) is accepted.
pub fn rows_match(placement: Placement, rows: u64, count: i64, shards: usize) -> bool {
    let count = u64::try_from(count).unwrap_or(0);
    rows == count || (placement == Placement::Everywhere && rows == count * shards as u64)
}

impl DataSyncSetup {
    /// Checks the per-table lines and the summary of a successful run against the source.
    pub async fn check_output(&self, output: &ToolOutput, summary: &Summary, expect: Expect) {
        self.check_output_in(super::SOURCE, output, summary, expect)
            .await;
    }

    /// [`check_output`](Self::check_output) with the row counts of `database` (on the source
    /// cluster) as the expected ones.
    pub async fn check_output_in(
        &self,
        database: &str,
        output: &ToolOutput,
        summary: &Summary,
        expect: Expect,
    ) {
        let lines = output::table_lines(&output.stdout);
        let mut problems = Vec::new();
        if output.stderr.contains('\x1b') || output.stderr.contains('\r') {
            problems.push(
                "stderr is not a terminal but carries terminal control characters (progress \
                 bars?): plain log lines expected"
                    .to_string(),
            );
        }
        for (spec, count) in self.counts_in(database).await {
            let label = spec.label();
            match (lines.get(&label), expect) {
                (None, _) => problems.push(format!("no line for {label}")),
                (Some(TableOutcome::AlreadyCopied), Expect::Resumed | Expect::AllAlreadyCopied) => {
                }
                (
                    Some(TableOutcome::Copied { rows, verified }),
                    Expect::Fresh | Expect::Resumed,
                ) => {
                    if !verified {
                        problems.push(format!("{label}: not `verified`"));
                    }
                    if !rows_match(spec.placement, *rows, count, self.shards()) {
                        problems.push(format!(
                            "{label}: {rows} rows printed, the source has {count}"
                        ));
                    }
                }
                (Some(other), _) => {
                    problems.push(format!("{label}: {other:?}, expected for a {expect:?} run"))
                }
            }
        }
        if expect == Expect::Fresh {
            let copied: Vec<u64> = lines
                .values()
                .filter_map(|outcome| match outcome {
                    TableOutcome::Copied { rows, .. } => Some(*rows),
                    TableOutcome::AlreadyCopied => None,
                })
                .collect();
            if summary.tables != copied.len() as u64 {
                problems.push(format!(
                    "summary says {} tables, {} table lines were printed",
                    summary.tables,
                    copied.len()
                ));
            }
            if summary.rows != copied.iter().sum::<u64>() {
                problems.push(format!(
                    "summary says {} rows, the table lines add up to {}",
                    summary.rows,
                    copied.iter().sum::<u64>()
                ));
            }
        }
        assert!(
            problems.is_empty(),
            "data-sync output ({expect:?} run):\n  {}\n{}",
            problems.join("\n  "),
            describe(output)
        );
    }

    /// Checks that the source has exactly one replication slot, `name`: permanent, logical,
    /// pgoutput, on database `source`, at the LSN the summary printed.
    pub async fn check_slot(&self, name: &str, summary: &Summary) {
        let slots = self.slots().await;
        assert_eq!(
            slots.len(),
            1,
            "the source must have exactly one replication slot: {slots:?}"
        );
        let slot = &slots[0];
        assert_eq!(slot.name, name, "{slots:?}");
        assert_eq!(summary.slot, name, "the summary names another slot");
        assert!(
            slot.slot_type == "logical" && slot.plugin == "pgoutput" && !slot.temporary,
            "the slot must be a permanent pgoutput logical slot: {slot:?}"
        );
        assert_eq!(slot.database, super::SOURCE, "{slot:?}");
        assert_eq!(
            parse_lsn(&slot.confirmed_flush_lsn),
            parse_lsn(&summary.lsn),
            "the summary's LSN {} is not the slot's consistent point {}",
            summary.lsn,
            slot.confirmed_flush_lsn
        );
    }

    /// Checks that every shard has a `pgdog.copy_tables` row per table and
    /// `pgdog.copy_ranges` rows.
    pub async fn check_state_tables(&self) {
        for k in 0..self.shards() {
            let client = self.shard_client(k).await;
            let tables = state_rows(&client, "copy_tables").await;
            let ranges = state_rows(&client, "copy_ranges").await;
            assert!(
                tables >= TABLES.len() as i64 && ranges >= TABLES.len() as i64,
                "shard {k}: pgdog.copy_tables has {tables} rows, pgdog.copy_ranges {ranges}; \
                 expected at least one per table ({})",
                TABLES.len()
            );
        }
    }

    /// Everything a successful run must leave: its output, the one slot `slot`, the state
    /// tables, and the shards holding exactly the source's rows, each on its shard.
    pub async fn assert_complete(
        &self,
        output: &ToolOutput,
        summary: &Summary,
        expect: Expect,
        slot: &str,
    ) {
        self.check_output(output, summary, expect).await;
        self.check_slot(slot, summary).await;
        self.check_state_tables().await;
        self.assert_copied(&format!("after a {expect:?} run")).await;
    }

    /// Asserts that no shard has copied rows or copy state (the run failed before copying).
    pub async fn assert_nothing_copied(&self, what: &str) {
        let mut problems = Vec::new();
        for k in 0..self.shards() {
            let client = self.shard_client(k).await;
            for table in ["copy_tables", "copy_ranges"] {
                let rows = state_rows(&client, table).await;
                if rows != 0 {
                    problems.push(format!("shard {k}: pgdog.{table} has {rows} rows"));
                }
            }
            for spec in TABLES {
                let exists: bool = client
                    .query_one("SELECT to_regclass($1) IS NOT NULL", &[&spec.sql_name()])
                    .await
                    .unwrap_or_else(|e| panic!("to_regclass: {e:?}"))
                    .get(0);
                let rows = match exists {
                    true => super::verify::digest(&client, &spec, None).await.rows,
                    false => 0,
                };
                if rows != 0 {
                    problems.push(format!(
                        "{} on {} has {rows} rows",
                        spec.label(),
                        shard_database(k)
                    ));
                }
            }
        }
        assert!(
            problems.is_empty(),
            "{what}: rows were copied or recorded:\n  {}",
            problems.join("\n  ")
        );
    }
}
