//! The data copy through the admin database: `COPY_DATA` (its `task_id` and
//! `replication_slot`), the task's row in `SHOW TASKS`, and `SHOW TABLE_COPIES`.

use std::time::Duration;

use tokio_postgres::Client;

use crate::sharded::{run_simple, QueryResult};

/// The columns `SHOW TABLE_COPIES` starts with (more may follow).
pub const TABLE_COPIES_COLUMNS: [&str; 12] = [
    "schema",
    "table",
    "status",
    "rows",
    "rows_human",
    "bytes",
    "bytes_human",
    "bytes_per_sec",
    "bytes_per_sec_human",
    "elapsed",
    "elapsed_ms",
    "sql",
];

/// The statuses a `SHOW TABLE_COPIES` row may have.
pub const TABLE_COPY_STATUSES: [&str; 6] = [
    "pending",
    "copying",
    "verifying",
    "done",
    "skipped",
    "failed",
];

/// What `COPY_DATA` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    /// The task's id.
    pub task_id: String,
    /// The replication slot it uses.
    pub replication_slot: String,
}

/// Runs `COPY_DATA <args>` and checks its one row with columns `task_id`, `replication_slot`.
pub async fn copy_data(admin: &Client, args: &str) -> Started {
    let sql = format!("COPY_DATA {args}");
    let result = run_simple(admin, &sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    assert_eq!(
        result.columns,
        ["task_id", "replication_slot"],
        "{sql}: {result:?}"
    );
    assert_eq!(result.rows.len(), 1, "{sql}: {result:?}");
    let value = |column: &str| {
        result
            .cell(0, column)
            .unwrap_or_else(|| panic!("{sql}: no {column}: {result:?}"))
            .to_string()
    };
    Started {
        task_id: value("task_id"),
        replication_slot: value("replication_slot"),
    }
}

/// One task's row of `SHOW TASKS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRow {
    /// `type`.
    pub kind: String,
    /// `status` (running, finished, failed, stopped).
    pub status: String,
    /// `step`, empty when NULL.
    pub step: String,
    /// `error`, empty when NULL.
    pub error: String,
}

/// The row of task `task_id` in `SHOW TASKS`, if listed.
pub async fn task(admin: &Client, task_id: &str) -> Option<TaskRow> {
    let tasks = run_simple(admin, "SHOW TASKS")
        .await
        .unwrap_or_else(|e| panic!("SHOW TASKS: {e}"));
    let row = (0..tasks.rows.len()).find(|r| tasks.cell(*r, "id") == Some(task_id))?;
    let text = |column: &str| tasks.cell(row, column).unwrap_or("").to_string();
    Some(TaskRow {
        kind: text("type"),
        status: text("status"),
        step: text("step"),
        error: text("error"),
    })
}

/// Waits until task `task_id` has ended (neither `running` nor `stopping`) and returns its row.
pub async fn wait_task_end(admin: &Client, task_id: &str, timeout: Duration) -> TaskRow {
    crate::eventually(timeout, "the copy_data task to end", || async move {
        task(admin, task_id)
            .await
            .filter(|row| !matches!(row.status.as_str(), "running" | "stopping"))
    })
    .await
}

/// Waits until a `COPY_DATA` task has copied everything and streams (its step says so);
/// panics if the task ends first.
pub async fn wait_streaming(admin: &Client, task_id: &str, timeout: Duration) -> TaskRow {
    crate::eventually(
        timeout,
        "the copy to end and streaming to start",
        || async move {
            let row = task(admin, task_id).await?;
            assert_eq!(row.status, "running", "the copy task ended: {row:?}");
            row.step.starts_with("streaming changes").then_some(row)
        },
    )
    .await
}

/// Waits until a `COPY_DATA` task has copied everything and streams (its step says so), then
/// stops it with `STOP_TASK` and returns its final row (`stopped` when all went well; the
/// task's row as it ended if it ended before streaming).
pub async fn stop_when_streaming(admin: &Client, task_id: &str, timeout: Duration) -> TaskRow {
    let row = crate::eventually(timeout, "the copy_data task to stream", || async move {
        task(admin, task_id).await.filter(|row| {
            row.step.starts_with("streaming changes")
                || !matches!(row.status.as_str(), "running" | "stopping")
        })
    })
    .await;
    if row.status != "running" {
        return row;
    }
    run_simple(admin, &format!("STOP_TASK {task_id}"))
        .await
        .unwrap_or_else(|e| panic!("STOP_TASK {task_id}: {e}"));
    wait_task_end(admin, task_id, timeout).await
}

