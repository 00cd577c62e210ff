//! Transaction and session pooling through pgdog with real clients.

use integration::{sqlstate, tools, Setup};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_and_extended_queries_work() {
    let setup = Setup::new("default_pool_size = 2", "");
    let client = setup.connect().await;
    let messages = client
        .simple_query("SELECT 1 AS one; SELECT 'two'")
        .await
        .unwrap();
    let rows = messages
        .iter()
        .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
        .count();
    assert_eq!(rows, 2);
    let row = client
        .query_one("SELECT $1::int + 1, $2::text", &[&41i32, &"x"])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    assert_eq!(row.get::<_, &str>(1), "x");
    // An error does not break the connection.
    let err = client
        .query("SELECT * FROM missing_table", &[])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("42P01"));
    let n: i64 = client
        .query_one("SELECT count(*) FROM generate_series(1, 1000)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_prepared_statements_follow_clients_across_servers() {
    // Pool of 2 servers shared by 8 clients: every client runs on several servers.
    let setup = Setup::new("default_pool_size = 2", "");
    let mut handles = Vec::new();
    for i in 0..8i64 {
        let client = setup.connect().await;
        handles.push(tokio::spawn(async move {
            let statement = client
                .prepare("SELECT $1::bigint * 2, pg_backend_pid()")
                .await
                .unwrap();
            let other = client
                .prepare(&format!("SELECT {i}::bigint + $1::bigint"))
                .await
                .unwrap();
            let mut pids = std::collections::HashSet::new();
            // Hold a transaction for a moment so the other clients spread over both servers.
            client
                .batch_execute("BEGIN; SELECT pg_sleep(0.05); COMMIT")
                .await
                .unwrap();
            for n in 0..50i64 {
                let row = client.query_one(&statement, &[&n]).await.unwrap();
                assert_eq!(row.get::<_, i64>(0), n * 2);
                pids.insert(row.get::<_, i32>(1));
                let row = client.query_one(&other, &[&n]).await.unwrap();
                assert_eq!(row.get::<_, i64>(0), i + n);
                tokio::task::yield_now().await;
            }
            pids
        }));
    }
    let mut all_pids = std::collections::HashSet::new();
    for handle in handles {
        all_pids.extend(handle.await.unwrap());
    }
    assert_eq!(
        all_pids.len(),
        2,
        "clients should have been served by both servers"
    );
    // Server-side connections stay at the pool size.
    let direct = setup.connect_direct().await;
    let servers: i64 = direct
        .query_one("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        servers <= 2,
        "pgdog opened {servers} server connections for a pool of 2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_statement_names_can_be_reused_for_other_sql() {
    let setup = Setup::new("default_pool_size = 1", "");
    let client = setup.connect().await;
    for i in 0..20 {
        let statement = client
            .prepare(&format!("SELECT {i} + $1::int"))
            .await
            .unwrap();
        let row = client.query_one(&statement, &[&1i32]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), i + 1);
        drop(statement); // tokio-postgres sends Close
    }
}

