//! The data copy end to end: `pgdog data-sync` (and the admin database's `COPY_DATA`) moving
//! the data set of `integration::data_sync::dataset` (bigint, text and uuid keys, an int4 key
//! widened to bigint, jsonb, arrays, numeric, NULLs, TOAST-sized text, a partitioned table,
//! an omnisharded table, a table without a sharding key) from a source cluster to 2 or 3
//! shards, judged by SQL: per table and shard, the count and checksum of the source rows that
//! belong there (`satisfies_hash_partition`) equal the shard's. Also: writes during the copy
//! stay out of it (snapshot at the slot), types whose binary form names other types, the
//! admin task with its progress views, progress bars on a terminal. Bad input is in
//! `data_sync_errors.rs`; resuming after kill -9, a shard restart and STOP_TASK are in
//! `data_sync_resume.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures_util::SinkExt;
use integration::data_sync::admin::{self, TABLE_COPY_STATUSES};
use integration::data_sync::checks::rows_match;
use integration::data_sync::output::parse_lsn;
use integration::data_sync::verify::{belongs_on, install_helpers};
use integration::data_sync::writer::Writer;
use integration::data_sync::{
    dataset, DataSyncOptions, DataSyncSetup, Expect, Placement, DEFAULT_SLOT, PUBLICATION, SOURCE,
    TABLES,
};
use integration::schema_sync::describe;
use integration::sharded::run_simple;
use tokio_postgres::Client;

/// How long a copy_data task may run.
const TASK_TIMEOUT: Duration = Duration::from_secs(180);

// ---------------------------------------------------------------------------------------------
// The harness itself.
// ---------------------------------------------------------------------------------------------

/// Copies one table by hand: the source rows `filter` selects, into the same table on a shard
/// (text COPY of the columns that are not generated).
async fn copy_by_hand(source: &Client, shard: &Client, table: &str, filter: Option<&str>) {
    let columns: String = source
        .query_one(
            "SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute \
             WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped \
             AND attgenerated = ''",
            &[&table],
        )
        .await
        .unwrap_or_else(|e| panic!("columns of {table}: {e:?}"))
        .get(0);
    let out = format!(
        "COPY (SELECT {columns} FROM ONLY {table} AS t{}) TO STDOUT",
        filter.map(|f| format!(" WHERE {f}")).unwrap_or_default()
    );
    let stream = source
        .copy_out(out.as_str())
        .await
        .unwrap_or_else(|e| panic!("{out}: {e:?}"));
    let mut stream = std::pin::pin!(stream);
    let mut data = Vec::new();
    while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
        data.extend_from_slice(&chunk.unwrap_or_else(|e| panic!("{out}: {e:?}")));
    }
    let into = format!("COPY {table} ({columns}) FROM STDIN");
    let sink = shard
        .copy_in::<_, bytes::Bytes>(into.as_str())
        .await
        .unwrap_or_else(|e| panic!("{into}: {e:?}"));
    let mut sink = std::pin::pin!(sink);
    sink.send(bytes::Bytes::from(data))
        .await
        .unwrap_or_else(|e| panic!("{into}: {e:?}"));
    sink.as_mut()
        .finish()
        .await
        .unwrap_or_else(|e| panic!("{into}: {e:?}"));
}

