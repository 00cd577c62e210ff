//! Harness for the end-to-end tests of schema sync: one PostgreSQL cluster with the databases
//! `source` (loaded from the fixture `tests/fixtures/schema_sync_source.sql`, publication
//! `pub`), `shard_0` and `shard_1` (empty), config files naming them as pgdog databases
//! `source` (one shard) and `destination` (two shards, `"Sales".orders` sharded on
//! `customer_id`), the `pgdog schema-sync` command line run as a real process, an optional
//! pgdog process for the admin database, and schema dumps to compare ([`dump`]).

pub mod dump;
pub mod output;

use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::tools::ToolOutput;
use crate::{cluster_with, free_port, LocalCluster, LocalOptions, PgdogProcess, ADMIN_PASSWORD};

pub use dump::{Dump, EntryKey};

/// The pgdog database being moved (one shard, PostgreSQL database `source`).
pub const SOURCE: &str = "source";
/// The pgdog database it moves to (shards on PostgreSQL databases `shard_0`, `shard_1`).
pub const DESTINATION: &str = "destination";
/// The publication of the fixture.
pub const PUBLICATION: &str = "pub";
/// How many destination shards there are.
pub const SHARDS: usize = 2;
/// The users.toml user with `schema_admin = true` (logs in to Postgres as `postgres`).
pub const SCHEMA_ADMIN: &str = "migrator";
/// Its password in users.toml.
pub const SCHEMA_ADMIN_PASSWORD: &str = "migrator-secret";
/// How long one CLI run may take before the test fails.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(180);

/// The path of the source fixture.
pub fn fixture_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schema_sync_source.sql")
}

/// The PostgreSQL database of destination shard `k`.
pub fn shard_database(k: usize) -> String {
    format!("shard_{k}")
}

/// The `[[sharded_tables]]` entry of the destination: `"Sales".orders` on `customer_id`.
pub const SHARDED_TABLES: &str = "[[sharded_tables]]\ndatabase = \"destination\"\nschema = \"Sales\"\nname = \"orders\"\ncolumn = \"customer_id\"\ndata_type = \"bigint\"\n";

/// A cluster with `source` (fixture loaded), `shard_0`, `shard_1`, and the config files.
/// Dropping it kills pgdog (if started), removes the files, then stops the cluster.
pub struct SchemaSyncSetup {
    pgdog: Option<PgdogProcess>,
    files: ConfigDir,
    /// The cluster holding all three databases (superuser `postgres` / `postgres`).
    pub cluster: LocalCluster,
}

impl SchemaSyncSetup {
    /// Starts everything, with the schema admin user in users.toml.
    pub fn start() -> SchemaSyncSetup {
        Self::start_inner(true)
    }

    /// Starts everything with a users.toml whose users lack `schema_admin = true`.
    pub fn start_without_schema_admin() -> SchemaSyncSetup {
        Self::start_inner(false)
    }

    fn start_inner(schema_admin: bool) -> SchemaSyncSetup {
        let cluster = cluster_with(LocalOptions::default());
        for name in [SOURCE.to_string(), shard_database(0), shard_database(1)] {
            cluster
                .create_database(&name)
                .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        }
        let fixture = fixture_path();
        let loaded = crate::tools::psql(
            cluster.port(),
            "postgres",
            "postgres",
            SOURCE,
            &["-q", "-f", &fixture.display().to_string()],
        );
        assert_eq!(
            loaded.code,
            0,
            "loading {} failed:\n{}",
            fixture.display(),
            loaded.stderr
        );
        let port = free_port();
        let files = ConfigDir::new();
        files.write("pgdog.toml", &pgdog_toml(&cluster, port));
        files.write("users.toml", &users_toml(schema_admin));
        SchemaSyncSetup {
            pgdog: None,
            files,
            cluster,
        }
    }

    /// The pgdog.toml the CLI and the pgdog process use.
    pub fn config_path(&self) -> PathBuf {
        self.files.path("pgdog.toml")
    }

    /// The users.toml the CLI and the pgdog process use.
    pub fn users_path(&self) -> PathBuf {
        self.files.path("users.toml")
    }

    /// Runs `pgdog -c <pgdog.toml> -u <users.toml> <args>` and waits (at most [`CLI_TIMEOUT`]).
    pub fn pgdog_cli(&self, args: &[&str]) -> ToolOutput {
        let command =
            crate::pgdog_process::pgdog_command(&self.config_path(), &self.users_path(), args);
        run_with_timeout(command, CLI_TIMEOUT)
    }

    /// `pgdog schema-sync --from-database source --to-database destination --publication pub`
    /// followed by `flags` (e.g. `--dry-run`, `--data-sync-complete`).
    pub fn schema_sync(&self, flags: &[&str]) -> ToolOutput {
        let mut args = vec![
            "schema-sync",
            "--from-database",
            SOURCE,
            "--to-database",
            DESTINATION,
            "--publication",
            PUBLICATION,
        ];
        args.extend_from_slice(flags);
        self.pgdog_cli(&args)
    }

    /// [`schema_sync`](Self::schema_sync), panicking with the output unless it exits with 0.
    pub fn schema_sync_ok(&self, flags: &[&str]) -> ToolOutput {
        let output = self.schema_sync(flags);
        assert_eq!(
            output.code,
            0,
            "schema-sync {flags:?} failed\n{}",
            describe(&output)
        );
        output
    }

    /// Starts pgdog on the same config files (once) and returns it.
    pub fn start_pgdog(&mut self) -> &PgdogProcess {
        if self.pgdog.is_none() {
            let config = read(&self.config_path());
            let users = read(&self.users_path());
            let port = config_port(&config);
            self.pgdog = Some(PgdogProcess::start(&config, &users, port));
        }
        match &self.pgdog {
            Some(pgdog) => pgdog,
            None => unreachable!("started above"),
        }
    }

