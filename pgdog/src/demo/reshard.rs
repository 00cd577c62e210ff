//! The demo's move, run in-process through the admin layer exactly as an operator would type
//! it: `RESHARD demo demo_sharded pgdog_demo`, then the task is watched (its step in
//! `SHOW TASKS`, the table copies, the stream's lag) until it ends; the pause comes from
//! `SHOW CUTOVER`. Where RESHARD is not available yet, the same move runs as its steps:
//! `COPY_DATA`, a wait for a small lag (`SHOW REPLICATION`), then `CUTOVER`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pgdog_admin::{Command, CopyData, ResultTable, Show};

use super::config::{APP_DATABASE, PUBLICATION, SHARDED_DATABASE};
use super::progress::{latest_stream, CopyTotals, Display};
use super::workload::WorkloadStats;
use super::DemoError;
use crate::admin::{self, Reply};
use crate::net::sqlstate;
use crate::reshard::stream::StreamStatus;
use crate::reshard::{TaskSnapshot, TaskStatus};
use crate::state::PoolerState;

/// How often the progress is read.
const TICK: Duration = Duration::from_millis(250);
/// Longest the step-by-step move waits for the stream's lag to become small.
const LAG_WAIT: Duration = Duration::from_secs(600);

/// What the move did.
#[derive(Debug, Clone, Default)]
pub struct MoveReport {
    /// From RESHARD to the end of the cutover.
    pub total: Duration,
    /// From RESHARD to the last table copied, when seen.
    pub copy_time: Option<Duration>,
    /// The copy's totals.
    pub copy: CopyTotals,
    /// Rows the stream applied after the copy.
    pub streamed_rows: u64,
    /// The final step of the task that cut over (`done: ...`).
    pub cutover_step: String,
    /// How long client traffic was paused (`SHOW CUTOVER`'s `pause_ms`, else the step text).
    pub pause: Option<Duration>,
    /// Transactions the workload had committed when the cutover ended.
    pub committed_at_cutover: u64,
}

/// Runs the move (RESHARD, or with `steps` its admin commands one by one), showing its
/// progress on `display`, until the cutover is done.
pub async fn run(
    state: &Arc<PoolerState>,
    workload: &WorkloadStats,
    display: &mut Display,
    steps: bool,
) -> Result<MoveReport, DemoError> {
    let mut watch = Watch {
        state,
        workload,
        display,
        started: Instant::now(),
        copy_time: None,
    };
    let arguments = CopyData {
        from: APP_DATABASE.into(),
        to: SHARDED_DATABASE.into(),
        publication: PUBLICATION.into(),
        slot: None,
    };
    let last = if steps {
        watch.display.println(&format!(
            "Running the move as its steps: {}, then CUTOVER\n",
            copy_data_command()
        ));
        step_by_step(&mut watch, arguments).await?
    } else {
        match admin::execute(state, &Command::Reshard(arguments.clone())).await {
            Ok(reply) => {
                let id = task_id("RESHARD", &reply)?;
                watch.until(id, |_| false).await?
            }
            // TODO(RESHARD): remove this branch once RESHARD is in every build.
            Err(e) if e.code == sqlstate::FEATURE_NOT_SUPPORTED => {
                watch.display.println(&format!(
                    "RESHARD is not available in this build ({}); running its steps: {}, then CUTOVER\n",
                    e.message,
                    copy_data_command()
                ));
                step_by_step(&mut watch, arguments).await?
            }
            Err(e) => return Err(DemoError::Reshard(format!("RESHARD: {}", e.message))),
        }
    };
    let committed_at_cutover = workload.committed();
    let total = watch.started.elapsed();
    let copy_time = watch.copy_time;
    Ok(MoveReport {
        total,
        copy_time,
        copy: CopyTotals::of(&state.table_copies.list()),
        streamed_rows: latest_stream(state).map(|s| s.rows).unwrap_or(0),
        pause: show_cutover_pause(state)
            .await
            .or_else(|| paused_in(&last.step)),
        cutover_step: last.step,
        committed_at_cutover,
    })
}

fn copy_data_command() -> String {
    format!("COPY_DATA {APP_DATABASE} {SHARDED_DATABASE} {PUBLICATION}")
}

/// COPY_DATA, a wait for the stream's lag to fall below the cutover's threshold, CUTOVER.
async fn step_by_step(
    watch: &mut Watch<'_>,
    arguments: CopyData,
) -> Result<TaskSnapshot, DemoError> {
    let reply = admin::execute(watch.state, &Command::CopyData(arguments))
        .await
        .map_err(|e| DemoError::Reshard(format!("COPY_DATA: {}", e.message)))?;
    let copy = task_id("COPY_DATA", &reply)?;
    let streaming = watch
        .until(copy, |task| task.step.starts_with("streaming changes"))
        .await?;
    if streaming.status.is_over() {
        return Err(DemoError::Reshard(format!(
            "the copy (task {copy}) ended before streaming: {}",
            streaming.step
        )));
    }
    let threshold = watch
        .state
        .databases()
        .config()
        .config
        .general
        .cutover_traffic_stop_threshold;
    watch.until_lag(copy, threshold).await?;
    let reply = admin::execute(watch.state, &Command::Cutover(Some(copy)))
        .await
        .map_err(|e| DemoError::Reshard(format!("CUTOVER: {}", e.message)))?;
    let cutover = task_id("CUTOVER", &reply)?;
    watch.until(cutover, |_| false).await
}

/// Follows tasks, keeping the display current.
struct Watch<'a> {
    state: &'a Arc<PoolerState>,
    workload: &'a WorkloadStats,
    display: &'a mut Display,
    started: Instant,
    copy_time: Option<Duration>,
}

