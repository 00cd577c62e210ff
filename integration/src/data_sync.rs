//! Harness for the end-to-end tests of the data copy (`pgdog data-sync`, the admin database's
//! `COPY_DATA`): a source cluster with database `source` loaded from [`dataset`] (publication
//! `pub`), a destination cluster with `shard_0..shard_{N-1}` (optionally the last shard on a
//! cluster of its own, so it can be restarted alone), the config files naming them as pgdog
//! databases `source` and `destination`, the command line run to completion or in the
//! background ([`cli::CliRun`], for `kill -9`), table locks that hold the copy at a chosen
//! point ([`TableLock`]), and the judgement of the result ([`verify`]).

pub mod admin;
pub mod checks;
pub mod cli;
pub mod dataset;
pub mod output;
pub mod verify;
pub mod writer;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use tokio_postgres::Client;

use crate::schema_sync::{describe, run_with_timeout, users_toml, ConfigDir};
use crate::tools::ToolOutput;
use crate::{cluster_with, free_port, LocalCluster, LocalOptions, PgdogProcess};

pub use crate::schema_sync::{CLI_TIMEOUT, DESTINATION, PUBLICATION, SOURCE};
pub use checks::Expect;
pub use cli::CliRun;
pub use dataset::{Placement, Scale, TableSpec, TABLES};
pub use output::{Summary, TableOutcome};

/// The slot name pgdog derives from the publication `pub`.
pub const DEFAULT_SLOT: &str = "pgdog_pub";

/// The `[general]` lines every setup gets: ranges of 64 kB, so small tables split into many.
pub const SMALL_RANGES: &str = "resharding_copy_range_bytes = 65536\n";

/// The PostgreSQL database of destination shard `k`.
pub fn shard_database(k: usize) -> String {
    format!("shard_{k}")
}

/// How to build a [`DataSyncSetup`].
#[derive(Debug, Clone)]
pub struct DataSyncOptions {
    /// Destination shards.
    pub shards: usize,
    /// Put the last shard on a cluster of its own.
    pub separate_last_shard: bool,
    /// More `[general]` lines, after [`SMALL_RANGES`].
    pub general: String,
    /// Rows to generate.
    pub scale: Scale,
}

impl Default for DataSyncOptions {
    fn default() -> Self {
        DataSyncOptions {
            shards: 2,
            separate_last_shard: false,
            general: String::new(),
            scale: Scale::SMALL,
        }
    }
}

/// The clusters, databases and config files of one test. Dropping it kills the CLI runs and
/// pgdog, removes the files, then stops the clusters.
pub struct DataSyncSetup {
    pgdog: Option<PgdogProcess>,
    files: ConfigDir,
    config: String,
    users: String,
    port: u16,
    options: DataSyncOptions,
    /// The source cluster (database `source`).
    pub source: LocalCluster,
    /// The destination cluster (every shard but a separate last one).
    pub destination: LocalCluster,
    /// The last shard's own cluster, with [`DataSyncOptions::separate_last_shard`].
    pub separate: Option<LocalCluster>,
}

impl DataSyncSetup {
    /// Starts the clusters, loads the source, writes the config files.
    pub async fn start(options: DataSyncOptions) -> DataSyncSetup {
        assert!(options.shards >= 1);
        let source = cluster_with(LocalOptions::default());
        let destination = cluster_with(LocalOptions::default());
        let separate = options
            .separate_last_shard
            .then(|| cluster_with(LocalOptions::default()));
        source
            .create_database(SOURCE)
            .unwrap_or_else(|e| panic!("CREATE DATABASE {SOURCE}: {e}"));
        let port = free_port();
        let mut setup = DataSyncSetup {
            pgdog: None,
            files: ConfigDir::new(),
            config: String::new(),
            users: users_toml(true),
            port,
            options,
            source,
            destination,
            separate,
        };
        for k in 0..setup.shards() {
            let name = shard_database(k);
            setup
                .shard_cluster(k)
                .create_database(&name)
                .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        }
        setup.config = setup.pgdog_toml();
        setup.files.write("pgdog.toml", &setup.config);
        setup.files.write("users.toml", &setup.users);
        setup.load(SOURCE, 0).await;
        setup
    }

