//! Every cutover of this process, for `SHOW CUTOVER`: where it is, and the pause it caused.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

/// One cutover.
#[derive(Debug, Clone)]
pub struct CutoverRecord {
    /// The cutover's task.
    pub task_id: u64,
    /// The stream's task it switched.
    pub stream_task_id: u64,
    /// The database whose clients move.
    pub source: String,
    /// Where they go.
    pub destination: String,
    /// running, done, failed.
    pub status: &'static str,
    /// Its current (or last) step.
    pub step: String,
    /// How long client traffic was paused (once it was).
    pub pause: Option<Duration>,
    /// The source's WAL position at the pause (first source shard).
    pub lsn: Option<String>,
    /// Switched after the timeout with changes not applied (`cutover_timeout_action = cutover`).
    pub forced: bool,
    /// The reverse stream's task (`CUTOVER <it>` rolls back).
    pub reverse_task_id: Option<u64>,
    /// When it started.
    pub started_at: SystemTime,
    /// Why it failed.
    pub error: Option<String>,
}

/// The cutovers of this process, shared by their tasks and the admin database.
#[derive(Debug, Clone, Default)]
pub struct CutoverLog {
    records: Arc<Mutex<Vec<CutoverRecord>>>,
}

impl CutoverLog {
    fn lock(&self) -> MutexGuard<'_, Vec<CutoverRecord>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a cutover starting now.
    pub fn add(&self, task_id: u64, stream_task_id: u64, source: &str, destination: &str) {
        self.lock().push(CutoverRecord {
            task_id,
            stream_task_id,
            source: source.into(),
            destination: destination.into(),
            status: "running",
            step: String::new(),
            pause: None,
            lsn: None,
            forced: false,
            reverse_task_id: None,
            started_at: SystemTime::now(),
            error: None,
        });
    }

    /// Changes the latest record of task `task_id` (a `RESHARD` may try more than once).
    pub fn update(&self, task_id: u64, change: impl FnOnce(&mut CutoverRecord)) {
        if let Some(record) = self.lock().iter_mut().rev().find(|r| r.task_id == task_id) {
            change(record);
        }
    }

    /// Every cutover, oldest first.
    pub fn all(&self) -> Vec<CutoverRecord> {
        self.lock().clone()
    }
}