async fn show(client: &tokio_postgres::Client, name: &str) -> String {
    client
        .query_one(&format!("SHOW {name}"), &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_settings_never_leak_between_clients() {
    // One server shared by both clients: whatever one sets must not be seen by the other.
    let setup = Setup::new("default_pool_size = 1", "");
    let a = setup.connect().await;
    let b = setup.connect().await;
    a.batch_execute("SET application_name = 'client_a'; SET statement_timeout = '123s'; SET search_path TO a_schema, public").await.unwrap();
    assert_eq!(show(&b, "statement_timeout").await, "0");
    assert_ne!(show(&b, "application_name").await, "client_a");
    assert_eq!(show(&b, "search_path").await, "\"$user\", public");
    // The client that set them keeps them on every transaction.
    assert_eq!(show(&a, "statement_timeout").await, "123s");
    assert_eq!(show(&a, "application_name").await, "client_a");
    assert_eq!(show(&a, "search_path").await, "a_schema, public");
    // RESET goes back to the default; a rolled back SET is not kept.
    a.batch_execute("RESET statement_timeout").await.unwrap();
    assert_eq!(show(&a, "statement_timeout").await, "0");
    a.batch_execute("BEGIN; SET work_mem = '7MB'; ROLLBACK")
        .await
        .unwrap();
    assert_eq!(show(&a, "work_mem").await, "4MB");
    a.batch_execute("BEGIN; SET work_mem = '9MB'; COMMIT")
        .await
        .unwrap();
    assert_eq!(show(&a, "work_mem").await, "9MB");
    assert_eq!(show(&b, "work_mem").await, "4MB");
    // SET LOCAL lasts only for its transaction.
    b.batch_execute("BEGIN; SET LOCAL work_mem = '5MB'; COMMIT")
        .await
        .unwrap();
    assert_eq!(show(&b, "work_mem").await, "4MB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_hold_one_server_until_they_end() {
    let setup = Setup::new("default_pool_size = 2", "");
    let client = setup.connect().await;
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS tx_test (id int)")
        .await
        .unwrap();
    client.batch_execute("BEGIN").await.unwrap();
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    client
        .batch_execute("INSERT INTO tx_test VALUES (1)")
        .await
        .unwrap();
    // Another client cannot see the uncommitted row and gets the other server.
    let other = setup.connect().await;
    let other_pid: i32 = other
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(pid, other_pid);
    let seen: i64 = other
        .query_one("SELECT count(*) FROM tx_test", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(seen, 0);
    let same: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(pid, same);
    client.batch_execute("COMMIT").await.unwrap();
    let seen: i64 = other
        .query_one("SELECT count(*) FROM tx_test", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(seen, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_mode_keeps_one_server_per_client() {
    let setup = Setup::new("default_pool_size = 2\npooler_mode = \"session\"", "");
    let client = setup.connect().await;
    client
        .batch_execute("PREPARE sql_level AS SELECT 7")
        .await
        .unwrap();
    let first: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    for _ in 0..5 {
        let pid: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(first, pid);
    }
    let seven: i32 = client
        .query_one("EXECUTE sql_level", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(seven, 7);
    client.batch_execute("SET work_mem = '11MB'").await.unwrap();
    drop(client);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The next client gets a clean session.
    let next = setup.connect().await;
    for _ in 0..3 {
        let work_mem: String = next.query_one("SHOW work_mem", &[]).await.unwrap().get(0);
        assert_eq!(work_mem, "4MB");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_and_out_through_the_pooler() {
    use futures_util::SinkExt;
    use futures_util::StreamExt;
    let setup = Setup::new("default_pool_size = 2", "");
    let client = setup.connect().await;
    client
        .batch_execute("CREATE TABLE copy_test (id int, name text)")
        .await
        .unwrap();
    let sink = client.copy_in("COPY copy_test FROM STDIN").await.unwrap();
    futures_util::pin_mut!(sink);
    let mut data = String::new();
    for i in 0..5000 {
        data.push_str(&format!("{i}\tname {i}\n"));
    }
    sink.send(bytes::Bytes::from(data)).await.unwrap();
    let rows = sink.finish().await.unwrap();
    assert_eq!(rows, 5000);
    let stream = client.copy_out("COPY copy_test TO STDOUT").await.unwrap();
    futures_util::pin_mut!(stream);
    let mut bytes = 0;
    while let Some(chunk) = stream.next().await {
        bytes += chunk.unwrap().len();
    }
    assert!(bytes > 40_000);
    // psql \copy uses the same protocol; a failing COPY leaves the connection usable.
    let out = setup.psql(&["-c", "COPY copy_test FROM STDIN"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = setup.psql(&["-c", "SELECT count(*) FROM copy_test"]);
    assert_eq!(out.stdout.trim(), "5000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_and_parameter_status_pass_through() {
    let setup = Setup::new("", "");
    let out = setup.psql(&[
        "-c",
        "DO $$ BEGIN RAISE NOTICE 'hello from plpgsql'; END $$",
        "-c",
        "SET application_name = 'psql_test'",
        "-c",
        "SHOW application_name",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("hello from plpgsql"), "{}", out.stderr);
    assert!(out.stdout.contains("psql_test"));
    let out = setup.psql(&["-c", "SHOW server_version"]);
    assert!(out.stdout.starts_with("15"), "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_200_clients_prepared_on_a_pool_of_10() {
    let setup = Setup::new("default_pool_size = 10", "");
    let port = setup.cluster.port();
    let init = tools::pgbench(
        port,
        "postgres",
        "postgres",
        "postgres",
        &["-i", "-s", "2", "-q"],
    );
    assert_eq!(init.code, 0, "{}", init.stderr);
    for mode in ["prepared", "extended", "simple"] {
        let clients = if mode == "prepared" { "200" } else { "50" };
        let out = tools::pgbench(
            setup.pgdog.port(),
            "postgres",
            "postgres",
            "app",
            &[
                "-c",
                clients,
                "-j",
                "2",
                "-t",
                "20",
                "-M",
                mode,
                "--no-vacuum",
            ],
        );
        assert_eq!(
            out.code,
            0,
            "pgbench -M {mode} failed: {}\n{}",
            out.stderr,
            setup.pgdog.log()
        );
        let failed = tools::pgbench_number(&out.stdout, "number of failed transactions:");
        assert_eq!(failed, Some(0.0), "{}", out.stdout);
        let expected = clients.parse::<u64>().unwrap() * 20;
        let processed = format!("number of transactions actually processed: {expected}/{expected}");
        assert!(out.stdout.contains(&processed), "{}", out.stdout);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discard_all_and_deallocate_all_keep_prepared_statements_consistent() {
    let setup = Setup::new("default_pool_size = 1", "");
    let a = setup.connect().await;
    let b = setup.connect().await;
    let sa = a.prepare("SELECT 1 + $1::int").await.unwrap();
    let sb = b.prepare("SELECT 1 + $1::int").await.unwrap();
    assert_eq!(
        a.query_one(&sa, &[&1i32]).await.unwrap().get::<_, i32>(0),
        2
    );
    // A drops every statement of the (shared) server session...
    a.batch_execute("DISCARD ALL").await.unwrap();
    // ...B's statement is prepared again transparently.
    assert_eq!(
        b.query_one(&sb, &[&2i32]).await.unwrap().get::<_, i32>(0),
        3
    );
    b.batch_execute("DEALLOCATE ALL").await.unwrap();
    assert_eq!(
        b.query_one("SELECT 10 + $1::int", &[&2i32])
            .await
            .unwrap()
            .get::<_, i32>(0),
        12
    );
    let sa2 = a.prepare("SELECT 5 + $1::int").await.unwrap();
    assert_eq!(
        a.query_one(&sa2, &[&1i32]).await.unwrap().get::<_, i32>(0),
        6
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_mode_resets_the_server_when_a_client_leaves() {
    let setup = Setup::new("default_pool_size = 1\npooler_mode = \"session\"", "");
    let first = setup.connect().await;
    first
        .batch_execute("CREATE TEMP TABLE scratch (x int); PREPARE leftover AS SELECT 1; SET search_path TO nowhere")
        .await
        .unwrap();
    // It even leaves in the middle of a transaction that changed settings.
    first
        .batch_execute("BEGIN; SET work_mem = '3MB'")
        .await
        .unwrap();
    drop(first);
    // The single server is reused by the next client, without the first client's state.
    let mut next = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Ok(client) = setup.pgdog.connect("postgres", "postgres", "app").await {
            if client.query_one("SELECT 1", &[]).await.is_ok() {
                next = Some(client);
                break;
            }
        }
    }
    let next = next.expect("a new client gets the server back");
    let temp: i64 = next
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relname = 'scratch'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(temp, 0);
    assert!(next.batch_execute("EXECUTE leftover").await.is_err());
    assert_eq!(show(&next, "search_path").await, "\"$user\", public");
    assert_eq!(show(&next, "work_mem").await, "4MB");
    let status: String = next
        .query_one(
            "SELECT state FROM pg_stat_activity WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "active");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_per_server_stay_within_the_limit() {
    let setup = Setup::new("default_pool_size = 1\nprepared_statements_limit = 3", "");
    let client = setup.connect().await;
    let mut statements = Vec::new();
    for i in 0..10i32 {
        statements.push(
            client
                .prepare(&format!("SELECT {i} + $1::int"))
                .await
                .unwrap(),
        );
    }
    // Use them round and round: evicted ones are prepared again transparently.
    for round in 0..3i32 {
        for (i, statement) in statements.iter().enumerate() {
            let value: i32 = client.query_one(statement, &[&round]).await.unwrap().get(0);
            assert_eq!(value, i as i32 + round);
        }
    }
    let on_server: i64 = client
        .query_one("SELECT count(*) FROM pg_prepared_statements", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        on_server <= 3,
        "{on_server} statements prepared on the server, limit 3"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_options_apply_to_every_transaction_of_that_client_only() {
    let setup = Setup::new("default_pool_size = 1", "");
    let url = format!(
        "{} options='-c search_path=custom_path -c statement_timeout=77s'",
        setup.pgdog.url("postgres", "postgres", "app")
    );
    let (with_options, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let plain = setup.connect().await;
    for _ in 0..3 {
        assert_eq!(show(&with_options, "search_path").await, "custom_path");
        assert_eq!(show(&with_options, "statement_timeout").await, "77s");
        assert_eq!(show(&plain, "search_path").await, "\"$user\", public");
        assert_eq!(show(&plain, "statement_timeout").await, "0");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_objects_through_the_function_call_protocol() {
    let setup = Setup::new("default_pool_size = 2", "");
    let file = std::env::temp_dir().join(format!("pgdog-lo-{}.txt", std::process::id()));
    std::fs::write(&file, "large object contents through pgdog").unwrap();
    // psql's \lo_import uses libpq's fast-path FunctionCall messages.
    let out = setup.psql(&["-c", &format!("\\lo_import {}", file.display())]);
    let _ = std::fs::remove_file(&file);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let oid = out
        .stdout
        .split_whitespace()
        .last()
        .and_then(|w| w.parse::<u32>().ok())
        .unwrap_or_else(|| panic!("no oid in {:?}", out.stdout));
    let out = setup.psql(&["-c", &format!("SELECT convert_from(lo_get({oid}), 'UTF8')")]);
    assert_eq!(
        out.stdout.trim(),
        "large object contents through pgdog",
        "{}",
        out.stderr
    );
}