    /// Number of destination shards.
    pub fn shards(&self) -> usize {
        self.options.shards
    }

    /// The generated data's scale.
    pub fn scale(&self) -> Scale {
        self.options.scale
    }

    /// The cluster holding shard `k`.
    pub fn shard_cluster(&self, k: usize) -> &LocalCluster {
        match &self.separate {
            Some(separate) if k + 1 == self.shards() => separate,
            _ => &self.destination,
        }
    }

    fn pgdog_toml(&self) -> String {
        let mut config = format!(
            "[general]\nhost = \"127.0.0.1\"\nport = {}\nmin_pool_size = 0\n{SMALL_RANGES}{}\n\n",
            self.port, self.options.general
        );
        let _ = write!(
            config,
            "[[databases]]\nname = \"{SOURCE}\"\nhost = \"127.0.0.1\"\nport = {}\ndatabase_name = \"{SOURCE}\"\n\n",
            self.source.port()
        );
        for k in 0..self.shards() {
            let _ = write!(
                config,
                "[[databases]]\nname = \"{DESTINATION}\"\nhost = \"127.0.0.1\"\nport = {}\ndatabase_name = \"{}\"\nshard = {k}\n\n",
                self.shard_cluster(k).port(),
                shard_database(k)
            );
        }
        config.push_str(&dataset::sharding_toml());
        config
    }

    /// The pgdog.toml the CLI and the pgdog process use.
    pub fn config_path(&self) -> PathBuf {
        self.files.path("pgdog.toml")
    }

    /// The users.toml the CLI and the pgdog process use.
    pub fn users_path(&self) -> PathBuf {
        self.files.path("users.toml")
    }

