//! Replicas behind pgdog: reads load balanced over real streaming replicas, writes and
//! transactions on the primary, health checks and bans, and a replica killed under read load
//! without errors for new queries.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use integration::{
    eventually, free_port, single_user_config, LocalCluster, PgdogProcess, ADMIN_PASSWORD,
};
use tokio_postgres::SimpleQueryMessage;

const WAIT: Duration = Duration::from_secs(30);

/// A primary, its streaming replicas, and pgdog serving them as database `app`.
struct Replicated {
    pgdog: PgdogProcess,
    replicas: Vec<LocalCluster>,
    primary: LocalCluster,
}

impl Replicated {
    fn start(replicas: usize, general: &str) -> Replicated {
        let primary = integration::cluster();
        primary
            .psql(
                "postgres",
                "CREATE TABLE items (id bigint PRIMARY KEY); INSERT INTO items SELECT generate_series(1, 100)",
            )
            .unwrap();
        let replicas: Vec<LocalCluster> = (0..replicas)
            .map(|_| {
                primary
                    .start_replica()
                    .unwrap_or_else(|e| panic!("cannot start a replica: {e}"))
            })
            .collect();
        let port = free_port();
        let mut config = format!(
            "[general]\nhost = \"127.0.0.1\"\nport = {port}\nmin_pool_size = 0\n{general}\n"
        );
        for (role, cluster) in
            std::iter::once(("primary", &primary)).chain(replicas.iter().map(|r| ("replica", r)))
        {
            config.push_str(&format!(
                "\n[[databases]]\nname = \"app\"\nhost = \"127.0.0.1\"\nport = {}\n\
                 database_name = \"postgres\"\nrole = \"{role}\"\n",
                cluster.port()
            ));
        }
        let pgdog = PgdogProcess::start(&config, &single_user_config("app", ""), port);
        Replicated {
            pgdog,
            replicas,
            primary,
        }
    }

    async fn connect(&self) -> tokio_postgres::Client {
        self.pgdog
            .connect("postgres", "postgres", "app")
            .await
            .unwrap_or_else(|e| panic!("connect: {e}\n{}", self.pgdog.log()))
    }

    async fn admin(&self) -> tokio_postgres::Client {
        self.pgdog
            .connect("admin", ADMIN_PASSWORD, "admin")
            .await
            .unwrap_or_else(|e| panic!("admin: {e}\n{}", self.pgdog.log()))
    }
}

/// The single value a simple query returned.
async fn value(
    client: &tokio_postgres::Client,
    sql: &str,
) -> Result<String, tokio_postgres::Error> {
    let messages = client.simple_query(sql).await?;
    Ok(messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
            _ => None,
        })
        .unwrap_or_default())
}

