//! Sharded routing end to end, on two shards: INSERTs land on the shard PostgreSQL's
//! `PARTITION BY HASH` picks for their key (literals and bind parameters, text and binary,
//! multi-row INSERTs split), statements with the key reach only its shard, statements without
//! it reach all, an UPDATE of the key moves the row, omnisharded tables are written everywhere
//! and read once, and the manual overrides (`/* pgdog_shard: N */`, `SET pgdog.shard`,
//! `SET pgdog.sharding_key`) pick the shard.
//!
//! Routing to one shard is made visible with decoys: rows with the same key inserted directly
//! on the wrong shard, which a statement sent to every shard would see.

use integration::sharded::{
    error_code, omnisharded_tables, run_extended, run_simple, sharded_table, ShardedSetup,
};
use tokio_postgres::Client;

const SCHEMA: &str = "
    CREATE TABLE users (id bigint PRIMARY KEY, name text, score int);
    CREATE TABLE counters (id integer PRIMARY KEY, n int);
    CREATE TABLE accounts (name varchar(100) PRIMARY KEY, balance int);
    CREATE TABLE devices (id uuid PRIMARY KEY, label text);
    CREATE TABLE countries (code text PRIMARY KEY, name text);
";

fn sharding() -> String {
    [
        sharded_table("users", "id", "bigint"),
        sharded_table("counters", "id", "bigint"),
        sharded_table("accounts", "name", "varchar"),
        sharded_table("devices", "id", "uuid"),
        omnisharded_tables(&["countries"]),
    ]
    .concat()
}

async fn setup() -> ShardedSetup {
    let setup = ShardedSetup::start(2, "", &sharding());
    setup.schema(SCHEMA).await;
    setup
}

/// A deterministic uuid for `i`.
fn uuid(i: u64) -> String {
    let a = (i.wrapping_mul(2_654_435_761)) & 0xffff_ffff;
    format!(
        "{a:08x}-{:04x}-4{:03x}-8000-{i:012x}",
        i & 0xffff,
        i & 0xfff
    )
}

/// The 16 bytes of a uuid written with hyphens.
fn uuid_bytes(text: &str) -> Vec<u8> {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    (0..16)
        .map(|i| u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).unwrap())
        .collect()
}

/// Runs `sql` through pgdog and on the reference; panics if pgdog fails.
async fn both(pgdog: &Client, reference: &Client, sql: &str) -> Vec<u64> {
    reference
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("reference: {sql}: {e:?}"));
    match run_simple(pgdog, sql).await {
        Ok(result) => result.counts,
        Err(e) => panic!("pgdog: {sql}: {e}"),
    }
}

/// Total rows of `table` over all shards.
async fn total(setup: &ShardedSetup, table: &str) -> i64 {
    setup.counts(table, "").await.iter().sum()
}