    /// Creates database `database` on the source cluster (unless it is `source`, which exists)
    /// and loads the data set into it, then writer transactions `1..=writes`
    /// ([`dataset::writer_sql`]).
    pub async fn load(&self, database: &str, writes: u64) {
        if database != SOURCE {
            self.source
                .create_database(database)
                .unwrap_or_else(|e| panic!("CREATE DATABASE {database}: {e}"));
        }
        let client = connect(&self.source, database).await;
        let mut sql = dataset::source_sql(self.scale());
        for i in 1..=writes {
            sql.push_str(&dataset::writer_sql(i, self.scale()));
        }
        client
            .batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("loading the data set into {database}: {e:?}"));
    }

    fn command(&self, args: &[&str]) -> Command {
        crate::pgdog_process::pgdog_command(&self.config_path(), &self.users_path(), args)
    }

    /// Runs `pgdog -c <pgdog.toml> -u <users.toml> <args>` and waits (at most [`CLI_TIMEOUT`]).
    pub fn pgdog_cli(&self, args: &[&str]) -> ToolOutput {
        run_with_timeout(self.command(args), CLI_TIMEOUT)
    }

    /// `data-sync --from-database source --to-database destination --publication pub
    /// --sync-only` followed by `flags`.
    pub fn data_sync_args<'a>(flags: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec![
            "data-sync",
            "--from-database",
            SOURCE,
            "--to-database",
            DESTINATION,
            "--publication",
            PUBLICATION,
            "--sync-only",
        ];
        args.extend_from_slice(flags);
        args
    }

    /// Runs `pgdog data-sync` ([`data_sync_args`](Self::data_sync_args)) to the end.
    pub fn data_sync(&self, flags: &[&str]) -> ToolOutput {
        self.pgdog_cli(&Self::data_sync_args(flags))
    }

    /// [`data_sync`](Self::data_sync), panicking unless it exits with 0 and prints its summary.
    pub fn data_sync_ok(&self, flags: &[&str]) -> (ToolOutput, Summary) {
        let output = self.data_sync(flags);
        assert_eq!(
            output.code,
            0,
            "data-sync {flags:?} failed\n{}",
            describe(&output)
        );
        let summary = output::summary(&output.stdout).unwrap_or_else(|| {
            panic!(
                "no `copied <T> tables, <R> rows ...; replication slot <S> at <LSN>` line\n{}",
                describe(&output)
            )
        });
        (output, summary)
    }

    /// Runs `pgdog data-sync` ([`data_sync_args`](Self::data_sync_args)) on a terminal: under
    /// `script`, so stdout and stderr are a pseudo-terminal; both come back in `stdout`.
    pub fn data_sync_on_terminal(&self, flags: &[&str]) -> ToolOutput {
        let mut line = format!(
            "{} -c {} -u {}",
            crate::pgdog_process::pgdog_binary().display(),
            self.config_path().display(),
            self.users_path().display()
        );
        for arg in Self::data_sync_args(flags) {
            line.push(' ');
            line.push_str(arg);
        }
        let mut command = Command::new("script");
        command
            .args(["-q", "-e", "-c", &line, "/dev/null"])
            .env_remove("PGDOG_CONFIG")
            .env_remove("PGDOG_USERS")
            .env("COLUMNS", "120")
            .env("TERM", "xterm");
        run_with_timeout(command, CLI_TIMEOUT)
    }

    /// Starts `pgdog data-sync` in the background.
    pub fn spawn_data_sync(&self, flags: &[&str]) -> CliRun {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        CliRun::spawn(
            self.command(&Self::data_sync_args(flags)),
            self.files.path(&format!("run-{n}.stdout")),
            self.files.path(&format!("run-{n}.stderr")),
        )
    }

    /// Starts `pgdog data-sync` without `--sync-only` in the background: it copies (unless
    /// `flags` has `--replicate-only`) and then streams changes until SIGTERM.
    pub fn spawn_streaming(&self, flags: &[&str]) -> CliRun {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let mut args: Vec<&str> = Self::data_sync_args(flags);
        args.retain(|a| *a != "--sync-only");
        CliRun::spawn(
            self.command(&args),
            self.files.path(&format!("stream-{n}.stdout")),
            self.files.path(&format!("stream-{n}.stderr")),
        )
    }

    /// Runs `pgdog schema-sync` (pre phase) and panics unless it succeeds: the destination
    /// tables exist (empty) before a test takes locks on them.
    pub fn schema_sync_pre(&self) {
        let output = self.pgdog_cli(&[
            "schema-sync",
            "--from-database",
            SOURCE,
            "--to-database",
            DESTINATION,
            "--publication",
            PUBLICATION,
        ]);
        assert_eq!(output.code, 0, "schema-sync failed\n{}", describe(&output));
    }

    /// Starts pgdog on the same config files (once) and returns it.
    pub fn start_pgdog(&mut self) -> &PgdogProcess {
        if self.pgdog.is_none() {
            self.pgdog = Some(PgdogProcess::start(&self.config, &self.users, self.port));
        }
        match &self.pgdog {
            Some(pgdog) => pgdog,
            None => unreachable!("started above"),
        }
    }

    /// What the running pgdog logged so far (empty when none runs), for failure messages.
    pub fn pgdog_log(&self) -> String {
        self.pgdog
            .as_ref()
            .map(PgdogProcess::log)
            .unwrap_or_default()
    }

    /// Kills pgdog with SIGKILL (no cleanup of any kind); [`start_pgdog`](Self::start_pgdog)
    /// starts a new one on the same files.
    pub fn kill_pgdog(&mut self) {
        if let Some(mut pgdog) = self.pgdog.take() {
            pgdog.signal(9);
            pgdog.wait_exit(Duration::from_secs(10));
        }
    }

    /// A connection to `database` on the source cluster.
    pub async fn source_client(&self, database: &str) -> Client {
        connect(&self.source, database).await
    }

    /// A connection to shard `k`.
    pub async fn shard_client(&self, k: usize) -> Client {
        connect(self.shard_cluster(k), &shard_database(k)).await
    }

    /// Runs `sql` with psql on database `source`; panics when it fails.
    pub fn psql_source(&self, sql: &str) -> String {
        self.source
            .psql(SOURCE, sql)
            .unwrap_or_else(|e| panic!("on {SOURCE}: {sql}\n{e}"))
    }

    /// Runs `sql` with psql on shard `k`.
    pub fn try_psql_shard(&self, k: usize, sql: &str) -> Result<String, String> {
        self.shard_cluster(k)
            .psql(&shard_database(k), sql)
            .map_err(|e| e.to_string())
    }

    /// Runs `sql` with psql on shard `k`; panics when it fails.
    pub fn psql_shard(&self, k: usize, sql: &str) -> String {
        self.try_psql_shard(k, sql)
            .unwrap_or_else(|e| panic!("on shard {k}: {sql}\n{e}"))
    }

    /// Rows of `pgdog.copy_ranges` on shard `k` (0 while the table does not exist).
    pub async fn copy_ranges(&self, k: usize) -> i64 {
        state_rows(&self.shard_client(k).await, "copy_ranges").await
    }

    /// The replication slots of the source cluster.
    pub async fn slots(&self) -> Vec<Slot> {
        let client = self.source_client(SOURCE).await;
        client
            .query(
                "SELECT slot_name::text, coalesce(plugin::text, ''), slot_type, temporary, \
                 coalesce(database::text, ''), coalesce(confirmed_flush_lsn::text, '') \
                 FROM pg_replication_slots ORDER BY slot_name",
                &[],
            )
            .await
            .unwrap_or_else(|e| panic!("pg_replication_slots: {e:?}"))
            .iter()
            .map(|row| Slot {
                name: row.get(0),
                plugin: row.get(1),
                slot_type: row.get(2),
                temporary: row.get(3),
                database: row.get(4),
                confirmed_flush_lsn: row.get(5),
            })
            .collect()
    }

    /// Compares every table of the data set in `database` (on the source cluster) with the
    /// shards: one line per difference (see [`verify::compare`]).
    pub async fn compare_with(&self, database: &str) -> Vec<String> {
        let source = self.source_client(database).await;
        let mut shards = Vec::new();
        for k in 0..self.shards() {
            shards.push(self.shard_client(k).await);
        }
        verify::compare(&source, &shards, &TABLES).await
    }

    /// Panics listing every difference between the source and the shards.
    pub async fn assert_copied(&self, what: &str) {
        let problems = self.compare_with(SOURCE).await;
        assert!(
            problems.is_empty(),
            "{what}: the shards do not hold the source's rows:\n  {}",
            problems.join("\n  ")
        );
    }

    /// The row count of every table of the data set on the source.
    pub async fn source_counts(&self) -> Vec<(TableSpec, i64)> {
        self.counts_in(SOURCE).await
    }

    /// The row count of every table of the data set in `database` on the source cluster.
    pub async fn counts_in(&self, database: &str) -> Vec<(TableSpec, i64)> {
        let source = self.source_client(database).await;
        let mut counts = Vec::new();
        for spec in TABLES {
            counts.push((spec, verify::digest(&source, &spec, None).await.rows));
        }
        counts
    }

    /// The queries on shard `k`'s database waiting for a lock (other than the caller's).
    pub async fn lock_waiters(&self, k: usize) -> Vec<String> {
        let client = self.shard_client(k).await;
        client
            .query(
                "SELECT coalesce(query, '') FROM pg_stat_activity \
                 WHERE datname = $1 AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()",
                &[&shard_database(k)],
            )
            .await
            .unwrap_or_else(|e| panic!("pg_stat_activity: {e:?}"))
            .iter()
            .map(|row| row.get(0))
            .collect()
    }

    /// Waits until no other client session is connected to any shard database (e.g. the
    /// server side of a killed pgdog that was waiting on a test's lock); autovacuum workers
    /// and the idle connections of pgdog's pools (their last query is the health check `;`)
    /// do not count.
    pub async fn wait_shards_idle(&self) {
        for k in 0..self.shards() {
            let client = self.shard_client(k).await;
            let database = shard_database(k);
            crate::eventually(
                Duration::from_secs(60),
                "the shards' other sessions to end",
                || {
                    let (client, database) = (&client, &database);
                    async move {
                        let rows = client
                            .query(
                                "SELECT format('pid %s, %s, %s, waiting on %s: %s', pid, \
                                 application_name, state, coalesce(wait_event, '-'), \
                                 left(query, 120)) FROM pg_stat_activity \
                                 WHERE datname = $1 AND pid <> pg_backend_pid() \
                                 AND backend_type = 'client backend' \
                                 AND NOT (state = 'idle' AND query = ';')",
                                &[database],
                            )
                            .await
                            .ok()?;
                        rows.is_empty().then_some(())
                    }
                },
            )
            .await;
        }
    }
}

