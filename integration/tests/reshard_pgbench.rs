//! The whole move under pgbench: pgbench runs a custom script (sharding-key routed reads and
//! writes, `-M prepared`) through pgdog against the source database while `RESHARD` (in the
//! admin database) syncs the schema, copies, streams and cuts over, and goes on for a while
//! after it. pgbench must report no failed transaction and no aborted client; the longest
//! transaction latency (what a client felt of the pause) and the cutover's `pause_ms` are
//! reported. Afterwards every row is on its hash-correct shard, the shards hold exactly what
//! pgbench committed (one history row per transaction, balances moved by the history's
//! deltas), history ids are unique across shards, and `VERIFY <src>_before_cutover <src>`
//! matches every table once the stream back has caught up.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use integration::data_sync::admin;
use integration::data_sync::verify::misplaced;
use integration::data_sync::{connect, shard_database, Placement, TableSpec};
use integration::schema_sync::{
    users_toml, ConfigDir, DESTINATION, PUBLICATION, SCHEMA_ADMIN, SCHEMA_ADMIN_PASSWORD, SOURCE,
};
use integration::sharded::run_simple;
use integration::tools::{pg_tool, pgbench_number};
use integration::{cluster_with, free_port, LocalCluster, LocalOptions, PgdogProcess};
use tokio_postgres::Client;

/// Destination shards.
const SHARDS: usize = 2;
/// Rows of `accounts` (ids 1..=ACCOUNTS).
const ACCOUNTS: i64 = 50_000;
/// Rows of `history` before pgbench starts (delta 0, so balances need no adjusting).
const HISTORY: i64 = 5_000;
/// Rows of `branches` (omnisharded).
const BRANCHES: i64 = 10;
/// How long pgbench runs: the whole move plus at least [`AFTER_MOVE`].
const PGBENCH_SECONDS: u64 = 75;
/// pgbench must still run this long after the cutover.
const AFTER_MOVE: Duration = Duration::from_secs(5);

/// The sharded tables and the omnisharded one, as the placement checks see them.
const TABLES: [TableSpec; 3] = [
    TableSpec {
        schema: "public",
        name: "accounts",
        placement: Placement::Hash {
            column: "id",
            data_type: "bigint",
        },
        generated: &[],
    },
    TableSpec {
        schema: "public",
        name: "history",
        placement: Placement::Hash {
            column: "account_id",
            data_type: "bigint",
        },
        generated: &[],
    },
    TableSpec {
        schema: "public",
        name: "branches",
        placement: Placement::Everywhere,
        generated: &[],
    },
];

/// One transaction: move money on an account (routed by its id), read it back, read a branch
/// (omnisharded), record the move in history (routed by the same account id).
const SCRIPT: &str = "\\set aid random(1, 50000)
\\set delta random(-5000, 5000)
\\set bid random(1, 10)
BEGIN;
UPDATE accounts SET balance = balance + :delta WHERE id = :aid;
SELECT balance FROM accounts WHERE id = :aid;
SELECT name FROM branches WHERE id = :bid;
INSERT INTO history (account_id, delta) VALUES (:aid, :delta);
END;
";

/// The source's schema, rows and publication.
fn source_sql() -> String {
    format!(
        "CREATE TABLE accounts (id bigint PRIMARY KEY, balance bigint NOT NULL, filler text);
         CREATE TABLE history (id bigserial PRIMARY KEY, account_id bigint NOT NULL, delta int NOT NULL,
                               at timestamptz NOT NULL DEFAULT now());
         CREATE TABLE branches (id int PRIMARY KEY, name text NOT NULL);
         INSERT INTO accounts SELECT i, i % 1000, repeat('x', 80) FROM generate_series(1, {ACCOUNTS}) i;
         INSERT INTO history (account_id, delta) SELECT (i * 7919) % {ACCOUNTS} + 1, 0
             FROM generate_series(1, {HISTORY}) i;
         INSERT INTO branches SELECT i, 'branch ' || i FROM generate_series(1, {BRANCHES}) i;
         CREATE PUBLICATION {PUBLICATION} FOR TABLE accounts, history, branches;"
    )
}

/// The source cluster (database `source`), the destination cluster (`shard_0`, `shard_1`)
/// and pgdog in front of both; pgdog goes first on drop, then the files, then the clusters.
struct Move {
    pgdog: PgdogProcess,
    files: ConfigDir,
    source: LocalCluster,
    destination: LocalCluster,
}

