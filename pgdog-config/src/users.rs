//! `users.toml` (`[[users]]` entries) and the `[admin]` section both files may hold.

use serde::{Deserialize, Serialize};

use crate::PoolerMode;

/// One `[[users]]` entry: a user allowed to connect to one database through pgdog.
///
/// Every field defaults to empty / unset / `false`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct User {
    /// User name clients log in with.
    pub name: String,
    /// `name` of the `[[databases]]` entries this user may connect to.
    pub database: String,
    /// Plaintext password clients log in with (also used for Postgres unless overridden).
    pub password: Option<String>,
    /// Postgres-style SCRAM-SHA-256 secret or md5 hash clients log in with, instead of `password`.
    pub password_hash: Option<String>,
    /// Pool size for this user; overrides the database's and `general.default_pool_size`.
    pub pool_size: Option<usize>,
    /// Minimum idle connections for this user; overrides `general.min_pool_size`.
    pub min_pool_size: Option<usize>,
    /// Pooler mode for this user; overrides `general.pooler_mode`.
    pub pooler_mode: Option<PoolerMode>,
    /// User pgdog logs in to Postgres as; overrides the database's `user` and this user's `name`.
    pub server_user: Option<String>,
    /// Password pgdog logs in to Postgres with; overrides the database's `password` and this user's `password`.
    pub server_password: Option<String>,
    /// Marks the user pgdog uses for schema changes (DDL) across all shards.
    pub schema_admin: bool,
}

/// The `[admin]` section: credentials for pgdog's admin database.
///
/// It may appear in `pgdog.toml` and in `users.toml`; the one in `users.toml`
/// wins as a whole (see [`crate::ConfigAndUsers::admin`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Admin {
    /// Name of the admin database clients connect to; must not be a `[[databases]]` name.
    pub name: String,
    /// User name for logging in to the admin database.
    pub user: String,
    /// Password for the admin database. `None` means pgdog generates a random
    /// password at startup and logs it once, unless the `PGDOG_ADMIN_PASSWORD`
    /// environment variable is set, in which case that is the password.
    pub password: Option<String>,
}

impl Default for Admin {
    fn default() -> Self {
        Self {
            name: "admin".into(),
            user: "admin".into(),
            password: None,
        }
    }
}
