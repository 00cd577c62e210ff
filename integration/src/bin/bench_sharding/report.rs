//! The markdown report: what ran where, the pgbench and COPY tables (medians, with every run
//! that was not clean flagged ⚠ in its cell and explained under the tables), the routing check
//! and what pgdog logged as WARN or ERROR.

use std::fmt::Write as _;

use integration::bench::median;

use crate::copy::{CopyBench, KINDS};
use crate::pgbench::{PgbenchBench, WORKLOADS};
use crate::setup::Bench;
use crate::{Args, Target, POOL_SIZE, TARGETS, THREADS};

/// The report header's facts.
pub(crate) struct Machine {
    pub(crate) cores: usize,
    pub(crate) cpu: String,
    pub(crate) pg_version: String,
    pub(crate) pgdog_rev: String,
    /// 1/5/15-minute load averages before and after the runs.
    pub(crate) load: (String, String),
    pub(crate) command: String,
}

/// Footnotes: problems numbered in the order the cells mention them.
#[derive(Default)]
struct Notes(Vec<String>);

impl Notes {
    /// Adds a note and returns its mark, `[n]`.
    fn add(&mut self, note: String) -> String {
        self.0.push(note);
        format!("[{}]", self.0.len())
    }
}

/// A cell: the median `value` formatted by `show`, or "error", with the marks of unclean runs.
fn cell(value: Option<String>, runs: usize, marks: &[String]) -> String {
    let text = match (value, runs) {
        (_, 0) => "skipped".to_string(),
        (Some(value), _) => value,
        (None, _) => "error".to_string(),
    };
    match marks.is_empty() {
        true => text,
        false => format!("{text} ⚠{}", marks.join("")),
    }
}

fn ratio(top: Option<f64>, bottom: Option<f64>) -> String {
    match (top, bottom) {
        (Some(t), Some(b)) if b > 0.0 => format!("{:.2}x", t / b),
        _ => "n/a".into(),
    }
}

/// The whole report.
pub(crate) fn render(
    args: &Args,
    machine: &Machine,
    bench: &Bench,
    pgbench: &PgbenchBench,
    copy: &CopyBench,
) -> String {
    let mut notes = Notes::default();
    let mut out = String::new();
    header(&mut out, args, machine);
    pgbench_table(&mut out, &mut notes, args, pgbench);
    copy_table(&mut out, &mut notes, copy);
    checks(&mut out, notes, bench, pgbench);
    out
}

fn header(out: &mut String, args: &Args, machine: &Machine) {
    let _ = writeln!(
        out,
        "## Sharding benchmark: key-routed pgbench and COPY, direct vs through pgdog\n"
    );
    let _ = writeln!(
        out,
        "Machine: {} cores (nproc), {}; PostgreSQL {}; pgdog {} with {} worker(s), transaction \
         mode, pool size {POOL_SIZE} per shard; {} round(s), cells are medians.\n",
        machine.cores,
        machine.cpu,
        machine.pg_version,
        machine.pgdog_rev,
        args.workers,
        args.rounds,
    );
    let _ = writeln!(
        out,
        "Three throwaway clusters on this machine, all with the table `accounts (aid bigint \
         primary key, bid int, abalance int, filler char(84))` of {} rows: `direct` holds every \
         row, `shard0` and `shard1` hold each row on its shard (pgdog's hash, the one of \
         `PARTITION BY HASH`). Targets: **direct** is Postgres `direct` itself; **pgdog 1 shard** \
         is pgdog in front of `direct` (its plain pooler path); **pgdog 2 shards** is pgdog in \
         front of `shard0` and `shard1` with `[[sharded_tables]]` `accounts` and `accounts_copy` \
         on `aid` (`data_type = \"bigint\"`), so every statement goes through its sharded \
         executor.\n",
        args.rows
    );
    let _ = writeln!(
        out,
        "Load average (1/5/15 min) before the runs: {}; after: {} (other work on the machine \
         adds noise).\n",
        machine.load.0, machine.load.1
    );
    let _ = writeln!(out, "Command: `{}`\n", machine.command);
}

fn pgbench_table(out: &mut String, notes: &mut Notes, args: &Args, pgbench: &PgbenchBench) {
    let _ = writeln!(out, "### pgbench: custom scripts routed by key\n");
    let _ = writeln!(
        out,
        "Each run: `pgbench -h 127.0.0.1 -p PORT -U postgres -n -f SCRIPT -M MODE -c CLIENTS \
         -j {THREADS} -T {} -D naccounts={} DATABASE`. Cells: median TPS (median average latency, \
         ms).\n",
        args.duration, args.rows
    );
    let mut heading = "| script | mode | clients |".to_string();
    for target in TARGETS {
        let _ = write!(heading, " {} |", target.name());
    }
    let _ = writeln!(out, "{heading} 2 shards / 1 shard | 2 shards / direct |");
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|");
    for (r, row) in pgbench.rows.iter().enumerate() {
        let workload = &WORKLOADS[row.workload];
        let mut cells = Vec::new();
        let mut tps = [None; 3];
        for target in TARGETS {
            let runs = &pgbench.results[r][target.index()];
            let mut marks = Vec::new();
            for measured in runs {
                if let Some(problem) = measured.problem() {
                    marks.push(notes.add(format!(
                        "pgbench {}, {} {}, {} clients, round {}: {problem}",
                        target.name(),
                        workload.name,
                        row.mode,
                        row.clients,
                        measured.run.round
                    )));
                }
            }
            let t = median(runs.iter().filter_map(|m| m.run.tps).collect());
            let l = median(runs.iter().filter_map(|m| m.run.latency_ms).collect());
            tps[target.index()] = t;
            let value = t.map(|t| match l {
                Some(l) => format!("{t:.0} ({l:.2})"),
                None => format!("{t:.0} (?)"),
            });
            cells.push(cell(value, runs.len(), &marks));
        }
        let (direct, one, two) = (
            tps[Target::Direct.index()],
            tps[Target::Pgdog1.index()],
            tps[Target::Pgdog2.index()],
        );
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            workload.name,
            row.mode,
            row.clients,
            cells[0],
            cells[1],
            cells[2],
            ratio(two, one),
            ratio(two, direct)
        );
    }
    let _ = writeln!(
        out,
        "\nScripts (`\\set delta 1` so that the bench can check every update landed):\n"
    );
    for workload in &WORKLOADS {
        let _ = writeln!(out, "- {}:\n\n  ```", workload.name);
        for line in workload.script.lines() {
            let _ = writeln!(out, "  {line}");
        }
        let _ = writeln!(out, "  ```");
    }
    let _ = writeln!(out);
}