impl Move {
    async fn start() -> Move {
        let source = cluster_with(LocalOptions::default());
        let destination = cluster_with(LocalOptions::default());
        source
            .create_database(SOURCE)
            .unwrap_or_else(|e| panic!("CREATE DATABASE {SOURCE}: {e}"));
        for k in 0..SHARDS {
            destination
                .create_database(&shard_database(k))
                .unwrap_or_else(|e| panic!("CREATE DATABASE shard_{k}: {e}"));
        }
        connect(&source, SOURCE)
            .await
            .batch_execute(&source_sql())
            .await
            .unwrap_or_else(|e| panic!("loading the source: {e:?}"));
        let port = free_port();
        let config = pgdog_toml(port, &source, &destination);
        let users = users_toml(true);
        let files = ConfigDir::new();
        files.write("script.sql", SCRIPT);
        let pgdog = PgdogProcess::start(&config, &users, port);
        Move {
            pgdog,
            files,
            source,
            destination,
        }
    }

    async fn shard(&self, k: usize) -> Client {
        connect(&self.destination, &shard_database(k)).await
    }
}

/// Databases `source` and `destination` (two shards), the destination's sharded and
/// omnisharded tables.
fn pgdog_toml(port: u16, source: &LocalCluster, destination: &LocalCluster) -> String {
    let mut config =
        format!("[general]\nhost = \"127.0.0.1\"\nport = {port}\nmin_pool_size = 0\n\n");
    let _ = write!(
        config,
        "[[databases]]\nname = \"{SOURCE}\"\nhost = \"127.0.0.1\"\nport = {}\ndatabase_name = \"{SOURCE}\"\n\n",
        source.port()
    );
    for k in 0..SHARDS {
        let _ = write!(
            config,
            "[[databases]]\nname = \"{DESTINATION}\"\nhost = \"127.0.0.1\"\nport = {}\ndatabase_name = \"{}\"\nshard = {k}\n\n",
            destination.port(),
            shard_database(k)
        );
    }
    for (table, column) in [("accounts", "id"), ("history", "account_id")] {
        let _ = write!(
            config,
            "[[sharded_tables]]\ndatabase = \"{DESTINATION}\"\nschema = \"public\"\nname = \"{table}\"\ncolumn = \"{column}\"\ndata_type = \"bigint\"\n\n"
        );
    }
    let _ = write!(
        config,
        "[[omnisharded_tables]]\ndatabase = \"{DESTINATION}\"\ntables = [\"public.branches\"]\n\n"
    );
    config
}

/// A pgbench run in the background, its output in files.
struct Pgbench {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
    logs: PathBuf,
    started: Instant,
    /// `started` as µs since the epoch (pgbench's log clock).
    started_epoch_us: u64,
}

/// What pgbench printed and logged.
struct PgbenchResult {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    /// Per-transaction latency (µs, from the scheduled start) and end (µs since the epoch) of
    /// every logged transaction.
    latencies: Vec<(u64, u64)>,
    /// The largest schedule lag (µs) in the log.
    max_schedule_lag: u64,
    /// The longest a transaction ran once started (µs: latency less schedule lag).
    max_running: u64,
    /// Log lines whose time is not a number (failed or skipped transactions).
    not_numeric: usize,
}

impl Pgbench {
    fn start(setup: &Move) -> Pgbench {
        let dir = setup.files.path("pgbench");
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let stdout = setup.files.path("pgbench.stdout");
        let stderr = setup.files.path("pgbench.stderr");
        let script = setup.files.path("script.sql");
        let child = Command::new(pg_tool("pgbench"))
            .args(["-h", "127.0.0.1", "-p", &setup.pgdog.port().to_string()])
            .args(["-U", SCHEMA_ADMIN, "-n", "-M", "prepared"])
            .args(["-c", "4", "-j", "2", "-R", "100", "-P", "1"])
            .args(["-T", &PGBENCH_SECONDS.to_string(), "--log"])
            .arg(format!("--log-prefix={}", dir.join("tx").display()))
            .arg("-f")
            .arg(&script)
            .arg(SOURCE)
            .env("PGPASSWORD", SCHEMA_ADMIN_PASSWORD)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run pgbench: {e}"));
        Pgbench {
            child,
            stdout,
            stderr,
            logs: dir,
            started: Instant::now(),
            started_epoch_us: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_micros() as u64)
                .unwrap_or(0),
        }
    }

    /// When pgbench stops starting transactions.
    fn ends_at(&self) -> Instant {
        self.started + Duration::from_secs(PGBENCH_SECONDS)
    }

    /// Waits for pgbench to exit (killing it a minute after its duration) and reads its
    /// output and logs.
    async fn finish(mut self) -> PgbenchResult {
        let deadline = self.ends_at() + Duration::from_secs(60);
        let code = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status.code(),
                Ok(None) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break None;
                }
            }
        };
        let mut result = PgbenchResult {
            code,
            stdout: std::fs::read_to_string(&self.stdout).unwrap_or_default(),
            stderr: std::fs::read_to_string(&self.stderr).unwrap_or_default(),
            latencies: Vec::new(),
            max_schedule_lag: 0,
            max_running: 0,
            not_numeric: 0,
        };
        read_logs(&self.logs, &mut result);
        result
    }
}

