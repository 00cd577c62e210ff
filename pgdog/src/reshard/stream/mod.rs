//! The replication stream: after the copy, every change made on the source since the slot's
//! position is decoded (pgoutput over a `replication=database` connection) and applied to the
//! destination shards, routed by the sharding function, exactly once: each shard applies a
//! batch of source transactions in one transaction that also records the last commit LSN
//! (`state`), skips what it already has after a restart, and the source is told a position
//! is flushed only once every shard committed it.

pub mod control;
pub mod net;
pub mod pgoutput;
pub mod progress;
pub mod resync;
pub mod route;
pub mod run;
pub mod schema;
pub mod shard;
pub mod side;
pub mod source;
pub mod state;
pub mod tables;
pub mod wal;

pub use progress::{ReplicationRecord, ReplicationStats, StreamStatus};
pub use run::{run, StreamOptions};

use crate::reshard::conn::ConnError;
use crate::reshard::copy::slot::SlotError;
use crate::reshard::endpoints::EndpointError;

/// Why a stream stopped.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// Source or destination unusable in the config.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// A server failed or went away.
    #[error(transparent)]
    Conn(#[from] ConnError),
    /// The slot is unusable.
    #[error(transparent)]
    Slot(#[from] SlotError),
    /// The slot does not exist.
    #[error("replication slot {slot:?} does not exist on the source; run COPY_DATA (or `pgdog data-sync`) first, it creates the slot")]
    NoSlot {
        /// Its name.
        slot: String,
    },
    /// The publication does not exist.
    #[error("publication {publication:?} does not exist on the source database")]
    NoPublication {
        /// Its name.
        publication: String,
    },
    /// The source sent something that breaks the protocol.
    #[error("replication protocol: {0}")]
    Protocol(String),
    /// A message could not be decoded.
    #[error("replication protocol: {0}")]
    Decode(#[from] wal::DecodeError),
    /// A change of a table that is not part of the move.
    #[error("the source sent a change of {table}, which is not part of the move (added to the publication after the copy?); resync it or remove it from the publication")]
    UnknownTable {
        /// The table.
        table: String,
    },
    /// The table's definition does not allow applying a change.
    #[error("{table}: {detail}")]
    Schema {
        /// The table.
        table: String,
        /// What is wrong.
        detail: String,
    },
    /// A row has no shard.
    #[error("{table}: {detail}")]
    Routing {
        /// The table.
        table: String,
        /// What the router said.
        detail: String,
    },
    /// A shard failed to apply a batch.
    #[error("shard {shard}: {error}")]
    Apply {
        /// The shard.
        shard: usize,
        /// What it said.
        error: ConnError,
    },
    /// The source shard asked for is not configured.
    #[error("database {database} has no shard {shard}")]
    NoShard {
        /// The source database.
        database: String,
        /// The shard asked for.
        shard: usize,
    },
    /// A shard could not apply a schema change (or DDL captured on the source).
    #[error("shard {shard}: could not apply the schema change ({statement}): {error}; fix the shard, then RESUME_REPLICATION")]
    SchemaApply {
        /// The shard.
        shard: usize,
        /// The statement (or table) it was about.
        statement: String,
        /// What the shard said.
        error: String,
    },
    /// The task was stopped.
    #[error("stopped")]
    Stopped,
    /// Paused by `PAUSE_REPLICATION`.
    #[error("paused")]
    Paused,
    /// Tables to copy (again) before streaming on: the session ends for it.
    #[error("tables to copy: {}", .tables.iter().map(|t| t.qualified()).collect::<Vec<_>>().join(", "))]
    Resync {
        /// The tables (marked unfinished: the copy empties those it finds with rows).
        tables: Vec<crate::reshard::publication::TableRef>,
    },
}

impl StreamError {
    /// A change the stream cannot apply by itself: it pauses (the slot keeps its place) until
    /// the operator fixes the destination and resumes it.
    pub fn pauses(&self) -> bool {
        matches!(
            self,
            StreamError::SchemaApply { .. }
                | StreamError::Schema { .. }
                | StreamError::UnknownTable { .. }
        )
    }

    /// A shard refused a row because its key is taken (unique violation).
    pub fn key_conflict(&self) -> bool {
        matches!(self, StreamError::Apply { error, .. } if error.code() == Some("23505"))
    }

    /// A shard refused a row for a unique index or an exclusion constraint: what a batch
    /// written by its net effect (in a new order) can trip where the changes one by one do not.
    pub fn order_conflict(&self) -> bool {
        self.key_conflict()
            || matches!(self, StreamError::Apply { error, .. } if error.code() == Some("23P01"))
    }

    /// Whether reconnecting later may fix it (a server restarting or unreachable).
    pub fn retryable(&self) -> bool {
        let conn = match self {
            StreamError::Conn(e) | StreamError::Apply { error: e, .. } => e,
            _ => return false,
        };
        match conn {
            ConnError::Connect(_) | ConnError::Lost { .. } => true,
            ConnError::Sql { .. } => conn.code().is_some_and(|code| {
                ["08", "57", "53"].iter().any(|c| code.starts_with(c)) || code == "55006"
            }),
        }
    }
}
