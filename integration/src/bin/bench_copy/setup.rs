//! The bench's servers and scratch space: one source cluster loaded with the data set and two
//! destination clusters (every 1→1 tool writes into the first; pgdog 1→2 puts shard 1 on the
//! second), all started with the same settings ([`SETTINGS`]), and a work directory for config
//! files, dumps and pgcopydb's files. Dropping a [`Bench`] stops the clusters and removes the
//! directory.

use std::path::Path;

use pgdog::local::{LocalCluster, LocalOptions};

use crate::dataset::{self, Placement, SOURCE_DB, TABLES};

/// Settings every cluster gets on top of the harness's own (`fsync = off`, `synchronous_commit
/// = off`, `full_page_writes = off`, `wal_level = logical`, `shared_buffers = 128MB`): no
/// checkpoint during a run, room for index builds, no autovacuum running into the next tool.
pub(crate) const SETTINGS: [(&str, &str); 4] = [
    ("max_wal_size", "4GB"),
    ("checkpoint_timeout", "30min"),
    ("maintenance_work_mem", "256MB"),
    ("autovacuum", "off"),
];

pub(crate) use integration::bench::HARNESS_SETTINGS;

pub(crate) use integration::bench::{SUPERUSER as USER, SUPERUSER_PASSWORD as PASSWORD};

pub(crate) use integration::bench::WorkDir;

/// The clusters and the source's numbers. Fields drop in order.
pub(crate) struct Bench {
    /// The source cluster (database [`SOURCE_DB`]).
    pub(crate) source: LocalCluster,
    /// The destination clusters.
    pub(crate) dests: [LocalCluster; 2],
    /// Scratch space.
    pub(crate) dir: WorkDir,
    /// `SHOW server_version`.
    pub(crate) pg_version: String,
    /// Rows and `pg_table_size` of each table of [`TABLES`] on the source.
    pub(crate) tables: Vec<(u64, u64)>,
    /// Seconds the data set took to generate.
    pub(crate) load_seconds: f64,
}

impl Bench {
    /// Starts the clusters and loads the source at `scale`.
    pub(crate) fn start(scale: f64) -> Result<Bench, String> {
        let start = |name: &str| {
            eprintln!("starting PostgreSQL cluster {name}...");
            let options = LocalOptions {
                extra_settings: SETTINGS
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..LocalOptions::default()
            };
            LocalCluster::start(options)
                .map_err(|e| format!("cannot start PostgreSQL ({name}): {e}"))
        };
        let source = start("source")?;
        let dests = [start("destination 0")?, start("destination 1")?];
        let dir = WorkDir::new("pgdog-bench-copy")?;
        let pg_version = source
            .psql("postgres", "SHOW server_version")
            .map_err(|e| format!("SHOW server_version: {e}"))?;
        eprintln!("generating the data set (scale {scale})...");
        let began = std::time::Instant::now();
        dataset::load(&source, scale)?;
        let load_seconds = began.elapsed().as_secs_f64();
        let tables = dataset::measure(&source)?;
        Ok(Bench {
            source,
            dests,
            dir,
            pg_version,
            tables,
            load_seconds,
        })
    }

    /// Sum of `pg_table_size` over the tables: the "MB" of every MB/s.
    pub(crate) fn bytes(&self) -> u64 {
        self.tables.iter().map(|t| t.1).sum()
    }

    /// Rows over all tables.
    pub(crate) fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.0).sum()
    }

    /// A libpq URI of `database` on the source.
    pub(crate) fn source_uri(&self) -> String {
        uri(&self.source, SOURCE_DB)
    }

    /// Creates `database` on destination `k`, dropping a leftover first.
    pub(crate) fn fresh_database(&self, k: usize, database: &str) -> Result<(), String> {
        self.drop_database(k, database)?;
        self.dests[k]
            .create_database(database)
            .map_err(|e| format!("CREATE DATABASE {database}: {e}"))
    }

    /// Drops `database` on destination `k` if it exists.
    pub(crate) fn drop_database(&self, k: usize, database: &str) -> Result<(), String> {
        let sql = format!("DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)");
        self.dests[k]
            .psql("postgres", &sql)
            .map(drop)
            .map_err(|e| format!("{sql}: {e}"))
    }

    /// `CHECKPOINT` on every cluster, so that no run pays for an earlier one's dirty pages.
    pub(crate) fn checkpoint(&self) -> Result<(), String> {
        for cluster in [&self.source, &self.dests[0], &self.dests[1]] {
            cluster
                .psql("postgres", "CHECKPOINT")
                .map_err(|e| format!("CHECKPOINT on port {}: {e}", cluster.port()))?;
        }
        Ok(())
    }

    /// Compares the row count of every table in the destination databases `shards` (one per
    /// shard, `(cluster index, database)`) with the source: sharded tables must add up to the
    /// source's count, omnisharded ones must have it on every shard (with one shard, both
    /// simply equal it). One line per difference; empty when all match.
    pub(crate) fn count_problems(&self, shards: &[(usize, String)]) -> Vec<String> {
        let mut problems = Vec::new();
        for (table, (source_rows, _)) in TABLES.iter().zip(&self.tables) {
            let sql = format!("SELECT count(*) FROM public.{}", table.name);
            let mut counts = Vec::new();
            for (k, database) in shards {
                match self.dests[*k].psql(database, &sql) {
                    Ok(text) => counts.push(text.trim().parse::<u64>().unwrap_or(u64::MAX)),
                    Err(e) => {
                        problems.push(format!("{}: {sql} on {database}: {e}", table.name));
                        counts.clear();
                        break;
                    }
                }
            }
            if counts.is_empty() {
                continue;
            }
            let fine = match table.placement {
                Placement::Sharded(_) => counts.iter().sum::<u64>() == *source_rows,
                Placement::Everywhere => counts.iter().all(|c| c == source_rows),
            };
            if !fine {
                problems.push(format!(
                    "{}: source {source_rows} rows, destination {counts:?}",
                    table.name
                ));
            }
        }
        problems
    }
}

/// `postgresql://postgres:postgres@127.0.0.1:<port>/<database>`.
pub(crate) fn uri(cluster: &LocalCluster, database: &str) -> String {
    format!(
        "postgresql://{USER}:{PASSWORD}@127.0.0.1:{}/{database}",
        cluster.port()
    )
}

/// `path` as text, for command lines.
pub(crate) fn text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}
