//! The cutover's refusals leave the source serving: one copy that streams (`COPY_DATA`), then
//! in order (a) a `CUTOVER` refused because a table's verification is missing on a shard, (b)
//! a `CUTOVER` that cannot pause the clients (a transaction held open through pgdog) within a
//! short `cutover_timeout` and aborts, and (c) a normal `CUTOVER`, which succeeds. After each
//! refusal the task and `SHOW CUTOVER` say `failed` with the reason, clients of the source
//! (old connections and new ones) run on the source cluster, and the held transaction commits.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use integration::data_sync::dataset::table;
use integration::data_sync::verify::misplaced;
use integration::data_sync::{admin, DataSyncOptions, DataSyncSetup, SOURCE};
use integration::schema_sync::{SCHEMA_ADMIN, SCHEMA_ADMIN_PASSWORD};
use integration::sharded::run_simple;
use integration::PgdogProcess;
use tokio_postgres::Client;

/// The timeout of the cutover in part (b).
const SHORT_TIMEOUT_MS: u64 = 2_000;

/// pgdog as the test uses it (the setup keeps the process; this is how to reach it).
struct Pgdog {
    port: u16,
    log: PathBuf,
}

impl Pgdog {
    fn of(process: &PgdogProcess) -> Pgdog {
        Pgdog {
            port: process.port(),
            log: process.dir().join("pgdog.log"),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn connect(&self, user: &str, password: &str, database: &str) -> Client {
        let url = format!(
            "host=127.0.0.1 port={} user={user} password={password} dbname={database}",
            self.port
        );
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connect through pgdog: {e}\n{}", self.log()));
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }
}

/// A connection through pgdog to the source database.
async fn client(pgdog: &Pgdog) -> Client {
    pgdog
        .connect(SCHEMA_ADMIN, SCHEMA_ADMIN_PASSWORD, SOURCE)
        .await
}

/// Which server `client`'s queries reach: its database name and port.
async fn reached(client: &Client) -> (String, i32) {
    let row = client
        .query_one("SELECT current_database()::text, inet_server_port()", &[])
        .await
        .unwrap_or_else(|e| panic!("current_database through pgdog: {e:?}"));
    (row.get(0), row.get(1))
}

/// Inserts a customer through pgdog and returns its id (a default from the source's sequence).
async fn insert_customer(client: &Client, name: &str) -> i32 {
    client
        .query_one(
            "INSERT INTO public.customers (name, email) VALUES ($1, 'refusals@example.com') RETURNING id",
            &[&name],
        )
        .await
        .unwrap_or_else(|e| panic!("insert {name} through pgdog: {e:?}"))
        .get(0)
}

/// Whether customer `id` named `name` is on `client`'s database.
async fn has_customer(client: &Client, id: i32, name: &str) -> bool {
    client
        .query_one(
            "SELECT count(*) FROM public.customers WHERE id = $1 AND name = $2",
            &[&id, &name],
        )
        .await
        .unwrap_or_else(|e| panic!("look up customer {id}: {e:?}"))
        .get::<_, i64>(0)
        == 1
}

/// Runs `CUTOVER`, waits for its task to end and returns its row and how long it took.
async fn cutover(admin_client: &Client) -> (String, admin::TaskRow, Duration) {
    let started = Instant::now();
    let reply = run_simple(admin_client, "CUTOVER")
        .await
        .unwrap_or_else(|e| panic!("CUTOVER: {e}"));
    let id = reply
        .cell(0, "task_id")
        .unwrap_or_else(|| panic!("CUTOVER: no task id in {reply:?}"))
        .to_string();
    let task = admin::wait_task_end(admin_client, &id, Duration::from_secs(120)).await;
    eprintln!("CUTOVER (task {id}): {task:?}");
    (id, task, started.elapsed())
}

/// Panics unless task `id` (the copy, now streaming) still runs.
async fn assert_streaming(admin_client: &Client, id: &str, what: &str) {
    let task = admin::task(admin_client, id).await;
    assert!(
        task.as_ref().is_some_and(|t| t.status == "running"),
        "{what}: the stream (task {id}) is no longer running: {task:?}"
    );
}

/// The `status` and `error` of cutover `id` in `SHOW CUTOVER`.
async fn show_cutover(admin_client: &Client, id: &str) -> (String, String) {
    let cutovers = run_simple(admin_client, "SHOW CUTOVER")
        .await
        .unwrap_or_else(|e| panic!("SHOW CUTOVER: {e}"));
    let row = (0..cutovers.rows.len())
        .find(|r| cutovers.cell(*r, "task_id") == Some(id))
        .unwrap_or_else(|| panic!("cutover {id} not in SHOW CUTOVER: {cutovers:?}"));
    let text = |column: &str| cutovers.cell(row, column).unwrap_or("").to_string();
    (text("status"), text("error"))
}

/// Asserts that the source's clients reach the source cluster: `old` (connected before) and a
/// new connection, and that a write through pgdog lands there.
async fn assert_source_serves(setup: &DataSyncSetup, old: &Client, pgdog: &Pgdog, what: &str) {
    let port = i32::from(setup.source.port());
    assert_eq!(
        reached(old).await,
        (SOURCE.to_string(), port),
        "{what}: an old client of {SOURCE}"
    );
    let fresh = client(pgdog).await;
    assert_eq!(
        reached(&fresh).await,
        (SOURCE.to_string(), port),
        "{what}: a new client of {SOURCE}"
    );
    let name = format!("after {what}");
    let id = insert_customer(&fresh, &name).await;
    assert!(
        has_customer(&setup.source_client(SOURCE).await, id, &name).await,
        "{what}: customer {id} written through pgdog is not on the source cluster"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_cutovers_leave_the_source_serving_and_a_later_one_succeeds() {
    let mut setup = DataSyncSetup::start(DataSyncOptions::default()).await;
    let pgdog = &Pgdog::of(setup.start_pgdog());
    let admin_client = pgdog
        .connect("admin", integration::ADMIN_PASSWORD, "admin")
        .await;
    let app = client(pgdog).await;

    let started = admin::copy_data(&admin_client, &format!("{SOURCE} destination pub")).await;
    admin::wait_streaming(&admin_client, &started.task_id, Duration::from_secs(180)).await;

    // (a) A table's verification is missing on shard 0: refused before anyone is paused.
    let shard0 = setup.shard_client(0).await;
    let countries = table("public", "countries").unwrap_or_else(|| panic!("no countries spec"));
    let verified_at: String = shard0
        .query_one(
            "SELECT verified_at::text FROM pgdog.copy_tables \
             WHERE schema_name = $1 AND table_name = $2 AND verified_at IS NOT NULL",
            &[&countries.schema, &countries.name],
        )
        .await
        .unwrap_or_else(|e| panic!("verified_at of {}: {e:?}", countries.label()))
        .get(0);
    shard0
        .execute(
            "UPDATE pgdog.copy_tables SET verified_at = NULL \
             WHERE schema_name = $1 AND table_name = $2",
            &[&countries.schema, &countries.name],
        )
        .await
        .unwrap_or_else(|e| panic!("unverify {}: {e:?}", countries.label()));
    let (id, task, _) = cutover(&admin_client).await;
    assert_eq!(task.status, "failed", "{task:?}");
    for needle in ["not verified on shard 0", "1 of "] {
        assert!(
            task.error.contains(needle),
            "error {:?} lacks {needle:?}",
            task.error
        );
    }
    let (status, error) = show_cutover(&admin_client, &id).await;
    assert_eq!(status, "failed");
    assert!(
        error.contains("not verified on shard 0"),
        "SHOW CUTOVER error {error:?}"
    );
    assert_source_serves(&setup, &app, pgdog, "the unverified cutover").await;
    assert_streaming(&admin_client, &started.task_id, "the unverified cutover").await;
    shard0
        .execute(
            "UPDATE pgdog.copy_tables SET verified_at = $3::text::timestamptz \
             WHERE schema_name = $1 AND table_name = $2",
            &[&countries.schema, &countries.name, &verified_at],
        )
        .await
        .unwrap_or_else(|e| panic!("restore verified_at: {e:?}"));

    // (b) A transaction held open through pgdog: the pause cannot complete within the timeout
    // and the cutover aborts.
    run_simple(
        &admin_client,
        &format!("SET cutover_timeout TO {SHORT_TIMEOUT_MS}"),
    )
    .await
    .unwrap_or_else(|e| panic!("SET cutover_timeout: {e}"));
    let holder = client(pgdog).await;
    holder
        .batch_execute("BEGIN; UPDATE public.customers SET name = 'held open' WHERE id = 1")
        .await
        .unwrap_or_else(|e| panic!("open transaction through pgdog: {e:?}"));
    let (id, task, took) = cutover(&admin_client).await;
    assert_eq!(task.status, "failed", "{task:?}");
    for needle in [
        "could not pause the clients of source",
        "1 transaction(s) still running",
        &format!("after {SHORT_TIMEOUT_MS} ms"),
    ] {
        assert!(
            task.error.contains(needle),
            "error {:?} lacks {needle:?}",
            task.error
        );
    }
    assert!(
        took >= Duration::from_millis(SHORT_TIMEOUT_MS),
        "the cutover gave up after {took:?}, before its timeout"
    );
    let (status, error) = show_cutover(&admin_client, &id).await;
    assert_eq!(status, "failed");
    assert!(
        error.contains("could not pause"),
        "SHOW CUTOVER error {error:?}"
    );
    holder
        .batch_execute("COMMIT")
        .await
        .unwrap_or_else(|e| panic!("COMMIT of the held transaction: {e:?}"));
    let held: String = setup
        .source_client(SOURCE)
        .await
        .query_one("SELECT name FROM public.customers WHERE id = 1", &[])
        .await
        .unwrap_or_else(|e| panic!("{e:?}"))
        .get(0);
    assert_eq!(
        held, "held open",
        "the held transaction's update on the source"
    );
    assert_source_serves(&setup, &holder, pgdog, "the timed-out cutover").await;
    assert_source_serves(&setup, &app, pgdog, "the timed-out cutover").await;
    assert_streaming(&admin_client, &started.task_id, "the timed-out cutover").await;
    run_simple(&admin_client, "SET cutover_timeout TO 30000")
        .await
        .unwrap_or_else(|e| panic!("SET cutover_timeout: {e}"));

    // (c) Nothing stands in the way any more: the cutover happens, and the old client now
    // writes to the shards, each row on its shard.
    let (id, task, _) = cutover(&admin_client).await;
    assert_eq!(task.status, "finished", "{task:?}\n{}", pgdog.log());
    assert!(task.step.contains("now reach destination"), "{task:?}");
    let (status, error) = show_cutover(&admin_client, &id).await;
    assert_eq!((status.as_str(), error.as_str()), ("done", ""));
    let customers = table("public", "customers").unwrap_or_else(|| panic!("no customers spec"));
    let id = 40_000_000i64;
    app.execute(
        "INSERT INTO public.customers (id, name, email) VALUES ($1, 'after cutover', 'c@example.com')",
        &[&id],
    )
    .await
    .unwrap_or_else(|e| panic!("insert through pgdog after the cutover: {e:?}"));
    let mut found = 0;
    for k in 0..setup.shards() {
        let shard = setup.shard_client(k).await;
        found += shard
            .query_one(
                "SELECT count(*) FROM public.customers WHERE id = $1",
                &[&id],
            )
            .await
            .unwrap_or_else(|e| panic!("{e:?}"))
            .get::<_, i64>(0);
        assert_eq!(
            misplaced(&shard, customers, setup.shards(), k).await,
            0,
            "customers on the wrong shard {k}"
        );
    }
    assert_eq!(
        found, 1,
        "customer {id} written after the cutover, on the shards"
    );
    drop(admin_client);
    drop(setup);
}
