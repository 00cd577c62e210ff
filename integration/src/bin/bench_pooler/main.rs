//! `bench_pooler`: pgbench straight to PostgreSQL, through PgBouncer and through pgdog, on one
//! throwaway cluster, printed as one markdown table (also written to `benches/results/pooler.md`).
//!
//! Run it with `bash benches/pooler.sh [flags]`, which installs PgBouncer and PostgreSQL if
//! missing and builds both binaries in release mode. Flags:
//!
//! - `--duration S`: seconds per pgbench run (default 15);
//! - `--rounds R`: repeats of the whole matrix, cells show the median (default 2);
//! - `--workers N`: pgdog worker threads (default 1);
//! - `--clients 10,100`: client counts, one table row each;
//! - `--quick`: `--duration 5 --rounds 1` unless those are given too;
//! - `--out PATH`: where to write the table (default `benches/results/pooler.md`).
//!
//! Noise between consecutive runs is large on small machines, so the targets of one row run back
//! to back (in an order rotated every row and round) and the whole matrix repeats `--rounds`
//! times. A run with failed transactions, errors or a non-zero exit is flagged in its cell and
//! explained under the table, never silently folded into the median.

mod pgbouncer;
mod report;
mod run;

use pgbouncer::*;
use report::*;
use run::*;

use std::fmt::Write as _;
use std::fs::{self, File};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use integration::bench::{
    bench_command, cores, cpu_model, first_line, flags, git_describe, interrupted, listening,
    load_average, median, pgdog_release_binary, positive, positive_list, tail, workspace_root,
    write_report, PgbenchRun as Run,
};
use integration::tools::{pg_tool, pgbench, ToolOutput};
use integration::{free_port, single_database_config, single_user_config, PgdogProcess};
use pgdog::local::{LocalCluster, LocalOptions};

/// Pool size of both poolers (server connections per user/database pair).
const POOL_SIZE: u32 = 10;
/// pgbench scale factor (10 branches, 1M accounts).
const SCALE: &str = "10";
/// pgbench threads per run.
const THREADS: &str = "2";
/// User, password and database everywhere.
const USER: &str = "postgres";
const PASSWORD: &str = "postgres";
const DATABASE: &str = "postgres";

/// One row group of the table: a pgbench workload.
struct Mode {
    name: &'static str,
    flags: &'static [&'static str],
    /// Whether PgBouncer can run it (1.18 has no named prepared statements in transaction mode).
    pgbouncer: bool,
}

const MODES: [Mode; 4] = [
    Mode {
        name: "select-only simple",
        flags: &["-S", "-M", "simple"],
        pgbouncer: true,
    },
    Mode {
        name: "select-only extended",
        flags: &["-S", "-M", "extended"],
        pgbouncer: true,
    },
    Mode {
        name: "select-only prepared",
        flags: &["-S", "-M", "prepared"],
        pgbouncer: false,
    },
    Mode {
        name: "tpcb-like simple",
        flags: &["-M", "simple"],
        pgbouncer: true,
    },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Direct,
    PgBouncer,
    Pgdog,
}

const TARGETS: [Target; 3] = [Target::Direct, Target::PgBouncer, Target::Pgdog];

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::PgBouncer => "pgbouncer",
            Target::Pgdog => "pgdog",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

// ---------------------------------------------------------------------------------------------
// Command line

#[derive(Debug)]
struct Args {
    duration: u64,
    rounds: usize,
    workers: usize,
    clients: Vec<u32>,
    out: PathBuf,
}

const USAGE: &str = "usage: bench_pooler [--duration SECS] [--rounds R] [--workers N] \
[--clients 10,100] [--quick] [--out PATH]";

