//! The record of every schema-sync statement per shard (what `SHOW SCHEMA_SYNC` lists and
//! what the CLI summarizes): its state, timing, SQL and error.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use super::Phase;

/// Where a statement is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementState {
    /// Waiting its turn.
    Pending,
    /// Running on the shard.
    Running,
    /// Created.
    Done,
    /// Already on the shard, identical: skipped.
    Exists,
    /// On the shard with a different definition: not touched, reported.
    Differs,
    /// Failed (see the error).
    Failed,
    /// `--dry-run`: would run.
    DryRun,
    /// Not run because an earlier statement on the shard failed.
    Skipped,
}

impl StatementState {
    /// The word `SHOW SCHEMA_SYNC` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            StatementState::Pending => "pending",
            StatementState::Running => "running",
            StatementState::Done => "done",
            StatementState::Exists => "exists",
            StatementState::Differs => "differs",
            StatementState::Failed => "failed",
            StatementState::DryRun => "dry_run",
            StatementState::Skipped => "skipped",
        }
    }
}

/// One statement on one shard.
#[derive(Debug, Clone)]
pub struct StatementRecord {
    /// The task that ran it (`None` from the CLI).
    pub task_id: Option<u64>,
    /// Destination shard.
    pub shard: usize,
    /// Phase.
    pub phase: Phase,
    /// pg_dump's object type (`TABLE`, `INDEX`, ...) or `ANALYZE` / `SEQUENCE VALUE`.
    pub kind: String,
    /// The object, `schema.name`.
    pub object: String,
    /// Where it is.
    pub state: StatementState,
    /// When it started running.
    pub started_at: Option<SystemTime>,
    /// How long it ran (so far, while running).
    pub elapsed: Duration,
    /// The server's error, or what differs.
    pub error: Option<String>,
    /// The SQL.
    pub sql: String,
    started: Option<Instant>,
}

/// Which run and shard a statement belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// The task (`None` from the CLI).
    pub task_id: Option<u64>,
    /// Destination shard.
    pub shard: usize,
    /// Phase.
    pub phase: Phase,
}

/// Handle to one record, to update it as the statement progresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordId(usize);

/// Records kept at most; the oldest are dropped first.
const KEEP: usize = 50_000;

/// Every statement of every schema sync since pgdog started (bounded).
#[derive(Debug, Default, Clone)]
pub struct SchemaSyncLog {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    records: Vec<StatementRecord>,
    /// Records dropped from the front, so ids stay valid.
    dropped: usize,
}

impl SchemaSyncLog {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a statement in state `state`.
    pub fn add(
        &self,
        origin: Origin,
        kind: &str,
        object: &str,
        sql: &str,
        state: StatementState,
    ) -> RecordId {
        let mut inner = self.lock();
        if inner.records.len() >= KEEP {
            let drop = KEEP / 10;
            inner.records.drain(..drop);
            inner.dropped += drop;
        }
        inner.records.push(StatementRecord {
            task_id: origin.task_id,
            shard: origin.shard,
            phase: origin.phase,
            kind: kind.to_string(),
            object: object.to_string(),
            state,
            started_at: None,
            elapsed: Duration::ZERO,
            error: None,
            sql: sql.to_string(),
            started: None,
        });
        RecordId(inner.dropped + inner.records.len() - 1)
    }

    fn update(&self, id: RecordId, change: impl FnOnce(&mut StatementRecord)) {
        let mut inner = self.lock();
        let dropped = inner.dropped;
        if let Some(record) =
            id.0.checked_sub(dropped)
                .and_then(|i| inner.records.get_mut(i))
        {
            change(record);
        }
    }

    /// The statement started running.
    pub fn start(&self, id: RecordId) {
        self.update(id, |r| {
            r.state = StatementState::Running;
            r.started_at = Some(SystemTime::now());
            r.started = Some(Instant::now());
        });
    }

    /// The statement ended in `state` (with `error` when it failed or differs).
    pub fn finish(&self, id: RecordId, state: StatementState, error: Option<String>) {
        self.update(id, |r| {
            r.state = state;
            r.error = error;
            if let Some(started) = r.started {
                r.elapsed = started.elapsed();
            }
        });
    }

    /// Copies of the records, oldest first; running ones with their elapsed time so far.
    pub fn list(&self) -> Vec<StatementRecord> {
        self.lock()
            .records
            .iter()
            .map(|r| {
                let mut r = r.clone();
                if let (StatementState::Running, Some(started)) = (r.state, r.started) {
                    r.elapsed = started.elapsed();
                }
                r
            })
            .collect()
    }

    /// Copies of the records of one task (or of the CLI run, `None`).
    pub fn of_task(&self, task_id: Option<u64>) -> Vec<StatementRecord> {
        self.list()
            .into_iter()
            .filter(|r| r.task_id == task_id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_progress() {
        let log = SchemaSyncLog::default();
        let origin = Origin {
            task_id: Some(3),
            shard: 1,
            phase: Phase::Pre,
        };
        let id = log.add(
            origin,
            "TABLE",
            "s.t",
            "CREATE TABLE s.t ()",
            StatementState::Pending,
        );
        log.start(id);
        assert_eq!(log.list()[0].state, StatementState::Running);
        log.finish(id, StatementState::Failed, Some("boom".into()));
        let records = log.of_task(Some(3));
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].state, StatementState::Failed);
        assert_eq!(records[0].error.as_deref(), Some("boom"));
        assert!(records[0].started_at.is_some());
        assert!(log.of_task(None).is_empty());
    }
}
