//! Throwaway local PostgreSQL clusters for `pgdog demo`, the integration
//! tests and benchmarks. This file owns [`LocalCluster`] and its lifecycle.
//!
//! A cluster lives in `<temp_dir>/pgdog-pg-<pid>-<n>-<random>/` (`data/`,
//! `postgres.log`, the unix socket), listens on 127.0.0.1 at a free port and
//! starts as a copy of a template made by one shared initdb (`template.rs`).
//! As root, the server runs as the OS user `pgdog_test` (`exec.rs`).
//! [`LocalCluster::start_replica`] makes a streaming replica of a running
//! cluster with pg_basebackup, in a directory and on a port of its own.
//!
//! ```ignore
//! let pg = LocalCluster::start(LocalOptions::default())?;
//! pg.create_user("pgdog", "pgdog", false)?;
//! let conn = pg.connection_string("postgres", "pgdog", "pgdog");
//! let standby = pg.start_replica()?; // read-only, same roles and data
//! ```

mod config;
mod error;
mod exec;
mod template;

pub use self::error::LocalError;

/// The (uid, gid) that local servers run as: the OS user `pgdog_test` (created if needed) when
/// this process is root, `None` when it is not (servers then run as the current user). Other
/// tools that refuse root, such as PgBouncer in the benchmarks, can run as the same user.
pub fn server_os_user() -> Result<Option<(u32, u32)>, LocalError> {
    Ok(exec::install()?.run_as)
}

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tracing::{info, warn};

/// How clients connecting over TCP (from 127.0.0.1) authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostAuth {
    /// `scram-sha-256`, the default.
    #[default]
    ScramSha256,
    /// `md5`, with passwords stored as MD5 hashes (`password_encryption = md5`).
    Md5,
    /// `trust`: any password, or none, is accepted.
    Trust,
}

impl HostAuth {
    /// The method's name in pg_hba.conf.
    pub fn as_str(self) -> &'static str {
        match self {
            HostAuth::ScramSha256 => "scram-sha-256",
            HostAuth::Md5 => "md5",
            HostAuth::Trust => "trust",
        }
    }
}

/// Settings for [`LocalCluster::start`].
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// `max_connections`; default 300.
    pub max_connections: u32,
    /// More postgresql.conf settings, applied after (so overriding) the
    /// built-in ones. Values are quoted for you: `("work_mem", "8MB")`.
    pub extra_settings: Vec<(String, String)>,
    /// Authentication over TCP; default SCRAM-SHA-256.
    pub host_auth: HostAuth,
    /// Password of the superuser `postgres`; default `"postgres"`.
    pub superuser_password: String,
    /// Keep the files (not the running server) after drop, for debugging;
    /// default: whether the environment has `PGDOG_KEEP_CLUSTERS=1`.
    pub keep: bool,
}

impl Default for LocalOptions {
    fn default() -> Self {
        LocalOptions {
            max_connections: 300,
            extra_settings: Vec::new(),
            host_auth: HostAuth::default(),
            superuser_password: "postgres".into(),
            keep: std::env::var("PGDOG_KEEP_CLUSTERS").is_ok_and(|v| v == "1"),
        }
    }
}

/// A running throwaway cluster; dropping it (also in a panicking test) stops
/// the server and deletes its files. Safe to create many from several threads
/// and processes at once.
#[derive(Debug)]
pub struct LocalCluster {
    root: PathBuf,
    data: PathBuf,
    log: PathBuf,
    port: u16,
    options: LocalOptions,
    install: &'static exec::Install,
    /// Made by [`LocalCluster::start_replica`]: a hot standby streaming from another cluster.
    is_replica: bool,
}

impl LocalCluster {
    /// Creates, configures and starts a cluster; returns once it accepts
    /// connections and the superuser `postgres` has its password.
    pub fn start(options: LocalOptions) -> Result<LocalCluster, LocalError> {
        let install = exec::install()?;
        let template = template::template(install)?;
        // From here on, returning early drops `cluster`, which cleans up.
        let mut cluster = LocalCluster::empty(options, install, false)?;
        let mut cp = install.server_cmd("cp");
        exec::run(cp.arg("-a").arg(&template).arg(&cluster.data))?;
        config::configure(&cluster)?;
        cluster.start_on_free_port()?;
        let password = config::quote_literal(&cluster.options.superuser_password);
        let sql = format!("ALTER ROLE postgres PASSWORD E{password}");
        cluster.psql("postgres", &sql)?;
        info!(port = cluster.port, dir = %cluster.root.display(), "local PostgreSQL started");
        Ok(cluster)
    }

