//! `pgdog data-sync`: the data copy of a move from the command line, with progress bars on a
//! terminal (tables, rows, bytes, throughput, ETA) and periodic log lines otherwise, and a
//! per-table summary on stdout.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use pgdog_config::ConfigAndUsers;
use tracing::info;

use super::CliError;
use crate::reshard::copy::{self, CopyStatus, DataSyncOptions, TableCopies};
use crate::reshard::human;
use crate::reshard::preflight::Problem;
use crate::reshard::schema::SchemaSyncLog;
use crate::reshard::stream::{self, ReplicationStats, StreamOptions};
use crate::reshard::{TaskHandle, TaskKind};

/// Arguments of `pgdog data-sync`.
#[derive(Debug, Clone, Args)]
pub struct DataSyncArgs {
    /// The source and the destination.
    #[command(flatten)]
    pub databases: super::databases::MoveDatabases,
    /// The publication on the source naming the tables to move.
    #[arg(long)]
    pub publication: String,
    /// The replication slot to create (or reuse when resuming); default pgdog_<publication>.
    #[arg(long)]
    pub replication_slot: Option<String>,
    /// Copy the data and stop (do not stream changes afterwards; by default the copy goes on
    /// streaming until Ctrl-C).
    #[arg(long, conflicts_with = "replicate_only")]
    pub sync_only: bool,
    /// Only stream changes from the slot (the data is already copied).
    #[arg(long)]
    pub replicate_only: bool,
    /// Do not run schema sync before and after the copy.
    #[arg(long)]
    pub skip_schema_sync: bool,
    /// Tables (or ranges of large tables) copied at once (default: resharding_parallel_copies).
    #[arg(long)]
    pub table_jobs: Option<usize>,
    /// Go on even when the pre-flight check finds errors.
    #[arg(long)]
    pub force: bool,
}

/// Runs the copy, writing the summary to `out` and problems to `err`.
pub fn run(
    config: &ConfigAndUsers,
    args: &DataSyncArgs,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<(), CliError> {
    if args.replicate_only {
        return stream(config, args, out, err);
    }
    let options = DataSyncOptions {
        from: args.databases.from_database.clone(),
        to: args.databases.to_database.clone(),
        from_user: args.databases.from_user.clone(),
        to_user: args.databases.to_user.clone(),
        publication: args.publication.clone(),
        slot: args.replication_slot.clone(),
        table_jobs: args.table_jobs,
        skip_schema_sync: args.skip_schema_sync,
        force: args.force,
        only: None,
        beside_stream: false,
    };
    let runtime = super::current_thread()?;
    let progress = TableCopies::default();
    let log = SchemaSyncLog::default();
    let mut problems: Vec<Problem> = Vec::new();
    let result = runtime.block_on(async {
        let copy = copy::run(config, &options, &progress, &log, None, |found| {
            problems = found.to_vec()
        });
        tokio::pin!(copy);
        let mut display = Display::new(std::io::stderr().is_terminal());
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                result = &mut copy => {
                    display.finish(&progress);
                    return result;
                }
                _ = tick.tick() => display.update(&progress),
            }
        }
    });
    for problem in &problems {
        writeln!(err, "{problem}")?;
    }
    let report = result.map_err(|e| CliError::Resharding(e.to_string()))?;
    for table in &report.skipped {
        writeln!(out, "{table}: already copied")?;
    }
    let (mut rows, mut bytes) = (0, 0);
    for (table, table_rows, table_bytes) in &report.copied {
        writeln!(
            out,
            "{table}: {table_rows} rows, {} copied, verified",
            human::bytes(*table_bytes)
        )?;
        rows += table_rows;
        bytes += table_bytes;
    }
    let seconds = report.copy_time.as_secs_f64().max(0.001);
    writeln!(
        out,
        "copied {} tables, {rows} rows, {} in {seconds:.1} s ({}/s); replication slot {} at {}",
        report.copied.len(),
        human::bytes(bytes),
        human::bytes((bytes as f64 / seconds) as u64),
        report.slot,
        report.slot_lsn
    )?;
    if !args.sync_only {
        let args = DataSyncArgs {
            replication_slot: Some(report.slot.clone()),
            ..args.clone()
        };
        return stream(config, &args, out, err);
    }
    Ok(())
}

