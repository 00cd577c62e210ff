//! The replication stream from the admin database: `COPY_DATA` copies and then streams,
//! `SHOW REPLICATION` follows it, `STOP_TASK` stops it with the slot kept (`SHOW
//! REPLICATION_SLOTS` shows it inactive), `REPLICATE` resumes from the slot, and `DROP_SLOT`
//! refuses while the slot is in use and drops it once stopped. A source with a small data set
//! and two destination shards on two clusters; every check of the shards compares them with
//! the source table by table.

use std::collections::BTreeMap;
use std::time::Duration;

use integration::data_sync::admin;
use integration::data_sync::{DataSyncOptions, DataSyncSetup, Scale, PUBLICATION, SOURCE};
use integration::free_port;
use integration::sharded::{run_simple, QueryError, QueryResult};
use tokio_postgres::Client;

/// The slot of the test's stream.
const SLOT: &str = "admin_stream";
/// How long a copy, a catch-up or a stop may take.
const WAIT: Duration = Duration::from_secs(120);
/// First id of the orders the test inserts.
const ORDER_BASE: i64 = 8_000_000;

/// The columns of `SHOW REPLICATION`.
const REPLICATION_COLUMNS: [&str; 26] = [
    "task_id",
    "source",
    "source_shard",
    "destination",
    "shards",
    "slot",
    "publication",
    "status",
    "received_lsn",
    "applied_lsn",
    "source_lsn",
    "lag_bytes",
    "lag_bytes_human",
    "lag",
    "lag_ms",
    "transactions",
    "rows",
    "bytes",
    "transactions_per_sec",
    "rows_per_sec",
    "bytes_per_sec",
    "bytes_per_sec_human",
    "retries",
    "elapsed",
    "elapsed_ms",
    "last_error",
];

/// The columns of `SHOW REPLICATION_SLOTS`.
const SLOTS_COLUMNS: [&str; 13] = [
    "database",
    "host",
    "port",
    "slot_name",
    "plugin",
    "active",
    "restart_lsn",
    "confirmed_flush_lsn",
    "current_wal_lsn",
    "lag_bytes",
    "lag_bytes_human",
    "wal_status",
    "error",
];

/// One row of a result, by column name.
type Record = BTreeMap<String, Option<String>>;

fn record(result: &QueryResult, row: usize) -> Record {
    result
        .columns
        .iter()
        .cloned()
        .zip(result.rows[row].iter().cloned())
        .collect()
}

fn text<'a>(record: &'a Record, column: &str) -> &'a str {
    record.get(column).and_then(|v| v.as_deref()).unwrap_or("")
}

