//! Schema sync end to end: `pgdog schema-sync` (and the admin database's `SCHEMA_SYNC`) run
//! against a real source database (tests/fixtures/schema_sync_source.sql) and two destination
//! shards, judged by `pg_dump --schema-only` of each shard: after the pre and post phases each
//! shard must hold exactly the source's schema restricted to the publication's tables and what
//! they need, with integer primary keys (and the columns referencing them) widened to bigint.

use std::collections::BTreeSet;
use std::time::Duration;

use integration::schema_sync::output::{dry_run_sections, statements, summary_of, ShardSummary};
use integration::schema_sync::{
    describe, shard_database, Dump, EntryKey, SchemaSyncSetup, PUBLICATION, SHARDS, SOURCE,
};
use integration::sharded::{run_simple, QueryResult};
use integration::tools::ToolOutput;

/// `--data-sync-complete`: the post phase.
const POST: &str = "--data-sync-complete";
/// `--cutover`: the cutover phase.
const CUTOVER: &str = "--cutover";

/// The moved tables of the fixture, as SQL names.
const MOVED_TABLES: [&str; 8] = [
    "public.customers",
    "inventory.products",
    "inventory.warehouses",
    "\"Sales\".orders",
    "\"Sales\".\"OrderItems\"",
    "\"Sales\".events",
    "\"Sales\".events_2024",
    "\"Sales\".events_2025",
];

/// The trigger function: needed by the trigger (post phase), not by any table, so the pre phase
/// may or may not create it.
const TRIGGER_FUNCTION: (&str, &str, &str) = ("FUNCTION", "Sales", "touch_updated_at()");

// ---------------------------------------------------------------------------------------------
// What each shard must look like.
// ---------------------------------------------------------------------------------------------

/// The source's dump restricted to the published tables and what they need (the `archive`
/// schema, its type and table are not moved), with the integer primary keys and the columns
/// referencing them as bigint, and the serial sequence of `customers.id` as bigint (pg_dump
/// then prints no `AS integer`). The identity sequence of `products.id` prints the same.
fn expected_full(source: &Dump) -> Dump {
    let widen = |column: &str| {
        (
            format!("    {column} integer NOT NULL,"),
            format!("    {column} bigint NOT NULL,"),
        )
    };
    let mut dump = source.filter(|key, _| {
        key.schema != "archive" && !(key.kind == "SCHEMA" && key.name == "archive")
    });
    for (table, column) in [
        (("TABLE", "public", "customers"), "id"),
        (("TABLE", "inventory", "products"), "id"),
        (("TABLE", "Sales", "orders"), "customer_id"),
        (("TABLE", "Sales", "OrderItems"), "product_id"),
    ] {
        let (from, to) = widen(column);
        dump = dump.edit_line(table, &from, Some(&to));
    }
    dump.edit_line(
        ("SEQUENCE", "public", "customers_id_seq"),
        "    AS integer",
        None,
    )
}

/// Whether an entry belongs to the post phase: secondary indexes (and their partition
/// attaches), constraints other than primary keys, foreign keys, triggers.
fn is_post_entry(key: &EntryKey, body: &str) -> bool {
    match key.kind.as_str() {
        "INDEX" | "FK CONSTRAINT" | "TRIGGER" => true,
        "CONSTRAINT" => !body.contains(" PRIMARY KEY "),
        "INDEX ATTACH" => !key.name.ends_with("_pkey"),
        _ => false,
    }
}

/// What a shard holds after the pre phase: [`expected_full`] without the post entries.
fn expected_pre(source: &Dump) -> Dump {
    expected_full(source).filter(|key, body| !is_post_entry(key, body))
}

/// Drops the trigger function, which the pre phase may create or leave to the post phase.
fn without_trigger_function(dump: &Dump) -> Dump {
    let (kind, schema, name) = TRIGGER_FUNCTION;
    dump.filter(|key, _| !(key.kind == kind && key.schema == schema && key.name == name))
}

/// Asserts that `actual` is what the pre phase must leave on a shard.
fn assert_pre_schema(actual: &Dump, source: &Dump, what: &str) {
    without_trigger_function(actual)
        .assert_same(&without_trigger_function(&expected_pre(source)), what);
}

/// Asserts that every shard holds the pre-phase schema.
fn assert_pre_on_all_shards(setup: &SchemaSyncSetup, source: &Dump) {
    for (k, dump) in setup.shard_dumps().iter().enumerate() {
        assert_pre_schema(dump, source, &format!("shard {k} after the pre phase"));
    }
}

/// Asserts that every shard holds the full schema.
fn assert_full_on_all_shards(setup: &SchemaSyncSetup, source: &Dump) {
    let expected = expected_full(source);
    for (k, dump) in setup.shard_dumps().iter().enumerate() {
        dump.assert_same(
            &expected,
            &format!("shard {k} after the pre and post phases"),
        );
    }
}

