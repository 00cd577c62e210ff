//! The replication stream end to end: `pgdog data-sync` copies the data set and goes on
//! streaming while a write workload runs on the source (inserts, updates that move rows
//! between shards with and without the key in the replica identity, updates leaving TOAST
//! values unchanged, deletes, TRUNCATE, a transaction of 120k rows); once the writes stop,
//! the shards must equal the source table by table (counts and checksums of the rows that
//! belong on each shard). Also: kill -9 mid-stream then `--replicate-only` resumes with no
//! loss and no duplicate, and a destination shard restart pauses the stream, which resumes.
//! Rows changed many times within one batch (written by their net effect) end as on the
//! source too.

use std::time::{Duration, Instant};

use integration::data_sync::writer::Writer;
use integration::data_sync::{CliRun, DataSyncOptions, DataSyncSetup, DEFAULT_SLOT, SOURCE};
use integration::schema_sync::describe;

/// How long the source may take to reach the shards once writes stop.
const CATCH_UP: Duration = Duration::from_secs(120);

/// Changes the writer does not make: rows moving shard, unchanged TOAST, truncate, a large
/// transaction.
const EXTRA_CHANGES: &[&str] = &[
    // orders: primary key id, sharded by customer_id (not in the replica identity): where
    // the old row is cannot be read from the message.
    "UPDATE \"Sales\".orders SET customer_id = customer_id % 50 + 1, note = 'moved' \
     WHERE id % 7 = 3 AND customer_id IS NOT NULL",
    // documents: sharded by its primary key; new keys move rows, TOAST bodies unchanged ('u').
    "UPDATE public.documents SET id = id || '-moved', version = version + 100 WHERE id LIKE 'doc-%0'",
    // Unchanged TOAST on rows that stay.
    "UPDATE public.documents SET version = version + 1 WHERE id LIKE 'doc-%1' OR id LIKE 'doc-%2'",
    // Key (and shard) changes where the old key is in the message.
    "UPDATE public.devices SET id = md5(id::text || 'moved')::uuid, serial_no = serial_no + 1 \
     WHERE serial_no % 5 = 0",
    "DELETE FROM public.events_2024 WHERE id % 11 = 0",
    "TRUNCATE public.settings",
    "INSERT INTO public.settings (id, value, updated_at) OVERRIDING SYSTEM VALUE \
     VALUES (1, 'after truncate', now()), (2, NULL, NULL)",
    // GENERATED ALWAYS identity: the shards take the source's values.
    "INSERT INTO public.settings (value) VALUES ('generated id')",
    // One transaction of 120k rows.
    "INSERT INTO public.events (id, device_id, at, kind, payload) \
     SELECT 5000000 + i, md5('dev-' || (i % 50 + 1))::uuid, \
            timestamptz '2025-02-01 00:00:00+00' + i * interval '1 second', 'bulk', \
            jsonb_build_object('i', i) \
     FROM generate_series(1, 120000) AS i",
    "UPDATE public.countries SET name = name || ' (renamed)' WHERE code IN ('C1', 'C2')",
];

async fn run_extra_changes(setup: &DataSyncSetup) {
    let client = setup.source_client(SOURCE).await;
    for sql in EXTRA_CHANGES {
        client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }
}

