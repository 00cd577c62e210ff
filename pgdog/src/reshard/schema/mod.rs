//! Schema sync: recreating the source's schema (what the publication's tables need) on every
//! destination shard, in three phases around the data copy.

/// When in the move a schema-sync step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Before the copy: schemas, types, functions, tables, primary keys, sequences.
    Pre,
    /// After the copy: secondary indexes, constraints, triggers, ANALYZE.
    Post,
    /// At the switch: sequence values.
    Cutover,
    /// `SYNC_SCHEMA` while a stream runs: what changed on the source since.
    Sync,
}

impl Phase {
    /// `pre` / `post` / `cutover` / `sync`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pre => "pre",
            Phase::Post => "post",
            Phase::Cutover => "cutover",
            Phase::Sync => "sync",
        }
    }
}

pub mod apply;
pub mod catalog;
pub mod compare;
pub mod dump;
pub mod facts;
pub mod log;
pub mod plan;
pub mod rewrite;
pub mod run;
pub mod sequences;
pub mod sync;

pub use log::{SchemaSyncLog, StatementRecord, StatementState};
pub use run::{
    apply_planned, plan_phase, prepare_cutover, run, run_cutover, KeyPlacement, PlannedPhase,
    PreparedCutover, SchemaSyncError, SchemaSyncOptions, SchemaSyncReport,
};
