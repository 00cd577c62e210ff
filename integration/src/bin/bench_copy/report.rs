//! The markdown report: machine and data set, the settings every cluster had, one table row
//! per tool (end to end and copy-phase throughput, row-count check), the issue's two goals as
//! ratios, how each row was measured, and every failure.

use std::fmt::Write as _;

use crate::dataset::{self, TABLES};
use crate::runs::Outcome;
use crate::setup::{Bench, HARNESS_SETTINGS, SETTINGS};
use crate::{Args, Tool, SPLIT_SIZE};

/// The report header's facts.
pub(crate) struct Machine {
    pub(crate) cores: usize,
    pub(crate) cpu: String,
    pub(crate) pg_version: String,
    pub(crate) pgdog_rev: String,
    pub(crate) pgcopydb: String,
    /// 1/5/15-minute load averages before and after the runs.
    pub(crate) load: (String, String),
    pub(crate) command: String,
}

/// Bytes in MB (2^20 bytes).
pub(crate) fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The command a tool runs, for the report (`J` jobs).
fn command(tool: Tool, jobs: usize) -> String {
    match tool {
        Tool::Raw => "for every table at once: `psql -c \"COPY t TO STDOUT (FORMAT binary)\" | psql -c \
                      \"COPY t FROM STDIN (FORMAT binary)\"` into tables created beforehand from \
                      `pg_dump --schema-only --section=pre-data` (no keys, no indexes; untimed)"
            .into(),
        Tool::RawLz4 => "the same pipes and tables, every table at once, with the destination \
                         session's `default_toast_compression = lz4` (`PGOPTIONS`), which is \
                         what pgdog's copy sets by default (`[replication] toast_compression`)"
            .into(),
        Tool::RawSplit => format!(
            "the same pipes and tables, but every table larger than 64 MB cut in CTID ranges of \
             about 64 MB (`COPY (SELECT * FROM ONLY t WHERE ctid >= '(a,0)' AND ctid < '(b,0)') \
             TO STDOUT (FORMAT binary)`, like pgdog's ranges), {jobs} pipes at a time"
        ),
        Tool::DumpPipe => "`pg_dump -Fc -Z0 | pg_restore --exit-on-error -d` (serial: pg_restore \
                           -j needs a seekable archive)"
            .into(),
        Tool::DumpDir => format!(
            "`pg_dump -Fd -Z0 -j {jobs} -f DIR`, then `pg_restore --exit-on-error -j {jobs} -d ... DIR`"
        ),
        Tool::Pgcopydb => format!("`pgcopydb clone --table-jobs {jobs} --index-jobs {jobs}`"),
        Tool::PgcopydbSplit => format!(
            "`pgcopydb clone --table-jobs {jobs} --index-jobs {jobs} --split-tables-larger-than \
             {SPLIT_SIZE}`"
        ),
        Tool::Pgdog1 | Tool::Pgdog2 => format!(
            "`pgdog -c pgdog.toml -u users.toml data-sync --from-database source --to-database \
             destination --publication pub --sync-only --table-jobs {jobs}` (`[replication] \
             index_jobs = {jobs}`, `resharding_parallel_copies = {jobs}`, default 64 MB ranges, \
             TOAST written with lz4); its schema sync creates the tables before the copy, and \
             each table's primary key, indexes and ANALYZE as soon as that table is copied and \
             verified, while the others still copy"
        ),
    }
}

fn rate(value: f64, seconds: Option<f64>) -> String {
    match seconds {
        Some(s) if s > 0.0 => format!("{:.1}", value / s),
        _ => "—".into(),
    }
}

fn secs(seconds: Option<f64>) -> String {
    seconds.map_or("—".into(), |s| format!("{s:.1}"))
}

/// The whole report.
pub(crate) fn render(
    args: &Args,
    machine: &Machine,
    bench: &Bench,
    outcomes: &[Outcome],
) -> String {
    let mut out = String::new();
    header(&mut out, args, machine, bench);
    table(&mut out, bench, outcomes, args.jobs);
    goals(&mut out, outcomes);
    details(&mut out, args, outcomes);
    out
}

