//! The two file roots: [`Config`] (`pgdog.toml`) and [`Users`] (`users.toml`).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::parse::parse;
use crate::{Admin, ConfigError, Database, General, User};

/// Contents of `pgdog.toml`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The `[general]` section.
    pub general: General,
    /// The `[[databases]]` entries, in file order.
    pub databases: Vec<Database>,
    /// The `[admin]` section, if present (`users.toml` may override it).
    pub admin: Option<Admin>,
}

impl Config {
    /// Parses the text of `pgdog.toml`; `path` is only used in error messages.
    /// Does not validate: see [`crate::ConfigAndUsers::validate`].
    pub fn from_str(text: &str, path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        parse(text, path.as_ref())
    }

    /// The `[[databases]]` entries clients reach by `name`, in file order.
    pub fn databases_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Database> {
        self.databases.iter().filter(move |db| db.name == name)
    }
}

/// Contents of `users.toml`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Users {
    /// The `[admin]` section, if present; it replaces the one in `pgdog.toml`.
    pub admin: Option<Admin>,
    /// The `[[users]]` entries, in file order.
    pub users: Vec<User>,
}

impl Users {
    /// Parses the text of `users.toml`; `path` is only used in error messages.
    /// Does not validate: see [`crate::ConfigAndUsers::validate`].
    pub fn from_str(text: &str, path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        parse(text, path.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AuthType, LoadBalancingStrategy, PoolerMode, ReadWriteSplit, Role};

    #[test]
    fn empty_files_give_defaults() {
        assert_eq!(
            Config::from_str("", "pgdog.toml").unwrap(),
            Config::default()
        );
        assert_eq!(Users::from_str("", "users.toml").unwrap(), Users::default());
        let general = General::default();
        assert_eq!(general.port, 6432);
        assert_eq!(general.pooler_mode, PoolerMode::Transaction);
        assert_eq!(general.auth_type, AuthType::Scram);
    }

    #[test]
    fn partial_entries_take_defaults() {
        let config = Config::from_str(
            "[[databases]]\nname = \"shop\"\nrole = \"replica\"\n",
            "pgdog.toml",
        )
        .unwrap();
        let db = &config.databases[0];
        assert_eq!(db.host, "127.0.0.1");
        assert_eq!(db.port, 5432);
        assert_eq!(db.role, Role::Replica);
        assert_eq!(config.databases_named("shop").count(), 1);
    }

    /// Every key set to a non-default value survives serialize + parse.
    #[test]
    fn every_key_round_trips() {
        let config = Config {
            general: General {
                host: "127.0.0.2".into(),
                port: 6433,
                workers: 4,
                default_pool_size: 20,
                min_pool_size: 2,
                pooler_mode: PoolerMode::Session,
                load_balancing_strategy: LoadBalancingStrategy::LeastActiveConnections,
                read_write_split: ReadWriteSplit::IncludePrimaryIfReplicaBanned,
                connect_timeout: 1,
                checkout_timeout: 2,
                idle_timeout: 3,
                server_lifetime: 4,
                client_idle_timeout: 5,
                query_timeout: 6,
                shutdown_timeout: 7,
                healthcheck_interval: 9,
                idle_healthcheck_interval: 10,
                idle_healthcheck_delay: 11,
                healthcheck_timeout: 12,
                ban_timeout: 13,
                auth_type: AuthType::Md5,
                prepared_statements_limit: 8,
                tls_certificate: Some("/tmp/cert.pem".into()),
                tls_private_key: Some("/tmp/key.pem".into()),
                openmetrics_port: Some(9090),
                openmetrics_namespace: "pgdog_".into(),
            },
            databases: vec![
                Database {
                    name: "shop".into(),
                    host: "10.0.0.1".into(),
                    port: 5433,
                    database_name: Some("shop_prod".into()),
                    role: Role::Replica,
                    shard: 1,
                    user: Some("shop_owner".into()),
                    password: Some("secret".into()),
                    pool_size: Some(7),
                },
                Database {
                    name: "other".into(),
                    ..Database::default()
                },
            ],
            admin: Some(Admin {
                name: "pgdog_admin".into(),
                user: "root".into(),
                password: Some("hunter2".into()),
            }),
        };
        let text = toml::to_string(&config).unwrap();
        assert_eq!(Config::from_str(&text, "pgdog.toml").unwrap(), config);

        let users = Users {
            admin: Some(Admin {
                name: "adm".into(),
                user: "boss".into(),
                password: None,
            }),
            users: vec![User {
                name: "alice".into(),
                database: "shop".into(),
                password: Some("pw".into()),
                password_hash: Some("md5f4eebe911f99fc6bb9d624b6956b3e4b".into()),
                pool_size: Some(3),
                min_pool_size: Some(1),
                pooler_mode: Some(PoolerMode::Session),
                server_user: Some("alice_srv".into()),
                server_password: Some("srv".into()),
                schema_admin: true,
            }],
        };
        let text = toml::to_string(&users).unwrap();
        assert_eq!(Users::from_str(&text, "users.toml").unwrap(), users);
    }
}