/// A row of `pg_replication_slots`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// `slot_name`.
    pub name: String,
    /// `plugin` (empty for physical slots).
    pub plugin: String,
    /// `slot_type`: `logical` or `physical`.
    pub slot_type: String,
    /// `temporary`.
    pub temporary: bool,
    /// `database` (empty for physical slots).
    pub database: String,
    /// `confirmed_flush_lsn` as text (empty when NULL).
    pub confirmed_flush_lsn: String,
}

/// Rows of `pgdog.<table>` (the copy's state) in `client`'s database, 0 when it does not exist.
pub async fn state_rows(client: &Client, table: &str) -> i64 {
    let exists: bool = client
        .query_one("SELECT to_regclass('pgdog.' || $1) IS NOT NULL", &[&table])
        .await
        .unwrap_or_else(|e| panic!("to_regclass: {e:?}"))
        .get(0);
    if !exists {
        return 0;
    }
    client
        .query_one(&format!("SELECT count(*) FROM pgdog.{table}"), &[])
        .await
        .map(|row| row.get(0))
        .unwrap_or(0)
}

/// A superuser connection to `database` on `cluster`, with `TimeZone = UTC`.
pub async fn connect(cluster: &LocalCluster, database: &str) -> Client {
    let url = cluster.connection_string(database, "postgres", "postgres");
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connection to {database} on {} failed: {e}", cluster.port()));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
        .batch_execute("SET TimeZone = 'UTC'")
        .await
        .unwrap_or_else(|e| panic!("SET TimeZone: {e:?}"));
    client
}

