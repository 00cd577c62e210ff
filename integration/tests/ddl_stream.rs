//! Schema changes during a move: a stream (COPY_DATA through the admin database) runs while a
//! writer changes the source, and migrations run through pgdog in the middle: ADD COLUMN
//! with and without a default, DROP COLUMN, ALTER COLUMN TYPE int→bigint and text→varchar(n),
//! RENAME COLUMN, CREATE INDEX, CREATE TABLE plus ALTER PUBLICATION ADD TABLE, a column with
//! a volatile default (each row its own value: the
//! table is copied again), and pgdog killed with SIGKILL right after a change. The stream never stops on its own, the slot is
//! never dropped, and in the end every shard has the source's columns and index and the shards
//! hold exactly the source's rows. A second test pauses and resumes the stream, copies one
//! table again while the others stream (and again with pgdog killed during that copy), and
//! meets a change it cannot apply by itself (run on
//! the source directly, so only the Relation message tells): the stream pauses with the
//! reason, the operator fixes the shards, and RESUME_REPLICATION continues from that change.
//! A third runs DDL on the source while the stream is paused: a constant default whose kept
//! value a table rewrite cleared makes the stream copy the table again.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use integration::data_sync::admin;
use integration::data_sync::{DataSyncOptions, DataSyncSetup, Scale, PUBLICATION, SOURCE};
use integration::schema_sync::{DESTINATION, SCHEMA_ADMIN, SCHEMA_ADMIN_PASSWORD};
use integration::sharded::run_simple;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

/// How long a copy, a catch-up or a status change may take.
const WAIT: Duration = Duration::from_secs(180);

/// Writes to the source (directly, not through pgdog) until stopped: orders inserted,
/// updated and deleted, customers, documents and devices updated; every statement a
/// transaction of its own.
struct Writer {
    stop: Arc<AtomicBool>,
    errors: Arc<AtomicU64>,
    handle: JoinHandle<u64>,
}

impl Writer {
    async fn start(setup: &DataSyncSetup, first_id: i64) -> Writer {
        let client = setup.source_client(SOURCE).await;
        let stop = Arc::new(AtomicBool::new(false));
        let errors = Arc::new(AtomicU64::new(0));
        let handle = tokio::spawn({
            let (stop, errors) = (stop.clone(), errors.clone());
            async move {
                let mut i: i64 = 0;
                while !stop.load(Ordering::Relaxed) {
                    let id = first_id + i;
                    let mut sql = format!(
                        "INSERT INTO \"Sales\".orders (id, customer_id, amount, quantity, placed_at) \
                         VALUES ({id}, {}, {i}, {}, now()); \
                         UPDATE \"Sales\".orders SET amount = amount + 1 WHERE id = {};",
                        i % 200 + 1,
                        i % 5 + 1,
                        first_id + i / 2
                    );
                    if i % 3 == 0 {
                        sql.push_str(&format!(
                            "UPDATE public.customers SET balance = balance + 1 WHERE id = {};",
                            i % 200 + 1
                        ));
                    }
                    if i % 5 == 4 {
                        sql.push_str(&format!(
                            "DELETE FROM \"Sales\".orders WHERE id = {};",
                            id - 3
                        ));
                    }
                    if i % 7 == 0 {
                        sql.push_str(&format!(
                            "UPDATE public.documents SET body = 'edited {i}' WHERE id = 'doc-{}';",
                            i % 100 + 1
                        ));
                    }
                    if i % 11 == 0 {
                        sql.push_str(&format!(
                            "UPDATE public.devices SET active = NOT COALESCE(active, false) \
                             WHERE serial_no = {};",
                            (i % 100 + 1) * 1_000_003
                        ));
                    }
                    // Each statement in its own transaction, like an application's.
                    for statement in sql.split_terminator(';') {
                        if let Err(e) = client.batch_execute(statement).await {
                            errors.fetch_add(1, Ordering::Relaxed);
                            eprintln!("writer: {statement}: {e:?}");
                            if e.is_closed() {
                                return i as u64;
                            }
                        }
                    }
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                i as u64
            }
        });
        Writer {
            stop,
            errors,
            handle,
        }
    }

    /// Stops it; how many rounds it wrote.
    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let rounds = self.handle.await.unwrap_or(0);
        assert_eq!(
            self.errors.load(Ordering::Relaxed),
            0,
            "the writer saw errors"
        );
        rounds
    }
}