/// Streams changes until Ctrl-C (SIGINT) or SIGTERM, showing lag and apply rates; the slot
/// keeps its place for the next run.
fn stream(
    config: &ConfigAndUsers,
    args: &DataSyncArgs,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<(), CliError> {
    let options = StreamOptions {
        from: args.databases.from_database.clone(),
        to: args.databases.to_database.clone(),
        from_user: args.databases.from_user.clone(),
        to_user: args.databases.to_user.clone(),
        publication: args.publication.clone(),
        slot: args.replication_slot.clone(),
        ..Default::default()
    };
    let stats = ReplicationStats::default();
    let task = TaskHandle::standalone(TaskKind::Replication);
    writeln!(
        err,
        "streaming changes (Ctrl-C stops; the replication slot keeps its place for the next run)"
    )?;
    let runtime = super::current_thread()?;
    let result = runtime.block_on(async {
        let run = stream::run(config, &options, &stats, Some(&task));
        tokio::pin!(run);
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut display = StreamDisplay::new(std::io::stderr().is_terminal());
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                result = &mut run => {
                    display.finish();
                    return Ok::<_, std::io::Error>(result);
                }
                _ = tokio::signal::ctrl_c() => task.request_stop(),
                _ = terminate.recv() => task.request_stop(),
                _ = tick.tick() => display.update(&stats),
            }
        }
    })?;
    result.map_err(|e| CliError::Resharding(e.to_string()))?;
    for record in stats.all().iter().rev().take(1) {
        writeln!(
            out,
            "stopped: {} transactions, {} rows applied; replication slot {} applied up to {}",
            record.transactions, record.rows, record.slot, record.applied_lsn
        )?;
    }
    Ok(())
}

/// Streaming status as a spinner line on a terminal, or a log line every 10 s.
struct StreamDisplay {
    bar: Option<ProgressBar>,
    last_line: Instant,
}

impl StreamDisplay {
    fn new(terminal: bool) -> StreamDisplay {
        let bar = terminal.then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
            bar.set_style(style);
            bar
        });
        StreamDisplay {
            bar,
            last_line: Instant::now(),
        }
    }

    fn line(stats: &ReplicationStats) -> Option<String> {
        let record = stats.all().pop()?;
        Some(format!(
            "{}: applied {} (source at {}), lag {} / {:.2} s, {:.0} tx/s, {:.0} rows/s, {} transactions",
            record.status.describe(),
            record.applied_lsn,
            record.source_lsn,
            record.lag_bytes_text(),
            record.lag().as_secs_f64(),
            record.rates.0,
            record.rates.1,
            human::count(record.transactions)
        ))
    }

    fn update(&mut self, stats: &ReplicationStats) {
        let Some(line) = Self::line(stats) else {
            return;
        };
        match &self.bar {
            Some(bar) => {
                bar.set_message(line);
                bar.tick();
            }
            None if self.last_line.elapsed() >= Duration::from_secs(10) => {
                self.last_line = Instant::now();
                info!("replication: {line}");
            }
            None => {}
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// Progress as bars on a terminal, or a log line every 10 s.
struct Display {
    bar: Option<ProgressBar>,
    last_line: Instant,
}

impl Display {
    fn new(terminal: bool) -> Display {
        let bar = terminal.then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar
        });
        Display {
            bar,
            last_line: Instant::now(),
        }
    }

    fn summary(progress: &TableCopies) -> (usize, usize, u64, u64, u64) {
        let tables = progress.list();
        let done = tables
            .iter()
            .filter(|t| matches!(t.status, CopyStatus::Done | CopyStatus::Skipped))
            .count();
        let rows = tables.iter().map(|t| t.rows).sum();
        let bytes = tables.iter().map(|t| t.bytes).sum();
        let size = tables.iter().map(|t| t.size.max(t.bytes)).sum();
        (done, tables.len(), rows, bytes, size)
    }

    fn update(&mut self, progress: &TableCopies) {
        let (done, total, rows, bytes, size) = Self::summary(progress);
        match &self.bar {
            Some(bar) => {
                bar.set_length(size.max(1));
                bar.set_position(bytes.min(size));
                bar.set_message(format!(
                    "tables {done}/{total}, {} rows",
                    human::count(rows)
                ));
            }
            None if self.last_line.elapsed() >= Duration::from_secs(10) && total > 0 => {
                self.last_line = Instant::now();
                info!(
                    "copy progress: {done}/{total} tables, {} rows, {} of about {}",
                    human::count(rows),
                    human::bytes(bytes),
                    human::bytes(size)
                );
            }
            None => {}
        }
    }

    fn finish(&mut self, progress: &TableCopies) {
        self.update(progress);
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
