//! `pgdog schema-sync`: one schema-sync phase from the command line, with the pre-flight
//! report on stderr, and on stdout either the SQL per shard (`--dry-run`) or a summary.

use std::io::Write;

use clap::Args;
use pgdog_config::ConfigAndUsers;

use super::CliError;
use crate::reshard::preflight::Problem;
use crate::reshard::schema::{
    self, Phase, SchemaSyncLog, SchemaSyncOptions, SchemaSyncReport, StatementState,
};

/// Arguments of `pgdog schema-sync`.
#[derive(Debug, Clone, Args)]
pub struct SchemaSyncArgs {
    /// The source database (its name in pgdog.toml).
    #[arg(long)]
    pub from_database: String,
    /// The destination (sharded) database (its name in pgdog.toml).
    #[arg(long)]
    pub to_database: String,
    /// The publication on the source naming the tables to move.
    #[arg(long)]
    pub publication: String,
    /// Print the SQL each shard would run and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Log failed statements and go on.
    #[arg(long)]
    pub ignore_errors: bool,
    /// After the data copy: secondary indexes, constraints, foreign keys, triggers, ANALYZE.
    #[arg(long, conflicts_with = "cutover")]
    pub data_sync_complete: bool,
    /// At the switch: set destination sequences above the source's live values.
    #[arg(long)]
    pub cutover: bool,
    /// Go on even when the pre-flight check finds errors.
    #[arg(long)]
    pub force: bool,
    /// Indexes built at once per shard (default: [replication] index_jobs).
    #[arg(long)]
    pub index_jobs: Option<usize>,
    /// How far above the source's value sequences restart at cutover (default:
    /// [replication] sequence_margin).
    #[arg(long)]
    pub sequence_margin: Option<i64>,
}

impl SchemaSyncArgs {
    /// The phase the flags select.
    pub fn phase(&self) -> Phase {
        if self.cutover {
            Phase::Cutover
        } else if self.data_sync_complete {
            Phase::Post
        } else {
            Phase::Pre
        }
    }

    /// The options of the run.
    pub fn options(&self) -> SchemaSyncOptions {
        SchemaSyncOptions {
            from: self.from_database.clone(),
            to: self.to_database.clone(),
            publication: self.publication.clone(),
            phase: self.phase(),
            dry_run: self.dry_run,
            ignore_errors: self.ignore_errors,
            force: self.force,
            index_jobs: self.index_jobs,
            sequence_margin: self.sequence_margin,
            skip_preflight: false,
            keys: Default::default(),
            only_tables: None,
        }
    }
}

/// Runs the phase, writing the report to `out` and problems to `err`.
pub fn run(
    config: &ConfigAndUsers,
    args: &SchemaSyncArgs,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<(), CliError> {
    let runtime = super::current_thread()?;
    let log = SchemaSyncLog::default();
    let options = args.options();
    let mut problems: Vec<Problem> = Vec::new();
    let result = runtime.block_on(schema::run(config, &options, &log, None, |found| {
        problems = found.to_vec()
    }));
    for problem in &problems {
        writeln!(err, "{problem}")?;
    }
    let report = result.map_err(|e| CliError::Resharding(e.to_string()))?;
    if args.dry_run {
        write_dry_run(&log, &report, config, &options.to, out)?;
    } else {
        write_outcome(&log, err)?;
    }
    for shard in &report.shards {
        writeln!(out, "{shard}")?;
    }
    if report.is_clean() || (args.ignore_errors && !report.shards.iter().any(|s| s.differ > 0)) {
        Ok(())
    } else {
        Err(CliError::Resharding(format!(
            "schema sync {} did not complete cleanly: {}",
            options.phase.as_str(),
            report.summary()
        )))
    }
}

/// The SQL per shard, with objects that exist shown as comments.
fn write_dry_run(
    log: &SchemaSyncLog,
    report: &SchemaSyncReport,
    config: &ConfigAndUsers,
    destination: &str,
    out: &mut impl Write,
) -> std::io::Result<()> {
    let records = log.of_task(None);
    let endpoints = crate::reshard::ClusterEndpoints::resolve(config, destination).ok();
    for shard in &report.shards {
        let address = endpoints
            .as_ref()
            .and_then(|e| e.shards.get(shard.shard))
            .map(|s| format!(" ({})", s.primary))
            .unwrap_or_default();
        writeln!(out, "-- shard {}{address}", shard.shard)?;
        for record in records.iter().filter(|r| r.shard == shard.shard) {
            match record.state {
                StatementState::DryRun => writeln!(out, "{};\n", record.sql)?,
                StatementState::Exists => {
                    writeln!(out, "-- exists: {} {}", record.kind, record.object)?
                }
                StatementState::Differs => writeln!(
                    out,
                    "-- differs: {} {}: {}",
                    record.kind,
                    record.object,
                    record.error.as_deref().unwrap_or("")
                )?,
                _ => {}
            }
        }
        writeln!(out)?;
    }
    Ok(())
}

/// Every statement that failed or differs, one line each.
fn write_outcome(log: &SchemaSyncLog, err: &mut impl Write) -> std::io::Result<()> {
    for record in log.of_task(None) {
        if matches!(
            record.state,
            StatementState::Failed | StatementState::Differs
        ) {
            writeln!(
                err,
                "shard {}: {} {} {}: {}",
                record.shard,
                record.kind,
                record.object,
                record.state.as_str(),
                record.error.as_deref().unwrap_or("")
            )?;
        }
    }
    Ok(())
}