async fn show(admin: &Client, sql: &str) -> QueryResult {
    run_simple(admin, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn refused(admin: &Client, sql: &str) -> QueryError {
    match run_simple(admin, sql).await {
        Ok(result) => panic!("{sql} succeeded with {result:?}, expected an error"),
        Err(e) => e,
    }
}

/// `X/Y` as a number.
fn lsn(text: &str) -> u64 {
    let (hi, lo) = text
        .split_once('/')
        .unwrap_or_else(|| panic!("not an LSN: {text:?}"));
    let half = |part: &str| {
        u64::from_str_radix(part, 16).unwrap_or_else(|e| panic!("not an LSN: {text:?}: {e}"))
    };
    (half(hi) << 32) | half(lo)
}

/// The `SHOW REPLICATION` row of task `task_id`.
async fn stream_of(admin: &Client, task_id: &str) -> Option<Record> {
    let result = show(admin, "SHOW REPLICATION").await;
    assert_eq!(result.columns, REPLICATION_COLUMNS, "SHOW REPLICATION");
    (0..result.rows.len())
        .map(|r| record(&result, r))
        .find(|r| text(r, "task_id") == task_id)
}

/// The `SHOW REPLICATION_SLOTS` rows.
async fn slot_rows(admin: &Client) -> Vec<Record> {
    let result = show(admin, "SHOW REPLICATION_SLOTS").await;
    assert_eq!(result.columns, SLOTS_COLUMNS, "SHOW REPLICATION_SLOTS");
    (0..result.rows.len()).map(|r| record(&result, r)).collect()
}

/// The source's WAL position now.
async fn source_wal(setup: &DataSyncSetup) -> u64 {
    let client = setup.source_client(SOURCE).await;
    let row = client
        // The insert position: with synchronous_commit = off the write position may still be
        // before the last commit.
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .unwrap_or_else(|e| panic!("pg_current_wal_lsn: {e:?}"));
    lsn(row.get(0))
}

/// Inserts orders `ORDER_BASE + from ..= ORDER_BASE + to` on the source, one transaction.
async fn insert_orders(setup: &DataSyncSetup, from: i64, to: i64) {
    let sql = format!(
        "INSERT INTO \"Sales\".orders (id, customer_id, status, amount, quantity, placed_at, note) \
         SELECT {ORDER_BASE} + i, i % {} + 1, 'new', i * 1.5, 1, \
                timestamptz '2025-05-01 00:00:00+00' + i * interval '1 minute', 'streamed' \
         FROM generate_series({from}, {to}) AS i",
        Scale::TINY.customers
    );
    setup
        .source_client(SOURCE)
        .await
        .batch_execute(&sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
}

/// Orders inserted by the test, summed over the shards.
async fn streamed_orders(setup: &DataSyncSetup) -> i64 {
    let mut total = 0;
    for k in 0..setup.shards() {
        let row = setup
            .shard_client(k)
            .await
            .query_one(
                "SELECT count(*) FROM \"Sales\".orders WHERE id > $1 AND note = 'streamed'",
                &[&ORDER_BASE],
            )
            .await
            .unwrap_or_else(|e| panic!("count on shard {k}: {e:?}"));
        total += row.get::<_, i64>(0);
    }
    total
}

/// Waits until task `task_id`'s stream has applied everything up to `target` and follows
/// the source (status streaming, small lag, the source's position read after `target`), and
/// the shards hold `orders` streamed orders.
async fn wait_applied(
    admin: &Client,
    setup: &DataSyncSetup,
    task_id: &str,
    target: u64,
    orders: i64,
) -> Record {
    let mut last = None;
    let found = tokio::time::timeout(WAIT, async {
        loop {
            let row = stream_of(admin, task_id).await;
            let count = streamed_orders(setup).await;
            if let Some(row) = &row {
                let applied = lsn(text(row, "applied_lsn"));
                // Read from the source about once a second: wait for a reading after `target`,
                // so `lag_bytes` is one too.
                let source = lsn(text(row, "source_lsn"));
                let lag: u64 = text(row, "lag_bytes").parse().unwrap_or(u64::MAX);
                let transactions: u64 = text(row, "transactions").parse().unwrap_or(0);
                if text(row, "status") == "streaming"
                    && transactions >= 1
                    && applied >= target
                    && source >= target
                    && lag < 1024 * 1024
                    && count == orders
                {
                    return row.clone();
                }
            }
            last = Some((row, count));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    match found {
        Ok(row) => row,
        Err(_) => panic!(
            "task {task_id}: not applied up to {target:X} with {orders} streamed orders on the shards within {WAIT:?}; last seen: {last:?}\n{:?}",
            admin::task(admin, task_id).await
        ),
    }
}

/// Waits until task `task_id` reports a step starting with `prefix`.
async fn wait_step(admin: &Client, task_id: &str, prefix: &str) -> admin::TaskRow {
    integration::eventually(WAIT, &format!("task {task_id}: step {prefix:?}"), || {
        let prefix = prefix.to_string();
        async move {
            let task = admin::task(admin, task_id).await?;
            assert!(
                task.status == "running",
                "task {task_id} ended before {prefix:?}: {task:?}"
            );
            task.step.starts_with(&prefix).then_some(task)
        }
    })
    .await
}

/// The `SHOW REPLICATION_SLOTS` row of [`SLOT`] on the source, once `active` is `active`.
async fn wait_slot(admin: &Client, active: &str) -> Record {
    integration::eventually(
        WAIT,
        &format!("slot {SLOT} active = {active}"),
        || async move {
            slot_rows(admin)
                .await
                .into_iter()
                .find(|r| text(r, "slot_name") == SLOT && text(r, "database") == SOURCE)
                .filter(|r| text(r, "active") == active)
        },
    )
    .await
}

/// Adds a database `ghost` (schema admin included) on a port nobody listens on, and reloads.
async fn add_unreachable_database(setup: &mut DataSyncSetup, admin: &Client) {
    let pgdog = setup.start_pgdog();
    let read = |name: &str| {
        std::fs::read_to_string(pgdog.dir().join(name))
            .unwrap_or_else(|e| panic!("read {name}: {e}"))
    };
    let config = format!(
        "{}\n[[databases]]\nname = \"ghost\"\nhost = \"127.0.0.1\"\nport = {}\ndatabase_name = \"ghost\"\n",
        read("pgdog.toml"),
        free_port()
    );
    let users = format!(
        "{}\n[[users]]\nname = \"ghost_admin\"\ndatabase = \"ghost\"\npassword = \"ghost\"\nschema_admin = true\n",
        read("users.toml")
    );
    pgdog.write_config(&config, &users);
    show(admin, "RELOAD").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_data_streams_stop_task_replicate_and_drop_slot() {
    let mut setup = DataSyncSetup::start(DataSyncOptions {
        shards: 2,
        separate_last_shard: true,
        scale: Scale::TINY,
        ..Default::default()
    })
    .await;
    let admin = setup.start_pgdog().admin().await;

    // Bad input first: nothing starts.
    let e = refused(
        &admin,
        &format!("REPLICATE nowhere destination {PUBLICATION}"),
    )
    .await;
    assert!(e.code == "3D000" && e.message.contains("nowhere"), "{e}");
    let e = refused(&admin, &format!("REPLICATE {SOURCE} nowhere {PUBLICATION}")).await;
    assert!(e.code == "3D000" && e.message.contains("nowhere"), "{e}");
    let e = refused(&admin, "DROP_SLOT no_such_slot").await;
    assert_eq!(e.code, "42704", "{e}");
    assert!(
        e.message
            .contains("replication slot \"no_such_slot\" does not exist"),
        "{e}"
    );
    assert!(slot_rows(&admin).await.is_empty(), "no slot yet");

    // REPLICATE of a slot that does not exist: the task fails and says why.
    let started = run_simple(
        &admin,
        &format!("REPLICATE {SOURCE} destination {PUBLICATION} no_slot_yet"),
    )
    .await
    .unwrap_or_else(|e| panic!("REPLICATE: {e}"));
    assert_eq!(started.columns, ["task_id", "replication_slot"]);
    assert_eq!(started.cell(0, "replication_slot"), Some("no_slot_yet"));
    let failed_id = started.cell(0, "task_id").expect("task_id").to_string();
    let failed = admin::wait_task_end(&admin, &failed_id, WAIT).await;
    assert_eq!(failed.kind, "replication", "{failed:?}");
    assert!(
        failed.status == "failed" && failed.error.contains("does not exist"),
        "{failed:?}"
    );
    let row = stream_of(&admin, &failed_id)
        .await
        .expect("SHOW REPLICATION row of the failed task");
    assert!(text(&row, "status").starts_with("failed: "), "{row:?}");
    assert!(text(&row, "last_error").contains("no_slot_yet"), "{row:?}");

    // COPY_DATA copies, then the same task streams.
    let copy = admin::copy_data(
        &admin,
        &format!("{SOURCE} destination {PUBLICATION} {SLOT}"),
    )
    .await;
    assert_eq!(copy.replication_slot, SLOT);
    let task = wait_step(&admin, &copy.task_id, "streaming changes from slot").await;
    assert_eq!(task.kind, "copy_data", "{task:?}");
    assert!(task.step.contains(SLOT), "{task:?}");
    let copies = admin::of_task(&admin::table_copies(&admin).await, &copy.task_id);
    assert!(!copies.rows.is_empty(), "no SHOW TABLE_COPIES rows");
    for r in 0..copies.rows.len() {
        assert_eq!(copies.cell(r, "status"), Some("done"), "{copies:?}");
    }
    setup.assert_copied("after the copy").await;

    insert_orders(&setup, 1, 40).await;
    let target = source_wal(&setup).await;
    let row = wait_applied(&admin, &setup, &copy.task_id, target, 40).await;
    for (column, value) in [
        ("source", SOURCE),
        ("destination", "destination"),
        ("shards", "2"),
        ("slot", SLOT),
        ("publication", PUBLICATION),
        ("retries", "0"),
    ] {
        assert_eq!(text(&row, column), value, "{column}: {row:?}");
    }
    assert!(lsn(text(&row, "received_lsn")) >= target, "{row:?}");
    assert!(lsn(text(&row, "source_lsn")) >= target, "{row:?}");
    assert!(
        text(&row, "transactions").parse::<u64>().unwrap() >= 1,
        "{row:?}"
    );
    assert!(text(&row, "rows").parse::<u64>().unwrap() >= 40, "{row:?}");
    assert!(text(&row, "bytes").parse::<u64>().unwrap() > 0, "{row:?}");
    assert!(text(&row, "lag").ends_with(" s"), "{row:?}");
    for column in [
        "lag_ms",
        "transactions_per_sec",
        "rows_per_sec",
        "bytes_per_sec",
        "elapsed_ms",
    ] {
        assert!(
            text(&row, column).parse::<f64>().is_ok(),
            "{column}: {row:?}"
        );
    }
    assert!(text(&row, "bytes_per_sec_human").ends_with("/s"), "{row:?}");
    assert!(!text(&row, "lag_bytes_human").is_empty(), "{row:?}");

    // Updates, deletes, TOAST and omnisharded rows too (the writer's transactions).
    let writes: String = (1..=3)
        .map(|i| {
            format!(
                "BEGIN;\n{}COMMIT;\n",
                integration::data_sync::dataset::writer_sql(i, Scale::TINY)
            )
        })
        .collect();
    setup
        .source_client(SOURCE)
        .await
        .batch_execute(&writes)
        .await
        .unwrap_or_else(|e| panic!("writer transactions: {e:?}"));
    let target = source_wal(&setup).await;
    wait_applied(&admin, &setup, &copy.task_id, target, 40).await;
    setup.assert_copied("while COPY_DATA streams").await;

    // The slot is in use: visible as active, not droppable, not streamable twice.
    let slot = wait_slot(&admin, "t").await;
    assert_eq!(text(&slot, "plugin"), "pgoutput", "{slot:?}");
    assert_eq!(text(&slot, "error"), "", "{slot:?}");
    assert_eq!(
        text(&slot, "port"),
        setup.source.port().to_string(),
        "{slot:?}"
    );
    assert!(lsn(text(&slot, "current_wal_lsn")) >= target, "{slot:?}");
    let e = refused(&admin, &format!("DROP_SLOT {SLOT}")).await;
    assert_eq!(e.code, "55006", "{e}");
    assert!(
        e.message
            .contains(&format!("stop task {} first", copy.task_id)),
        "{e}"
    );
    let e = refused(
        &admin,
        &format!("REPLICATE {SOURCE} destination {PUBLICATION} {SLOT}"),
    )
    .await;
    assert_eq!(e.code, "55006", "{e}");

    // STOP_TASK stops the stream; the slot stays, inactive.
    show(&admin, &format!("STOP_TASK {}", copy.task_id)).await;
    let stopped = admin::wait_task_end(&admin, &copy.task_id, WAIT).await;
    assert_eq!(stopped.status, "stopped", "{stopped:?}");
    let row = stream_of(&admin, &copy.task_id).await.expect("stream row");
    assert_eq!(text(&row, "status"), "stopped", "{row:?}");
    let slot = wait_slot(&admin, "f").await;
    assert!(
        lsn(text(&slot, "confirmed_flush_lsn")) >= target,
        "the slot keeps what was applied: {slot:?}"
    );

    // Changes made while stopped wait in the slot; REPLICATE applies them.
    insert_orders(&setup, 41, 75).await;
    let target = source_wal(&setup).await;
    let replicate = run_simple(
        &admin,
        &format!("REPLICATE {SOURCE} destination {PUBLICATION} {SLOT}"),
    )
    .await
    .unwrap_or_else(|e| panic!("REPLICATE: {e}"));
    assert_eq!(replicate.columns, ["task_id", "replication_slot"]);
    assert_eq!(replicate.cell(0, "replication_slot"), Some(SLOT));
    let replicate_id = replicate.cell(0, "task_id").expect("task_id").to_string();
    let task = wait_step(&admin, &replicate_id, "streaming changes from slot").await;
    assert_eq!(task.kind, "replication", "{task:?}");
    wait_applied(&admin, &setup, &replicate_id, target, 75).await;
    insert_orders(&setup, 76, 90).await;
    let target = source_wal(&setup).await;
    wait_applied(&admin, &setup, &replicate_id, target, 90).await;
    setup.assert_copied("after REPLICATE").await;

    // Stopped again, the slot can be dropped; an unreachable database is a row, not a failure.
    show(&admin, &format!("STOP_TASK {replicate_id}")).await;
    let stopped = admin::wait_task_end(&admin, &replicate_id, WAIT).await;
    assert_eq!(stopped.status, "stopped", "{stopped:?}");
    wait_slot(&admin, "f").await;
    add_unreachable_database(&mut setup, &admin).await;
    let rows = slot_rows(&admin).await;
    let ghost: Vec<&Record> = rows
        .iter()
        .filter(|r| text(r, "database") == "ghost")
        .collect();
    assert!(
        ghost.len() == 1
            && !text(ghost[0], "error").is_empty()
            && text(ghost[0], "slot_name").is_empty(),
        "{rows:?}"
    );
    assert!(
        rows.iter()
            .any(|r| text(r, "slot_name") == SLOT && text(r, "error").is_empty()),
        "{rows:?}"
    );

    let dropped = show(&admin, &format!("DROP_SLOT {SLOT}")).await;
    assert_eq!(dropped.columns, ["database", "slot", "dropped"]);
    assert_eq!(
        dropped.rows,
        vec![vec![
            Some(SOURCE.to_string()),
            Some(SLOT.to_string()),
            Some("t".to_string())
        ]],
    );
    assert!(
        setup.slots().await.iter().all(|s| s.name != SLOT),
        "{:?}",
        setup.slots().await
    );
    // Gone; with a database unreachable, the answer says it could not check everywhere.
    let e = refused(&admin, &format!("DROP_SLOT {SLOT}")).await;
    assert_eq!(e.code, "08006", "{e}");
    assert!(e.message.contains("ghost"), "{e}");
}