fn header(out: &mut String, args: &Args, machine: &Machine, bench: &Bench) {
    let _ = writeln!(
        out,
        "## Data copy benchmark: raw COPY pipes, pg_dump | pg_restore, pgcopydb and pgdog data-sync\n"
    );
    let _ = writeln!(
        out,
        "Machine: {} cores (nproc), {}; PostgreSQL {}; pgdog {}; {}; {} job(s) for every tool \
         that has jobs.\n",
        machine.cores,
        machine.cpu,
        machine.pg_version,
        machine.pgdog_rev,
        machine.pgcopydb,
        args.jobs
    );
    let total_mb = mb(bench.bytes());
    let mut tables = Vec::new();
    for (table, (rows, bytes)) in TABLES.iter().zip(&bench.tables) {
        tables.push(format!(
            "`{}` {rows} rows, {:.0} MB ({:.0}%)",
            table.name,
            mb(*bytes),
            100.0 * *bytes as f64 / bench.bytes().max(1) as f64
        ));
    }
    let _ = writeln!(
        out,
        "Data set (scale {}, generated in {:.0} s): {}; **{:.0} MB** in {} rows. MB = 2^20 bytes of \
         the source's `sum(pg_table_size)` over the tables (heap and TOAST, no indexes); every \
         MB/s below divides that size by a time. Types: bigint and int4 primary keys, text, \
         numeric, timestamptz, uuid, text[] and int4[], jsonb, 3–13 kB hex text per `documents` \
         row (TOAST). Eight indexes (4 primary keys, 4 secondary) that every tool but the raw \
         pipes rebuilds. Publication `pub` `FOR ALL TABLES`.\n",
        args.scale,
        bench.load_seconds,
        tables.join(", "),
        total_mb,
        bench.rows()
    );
    let settings: Vec<String> = SETTINGS.iter().map(|(k, v)| format!("{k} = {v}")).collect();
    let _ = writeln!(
        out,
        "Clusters: one source and two destinations (throwaway, on this machine), all with the \
         same settings: {HARNESS_SETTINGS} (the test harness's), and {}. Each tool writes into \
         fresh empty databases on destination 0; pgdog 1→2 puts shard 0 there and shard 1 on \
         destination 1, with {}. Before each tool every cluster is checkpointed; afterwards the \
         row count of every table is compared with the source (✓) and the databases dropped.\n",
        settings.join(", "),
        dataset::placement_text()
    );
    let _ = writeln!(
        out,
        "Load average (1/5/15 min) before the runs: {}; after: {} (other work on the machine \
         adds noise).\n",
        machine.load.0, machine.load.1
    );
    let _ = writeln!(out, "Command: `{}`\n", machine.command);
}

/// A tool's row label with the job count in place of `J`.
fn label(tool: Tool, jobs: usize) -> String {
    tool.name().replace(" J ", &format!(" {jobs} "))
}

/// How many rounds the outcomes come from.
fn rounds_of(outcomes: &[Outcome]) -> u64 {
    outcomes.iter().map(|o| o.round).max().unwrap_or(1)
}

/// An outcome's row label: [`label`], with its round when there were several.
fn row_label(outcome: &Outcome, outcomes: &[Outcome], jobs: usize) -> String {
    match rounds_of(outcomes) {
        1 => label(outcome.tool, jobs),
        _ => format!("{} (round {})", label(outcome.tool, jobs), outcome.round),
    }
}

