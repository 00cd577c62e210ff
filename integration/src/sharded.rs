//! Harness for the end-to-end tests of sharded routing: one PostgreSQL cluster holding the
//! shards as separate databases `shard_0..shard_{N-1}` plus an unsharded `reference` database,
//! and a pgdog process serving database `app` with one `[[databases]]` entry per shard.
//!
//! PostgreSQL itself is the judge of where rows belong: every database gets the empty hash
//! partitioned parents `hp_bigint`, `hp_varchar` and `hp_uuid`, so that
//! `satisfies_hash_partition('hp_<type>'::regclass, N, k, key)` says whether shard `k` of `N`
//! is the right place for `key` ([`ShardedSetup::placement_errors`], [`ShardedSetup::shards_of`]).
//! Answers pgdog merges from several shards are compared with the same query on the
//! reference database holding the same rows ([`Checker`]).

use std::fmt::Write as _;
use std::time::Duration;

use tokio_postgres::{Client, SimpleQueryMessage};

use crate::raw::{cstr, message, Raw};
use crate::tools::ToolOutput;
use crate::{cluster_with, single_user_config, LocalCluster, LocalOptions, PgdogProcess};

/// The name clients use for the sharded database.
pub const DATABASE: &str = "app";
/// The unsharded database holding the same rows as all shards together.
pub const REFERENCE: &str = "reference";

/// Client-side tokio-postgres connections are made to this host.
const HOST: &str = "127.0.0.1";

/// The SQL type of a sharding key as written in `data_type` (`"bigint"`, `"varchar"`, `"uuid"`);
/// also the suffix of its helper partitioned table.
fn helper_table(data_type: &str) -> String {
    format!("hp_{data_type}")
}

/// A `[[sharded_tables]]` entry of database `app`: `table` is sharded on `column` of type
/// `data_type` (`"bigint"`, `"varchar"` or `"uuid"`).
pub fn sharded_table(table: &str, column: &str, data_type: &str) -> String {
    format!(
        "[[sharded_tables]]\ndatabase = \"{DATABASE}\"\nname = \"{table}\"\ncolumn = \"{column}\"\ndata_type = \"{data_type}\"\n\n"
    )
}

/// An `[[omnisharded_tables]]` entry of database `app` with `tables`.
pub fn omnisharded_tables(tables: &[&str]) -> String {
    let list: Vec<String> = tables.iter().map(|t| format!("\"{t}\"")).collect();
    format!(
        "[[omnisharded_tables]]\ndatabase = \"{DATABASE}\"\ntables = [{}]\n\n",
        list.join(", ")
    )
}

/// A cluster with `shards` shard databases and a reference database, and pgdog in front of the
/// shards. pgdog is dropped (killed) before the cluster.
pub struct ShardedSetup {
    /// Kills pgdog if the test outlives [`TEST_TIME_LIMIT`]; dropped first.
    _watchdog: Watchdog,
    /// The pgdog process serving database `app`.
    pub pgdog: PgdogProcess,
    /// A streaming replica of `cluster`, when started with
    /// [`start_with_replica`](Self::start_with_replica); each shard has its replica there.
    pub replica: Option<LocalCluster>,
    /// The cluster holding `shard_0..` and `reference` (trust authentication,
    /// `max_prepared_transactions = 20`).
    pub cluster: LocalCluster,
    shards: usize,
}

impl ShardedSetup {
    /// Starts the cluster, creates the databases and helper tables, and starts pgdog with
    /// `extra_general` appended to `[general]` (`auth_type = "trust"` unless it sets its own)
    /// and `sharding_toml` (e.g. [`sharded_table`] entries) appended to `pgdog.toml`.
    pub fn start(shards: usize, extra_general: &str, sharding_toml: &str) -> ShardedSetup {
        Self::start_inner(shards, extra_general, sharding_toml, false)
    }

