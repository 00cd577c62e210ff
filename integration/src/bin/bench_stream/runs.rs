//! One tool's turn: fresh destination databases, its slot and the initial copy, the backlog
//! written while no applier runs, the catch-up (timed on the slot), the steady state (lag
//! sampled), the drain of what the steady state left, the applier stopped, the correctness
//! check, and the slot and databases dropped, also when a step failed.

use std::time::Instant;

use integration::bench::PgbenchRun;
use tokio_postgres::Client;

use crate::applier::{self, Applier};
use crate::cpu::{Snapshot, Usage};
use crate::lag::{self, Steady};
use crate::setup::Bench;
use crate::slot::{self, Reached};
use crate::{check, observe, pgbench, Args, Tool};

/// The catch-up backlog.
#[derive(Debug)]
pub(crate) struct Backlog {
    /// The pgbench run that wrote it.
    pub(crate) run: PgbenchRun,
    /// Seconds pgbench took.
    pub(crate) seconds: f64,
    /// Row changes (4 per transaction pgbench counted).
    pub(crate) changes: u64,
    /// WAL from the slot's position to the end of the backlog, in bytes.
    pub(crate) wal_bytes: u64,
}

/// What one tool's turn measured.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// The tool.
    pub(crate) tool: Tool,
    /// Which round (`--rounds`) it ran in, from 1.
    pub(crate) round: u64,
    /// Seconds of the initial copy (`pgdog data-sync --sync-only`, schema included).
    pub(crate) copy_seconds: Option<f64>,
    /// The backlog.
    pub(crate) backlog: Option<Backlog>,
    /// The catch-up, timed from the applier's start.
    pub(crate) catch_up: Option<Reached>,
    /// CPU used during the catch-up.
    pub(crate) catch_up_cpu: Option<Usage>,
    /// The steady state.
    pub(crate) steady: Option<Steady>,
    /// CPU used during the steady state.
    pub(crate) steady_cpu: Option<Usage>,
    /// Seconds from the end of the steady-state load until the slot had all of it.
    pub(crate) drain: Option<f64>,
    /// pgdog's `stopped: N transactions, R rows applied`.
    pub(crate) applied: Option<(u64, u64)>,
    /// Whether the correctness check ran.
    pub(crate) checked: bool,
    /// Differences the check found.
    pub(crate) problems: Vec<String>,
    /// Why the turn failed, if it did.
    pub(crate) error: Option<String>,
    /// Other observations, one line each.
    pub(crate) notes: Vec<String>,
    /// `(step, text)` of what pgdog printed, for `--logs`.
    pub(crate) logs: Vec<(String, String)>,
}

impl Outcome {
    fn new(tool: Tool) -> Outcome {
        Outcome {
            tool,
            round: 1,
            copy_seconds: None,
            backlog: None,
            catch_up: None,
            catch_up_cpu: None,
            steady: None,
            steady_cpu: None,
            drain: None,
            applied: None,
            checked: false,
            problems: Vec::new(),
            error: None,
            notes: Vec::new(),
            logs: Vec::new(),
        }
    }

    /// The tool's name, with the round when there were several.
    pub(crate) fn label(&self, rounds: u64) -> String {
        match rounds {
            1 => self.tool.name().to_string(),
            _ => format!("{} (round {})", self.tool.name(), self.round),
        }
    }

    /// Row changes applied per second during the catch-up.
    pub(crate) fn changes_per_second(&self) -> Option<f64> {
        let (backlog, reached) = (self.backlog.as_ref()?, self.catch_up?);
        (reached.seconds > 0.0).then(|| backlog.changes as f64 / reached.seconds)
    }
}

/// Runs `tool`'s turn; never fails, the error is in the outcome.
pub(crate) async fn run(bench: &Bench, args: &Args, tool: Tool) -> Outcome {
    let mut outcome = Outcome::new(tool);
    eprintln!("== {}", tool.name());
    if let Err(e) = turn(bench, args, tool, &mut outcome).await {
        outcome.error = Some(e);
    }
    match bench.source_client().await {
        Ok(source) => {
            if let Err(e) = slot::drop_slot(&source, &tool.slot()).await {
                outcome.notes.push(format!("cleanup: {e}"));
            }
        }
        Err(e) => outcome.notes.push(format!("cleanup: {e}")),
    }
    for (k, database) in tool.databases() {
        if let Err(e) = bench.drop_database(k, &database) {
            outcome.notes.push(format!("cleanup: {e}"));
        }
    }
    outcome
}