/// Rows of `SHOW BANS`: (port, reason).
async fn bans(admin: &tokio_postgres::Client) -> Vec<(String, String)> {
    admin
        .simple_query("SHOW BANS")
        .await
        .unwrap()
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some((
                row.get("port").unwrap_or_default().to_string(),
                row.get("reason").unwrap_or_default().to_string(),
            )),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_to_replicas_and_everything_else_to_the_primary() {
    let setup = Replicated::start(
        2,
        "load_balancing_strategy = \"round_robin\"\nread_write_split = \"exclude_primary\"",
    );
    let client = setup.connect().await;
    let replica_ports: Vec<String> = setup
        .replicas
        .iter()
        .map(|r| r.port().to_string())
        .collect();

    // Simple protocol reads rotate over both replicas.
    let mut seen = std::collections::HashSet::new();
    for _ in 0..6 {
        seen.insert(value(&client, "SELECT inet_server_port()").await.unwrap());
    }
    assert_eq!(
        value(&client, "SELECT pg_is_in_recovery()").await.unwrap(),
        "t"
    );
    assert_eq!(seen.len(), 2, "reads should use both replicas: {seen:?}");
    assert!(seen.iter().all(|p| replica_ports.contains(p)), "{seen:?}");

    // Extended protocol, with a named prepared statement reused.
    let statement = client
        .prepare("SELECT count(*) FROM items WHERE id > $1")
        .await
        .unwrap();
    for _ in 0..4 {
        let row = client.query_one(&statement, &[&0i64]).await.unwrap();
        assert_eq!(row.get::<_, i64>(0), 100);
    }
    let in_recovery: bool = client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(in_recovery);

    // Writes, functions that write, locking reads and transactions go to the primary.
    client
        .simple_query("INSERT INTO items VALUES (1000)")
        .await
        .unwrap();
    client
        .execute("INSERT INTO items VALUES ($1)", &[&1001i64])
        .await
        .unwrap();
    assert_eq!(
        value(&client, "SELECT id FROM items WHERE id = 1000 FOR UPDATE")
            .await
            .unwrap(),
        "1000"
    );
    assert_eq!(
        value(&client, "SELECT txid_current() > 0").await.unwrap(),
        "t"
    );
    client.batch_execute("BEGIN").await.unwrap();
    assert_eq!(
        value(&client, "SELECT pg_is_in_recovery()").await.unwrap(),
        "f"
    );
    client.batch_execute("COMMIT").await.unwrap();

    // Replicas catch up with the writes.
    eventually(WAIT, "the replicas to see the insert", || async {
        (value(&client, "SELECT count(*) FROM items").await.unwrap() == "102").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_is_banned_and_new_reads_never_fail() {
    let setup = Replicated::start(
        2,
        "load_balancing_strategy = \"round_robin\"\nread_write_split = \"exclude_primary\"\n\
         ban_timeout = 600000",
    );
    let stop = Arc::new(AtomicBool::new(false));
    let killed_at: Arc<std::sync::Mutex<Option<Instant>>> = Arc::default();
    let reads = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let client = setup.connect().await;
        let (stop, killed_at, reads) = (stop.clone(), killed_at.clone(), reads.clone());
        workers.push(tokio::spawn(async move {
            let mut late_errors = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let result = client.query_one("SELECT count(*) FROM items", &[]).await;
                reads.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = result {
                    // Only queries started after the kill completed must never fail.
                    let killed = *killed_at.lock().unwrap();
                    if killed.is_some_and(|k| started > k) {
                        late_errors.push(format!("{e:?}"));
                    }
                }
            }
            late_errors
        }));
    }
    eventually(WAIT, "reads to flow", || async {
        (reads.load(Ordering::Relaxed) > 50).then_some(())
    })
    .await;

    setup.replicas[0].kill().unwrap();
    *killed_at.lock().unwrap() = Some(Instant::now());
    let after_first = reads.load(Ordering::Relaxed);
    eventually(WAIT, "reads to continue after the kill", || async {
        (reads.load(Ordering::Relaxed) > after_first + 100).then_some(())
    })
    .await;
    let admin = setup.admin().await;
    let banned = bans(&admin).await;
    assert_eq!(banned.len(), 1, "{banned:?}");
    assert_eq!(banned[0].0, setup.replicas[0].port().to_string());

    // With every replica down, reads fall back to the primary.
    setup.replicas[1].kill().unwrap();
    *killed_at.lock().unwrap() = Some(Instant::now());
    let after_second = reads.load(Ordering::Relaxed);
    eventually(WAIT, "reads to continue on the primary", || async {
        (reads.load(Ordering::Relaxed) > after_second + 100).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let late_errors = worker.await.unwrap();
        assert!(
            late_errors.is_empty(),
            "new reads failed: {late_errors:?}\nprimary {}, replicas {} {}\n{}",
            setup.primary.port(),
            setup.replicas[0].port(),
            setup.replicas[1].port(),
            setup.pgdog.log()
        );
    }
    assert_eq!(bans(&admin).await.len(), 2);
    let client = setup.connect().await;
    assert_eq!(
        value(&client, "SELECT pg_is_in_recovery()").await.unwrap(),
        "f"
    );
    assert_eq!(
        value(&client, "SELECT inet_server_port()").await.unwrap(),
        setup.primary.port().to_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_ban_an_idle_dead_replica_until_ban_timeout() {
    let setup = Replicated::start(
        1,
        "idle_healthcheck_interval = 200\nidle_healthcheck_delay = 0\nhealthcheck_timeout = 500\n\
         ban_timeout = 1500",
    );
    let admin = setup.admin().await;
    let client = setup.connect().await;
    value(&client, "SELECT 1").await.unwrap();
    assert!(bans(&admin).await.is_empty());

    setup.replicas[0].stop().unwrap();
    eventually(
        WAIT,
        "the health check to ban the stopped replica",
        || async {
            let banned = bans(&admin).await;
            (banned.len() == 1 && banned[0].0 == setup.replicas[0].port().to_string()).then_some(())
        },
    )
    .await;
    // Reads keep working on the primary meanwhile.
    assert_eq!(
        value(&client, "SELECT pg_is_in_recovery()").await.unwrap(),
        "f"
    );

    // Back up: once the ban expires, reads return to the replica.
    setup.replicas[0].restart().unwrap();
    eventually(WAIT, "reads to return to the replica", || async {
        (value(&client, "SELECT pg_is_in_recovery()").await.unwrap() == "t").then_some(())
    })
    .await;
    assert!(bans(&admin).await.is_empty());
}