/// Asserts that no moved table has rows on any shard: schema sync copies no data.
fn assert_shards_empty(setup: &SchemaSyncSetup) {
    for k in 0..SHARDS {
        for table in MOVED_TABLES {
            let count = setup.psql(&shard_database(k), &format!("SELECT count(*) FROM {table}"));
            assert_eq!(
                count, "0",
                "{table} on shard {k} has rows; schema sync copies no data"
            );
        }
    }
}

/// The summary line of every shard in a run's stdout; panics when one is missing.
fn shard_summaries(output: &ToolOutput) -> Vec<ShardSummary> {
    (0..SHARDS)
        .map(|k| {
            summary_of(&output.stdout, k).unwrap_or_else(|| {
                panic!(
                    "no `shard {k}: N created, N already existed, N differ, N failed` line on stdout\n{}",
                    describe(output)
                )
            })
        })
        .collect()
}

/// Asserts a run that created things on every shard without failures or differences.
fn assert_created(output: &ToolOutput, what: &str) {
    for summary in shard_summaries(output) {
        assert!(
            summary.created > 0 && summary.failed == 0 && summary.differ == 0,
            "{what}: shard {} should have created objects without failures: {summary:?}\n{}",
            summary.shard,
            describe(output)
        );
    }
}

/// Asserts a re-run that was a no-op: exit 0, and on every shard everything already existed.
fn assert_noop(output: &ToolOutput, what: &str) {
    assert_eq!(
        output.code,
        0,
        "{what} should exit with 0\n{}",
        describe(output)
    );
    for summary in shard_summaries(output) {
        assert!(
            summary.created == 0
                && summary.differ == 0
                && summary.failed == 0
                && summary.existed > 0,
            "{what}: shard {} should report every statement as already existing: {summary:?}\n{}",
            summary.shard,
            describe(output)
        );
    }
}

/// stdout and stderr together, for searching messages wherever they are printed.
fn all_output(output: &ToolOutput) -> String {
    format!("{}\n{}", output.stdout, output.stderr)
}

// ---------------------------------------------------------------------------------------------
// The harness itself (no schema sync involved).
// ---------------------------------------------------------------------------------------------

/// The dump comparison sees a restored copy of the source as equal to it, and the expected
/// shard schema is exactly what hand-made widening of a restored copy gives.
#[test]
fn expectations_match_a_hand_made_destination() {
    let setup = SchemaSyncSetup::start();
    let source = setup.source_dump();
    for (kind, schema, name) in [
        ("SCHEMA", "-", "Sales"),
        ("EXTENSION", "-", "pgcrypto"),
        ("TYPE", "Sales", "order_status"),
        ("DOMAIN", "public", "email"),
        ("TYPE", "public", "address"),
        ("FUNCTION", "inventory", "normalize_sku(text)"),
        ("TABLE", "Sales", "OrderItems"),
        ("TABLE ATTACH", "Sales", "events_2024"),
        ("INDEX ATTACH", "Sales", "events_2024_pkey"),
        ("INDEX ATTACH", "Sales", "events_2024_kind_idx"),
        ("INDEX", "Sales", "orders_unpaid_idx"),
        ("TRIGGER", "Sales", "orders orders_touch"),
        ("FK CONSTRAINT", "Sales", "orders orders_customer_id_fkey"),
        ("TABLE", "archive", "old_orders"),
    ] {
        assert!(
            source.has(kind, schema, name),
            "the source dump has no {kind} {schema}.{name}:\n{}",
            source.key_list()
        );
    }
    let text = integration::schema_sync::dump::pg_dump_text(
        setup.cluster.port(),
        "postgres",
        "postgres",
        SOURCE,
    );
    for k in 0..SHARDS {
        let restored = setup.psql_script(&shard_database(k), &text);
        assert_eq!(
            restored.code, 0,
            "restoring the source dump: {}",
            restored.stderr
        );
    }
    setup
        .shard_dump(0)
        .assert_same(&source, "a restored copy of the source");
    let widened = setup.psql_script(
        &shard_database(1),
        "DROP SCHEMA archive CASCADE;\n\
         ALTER TABLE public.customers ALTER COLUMN id TYPE bigint;\n\
         ALTER SEQUENCE public.customers_id_seq AS bigint;\n\
         ALTER TABLE inventory.products ALTER COLUMN id TYPE bigint;\n\
         ALTER TABLE \"Sales\".orders ALTER COLUMN customer_id TYPE bigint;\n\
         ALTER TABLE \"Sales\".\"OrderItems\" ALTER COLUMN product_id TYPE bigint;\n",
    );
    assert_eq!(widened.code, 0, "widening by hand: {}", widened.stderr);
    setup
        .shard_dump(1)
        .assert_same(&expected_full(&source), "a hand-widened copy of the source");
    let pre = expected_pre(&source);
    for post in [
        ("INDEX", "Sales", "orders_unpaid_idx"),
        ("INDEX ATTACH", "Sales", "events_2024_kind_idx"),
        ("CONSTRAINT", "public", "customers customers_email_key"),
        ("FK CONSTRAINT", "Sales", "orders orders_customer_id_fkey"),
        ("TRIGGER", "Sales", "orders orders_touch"),
    ] {
        assert!(
            !pre.has(post.0, post.1, post.2),
            "{post:?} is not a pre entry"
        );
    }
    for kept in [
        ("CONSTRAINT", "Sales", "events events_pkey"),
        ("INDEX ATTACH", "Sales", "events_2024_pkey"),
        ("SEQUENCE", "Sales", "orders_id_seq"),
        ("DEFAULT", "Sales", "orders id"),
    ] {
        assert!(pre.has(kept.0, kept.1, kept.2), "{kept:?} is a pre entry");
    }
}

