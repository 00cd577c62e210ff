//! `pgdog cleanup`: abandon a move (drop its replication slot on the source and its
//! bookkeeping on the shards), printing what was done.

use std::io::Write;

use clap::Args;
use pgdog_config::ConfigAndUsers;

use super::CliError;
use crate::reshard::cleanup::{self, CleanupOptions};

/// Arguments of `pgdog cleanup`.
#[derive(Debug, Clone, Args)]
pub struct CleanupArgs {
    /// The source and the destination.
    #[command(flatten)]
    pub databases: super::databases::MoveDatabases,
    /// The move's publication.
    #[arg(long)]
    pub publication: String,
    /// The move's replication slot (default pgdog_<publication>).
    #[arg(long)]
    pub replication_slot: Option<String>,
}

/// Runs the cleanup, writing what was done to `out`.
pub fn run(
    config: &ConfigAndUsers,
    args: &CleanupArgs,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let options = CleanupOptions {
        from: args.databases.from_database.clone(),
        to: args.databases.to_database.clone(),
        from_user: args.databases.from_user.clone(),
        to_user: args.databases.to_user.clone(),
        publication: args.publication.clone(),
        slot: args.replication_slot.clone(),
    };
    let runtime = super::current_thread()?;
    let report = runtime
        .block_on(cleanup::run(config, &options))
        .map_err(|e| CliError::Resharding(e.to_string()))?;
    if report.slot_dropped {
        writeln!(
            out,
            "dropped replication slot {} on {}",
            report.slot, args.databases.from_database
        )?;
    } else {
        writeln!(
            out,
            "replication slot {} does not exist on {} (nothing to drop)",
            report.slot, args.databases.from_database
        )?;
    }
    for (shard, rows) in report.shard_rows.iter().enumerate() {
        writeln!(
            out,
            "shard {shard} of {}: forgot {rows} bookkeeping row(s) of the move (its copied rows stay)",
            args.databases.to_database
        )?;
    }
    Ok(())
}
