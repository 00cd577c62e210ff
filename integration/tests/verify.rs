//! `VERIFY <source> <destination> [table]` (admin database) and `pgdog verify` (CLI) after a
//! real copy to two shards: every table matches; a value changed on shard 0 and rows deleted
//! on shard 1 make exactly those tables differ, naming the shard; one table, a partitioned
//! table (its partitions), a table only the source has (`missing`), the comparison the other
//! way round (the sharded side as the source, as after a cutover), unknown tables and
//! databases (their SQLSTATEs), the CLI's exit code; then with a stream running in pgdog,
//! rows it brings match and a change it did not bring differs after the comparisons made
//! while waiting for it, with the note saying why.

use std::collections::BTreeMap;
use std::time::Duration;

use integration::data_sync::{DataSyncOptions, DataSyncSetup, Scale, DESTINATION, SOURCE};
use integration::schema_sync::describe;
use integration::sharded::{run_simple, QueryError, QueryResult};
use tokio_postgres::Client;

/// The columns of `VERIFY`.
const COLUMNS: [&str; 10] = [
    "schema",
    "table",
    "status",
    "source_rows",
    "destination_rows",
    "source_checksum",
    "destination_checksum",
    "shards",
    "elapsed_ms",
    "note",
];

/// Small enough to copy in a few seconds, with rows on both shards of every table.
const SCALE: Scale = Scale {
    customers: 400,
    orders: 1_500,
    documents: 200,
    devices: 200,
    events: 600,
};

/// The tables of the data set with rows (partitions, not their parent).
const TABLES: [&str; 8] = [
    "Sales.orders",
    "public.countries",
    "public.customers",
    "public.devices",
    "public.documents",
    "public.events_2024",
    "public.events_2025",
    "public.settings",
];

/// One row of `VERIFY`, by column name.
type Record = BTreeMap<String, String>;