fn table(out: &mut String, bench: &Bench, outcomes: &[Outcome], jobs: usize) {
    let (size, rows) = (mb(bench.bytes()), bench.rows() as f64);
    let _ = writeln!(
        out,
        "| tool | rows ✓ | seconds end to end | MB/s end to end | rows/s end to end | copy-phase s | copy-phase MB/s | CPU busy |"
    );
    let _ = writeln!(out, "|---|:-:|---:|---:|---:|---:|---:|---:|");
    for outcome in outcomes {
        let check = match (&outcome.error, outcome.count_problems.is_empty()) {
            (Some(_), _) => "✗ failed",
            (None, true) => "✓",
            (None, false) => "✗",
        };
        let rows_per_s = match outcome.total {
            Some(s) if s > 0.0 => format!("{:.0}", rows / s),
            _ => "—".into(),
        };
        let cpu = outcome.cpu.map_or("?".into(), |c| format!("{c:.0}%"));
        let _ = writeln!(
            out,
            "| {} | {check} | {} | {} | {rows_per_s} | {} | {} | {cpu} |",
            row_label(outcome, outcomes, jobs).replace('|', "\\|"),
            secs(outcome.total),
            rate(size, outcome.total),
            secs(outcome.copy),
            rate(size, outcome.copy),
        );
    }
    let _ = writeln!(
        out,
        "\nEnd to end: from the tool's start to its exit (schema, data, indexes, and whatever \
         else the tool does: pgcopydb's VACUUM ANALYZE, pgdog's pre-flight check, slot and \
         verification); the raw pipes only copy, so they have no end-to-end figure. Copy phase: \
         raw pipes, from the first pipe's start to the last one's exit; pg_restore, its `TABLE \
         DATA` items in its -v output (plus the whole pg_dump run for the directory format); \
         pgcopydb, the window in which `COPY FROM` ran on the destination (sampled every 100 ms \
         in pg_stat_progress_copy), since it overlaps copies with index builds; pgdog, the \
         seconds of its own summary line (`copied N tables, R rows, X in T s`: the copy workers \
         including their read-back verification). CPU busy: share of both cores in use during \
         the run (/proc/stat), everything on the machine included.\n"
    );
}

/// The median of `value` over `tool`'s outcomes that did not fail (`round`: that round's only).
fn median(
    outcomes: &[Outcome],
    tool: Tool,
    round: Option<u64>,
    value: fn(&Outcome) -> Option<f64>,
) -> Option<f64> {
    integration::bench::median(
        outcomes
            .iter()
            .filter(|o| o.tool == tool && o.error.is_none() && round.is_none_or(|r| o.round == r))
            .filter_map(value)
            .collect(),
    )
}

/// The goals' ratios, over every round (`None`) or one: pgdog 1→2 end to end against
/// pgcopydb, and its copy phase against the raw pipes (plain, in ranges, lz4).
fn ratios(outcomes: &[Outcome], round: Option<u64>) -> [Option<f64>; 4] {
    let total = |o: &Outcome| o.total;
    let copy = |o: &Outcome| o.copy;
    let ratio = |fast: Option<f64>, slow: Option<f64>| match (fast, slow) {
        (Some(a), Some(b)) if a > 0.0 => Some(b / a),
        _ => None,
    };
    let pgdog_copy = median(outcomes, Tool::Pgdog2, round, copy);
    [
        ratio(
            median(outcomes, Tool::Pgdog2, round, total),
            median(outcomes, Tool::Pgcopydb, round, total),
        ),
        ratio(pgdog_copy, median(outcomes, Tool::Raw, round, copy)),
        ratio(pgdog_copy, median(outcomes, Tool::RawSplit, round, copy)),
        ratio(pgdog_copy, median(outcomes, Tool::RawLz4, round, copy)),
    ]
}

fn goals(out: &mut String, outcomes: &[Outcome]) {
    let [speedup, limit, split_limit, lz4_limit] = ratios(outcomes, None);
    let rounds = rounds_of(outcomes);
    // With several rounds: the ratios of the medians, then each round's own.
    let per_round = |which: usize| match rounds {
        1 => String::new(),
        n => {
            let each: Vec<String> = (1..=n)
                .map(|r| {
                    ratios(outcomes, Some(r))[which].map_or("n/a".into(), |v| format!("{v:.2}×"))
                })
                .collect();
            format!(
                " (medians of {n} rounds; round by round: {})",
                each.join(", ")
            )
        }
    };
    let show = |value: Option<f64>, goal: f64| match value {
        Some(v) => format!(
            "**{v:.2}×** (goal ≥ {goal}×: {})",
            if v >= goal { "met" } else { "not met" }
        ),
        None => "n/a (a run is missing or failed)".into(),
    };
    let _ = writeln!(out, "Goals of the data copy (issue 7):\n");
    let _ = writeln!(
        out,
        "- pgdog 1→2 end to end vs pgcopydb clone 1→1 end to end (MB/s ratio): {}{}",
        show(speedup, 1.2),
        per_round(0)
    );
    let _ = writeln!(
        out,
        "- pgdog 1→2 copy phase vs the raw pipes, every table at once (MB/s ratio): {}{}",
        show(limit, 0.8),
        per_round(1)
    );
    let _ = writeln!(
        out,
        "- (for reference) pgdog 1→2 copy phase vs the raw pipes in 64 MB CTID ranges: {}{}",
        show(split_limit, 0.8),
        per_round(2)
    );
    let _ = writeln!(
        out,
        "- (for reference) pgdog 1→2 copy phase vs the raw pipes writing TOAST with lz4 as pgdog \
         does: {}{}\n",
        show(lz4_limit, 0.8),
        per_round(3)
    );
}

