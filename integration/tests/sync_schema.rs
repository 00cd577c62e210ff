//! `SYNC_SCHEMA <task_id> [SKIP_INDEXES]` against a running stream: a source with the small
//! data set and two destination shards on two clusters, a real pgdog process streaming
//! (`COPY_DATA`), schema changes made on the source directly (not through pgdog), then
//! `SYNC_SCHEMA` applies them on every shard, each statement in `SHOW SCHEMA_SYNC`.

use std::time::Duration;

use integration::data_sync::admin;
use integration::data_sync::{DataSyncOptions, DataSyncSetup, Scale, PUBLICATION, SOURCE};
use integration::sharded::{run_simple, QueryError, QueryResult};
use tokio_postgres::Client;

/// How long a copy or a sync may take.
const WAIT: Duration = Duration::from_secs(120);

/// One `SHOW SCHEMA_SYNC` row.
#[derive(Debug, Clone)]
struct Statement {
    shard: String,
    phase: String,
    kind: String,
    object: String,
    state: String,
    error: String,
    sql: String,
}

async fn refused(admin: &Client, sql: &str) -> QueryError {
    match run_simple(admin, sql).await {
        Ok(result) => panic!("{sql} succeeded with {result:?}, expected an error"),
        Err(e) => e,
    }
}

/// Runs `SYNC_SCHEMA <args>`, waits for its task and returns the task's row and its
/// `SHOW SCHEMA_SYNC` statements.
async fn sync_schema(admin: &Client, args: &str) -> (admin::TaskRow, Vec<Statement>) {
    let sql = format!("SYNC_SCHEMA {args}");
    let started = run_simple(admin, &sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    assert_eq!(started.columns, ["task_id"], "{sql}: {started:?}");
    let id = started.cell(0, "task_id").expect("task_id").to_string();
    let task = admin::wait_task_end(admin, &id, WAIT).await;
    assert_eq!(task.kind, "schema_sync", "{task:?}");
    (task, statements(admin, &id).await)
}

/// The `SHOW SCHEMA_SYNC` rows of task `task_id`.
async fn statements(admin: &Client, task_id: &str) -> Vec<Statement> {
    let result: QueryResult = run_simple(admin, "SHOW SCHEMA_SYNC")
        .await
        .unwrap_or_else(|e| panic!("SHOW SCHEMA_SYNC: {e}"));
    let text = |r: usize, c: &str| result.cell(r, c).unwrap_or("").to_string();
    (0..result.rows.len())
        .filter(|r| result.cell(*r, "task_id") == Some(task_id))
        .map(|r| Statement {
            shard: text(r, "shard"),
            phase: text(r, "phase"),
            kind: text(r, "kind"),
            object: text(r, "object"),
            state: text(r, "state"),
            error: text(r, "error"),
            sql: text(r, "sql"),
        })
        .collect()
}

/// The statements of `shard` about `object`.
fn about<'a>(statements: &'a [Statement], shard: usize, object: &str) -> Vec<&'a Statement> {
    statements
        .iter()
        .filter(|s| s.shard == shard.to_string() && s.object == object)
        .collect()
}

/// Asserts that shard `shard` ran exactly one statement about `object`, of `kind`, done.
fn assert_done(statements: &[Statement], shard: usize, kind: &str, object: &str) {
    let found = about(statements, shard, object);
    assert!(
        found.len() == 1
            && found[0].kind == kind
            && found[0].state == "done"
            && found[0].phase == "sync",
        "shard {shard}: expected one {kind} of {object} done, got {found:?}\nall: {statements:#?}"
    );
}

/// One value from shard `k`.
fn shard_value(setup: &DataSyncSetup, k: usize, sql: &str) -> String {
    setup.psql_shard(k, sql).trim().to_string()
}