impl Drop for Pgbench {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Reads pgbench's per-transaction logs (`tx.<pid>`, `tx.<pid>.<thread>`): `client_id
/// transaction_no time script_no time_epoch time_us schedule_lag`.
fn read_logs(dir: &Path, result: &mut PgbenchResult) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries.flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for line in text.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let number = |i: usize| fields.get(i).and_then(|t| t.parse::<u64>().ok());
            match (number(2), number(4), number(5)) {
                (Some(latency), Some(s), Some(us)) => {
                    result.latencies.push((latency, s * 1_000_000 + us));
                    let lag = number(6).unwrap_or(0);
                    result.max_schedule_lag = result.max_schedule_lag.max(lag);
                    result.max_running = result.max_running.max(latency.saturating_sub(lag));
                }
                _ => result.not_numeric += 1,
            }
        }
    }
}

/// The sum of the balances, the count of history rows and the sum of their deltas in
/// `client`'s database.
async fn totals(client: &Client) -> (i64, i64, i64) {
    let row = client
        .query_one(
            "SELECT (SELECT sum(balance)::int8 FROM accounts), \
             (SELECT count(*) FROM history), (SELECT coalesce(sum(delta), 0)::int8 FROM history)",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("totals: {e:?}"));
    (row.get(0), row.get(1), row.get(2))
}

/// What `SHOW CUTOVER` says of a finished cutover.
struct Cutover {
    pause_ms: u64,
    reverse_task: String,
}

