//! The registry of background tasks: each runs as a tokio task with a cancellation signal,
//! reports its current step, and stays listed after it ends (finished, failed with its
//! reason, or stopped) so operators can see what happened.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;
use tracing::{info, warn};

/// What a task does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    /// Recreating the source schema on the destination shards.
    SchemaSync,
    /// Copying rows to the destination shards.
    CopyData,
    /// Streaming changes to the destination shards.
    Replication,
    /// Switching traffic to the destination shards.
    Cutover,
    /// The whole move, unattended.
    Reshard,
}

impl TaskKind {
    /// The name `SHOW TASKS` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::SchemaSync => "schema_sync",
            TaskKind::CopyData => "copy_data",
            TaskKind::Replication => "replication",
            TaskKind::Cutover => "cutover",
            TaskKind::Reshard => "reshard",
        }
    }
}

impl fmt::Display for TaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a task is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskStatus {
    /// Working.
    Running,
    /// Asked to stop; finishing its current step.
    Stopping,
    /// Done.
    Finished,
    /// Stopped by `STOP_TASK` (or shutdown) before it was done.
    Stopped,
    /// Ended with an error.
    Failed(String),
}

impl TaskStatus {
    /// The status word `SHOW TASKS` uses.
    pub fn as_str(&self) -> &'static str {
        match self {
            TaskStatus::Running => "running",
            TaskStatus::Stopping => "stopping",
            TaskStatus::Finished => "finished",
            TaskStatus::Stopped => "stopped",
            TaskStatus::Failed(_) => "failed",
        }
    }

    /// Whether the task has ended.
    pub fn is_over(&self) -> bool {
        matches!(
            self,
            TaskStatus::Finished | TaskStatus::Stopped | TaskStatus::Failed(_)
        )
    }
}

/// What is known of one task.
#[derive(Debug)]
struct Task {
    id: u64,
    kind: TaskKind,
    started_at: SystemTime,
    started: Instant,
    progress: Mutex<Progress>,
    stop: watch::Sender<bool>,
}

#[derive(Debug)]
struct Progress {
    status: TaskStatus,
    step: String,
    ended: Option<Instant>,
}

impl Task {
    fn progress(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A task as `SHOW TASKS` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSnapshot {
    /// Its id (`STOP_TASK <id>`).
    pub id: u64,
    /// What it does.
    pub kind: TaskKind,
    /// Where it is.
    pub status: TaskStatus,
    /// Its current (or last) step.
    pub step: String,
    /// When it started.
    pub started_at: SystemTime,
    /// How long it has run (until it ended).
    pub elapsed: Duration,
}

/// What a running task gets: its cancellation signal and a way to report its step.
#[derive(Debug, Clone)]
pub struct TaskHandle {
    task: Arc<Task>,
    stop: watch::Receiver<bool>,
}

impl TaskHandle {
    /// The task's id.
    pub fn id(&self) -> u64 {
        self.task.id
    }

    /// Reports the step the task is on (shown by `SHOW TASKS`).
    pub fn set_step(&self, step: impl Into<String>) {
        self.task.progress().step = step.into();
    }

    /// A handle for work that runs outside a registry (the CLI): id 0, stopped with
    /// [`TaskHandle::request_stop`].
    pub fn standalone(kind: TaskKind) -> TaskHandle {
        let (stop, stop_rx) = watch::channel(false);
        TaskHandle {
            task: Arc::new(Task {
                id: 0,
                kind,
                started_at: SystemTime::now(),
                started: Instant::now(),
                progress: Mutex::new(Progress {
                    status: TaskStatus::Running,
                    step: "starting".into(),
                    ended: None,
                }),
                stop,
            }),
            stop: stop_rx,
        }
    }

    /// Asks the task to stop (what `STOP_TASK` does; Ctrl-C on the CLI).
    pub fn request_stop(&self) {
        self.task.stop.send_replace(true);
    }

    /// Whether the task was asked to stop.
    pub fn is_stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Resolves when the task is asked to stop (use in `select!` around long waits).
    pub async fn stopping(&mut self) {
        let _ = self.stop.wait_for(|stop| *stop).await;
    }
}

/// Why a task could not be stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StopError {
    /// No task has that id.
    #[error("task {0} does not exist")]
    NotFound(u64),
    /// The task has already ended.
    #[error("task {id} has already ended ({status})")]
    Ended {
        /// The task.
        id: u64,
        /// How it ended.
        status: &'static str,
    },
}

/// Every background task of this pgdog process.
#[derive(Debug, Default)]
pub struct TaskRegistry {
    next_id: AtomicU64,
    tasks: Mutex<BTreeMap<u64, Arc<Task>>>,
}

impl TaskRegistry {
    fn tasks(&self) -> MutexGuard<'_, BTreeMap<u64, Arc<Task>>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts `work` as a background task of `kind` and returns its id. The task ends
    /// finished when `work` returns `Ok`, failed with the message when it returns `Err`, and
    /// stopped when it returns after being asked to stop.
    pub fn start<F, Fut>(&self, kind: TaskKind, work: F) -> u64
    where
        F: FnOnce(TaskHandle) -> Fut,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (stop, stop_rx) = watch::channel(false);
        let task = Arc::new(Task {
            id,
            kind,
            started_at: SystemTime::now(),
            started: Instant::now(),
            progress: Mutex::new(Progress {
                status: TaskStatus::Running,
                step: "starting".into(),
                ended: None,
            }),
            stop,
        });
        self.tasks().insert(id, task.clone());
        let handle = TaskHandle {
            task: task.clone(),
            stop: stop_rx,
        };
        let future = work(handle);
        info!("task {id} ({kind}) started");
        tokio::spawn(async move {
            let result = future.await;
            let stopped = *task.stop.borrow();
            let mut progress = task.progress();
            progress.ended = Some(Instant::now());
            progress.status = match result {
                Ok(()) if stopped => TaskStatus::Stopped,
                Ok(()) => TaskStatus::Finished,
                Err(_) if stopped => TaskStatus::Stopped,
                Err(message) => {
                    warn!("task {id} ({kind}) failed: {message}");
                    TaskStatus::Failed(message)
                }
            };
            info!("task {id} ({kind}) {}", progress.status.as_str());
        });
        id
    }

