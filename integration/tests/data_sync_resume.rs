//! Resuming the data copy: `kill -9` of `pgdog data-sync` before any range is committed,
//! after some ranges, and in the post phase, each followed by the same command again; a
//! destination shard restarted mid-copy; `STOP_TASK` of a `COPY_DATA` task followed by a new
//! `COPY_DATA`. Each must end with the shards holding exactly the source's rows (counts,
//! checksums, placement), no duplicates, and the one slot reused.
//!
//! The moment of the kill is made deterministic with table locks on the shards (the
//! destination tables are created first with `pgdog schema-sync`): a `SHARE` lock holds every
//! `COPY FROM` into that table, a `ROW EXCLUSIVE` lock lets the copy through but holds the
//! post phase's `CREATE INDEX` and foreign keys.

use std::time::Duration;

use integration::data_sync::admin;
use integration::data_sync::{
    dataset, CliRun, DataSyncOptions, DataSyncSetup, Expect, TableLock, TableOutcome, TableSpec,
    DEFAULT_SLOT, PUBLICATION, SOURCE, TABLES,
};
use integration::schema_sync::describe;
use integration::sharded::run_simple;

/// How long a test waits for the copy to reach the point where it is killed.
const REACH_TIMEOUT: Duration = Duration::from_secs(120);

/// The spec of `schema.name`.
fn spec(schema: &str, name: &str) -> TableSpec {
    *dataset::table(schema, name)
        .unwrap_or_else(|| panic!("{schema}.{name} is not in the data set"))
}