/// Waits until every shard holds exactly the source's rows, or panics with the differences.
async fn wait_identical(setup: &DataSyncSetup, what: &str) {
    let deadline = Instant::now() + CATCH_UP;
    loop {
        let problems = setup.compare_with(SOURCE).await;
        if problems.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            panic!(
                "{what}: the shards never caught up with the source:\n  {}",
                problems.join("\n  ")
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until the slot confirmed everything the source wrote.
async fn wait_slot_caught_up(setup: &DataSyncSetup) {
    let client = setup.source_client(SOURCE).await;
    let deadline = Instant::now() + CATCH_UP;
    loop {
        let row = client
            .query_one(
                "SELECT confirmed_flush_lsn >= pg_current_wal_flush_lsn(), \
                 (pg_current_wal_flush_lsn() - confirmed_flush_lsn)::bigint \
                 FROM pg_replication_slots WHERE slot_name = $1",
                &[&DEFAULT_SLOT],
            )
            .await
            .unwrap_or_else(|e| panic!("pg_replication_slots: {e:?}"));
        if row.get::<_, bool>(0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the slot is still {} bytes behind",
            row.get::<_, i64>(1)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn replication_state_rows(setup: &DataSyncSetup, k: usize) -> i64 {
    let client = setup.shard_client(k).await;
    client
        .query_one(
            "SELECT count(*) FROM pgdog.replication_state WHERE slot = $1",
            &[&DEFAULT_SLOT],
        )
        .await
        .unwrap_or_else(|e| panic!("replication_state on shard {k}: {e:?}"))
        .get(0)
}

/// Copy, then stream a mixed workload; the shards end equal to the source, the slot catches
/// up, and SIGTERM stops the stream cleanly (exit 0, the slot kept).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_workload_during_copy_and_streaming_ends_identical() {
    let setup = DataSyncSetup::start(DataSyncOptions::default()).await;
    let writer = Writer::start(
        setup.source_client(SOURCE).await,
        setup.scale(),
        Duration::from_millis(5),
    );
    let mut run = setup.spawn_streaming(&[]);
    run.wait_for_stderr("streaming changes", Duration::from_secs(120))
        .await;
    run_extra_changes(&setup).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let written = writer.stop().await;
    assert!(
        written.len() > 10,
        "the writer barely ran: {}",
        written.len()
    );
    wait_identical(&setup, "after the workload").await;
    wait_slot_caught_up(&setup).await;
    for k in 0..setup.shards() {
        assert_eq!(replication_state_rows(&setup, k).await, 1, "shard {k}");
    }
    let cleanup = [
        "cleanup",
        "--from-database",
        SOURCE,
        "--to-database",
        "destination",
        "--publication",
        "pub",
    ];
    let busy = setup.pgdog_cli(&cleanup);
    assert_eq!(busy.code, 1, "{}", describe(&busy));
    assert!(busy.stderr.contains("in use"), "{}", describe(&busy));
    run.terminate();
    let output = run.finish(Duration::from_secs(60)).await;
    assert_eq!(output.code, 0, "{}", describe(&output));
    assert!(output.stdout.contains("stopped:"), "{}", describe(&output));
    assert!(
        setup.slots().await.iter().any(|s| s.name == DEFAULT_SLOT),
        "the slot must survive a stop"
    );
    // Abandoning the move: the slot and the shards' bookkeeping go, the rows stay.
    let done = setup.pgdog_cli(&cleanup);
    assert_eq!(done.code, 0, "{}", describe(&done));
    assert!(
        done.stdout.contains("dropped replication slot pgdog_pub"),
        "{}",
        describe(&done)
    );
    assert!(setup.slots().await.iter().all(|s| s.name != DEFAULT_SLOT));
    for k in 0..setup.shards() {
        assert_eq!(replication_state_rows(&setup, k).await, 0, "shard {k}");
    }
    assert!(setup.compare_with(SOURCE).await.is_empty());
}

/// Polls until some shard has committed a batch the source has not been told about (its
/// recorded end LSN is past the slot's confirmed_flush_lsn): the moment where a crash makes the
/// source send transactions again that this shard must skip. Whether it was seen.
async fn wait_shard_ahead_of_slot(setup: &DataSyncSetup, timeout: Duration) -> bool {
    let source = setup.source_client(SOURCE).await;
    let mut shards = Vec::new();
    for k in 0..setup.shards() {
        shards.push(setup.shard_client(k).await);
    }
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let confirmed: String = source
            .query_one(
                "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
                &[&DEFAULT_SLOT],
            )
            .await
            .unwrap_or_else(|e| panic!("pg_replication_slots: {e:?}"))
            .get(0);
        for shard in &shards {
            let ahead = shard
                .query_opt(
                    "SELECT 1 FROM pgdog.replication_state WHERE slot = $1 AND end_lsn > $2::text::pg_lsn",
                    &[&DEFAULT_SLOT, &confirmed],
                )
                .await
                .ok()
                .flatten()
                .is_some();
            if ahead {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    false
}

/// kill -9 of pgdog at the moment a shard has committed changes the source was not told about,
/// while a busy source keeps writing; then `--replicate-only`: every change arrives exactly once
/// (a change applied twice would break a primary key and stop the stream).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_then_replicate_only_resumes_exactly() {
    let setup = DataSyncSetup::start(DataSyncOptions::default()).await;
    let mut run = setup.spawn_streaming(&[]);
    run.wait_for_stderr("streaming changes", Duration::from_secs(120))
        .await;
    let writer = Writer::start(
        setup.source_client(SOURCE).await,
        setup.scale(),
        Duration::from_millis(2),
    );
    let extra = {
        let client = setup.source_client(SOURCE).await;
        tokio::spawn(async move {
            for sql in EXTRA_CHANGES {
                client
                    .batch_execute(sql)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
            }
        })
    };
    let seen = wait_shard_ahead_of_slot(&setup, Duration::from_secs(60)).await;
    run.kill9();
    assert!(
        seen,
        "never saw a shard ahead of the slot's confirmed position to kill pgdog at"
    );
    extra.await.unwrap_or_else(|e| panic!("extra changes: {e}"));
    let mut resumed = setup.spawn_streaming(&["--replicate-only"]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let written = writer.stop().await;
    assert!(
        written.len() > 10,
        "the writer barely ran: {}",
        written.len()
    );
    wait_identical(&setup, "after kill -9 and --replicate-only").await;
    wait_slot_caught_up(&setup).await;
    assert!(resumed.is_running(), "{}", describe(&resumed.output()));
    resumed.terminate();
    let output = resumed.finish(Duration::from_secs(60)).await;
    assert_eq!(output.code, 0, "{}", describe(&output));
}

/// The last shard (a cluster of its own) restarts while changes stream: the stream pauses,
/// reconnects and ends identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_restart_mid_stream_pauses_and_resumes() {
    let setup = DataSyncSetup::start(DataSyncOptions {
        separate_last_shard: true,
        ..Default::default()
    })
    .await;
    let mut run = setup.spawn_streaming(&[]);
    run.wait_for_stderr("streaming changes", Duration::from_secs(120))
        .await;
    let writer = Writer::start(
        setup.source_client(SOURCE).await,
        setup.scale(),
        Duration::from_millis(2),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let last = setup.shards() - 1;
    setup
        .shard_cluster(last)
        .restart()
        .unwrap_or_else(|e| panic!("restart the last shard: {e}"));
    run_extra_changes(&setup).await;
    let written = writer.stop().await;
    assert!(
        written.len() > 10,
        "the writer barely ran: {}",
        written.len()
    );
    wait_identical(&setup, "after a shard restart").await;
    assert!(run.is_running(), "the stream must survive a shard restart");
    let stderr = run.output().stderr;
    assert!(stderr.contains("reconnecting"), "{stderr}");
    run.terminate();
    let output = run.finish(Duration::from_secs(60)).await;
    assert_eq!(output.code, 0, "{}", describe(&output));
}

/// The source restarts while changes stream: the stream reconnects and ends identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_restart_reconnects() {
    let setup = DataSyncSetup::start(DataSyncOptions::default()).await;
    let mut run = setup.spawn_streaming(&[]);
    run.wait_for_stderr("streaming changes", Duration::from_secs(120))
        .await;
    let writer = Writer::start(
        setup.source_client(SOURCE).await,
        setup.scale(),
        Duration::from_millis(2),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let written = writer.stop().await;
    assert!(!written.is_empty());
    setup
        .source
        .restart()
        .unwrap_or_else(|e| panic!("restart the source: {e}"));
    run_extra_changes(&setup).await;
    wait_identical(&setup, "after a source restart").await;
    assert!(run.is_running(), "{}", describe(&run.output()));
    let stderr = run.output().stderr;
    assert!(stderr.contains("reconnecting"), "{stderr}");
    run.terminate();
    let output = run.finish(Duration::from_secs(60)).await;
    assert_eq!(output.code, 0, "{}", describe(&output));
}

/// The text of every row of `table`, sorted, hashed: equal on two databases when they hold
/// the same rows (duplicates included).
async fn rows_hash(client: &tokio_postgres::Client, table: &str) -> (i64, String) {
    let row = client
        .query_one(
            &format!(
                "SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') \
                 FROM {table} AS t"
            ),
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("{table}: {e:?}"));
    (row.get(0), row.get(1))
}

/// Waits until every shard holds exactly the source's rows of `table` (a table on every
/// shard), or panics with what the stream printed.
async fn wait_every_shard_has(
    setup: &DataSyncSetup,
    source: &tokio_postgres::Client,
    table: &str,
    run: &mut CliRun,
) {
    let expected = rows_hash(source, table).await;
    let deadline = Instant::now() + CATCH_UP;
    for k in 0..setup.shards() {
        let shard = setup.shard_client(k).await;
        loop {
            let found = rows_hash(&shard, table).await;
            if found == expected {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "shard {k}: {table} is {found:?}, the source {expected:?}\n{}",
                describe(&run.output())
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A table with REPLICA IDENTITY FULL and no primary key (duplicate rows, json and point
/// columns, which have no equality operator): updates and deletes change exactly one row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_identity_full_without_a_key_changes_one_row_at_a_time() {
    let setup = DataSyncSetup::start(DataSyncOptions::default()).await;
    let source = setup.source_client(SOURCE).await;
    source
        .batch_execute(
            "CREATE TABLE public.audit (n integer, who text, detail json, at point, note text); \
             ALTER TABLE public.audit REPLICA IDENTITY FULL; \
             INSERT INTO public.audit SELECT i % 5, 'user ' || (i % 3), \
               json_build_object('i', i % 5), point(i % 2, 1), NULL \
             FROM generate_series(1, 40) AS i; \
             ALTER PUBLICATION pub ADD TABLE public.audit",
        )
        .await
        .unwrap_or_else(|e| panic!("audit table: {e:?}"));
    let mut run = setup.spawn_streaming(&[]);
    run.wait_for_stderr("streaming changes", Duration::from_secs(120))
        .await;
    for sql in [
        // One of several identical rows.
        "DELETE FROM public.audit WHERE ctid = (SELECT ctid FROM public.audit WHERE n = 1 LIMIT 1)",
        "UPDATE public.audit SET note = 'first' WHERE ctid = (SELECT ctid FROM public.audit WHERE n = 2 LIMIT 1)",
        "UPDATE public.audit SET detail = '{\"changed\": true}', at = point(9, 9) WHERE n = 3",
        "UPDATE public.audit SET who = NULL WHERE n = 4",
        "DELETE FROM public.audit WHERE who IS NULL AND n = 4 AND ctid = (SELECT min(ctid) FROM public.audit WHERE n = 4)",
        "INSERT INTO public.audit VALUES (7, 'late', NULL, NULL, 'x'), (7, 'late', NULL, NULL, 'x')",
        "DELETE FROM public.audit WHERE ctid = (SELECT ctid FROM public.audit WHERE n = 7 LIMIT 1)",
    ] {
        source
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }
    wait_every_shard_has(&setup, &source, "public.audit", &mut run).await;
    run.terminate();
    let output = run.finish(Duration::from_secs(60)).await;
    assert_eq!(output.code, 0, "{}", describe(&output));
}

/// Rows changed many times within one batch (written by their net effect): counters updated
/// thousands of times with their TOAST body unchanged, rows inserted then updated, inserted
/// then deleted, deleted then inserted again, keys that change in between; and a unique index
/// made on the source and the shards behind pgdog's back, then two rows swapping values under
/// it (the batch written by its net effect trips it, the stream writes the changes one by
/// one from then on). Every shard ends with the source's rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_changed_many_times_in_one_batch_end_as_on_the_source() {
    let setup = DataSyncSetup::start(DataSyncOptions::default()).await;
    let source = setup.source_client(SOURCE).await;
    source
        .batch_execute(
            "CREATE TABLE public.counters (id int PRIMARY KEY, n bigint NOT NULL, body text); \
             INSERT INTO public.counters SELECT i, 0, \
               (SELECT string_agg(md5(i::text || g::text), '') FROM generate_series(1, 300) g) \
             FROM generate_series(1, 50) AS i; \
             CREATE TABLE public.swaps (id int PRIMARY KEY, code int NOT NULL); \
             INSERT INTO public.swaps SELECT i, i FROM generate_series(1, 10) AS i; \
             ALTER PUBLICATION pub ADD TABLE public.counters, public.swaps",
        )
        .await
        .unwrap_or_else(|e| panic!("tables: {e:?}"));
    let mut run = setup.spawn_streaming(&[]);
    run.wait_for_stderr("streaming changes", Duration::from_secs(120))
        .await;
    let one_transaction = "BEGIN; \
        DO $$ BEGIN FOR r IN 1..200 LOOP UPDATE public.counters SET n = n + 1; END LOOP; END $$; \
        INSERT INTO public.counters SELECT i, i, 'new ' || i FROM generate_series(1000, 1100) AS i; \
        UPDATE public.counters SET n = n * 2 WHERE id >= 1000; \
        DELETE FROM public.counters WHERE id >= 1000 AND id % 3 = 0; \
        INSERT INTO public.counters SELECT i, -i, NULL FROM generate_series(1000, 1100) AS i \
          WHERE i % 3 = 0; \
        DELETE FROM public.counters WHERE id <= 10; \
        INSERT INTO public.counters SELECT i, 7, 'again ' || i FROM generate_series(1, 5) AS i; \
        UPDATE public.counters SET body = 'edited' WHERE id BETWEEN 3 AND 8; \
        UPDATE public.counters SET id = id + 10000 WHERE id BETWEEN 40 AND 45; \
        UPDATE public.counters SET n = n + 1 WHERE id > 10000; \
        COMMIT";
    source
        .batch_execute(one_transaction)
        .await
        .unwrap_or_else(|e| panic!("the large transaction: {e:?}"));
    // Many small transactions, most of them in the same batches.
    for i in 0..300 {
        source
            .batch_execute(&format!(
                "UPDATE public.counters SET n = n + 1 WHERE id = {}",
                i % 50 + 1
            ))
            .await
            .unwrap_or_else(|e| panic!("small transaction {i}: {e:?}"));
    }
    // A unique index pgdog does not know about, then a swap that passes through a third value.
    for k in 0..setup.shards() {
        setup
            .shard_client(k)
            .await
            .batch_execute("CREATE UNIQUE INDEX swaps_code ON public.swaps (code)")
            .await
            .unwrap_or_else(|e| panic!("unique index on shard {k}: {e:?}"));
    }
    source
        .batch_execute(
            "CREATE UNIQUE INDEX swaps_code ON public.swaps (code); \
             BEGIN; \
             UPDATE public.swaps SET code = -1 WHERE id = 1; \
             UPDATE public.swaps SET code = 1 WHERE id = 2; \
             UPDATE public.swaps SET code = 2 WHERE id = 1; \
             COMMIT",
        )
        .await
        .unwrap_or_else(|e| panic!("swap: {e:?}"));
    for table in ["public.counters", "public.swaps"] {
        wait_every_shard_has(&setup, &source, table, &mut run).await;
    }
    run.terminate();
    let output = run.finish(Duration::from_secs(60)).await;
    assert_eq!(output.code, 0, "{}", describe(&output));
    assert!(
        output.stderr.contains("applying changes one by one"),
        "the swap should have tripped the unique index once\n{}",
        describe(&output)
    );
}

/// `--replicate-only` from a slot that does not exist fails at once, naming the slot and what
/// creates it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicate_only_without_a_slot_fails_clearly() {
    let setup = DataSyncSetup::start(DataSyncOptions::default()).await;
    let mut run = setup.spawn_streaming(&["--replicate-only", "--replication-slot", "nope"]);
    let output = run.finish(Duration::from_secs(60)).await;
    assert_eq!(output.code, 1, "{}", describe(&output));
    assert!(
        output.stderr.contains("\"nope\" does not exist") && output.stderr.contains("COPY_DATA"),
        "{}",
        describe(&output)
    );
}