/// The judge accepts a copy made by hand by the placement rule (also with NULL keys), and
/// reports a moved, a changed and a missing row; the writer's transactions replay exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harness_judges_a_hand_made_copy() {
    let setup = DataSyncSetup::start(DataSyncOptions::default()).await;
    let published: BTreeSet<String> = setup
        .psql_source("SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = 'pub'")
        .lines()
        .map(str::to_string)
        .collect();
    let expected: BTreeSet<String> = TABLES.iter().map(|t| t.label()).collect();
    assert_eq!(
        published, expected,
        "the publication lists the data set's tables"
    );
    assert_eq!(
        setup.psql_source("SELECT count(*) FROM \"Sales\".orders WHERE customer_id IS NULL"),
        (dataset::Scale::SMALL.orders / 97).to_string()
    );

    setup.schema_sync_pre();
    let source = setup.source_client(SOURCE).await;
    install_helpers(&source).await;
    let shards = setup.shards();
    for k in 0..shards {
        let shard = setup.shard_client(k).await;
        for spec in TABLES {
            let filter = belongs_on(&spec, shards, k);
            copy_by_hand(&source, &shard, &spec.sql_name(), filter.as_deref()).await;
        }
    }
    let problems = setup.compare_with(SOURCE).await;
    assert!(problems.is_empty(), "{problems:#?}");
    let null_keys = setup.psql_shard(
        0,
        "SELECT count(*) FROM \"Sales\".orders WHERE customer_id IS NULL",
    );
    assert_eq!(
        null_keys,
        (dataset::Scale::SMALL.orders / 97).to_string(),
        "NULL keys go to shard 0"
    );

    // A row on the wrong shard, a changed value, a missing row of an omnisharded table.
    let moved = setup.psql_shard(0, "SELECT min(id) FROM public.customers");
    setup.psql_shard(
        0,
        &format!("DELETE FROM public.customers WHERE id = {moved}"),
    );
    let row = setup.psql_source(&format!(
        "SELECT format('INSERT INTO public.customers VALUES (%s, %L, %L, %s, %L, %L, %L)', \
         id, name, email, balance, tags, prefs, note) FROM public.customers WHERE id = {moved}"
    ));
    setup.psql_shard(1, &row);
    setup.psql_shard(1, "UPDATE public.documents SET version = 99 WHERE id = (SELECT min(id) FROM public.documents)");
    setup.psql_shard(1, "DELETE FROM public.countries WHERE code = 'C3'");
    let problems = setup.compare_with(SOURCE).await;
    let text = problems.join("\n");
    assert!(
        text.contains("public.customers on shard 0")
            && text.contains("public.customers on shard 1")
            && text.contains("1 of them belong on another shard"),
        "{text}"
    );
    assert!(text.contains("public.documents on shard 1"), "{text}");
    assert!(text.contains("public.countries on shard 1"), "{text}");
    assert_eq!(problems.len(), 4, "{text}");

    // The writer's transactions, replayed on a fresh load, give the source's rows.
    let writer = Writer::start(
        setup.source_client(SOURCE).await,
        setup.scale(),
        Duration::from_millis(1),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let records = writer.stop().await;
    assert!(records.len() > 5, "the writer committed {}", records.len());
    assert!(records.windows(2).all(|w| w[0].after <= w[1].before));
    setup.load("replay", records.len() as u64).await;
    let replay = setup.source_client("replay").await;
    for spec in TABLES {
        let a = integration::data_sync::verify::digest(&source, &spec, None).await;
        let b = integration::data_sync::verify::digest(&replay, &spec, None).await;
        assert_eq!(a, b, "{} differs after replaying the writer", spec.label());
    }
}

// ---------------------------------------------------------------------------------------------
// Copies.
// ---------------------------------------------------------------------------------------------

/// The secondary indexes and the foreign key the post phase creates on every shard.
const POST_OBJECTS: [&str; 3] = [
    "customers_email_idx",
    "orders_customer_id_fkey",
    "orders_customer_idx",
];

/// Which of [`POST_OBJECTS`] exist on shard `k`, sorted.
fn post_objects(setup: &DataSyncSetup, k: usize) -> Vec<String> {
    let found = setup.psql_shard(
        k,
        "SELECT indexname FROM pg_indexes WHERE schemaname IN ('public', 'Sales') \
         UNION ALL SELECT conname FROM pg_constraint WHERE contype = 'f'",
    );
    let mut names: Vec<String> = found
        .lines()
        .filter(|name| POST_OBJECTS.contains(name))
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

/// The data set to 2 shards with the default slot: every row on its shard, per table count and
/// checksum equal, output and slot as promised, a re-run copies nothing and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_every_row_to_its_shard_on_two_shards() {
    let setup = DataSyncSetup::start(DataSyncOptions::default()).await;
    let (output, summary) = setup.data_sync_ok(&[]);
    setup
        .assert_complete(&output, &summary, Expect::Fresh, DEFAULT_SLOT)
        .await;
    // The post phase ran: secondary indexes and the foreign key exist on every shard.
    for k in 0..setup.shards() {
        assert_eq!(
            post_objects(&setup, k),
            POST_OBJECTS,
            "shard {k}: the post phase's indexes and foreign key"
        );
    }

    let (again, again_summary) = setup.data_sync_ok(&[]);
    setup
        .assert_complete(
            &again,
            &again_summary,
            Expect::AllAlreadyCopied,
            DEFAULT_SLOT,
        )
        .await;
}

