//! The bench's servers: three throwaway clusters (`direct` with every row, `shard0` and
//! `shard1` with each row on its shard) loaded with the same `accounts` rows, and two pgdog
//! processes, one with one shard in front of `direct` and one with the two shards. Dropping a
//! [`Bench`] stops the pgdogs, then the clusters.

use std::cell::RefCell;
use std::fmt::Write as _;

use bytes::Bytes;
use integration::bench::{listening, tail};
use integration::{error_message, free_port, single_user_config, sqlstate, PgdogProcess};
use pgdog::local::{LocalCluster, LocalOptions};
use tokio::runtime::Runtime;
use tokio_postgres::{Client, NoTls};

use crate::copy::copy_in;
use crate::data::{text_by_shard, DDL};
use crate::{Args, Target, PASSWORD, PGDOG_DATABASE, POOL_SIZE, SERVER_DATABASE, TARGETS, USER};

/// Everything the runs need. Fields drop in order: the pgdogs before the clusters.
pub(crate) struct Bench {
    /// pgdog with one shard, `direct`.
    pgdog1: PgdogProcess,
    /// pgdog with two shards, `shards`.
    pgdog2: PgdogProcess,
    /// The cluster with every row.
    direct: LocalCluster,
    /// The clusters of shard 0 and shard 1.
    shards: [LocalCluster; 2],
    /// `SHOW server_version`.
    pub(crate) pg_version: String,
    /// Rows in `accounts`.
    pub(crate) rows: u64,
    /// Targets that stopped accepting connections, with what their log said.
    down: RefCell<[Option<String>; 3]>,
}

impl Bench {
    /// Starts and loads the clusters, then starts both pgdogs.
    pub(crate) fn start(runtime: &Runtime, args: &Args) -> Result<Bench, String> {
        let start = |name: &str| {
            eprintln!("starting PostgreSQL cluster {name}...");
            LocalCluster::start(LocalOptions::default())
                .map_err(|e| format!("cannot start PostgreSQL ({name}): {e}"))
        };
        let direct = start("direct")?;
        let shards = [start("shard0")?, start("shard1")?];
        let pg_version = direct
            .psql(SERVER_DATABASE, "SHOW server_version")
            .map_err(|e| format!("SHOW server_version: {e}"))?;

        eprintln!("loading {} accounts rows...", args.rows);
        let all = text_by_shard(args.rows, 1);
        let split = text_by_shard(args.rows, 2);
        let loads = [
            (&direct, &all[0]),
            (&shards[0], &split[0]),
            (&shards[1], &split[1]),
        ];
        for (cluster, rows) in loads {
            cluster
                .psql(SERVER_DATABASE, DDL)
                .map_err(|e| format!("creating the tables: {e}"))?;
            runtime.block_on(load(cluster, rows))?;
            cluster
                .psql(SERVER_DATABASE, "VACUUM ANALYZE accounts")
                .map_err(|e| format!("VACUUM ANALYZE accounts: {e}"))?;
        }

        eprintln!("starting pgdog with 1 shard and with 2 shards...");
        let pgdog1 = start_pgdog(args.workers, &[&direct])?;
        let pgdog2 = start_pgdog(args.workers, &[&shards[0], &shards[1]])?;
        Ok(Bench {
            pgdog1,
            pgdog2,
            direct,
            shards,
            pg_version,
            rows: args.rows,
            down: RefCell::new([None, None, None]),
        })
    }

    /// The port clients of `target` connect to.
    pub(crate) fn port(&self, target: Target) -> u16 {
        match target {
            Target::Direct => self.direct.port(),
            Target::Pgdog1 => self.pgdog1.port(),
            Target::Pgdog2 => self.pgdog2.port(),
        }
    }

    /// The database clients of `target` ask for.
    pub(crate) fn database(&self, target: Target) -> &'static str {
        match target {
            Target::Direct => SERVER_DATABASE,
            Target::Pgdog1 | Target::Pgdog2 => PGDOG_DATABASE,
        }
    }

    /// The clusters holding `target`'s rows, in shard order.
    pub(crate) fn backends(&self, target: Target) -> Vec<&LocalCluster> {
        match target {
            Target::Direct | Target::Pgdog1 => vec![&self.direct],
            Target::Pgdog2 => self.shards.iter().collect(),
        }
    }

    /// Every cluster.
    pub(crate) fn clusters(&self) -> [&LocalCluster; 3] {
        [&self.direct, &self.shards[0], &self.shards[1]]
    }

    /// The pgdog process of `target`, if it is one.
    pub(crate) fn pgdog(&self, target: Target) -> Option<&PgdogProcess> {
        match target {
            Target::Direct => None,
            Target::Pgdog1 => Some(&self.pgdog1),
            Target::Pgdog2 => Some(&self.pgdog2),
        }
    }

    /// The last lines of the log of what serves `target`.
    pub(crate) fn log(&self, target: Target) -> String {
        match self.pgdog(target) {
            Some(pgdog) => format!("pgdog log (last lines):\n{}", tail(&pgdog.log(), 30)),
            None => format!("postgres log (last lines):\n{}", self.direct.log_tail(30)),
        }
    }

    /// A tokio-postgres connection to `target`.
    pub(crate) async fn connect(&self, target: Target) -> Result<Client, String> {
        let url = format!(
            "host=127.0.0.1 port={} user={USER} password={PASSWORD} dbname={}",
            self.port(target),
            self.database(target)
        );
        connect_url(&url)
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", target.name()))
    }

    /// Whether `target` stopped accepting connections earlier on.
    pub(crate) fn is_down(&self, target: Target) -> bool {
        self.down.borrow()[target.index()].is_some()
    }

    /// After a failed run: if `target` no longer accepts connections, remembers that with its
    /// log, so that later runs skip it. Returns whether it is down.
    pub(crate) fn check_alive(&self, target: Target) -> bool {
        if self.is_down(target) {
            return true;
        }
        if listening(self.port(target)) {
            return false;
        }
        let note = format!(
            "{} stopped accepting connections on port {}; its later runs were skipped.\n\n```\n{}\n```",
            target.name(),
            self.port(target),
            self.log(target)
        );
        eprintln!("!! {note}");
        self.down.borrow_mut()[target.index()] = Some(note);
        true
    }

    /// What [`check_alive`](Self::check_alive) found, for the report.
    pub(crate) fn down_notes(&self) -> Vec<String> {
        self.down.borrow().iter().flatten().cloned().collect()
    }

    /// WARN and ERROR lines pgdog logged, per pgdog target: their count and the last few.
    pub(crate) fn pgdog_warnings(&self) -> Vec<(Target, usize, String)> {
        let mut out = Vec::new();
        for target in TARGETS {
            let Some(pgdog) = self.pgdog(target) else {
                continue;
            };
            let log = pgdog.log();
            let lines: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("ERROR") || l.contains("WARN"))
                .collect();
            if !lines.is_empty() {
                out.push((target, lines.len(), tail(&lines.join("\n"), 8)));
            }
        }
        out
    }
}

