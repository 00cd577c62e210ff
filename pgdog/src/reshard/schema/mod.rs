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
}

impl Phase {
    /// `pre` / `post` / `cutover`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pre => "pre",
            Phase::Post => "post",
            Phase::Cutover => "cutover",
        }
    }
}

pub mod apply;
pub mod dump;
pub mod facts;
pub mod log;
pub mod plan;
pub mod rewrite;
pub mod run;
pub mod sequences;

pub use log::{SchemaSyncLog, StatementRecord, StatementState};
pub use run::{
    prepare_cutover, run, run_cutover, KeyPlacement, PreparedCutover, SchemaSyncError,
    SchemaSyncOptions, SchemaSyncReport,
};
