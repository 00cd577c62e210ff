//! Abandoning a move: drop the replication slot on the source (so it stops holding WAL) and
//! the slot's bookkeeping on every destination shard (copy progress, stream position). The
//! rows already copied to the shards stay.

use pgdog_config::ConfigAndUsers;

use super::conn::ConnError;
use super::copy::slot;
use super::endpoints::{ClusterEndpoints, EndpointError};
use crate::quote;

/// What to clean up.
#[derive(Debug, Clone, Default)]
pub struct CleanupOptions {
    /// Source database.
    pub from: String,
    /// Destination database.
    pub to: String,
    /// users.toml user for the source (default: its schema admin).
    pub from_user: Option<String>,
    /// users.toml user for the destination (default: its schema admin).
    pub to_user: Option<String>,
    /// The move's publication (names the default slot).
    pub publication: String,
    /// The slot (default `pgdog_<publication>`).
    pub slot: Option<String>,
}

/// What was done.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// The slot.
    pub slot: String,
    /// Whether it existed and was dropped.
    pub slot_dropped: bool,
    /// Bookkeeping rows deleted per shard.
    pub shard_rows: Vec<u64>,
}

/// Why cleanup failed.
#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    /// Source or destination unusable in the config.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// A server refused.
    #[error(transparent)]
    Conn(#[from] ConnError),
    /// A stream is using the slot.
    #[error("replication slot {slot:?} is in use by a running stream (process {pid}); stop it first (STOP_TASK, or Ctrl-C on pgdog data-sync)")]
    Active {
        /// The slot.
        slot: String,
        /// The walsender's process id.
        pid: String,
    },
}

/// Drops the slot and the shards' bookkeeping of it.
pub async fn run(
    config: &ConfigAndUsers,
    options: &CleanupOptions,
) -> Result<CleanupReport, CleanupError> {
    let source = ClusterEndpoints::resolve_as(config, &options.from, options.from_user.as_deref())?;
    let destination =
        ClusterEndpoints::resolve_as(config, &options.to, options.to_user.as_deref())?;
    let slot_name = options
        .slot
        .clone()
        .unwrap_or_else(|| slot::default_name(&options.publication));
    let mut report = CleanupReport {
        slot: slot_name.clone(),
        ..Default::default()
    };
    let mut conn = source.connect_primary(0).await?;
    let active = conn
        .query(&format!(
            "SELECT coalesce(active_pid::text, '') FROM pg_catalog.pg_replication_slots \
             WHERE slot_name = {}",
            quote::literal(&slot_name)
        ))
        .await?;
    if let Some(pid) = active.scalar() {
        if !pid.is_empty() {
            return Err(CleanupError::Active {
                slot: slot_name,
                pid: pid.to_string(),
            });
        }
        conn.execute(&format!(
            "SELECT pg_catalog.pg_drop_replication_slot({})",
            quote::literal(&slot_name)
        ))
        .await?;
        report.slot_dropped = true;
    }
    conn.close().await;
    for shard in 0..destination.shards.len() {
        let mut conn = destination.connect_primary(shard).await?;
        let mut deleted = 0;
        for table in ["replication_state", "copy_ranges", "copy_tables"] {
            let sql = format!(
                "DELETE FROM pgdog.{table} WHERE slot = {}",
                quote::literal(&slot_name)
            );
            match conn.execute(&sql).await {
                Ok(tag) => {
                    deleted += tag
                        .rsplit(' ')
                        .next()
                        .and_then(|n| n.parse::<u64>().ok())
                        .unwrap_or(0)
                }
                // No bookkeeping table on this shard: nothing to forget.
                Err(e) if matches!(e.code(), Some("42P01") | Some("3F000")) => {}
                Err(e) => return Err(e.into()),
            }
        }
        report.shard_rows.push(deleted);
        conn.close().await;
    }
    Ok(report)
}
