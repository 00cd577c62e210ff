//! Admin commands against a live pgdog: PAUSE/RESUME and RELOAD under pgbench, SET, BAN/UNBAN,
//! RECONNECT, every SHOW, SHUTDOWN, and the admin password (generated or from the environment).

use std::collections::HashMap;
use std::time::Duration;

use integration::tools::{pgbench, pgbench_number};
use integration::{
    eventually, free_port, server_backend_pids, single_database_config, single_user_config,
    sqlstate, PgdogProcess, Setup,
};
use tokio_postgres::SimpleQueryMessage;

const WAIT: Duration = Duration::from_secs(20);

/// Rows of the first result of `sql` as column → value maps.
async fn rows(admin: &tokio_postgres::Client, sql: &str) -> Vec<HashMap<String, String>> {
    let messages = admin
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                row.columns()
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        (
                            c.name().to_string(),
                            row.get(i).unwrap_or_default().to_string(),
                        )
                    })
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

fn number(row: &HashMap<String, String>, column: &str) -> f64 {
    row.get(column)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("column {column} missing or not a number in {row:?}"))
}

fn pgbench_init(setup: &Setup) {
    let out = pgbench(
        setup.pgdog.port(),
        "postgres",
        "postgres",
        "app",
        &["-i", "-s", "1", "-q"],
    );
    assert!((out.code == 0), "pgbench -i failed: {}", out.stderr);
}