    /// Like [`start`](Self::start), plus a streaming replica of the cluster configured as
    /// each shard's replica (`role = "replica"`).
    pub fn start_with_replica(
        shards: usize,
        extra_general: &str,
        sharding_toml: &str,
    ) -> ShardedSetup {
        Self::start_inner(shards, extra_general, sharding_toml, true)
    }

    fn start_inner(
        shards: usize,
        extra_general: &str,
        sharding_toml: &str,
        with_replica: bool,
    ) -> ShardedSetup {
        assert!(shards >= 1, "a sharded setup needs at least one shard");
        let cluster = cluster_with(LocalOptions {
            host_auth: crate::HostAuth::Trust,
            extra_settings: vec![("max_prepared_transactions".into(), "20".into())],
            ..LocalOptions::default()
        });
        let helpers = "CREATE TABLE hp_bigint (k bigint) PARTITION BY HASH (k); \
                       CREATE TABLE hp_varchar (k varchar) PARTITION BY HASH (k); \
                       CREATE TABLE hp_uuid (k uuid) PARTITION BY HASH (k);";
        for name in Self::database_names(shards) {
            cluster
                .create_database(&name)
                .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
            cluster
                .psql(&name, helpers)
                .unwrap_or_else(|e| panic!("helper tables in {name}: {e}"));
        }
        let replica = with_replica.then(|| {
            cluster
                .start_replica()
                .unwrap_or_else(|e| panic!("cannot start a replica: {e}"))
        });
        let port = crate::free_port();
        let replica_port = replica.as_ref().map(LocalCluster::port);
        let config = Self::config(
            &cluster,
            replica_port,
            shards,
            port,
            extra_general,
            sharding_toml,
        );
        let users = single_user_config(DATABASE, "");
        let pgdog = PgdogProcess::start(&config, &users, port);
        ShardedSetup {
            _watchdog: Watchdog::start(pgdog.dir().join("pgdog.toml"), TEST_TIME_LIMIT),
            pgdog,
            replica,
            cluster,
            shards,
        }
    }

    /// `shard_0..shard_{N-1}` and `reference`.
    fn database_names(shards: usize) -> Vec<String> {
        let mut names: Vec<String> = (0..shards).map(|k| format!("shard_{k}")).collect();
        names.push(REFERENCE.to_string());
        names
    }

    /// The `pgdog.toml` of a setup.
    fn config(
        cluster: &LocalCluster,
        replica_port: Option<u16>,
        shards: usize,
        port: u16,
        extra_general: &str,
        sharding_toml: &str,
    ) -> String {
        let mut config =
            format!("[general]\nhost = \"{HOST}\"\nport = {port}\nmin_pool_size = 0\n");
        if !extra_general.contains("auth_type") {
            config.push_str("auth_type = \"trust\"\n");
        }
        config.push_str(extra_general);
        config.push_str("\n\n");
        for k in 0..shards {
            let _ = write!(
                config,
                "[[databases]]\nname = \"{DATABASE}\"\nhost = \"{HOST}\"\nport = {}\ndatabase_name = \"shard_{k}\"\nshard = {k}\n\n",
                cluster.port()
            );
            if let Some(replica_port) = replica_port {
                let _ = write!(
                    config,
                    "[[databases]]\nname = \"{DATABASE}\"\nhost = \"{HOST}\"\nport = {replica_port}\ndatabase_name = \"shard_{k}\"\nshard = {k}\nrole = \"replica\"\n\n"
                );
            }
        }
        config.push_str(sharding_toml);
        config
    }

    /// Waits until the replica (if any) has replayed everything the cluster wrote so far.
    pub async fn wait_for_replica(&self) {
        let Some(replica) = &self.replica else {
            return;
        };
        let lsn: String = self
            .direct("postgres")
            .await
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await
            .unwrap_or_else(|e| panic!("pg_current_wal_lsn: {e:?}"))
            .get(0);
        let url = replica.connection_string("postgres", "postgres", "postgres");
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connection to the replica failed: {e}"));
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let sql = format!("SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn");
        crate::eventually(Duration::from_secs(30), "the replica to catch up", || {
            let (client, sql) = (&client, &sql);
            async move {
                let row = client.query_one(sql.as_str(), &[]).await.ok()?;
                row.get::<_, Option<bool>>(0).filter(|done| *done)
            }
        })
        .await;
    }

