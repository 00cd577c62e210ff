//! Transactions over several shards, with and without `two_phase_commit`: they commit on every
//! shard together, ROLLBACK undoes every shard's writes, an error on one shard fails the whole
//! transaction (25P02 afterwards, COMMIT answers ROLLBACK) and nothing is committed anywhere.
//! With two-phase commit no transaction is left in `pg_prepared_xacts`, and a failure at
//! PREPARE time (a deferred constraint) rolls the other shards back.

use integration::raw::{query, Raw};
use integration::sharded::{run_simple, sharded_table, ShardedSetup};
use tokio_postgres::Client;

const SCHEMA: &str = "
    CREATE TABLE users (id bigint PRIMARY KEY, name text, score int);
    CREATE TABLE pairs (id bigint, code int UNIQUE DEFERRABLE INITIALLY DEFERRED);
";

/// Two shards; `two_phase_commit` as asked.
async fn setup(two_phase: bool) -> ShardedSetup {
    let general = format!("two_phase_commit = {two_phase}");
    let sharding = [
        sharded_table("users", "id", "bigint"),
        sharded_table("pairs", "id", "bigint"),
    ]
    .concat();
    let setup = ShardedSetup::start(2, &general, &sharding);
    setup.schema(SCHEMA).await;
    setup
}

/// Keys: four on shard 0, four on shard 1.
async fn keys(setup: &ShardedSetup) -> (Vec<i64>, Vec<i64>) {
    (
        setup.bigint_keys_on(0, 1, 4).await,
        setup.bigint_keys_on(1, 1, 4).await,
    )
}

/// `sql` through pgdog; panics on an error.
async fn ok(client: &Client, sql: &str) {
    if let Err(e) = run_simple(client, sql).await {
        panic!("{sql}: {e}");
    }
}

/// The SQLSTATE of `sql` through pgdog, `None` when it succeeds.
async fn state(client: &Client, sql: &str) -> Option<String> {
    run_simple(client, sql).await.err().map(|e| e.code)
}

/// Sends a simple query on `raw` and returns the CommandComplete tags and the SQLSTATE of the
/// error, if any.
async fn raw_tags(raw: &mut Raw, sql: &str) -> (Vec<String>, Option<String>) {
    raw.send(&[query(sql)]).await;
    let replies = raw.until(b'Z').await;
    let mut out = Vec::new();
    let mut error = None;
    for (tag, body) in &replies {
        match tag {
            b'C' => out
                .push(String::from_utf8_lossy(&body[..body.len().saturating_sub(1)]).into_owned()),
            b'E' => error = Some(integration::raw::error_code(body)),
            _ => {}
        }
    }
    (out, error)
}

/// `id` of every row of `table` on each shard, read directly.
async fn ids(setup: &ShardedSetup, table: &str) -> Vec<Vec<i64>> {
    setup
        .on_each_shard(&format!("SELECT id FROM {table} ORDER BY id"))
        .await
        .into_iter()
        .map(|rows| {
            rows.into_iter()
                .map(|r| r[0].as_deref().unwrap().parse().unwrap())
                .collect()
        })
        .collect()
}