/// Runs `RESHARD` and waits for its task to finish, at least [`AFTER_MOVE`] before pgbench
/// ends; returns the cutover's row.
async fn reshard(admin_client: &Client, pgbench: &Pgbench, pgdog: &PgdogProcess) -> Cutover {
    let sql = format!("RESHARD {SOURCE} {DESTINATION} {PUBLICATION}");
    let reply = run_simple(admin_client, &sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    assert_eq!(
        reply.columns,
        ["task_id", "replication_slot"],
        "{sql}: {reply:?}"
    );
    let task_id = reply
        .cell(0, "task_id")
        .unwrap_or_else(|| panic!("{sql}: no task id: {reply:?}"))
        .to_string();
    let reshard_at = pgbench.started.elapsed();
    let budget = (pgbench.ends_at() - AFTER_MOVE).saturating_duration_since(Instant::now());
    let task = integration::eventually(
        budget,
        &format!(
            "the RESHARD task to end {AFTER_MOVE:?} before pgbench does (pgbench runs \
             {PGBENCH_SECONDS} s; if the move is just slow here, raise PGBENCH_SECONDS)"
        ),
        || async {
            admin::task(admin_client, &task_id)
                .await
                .filter(|row| !matches!(row.status.as_str(), "running" | "stopping"))
        },
    )
    .await;
    let moved_at = pgbench.started.elapsed();
    assert_eq!(
        task.status,
        "finished",
        "RESHARD: {task:?}\n{}",
        pgdog.log()
    );
    assert!(
        task.step
            .contains(&format!("clients of {SOURCE} now reach {DESTINATION}")),
        "RESHARD: {task:?}"
    );
    eprintln!(
        "RESHARD: {} (started {:.1} s after pgbench, seen finished after {:.1} s)",
        task.step,
        reshard_at.as_secs_f64(),
        moved_at.as_secs_f64()
    );
    let cutovers = run_simple(admin_client, "SHOW CUTOVER")
        .await
        .unwrap_or_else(|e| panic!("SHOW CUTOVER: {e}"));
    let row = (0..cutovers.rows.len())
        .find(|r| cutovers.cell(*r, "task_id") == Some(task_id.as_str()))
        .unwrap_or_else(|| panic!("RESHARD task {task_id} not in SHOW CUTOVER: {cutovers:?}"));
    assert_eq!(cutovers.cell(row, "status"), Some("done"), "{cutovers:?}");
    assert!(
        matches!(cutovers.cell(row, "forced"), Some("false" | "f")),
        "{cutovers:?}"
    );
    Cutover {
        pause_ms: cutovers
            .cell(row, "pause_ms")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no pause_ms in {cutovers:?}")),
        reverse_task: cutovers
            .cell(row, "reverse_task_id")
            .unwrap_or_else(|| panic!("no stream back in {cutovers:?}"))
            .to_string(),
    }
}

/// Asserts pgbench ended well (exit 0, no failed transaction, no aborted client, every
/// transaction logged) and returns how many transactions it committed.
fn assert_clean(result: &PgbenchResult) -> i64 {
    let report = format!(
        "--- pgbench stdout\n{}\n--- pgbench stderr (tail)\n{}",
        result.stdout,
        tail(&result.stderr, 30)
    );
    assert_eq!(result.code, Some(0), "pgbench failed\n{report}");
    assert!(
        !result.stderr.contains("aborted"),
        "a pgbench client aborted\n{}",
        result.stderr
    );
    assert_eq!(
        pgbench_number(&result.stdout, "number of failed transactions:"),
        Some(0.0),
        "{report}"
    );
    let committed = pgbench_number(&result.stdout, "number of transactions actually processed:")
        .unwrap_or_else(|| panic!("no transaction count\n{report}")) as i64;
    assert_eq!(
        result.not_numeric, 0,
        "failed or skipped transactions in the log"
    );
    assert_eq!(
        result.latencies.len() as i64,
        committed,
        "transactions logged vs reported"
    );
    committed
}

/// Prints what clients felt: the longest transaction, where the slow ones were (per second
/// of the run), the five longest, and pgdog's cutover log lines to compare them with.
fn report_latencies(result: &PgbenchResult, started_epoch_us: u64, pause_ms: u64, log: &str) {
    let ms = |us: u64| us as f64 / 1000.0;
    let (longest, longest_end) = result.latencies.iter().copied().max().unwrap_or((0, 0));
    let mut sorted: Vec<u64> = result.latencies.iter().map(|(l, _)| *l).collect();
    sorted.sort_unstable();
    let p99 = sorted
        .get(sorted.len().saturating_sub(1) * 99 / 100)
        .copied()
        .unwrap_or(0);
    eprintln!(
        "pgbench: {} transactions, 0 failed; longest transaction {:.1} ms from its scheduled \
         start, ended {:.1} s after pgbench started (p99 {:.1} ms; largest schedule lag {:.1} ms; \
         longest once started {:.1} ms); the cutover paused traffic {pause_ms} ms",
        result.latencies.len(),
        ms(longest),
        longest_end.saturating_sub(started_epoch_us) as f64 / 1_000_000.0,
        ms(p99),
        ms(result.max_schedule_lag),
        ms(result.max_running)
    );
    let mut slow: BTreeMap<u64, (usize, u64)> = BTreeMap::new();
    for (latency, end) in &result.latencies {
        if *latency > 100_000 {
            let entry = slow
                .entry(end.saturating_sub(started_epoch_us) / 1_000_000)
                .or_default();
            entry.0 += 1;
            entry.1 = entry.1.max(*latency);
        }
    }
    for (second, (count, max)) in slow {
        eprintln!(
            "  second {second}: {count} transactions over 100 ms, longest {:.1} ms",
            ms(max)
        );
    }
    let mut worst = result.latencies.clone();
    worst.sort_unstable_by_key(|(latency, _)| std::cmp::Reverse(*latency));
    for (latency, end) in worst.iter().take(5) {
        eprintln!(
            "  {:.1} ms, ended at {}.{:06} (epoch)",
            ms(*latency),
            end / 1_000_000,
            end % 1_000_000
        );
    }
    for line in log.lines().filter(|l| l.contains("cutover")) {
        eprintln!("  pgdog: {line}");
    }
}

/// Waits until every record of stream task `task` shows `lag_bytes` 0.
async fn wait_caught_up(admin_client: &Client, task: &str) {
    integration::eventually(
        Duration::from_secs(120),
        "the stream back to catch up",
        || async {
            let replication = run_simple(admin_client, "SHOW REPLICATION").await.ok()?;
            let rows: Vec<usize> = (0..replication.rows.len())
                .filter(|r| replication.cell(*r, "task_id") == Some(task))
                .collect();
            (!rows.is_empty()
                && rows
                    .iter()
                    .all(|r| replication.cell(*r, "lag_bytes") == Some("0")))
            .then_some(())
        },
    )
    .await;
}

/// Checks every shard: no row on the wrong shard, every branch there, no history id twice.
/// Returns the totals over the shards (see [`totals`]).
async fn check_shards(setup: &Move) -> (i64, i64, i64) {
    let (mut balance, mut history, mut deltas) = (0, 0, 0);
    let mut ids = HashSet::new();
    for k in 0..SHARDS {
        let shard = setup.shard(k).await;
        for spec in TABLES {
            assert_eq!(
                misplaced(&shard, &spec, SHARDS, k).await,
                0,
                "{} rows on the wrong shard {k}",
                spec.label()
            );
        }
        let (b, h, d) = totals(&shard).await;
        balance += b;
        history += h;
        deltas += d;
        for row in shard
            .query("SELECT id FROM history", &[])
            .await
            .unwrap_or_else(|e| panic!("history ids on shard {k}: {e:?}"))
        {
            let id: i64 = row.get(0);
            assert!(ids.insert(id), "history id {id} on two shards");
        }
        let branches: i64 = shard
            .query_one("SELECT count(*) FROM branches", &[])
            .await
            .unwrap_or_else(|e| panic!("{e:?}"))
            .get(0);
        assert_eq!(branches, BRANCHES, "branches on shard {k}");
    }
    (balance, history, deltas)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_through_the_whole_move_sees_no_failure() {
    let t0 = Instant::now();
    let phase = |what: &str| eprintln!("[{:>6.1} s] {what}", t0.elapsed().as_secs_f64());
    let setup = Move::start().await;
    phase("clusters, source data and pgdog ready");
    let source = connect(&setup.source, SOURCE).await;
    let (initial_balance, initial_history, _) = totals(&source).await;
    assert_eq!(initial_history, HISTORY);
    let admin_client = setup.pgdog.admin().await;

    let pgbench = Pgbench::start(&setup);
    // pgbench writes through pgdog before the move starts.
    integration::eventually(
        Duration::from_secs(30),
        "pgbench to commit through pgdog",
        || async {
            let count: i64 = source
                .query_one("SELECT count(*) FROM history", &[])
                .await
                .ok()?
                .get(0);
            (count > HISTORY).then_some(())
        },
    )
    .await;

    // The whole move, unattended; pgbench goes on against the shards until its time is up.
    let cutover = reshard(&admin_client, &pgbench, &setup.pgdog).await;
    let started_epoch_us = pgbench.started_epoch_us;
    let result = pgbench.finish().await;
    let committed = assert_clean(&result);
    report_latencies(
        &result,
        started_epoch_us,
        cutover.pause_ms,
        &setup.pgdog.log(),
    );

    // The stream back brings every write made on the shards to the old database.
    wait_caught_up(&admin_client, &cutover.reverse_task).await;
    phase("the stream back caught up");

    // Every row on its shard; the shards hold what pgbench committed, and so does the old
    // database.
    let (balance, history, deltas) = check_shards(&setup).await;
    assert_eq!(
        history,
        HISTORY + committed,
        "history rows on the shards: one per committed transaction"
    );
    assert_eq!(
        balance,
        initial_balance + deltas,
        "balances on the shards moved by exactly the history's deltas"
    );
    let old = totals(&source).await;
    if old != (balance, history, deltas) {
        let replication = run_simple(&admin_client, "SHOW REPLICATION").await;
        let state: Vec<String> = match source
            .query(
                "SELECT slot || ' ' || commit_lsn::text || ' ' || end_lsn::text \
                 FROM pgdog.replication_state",
                &[],
            )
            .await
        {
            Ok(rows) => rows.iter().map(|r| r.get(0)).collect(),
            Err(e) => vec![e.to_string()],
        };
        panic!(
            "the old database after the stream back: {old:?}, the shards: {:?}\n\
             SHOW REPLICATION: {replication:?}\nold database's replication_state: {state:?}\n\
             --- pgdog log\n{}",
            (balance, history, deltas),
            tail(&setup.pgdog.log(), 300)
        );
    }

    // VERIFY agrees: the old database and the shards hold the same rows.
    let sql = format!("VERIFY {SOURCE}_before_cutover {SOURCE}");
    let verified = run_simple(&admin_client, &sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    assert_eq!(verified.rows.len(), TABLES.len(), "{sql}: {verified:?}");
    for r in 0..verified.rows.len() {
        assert_eq!(
            verified.cell(r, "status"),
            Some("match"),
            "{sql}: {verified:?}"
        );
    }
    phase("VERIFY matched");
    drop(admin_client);
    drop(setup);
}
