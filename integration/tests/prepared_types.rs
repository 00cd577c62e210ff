//! Prepared statements keep the parameter types their clients were told. A driver prepares
//! without declaring types, reads them from the Describe, and encodes binary parameters by them;
//! when pgdog later prepares the statement on a server whose schema would infer other types (a
//! resharding cutover widens integer keys to bigint), the types the client was told must stay.

use std::error::Error;
use std::time::Duration;

use integration::{eventually, server_backend_pids, Setup};
use tokio_postgres::types::{FromSql, Type};

const WAIT: Duration = Duration::from_secs(20);

/// An integer column read as whatever width the server sent: after the ALTER the client still
/// believes the column is `int4` (from its Describe), while new servers send `int8`.
#[derive(Debug, PartialEq, Eq)]
struct AnyInt(i64);

impl<'a> FromSql<'a> for AnyInt {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        match raw.len() {
            4 => Ok(AnyInt(i32::from_be_bytes(raw.try_into()?).into())),
            8 => Ok(AnyInt(i64::from_be_bytes(raw.try_into()?))),
            n => Err(format!("unexpected integer width {n}").into()),
        }
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::INT4 | Type::INT8)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_keep_described_types_on_servers_with_wider_columns() {
    let setup = Setup::new("default_pool_size = 2", "");
    let direct = setup.connect_direct().await;
    direct
        .batch_execute("CREATE TABLE t (id int4 PRIMARY KEY, v int4)")
        .await
        .unwrap();
    let client = setup.connect().await;
    let insert = client
        .prepare("INSERT INTO t VALUES ($1, $2)")
        .await
        .unwrap();
    let select = client
        .prepare("SELECT v FROM t WHERE id = $1")
        .await
        .unwrap();
    assert_eq!(insert.params(), &[Type::INT4, Type::INT4]);
    assert_eq!(select.params(), &[Type::INT4]);
    assert_eq!(client.execute(&insert, &[&1i32, &10i32]).await.unwrap(), 1);
    let row = client.query_one(&select, &[&1i32]).await.unwrap();
    assert_eq!(row.get::<_, AnyInt>(0), AnyInt(10));

    // What a cutover does: the same tables, with bigint keys, behind new server connections.
    direct
        .batch_execute("ALTER TABLE t ALTER id TYPE bigint, ALTER v TYPE bigint")
        .await
        .unwrap();
    let before = server_backend_pids(&direct).await;
    assert!(!before.is_empty());
    let admin = setup.admin().await;
    admin.simple_query("RECONNECT").await.unwrap();
    eventually(WAIT, "pgdog's old server connections to close", || async {
        let now = server_backend_pids(&direct).await;
        now.iter().all(|pid| !before.contains(pid)).then_some(())
    })
    .await;

    // The client's i32 parameters still fit: pgdog prepares the statements declaring int4.
    for id in 2..=4i32 {
        let inserted = client.execute(&insert, &[&id, &(id * 10)]).await;
        assert_eq!(
            inserted.unwrap_or_else(|e| panic!("insert {id}: {e:?}\n{}", setup.pgdog.log())),
            1
        );
        let row = client
            .query_one(&select, &[&id])
            .await
            .unwrap_or_else(|e| panic!("select {id}: {e:?}\n{}", setup.pgdog.log()));
        assert_eq!(row.get::<_, AnyInt>(0), AnyInt(i64::from(id) * 10));
    }
    let servers = server_backend_pids(&direct).await;
    assert!(servers.iter().all(|pid| !before.contains(pid)));
    let total: i64 = direct
        .query_one("SELECT sum(v)::bigint FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(total, 100);

    // A new client preparing the same SQL shares the global statement, pinned to int4: the
    // server describes what pgdog declared, and the client's parameters match it.
    let other = setup.connect().await;
    let select = other
        .prepare("SELECT v FROM t WHERE id = $1")
        .await
        .unwrap();
    assert_eq!(select.params(), &[Type::INT4]);
    let row = other.query_one(&select, &[&3i32]).await.unwrap();
    assert_eq!(row.get::<_, AnyInt>(0), AnyInt(30));
}
