//! Shards failing under a sharded statement: a shard whose server dies in the middle of a
//! COPY makes the whole COPY fail for the client, and no shard keeps any of its rows.

use std::pin::pin;

use bytes::Bytes;
use futures_util::SinkExt;
use integration::sharded::{sharded_table, ShardedSetup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_lost_during_copy_fails_the_copy_everywhere() {
    let setup = ShardedSetup::start(2, "", &sharded_table("events", "id", "bigint"));
    setup
        .schema("CREATE TABLE events (id bigint PRIMARY KEY, v text)")
        .await;
    let pgdog = setup.connect().await;
    let sink = pgdog
        .copy_in::<_, Bytes>("COPY events FROM STDIN")
        .await
        .unwrap_or_else(|e| panic!("COPY did not start: {e}\n{}", setup.pgdog.log()));
    let mut sink = pin!(sink);
    let rows: String = (1..=2000).map(|i| format!("{i}\trow {i}\n")).collect();
    sink.send(Bytes::from(rows))
        .await
        .unwrap_or_else(|e| panic!("sending rows: {e}"));
    // Shard 1's server for this COPY dies.
    let direct = setup.direct("postgres").await;
    let killed = direct
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = 'shard_1' AND query LIKE 'COPY events%'",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(killed.len(), 1, "one COPY backend on shard_1");
    let more: String = (2001..=3000).map(|i| format!("{i}\trow {i}\n")).collect();
    let _ = sink.send(Bytes::from(more)).await;
    let result = sink.as_mut().finish().await;
    assert!(
        result.is_err(),
        "the COPY must fail when a shard is lost, got {result:?}"
    );
    // The client's connection to pgdog survives and nothing was kept anywhere.
    let count = pgdog
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap_or_else(|e| panic!("after the failed COPY: {e}\n{}", setup.pgdog.log()));
    assert_eq!(count.get::<_, i64>(0), 0);
    assert_eq!(setup.counts("events", "").await, vec![0, 0]);
}
