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
        methods.contains("public.customers=typed") && methods.contains("Sales.orders=bytes"),
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
        methods.contains("public.customers=typed"),
        "{methods}\n{}",
        describe(&output)
    );
}

/// A table with a column of every type whose hash pgdog computes itself, and some it does
/// not (sent through their send functions), holding edge values (NaN, infinities, signed
/// zeros, trailing spaces, escapes, empty and multi-dimensional arrays, NULLs everywhere):
/// the shards' digest must equal pgdog's, so the copy verifies, and the shards hold what the
/// source does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hashed_type_verifies_on_the_shards() {
    let setup = DataSyncSetup::start(DataSyncOptions::default()).await;
    setup.psql_source(
        r#"CREATE TABLE public.edge_values (
            id integer PRIMARY KEY, i2 smallint, i8 bigint, o oid, d date, t time,
            ts timestamp, tz timestamptz, b boolean, c "char", f4 real, f8 double precision,
            n numeric, tx text, vc varchar(20), bp char(5), nm name, raw bytea, u uuid, j jsonb,
            a_i4 integer[], a_tx text[], a_n numeric[], a_bp char(3)[], a_j jsonb[],
            iv interval, ip inet, js json, pt point);
        INSERT INTO public.edge_values VALUES
        (1, -32768, -9223372036854775808, 4294967295, '-infinity', '23:59:59.999999',
         '2024-02-29 12:00:00.5', 'infinity', true, 'é', 'NaN', '-0', 'NaN', '', '', 'a',
         'pg_class', '\x', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
         '{"a\"b": "é\n\u0001", "n": [1.50, -0.001, 1e20, 0, -0], "e": {}, "z": null, "t": true}',
         '{}', '{"", NULL, "x y"}', '{NaN, 0.000, -1e-20}', '{"ab ", NULL}', '{"{}", "[]", "\"s\""}',
         '1 year -2 days 03:00', '10.0.0.1/8', '{"b": 1,  "a": [ ]}', '(1.5,-2)'),
        (2, 32767, 9223372036854775807, 0, '4713-01-01 BC', '00:00', '-infinity',
         '1999-12-31 23:59:59.999999+05', false, 'A', '-Infinity', '1e-310', '-Infinity',
         'é ☃ 𝄞', 'v', '     ', '', '\xdeadbeef', '00000000-0000-0000-0000-000000000000',
         '"a lone string"', '{{1,2},{3,NULL}}', '[0:1]={a,b}', '{123456789012345678901234567890.123456789}',
         '{{"x  "}}', '{"{\"k\": [1, {\"m\": false}]}"}', '-00:00:01', '::1', '[]', '(0,0)'),
        (3, 0, 0, 1, '2000-01-01', '12:00', '2000-01-01', '2000-01-01 00:00+00', NULL, NULL,
         'Infinity', 'Infinity', 'Infinity', 'tab	and, comma', NULL, 'abcde', NULL, NULL, NULL,
         '[]', '{NULL}', '{}', '{}', '{}', '{}', NULL, NULL, '{}', NULL),
        (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
         NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
        ALTER PUBLICATION pub ADD TABLE public.edge_values;"#,
    );
    let (output, _) = setup.data_sync_ok(&[]);
    let all = "SELECT string_agg(e::text, E'\\n' ORDER BY id) FROM public.edge_values e";
    let source = setup.psql_source(all);
    for k in 0..setup.shards() {
        assert_eq!(setup.psql_shard(k, all), source, "shard {k}");
        let methods = digest_methods(&setup, k);
        assert!(
            methods.contains("public.edge_values=typed"),
            "shard {k}: {methods}\n{}",
            describe(&output)
        );
    }
}
