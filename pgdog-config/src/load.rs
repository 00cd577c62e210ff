//! [`ConfigAndUsers`]: both files loaded and validated together, plus the
//! rules for combining user, database and general settings.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{ConfigError, FileKind, Problem};
use crate::{validate, Admin, Config, Database, PoolerMode, User, Users};

/// `pgdog.toml` and `users.toml`, parsed, with the paths they came from.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigAndUsers {
    /// Contents of `pgdog.toml`.
    pub config: Config,
    /// Contents of `users.toml`.
    pub users: Users,
    /// Where `config` was read from (used in messages).
    pub config_path: PathBuf,
    /// Where `users` was read from (used in messages).
    pub users_path: PathBuf,
}

impl Default for ConfigAndUsers {
    fn default() -> Self {
        Self {
            config: Config::default(),
            users: Users::default(),
            config_path: "pgdog.toml".into(),
            users_path: "users.toml".into(),
        }
    }
}

impl ConfigAndUsers {
    /// Reads, parses and validates both files. Both must exist.
    pub fn load(config_path: &Path, users_path: &Path) -> Result<Self, ConfigError> {
        let config_text = read(config_path, FileKind::Config)?;
        let users_text = read(users_path, FileKind::Users)?;
        Self::from_strs(&config_text, &users_text, config_path, users_path)
    }

    /// Parses and validates both files from text; the paths are only used in messages.
    pub fn from_strs(
        config_text: &str,
        users_text: &str,
        config_path: impl AsRef<Path>,
        users_path: impl AsRef<Path>,
    ) -> Result<Self, ConfigError> {
        let loaded = Self {
            config: Config::from_str(config_text, config_path.as_ref())?,
            users: Users::from_str(users_text, users_path.as_ref())?,
            config_path: config_path.as_ref().to_path_buf(),
            users_path: users_path.as_ref().to_path_buf(),
        };
        loaded.validate()?;
        Ok(loaded)
    }

    /// Checks every rule; returns [`ConfigError::Invalid`] with all broken rules.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// Every broken rule, by section: general, databases, sharding, users,
    /// admin; empty when valid.
    pub fn problems(&self) -> Vec<Problem> {
        validate::problems(self)
    }

    /// The effective `[admin]`: the one in `users.toml`, else the one in
    /// `pgdog.toml`, else the defaults.
    pub fn admin(&self) -> Admin {
        self.users
            .admin
            .as_ref()
            .or(self.config.admin.as_ref())
            .cloned()
            .unwrap_or_default()
    }

    /// Number of shards of the database clients reach by `name` (see
    /// [`Config::shard_count`]); 0 when there is no such database.
    pub fn shard_count(&self, name: &str) -> usize {
        self.config.shard_count(name)
    }

    /// Whether the database `name` has more than one shard, so queries to it
    /// need routing.
    pub fn is_sharded(&self, name: &str) -> bool {
        self.shard_count(name) > 1
    }

    /// Pool size for `user` on the server `database`: the user's `pool_size`,
    /// else the database's, else `general.default_pool_size`.
    pub fn pool_size(&self, user: &User, database: &Database) -> usize {
        user.pool_size
            .or(database.pool_size)
            .unwrap_or(self.config.general.default_pool_size)
    }

    /// Minimum pool size for `user`: the user's `min_pool_size`, else `general.min_pool_size`.
    pub fn min_pool_size(&self, user: &User) -> usize {
        user.min_pool_size
            .unwrap_or(self.config.general.min_pool_size)
    }

    /// Pooler mode for `user`: the user's `pooler_mode`, else `general.pooler_mode`.
    pub fn pooler_mode(&self, user: &User) -> PoolerMode {
        user.pooler_mode.unwrap_or(self.config.general.pooler_mode)
    }

