//! Which replication slots the tasks of this process use: `COPY_DATA` and `REPLICATE` claim
//! their slot on their source database when they start, so `DROP_SLOT` (and a second stream
//! of the same slot) can refuse while such a task is still running, even in the moments the
//! slot is not active on the server (during the copy, or while the stream reconnects).

use std::sync::{Mutex, MutexGuard};

use crate::reshard::TaskRegistry;

/// One task's use of a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The task.
    pub task_id: u64,
    /// The source database (pgdog.toml name).
    pub source: String,
    /// The slot.
    pub slot: String,
}

/// Every claim made by this process (claims of ended tasks no longer count).
#[derive(Debug, Default)]
pub struct SlotClaims {
    claims: Mutex<Vec<Claim>>,
}

impl SlotClaims {
    fn lock(&self) -> MutexGuard<'_, Vec<Claim>> {
        self.claims.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that task `task_id` uses `slot` of `source`.
    pub fn claim(&self, task_id: u64, source: &str, slot: &str) {
        self.lock().push(Claim {
            task_id,
            source: source.to_string(),
            slot: slot.to_string(),
        });
    }

    /// The tasks still running (or stopping) that use `slot` of one of `sources`, oldest
    /// first.
    pub fn holders(&self, tasks: &TaskRegistry, sources: &[String], slot: &str) -> Vec<u64> {
        let running: Vec<u64> = tasks
            .list()
            .into_iter()
            .filter(|t| !t.status.is_over())
            .map(|t| t.id)
            .collect();
        let mut ids: Vec<u64> = self
            .lock()
            .iter()
            .filter(|c| c.slot == slot && sources.contains(&c.source))
            .map(|c| c.task_id)
            .filter(|id| running.contains(id))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reshard::TaskKind;
    use std::time::Duration;

    #[tokio::test]
    async fn only_running_tasks_hold_their_slot() {
        let tasks = TaskRegistry::default();
        let claims = SlotClaims::default();
        let running = tasks.start(TaskKind::Replication, |mut task| async move {
            task.stopping().await;
            Ok(())
        });
        let done = tasks.start(TaskKind::CopyData, |_| async move { Ok(()) });
        claims.claim(running, "prod", "pgdog_pub");
        claims.claim(done, "prod", "pgdog_other");
        for _ in 0..200 {
            if tasks
                .list()
                .iter()
                .any(|t| t.id == done && t.status.is_over())
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let prod = ["prod".to_string()];
        assert_eq!(claims.holders(&tasks, &prod, "pgdog_pub"), vec![running]);
        assert!(claims.holders(&tasks, &prod, "pgdog_other").is_empty());
        assert!(claims
            .holders(&tasks, &["staging".to_string()], "pgdog_pub")
            .is_empty());
        tasks.stop(running).unwrap();
    }
}
