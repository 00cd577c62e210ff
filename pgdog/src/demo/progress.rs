//! The move's live progress: one status line (the current step; tables, rows and throughput
//! while copying; the lag while streaming; the workload's transactions per second and errors),
//! redrawn about four times a second on a terminal, printed as a plain line every few seconds
//! otherwise.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::config::{APP_DATABASE, SHARDED_DATABASE};
use super::workload::WorkloadStats;
use super::Out;
use crate::reshard::copy::{CopyStatus, TableCopy};
use crate::reshard::human;
use crate::reshard::stream::{ReplicationRecord, StreamStatus};
use crate::state::PoolerState;

/// How often a plain line is printed when the output is not a terminal.
const LINE_EVERY: Duration = Duration::from_secs(3);

/// What the copy has done so far, over every table copy of this process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyTotals {
    /// Tables copied (or skipped as copied before).
    pub done: usize,
    /// Tables in all.
    pub tables: usize,
    /// Rows read from the source.
    pub rows: u64,
    /// Bytes read from the source.
    pub bytes: u64,
}

impl CopyTotals {
    /// Sums the table copies.
    pub fn of(copies: &[TableCopy]) -> CopyTotals {
        CopyTotals {
            done: copies
                .iter()
                .filter(|t| matches!(t.status, CopyStatus::Done | CopyStatus::Skipped))
                .count(),
            tables: copies.len(),
            rows: copies.iter().map(|t| t.rows).sum(),
            bytes: copies.iter().map(|t| t.bytes).sum(),
        }
    }

    /// Whether every table is copied (and there is at least one).
    pub fn finished(&self) -> bool {
        self.tables > 0 && self.done == self.tables
    }
}

/// The newest stream of the move (source to the shards; not a stream back after the cutover).
pub fn latest_stream(state: &PoolerState) -> Option<ReplicationRecord> {
    state
        .replication
        .all()
        .into_iter()
        .rev()
        .find(|r| r.source == APP_DATABASE && r.destination == SHARDED_DATABASE)
}

/// The status line, redrawn or printed.
pub struct Display {
    bar: Option<ProgressBar>,
    out: Out,
    started: Instant,
    last_line: Option<Instant>,
    /// (when, bytes copied, transactions committed) at the previous update, for the rates.
    mark: (Instant, u64, u64),
    rates: (f64, f64),
}

impl Display {
    /// A display writing to `out`; a redrawn line on stdout when `terminal`.
    pub fn new(out: Out, terminal: bool) -> Display {
        let bar = terminal.then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout());
            let style = ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
            bar.set_style(style);
            bar
        });
        let now = Instant::now();
        Display {
            bar,
            out,
            started: now,
            last_line: None,
            mark: (now, 0, 0),
            rates: (0.0, 0.0),
        }
    }

    /// Redraws (or, every few seconds, prints) the line for `step`.
    pub fn update(&mut self, state: &PoolerState, workload: &WorkloadStats, step: &str) {
        let copy = CopyTotals::of(&state.table_copies.list());
        let committed = workload.committed();
        let now = Instant::now();
        let seconds = now.duration_since(self.mark.0).as_secs_f64();
        if seconds >= 0.9 {
            self.rates = (
                copy.bytes.saturating_sub(self.mark.1) as f64 / seconds,
                committed.saturating_sub(self.mark.2) as f64 / seconds,
            );
            self.mark = (now, copy.bytes, committed);
        }
        let line = line(
            step,
            copy,
            self.rates.0,
            latest_stream(state).as_ref(),
            self.rates.1,
            workload.errors(),
        );
        match &self.bar {
            Some(bar) => {
                bar.set_message(line);
                bar.tick();
            }
            None => {
                if self.last_line.is_none_or(|at| at.elapsed() >= LINE_EVERY) {
                    self.last_line = Some(now);
                    let elapsed = self.started.elapsed().as_secs();
                    self.out.print(&format!(
                        "[{:02}:{:02}] {line}\n",
                        elapsed / 60,
                        elapsed % 60
                    ));
                }
            }
        }
    }

    /// Prints `text` above the line (or as is, without a terminal).
    pub fn println(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| self.out.print(text)),
            None => self.out.print(text),
        }
    }

    /// Removes the line.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The status line: `step | copy ... | lag ... | app ...`.
fn line(
    step: &str,
    copy: CopyTotals,
    bytes_per_sec: f64,
    stream: Option<&ReplicationRecord>,
    tx_per_sec: f64,
    errors: u64,
) -> String {
    let mut parts = vec![step.to_string()];
    if copy.tables > 0 {
        let mut part = format!(
            "copy: {}/{} tables, {} rows, {}",
            copy.done,
            copy.tables,
            human::count(copy.rows),
            human::bytes(copy.bytes)
        );
        if !copy.finished() {
            part.push_str(&format!(" at {}/s", human::bytes(bytes_per_sec as u64)));
        }
        parts.push(part);
    }
    match stream.map(|s| (s, &s.status)) {
        Some((stream, status)) if status.is_applying() => parts.push(format!(
            "lag: {} ({:.1} s), {} changes applied",
            stream.lag_bytes_text(),
            stream.lag().as_secs_f64(),
            human::count(stream.rows)
        )),
        // Stopped: the cutover is done and nothing reaches the source any more.
        Some((_, StreamStatus::Stopped)) | None => {}
        Some((_, other)) => parts.push(format!("stream: {}", other.describe())),
    }
    parts.push(format!("app: {tx_per_sec:.0} tx/s, {errors} errors"));
    parts.join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line_shows_what_is_known() {
        let copy = CopyTotals {
            done: 1,
            tables: 2,
            rows: 123_456,
            bytes: 9_000_000,
        };
        assert_eq!(
            line("copying the tables", copy, 4_500_000.0, None, 49.6, 0),
            "copying the tables | copy: 1/2 tables, 123.5k rows, 9.0 MB at 4.5 MB/s | app: 50 tx/s, 0 errors"
        );
        assert_eq!(
            line("starting", CopyTotals::default(), 0.0, None, 0.0, 2),
            "starting | app: 0 tx/s, 2 errors"
        );
        assert!(CopyTotals {
            done: 2,
            tables: 2,
            ..copy
        }
        .finished());
        assert!(!CopyTotals::default().finished());
    }
}
