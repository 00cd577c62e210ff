//! Placement by `[[sharded_tables.mapping]]` rules instead of the hash: list rules, range rules
//! (start inclusive, end exclusive) and a default shard, for INSERT (literals and parameters)
//! and reads by key; NULL keys of hashed tables go where PostgreSQL's hash partitioning
//! puts them (remainder 0).

use integration::sharded::{sharded_table, ShardedSetup, DATABASE};

fn mapping() -> String {
    format!(
        "[[sharded_tables]]\ndatabase = \"{DATABASE}\"\nname = \"regions\"\ncolumn = \"code\"\ndata_type = \"bigint\"\n\
         [[sharded_tables.mapping]]\nvalues = [1, 2, 3]\nshard = 1\n\
         [[sharded_tables.mapping]]\nstart = 100\nend = 200\nshard = 2\n\
         [[sharded_tables.mapping]]\nshard = 0\n\n{}",
        sharded_table("events", "id", "bigint")
    )
}

/// The shard each `code` is found on, read directly from the shards.
async fn placement(setup: &ShardedSetup) -> Vec<(i64, usize)> {
    let mut found = Vec::new();
    for shard in 0..setup.shards() {
        for row in setup
            .shard(shard)
            .await
            .query("SELECT code FROM regions ORDER BY code", &[])
            .await
            .unwrap_or_else(|e| panic!("{e}"))
        {
            found.push((row.get::<_, i64>(0), shard));
        }
    }
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_range_and_default_rules_place_rows() {
    let setup = ShardedSetup::start(3, "", &mapping());
    setup
        .schema(
            "CREATE TABLE regions (code bigint PRIMARY KEY, name text); \
             CREATE TABLE events (id bigint, v text)",
        )
        .await;
    let pgdog = setup.connect().await;
    pgdog
        .batch_execute("INSERT INTO regions VALUES (1, 'a'), (150, 'b'), (7, 'c')")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", setup.pgdog.log()));
    for code in [3i64, 100, 199, 200] {
        pgdog
            .execute("INSERT INTO regions VALUES ($1, 'p')", &[&code])
            .await
            .unwrap_or_else(|e| panic!("{code}: {e}"));
    }
    assert_eq!(
        placement(&setup).await,
        vec![
            (1, 1),
            (3, 1),
            (7, 0),
            (100, 2),
            (150, 2),
            (199, 2),
            (200, 0)
        ],
        "list rules, [start, end) ranges and the default shard"
    );
    // Reads by key find each row on its shard only.
    for code in [1i64, 7, 150, 200] {
        let rows = pgdog
            .query("SELECT name FROM regions WHERE code = $1", &[&code])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rows.len(), 1, "code {code}");
    }
    // NULL keys of a hashed table land where PARTITION BY HASH puts NULL: remainder 0.
    pgdog
        .batch_execute("INSERT INTO events VALUES (NULL, 'null key')")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(setup.counts("events", "id IS NULL").await, vec![1, 0, 0]);
}
