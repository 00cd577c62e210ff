//! pgdog's process lifecycle: configuration reload on SIGHUP, and orderly shutdown on SIGTERM /
//! SIGINT with clients in and out of transactions.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use integration::{
    error_message, eventually, single_database_config, single_user_config, sqlstate, Setup,
};
use tokio::time::timeout;

/// Generous bound for things that should take well under a second.
const WAIT: Duration = Duration::from_secs(20);

/// Waits until `needle` occurs at least `count` times in pgdog's log.
async fn wait_for_log(setup: &Setup, needle: &str, count: usize) -> String {
    eventually(WAIT, &format!("{needle:?} in the pgdog log"), || async {
        let log = setup.pgdog.log();
        (log.matches(needle).count() >= count).then_some(log)
    })
    .await
}

/// The harness's config for `setup` with `general` in `[general]`, plus database `app2` on
/// the cluster's database `second` when `with_app2`.
fn config_files(setup: &Setup, general: &str, with_app2: bool) -> (String, String) {
    let mut config = single_database_config(&setup.cluster, "app", setup.pgdog.port(), general);
    let mut users = single_user_config("app", "");
    if with_app2 {
        config.push_str(&format!(
            "\n[[databases]]\nname = \"app2\"\nhost = \"127.0.0.1\"\nport = {}\ndatabase_name = \"second\"\n",
            setup.cluster.port()
        ));
        users.push_str(&integration::user_entry("app2", ""));
    }
    (config, users)
}