// ---------------------------------------------------------------------------------------------
// The phases.
// ---------------------------------------------------------------------------------------------

/// The pre phase creates, on every shard, exactly the tables, types, functions, sequences and
/// primary keys the publication needs, with the bigint changes, and nothing of the post phase.
#[test]
fn pre_phase_creates_tables_and_primary_keys() {
    let setup = SchemaSyncSetup::start();
    let source = setup.source_dump();
    let output = setup.schema_sync_ok(&[]);
    assert_created(&output, "pre");
    assert_pre_on_all_shards(&setup, &source);
    for k in 0..SHARDS {
        let dump = setup.shard_dump(k);
        assert!(
            !dump.has("SCHEMA", "-", "archive") && !dump.has("TYPE", "archive", "legacy_state"),
            "shard {k}: objects used only by unpublished tables were created:\n{}",
            dump.key_list()
        );
        let post: Vec<String> = dump
            .entries
            .iter()
            .filter(|(key, body)| is_post_entry(key, body))
            .map(|(key, _)| key.to_string())
            .collect();
        assert!(
            post.is_empty(),
            "shard {k} has post-phase objects after pre: {post:?}"
        );
        let types = setup.psql(
            &shard_database(k),
            "SELECT string_agg(c, ', ' ORDER BY c COLLATE \"C\") FROM \
             (SELECT format('%s.%s %s', table_name, column_name, data_type) AS c \
             FROM information_schema.columns \
             WHERE (table_name, column_name) IN \
               (('customers', 'id'), ('products', 'id'), ('orders', 'customer_id'), ('OrderItems', 'product_id'))) AS t",
        );
        assert_eq!(
            types,
            "OrderItems.product_id bigint, customers.id bigint, orders.customer_id bigint, products.id bigint",
            "shard {k}: integer keys and their references must be bigint"
        );
    }
    assert_shards_empty(&setup);
    // The source is left alone.
    setup
        .source_dump()
        .assert_same(&source, "the source after schema sync");
}

/// The post phase adds secondary indexes, unique and foreign-key constraints and triggers:
/// afterwards every shard's schema is the source's (modulo bigint).
#[test]
fn post_phase_completes_the_schema() {
    let setup = SchemaSyncSetup::start();
    let source = setup.source_dump();
    setup.schema_sync_ok(&[]);
    let output = setup.schema_sync_ok(&[POST, "--index-jobs", "2"]);
    assert_created(&output, "post");
    assert_full_on_all_shards(&setup, &source);
    assert_shards_empty(&setup);
    for k in 0..SHARDS {
        // ANALYZE ran on the moved tables.
        let analyzed = setup.psql(
            &shard_database(k),
            "SELECT count(*) FROM pg_stat_user_tables \
             WHERE relname IN ('customers', 'products', 'warehouses', 'orders', 'OrderItems') \
               AND last_analyze IS NULL AND last_autoanalyze IS NULL",
        );
        assert_eq!(analyzed, "0", "shard {k}: moved tables were not analyzed");
    }
}