    /// The number of shards.
    pub fn shards(&self) -> usize {
        self.shards
    }

    /// A tokio-postgres connection through pgdog to `app`.
    pub async fn connect(&self) -> Client {
        match self.pgdog.connect("postgres", "postgres", DATABASE).await {
            Ok(client) => client,
            Err(e) => panic!("cannot connect through pgdog: {e}\n{}", self.pgdog.log()),
        }
    }

    /// A raw protocol connection through pgdog to `app`.
    pub async fn raw(&self) -> Raw {
        Raw::login(self.pgdog.port(), "postgres", "postgres", DATABASE).await
    }

    /// A raw protocol connection straight to `database` on the cluster.
    pub async fn raw_direct(&self, database: &str) -> Raw {
        Raw::login(self.cluster.port(), "postgres", "postgres", database).await
    }

    /// A direct connection to database `database` of the cluster.
    pub async fn direct(&self, database: &str) -> Client {
        let url = self
            .cluster
            .connection_string(database, "postgres", "postgres");
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("direct connection to {database} failed: {e}"));
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }

    /// A direct connection to shard `k`.
    pub async fn shard(&self, k: usize) -> Client {
        self.direct(&format!("shard_{k}")).await
    }

    /// A direct connection to the reference database.
    pub async fn reference(&self) -> Client {
        self.direct(REFERENCE).await
    }

    /// Runs `sql` (any number of statements) on every shard and on the reference database.
    pub async fn schema(&self, sql: &str) {
        for name in Self::database_names(self.shards) {
            self.direct(&name)
                .await
                .batch_execute(sql)
                .await
                .unwrap_or_else(|e| panic!("schema on {name}: {e:?}\n{sql}"));
        }
    }

    /// Loads rows without pgdog: the reference gets every row of `select` (a query returning
    /// rows of `table`, column for column), shard `k` the rows whose `key_column` (of sharding
    /// type `data_type`) PostgreSQL places in hash partition `k` of N.
    pub async fn load(&self, table: &str, key_column: &str, data_type: &str, select: &str) {
        let reference = self.reference().await;
        reference
            .batch_execute(&format!("INSERT INTO {table} {select}"))
            .await
            .unwrap_or_else(|e| panic!("loading {table} into the reference: {e:?}"));
        let n = self.shards;
        let helper = helper_table(data_type);
        for k in 0..n {
            let sql = format!(
                "CREATE TEMP TABLE pgdog_load (LIKE {table}); \
                 INSERT INTO pgdog_load {select}; \
                 INSERT INTO {table} SELECT * FROM pgdog_load s \
                 WHERE satisfies_hash_partition('{helper}'::regclass, {n}, {k}, s.{key_column}::{data_type}); \
                 DROP TABLE pgdog_load;"
            );
            self.shard(k)
                .await
                .batch_execute(&sql)
                .await
                .unwrap_or_else(|e| panic!("loading {table} into shard {k}: {e:?}"));
        }
    }

    /// The shard PostgreSQL's hash partitioning picks for each value (text forms of keys of
    /// type `data_type`), asked on the reference database.
    pub async fn shards_of(&self, data_type: &str, values: &[&str]) -> Vec<usize> {
        let helper = helper_table(data_type);
        let sql = format!(
            "SELECT (SELECT min(k) FROM generate_series(0, $2 - 1) k \
                     WHERE satisfies_hash_partition('{helper}'::regclass, $2, k, t.v::{data_type})) \
             FROM unnest($1::text[]) WITH ORDINALITY AS t(v, i) ORDER BY t.i"
        );
        let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        let rows = self
            .reference()
            .await
            .query(&sql, &[&values, &(self.shards as i32)])
            .await
            .unwrap_or_else(|e| panic!("shards_of: {e:?}"));
        rows.iter()
            .map(|row| row.get::<_, Option<i32>>(0).unwrap_or(0) as usize)
            .collect()
    }

    /// The shard of one value; see [`shards_of`](Self::shards_of).
    pub async fn shard_of(&self, data_type: &str, value: &str) -> usize {
        self.shards_of(data_type, &[value]).await[0]
    }

    /// The first `count` bigint keys from `start` up that PostgreSQL places on `shard`.
    pub async fn bigint_keys_on(&self, shard: usize, start: i64, count: usize) -> Vec<i64> {
        let candidates: Vec<String> = (start..start + 64 * count as i64 + 64)
            .map(|v| v.to_string())
            .collect();
        let texts: Vec<&str> = candidates.iter().map(String::as_str).collect();
        let shards = self.shards_of("bigint", &texts).await;
        let keys: Vec<i64> = candidates
            .iter()
            .zip(shards)
            .filter(|(_, s)| *s == shard)
            .filter_map(|(v, _)| v.parse().ok())
            .take(count)
            .collect();
        assert_eq!(keys.len(), count, "not enough keys on shard {shard}");
        keys
    }

    /// Every row of `table` on every shard whose `key_column` (sharding type `data_type`)
    /// belongs to another shard, as `"shard_k: key ... belongs elsewhere"`. Empty when every
    /// row is where `PARTITION BY HASH` would put it.
    pub async fn placement_errors(
        &self,
        table: &str,
        key_column: &str,
        data_type: &str,
    ) -> Vec<String> {
        let n = self.shards;
        let helper = helper_table(data_type);
        let mut errors = Vec::new();
        for k in 0..n {
            let sql = format!(
                "SELECT {key_column}::text FROM {table} \
                 WHERE satisfies_hash_partition('{helper}'::regclass, {n}, {k}, {key_column}::{data_type}) IS NOT TRUE"
            );
            let rows = self
                .shard(k)
                .await
                .query(&sql, &[])
                .await
                .unwrap_or_else(|e| panic!("placement check on shard {k}: {e:?}"));
            for row in rows {
                let key: Option<String> = row.get(0);
                errors.push(format!(
                    "shard_{k}: {table}.{key_column} = {} belongs to another shard",
                    key.as_deref().unwrap_or("NULL")
                ));
            }
        }
        errors
    }

    /// Panics listing the misplaced rows of `table` if there are any.
    pub async fn assert_placement(&self, table: &str, key_column: &str, data_type: &str) {
        let errors = self.placement_errors(table, key_column, data_type).await;
        assert!(
            errors.is_empty(),
            "{} misplaced rows:\n{}",
            errors.len(),
            errors.join("\n")
        );
    }

    /// The result of `sql` (one query returning rows) run directly on every shard, one entry
    /// per shard, each row as text.
    pub async fn on_each_shard(&self, sql: &str) -> Vec<Vec<Vec<Option<String>>>> {
        let mut out = Vec::new();
        for k in 0..self.shards {
            let client = self.shard(k).await;
            let result = run_simple(&client, sql)
                .await
                .unwrap_or_else(|e| panic!("{sql} on shard {k}: {e}"));
            out.push(result.rows);
        }
        out
    }

    /// `SELECT count(*) FROM table` (plus `filter` as a WHERE clause when not empty) on each
    /// shard directly.
    pub async fn counts(&self, table: &str, filter: &str) -> Vec<i64> {
        let mut sql = format!("SELECT count(*) FROM {table}");
        if !filter.is_empty() {
            let _ = write!(sql, " WHERE {filter}");
        }
        let mut counts = Vec::new();
        for k in 0..self.shards {
            let row = self
                .shard(k)
                .await
                .query_one(&sql, &[])
                .await
                .unwrap_or_else(|e| panic!("{sql} on shard {k}: {e:?}"));
            counts.push(row.get(0));
        }
        counts
    }

    /// Transactions left prepared on the cluster (`pg_prepared_xacts`, all databases).
    pub async fn prepared_transactions(&self) -> Vec<String> {
        self.direct("postgres")
            .await
            .query(
                "SELECT gid || ' in ' || database FROM pg_prepared_xacts",
                &[],
            )
            .await
            .unwrap_or_else(|e| panic!("pg_prepared_xacts: {e:?}"))
            .iter()
            .map(|row| row.get(0))
            .collect()
    }

    /// A [`Checker`] with fresh connections through pgdog and to the reference.
    pub async fn checker(&self) -> Checker {
        Checker {
            pgdog: self.connect().await,
            reference: self.reference().await,
        }
    }

    /// Runs `sql` through pgdog and on the reference and panics if the answers differ
    /// (see [`Checker::same`]).
    pub async fn assert_same(&self, sql: &str) {
        self.checker().await.assert_same(sql).await;
    }

    /// psql through pgdog (`-X -A -t -v ON_ERROR_STOP=1`).
    pub fn psql(&self, args: &[&str]) -> ToolOutput {
        crate::tools::psql(self.pgdog.port(), "postgres", "postgres", DATABASE, args)
    }

    /// psql straight to `database` of the cluster.
    pub fn psql_direct(&self, database: &str, args: &[&str]) -> ToolOutput {
        crate::tools::psql(self.cluster.port(), "postgres", "postgres", database, args)
    }
}

