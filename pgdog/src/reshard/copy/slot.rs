//! The source's logical replication slot and the snapshots the copy reads in. The permanent
//! slot (pgoutput) marks where the stream will start; creating it exports a snapshot of exactly
//! that point. A resumed copy reads in a fresh snapshot exported by a temporary slot, whose
//! position becomes the watermark of the tables it copies.

use std::time::Duration;

use crate::backend::server::ServerAddress;
use crate::quote;
use crate::reshard::conn::{Conn, ConnError};

/// A slot that already exists on the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingSlot {
    /// Output plugin (`pgoutput` expected).
    pub plugin: Option<String>,
    /// Database it decodes.
    pub database: Option<String>,
    /// `confirmed_flush_lsn`.
    pub confirmed_flush_lsn: Option<String>,
    /// In use by a connection right now.
    pub active: bool,
}

/// Why the slot cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    /// The server refused.
    #[error(transparent)]
    Conn(#[from] ConnError),
    /// The slot exists but is not a pgoutput slot of this database.
    #[error("replication slot \"{slot}\" exists on the source but {reason}; choose another name with --replication-slot, or drop it: SELECT pg_drop_replication_slot('{slot}')")]
    Unusable {
        /// The slot.
        slot: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The server's answer lacked a column.
    #[error("CREATE_REPLICATION_SLOT returned no {0}")]
    Answer(&'static str),
}

/// A snapshot exported by a replication connection, valid while the connection stays open.
pub struct ExportedSnapshot {
    /// Keeps the snapshot alive; runs nothing else.
    conn: Conn,
    /// The snapshot's name for `SET TRANSACTION SNAPSHOT`.
    pub snapshot: String,
    /// The slot's consistent point: the copy contains exactly the changes before it.
    pub lsn: String,
}

impl ExportedSnapshot {
    /// Releases the snapshot (and drops a temporary slot).
    pub async fn release(self) {
        self.conn.close().await;
    }
}

/// `pgdog_<publication>` with anything but `[a-z0-9_]` replaced by `_`.
pub fn default_name(publication: &str) -> String {
    let clean: String = publication
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("pgdog_{clean}")
}

/// The slot named `name`, if it exists.
pub async fn find(conn: &mut Conn, name: &str) -> Result<Option<ExistingSlot>, ConnError> {
    let rows = conn
        .query(&format!(
            "SELECT plugin, database, confirmed_flush_lsn::text, active FROM pg_catalog.pg_replication_slots \
             WHERE slot_name = {}",
            quote::literal(name)
        ))
        .await?;
    Ok(rows.rows.first().map(|row| ExistingSlot {
        plugin: row.first().cloned().flatten(),
        database: row.get(1).cloned().flatten(),
        confirmed_flush_lsn: row.get(2).cloned().flatten(),
        active: row.get(3).cloned().flatten().as_deref() == Some("t"),
    }))
}

/// Checks an existing slot can carry this move.
pub fn check_existing(name: &str, slot: &ExistingSlot, database: &str) -> Result<(), SlotError> {
    let unusable = |reason: String| SlotError::Unusable {
        slot: name.to_string(),
        reason,
    };
    if slot.plugin.as_deref() != Some("pgoutput") {
        return Err(unusable(format!(
            "uses plugin {} instead of pgoutput",
            slot.plugin.as_deref().unwrap_or("(physical slot)")
        )));
    }
    if slot.database.as_deref() != Some(database) {
        return Err(unusable(format!(
            "belongs to database {}",
            slot.database.as_deref().unwrap_or("(none)")
        )));
    }
    if slot.active {
        return Err(unusable(
            "is in use by another connection (is another copy or stream running?)".into(),
        ));
    }
    Ok(())
}

/// Creates the permanent slot `name` and exports the snapshot of its starting point.
pub async fn create(
    addr: &ServerAddress,
    timeout: Duration,
    name: &str,
) -> Result<ExportedSnapshot, SlotError> {
    export(
        addr,
        timeout,
        &format!(
            "CREATE_REPLICATION_SLOT {} LOGICAL pgoutput (SNAPSHOT 'export')",
            quote::ident(name)
        ),
    )
    .await
}

/// A fresh snapshot with its position, from a temporary slot dropped when it is released.
pub async fn temporary(
    addr: &ServerAddress,
    timeout: Duration,
) -> Result<ExportedSnapshot, SlotError> {
    let name = format!("pgdog_tmp_{}_{}", std::process::id(), rand::random::<u32>());
    export(
        addr,
        timeout,
        &format!(
            "CREATE_REPLICATION_SLOT {} TEMPORARY LOGICAL pgoutput (SNAPSHOT 'export')",
            quote::ident(&name)
        ),
    )
    .await
}

async fn export(
    addr: &ServerAddress,
    timeout: Duration,
    command: &str,
) -> Result<ExportedSnapshot, SlotError> {
    let mut conn = Conn::connect_replication(addr, timeout).await?;
    let rows = conn.query(command).await?;
    let column = |name: &'static str| -> Result<String, SlotError> {
        let index = rows
            .columns
            .iter()
            .position(|c| c == name)
            .ok_or(SlotError::Answer(name))?;
        rows.get(0, index)
            .map(str::to_string)
            .ok_or(SlotError::Answer(name))
    };
    let lsn = column("consistent_point")?;
    let snapshot = column("snapshot_name")?;
    Ok(ExportedSnapshot {
        conn,
        snapshot,
        lsn,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_are_safe() {
        assert_eq!(default_name("pgdog"), "pgdog_pgdog");
        assert_eq!(default_name("My-Pub 2"), "pgdog_my_pub_2");
    }
}
