//! The `[replication]` section of `pgdog.toml`: the tools and settings of resharding.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The `[replication]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Replication {
    /// The `pg_dump` schema sync runs; `None` uses the `pg_dump` on `PATH`. Its major version
    /// must be at least the source server's.
    pub pg_dump_path: Option<PathBuf>,
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
        let error = Config::from_str("[replication]\npg_dump = \"x\"\n", "pgdog.toml")
            .unwrap_err()
            .to_string();
        assert!(error.contains("replication.pg_dump"), "{error}");
    }
}