/// A connection to database `source` through pgdog, as the migration tool of the app.
async fn app(setup: &mut DataSyncSetup) -> Client {
    setup
        .start_pgdog()
        .connect(SCHEMA_ADMIN, SCHEMA_ADMIN_PASSWORD, SOURCE)
        .await
        .unwrap_or_else(|e| panic!("connect through pgdog: {e}"))
}

/// Runs a migration through pgdog.
async fn migrate(app: &Client, sql: &str) {
    app.batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
}

async fn admin_command(admin: &Client, sql: &str) {
    run_simple(admin, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Starts `REPLICATE` (or `COPY_DATA`) and returns the task id.
async fn start_task(admin: &Client, command: &str, slot: &str) -> String {
    let sql = format!("{command} {SOURCE} {DESTINATION} {PUBLICATION} {slot}");
    let result = run_simple(admin, &sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    result
        .cell(0, "task_id")
        .unwrap_or_else(|| panic!("{sql}: no task_id: {result:?}"))
        .to_string()
}

/// Waits until the stream's status satisfies `check`.
async fn wait_status(admin: &Client, task_id: &str, what: &str, check: fn(&str) -> bool) {
    admin::wait_stream_status(admin, task_id, what, WAIT, check).await;
}

/// The stream is alive and not paused (checked between steps: it never stops by itself).
async fn assert_running(admin: &Client, task_id: &str) {
    let task = admin::task(admin, task_id).await;
    assert!(
        task.as_ref().is_some_and(|t| t.status == "running"),
        "task {task_id}: {task:?}"
    );
    let row = admin::stream_row(admin, task_id).await;
    let status = row
        .as_ref()
        .and_then(|r| r.get("status"))
        .cloned()
        .unwrap_or_default();
    assert!(
        !status.starts_with("paused") && !status.starts_with("failed"),
        "task {task_id}: {row:?}"
    );
}

/// The columns of `table` (name, type), integers widened to bigint as the shards have them.
async fn columns(client: &Client, table: &str) -> Vec<(String, String)> {
    client
        .query(
            "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute \
             WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            &[&table],
        )
        .await
        .unwrap_or_else(|e| panic!("columns of {table}: {e}"))
        .iter()
        .map(|row| {
            let ty: String = row.get(1);
            let ty = if ty == "integer" { "bigint".into() } else { ty };
            (row.get(0), ty)
        })
        .collect()
}

/// Row count and order-independent checksum of `table`.
async fn digest(client: &Client, table: &str) -> (i64, String) {
    let row = client
        .query_one(
            &format!("SELECT count(*), COALESCE(sum(hashtext(t::text)), 0)::text FROM {table} t"),
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("digest of {table}: {e}"));
    (row.get(0), row.get(1))
}

async fn slot_exists(source: &Client, slot: &str) -> bool {
    source
        .query_opt(
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .unwrap_or_else(|e| panic!("pg_replication_slots: {e}"))
        .is_some()
}

/// Whether a session uses `slot` on the source.
async fn slot_active(source: &Client, slot: &str) -> bool {
    source
        .query_one(
            "SELECT active FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .unwrap_or_else(|e| panic!("pg_replication_slots: {e}"))
        .get(0)
}

/// A source and two shards, pgdog, and `COPY_DATA` with `slot` streaming: the setup, an
/// admin connection, the task id and a direct connection to the source.
async fn streaming(slot: &str) -> (DataSyncSetup, Client, String, Client) {
    let mut setup = DataSyncSetup::start(DataSyncOptions {
        shards: 2,
        scale: Scale::TINY,
        ..Default::default()
    })
    .await;
    let admin = setup.start_pgdog().admin().await;
    let task = start_task(&admin, "COPY_DATA", slot).await;
    admin::wait_streaming(&admin, &task, WAIT).await;
    let source = setup.source_client(SOURCE).await;
    (setup, admin, task, source)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_through_pgdog_reach_every_shard_in_order() {
    const SLOT: &str = "ddl_slot";
    let (mut setup, admin, task, source) = streaming(SLOT).await;
    let writer = Writer::start(&setup, 9_000_000).await;
    let app_client = app(&mut setup).await;

    migrate(
        &app_client,
        "ALTER TABLE \"Sales\".orders ADD COLUMN remark text",
    )
    .await;
    source
        .batch_execute("UPDATE \"Sales\".orders SET remark = 'r' || id WHERE id % 7 = 0")
        .await
        .unwrap();
    migrate(
        &app_client,
        "ALTER TABLE public.customers ADD COLUMN tier text NOT NULL DEFAULT 'basic'",
    )
    .await;
    source
        .batch_execute("UPDATE public.customers SET tier = 'gold' WHERE id % 10 = 0")
        .await
        .unwrap();
    assert_running(&admin, &task).await;
    migrate(
        &app_client,
        "ALTER TABLE public.customers DROP COLUMN prefs",
    )
    .await;

    // pgdog dies right after a schema change; a new one resumes from the slot.
    setup.kill_pgdog();
    drop(app_client);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(slot_exists(&source, SLOT).await, "the slot is gone");
    let admin = setup.start_pgdog().admin().await;
    let task = start_task(&admin, "REPLICATE", SLOT).await;
    let app_client = app(&mut setup).await;

    migrate(
        &app_client,
        "ALTER TABLE public.documents ALTER COLUMN version TYPE bigint",
    )
    .await;
    source
        .batch_execute("UPDATE public.documents SET version = 5000000000 WHERE id = 'doc-2'")
        .await
        .unwrap();
    migrate(
        &app_client,
        "ALTER TABLE public.customers ALTER COLUMN name TYPE varchar(200)",
    )
    .await;
    // Each existing row gets its own value on the source (a table rewrite, which logical
    // replication does not carry): the stream copies the table again.
    migrate(
        &app_client,
        "ALTER TABLE public.documents ADD COLUMN stamp timestamptz DEFAULT clock_timestamp()",
    )
    .await;
    migrate(
        &app_client,
        "ALTER TABLE \"Sales\".orders RENAME COLUMN note TO memo",
    )
    .await;
    source
        .batch_execute("UPDATE \"Sales\".orders SET memo = 'memo ' || id WHERE id % 11 = 0")
        .await
        .unwrap();
    migrate(
        &app_client,
        "CREATE INDEX orders_remark_idx ON \"Sales\".orders (remark)",
    )
    .await;
    migrate(
        &app_client,
        "CREATE TABLE public.audit (id bigint PRIMARY KEY, customer_id bigint, msg text); \
         INSERT INTO public.audit SELECT g, g % 200 + 1, 'm' || g FROM generate_series(1, 500) g",
    )
    .await;
    migrate(&app_client, "ALTER PUBLICATION pub ADD TABLE public.audit").await;
    source
        .batch_execute(
            "INSERT INTO public.audit SELECT g, g % 200 + 1, 'late ' || g FROM generate_series(501, 600) g; \
             UPDATE public.audit SET msg = 'changed' WHERE id % 3 = 0; \
             DELETE FROM public.audit WHERE id % 50 = 0",
        )
        .await
        .unwrap();
    // The new table is copied (beside the stream when no other copy runs then).
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let copies = admin::of_task(&admin::table_copies(&admin).await, &task);
        if (0..copies.rows.len()).any(|r| {
            copies.cell(r, "table") == Some("audit") && copies.cell(r, "status") == Some("done")
        }) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the audit copy did not finish in {WAIT:?}:\n{}",
            setup.pgdog_log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_running(&admin, &task).await;
    let rounds = writer.stop().await;
    assert!(rounds > 0);
    admin::wait_caught_up(&admin, &source, &task, WAIT).await;
    assert_running(&admin, &task).await;
    assert!(slot_exists(&source, SLOT).await, "the slot is gone");

    setup.assert_copied("after the migrations").await;
    for k in 0..setup.shards() {
        let shard = setup.shard_client(k).await;
        for table in [
            "public.customers",
            "\"Sales\".orders",
            "public.documents",
            "public.devices",
            "public.audit",
        ] {
            let mut expected = columns(&source, table).await;
            let mut found = columns(&shard, table).await;
            // The generated column is recreated by schema sync at the end of its table.
            expected.retain(|(name, _)| name != "total");
            found.retain(|(name, _)| name != "total");
            assert_eq!(found, expected, "shard {k}: columns of {table}");
        }
        let index = shard
            .query_opt(
                "SELECT 1 FROM pg_indexes WHERE schemaname = 'Sales' AND indexname = 'orders_remark_idx'",
                &[],
            )
            .await
            .unwrap();
        assert!(index.is_some(), "shard {k}: no orders_remark_idx");
        // audit is on every shard (no sharding rule names it).
        assert_eq!(
            digest(&shard, "public.audit").await,
            digest(&source, "public.audit").await,
            "shard {k}: public.audit"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_resync_and_a_change_the_operator_fixes() {
    const SLOT: &str = "control_slot";
    let (mut setup, admin, task, source) = streaming(SLOT).await;
    let writer = Writer::start(&setup, 7_000_000).await;
    admin::wait_caught_up(&admin, &source, &task, WAIT).await;

    // A task without a stream: a clear error, and the admin session goes on.
    for command in [
        "PAUSE_REPLICATION 999",
        "RESUME_REPLICATION 999",
        "RESYNC_TABLE 999 t",
    ] {
        assert_eq!(
            integration::sharded::error_code(&admin, command).await,
            "55000",
            "{command}"
        );
    }

    assert_eq!(
        integration::sharded::error_code(&admin, &format!("RESYNC_TABLE {task} no_such_table"))
            .await,
        "42P01"
    );

    // Paused: nothing reaches the shards, the slot stays (inactive) and keeps the changes.
    admin_command(&admin, &format!("PAUSE_REPLICATION {task}")).await;
    wait_status(&admin, &task, "the stream to pause", |s| s == "paused").await;
    let applied = admin::stream_row(&admin, &task).await.unwrap()["applied_lsn"].clone();
    let shard = setup.shard_client(0).await;
    let before = digest(&shard, "\"Sales\".orders").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        admin::stream_row(&admin, &task).await.unwrap()["applied_lsn"],
        applied
    );
    assert_eq!(digest(&shard, "\"Sales\".orders").await, before);
    assert!(
        !slot_active(&source, SLOT).await,
        "a paused stream lets go of its slot"
    );
    admin_command(&admin, &format!("RESUME_REPLICATION {task}")).await;
    admin::wait_caught_up(&admin, &source, &task, WAIT).await;

    // One table copied again while the writer goes on, and while the other tables go on
    // streaming: the stream's session never lets go of the slot meanwhile.
    let copies_before = admin::of_task(&admin::table_copies(&admin).await, &task)
        .rows
        .len();
    admin_command(&admin, &format!("RESYNC_TABLE {task} public.customers")).await;
    let slot_let_go = AtomicBool::new(false);
    integration::eventually(WAIT, "the customers copy to finish", || {
        let (admin, source, task, slot_let_go) = (&admin, &source, &task, &slot_let_go);
        async move {
            slot_let_go.fetch_or(!slot_active(source, SLOT).await, Ordering::Relaxed);
            let copies = admin::of_task(&admin::table_copies(admin).await, task);
            (copies.rows.len() > copies_before
                && (0..copies.rows.len()).any(|r| {
                    copies.cell(r, "table") == Some("customers")
                        && copies.cell(r, "status") == Some("done")
                })
                && admin::stream_row(admin, task)
                    .await
                    .is_some_and(|r| r["status"] == "streaming"))
            .then_some(())
        }
    })
    .await;
    assert!(
        !slot_let_go.load(Ordering::Relaxed),
        "the stream's session ended for RESYNC_TABLE: the other tables waited for the copy"
    );
    admin::wait_caught_up(&admin, &source, &task, WAIT).await;
    // SHOW TASKS says so again once the copy and its indexes are done.
    integration::eventually(WAIT, "the task's step to say it streams again", || async {
        admin::task(&admin, &task)
            .await
            .filter(|t| t.step.starts_with("streaming changes from slot"))
            .map(|_| ())
    })
    .await;

    // pgdog dies while a table is copied beside the stream: the copy is left unfinished,
    // and the next session copies the table again (while it waits) before streaming on
    // (the comparison at the end shows nothing lost or doubled).
    let copies_before = admin::of_task(&admin::table_copies(&admin).await, &task)
        .rows
        .len();
    admin_command(&admin, &format!("RESYNC_TABLE {task} public.customers")).await;
    integration::eventually(WAIT, "the second customers copy to start", || async {
        let copies = admin::of_task(&admin::table_copies(&admin).await, &task);
        (copies.rows.len() > copies_before).then_some(())
    })
    .await;
    setup.kill_pgdog();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(slot_exists(&source, SLOT).await, "the slot is gone");
    let admin = setup.start_pgdog().admin().await;
    let task = start_task(&admin, "REPLICATE", SLOT).await;
    admin::wait_caught_up(&admin, &source, &task, WAIT).await;

    // A type change run on the source directly: the shards cannot cast the values the same
    // way, so the stream pauses with the reason and keeps its slot.
    source
        .batch_execute(
            "ALTER TABLE public.devices ALTER COLUMN seen_at TYPE bigint \
             USING extract(epoch FROM seen_at)::bigint; \
             UPDATE public.devices SET seen_at = seen_at + 1 WHERE serial_no = 1000003",
        )
        .await
        .unwrap();
    wait_status(
        &admin,
        &task,
        "the stream to pause on the type change",
        |s| s.starts_with("paused:") && s.contains("seen_at"),
    )
    .await;
    assert!(slot_exists(&source, SLOT).await, "the slot is gone");
    for k in 0..setup.shards() {
        setup
            .shard_client(k)
            .await
            .batch_execute(
                "ALTER TABLE public.devices ALTER COLUMN seen_at TYPE bigint \
                 USING extract(epoch FROM seen_at)::bigint",
            )
            .await
            .unwrap();
    }
    admin_command(&admin, &format!("RESUME_REPLICATION {task}")).await;
    admin::wait_caught_up(&admin, &source, &task, WAIT).await;
    writer.stop().await;
    admin::wait_caught_up(&admin, &source, &task, WAIT).await;
    setup.assert_copied("after the operator's fix").await;
}

/// DDL run on the source directly while the stream is paused, so the stream reads the
/// catalog only after all of it: a column added with a constant default whose kept value a
/// table rewrite (`VACUUM FULL`) then cleared, and a later type change. The catalog no longer
/// says what the existing rows read, so the stream copies the table again; the copy meets the
/// later type, which the shards get first. Every shard ends with the source's rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_the_source_no_longer_keeps_is_copied_again() {
    const SLOT: &str = "rewrite_slot";
    let (setup, admin, task, source) = streaming(SLOT).await;
    admin_command(&admin, &format!("PAUSE_REPLICATION {task}")).await;
    wait_status(&admin, &task, "the stream to pause", |s| s == "paused").await;
    for sql in [
        "ALTER TABLE public.customers ADD COLUMN level int NOT NULL DEFAULT 7",
        "VACUUM FULL public.customers",
        "UPDATE public.customers SET balance = balance + 1 WHERE id = 1",
        "ALTER TABLE public.customers ALTER COLUMN name TYPE varchar(300)",
        "UPDATE public.customers SET name = name || '!' WHERE id = 2",
    ] {
        source
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }
    admin_command(&admin, &format!("RESUME_REPLICATION {task}")).await;
    admin::wait_caught_up(&admin, &source, &task, WAIT).await;
    assert_running(&admin, &task).await;
    setup.assert_copied("after the rewrite").await;
    for k in 0..setup.shards() {
        let shard = setup.shard_client(k).await;
        assert_eq!(
            columns(&shard, "public.customers").await,
            columns(&source, "public.customers").await,
            "shard {k}: columns of public.customers"
        );
    }
    let log = setup.pgdog_log();
    assert!(
        log.contains("public.customers: a column was added whose values"),
        "the table was not copied again:\n{log}"
    );
}
