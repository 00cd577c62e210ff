//! The copy's verification fails loudly when a shard does not hold exactly what it was sent,
//! whichever way the table is digested: by the shards themselves (tables of built-in types,
//! `public.customers`) or by reading the shard back (tables with user-defined types,
//! `"Sales".orders` and its enum column). A trigger the copy cannot switch off (`ENABLE
//! ALWAYS`) changes one row on its way in.

use integration::data_sync::{DataSyncOptions, DataSyncSetup};
use integration::schema_sync::describe;

/// Creates, on every shard, a trigger that changes the `note` of row `id` of `table` as it is
/// inserted.
fn tamper_with(setup: &DataSyncSetup, table: &str, id: i64) {
    for k in 0..setup.shards() {
        setup.psql_shard(
            k,
            &format!(
                "CREATE FUNCTION public.tamper() RETURNS trigger LANGUAGE plpgsql AS $$ \
                 BEGIN IF NEW.id = {id} THEN NEW.note := 'changed on the shard'; END IF; \
                 RETURN NEW; END $$; \
                 CREATE TRIGGER tamper BEFORE INSERT ON {table} \
                 FOR EACH ROW EXECUTE FUNCTION public.tamper(); \
                 ALTER TABLE {table} ENABLE ALWAYS TRIGGER tamper"
            ),
        );
    }
}

/// How each shard recorded the digests of the data set's tables.
fn digest_methods(setup: &DataSyncSetup, k: usize) -> String {
    setup.psql_shard(
        k,
        "SELECT string_agg(schema_name || '.' || table_name || '=' || digest_method, ',' \
         ORDER BY schema_name, table_name) FROM pgdog.copy_tables",
    )
}

/// Copies with row `id` of `table` changed on its way into the shards: the copy must fail,
/// naming `name`.
async fn copy_with_a_changed_row(table: &str, id: i64, name: &str) -> (DataSyncSetup, String) {
    let setup = DataSyncSetup::start(DataSyncOptions::default()).await;
    setup.schema_sync_pre();
    tamper_with(&setup, table, id);
    let output = setup.data_sync(&["--skip-schema-sync"]);
    integration::data_sync::assert_failed_with(&output, &[name, "expected"], table);
    (setup, describe(&output))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_changed_on_a_shard_fails_the_digest_the_shards_compute() {
    let (setup, output) = copy_with_a_changed_row("public.customers", 3, "customers").await;
    let methods = digest_methods(&setup, 0);
    assert!(
        methods.contains("public.customers=fields") && methods.contains("Sales.orders=bytes"),
        "customers is digested on the shards, orders (an enum column) read back: {methods}\n{output}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_changed_on_a_shard_fails_the_read_back() {
    copy_with_a_changed_row("\"Sales\".orders", 5, "orders").await;
}

/// State tables left by a pgdog from before digest methods were recorded get the column, and
/// the copy goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_tables_of_an_earlier_pgdog_get_the_digest_method() {
    let setup = DataSyncSetup::start(DataSyncOptions::default()).await;
    for k in 0..setup.shards() {
        setup.psql_shard(
            k,
            "CREATE SCHEMA pgdog; \
             CREATE TABLE pgdog.copy_tables (slot text NOT NULL, schema_name text NOT NULL, \
             table_name text NOT NULL, watermark_lsn pg_lsn NOT NULL, ranges integer NOT NULL, \
             started_at timestamptz NOT NULL DEFAULT now(), verified_at timestamptz, \
             PRIMARY KEY (slot, schema_name, table_name))",
        );
    }
    let (output, _) = setup.data_sync_ok(&[]);
    setup.assert_copied("with old state tables").await;
    let methods = digest_methods(&setup, 1);
    assert!(
        methods.contains("public.customers=fields"),
        "{methods}\n{}",
        describe(&output)
    );
}
