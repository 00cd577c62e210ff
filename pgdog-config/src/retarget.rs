//! The configuration a cutover swaps in: the database name clients use is served by another
//! database's servers (the new shards), with its sharding rules; the old servers stay reachable
//! under another name, for the reverse stream and a rollback.

use crate::{ConfigAndUsers, ConfigError};

/// Why a retargeted configuration cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum RetargetError {
    /// A database name is not configured.
    #[error("database \"{0}\" is not in pgdog.toml")]
    Unknown(String),
    /// The two names are the same.
    #[error("database \"{0}\" cannot be served by itself")]
    Same(String),
    /// The result does not validate.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
}

impl ConfigAndUsers {
    /// The database of `other` (other than `name`) whose entries reach exactly the servers
    /// (host, port, server database, shard, role) that `name` reaches here.
    pub fn same_servers(&self, name: &str, other: &ConfigAndUsers) -> Option<String> {
        let servers = |config: &ConfigAndUsers, name: &str| {
            let mut list: Vec<_> = config
                .config
                .databases
                .iter()
                .filter(|d| d.name == name)
                .map(|d| {
                    (
                        d.host.clone(),
                        d.port,
                        d.database_name.clone().unwrap_or_else(|| d.name.clone()),
                        d.shard,
                        format!("{:?}", d.role),
                    )
                })
                .collect();
            list.sort();
            list
        };
        let wanted = servers(self, name);
        if wanted.is_empty() {
            return None;
        }
        let mut names: Vec<&str> = other
            .config
            .databases
            .iter()
            .map(|d| d.name.as_str())
            .filter(|n| *n != name)
            .collect();
        names.dedup();
        names
            .into_iter()
            .find(|n| servers(other, n) == wanted)
            .map(str::to_string)
    }

