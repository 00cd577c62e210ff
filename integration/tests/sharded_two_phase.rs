//! Two-phase commit recovery: prepared transactions pgdog left behind when it died in the
//! middle of a commit are finished by the next pgdog: committed on every shard when the
//! decision record says so, rolled back on every shard otherwise.

use std::time::Duration;

use integration::eventually;
use integration::sharded::{sharded_table, ShardedSetup};

fn setup() -> ShardedSetup {
    ShardedSetup::start(
        2,
        "two_phase_commit = true",
        &sharded_table("items", "id", "bigint"),
    )
}

/// Runs `BEGIN; INSERT; PREPARE TRANSACTION gid` directly on `shard`: what pgdog leaves
/// behind when it dies between PREPARE and COMMIT PREPARED.
async fn leave_prepared(setup: &ShardedSetup, shard: usize, id: i64, gid: &str) {
    let client = setup.shard(shard).await;
    client
        .batch_execute(&format!(
            "BEGIN; INSERT INTO items (id, v) VALUES ({id}, 'x'); PREPARE TRANSACTION '{gid}'"
        ))
        .await
        .unwrap_or_else(|e| panic!("PREPARE on shard {shard}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_finishes_interrupted_two_phase_commits() {
    let setup = setup();
    setup
        .schema("CREATE TABLE items (id bigint PRIMARY KEY, v text)")
        .await;
    // pgdog creates the decision table on every shard.
    for shard in 0..2 {
        let client = setup.shard(shard).await;
        eventually(Duration::from_secs(30), "decision table", || {
            let client = &client;
            async move {
                client
                    .query_opt(
                        "SELECT 1 FROM pg_tables WHERE schemaname = 'pgdog' AND tablename = 'two_phase_commits'",
                        &[],
                    )
                    .await
                    .ok()
                    .flatten()
                    .map(|_| ())
            }
        })
        .await;
    }
    // Decided: the first shard (0) committed, with its decision record; shard 1 still prepared.
    let decided = "pgdog_999999_1_1_f0";
    let zero = setup.shard(0).await;
    zero.batch_execute(&format!(
        "INSERT INTO items (id, v) VALUES (1, 'x'); INSERT INTO pgdog.two_phase_commits (gid) VALUES ('{decided}')"
    ))
    .await
    .unwrap_or_else(|e| panic!("decision record: {e}"));
    leave_prepared(&setup, 1, 2, &format!("{decided}_1")).await;
    // Undecided: both shards prepared, no decision record: rolled back everywhere.
    let undecided = "pgdog_999999_1_2_f0";
    leave_prepared(&setup, 0, 3, &format!("{undecided}_0")).await;
    leave_prepared(&setup, 1, 4, &format!("{undecided}_1")).await;
    // Not pgdog's: left alone.
    leave_prepared(&setup, 1, 5, "someone_else").await;

    eventually(Duration::from_secs(60), "recovery", || {
        let setup = &setup;
        async move {
            let left = setup.prepared_transactions().await;
            (left.len() == 1 && left[0].starts_with("someone_else ")).then_some(())
        }
    })
    .await;
    let rows = |shard: usize| {
        let setup = &setup;
        async move {
            setup
                .shard(shard)
                .await
                .query("SELECT id FROM items ORDER BY id", &[])
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .iter()
                .map(|r| r.get::<_, i64>(0))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(rows(0).await, vec![1], "shard 0: the decided row only");
    assert_eq!(rows(1).await, vec![2], "shard 1: the decided row only");
    setup
        .shard(1)
        .await
        .batch_execute("ROLLBACK PREPARED 'someone_else'")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_phase_commits_leave_nothing_prepared() {
    let setup = setup();
    setup
        .schema("CREATE TABLE items (id bigint PRIMARY KEY, v text)")
        .await;
    let zero = setup.bigint_keys_on(0, 1, 3).await;
    let one = setup.bigint_keys_on(1, 1, 3).await;
    let pgdog = setup.connect().await;
    for round in 0..3 {
        let mut sql = String::from("BEGIN;");
        sql.push_str(&format!(
            "INSERT INTO items (id, v) VALUES ({}, 'r{round}');",
            zero[round]
        ));
        sql.push_str(&format!(
            "INSERT INTO items (id, v) VALUES ({}, 'r{round}');",
            one[round]
        ));
        sql.push_str("COMMIT;");
        pgdog
            .batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}\n{}", setup.pgdog.log()));
    }
    assert_eq!(setup.counts("items", "true").await, vec![3, 3]);
    assert!(setup.prepared_transactions().await.is_empty());
    // A failure on one shard while preparing rolls back everywhere.
    let err = pgdog
        .batch_execute(&format!(
            "BEGIN; INSERT INTO items (id, v) VALUES ({}, 'new'); INSERT INTO items (id, v) VALUES ({}, 'dup'); COMMIT",
            setup.bigint_keys_on(0, 1000, 1).await[0],
            one[0]
        ))
        .await;
    assert!(err.is_err(), "a duplicate key must fail the transaction");
    assert_eq!(setup.counts("items", "true").await, vec![3, 3]);
    assert!(setup.prepared_transactions().await.is_empty());
}
