//! Live state of every replication stream (what `SHOW REPLICATION` lists and the CLI prints
//! while streaming): status, positions, lag and apply rates.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use super::control::StreamControl;
use super::wal::Lsn;

/// Where a stream is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamStatus {
    /// Connecting, loading tables.
    Starting,
    /// Applying a backlog: the source's WAL is ahead of what was applied.
    CatchingUp,
    /// Applying a change of a table's definition on the shards (then streaming again).
    SyncingSchema,
    /// Paused by `PAUSE_REPLICATION` (no reason) or by a change it could not apply (the
    /// reason); `RESUME_REPLICATION` continues from the same change. The slot keeps its place.
    Paused(Option<String>),
    /// Applied everything the source sent; following it.
    Streaming,
    /// A server is unreachable; retrying after a pause (the reason).
    Retrying(String),
    /// Stopped on request; the slot keeps its place.
    Stopped,
    /// Failed (the reason).
    Failed(String),
}

impl StreamStatus {
    /// Whether the stream is applying changes (catching up, streaming, or changing a table).
    pub fn is_applying(&self) -> bool {
        matches!(
            self,
            StreamStatus::Streaming | StreamStatus::CatchingUp | StreamStatus::SyncingSchema
        )
    }

    /// Whether the stream has ended (stopped or failed).
    pub fn is_over(&self) -> bool {
        matches!(self, StreamStatus::Stopped | StreamStatus::Failed(_))
    }

    /// The text `SHOW REPLICATION` shows.
    pub fn describe(&self) -> String {
        match self {
            StreamStatus::Starting => "starting".into(),
            StreamStatus::CatchingUp => "catching up".into(),
            StreamStatus::SyncingSchema => "syncing schema".into(),
            StreamStatus::Paused(None) => "paused".into(),
            StreamStatus::Paused(Some(why)) => format!("paused: {why}"),
            StreamStatus::Streaming => "streaming".into(),
            StreamStatus::Retrying(why) => format!("retrying: {why}"),
            StreamStatus::Stopped => "stopped".into(),
            StreamStatus::Failed(why) => format!("failed: {why}"),
        }
    }
}

/// One stream (source → destination shards).
#[derive(Debug, Clone)]
pub struct ReplicationRecord {
    /// The task running it (`None` from the CLI).
    pub task_id: Option<u64>,
    /// Source database.
    pub source: String,
    /// The source shard it reads (a stream back from N shards runs one per shard).
    pub source_shard: usize,
    /// Started by a cutover (the reverse stream): the copy it continues was checked then.
    pub from_cutover: bool,
    /// Destination database.
    pub destination: String,
    /// Destination shards.
    pub shards: usize,
    /// Replication slot.
    pub slot: String,
    /// Publication.
    pub publication: String,
    /// Status.
    pub status: StreamStatus,
    /// End of the last message received.
    pub received_lsn: Lsn,
    /// Position every shard has applied (what the source was told is flushed).
    pub applied_lsn: Lsn,
    /// The source's current WAL position (read about every second).
    pub source_lsn: Lsn,
    /// `source_lsn - confirmed_flush_lsn` of the slot, as the running session last measured
    /// it (`None`: not measured since the stream (re)started, or it is not running).
    pub lag_bytes: Option<u64>,
    /// Source commit time of the oldest transaction received but not applied everywhere
    /// (`None`: nothing pending).
    pub oldest_pending: Option<SystemTime>,
    /// Transactions applied.
    pub transactions: u64,
    /// Rows changed on the shards (a row sent to two shards counts twice).
    pub rows: u64,
    /// Bytes of change messages received.
    pub bytes: u64,
    /// Rates over the last interval: transactions, rows, bytes per second.
    pub rates: (f64, f64, f64),
    /// The last error (also while retrying).
    pub last_error: Option<String>,
    /// Reconnections after errors.
    pub retries: u64,
    /// Pause, resume and resync requests of the operator.
    pub control: Arc<StreamControl>,
    started: Instant,
    rate_mark: (Instant, u64, u64, u64),
}