async fn commits_together(two_phase: bool) {
    let setup = setup(two_phase).await;
    let (zero, one) = keys(&setup).await;
    let pgdog = setup.connect().await;
    let direct: Vec<Client> = vec![setup.shard(0).await, setup.shard(1).await];

    ok(&pgdog, "BEGIN").await;
    ok(
        &pgdog,
        &format!("INSERT INTO users VALUES ({}, 'a', 1)", zero[0]),
    )
    .await;
    ok(
        &pgdog,
        &format!("INSERT INTO users VALUES ({}, 'b', 1)", one[0]),
    )
    .await;
    let count = run_simple(&pgdog, "SELECT count(*) FROM users")
        .await
        .unwrap();
    assert_eq!(
        count.rows,
        vec![vec![Some("2".to_string())]],
        "the transaction sees its own writes on both shards"
    );
    for (k, client) in direct.iter().enumerate() {
        let n: i64 = client
            .query_one("SELECT count(*) FROM users", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "shard {k} shows uncommitted rows");
    }
    ok(&pgdog, "COMMIT").await;
    assert_eq!(
        ids(&setup, "users").await,
        vec![vec![zero[0]], vec![one[0]]]
    );
    assert_eq!(setup.prepared_transactions().await, Vec::<String>::new());

    // The extended protocol, through the driver's transaction API.
    let mut pgdog = setup.connect().await;
    let tx = pgdog.transaction().await.unwrap();
    for id in [zero[1], one[1], one[2]] {
        tx.execute("INSERT INTO users VALUES ($1, 'x', 2)", &[&id])
            .await
            .unwrap_or_else(|e| panic!("INSERT {id} in a transaction: {e:?}"));
    }
    let n = tx
        .execute("UPDATE users SET score = score + 10", &[])
        .await
        .unwrap();
    assert_eq!(n, 5, "UPDATE of every shard in the transaction");
    tx.commit()
        .await
        .unwrap_or_else(|e| panic!("COMMIT: {e:?}"));
    let mut want = vec![vec![zero[0], zero[1]], vec![one[0], one[1], one[2]]];
    want.iter_mut().for_each(|v| v.sort());
    assert_eq!(ids(&setup, "users").await, want);
    let scores = setup.counts("users", "score >= 11").await;
    assert_eq!(scores, vec![2, 3]);
    assert_eq!(setup.prepared_transactions().await, Vec::<String>::new());

    // Many short transactions, single- and multi-shard, in a row.
    for i in 0..20i64 {
        let tx = pgdog.transaction().await.unwrap();
        tx.execute("INSERT INTO users VALUES ($1, 'loop', 0)", &[&(10_000 + i)])
            .await
            .unwrap();
        if i % 2 == 0 {
            tx.execute("INSERT INTO users VALUES ($1, 'loop', 0)", &[&(20_000 + i)])
                .await
                .unwrap();
        }
        tx.commit()
            .await
            .unwrap_or_else(|e| panic!("COMMIT {i}: {e:?}"));
    }
    let n: i64 = setup.counts("users", "name = 'loop'").await.iter().sum();
    assert_eq!(n, 30);
    setup.assert_placement("users", "id", "bigint").await;
    assert_eq!(setup.prepared_transactions().await, Vec::<String>::new());
}

async fn rollback_undoes_every_shard(two_phase: bool) {
    let setup = setup(two_phase).await;
    let (zero, one) = keys(&setup).await;
    let pgdog = setup.connect().await;
    for id in [zero[0], one[0]] {
        ok(
            &pgdog,
            &format!("INSERT INTO users VALUES ({id}, 'kept', 1)"),
        )
        .await;
    }
    let before = setup
        .on_each_shard("SELECT id, name, score FROM users ORDER BY id")
        .await;

    ok(&pgdog, "BEGIN").await;
    ok(
        &pgdog,
        &format!("INSERT INTO users VALUES ({}, 'new', 1)", zero[1]),
    )
    .await;
    ok(
        &pgdog,
        &format!("INSERT INTO users VALUES ({}, 'new', 1)", one[1]),
    )
    .await;
    ok(&pgdog, "UPDATE users SET score = 99").await;
    ok(&pgdog, &format!("DELETE FROM users WHERE id = {}", one[0])).await;
    ok(&pgdog, "ROLLBACK").await;
    assert_eq!(
        setup
            .on_each_shard("SELECT id, name, score FROM users ORDER BY id")
            .await,
        before
    );

    let mut pgdog = setup.connect().await;
    let tx = pgdog.transaction().await.unwrap();
    for id in [zero[2], one[2]] {
        tx.execute("INSERT INTO users VALUES ($1, 'new', 1)", &[&id])
            .await
            .unwrap();
    }
    tx.execute("DELETE FROM users WHERE id = $1", &[&zero[0]])
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(
        setup
            .on_each_shard("SELECT id, name, score FROM users ORDER BY id")
            .await,
        before
    );
    assert_eq!(setup.prepared_transactions().await, Vec::<String>::new());
}

