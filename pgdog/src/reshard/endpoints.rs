//! Where resharding connects: the servers of a configured database (one primary and any
//! replicas per shard), logged in as the database's `schema_admin` user from users.toml.

use std::path::PathBuf;
use std::time::Duration;

use pgdog_config::{ConfigAndUsers, Role};

use crate::backend::server::ServerAddress;

/// Why a database cannot be used as a source or destination.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// No `[[databases]]` entry has this name.
    #[error(
        "database \"{name}\" is not in {path}; add a [[databases]] entry with name = \"{name}\""
    )]
    UnknownDatabase {
        /// The name asked for.
        name: String,
        /// pgdog.toml.
        path: PathBuf,
    },
    /// No user of this database has `schema_admin = true`.
    #[error(
        "no user of database \"{database}\" has schema_admin = true in {path}; resharding connects as that user: \
         add one, e.g. [[users]] name = \"migrator\" database = \"{database}\" password = \"...\" schema_admin = true"
    )]
    NoSchemaAdmin {
        /// The database.
        database: String,
        /// users.toml.
        path: PathBuf,
    },
    /// The user named on the command line is not a user of the database.
    #[error("user \"{user}\" of database \"{database}\" is not in {path}; add a [[users]] entry with name = \"{user}\" and database = \"{database}\"")]
    UnknownUser {
        /// The user.
        user: String,
        /// The database.
        database: String,
        /// users.toml.
        path: PathBuf,
    },
    /// A shard number has no primary.
    #[error("shard {shard} of database \"{database}\" has no primary in {path}; add a [[databases]] entry with shard = {shard} and role = \"primary\"")]
    NoPrimary {
        /// The database.
        database: String,
        /// The shard.
        shard: usize,
        /// pgdog.toml.
        path: PathBuf,
    },
}

/// One shard's servers.
#[derive(Debug, Clone)]
pub struct ShardEndpoints {
    /// Shard number.
    pub shard: usize,
    /// Its primary.
    pub primary: ServerAddress,
    /// Its replicas.
    pub replicas: Vec<ServerAddress>,
}

/// A configured database's shards, as the schema admin sees them.
#[derive(Debug, Clone)]
pub struct ClusterEndpoints {
    /// The database name in pgdog.toml.
    pub database: String,
    /// The users.toml user (with `schema_admin = true`) resharding logs in as.
    pub user: String,
    /// Shards in order 0..N.
    pub shards: Vec<ShardEndpoints>,
    /// `connect_timeout` from `[general]`.
    pub connect_timeout: Duration,
}

impl ClusterEndpoints {
    /// Resolves `database` from the configuration, as its schema admin.
    pub fn resolve(config: &ConfigAndUsers, database: &str) -> Result<Self, EndpointError> {
        Self::resolve_as(config, database, None)
    }

    /// Resolves `database`, as the users.toml user `user` of that database when given (else
    /// its schema admin).
    pub fn resolve_as(
        config: &ConfigAndUsers,
        database: &str,
        user: Option<&str>,
    ) -> Result<Self, EndpointError> {
        let entries: Vec<_> = config
            .config
            .databases
            .iter()
            .filter(|d| d.name == database)
            .collect();
        if entries.is_empty() {
            return Err(EndpointError::UnknownDatabase {
                name: database.to_string(),
                path: config.config_path.clone(),
            });
        }
        let user = match user {
            Some(name) => config
                .users
                .users
                .iter()
                .find(|u| u.database == database && u.name == name)
                .ok_or_else(|| EndpointError::UnknownUser {
                    user: name.to_string(),
                    database: database.to_string(),
                    path: config.users_path.clone(),
                })?,
            None => config
                .users
                .users
                .iter()
                .find(|u| u.database == database && u.schema_admin)
                .ok_or_else(|| EndpointError::NoSchemaAdmin {
                    database: database.to_string(),
                    path: config.users_path.clone(),
                })?,
        };
        let count = entries.iter().map(|d| d.shard + 1).max().unwrap_or(1);
        let mut shards = Vec::with_capacity(count);
        for shard in 0..count {
            let address = |d: &pgdog_config::Database| {
                let (user_name, password) = config.server_credentials(user, d);
                ServerAddress {
                    host: d.host.clone(),
                    port: d.port,
                    database: d.database_name().to_string(),
                    user: user_name,
                    password,
                }
            };
            let in_shard = || entries.iter().filter(|d| d.shard == shard);
            let primary = in_shard()
                .find(|d| d.role == Role::Primary)
                .map(|d| address(d))
                .ok_or_else(|| EndpointError::NoPrimary {
                    database: database.to_string(),
                    shard,
                    path: config.config_path.clone(),
                })?;
            let replicas = in_shard()
                .filter(|d| d.role == Role::Replica)
                .map(|d| address(d))
                .collect();
            shards.push(ShardEndpoints {
                shard,
                primary,
                replicas,
            });
        }
        Ok(ClusterEndpoints {
            database: database.to_string(),
            user: user.name.clone(),
            shards,
            connect_timeout: Duration::from_millis(config.config.general.connect_timeout),
        })
    }

    /// Connects to shard `shard`'s primary.
    pub async fn connect_primary(
        &self,
        shard: usize,
    ) -> Result<super::conn::Conn, super::conn::ConnError> {
        let endpoint = &self.shards[shard.min(self.shards.len().saturating_sub(1))];
        super::conn::Conn::connect(&endpoint.primary, self.connect_timeout).await
    }
}