/// Runs `sql` (a `VERIFY`) and returns its rows keyed by `schema.table`, checking the
/// columns and the command tag.
async fn verify(admin: &Client, sql: &str) -> BTreeMap<String, Record> {
    let result: QueryResult = run_simple(admin, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    assert_eq!(result.columns, COLUMNS, "{sql}");
    assert_eq!(result.counts, [result.rows.len() as u64], "{sql}: SELECT n");
    let mut rows = BTreeMap::new();
    for row in &result.rows {
        let record: Record = result
            .columns
            .iter()
            .cloned()
            .zip(row.iter().map(|v| v.clone().unwrap_or_default()))
            .collect();
        rows.insert(format!("{}.{}", record["schema"], record["table"]), record);
    }
    rows
}

async fn refused(admin: &Client, sql: &str) -> QueryError {
    match run_simple(admin, sql).await {
        Ok(result) => panic!("{sql} succeeded with {result:?}, expected an error"),
        Err(e) => e,
    }
}

/// Panics unless `table` has `status`, printing the row.
fn assert_status(rows: &BTreeMap<String, Record>, table: &str, status: &str, what: &str) {
    let row = rows
        .get(table)
        .unwrap_or_else(|| panic!("{what}: no row for {table}: {rows:#?}"));
    assert_eq!(row["status"], status, "{what}: {table}: {row:#?}");
}

/// Every table matches after the copy; then changes made behind pgdog's back are found, shard
/// by shard, both ways round; one table, partitions, missing tables, errors and the CLI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_what_differs_and_where() {
    let mut setup = DataSyncSetup::start(DataSyncOptions {
        scale: SCALE,
        ..DataSyncOptions::default()
    })
    .await;
    setup.data_sync_ok(&[]);
    let admin = setup.start_pgdog().admin().await;

    // Right after the copy: every table matches, with equal counts and checksums.
    let all = format!("VERIFY {SOURCE} {DESTINATION}");
    let rows = verify(&admin, &all).await;
    assert_eq!(rows.keys().collect::<Vec<_>>(), TABLES, "{rows:#?}");
    for (table, row) in &rows {
        assert_eq!(row["status"], "match", "{table}: {row:#?}");
        assert_eq!(row["source_rows"], row["destination_rows"], "{table}");
        assert_eq!(
            row["source_checksum"], row["destination_checksum"],
            "{table}"
        );
        assert_eq!(row["source_checksum"].len(), 16, "{table}: {row:#?}");
        assert!(row["shards"].starts_with("0: "), "{table}: {row:#?}");
        assert!(row["shards"].contains(", 1: "), "{table}: {row:#?}");
        assert!(!row["shards"].contains("DIFFERS"), "{table}: {row:#?}");
    }
    assert_eq!(rows["public.customers"]["source_rows"], "400");
    assert_eq!(rows["Sales.orders"]["source_rows"], "1500");
    // The omnisharded table: every shard holds the 40 rows.
    assert_eq!(rows["public.countries"]["destination_rows"], "40");
    assert_eq!(
        rows["public.countries"]["shards"],
        "0: 40 rows ok, 1: 40 rows ok"
    );

    // Behind pgdog's back: a value changed on shard 0, rows deleted on shard 1.
    setup.psql_shard(
        0,
        "UPDATE public.customers SET name = name || ' changed' \
         WHERE id = (SELECT min(id) FROM public.customers)",
    );
    setup.psql_shard(
        1,
        "DELETE FROM \"Sales\".orders WHERE id = (SELECT min(id) FROM \"Sales\".orders); \
         DELETE FROM public.countries WHERE code = 'C1'",
    );
    setup.psql_source("CREATE TABLE public.only_here (id int PRIMARY KEY); INSERT INTO public.only_here VALUES (1)");

    let rows = verify(&admin, &all).await;
    let customers = &rows["public.customers"];
    assert_status(&rows, "public.customers", "differs", "after the changes");
    assert_eq!(customers["source_rows"], "400");
    assert_eq!(customers["destination_rows"], "400");
    assert_ne!(
        customers["source_checksum"],
        customers["destination_checksum"]
    );
    assert!(
        customers["shards"].starts_with("0: ")
            && customers["shards"].contains("rows DIFFERS (same count, other checksum), 1: ")
            && customers["shards"].ends_with("rows ok"),
        "{customers:#?}"
    );
    let orders = &rows["Sales.orders"];
    assert_status(&rows, "Sales.orders", "differs", "after the changes");
    assert_eq!(orders["source_rows"], "1500");
    assert_eq!(orders["destination_rows"], "1499");
    assert!(
        orders["shards"].contains("rows ok, 1: ")
            && orders["shards"].contains("rows DIFFERS (expected "),
        "{orders:#?}"
    );
    let countries = &rows["public.countries"];
    assert_status(&rows, "public.countries", "differs", "after the changes");
    assert_eq!(
        countries["shards"],
        "0: 40 rows ok, 1: 39 rows DIFFERS (expected 40)"
    );
    assert_eq!(countries["destination_rows"], "39");
    let missing = &rows["public.only_here"];
    assert_status(
        &rows,
        "public.only_here",
        "missing",
        "a table only the source has",
    );
    assert!(missing["note"].contains(DESTINATION), "{missing:#?}");
    for table in TABLES {
        if !["public.customers", "Sales.orders", "public.countries"].contains(&table) {
            assert_status(&rows, table, "match", "the tables nobody changed");
        }
    }

    // One table (quoted: case kept), a partitioned table (its partitions).
    let one = verify(
        &admin,
        &format!("VERIFY {SOURCE} {DESTINATION} \"Sales.orders\""),
    )
    .await;
    assert_eq!(one.keys().collect::<Vec<_>>(), ["Sales.orders"]);
    assert_status(&one, "Sales.orders", "differs", "VERIFY of one table");
    let one = verify(
        &admin,
        &format!("VERIFY {SOURCE} {DESTINATION} public.settings"),
    )
    .await;
    assert_eq!(one.keys().collect::<Vec<_>>(), ["public.settings"]);
    assert_status(&one, "public.settings", "match", "VERIFY of one table");
    let tree = verify(&admin, &format!("VERIFY {SOURCE} {DESTINATION} events")).await;
    assert_eq!(
        tree.keys().collect::<Vec<_>>(),
        ["public.events_2024", "public.events_2025"]
    );

    // The other way round (the sharded side as the source, as after a cutover): its shards
    // summed against the single database, still shard by shard.
    let back = verify(&admin, &format!("VERIFY {DESTINATION} {SOURCE}")).await;
    assert_eq!(back.keys().collect::<Vec<_>>(), TABLES, "{back:#?}");
    assert_status(&back, "Sales.orders", "differs", "the other way round");
    assert_eq!(back["Sales.orders"]["source_rows"], "1499");
    assert_eq!(back["Sales.orders"]["destination_rows"], "1500");
    assert!(back["Sales.orders"]["shards"].contains("1: "), "{back:#?}");
    assert_status(&back, "public.customers", "differs", "the other way round");
    assert_status(&back, "public.settings", "match", "the other way round");
    assert_status(&back, "public.events_2024", "match", "the other way round");
    assert_eq!(
        back["public.customers"]["source_checksum"],
        rows["public.customers"]["destination_checksum"],
        "the same rows give the same checksum either way"
    );

    // Unknown table, unknown database.
    let error = refused(&admin, &format!("VERIFY {SOURCE} {DESTINATION} nope")).await;
    assert_eq!(error.code, "42P01", "{error:?}");
    assert!(error.message.contains("nope"), "{error:?}");
    let error = refused(&admin, &format!("VERIFY {SOURCE} nowhere")).await;
    assert_eq!(error.code, "3D000", "{error:?}");
    assert!(error.message.contains("nowhere"), "{error:?}");

    // The CLI: the same table, exit code 1 on a mismatch, 0 when the tables match.
    let output = setup.pgdog_cli(&[
        "verify",
        "--from-database",
        SOURCE,
        "--to-database",
        DESTINATION,
    ]);
    assert_eq!(output.code, 1, "a mismatch fails\n{}", describe(&output));
    assert!(
        output.stdout.contains("source_checksum") && output.stdout.contains("DIFFERS"),
        "{}",
        describe(&output)
    );
    assert!(
        output.stderr.contains("differ") && output.stderr.contains("Sales.orders"),
        "{}",
        describe(&output)
    );
    let output = setup.pgdog_cli(&[
        "verify",
        "--from-database",
        SOURCE,
        "--to-database",
        DESTINATION,
        "--table",
        "public.devices",
    ]);
    assert_eq!(output.code, 0, "{}", describe(&output));
    assert!(output.stdout.contains("match"), "{}", describe(&output));
    let output = setup.pgdog_cli(&[
        "verify",
        "--from-database",
        SOURCE,
        "--to-database",
        DESTINATION,
        "--table",
        "nope",
    ]);
    assert_eq!(output.code, 1, "{}", describe(&output));
    assert!(
        output.stderr.contains("\"nope\" does not exist"),
        "{}",
        describe(&output)
    );

    // A stream from the source to the shards runs in pgdog: rows written on the source reach
    // the shards and match; a shard changed behind pgdog's back still differs after being
    // compared again once the stream caught up, and the note says why.
    let started = run_simple(&admin, &format!("REPLICATE {SOURCE} {DESTINATION} pub"))
        .await
        .unwrap_or_else(|e| panic!("REPLICATE: {e}"));
    let task_id = started.cell(0, "task_id").expect("task_id").to_string();
    integration::data_sync::admin::wait_stream_status(
        &admin,
        &task_id,
        "the stream to run",
        Duration::from_secs(60),
        |s| s == "streaming",
    )
    .await;
    setup.psql_source(
        "INSERT INTO public.settings OVERRIDING SYSTEM VALUE SELECT i, 'streamed', now() FROM generate_series(100, 119) AS i",
    );
    let rows = verify(
        &admin,
        &format!("VERIFY {SOURCE} {DESTINATION} public.settings"),
    )
    .await;
    assert_status(&rows, "public.settings", "match", "rows the stream brought");
    assert_eq!(rows["public.settings"]["source_rows"], "45");
    let rows = verify(
        &admin,
        &format!("VERIFY {SOURCE} {DESTINATION} public.customers"),
    )
    .await;
    assert_status(
        &rows,
        "public.customers",
        "differs",
        "a change no stream brought",
    );
    let note = &rows["public.customers"]["note"];
    assert!(
        note.contains("rows changed while verifying: stop writes or let the stream catch up")
            && note.contains("compared 5 times"),
        "{rows:#?}"
    );
}