/// A transaction holding locks on tables of one database, to hold the copy at a chosen point
/// (e.g. `SHARE` blocks `COPY FROM`; `ROW EXCLUSIVE` lets it through but blocks `CREATE
/// INDEX` and foreign keys). Released by [`release`](Self::release) or when dropped.
pub struct TableLock {
    client: Client,
}

impl TableLock {
    /// `BEGIN; LOCK TABLE <tables> IN <mode> MODE` on `database` of `cluster`.
    pub async fn take(
        cluster: &LocalCluster,
        database: &str,
        tables: &[TableSpec],
        mode: &str,
    ) -> TableLock {
        let client = connect(cluster, database).await;
        let names: Vec<String> = tables.iter().map(TableSpec::sql_name).collect();
        let sql = format!("BEGIN; LOCK TABLE {} IN {mode} MODE", names.join(", "));
        client
            .batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        TableLock { client }
    }

    /// Ends the transaction, releasing the locks.
    pub async fn release(self) {
        let _ = self.client.batch_execute("ROLLBACK").await;
    }
}

/// Asserts that the run ended with exit code 1 and `pgdog: <message>` on stderr containing
/// every one of `needles` (case-insensitive).
pub fn assert_failed_with(output: &ToolOutput, needles: &[&str], what: &str) {
    assert_eq!(
        output.code,
        1,
        "{what}: expected exit code 1\n{}",
        describe(output)
    );
    let stderr = output.stderr.to_lowercase();
    assert!(
        stderr.contains("pgdog: "),
        "{what}: stderr must carry `pgdog: <message>`\n{}",
        describe(output)
    );
    for needle in needles {
        assert!(
            stderr.contains(&needle.to_lowercase()),
            "{what}: the error must mention {needle:?}\n{}",
            describe(output)
        );
    }
}