/// Cutover sets each shard's sequences above the source's live values: the sharded table's
/// sequence steps by the shard count from a different offset on each shard (ids unique across
/// shards), the others restart at the same value everywhere. With margin M and N shards,
/// `start` = source `last_value` + M rounded up to a multiple of N; shard k's sharded sequence
/// restarts at `start` + k with `INCREMENT BY` N, the others at `start`.
#[test]
fn cutover_sets_sequences_above_the_source() {
    let setup = SchemaSyncSetup::start();
    let source = setup.source_dump();
    setup.schema_sync_ok(&[]);
    setup.schema_sync_ok(&[POST]);
    let output = setup.schema_sync_ok(&[CUTOVER]);
    for summary in shard_summaries(&output) {
        assert!(
            summary.failed == 0 && summary.differ == 0,
            "cutover on shard {}: {summary:?}\n{}",
            summary.shard,
            describe(&output)
        );
    }
    let live = |sequence: &str| -> i64 {
        setup
            .psql(SOURCE, &format!("SELECT last_value FROM {sequence}"))
            .parse()
            .unwrap_or_else(|e| panic!("last_value of {sequence}: {e}"))
    };
    // Exact values the contract gives; collected, so one run reports all of them.
    let mut mismatches: Vec<String> = Vec::new();
    let orders_source = live("\"Sales\".orders_id_seq");
    assert_eq!(orders_source, 57, "fixture");
    let orders_start = round_up(orders_source + 1000, SHARDS as i64);
    let mut order_ids: Vec<(usize, i64)> = Vec::new();
    let mut other_first: Vec<(String, usize, i64)> = Vec::new();
    for k in 0..SHARDS {
        let db = shard_database(k);
        // A customer first: the orders' foreign key needs one on this shard.
        let customer: i64 = setup
            .psql(
                &db,
                &format!(
                    "INSERT INTO public.customers (name, email) VALUES ('new', 'new{k}@example.com') RETURNING id"
                ),
            )
            .parse()
            .unwrap_or_else(|e| panic!("customer id on shard {k}: {e}"));
        other_first.push(("public.customers_id_seq".into(), k, customer));
        let ids = setup.psql(
            &db,
            &format!(
                "INSERT INTO \"Sales\".orders (customer_id, total) \
                 SELECT {customer}, 1 FROM generate_series(1, 3) RETURNING id"
            ),
        );
        let ids: Vec<i64> = ids
            .lines()
            .map(|l| l.parse().unwrap_or_else(|e| panic!("order id {l:?}: {e}")))
            .collect();
        let expected: Vec<i64> = (0..3)
            .map(|i| orders_start + k as i64 + SHARDS as i64 * i)
            .collect();
        if ids != expected {
            mismatches.push(format!(
                "shard {k}: \"Sales\".orders ids {ids:?}, expected {expected:?} \
                 (source last_value {orders_source} + 1000 rounded up to a multiple of {SHARDS}, + {k}, step {SHARDS})"
            ));
        }
        order_ids.extend(ids.iter().map(|id| (k, *id)));
        let increment = setup.psql(
            &db,
            "SELECT increment_by FROM pg_sequences WHERE schemaname = 'Sales' AND sequencename = 'orders_id_seq'",
        );
        assert_eq!(
            increment, "2",
            "shard {k}: INCREMENT BY of the sharded table's sequence"
        );
        for sequence in [
            "\"Sales\".events_id_seq",
            "\"Sales\".\"OrderItems_id_seq\"",
            "inventory.products_id_seq",
        ] {
            let next: i64 = setup
                .psql(&db, &format!("SELECT nextval('{sequence}')"))
                .parse()
                .unwrap_or_else(|e| panic!("nextval of {sequence} on shard {k}: {e}"));
            other_first.push((sequence.to_string(), k, next));
        }
    }
    // The sequences of tables that are not sharded: above the source, the same everywhere.
    for (sequence, k, first) in &other_first {
        let source_value = live(sequence);
        assert!(
            *first > source_value,
            "shard {k}: {sequence} hands out {first}, not above the source's {source_value}"
        );
        let on_shard_0 = other_first
            .iter()
            .find(|(s, shard, _)| s == sequence && *shard == 0)
            .map(|(_, _, v)| *v);
        assert_eq!(
            Some(*first),
            on_shard_0,
            "{sequence} (table not sharded) must restart at the same value on every shard"
        );
        let start = round_up(source_value + 1000, SHARDS as i64);
        if *first != start {
            mismatches.push(format!(
                "shard {k}: {sequence} (not sharded) hands out {first} first, expected {start} \
                 (source last_value {source_value} + 1000 rounded up to a multiple of {SHARDS})"
            ));
        }
    }
    let unique: BTreeSet<i64> = order_ids.iter().map(|(_, id)| *id).collect();
    assert_eq!(
        unique.len(),
        order_ids.len(),
        "order ids collide across shards: {order_ids:?}"
    );
    assert!(
        order_ids.iter().all(|(_, id)| *id > orders_source),
        "order ids must be above the source's {orders_source}: {order_ids:?}"
    );
    for (k, id) in &order_ids {
        assert_eq!(
            id.rem_euclid(SHARDS as i64),
            (orders_start + *k as i64).rem_euclid(SHARDS as i64),
            "shard {k}: order id {id} is not in this shard's residue class"
        );
    }
    // The source's sequences are not touched, and the schema only gained the new increment.
    assert_eq!(live("\"Sales\".orders_id_seq"), 57);
    for (k, dump) in setup.shard_dumps().iter().enumerate() {
        dump.assert_same(
            &expected_after_cutover(&source),
            &format!("shard {k} after cutover"),
        );
    }
    assert!(
        mismatches.is_empty(),
        "sequence values differ from the contract:\n{}",
        mismatches.join("\n")
    );
}

/// `value` rounded up to a multiple of `n`.
fn round_up(value: i64, n: i64) -> i64 {
    (value + n - 1) / n * n
}

