//! pgdog's config files for a tool's turn: database `source` and the shards of `destination`,
//! and with two shards where pgbench's rows go: every pgbench table sharded on its own key
//! (`pgbench_history` on `aid`), the heartbeat omnisharded (every row on every shard).

use std::fmt::Write as _;

use crate::setup::{PASSWORD, SOURCE_DB, USER};

/// Copy workers and index builds of the initial copy.
pub(crate) const COPY_JOBS: usize = 2;

/// `(table, sharding column)` of the pgbench tables with two shards (bigint hash).
pub(crate) const SHARDED: [(&str, &str); 4] = [
    ("pgbench_accounts", "aid"),
    ("pgbench_tellers", "tid"),
    ("pgbench_branches", "bid"),
    ("pgbench_history", "aid"),
];

/// The heartbeat table, omnisharded with two shards.
pub(crate) const HEARTBEAT: &str = "heartbeat";

/// The `pgdog.toml` (`port`: unused by the CLI, but a valid one): `source` on `source_port`,
/// and one `destination` shard per `(port, database)`.
pub(crate) fn pgdog_toml(port: u16, source_port: u16, shards: &[(u16, String)]) -> String {
    let mut config = format!(
        "[general]\nhost = \"127.0.0.1\"\nport = {port}\nmin_pool_size = 0\n\
         resharding_parallel_copies = {COPY_JOBS}\n\n[replication]\nindex_jobs = {COPY_JOBS}\n\n\
         [[databases]]\nname = \"source\"\nhost = \"127.0.0.1\"\nport = {source_port}\n\
         database_name = \"{SOURCE_DB}\"\n\n"
    );
    for (k, (port, database)) in shards.iter().enumerate() {
        let _ = write!(
            config,
            "[[databases]]\nname = \"destination\"\nhost = \"127.0.0.1\"\nport = {port}\n\
             database_name = \"{database}\"\nshard = {k}\n\n"
        );
    }
    if shards.len() > 1 {
        for (table, column) in SHARDED {
            let _ = write!(
                config,
                "[[sharded_tables]]\ndatabase = \"destination\"\nname = \"{table}\"\n\
                 column = \"{column}\"\ndata_type = \"bigint\"\n\n"
            );
        }
        let _ = write!(
            config,
            "[[omnisharded_tables]]\ndatabase = \"destination\"\ntables = [\"{HEARTBEAT}\"]\n"
        );
    }
    config
}

/// The `users.toml`: user `bench` on both databases, as the superuser on the servers, with
/// `schema_admin = true` (resharding connects as it).
pub(crate) fn users_toml() -> String {
    let mut users = String::new();
    for database in ["source", "destination"] {
        let _ = write!(
            users,
            "[[users]]\nname = \"bench\"\ndatabase = \"{database}\"\npassword = \"bench\"\n\
             server_user = \"{USER}\"\nserver_password = \"{PASSWORD}\"\nschema_admin = true\n\n"
        );
    }
    users
}

/// One line saying how the tables are placed with two shards, for the report.
pub(crate) fn placement_text() -> String {
    let mut parts: Vec<String> = SHARDED
        .iter()
        .map(|(table, column)| format!("`{table}` on `{column}`"))
        .collect();
    parts.push(format!("`{HEARTBEAT}` omnisharded"));
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_files() {
        let one = pgdog_toml(6432, 5000, &[(5001, "pgdog1".into())]);
        assert!(one.contains("port = 5001\ndatabase_name = \"pgdog1\"\nshard = 0"));
        assert!(!one.contains("sharded_tables"));
        let two = pgdog_toml(6432, 5000, &[(5001, "a".into()), (5002, "b".into())]);
        assert!(two.contains("port = 5002\ndatabase_name = \"b\"\nshard = 1"));
        assert_eq!(two.matches("[[sharded_tables]]").count(), 4);
        assert!(two.contains("name = \"pgbench_history\"\ncolumn = \"aid\""));
        assert!(two.contains("tables = [\"heartbeat\"]"));
        assert_eq!(users_toml().matches("schema_admin = true").count(), 2);
        assert!(placement_text().ends_with("`heartbeat` omnisharded"));
    }
}
