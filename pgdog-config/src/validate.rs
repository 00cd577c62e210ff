//! The validation rules. Every broken rule becomes a [`Problem`] naming the
//! file, the key and the fix; all of them are collected, not just the first.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::Problem;
use crate::hash::{classify, HashKind};
use crate::{AuthType, ConfigAndUsers, Role};

/// Runs every rule over both files.
pub(crate) fn problems(all: &ConfigAndUsers) -> Vec<Problem> {
    let mut check = Checker {
        all,
        problems: Vec::new(),
    };
    check.general();
    check.databases();
    check.users();
    check.admin();
    check.problems
}

/// Formats a string the way it would be written in TOML.
fn quoted(value: &str) -> String {
    format!("{value:?}")
}

/// Collects problems while walking the config.
struct Checker<'a> {
    all: &'a ConfigAndUsers,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn config_file(&self) -> &Path {
        &self.all.config_path
    }

    fn report(&mut self, file: PathBuf, key: String, value: Option<String>, message: String) {
        self.problems.push(Problem {
            file,
            key,
            value,
            message,
        });
    }

    /// A problem in `pgdog.toml`.
    fn config(
        &mut self,
        key: impl Into<String>,
        value: Option<String>,
        message: impl Into<String>,
    ) {
        let file = self.all.config_path.clone();
        self.report(file, key.into(), value, message.into());
    }

    /// A problem in `users.toml`.
    fn users_file(
        &mut self,
        key: impl Into<String>,
        value: Option<String>,
        message: impl Into<String>,
    ) {
        let file = self.all.users_path.clone();
        self.report(file, key.into(), value, message.into());
    }

    /// `[general]`: port, workers, pool sizes, health checks, bans, metrics and TLS files.
    fn general(&mut self) {
        let general = &self.all.config.general;
        if general.port == 0 {
            self.config(
                "general.port",
                Some("0".into()),
                "pgdog cannot listen on port 0; set a port from 1 to 65535, e.g. 6432",
            );
        }
        if general.workers == 0 {
            self.config(
                "general.workers",
                Some("0".into()),
                "must be at least 1; set it to the number of worker threads, e.g. 2",
            );
        }
        if general.prepared_statements_limit == 0 {
            self.config(
                "general.prepared_statements_limit",
                Some("0".into()),
                "must be at least 1; set how many prepared statements each server connection keeps, e.g. 500",
            );
        }
        if general.default_pool_size == 0 {
            self.config(
                "general.default_pool_size",
                Some("0".into()),
                "must be at least 1; set it to the number of server connections per pool, e.g. 10",
            );
        } else if general.min_pool_size > general.default_pool_size {
            self.config(
                "general.min_pool_size",
                Some(general.min_pool_size.to_string()),
                format!(
                    "is larger than general.default_pool_size ({}); lower it or raise default_pool_size",
                    general.default_pool_size
                ),
            );
        }
        self.health_and_bans();
        self.metrics();
        let tls = [
            (
                "tls_certificate",
                &general.tls_certificate,
                "tls_private_key",
                &general.tls_private_key,
            ),
            (
                "tls_private_key",
                &general.tls_private_key,
                "tls_certificate",
                &general.tls_certificate,
            ),
        ];
        for (key, path, other_key, other) in tls {
            let Some(path) = path else { continue };
            let value = Some(quoted(&path.display().to_string()));
            if other.is_none() {
                self.config(
                    format!("general.{key}"),
                    value.clone(),
                    format!(
                        "is set but general.{other_key} is not; set both to enable TLS, or remove {key}"
                    ),
                );
            }
            if let Err(reason) = readable_file(path) {
                self.config(
                    format!("general.{key}"),
                    value,
                    format!(
                        "cannot read {}: {reason}; fix the path (relative paths start from the \
                         directory pgdog runs in) or remove the setting",
                        path.display()
                    ),
                );
            }
        }
    }

    /// `[general]` health check and ban durations: none of these may be 0.
    fn health_and_bans(&mut self) {
        let general = &self.all.config.general;
        let rules = [
            (
                "healthcheck_interval",
                general.healthcheck_interval,
                "set how often, in milliseconds, a server connection is checked before \
                 a client gets it, e.g. 30000",
            ),
            (
                "idle_healthcheck_interval",
                general.idle_healthcheck_interval,
                "set how often, in milliseconds, every pool is checked even without \
                 traffic, e.g. 30000",
            ),
            (
                "healthcheck_timeout",
                general.healthcheck_timeout,
                "set how long, in milliseconds, a health check may take before the server \
                 counts as down, e.g. 5000",
            ),
            (
                "ban_timeout",
                general.ban_timeout,
                "set how long, in milliseconds, a failed server stays out of rotation, e.g. 300000",
            ),
        ];
        for (key, value, fix) in rules {
            if value == 0 {
                self.config(
                    format!("general.{key}"),
                    Some("0".into()),
                    format!("must be at least 1; {fix}"),
                );
            }
        }
    }

    /// `[general]` OpenMetrics endpoint: a usable port of its own and a namespace
    /// that keeps metric names valid.
    fn metrics(&mut self) {
        let general = &self.all.config.general;
        match general.openmetrics_port {
            Some(0) => self.config(
                "general.openmetrics_port",
                Some("0".into()),
                "pgdog cannot serve metrics on port 0; set a port from 1 to 65535, e.g. 9090, \
                 or remove openmetrics_port to disable metrics",
            ),
            Some(port) if port == general.port => self.config(
                "general.openmetrics_port",
                Some(port.to_string()),
                format!(
                    "is the same as general.port ({port}), where pgdog listens for clients; \
                     set another port, e.g. 9090, or remove openmetrics_port to disable metrics"
                ),
            ),
            _ => {}
        }
        let namespace = &general.openmetrics_namespace;
        let bad_char = namespace
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | ':')));
        let message = if let Some(c) = bad_char {
            Some(format!(
                "contains {}, which is not allowed in metric names; use only letters, digits, \
                 \"_\" and \":\", e.g. \"pgdog_\", or remove it for no prefix",
                quoted(&c.to_string())
            ))
        } else if namespace.starts_with(|c: char| c.is_ascii_digit()) {
            Some(
                "starts with a digit, but metric names must not; start it with a letter or \"_\", \
                 e.g. \"pgdog_\", or remove it for no prefix"
                    .to_string(),
            )
        } else {
            None
        };
        if let Some(message) = message {
            self.config(
                "general.openmetrics_namespace",
                Some(quoted(namespace)),
                message,
            );
        }
    }

    /// `[[databases]]`: names, hosts, ports, pool sizes, one primary per shard, contiguous shards.
    fn databases(&mut self) {
        let config = &self.all.config;
        let min_pool_size = config.general.min_pool_size;
        let mut primaries: HashMap<(&str, usize), usize> = HashMap::new();
        let mut shards: BTreeMap<&str, BTreeSet<usize>> = BTreeMap::new();
        for (i, db) in config.databases.iter().enumerate() {
            let key = |field: &str| format!("databases[{i}].{field}");
            if db.name.is_empty() {
                self.config(
                    key("name"),
                    Some(quoted("")),
                    "is empty; set it to the name clients connect to",
                );
            } else {
                shards.entry(&db.name).or_default().insert(db.shard);
            }
            if db.host.is_empty() {
                self.config(
                    key("host"),
                    Some(quoted("")),
                    "is empty; set it to the Postgres server's host name or IP, e.g. \"127.0.0.1\"",
                );
            }
            if db.port == 0 {
                self.config(
                    key("port"),
                    Some("0".into()),
                    "is not a valid Postgres port; set it to the server's port, e.g. 5432",
                );
            }
            if db.database_name.as_deref() == Some("") {
                self.config(
                    key("database_name"),
                    Some(quoted("")),
                    "is empty; set it to the database name on the Postgres server, or remove it to use name",
                );
            }
            match db.pool_size {
                Some(0) => self.config(
                    key("pool_size"),
                    Some("0".into()),
                    "must be at least 1; raise it, or remove it to use general.default_pool_size",
                ),
                Some(size) if size < min_pool_size => self.config(
                    key("pool_size"),
                    Some(size.to_string()),
                    format!(
                        "is smaller than general.min_pool_size ({min_pool_size}); raise it or lower min_pool_size"
                    ),
                ),
                _ => {}
            }
            if db.role == Role::Primary {
                if let Some(first) = primaries.insert((&db.name, db.shard), i) {
                    primaries.insert((&db.name, db.shard), first);
                    self.config(
                        key("role"),
                        Some(quoted("primary")),
                        format!(
                            "second primary for database {} shard {} (the first is databases[{first}]); \
                             set role = \"replica\" on one of them or fix its shard",
                            quoted(&db.name),
                            db.shard
                        ),
                    );
                }
            }
        }
        for (name, numbers) in shards {
            let Some(&last) = numbers.last() else {
                continue;
            };
            let Some(index) = config
                .databases
                .iter()
                .position(|db| db.name == name && db.shard == last)
            else {
                continue;
            };
            for missing in (0..last).filter(|shard| !numbers.contains(shard)) {
                self.config(
                    format!("databases[{index}].shard"),
                    Some(last.to_string()),
                    format!(
                        "database {} has no shard {missing}; shards must be numbered 0 to N-1 without gaps; \
                         add a [[databases]] entry with name = {} and shard = {missing}, or renumber the shards",
                        quoted(name),
                        quoted(name)
                    ),
                );
            }
        }
    }

    /// `[[users]]`: names, databases, duplicates, pool sizes and passwords.
    fn users(&mut self) {
        let all = self.all;
        let config = &all.config;
        let auth = config.general.auth_type;
        let config_file = self.config_file().display().to_string();
        let names: HashSet<&str> = config.databases.iter().map(|db| db.name.as_str()).collect();
        let mut seen: HashMap<(&str, &str), usize> = HashMap::new();
        for (i, user) in all.users.users.iter().enumerate() {
            let key = |field: &str| format!("users[{i}].{field}");
            let who = quoted(&user.name);
            if user.name.is_empty() {
                self.users_file(
                    key("name"),
                    Some(quoted("")),
                    "is empty; set it to the user name clients log in with",
                );
            }
            if user.database.is_empty() {
                self.users_file(
                    key("database"),
                    Some(quoted("")),
                    format!(
                        "is empty; set it to the name of a [[databases]] entry in {config_file}"
                    ),
                );
            } else if !names.contains(user.database.as_str()) {
                self.users_file(
                    key("database"),
                    Some(quoted(&user.database)),
                    format!(
                        "no [[databases]] entry named {} in {config_file}; add one or fix the name",
                        quoted(&user.database)
                    ),
                );
            }
            if let Some(first) = seen.insert((&user.name, &user.database), i) {
                seen.insert((&user.name, &user.database), first);
                self.users_file(
                    key("name"),
                    Some(who.clone()),
                    format!(
                        "duplicates users[{first}] (same name and database {}); remove one of them",
                        quoted(&user.database)
                    ),
                );
            }
            self.user_pool_sizes(i, user);
            self.user_passwords(i, user, auth, &config_file);
        }
    }

    /// A user's `pool_size` and `min_pool_size`, against every server of its database.
    fn user_pool_sizes(&mut self, i: usize, user: &crate::User) {
        let all = self.all;
        let key = |field: &str| format!("users[{i}].{field}");
        if user.pool_size == Some(0) {
            self.users_file(
                key("pool_size"),
                Some("0".into()),
                "must be at least 1; raise it, or remove it to use the database's pool size",
            );
            return;
        }
        let min = all.min_pool_size(user);
        let too_small = all
            .config
            .databases
            .iter()
            .enumerate()
            .filter(|(_, db)| db.name == user.database)
            .map(|(j, db)| (j, db, all.pool_size(user, db)))
            .find(|&(_, _, size)| size > 0 && min > size);
        let Some((j, db, size)) = too_small else {
            return;
        };
        if user.min_pool_size.is_some() {
            let source = if user.pool_size.is_some() {
                key("pool_size")
            } else if db.pool_size.is_some() {
                format!(
                    "databases[{j}].pool_size in {}",
                    self.config_file().display()
                )
            } else {
                format!(
                    "general.default_pool_size in {}",
                    self.config_file().display()
                )
            };
            self.users_file(
                key("min_pool_size"),
                Some(min.to_string()),
                format!("is larger than this user's pool size ({size}, from {source}); lower it or raise the pool size"),
            );
        } else if user.pool_size.is_some() {
            self.users_file(
                key("pool_size"),
                Some(size.to_string()),
                format!(
                    "is smaller than general.min_pool_size ({min}) in {}; raise it or set min_pool_size for this user",
                    self.config_file().display()
                ),
            );
        }
        // Otherwise the database's or the general pool size is at fault; reported there.
    }

    /// A user's `password` / `password_hash` against `auth_type`, and whether
    /// pgdog has a password to log in to Postgres with.
    fn user_passwords(&mut self, i: usize, user: &crate::User, auth: AuthType, config_file: &str) {
        let all = self.all;
        let key = |field: &str| format!("users[{i}].{field}");
        let auth_key = format!(
            "general.auth_type = {} in {config_file}",
            quoted(auth.as_str())
        );
        match &user.password_hash {
            None if user.password.is_none() && auth != AuthType::Trust => {
                let hash = match auth {
                    AuthType::Md5 => "an md5 hash",
                    _ => "a SCRAM-SHA-256 secret",
                };
                self.users_file(
                    key("password"),
                    None,
                    format!(
                        "user {} has neither password nor password_hash, but {auth_key} needs one; \
                         set password, or set password_hash to {hash} from pg_authid.rolpassword",
                        quoted(&user.name)
                    ),
                );
            }
            None => {}
            Some(hash) => {
                match (classify(hash), auth) {
                    (Err(reason), _) => self.users_file(
                        key("password_hash"),
                        None,
                        format!(
                            "{reason}; it must be SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey> \
                             or md5 followed by 32 hex digits, as stored in pg_authid.rolpassword; \
                             copy it from there or use password instead"
                        ),
                    ),
                    (Ok(HashKind::Scram), AuthType::Md5) => self.users_file(
                        key("password_hash"),
                        None,
                        format!(
                            "is a SCRAM secret, but {auth_key} needs the plaintext password or an md5 hash; \
                             replace it with password or an md5 hash, or set auth_type = \"scram\""
                        ),
                    ),
                    (Ok(HashKind::Md5), AuthType::Scram) => self.users_file(
                        key("password_hash"),
                        None,
                        format!(
                            "is an md5 hash, but {auth_key} needs the plaintext password or a SCRAM secret; \
                             replace it with password or a SCRAM secret, or set auth_type = \"md5\""
                        ),
                    ),
                    _ => {}
                }
                if user.password.is_none() && user.server_password.is_none() {
                    let without: Vec<String> = all
                        .config
                        .databases
                        .iter()
                        .enumerate()
                        .filter(|(_, db)| db.name == user.database && db.password.is_none())
                        .map(|(j, _)| format!("databases[{j}]"))
                        .collect();
                    if !without.is_empty() {
                        self.users_file(
                            key("server_password"),
                            None,
                            format!(
                                "user {} has only a password_hash, so pgdog has no password to log in to \
                                 Postgres with for {} in {config_file}; set server_password for this user, \
                                 or password in that [[databases]] entry",
                                quoted(&user.name),
                                without.join(", ")
                            ),
                        );
                    }
                }
            }
        }
    }

    /// The effective `[admin]`: non-empty name and user, no clash with a database name.
    fn admin(&mut self) {
        let all = self.all;
        let admin = all.admin();
        let (file, set_here) = if all.users.admin.is_some() {
            (all.users_path.clone(), true)
        } else {
            (all.config_path.clone(), all.config.admin.is_some())
        };
        if admin.name.is_empty() {
            self.report(
                file.clone(),
                "admin.name".into(),
                Some(quoted("")),
                "is empty; set it to the name of the admin database, e.g. \"admin\"".into(),
            );
        } else if all.config.databases.iter().any(|db| db.name == admin.name) {
            let message = if set_here {
                format!(
                    "is also the name of a [[databases]] entry in {}; choose another admin name or rename the database",
                    self.config_file().display()
                )
            } else {
                format!(
                    "is the default admin database name and also the name of a [[databases]] entry; \
                     add [admin] with another name to {}, or rename the database",
                    self.config_file().display()
                )
            };
            self.report(
                file.clone(),
                "admin.name".into(),
                Some(quoted(&admin.name)),
                message,
            );
        }
        if admin.user.is_empty() {
            self.report(
                file,
                "admin.user".into(),
                Some(quoted("")),
                "is empty; set it to the user name for the admin database, e.g. \"admin\"".into(),
            );
        }
    }
}

/// Checks that `path` is a regular file that can be opened for reading.
fn readable_file(path: &Path) -> Result<(), String> {
    let file = File::open(path).map_err(|err| err.to_string())?;
    let meta = file.metadata().map_err(|err| err.to_string())?;
    if meta.is_file() {
        Ok(())
    } else {
        Err("it is not a regular file".into())
    }
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