    /// Creates and starts a streaming replica (hot standby) of this cluster,
    /// which must be running: `pg_basebackup -X stream -R` over the unix socket
    /// into a new directory, then a server of its own on another free port.
    /// Returns once the replica accepts connections, is in recovery and its WAL
    /// receiver streams from this cluster.
    ///
    /// Being a physical copy, the replica has the same options, databases,
    /// roles and passwords; it is read-only (writes fail with SQLSTATE 25006).
    /// It is an independent [`LocalCluster`]: stopping, killing or dropping it
    /// leaves this cluster alone, and either may be dropped first. No
    /// replication slot is used, so a replica stopped for long while this
    /// cluster writes much WAL may be unable to catch up when restarted.
    /// A replica of a replica (cascading replication) needs
    /// `full_page_writes = on` in the first cluster's
    /// [`extra_settings`](LocalOptions::extra_settings); with the default
    /// (off), pg_basebackup refuses to back up a standby.
    pub fn start_replica(&self) -> Result<LocalCluster, LocalError> {
        let install = self.install;
        // From here on, returning early drops `replica`, which cleans up.
        let mut replica = LocalCluster::empty(self.options.clone(), install, true)?;
        let mut basebackup = install.server_cmd(install.bin("pg_basebackup"));
        basebackup
            .arg("-D")
            .arg(&replica.data)
            .arg("-h")
            .arg(&self.root);
        basebackup.args(["-p", &self.port.to_string(), "-U", "postgres"]);
        exec::run(basebackup.args("-X stream -R --checkpoint=fast --no-sync".split(' ')))?;
        // Settings of its own (port, socket directory) in place of the copied ones.
        replica.start_on_free_port()?;
        replica.wait_for_streaming()?;
        info!(
            port = replica.port,
            primary_port = self.port,
            dir = %replica.root.display(),
            "local PostgreSQL replica started"
        );
        Ok(replica)
    }

    /// Whether this cluster is a replica made by [`start_replica`](Self::start_replica).
    pub fn is_replica(&self) -> bool {
        self.is_replica
    }

    /// TCP port of the server (the same after [`restart`](Self::restart)).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Address of the server: `"127.0.0.1"`.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The data directory (PGDATA).
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// Directory of the server's unix socket (usable as a libpq `host`).
    pub fn socket_dir(&self) -> &Path {
        &self.root
    }

    /// TCP connection string `host=127.0.0.1 port=N dbname=.. user=.. password=..`
    /// (values quoted only if they need it).
    pub fn connection_string(&self, database: &str, user: &str, password: &str) -> String {
        let q = |v: &str| match v.is_empty() || v.contains([' ', '\t', '\n', '\'', '\\']) {
            true => config::quote_literal(v),
            false => v.to_string(),
        };
        let (port, db, user, password) = (self.port, q(database), q(user), q(password));
        format!("host=127.0.0.1 port={port} dbname={db} user={user} password={password}")
    }