fn details(out: &mut String, args: &Args, outcomes: &[Outcome]) {
    let _ = writeln!(out, "### How each row was measured\n");
    for outcome in outcomes {
        let _ = writeln!(
            out,
            "- **{}**: {}.",
            row_label(outcome, outcomes, args.jobs),
            command(outcome.tool, args.jobs)
        );
        for note in &outcome.notes {
            let _ = writeln!(out, "  {note}.");
        }
    }
    let failures: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.error.is_some() || !o.count_problems.is_empty())
        .collect();
    let _ = writeln!(out, "\n### Problems\n");
    if failures.is_empty() {
        let _ = writeln!(
            out,
            "None: every tool exited with 0 and every row count matched the source."
        );
        return;
    }
    for outcome in failures {
        if let Some(error) = &outcome.error {
            let _ = writeln!(
                out,
                "- **{}** failed:\n\n```\n{}\n```\n",
                outcome.tool.name(),
                error.trim_end()
            );
        }
        for problem in &outcome.count_problems {
            let _ = writeln!(out, "- **{}** row counts: {problem}", outcome.tool.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(tool: Tool, total: Option<f64>, copy: Option<f64>) -> Outcome {
        Outcome {
            tool,
            round: 1,
            total,
            copy,
            notes: Vec::new(),
            cpu: None,
            error: None,
            count_problems: Vec::new(),
            log: String::new(),
            observed: None,
        }
    }

    #[test]
    fn goal_ratios() {
        let outcomes = vec![
            outcome(Tool::Raw, None, Some(10.0)),
            outcome(Tool::Pgcopydb, Some(30.0), Some(20.0)),
            outcome(Tool::Pgdog2, Some(20.0), Some(12.5)),
        ];
        let mut out = String::new();
        goals(&mut out, &outcomes);
        assert!(out.contains("**1.50×** (goal ≥ 1.2×: met)"), "{out}");
        assert!(out.contains("**0.80×** (goal ≥ 0.8×: met)"), "{out}");
        assert!(out.contains("n/a (a run is missing or failed)"), "{out}");
    }

    #[test]
    fn goals_take_the_medians_of_rounds() {
        let mut outcomes = Vec::new();
        for (round, pgdog, pgcopydb) in [(1, 20.0, 30.0), (2, 25.0, 26.0), (3, 22.0, 28.0)] {
            for (tool, total) in [(Tool::Pgdog2, pgdog), (Tool::Pgcopydb, pgcopydb)] {
                let mut one = outcome(tool, Some(total), Some(total));
                one.round = round;
                outcomes.push(one);
            }
        }
        let mut out = String::new();
        goals(&mut out, &outcomes);
        assert!(
            out.contains("**1.27×** (goal ≥ 1.2×: met) (medians of 3 rounds; round by round: 1.50×, 1.04×, 1.27×)"),
            "{out}"
        );
        assert_eq!(
            row_label(&outcomes[2], &outcomes, 2),
            "pgdog 1→2 shards (round 2)"
        );
    }

    #[test]
    fn labels_and_cells() {
        assert_eq!(
            label(Tool::RawSplit, 4),
            "raw COPY pipes, 64 MB CTID ranges, 4 at a time"
        );
        assert_eq!(rate(100.0, Some(4.0)), "25.0");
        assert_eq!(rate(100.0, None), "—");
        assert_eq!(secs(Some(1.25)), "1.2");
    }
}