    /// User name and password pgdog logs in to the Postgres server `database`
    /// with, for client `user`. Each is chosen on its own: the user's
    /// `server_user` / `server_password`, else the database's `user` / `password`,
    /// else the user's own `name` / `password`. A `None` password means none
    /// is known (only valid when Postgres does not ask for one).
    pub fn server_credentials(&self, user: &User, database: &Database) -> (String, Option<String>) {
        let name = user
            .server_user
            .as_ref()
            .or(database.user.as_ref())
            .unwrap_or(&user.name)
            .clone();
        let password = user
            .server_password
            .as_ref()
            .or(database.password.as_ref())
            .or(user.password.as_ref())
            .cloned();
        (name, password)
    }
}

/// Reads a config file, turning a missing file into [`ConfigError::NotFound`].
fn read(path: &Path, kind: FileKind) -> Result<String, ConfigError> {
    fs::read_to_string(path).map_err(|error| match error.kind() {
        io::ErrorKind::NotFound => ConfigError::NotFound {
            path: path.to_path_buf(),
            kind,
        },
        _ => ConfigError::Read {
            path: path.to_path_buf(),
            kind,
            error,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ShardedTable;
    use std::collections::BTreeSet;

    fn example_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    /// The shipped example files parse and pass validation.
    #[test]
    fn example_files_are_valid() {
        let dir = example_dir();
        let loaded = ConfigAndUsers::load(
            &dir.join("pgdog.toml.example"),
            &dir.join("users.toml.example"),
        )
        .unwrap_or_else(|err| panic!("{err}"));
        let db = &loaded.config.databases[0];
        assert_eq!(loaded.config.databases.len(), 1);
        assert_eq!((db.name.as_str(), db.database_name()), ("pgdog", "pgdog"));
        assert_eq!((db.host.as_str(), db.port), ("127.0.0.1", 5432));
        let user = &loaded.users.users[0];
        assert_eq!(loaded.users.users.len(), 1);
        assert_eq!(
            (user.name.as_str(), user.password.as_deref()),
            ("pgdog", Some("pgdog"))
        );
        assert_eq!(loaded.config.general, crate::General::default());
        assert_eq!(loaded.admin().name, "admin");
    }

    /// The examples mention every key, and their commented-out keys parse too.
    #[test]
    fn example_files_list_every_key() {
        let dir = example_dir();
        let config = fs::read_to_string(dir.join("pgdog.toml.example")).unwrap();
        let users = fs::read_to_string(dir.join("users.toml.example")).unwrap();
        let is_setting = |line: &str| {
            line.starts_with('[')
                || line
                    .split_once(" = ")
                    .is_some_and(|(key, _)| key.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        };
        let uncomment = |text: &str| -> String {
            text.lines()
                .map(|line| match line.strip_prefix("# ") {
                    Some(rest) if is_setting(rest) => rest,
                    _ => line,
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        let full_config = Config::from_str(&uncomment(&config), "pgdog.toml.example")
            .unwrap_or_else(|err| panic!("{err}"));
        let full_users = Users::from_str(&uncomment(&users), "users.toml.example")
            .unwrap_or_else(|err| panic!("{err}"));
        // Every Option is set once the comments are removed, so serializing
        // shows every key; each must appear in the uncommented example.
        let db = &full_config.databases[0];
        let user = &full_users.users[0];
        assert!(full_config.general.tls_enabled());
        assert!(full_config.general.openmetrics_port.is_some());
        assert!(db.user.is_some() && db.password.is_some() && db.pool_size.is_some());
        assert!(full_config
            .admin
            .as_ref()
            .is_some_and(|a| a.password.is_some()));
        assert!(full_users
            .admin
            .as_ref()
            .is_some_and(|a| a.password.is_some()));
        assert!(user.password_hash.is_some() && user.pool_size.is_some());
        assert!(user.min_pool_size.is_some() && user.pooler_mode.is_some());
        assert!(user.server_user.is_some() && user.server_password.is_some());
        // Uncommented values are the defaults, except the example entry's own fields.
        assert_eq!(
            full_config.databases[0],
            Database {
                name: "pgdog".into(),
                database_name: Some("pgdog".into()),
                user: Some("pgdog".into()),
                password: Some("pgdog".into()),
                pool_size: Some(10),
                ..Database::default()
            }
        );
        assert_eq!(user.pool_size, Some(10));
        assert_eq!(user.min_pool_size, Some(1));
        assert_eq!(user.pooler_mode, Some(PoolerMode::Transaction));
        // The sharding sections show every key (the vector ones excepted,
        // which pgdog rejects), and uncommented they pass validation.
        let table = &full_config.sharded_tables[0];
        assert!(table.name.is_some() && table.schema.is_some() && table.primary);
        let rules = &full_config.sharded_tables[1].mapping;
        assert!(rules.iter().any(|r| r.values.is_some()));
        assert!(rules.iter().any(|r| r.start.is_some() && r.end.is_some()));
        let old = &full_config.sharded_mappings;
        assert!(old.iter().all(|m| m.table.is_some() && m.kind.is_some()));
        assert!(old.iter().any(|m| m.schema.is_some() && m.values.is_some()));
        assert!(old.iter().any(|m| m.start.is_some() && m.end.is_some()));
        assert_eq!(full_config.shard_count("pgdog_sharded"), 2);
        assert_eq!(full_config.omnisharded_tables.len(), 1);
        let sharded_example = ConfigAndUsers {
            config: Config {
                general: crate::General::default(),
                ..full_config.clone()
            },
            ..ConfigAndUsers::default()
        };
        assert_eq!(sharded_example.problems(), Vec::new());
        // Across the sections with the same header, the uncommented example
        // sets exactly the keys their entries serialize to.
        let config_sections = section_keys(&uncomment(&config));
        let users_sections = section_keys(&uncomment(&users));
        let tables = &full_config.sharded_tables;
        let expected = [
            (
                &config_sections,
                "[general]",
                table_keys([&full_config.general]),
            ),
            (
                &config_sections,
                "[[databases]]",
                table_keys(&full_config.databases),
            ),
            (&config_sections, "[admin]", table_keys(&full_config.admin)),
            (
                &config_sections,
                "[[sharded_tables]]",
                table_keys(tables.iter().map(|table| ShardedTable {
                    mapping: Vec::new(),
                    ..table.clone()
                })),
            ),
            (
                &config_sections,
                "[[sharded_tables.mapping]]",
                table_keys(tables.iter().flat_map(|table| &table.mapping)),
            ),
            (
                &config_sections,
                "[[sharded_mappings]]",
                table_keys(&full_config.sharded_mappings),
            ),
            (
                &config_sections,
                "[[omnisharded_tables]]",
                table_keys(&full_config.omnisharded_tables),
            ),
            (&users_sections, "[[users]]", table_keys(&full_users.users)),
            (&users_sections, "[admin]", table_keys(&full_users.admin)),
        ];
        for (sections, header, keys) in expected {
            let found: BTreeSet<String> = sections
                .iter()
                .filter(|(h, _)| h == header)
                .flat_map(|(_, keys)| keys.iter().cloned())
                .collect();
            assert!(!found.is_empty(), "no {header} section");
            assert_eq!(found, keys, "keys of {header}");
        }
    }

    /// The keys the values serialize to, all together.
    fn table_keys<T: serde::Serialize>(values: impl IntoIterator<Item = T>) -> BTreeSet<String> {
        values
            .into_iter()
            .flat_map(|value| {
                let table = toml::Table::try_from(value).unwrap();
                table.keys().cloned().collect::<Vec<_>>()
            })
            .collect()
    }

    /// Each `[header]` / `[[header]]` line with the sorted keys set below it.
    fn section_keys(text: &str) -> Vec<(String, Vec<String>)> {
        let mut sections: Vec<(String, Vec<String>)> = Vec::new();
        for line in text.lines() {
            if line.starts_with('[') {
                sections.push((line.trim().to_string(), Vec::new()));
            } else if let (Some((key, _)), Some(section)) =
                (line.split_once(" = "), sections.last_mut())
            {
                if !key.starts_with('#') {
                    section.1.push(key.to_string());
                    section.1.sort();
                }
            }
        }
        sections
    }

    #[test]
    fn missing_file_names_path_and_fix() {
        let dir = example_dir();
        let err = ConfigAndUsers::load(
            &dir.join("pgdog.toml.example"),
            Path::new("/nonexistent/users.toml"),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "/nonexistent/users.toml: file not found; create it (see users.toml.example) or pass --users <PATH>"
        );
        let err = ConfigAndUsers::load(
            Path::new("/nonexistent/pgdog.toml"),
            &dir.join("users.toml.example"),
        )
        .unwrap_err();
        assert!(matches!(
            err,
            ConfigError::NotFound {
                kind: FileKind::Config,
                ..
            }
        ));
    }

    #[test]
    fn unreadable_file_is_a_read_error() {
        let err = ConfigAndUsers::load(&example_dir(), &example_dir()).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err}");
        assert!(err.to_string().contains("cannot read file"), "{err}");
    }

    fn sample() -> ConfigAndUsers {
        ConfigAndUsers::from_strs(
            "[general]\ndefault_pool_size = 15\nmin_pool_size = 2\npooler_mode = \"session\"\n\
             [[databases]]\nname = \"shop\"\n\
             [[databases]]\nname = \"shop\"\nrole = \"replica\"\npool_size = 5\nuser = \"db_user\"\npassword = \"db_pw\"\n",
            "[[users]]\nname = \"alice\"\ndatabase = \"shop\"\npassword = \"a\"\n\
             [[users]]\nname = \"bob\"\ndatabase = \"shop\"\npassword = \"b\"\npool_size = 3\nmin_pool_size = 1\n\
             pooler_mode = \"transaction\"\nserver_user = \"srv\"\nserver_password = \"srv_pw\"\n",
            "pgdog.toml",
            "users.toml",
        )
        .unwrap_or_else(|err| panic!("{err}"))
    }

    #[test]
    fn pool_settings_fall_back_user_then_database_then_general() {
        let all = sample();
        let (primary, replica) = (&all.config.databases[0], &all.config.databases[1]);
        let (alice, bob) = (&all.users.users[0], &all.users.users[1]);
        assert_eq!(all.pool_size(alice, primary), 15);
        assert_eq!(all.pool_size(alice, replica), 5);
        assert_eq!(all.pool_size(bob, replica), 3);
        assert_eq!(all.min_pool_size(alice), 2);
        assert_eq!(all.min_pool_size(bob), 1);
        assert_eq!(all.pooler_mode(alice), PoolerMode::Session);
        assert_eq!(all.pooler_mode(bob), PoolerMode::Transaction);
    }

    #[test]
    fn server_credentials_fall_back_user_then_database_then_own() {
        let all = sample();
        let (primary, replica) = (&all.config.databases[0], &all.config.databases[1]);
        let (alice, bob) = (&all.users.users[0], &all.users.users[1]);
        assert_eq!(
            all.server_credentials(alice, primary),
            ("alice".into(), Some("a".into()))
        );
        assert_eq!(
            all.server_credentials(alice, replica),
            ("db_user".into(), Some("db_pw".into()))
        );
        assert_eq!(
            all.server_credentials(bob, replica),
            ("srv".into(), Some("srv_pw".into()))
        );
    }

    #[test]
    fn shard_count_and_is_sharded() {
        let all = sample();
        assert_eq!(all.shard_count("shop"), 1);
        assert!(!all.is_sharded("shop"));
        assert_eq!(all.shard_count("nope"), 0);
        let all = ConfigAndUsers::from_strs(
            "[[databases]]\nname = \"shop\"\n[[databases]]\nname = \"shop\"\nshard = 1\n",
            "",
            "pgdog.toml",
            "users.toml",
        )
        .unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(all.shard_count("shop"), 2);
        assert!(all.is_sharded("shop"));
    }

    #[test]
    fn users_admin_overrides_config_admin() {
        let mut all = ConfigAndUsers::default();
        assert_eq!(all.admin(), Admin::default());
        all.config.admin = Some(Admin {
            name: "from_config".into(),
            ..Admin::default()
        });
        assert_eq!(all.admin().name, "from_config");
        all.users.admin = Some(Admin {
            name: "from_users".into(),
            ..Admin::default()
        });
        assert_eq!(all.admin().name, "from_users");
    }
}