/// The data set to 3 shards with `--replication-slot` and `--table-jobs 3`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_every_row_to_its_shard_on_three_shards() {
    let setup = DataSyncSetup::start(DataSyncOptions {
        shards: 3,
        ..DataSyncOptions::default()
    })
    .await;
    let (output, summary) =
        setup.data_sync_ok(&["--replication-slot", "move_three", "--table-jobs", "3"]);
    setup
        .assert_complete(&output, &summary, Expect::Fresh, "move_three")
        .await;
}

/// A writer commits inserts, updates (TOAST included) and deletes on the source all through
/// the copy. The shards must hold the source exactly as of the slot's LSN: every transaction
/// whose commit returned before that LSN, none that committed after it, nothing half.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_is_the_snapshot_at_the_slot() {
    let setup = DataSyncSetup::start(DataSyncOptions::default()).await;
    let writer = Writer::start(
        setup.source_client(SOURCE).await,
        setup.scale(),
        Duration::from_millis(3),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut run = setup.spawn_data_sync(&[]);
    let output = run.finish(integration::data_sync::CLI_TIMEOUT).await;
    let records = writer.stop().await;
    assert_eq!(output.code, 0, "{}", describe(&output));
    let summary = integration::data_sync::output::summary(&output.stdout)
        .unwrap_or_else(|| panic!("no summary line\n{}", describe(&output)));
    setup.check_slot(DEFAULT_SLOT, &summary).await;
    let slot_lsn = parse_lsn(&summary.lsn).expect("the summary's LSN");

    let committed_before = records.iter().filter(|r| r.after <= slot_lsn).count();
    let committed_after = records.iter().filter(|r| r.before > slot_lsn).count();
    assert!(
        committed_before > 0 && committed_after > 0,
        "the writer must commit on both sides of the slot's LSN {}: {committed_before} before, \
         {committed_after} after, {} in all",
        summary.lsn,
        records.len()
    );

    // The last writer transaction on the shards (each inserts order WRITER_ORDER_BASE + i).
    let mut seen = 0i64;
    for k in 0..setup.shards() {
        let max = setup.psql_shard(
            k,
            &format!(
                "SELECT coalesce(max(id), {base}) - {base} FROM \"Sales\".orders WHERE id > {base}",
                base = dataset::WRITER_ORDER_BASE
            ),
        );
        seen = seen.max(max.parse().expect("a number"));
    }
    let seen = seen as u64;
    let must = records
        .iter()
        .filter(|r| r.after <= slot_lsn)
        .map(|r| r.i)
        .max()
        .unwrap_or(0);
    let must_not = records
        .iter()
        .filter(|r| r.before > slot_lsn)
        .map(|r| r.i)
        .min()
        .unwrap_or(u64::MAX);
    assert!(
        must <= seen && seen < must_not,
        "the copy holds writer transactions 1..={seen}; transactions 1..={must} committed before \
         the slot's LSN {} and must be in it, transactions from {must_not} on committed after it \
         and must not",
        summary.lsn
    );

    setup.load("expected", seen).await;
    setup
        .check_output_in("expected", &output, &summary, Expect::Fresh)
        .await;
    let problems = setup.compare_with("expected").await;
    assert!(
        problems.is_empty(),
        "the shards are not the source as of writer transaction {seen} (the slot's LSN {}):\n  {}",
        summary.lsn,
        problems.join("\n  ")
    );
    let later = setup.compare_with(SOURCE).await;
    assert!(
        !later.is_empty(),
        "the source changed after the slot, the shards must not have followed"
    );
}

// ---------------------------------------------------------------------------------------------
// The admin database.
// ---------------------------------------------------------------------------------------------

