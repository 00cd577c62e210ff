//! Bad input to the data copy (`pgdog data-sync`): unknown databases, publication or user, a
//! published table without a primary key, destination tables whose columns differ or that are
//! missing (`--skip-schema-sync`), a destination shard that is down. Each must exit with 1 and
//! `pgdog: <message>` naming the problem, with nothing copied or recorded as done, and the same
//! command must work once the problem is fixed.

use integration::data_sync::{
    DataSyncOptions, DataSyncSetup, Expect, DEFAULT_SLOT, PUBLICATION, SOURCE, TABLES,
};
use integration::schema_sync::describe;

/// Asserts the source has no replication slot.
async fn assert_no_slot(setup: &DataSyncSetup, what: &str) {
    let slots = setup.slots().await;
    assert!(slots.is_empty(), "{what}: a slot was created: {slots:?}");
}

/// Unknown source or destination database, unknown publication: exit 1 with the name in the
/// message, no slot, nothing on the shards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_database_or_publication_is_an_error() {
    let setup = DataSyncSetup::start(DataSyncOptions::default()).await;
    let base = |from: &'static str, to: &'static str, publication: &'static str| {
        vec![
            "data-sync",
            "--from-database",
            from,
            "--to-database",
            to,
            "--publication",
            publication,
            "--sync-only",
        ]
    };
    for (args, needle) in [
        (base("nowhere", "destination", PUBLICATION), "nowhere"),
        (base(SOURCE, "elsewhere", PUBLICATION), "elsewhere"),
        (base(SOURCE, "destination", "no_such_pub"), "no_such_pub"),
        (
            [
                base(SOURCE, "destination", PUBLICATION),
                vec!["--from-user", "nobody"],
            ]
            .concat(),
            "nobody",
        ),
    ] {
        let output = setup.pgdog_cli(&args);
        integration::data_sync::assert_failed_with(&output, &[needle], &format!("{args:?}"));
        assert_no_slot(&setup, needle).await;
        setup.assert_nothing_copied(needle).await;
    }
}

/// A published table without a primary key (or replica identity) stops the run in the
/// pre-flight check, naming the table; nothing is created or copied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_without_primary_key_is_an_error() {
    let setup = DataSyncSetup::start(DataSyncOptions::default()).await;
    setup.psql_source(
        "CREATE TABLE public.audit_log (at timestamptz, line text); \
         INSERT INTO public.audit_log SELECT timestamptz '2024-01-01 00:00:00+00', 'line ' || i \
         FROM generate_series(1, 10) AS i; \
         ALTER PUBLICATION pub ADD TABLE public.audit_log",
    );
    let output = setup.data_sync(&[]);
    integration::data_sync::assert_failed_with(&output, &["audit_log"], "table without a key");
    assert_no_slot(&setup, "table without a key").await;
    setup.assert_nothing_copied("table without a key").await;
    for k in 0..setup.shards() {
        let tables = setup.psql_shard(
            k,
            "SELECT count(*) FROM pg_tables WHERE schemaname IN ('public', 'Sales')",
        );
        assert_eq!(tables, "0", "shard {k}: the schema sync ran anyway");
    }
}

/// A destination table whose columns differ from the source's (`--skip-schema-sync`, tables
/// made beforehand, one column renamed on one shard): a clear error naming table and column
/// before anything is copied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_table_with_other_columns_is_an_error() {
    let setup = DataSyncSetup::start(DataSyncOptions::default()).await;
    setup.schema_sync_pre();
    setup.psql_shard(
        1,
        "ALTER TABLE public.devices RENAME COLUMN attrs TO attributes",
    );
    let output = setup.data_sync(&["--skip-schema-sync"]);
    integration::data_sync::assert_failed_with(&output, &["devices"], "renamed column");
    let stderr = output.stderr.to_lowercase();
    assert!(
        stderr.contains("attrs") || stderr.contains("attributes"),
        "the error must name the column\n{}",
        describe(&output)
    );
    setup.assert_nothing_copied("renamed column").await;

    // Another type on one shard, then a table missing on one shard.
    setup.psql_shard(
        1,
        "ALTER TABLE public.devices RENAME COLUMN attributes TO attrs; \
         ALTER TABLE public.customers ALTER COLUMN name TYPE varchar(200)",
    );
    let output = setup.data_sync(&["--skip-schema-sync"]);
    integration::data_sync::assert_failed_with(&output, &["customers", "name"], "other type");
    setup.assert_nothing_copied("other type").await;
    setup.psql_shard(
        1,
        "ALTER TABLE public.customers ALTER COLUMN name TYPE text",
    );
    setup.psql_shard(0, "DROP TABLE public.settings");
    let output = setup.data_sync(&["--skip-schema-sync"]);
    integration::data_sync::assert_failed_with(&output, &["settings"], "missing table");
    setup.assert_nothing_copied("missing table").await;

    // Repaired, the same command copies everything.
    setup.schema_sync_pre();
    let (output, summary) = setup.data_sync_ok(&["--skip-schema-sync"]);
    setup.check_output(&output, &summary, Expect::Fresh).await;
    setup.assert_copied("after repairing the destination").await;
}

/// A destination shard that is down: exit 1 naming it, nothing copied or recorded on the
/// other shard; once it is back, the same command copies everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_down_is_an_error() {
    let setup = DataSyncSetup::start(DataSyncOptions {
        separate_last_shard: true,
        ..DataSyncOptions::default()
    })
    .await;
    let down = setup.shards() - 1;
    let port = setup.shard_cluster(down).port().to_string();
    setup
        .shard_cluster(down)
        .stop()
        .unwrap_or_else(|e| panic!("stop shard {down}: {e}"));
    let output = setup.data_sync(&[]);
    integration::data_sync::assert_failed_with(&output, &[], "shard down");
    let text = output.stderr.to_lowercase();
    assert!(
        text.contains(&port) || text.contains(&format!("shard {down}")),
        "the error must name the shard (shard {down} or port {port})\n{}",
        describe(&output)
    );
    let client = setup.shard_client(0).await;
    for table in ["copy_tables", "copy_ranges"] {
        assert_eq!(
            integration::data_sync::state_rows(&client, table).await,
            0,
            "shard 0: pgdog.{table} has rows"
        );
    }
    for spec in TABLES {
        let exists = setup.psql_shard(
            0,
            &format!("SELECT to_regclass('{}') IS NOT NULL", spec.sql_name()),
        );
        if exists == "t" {
            let rows = setup.psql_shard(0, &format!("SELECT count(*) FROM {}", spec.sql_name()));
            assert_eq!(rows, "0", "{} has rows on shard 0", spec.label());
        }
    }

    setup
        .shard_cluster(down)
        .restart()
        .unwrap_or_else(|e| panic!("start shard {down}: {e}"));
    let (output, summary) = setup.data_sync_ok(&[]);
    setup
        .assert_complete(&output, &summary, Expect::Fresh, DEFAULT_SLOT)
        .await;
}
