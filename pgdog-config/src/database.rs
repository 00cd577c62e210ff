//! `[[databases]]` entries of `pgdog.toml`: the Postgres servers pgdog connects to.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One `[[databases]]` entry: a Postgres server that serves one shard of a
/// database clients know by `name`, as primary or replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Database {
    /// Name clients connect to; entries with the same name form one logical database.
    pub name: String,
    /// Host of the Postgres server.
    pub host: String,
    /// Port of the Postgres server.
    pub port: u16,
    /// Database name on the Postgres server; `None` means the same as `name`.
    pub database_name: Option<String>,
    /// Whether this server is the primary or a replica of its shard.
    pub role: Role,
    /// Shard number; the shards of one name must be numbered 0..N-1.
    pub shard: usize,
    /// User pgdog logs in to Postgres as, unless the user sets `server_user`.
    pub user: Option<String>,
    /// Password pgdog logs in to Postgres with, unless the user sets `server_password`.
    pub password: Option<String>,
    /// Pool size for this server, unless the user sets `pool_size`.
    pub pool_size: Option<usize>,
    /// A replica dedicated to resharding: never serves application queries (no pool is made
    /// for it); the data copy may read from it.
    pub resharding_only: bool,
}

impl Default for Database {
    fn default() -> Self {
        Self {
            name: String::new(),
            host: "127.0.0.1".into(),
            port: 5432,
            database_name: None,
            role: Role::Primary,
            shard: 0,
            user: None,
            password: None,
            pool_size: None,
            resharding_only: false,
        }
    }
}

impl Database {
    /// The database name on the Postgres server: `database_name`, else `name`.
    pub fn database_name(&self) -> &str {
        self.database_name.as_deref().unwrap_or(&self.name)
    }
}

/// Role of a server within its shard (`role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Takes writes; at most one per shard.
    #[default]
    Primary,
    /// Read-only copy of the primary.
    Replica,
}

impl Role {
    /// The value as written in the config files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Replica => "replica",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_name_falls_back_to_name() {
        let mut db = Database {
            name: "shop".into(),
            ..Database::default()
        };
        assert_eq!(db.database_name(), "shop");
        db.database_name = Some("shop_prod".into());
        assert_eq!(db.database_name(), "shop_prod");
    }
}