fn copy_table(out: &mut String, notes: &mut Notes, copy: &CopyBench) {
    let _ = writeln!(
        out,
        "### COPY FROM STDIN: {} rows into `accounts_copy`\n",
        copy.rows
    );
    let _ = writeln!(
        out,
        "Each run: `COPY accounts_copy FROM STDIN` (text) or `... (FORMAT binary)` of the same \
         rows, sent by psql (`psql -c \"\\copy accounts_copy FROM 'FILE' ...\"`, a simple-protocol \
         query; timed from psql's start to its exit, login included) or by tokio-postgres \
         `copy_in` (extended protocol, 64 KiB CopyData messages; timed from the statement to its \
         completion). Before each run the tables are truncated and every cluster checkpointed; \
         after it each database must hold exactly its rows. Cells: median seconds (rows/s).\n"
    );
    let mut heading = "| format, client |".to_string();
    for target in TARGETS {
        let _ = write!(heading, " {} |", target.name());
    }
    let _ = writeln!(out, "{heading} 2 shards / direct (rows/s) |");
    let _ = writeln!(out, "|---|---:|---:|---:|---:|");
    for (k, kind) in KINDS.iter().enumerate() {
        let mut cells = Vec::new();
        let mut seconds = [None; 3];
        for target in TARGETS {
            let runs = &copy.results[k][target.index()];
            let mut marks = Vec::new();
            for run in runs {
                if let Some(problem) = &run.problem {
                    marks.push(notes.add(format!(
                        "COPY {} into {}, round {}: {problem}",
                        kind.name(),
                        target.name(),
                        run.round
                    )));
                }
            }
            let s = median(runs.iter().filter_map(|r| r.seconds).collect());
            seconds[target.index()] = s;
            let value = s.map(|s| format!("{s:.2} s ({:.0})", copy.rows as f64 / s));
            cells.push(cell(value, runs.len(), &marks));
        }
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            kind.name(),
            cells[0],
            cells[1],
            cells[2],
            // Rows per second of 2 shards over direct: the inverse ratio of their times.
            ratio(
                seconds[Target::Direct.index()],
                seconds[Target::Pgdog2.index()]
            )
        );
    }
    let _ = writeln!(out);
}

fn checks(out: &mut String, notes: Notes, bench: &Bench, pgbench: &PgbenchBench) {
    let _ = writeln!(out, "### Checks\n");
    for (target, problems) in &pgbench.routing {
        match problems.is_empty() {
            true => {
                let _ = writeln!(
                    out,
                    "- Routing through {}: every keyed lookup (bound parameter and literal) \
                     found its row, and `count(*)` matched.",
                    target.name()
                );
            }
            false => {
                let _ = writeln!(out, "- Routing through {}: **FAILED**:", target.name());
                for problem in problems {
                    let _ = writeln!(out, "  - {problem}");
                }
            }
        }
    }
    for note in bench.down_notes() {
        let _ = writeln!(out, "- **{note}**");
    }
    for (target, count, last) in bench.pgdog_warnings() {
        let _ = writeln!(
            out,
            "- {} logged {count} WARN/ERROR line(s); the last ones:\n\n```\n{last}\n```",
            target.name()
        );
    }
    if notes.0.is_empty() {
        let _ = writeln!(
            out,
            "- All runs were clean: pgbench exit code 0 without errors or failed transactions, \
             every update landed, every COPY put each row on its shard."
        );
    } else {
        let _ = writeln!(
            out,
            "\nRuns that were not clean (⚠; their numbers, if any, are still in the median):\n"
        );
        for (i, note) in notes.0.iter().enumerate() {
            let _ = writeln!(out, "{}. {note}", i + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_and_ratios() {
        assert_eq!(cell(Some("10 (1.00)".into()), 2, &[]), "10 (1.00)");
        assert_eq!(
            cell(None, 1, &["[1]".into(), "[2]".into()]),
            "error ⚠[1][2]"
        );
        assert_eq!(cell(None, 0, &[]), "skipped");
        assert_eq!(ratio(Some(5.0), Some(10.0)), "0.50x");
        assert_eq!(ratio(None, Some(10.0)), "n/a");
        let mut notes = Notes::default();
        assert_eq!(notes.add("a".into()), "[1]");
        assert_eq!(notes.add("b".into()), "[2]");
    }
}