impl ReplicationRecord {
    /// Time since the oldest pending transaction committed on the source (zero when nothing
    /// is pending).
    pub fn lag(&self) -> Duration {
        self.oldest_pending
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .unwrap_or_default()
    }

    /// `lag_bytes` for people: a size, or "unknown" when not measured.
    pub fn lag_bytes_text(&self) -> String {
        self.lag_bytes
            .map(crate::reshard::human::bytes)
            .unwrap_or_else(|| "unknown".into())
    }

    /// Time since the stream started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// Every stream of this process, shared by the tasks and the admin database.
#[derive(Debug, Clone, Default)]
pub struct ReplicationStats {
    records: Arc<Mutex<Vec<ReplicationRecord>>>,
}

/// One stream's record in [`ReplicationStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamId(usize);

impl ReplicationStats {
    fn lock(&self) -> MutexGuard<'_, Vec<ReplicationRecord>> {
        match self.records.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Registers a stream (records stay, so finished streams remain visible).
    pub fn add(
        &self,
        task_id: Option<u64>,
        source: &str,
        destination: &str,
        shards: usize,
        slot: &str,
        publication: &str,
    ) -> StreamId {
        let now = Instant::now();
        let record = ReplicationRecord {
            task_id,
            source: source.into(),
            source_shard: 0,
            from_cutover: false,
            destination: destination.into(),
            shards,
            slot: slot.into(),
            publication: publication.into(),
            status: StreamStatus::Starting,
            received_lsn: Lsn::ZERO,
            applied_lsn: Lsn::ZERO,
            source_lsn: Lsn::ZERO,
            lag_bytes: None,
            oldest_pending: None,
            transactions: 0,
            rows: 0,
            bytes: 0,
            rates: (0.0, 0.0, 0.0),
            last_error: None,
            retries: 0,
            control: Arc::default(),
            started: now,
            rate_mark: (now, 0, 0, 0),
        };
        let mut records = self.lock();
        records.push(record);
        StreamId(records.len() - 1)
    }

    /// Changes a stream's record.
    pub fn update(&self, id: StreamId, change: impl FnOnce(&mut ReplicationRecord)) {
        if let Some(record) = self.lock().get_mut(id.0) {
            change(record);
        }
    }

    /// Recomputes the rates (called about once a second).
    pub fn tick(&self, id: StreamId) {
        self.update(id, |r| {
            let (at, txns, rows, bytes) = r.rate_mark;
            let seconds = at.elapsed().as_secs_f64();
            if seconds >= 0.5 {
                r.rates = (
                    (r.transactions - txns) as f64 / seconds,
                    (r.rows - rows) as f64 / seconds,
                    (r.bytes - bytes) as f64 / seconds,
                );
                r.rate_mark = (Instant::now(), r.transactions, r.rows, r.bytes);
            }
        });
    }

    /// One stream's record.
    pub fn get(&self, id: StreamId) -> Option<ReplicationRecord> {
        self.lock().get(id.0).cloned()
    }

    /// Every stream, oldest first.
    pub fn all(&self) -> Vec<ReplicationRecord> {
        self.lock().clone()
    }

    /// The streams of task `task_id` that have not ended (a stream back from several shards
    /// runs one per shard).
    pub fn live_of_task(&self, task_id: u64) -> Vec<ReplicationRecord> {
        self.lock()
            .iter()
            .filter(|r| r.task_id == Some(task_id) && !r.status.is_over())
            .cloned()
            .collect()
    }

    /// Whether a stream that has not ended reads from database `source` (its schema changes
    /// must reach the destination too).
    pub fn is_source(&self, source: &str) -> bool {
        self.lock()
            .iter()
            .any(|r| r.source == source && !r.status.is_over())
    }
}