/// What a shard holds after cutover: [`expected_full`] with the sharded table's sequence
/// stepping by the shard count.
fn expected_after_cutover(source: &Dump) -> Dump {
    expected_full(source).edit_line(
        ("SEQUENCE", "Sales", "orders_id_seq"),
        "    INCREMENT BY 1",
        Some("    INCREMENT BY 2"),
    )
}

/// Re-running each phase changes nothing and reports every statement as already existing.
#[test]
fn every_phase_is_idempotent() {
    let setup = SchemaSyncSetup::start();
    let source = setup.source_dump();
    setup.schema_sync_ok(&[]);
    let output = setup.schema_sync(&[]);
    assert_noop(&output, "pre re-run");
    assert_pre_on_all_shards(&setup, &source);

    setup.schema_sync_ok(&[POST]);
    let output = setup.schema_sync(&[POST]);
    assert_noop(&output, "post re-run");
    assert_full_on_all_shards(&setup, &source);
    // The pre phase after the post phase does not undo or redo anything either.
    let output = setup.schema_sync(&[]);
    assert_noop(&output, "pre after post");
    assert_full_on_all_shards(&setup, &source);

    setup.schema_sync_ok(&[CUTOVER, "--sequence-margin", "100"]);
    // Use some ids on shard 0; a second cutover must not move the sequence back.
    let first = setup.psql(
        &shard_database(0),
        "SELECT nextval('\"Sales\".orders_id_seq')",
    );
    let output = setup.schema_sync(&[CUTOVER, "--sequence-margin", "100"]);
    assert_noop(&output, "cutover re-run");
    let second = setup.psql(
        &shard_database(0),
        "SELECT nextval('\"Sales\".orders_id_seq')",
    );
    let (first, second): (i64, i64) = (
        first.parse().unwrap_or_default(),
        second.parse().unwrap_or_default(),
    );
    // 57 + 100 rounded up to a multiple of 2 shards, on shard 0.
    assert_eq!(
        first, 158,
        "first order id on shard 0 with --sequence-margin 100"
    );
    assert_eq!(
        second,
        first + 2,
        "a re-run cutover must leave the sequence where it was (first {first}, then {second})"
    );
    for (k, dump) in setup.shard_dumps().iter().enumerate() {
        dump.assert_same(
            &expected_after_cutover(&source),
            &format!("shard {k} after two cutovers"),
        );
    }
}

/// A destination table that exists but differs is reported by name, left alone, and the rest
/// is still applied; the exit code says something needs attention.
#[test]
fn differing_destination_object_is_reported() {
    let setup = SchemaSyncSetup::start();
    let source = setup.source_dump();
    setup.psql(
        &shard_database(1),
        "CREATE SCHEMA inventory; \
         CREATE TABLE inventory.warehouses (code text PRIMARY KEY, name text NOT NULL, extra_column integer)",
    );
    let preexisting = setup.shard_dump(1);
    let output = setup.schema_sync(&[]);
    assert_eq!(
        output.code,
        1,
        "a differing object must give exit code 1\n{}",
        describe(&output)
    );
    let text = all_output(&output);
    assert!(
        text.lines()
            .any(|l| l.contains("differs") && l.contains("warehouses")),
        "no line says that inventory.warehouses differs\n{}",
        describe(&output)
    );
    let summary = summary_of(&output.stdout, 1);
    assert!(
        summary.is_some_and(|s| s.differ >= 1),
        "shard 1's summary must count the difference: {summary:?}\n{}",
        describe(&output)
    );
    // Shard 0 is complete; shard 1 too, except that its own warehouses table is kept.
    setup
        .shard_dump(0)
        .assert_same(&expected_pre(&source), "shard 0 (no differences)");
    let warehouses = ("TABLE", "inventory", "warehouses");
    let kept = preexisting
        .get(warehouses.0, warehouses.1, warehouses.2)
        .unwrap_or_else(|| panic!("no pre-created table in {}", preexisting.key_list()))
        .to_string();
    let mut expected = expected_pre(&source);
    expected.entries.insert(
        EntryKey::new(warehouses.0, warehouses.1, warehouses.2),
        kept,
    );
    assert_pre_schema_with(
        &setup.shard_dump(1),
        &expected,
        "shard 1 (warehouses differs)",
    );
}

/// Like [`assert_pre_schema`], against a given expectation.
fn assert_pre_schema_with(actual: &Dump, expected: &Dump, what: &str) {
    without_trigger_function(actual).assert_same(&without_trigger_function(expected), what);
}

