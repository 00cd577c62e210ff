//! A `pgdog` process started from its binary with generated config files.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound then released; tests retry if it gets taken).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// `pgdog -c <config> -u <users> <args>` (the CLI subcommands), with the environment's config
/// paths removed and `RUST_LOG` defaulting to `info`.
pub fn pgdog_command(config: &Path, users: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(pgdog_binary());
    command
        .arg("-c")
        .arg(config)
        .arg("-u")
        .arg(users)
        .args(args)
        .env_remove("PGDOG_CONFIG")
        .env_remove("PGDOG_USERS")
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        );
    command
}

/// The pgdog binary: `$PGDOG_BIN`, or the workspace's debug build (built once on first use).
pub fn pgdog_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Ok(path) = std::env::var("PGDOG_BIN") {
            return PathBuf::from(path);
        }
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "pgdog", "--bin", "pgdog"])
            .current_dir(&workspace)
            .status()
            .unwrap_or_else(|e| panic!("cannot run cargo to build pgdog: {e}"));
        assert!(status.success(), "building pgdog failed");
        let target = std::env::var("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| workspace.join("target"));
        target.join("debug").join("pgdog")
    })
}

/// A running pgdog; killed and its directory removed on drop.
pub struct PgdogProcess {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
}

impl PgdogProcess {
    /// Writes the two config files into a new temp dir and starts pgdog on them, waiting until
    /// it accepts connections. `port` must be the one in `config`.
    pub fn start(config: &str, users: &str, port: u16) -> PgdogProcess {
        Self::start_with_env(config, users, port, &[])
    }

    /// Like [`start`](Self::start), with extra environment variables for pgdog.
    pub fn start_with_env(
        config: &str,
        users: &str,
        port: u16,
        env: &[(&str, &str)],
    ) -> PgdogProcess {
        let dir =
            std::env::temp_dir().join(format!("pgdog-it-{}-{}", std::process::id(), rand_suffix()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let mut process = PgdogProcess {
            child: None,
            dir,
            port,
        };
        process.write_config(config, users);
        let log =
            std::fs::File::create(process.log_path()).unwrap_or_else(|e| panic!("log file: {e}"));
        let child = Command::new(pgdog_binary())
            .arg("--config")
            .arg(process.dir.join("pgdog.toml"))
            .arg("--users")
            .arg(process.dir.join("users.toml"))
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env_remove("PGDOG_ADMIN_PASSWORD")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start pgdog: {e}"));
        process.child = Some(child);
        process.wait_ready();
        process
    }

    /// A tokio-postgres connection to the admin database as `admin` / [`crate::ADMIN_PASSWORD`].
    pub async fn admin(&self) -> tokio_postgres::Client {
        match self.connect("admin", crate::ADMIN_PASSWORD, "admin").await {
            Ok(client) => client,
            Err(e) => panic!("cannot connect to the admin database: {e}\n{}", self.log()),
        }
    }

    /// Rewrites the config files (e.g. before `reload`).
    pub fn write_config(&self, config: &str, users: &str) {
        for (name, text) in [("pgdog.toml", config), ("users.toml", users)] {
            let path = self.dir.join(name);
            std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        }
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("pgdog exited with {status} at startup:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "pgdog did not start listening on {}:\n{}",
            self.port,
            self.log()
        );
    }

    /// The port pgdog listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding its config files and log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("pgdog.log")
    }

    /// What pgdog logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Sends a signal (e.g. `libc::SIGHUP`).
    pub fn signal(&self, signal: i32) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(child.id().to_string())
                .status();
        }
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// A libpq connection string to pgdog.
    pub fn url(&self, user: &str, password: &str, database: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} password={password} dbname={database}",
            self.port
        )
    }

    /// Connects with tokio-postgres (the connection task is spawned on the current runtime).
    pub async fn connect(
        &self,
        user: &str,
        password: &str,
        database: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, connection) =
            tokio_postgres::connect(&self.url(user, password, database), tokio_postgres::NoTls)
                .await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Like [`connect`](Self::connect), but also returns the connection task. Its output says
    /// how the connection ended: e.g. `Err` carrying the FATAL error pgdog sent to an idle
    /// client (tokio-postgres reports such unsolicited errors there, not to the next query).
    pub async fn connect_watched(
        &self,
        user: &str,
        password: &str,
        database: &str,
    ) -> Result<
        (
            tokio_postgres::Client,
            tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
        ),
        tokio_postgres::Error,
    > {
        let (client, connection) =
            tokio_postgres::connect(&self.url(user, password, database), tokio_postgres::NoTls)
                .await?;
        Ok((client, tokio::spawn(connection)))
    }
}

impl Drop for PgdogProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("pgdog log ({}):\n{}", self.dir.display(), self.log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{}-{nanos}", COUNTER.fetch_add(1, Ordering::Relaxed))
}