/// Runs pgbench through pgdog for `seconds` on a blocking thread; returns (transactions, failed).
fn pgbench_run(port: u16, seconds: u32) -> tokio::task::JoinHandle<(f64, f64, String)> {
    tokio::task::spawn_blocking(move || {
        let out = pgbench(
            port,
            "postgres",
            "postgres",
            "app",
            &["-c", "4", "-T", &seconds.to_string(), "-n"],
        );
        let processed = pgbench_number(&out.stdout, "number of transactions actually processed: ")
            .unwrap_or(0.0);
        let failed = pgbench_number(&out.stdout, "number of failed transactions: ").unwrap_or(0.0);
        let failed = if out.code == 0 { failed } else { f64::MAX };
        (processed, failed, format!("{}\n{}", out.stdout, out.stderr))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_holds_queries_without_errors_until_resume() {
    let setup = Setup::new("", "");
    pgbench_init(&setup);
    let admin = setup.admin().await;
    let bench = pgbench_run(setup.pgdog.port(), 6);
    tokio::time::sleep(Duration::from_secs(1)).await;

    admin.simple_query("PAUSE app").await.unwrap();
    let pools = rows(&admin, "SHOW POOLS").await;
    assert!(pools.iter().all(|p| p["paused"] == "t"), "{pools:?}");
    // A new query waits instead of failing...
    let client = setup.connect().await;
    let query = tokio::spawn(async move { client.simple_query("SELECT 1").await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !query.is_finished(),
        "a query ran while the database was paused"
    );
    // ...and runs after RESUME.
    admin.simple_query("RESUME app").await.unwrap();
    tokio::time::timeout(WAIT, query)
        .await
        .expect("the held query did not run after RESUME")
        .unwrap()
        .unwrap();
    let pools = rows(&admin, "SHOW POOLS").await;
    assert!(pools.iter().all(|p| p["paused"] == "f"), "{pools:?}");

    let (processed, failed, output) = bench.await.unwrap();
    assert!(processed > 0.0, "{output}");
    assert_eq!(
        failed, 0.0,
        "pgbench saw failures across PAUSE/RESUME:\n{output}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_waits_for_running_transactions_and_gives_up_cleanly() {
    let setup = Setup::new("shutdown_timeout = 800", "");
    let admin = setup.admin().await;
    let client = setup.connect().await;
    client.batch_execute("BEGIN").await.unwrap();

    // The open transaction outlives shutdown_timeout: PAUSE fails and changes nothing.
    let err = admin.simple_query("PAUSE").await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("55P03"), "{err:?}");
    let pools = rows(&admin, "SHOW POOLS").await;
    assert!(pools.iter().all(|p| p["paused"] == "f"), "{pools:?}");

    // A transaction that ends in time lets PAUSE complete.
    let admin2 = setup.admin().await;
    let pause = tokio::spawn(async move { admin2.simple_query("PAUSE").await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !pause.is_finished(),
        "PAUSE returned with a transaction open"
    );
    client.batch_execute("COMMIT").await.unwrap();
    pause.await.unwrap().unwrap();
    let databases = rows(&admin, "SHOW DATABASES").await;
    assert_eq!(databases[0]["paused"], "t");
    admin.simple_query("RESUME").await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();

    let err = admin.simple_query("PAUSE nosuchdb").await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("3D000"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_pgbench_loses_no_transaction() {
    let setup = Setup::new("", "");
    pgbench_init(&setup);
    let admin = setup.admin().await;
    let bench = pgbench_run(setup.pgdog.port(), 5);
    for timeout in [4000, 3000, 6000] {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let config = single_database_config(
            &setup.cluster,
            "app",
            setup.pgdog.port(),
            &format!("checkout_timeout = {timeout}"),
        );
        setup
            .pgdog
            .write_config(&config, &single_user_config("app", ""));
        admin.simple_query("RELOAD").await.unwrap();
        let config = rows(&admin, "SHOW CONFIG").await;
        let value = config
            .iter()
            .find(|r| r["name"] == "checkout_timeout")
            .map(|r| r["value"].clone());
        assert_eq!(value.as_deref(), Some(timeout.to_string().as_str()));
    }
    let (processed, failed, output) = bench.await.unwrap();
    assert!(processed > 0.0, "{output}");
    assert_eq!(failed, 0.0, "pgbench saw failures across RELOAD:\n{output}");

    // A broken file is refused with a clear error and the running config stays.
    setup
        .pgdog
        .write_config("[general\nport = ", &single_user_config("app", ""));
    let err = admin.simple_query("RELOAD").await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("F0000"), "{err:?}");
    assert!(err.to_string().contains("pgdog.toml") || format!("{err:?}").contains("pgdog.toml"));
    setup
        .connect()
        .await
        .simple_query("SELECT 1")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_changes_runtime_settings_and_rejects_the_rest() {
    let setup = Setup::new("", "");
    let admin = setup.admin().await;
    admin
        .simple_query("SET checkout_timeout TO 1234")
        .await
        .unwrap();
    admin
        .simple_query("set load_balancing_strategy to 'round_robin'")
        .await
        .unwrap();
    let config = rows(&admin, "SHOW CONFIG").await;
    let value = |name: &str| {
        config
            .iter()
            .find(|r| r["name"] == name)
            .map(|r| r["value"].clone())
    };
    assert_eq!(value("checkout_timeout").as_deref(), Some("1234"));
    assert_eq!(
        value("load_balancing_strategy").as_deref(),
        Some("round_robin")
    );

    for (sql, code, needle) in [
        ("SET checkout_timout TO 5", "42704", "checkout_timeout"),
        ("SET port TO 7000", "55P02", "restart"),
        ("SET checkout_timeout TO soon", "22023", "checkout_timeout"),
        ("SET pooler_mode TO sometimes", "22023", "pooler_mode"),
        (
            "SET healthcheck_timeout TO 0",
            "22023",
            "healthcheck_timeout",
        ),
    ] {
        let err = admin.simple_query(sql).await.unwrap_err();
        let db = err
            .as_db_error()
            .unwrap_or_else(|| panic!("{sql}: {err:?}"));
        assert_eq!(db.code().code(), code, "{sql}: {db:?}");
        let text = format!("{} {}", db.message(), db.hint().unwrap_or_default());
        assert!(text.contains(needle), "{sql}: {text}");
    }
    // Failed SETs changed nothing; clients still work.
    let config = rows(&admin, "SHOW CONFIG").await;
    assert!(config
        .iter()
        .any(|r| r["name"] == "checkout_timeout" && r["value"] == "1234"));
    setup
        .connect()
        .await
        .simple_query("SELECT 1")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_commands_report_live_state() {
    // Connections idle for 1 ms or more are checked before each checkout: they count in
    // SHOW SERVERS' healthchecks.
    let setup = Setup::new("healthcheck_interval = 1", "");
    let admin = setup.admin().await;
    let client = setup.connect().await;
    for _ in 0..5 {
        client.simple_query("SELECT 1").await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    client.batch_execute("BEGIN").await.unwrap();
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);

    let pools = rows(&admin, "SHOW POOLS").await;
    assert_eq!(pools.len(), 1, "{pools:?}");
    assert_eq!(pools[0]["database"], "app");
    assert_eq!(pools[0]["role"], "primary");
    assert_eq!(pools[0]["sv_active"], "1");
    assert_eq!(pools[0]["pool_mode"], "transaction");

    // (The driver closes its statement in the background, so the state settles shortly.)
    let clients = eventually(WAIT, "the client to be idle in transaction", || async {
        let clients = rows(&admin, "SHOW CLIENTS").await;
        let idle = clients
            .iter()
            .any(|c| c["database"] == "app" && c["state"] == "idle in transaction");
        idle.then_some(clients)
    })
    .await;
    let app = clients
        .iter()
        .find(|c| c["database"] == "app")
        .expect("the app client is listed");
    assert!(number(app, "queries") >= 5.0, "{app:?}");
    assert!(clients.iter().any(|c| c["database"] == "admin"));

    let servers = rows(&admin, "SHOW SERVERS").await;
    let server = servers
        .iter()
        .find(|s| s["remote_pid"] == pid.to_string())
        .unwrap_or_else(|| panic!("{servers:?}"));
    assert!(number(server, "healthchecks") >= 1.0, "{server:?}");
    client.batch_execute("COMMIT").await.unwrap();

    eventually(WAIT, "stats to count the transactions", || async {
        let stats = rows(&admin, "SHOW STATS").await;
        (number(&stats[0], "total_xact_count") >= 6.0
            && number(&stats[0], "total_query_count") >= 7.0
            && number(&stats[0], "total_received") > 0.0)
            .then_some(())
    })
    .await;

    let users = rows(&admin, "SHOW USERS").await;
    assert_eq!(users[0]["name"], "postgres");
    let databases = rows(&admin, "SHOW DATABASES").await;
    assert_eq!(databases[0]["port"], setup.cluster.port().to_string());
    let lists = rows(&admin, "SHOW LISTS").await;
    assert!(lists
        .iter()
        .any(|l| l["list"] == "pools" && l["items"] == "1"));
    let version = rows(&admin, "SHOW VERSION").await;
    assert!(version[0]["version"].starts_with("pgdog "));
    assert!(rows(&admin, "SHOW BANS").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ban_unban_and_reconnect() {
    let setup = Setup::new("", "");
    let admin = setup.admin().await;
    let direct = setup.connect_direct().await;
    let client = setup.connect().await;
    client.simple_query("SELECT 1").await.unwrap();
    let before = server_backend_pids(&direct).await;
    assert!(!before.is_empty());

    admin.simple_query("RECONNECT").await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();
    eventually(WAIT, "old server connections to close", || async {
        let now = server_backend_pids(&direct).await;
        now.iter().all(|pid| !before.contains(pid)).then_some(())
    })
    .await;

    let id = rows(&admin, "SHOW POOLS").await[0]["id"].clone();
    admin.simple_query(&format!("BAN {id}")).await.unwrap();
    let bans = rows(&admin, "SHOW BANS").await;
    assert_eq!(bans.len(), 1, "{bans:?}");
    assert_eq!(bans[0]["pool_id"], id);
    assert!(bans[0]["reason"].contains("BAN"), "{bans:?}");
    // A banned primary still serves its writes: there is nothing else to send them to.
    client.simple_query("SELECT 1").await.unwrap();
    admin.simple_query(&format!("UNBAN {id}")).await.unwrap();
    assert!(rows(&admin, "SHOW BANS").await.is_empty());

    let err = admin.simple_query("BAN 999999").await.unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("42704"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_command_stops_pgdog() {
    let mut setup = Setup::new("", "");
    let admin = setup.admin().await;
    admin.simple_query("SHUTDOWN").await.unwrap();
    assert_eq!(
        setup.pgdog.wait_exit(WAIT),
        Some(0),
        "{}",
        setup.pgdog.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_password_is_generated_or_taken_from_the_environment() {
    let cluster = integration::cluster();
    let users = "[[users]]\nname = \"postgres\"\ndatabase = \"app\"\npassword = \"postgres\"\n";

    // No password anywhere: a random one is generated and logged once.
    let port = free_port();
    let pgdog = PgdogProcess::start(
        &single_database_config(&cluster, "app", port, ""),
        users,
        port,
    );
    let log = pgdog.log();
    let generated = log
        .lines()
        .find_map(|l| l.split("generated one for this run: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no generated password in the log:\n{log}"))
        .to_string();
    assert!(generated.len() >= 16, "{generated}");
    let admin = pgdog.connect("admin", &generated, "admin").await.unwrap();
    admin.simple_query("SHOW VERSION").await.unwrap();
    for password in ["", "admin", "pgdog"] {
        let err = pgdog.connect("admin", password, "admin").await.unwrap_err();
        assert_eq!(sqlstate(&err).as_deref(), Some("28P01"), "{err:?}");
    }
    drop(pgdog);

    // PGDOG_ADMIN_PASSWORD wins, and nothing is generated.
    let port = free_port();
    let pgdog = PgdogProcess::start_with_env(
        &single_database_config(&cluster, "app", port, ""),
        users,
        port,
        &[("PGDOG_ADMIN_PASSWORD", "from-env")],
    );
    assert!(!pgdog.log().contains("generated"), "{}", pgdog.log());
    pgdog.connect("admin", "from-env", "admin").await.unwrap();
    // Application users cannot log in to the admin database.
    let err = pgdog
        .connect("postgres", "postgres", "admin")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("28P01"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_releases_clients_held_by_pause() {
    let mut setup = Setup::new("shutdown_timeout = 600000", "");
    let admin = setup.admin().await;
    let client = setup.connect().await;
    admin.simple_query("PAUSE").await.unwrap();
    let held = tokio::spawn(async move { client.simple_query("SELECT 1").await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!held.is_finished());

    setup.pgdog.signal(libc::SIGINT);
    let err = tokio::time::timeout(WAIT, held)
        .await
        .expect("the held client was not released at shutdown")
        .unwrap()
        .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("57P01"), "{err:?}");
    // pgdog exits without waiting out shutdown_timeout (10 minutes): nobody is left.
    assert_eq!(
        setup.pgdog.wait_exit(WAIT),
        Some(0),
        "{}",
        setup.pgdog.log()
    );
}
