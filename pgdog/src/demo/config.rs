//! The demo's names and the text of its `pgdog.toml` and `users.toml`: database `demo` (the
//! source), database `demo_sharded` (two shards, customers sharded by `id` and orders by
//! `customer_id`), the app user `demo`/`demo` on both, and a schema admin user for the move.

use std::fmt::Write as _;

/// The app's database: the source, and after a cutover the shards.
pub const APP_DATABASE: &str = "demo";
/// The sharded destination.
pub const SHARDED_DATABASE: &str = "demo_sharded";
/// The publication naming the tables to move.
pub const PUBLICATION: &str = "pgdog_demo";
/// The app's user and password.
pub const APP_USER: &str = "demo";
/// The app user's password.
pub const APP_PASSWORD: &str = "demo";
/// The users.toml user resharding logs in as (`schema_admin = true`).
pub const SCHEMA_ADMIN: &str = "pgdog_migrator";
/// The superuser of every demo cluster (and its password).
pub const SUPERUSER: &str = "postgres";
/// The PostgreSQL database name on every cluster (source and shards).
pub const SERVER_DATABASE: &str = "demo";
/// Sharded tables: name and sharding column.
pub const SHARDED_TABLES: [(&str, &str); 2] = [("customers", "id"), ("orders", "customer_id")];

/// The admin command that moves the demo database onto its shards.
pub fn reshard_command() -> String {
    format!("RESHARD {APP_DATABASE} {SHARDED_DATABASE} {PUBLICATION}")
}

/// `pgdog.toml`: pgdog on `port`, the source on `source_port`, shard `k` on `shard_ports[k]`.
pub fn pgdog_toml(port: u16, source_port: u16, shard_ports: &[u16]) -> String {
    let mut toml = format!(
        "[general]\nhost = \"127.0.0.1\"\nport = {port}\nworkers = 2\ndefault_pool_size = 10\n\
         min_pool_size = 1\nshutdown_timeout = 5000\n\
         # Ranges of 4 MiB: the orders table is copied in parallel pieces.\n\
         resharding_copy_range_bytes = 4194304\n\n\
         [[databases]]\nname = \"{APP_DATABASE}\"\nhost = \"127.0.0.1\"\nport = {source_port}\n\
         database_name = \"{SERVER_DATABASE}\"\n\n"
    );
    for (shard, shard_port) in shard_ports.iter().enumerate() {
        let _ = write!(
            toml,
            "[[databases]]\nname = \"{SHARDED_DATABASE}\"\nhost = \"127.0.0.1\"\nport = {shard_port}\n\
             database_name = \"{SERVER_DATABASE}\"\nshard = {shard}\n\n"
        );
    }
    for (table, column) in SHARDED_TABLES {
        let _ = write!(
            toml,
            "[[sharded_tables]]\ndatabase = \"{SHARDED_DATABASE}\"\nname = \"{table}\"\n\
             column = \"{column}\"\ndata_type = \"bigint\"\n\n"
        );
    }
    toml
}

/// `users.toml`: the admin database's password, the app user and the schema admin on both
/// databases (all logging in to the servers as the clusters' superuser).
pub fn users_toml(admin_password: &str, schema_admin_password: &str) -> String {
    let mut toml = format!("[admin]\npassword = \"{admin_password}\"\n\n");
    for database in [APP_DATABASE, SHARDED_DATABASE] {
        for (user, password, schema_admin) in [
            (APP_USER, APP_PASSWORD, false),
            (SCHEMA_ADMIN, schema_admin_password, true),
        ] {
            let _ = write!(
                toml,
                "[[users]]\nname = \"{user}\"\ndatabase = \"{database}\"\npassword = \"{password}\"\n\
                 server_user = \"{SUPERUSER}\"\nserver_password = \"{SUPERUSER}\"\nschema_admin = {schema_admin}\n\n"
            );
        }
    }
    toml
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_files_are_valid() {
        let dir = std::env::temp_dir().join(format!("pgdog-demo-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (config, users) = (dir.join("pgdog.toml"), dir.join("users.toml"));
        std::fs::write(&config, pgdog_toml(6432, 5432, &[5433, 5434])).unwrap();
        std::fs::write(&users, users_toml("secret", "migrator")).unwrap();
        let loaded = pgdog_config::ConfigAndUsers::load(&config, &users);
        std::fs::remove_dir_all(&dir).unwrap();
        let loaded = loaded.unwrap();
        assert_eq!(loaded.config.databases.len(), 3);
        assert_eq!(loaded.config.sharded_tables.len(), 2);
        for database in [APP_DATABASE, SHARDED_DATABASE] {
            let endpoints = crate::reshard::ClusterEndpoints::resolve(&loaded, database).unwrap();
            assert_eq!(endpoints.user, SCHEMA_ADMIN);
        }
        let sharded = crate::reshard::ClusterEndpoints::resolve(&loaded, SHARDED_DATABASE).unwrap();
        assert_eq!(sharded.shards.len(), 2);
        assert_eq!(sharded.shards[1].primary.port, 5434);
    }
}