/// Polls `check` every 20 ms until it returns `Some`; panics (with the run's output) if the
/// run exits first or `timeout` passes.
async fn wait_for<T, F, Fut>(run: &mut CliRun, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + REACH_TIMEOUT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if !run.is_running() {
            panic!("pgdog exited before {what}\n{}", describe(&run.output()));
        }
        if std::time::Instant::now() >= deadline {
            panic!("timed out waiting for {what}\n{}", describe(&run.output()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How many queries on shard `k` wait for a lock; all must be `COPY`s (a test's `SHARE` lock
/// is only meant to hold the copy).
async fn copies_waiting(setup: &DataSyncSetup, k: usize) -> usize {
    let waiters = setup.lock_waiters(k).await;
    for query in &waiters {
        assert!(
            query.trim_start().to_uppercase().starts_with("COPY"),
            "a statement other than COPY waits on a test's SHARE lock on shard {k}: {query}"
        );
    }
    waiters.len()
}

/// Releases the locks, waits for the killed run's server sessions to end, runs the same
/// command again and checks the result: exit 0, every table copied or already copied, the
/// rows exactly the source's, the one slot reused at its LSN.
async fn resume_and_check(
    setup: &DataSyncSetup,
    locks: Vec<TableLock>,
    slot_before: &str,
    expect: Expect,
) {
    for lock in locks {
        lock.release().await;
    }
    setup.wait_shards_idle().await;
    let (output, summary) = setup.data_sync_ok(&[]);
    setup
        .assert_complete(&output, &summary, expect, DEFAULT_SLOT)
        .await;
    let slot = &setup.slots().await[0];
    assert_eq!(
        slot.confirmed_flush_lsn, slot_before,
        "the slot must be reused as it was, not recreated"
    );
}

/// The slot after a killed run: the default one exists, is permanent; returns its LSN.
async fn slot_after_kill(setup: &DataSyncSetup) -> String {
    let slots = setup.slots().await;
    assert!(
        slots.len() == 1 && slots[0].name == DEFAULT_SLOT && !slots[0].temporary,
        "after the kill the permanent slot {DEFAULT_SLOT} must be the only one: {slots:?}"
    );
    slots[0].confirmed_flush_lsn.clone()
}

/// Killed once the copy has started but no range can be committed (every table locked on
/// every shard): the re-run copies everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_before_any_range_then_resume() {
    let setup = DataSyncSetup::start(DataSyncOptions::default()).await;
    setup.schema_sync_pre();
    let mut locks = Vec::new();
    for k in 0..setup.shards() {
        let database = integration::data_sync::shard_database(k);
        locks.push(TableLock::take(setup.shard_cluster(k), &database, &TABLES, "SHARE").await);
    }
    let mut run = setup.spawn_data_sync(&[]);
    wait_for(&mut run, "a COPY waiting on a shard", || async {
        let mut waiting = 0;
        for k in 0..setup.shards() {
            waiting += copies_waiting(&setup, k).await;
        }
        (waiting > 0).then_some(())
    })
    .await;
    let mut ranges = 0;
    for k in 0..setup.shards() {
        ranges += setup.copy_ranges(k).await;
    }
    run.kill9();
    assert_eq!(
        ranges, 0,
        "ranges were committed although every table was locked"
    );
    let slot = slot_after_kill(&setup).await;
    resume_and_check(&setup, locks, &slot, Expect::Resumed).await;
}

/// Killed after some ranges (one small table is held on the last shard, so the run cannot
/// finish, while the others go on): tables done are skipped, partly copied ones are cleaned
/// and copied again, with no row missing or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_after_some_ranges_then_resume() {
    let setup = DataSyncSetup::start(DataSyncOptions::default()).await;
    setup.schema_sync_pre();
    let last = setup.shards() - 1;
    let held = [spec("public", "countries")];
    let database = integration::data_sync::shard_database(last);
    let lock = TableLock::take(setup.shard_cluster(last), &database, &held, "SHARE").await;
    let mut run = setup.spawn_data_sync(&[]);
    let ranges = wait_for(&mut run, "8 ranges committed on shard 0", || async {
        let ranges = setup.copy_ranges(0).await;
        (ranges >= 8).then_some(ranges)
    })
    .await;
    let killed = run.kill9();
    let slot = slot_after_kill(&setup).await;
    assert!(ranges >= 8, "{}", describe(&killed));
    resume_and_check(&setup, vec![lock], &slot, Expect::Resumed).await;
}

/// Killed in the post phase (every row copied, `CREATE INDEX` / the foreign key on
/// `"Sales".orders` of shard 0 held by a lock): the re-run finds every table already copied
/// and completes the post phase.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_in_post_phase_then_resume() {
    let setup = DataSyncSetup::start(DataSyncOptions::default()).await;
    setup.schema_sync_pre();
    let held = [spec("Sales", "orders")];
    let database = integration::data_sync::shard_database(0);
    let lock = TableLock::take(setup.shard_cluster(0), &database, &held, "ROW EXCLUSIVE").await;
    let mut run = setup.spawn_data_sync(&[]);
    let waiting = wait_for(
        &mut run,
        "a post-phase statement waiting on shard 0",
        || async {
            let waiters = setup.lock_waiters(0).await;
            let first = waiters.first()?.clone();
            let text = first.to_uppercase();
            let post = [
                "CREATE INDEX",
                "CREATE UNIQUE INDEX",
                "FOREIGN KEY",
                "ALTER TABLE",
                "CREATE TRIGGER",
            ]
            .iter()
            .any(|word| text.contains(word));
            assert!(
                post,
                "a statement other than the post phase's waits on the ROW EXCLUSIVE lock of \
             \"Sales\".orders on shard 0: {first}"
            );
            Some(first)
        },
    )
    .await;
    run.kill9();
    assert!(!waiting.is_empty());
    let slot = slot_after_kill(&setup).await;
    resume_and_check(&setup, vec![lock], &slot, Expect::AllAlreadyCopied).await;
    for k in 0..setup.shards() {
        let found = setup.psql_shard(
            k,
            "SELECT count(*) FROM pg_indexes WHERE indexname IN ('customers_email_idx', 'orders_customer_idx')",
        );
        assert_eq!(found, "2", "shard {k}: the post phase's indexes");
        let fk = setup.psql_shard(
            k,
            "SELECT count(*) FROM pg_constraint WHERE conname = 'orders_customer_id_fkey'",
        );
        assert_eq!(fk, "1", "shard {k}: the post phase's foreign key");
    }
}

/// The last shard (a cluster of its own) restarts while the copy waits on it: its ranges are
/// retried and the copy completes correctly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_restart_mid_copy_is_retried() {
    let setup = DataSyncSetup::start(DataSyncOptions {
        separate_last_shard: true,
        general: "resharding_copy_retry_max_attempts = 10\n".into(),
        ..DataSyncOptions::default()
    })
    .await;
    setup.schema_sync_pre();
    let last = setup.shards() - 1;
    let held = [spec("public", "countries")];
    let database = integration::data_sync::shard_database(last);
    let lock = TableLock::take(setup.shard_cluster(last), &database, &held, "SHARE").await;
    let mut run = setup.spawn_data_sync(&[]);
    wait_for(
        &mut run,
        "ranges on shard 0 and a COPY waiting on the last shard",
        || async {
            let ranges = setup.copy_ranges(0).await;
            let waiting = copies_waiting(&setup, last).await;
            (ranges >= 4 && waiting > 0).then_some(())
        },
    )
    .await;
    setup
        .shard_cluster(last)
        .restart()
        .unwrap_or_else(|e| panic!("restart the last shard: {e}"));
    drop(lock);
    let output = run.finish(integration::data_sync::CLI_TIMEOUT).await;
    assert_eq!(
        output.code,
        0,
        "the copy must survive a shard restart\n{}",
        describe(&output)
    );
    let summary = integration::data_sync::output::summary(&output.stdout)
        .unwrap_or_else(|| panic!("no summary line\n{}", describe(&output)));
    setup
        .assert_complete(&output, &summary, Expect::Fresh, DEFAULT_SLOT)
        .await;
}

/// `STOP_TASK` while the copy is held on the last shard: the task ends `stopped`; a new
/// `COPY_DATA` (same slot) resumes to a correct result and `SHOW TABLE_COPIES` ends with
/// every table done or skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_stop_task_then_copy_again() {
    let mut setup = DataSyncSetup::start(DataSyncOptions::default()).await;
    setup.schema_sync_pre();
    let last = setup.shards() - 1;
    let held = [spec("public", "countries")];
    let database = integration::data_sync::shard_database(last);
    let lock = TableLock::take(setup.shard_cluster(last), &database, &held, "SHARE").await;
    let admin = setup.start_pgdog().admin().await;
    let args = format!("{SOURCE} destination {PUBLICATION}");
    let first = admin::copy_data(&admin, &args).await;
    assert_eq!(first.replication_slot, DEFAULT_SLOT);
    integration::eventually(REACH_TIMEOUT, "ranges committed on shard 0", || async {
        let task = admin::task(&admin, &first.task_id).await?;
        assert_eq!(task.status, "running", "the held task ended: {task:?}");
        (setup.copy_ranges(0).await >= 4).then_some(())
    })
    .await;
    let copies = admin::of_task(&admin::table_copies(&admin).await, &first.task_id);
    assert!(
        (0..copies.rows.len()).any(|r| copies.cell(r, "status") == Some("copying")),
        "a table is being copied: {copies:?}"
    );
    run_simple(&admin, &format!("STOP_TASK {}", first.task_id))
        .await
        .unwrap_or_else(|e| panic!("STOP_TASK: {e}"));
    let asked = admin::task(&admin, &first.task_id).await.expect("the task");
    assert!(
        matches!(asked.status.as_str(), "stopping" | "stopped"),
        "right after STOP_TASK: {asked:?}"
    );
    // A range held by the lock finishes first: the task stops between ranges.
    lock.release().await;
    let stopped = admin::wait_task_end(&admin, &first.task_id, Duration::from_secs(60)).await;
    assert_eq!(stopped.status, "stopped", "{stopped:?}");
    setup.wait_shards_idle().await;

    let second = admin::copy_data(&admin, &args).await;
    assert_eq!(second.replication_slot, DEFAULT_SLOT);
    let done = admin::stop_when_streaming(&admin, &second.task_id, Duration::from_secs(180)).await;
    assert_eq!(done.status, "stopped", "{done:?}");
    let copies = admin::of_task(&admin::table_copies(&admin).await, &second.task_id);
    for spec in TABLES {
        let status = (0..copies.rows.len())
            .find(|r| {
                copies.cell(*r, "schema") == Some(spec.schema)
                    && copies.cell(*r, "table") == Some(spec.name)
            })
            .and_then(|r| copies.cell(r, "status"));
        assert!(
            matches!(status, Some("done" | "skipped")),
            "{}: status {status:?} after the resumed task\n{copies:?}",
            spec.label()
        );
    }
    let slots = setup.slots().await;
    assert!(
        slots.len() == 1 && slots[0].name == DEFAULT_SLOT,
        "one slot, reused: {slots:?}"
    );
    setup.check_state_tables().await;
    setup
        .assert_copied("after STOP_TASK and a new COPY_DATA")
        .await;
}

