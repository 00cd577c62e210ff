//! The harness's streaming replicas (`LocalCluster::start_replica`): a replica sees the
//! primary's data and later writes, refuses writes itself, and stopping or dropping either
//! side leaves the other working.

use std::time::{Duration, Instant};

use integration::{eventually, sqlstate, LocalCluster};

/// Generous bound for things that should take well under a second.
const WAIT: Duration = Duration::from_secs(20);

/// A direct tokio-postgres connection to `cluster` as the superuser postgres/postgres.
async fn connect(cluster: &LocalCluster) -> tokio_postgres::Client {
    let url = cluster.connection_string("postgres", "postgres", "postgres");
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to port {}: {e}", cluster.port()));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Starts a replica of `primary`, or panics with the reason.
fn replica_of(primary: &LocalCluster) -> LocalCluster {
    primary
        .start_replica()
        .unwrap_or_else(|e| panic!("cannot start a replica: {e}"))
}

/// Rows in table `items`, or `None` if it cannot be read (yet).
async fn item_count(client: &tokio_postgres::Client) -> Option<i64> {
    let row = client.query_one("SELECT count(*) FROM items", &[]).await;
    row.ok().map(|row| row.get(0))
}

/// Waits until `client` sees `n` rows in `items`.
async fn wait_for_items(client: &tokio_postgres::Client, n: i64, what: &str) {
    eventually(WAIT, what, || async {
        (item_count(client).await == Some(n)).then_some(())
    })
    .await
}

/// Walsenders on the primary that stream to a standby.
async fn streaming_walsenders(primary: &tokio_postgres::Client) -> i64 {
    primary
        .query_one(
            "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_streams_refuses_writes_and_dies_alone() {
    let primary = integration::cluster();
    let writer = connect(&primary).await;
    writer
        .batch_execute(
            "CREATE TABLE items (id int PRIMARY KEY, name text); \
             INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, 100) i",
        )
        .await
        .unwrap();

    let replica = replica_of(&primary);
    assert!(replica.is_replica() && !primary.is_replica());
    assert_ne!(replica.port(), primary.port());
    assert_ne!(replica.data_dir(), primary.data_dir());
    assert_ne!(replica.socket_dir(), primary.socket_dir());
    assert_eq!(
        replica
            .psql("postgres", "SELECT pg_is_in_recovery()")
            .unwrap(),
        "t"
    );
    assert_eq!(
        primary
            .psql("postgres", "SELECT pg_is_in_recovery()")
            .unwrap(),
        "f"
    );

    // Same roles and passwords: SCRAM over TCP with the primary's superuser password.
    let reader = connect(&replica).await;
    wait_for_items(&reader, 100, "the replica to see the first 100 rows").await;
    // Rows written after the base backup arrive by streaming.
    writer
        .batch_execute("INSERT INTO items SELECT i, 'late' FROM generate_series(101, 150) i")
        .await
        .unwrap();
    wait_for_items(&reader, 150, "the replica to see rows written later").await;
    let name: String = reader
        .query_one("SELECT name FROM items WHERE id = 150", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "late");
    assert_eq!(streaming_walsenders(&writer).await, 1);

    // A hot standby is read-only.
    for sql in [
        "INSERT INTO items VALUES (1000, 'nope')",
        "CREATE TABLE other (id int)",
    ] {
        let err = reader.batch_execute(sql).await.unwrap_err();
        assert_eq!(sqlstate(&err).as_deref(), Some("25006"), "{sql}: {err:?}");
    }
    assert_eq!(item_count(&reader).await, Some(150));

    // Killing the replica leaves the primary working; it notices the standby is gone.
    replica.kill().unwrap();
    assert!(reader.query_one("SELECT 1", &[]).await.is_err());
    writer
        .batch_execute("INSERT INTO items VALUES (151, 'after the kill')")
        .await
        .unwrap();
    assert_eq!(item_count(&writer).await, Some(151));
    eventually(WAIT, "the primary to lose its walsender", || async {
        (streaming_walsenders(&writer).await == 0).then_some(())
    })
    .await;

    // Dropping the replica removes its files only.
    let replica_root = replica.socket_dir().to_path_buf();
    drop(replica);
    assert!(!replica_root.exists(), "{} is left", replica_root.display());
    assert!(primary.data_dir().exists());
    writer
        .batch_execute("INSERT INTO items VALUES (152, 'after the drop')")
        .await
        .unwrap();
    assert_eq!(item_count(&connect(&primary).await).await, Some(152));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_restarts_and_outlives_its_primary() {
    let primary = integration::cluster();
    let writer = connect(&primary).await;
    writer
        .batch_execute("CREATE TABLE items (id int); INSERT INTO items VALUES (1)")
        .await
        .unwrap();
    let replica = replica_of(&primary);

    // After a restart (same port) it streams again.
    replica.restart().unwrap();
    writer
        .batch_execute("INSERT INTO items VALUES (2)")
        .await
        .unwrap();
    let reader = connect(&replica).await;
    wait_for_items(&reader, 2, "the restarted replica to catch up").await;
    drop(reader);

    // Dropping the primary first neither hangs nor takes the replica down: it stays a
    // readable standby.
    let started = Instant::now();
    drop(writer);
    drop(primary);
    assert!(
        started.elapsed() < WAIT,
        "dropping the primary took {:?}",
        started.elapsed()
    );
    let reader = connect(&replica).await;
    assert_eq!(item_count(&reader).await, Some(2));
    assert_eq!(
        replica
            .psql("postgres", "SELECT pg_is_in_recovery()")
            .unwrap(),
        "t"
    );
    drop(reader);

    let started = Instant::now();
    let replica_root = replica.socket_dir().to_path_buf();
    drop(replica);
    assert!(
        started.elapsed() < WAIT,
        "dropping the replica took {:?}",
        started.elapsed()
    );
    assert!(!replica_root.exists(), "{} is left", replica_root.display());
}