/// How long a test may use its setup before the watchdog kills pgdog, so that a hung
/// exchange fails the test (every pending call then errors) instead of blocking it forever.
pub const TEST_TIME_LIMIT: Duration = Duration::from_secs(300);

/// A thread that kills the pgdog process started with `config` once `limit` has passed,
/// unless the watchdog was dropped first.
struct Watchdog {
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Watchdog {
    fn start(config: std::path::PathBuf, limit: Duration) -> Watchdog {
        use std::sync::atomic::Ordering;
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = done.clone();
        let deadline = std::time::Instant::now() + limit;
        std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                if std::time::Instant::now() >= deadline {
                    if let Some(pid) = pid_with_argument(&config.to_string_lossy()) {
                        eprintln!("watchdog: the test ran past {limit:?}, killing pgdog {pid}");
                        // SAFETY: kill(2) on the pid of the pgdog process this setup started.
                        unsafe {
                            libc::kill(pid, libc::SIGKILL);
                        }
                    }
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Watchdog { done }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.done.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The pid of a process whose command line has the argument `argument`.
fn pid_with_argument(argument: &str) -> Option<i32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            cmdline
                .split(|b| *b == 0)
                .any(|arg| arg == argument.as_bytes())
                .then_some(pid)
        })
}

/// The rows and command tags of a simple query, values as text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryResult {
    /// Column names of the last RowDescription.
    pub columns: Vec<String>,
    /// Every row, values as text (`None` for NULL).
    pub rows: Vec<Vec<Option<String>>>,
    /// The row count of each CommandComplete.
    pub counts: Vec<u64>,
}

