//! `bench_stream`: how fast pgdog's replication stream (`pgdog data-sync --replicate-only`)
//! applies a source's changes, next to PostgreSQL's own logical replication (`CREATE
//! SUBSCRIPTION`). The source is `pgbench -i` (plus a heartbeat table); each tool gets fresh
//! destination databases, a slot and a consistent copy (`pgdog data-sync --sync-only`), then:
//!
//! 1. **catch-up**: with the applier stopped, pgbench (TPC-B-like, 4 row changes per
//!    transaction) writes a backlog of about `--changes` row changes; the applier starts and
//!    is timed until the slot's `confirmed_flush_lsn` reaches where the source's WAL was when
//!    the backlog ended (changes/s, MB/s of WAL);
//! 2. **steady state**: pgbench at half the source's measured maximum TPS (`-R`) for
//!    `--seconds` while a heartbeat row is inserted on the source every 100 ms; every 100 ms the
//!    newest heartbeat visible on the destination gives the time lag, and the slot gives the
//!    lag in bytes (p50/p99/max);
//! 3. **check**: row counts of every table and the balance sums, source against the union of
//!    the shards.
//!
//! Tools: pgdog 1→1, pgdog 1→2 shards and native logical replication 1→1. Printed as markdown
//! and written to `benches/results/stream.md`.
//!
//! Run it with `bash benches/stream.sh [flags]`, which builds pgdog and this binary in release
//! mode. Flags:
//!
//! - `--scale N`: `pgbench -i -s N` (default 10);
//! - `--changes N`: row changes in each catch-up backlog (default 1,000,000);
//! - `--seconds S`: length of each steady-state run (default 30);
//! - `--tools LIST`: which tools, in order (default `pgdog1,pgdog2,native`);
//! - `--rounds N`: run every tool N times, taking turns (default 1); the goals compare the
//!   medians and list each round's ratio;
//! - `--rate TPS`: steady-state rate instead of half the measured maximum (for comparing runs
//!   on a machine whose maximum moves with other work);
//! - `--quick`: `--scale 1 --changes 50000 --seconds 10` unless those are given too;
//! - `--out PATH`: where to write the report (default `benches/results/stream.md`);
//! - `--logs DIR`: also write what each pgdog run printed to `DIR/<tool>-r<round>-<step>.log`;
//! - `--dest-setting NAME=VALUE` (repeatable): an experiment, not a default: `ALTER DATABASE
//!   ... SET NAME = 'VALUE'` on every fresh destination database before the tool's turn (e.g.
//!   `enable_seqscan=off` to see what the appliers' plans cost); listed in the report.

mod applier;
mod check;
mod config;
mod cpu;
mod lag;
mod observe;
mod pgbench;
mod report;
mod runs;
mod setup;
mod slot;

use std::path::PathBuf;
use std::process::ExitCode;

use integration::bench::{
    bench_command, cores, cpu_model, flags, git_describe, interrupted, load_average,
    pgdog_release_binary, positive, workspace_root, write_report,
};

use crate::report::Machine;
use crate::runs::Outcome;
use crate::setup::Bench;

/// A way of applying the source's changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tool {
    /// `pgdog data-sync --replicate-only` to one shard.
    Pgdog1,
    /// `pgdog data-sync --replicate-only` to two shards.
    Pgdog2,
    /// `CREATE SUBSCRIPTION` on the destination.
    Native,
}

/// Every tool, in the default order.
pub(crate) const TOOLS: [Tool; 3] = [Tool::Pgdog1, Tool::Pgdog2, Tool::Native];

impl Tool {
    /// Its `--tools` name.
    pub(crate) fn key(self) -> &'static str {
        match self {
            Tool::Pgdog1 => "pgdog1",
            Tool::Pgdog2 => "pgdog2",
            Tool::Native => "native",
        }
    }

    /// Its row label.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Tool::Pgdog1 => "pgdog 1→1",
            Tool::Pgdog2 => "pgdog 1→2 shards",
            Tool::Native => "native subscription 1→1",
        }
    }

    /// The destination databases it writes, `(destination cluster, database)`, one per shard.
    pub(crate) fn databases(self) -> Vec<(usize, String)> {
        match self {
            Tool::Pgdog2 => vec![(0, "pgdog2_0".into()), (1, "pgdog2_1".into())],
            _ => vec![(0, self.key().to_string())],
        }
    }

    /// The replication slot of its turn on the source.
    pub(crate) fn slot(self) -> String {
        format!("bench_stream_{}", self.key())
    }
}

/// The command line.
#[derive(Debug)]
pub(crate) struct Args {
    pub(crate) scale: u64,
    pub(crate) changes: u64,
    pub(crate) seconds: u64,
    /// `--rate`: the steady-state TPS (default: half the measured maximum).
    pub(crate) rate: Option<u64>,
    pub(crate) tools: Vec<Tool>,
    pub(crate) out: PathBuf,
    pub(crate) logs: Option<PathBuf>,
    /// `(name, value)` set on every destination database (`--dest-setting`).
    pub(crate) dest_settings: Vec<(String, String)>,
    /// `--rounds`: how many times every tool runs, in turn (the goals take the medians).
    pub(crate) rounds: u64,
}

const USAGE: &str = "usage: bench_stream [--scale N] [--changes N] [--seconds S] [--rate TPS] \
[--tools pgdog1,pgdog2,native] [--rounds N] [--quick] [--out PATH] [--logs DIR] \
[--dest-setting NAME=VALUE]...";