/// One table worker, held on `public.countries` of the last shard, so the tables it took
/// before are complete and the others are not; killed there; then 40 writer transactions
/// change the source (every table but `events_2024` and `settings`); then the same command
/// again. Tables the re-run reports `already copied` must still hold the rows of the first
/// snapshot (the slot's), the ones it copies the rows of the new snapshot (after the writes):
/// a table is copied at one snapshot, never a mix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_tables_are_copied_again_at_a_new_snapshot() {
    let setup = DataSyncSetup::start(DataSyncOptions::default()).await;
    setup.load("initial", 0).await;
    setup.schema_sync_pre();
    let last = setup.shards() - 1;
    let held = [spec("public", "countries")];
    let database = integration::data_sync::shard_database(last);
    let lock = TableLock::take(setup.shard_cluster(last), &database, &held, "SHARE").await;
    let flags = ["--table-jobs", "1"];
    let mut run = setup.spawn_data_sync(&flags);
    wait_for(
        &mut run,
        "the COPY of countries waiting on the last shard",
        || async { (copies_waiting(&setup, last).await > 0).then_some(()) },
    )
    .await;
    run.kill9();
    let slot = slot_after_kill(&setup).await;
    lock.release().await;
    setup.wait_shards_idle().await;

    let source = setup.source_client(SOURCE).await;
    let mut writes = String::from("BEGIN;\n");
    for i in 1..=40 {
        writes.push_str(&dataset::writer_sql(i, setup.scale()));
    }
    writes.push_str("COMMIT;");
    source
        .batch_execute(&writes)
        .await
        .unwrap_or_else(|e| panic!("writes between the runs: {e:?}"));

    let (output, summary) = setup.data_sync_ok(&flags);
    setup.check_output(&output, &summary, Expect::Resumed).await;
    setup.check_slot(DEFAULT_SLOT, &summary).await;
    assert_eq!(summary.lsn, slot, "the slot is reused at its LSN");
    let lines = integration::data_sync::output::table_lines(&output.stdout);
    let (skipped, copied): (Vec<TableSpec>, Vec<TableSpec>) = TABLES
        .iter()
        .partition(|t| lines.get(&t.label()) == Some(&TableOutcome::AlreadyCopied));
    assert!(
        copied.iter().any(|t| t.name == "countries"),
        "countries was held and cannot have been complete\n{}",
        describe(&output)
    );
    assert!(
        !skipped.is_empty(),
        "no table was complete at the kill (one worker, held on countries); the test needs \
         the worker to have finished a table before reaching countries\n{}",
        describe(&output)
    );
    let initial = setup.source_client("initial").await;
    let mut shards = Vec::new();
    for k in 0..setup.shards() {
        shards.push(setup.shard_client(k).await);
    }
    let mut problems = integration::data_sync::verify::compare(&initial, &shards, &skipped).await;
    for problem in &mut problems {
        problem.insert_str(0, "already copied, must be the slot's snapshot: ");
    }
    for problem in integration::data_sync::verify::compare(&source, &shards, &copied).await {
        problems.push(format!("copied again, must be the new snapshot: {problem}"));
    }
    assert!(
        problems.is_empty(),
        "{}\n{}",
        problems.join("\n"),
        describe(&output)
    );
}