    /// Asks task `id` to stop.
    pub fn stop(&self, id: u64) -> Result<(), StopError> {
        let task = self
            .tasks()
            .get(&id)
            .cloned()
            .ok_or(StopError::NotFound(id))?;
        let mut progress = task.progress();
        if progress.status.is_over() {
            return Err(StopError::Ended {
                id,
                status: progress.status.as_str(),
            });
        }
        progress.status = TaskStatus::Stopping;
        task.stop.send_replace(true);
        Ok(())
    }

    /// Asks every running task to stop (pgdog is shutting down).
    pub fn stop_all(&self) {
        let ids: Vec<u64> = self.tasks().keys().copied().collect();
        for id in ids {
            let _ = self.stop(id);
        }
    }

    /// Every task, oldest first.
    pub fn list(&self) -> Vec<TaskSnapshot> {
        self.tasks()
            .values()
            .map(|task| {
                let progress = task.progress();
                TaskSnapshot {
                    id: task.id,
                    kind: task.kind,
                    status: progress.status.clone(),
                    step: progress.step.clone(),
                    started_at: task.started_at,
                    elapsed: progress
                        .ended
                        .unwrap_or_else(Instant::now)
                        .duration_since(task.started),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn until_over(registry: &TaskRegistry, id: u64) -> TaskSnapshot {
        for _ in 0..200 {
            let task = registry.list().into_iter().find(|t| t.id == id);
            if let Some(task) = task.filter(|t| t.status.is_over()) {
                return task;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("task {id} did not end");
    }

    #[tokio::test]
    async fn tasks_finish_fail_and_stop() {
        let registry = TaskRegistry::default();
        let done = registry.start(TaskKind::SchemaSync, |task| async move {
            task.set_step("tables");
            Ok(())
        });
        let failed = registry.start(TaskKind::CopyData, |_| async move {
            Err("source unreachable".to_string())
        });
        let waiting = registry.start(TaskKind::Replication, |mut task| async move {
            task.set_step("streaming");
            task.stopping().await;
            Ok(())
        });
        assert!(done < failed && failed < waiting);
        let snapshot = until_over(&registry, done).await;
        assert_eq!(snapshot.status, TaskStatus::Finished);
        assert_eq!(snapshot.step, "tables");
        assert_eq!(
            until_over(&registry, failed).await.status,
            TaskStatus::Failed("source unreachable".into())
        );
        registry.stop(waiting).unwrap();
        let stopped = until_over(&registry, waiting).await;
        assert_eq!(stopped.status, TaskStatus::Stopped);
        assert_eq!(stopped.kind.as_str(), "replication");
        assert_eq!(
            registry.stop(waiting),
            Err(StopError::Ended {
                id: waiting,
                status: "stopped"
            })
        );
        assert_eq!(registry.stop(99), Err(StopError::NotFound(99)));
        assert_eq!(registry.list().len(), 3);
    }
}
