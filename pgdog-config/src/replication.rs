//! The `[replication]` section of `pgdog.toml`: the tools and settings of resharding.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The `[replication]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Replication {
    /// The `pg_dump` schema sync runs; `None` uses the `pg_dump` on `PATH`. Its major version
    /// must be at least the source server's.
    pub pg_dump_path: Option<PathBuf>,
    /// At cutover, destination sequences restart this far above the source's live value, so
    /// ids the source hands out while traffic drains cannot collide. Default 1000.
    pub sequence_margin: i64,
    /// Secondary indexes built at once per destination shard by the post-copy schema sync
    /// (like pgcopydb's `--index-jobs`). Default 4.
    pub index_jobs: usize,
}

impl Default for Replication {
    fn default() -> Self {
        Replication {
            pg_dump_path: None,
            sequence_margin: 1000,
            index_jobs: 4,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    #[test]
    fn pg_dump_path_is_read_and_optional() {
        let config = Config::from_str(
            "[replication]\npg_dump_path = \"/usr/lib/postgresql/15/bin/pg_dump\"\n",
            "pgdog.toml",
        )
        .unwrap();
        assert_eq!(
            config.replication.pg_dump_path.as_deref(),
            Some(std::path::Path::new("/usr/lib/postgresql/15/bin/pg_dump"))
        );
        let config = Config::from_str("", "pgdog.toml").unwrap();
        assert_eq!(config.replication.pg_dump_path, None);
        assert_eq!(config.replication.sequence_margin, 1000);
        assert_eq!(config.replication.index_jobs, 4);
        let error = Config::from_str("[replication]\npg_dump = \"x\"\n", "pgdog.toml")
            .unwrap_err()
            .to_string();
        assert!(error.contains("replication.pg_dump"), "{error}");
    }
}