/// After a complete copy the slot is dropped (e.g. by an operator); the same command then
/// creates a new slot. Whatever it does with the rows already there (refuse, or copy again),
/// it must never leave a row twice or report success with the shards differing from the
/// source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_slot_never_doubles_rows() {
    let setup = DataSyncSetup::start(DataSyncOptions::default()).await;
    let (output, summary) = setup.data_sync_ok(&[]);
    setup
        .assert_complete(&output, &summary, Expect::Fresh, DEFAULT_SLOT)
        .await;
    setup.psql_source(&format!(
        "SELECT pg_drop_replication_slot('{DEFAULT_SLOT}')"
    ));
    let again = setup.data_sync(&[]);
    match again.code {
        0 => {
            let summary = integration::data_sync::output::summary(&again.stdout)
                .unwrap_or_else(|| panic!("no summary line\n{}", describe(&again)));
            setup.check_slot(DEFAULT_SLOT, &summary).await;
            setup.assert_copied("after a run with a new slot").await;
        }
        1 => {
            assert!(
                again.stderr.contains("pgdog: "),
                "exit 1 without `pgdog: <message>`\n{}",
                describe(&again)
            );
            setup
                .assert_copied("after a refused run with a new slot")
                .await;
        }
        code => panic!("exit code {code}\n{}", describe(&again)),
    }
}