fn parse_args(argv: &[String]) -> Result<Args, String> {
    let (mut scale, mut changes, mut seconds, mut rate) = (None, None, None, None);
    let (mut tools, mut out, mut logs, mut quick) = (TOOLS.to_vec(), None, None, false);
    let mut dest_settings = Vec::new();
    let mut rounds = 1;
    let with_value = [
        "--rounds",
        "--scale",
        "--changes",
        "--seconds",
        "--rate",
        "--tools",
        "--out",
        "--logs",
        "--dest-setting",
    ];
    for (flag, value) in flags(argv, &with_value, USAGE)? {
        let value = value.unwrap_or_default();
        match flag.as_str() {
            "--scale" => scale = Some(positive(&flag, &value)?),
            "--changes" => changes = Some(positive(&flag, &value)?),
            "--seconds" => seconds = Some(positive(&flag, &value)?),
            "--rate" => rate = Some(positive(&flag, &value)?),
            "--rounds" => rounds = positive(&flag, &value)?,
            "--quick" => quick = true,
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
            "--dest-setting" => dest_settings.push(setting(&value)?),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let (default_scale, default_changes, default_seconds) = match quick {
        true => (1, 50_000, 10),
        false => (10, 1_000_000, 30),
    };
    Ok(Args {
        scale: scale.unwrap_or(default_scale),
        changes: changes.unwrap_or(default_changes),
        seconds: seconds.unwrap_or(default_seconds),
        rate,
        tools,
        out: out.unwrap_or_else(|| workspace_root().join("benches/results/stream.md")),
        logs,
        dest_settings,
        rounds,
    })
}

/// `NAME=VALUE` of `--dest-setting`; the name must be a plain setting name.
fn setting(text: &str) -> Result<(String, String), String> {
    let plain = |name: &str| {
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    };
    match text.split_once('=') {
        Some((name, value)) if plain(name.trim()) => {
            Ok((name.trim().to_string(), value.trim().to_string()))
        }
        _ => Err(format!(
            "--dest-setting: expected NAME=VALUE, got {text:?}\n{USAGE}"
        )),
    }
}

fn main() -> ExitCode {
    integration::bench::bench_main("bench_stream", parse_args, run)
}

fn run(args: &Args, argv: &[String]) -> Result<(), String> {
    let pgdog_bin = pgdog_release_binary()?;
    eprintln!("pgdog: {}", pgdog_bin.display());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a tokio runtime: {e}"))?;
    let load_before = load_average();
    // The revision the binaries were built from (others may commit while the bench runs).
    let pgdog_rev = git_describe();
    let bench = Bench::start(args.scale)?;
    interrupted()?;
    let mut outcomes: Vec<Outcome> = Vec::new();
    // Rounds take turns (every tool once, then again) so a change in the machine's load
    // reaches every tool alike.
    for round in 1..=args.rounds {
        for tool in &args.tools {
            interrupted()?;
            let mut outcome = runtime.block_on(runs::run(&bench, args, *tool));
            outcome.round = round;
            if let Some(error) = &outcome.error {
                eprintln!("!! {}: {error}", tool.name());
            }
            if let Some(dir) = &args.logs {
                for (step, text) in &outcome.logs {
                    let path = dir.join(format!("{}-r{round}-{step}.log", tool.key()));
                    write_report(&path, text)?;
                }
            }
            outcomes.push(outcome);
        }
    }
    interrupted()?;
    let machine = Machine {
        cores: cores(),
        cpu: cpu_model(),
        pg_version: bench.pg_version.clone(),
        pgdog_rev,
        load: (load_before, load_average()),
        command: bench_command("bench_stream", argv),
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
        let args = parse_args(&argv(&[])).unwrap();
        assert_eq!(
            (args.scale, args.changes, args.seconds),
            (10, 1_000_000, 30)
        );
        assert_eq!(args.tools, TOOLS.to_vec());
        let quick = parse_args(&argv(&["--quick", "--seconds", "5"])).unwrap();
        assert_eq!((quick.scale, quick.changes, quick.seconds), (1, 50_000, 5));
        let some = parse_args(&argv(&["--tools", "native,pgdog2"])).unwrap();
        assert_eq!(some.tools, vec![Tool::Native, Tool::Pgdog2]);
        assert_eq!(some.rate, None);
        let fixed = parse_args(&argv(&["--rate", "1500"])).unwrap();
        assert_eq!(fixed.rate, Some(1500));
        assert!(parse_args(&argv(&["--tools", "nope"])).is_err());
        assert!(parse_args(&argv(&["--scale", "0"])).is_err());
        let set = parse_args(&argv(&["--dest-setting", "enable_seqscan=off"])).unwrap();
        assert_eq!(
            set.dest_settings,
            vec![("enable_seqscan".to_string(), "off".to_string())]
        );
        assert!(parse_args(&argv(&["--dest-setting", "x;y=1"])).is_err());
        assert_eq!(args.rounds, 1);
        assert_eq!(parse_args(&argv(&["--rounds", "3"])).unwrap().rounds, 3);
        assert!(parse_args(&argv(&["--rounds", "0"])).is_err());
    }

    #[test]
    fn databases_and_slots() {
        assert_eq!(Tool::Native.databases(), vec![(0, "native".to_string())]);
        assert_eq!(Tool::Pgdog2.databases().len(), 2);
        assert_eq!(Tool::Pgdog1.slot(), "bench_stream_pgdog1");
    }
}