/// `COPY_DATA source destination pub <slot>` returns the task and the slot; while it runs,
/// `SHOW TASKS` shows a copy_data task with its step and `SHOW TABLE_COPIES` only known
/// statuses; at the end the task is finished, every table is done with its rows and bytes,
/// and the shards hold the source's rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_copy_data_runs_as_a_task() {
    let mut setup = DataSyncSetup::start(DataSyncOptions::default()).await;
    let admin = setup.start_pgdog().admin().await;
    match run_simple(&admin, "COPY_DATA nowhere destination pub").await {
        Err(e) => assert!(e.message.contains("nowhere"), "{e}"),
        Ok(result) => {
            let id = result.cell(0, "task_id").expect("task_id").to_string();
            let task = admin::wait_task_end(&admin, &id, TASK_TIMEOUT).await;
            assert!(
                task.status == "failed" && task.error.contains("nowhere"),
                "COPY_DATA of an unknown database: {task:?}"
            );
        }
    }
    let started = admin::copy_data(
        &admin,
        &format!("{SOURCE} destination {PUBLICATION} admin_slot"),
    )
    .await;
    assert_eq!(started.replication_slot, "admin_slot");

    let mut steps = BTreeSet::new();
    let mut statuses = BTreeSet::new();
    let deadline = std::time::Instant::now() + TASK_TIMEOUT;
    let task = loop {
        let task = admin::task(&admin, &started.task_id)
            .await
            .unwrap_or_else(|| panic!("task {} is not in SHOW TASKS", started.task_id));
        assert_eq!(task.kind, "copy_data", "{task:?}");
        let copies = admin::of_task(&admin::table_copies(&admin).await, &started.task_id);
        for r in 0..copies.rows.len() {
            statuses.insert(copies.cell(r, "status").unwrap_or("").to_string());
        }
        if !task.step.is_empty() {
            steps.insert(task.step.clone());
        }
        if task.status != "running" || task.step.starts_with("streaming changes") {
            break admin::stop_when_streaming(&admin, &started.task_id, TASK_TIMEOUT).await;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the task runs too long"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // After the copy the task streams changes until STOP_TASK.
    assert_eq!(task.status, "stopped", "{task:?}");
    assert!(!steps.is_empty(), "SHOW TASKS never showed a step");
    for status in &statuses {
        assert!(
            TABLE_COPY_STATUSES.contains(&status.as_str()),
            "unknown SHOW TABLE_COPIES status {status:?} (seen: {statuses:?})"
        );
    }

    let copies = admin::of_task(&admin::table_copies(&admin).await, &started.task_id);
    let counts: BTreeMap<String, (Placement, i64)> = setup
        .source_counts()
        .await
        .into_iter()
        .map(|(spec, count)| (spec.label(), (spec.placement, count)))
        .collect();
    let mut problems = Vec::new();
    for (label, (placement, count)) in &counts {
        let row = (0..copies.rows.len()).find(|r| {
            format!(
                "{}.{}",
                copies.cell(*r, "schema").unwrap_or(""),
                copies.cell(*r, "table").unwrap_or("")
            ) == *label
        });
        let Some(r) = row else {
            problems.push(format!("no SHOW TABLE_COPIES row for {label}"));
            continue;
        };
        let value = |column: &str| copies.cell(r, column).unwrap_or("").to_string();
        if value("status") != "done" {
            problems.push(format!("{label}: status {}", value("status")));
        }
        let rows: u64 = value("rows").parse().unwrap_or(u64::MAX);
        if !rows_match(*placement, rows, *count, setup.shards()) {
            problems.push(format!("{label}: rows {rows}, the source has {count}"));
        }
        if value("bytes").parse::<u64>().unwrap_or(0) == 0 {
            problems.push(format!("{label}: bytes {:?}", value("bytes")));
        }
        for column in ["rows_human", "bytes_human", "elapsed"] {
            if value(column).is_empty() {
                problems.push(format!("{label}: empty {column}"));
            }
        }
        if value("elapsed_ms").parse::<f64>().is_err() {
            problems.push(format!("{label}: elapsed_ms {:?}", value("elapsed_ms")));
        }
        if copies.columns.iter().any(|c| c == "verified")
            && !matches!(
                value("verified").as_str(),
                "t" | "true" | "yes" | "ok" | "verified"
            )
        {
            problems.push(format!("{label}: verified {:?}", value("verified")));
        }
        if copies.columns.iter().any(|c| c == "ranges") && value("ranges_done") != value("ranges") {
            problems.push(format!(
                "{label}: {} of {} ranges done",
                value("ranges_done"),
                value("ranges")
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "SHOW TABLE_COPIES after the task:\n  {}\n{copies:?}",
        problems.join("\n  ")
    );
    let slots = setup.slots().await;
    assert!(
        slots.len() == 1 && slots[0].name == "admin_slot" && !slots[0].temporary,
        "{slots:?}"
    );
    setup.check_state_tables().await;
    setup.assert_copied("after COPY_DATA").await;
}

// ---------------------------------------------------------------------------------------------
// Types whose binary form names other types.
// ---------------------------------------------------------------------------------------------

/// A published table without a sharding key whose columns are arrays of an enum, a composite
/// holding an enum, and an array of that composite.
const LABELS: integration::data_sync::TableSpec = integration::data_sync::TableSpec {
    schema: "public",
    name: "labels",
    placement: Placement::Everywhere,
    generated: &[],
};

/// Binary COPY writes the type OID of array elements and composite fields, and user-defined
/// types have other OIDs on the shards than on the source: enum arrays, composites holding an
/// enum and arrays of composites must still arrive intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enum_arrays_and_composites_are_copied() {
    let setup = DataSyncSetup::start(DataSyncOptions::default()).await;
    setup.psql_source(
        "CREATE TYPE public.filler_a AS (x int); CREATE TYPE public.filler_b AS (x int); \
         CREATE TYPE public.mood AS ENUM ('sad', 'ok', 'happy'); \
         CREATE TYPE public.place AS (city text, mood public.mood); \
         CREATE TABLE public.labels (id bigint PRIMARY KEY, moods public.mood[], \
             here public.place, places public.place[], names varchar(20)[]); \
         INSERT INTO public.labels \
         SELECT i, CASE WHEN i % 7 = 0 THEN NULL ELSE \
                    ARRAY[(ARRAY['sad','ok','happy'])[i % 3 + 1], 'ok']::public.mood[] END, \
                ROW('city ' || i, (ARRAY['sad','ok','happy'])[i % 3 + 1])::public.place, \
                ARRAY[ROW('a' || i, 'happy')::public.place, ROW(NULL, NULL)::public.place], \
                ARRAY['n' || i, NULL] \
         FROM generate_series(1, 300) AS i; \
         ALTER PUBLICATION pub ADD TABLE public.labels",
    );
    let output = setup.data_sync(&[]);
    let oids = "SELECT string_agg(t::regtype::oid::text, ',') FROM unnest(ARRAY['public.mood', \
                'public.place', 'public.mood[]', 'public.place[]']) AS t";
    let source_oids = setup.psql_source(oids);
    let shard_oids = setup.psql_shard(0, oids);
    assert_ne!(
        source_oids, shard_oids,
        "harness: the types have the same OIDs on both sides, the test proves nothing"
    );
    let source = setup.source_client(SOURCE).await;
    let mut shards = Vec::new();
    for k in 0..setup.shards() {
        shards.push(setup.shard_client(k).await);
    }
    let problems = integration::data_sync::verify::compare(&source, &shards, &[LABELS]).await;
    assert!(
        problems.is_empty(),
        "public.labels (type OIDs {source_oids} on the source, {shard_oids} on shard 0):\n  {}\n{}",
        problems.join("\n  "),
        describe(&output)
    );
    assert_eq!(
        output.code,
        0,
        "the rows of public.labels arrived intact (type OIDs {source_oids} on the source, \
         {shard_oids} on shard 0), the run must succeed\n{}",
        describe(&output)
    );
    setup.assert_copied("with public.labels").await;
}

// ---------------------------------------------------------------------------------------------
// Progress on a terminal.
// ---------------------------------------------------------------------------------------------

/// On a terminal the CLI draws progress bars (terminal control characters) and still ends
/// with the per-table lines and the summary; off a terminal (every other test, checked by
/// `check_output`) it writes plain lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_bars_on_a_terminal() {
    let setup = DataSyncSetup::start(DataSyncOptions::default()).await;
    let output = setup.data_sync_on_terminal(&[]);
    assert_eq!(output.code, 0, "{}", describe(&output));
    assert!(
        output.stdout.contains('\x1b') || output.stdout.contains('\r'),
        "no progress bar drawn on a terminal\n{}",
        describe(&output)
    );
    let text = integration::data_sync::output::strip_terminal(&output.stdout);
    let summary = integration::data_sync::output::summary(&text)
        .unwrap_or_else(|| panic!("no summary line\n{}", describe(&output)));
    let lines = integration::data_sync::output::table_lines(&text);
    for spec in TABLES {
        assert!(
            lines.contains_key(&spec.label()),
            "no line for {}\n{}",
            spec.label(),
            describe(&output)
        );
    }
    setup.check_slot(DEFAULT_SLOT, &summary).await;
    setup.assert_copied("after a run on a terminal").await;
}
