//! `bench_sharding`: what sharding through pgdog costs and gains. Key-routed pgbench custom
//! scripts and a large `COPY FROM STDIN`, each run straight to one database holding all rows,
//! through pgdog with one shard in front of that database, and through pgdog with two shards
//! (two more throwaway clusters). Printed as markdown and written to
//! `benches/results/sharding.md`.
//!
//! Run it with `bash benches/sharding.sh [flags]`, which installs PostgreSQL if missing and
//! builds both binaries in release mode. Flags:
//!
//! - `--duration S`: seconds per pgbench run (default 10);
//! - `--rounds R`: repeats of everything, cells show the median (default 2);
//! - `--rows N`: rows of `accounts`, the table the pgbench scripts use (default 100000);
//! - `--copy-rows N`: rows per COPY (default 1000000);
//! - `--clients 10,50`: pgbench client counts, one table row each;
//! - `--workers N`: pgdog worker threads (default 1);
//! - `--quick`: `--duration 5 --rounds 1` unless those are given too;
//! - `--out PATH`: where to write the report (default `benches/results/sharding.md`).
//!
//! pgbench cannot tell a query that found its row from one sent to the wrong shard, so the
//! bench checks routing itself: before measuring, keyed lookups through pgdog must each find
//! their row; after every run of a writing script, the sum of `abalance` over the target's
//! databases must have grown by exactly the number of transactions pgbench reports; after every
//! COPY, each database must hold exactly the rows that belong to it. Any failure, pgbench error
//! or COPY error is flagged in its cell and explained under the table, never hidden.

mod copy;
mod data;
mod pgbench;
mod report;
mod routing;
mod setup;

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Instant;

use integration::bench::{
    bench_command, cores, cpu_model, flags, git_describe, interrupted, load_average,
    pgdog_release_binary, positive, positive_list, workspace_root, write_report,
};
use integration::tools::pg_tool;

use crate::copy::CopyBench;
use crate::pgbench::PgbenchBench;
use crate::report::Machine;
use crate::setup::Bench;

/// User and password everywhere (Postgres superuser, and the pgdog user).
const USER: &str = "postgres";
/// Password of [`USER`].
const PASSWORD: &str = "postgres";
/// The database on every Postgres cluster.
const SERVER_DATABASE: &str = "postgres";
/// The database clients ask pgdog for.
const PGDOG_DATABASE: &str = "bench";
/// Server connections per shard in pgdog (transaction mode).
const POOL_SIZE: u32 = 10;
/// pgbench threads per run.
const THREADS: &str = "2";

/// Where a client connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// Postgres itself, the database holding every row.
    Direct,
    /// pgdog with one shard: that same database (pgdog's plain pooler path).
    Pgdog1,
    /// pgdog with two shards, each its own cluster (pgdog's sharded executor).
    Pgdog2,
}

/// All targets, in table column order.
pub(crate) const TARGETS: [Target; 3] = [Target::Direct, Target::Pgdog1, Target::Pgdog2];

impl Target {
    /// Its column header.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Pgdog1 => "pgdog 1 shard",
            Target::Pgdog2 => "pgdog 2 shards",
        }
    }

    /// Its position in [`TARGETS`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// The command line.
#[derive(Debug)]
pub(crate) struct Args {
    pub(crate) duration: u64,
    pub(crate) rounds: usize,
    pub(crate) rows: u64,
    pub(crate) copy_rows: u64,
    pub(crate) clients: Vec<u32>,
    pub(crate) workers: usize,
    pub(crate) out: PathBuf,
}

const USAGE: &str = "usage: bench_sharding [--duration SECS] [--rounds R] [--rows N] \
[--copy-rows N] [--clients 10,50] [--workers N] [--quick] [--out PATH]";

fn parse_args(argv: &[String]) -> Result<Args, String> {
    let (mut duration, mut rounds, mut rows, mut copy_rows) = (None, None, 100_000, 1_000_000);
    let (mut clients, mut workers, mut out, mut quick) = (None, 1, None, false);
    let with_value = [
        "--duration",
        "--rounds",
        "--rows",
        "--copy-rows",
        "--clients",
        "--workers",
        "--out",
    ];
    for (flag, value) in flags(argv, &with_value, USAGE)? {
        let value = value.unwrap_or_default();
        match flag.as_str() {
            "--duration" => duration = Some(positive(&flag, &value)?),
            "--rounds" => rounds = Some(positive(&flag, &value)? as usize),
            "--rows" => rows = positive(&flag, &value)?,
            "--copy-rows" => copy_rows = positive(&flag, &value)?,
            "--clients" => clients = Some(positive_list(&flag, &value)?),
            "--workers" => workers = positive(&flag, &value)? as usize,
            "--out" => out = Some(PathBuf::from(value)),
            "--quick" => quick = true,
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(Args {
        duration: duration.unwrap_or(if quick { 5 } else { 10 }),
        rounds: rounds.unwrap_or(if quick { 1 } else { 2 }),
        rows,
        copy_rows,
        clients: clients.unwrap_or_else(|| vec![10, 50]),
        workers,
        out: out.unwrap_or_else(|| workspace_root().join("benches/results/sharding.md")),
    })
}

fn main() -> ExitCode {
    integration::bench::bench_main("bench_sharding", parse_args, run)
}

fn run(args: &Args, argv: &[String]) -> Result<(), String> {
    let pgdog_bin = pgdog_release_binary()?;
    let pgbench_bin = pg_tool("pgbench");
    let version = Command::new(&pgbench_bin).arg("--version").output();
    if !version.as_ref().is_ok_and(|o| o.status.success()) {
        return Err(format!(
            "cannot run {pgbench_bin} (is PostgreSQL installed and pg_config on PATH?): {version:?}"
        ));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a tokio runtime: {e}"))?;

    eprintln!("pgdog: {}", pgdog_bin.display());
    let bench = Bench::start(&runtime, args)?;
    interrupted()?;

    let load_before = load_average();
    let started = Instant::now();
    let mut pgbench = PgbenchBench::new(args, &bench, &runtime)?;
    let mut copy = CopyBench::new(args)?;
    for round in 1..=args.rounds {
        pgbench.round(&bench, round, started)?;
        copy.round(&runtime, &bench, round, started)?;
    }

    let machine = Machine {
        cores: cores(),
        cpu: cpu_model(),
        pg_version: bench.pg_version.clone(),
        pgdog_rev: git_describe(),
        load: (load_before, load_average()),
        command: bench_command("bench_sharding", argv),
    };
    let report = report::render(args, &machine, &bench, &pgbench, &copy);
    println!("{report}");
    write_report(&args.out, &report)?;
    eprintln!("wrote {}", args.out.display());
    // The pgdogs, then the clusters, stop and are deleted when `bench` drops.
    Ok(())
}