impl Watch<'_> {
    /// Reads the progress once: the display, when the copy ended, and whether pgdog is
    /// shutting down (Ctrl-C).
    fn tick(&mut self, step: &str) -> Result<(), DemoError> {
        if self.state.shutting_down() {
            return Err(DemoError::Interrupted);
        }
        if self.copy_time.is_none() && CopyTotals::of(&self.state.table_copies.list()).finished() {
            self.copy_time = Some(self.started.elapsed());
        }
        self.display.update(self.state, self.workload, step);
        Ok(())
    }

    /// Waits until task `id` satisfies `done` or ends; a task that ended other than finished
    /// is an error.
    async fn until(
        &mut self,
        id: u64,
        done: impl Fn(&TaskSnapshot) -> bool,
    ) -> Result<TaskSnapshot, DemoError> {
        loop {
            let task = self
                .state
                .tasks
                .list()
                .into_iter()
                .find(|t| t.id == id)
                .ok_or_else(|| DemoError::Reshard(format!("task {id} is not in SHOW TASKS")))?;
            self.tick(&format!("{}: {}", task.kind, task.step))?;
            match &task.status {
                TaskStatus::Finished => return Ok(task),
                TaskStatus::Failed(message) => {
                    return Err(DemoError::Reshard(format!(
                        "task {id} ({}) failed: {message}",
                        task.kind
                    )))
                }
                TaskStatus::Stopped => {
                    return Err(DemoError::Reshard(format!(
                        "task {id} ({}) was stopped at: {}",
                        task.kind, task.step
                    )))
                }
                TaskStatus::Running | TaskStatus::Stopping if done(&task) => return Ok(task),
                TaskStatus::Running | TaskStatus::Stopping => {}
            }
            tokio::time::sleep(TICK).await;
        }
    }

    /// Waits until the stream of task `id` runs with at most `threshold` bytes of lag.
    async fn until_lag(&mut self, id: u64, threshold: u64) -> Result<(), DemoError> {
        let started = Instant::now();
        loop {
            let stream = self
                .state
                .replication
                .all()
                .into_iter()
                .rev()
                .find(|r| r.task_id == Some(id));
            self.tick("waiting for the stream to catch up before the cutover")?;
            if let Some(stream) = stream {
                match &stream.status {
                    status
                        if status.is_applying()
                            && stream.lag_bytes.is_some_and(|lag| lag <= threshold) =>
                    {
                        return Ok(())
                    }
                    StreamStatus::Failed(why) => {
                        return Err(DemoError::Reshard(format!("the stream failed: {why}")))
                    }
                    StreamStatus::Stopped => {
                        return Err(DemoError::Reshard("the stream stopped".into()))
                    }
                    _ => {}
                }
            }
            if started.elapsed() > LAG_WAIT {
                return Err(DemoError::Reshard(format!(
                    "the stream's lag stayed above {threshold} bytes for {} s",
                    LAG_WAIT.as_secs()
                )));
            }
            tokio::time::sleep(TICK).await;
        }
    }
}

/// The `task_id` of a command's one-row reply.
fn task_id(command: &str, reply: &Reply) -> Result<u64, DemoError> {
    let Reply::Table { table, .. } = reply else {
        return Err(DemoError::Reshard(format!("{command} returned no task id")));
    };
    cell(table, table.rows.len().saturating_sub(1), "task_id")
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| DemoError::Reshard(format!("{command} returned no task id")))
}

/// The value of `column` (by name) in `row`.
fn cell<'t>(table: &'t ResultTable, row: usize, column: &str) -> Option<&'t str> {
    let index = table.columns.iter().position(|c| c.name == column)?;
    table.rows.get(row)?.get(index)?.as_deref()
}

/// `pause_ms` of the last cutover in `SHOW CUTOVER`, when it has that column.
async fn show_cutover_pause(state: &Arc<PoolerState>) -> Option<Duration> {
    let Ok(Reply::Table { table, .. }) = admin::execute(state, &Command::Show(Show::Cutover)).await
    else {
        return None;
    };
    let last = table.rows.len().checked_sub(1)?;
    cell(&table, last, "pause_ms")?
        .parse()
        .ok()
        .map(Duration::from_millis)
}

/// The `N` of "... paused N ms ..." in a task's step.
fn paused_in(step: &str) -> Option<Duration> {
    let (_, after) = step.split_once("paused ")?;
    let (number, rest) = after.split_once(' ')?;
    if !rest.starts_with("ms") {
        return None;
    }
    number.parse().ok().map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_from_the_step_text() {
        assert_eq!(
            paused_in("done: clients of demo now reach demo_sharded; traffic paused 182 ms"),
            Some(Duration::from_millis(182))
        );
        assert_eq!(
            paused_in("done: traffic paused 7 ms (timeout: switched with changes not applied)"),
            Some(Duration::from_millis(7))
        );
        assert_eq!(paused_in("traffic paused; moving the sequences"), None);
    }

    #[test]
    fn task_id_by_column_name() {
        let mut table = ResultTable::new(&[
            ("replication_slot", pgdog_admin::ColumnType::Text),
            ("task_id", pgdog_admin::ColumnType::BigInt),
        ]);
        table
            .push(vec![Some("pgdog_demo".into()), Some("7".into())])
            .unwrap();
        let reply = Reply::Table {
            table,
            tag: "SELECT 1".into(),
        };
        assert_eq!(task_id("RESHARD", &reply).unwrap(), 7);
        assert!(task_id("RESHARD", &Reply::Done("X".into())).is_err());
    }
}