/// The first column of every row of `sql` through pgdog, sorted.
async fn column(client: &Client, sql: &str) -> Vec<Option<String>> {
    let result = run_simple(client, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut values: Vec<Option<String>> = result.rows.into_iter().map(|r| r[0].clone()).collect();
    values.sort();
    values
}

fn texts(values: &[&str]) -> Vec<Option<String>> {
    values.iter().map(|v| Some(v.to_string())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_literals_land_on_the_hash_partition_of_their_key() {
    let setup = setup().await;
    let pgdog = setup.connect().await;
    let reference = setup.reference().await;

    // One row per statement, keys all over the bigint range.
    let mut ids: Vec<i64> = (1..=40).collect();
    ids.extend([0, -1, -42, i64::MAX, i64::MIN, 1 << 40, -(1 << 33)]);
    for id in &ids {
        let counts = both(
            &pgdog,
            &reference,
            &format!("INSERT INTO users (id, name) VALUES ({id}, 'user {id}')"),
        )
        .await;
        assert_eq!(counts, vec![1], "INSERT of {id}");
    }
    // Without a column list, and with the key not first.
    both(
        &pgdog,
        &reference,
        "INSERT INTO users VALUES (1000, 'no list', 3)",
    )
    .await;
    both(
        &pgdog,
        &reference,
        "INSERT INTO users (name, id) VALUES ('key second', 1001)",
    )
    .await;
    // A multi-row INSERT whose rows belong to both shards is split.
    let rows: Vec<String> = (2000..2030)
        .map(|i| format!("({i}, 'multi {i}', {})", i % 7))
        .collect();
    let counts = both(
        &pgdog,
        &reference,
        &format!(
            "INSERT INTO users (id, name, score) VALUES {}",
            rows.join(", ")
        ),
    )
    .await;
    assert_eq!(counts, vec![30], "multi-row INSERT count");
    setup.assert_placement("users", "id", "bigint").await;
    assert_eq!(total(&setup, "users").await, ids.len() as i64 + 32);
    let per_shard = setup.counts("users", "id BETWEEN 2000 AND 2029").await;
    assert!(
        per_shard.iter().all(|c| *c > 0),
        "the multi-row INSERT should reach both shards: {per_shard:?}"
    );

    // varchar keys: empty, quotes, non-ASCII, long.
    let names = [
        "alice",
        "bob",
        "",
        "it''s",
        "żółć",
        "日本語",
        "🦀 crab",
        "a somewhat longer name that spans several hash blocks",
        "x",
        "y",
        "z",
        "Alice",
    ];
    for (i, name) in names.iter().enumerate() {
        both(
            &pgdog,
            &reference,
            &format!("INSERT INTO accounts VALUES ('{name}', {i})"),
        )
        .await;
    }
    let rows: Vec<String> = (0..20).map(|i| format!("('multi-{i}', {i})")).collect();
    let counts = both(
        &pgdog,
        &reference,
        &format!(
            "INSERT INTO accounts (name, balance) VALUES {}",
            rows.join(", ")
        ),
    )
    .await;
    assert_eq!(counts, vec![20]);
    setup.assert_placement("accounts", "name", "varchar").await;
    assert_eq!(total(&setup, "accounts").await, names.len() as i64 + 20);

    // uuid keys, in several text forms.
    for i in 0..20u64 {
        let id = uuid(i);
        let written = match i % 3 {
            0 => id.clone(),
            1 => id.to_uppercase(),
            _ => format!("{{{id}}}"),
        };
        both(
            &pgdog,
            &reference,
            &format!("INSERT INTO devices VALUES ('{written}', 'device {i}')"),
        )
        .await;
    }
    let rows: Vec<String> = (100..120u64)
        .map(|i| format!("('{}'::uuid, 'multi {i}')", uuid(i)))
        .collect();
    both(
        &pgdog,
        &reference,
        &format!("INSERT INTO devices (id, label) VALUES {}", rows.join(", ")),
    )
    .await;
    setup.assert_placement("devices", "id", "uuid").await;
    assert_eq!(total(&setup, "devices").await, 40);

    let checker = setup.checker().await;
    checker
        .assert_all_same(&[
            "SELECT * FROM users",
            "SELECT * FROM accounts",
            "SELECT * FROM devices",
        ])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_bind_parameters_text_and_binary() {
    let setup = setup().await;
    let pgdog = setup.connect().await;

    // tokio-postgres sends i64 as binary int8.
    for id in 1..=30i64 {
        let name = format!("binary {id}");
        let n = pgdog
            .execute(
                "INSERT INTO users (id, name) VALUES ($1, $2)",
                &[&id, &name],
            )
            .await
            .unwrap_or_else(|e| panic!("INSERT {id}: {e:?}"));
        assert_eq!(n, 1);
    }
    // A binary int4 key (an integer column sharded as bigint).
    for id in 1..=20i32 {
        pgdog
            .execute("INSERT INTO counters (id, n) VALUES ($1, $2)", &[&id, &id])
            .await
            .unwrap_or_else(|e| panic!("INSERT counters {id}: {e:?}"));
    }
    // A multi-row INSERT with parameters for both shards.
    let ids: Vec<i64> = (100..106).collect();
    let n = pgdog
        .execute(
            "INSERT INTO users (id, name) VALUES ($1, 'm'), ($2, 'm'), ($3, 'm'), ($4, 'm'), ($5, 'm'), ($6, 'm')",
            &[&ids[0], &ids[1], &ids[2], &ids[3], &ids[4], &ids[5]],
        )
        .await
        .unwrap_or_else(|e| panic!("multi-row INSERT with parameters: {e:?}"));
    assert_eq!(n, 6);

    // Text parameters, and binary ones built by hand.
    let mut raw = setup.raw().await;
    for id in 200..220i64 {
        let text = id.to_string();
        let r = run_extended(
            &mut raw,
            "INSERT INTO users (id, name) VALUES ($1, 'text')",
            &[Some(text.as_bytes())],
            &[],
            &[],
        )
        .await;
        assert_eq!(
            (r.error, r.tags),
            (None, vec!["INSERT 0 1".to_string()]),
            "text {id}"
        );
        let bytes = (id + 100).to_be_bytes();
        let r = run_extended(
            &mut raw,
            "INSERT INTO users (id, name) VALUES ($1, 'raw binary')",
            &[Some(&bytes)],
            &[1],
            &[],
        )
        .await;
        assert_eq!(
            (r.error, r.tags),
            (None, vec!["INSERT 0 1".to_string()]),
            "binary {}",
            id + 100
        );
    }
    for i in 0..20 {
        let name = format!("account {i} ł");
        let (formats, label): (&[i16], _) = match i % 2 {
            0 => (&[0], "text"),
            _ => (&[1], "binary"),
        };
        let r = run_extended(
            &mut raw,
            "INSERT INTO accounts (name, balance) VALUES ($1, 1)",
            &[Some(name.as_bytes())],
            formats,
            &[],
        )
        .await;
        assert_eq!(r.error, None, "{label} varchar {name}");
    }
    for i in 0..20u64 {
        let id = uuid(i);
        let bytes = uuid_bytes(&id);
        let value: &[u8] = if i % 2 == 0 { id.as_bytes() } else { &bytes };
        let r = run_extended(
            &mut raw,
            "INSERT INTO devices (id, label) VALUES ($1, 'p')",
            &[Some(value)],
            &[(i % 2) as i16],
            &[],
        )
        .await;
        assert_eq!(r.error, None, "uuid {id} format {}", i % 2);
    }
    // Mixed formats in one multi-row INSERT: text first key, binary second.
    let second = 501i64.to_be_bytes();
    let r = run_extended(
        &mut raw,
        "INSERT INTO users (id, name) VALUES ($1, 'mixed'), ($2, 'mixed')",
        &[Some(b"500"), Some(&second)],
        &[0, 1],
        &[],
    )
    .await;
    assert_eq!((r.error, r.tags), (None, vec!["INSERT 0 2".to_string()]));

    setup.assert_placement("users", "id", "bigint").await;
    setup.assert_placement("counters", "id", "bigint").await;
    setup.assert_placement("accounts", "name", "varchar").await;
    setup.assert_placement("devices", "id", "uuid").await;
    assert_eq!(total(&setup, "users").await, 30 + 6 + 40 + 2);
    assert_eq!(total(&setup, "counters").await, 20);
    assert_eq!(total(&setup, "accounts").await, 20);
    assert_eq!(total(&setup, "devices").await, 20);
}

/// Inserts `ids` with name 'real' on their shard and name 'decoy' (score -1) on the other one,
/// directly.
async fn real_and_decoy(
    setup: &ShardedSetup,
    table_sql: impl Fn(&str, &str) -> String,
    keys: &[(String, usize)],
) {
    for (key, shard) in keys {
        setup
            .shard(*shard)
            .await
            .batch_execute(&table_sql(key, "real"))
            .await
            .unwrap();
        setup
            .shard(1 - shard)
            .await
            .batch_execute(&table_sql(key, "decoy"))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_with_the_key_reach_only_its_shard() {
    let setup = setup().await;
    let zero = setup.bigint_keys_on(0, 1, 4).await;
    let one = setup.bigint_keys_on(1, 1, 4).await;
    let mut keys: Vec<(String, usize)> = zero.iter().map(|k| (k.to_string(), 0)).collect();
    keys.extend(one.iter().map(|k| (k.to_string(), 1)));
    real_and_decoy(
        &setup,
        |key, name| format!("INSERT INTO users (id, name, score) VALUES ({key}, '{name}', 0)"),
        &keys,
    )
    .await;
    let pgdog = setup.connect().await;
    let (a0, b0, c0, d0) = (zero[0], zero[1], zero[2], zero[3]);
    let (a1, b1, c1, d1) = (one[0], one[1], one[2], one[3]);

    // Simple protocol, literals.
    let real = texts(&["real"]);
    let real2 = texts(&["real", "real"]);
    for (sql, want) in [
        (format!("SELECT name FROM users WHERE id = {a0}"), &real),
        (format!("SELECT name FROM users WHERE {a1} = id"), &real),
        (
            format!("SELECT name FROM users WHERE id = {b1} AND score = 0"),
            &real,
        ),
        (
            format!("SELECT name FROM users WHERE id IN ({a0}, {b0})"),
            &real2,
        ),
        (
            format!("SELECT name FROM users WHERE id IN ({a1}, {b1})"),
            &real2,
        ),
        (
            format!("SELECT u.name FROM users u WHERE u.id = {c1}"),
            &real,
        ),
        (
            format!("SELECT name FROM public.users WHERE id = {c0}"),
            &real,
        ),
        (format!("SELECT name FROM users WHERE id = '{a0}'"), &real),
        (
            format!("SELECT name FROM users WHERE id = {a1}::bigint"),
            &real,
        ),
        (format!("SELECT NAME FROM USERS WHERE ID = {b0}"), &real),
        (
            format!("SELECT \"name\" FROM \"users\" WHERE \"id\" = {b1}"),
            &real,
        ),
        (format!("SELECT name FROM users WHERE (id = {c0})"), &real),
        (
            format!("SELECT name FROM users WHERE id = {a0} OR id = {b0}"),
            &real2,
        ),
    ] {
        assert_eq!(&column(&pgdog, &sql).await, want, "{sql}");
    }
    // One prepared statement executed with keys of both shards: routed per execution.
    let statement = pgdog
        .prepare("SELECT name FROM users WHERE id = $1")
        .await
        .unwrap_or_else(|e| panic!("prepare: {e:?}"));
    for id in [a0, a1, b0, b1, c1, c0] {
        let rows = pgdog
            .query(&statement, &[&id])
            .await
            .unwrap_or_else(|e| panic!("prepared statement with key {id}: {e:?}"));
        let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        assert_eq!(
            names,
            vec!["real".to_string()],
            "prepared statement with key {id}"
        );
    }
    // Extended protocol, binary int8 parameters (tokio-postgres).
    for id in [a0, b0, a1, b1] {
        let rows = pgdog
            .query("SELECT name FROM users WHERE id = $1", &[&id])
            .await
            .unwrap_or_else(|e| panic!("SELECT by binary key {id}: {e:?}"));
        let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        assert_eq!(names, vec!["real".to_string()], "binary key {id}");
    }
    for ids in [vec![a0, b0], vec![a1, b1, c1]] {
        let rows = pgdog
            .query("SELECT name FROM users WHERE id = ANY($1)", &[&ids])
            .await
            .unwrap_or_else(|e| panic!("= ANY($1) with {ids:?}: {e:?}"));
        assert_eq!(
            rows.len(),
            ids.len(),
            "= ANY($1) with {ids:?} (binary int8[])"
        );
        assert!(
            rows.iter().all(|r| r.get::<_, String>(0) == "real"),
            "= ANY($1) with {ids:?}"
        );
        let rows = pgdog
            .query(
                "SELECT name FROM users WHERE id IN ($1, $2)",
                &[&ids[0], &ids[1]],
            )
            .await
            .unwrap_or_else(|e| panic!("IN ($1, $2): {e:?}"));
        assert_eq!(rows.len(), 2, "IN ($1, $2) with {ids:?}");
        assert!(
            rows.iter().all(|r| r.get::<_, String>(0) == "real"),
            "IN ($1, $2) with {ids:?}"
        );
    }
    // Extended protocol, text parameters.
    let mut raw = setup.raw().await;
    for id in [a0, a1, c0, c1] {
        let text = id.to_string();
        let r = run_extended(
            &mut raw,
            "SELECT name FROM users WHERE id = $1",
            &[Some(text.as_bytes())],
            &[],
            &[],
        )
        .await;
        assert_eq!(r.error, None);
        assert_eq!(r.rows, vec![vec![Some(b"real".to_vec())]], "text key {id}");
    }
    let array = format!("{{{b1},{c1}}}");
    let r = run_extended(
        &mut raw,
        "SELECT name FROM users WHERE id = ANY($1)",
        &[Some(array.as_bytes())],
        &[],
        &[],
    )
    .await;
    assert_eq!(r.error, None);
    assert_eq!(r.rows.len(), 2, "= ANY($1) with text array {array}");
    assert!(
        r.rows
            .iter()
            .all(|row| row[0].as_deref() == Some(&b"real"[..])),
        "= ANY($1) text {array}"
    );

    // UPDATE and DELETE by key touch the real row only.
    assert_eq!(
        pgdog
            .execute(&format!("UPDATE users SET score = 7 WHERE id = {a0}"), &[])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        pgdog
            .execute("UPDATE users SET score = $2 WHERE id = $1", &[&a1, &8i32])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        pgdog
            .execute(
                &format!("UPDATE users SET score = 9 WHERE id IN ({b0}, {c0})"),
                &[]
            )
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        pgdog
            .execute(&format!("DELETE FROM users WHERE id = {d0}"), &[])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        pgdog
            .execute("DELETE FROM users WHERE id = $1", &[&d1])
            .await
            .unwrap(),
        1
    );
    let text = b1.to_string();
    let r = run_extended(
        &mut raw,
        "DELETE FROM users WHERE id = $1",
        &[Some(text.as_bytes())],
        &[],
        &[],
    )
    .await;
    assert_eq!((r.error, r.tags), (None, vec!["DELETE 1".to_string()]));
    let decoys = setup
        .on_each_shard("SELECT id::text, score::text FROM users WHERE name = 'decoy' ORDER BY id")
        .await;
    let all_decoys: usize = decoys.iter().map(Vec::len).sum();
    assert_eq!(all_decoys, 8, "every decoy is still there: {decoys:?}");
    assert!(
        decoys
            .iter()
            .flatten()
            .all(|row| row[1].as_deref() == Some("0")),
        "decoys were updated: {decoys:?}"
    );
    let real = setup
        .on_each_shard("SELECT id::text, score::text FROM users WHERE name = 'real' ORDER BY id")
        .await;
    let real: Vec<(String, String)> = real
        .into_iter()
        .flatten()
        .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
        .collect();
    let mut want = vec![
        (a0.to_string(), "7".to_string()),
        (a1.to_string(), "8".to_string()),
        (b0.to_string(), "9".to_string()),
        (c0.to_string(), "9".to_string()),
        (c1.to_string(), "0".to_string()),
    ];
    want.sort();
    let mut real = real;
    real.sort();
    assert_eq!(real, want, "real rows after UPDATE/DELETE by key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn varchar_and_uuid_keys_reach_only_their_shard() {
    let setup = setup().await;
    let names = ["alice", "bob", "carol", "dave", "żółć", "日本"];
    let shards = setup.shards_of("varchar", &names).await;
    let keys: Vec<(String, usize)> = names.iter().map(|n| n.to_string()).zip(shards).collect();
    real_and_decoy(
        &setup,
        |key, name| {
            format!(
                "INSERT INTO accounts VALUES ('{key}', {})",
                if name == "real" { 1 } else { -1 }
            )
        },
        &keys,
    )
    .await;
    let uuids: Vec<String> = (0..6).map(uuid).collect();
    let refs: Vec<&str> = uuids.iter().map(String::as_str).collect();
    let shards = setup.shards_of("uuid", &refs).await;
    let keys: Vec<(String, usize)> = uuids.iter().cloned().zip(shards).collect();
    real_and_decoy(
        &setup,
        |key, name| format!("INSERT INTO devices VALUES ('{key}', '{name}')"),
        &keys,
    )
    .await;
    let pgdog = setup.connect().await;
    let mut raw = setup.raw().await;
    for name in names {
        let sql = format!("SELECT balance::text FROM accounts WHERE name = '{name}'");
        assert_eq!(column(&pgdog, &sql).await, texts(&["1"]), "{sql}");
        let rows = pgdog
            .query("SELECT balance FROM accounts WHERE name = $1", &[&name])
            .await
            .unwrap_or_else(|e| panic!("varchar parameter {name}: {e:?}"));
        let balances: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
        assert_eq!(balances, vec![1], "varchar parameter {name}");
    }
    for (i, id) in uuids.iter().enumerate() {
        let written = if i % 2 == 0 {
            id.clone()
        } else {
            id.to_uppercase()
        };
        let sql = format!("SELECT label FROM devices WHERE id = '{written}'");
        assert_eq!(column(&pgdog, &sql).await, texts(&["real"]), "{sql}");
        let bytes = uuid_bytes(id);
        for (value, format) in [(id.as_bytes(), 0i16), (&bytes[..], 1)] {
            let r = run_extended(
                &mut raw,
                "SELECT label FROM devices WHERE id = $1",
                &[Some(value)],
                &[format],
                &[],
            )
            .await;
            assert_eq!(r.error, None);
            assert_eq!(
                r.rows,
                vec![vec![Some(b"real".to_vec())]],
                "uuid {id} parameter format {format}"
            );
        }
    }
    let n = pgdog
        .execute(
            "UPDATE accounts SET balance = balance + 10 WHERE name = $1",
            &[&"alice"],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    let n = pgdog
        .execute(
            &format!("DELETE FROM devices WHERE id = '{}'", uuids[0]),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    let decoys: i64 = setup.counts("accounts", "balance = -1").await.iter().sum();
    assert_eq!(decoys, 6, "account decoys untouched");
    let decoys: i64 = setup
        .counts("devices", "label = 'decoy'")
        .await
        .iter()
        .sum();
    assert_eq!(decoys, 6, "device decoys untouched");
    let alice: i64 = setup
        .counts("accounts", "name = 'alice' AND balance = 11")
        .await
        .iter()
        .sum();
    assert_eq!(alice, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_without_the_key_reach_every_shard() {
    let setup = setup().await;
    setup
        .load(
            "users",
            "id",
            "bigint",
            "SELECT i, 'user ' || i, i % 10 FROM generate_series(1, 200) i",
        )
        .await;
    let pgdog = setup.connect().await;
    let reference = setup.reference().await;
    let checker = setup.checker().await;
    checker
        .assert_all_same(&[
            "SELECT * FROM users",
            "SELECT id, name FROM users WHERE score = 3",
            "SELECT count(*) FROM users",
            "SELECT count(*) FROM users WHERE name LIKE 'user 1%'",
            // Key ranges are not routed: every shard is asked.
            "SELECT id FROM users WHERE id < 20",
            "SELECT id FROM users WHERE id BETWEEN 50 AND 60 OR score = 9",
        ])
        .await;
    // Row counts of UPDATE and DELETE are the totals.
    for sql in [
        "UPDATE users SET score = score + 100 WHERE score < 3",
        "UPDATE users SET name = upper(name)",
        "DELETE FROM users WHERE score = 105 OR id > 190",
    ] {
        let want = reference.execute(sql, &[]).await.unwrap();
        let got = pgdog
            .execute(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        assert_eq!(got, want, "row count of {sql}");
    }
    checker
        .assert_all_same(&[
            "SELECT * FROM users",
            "UPDATE users SET score = 0 WHERE score = 9 RETURNING id, name",
            "DELETE FROM users WHERE score = 0 RETURNING id",
            "SELECT * FROM users",
        ])
        .await;
    setup.assert_placement("users", "id", "bigint").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_of_the_sharding_key_moves_the_row() {
    let setup = setup().await;
    let zero = setup.bigint_keys_on(0, 1, 4).await;
    let one = setup.bigint_keys_on(1, 1, 4).await;
    let pgdog = setup.connect().await;
    for id in zero.iter().chain(&one) {
        pgdog
            .execute(
                "INSERT INTO users (id, name, score) VALUES ($1, $2, 5)",
                &[id, &format!("n{id}")],
            )
            .await
            .unwrap_or_else(|e| panic!("INSERT {id}: {e:?}"));
    }
    let new0 = setup.bigint_keys_on(0, 1000, 4).await;
    let new1 = setup.bigint_keys_on(1, 1000, 4).await;
    let where_is = |id: i64| {
        let setup = &setup;
        async move {
            setup
                .on_each_shard(&format!(
                    "SELECT name || '/' || score FROM users WHERE id = {id}"
                ))
                .await
                .into_iter()
                .map(|rows| {
                    rows.into_iter()
                        .map(|r| r[0].clone().unwrap())
                        .collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        }
    };
    let through_pgdog = |id: i64| {
        let pgdog = &pgdog;
        async move { column(pgdog, &format!("SELECT name FROM users WHERE id = {id}")).await }
    };

    // Outside a transaction, simple protocol: shard 0 -> shard 1.
    let n = pgdog
        .execute(
            &format!("UPDATE users SET id = {} WHERE id = {}", new1[0], zero[0]),
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("UPDATE of the key: {e:?}"));
    assert_eq!(n, 1, "UPDATE count when the key moves");
    let name = format!("n{}/5", zero[0]);
    assert_eq!(where_is(new1[0]).await, vec![vec![], vec![name.clone()]]);
    assert_eq!(where_is(zero[0]).await, vec![Vec::<String>::new(), vec![]]);
    assert_eq!(
        through_pgdog(new1[0]).await,
        texts(&[&format!("n{}", zero[0])])
    );
    assert!(through_pgdog(zero[0]).await.is_empty());

    // Extended protocol with binary parameters, shard 1 -> shard 0, other columns changed too.
    let n = pgdog
        .execute(
            "UPDATE users SET id = $1, score = 6 WHERE id = $2",
            &[&new0[0], &one[0]],
        )
        .await
        .unwrap_or_else(|e| panic!("UPDATE of the key with parameters: {e:?}"));
    assert_eq!(n, 1);
    assert_eq!(
        where_is(new0[0]).await,
        vec![vec![format!("n{}/6", one[0])], vec![]]
    );
    assert_eq!(where_is(one[0]).await, vec![Vec::<String>::new(), vec![]]);

    // Inside a transaction that rolls back: the row is back where it was.
    pgdog.batch_execute("BEGIN").await.unwrap();
    let n = pgdog
        .execute(
            &format!("UPDATE users SET id = {} WHERE id = {}", new1[1], zero[1]),
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("UPDATE of the key in a transaction: {e:?}"));
    assert_eq!(n, 1);
    assert_eq!(
        through_pgdog(new1[1]).await.len(),
        1,
        "the moved row is visible in the transaction"
    );
    assert!(
        through_pgdog(zero[1]).await.is_empty(),
        "the old key is gone in the transaction"
    );
    pgdog.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        where_is(zero[1]).await,
        vec![vec![format!("n{}/5", zero[1])], vec![]]
    );
    assert_eq!(where_is(new1[1]).await, vec![Vec::<String>::new(), vec![]]);

    // Inside a transaction that commits.
    pgdog.batch_execute("BEGIN").await.unwrap();
    pgdog
        .execute(
            &format!("UPDATE users SET id = {} WHERE id = {}", new0[1], one[1]),
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("UPDATE of the key in a transaction: {e:?}"));
    pgdog.batch_execute("COMMIT").await.unwrap();
    assert_eq!(
        where_is(new0[1]).await,
        vec![vec![format!("n{}/5", one[1])], vec![]]
    );
    assert_eq!(where_is(one[1]).await, vec![Vec::<String>::new(), vec![]]);

    // A new key on the same shard: an ordinary UPDATE.
    let n = pgdog
        .execute(
            &format!("UPDATE users SET id = {} WHERE id = {}", new0[2], zero[2]),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(
        where_is(new0[2]).await,
        vec![vec![format!("n{}/5", zero[2])], vec![]]
    );

    // The key updated to a key that exists on the new shard: the unique violation comes back and
    // nothing moves.
    let err = pgdog
        .execute(
            &format!("UPDATE users SET id = {} WHERE id = {}", one[2], zero[3]),
            &[],
        )
        .await
        .expect_err("moving onto an existing key must fail");
    assert_eq!(
        integration::sqlstate(&err).as_deref(),
        Some("23505"),
        "{err:?}"
    );
    assert_eq!(
        where_is(zero[3]).await,
        vec![vec![format!("n{}/5", zero[3])], vec![]]
    );
    assert_eq!(
        where_is(one[2]).await,
        vec![vec![], vec![format!("n{}/5", one[2])]]
    );

    // varchar key.
    pgdog
        .batch_execute("INSERT INTO accounts VALUES ('mover', 1)")
        .await
        .unwrap();
    let candidates: Vec<String> = (0..40).map(|i| format!("moved-{i}")).collect();
    let refs: Vec<&str> = candidates.iter().map(String::as_str).collect();
    let from = setup.shard_of("varchar", "mover").await;
    let shards = setup.shards_of("varchar", &refs).await;
    let target = candidates
        .iter()
        .zip(shards)
        .find(|(_, s)| *s != from)
        .map(|(c, _)| c.clone())
        .unwrap();
    let n = pgdog
        .execute(
            "UPDATE accounts SET name = $1 WHERE name = $2",
            &[&target, &"mover"],
        )
        .await
        .unwrap_or_else(|e| panic!("UPDATE of a varchar key: {e:?}"));
    assert_eq!(n, 1);
    setup.assert_placement("accounts", "name", "varchar").await;
    setup.assert_placement("users", "id", "bigint").await;
    assert_eq!(total(&setup, "accounts").await, 1);
    assert_eq!(total(&setup, "users").await, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn omnisharded_tables_are_written_everywhere_and_read_once() {
    let setup = setup().await;
    let pgdog = setup.connect().await;
    let reference = setup.reference().await;
    let counts = both(
        &pgdog,
        &reference,
        "INSERT INTO countries VALUES ('pl', 'Poland'), ('de', 'Germany'), ('fr', 'France')",
    )
    .await;
    assert_eq!(
        counts,
        vec![3],
        "INSERT into an omnisharded table reports its rows once"
    );
    let n = pgdog
        .execute("INSERT INTO countries VALUES ($1, $2)", &[&"es", &"Spain"])
        .await
        .unwrap_or_else(|e| panic!("INSERT with parameters: {e:?}"));
    assert_eq!(n, 1);
    reference
        .batch_execute("INSERT INTO countries VALUES ('es', 'Spain')")
        .await
        .unwrap();
    assert_eq!(setup.counts("countries", "").await, vec![4, 4]);

    let checker = setup.checker().await;
    checker
        .assert_all_same(&[
            "SELECT * FROM countries",
            "SELECT name FROM countries ORDER BY code",
            "SELECT count(*) FROM countries",
            "SELECT name FROM countries WHERE code = 'pl'",
        ])
        .await;
    let rows = pgdog
        .query("SELECT name FROM countries WHERE code = $1", &[&"de"])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);

    let n = pgdog
        .execute(
            "UPDATE countries SET name = upper(name) WHERE code <> 'es'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(n, 3, "UPDATE of an omnisharded table reports its rows once");
    let n = pgdog
        .execute("DELETE FROM countries WHERE code = 'fr'", &[])
        .await
        .unwrap();
    assert_eq!(
        n, 1,
        "DELETE from an omnisharded table reports its rows once"
    );
    let contents = setup
        .on_each_shard("SELECT code || '=' || name FROM countries ORDER BY code")
        .await;
    let want = texts(&["de=GERMANY", "es=Spain", "pl=POLAND"]);
    for (k, rows) in contents.iter().enumerate() {
        let got: Vec<Option<String>> = rows.iter().map(|r| r[0].clone()).collect();
        assert_eq!(got, want, "countries on shard {k}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_overrides_pick_the_shard() {
    let setup = setup().await;
    setup
        .load(
            "users",
            "id",
            "bigint",
            "SELECT i, 'u', 0 FROM generate_series(1, 50) i",
        )
        .await;
    let per_shard = setup.counts("users", "").await;
    let pgdog = setup.connect().await;
    let database = |sql: &'static str| {
        let pgdog = &pgdog;
        async move { column(pgdog, sql).await }
    };
    for _ in 0..3 {
        assert_eq!(
            database("/* pgdog_shard: 1 */ SELECT current_database()").await,
            texts(&["shard_1"])
        );
        assert_eq!(
            database("/* pgdog_shard: 0 */ SELECT current_database()").await,
            texts(&["shard_0"])
        );
        assert_eq!(
            database("SELECT current_database() /* pgdog_shard: 1 */").await,
            texts(&["shard_1"])
        );
    }
    // Extended protocol too.
    let rows = pgdog
        .query("/* pgdog_shard: 1 */ SELECT current_database()", &[])
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, String>(0), "shard_1");
    // A query of a sharded table without its key, pinned to one shard: that shard's rows only.
    let count = column(&pgdog, "/* pgdog_shard: 1 */ SELECT count(*) FROM users").await;
    assert_eq!(count, texts(&[&per_shard[1].to_string()]));
    let count = column(&pgdog, "/* pgdog_shard: 0 */ SELECT count(*) FROM users").await;
    assert_eq!(count, texts(&[&per_shard[0].to_string()]));

    // SET pgdog.shard in a transaction routes the rest of it.
    for shard in [1, 0] {
        pgdog.batch_execute("BEGIN").await.unwrap();
        run_simple(&pgdog, &format!("SET pgdog.shard = {shard}"))
            .await
            .unwrap_or_else(|e| panic!("SET pgdog.shard: {e}"));
        let name = format!("shard_{shard}");
        for _ in 0..3 {
            assert_eq!(database("SELECT current_database()").await, texts(&[&name]));
        }
        let count = column(&pgdog, "SELECT count(*) FROM users").await;
        assert_eq!(
            count,
            texts(&[&per_shard[shard].to_string()]),
            "count(*) with SET pgdog.shard = {shard}"
        );
        pgdog.batch_execute("COMMIT").await.unwrap();
    }
    // After the transaction, queries are routed as usual again.
    let total: i64 = per_shard.iter().sum();
    assert_eq!(
        column(&pgdog, "SELECT count(*) FROM users").await,
        texts(&[&total.to_string()])
    );

    // SET pgdog.sharding_key: the key's shard, for keys of both shards.
    let keys = ["42", "7", "1000", "-3"];
    let shards = setup.shards_of("bigint", &keys).await;
    assert!(
        shards.contains(&0) && shards.contains(&1),
        "keys on both shards: {shards:?}"
    );
    for (key, shard) in keys.iter().zip(&shards) {
        let name = format!("shard_{shard}");
        pgdog.batch_execute("BEGIN").await.unwrap();
        run_simple(&pgdog, &format!("SET pgdog.sharding_key = '{key}'"))
            .await
            .unwrap_or_else(|e| panic!("SET pgdog.sharding_key: {e}"));
        assert_eq!(
            database("SELECT current_database()").await,
            texts(&[&name]),
            "sharding_key {key}"
        );
        assert_eq!(
            database("SELECT current_database()").await,
            texts(&[&name]),
            "sharding_key {key}"
        );
        pgdog.batch_execute("COMMIT").await.unwrap();
        let sql = format!("/* pgdog_sharding_key: {key} */ SELECT current_database()");
        assert_eq!(column(&pgdog, &sql).await, texts(&[&name]), "{sql}");
    }
    // A shard that does not exist is an error, not a silent choice.
    let code = error_code(&pgdog, "/* pgdog_shard: 5 */ SELECT current_database()").await;
    assert!(!code.is_empty(), "pgdog_shard: 5 on two shards");
    assert_eq!(
        database("SELECT 1::text").await,
        texts(&["1"]),
        "the connection still works"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_pgdog_shard_outside_a_transaction_lasts_until_reset() {
    let setup = setup().await;
    setup
        .load(
            "users",
            "id",
            "bigint",
            "SELECT i, 'u', 0 FROM generate_series(1, 50) i",
        )
        .await;
    let per_shard = setup.counts("users", "").await;
    let pgdog = setup.connect().await;
    run_simple(&pgdog, "SET pgdog.shard = 1")
        .await
        .unwrap_or_else(|e| panic!("SET pgdog.shard: {e}"));
    for _ in 0..3 {
        assert_eq!(
            column(&pgdog, "SELECT current_database()").await,
            texts(&["shard_1"])
        );
    }
    let count = column(&pgdog, "SELECT count(*) FROM users").await;
    assert_eq!(count, texts(&[&per_shard[1].to_string()]));
    run_simple(&pgdog, "RESET pgdog.shard")
        .await
        .unwrap_or_else(|e| panic!("RESET pgdog.shard: {e}"));
    let total: i64 = per_shard.iter().sum();
    assert_eq!(
        column(&pgdog, "SELECT count(*) FROM users").await,
        texts(&[&total.to_string()])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_executions_returning_and_upserts_are_routed_per_row() {
    let setup = setup().await;
    let zero = setup.bigint_keys_on(0, 1, 3).await;
    let one = setup.bigint_keys_on(1, 1, 3).await;

    // A JDBC-style batch: one Parse, then Bind/Execute per row, one Sync.
    let mut raw = setup.raw().await;
    let keys = [zero[0], one[0], zero[1], one[1]];
    let mut messages = vec![integration::raw::parse(
        "batch",
        "INSERT INTO users (id, name) VALUES ($1, 'batch')",
    )];
    let params: Vec<[u8; 8]> = keys.iter().map(|k| k.to_be_bytes()).collect();
    for value in &params {
        messages.push(integration::sharded::bind_params(
            "",
            "batch",
            &[Some(value)],
            &[1],
            &[],
        ));
        messages.push(integration::raw::execute("", 0));
    }
    messages.push(integration::raw::sync());
    let mut reference = setup.raw_direct("reference").await;
    reference.send(&messages).await;
    let want = integration::raw::tags(&reference.until(b'Z').await);
    assert_eq!(want, "12C2C2C2CZ", "the reference's replies to the batch");
    raw.send(&messages).await;
    let replies = raw.until(b'Z').await;
    let errors: Vec<String> = replies
        .iter()
        .filter(|(tag, _)| *tag == b'E')
        .map(|(_, body)| String::from_utf8_lossy(body).replace('\0', " "))
        .collect();
    assert_eq!(
        integration::raw::tags(&replies),
        "12C2C2C2CZ",
        "replies to a pipelined batch; errors: {errors:?}"
    );
    setup.assert_placement("users", "id", "bigint").await;
    assert_eq!(setup.counts("users", "name = 'batch'").await, vec![2, 2]);

    // RETURNING from a multi-row INSERT split over both shards.
    let checker = setup.checker().await;
    let sql = format!(
        "INSERT INTO users (id, name, score) VALUES ({}, 'ret', 1), ({}, 'ret', 2) RETURNING id, name, score",
        zero[2], one[2]
    );
    checker.assert_same(&sql).await;
    setup.assert_placement("users", "id", "bigint").await;

    // Upserts are routed by the key of the inserted row.
    for (id, name) in [(zero[0], "upserted 0"), (one[0], "upserted 1")] {
        let n = checker
            .pgdog
            .execute(
                "INSERT INTO users (id, name) VALUES ($1, $2) \
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name",
                &[&id, &name],
            )
            .await
            .unwrap_or_else(|e| panic!("upsert of {id}: {e:?}"));
        assert_eq!(n, 1, "upsert of {id}");
    }
    let names = setup
        .on_each_shard("SELECT name FROM users WHERE name LIKE 'upserted%'")
        .await;
    assert_eq!(
        names,
        vec![
            vec![vec![Some("upserted 0".to_string())]],
            vec![vec![Some("upserted 1".to_string())]]
        ]
    );
    assert_eq!(
        setup.counts("users", "").await.iter().sum::<i64>(),
        6,
        "upserts updated, not inserted"
    );
    // UPDATE and DELETE with RETURNING by key.
    let rows = checker
        .pgdog
        .query(
            "UPDATE users SET score = 10 WHERE id = $1 RETURNING name",
            &[&one[1]],
        )
        .await
        .unwrap_or_else(|e| panic!("UPDATE ... RETURNING: {e:?}"));
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(0), "batch");
    let rows = checker
        .pgdog
        .query("DELETE FROM users WHERE id = $1 RETURNING id", &[&zero[1]])
        .await
        .unwrap_or_else(|e| panic!("DELETE ... RETURNING: {e:?}"));
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, i64>(0), zero[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_works_in_session_mode() {
    let setup = ShardedSetup::start(2, "pooler_mode = \"session\"", &sharding());
    setup.schema(SCHEMA).await;
    let pgdog = setup.connect().await;
    let reference = setup.reference().await;
    let rows: Vec<String> = (1..=40)
        .map(|i| format!("({i}, 'session {i}', {})", i % 4))
        .collect();
    let sql = format!(
        "INSERT INTO users (id, name, score) VALUES {}",
        rows.join(", ")
    );
    assert_eq!(both(&pgdog, &reference, &sql).await, vec![40]);
    setup.assert_placement("users", "id", "bigint").await;
    for id in 1..=6i64 {
        let rows = pgdog
            .query("SELECT name FROM users WHERE id = $1", &[&id])
            .await
            .unwrap_or_else(|e| panic!("SELECT {id} in session mode: {e:?}"));
        assert_eq!(rows.len(), 1, "key {id} in session mode");
    }
    let checker = setup.checker().await;
    checker
        .assert_all_same(&[
            "SELECT count(*), sum(score) FROM users",
            "SELECT id, name FROM users ORDER BY id DESC LIMIT 5",
            "SELECT score, count(*) FROM users GROUP BY score ORDER BY score",
        ])
        .await;
    pgdog.batch_execute("BEGIN").await.unwrap();
    pgdog
        .batch_execute("INSERT INTO users VALUES (1001, 'tx', 0), (1002, 'tx', 0)")
        .await
        .unwrap_or_else(|e| panic!("INSERT in a session-mode transaction: {e:?}"));
    let uncommitted = setup.counts("users", "name = 'tx'").await;
    pgdog.batch_execute("ROLLBACK").await.unwrap();
    let after = setup.counts("users", "name = 'tx'").await;
    assert_eq!(
        (uncommitted, after),
        (vec![0, 0], vec![0, 0]),
        "rows of a session-mode transaction seen directly before and after its ROLLBACK"
    );
    assert_eq!(
        column(&pgdog, "/* pgdog_shard: 1 */ SELECT current_database()").await,
        texts(&["shard_1"])
    );
}