fn parse_args(argv: &[String]) -> Result<Args, String> {
    let (mut duration, mut rounds, mut workers, mut clients, mut out) = (None, None, 1, None, None);
    let mut quick = false;
    let with_value = ["--duration", "--rounds", "--workers", "--clients", "--out"];
    for (flag, value) in flags(argv, &with_value, USAGE)? {
        let value = value.unwrap_or_default();
        match flag.as_str() {
            "--duration" => duration = Some(positive(&flag, &value)?),
            "--rounds" => rounds = Some(positive(&flag, &value)? as usize),
            "--workers" => workers = positive(&flag, &value)? as usize,
            "--clients" => clients = Some(positive_list(&flag, &value)?),
            "--out" => out = Some(PathBuf::from(value)),
            "--quick" => quick = true,
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let default_out = workspace_root().join("benches/results/pooler.md");
    Ok(Args {
        duration: duration.unwrap_or(if quick { 5 } else { 15 }),
        rounds: rounds.unwrap_or(if quick { 1 } else { 2 }),
        workers,
        clients: clients.unwrap_or_else(|| vec![10, 100]),
        out: out.unwrap_or(default_out),
    })
}

// ---------------------------------------------------------------------------------------------
// PgBouncer

fn main() -> ExitCode {
    integration::bench::bench_main("bench_pooler", parse_args, bench)
}

fn bench(args: &Args, argv: &[String]) -> Result<(), String> {
    let pgdog_bin = pgdog_release_binary()?;
    let pgbouncer_bin = find_pgbouncer()?;
    let pgbench_bin = pg_tool("pgbench");
    let version = Command::new(&pgbench_bin).arg("--version").output();
    if !version.as_ref().is_ok_and(|o| o.status.success()) {
        return Err(format!(
            "cannot run {pgbench_bin} (is PostgreSQL installed and pg_config on PATH?): {version:?}"
        ));
    }

    eprintln!("starting PostgreSQL (max_connections 400)...");
    let options = LocalOptions {
        max_connections: 400,
        ..Default::default()
    };
    // Declared first so it drops last, after the poolers in front of it.
    let cluster =
        LocalCluster::start(options).map_err(|e| format!("cannot start PostgreSQL: {e}"))?;
    let pg_version = cluster
        .psql(DATABASE, "SHOW server_version")
        .map_err(|e| format!("SHOW server_version: {e}"))?;

    eprintln!("pgbench -i -s {SCALE} on port {}...", cluster.port());
    let init = pgbench(
        cluster.port(),
        USER,
        PASSWORD,
        DATABASE,
        &["-i", "-s", SCALE, "-q"],
    );
    if init.code != 0 {
        return Err(format!(
            "pgbench -i failed (exit {}):\n{}{}",
            init.code, init.stdout, init.stderr
        ));
    }
    interrupted()?;

    eprintln!("starting pgbouncer ({})...", pgbouncer_bin.display());
    let bouncer = PgBouncer::start(&pgbouncer_bin, cluster.port())?;
    let bouncer_version = first_line(&pgbouncer_bin, &["--version"]);

    eprintln!(
        "starting pgdog ({}, {} worker(s))...",
        pgdog_bin.display(),
        args.workers
    );
    let pgdog_port = free_port();
    let general = format!(
        "workers = {}\ndefault_pool_size = {POOL_SIZE}\npooler_mode = \"transaction\"",
        args.workers
    );
    let config = single_database_config(&cluster, DATABASE, pgdog_port, &general);
    let pgdog = PgdogProcess::start(&config, &single_user_config(DATABASE, ""), pgdog_port);

    let ports = [cluster.port(), bouncer.port, pgdog.port()];

    // The last lines of a target's log, for error messages.
    let target_log = |target: Target| {
        let (name, log) = match target {
            Target::PgBouncer => ("pgbouncer", tail(&bouncer.log(), 30)),
            Target::Pgdog => ("pgdog", tail(&pgdog.log(), 30)),
            Target::Direct => ("postgres", cluster.log_tail(30)),
        };
        format!("{name} log (last lines):\n{log}")
    };

    // Warm up each target (pools, caches) and check it works before measuring anything.
    let warmup = bench_args(10, 3, &MODES[0]);
    for target in TARGETS {
        interrupted()?;
        let output = run_pgbench(ports[target.index()], &warmup);
        let run = Run::parse(0, &output);
        if let Some(problem) = run.problem() {
            return Err(format!(
                "warm-up through {} failed: {problem}\n{}{}\n{}",
                target.name(),
                output.stdout,
                output.stderr,
                target_log(target)
            ));
        }
    }

    let load_before = load_average();
    // results[mode][clients][target]: the runs of every round.
    let mut results =
        vec![vec![vec![Vec::<Run>::new(); TARGETS.len()]; args.clients.len()]; MODES.len()];
    let started = Instant::now();
    for round in 0..args.rounds {
        for (m, mode) in MODES.iter().enumerate() {
            for (c, &clients) in args.clients.iter().enumerate() {
                let row = m * args.clients.len() + c;
                let mut order = TARGETS;
                order.rotate_left((round + row) % TARGETS.len());
                for target in order {
                    if target == Target::PgBouncer && !mode.pgbouncer {
                        continue;
                    }
                    interrupted()?;
                    let output = run_pgbench(
                        ports[target.index()],
                        &bench_args(clients, args.duration, mode),
                    );
                    let run = Run::parse(round + 1, &output);
                    let shown = run.summary();
                    let problem = run.problem().map_or(String::new(), |p| format!("  !! {p}"));
                    eprintln!(
                        "[round {}/{} {:>4.0}s] {:<21} c={:<4} {:<9} {shown}{problem}",
                        round + 1,
                        args.rounds,
                        started.elapsed().as_secs_f64(),
                        mode.name,
                        clients,
                        target.name(),
                    );
                    let failed = run.problem().is_some();
                    results[m][c][target.index()].push(run);
                    // A target that died (crash, or killed from outside) would fail every later
                    // run: stop with its log instead.
                    if failed && !listening(ports[target.index()]) {
                        return Err(format!(
                            "{} no longer accepts connections on port {}; stopping the bench.\n{}",
                            target.name(),
                            ports[target.index()],
                            target_log(target)
                        ));
                    }
                }
            }
        }
    }

    let command = bench_command("bench_pooler", argv);
    let machine = Machine {
        cores: cores(),
        cpu: cpu_model(),
        pg_version,
        bouncer_version,
        pgdog_rev: git_describe(),
        load: (load_before, load_average()),
    };
    let report = render(args, &machine, &command, &results);
    println!("{report}");

    write_report(&args.out, &report)?;
    eprintln!("wrote {}", args.out.display());

    let log = pgdog.log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("WARN"))
        .collect();
    if !warnings.is_empty() {
        eprintln!(
            "pgdog logged {} WARN/ERROR line(s); the last ones:",
            warnings.len()
        );
        eprintln!("{}", tail(&warnings.join("\n"), 10));
    }
    // pgdog, bouncer and cluster drop here, in that order.
    Ok(())
}
