//! The markdown report.

use super::*;

pub(crate) struct Machine {
    pub(crate) cores: usize,
    pub(crate) cpu: String,
    pub(crate) pg_version: String,
    pub(crate) bouncer_version: String,
    pub(crate) pgdog_rev: String,
    /// 1/5/15-minute load averages before and after the runs.
    pub(crate) load: (String, String),
}

/// The markdown report: header lines, the table and notes on runs that were not clean.
pub(crate) fn render(
    args: &Args,
    machine: &Machine,
    command: &str,
    results: &[Vec<Vec<Vec<Run>>>],
) -> String {
    let mut notes: Vec<String> = Vec::new();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Pooler benchmark: pgbench direct vs PgBouncer vs pgdog\n"
    );
    let _ = writeln!(
        out,
        "Machine: {} cores (nproc), {}; PostgreSQL {}; {}; pgdog {} with {} worker(s); \
         both poolers: transaction mode, pool size {POOL_SIZE}; pgbench scale {SCALE}, \
         -j {THREADS}, {} s per run, {} round(s), cells are the median TPS (median average latency, ms).\n",
        machine.cores,
        machine.cpu,
        machine.pg_version,
        machine.bouncer_version,
        machine.pgdog_rev,
        args.workers,
        args.duration,
        args.rounds,
    );
    let _ = writeln!(
        out,
        "Load average (1/5/15 min) before the runs: {}; after: {} (other work on the machine adds noise).\n",
        machine.load.0, machine.load.1
    );
    let _ = writeln!(out, "Command: `{command}`; each run: `pgbench -h 127.0.0.1 -p PORT -U {USER} -c CLIENTS -j {THREADS} -T {} --no-vacuum MODE {DATABASE}`\n", args.duration);
    let _ = writeln!(
        out,
        "| workload | clients | direct TPS (lat ms) | pgbouncer TPS (lat ms) | pgdog TPS (lat ms) | pgdog / pgbouncer |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    for (m, mode) in MODES.iter().enumerate() {
        for (c, &clients) in args.clients.iter().enumerate() {
            let mut cells = Vec::new();
            let mut tps = [None; 3];
            for target in TARGETS {
                if target == Target::PgBouncer && !mode.pgbouncer {
                    cells.push("n/a".to_string());
                    continue;
                }
                let runs = &results[m][c][target.index()];
                let mut marks = Vec::new();
                for run in runs {
                    if let Some(problem) = run.problem() {
                        notes.push(format!(
                            "{}, {}, {clients} clients, round {}: {problem}",
                            target.name(),
                            mode.name,
                            run.round
                        ));
                        marks.push(format!("[{}]", notes.len()));
                    }
                }
                let median_tps = median(runs.iter().filter_map(|r| r.tps).collect());
                let median_lat = median(runs.iter().filter_map(|r| r.latency_ms).collect());
                tps[target.index()] = median_tps;
                let mut cell = match (median_tps, median_lat) {
                    (Some(t), Some(l)) => format!("{t:.0} ({l:.2})"),
                    (Some(t), None) => format!("{t:.0} (?)"),
                    _ => "error".to_string(),
                };
                if !marks.is_empty() {
                    cell = format!("{cell} ⚠{}", marks.join(""));
                }
                cells.push(cell);
            }
            let ratio = match (tps[Target::Pgdog.index()], tps[Target::PgBouncer.index()]) {
                (Some(d), Some(b)) if b > 0.0 => format!("{:.2}x", d / b),
                _ => "n/a".to_string(),
            };
            let _ = writeln!(
                out,
                "| {} | {clients} | {} | {} | {} | {ratio} |",
                mode.name, cells[0], cells[1], cells[2]
            );
        }
    }
    let _ = writeln!(
        out,
        "\npgbouncer n/a: PgBouncer {} cannot keep named prepared statements in transaction mode.",
        machine.bouncer_version.trim_start_matches("PgBouncer ")
    );
    if notes.is_empty() {
        let _ = writeln!(
            out,
            "All runs were clean: no failed transactions, no errors, exit code 0."
        );
    } else {
        let _ = writeln!(
            out,
            "\nRuns that were not clean (⚠; their TPS, if any, is still in the median):\n"
        );
        for (i, note) in notes.iter().enumerate() {
            let _ = writeln!(out, "{}. {note}", i + 1);
        }
    }
    out
}