impl QueryResult {
    /// The value of `column` in row `row`; `None` for NULL, a missing row or column.
    pub fn cell(&self, row: usize, column: &str) -> Option<&str> {
        let index = self.columns.iter().position(|c| c == column)?;
        self.rows.get(row)?.get(index)?.as_deref()
    }
}

/// An error as a test reports it: SQLSTATE and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    /// SQLSTATE, empty when there is none (e.g. a broken connection).
    pub code: String,
    /// Message.
    pub message: String,
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.message)
    }
}

impl From<tokio_postgres::Error> for QueryError {
    fn from(e: tokio_postgres::Error) -> Self {
        QueryError {
            code: crate::sqlstate(&e).unwrap_or_default(),
            message: crate::error_message(&e),
        }
    }
}

/// Runs `sql` with the simple protocol and collects rows as text; a query that never finishes
/// within 30 s is an error too.
pub async fn run_simple(client: &Client, sql: &str) -> Result<QueryResult, QueryError> {
    let messages = tokio::time::timeout(Duration::from_secs(30), client.simple_query(sql))
        .await
        .map_err(|_| QueryError {
            code: String::new(),
            message: "no answer within 30 s".into(),
        })??;
    let mut result = QueryResult::default();
    for message in messages {
        match message {
            SimpleQueryMessage::RowDescription(columns) => {
                result.columns = columns.iter().map(|c| c.name().to_string()).collect();
            }
            SimpleQueryMessage::Row(row) => {
                if result.columns.is_empty() {
                    result.columns = row.columns().iter().map(|c| c.name().to_string()).collect();
                }
                result.rows.push(
                    (0..row.len())
                        .map(|i| row.get(i).map(str::to_string))
                        .collect(),
                );
            }
            SimpleQueryMessage::CommandComplete(n) => result.counts.push(n),
            _ => {}
        }
    }
    Ok(result)
}

