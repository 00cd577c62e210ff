//! The two file roots: [`Config`] (`pgdog.toml`) and [`Users`] (`users.toml`).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::parse::parse;
use crate::{
    Admin, ConfigError, Database, General, MappingRule, OmnishardedTables, ShardedMapping,
    ShardedTable, User,
};

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
    /// The `[[sharded_tables]]` entries, in file order.
    pub sharded_tables: Vec<ShardedTable>,
    /// The `[[sharded_mappings]]` entries (PgDog's older form of
    /// `[[sharded_tables.mapping]]`), in file order.
    pub sharded_mappings: Vec<ShardedMapping>,
    /// The `[[omnisharded_tables]]` entries, in file order.
    pub omnisharded_tables: Vec<OmnishardedTables>,
    /// The `[replication]` section (resharding tools).
    pub replication: crate::Replication,
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

    /// Number of shards of the database clients reach by `name`: the highest
    /// `shard` of its `[[databases]]` entries plus one (validation ensures no
    /// gaps); 0 when there is no such entry.
    pub fn shard_count(&self, name: &str) -> usize {
        self.databases_named(name)
            .map(|db| db.shard + 1)
            .max()
            .unwrap_or(0)
    }

    /// The `[[sharded_tables]]` entries of the database `name`, in file order.
    pub fn sharded_tables_of<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a ShardedTable> {
        self.sharded_tables
            .iter()
            .filter(move |table| table.database == name)
    }

    /// The mapping rules of `table`: its own `[[sharded_tables.mapping]]`
    /// rules, then the `[[sharded_mappings]]` entries that match it, in file
    /// order. Empty means hash sharding.
    pub fn mapping_rules(&self, table: &ShardedTable) -> Vec<MappingRule> {
        let older = self
            .sharded_mappings
            .iter()
            .filter(|rule| table.matches(rule))
            .map(ShardedMapping::rule);
        table.mapping.iter().cloned().chain(older).collect()
    }

    /// The omnisharded tables of the database `name` with their `sticky`
    /// setting, in file order.
    pub fn omnisharded_tables_of<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = (&'a str, bool)> {
        self.omnisharded_tables
            .iter()
            .filter(move |entry| entry.database == name)
            .flat_map(|entry| {
                entry
                    .tables
                    .iter()
                    .map(move |table| (table.as_str(), entry.sticky))
            })
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
    use crate::{
        AuthType, CutoverTimeoutAction, DataType, Hasher, LoadBalancingStrategy, MappingKind,
        PoolerMode, ReadWriteSplit, Role,
    };

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

    #[test]
    fn sharding_helpers() {
        let config = Config::from_str(
            "[[databases]]\nname = \"shop\"\n\
             [[databases]]\nname = \"shop\"\nshard = 2\n\
             [[databases]]\nname = \"shop\"\nshard = 1\nrole = \"replica\"\n\
             [[databases]]\nname = \"other\"\n\
             [[sharded_tables]]\ndatabase = \"shop\"\nname = \"users\"\ncolumn = \"id\"\n\
             [[sharded_tables.mapping]]\nvalues = [1]\nshard = 0\n\
             [[sharded_tables]]\ndatabase = \"other\"\ncolumn = \"id\"\n\
             [[sharded_tables]]\ndatabase = \"shop\"\ncolumn = \"user_id\"\n\
             [[sharded_mappings]]\ndatabase = \"shop\"\ntable = \"users\"\ncolumn = \"id\"\n\
             start = 10\nshard = 2\n\
             [[sharded_mappings]]\ndatabase = \"shop\"\ncolumn = \"id\"\nvalues = [2]\nshard = 1\n\
             [[omnisharded_tables]]\ndatabase = \"shop\"\ntables = [\"a\", \"b\"]\n\
             [[omnisharded_tables]]\ndatabase = \"other\"\ntables = [\"c\"]\n\
             [[omnisharded_tables]]\ndatabase = \"shop\"\ntables = [\"d\"]\nsticky = true\n",
            "pgdog.toml",
        )
        .unwrap();
        assert_eq!(config.shard_count("shop"), 3);
        assert_eq!(config.shard_count("other"), 1);
        assert_eq!(config.shard_count("none"), 0);
        let shop: Vec<_> = config
            .sharded_tables_of("shop")
            .map(|t| t.column.as_str())
            .collect();
        assert_eq!(shop, ["id", "user_id"]);
        let users = &config.sharded_tables[0];
        let rules = config.mapping_rules(users);
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0], users.mapping[0]);
        assert_eq!((rules[1].kind(), rules[1].shard), (MappingKind::Range, 2));
        assert!(config.mapping_rules(&config.sharded_tables[2]).is_empty());
        let omni: Vec<_> = config.omnisharded_tables_of("shop").collect();
        assert_eq!(omni, [("a", false), ("b", false), ("d", true)]);
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
                two_phase_commit: false,
                resharding_parallel_copies: 3,
                resharding_copy_retry_max_attempts: 7,
                resharding_copy_range_bytes: 1 << 20,
                cutover_timeout: 5000,
                cutover_timeout_action: CutoverTimeoutAction::Cutover,
                cutover_traffic_stop_threshold: 4096,
                cutover_replication_lag_threshold: 16,
                cutover_save_config: true,
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
                    resharding_only: true,
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
            sharded_tables: vec![
                ShardedTable {
                    database: "shop".into(),
                    name: Some("orders".into()),
                    schema: Some("sales".into()),
                    column: "customer_id".into(),
                    data_type: DataType::Uuid,
                    hasher: Hasher::Sha1,
                    primary: true,
                    centroids: Some(vec![vec![1.0, 2.5], vec![-3.0, 0.0]]),
                    centroids_path: Some("/tmp/centroids.json".into()),
                    centroid_probes: Some(2),
                    mapping: vec![
                        MappingRule {
                            shard: 1,
                            values: Some(vec!["a".into(), 7.into()]),
                            start: None,
                            end: None,
                        },
                        MappingRule {
                            shard: 0,
                            values: None,
                            start: Some((-5).into()),
                            end: Some(10.into()),
                        },
                        MappingRule {
                            shard: 2,
                            values: Some(vec![]),
                            start: None,
                            end: None,
                        },
                    ],
                },
                ShardedTable {
                    database: "shop".into(),
                    column: "tenant".into(),
                    data_type: DataType::Varchar,
                    ..ShardedTable::default()
                },
            ],
            sharded_mappings: vec![ShardedMapping {
                database: "shop".into(),
                column: "tenant".into(),
                table: Some("orders".into()),
                schema: Some("sales".into()),
                kind: Some(MappingKind::Range),
                values: Some(vec![1.into()]),
                start: Some("x".into()),
                end: Some(i64::MAX.into()),
                shard: 3,
            }],
            omnisharded_tables: vec![OmnishardedTables {
                database: "shop".into(),
                tables: vec!["countries".into(), "sales.settings".into()],
                sticky: true,
            }],
            replication: crate::Replication {
                pg_dump_path: Some("/opt/pg16/bin/pg_dump".into()),
                sequence_margin: 5000,
                index_jobs: 2,
                toast_compression: crate::ToastCompression::Pglz,
            },
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
