//! The data copy of a move: every row of the publication's tables, read in one consistent
//! snapshot of the source (the replication slot's starting point), placed on its shard by the
//! router's rule, streamed as binary COPY, recorded range by range on the shards so a killed
//! copy resumes exactly, and verified by reading the shards back.

pub mod binary_values;
pub mod digest;
pub mod field_digest;
pub mod progress;
pub mod run;
pub mod shape;
pub mod slot;
pub mod state;
pub mod tables;
pub mod tuples;
pub mod value_hash;
pub mod worker;

pub use progress::{CopyStatus, TableCopies, TableCopy};
pub use run::{run, DataSyncOptions, DataSyncReport};

use crate::reshard::conn::ConnError;
use crate::reshard::endpoints::EndpointError;
use crate::reshard::preflight::PreflightFailed;
use crate::reshard::schema::SchemaSyncError;

/// Why a copy stopped.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// Source or destination unusable in the config.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// The pre-flight check found errors.
    #[error(transparent)]
    Preflight(#[from] PreflightFailed),
    /// Schema sync failed.
    #[error(transparent)]
    Schema(#[from] SchemaSyncError),
    /// The slot could not be created or used.
    #[error(transparent)]
    Slot(#[from] slot::SlotError),
    /// A statement failed.
    #[error(transparent)]
    Conn(#[from] ConnError),
    /// Source and destination tables differ.
    #[error(transparent)]
    Table(#[from] tables::TableError),
    /// The publication does not exist.
    #[error("publication \"{publication}\" does not exist on the source database \"{database}\"; create it: CREATE PUBLICATION {publication} FOR ALL TABLES")]
    NoPublication {
        /// Its name.
        publication: String,
        /// Source database.
        database: String,
    },
    /// A destination table holds rows pgdog did not copy.
    #[error("table {table} already has rows on shard {shard} that no earlier copy with slot \"{slot}\" recorded; copying would duplicate them: TRUNCATE it there (or use the slot of the earlier copy)")]
    DestinationHasRows {
        /// The table.
        table: String,
        /// The shard.
        shard: usize,
        /// The slot.
        slot: String,
    },
    /// A row could not be read or placed.
    #[error("table {table}: {error}")]
    Route {
        /// The table.
        table: String,
        /// What went wrong.
        error: String,
    },
    /// A shard kept failing.
    #[error("table {table} range {range}: shard {shard} failed {attempts} time(s): {error}")]
    Shard {
        /// The table.
        table: String,
        /// The range.
        range: usize,
        /// The shard.
        shard: usize,
        /// Attempts made.
        attempts: usize,
        /// The last error.
        error: String,
    },
    /// The shards do not hold what was copied.
    #[error("verification of {table} failed: {detail}")]
    Verification {
        /// The table.
        table: String,
        /// What differs.
        detail: String,
    },
    /// Stopped by STOP_TASK.
    #[error("stopped")]
    Stopped,
}
