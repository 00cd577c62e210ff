//! The data copy's tuple router against real PostgreSQL: a table with int4, int8, text, uuid,
//! numeric, jsonb, array and NULL columns is read with `COPY (SELECT ...) TO STDOUT (FORMAT
//! binary)`, routed by a bigint sharding key to two shards with its int4 column widened, and
//! each shard's stream is loaded with `COPY ... FROM STDIN (FORMAT binary)` into a table whose
//! int4 column is bigint. The loaded tables must hold exactly the source's rows, each on the
//! shard `shard_of` picks, and reading them back gives the digests the router recorded.

use bytes::Bytes;
use futures_util::{pin_mut, SinkExt, StreamExt};
use pgdog::cli::{load, Cli};
use pgdog::reshard::copy::digest::{CopyDigester, Digest};
use pgdog::reshard::copy::tuples::{TupleHashing, TuplePlan, TupleRouter};
use pgdog::router::plan::ShardingSchema;
use pgdog::router::sharding::{shard_of, KeyValue};
use tokio_postgres::{Client, NoTls};

use integration::schema_sync::ConfigDir;

const SHARDS: usize = 2;
const ROWS: i64 = 3_000;
/// Bytes a shard's buffer collects before it is sent as one CopyData.
const SEND_AT: usize = 16 << 10;
/// The copied columns, in the order of both tables.
const COLUMNS: &str = "id, small, name, uid, amount, doc, tags, note";

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// The placement rule of `copy_src` in a two-shard config, read from real config files.
fn plan(port: u16) -> TuplePlan {
    let dir = ConfigDir::new();
    let mut config = String::new();
    for shard in 0..SHARDS {
        config.push_str(&format!(
            "[[databases]]\nname = \"dest\"\nhost = \"127.0.0.1\"\nport = {port}\ndatabase_name = \"postgres\"\nshard = {shard}\n\n"
        ));
    }
    config.push_str(
        "[[sharded_tables]]\ndatabase = \"dest\"\nname = \"copy_src\"\ncolumn = \"id\"\ndata_type = \"bigint\"\n",
    );
    dir.write("pgdog.toml", &config);
    dir.write("users.toml", &integration::single_user_config("dest", ""));
    let loaded = load(&Cli {
        config: dir.path("pgdog.toml"),
        users: dir.path("users.toml"),
        command: None,
    })
    .unwrap_or_else(|e| panic!("config: {e}"));
    let rule = ShardingSchema::new(&loaded.config, "dest")
        .table_rule(None, "copy_src", &[])
        .expect("copy_src is sharded");
    TuplePlan {
        key: Some((0, rule)),
        widen: vec![1],
        shards: SHARDS,
        hashing: TupleHashing::Bytes(None),
    }
}