/// `SHOW TABLE_COPIES`, checking that its columns start with [`TABLE_COPIES_COLUMNS`].
pub async fn table_copies(admin: &Client) -> QueryResult {
    let result = run_simple(admin, "SHOW TABLE_COPIES")
        .await
        .unwrap_or_else(|e| panic!("SHOW TABLE_COPIES: {e}"));
    assert!(
        result.columns.len() >= TABLE_COPIES_COLUMNS.len()
            && result.columns[..TABLE_COPIES_COLUMNS.len()] == TABLE_COPIES_COLUMNS,
        "SHOW TABLE_COPIES columns: {:?}",
        result.columns
    );
    result
}

/// The rows of `copies` belonging to task `task_id` when the view has a `task_id` column,
/// else all of them.
pub fn of_task(copies: &QueryResult, task_id: &str) -> QueryResult {
    if !copies.columns.iter().any(|c| c == "task_id") {
        return copies.clone();
    }
    QueryResult {
        columns: copies.columns.clone(),
        rows: (0..copies.rows.len())
            .filter(|r| copies.cell(*r, "task_id") == Some(task_id))
            .map(|r| copies.rows[r].clone())
            .collect(),
        counts: copies.counts.clone(),
    }
}

/// One stream's row of `SHOW REPLICATION` (column → value).
pub type StreamRow = std::collections::BTreeMap<String, String>;

/// The `SHOW REPLICATION` row of task `task_id`'s stream (the latest, if it ran several).
pub async fn stream_row(admin: &Client, task_id: &str) -> Option<StreamRow> {
    let result = run_simple(admin, "SHOW REPLICATION")
        .await
        .unwrap_or_else(|e| panic!("SHOW REPLICATION: {e}"));
    let row = (0..result.rows.len())
        .rev()
        .find(|r| result.cell(*r, "task_id") == Some(task_id))?;
    Some(
        result
            .columns
            .iter()
            .map(|c| (c.clone(), result.cell(row, c).unwrap_or("").to_string()))
            .collect(),
    )
}

/// `X/Y` as a number.
pub fn lsn(text: &str) -> u64 {
    let (hi, lo) = text.split_once('/').unwrap_or(("0", "0"));
    let half = |part: &str| u64::from_str_radix(part, 16).unwrap_or(0);
    (half(hi) << 32) | half(lo)
}

/// Waits until task `task_id`'s stream has applied everything the source (`source`, a
/// direct connection) had written when called, and streams; returns its row.
pub async fn wait_caught_up(
    admin: &Client,
    source: &Client,
    task_id: &str,
    timeout: Duration,
) -> StreamRow {
    let target: String = source
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .unwrap_or_else(|e| panic!("pg_current_wal_insert_lsn: {e}"))
        .get(0);
    let target = lsn(&target);
    let deadline = std::time::Instant::now() + timeout;
    let mut last = None;
    while std::time::Instant::now() < deadline {
        if let Some(row) = stream_row(admin, task_id).await {
            let status = row.get("status").map(String::as_str).unwrap_or("");
            assert!(
                !status.starts_with("failed") && status != "stopped",
                "task {task_id}'s stream ended: {row:?}"
            );
            let applied = lsn(row.get("applied_lsn").map(String::as_str).unwrap_or(""));
            if status == "streaming" && applied >= target {
                return row;
            }
            last = Some(row);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "task {task_id}'s stream did not apply up to {target:X} within {timeout:?}; last seen: {last:?}; task: {:?}",
        task(admin, task_id).await
    )
}

/// Waits until task `task_id`'s stream has a status for which `check` holds (`what` names
/// it in the timeout's panic); returns its row.
pub async fn wait_stream_status(
    admin: &Client,
    task_id: &str,
    what: &str,
    timeout: Duration,
    check: fn(&str) -> bool,
) -> StreamRow {
    crate::eventually(timeout, what, || async move {
        let row = stream_row(admin, task_id).await?;
        check(row.get("status")?).then_some(row)
    })
    .await
}