/// `--dry-run` prints each shard's SQL and changes nothing; that SQL, run by hand, builds the
/// same schema as the real run.
#[test]
fn dry_run_prints_sql_and_changes_nothing() {
    let setup = SchemaSyncSetup::start();
    let source = setup.source_dump();
    let output = setup.schema_sync_ok(&["--dry-run"]);
    for (k, dump) in setup.shard_dumps().iter().enumerate() {
        assert!(
            dump.is_empty(),
            "--dry-run changed shard {k}:\n{}",
            dump.key_list()
        );
    }
    let sections = dry_run_sections(&output.stdout);
    assert_eq!(
        sections.keys().copied().collect::<Vec<_>>(),
        (0..SHARDS).collect::<Vec<_>>(),
        "one `-- shard N` section per shard\n{}",
        describe(&output)
    );
    for (k, sql) in &sections {
        let statements = statements(sql);
        assert!(
            !statements.is_empty(),
            "no SQL for shard {k}\n{}",
            describe(&output)
        );
        let unterminated: Vec<&String> = statements.iter().filter(|s| !s.ends_with(';')).collect();
        assert!(
            unterminated.is_empty(),
            "shard {k}: statements without `;`: {unterminated:?}"
        );
        for needle in [
            "CREATE TABLE \"Sales\".\"OrderItems\"",
            "CREATE TABLE public.customers",
            "CREATE TYPE \"Sales\".order_status",
        ] {
            assert!(
                statements.iter().any(|s| s.contains(needle)),
                "shard {k}: no statement with {needle:?}\n{sql}"
            );
        }
        assert!(
            !statements.iter().any(|s| s.contains("archive.")),
            "shard {k}: unpublished objects in the SQL\n{sql}"
        );
    }
    // The printed SQL is the exact SQL: run by hand on shard 0 it builds the pre schema, and
    // the real run then finds everything there.
    let applied = setup.psql_script(&shard_database(0), &sections[&0]);
    assert_eq!(
        applied.code, 0,
        "the dry-run SQL of shard 0 does not run: {}\n{}",
        applied.stderr, sections[&0]
    );
    assert_pre_schema(
        &setup.shard_dump(0),
        &source,
        "shard 0 after running the dry-run SQL",
    );
    let output = setup.schema_sync_ok(&[]);
    let summaries = shard_summaries(&output);
    assert_eq!(
        summaries[0].created,
        0,
        "shard 0 already had everything the dry run printed: {:?}\n{}",
        summaries[0],
        describe(&output)
    );
    assert!(summaries[1].created > 0, "shard 1: {:?}", summaries[1]);
    assert_pre_on_all_shards(&setup, &source);
    // A dry run of the post phase prints index statements and changes nothing.
    let output = setup.schema_sync_ok(&[POST, "--dry-run"]);
    let sections = dry_run_sections(&output.stdout);
    for k in 0..SHARDS {
        let sql = sections.get(&k).map(String::as_str).unwrap_or("");
        assert!(
            sql.contains("orders_unpaid_idx") && sql.contains("FOREIGN KEY"),
            "post dry run, shard {k}: no index / foreign key statements\n{}",
            describe(&output)
        );
    }
    assert_pre_on_all_shards(&setup, &source);
}

/// Without `--ignore-errors` a failing statement stops its shard and the run fails; with it,
/// the failure is logged and everything else is applied.
#[test]
fn failing_statement_stops_the_shard_unless_ignore_errors() {
    let setup = SchemaSyncSetup::start();
    let source = setup.source_dump();
    setup.schema_sync_ok(&[]);
    // Rows on shard 1 that break the UNIQUE (email) constraint of the post phase.
    setup.psql(
        &shard_database(1),
        "INSERT INTO public.customers (name, email) VALUES ('a', 'dup@example.com'), ('b', 'dup@example.com')",
    );
    let output = setup.schema_sync(&[POST]);
    assert_eq!(
        output.code,
        1,
        "a failing statement must fail the run\n{}",
        describe(&output)
    );
    let text = all_output(&output);
    assert!(
        text.contains("customers_email_key"),
        "the failing statement (customers_email_key) is not named\n{}",
        describe(&output)
    );
    let full = expected_full(&source);
    setup
        .shard_dump(0)
        .assert_same(&full, "shard 0 (nothing failed there)");
    assert!(
        !setup
            .shard_dump(1)
            .has("CONSTRAINT", "public", "customers customers_email_key"),
        "shard 1 cannot have the unique constraint"
    );

    let output = setup.schema_sync(&[POST, "--ignore-errors"]);
    assert_eq!(
        output.code,
        0,
        "--ignore-errors must exit with 0\n{}",
        describe(&output)
    );
    let summary = summary_of(&output.stdout, 1);
    assert!(
        summary.is_some_and(|s| s.failed >= 1),
        "shard 1 must count the failed statement: {summary:?}\n{}",
        describe(&output)
    );
    let expected = full.filter(|key, _| key.name != "customers customers_email_key");
    setup.shard_dump(1).assert_same(
        &expected,
        "shard 1 with --ignore-errors (all but the unique constraint)",
    );
    setup.shard_dump(0).assert_same(&full, "shard 0");
}

// ---------------------------------------------------------------------------------------------
// The admin database.
// ---------------------------------------------------------------------------------------------

