//! Live progress of every table copy (what `SHOW TABLE_COPIES` lists and the CLI's progress
//! bars read): status, rows, bytes, ranges and verification per table.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Where a table's copy is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyStatus {
    /// Waiting for a worker.
    Pending,
    /// Ranges being copied.
    Copying,
    /// Reading the shards back to compare.
    Verifying,
    /// Copied and verified.
    Done,
    /// Copied and verified by an earlier run.
    Skipped,
    /// Failed (see `error`).
    Failed,
}

impl CopyStatus {
    /// The word `SHOW TABLE_COPIES` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            CopyStatus::Pending => "pending",
            CopyStatus::Copying => "copying",
            CopyStatus::Verifying => "verifying",
            CopyStatus::Done => "done",
            CopyStatus::Skipped => "skipped",
            CopyStatus::Failed => "failed",
        }
    }
}

/// One table's copy.
#[derive(Debug, Clone)]
pub struct TableCopy {
    /// The task copying it (`None` from the CLI).
    pub task_id: Option<u64>,
    /// Schema.
    pub schema: String,
    /// Table.
    pub table: String,
    /// Status.
    pub status: CopyStatus,
    /// Rows read from the source.
    pub rows: u64,
    /// Bytes read from the source (binary COPY).
    pub bytes: u64,
    /// The table's size on the source (heap and TOAST bytes): about what `bytes` will reach.
    pub size: u64,
    /// Ranges committed on every shard.
    pub ranges_done: usize,
    /// Ranges in all.
    pub ranges: usize,
    /// `ok`, or what did not match; empty until verified.
    pub verified: String,
    /// The source's COPY statement (of the first range).
    pub sql: String,
    /// The error, when failed.
    pub error: Option<String>,
    started: Option<Instant>,
    /// Time spent so far (or in all, once done).
    pub elapsed: Duration,
}

impl TableCopy {
    /// Bytes per second since it started.
    pub fn bytes_per_sec(&self) -> u64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            (self.bytes as f64 / seconds) as u64
        } else {
            0
        }
    }
}

/// Handle to one table's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyId(usize);

/// Every table copy since pgdog started.
#[derive(Debug, Default, Clone)]
pub struct TableCopies {
    inner: Arc<Mutex<Vec<TableCopy>>>,
}

impl TableCopies {
    fn lock(&self) -> MutexGuard<'_, Vec<TableCopy>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a pending table.
    pub fn add(
        &self,
        task_id: Option<u64>,
        schema: &str,
        table: &str,
        sql: &str,
        ranges: usize,
    ) -> CopyId {
        let mut records = self.lock();
        records.push(TableCopy {
            task_id,
            schema: schema.to_string(),
            table: table.to_string(),
            status: CopyStatus::Pending,
            rows: 0,
            bytes: 0,
            size: 0,
            ranges_done: 0,
            ranges,
            verified: String::new(),
            sql: sql.to_string(),
            error: None,
            started: None,
            elapsed: Duration::ZERO,
        });
        CopyId(records.len() - 1)
    }

    /// Changes a record.
    pub fn update(&self, id: CopyId, change: impl FnOnce(&mut TableCopy)) {
        if let Some(record) = self.lock().get_mut(id.0) {
            change(record);
        }
    }

    /// Sets the status, starting or stopping its clock.
    pub fn set_status(&self, id: CopyId, status: CopyStatus) {
        self.update(id, |r| {
            if r.started.is_none() && status == CopyStatus::Copying {
                r.started = Some(Instant::now());
            }
            if let Some(started) = r.started {
                r.elapsed = started.elapsed();
            }
            if matches!(
                status,
                CopyStatus::Done | CopyStatus::Failed | CopyStatus::Skipped
            ) {
                r.started = None;
            }
            r.status = status;
        });
    }

    /// Adds rows and bytes read.
    pub fn add_progress(&self, id: CopyId, rows: u64, bytes: u64) {
        self.update(id, |r| {
            r.rows += rows;
            r.bytes += bytes;
        });
    }

    /// A copy of one record.
    pub fn get(&self, id: CopyId) -> Option<TableCopy> {
        self.lock().get(id.0).cloned()
    }

    /// Copies of the records, with running clocks read now.
    pub fn list(&self) -> Vec<TableCopy> {
        self.lock()
            .iter()
            .map(|r| {
                let mut r = r.clone();
                if let Some(started) = r.started {
                    r.elapsed = started.elapsed();
                }
                r
            })
            .collect()
    }

    /// The records of one task (or of the CLI run, `None`).
    pub fn of_task(&self, task_id: Option<u64>) -> Vec<TableCopy> {
        self.list()
            .into_iter()
            .filter(|r| r.task_id == task_id)
            .collect()
    }
}
