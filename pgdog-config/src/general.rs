//! The `[general]` section of `pgdog.toml` and the enums it uses.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The `[general]` section of `pgdog.toml`: listener, pool and timeout settings
/// shared by every database and user.
///
/// All durations are in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct General {
    /// Address pgdog listens on for client connections.
    pub host: String,
    /// Port pgdog listens on for client connections; must not be 0.
    pub port: u16,
    /// Number of tokio worker threads; must be at least 1.
    pub workers: usize,
    /// Server connections per pool when neither the user nor the database sets `pool_size`.
    pub default_pool_size: usize,
    /// Server connections each pool keeps open even when idle.
    pub min_pool_size: usize,
    /// How long a client keeps its server connection: per transaction or per session.
    pub pooler_mode: PoolerMode,
    /// Milliseconds to wait for a new server connection to be established.
    pub connect_timeout: u64,
    /// Milliseconds a client waits for a free server connection from the pool.
    pub checkout_timeout: u64,
    /// Milliseconds after which idle server connections above `min_pool_size` are closed.
    pub idle_timeout: u64,
    /// Maximum age in milliseconds of a server connection; older ones are closed instead of reused.
    pub server_lifetime: u64,
    /// Milliseconds after which an idle client is disconnected; 0 disables it (see [`as_duration`]).
    pub client_idle_timeout: u64,
    /// Milliseconds after which a running query is cancelled; 0 disables it (see [`as_duration`]).
    pub query_timeout: u64,
    /// Milliseconds to wait for clients to finish on shutdown before closing them.
    pub shutdown_timeout: u64,
    /// How clients prove their password to pgdog.
    pub auth_type: AuthType,
    /// Prepared statements kept on each server connection in transaction mode; the least
    /// recently used one is closed when a new one would exceed it.
    pub prepared_statements_limit: usize,
    /// PEM certificate (chain) for client TLS; set together with `tls_private_key`.
    pub tls_certificate: Option<PathBuf>,
    /// PEM private key for client TLS; set together with `tls_certificate`.
    pub tls_private_key: Option<PathBuf>,
}

impl Default for General {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".into(),
            port: 6432,
            workers: 2,
            default_pool_size: 10,
            min_pool_size: 1,
            pooler_mode: PoolerMode::Transaction,
            connect_timeout: 5_000,
            checkout_timeout: 5_000,
            idle_timeout: 60_000,
            server_lifetime: 86_400_000,
            client_idle_timeout: 0,
            query_timeout: 0,
            shutdown_timeout: 60_000,
            auth_type: AuthType::Scram,
            prepared_statements_limit: 500,
            tls_certificate: None,
            tls_private_key: None,
        }
    }
}

impl General {
    /// True when both TLS files are configured, i.e. pgdog accepts TLS from clients.
    pub fn tls_enabled(&self) -> bool {
        self.tls_certificate.is_some() && self.tls_private_key.is_some()
    }
}

/// Converts a millisecond setting where 0 means "disabled" (such as
/// `client_idle_timeout` and `query_timeout`) into a [`Duration`]:
/// `None` for 0, `Some(duration)` otherwise.
pub fn as_duration(ms: u64) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms))
}

/// How long a client holds a server connection (`pooler_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolerMode {
    /// The server connection goes back to the pool after each transaction.
    #[default]
    Transaction,
    /// The client keeps its server connection until it disconnects.
    Session,
}

impl PoolerMode {
    /// The value as written in the config files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transaction => "transaction",
            Self::Session => "session",
        }
    }
}

impl fmt::Display for PoolerMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How clients authenticate to pgdog (`auth_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthType {
    /// SCRAM-SHA-256 (needs `password` or a SCRAM `password_hash`).
    #[default]
    Scram,
    /// MD5 (needs `password` or an md5 `password_hash`).
    Md5,
    /// No password check at all.
    Trust,
}

impl AuthType {
    /// The value as written in the config files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scram => "scram",
            Self::Md5 => "md5",
            Self::Trust => "trust",
        }
    }
}

impl fmt::Display for AuthType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_duration_zero_is_disabled() {
        assert_eq!(as_duration(0), None);
        assert_eq!(as_duration(1500), Some(Duration::from_millis(1500)));
    }

    #[test]
    fn enums_display_like_the_config_file() {
        assert_eq!(PoolerMode::Session.to_string(), "session");
        assert_eq!(AuthType::Md5.to_string(), "md5");
    }
}