/// A client that runs a query every 20 ms until `stop` is set; `runs` counts its successful
/// queries and the task returns the errors.
struct Busy {
    stop: Arc<AtomicBool>,
    runs: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl Busy {
    fn start(client: tokio_postgres::Client) -> Busy {
        let stop = Arc::new(AtomicBool::new(false));
        let runs = Arc::new(AtomicUsize::new(0));
        let task = {
            let (stop, runs) = (stop.clone(), runs.clone());
            tokio::spawn(async move {
                let mut errors = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match client.query_one("SELECT 1", &[]).await {
                        Ok(_) => {
                            runs.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => errors.push(format!("{e:?}")),
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                errors
            })
        };
        Busy { stop, runs, task }
    }

    /// Waits for `n` more successful queries (or any failure), then stops; returns the errors.
    async fn finish_after(self, n: usize) -> Vec<String> {
        let target = self.runs.load(Ordering::Relaxed) + n;
        let (runs, task) = (&self.runs, &self.task);
        eventually(WAIT, "the busy client to run more queries", || async {
            (runs.load(Ordering::Relaxed) >= target || task.is_finished()).then_some(())
        })
        .await;
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reload_applies_new_config_without_disturbing_clients() {
    let setup = Setup::new("default_pool_size = 1", "");
    setup.cluster.create_database("second").unwrap();

    // Before the reload there is no app2.
    let err = setup
        .pgdog
        .connect("postgres", "postgres", "app2")
        .await
        .expect_err("app2 should not exist before the reload");
    assert_eq!(sqlstate(&err).as_deref(), Some("3D000"), "{err:?}");

    let idle = setup.connect().await;
    idle.batch_execute("CREATE TABLE reload_test (id int)")
        .await
        .unwrap();
    let busy = Busy::start(setup.connect().await);

    let (config, users) = config_files(&setup, "default_pool_size = 3", true);
    setup.pgdog.write_config(&config, &users);
    setup.pgdog.signal(libc::SIGHUP);
    wait_for_log(&setup, "configuration reloaded", 1).await;
    // The busy client went on querying through the reload, and on the new pools after it.
    let errors = busy.finish_after(5).await;
    assert!(errors.is_empty(), "errors across the reload: {errors:#?}");

    idle.batch_execute("INSERT INTO reload_test VALUES (1)")
        .await
        .expect("client connected before the reload failed");

    // The new database is reachable by a new client.
    let app2 = match setup.pgdog.connect("postgres", "postgres", "app2").await {
        Ok(client) => client,
        Err(e) => panic!(
            "app2 unreachable after reload: {e:?}\n{}",
            setup.pgdog.log()
        ),
    };
    let db: String = app2
        .query_one("SELECT current_database()::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(db, "second");

    // The pool size is now 3: three transactions at once get three servers; one of them
    // from a client connected before the reload.
    let mut holders = vec![idle];
    for _ in 0..2 {
        holders.push(setup.connect().await);
    }
    let mut pids = std::collections::HashSet::new();
    for (i, holder) in holders.iter().enumerate() {
        holder.batch_execute("BEGIN").await.unwrap();
        let pid = match timeout(WAIT, holder.query_one("SELECT pg_backend_pid()", &[])).await {
            Ok(Ok(row)) => row.get::<_, i32>(0),
            Ok(Err(e)) => panic!("transaction {i} could not get a server after the reload: {e:?}"),
            Err(_) => panic!("transaction {i} waits for a server: pool size still 1?"),
        };
        pids.insert(pid);
    }
    assert_eq!(pids.len(), 3, "expected 3 distinct servers, got {pids:?}");
    for holder in &holders {
        holder.batch_execute("COMMIT").await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reload_keeps_open_transactions_and_waiting_clients() {
    let setup = Setup::new("default_pool_size = 1\ncheckout_timeout = 10000", "");
    let holder = setup.connect().await;
    let waiter = setup.connect().await;
    // Created in its own statement: inside the BEGIN below it would be uncommitted too.
    holder
        .batch_execute("CREATE TABLE reload_tx (id int)")
        .await
        .unwrap();
    holder
        .batch_execute("BEGIN; INSERT INTO reload_tx VALUES (1)")
        .await
        .unwrap();
    // The waiter needs the only server, which the holder keeps in its transaction.
    let waiting = tokio::spawn(async move {
        let result = waiter
            .query_one("SELECT count(*) FROM reload_tx", &[])
            .await
            .map(|row| row.get::<_, i64>(0));
        (waiter, result)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "the waiter should be waiting for a server"
    );

    let (config, users) = config_files(
        &setup,
        "default_pool_size = 3\ncheckout_timeout = 10000",
        false,
    );
    setup.pgdog.write_config(&config, &users);
    setup.pgdog.signal(libc::SIGHUP);
    wait_for_log(&setup, "configuration reloaded", 1).await;

    // The waiting client gets a server (from the new, larger pool) instead of an error.
    let (waiter, result) = timeout(WAIT, waiting).await.expect("waiter hung").unwrap();
    match result {
        Ok(rows) => assert_eq!(rows, 0, "the uncommitted row must not be visible"),
        Err(e) => panic!("client waiting for a server during the reload failed: {e:?}"),
    }
    // The transaction open across the reload goes on and commits.
    holder
        .batch_execute("INSERT INTO reload_tx VALUES (2); COMMIT")
        .await
        .expect("transaction open across the reload failed");
    let rows: i64 = waiter
        .query_one("SELECT count(*) FROM reload_tx", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_broken_config_keeps_the_old_one() {
    let setup = Setup::new("default_pool_size = 2", "");
    setup.cluster.create_database("second").unwrap();
    let client = setup.connect().await;
    let busy = Busy::start(setup.connect().await);

    // An unknown key, and a database that must not appear.
    let (config, users) = config_files(&setup, "default_pool_size = 2\nbogus_reload_key = 1", true);
    setup.pgdog.write_config(&config, &users);
    setup.pgdog.signal(libc::SIGHUP);
    let log = wait_for_log(&setup, "reload failed", 1).await;
    let line = log
        .lines()
        .find(|l| l.contains("reload failed"))
        .unwrap_or_default();
    assert!(
        line.contains("bogus_reload_key"),
        "the log should name the broken key: {line}"
    );
    assert!(!log.contains("configuration reloaded"), "{log}");

    // Clients keep working, on the old configuration.
    client.query_one("SELECT 1", &[]).await.unwrap();
    let fresh = setup.connect().await;
    fresh.query_one("SELECT 1", &[]).await.unwrap();
    let err = setup
        .pgdog
        .connect("postgres", "postgres", "app2")
        .await
        .expect_err("app2 from the broken config must not exist");
    assert_eq!(sqlstate(&err).as_deref(), Some("3D000"), "{err:?}");

    // Fixing the file and reloading again works.
    let (config, users) = config_files(&setup, "default_pool_size = 2", true);
    setup.pgdog.write_config(&config, &users);
    setup.pgdog.signal(libc::SIGHUP);
    wait_for_log(&setup, "configuration reloaded", 1).await;
    let app2 = setup
        .pgdog
        .connect("postgres", "postgres", "app2")
        .await
        .expect("app2 after the fixed reload");
    app2.query_one("SELECT 1", &[]).await.unwrap();
    client.query_one("SELECT 1", &[]).await.unwrap();

    let errors = busy.finish_after(5).await;
    assert!(errors.is_empty(), "errors across the reloads: {errors:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_open_transactions_commit_then_exits_cleanly() {
    // Several clients, so that (with pgdog's default 2 workers) they are spread over the
    // worker threads: every one of them must be able to finish its transaction.
    const CLIENTS: i32 = 6;
    let mut setup = Setup::new("", "");
    let direct = setup.connect_direct().await;
    direct
        .batch_execute("CREATE TABLE shutdown_test (id int)")
        .await
        .unwrap();
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let (client, connection) = setup.connect_watched().await;
        client.execute("BEGIN", &[]).await.unwrap();
        client
            .execute("INSERT INTO shutdown_test VALUES ($1)", &[&i])
            .await
            .unwrap();
        clients.push((client, connection));
    }

    setup.pgdog.signal(libc::SIGTERM);
    wait_for_log(&setup, "SIGTERM received", 1).await;
    wait_for_log(&setup, "shutting down", 1).await;

    // New connections are refused.
    for _ in 0..3 {
        let attempt = timeout(WAIT, setup.pgdog.connect("postgres", "postgres", "app"))
            .await
            .expect("connecting during shutdown hung");
        assert!(attempt.is_err(), "a new client got in during shutdown");
    }

    // Open transactions go on and commit.
    for (i, (client, _)) in clients.iter().enumerate() {
        let i = i as i32;
        if let Err(e) = client
            .execute("INSERT INTO shutdown_test VALUES ($1)", &[&(i + 100)])
            .await
        {
            panic!(
                "client {i}: statement in an open transaction failed after SIGTERM: {e:?}\n{}",
                setup.pgdog.log()
            );
        }
        if let Err(e) = client.batch_execute("COMMIT").await {
            panic!("client {i}: COMMIT after SIGTERM failed: {e:?}");
        }
    }
    // ...and then they are disconnected.
    for (i, (client, connection)) in clients.into_iter().enumerate() {
        let ended = timeout(WAIT, connection)
            .await
            .unwrap_or_else(|_| panic!("client {i} was not disconnected after its COMMIT"))
            .unwrap();
        if let Err(e) = ended {
            assert!(
                e.as_db_error().is_none() || sqlstate(&e).as_deref() == Some("57P01"),
                "client {i}: unexpected error at disconnect: {e:?}"
            );
        }
        assert!(client.is_closed());
    }
    let code = setup.pgdog.wait_exit(WAIT);
    assert_eq!(code, Some(0), "pgdog exit code\n{}", setup.pgdog.log());

    let rows: i64 = direct
        .query_one("SELECT count(*) FROM shutdown_test", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 2 * CLIENTS as i64, "committed rows");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_without_clients_exits_cleanly() {
    let mut setup = Setup::new("", "");
    let client = setup.connect().await;
    client.query_one("SELECT 1", &[]).await.unwrap();
    drop(client);
    setup.pgdog.signal(libc::SIGINT);
    let code = setup.pgdog.wait_exit(WAIT);
    assert_eq!(code, Some(0), "pgdog exit code\n{}", setup.pgdog.log());
    let log = setup.pgdog.log();
    assert!(log.contains("SIGINT received"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_timeout_ends_transactions_that_never_finish() {
    // Several clients so that they land on every worker thread.
    const CLIENTS: i32 = 4;
    let mut setup = Setup::new("shutdown_timeout = 500", "");
    let direct = setup.connect_direct().await;
    direct
        .batch_execute("CREATE TABLE forever (id int)")
        .await
        .unwrap();
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let (client, connection) = setup.connect_watched().await;
        client
            .batch_execute(&format!("BEGIN; INSERT INTO forever VALUES ({i})"))
            .await
            .unwrap();
        clients.push((client, connection));
    }
    let mut lost = 0;

    setup.pgdog.signal(libc::SIGTERM);
    wait_for_log(&setup, "shutting down", 1).await;
    // pgdog waits for the transactions: they still work right after the signal.
    for (i, (client, _)) in clients.iter().enumerate() {
        if let Err(e) = client.query_one("SELECT 1", &[]).await {
            lost += 1;
            eprintln!("client {i}: query in an open transaction failed after SIGTERM: {e:?}");
        }
    }
    assert_eq!(
        lost,
        0,
        "clients in a transaction were cut off before shutdown_timeout\n{}",
        setup.pgdog.log()
    );

    // Nobody commits: pgdog gives up after shutdown_timeout and exits cleanly.
    let code = setup.pgdog.wait_exit(WAIT);
    assert_eq!(code, Some(0), "pgdog exit code\n{}", setup.pgdog.log());
    let log = setup.pgdog.log();
    assert!(
        log.contains("shutdown_timeout reached"),
        "the log should say shutdown_timeout ended the wait:\n{log}"
    );
    for (i, (client, connection)) in clients.into_iter().enumerate() {
        timeout(WAIT, connection)
            .await
            .unwrap_or_else(|_| panic!("client {i} still connected after pgdog exited"))
            .unwrap()
            .ok();
        let err = client.query_one("SELECT 1", &[]).await.unwrap_err();
        assert!(client.is_closed(), "client {i}: {}", error_message(&err));
    }
    // The unfinished transactions were rolled back.
    eventually(WAIT, "the abandoned transactions to end", || async {
        let open: i64 = direct
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        (open == 0).then_some(())
    })
    .await;
    let rows: i64 = direct
        .query_one("SELECT count(*) FROM forever", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 0, "uncommitted rows became visible");
}