/// The value of `column` in `row` of `result`.
fn cell<'a>(result: &'a QueryResult, row: usize, column: &str) -> Option<&'a str> {
    let index = result.columns.iter().position(|c| c == column)?;
    result.rows.get(row)?.get(index)?.as_deref()
}

/// Starts `SCHEMA_SYNC <phase> source destination pub` and waits until its task finishes;
/// returns the task id.
async fn admin_schema_sync(admin: &tokio_postgres::Client, phase: &str) -> String {
    let sql = format!("SCHEMA_SYNC {phase} {SOURCE} destination {PUBLICATION}");
    let started = run_simple(admin, &sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    assert_eq!(started.columns, ["task_id"], "{sql}: {started:?}");
    assert_eq!(started.rows.len(), 1, "{sql}: {started:?}");
    let task_id = cell(&started, 0, "task_id")
        .unwrap_or_else(|| panic!("{sql} returned no task_id: {started:?}"))
        .to_string();
    let status = task_outcome(admin, &task_id).await;
    assert_eq!(
        status.0, "finished",
        "task {task_id} ({sql}) ended {}: {}",
        status.0, status.1
    );
    task_id
}

/// Waits until schema-sync task `task_id` has ended; its status and error.
async fn task_outcome(admin: &tokio_postgres::Client, task_id: &str) -> (String, String) {
    integration::eventually(
        Duration::from_secs(180),
        "the schema sync task",
        || async move {
            let tasks = run_simple(admin, "SHOW TASKS").await.ok()?;
            let row = (0..tasks.rows.len()).find(|r| cell(&tasks, *r, "id") == Some(task_id))?;
            assert_eq!(cell(&tasks, row, "type"), Some("schema_sync"), "{tasks:?}");
            let status = cell(&tasks, row, "status")?.to_string();
            let error = cell(&tasks, row, "error").unwrap_or("").to_string();
            (status != "running").then_some((status, error))
        },
    )
    .await
}

/// The `SHOW SCHEMA_SYNC` rows of one task.
async fn schema_sync_rows(admin: &tokio_postgres::Client, task_id: &str) -> QueryResult {
    let all = run_simple(admin, "SHOW SCHEMA_SYNC")
        .await
        .unwrap_or_else(|e| panic!("SHOW SCHEMA_SYNC: {e}"));
    assert_eq!(
        all.columns,
        [
            "task_id",
            "shard",
            "phase",
            "kind",
            "object",
            "state",
            "started_at",
            "elapsed",
            "elapsed_ms",
            "error",
            "sql"
        ]
    );
    let task_column = 0;
    QueryResult {
        columns: all.columns.clone(),
        rows: all
            .rows
            .iter()
            .filter(|row| row.get(task_column).and_then(|v| v.as_deref()) == Some(task_id))
            .cloned()
            .collect(),
        counts: Vec::new(),
    }
}

/// `SCHEMA_SYNC pre|post` in the admin database runs as a task; `SHOW SCHEMA_SYNC` lists each
/// statement on each shard; the shards end up as with the CLI; a re-run finds everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_database_runs_schema_sync_as_a_task() {
    let mut setup = SchemaSyncSetup::start();
    let source = setup.source_dump();
    let admin = setup.start_pgdog().admin().await;

    let pre = admin_schema_sync(&admin, "pre").await;
    let rows = schema_sync_rows(&admin, &pre).await;
    assert!(
        !rows.rows.is_empty(),
        "SHOW SCHEMA_SYNC has no rows for task {pre}"
    );
    let mut shards = BTreeSet::new();
    for r in 0..rows.rows.len() {
        let shard = cell(&rows, r, "shard").unwrap_or("").to_string();
        shards.insert(shard);
        assert_eq!(cell(&rows, r, "phase"), Some("pre"), "{:?}", rows.rows[r]);
        assert!(
            matches!(cell(&rows, r, "state"), Some("done" | "exists")),
            "a first run's statements are done (or found): {:?}",
            rows.rows[r]
        );
        assert!(
            cell(&rows, r, "sql").is_some_and(|s| !s.trim().is_empty()),
            "no SQL: {:?}",
            rows.rows[r]
        );
        assert!(
            cell(&rows, r, "object").is_some_and(|s| !s.is_empty()),
            "no object: {:?}",
            rows.rows[r]
        );
        assert!(
            cell(&rows, r, "elapsed_ms").is_some_and(|s| s.parse::<f64>().is_ok()),
            "elapsed_ms: {:?}",
            rows.rows[r]
        );
    }
    assert_eq!(
        shards,
        BTreeSet::from(["0".to_string(), "1".to_string()]),
        "rows for both shards"
    );
    for shard in ["0", "1"] {
        assert!(
            (0..rows.rows.len()).any(|r| cell(&rows, r, "shard") == Some(shard)
                && cell(&rows, r, "state") == Some("done")),
            "shard {shard}: nothing done by the first run: {:?}",
            rows.rows
        );
    }
    assert!(
        (0..rows.rows.len())
            .any(|r| cell(&rows, r, "sql")
                .is_some_and(|s| s.contains("CREATE TABLE \"Sales\".orders"))),
        "no CREATE TABLE of \"Sales\".orders in SHOW SCHEMA_SYNC"
    );
    assert_pre_on_all_shards(&setup, &source);

    let post = admin_schema_sync(&admin, "post").await;
    let rows = schema_sync_rows(&admin, &post).await;
    assert!(
        (0..rows.rows.len()).all(|r| cell(&rows, r, "phase") == Some("post")
            && matches!(cell(&rows, r, "state"), Some("done" | "exists"))),
        "post rows: {:?}",
        rows.rows
    );
    assert_full_on_all_shards(&setup, &source);

    let again = admin_schema_sync(&admin, "pre").await;
    let rows = schema_sync_rows(&admin, &again).await;
    assert!(!rows.rows.is_empty(), "no rows for the re-run");
    assert!(
        (0..rows.rows.len()).all(|r| cell(&rows, r, "state") == Some("exists")),
        "a re-run must find everything: {:?}",
        rows.rows
    );
    assert_full_on_all_shards(&setup, &source);
}