async fn turn(bench: &Bench, args: &Args, tool: Tool, outcome: &mut Outcome) -> Result<(), String> {
    bench.vacuum()?;
    for (k, database) in tool.databases() {
        bench.fresh_database(k, &database)?;
        for (name, value) in &args.dest_settings {
            bench.alter_database(k, &database, name, value)?;
        }
    }
    bench.checkpoint()?;
    let source = bench.source_client().await?;
    slot::drop_slot(&source, &tool.slot()).await?;

    eprintln!("  initial copy (pgdog data-sync --sync-only)...");
    let (seconds, printed) = applier::initial_copy(bench, tool).await?;
    outcome.copy_seconds = Some(seconds);
    outcome.logs.push(("copy".into(), printed.transcript()));
    integration::bench::interrupted()?;

    let per_client = pgbench::backlog_per_client(args.changes);
    eprintln!(
        "  backlog: pgbench -t {per_client} (about {} row changes), no applier running...",
        pgbench::backlog_changes(per_client)
    );
    let start_lsn = slot::confirmed(&source, &tool.slot())
        .await?
        .ok_or_else(|| format!("the copy left no slot {}", tool.slot()))?;
    let began = Instant::now();
    let run = pgbench::backlog(bench.source.port(), per_client).await?;
    let seconds = began.elapsed().as_secs_f64();
    if let Some(problem) = run.problem() {
        return Err(format!("the backlog's pgbench run: {problem}"));
    }
    let target = slot::settled_flush_lsn(&source).await?;
    let transactions = run.transactions.unwrap_or(per_client * 4);
    eprintln!("    {} in {seconds:.1} s", run.summary());
    outcome.backlog = Some(Backlog {
        run,
        seconds,
        changes: transactions * pgbench::CHANGES_PER_TRANSACTION,
        wal_bytes: target.saturating_sub(start_lsn),
    });
    integration::bench::interrupted()?;

    eprintln!("  catch-up: starting the applier...");
    let machine_start = Snapshot::machine_only();
    let since = Instant::now();
    let mut applier = Applier::start(bench, tool).await?;
    let measured = measure(
        bench,
        args,
        tool,
        &source,
        &mut applier,
        since,
        target,
        machine_start,
        outcome,
    )
    .await;
    let stopped = applier.stop(bench).await;
    match stopped {
        Ok(printed) => {
            outcome.applied = applier::stopped_counts(&printed.stdout);
            if matches!(tool, Tool::Pgdog1 | Tool::Pgdog2) {
                outcome.logs.push(("stream".into(), printed.transcript()));
            }
        }
        Err(e) if measured.is_ok() => return Err(e),
        Err(e) => outcome.notes.push(format!("stopping the applier: {e}")),
    }
    measured?;
    outcome.problems = check::problems(bench, tool).await?;
    outcome.checked = true;
    eprintln!(
        "  check: {}",
        match outcome.problems.is_empty() {
            true => "✓".to_string(),
            false => format!("✗ {}", outcome.problems.join("; ")),
        }
    );
    Ok(())
}

/// Catch-up, steady state and drain, with the applier running.
#[allow(clippy::too_many_arguments)]
async fn measure(
    bench: &Bench,
    args: &Args,
    tool: Tool,
    source: &Client,
    applier: &mut Applier,
    since: Instant,
    target: u64,
    machine_start: Snapshot,
    outcome: &mut Outcome,
) -> Result<(), String> {
    let slot_name = tool.slot();
    let reached = slot::wait_for(source, &slot_name, target, since, || applier.check()).await?;
    let processes = applier
        .processes(bench, source, &slot_name, &tool.databases())
        .await?;
    let caught_up = processes.snapshot();
    outcome.catch_up = Some(reached);
    outcome.catch_up_cpu = Some(processes.usage(&machine_start, &caught_up));
    let changes = outcome.backlog.as_ref().map_or(0, |b| b.changes);
    match observe::observe(bench, tool).await {
        Ok(observed) => outcome.notes.push(observed.describe(changes)),
        Err(e) => outcome
            .notes
            .push(format!("reading the destination's statistics: {e}")),
    }
    eprintln!(
        "    caught up in {:.1} s ({:.0} changes/s)",
        reached.seconds,
        outcome.changes_per_second().unwrap_or(0.0)
    );
    integration::bench::interrupted()?;

    let rate = args.rate.unwrap_or_else(|| bench.half_tps());
    eprintln!(
        "  steady state: pgbench -R {rate} -T {} with a heartbeat every 100 ms...",
        args.seconds
    );
    let before = processes.snapshot();
    let steady = lag::steady(bench, tool, rate, args.seconds).await?;
    let after = processes.snapshot();
    outcome.steady_cpu = Some(processes.usage(&before, &after));
    if let Some(problem) = steady.run.as_ref().and_then(PgbenchRun::problem) {
        outcome
            .notes
            .push(format!("steady-state pgbench run: {problem}"));
    }
    eprintln!(
        "    lag p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        steady.lag_quantile(0.5).unwrap_or(f64::NAN) * 1000.0,
        steady.lag_quantile(0.99).unwrap_or(f64::NAN) * 1000.0,
        steady.lag_quantile(1.0).unwrap_or(f64::NAN) * 1000.0
    );
    outcome.steady = Some(steady);

    let ended = Instant::now();
    let target = slot::settled_flush_lsn(source).await?;
    let drained = slot::wait_for(source, &slot_name, target, ended, || applier.check()).await?;
    outcome.drain = Some(drained.seconds);
    Ok(())
}
