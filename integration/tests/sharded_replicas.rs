//! Read balancing across each shard's primary and replica still works on a sharded database:
//! reads routed by key reach that shard's database on either server, `exclude_primary` sends
//! them to the replica only, and writes still go to the primary.

use integration::sharded::{run_simple, sharded_table, ShardedSetup};

async fn setup(general: &str) -> (ShardedSetup, Vec<i64>) {
    let setup =
        ShardedSetup::start_with_replica(2, general, &sharded_table("users", "id", "bigint"));
    setup
        .schema("CREATE TABLE users (id bigint PRIMARY KEY, name text)")
        .await;
    setup
        .load(
            "users",
            "id",
            "bigint",
            "SELECT i, 'u' || i FROM generate_series(1, 40) i",
        )
        .await;
    setup.wait_for_replica().await;
    let mut keys = setup.bigint_keys_on(0, 1, 1).await;
    keys.extend(setup.bigint_keys_on(1, 1, 1).await);
    (setup, keys)
}

/// `(in recovery, database)` for each of `rounds` reads of key `id` through pgdog.
async fn reads(setup: &ShardedSetup, id: i64, rounds: usize) -> Vec<(String, String)> {
    let mut seen = Vec::new();
    for _ in 0..rounds {
        let client = setup.connect().await;
        let sql = format!(
            "SELECT pg_is_in_recovery()::text, current_database()::text FROM users WHERE id = {id}"
        );
        let result = run_simple(&client, &sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(result.rows.len(), 1, "{sql}");
        let row = &result.rows[0];
        seen.push((row[0].clone().unwrap(), row[1].clone().unwrap()));
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_by_key_are_spread_over_the_shards_primary_and_replica() {
    let (setup, keys) = setup("load_balancing_strategy = \"round_robin\"").await;
    for (shard, id) in keys.iter().enumerate() {
        let seen = reads(&setup, *id, 12).await;
        let database = format!("shard_{shard}");
        assert!(
            seen.iter().all(|(_, db)| *db == database),
            "key {id} read from {seen:?}"
        );
        let replica = seen.iter().filter(|(r, _)| r == "true").count();
        assert!(
            replica > 0 && replica < seen.len(),
            "reads of key {id} should use both servers of shard {shard}: {seen:?}"
        );
    }
    // Writes go to the primary.
    let client = setup.connect().await;
    for id in [1000i64, 1001, 1002, 1003] {
        client
            .execute("INSERT INTO users VALUES ($1, 'new')", &[&id])
            .await
            .unwrap_or_else(|e| panic!("INSERT {id} with replicas configured: {e:?}"));
    }
    setup.assert_placement("users", "id", "bigint").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclude_primary_reads_from_the_replicas_only() {
    let (setup, keys) = setup("read_write_split = \"exclude_primary\"").await;
    for (shard, id) in keys.iter().enumerate() {
        let want = vec![("true".to_string(), format!("shard_{shard}")); 6];
        // A replica that fails a checkout (a slow machine) is banned for a moment and reads
        // fall back to the primary by design: a few samples, one of them all on the replica.
        let mut samples = Vec::new();
        for _ in 0..3 {
            let seen = reads(&setup, *id, 6).await;
            if seen == want {
                break;
            }
            samples.push(seen);
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        assert!(
            samples.len() < 3,
            "reads of key {id}: {samples:?}, want {want:?}"
        );
    }
    // A read without the key reaches every shard's replica; the count is the total.
    let client = setup.connect().await;
    let result = run_simple(&client, "SELECT count(*) FROM users")
        .await
        .unwrap();
    assert_eq!(result.rows, vec![vec![Some("40".to_string())]]);
}