/// The SQLSTATE `sql` fails with, or panics if it succeeds.
pub async fn error_code(client: &Client, sql: &str) -> String {
    match run_simple(client, sql).await {
        Ok(result) => panic!("{sql} succeeded with {result:?}, expected an error"),
        Err(e) => e.code,
    }
}

/// How a query that pgdog may refuse turned out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// pgdog's answer was the reference's.
    Same,
    /// pgdog refused with SQLSTATE 0A000.
    Refused,
}

/// Compares answers through pgdog with the same queries on the reference database.
pub struct Checker {
    /// Connection through pgdog.
    pub pgdog: Client,
    /// Connection to the reference database.
    pub reference: Client,
}

impl Checker {
    /// Runs `sql` (simple protocol) through pgdog and on the reference; `Err` describes the
    /// difference. Compared: column names, rows as text (in order when the query has a
    /// top-level ORDER BY, as multisets otherwise) and the CommandComplete counts. Values of
    /// columns named `avg*` or `approx*` may differ in text if they are equal as numbers within
    /// a relative 1e-9.
    pub async fn same(&self, sql: &str) -> Result<(), String> {
        let expected = run_simple(&self.reference, sql)
            .await
            .unwrap_or_else(|e| panic!("the reference rejects {sql}: {e}"));
        let actual = run_simple(&self.pgdog, sql).await.map_err(|e| {
            format!(
                "{sql}\n  pgdog failed: {e}\n  expected: {}",
                render(&expected)
            )
        })?;
        compare(sql, &expected, &actual)
    }

    /// [`same`](Self::same), panicking on a difference.
    pub async fn assert_same(&self, sql: &str) {
        if let Err(e) = self.same(sql).await {
            panic!("{e}");
        }
    }

    /// Like [`same`](Self::same), but a refusal with SQLSTATE 0A000 is also fine: for queries
    /// pgdog may not be able to merge, where only a wrong answer is a failure.
    pub async fn same_or_refused(&self, sql: &str) -> Result<Outcome, String> {
        let expected = run_simple(&self.reference, sql)
            .await
            .unwrap_or_else(|e| panic!("the reference rejects {sql}: {e}"));
        match run_simple(&self.pgdog, sql).await {
            Ok(actual) => compare(sql, &expected, &actual).map(|_| Outcome::Same),
            Err(e) if e.code == "0A000" => Ok(Outcome::Refused),
            Err(e) => Err(format!(
                "{sql}\n  pgdog failed: {e} (expected the answer or 0A000)\n  expected: {}",
                render(&expected)
            )),
        }
    }