/// Without a `schema_admin = true` user neither the CLI nor the admin command does anything,
/// and both say why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_schema_admin_is_a_clear_error() {
    let mut setup = SchemaSyncSetup::start_without_schema_admin();
    let output = setup.schema_sync(&[]);
    assert_ne!(
        output.code,
        0,
        "schema-sync without a schema admin must fail\n{}",
        describe(&output)
    );
    assert!(
        all_output(&output).contains("schema_admin"),
        "the error must mention schema_admin\n{}",
        describe(&output)
    );
    let admin = setup.start_pgdog().admin().await;
    let sql = format!("SCHEMA_SYNC pre {SOURCE} destination {PUBLICATION}");
    match run_simple(&admin, &sql).await {
        Ok(result) => panic!("{sql} must fail without a schema admin, got {result:?}"),
        Err(e) => assert!(
            e.message.contains("schema_admin"),
            "the admin error must mention schema_admin: {e}"
        ),
    }
    for (k, dump) in setup.shard_dumps().iter().enumerate() {
        assert!(
            dump.is_empty(),
            "shard {k} was changed:\n{}",
            dump.key_list()
        );
    }
}

/// The pre-flight report comes first: a moved table without a primary key stops the CLI (also
/// with `--dry-run`) and the admin task before anything is created, with the problem named;
/// `--force` (FORCE) goes on and still prints the problem.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_problems_stop_the_run_unless_forced() {
    let mut setup = SchemaSyncSetup::start();
    setup.psql(
        SOURCE,
        "CREATE TABLE public.audit_log (at timestamptz, line text); \
         ALTER PUBLICATION pub ADD TABLE public.audit_log",
    );
    for args in [&[][..], &["--dry-run"][..]] {
        let output = setup.schema_sync(args);
        assert_eq!(output.code, 1, "{args:?}\n{}", describe(&output));
        assert!(
            output
                .stderr
                .contains("error: \"public\".\"audit_log\" (primary_key)"),
            "{args:?}: the problem must be printed\n{}",
            describe(&output)
        );
        assert!(
            output.stderr.contains("pre-flight check failed") && output.stderr.contains("--force"),
            "{args:?}\n{}",
            describe(&output)
        );
    }
    assert_nothing_created(&setup);

    let admin = setup.start_pgdog().admin().await;
    let sql = format!("SCHEMA_SYNC pre {SOURCE} destination {PUBLICATION}");
    let started = run_simple(&admin, &sql).await.expect("SCHEMA_SYNC starts");
    let task_id = cell(&started, 0, "task_id").expect("task_id").to_string();
    let (status, error) = task_outcome(&admin, &task_id).await;
    assert_eq!(status, "failed", "{error}");
    assert!(
        error.contains("pre-flight check failed") && error.contains("primary_key"),
        "{error}"
    );
    assert_nothing_created(&setup);

    let forced = setup.schema_sync(&["--force"]);
    assert_eq!(forced.code, 0, "{}", describe(&forced));
    assert!(
        forced.stderr.contains("(primary_key)"),
        "{}",
        describe(&forced)
    );
    for k in 0..SHARDS {
        let dump = setup.shard_dump(k);
        assert!(
            dump.has("TABLE", "public", "audit_log"),
            "shard {k} lacks the forced table:\n{}",
            dump.key_list()
        );
    }
}

/// No shard has any object.
fn assert_nothing_created(setup: &SchemaSyncSetup) {
    for (k, dump) in setup.shard_dumps().iter().enumerate() {
        assert!(
            dump.is_empty(),
            "shard {k} was changed:\n{}",
            dump.key_list()
        );
    }
}
