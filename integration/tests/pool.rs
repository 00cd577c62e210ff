//! Server connection pools through a real pgdog: checkout timeout, broken and restarted
//! servers, minimum/idle/lifetime upkeep, query and client idle timeouts, and many clients on
//! a small pool.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use integration::{error_message, eventually, server_backend_pids, sqlstate, Setup};
use tokio::time::timeout;

/// Generous bound for things that should take well under a second.
const WAIT: Duration = Duration::from_secs(20);

async fn backend_pid(client: &tokio_postgres::Client) -> i32 {
    client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

async fn select_one(client: &tokio_postgres::Client) -> Result<i32, tokio_postgres::Error> {
    Ok(client.query_one("SELECT 1", &[]).await?.get(0))
}

/// Waits until pgdog has exactly `n` server connections open on the cluster.
async fn wait_for_server_count(direct: &tokio_postgres::Client, n: usize, what: &str) {
    eventually(WAIT, what, || async {
        (server_backend_pids(direct).await.len() == n).then_some(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_timeout_fails_the_query_but_keeps_the_client() {
    let setup = Setup::new("default_pool_size = 1\ncheckout_timeout = 300", "");
    let a = setup.connect().await;
    let b = setup.connect().await;
    a.batch_execute("BEGIN").await.unwrap();
    let a_pid = backend_pid(&a).await;

    // Extended protocol (tokio-postgres prepares, then executes).
    let err = timeout(WAIT, b.query_one("SELECT 1", &[]))
        .await
        .expect("checkout_timeout was not enforced")
        .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("53300"), "{err:?}");
    assert!(
        error_message(&err).contains("checkout_timeout"),
        "message should mention checkout_timeout: {err:?}"
    );
    // Simple protocol, same answer; the connection is still in sync.
    let err = timeout(WAIT, b.simple_query("SELECT 1"))
        .await
        .expect("checkout_timeout was not enforced")
        .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("53300"), "{err:?}");

    a.batch_execute("COMMIT").await.unwrap();
    assert_eq!(select_one(&b).await.unwrap(), 1);
    assert_eq!(backend_pid(&b).await, a_pid, "the pool has one server");
    assert!(!b.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_idle_servers_are_replaced_without_client_errors() {
    let setup = Setup::new("default_pool_size = 3", "");
    let direct = setup.connect_direct().await;
    let client = setup.connect().await;
    // Fill the pool: three transactions open at once use three servers.
    let mut holders = Vec::new();
    for _ in 0..3 {
        let holder = setup.connect().await;
        holder.batch_execute("BEGIN").await.unwrap();
        backend_pid(&holder).await;
        holders.push(holder);
    }
    for holder in &holders {
        holder.batch_execute("COMMIT").await.unwrap();
    }
    for _ in 0..5 {
        select_one(&client).await.unwrap();
    }
    let before = server_backend_pids(&direct).await;
    assert_eq!(before.len(), 3, "pool should hold 3 idle servers");

    let terminated: Vec<bool> = direct
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(terminated, vec![true; 3]);
    wait_for_server_count(&direct, 0, "terminated backends to exit").await;

    // The same client, no error at all.
    for i in 0..10 {
        let pid = match client.query_one("SELECT pg_backend_pid()", &[]).await {
            Ok(row) => row.get::<_, i32>(0),
            Err(e) => panic!("query {i} after pg_terminate_backend failed: {e:?}"),
        };
        assert!(!before.contains(&pid), "served by a terminated backend");
    }
    client.batch_execute("SELECT 1; SELECT 2").await.unwrap();
    // The other already-connected clients, at once, and new clients.
    let mut tasks = Vec::new();
    for holder in holders {
        tasks.push(tokio::spawn(async move {
            holder.batch_execute("BEGIN; SELECT 1; COMMIT").await
        }));
    }
    for task in tasks {
        task.await
            .unwrap()
            .expect("already-connected client failed");
    }
    let fresh = setup.connect().await;
    assert_eq!(select_one(&fresh).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_is_invisible_to_the_next_query() {
    let setup = Setup::new("default_pool_size = 3", "");
    let existing = setup.connect().await;
    let mut others = Vec::new();
    for _ in 0..3 {
        let other = setup.connect().await;
        other.batch_execute("BEGIN").await.unwrap();
        backend_pid(&other).await;
        others.push(other);
    }
    for other in &others {
        other.batch_execute("COMMIT").await.unwrap();
    }
    let pid_before = backend_pid(&existing).await;

    setup
        .cluster
        .restart()
        .unwrap_or_else(|e| panic!("restart failed: {e}"));

    // No retry: the very first query after the restart must work.
    let pid_after = match existing.query_one("SELECT pg_backend_pid()", &[]).await {
        Ok(row) => row.get::<_, i32>(0),
        Err(e) => panic!(
            "first query after restart failed: {e:?}\npgdog log:\n{}",
            setup.pgdog.log()
        ),
    };
    assert_ne!(pid_before, pid_after);
    for i in 0..5 {
        if let Err(e) = existing.batch_execute("BEGIN; SELECT 1; COMMIT").await {
            panic!("query {i} after restart failed: {e:?}");
        }
    }
    // The other connected clients, concurrently: each must succeed the first time.
    let mut tasks = Vec::new();
    for other in others {
        tasks.push(tokio::spawn(async move { select_one(&other).await }));
    }
    for task in tasks {
        task.await
            .unwrap()
            .expect("already-connected client failed after restart");
    }
    let fresh = setup.connect().await;
    assert_eq!(select_one(&fresh).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_down_errors_name_the_server_and_pgdog_recovers() {
    let setup = Setup::new("connect_timeout = 2000", "");
    let address = format!("127.0.0.1:{}", setup.cluster.port());
    let existing = setup.connect().await;
    select_one(&existing).await.unwrap();

    setup.cluster.stop().unwrap();

    let err = timeout(WAIT, existing.query_one("SELECT 1", &[]))
        .await
        .expect("query with the server down hung")
        .unwrap_err();
    let state = sqlstate(&err);
    assert!(
        matches!(state.as_deref(), Some("08001") | Some("08006")),
        "expected SQLSTATE 08001 or 08006, got {state:?}: {err:?}"
    );
    assert!(
        error_message(&err).contains(&address),
        "error should name {address}: {err:?}"
    );
    assert!(!existing.is_closed(), "the client should stay connected");

    let login = timeout(WAIT, setup.pgdog.connect("postgres", "postgres", "app"))
        .await
        .expect("login with the server down hung");
    match login {
        Ok(client) => {
            let first_query = client.query_one("SELECT 1", &[]).await.map(|_| ());
            panic!(
                "a new client logged in while the server at {address} is down; expected the \
                 login to fail naming the server (its first query then returned {first_query:?})"
            )
        }
        Err(err) => assert!(
            error_message(&err).contains(&address),
            "login error should name {address}: {err:?}"
        ),
    }

    setup.cluster.restart().unwrap();
    // The first query after the server came back must work.
    match existing.query_one("SELECT 1", &[]).await {
        Ok(row) => assert_eq!(row.get::<_, i32>(0), 1),
        Err(e) => panic!("first query after the server came back failed: {e:?}"),
    }
    let fresh = setup.connect().await;
    assert_eq!(select_one(&fresh).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_fails_naming_the_server_when_pgdog_never_reached_it() {
    let setup = Setup::new("connect_timeout = 2000", "");
    let address = format!("127.0.0.1:{}", setup.cluster.port());
    setup.cluster.stop().unwrap();
    let login = timeout(WAIT, setup.pgdog.connect("postgres", "postgres", "app"))
        .await
        .expect("login with the server down hung");
    let err = match login {
        Ok(_) => panic!("logged in although the server at {address} is down"),
        Err(err) => err,
    };
    assert!(
        error_message(&err).contains(&address),
        "login error should name {address}: {err:?}"
    );
    setup.cluster.restart().unwrap();
    let client = setup.connect().await;
    assert_eq!(select_one(&client).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_pool_size_opens_connections_without_clients() {
    // [general] min_pool_size is set to 0 by the harness; the user entry overrides it.
    let setup = Setup::new("default_pool_size = 5", "min_pool_size = 2");
    let direct = setup.connect_direct().await;
    wait_for_server_count(&direct, 2, "min_pool_size connections").await;
    // A few more maintenance ticks neither close them nor open more.
    let first = server_backend_pids(&direct).await;
    let deadline = std::time::Instant::now() + Duration::from_millis(2500);
    while std::time::Instant::now() < deadline {
        let pids = server_backend_pids(&direct).await;
        assert_eq!(
            pids, first,
            "min_pool_size connections changed with no clients"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_closes_idle_server_connections() {
    let setup = Setup::new("default_pool_size = 5\nidle_timeout = 300", "");
    let direct = setup.connect_direct().await;
    let mut clients = Vec::new();
    for _ in 0..4 {
        let client = setup.connect().await;
        client.batch_execute("BEGIN").await.unwrap();
        backend_pid(&client).await;
        clients.push(client);
    }
    assert_eq!(server_backend_pids(&direct).await.len(), 4);
    for client in &clients {
        client.batch_execute("COMMIT").await.unwrap();
    }
    wait_for_server_count(&direct, 0, "idle server connections to be closed").await;
    // Clients are unaffected: the next query opens a new server connection.
    for client in &clients {
        assert_eq!(select_one(client).await.unwrap(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_lifetime_replaces_old_connections() {
    let setup = Setup::new("default_pool_size = 1\nserver_lifetime = 300", "");
    let direct = setup.connect_direct().await;
    let client = setup.connect().await;
    let first = backend_pid(&client).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The maintenance tick (every second) closes the expired connection even with no client.
    eventually(WAIT, "the expired server connection to close", || async {
        (!server_backend_pids(&direct).await.contains(&first)).then_some(())
    })
    .await;
    let second = backend_pid(&client).await;
    assert_ne!(
        first, second,
        "server_lifetime did not replace the connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_timeout_cancels_the_query_and_keeps_the_client() {
    let setup = Setup::new("query_timeout = 500", "");
    let client = setup.connect().await;
    let err = timeout(WAIT, client.simple_query("SELECT pg_sleep(60)"))
        .await
        .expect("query_timeout did not cancel pg_sleep(60)")
        .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("57014"), "{err:?}");
    // Extended protocol too.
    let err = timeout(WAIT, client.query("SELECT pg_sleep(60)", &[]))
        .await
        .expect("query_timeout did not cancel pg_sleep(60)")
        .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("57014"), "{err:?}");
    assert_eq!(select_one(&client).await.unwrap(), 1);
    client
        .batch_execute("BEGIN; SELECT pg_sleep(0.01); COMMIT")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_idle_timeout_disconnects_only_idle_clients() {
    let setup = Setup::new("client_idle_timeout = 500", "");
    let (idle, idle_connection) = setup.connect_watched().await;
    select_one(&idle).await.unwrap();
    // The active client queries every 100 ms for 2 s, starting right after its login: it is
    // never idle for 500 ms.
    let active = setup.connect().await;
    for i in 0..20 {
        if let Err(e) = select_one(&active).await {
            panic!("active client failed at query {i}: {e:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The idle client was told why, and disconnected.
    let ended = timeout(WAIT, idle_connection)
        .await
        .expect("idle client was not disconnected")
        .unwrap();
    let err = ended.expect_err("idle client's connection ended without an error");
    assert!(
        sqlstate(&err).as_deref() == Some("57P05")
            || error_message(&err).contains("client_idle_timeout"),
        "expected 57P05 or a mention of client_idle_timeout: {err:?}"
    );
    let next = idle.query_one("SELECT 1", &[]).await;
    assert!(next.is_err(), "idle client's next query should fail");
    assert!(!active.is_closed());
    assert_eq!(select_one(&active).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_share_three_server_connections() {
    const CLIENTS: i32 = 50;
    const TRANSACTIONS: i32 = 20;
    let setup = Setup::new("default_pool_size = 3", "");
    let direct = setup.connect_direct().await;
    direct
        .batch_execute("CREATE TABLE load_test (client int, n int)")
        .await
        .unwrap();

    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(setup.connect().await);
    }
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        tokio::spawn(async move {
            let (mut max, mut samples) = (0, 0);
            while !done.load(Ordering::Relaxed) {
                max = max.max(server_backend_pids(&direct).await.len());
                samples += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (max, samples, direct)
        })
    };
    let mut tasks = Vec::new();
    for (id, mut client) in clients.into_iter().enumerate() {
        let id = id as i32;
        tasks.push(tokio::spawn(async move {
            let mut errors = Vec::new();
            for n in 0..TRANSACTIONS {
                let result = async {
                    let tx = client.transaction().await?;
                    tx.execute("INSERT INTO load_test VALUES ($1, $2)", &[&id, &n])
                        .await?;
                    tx.query_one("SELECT count(*) FROM load_test WHERE client = $1", &[&id])
                        .await?;
                    tx.commit().await
                }
                .await;
                if let Err(e) = result {
                    errors.push(format!("client {id} transaction {n}: {e:?}"));
                }
            }
            errors
        }));
    }
    let mut errors = Vec::new();
    for task in tasks {
        errors.extend(task.await.unwrap());
    }
    done.store(true, Ordering::Relaxed);
    let (max, samples, direct) = sampler.await.unwrap();
    assert!(errors.is_empty(), "{} errors: {:#?}", errors.len(), errors);
    assert!(samples > 0);
    assert!(
        max <= 3,
        "the server saw {max} connections from pgdog with pool_size 3"
    );
    let rows: i64 = direct
        .query_one("SELECT count(*) FROM load_test", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, (CLIENTS * TRANSACTIONS) as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_terminated_mid_transaction_fails_only_that_transaction() {
    let setup = Setup::new("default_pool_size = 2", "");
    let direct = setup.connect_direct().await;
    let client = setup.connect().await;
    client.batch_execute("BEGIN").await.unwrap();
    let pid = backend_pid(&client).await;
    direct
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    // Termination is asynchronous: wait until the backend is gone.
    eventually(Duration::from_secs(10), "the backend to exit", || async {
        let alive: i64 = direct
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
                &[&pid],
            )
            .await
            .unwrap()
            .get(0);
        (alive == 0).then_some(())
    })
    .await;
    // The transaction is gone: an ERROR (not FATAL) with the server's SQLSTATE...
    let err = client
        .query_one("SELECT 1", &[])
        .await
        .expect_err("the transaction's server was terminated");
    // Usually the server's own SQLSTATE; 25P02 when the driver's background statement Close
    // happened to be in flight to the dying server and took that error.
    let code = sqlstate(&err);
    assert!(
        matches!(code.as_deref(), Some("57P01") | Some("25P02")),
        "{err:?}"
    );
    assert!(
        !client.is_closed(),
        "the client connection to pgdog must survive"
    );
    // ...the transaction is aborted, as after any error in it: nothing runs until it ends, so
    // a driver cannot commit half of it on another server...
    let err = client
        .simple_query("INSERT INTO nowhere VALUES (1)")
        .await
        .expect_err("the transaction is aborted");
    assert_eq!(sqlstate(&err).as_deref(), Some("25P02"), "{err:?}");
    let commit = client.simple_query("COMMIT").await.unwrap();
    assert!(
        matches!(
            commit.last(),
            Some(tokio_postgres::SimpleQueryMessage::CommandComplete(_))
        ),
        "{commit:?}"
    );
    // ...and the same connection runs the next transaction on another server.
    let next = backend_pid(&client).await;
    assert_ne!(next, pid);
}
