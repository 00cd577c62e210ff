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
    /// How the data copy compresses the large values it writes into TOAST on the shards
    /// (`default_toast_compression` of its sessions). Default `lz4`.
    pub toast_compression: ToastCompression,
}

/// The compression of values the data copy writes out of line (TOAST). Columns with their own
/// `COMPRESSION` keep it whatever this says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToastCompression {
    /// LZ4: several times faster to write and read than pglz (servers built with lz4,
    /// which Debian's and most distributions' are; others fall back to their default).
    #[default]
    Lz4,
    /// pglz, PostgreSQL's built-in default.
    Pglz,
    /// Whatever the destination server's `default_toast_compression` is.
    Server,
}

impl ToastCompression {
    /// The value for `SET default_toast_compression`, if the copy sets one.
    pub fn setting(self) -> Option<&'static str> {
        match self {
            ToastCompression::Lz4 => Some("lz4"),
            ToastCompression::Pglz => Some("pglz"),
            ToastCompression::Server => None,
        }
    }
}

impl Default for Replication {
    fn default() -> Self {
        Replication {
            pg_dump_path: None,
            sequence_margin: 1000,
            index_jobs: 4,
            toast_compression: ToastCompression::Lz4,
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
        assert_eq!(
            config.replication.toast_compression,
            super::ToastCompression::Lz4
        );
        let config = Config::from_str(
            "[replication]\ntoast_compression = \"server\"\n",
            "pgdog.toml",
        )
        .unwrap();
        assert_eq!(config.replication.toast_compression.setting(), None);
        let error = Config::from_str(
            "[replication]\ntoast_compression = \"zstd\"\n",
            "pgdog.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("toast_compression"), "{error}");
        let error = Config::from_str("[replication]\npg_dump = \"x\"\n", "pgdog.toml")
            .unwrap_err()
            .to_string();
        assert!(error.contains("replication.pg_dump"), "{error}");
    }
}