fn has_index(setup: &DataSyncSetup, k: usize, index: &str) -> bool {
    shard_value(
        setup,
        k,
        &format!("SELECT count(*) FROM pg_indexes WHERE indexname = '{index}'"),
    ) == "1"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_schema_applies_source_changes_to_every_shard() {
    let mut setup = DataSyncSetup::start(DataSyncOptions {
        shards: 2,
        separate_last_shard: true,
        scale: Scale::TINY,
        ..Default::default()
    })
    .await;
    let admin = setup.start_pgdog().admin().await;

    // No stream behind the id: refused, nothing starts.
    let e = refused(&admin, "SYNC_SCHEMA 987654").await;
    assert_eq!(e.code, "55000", "{e}");
    assert!(e.message.contains("987654"), "{e}");

    let copy = admin::copy_data(
        &admin,
        &format!("{SOURCE} destination {PUBLICATION} sync_schema_slot"),
    )
    .await;
    admin::wait_streaming(&admin, &copy.task_id, WAIT).await;

    // Right after the copy the shards match the source: nothing to do (the keys schema sync
    // widened to bigint are not narrowed back).
    let (task, baseline) = sync_schema(&admin, &copy.task_id).await;
    assert_eq!(task.status, "finished", "{task:?}\n{baseline:#?}");
    assert!(baseline.is_empty(), "{baseline:#?}");

    // The application changes the source's schema directly.
    setup.psql_source(
        "CREATE INDEX customers_note_idx ON public.customers (note);
         CREATE INDEX events_kind_idx ON public.events (kind);
         ALTER TABLE public.documents ALTER COLUMN version SET DEFAULT 2;
         ALTER TABLE public.documents ALTER COLUMN title TYPE varchar(200);
         ALTER TABLE \"Sales\".orders ADD COLUMN channel text NOT NULL DEFAULT 'web';
         ALTER TABLE public.devices DROP COLUMN active;",
    );

    // SKIP_INDEXES: columns only.
    let (task, applied) = sync_schema(&admin, &format!("{} SKIP_INDEXES", copy.task_id)).await;
    assert_eq!(task.status, "finished", "{task:?}\n{applied:#?}");
    for k in 0..2 {
        assert_done(&applied, k, "ADD COLUMN", "Sales.orders.channel");
        assert_done(&applied, k, "ALTER COLUMN", "public.documents.version");
        assert_done(&applied, k, "ALTER COLUMN", "public.documents.title");
        let dropped = about(&applied, k, "public.devices.active");
        assert!(
            dropped.len() == 1
                && dropped[0].kind == "DROP COLUMN"
                && dropped[0].state == "skipped"
                && dropped[0].error.contains("not dropped here"),
            "{dropped:?}"
        );
        assert!(
            applied.iter().all(|s| !s.kind.contains("INDEX")),
            "{applied:#?}"
        );
        assert_eq!(
            shard_value(
                &setup,
                k,
                "SELECT column_default FROM information_schema.columns \
                 WHERE table_name = 'documents' AND column_name = 'version'"
            ),
            "2"
        );
        assert_eq!(
            shard_value(
                &setup,
                k,
                "SELECT format_type(atttypid, atttypmod) || ' ' || attnotnull || ' ' || \
                 pg_get_expr(adbin, adrelid) FROM pg_attribute \
                 JOIN pg_attrdef ON adrelid = attrelid AND adnum = attnum \
                 WHERE attrelid = '\"Sales\".orders'::regclass AND attname = 'channel'"
            ),
            "text true 'web'::text"
        );
        assert_eq!(
            shard_value(
                &setup,
                k,
                "SELECT count(*) FROM \"Sales\".orders WHERE channel = 'web'"
            ),
            shard_value(&setup, k, "SELECT count(*) FROM \"Sales\".orders"),
            "existing rows take the default"
        );
        assert_eq!(
            shard_value(
                &setup,
                k,
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
                 WHERE attrelid = 'public.documents'::regclass AND attname = 'title'"
            ),
            "character varying(200)"
        );
        assert!(
            shard_value(
                &setup,
                k,
                "SELECT count(*) FROM pg_attribute WHERE attrelid = 'public.devices'::regclass \
                 AND attname = 'active' AND NOT attisdropped"
            ) == "1",
            "the column gone from the source stays on the shard"
        );
        assert!(!has_index(&setup, k, "customers_note_idx"), "SKIP_INDEXES");
        assert!(!has_index(&setup, k, "events_kind_idx"), "SKIP_INDEXES");
    }

    // With indexes: the new ones are built on every shard, partitions included.
    let (task, applied) = sync_schema(&admin, &copy.task_id).await;
    assert_eq!(task.status, "finished", "{task:?}\n{applied:#?}");
    for k in 0..2 {
        assert_done(&applied, k, "CREATE INDEX", "public.customers_note_idx");
        assert_done(&applied, k, "CREATE INDEX", "public.events_kind_idx");
        let create = &about(&applied, k, "public.customers_note_idx")[0];
        assert!(
            create.sql.contains("CONCURRENTLY IF NOT EXISTS"),
            "{create:?}"
        );
        assert!(has_index(&setup, k, "customers_note_idx"));
        assert!(has_index(&setup, k, "events_kind_idx"));
        assert_eq!(
            shard_value(
                &setup,
                k,
                "SELECT count(*) FROM pg_indexes WHERE tablename IN ('events_2024', 'events_2025') \
                 AND indexdef LIKE '%(kind)%'"
            ),
            "2",
            "the partitions' indexes"
        );
        // Only the gone column is left; nothing is applied twice.
        assert!(
            applied
                .iter()
                .filter(|s| s.shard == k.to_string())
                .all(|s| s.kind.contains("INDEX") || s.kind == "DROP COLUMN"),
            "{applied:#?}"
        );
    }

    // A statement failing on one shard fails the task, naming table and shard; the other
    // shard applies it.
    setup.psql_shard(
        1,
        "INSERT INTO public.documents (id, title, version) VALUES ('zz-sync-test', NULL, 1)",
    );
    setup.psql_source("ALTER TABLE public.documents ALTER COLUMN title SET NOT NULL");
    let (task, applied) = sync_schema(&admin, &copy.task_id).await;
    assert_eq!(task.status, "failed", "{task:?}\n{applied:#?}");
    assert!(
        task.error.contains("table public.documents on shard 1") && task.error.contains("23502"),
        "{task:?}"
    );
    assert_done(&applied, 0, "ALTER COLUMN", "public.documents.title");
    let failed = about(&applied, 1, "public.documents.title");
    assert!(
        failed.len() == 1 && failed[0].state == "failed" && failed[0].error.contains("23502"),
        "{failed:?}"
    );

    // Fixed on the shard, the next run applies it; then nothing is left but the gone column.
    setup.psql_shard(1, "DELETE FROM public.documents WHERE id = 'zz-sync-test'");
    let (task, applied) = sync_schema(&admin, &copy.task_id).await;
    assert_eq!(task.status, "finished", "{task:?}\n{applied:#?}");
    assert_done(&applied, 1, "ALTER COLUMN", "public.documents.title");
    assert!(about(&applied, 0, "public.documents.title").is_empty());
    let (task, applied) = sync_schema(&admin, &copy.task_id).await;
    assert_eq!(task.status, "finished", "{task:?}");
    assert!(
        applied.len() == 2 && applied.iter().all(|s| s.kind == "DROP COLUMN"),
        "{applied:#?}"
    );

    // The stream kept running throughout.
    let stream = admin::task(&admin, &copy.task_id)
        .await
        .expect("stream task");
    assert_eq!(stream.status, "running", "{stream:?}");

    // Once the stream has ended, its id is refused.
    run_simple(&admin, &format!("STOP_TASK {}", copy.task_id))
        .await
        .unwrap_or_else(|e| panic!("STOP_TASK: {e}"));
    admin::wait_task_end(&admin, &copy.task_id, WAIT).await;
    let e = refused(&admin, &format!("SYNC_SCHEMA {}", copy.task_id)).await;
    assert_eq!(e.code, "55000", "{e}");
    assert!(e.message.contains("has ended"), "{e}");
}