    /// Runs every query of `queries` with [`same`](Self::same) and panics listing all the
    /// differences at once.
    pub async fn assert_all_same(&self, queries: &[&str]) {
        let mut failures = Vec::new();
        for sql in queries {
            if let Err(e) = self.same(sql).await {
                failures.push(e);
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {} queries differ from the reference:\n\n{}",
            failures.len(),
            queries.len(),
            failures.join("\n\n")
        );
    }
}

/// Whether `sql` has an ORDER BY outside parentheses and string literals.
pub fn has_top_level_order_by(sql: &str) -> bool {
    let upper = sql.to_uppercase();
    let bytes = upper.as_bytes();
    let mut depth = 0i32;
    let mut quoted = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if quoted {
            quoted = b != b'\'';
        } else {
            match b {
                b'\'' => quoted = true,
                b'(' => depth += 1,
                b')' => depth -= 1,
                b'O' if depth == 0 && upper[i..].starts_with("ORDER BY") => {
                    let before = i.checked_sub(1).map(|j| bytes[j]);
                    if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_') {
                        return true;
                    }
                }
                _ => {}
            }
        }
        i += 1;
    }
    false
}

/// `Err` describing how `actual` differs from `expected` for `sql`.
fn compare(sql: &str, expected: &QueryResult, actual: &QueryResult) -> Result<(), String> {
    let mut problems = Vec::new();
    if expected.columns != actual.columns {
        problems.push(format!(
            "columns {:?}, expected {:?}",
            actual.columns, expected.columns
        ));
    }
    if expected.counts != actual.counts {
        problems.push(format!(
            "command counts {:?}, expected {:?}",
            actual.counts, expected.counts
        ));
    }
    let approx: Vec<bool> = expected
        .columns
        .iter()
        .map(|c| c.starts_with("avg") || c.starts_with("approx"))
        .collect();
    let (mut want, mut got) = (expected.rows.clone(), actual.rows.clone());
    let ordered = has_top_level_order_by(sql);
    if !ordered {
        want.sort();
        got.sort();
    }
    let rows_equal = want.len() == got.len()
        && want
            .iter()
            .zip(&got)
            .all(|(w, g)| rows_match(w, g, &approx));
    if !rows_equal {
        problems.push(format!(
            "rows differ ({}):\n  pgdog:     {}\n  reference: {}",
            if ordered { "in order" } else { "as multisets" },
            render_rows(&got),
            render_rows(&want)
        ));
    }
    match problems.is_empty() {
        true => Ok(()),
        false => Err(format!("{sql}\n  {}", problems.join("\n  "))),
    }
}

/// Whether two rows are equal, columns flagged in `approx` numerically within 1e-9.
fn rows_match(want: &[Option<String>], got: &[Option<String>], approx: &[bool]) -> bool {
    want.len() == got.len()
        && want.iter().zip(got).enumerate().all(|(i, (w, g))| {
            w == g || (approx.get(i) == Some(&true) && numbers_close(w.as_deref(), g.as_deref()))
        })
}

