//! One run of a tool: fresh destination databases, the destinations watched for `COPY FROM`
//! and the CPU measured while the tool runs (`raw`, `dump` and `pgdog_run` know the tools),
//! then the row counts compared with the source and the databases dropped.

use std::process::Command;
use std::time::Instant;

use integration::tools::pg_tool;

use crate::setup::{uri, Bench, PASSWORD};
use crate::timed::CpuTimes;
use crate::watch::{copy_window, CopyWatch};
use crate::{dump, pgdog_run, raw, Tool};

/// What one tool's run measured.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// The tool.
    pub(crate) tool: Tool,
    /// Which round (`--rounds`) it ran in, from 1.
    pub(crate) round: u64,
    /// Seconds end to end (schema, data, indexes); `None` for the raw pipes (copy only).
    pub(crate) total: Option<f64>,
    /// Seconds of the copy phase, when the tool lets us tell.
    pub(crate) copy: Option<f64>,
    /// How the copy phase was found, and other observations (one line each).
    pub(crate) notes: Vec<String>,
    /// Share of all CPUs busy during the run, in percent.
    pub(crate) cpu: Option<f64>,
    /// Why the run failed, if it did.
    pub(crate) error: Option<String>,
    /// Row-count differences with the source (empty: every count matched).
    pub(crate) count_problems: Vec<String>,
    /// What the tool's processes printed, with times (for `--logs`).
    pub(crate) log: String,
    /// When `COPY FROM` was seen running on the destinations (seconds since the start).
    pub(crate) observed: Option<(f64, f64)>,
}

/// Runs `tool` with `jobs` workers, checks its row counts and drops its databases.
pub(crate) fn run(bench: &Bench, tool: Tool, jobs: usize) -> Outcome {
    let mut outcome = Outcome {
        tool,
        round: 1,
        total: None,
        copy: None,
        notes: Vec::new(),
        cpu: None,
        error: None,
        count_problems: Vec::new(),
        log: String::new(),
        observed: None,
    };
    let shards = tool.databases();
    let prepared = shards
        .iter()
        .try_for_each(|(k, db)| bench.fresh_database(*k, db))
        .and_then(|()| bench.checkpoint());
    if let Err(e) = prepared {
        outcome.error = Some(e);
        return outcome;
    }
    eprintln!("running {}...", tool.name());
    let before = CpuTimes::now();
    let start = Instant::now();
    let watches: Vec<CopyWatch> = bench
        .dests
        .iter()
        .filter_map(|d| CopyWatch::start(&uri(d, "postgres"), start).ok())
        .collect();
    let db = &shards[0].1;
    let result = match tool {
        Tool::Raw | Tool::RawSplit | Tool::RawLz4 => {
            raw::raw_pipes(bench, db, tool, jobs, &mut outcome)
        }
        Tool::DumpPipe => dump::dump_pipe(bench, db, start, &mut outcome),
        Tool::DumpDir => dump::dump_dir(bench, db, jobs, start, &mut outcome),
        Tool::Pgcopydb | Tool::PgcopydbSplit => {
            dump::pgcopydb(bench, db, jobs, tool, start, &mut outcome)
        }
        Tool::Pgdog1 | Tool::Pgdog2 => {
            pgdog_run::pgdog(bench, &shards, jobs, tool, start, &mut outcome)
        }
    };
    let samples: Vec<Vec<(f64, u64)>> = watches.into_iter().map(CopyWatch::stop).collect();
    outcome.observed = copy_window(&samples);
    if let Some((from, to)) = outcome.observed {
        if matches!(tool, Tool::Pgcopydb | Tool::PgcopydbSplit) {
            outcome.copy = Some(to - from);
        }
        outcome.notes.push(format!(
            "`COPY FROM` running on the destination from {from:.1} s to {to:.1} s \
             (pg_stat_progress_copy every 100 ms)"
        ));
    }
    outcome.cpu = before.busy_percent(CpuTimes::now());
    match result {
        Ok(()) => outcome.count_problems = bench.count_problems(&shards),
        Err(e) => outcome.error = Some(e),
    }
    if let Some(total) = outcome.total.or(outcome.copy) {
        eprintln!("  {}: {total:.1} s", tool.name());
    }
    for (k, db) in &shards {
        if let Err(e) = bench.drop_database(*k, db) {
            outcome.notes.push(format!("cleanup: {e}"));
        }
    }
    outcome
}

/// A client tool of the installed PostgreSQL (`pg_config --bindir`).
pub(crate) fn pg_command(name: &str) -> Command {
    let mut command = Command::new(pg_tool(name));
    command
        .env("PGPASSWORD", PASSWORD)
        .env("PGCONNECT_TIMEOUT", "10");
    command
}

/// `psql -X -q -v ON_ERROR_STOP=1 -d <uri> -c <sql>`.
pub(crate) fn psql(uri: &str, sql: &str) -> Command {
    let mut command = pg_command("psql");
    command.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", uri, "-c", sql]);
    command
}
