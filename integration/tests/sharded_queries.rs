//! Queries without a sharding key on three shards: pgdog sends them to every shard and merges
//! the answers. Every answer is compared with the same query on an unsharded reference
//! database holding the same 300 rows: row concatenation, ORDER BY over int, text, numeric,
//! float, timestamptz and bool columns (ASC/DESC, NULLS FIRST/LAST), LIMIT/OFFSET, count, sum,
//! min, max, avg, bool_and/bool_or, GROUP BY and DISTINCT, in the simple protocol (text) and
//! the extended protocol (binary results), and the summed row counts of UPDATE and DELETE.
//! Queries pgdog cannot merge must be refused with SQLSTATE 0A000, never answered wrongly.
//!
//! The rows are put on their shards directly (by `satisfies_hash_partition`), so these tests
//! do not depend on INSERT routing.

use integration::raw::{bind, describe, execute, parse, query, sync, tags};
use integration::sharded::{run_extended, sharded_table, Checker, Outcome, ShardedSetup};

const SCHEMA: &str = "
    CREATE TABLE items (
        id bigint PRIMARY KEY,
        grp text,
        qty int,
        price numeric(10, 2),
        score float8,
        created timestamptz,
        note text,
        flag bool
    );
";

/// 300 rows with duplicates in every column but `id`, and NULLs in `price` and `note`.
const ROWS: &str = "
    SELECT i,
           (ARRAY['alpha', 'beta', 'gamma', 'delta', 'epsilon'])[1 + i % 5],
           ((i * 37) % 101)::int,
           CASE WHEN i % 11 = 0 THEN NULL ELSE ((i * 7919) % 4000) / 100.0 END,
           ((i * 13) % 17)::float8 / 3.0,
           timestamptz '2024-01-01 00:00:00+00' + ((i * 7) % 300) * interval '1 hour'
               + (i % 4) * interval '1 microsecond',
           CASE WHEN i % 7 = 0 THEN NULL ELSE 'note ' || (i % 13) END,
           i % 3 = 0
    FROM generate_series(1, 300) i
";