/// Whether two values are numbers within a relative 1e-9 of each other.
fn numbers_close(a: Option<&str>, b: Option<&str>) -> bool {
    let (Some(a), Some(b)) = (a, b) else {
        return false;
    };
    match (a.trim().parse::<f64>(), b.trim().parse::<f64>()) {
        (Ok(x), Ok(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
        _ => false,
    }
}

/// A short text form of a result for failure messages.
fn render(result: &QueryResult) -> String {
    format!(
        "columns {:?}, counts {:?}, rows {}",
        result.columns,
        result.counts,
        render_rows(&result.rows)
    )
}

/// At most 30 rows, then how many more there are.
fn render_rows(rows: &[Vec<Option<String>>]) -> String {
    let mut out = format!("{} rows ", rows.len());
    for row in rows.iter().take(30) {
        let cells: Vec<&str> = row.iter().map(|v| v.as_deref().unwrap_or("NULL")).collect();
        let _ = write!(out, "[{}] ", cells.join(", "));
    }
    if rows.len() > 30 {
        out.push_str("...");
    }
    out
}

/// Bind with explicit parameter format codes: `params` are the raw values (`None` for NULL),
/// `formats` their format codes (0 text, 1 binary; as in the protocol, empty or one for all or
/// one each), `result_formats` the result column format codes.
pub fn bind_params(
    portal: &str,
    statement: &str,
    params: &[Option<&[u8]>],
    formats: &[i16],
    result_formats: &[i16],
) -> Vec<u8> {
    let mut body = cstr(portal);
    body.extend(cstr(statement));
    body.extend_from_slice(&(formats.len() as i16).to_be_bytes());
    for f in formats {
        body.extend_from_slice(&f.to_be_bytes());
    }
    body.extend_from_slice(&(params.len() as i16).to_be_bytes());
    for p in params {
        match p {
            Some(value) => {
                body.extend_from_slice(&(value.len() as i32).to_be_bytes());
                body.extend_from_slice(value);
            }
            None => body.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    body.extend_from_slice(&(result_formats.len() as i16).to_be_bytes());
    for f in result_formats {
        body.extend_from_slice(&f.to_be_bytes());
    }
    message(b'B', &body)
}

/// The answer to one extended-protocol execution read with [`Raw`]: values as bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawResult {
    /// Name, type OID and format of each column.
    pub columns: Vec<(String, u32, i16)>,
    /// Each row's values (`None` for NULL).
    pub rows: Vec<Vec<Option<Vec<u8>>>>,
    /// CommandComplete tags.
    pub tags: Vec<String>,
    /// SQLSTATE of an ErrorResponse, if one came.
    pub error: Option<String>,
}

/// Runs one Parse/Bind/Describe/Execute/Sync of `sql` on `raw` with `params`
/// (see [`bind_params`]) and collects the answer up to ReadyForQuery.
pub async fn run_extended(
    raw: &mut Raw,
    sql: &str,
    params: &[Option<&[u8]>],
    formats: &[i16],
    result_formats: &[i16],
) -> RawResult {
    raw.send(&[
        crate::raw::parse("", sql),
        bind_params("", "", params, formats, result_formats),
        crate::raw::describe(b'P', ""),
        crate::raw::execute("", 0),
        crate::raw::sync(),
    ])
    .await;
    let mut result = RawResult::default();
    for (tag, body) in raw.until(b'Z').await {
        match tag {
            b'T' => result.columns = crate::raw::columns(&body),
            b'D' => result.rows.push(crate::raw::values(&body)),
            b'C' => {
                let end = body.iter().position(|b| *b == 0).unwrap_or(body.len());
                result
                    .tags
                    .push(String::from_utf8_lossy(&body[..end]).into_owned());
            }
            b'E' => result.error = Some(crate::raw::error_code(&body)),
            _ => {}
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_by_detection() {
        assert!(has_top_level_order_by("SELECT a FROM t ORDER BY a"));
        assert!(has_top_level_order_by("select a from t order by 1 limit 3"));
        assert!(!has_top_level_order_by("SELECT a FROM t"));
        assert!(!has_top_level_order_by(
            "SELECT row_number() OVER (ORDER BY a) FROM t"
        ));
        assert!(!has_top_level_order_by("SELECT 'ORDER BY' FROM t"));
        assert!(!has_top_level_order_by("SELECT x_order by FROM t"));
    }

    #[test]
    fn comparisons() {
        let result = |rows: Vec<Vec<Option<&str>>>| QueryResult {
            columns: vec!["a".into(), "avg".into()],
            rows: rows
                .into_iter()
                .map(|r| r.into_iter().map(|v| v.map(str::to_string)).collect())
                .collect(),
            counts: vec![2],
        };
        let a = result(vec![
            vec![Some("1"), Some("2.5000000000000000")],
            vec![Some("2"), None],
        ]);
        let b = result(vec![vec![Some("2"), None], vec![Some("1"), Some("2.5")]]);
        assert!(compare("SELECT a, avg(x) FROM t GROUP BY a", &a, &b).is_ok());
        assert!(compare("SELECT a, avg(x) FROM t GROUP BY a ORDER BY a", &a, &b).is_err());
        let c = result(vec![vec![Some("1"), Some("2.6")], vec![Some("2"), None]]);
        assert!(compare("SELECT 1", &a, &c).is_err());
    }
}