    /// Runs `sql` with psql (`-X -q -A -t -v ON_ERROR_STOP=1`) as superuser
    /// over the unix socket. Returns stdout without its final newline; errors
    /// carry psql's stderr.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, LocalError> {
        let mut cmd = exec::user_cmd(self.install.bin("psql"));
        cmd.args("-X -q -A -t -v ON_ERROR_STOP=1 -U postgres -h".split(' '));
        cmd.arg(&self.root).arg("-p").arg(self.port.to_string());
        let out = exec::run(cmd.args(["-d", database, "-c", sql]))?;
        Ok(out.trim_end_matches('\n').to_string())
    }

    /// Creates a database.
    pub fn create_database(&self, name: &str) -> Result<(), LocalError> {
        let sql = format!("CREATE DATABASE {}", config::quote_ident(name));
        self.psql("postgres", &sql).map(drop)
    }

    /// Creates a role with LOGIN and `password`, hashed per the cluster's
    /// `password_encryption` (MD5 with [`HostAuth::Md5`], else SCRAM).
    pub fn create_user(
        &self,
        name: &str,
        password: &str,
        superuser: bool,
    ) -> Result<(), LocalError> {
        let (name, password) = (config::quote_ident(name), config::quote_literal(password));
        let su = if superuser { "SUPERUSER" } else { "" };
        let sql = format!("CREATE ROLE {name} LOGIN {su} PASSWORD E{password}");
        self.psql("postgres", &sql).map(drop)
    }

    /// Stops the server cleanly (`pg_ctl stop -m fast`); no-op if it is down.
    pub fn stop(&self) -> Result<(), LocalError> {
        self.shutdown("fast", "60")
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`), so the next
    /// start does crash recovery; no-op if it is down.
    pub fn kill(&self) -> Result<(), LocalError> {
        self.shutdown("immediate", "60")
    }

    /// Stops the server if it runs, then starts it again on the same port.
    pub fn restart(&self) -> Result<(), LocalError> {
        self.stop()?;
        self.pg_ctl_start()
    }

    /// The last `lines` lines of the server log (`postgres.log` beside `data/`).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log_since(0);
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// A cluster with a fresh directory (owned by the server user) but no data
    /// directory or port yet; dropping it removes the directory.
    fn empty(
        options: LocalOptions,
        install: &'static exec::Install,
        is_replica: bool,
    ) -> Result<LocalCluster, LocalError> {
        let root = config::unique_dir()?;
        let (data, log) = (root.join("data"), root.join("postgres.log"));
        let cluster = LocalCluster {
            root,
            data,
            log,
            port: 0,
            options,
            install,
            is_replica,
        };
        install.chown(&cluster.root)?;
        Ok(cluster)
    }

    /// Writes the settings with a free port and starts the server, retrying
    /// with another port when someone takes ours first.
    fn start_on_free_port(&mut self) -> Result<(), LocalError> {
        for attempt in 1..=5 {
            self.port = config::reserve_port()?;
            config::write_settings(self)?;
            let log_len = fs::metadata(&self.log).map_or(0, |m| m.len());
            match self.pg_ctl_start() {
                Ok(()) => break,
                // Someone took the port between our check and the server's bind.
                Err(err) if attempt < 5 && self.log_since(log_len).contains("already in use") => {
                    warn!(port = self.port, %err, "port taken, retrying with another");
                    config::release_port(std::mem::take(&mut self.port));
                }
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// Waits until the (replica) server is in recovery and receiving WAL by
    /// streaming replication.
    fn wait_for_streaming(&self) -> Result<(), LocalError> {
        const TIMEOUT: Duration = Duration::from_secs(60);
        let deadline = Instant::now() + TIMEOUT;
        let sql = "SELECT pg_is_in_recovery(), (SELECT status FROM pg_stat_wal_receiver)";
        loop {
            let answer = self.psql("postgres", sql);
            let reason = match &answer {
                Ok(row) if row == "t|streaming" => return Ok(()),
                Ok(row) if row.starts_with('f') => "the server is not in recovery".to_string(),
                _ if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                Ok(row) => format!("not streaming after {TIMEOUT:?} (recovery|status: {row:?})"),
                Err(err) => format!("not streaming after {TIMEOUT:?}: {err}"),
            };
            return Err(LocalError::Start {
                data_dir: self.data.display().to_string(),
                reason,
                log_tail: self.log_tail(30),
            });
        }
    }

    fn log_since(&self, offset: u64) -> String {
        let bytes = fs::read(&self.log).unwrap_or_default();
        String::from_utf8_lossy(bytes.get(offset as usize..).unwrap_or_default()).into_owned()
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<String, LocalError> {
        let mut cmd: Command = self.install.server_cmd(self.install.bin("pg_ctl"));
        exec::run(
            cmd.arg("-D")
                .arg(&self.data)
                .arg("-l")
                .arg(&self.log)
                .args(args),
        )
    }

    fn pg_ctl_start(&self) -> Result<(), LocalError> {
        let started = self.pg_ctl(&["-w", "-t", "60", "start"]);
        started.map(drop).map_err(|err| LocalError::Start {
            data_dir: self.data.display().to_string(),
            reason: err.to_string(),
            log_tail: self.log_tail(30),
        })
    }

    fn shutdown(&self, mode: &str, timeout_secs: &str) -> Result<(), LocalError> {
        if self.postmaster_pid().is_none() {
            return Ok(());
        }
        match self.pg_ctl(&["-w", "-t", timeout_secs, "stop", "-m", mode]) {
            Err(_) if !self.postmaster_pid().is_some_and(alive) => Ok(()), // stale pid file
            result => result.map(drop),
        }
    }

    /// Postmaster pid from postmaster.pid, if that names our data directory.
    fn postmaster_pid(&self) -> Option<libc::pid_t> {
        let text = fs::read_to_string(self.data.join("postmaster.pid")).ok()?;
        let mut lines = text.lines();
        let pid = lines.next()?.trim().parse().ok()?;
        (Path::new(lines.next()?) == self.data).then_some(pid)
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if let Err(err) = self.shutdown("immediate", "5") {
            warn!(%err, "pg_ctl could not stop the local cluster, signalling the postmaster");
            // SIGQUIT is an immediate shutdown; SIGKILL if that is not enough.
            for signal in [libc::SIGQUIT, libc::SIGKILL] {
                let Some(pid) = self.postmaster_pid().filter(|pid| alive(*pid)) else {
                    break;
                };
                // SAFETY: kill(2) on the pid our own server wrote.
                unsafe { libc::kill(pid, signal) };
                let wait = || std::thread::sleep(Duration::from_millis(100));
                (0..50).take_while(|_| alive(pid)).for_each(|_| wait());
            }
        }
        config::release_port(self.port);
        if self.options.keep {
            info!(data_dir = %self.data.display(), log = %self.log.display(), "kept local cluster");
        } else if let Err(err) = fs::remove_dir_all(&self.root) {
            warn!(%err, dir = %self.root.display(), "could not remove local cluster");
        }
    }
}

/// Whether process `pid` exists (EPERM: yes, but it is not ours to signal).
fn alive(pid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks for existence.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}