async fn setup() -> ShardedSetup {
    let setup = ShardedSetup::start(3, "", &sharded_table("items", "id", "bigint"));
    setup.schema(SCHEMA).await;
    setup.load("items", "id", "bigint", ROWS).await;
    let counts = setup.counts("items", "").await;
    assert!(
        counts.iter().all(|c| *c > 50),
        "every shard holds rows: {counts:?}"
    );
    setup
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_from_every_shard_are_concatenated_and_sorted() {
    let setup = setup().await;
    setup
        .checker()
        .await
        .assert_all_same(&[
            "SELECT * FROM items",
            "SELECT id, grp FROM items WHERE qty > 50",
            "SELECT * FROM items WHERE false",
            "SELECT * FROM items ORDER BY id",
            "SELECT id, grp FROM items ORDER BY id",
            "SELECT id FROM items ORDER BY id DESC",
            "SELECT id, grp FROM items ORDER BY grp, id",
            "SELECT id, grp FROM items ORDER BY grp DESC, id DESC",
            "SELECT id, qty FROM items ORDER BY qty, id",
            "SELECT id, qty FROM items ORDER BY qty DESC, id",
            "SELECT id, price FROM items ORDER BY price, id",
            "SELECT id, price FROM items ORDER BY price DESC, id",
            "SELECT id, price FROM items ORDER BY price NULLS FIRST, id",
            "SELECT id, price FROM items ORDER BY price DESC NULLS LAST, id",
            "SELECT id, score FROM items ORDER BY score, id",
            "SELECT id, score FROM items ORDER BY score DESC, id",
            "SELECT id, created FROM items ORDER BY created, id",
            "SELECT id, created FROM items ORDER BY created DESC, id",
            "SELECT id, note FROM items ORDER BY note, id",
            "SELECT id, note FROM items ORDER BY note DESC, id",
            "SELECT id, note FROM items ORDER BY note DESC NULLS LAST, id",
            "SELECT id, note FROM items ORDER BY note NULLS FIRST, id DESC",
            "SELECT id, flag FROM items ORDER BY flag, id",
            "SELECT id, flag FROM items ORDER BY flag DESC, id DESC",
            "SELECT id, grp, qty FROM items ORDER BY 2, 3 DESC, 1",
            "SELECT id AS ident, grp AS g FROM items ORDER BY g, ident",
            "SELECT grp, qty FROM items ORDER BY grp, qty",
            "SELECT qty % 10 AS m, id FROM items ORDER BY m, id",
            "SELECT price, score, created FROM items ORDER BY price DESC NULLS LAST, score, created",
        ])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_and_offset_apply_to_the_merged_rows() {
    let setup = setup().await;
    let checker = setup.checker().await;
    checker
        .assert_all_same(&[
            "SELECT id FROM items ORDER BY id LIMIT 10",
            "SELECT id FROM items ORDER BY id LIMIT 10 OFFSET 25",
            "SELECT id, price FROM items ORDER BY price DESC NULLS LAST, id LIMIT 7 OFFSET 3",
            "SELECT id FROM items ORDER BY id DESC OFFSET 290",
            "SELECT id FROM items ORDER BY id LIMIT 0",
            "SELECT id FROM items ORDER BY id OFFSET 1000",
            "SELECT id FROM items ORDER BY id LIMIT ALL",
            "SELECT id, created FROM items ORDER BY created DESC, id FETCH FIRST 5 ROWS ONLY",
            "SELECT id, note FROM items ORDER BY note NULLS FIRST, id LIMIT 50 OFFSET 20",
            "SELECT id, grp FROM items ORDER BY grp, id OFFSET 100 LIMIT 3",
        ])
        .await;

    // Parameters for LIMIT and OFFSET (binary int8).
    let rows = checker
        .pgdog
        .query(
            "SELECT id FROM items ORDER BY id LIMIT $1 OFFSET $2",
            &[&5i64, &10i64],
        )
        .await
        .unwrap_or_else(|e| panic!("LIMIT $1 OFFSET $2: {e:?}"));
    let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, vec![11, 12, 13, 14, 15], "LIMIT $1 OFFSET $2");

    // LIMIT without ORDER BY: that many rows, each one of the table's.
    let rows = checker
        .pgdog
        .query("SELECT id, qty FROM items LIMIT 10", &[])
        .await
        .unwrap_or_else(|e| panic!("LIMIT without ORDER BY: {e:?}"));
    assert_eq!(rows.len(), 10, "LIMIT 10 without ORDER BY");
    for row in &rows {
        let (id, qty): (i64, i32) = (row.get(0), row.get(1));
        assert_eq!(qty as i64, (id * 37) % 101, "row {id} is a real row");
    }
    let mut ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    ids.dedup();
    assert_eq!(ids.len(), 10, "no row twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregates_are_combined_across_shards() {
    let setup = setup().await;
    setup
        .checker()
        .await
        .assert_all_same(&[
            "SELECT count(*) FROM items",
            "SELECT count(*) AS n FROM items WHERE qty > 50",
            "SELECT count(note) FROM items",
            "SELECT count(price), count(*) FROM items",
            "SELECT count(1) FROM items",
            "SELECT sum(qty) FROM items",
            "SELECT sum(price) FROM items",
            "SELECT sum(id) FROM items",
            "SELECT sum(score) AS approx_sum FROM items",
            "SELECT min(qty), max(qty) FROM items",
            "SELECT min(price), max(price) FROM items",
            "SELECT min(created), max(created) FROM items",
            "SELECT min(grp), max(note) FROM items",
            "SELECT min(score), max(score) FROM items",
            "SELECT min(id), max(id) FROM items WHERE note IS NULL",
            "SELECT avg(qty) FROM items",
            "SELECT avg(price) AS avg_price FROM items",
            "SELECT avg(score) AS avg_score FROM items",
            "SELECT avg(id) FROM items",
            "SELECT bool_and(flag), bool_or(flag) FROM items",
            "SELECT bool_and(qty >= 0), every(qty < 1000) FROM items",
            "SELECT count(*), sum(qty), min(id), max(id), avg(qty) FROM items",
            "SELECT max(id), count(*), avg(price) AS avg_p, min(note) FROM items WHERE flag",
            // No rows at all, and no rows on some shards.
            "SELECT count(*), sum(qty), min(qty), max(qty), avg(qty) FROM items WHERE qty < 0",
            "SELECT sum(qty) FROM items WHERE id > 1000000",
            "SELECT count(*), max(price) FROM items WHERE id IN (1, 2, 3, 4)",
            "SELECT count(*), sum(qty) FROM items WHERE id = 17",
        ])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_by_and_distinct_are_merged() {
    let setup = setup().await;
    setup
        .checker()
        .await
        .assert_all_same(&[
            "SELECT grp, count(*) FROM items GROUP BY grp",
            "SELECT grp, count(*), sum(qty), min(price), max(price), avg(price) AS avg_price FROM items GROUP BY grp ORDER BY grp",
            "SELECT grp, flag, count(*), sum(qty) FROM items GROUP BY grp, flag",
            "SELECT flag, grp, max(created) FROM items GROUP BY 1, 2 ORDER BY 1, 2",
            "SELECT note, count(*) FROM items GROUP BY note",
            "SELECT note, count(*) FROM items GROUP BY note ORDER BY note NULLS FIRST",
            "SELECT grp, avg(qty) FROM items GROUP BY grp ORDER BY grp DESC",
            "SELECT grp FROM items GROUP BY grp",
            "SELECT count(*), grp FROM items GROUP BY grp",
            "SELECT grp, count(*) FROM items WHERE qty > 200 GROUP BY grp",
            "SELECT grp, sum(score) AS approx FROM items GROUP BY grp",
            "SELECT grp, bool_or(flag), min(note) FROM items GROUP BY grp ORDER BY grp",
            "SELECT grp, count(*) FROM items GROUP BY grp ORDER BY grp LIMIT 2 OFFSET 1",
            "SELECT price, count(*) FROM items GROUP BY price ORDER BY price DESC NULLS LAST LIMIT 10",
            "SELECT DISTINCT grp FROM items",
            "SELECT DISTINCT grp FROM items ORDER BY grp",
            "SELECT DISTINCT grp, flag FROM items ORDER BY grp DESC, flag",
            "SELECT DISTINCT note FROM items",
            "SELECT DISTINCT qty % 5 AS m FROM items ORDER BY m",
            "SELECT DISTINCT grp FROM items ORDER BY grp LIMIT 3",
            "SELECT DISTINCT price FROM items ORDER BY price NULLS FIRST LIMIT 5",
        ])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_results_of_the_extended_protocol_are_merged() {
    let setup = setup().await;
    let mut pgdog = setup.raw().await;
    let mut reference = setup.raw_direct("reference").await;
    let queries: &[(&str, &[&str])] = &[
        ("SELECT id, qty, price, score, created, note, flag FROM items ORDER BY price DESC NULLS LAST, id LIMIT 20", &[]),
        ("SELECT id, created FROM items ORDER BY created, id", &[]),
        ("SELECT id, score FROM items ORDER BY score DESC, id", &[]),
        ("SELECT grp, count(*), sum(qty), min(price), max(created), sum(price) FROM items GROUP BY grp ORDER BY grp", &[]),
        ("SELECT count(*), sum(id), min(score), max(score), bool_or(flag) FROM items", &[]),
        ("SELECT avg(qty), avg(price), avg(id) FROM items", &[]),
        ("SELECT grp, avg(qty) FROM items GROUP BY grp ORDER BY grp", &[]),
        ("SELECT DISTINCT grp FROM items ORDER BY grp", &[]),
        ("SELECT id FROM items WHERE qty > $1 ORDER BY id LIMIT $2", &["30", "15"]),
        ("SELECT count(*), max(note) FROM items WHERE qty < $1", &["10"]),
    ];
    let mut failures = Vec::new();
    for (sql, params) in queries {
        let params: Vec<Option<&[u8]>> = params.iter().map(|p| Some(p.as_bytes())).collect();
        let want = run_extended(&mut reference, sql, &params, &[], &[1]).await;
        assert_eq!(want.error, None, "the reference rejects {sql}");
        let got = run_extended(&mut pgdog, sql, &params, &[], &[1]).await;
        if got != want {
            failures.push(format!(
                "{sql}\n  pgdog:     {got:?}\n  reference: {want:?}"
            ));
        }
    }
    // Typed rows through tokio-postgres (binary results).
    let client = setup.connect().await;
    let sql = "SELECT grp, count(*), sum(qty), max(id) FROM items GROUP BY grp ORDER BY grp DESC";
    let typed = |rows: Vec<tokio_postgres::Row>| -> Vec<(String, i64, i64, i64)> {
        rows.iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect()
    };
    let want = typed(setup.reference().await.query(sql, &[]).await.unwrap());
    match client.query(sql, &[]).await {
        Ok(rows) if typed(rows.clone()) == want => {}
        Ok(rows) => failures.push(format!(
            "{sql}\n  pgdog: {:?}\n  reference: {want:?}",
            typed(rows)
        )),
        Err(e) => failures.push(format!("{sql}\n  pgdog failed: {e:?}")),
    }
    assert!(
        failures.is_empty(),
        "{} binary answers differ:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_and_deletes_without_the_key_report_the_total_row_count() {
    let setup = setup().await;
    let checker = setup.checker().await;
    checker
        .assert_all_same(&[
            "UPDATE items SET qty = qty + 1 WHERE grp = 'alpha'",
            "UPDATE items SET note = 'changed' WHERE flag",
            "UPDATE items SET price = NULL WHERE qty > 1000",
            "DELETE FROM items WHERE qty < 10",
            "UPDATE items SET score = score * 2 WHERE grp IN ('beta', 'gamma') RETURNING id, score",
            "DELETE FROM items WHERE note IS NULL RETURNING id, grp",
            "SELECT * FROM items",
            "SELECT count(*) FROM items",
        ])
        .await;
    // The driver's row counts too (extended protocol).
    for sql in [
        "UPDATE items SET flag = NOT flag WHERE qty % 2 = 0",
        "DELETE FROM items WHERE grp = 'delta'",
    ] {
        let want = checker.reference.execute(sql, &[]).await.unwrap();
        let got = checker
            .pgdog
            .execute(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        assert_eq!(got, want, "row count of {sql}");
    }
    checker.assert_same("SELECT * FROM items").await;
    setup.assert_placement("items", "id", "bigint").await;
}

/// Runs each query with [`Checker::same_or_refused`], printing which were refused, and
/// panics listing the wrong answers and the errors other than 0A000.
async fn right_or_refused(checker: &Checker, queries: &[&str]) {
    let mut failures = Vec::new();
    for sql in queries {
        match checker.same_or_refused(sql).await {
            Ok(Outcome::Same) => eprintln!("answered right: {sql}"),
            Ok(Outcome::Refused) => eprintln!("refused with 0A000: {sql}"),
            Err(e) => failures.push(e),
        }
        // The connection is usable after a refusal.
        if let Err(e) = checker.same("SELECT 1").await {
            failures.push(format!("after {sql}: {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} queries answered wrongly (or failed otherwise than with 0A000):\n\n{}",
        failures.len(),
        queries.len(),
        failures.join("\n\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmergeable_queries_are_refused_not_answered_wrongly() {
    let setup = setup().await;
    let checker = setup.checker().await;
    right_or_refused(
        &checker,
        &[
            "SELECT sum(qty) + 1 FROM items",
            "SELECT count(DISTINCT grp) FROM items",
            "SELECT grp, count(*) FROM items GROUP BY grp HAVING count(*) > 59",
            "SELECT id, row_number() OVER (ORDER BY id) FROM items",
            "SELECT grp, sum(qty) OVER (PARTITION BY grp) FROM items",
            "SELECT string_agg(grp, ',' ORDER BY id) FROM items",
            "SELECT array_agg(id ORDER BY id) FROM items",
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY qty) FROM items",
            "SELECT stddev(qty) FROM items",
            "SELECT max(qty) - min(qty) FROM items",
            "SELECT count(*) * 2 FROM items",
            "SELECT avg(qty)::int FROM items",
            "SELECT count(*) FROM items GROUP BY grp",
            "SELECT grp, count(*) FROM items GROUP BY grp, flag",
            "SELECT DISTINCT ON (grp) grp, id FROM items ORDER BY grp, id",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subqueries_joins_and_unions_are_right_or_refused() {
    let setup = setup().await;
    let checker = setup.checker().await;
    right_or_refused(
        &checker,
        &[
            "SELECT id FROM items ORDER BY qty, id",
            "SELECT id, qty FROM items ORDER BY qty * 2, id",
            "SELECT grp, count(*) FROM items GROUP BY grp ORDER BY count(*) DESC, grp",
            "SELECT grp, count(*) AS n FROM items GROUP BY grp ORDER BY n DESC, grp LIMIT 2",
            "SELECT date_trunc('day', created) AS day, count(*) FROM items GROUP BY 1 ORDER BY 1",
            "SELECT count(*) FILTER (WHERE flag) FROM items",
            "SELECT count(*) FROM (SELECT DISTINCT grp FROM items) s",
            "SELECT avg(n) FROM (SELECT grp, count(*) AS n FROM items GROUP BY grp) s",
            "SELECT max(c) FROM (SELECT count(*) AS c FROM items) s",
            "WITH t AS (SELECT grp, count(*) AS c FROM items GROUP BY grp) SELECT * FROM t ORDER BY grp",
            "SELECT count(*) FROM items a JOIN items b ON a.grp = b.grp",
            "SELECT count(*) FROM items WHERE qty > (SELECT avg(qty) FROM items)",
            "SELECT id FROM items WHERE id IN (SELECT id FROM items WHERE qty = 5) ORDER BY id",
            "SELECT grp FROM items UNION SELECT grp FROM items",
            "SELECT min(id) FROM items UNION ALL SELECT max(id) FROM items",
            "SELECT (SELECT count(*) FROM items)",
            "SELECT EXISTS (SELECT 1 FROM items WHERE qty = 5)",
            "SELECT 1",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_statements_in_one_query_are_each_merged() {
    let setup = setup().await;
    setup
        .checker()
        .await
        .assert_all_same(&[
            "SELECT count(*) FROM items; SELECT max(id) FROM items",
            "SELECT grp, count(*) FROM items GROUP BY grp; SELECT id FROM items WHERE id = 5",
            "SELECT id FROM items ORDER BY id LIMIT 3; SELECT avg(qty) FROM items; SELECT 1",
            "UPDATE items SET qty = qty + 1 WHERE flag; SELECT sum(qty) FROM items",
        ])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_results_are_merged_in_order() {
    let setup = ShardedSetup::start(3, "", &sharded_table("big", "id", "bigint"));
    setup
        .schema("CREATE TABLE big (id bigint PRIMARY KEY, k int, payload text)")
        .await;
    setup
        .load(
            "big",
            "id",
            "bigint",
            "SELECT i, (i * 7919) % 1000, repeat(md5(i::text), 3) FROM generate_series(1, 30000) i",
        )
        .await;
    let checker = setup.checker().await;
    checker
        .assert_all_same(&[
            "SELECT id, payload FROM big ORDER BY id",
            "SELECT k, id FROM big ORDER BY k DESC, id",
            "SELECT k, count(*), sum(id), avg(id) AS avg_id FROM big GROUP BY k ORDER BY k",
            "SELECT DISTINCT k FROM big ORDER BY k",
            "SELECT id, payload FROM big ORDER BY payload, id LIMIT 100 OFFSET 20000",
        ])
        .await;
    // The extended protocol, binary results.
    let rows = checker
        .pgdog
        .query("SELECT id FROM big ORDER BY id DESC", &[])
        .await
        .unwrap_or_else(|e| panic!("30000 rows in binary: {e:?}"));
    let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    let want: Vec<i64> = (1..=30000).rev().collect();
    assert!(
        ids == want,
        "30000 ids in descending order ({} rows)",
        ids.len()
    );
}

/// JDBC's fetch size: Execute with a row limit, then Execute again on the suspended portal.
/// pgdog may refuse a cross-shard query run this way (0A000), but its batches must not be
/// wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portals_read_in_batches_are_right_or_refused() {
    let setup = setup().await;
    let sql = "SELECT id, grp FROM items ORDER BY grp, id";
    let mut batches = Vec::new();
    for port_db in [None, Some("reference")] {
        let mut raw = match port_db {
            Some(db) => setup.raw_direct(db).await,
            None => setup.raw().await,
        };
        raw.send(&[query("BEGIN")]).await;
        raw.until(b'Z').await;
        raw.send(&[
            parse("", sql),
            bind("cursor", "", &[], &[]),
            describe(b'P', "cursor"),
            execute("cursor", 100),
            sync(),
        ])
        .await;
        let mut replies = raw.until(b'Z').await;
        let mut last = replies.clone();
        let mut rounds = 0;
        while last.iter().any(|(t, _)| *t == b's') && rounds < 10 {
            raw.send(&[execute("cursor", 100), sync()]).await;
            last = raw.until(b'Z').await;
            replies.extend(last.iter().cloned());
            rounds += 1;
        }
        raw.send(&[query("COMMIT")]).await;
        raw.until(b'Z').await;
        batches.push(replies);
    }
    let (got, want) = (&batches[0], &batches[1]);
    let error = got
        .iter()
        .find(|(t, _)| *t == b'E')
        .map(|(_, body)| integration::raw::error_code(body));
    match error.as_deref() {
        Some("0A000") => eprintln!("refused with 0A000: {sql} in batches of 100"),
        Some(other) => panic!("{sql} in batches: error {other}"),
        None => {
            assert_eq!(tags(got), tags(want), "messages of {sql} in batches of 100");
            let rows = |replies: &[integration::raw::Message]| -> Vec<Vec<Option<Vec<u8>>>> {
                replies
                    .iter()
                    .filter(|(t, _)| *t == b'D')
                    .map(|(_, body)| integration::raw::values(body))
                    .collect()
            };
            assert!(rows(got) == rows(want), "rows of {sql} in batches of 100");
        }
    }
}

/// Runs `sql` through pgdog, cancels it after 700 ms and checks that it ends with 57014 and
/// that no shard still runs it; `Err` says what went wrong.
async fn cancel_case(setup: &ShardedSetup, sql: &'static str, marker: &str) -> Result<(), String> {
    let client = setup.connect().await;
    let token = client.cancel_token();
    let slow = tokio::spawn(async move { client.simple_query(sql).await.map(|_| ()) });
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    token
        .cancel_query(tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("{sql}: cancel request failed: {e:?}"))?;
    let result = match tokio::time::timeout(std::time::Duration::from_secs(5), slow).await {
        Ok(joined) => joined.map_err(|e| format!("{sql}: {e}"))?,
        Err(_) => return Err(format!("{sql}: still running 5 s after the cancel request")),
    };
    match result {
        Ok(()) => return Err(format!("{sql}: succeeded despite the cancel request")),
        Err(e) if integration::sqlstate(&e).as_deref() != Some("57014") => {
            return Err(format!("{sql}: failed with {e:?}, expected 57014"))
        }
        Err(_) => {}
    }
    let direct = setup.direct("postgres").await;
    let busy: i64 = direct
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE query LIKE '%' || $1 || '%' AND state = 'active' AND pid <> pg_backend_pid()",
            &[&marker],
        )
        .await
        .map_err(|e| format!("pg_stat_activity: {e:?}"))?
        .get(0);
    match busy {
        0 => Ok(()),
        n => Err(format!("{sql}: {n} shard(s) still run it after the cancel")),
    }
}

/// A cancel request stops a query on one shard and a query running on every shard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_requests_stop_sharded_queries() {
    let setup = setup().await;
    let mut failures = Vec::new();
    for (sql, marker) in [
        ("/* pgdog_shard: 1 */ SELECT pg_sleep(20)", "pg_sleep(20)"),
        (
            "SELECT count(*) FROM items WHERE id = 7 AND pg_sleep(20) IS NOT NULL",
            "pg_sleep(20)",
        ),
        (
            "SELECT count(*) FROM items WHERE pg_sleep(0.1) IS NOT NULL",
            "pg_sleep(0.1)",
        ),
    ] {
        if let Err(e) = cancel_case(&setup, sql, marker).await {
            failures.push(e);
        }
        // Let a query that was not cancelled finish before the next case.
        let direct = setup.direct("postgres").await;
        let _ = direct
            .execute(
                "SELECT pg_cancel_backend(pid) FROM pg_stat_activity \
                 WHERE query LIKE '%pg_sleep%' AND pid <> pg_backend_pid()",
                &[],
            )
            .await;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
