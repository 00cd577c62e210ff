//! The configured primaries, for admin commands that ask every database's servers something
//! (`SHOW REPLICATION_SLOTS`, `DROP_SLOT`): each `[[databases]]` name resolved as its schema
//! admin, every shard's primary once (deduplicated by host, port and database), and a way to
//! ask them all at once, each within a time limit, so one unreachable server never holds up
//! the admin session for long nor fails the others.

use std::future::Future;
use std::time::Duration;

use pgdog_config::ConfigAndUsers;
use tokio::task::JoinSet;
use tracing::debug;

use crate::backend::server::ServerAddress;
use crate::reshard::conn::{Conn, ConnError};
use crate::reshard::{ClusterEndpoints, EndpointError};

/// Time allowed after `connect_timeout` for a server to answer.
const ANSWER_TIME: Duration = Duration::from_secs(10);

/// One PostgreSQL database serving as a primary.
#[derive(Debug, Clone)]
pub struct Primary {
    /// The pgdog.toml names whose primaries are this database, sorted.
    pub names: Vec<String>,
    /// Where it is, logged in as the schema admin of the first name.
    pub addr: ServerAddress,
    /// `connect_timeout`.
    pub connect_timeout: Duration,
}

impl Primary {
    /// The first pgdog.toml name (how the admin tables name it).
    pub fn name(&self) -> &str {
        self.names.first().map(String::as_str).unwrap_or_default()
    }

    /// Connects within `connect_timeout`.
    pub async fn connect(&self) -> Result<Conn, ConnError> {
        Conn::connect(&self.addr, self.connect_timeout).await
    }

    /// How long one piece of work on this server may take.
    pub fn time_limit(&self) -> Duration {
        self.connect_timeout + ANSWER_TIME
    }
}

/// A configured database whose primaries cannot be named (e.g. a shard without a primary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unresolved {
    /// Its pgdog.toml name.
    pub name: String,
    /// Why.
    pub error: String,
}

/// Every configured database's primaries. Databases without a `schema_admin` user are
/// skipped: nothing may log in to them for resharding.
pub fn configured(config: &ConfigAndUsers) -> (Vec<Primary>, Vec<Unresolved>) {
    let mut names: Vec<&str> = config
        .config
        .databases
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut primaries: Vec<Primary> = Vec::new();
    let mut unresolved = Vec::new();
    for name in names {
        let cluster = match ClusterEndpoints::resolve(config, name) {
            Ok(cluster) => cluster,
            Err(EndpointError::NoSchemaAdmin { .. }) => {
                debug!("database \"{name}\" has no schema_admin user: its slots are not listed");
                continue;
            }
            Err(e) => {
                unresolved.push(Unresolved {
                    name: name.to_string(),
                    error: e.to_string(),
                });
                continue;
            }
        };
        for shard in cluster.shards {
            let addr = shard.primary;
            let same = |p: &&mut Primary| {
                p.addr.host == addr.host
                    && p.addr.port == addr.port
                    && p.addr.database == addr.database
            };
            match primaries.iter_mut().find(|p| same(p)) {
                Some(known) => {
                    if !known.names.iter().any(|n| n == name) {
                        known.names.push(name.to_string());
                    }
                }
                None => primaries.push(Primary {
                    names: vec![name.to_string()],
                    addr,
                    connect_timeout: cluster.connect_timeout,
                }),
            }
        }
    }
    (primaries, unresolved)
}

/// `work` on the server `addr`, given at most `limit`; an error is the message to show.
pub async fn within<T>(
    limit: Duration,
    addr: &str,
    work: impl Future<Output = Result<T, ConnError>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("{addr}: no answer within {limit:?}")),
    }
}

