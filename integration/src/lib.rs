//! End-to-end test harness: throwaway PostgreSQL clusters (from `pgdog::local`) and a real
//! `pgdog` process in front of them, configured through real `pgdog.toml`/`users.toml` files.
//! Everything is torn down on drop, also when a test panics.

/// Plumbing shared by the benchmark binaries.
pub mod bench;
pub mod data_sync;
pub mod pgdog_process;
/// A minimal PostgreSQL protocol client for tests that need exact control of the messages.
pub mod raw;
pub mod schema_sync;
pub mod sharded;
pub mod tools;

pub use pgdog::local::{HostAuth, LocalCluster, LocalError, LocalOptions};
pub use pgdog_process::{free_port, PgdogProcess};

/// Starts a cluster with default options (SCRAM, superuser postgres/postgres), or panics with
/// the reason: in tests a missing Postgres is a setup failure to report loudly.
pub fn cluster() -> LocalCluster {
    cluster_with(LocalOptions::default())
}

/// Starts a cluster with the given options, or panics with the reason.
pub fn cluster_with(options: LocalOptions) -> LocalCluster {
    match LocalCluster::start(options) {
        Ok(cluster) => cluster,
        Err(e) => panic!("cannot start a PostgreSQL cluster: {e}"),
    }
}

/// A `pgdog.toml` with one database `name` on `cluster`, and `extra` appended to `[general]`.
pub fn single_database_config(
    cluster: &LocalCluster,
    name: &str,
    port: u16,
    extra: &str,
) -> String {
    format!(
        "[general]\nhost = \"127.0.0.1\"\nport = {port}\nmin_pool_size = 0\n{extra}\n\n[[databases]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {}\ndatabase_name = \"postgres\"\n",
        cluster.port()
    )
}

/// The admin database password the harness configures (user `admin`, database `admin`).
pub const ADMIN_PASSWORD: &str = "admin-secret";

/// A `users.toml` with user `postgres` / `postgres` on database `name`, plus `extra` keys, and
/// the admin database as `admin` / [`ADMIN_PASSWORD`].
pub fn single_user_config(name: &str, extra: &str) -> String {
    format!(
        "[admin]\nname = \"admin\"\nuser = \"admin\"\npassword = \"{ADMIN_PASSWORD}\"\n\n{}",
        user_entry(name, extra)
    )
}

/// One `[[users]]` entry: `postgres` / `postgres` on database `name`, plus `extra` keys.
pub fn user_entry(name: &str, extra: &str) -> String {
    format!(
        "[[users]]\nname = \"postgres\"\ndatabase = \"{name}\"\npassword = \"postgres\"\n{extra}\n"
    )
}

/// One cluster with pgdog in front: database `app` (on the cluster's `postgres` database),
/// user `postgres`/`postgres`. pgdog is dropped (killed) before the cluster.
pub struct Setup {
    /// The pgdog process.
    pub pgdog: PgdogProcess,
    /// The cluster behind it.
    pub cluster: LocalCluster,
}

impl Setup {
    /// Starts a cluster and pgdog; `general` is appended to `[general]`, `user` to the user entry.
    pub fn new(general: &str, user: &str) -> Setup {
        let cluster = cluster();
        Self::with_cluster(cluster, general, user)
    }

    /// Starts pgdog in front of an existing cluster.
    pub fn with_cluster(cluster: LocalCluster, general: &str, user: &str) -> Setup {
        let port = free_port();
        let config = single_database_config(&cluster, "app", port, general);
        let users = single_user_config("app", user);
        let pgdog = PgdogProcess::start(&config, &users, port);
        Setup { pgdog, cluster }
    }

    /// A tokio-postgres connection through pgdog as postgres/postgres to `app`.
    pub async fn connect(&self) -> tokio_postgres::Client {
        match self.pgdog.connect("postgres", "postgres", "app").await {
            Ok(client) => client,
            Err(e) => panic!("cannot connect through pgdog: {e}\n{}", self.pgdog.log()),
        }
    }

    /// [`PgdogProcess::connect_watched`] as postgres/postgres to `app`.
    pub async fn connect_watched(
        &self,
    ) -> (
        tokio_postgres::Client,
        tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
    ) {
        match self
            .pgdog
            .connect_watched("postgres", "postgres", "app")
            .await
        {
            Ok(pair) => pair,
            Err(e) => panic!("cannot connect through pgdog: {e}\n{}", self.pgdog.log()),
        }
    }

    /// A tokio-postgres connection to the admin database.
    pub async fn admin(&self) -> tokio_postgres::Client {
        self.pgdog.admin().await
    }

    /// psql on the admin database.
    pub fn admin_psql(&self, args: &[&str]) -> tools::ToolOutput {
        tools::psql(self.pgdog.port(), "admin", ADMIN_PASSWORD, "admin", args)
    }

    /// psql through pgdog.
    pub fn psql(&self, args: &[&str]) -> tools::ToolOutput {
        tools::psql(self.pgdog.port(), "postgres", "postgres", "app", args)
    }

    /// A direct tokio-postgres connection to the cluster as the superuser.
    pub async fn connect_direct(&self) -> tokio_postgres::Client {
        let url = self
            .cluster
            .connection_string("postgres", "postgres", "postgres");
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("direct connection failed: {e}"));
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }
}

/// The SQLSTATE of a tokio-postgres error, if the server (or pgdog) sent one.
pub fn sqlstate(error: &tokio_postgres::Error) -> Option<String> {
    error.as_db_error().map(|e| e.code().code().to_string())
}

/// The message of a tokio-postgres error: the server's (or pgdog's) message when it sent one,
/// otherwise the error's text (e.g. an I/O error).
pub fn error_message(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => db.message().to_string(),
        None => error.to_string(),
    }
}

/// Pids of the cluster's client backends other than `direct`'s own. On a test cluster that is
/// only used through pgdog (plus `direct`), these are pgdog's server connections.
pub async fn server_backend_pids(direct: &tokio_postgres::Client) -> Vec<i32> {
    direct
        .query(
            "SELECT pid FROM pg_stat_activity \
             WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() ORDER BY pid",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("cannot read pg_stat_activity: {e}"))
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// Calls `check` every 50 ms until it returns `Some`, and returns that; panics naming `what`
/// if `timeout` passes first. For waiting on a condition instead of sleeping a fixed time.
pub async fn eventually<T, F, Fut>(timeout: std::time::Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if std::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