/// A tokio-postgres connection (its task spawned on the current runtime).
pub(crate) async fn connect_url(url: &str) -> Result<Client, String> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(|e| pg_error(&e))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// A direct connection to a cluster's database.
pub(crate) async fn connect_cluster(cluster: &LocalCluster) -> Result<Client, String> {
    connect_url(&cluster.connection_string(SERVER_DATABASE, USER, PASSWORD)).await
}

/// A tokio-postgres error as `message (SQLSTATE xxxxx)`.
pub(crate) fn pg_error(error: &tokio_postgres::Error) -> String {
    match sqlstate(error) {
        Some(code) => format!("{} (SQLSTATE {code})", error_message(error)),
        None => error_message(error),
    }
}

/// COPYs `rows` (text format) into `accounts` on `cluster`.
async fn load(cluster: &LocalCluster, rows: &Bytes) -> Result<(), String> {
    let client = connect_cluster(cluster).await?;
    copy_in(&client, "COPY accounts FROM STDIN", rows)
        .await
        .map(drop)
        .map_err(|e| format!("loading accounts on port {}: {e}", cluster.port()))
}

/// `pgdog.toml` for database `bench` with one shard per Postgres port in `shards`, `accounts`
/// and `accounts_copy` sharded on `aid` when there are several.
fn pgdog_config(port: u16, workers: usize, shards: &[u16]) -> String {
    let mut config = format!(
        "[general]\nhost = \"127.0.0.1\"\nport = {port}\nworkers = {workers}\n\
         default_pool_size = {POOL_SIZE}\nmin_pool_size = 0\npooler_mode = \"transaction\"\n\n"
    );
    for (k, shard_port) in shards.iter().enumerate() {
        let _ = write!(
            config,
            "[[databases]]\nname = \"{PGDOG_DATABASE}\"\nhost = \"127.0.0.1\"\nport = {shard_port}\n\
             database_name = \"{SERVER_DATABASE}\"\nshard = {k}\n\n"
        );
    }
    if shards.len() > 1 {
        for table in ["accounts", "accounts_copy"] {
            let _ = write!(
                config,
                "[[sharded_tables]]\ndatabase = \"{PGDOG_DATABASE}\"\nname = \"{table}\"\n\
                 column = \"aid\"\ndata_type = \"bigint\"\n\n"
            );
        }
    }
    config
}

/// Starts pgdog in front of `shards`; a pgdog that does not come up is an error with its log.
fn start_pgdog(workers: usize, shards: &[&LocalCluster]) -> Result<PgdogProcess, String> {
    let port = free_port();
    let ports: Vec<u16> = shards.iter().map(|c| c.port()).collect();
    let config = pgdog_config(port, workers, &ports);
    let users = single_user_config(PGDOG_DATABASE, "");
    // The harness panics (after printing pgdog's log) when pgdog does not start.
    std::panic::catch_unwind(|| PgdogProcess::start(&config, &users, port)).map_err(|_| {
        format!(
            "pgdog with {} shard(s) did not start (its log is above); config:\n{config}",
            shards.len()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_shards_only_with_several_shards() {
        let one = pgdog_config(6432, 1, &[5001]);
        assert!(one.contains("port = 6432\nworkers = 1\n"), "{one}");
        assert!(one.contains("pooler_mode = \"transaction\""), "{one}");
        assert!(one.contains("port = 5001\ndatabase_name = \"postgres\"\nshard = 0\n"));
        assert!(!one.contains("sharded_tables"));
        let two = pgdog_config(6432, 2, &[5001, 5002]);
        assert!(two.contains("port = 5002\ndatabase_name = \"postgres\"\nshard = 1\n"));
        assert_eq!(two.matches("[[databases]]\nname = \"bench\"").count(), 2);
        for table in ["accounts", "accounts_copy"] {
            let entry = format!(
                "[[sharded_tables]]\ndatabase = \"bench\"\nname = \"{table}\"\ncolumn = \"aid\"\ndata_type = \"bigint\"\n"
            );
            assert!(two.contains(&entry), "{two}");
        }
    }
}
