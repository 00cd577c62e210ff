//! The task commands of the admin database: `SHOW TASKS` lists background tasks (none until a
//! resharding step starts one), `STOP_TASK` of an unknown id is a clear error.

use integration::{sqlstate, Setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_tasks_and_stop_task() {
    let setup = Setup::new("", "");
    let admin = setup.admin().await;
    let rows = admin
        .simple_query("SHOW TASKS")
        .await
        .unwrap_or_else(|e| panic!("SHOW TASKS: {e}"));
    let columns = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::RowDescription(columns) => Some(
            columns
                .iter()
                .map(|c| c.name().to_string())
                .collect::<Vec<_>>(),
        ),
        _ => None,
    });
    assert_eq!(
        columns.unwrap_or_default(),
        [
            "id",
            "type",
            "status",
            "step",
            "started_at",
            "elapsed",
            "elapsed_ms",
            "error"
        ]
    );
    let error = admin
        .simple_query("STOP_TASK 42")
        .await
        .err()
        .unwrap_or_else(|| panic!("STOP_TASK of an unknown task must fail"));
    assert_eq!(sqlstate(&error).as_deref(), Some("42704"));
    let error = admin
        .simple_query("STOP_TASK everything")
        .await
        .err()
        .unwrap_or_else(|| panic!("STOP_TASK needs a number"));
    assert_eq!(sqlstate(&error).as_deref(), Some("42601"));
}