async fn error_on_one_shard_fails_everything(two_phase: bool) {
    let setup = setup(two_phase).await;
    let (zero, one) = keys(&setup).await;
    let pgdog = setup.connect().await;
    ok(
        &pgdog,
        &format!("INSERT INTO users VALUES ({}, 'existing', 1)", one[0]),
    )
    .await;

    let mut raw = setup.raw().await;
    for sql in [
        "BEGIN".to_string(),
        format!("INSERT INTO users VALUES ({}, 'new', 1)", zero[0]),
        format!("INSERT INTO users VALUES ({}, 'new', 1)", one[1]),
    ] {
        let (_, error) = raw_tags(&mut raw, &sql).await;
        assert_eq!(error, None, "{sql}");
    }
    let (_, error) = raw_tags(
        &mut raw,
        &format!("INSERT INTO users VALUES ({}, 'dup', 1)", one[0]),
    )
    .await;
    assert_eq!(error.as_deref(), Some("23505"), "duplicate key on shard 1");
    // Every check below is collected, so one report lists all that went wrong.
    let mut failures: Vec<String> = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            failures.push(what);
        }
    };
    for sql in [
        "SELECT 1".to_string(),
        format!("INSERT INTO users VALUES ({}, 'later', 1)", zero[1]),
        "SELECT count(*) FROM users".to_string(),
    ] {
        let (tags, error) = raw_tags(&mut raw, &sql).await;
        check(
            error.as_deref() == Some("25P02"),
            format!("{sql} after the error: tags {tags:?}, error {error:?}, expected 25P02"),
        );
    }
    let (tags, error) = raw_tags(&mut raw, "COMMIT").await;
    check(
        tags == ["ROLLBACK"] && error.is_none(),
        format!(
            "COMMIT of a failed transaction: tags {tags:?}, error {error:?}, expected ROLLBACK"
        ),
    );
    let rows = ids(&setup, "users").await;
    check(
        rows == vec![vec![], vec![one[0]]],
        format!(
            "rows after the failed transaction: {rows:?}, expected only {}",
            one[0]
        ),
    );
    // The connection works normally afterwards.
    let (tags, error) = raw_tags(&mut raw, "SELECT count(*) FROM users").await;
    check(
        tags == ["SELECT 1"] && error.is_none(),
        format!("the next query: tags {tags:?}, error {error:?}"),
    );

    // The same with the error on shard 0 after writes on shard 1, extended protocol.
    ok(
        &pgdog,
        &format!("INSERT INTO users VALUES ({}, 'existing', 1)", zero[2]),
    )
    .await;
    let mut client = setup.connect().await;
    let tx = client.transaction().await.unwrap();
    tx.execute("INSERT INTO users VALUES ($1, 'new', 1)", &[&one[2]])
        .await
        .unwrap();
    tx.execute("UPDATE users SET score = 5", &[]).await.unwrap();
    let result = tx
        .execute("INSERT INTO users VALUES ($1, 'dup', 1)", &[&zero[2]])
        .await;
    let code = result.as_ref().err().and_then(integration::sqlstate);
    check(
        code.as_deref() == Some("23505"),
        format!("duplicate key on shard 0 (extended): {result:?}"),
    );
    for sql in ["SELECT 1", "SELECT count(*) FROM users"] {
        let result = tx.execute(sql, &[]).await;
        let code = result.as_ref().err().and_then(integration::sqlstate);
        check(
            code.as_deref() == Some("25P02"),
            format!("{sql} after the error (extended): {result:?}, expected 25P02"),
        );
    }
    let _ = tx.commit().await;
    let rows = ids(&setup, "users").await;
    check(
        rows == vec![vec![zero[2]], vec![one[0]]],
        format!(
            "rows after the failed extended transaction: {rows:?}, expected [[{}], [{}]]",
            zero[2], one[0]
        ),
    );
    let counts = setup.counts("users", "score = 5").await;
    check(
        counts == vec![0, 0],
        format!("rows updated by the failed transaction: {counts:?}"),
    );
    let prepared = setup.prepared_transactions().await;
    check(
        prepared.is_empty(),
        format!("prepared transactions left: {prepared:?}"),
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

async fn one_statement_for_several_shards_is_atomic(two_phase: bool) {
    let setup = setup(two_phase).await;
    let (zero, one) = keys(&setup).await;
    let pgdog = setup.connect().await;
    for id in zero.iter().chain(&one) {
        ok(
            &pgdog,
            &format!("INSERT INTO users VALUES ({id}, 'row', 1)"),
        )
        .await;
    }
    // Division by zero on shard 1 only: shard 0's part must not stay.
    let sql = format!("UPDATE users SET score = 100 / (id - {})", one[3]);
    assert_eq!(state(&pgdog, &sql).await.as_deref(), Some("22012"), "{sql}");
    assert_eq!(
        setup.counts("users", "score <> 1").await,
        vec![0, 0],
        "after the failed {sql}"
    );
    let sql = format!("DELETE FROM users WHERE 1 / (id - {}) > -1000000", zero[3]);
    assert_eq!(state(&pgdog, &sql).await.as_deref(), Some("22012"), "{sql}");
    assert_eq!(
        setup.counts("users", "").await,
        vec![4, 4],
        "after the failed {sql}"
    );
    // A multi-row INSERT whose shard 0 row is a duplicate: the shard 1 row is not kept.
    let sql = format!(
        "INSERT INTO users VALUES ({}, 'new', 1), ({}, 'dup', 1)",
        one[0] + 1_000_000_000,
        zero[0]
    );
    assert_eq!(state(&pgdog, &sql).await.as_deref(), Some("23505"), "{sql}");
    assert_eq!(
        setup.counts("users", "").await,
        vec![4, 4],
        "after the failed {sql}"
    );
    // Several statements in one Query run in one implicit transaction: a failure in the last
    // one undoes the first ones, on every shard.
    let sql = format!(
        "INSERT INTO users VALUES ({}, 'multi', 1); UPDATE users SET score = 7; \
         INSERT INTO users VALUES ({}, 'dup', 1)",
        one[0] + 2_000_000_000,
        one[1]
    );
    assert_eq!(state(&pgdog, &sql).await.as_deref(), Some("23505"), "{sql}");
    assert_eq!(
        setup.counts("users", "").await,
        vec![4, 4],
        "after the failed {sql}"
    );
    assert_eq!(
        setup.counts("users", "score = 7").await,
        vec![0, 0],
        "after the failed {sql}"
    );
    // And when they all succeed, all of them stay.
    let sql = format!(
        "INSERT INTO users VALUES ({}, 'multi', 1); INSERT INTO users VALUES ({}, 'multi', 1)",
        zero[0] + 2_000_000_000,
        one[0] + 2_000_000_000
    );
    ok(&pgdog, &sql).await;
    assert_eq!(
        setup
            .counts("users", "name = 'multi'")
            .await
            .iter()
            .sum::<i64>(),
        2
    );
    setup.assert_placement("users", "id", "bigint").await;
    assert_eq!(setup.prepared_transactions().await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_over_two_shards_commits_on_both() {
    commits_together(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_phase_transaction_over_two_shards_commits_on_both() {
    commits_together(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_undoes_the_writes_on_every_shard() {
    rollback_undoes_every_shard(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_phase_rollback_undoes_the_writes_on_every_shard() {
    rollback_undoes_every_shard(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_on_one_shard_fails_the_transaction_everywhere() {
    error_on_one_shard_fails_everything(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_phase_an_error_on_one_shard_fails_the_transaction_everywhere() {
    error_on_one_shard_fails_everything(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_over_several_shards_applies_everywhere_or_nowhere() {
    one_statement_for_several_shards_is_atomic(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_phase_a_statement_over_several_shards_applies_everywhere_or_nowhere() {
    one_statement_for_several_shards_is_atomic(true).await;
}

/// With two-phase commit, a shard that fails at PREPARE (a deferred unique constraint) makes
/// COMMIT fail and the other shard, already prepared, is rolled back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_phase_failure_at_prepare_rolls_back_every_shard() {
    let setup = setup(true).await;
    let (zero, one) = keys(&setup).await;
    let pgdog = setup.connect().await;
    ok(&pgdog, &format!("INSERT INTO pairs VALUES ({}, 7)", one[0])).await;
    for failing in [0usize, 1] {
        ok(&pgdog, "BEGIN").await;
        ok(
            &pgdog,
            &format!("INSERT INTO pairs VALUES ({}, 100)", zero[1]),
        )
        .await;
        ok(
            &pgdog,
            &format!("INSERT INTO pairs VALUES ({}, 101)", one[1]),
        )
        .await;
        // The duplicate code 7 is only checked at commit time, on shard 1.
        let dup = if failing == 1 { one[2] } else { zero[2] };
        if failing == 0 {
            // Make shard 0 the failing one: it needs a code 7 there first.
            setup
                .shard(0)
                .await
                .batch_execute(&format!("INSERT INTO pairs VALUES ({}, 8)", zero[3]))
                .await
                .unwrap();
        }
        let code = if failing == 1 { 7 } else { 8 };
        ok(&pgdog, &format!("INSERT INTO pairs VALUES ({dup}, {code})")).await;
        let err = run_simple(&pgdog, "COMMIT")
            .await
            .expect_err("COMMIT must fail on the deferred unique violation");
        assert_eq!(
            err.code, "23505",
            "COMMIT with the violation on shard {failing}"
        );
        let codes = setup
            .on_each_shard("SELECT code FROM pairs WHERE code >= 100")
            .await;
        assert_eq!(
            codes,
            vec![Vec::<Vec<Option<String>>>::new(), vec![]],
            "rows of the failed transaction (violation on shard {failing})"
        );
        assert_eq!(setup.prepared_transactions().await, Vec::<String>::new());
        // The connection is usable again.
        ok(&pgdog, "SELECT count(*) FROM pairs").await;
    }
}

/// A COPY spread over both shards commits on both with two-phase commit and leaves nothing
/// prepared; a failing COPY leaves nothing anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_phase_copy_over_two_shards() {
    use futures_util::SinkExt;
    let setup = setup(true).await;
    let pgdog = setup.connect().await;
    let copy = |data: String| {
        let pgdog = &pgdog;
        async move {
            let work = async {
                let sink = pgdog
                    .copy_in::<_, bytes::Bytes>("COPY users FROM STDIN")
                    .await?;
                let mut sink = std::pin::pin!(sink);
                sink.send(bytes::Bytes::from(data)).await?;
                sink.as_mut().finish().await
            };
            tokio::time::timeout(std::time::Duration::from_secs(30), work)
                .await
                .expect("the COPY hangs")
        }
    };
    let data: String = (1..=100).map(|i| format!("{i}\tcopied\t{i}\n")).collect();
    let n = copy(data)
        .await
        .unwrap_or_else(|e| panic!("COPY with two-phase commit: {e:?}"));
    assert_eq!(n, 100);
    setup.assert_placement("users", "id", "bigint").await;
    assert_eq!(setup.counts("users", "").await.iter().sum::<i64>(), 100);
    assert_eq!(setup.prepared_transactions().await, Vec::<String>::new());
    // Row 150 duplicates row 50: the COPY fails on one shard and no shard keeps its rows.
    let data: String = (101..=200)
        .map(|i| format!("{}\tagain\t0\n", if i == 150 { 50 } else { i }))
        .collect();
    let err = copy(data)
        .await
        .expect_err("a duplicate key fails the COPY");
    assert_eq!(
        integration::sqlstate(&err).as_deref(),
        Some("23505"),
        "{err:?}"
    );
    assert_eq!(setup.counts("users", "").await.iter().sum::<i64>(), 100);
    assert_eq!(setup.prepared_transactions().await, Vec::<String>::new());
}