    /// The pgdog process, if [`start_pgdog`](Self::start_pgdog) ran.
    pub fn pgdog(&self) -> Option<&PgdogProcess> {
        self.pgdog.as_ref()
    }

    /// Runs `sql` with psql as the superuser on `database`; returns the unaligned, tuples-only
    /// output. Panics when it fails.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        self.cluster
            .psql(database, sql)
            .unwrap_or_else(|e| panic!("on {database}: {sql}\n{e}"))
    }

    /// Like [`psql`](Self::psql), returning the error text instead of panicking.
    pub fn try_psql(&self, database: &str, sql: &str) -> Result<String, String> {
        self.cluster.psql(database, sql).map_err(|e| e.to_string())
    }

    /// Runs a psql script file (`-f`) on `database`, stopping at the first error.
    pub fn psql_script(&self, database: &str, script: &str) -> ToolOutput {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let path = self
            .files
            .path(&format!("script-{}.sql", N.fetch_add(1, Ordering::Relaxed)));
        std::fs::write(&path, script).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        let output = crate::tools::psql(
            self.cluster.port(),
            "postgres",
            "postgres",
            database,
            &["-q", "-f", &path.display().to_string()],
        );
        let _ = std::fs::remove_file(&path);
        output
    }

    /// The schema dump of `database` (see [`dump::DUMP_OPTIONS`]).
    pub fn dump(&self, database: &str) -> Dump {
        dump::pg_dump(self.cluster.port(), "postgres", "postgres", database)
    }

    /// The dump of the source database.
    pub fn source_dump(&self) -> Dump {
        self.dump(SOURCE)
    }

    /// The dump of destination shard `k`.
    pub fn shard_dump(&self, k: usize) -> Dump {
        self.dump(&shard_database(k))
    }

    /// The dumps of all destination shards, in shard order.
    pub fn shard_dumps(&self) -> Vec<Dump> {
        (0..SHARDS).map(|k| self.shard_dump(k)).collect()
    }
}

/// Exit code, stdout and stderr of a run, for failure messages.
pub fn describe(output: &ToolOutput) -> String {
    format!(
        "exit code {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.code, output.stdout, output.stderr
    )
}

/// The pgdog.toml of a setup: databases `source` and `destination` on `cluster`, listening on
/// `port`, and [`SHARDED_TABLES`].
pub fn pgdog_toml(cluster: &LocalCluster, port: u16) -> String {
    let mut config =
        format!("[general]\nhost = \"127.0.0.1\"\nport = {port}\nmin_pool_size = 0\n\n");
    let _ = write!(
        config,
        "[[databases]]\nname = \"{SOURCE}\"\nhost = \"127.0.0.1\"\nport = {}\ndatabase_name = \"{SOURCE}\"\n\n",
        cluster.port()
    );
    for k in 0..SHARDS {
        let _ = write!(
            config,
            "[[databases]]\nname = \"{DESTINATION}\"\nhost = \"127.0.0.1\"\nport = {}\ndatabase_name = \"{}\"\nshard = {k}\n\n",
            cluster.port(),
            shard_database(k)
        );
    }
    config.push_str(SHARDED_TABLES);
    config
}

/// The users.toml of a setup: the admin database, and [`SCHEMA_ADMIN`] on both databases
/// (logging in to Postgres as `postgres`), marked `schema_admin = true` when `schema_admin`.
pub fn users_toml(schema_admin: bool) -> String {
    let mut users =
        format!("[admin]\nname = \"admin\"\nuser = \"admin\"\npassword = \"{ADMIN_PASSWORD}\"\n\n");
    for database in [SOURCE, DESTINATION] {
        let _ = write!(
            users,
            "[[users]]\nname = \"{SCHEMA_ADMIN}\"\ndatabase = \"{database}\"\npassword = \"{SCHEMA_ADMIN_PASSWORD}\"\n\
             server_user = \"postgres\"\nserver_password = \"postgres\"\n"
        );
        if schema_admin {
            users.push_str("schema_admin = true\n");
        }
        users.push('\n');
    }
    users
}

/// The `port = N` of `[general]` in a pgdog.toml text.
fn config_port(config: &str) -> u16 {
    config
        .lines()
        .find_map(|line| line.strip_prefix("port = ")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no port in pgdog.toml:\n{config}"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Runs `command` with piped output, killing it after `timeout` (the test then fails with what
/// it printed so far).
pub fn run_with_timeout(mut command: Command, timeout: Duration) -> ToolOutput {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let stdout = read_all(child.stdout.take());
    let stderr = read_all(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let output = ToolOutput {
        code: status.and_then(|s| s.code()).unwrap_or(-1),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    };
    assert!(
        status.is_some(),
        "{command:?} did not finish within {timeout:?}\n{}",
        describe(&output)
    );
    output
}

/// Reads `pipe` to the end on a thread of its own (so a full pipe never blocks the child).
fn read_all<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut text);
        }
        String::from_utf8_lossy(&text).into_owned()
    })
}

/// A temp directory for the config files, removed on drop.
pub struct ConfigDir(PathBuf);

impl ConfigDir {
    /// Creates a new, empty directory.
    pub fn new() -> ConfigDir {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "pgdog-schema-sync-{}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        ConfigDir(dir)
    }

    /// The path of file `name` in it.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes file `name`.
    pub fn write(&self, name: &str, text: &str) {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

impl Default for ConfigDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for ConfigDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