/// Runs `work` on every primary at once, each within its time limit; the results in the
/// order of `primaries` (an error is the message to show).
pub async fn each<T, F, Fut>(primaries: &[Primary], work: F) -> Vec<Result<T, String>>
where
    T: Send + 'static,
    F: Fn(Primary) -> Fut,
    Fut: Future<Output = Result<T, ConnError>> + Send + 'static,
{
    let mut set = JoinSet::new();
    for (index, primary) in primaries.iter().enumerate() {
        let limit = primary.time_limit();
        let addr = primary.addr.to_string();
        let future = work(primary.clone());
        set.spawn(async move { (index, within(limit, &addr, future).await) });
    }
    let mut results: Vec<Option<Result<T, String>>> = primaries.iter().map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((index, result)) => {
                if let Some(slot) = results.get_mut(index) {
                    *slot = Some(result);
                }
            }
            Err(e) => debug!("a server probe ended abnormally: {e}"),
        }
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err("the probe ended abnormally".into())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn config(databases: &str, users: &str) -> ConfigAndUsers {
        // Not validated: the broken database is the point.
        ConfigAndUsers {
            config: pgdog_config::Config::from_str(databases, "pgdog.toml").unwrap(),
            users: pgdog_config::Users::from_str(users, "users.toml").unwrap(),
            config_path: PathBuf::from("pgdog.toml"),
            users_path: PathBuf::from("users.toml"),
        }
    }

    #[test]
    fn one_primary_per_server_database() {
        let config = config(
            r#"
[[databases]]
name = "prod"
host = "10.0.0.1"
database_name = "app"

[[databases]]
name = "alias"
host = "10.0.0.1"
database_name = "app"

[[databases]]
name = "shards"
host = "10.0.0.2"
database_name = "s0"
shard = 0

[[databases]]
name = "shards"
host = "10.0.0.2"
database_name = "s1"
shard = 1

[[databases]]
name = "shards"
host = "10.0.0.3"
database_name = "s1"
shard = 1
role = "replica"

[[databases]]
name = "broken"
host = "10.0.0.4"
shard = 1

[[databases]]
name = "app_only"
host = "10.0.0.5"
"#,
            r#"
[[users]]
name = "m"
database = "prod"
schema_admin = true

[[users]]
name = "m"
database = "alias"
schema_admin = true

[[users]]
name = "m"
database = "shards"
schema_admin = true

[[users]]
name = "m"
database = "broken"
schema_admin = true

[[users]]
name = "app"
database = "app_only"
"#,
        );
        let (primaries, unresolved) = configured(&config);
        let found: Vec<(Vec<String>, String, String)> = primaries
            .iter()
            .map(|p| {
                (
                    p.names.clone(),
                    p.addr.host.clone(),
                    p.addr.database.clone(),
                )
            })
            .collect();
        assert_eq!(
            found,
            vec![
                (
                    vec!["alias".to_string(), "prod".to_string()],
                    "10.0.0.1".to_string(),
                    "app".to_string()
                ),
                (
                    vec!["shards".to_string()],
                    "10.0.0.2".to_string(),
                    "s0".to_string()
                ),
                (
                    vec!["shards".to_string()],
                    "10.0.0.2".to_string(),
                    "s1".to_string()
                ),
            ]
        );
        assert_eq!(primaries[0].name(), "alias");
        assert_eq!(unresolved.len(), 1);
        assert_eq!(unresolved[0].name, "broken");
        assert!(unresolved[0].error.contains("no primary"), "{unresolved:?}");
    }

    #[tokio::test]
    async fn each_keeps_order_and_bounds_time() {
        let primary = |name: &str, timeout: u64| Primary {
            names: vec![name.to_string()],
            addr: ServerAddress {
                host: "127.0.0.1".into(),
                port: 1,
                database: name.into(),
                user: "u".into(),
                password: None,
            },
            connect_timeout: Duration::from_millis(timeout),
        };
        let primaries = vec![primary("a", 10), primary("b", 20)];
        let results = each(&primaries, |p| async move {
            if p.name() == "a" {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok(1)
            } else {
                Ok(2)
            }
        })
        .await;
        assert_eq!(results, vec![Ok(1), Ok(2)]);

        assert_eq!(primaries[1].time_limit(), Duration::from_millis(10_020));

        let slow: Result<(), String> = within(Duration::from_millis(20), "db:5432", async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        })
        .await;
        assert_eq!(slow, Err("db:5432: no answer within 20ms".to_string()));
    }
}
