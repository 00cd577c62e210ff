//! `bench_copy`: how fast pgdog's data copy (`pgdog data-sync`) moves a database, next to the
//! tools people use for the same job. One generated data set (four tables, about 1.5 GB at
//! scale 1, one table over half of it, mixed types, TOAST-sized text) is copied from a source
//! cluster into fresh destination databases by each tool in turn: raw binary COPY pipes (the
//! machine's practical limit; also cut in CTID ranges, J at a time), `pg_dump | pg_restore`, `pg_dump -Fd -j` + `pg_restore -j`,
//! `pgcopydb clone` (plain and splitting large tables), pgdog 1→1 and pgdog 1→2 shards. Each is
//! timed end to end and, where its output tells, for the copy phase alone; the destination's
//! row counts are checked against the source. Printed as markdown and written to
//! `benches/results/copy.md`.
//!
//! Run it with `bash benches/copy.sh [flags]`, which installs what is missing and builds pgdog
//! and this binary in release mode. Flags:
//!
//! - `--scale F`: size of the data set, 1 ≈ 1.5 GB (default 1; 0.05 for a quick run);
//! - `--jobs J`: parallel jobs of every tool that has them (default 2);
//! - `--tools LIST`: which tools, in order (default all: `raw,raw-split,raw-lz4,dump,dump-dir,
//!   pgcopydb,pgcopydb-split,pgdog1,pgdog2`);
//! - `--rounds N`: run every tool N times, taking turns (default 1); the goals compare the
//!   medians and list each round's ratios;
//! - `--out PATH`: where to write the report (default `benches/results/copy.md`);
//! - `--logs DIR`: also write what each tool printed, with times, to `DIR/<tool>.log`
//!   (`DIR/<tool>-r<round>.log` with several rounds).

mod dataset;
mod dump;
mod pgdog_run;
mod raw;
mod report;
mod runs;
mod setup;
mod timed;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use integration::bench::{
    bench_command, cores, cpu_model, first_line, flags, git_describe, interrupted, load_average,
    pgdog_release_binary, positive, workspace_root, write_report,
};

use crate::report::Machine;
use crate::runs::Outcome;
use crate::setup::Bench;

/// `--split-tables-larger-than` of the pgcopydb variant that splits tables: the size of pgdog's
/// default copy range (`resharding_copy_range_bytes`, 64 MB).
pub(crate) const SPLIT_SIZE: &str = "64MB";

/// A way of copying the data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tool {
    /// `psql COPY TO STDOUT | psql COPY FROM STDIN`, binary, every table at once.
    Raw,
    /// The same with tables cut in 64 MB CTID ranges, J pipes at a time.
    RawSplit,
    /// Every table at once, the destination writing TOAST with lz4 (as pgdog's copy does).
    RawLz4,
    /// `pg_dump -Fc | pg_restore`.
    DumpPipe,
    /// `pg_dump -Fd -j J` then `pg_restore -j J`.
    DumpDir,
    /// `pgcopydb clone`.
    Pgcopydb,
    /// `pgcopydb clone --split-tables-larger-than`.
    PgcopydbSplit,
    /// `pgdog data-sync` to one shard.
    Pgdog1,
    /// `pgdog data-sync` to two shards.
    Pgdog2,
}

/// Every tool, in the default order.
pub(crate) const TOOLS: [Tool; 9] = [
    Tool::Raw,
    Tool::RawSplit,
    Tool::RawLz4,
    Tool::DumpPipe,
    Tool::DumpDir,
    Tool::Pgcopydb,
    Tool::PgcopydbSplit,
    Tool::Pgdog1,
    Tool::Pgdog2,
];

impl Tool {
    /// Its `--tools` name.
    pub(crate) fn key(self) -> &'static str {
        match self {
            Tool::Raw => "raw",
            Tool::RawSplit => "raw-split",
            Tool::RawLz4 => "raw-lz4",
            Tool::DumpPipe => "dump",
            Tool::DumpDir => "dump-dir",
            Tool::Pgcopydb => "pgcopydb",
            Tool::PgcopydbSplit => "pgcopydb-split",
            Tool::Pgdog1 => "pgdog1",
            Tool::Pgdog2 => "pgdog2",
        }
    }

    /// Its row label.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Tool::Raw => "raw COPY pipes, every table at once (limit)",
            Tool::RawSplit => "raw COPY pipes, 64 MB CTID ranges, J at a time",
            Tool::RawLz4 => "raw COPY pipes, every table at once, lz4 TOAST",
            Tool::DumpPipe => "pg_dump -Fc | pg_restore",
            Tool::DumpDir => "pg_dump -Fd -j, pg_restore -j",
            Tool::Pgcopydb => "pgcopydb clone",
            Tool::PgcopydbSplit => "pgcopydb clone, split tables",
            Tool::Pgdog1 => "pgdog 1→1",
            Tool::Pgdog2 => "pgdog 1→2 shards",
        }
    }

    /// The destination databases it writes, `(destination cluster, database)`, one per shard.
    pub(crate) fn databases(self) -> Vec<(usize, String)> {
        match self {
            Tool::Pgdog2 => vec![(0, "pgdog2_0".into()), (1, "pgdog2_1".into())],
            _ => vec![(0, self.key().replace('-', "_"))],
        }
    }
}