    /// The configuration where clients of database `clients` reach the servers of database
    /// `servers` (its `[[databases]]` entries copied under the name `clients`, and its sharded
    /// and omnisharded tables with them). The entries `clients` had before are kept under the
    /// name `keep_as` (with copies of their users) when given and not taken yet, else dropped.
    /// `servers` itself stays as it is. Users of `clients` keep their credentials.
    pub fn retarget(
        &self,
        clients: &str,
        servers: &str,
        keep_as: Option<&str>,
    ) -> Result<ConfigAndUsers, RetargetError> {
        if clients == servers {
            return Err(RetargetError::Same(clients.into()));
        }
        for name in [clients, servers] {
            if !self.config.databases.iter().any(|d| d.name == name) {
                return Err(RetargetError::Unknown(name.into()));
            }
        }
        let keep_as = keep_as.filter(|k| {
            *k != clients && *k != servers && !self.config.databases.iter().any(|d| d.name == *k)
        });
        let rename = |name: &str| -> Option<String> {
            if name == clients {
                keep_as.map(str::to_string)
            } else {
                Some(name.to_string())
            }
        };
        let mut next = self.clone();
        let config = &mut next.config;

        // Entries keep the server database they reach whatever their new name.
        let renamed = |database: &crate::Database, name: String| {
            let mut copy = database.clone();
            copy.database_name = Some(
                database
                    .database_name
                    .clone()
                    .unwrap_or_else(|| database.name.clone()),
            );
            copy.name = name;
            copy
        };
        let mut databases = Vec::new();
        for database in &self.config.databases {
            if let Some(name) = rename(&database.name) {
                if name == database.name {
                    databases.push(database.clone());
                } else {
                    databases.push(renamed(database, name));
                }
            }
        }
        for database in self.config.databases.iter().filter(|d| d.name == servers) {
            databases.push(renamed(database, clients.into()));
        }
        config.databases = databases;

        let mut sharded = Vec::new();
        for table in &self.config.sharded_tables {
            if let Some(name) = rename(&table.database) {
                let mut kept = table.clone();
                kept.database = name;
                sharded.push(kept);
            }
        }
        for table in self
            .config
            .sharded_tables
            .iter()
            .filter(|t| t.database == servers)
        {
            let mut copy = table.clone();
            copy.database = clients.into();
            sharded.push(copy);
        }
        config.sharded_tables = sharded;

        let mut mappings = Vec::new();
        for mapping in &self.config.sharded_mappings {
            if let Some(name) = rename(&mapping.database) {
                let mut kept = mapping.clone();
                kept.database = name;
                mappings.push(kept);
            }
        }
        for mapping in self
            .config
            .sharded_mappings
            .iter()
            .filter(|m| m.database == servers)
        {
            let mut copy = mapping.clone();
            copy.database = clients.into();
            mappings.push(copy);
        }
        config.sharded_mappings = mappings;

        let mut omnisharded = Vec::new();
        for tables in &self.config.omnisharded_tables {
            if let Some(name) = rename(&tables.database) {
                let mut kept = tables.clone();
                kept.database = name;
                omnisharded.push(kept);
            }
        }
        for tables in self
            .config
            .omnisharded_tables
            .iter()
            .filter(|t| t.database == servers)
        {
            let mut copy = tables.clone();
            copy.database = clients.into();
            omnisharded.push(copy);
        }
        config.omnisharded_tables = omnisharded;

        if let Some(keep_as) = keep_as {
            let copies: Vec<_> = self
                .users
                .users
                .iter()
                .filter(|u| u.database == clients)
                .map(|u| {
                    let mut copy = u.clone();
                    copy.database = keep_as.to_string();
                    copy
                })
                .collect();
            next.users.users.extend(copies);
        }
        next.validate()?;
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use crate::{Config, ConfigAndUsers, Users};

    fn config() -> ConfigAndUsers {
        let config = Config::from_str(
            r#"
[[databases]]
name = "prod"
host = "old"

[[databases]]
name = "sharded"
host = "s0"
shard = 0

[[databases]]
name = "sharded"
host = "s1"
shard = 1

[[sharded_tables]]
database = "sharded"
name = "orders"
column = "customer_id"

[[omnisharded_tables]]
database = "sharded"
tables = ["countries"]
"#,
            "pgdog.toml",
        )
        .unwrap();
        let users = Users::from_str(
            r#"
[[users]]
name = "app"
database = "prod"
password = "secret"

[[users]]
name = "admin"
database = "prod"
password = "secret"
schema_admin = true

[[users]]
name = "admin"
database = "sharded"
password = "secret"
schema_admin = true
"#,
            "users.toml",
        )
        .unwrap();
        ConfigAndUsers {
            config,
            users,
            ..Default::default()
        }
    }

    fn hosts(config: &ConfigAndUsers, name: &str) -> Vec<String> {
        config
            .config
            .databases
            .iter()
            .filter(|d| d.name == name)
            .map(|d| d.host.clone())
            .collect()
    }

    #[test]
    fn clients_reach_the_shards_and_the_old_servers_stay_named() {
        let before = config();
        let after = before
            .retarget("prod", "sharded", Some("prod_before_cutover"))
            .unwrap();
        assert_eq!(hosts(&after, "prod"), ["s0", "s1"]);
        assert_eq!(hosts(&after, "sharded"), ["s0", "s1"]);
        assert_eq!(hosts(&after, "prod_before_cutover"), ["old"]);
        assert!(after
            .config
            .sharded_tables
            .iter()
            .any(|t| t.database == "prod" && t.name.as_deref() == Some("orders")));
        assert!(after
            .config
            .omnisharded_tables
            .iter()
            .any(|t| t.database == "prod"));
        let kept: Vec<_> = after
            .users
            .users
            .iter()
            .filter(|u| u.database == "prod_before_cutover")
            .map(|u| u.name.as_str())
            .collect();
        assert_eq!(kept, ["app", "admin"]);

        // Renamed entries still reach the server databases they reached.
        let server_db = |config: &ConfigAndUsers, name: &str| -> Vec<String> {
            config
                .config
                .databases
                .iter()
                .filter(|d| d.name == name)
                .map(|d| d.database_name.clone().unwrap_or_else(|| d.name.clone()))
                .collect()
        };
        assert_eq!(server_db(&after, "prod"), ["sharded", "sharded"]);
        assert_eq!(server_db(&after, "prod_before_cutover"), ["prod"]);
        assert_eq!(server_db(&after, "sharded"), ["sharded", "sharded"]);
        // The old servers are found under their new name; the shards under the name that
        // still has them.
        assert_eq!(
            before.same_servers("prod", &after).as_deref(),
            Some("prod_before_cutover")
        );

        // Rolling back serves prod from the old servers again.
        let back = after.retarget("prod", "prod_before_cutover", None).unwrap();
        assert_eq!(hosts(&back, "prod"), ["old"]);
        assert_eq!(server_db(&back, "prod"), ["prod"]);
        assert_eq!(
            after.same_servers("prod", &back).as_deref(),
            Some("sharded")
        );
        assert!(back
            .config
            .sharded_tables
            .iter()
            .all(|t| t.database != "prod"));
    }

    #[test]
    fn bad_names_are_refused() {
        let config = config();
        assert!(config.retarget("prod", "prod", None).is_err());
        assert!(config.retarget("nope", "sharded", None).is_err());
        assert!(config.retarget("prod", "nope", None).is_err());
    }
}