/// The digest of `table` read back with binary COPY.
async fn read_back(client: &Client, table: &str) -> Digest {
    let stream = client
        .copy_out(&format!(
            "COPY {table} ({COLUMNS}) TO STDOUT (FORMAT binary)"
        ))
        .await
        .unwrap();
    pin_mut!(stream);
    let mut digester = CopyDigester::new();
    while let Some(chunk) = stream.next().await {
        digester.feed(&chunk.unwrap()).unwrap();
    }
    digester.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_real_binary_copy() {
    let cluster = integration::cluster();
    let url = cluster.connection_string("postgres", "postgres", "postgres");
    let source = connect(&url).await;
    source
        .batch_execute(&format!(
            "CREATE TABLE copy_src (
                id bigint, small int4, name text, uid uuid, amount numeric, doc jsonb,
                tags text[], note text);
            INSERT INTO copy_src
            SELECT CASE WHEN g % 500 = 0 THEN NULL ELSE g END,
                   CASE WHEN g % 7 = 0 THEN NULL ELSE (g * 7919 - 1000000)::int4 END,
                   'row ' || g || repeat('x', g % 50),
                   md5(g::text)::uuid,
                   CASE WHEN g % 11 = 0 THEN NULL ELSE g * 1.25 - 1000.005 END,
                   jsonb_build_object('g', g, 'list', jsonb_build_array(g, 'a', NULL)),
                   ARRAY['t' || g, NULL, ''],
                   NULL
            FROM generate_series(1, {ROWS}) g;
            INSERT INTO copy_src VALUES
                (-1, -2147483648, '', NULL, 'NaN', '{{}}', '{{}}', NULL),
                (-2, 2147483647, 'żółć', '00000000-0000-0000-0000-000000000000', 0,
                 '[]', ARRAY[NULL]::text[], 'note');
            CREATE TABLE copy_dest_0 (
                id bigint, small bigint, name text, uid uuid, amount numeric, doc jsonb,
                tags text[], note text);
            CREATE TABLE copy_dest_1 (LIKE copy_dest_0);"
        ))
        .await
        .unwrap();
    let total = ROWS as u64 + 2;

    let mut router = TupleRouter::new(plan(cluster.port()));
    let mut destinations = Vec::new();
    for shard in 0..SHARDS {
        destinations.push(connect(&url).await);
        assert_eq!(router.digests()[shard], Digest::default());
    }
    let mut sinks = Vec::new();
    for (shard, client) in destinations.iter().enumerate() {
        let sink = client
            .copy_in::<_, Bytes>(&format!(
                "COPY copy_dest_{shard} ({COLUMNS}) FROM STDIN (FORMAT binary)"
            ))
            .await
            .unwrap();
        sinks.push(Box::pin(sink));
    }

    let stream = source
        .copy_out(&format!(
            "COPY (SELECT {COLUMNS} FROM copy_src) TO STDOUT (FORMAT binary)"
        ))
        .await
        .unwrap();
    pin_mut!(stream);
    let mut payloads = 0;
    while let Some(chunk) = stream.next().await {
        router.feed(&chunk.unwrap()).unwrap();
        payloads += 1;
        for (shard, sink) in sinks.iter_mut().enumerate() {
            if let Some(bytes) = router.take(shard, SEND_AT) {
                sink.send(bytes).await.unwrap();
            }
        }
    }
    router.finish().unwrap();
    assert_eq!(router.rows(), total);
    assert!(router.bytes() > 0);
    assert!(payloads > 1);
    let mut loaded = Vec::new();
    for (shard, mut sink) in sinks.into_iter().enumerate() {
        if let Some(bytes) = router.take(shard, 0) {
            sink.send(bytes).await.unwrap();
        }
        loaded.push(sink.as_mut().finish().await.unwrap());
    }
    let digests = router.digests().to_vec();
    assert_eq!(
        loaded,
        digests.iter().map(|digest| digest.rows).collect::<Vec<_>>()
    );
    assert_eq!(loaded.iter().sum::<u64>(), total);
    assert!(loaded.iter().all(|&rows| rows > 0), "{loaded:?}");

    // Every row on the shard of its key (NULL keys on shard 0).
    for (shard, client) in destinations.iter().enumerate() {
        let rows = client
            .query(&format!("SELECT id FROM copy_dest_{shard}"), &[])
            .await
            .unwrap();
        for row in rows {
            let id: Option<i64> = row.get(0);
            let expected = id.map_or(0, |id| shard_of(&KeyValue::Int(id), SHARDS));
            assert_eq!(shard, expected, "id {id:?}");
        }
    }

    // Exactly the source's rows, with the int4 column as bigint.
    let difference = "SELECT count(*) FROM (
            (SELECT id, small::bigint, name, uid, amount, doc, tags, note FROM copy_src
             EXCEPT ALL
             SELECT * FROM (SELECT * FROM copy_dest_0 UNION ALL SELECT * FROM copy_dest_1) d)
            UNION ALL
            (SELECT * FROM (SELECT * FROM copy_dest_0 UNION ALL SELECT * FROM copy_dest_1) d
             EXCEPT ALL
             SELECT id, small::bigint, name, uid, amount, doc, tags, note FROM copy_src)) x";
    let differing: i64 = source.query_one(difference, &[]).await.unwrap().get(0);
    assert_eq!(differing, 0);
    let types: Vec<String> = source
        .query(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute
             WHERE attrelid = 'copy_dest_1'::regclass AND attname = 'small'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(types, ["bigint"]);

    // Reading each shard back gives the digest of what was sent to it.
    for (shard, digest) in digests.iter().enumerate() {
        let read = read_back(&source, &format!("copy_dest_{shard}")).await;
        assert_eq!(read, *digest, "shard {shard}");
    }
    // And the source itself differs (its int4 column is 4 bytes wide).
    let mut merged = Digest::default();
    digests.iter().for_each(|digest| merged.merge(*digest));
    let unwidened = read_back(&source, "copy_src").await;
    assert_eq!(unwidened.rows, merged.rows);
    assert_ne!(unwidened.sum, merged.sum);
}