/// The command line.
#[derive(Debug)]
pub(crate) struct Args {
    pub(crate) scale: f64,
    pub(crate) jobs: usize,
    pub(crate) tools: Vec<Tool>,
    pub(crate) out: PathBuf,
    pub(crate) logs: Option<PathBuf>,
    /// `--rounds`: how many times every tool runs, in turn (the goals take the medians).
    pub(crate) rounds: u64,
}

const USAGE: &str = "usage: bench_copy [--scale F] [--jobs J] \
[--tools raw,raw-split,dump,dump-dir,pgcopydb,pgcopydb-split,pgdog1,pgdog2] [--rounds N] \
[--out PATH] [--logs DIR]";

fn parse_args(argv: &[String]) -> Result<Args, String> {
    let (mut scale, mut jobs, mut tools, mut out) = (1.0, 2, TOOLS.to_vec(), None);
    let (mut logs, mut rounds) = (None, 1);
    let with_value = [
        "--scale", "--jobs", "--tools", "--out", "--logs", "--rounds",
    ];
    for (flag, value) in flags(argv, &with_value, USAGE)? {
        let value = value.unwrap_or_default();
        match flag.as_str() {
            "--scale" => {
                scale = match value.parse::<f64>() {
                    Ok(s) if s > 0.0 && s <= 100.0 => s,
                    _ => {
                        return Err(format!(
                            "--scale: expected a number in (0, 100], got {value:?}"
                        ))
                    }
                }
            }
            "--jobs" => jobs = positive(&flag, &value)? as usize,
            "--rounds" => rounds = positive(&flag, &value)?,
            "--tools" => {
                tools = value
                    .split(',')
                    .map(|key| {
                        TOOLS
                            .into_iter()
                            .find(|t| t.key() == key.trim())
                            .ok_or_else(|| format!("--tools: unknown tool {key:?}\n{USAGE}"))
                    })
                    .collect::<Result<_, _>>()?
            }
            "--out" => out = Some(PathBuf::from(value)),
            "--logs" => logs = Some(PathBuf::from(value)),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(Args {
        scale,
        jobs,
        tools,
        out: out.unwrap_or_else(|| workspace_root().join("benches/results/copy.md")),
        logs,
        rounds,
    })
}

fn main() -> ExitCode {
    integration::bench::bench_main("bench_copy", parse_args, run)
}

fn run(args: &Args, argv: &[String]) -> Result<(), String> {
    let pgdog_bin = pgdog_release_binary()?;
    eprintln!("pgdog: {}", pgdog_bin.display());
    let bench = Bench::start(args.scale)?;
    interrupted()?;
    eprintln!(
        "data set: {} rows, {:.0} MB (sum of pg_table_size)",
        bench.rows(),
        report::mb(bench.bytes())
    );
    let load_before = load_average();
    let mut outcomes: Vec<Outcome> = Vec::new();
    // Rounds take turns (every tool once, then again) so a change in the machine's load
    // reaches every tool alike.
    for round in 1..=args.rounds {
        for tool in &args.tools {
            interrupted()?;
            let mut outcome = runs::run(&bench, *tool, args.jobs);
            outcome.round = round;
            if let Some(error) = &outcome.error {
                eprintln!("!! {}: {error}", tool.name());
            }
            if let Some(dir) = &args.logs {
                let name = match args.rounds {
                    1 => format!("{}.log", tool.key()),
                    _ => format!("{}-r{round}.log", tool.key()),
                };
                write_report(&dir.join(name), &outcome.log)?;
            }
            outcomes.push(outcome);
        }
    }
    interrupted()?;
    let machine = Machine {
        cores: cores(),
        cpu: cpu_model(),
        pg_version: bench.pg_version.clone(),
        pgdog_rev: git_describe(),
        pgcopydb: first_line(std::path::Path::new("pgcopydb"), &["--version"]),
        load: (load_before, load_average()),
        command: bench_command("bench_copy", argv),
    };
    let report = report::render(args, &machine, &bench, &outcomes);
    println!("{report}");
    write_report(&args.out, &report)?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_flags() {
        let args = parse_args(&argv(&["--scale", "0.05", "--tools", "raw,pgdog2"])).unwrap();
        assert_eq!(args.scale, 0.05);
        assert_eq!(args.jobs, 2);
        assert_eq!(args.tools, vec![Tool::Raw, Tool::Pgdog2]);
        assert!(parse_args(&argv(&["--scale", "0"])).is_err());
        assert!(parse_args(&argv(&["--tools", "nope"])).is_err());
        assert_eq!(parse_args(&argv(&[])).unwrap().tools.len(), TOOLS.len());
        assert_eq!(parse_args(&argv(&[])).unwrap().rounds, 1);
        assert_eq!(parse_args(&argv(&["--rounds", "3"])).unwrap().rounds, 3);
    }

    #[test]
    fn databases_per_tool() {
        assert_eq!(Tool::DumpDir.databases(), vec![(0, "dump_dir".to_string())]);
        assert_eq!(Tool::Pgdog2.databases().len(), 2);
    }
}
