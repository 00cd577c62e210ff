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
    /// How read queries are spread over the servers of a shard that may serve them.
    pub load_balancing_strategy: LoadBalancingStrategy,
    /// Whether the primary serves read queries alongside the replicas.
    pub read_write_split: ReadWriteSplit,
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
    /// Milliseconds after which a server connection is checked again (with a trivial
    /// query) before it is handed to a client; must be at least 1.
    pub healthcheck_interval: u64,
    /// Milliseconds between health checks of every pool, run even when no client is
    /// using it, so a dead server is noticed without traffic; must be at least 1.
    pub idle_healthcheck_interval: u64,
    /// Milliseconds after startup before the first idle health check, giving the
    /// servers time to come up; 0 starts them at once.
    pub idle_healthcheck_delay: u64,
    /// Milliseconds a health check query may take; a server that does not answer in
    /// time counts as failed and its pool is banned; must be at least 1.
    pub healthcheck_timeout: u64,
    /// Milliseconds a banned pool (one whose server failed a health check or a
    /// connection attempt) stays out of rotation before it is tried again; must be at least 1.
    pub ban_timeout: u64,
    /// How clients prove their password to pgdog.
    pub auth_type: AuthType,
    /// Prepared statements kept on each server connection in transaction mode; the least
    /// recently used one is closed when a new one would exceed it.
    pub prepared_statements_limit: usize,
    /// PEM certificate (chain) for client TLS; set together with `tls_private_key`.
    pub tls_certificate: Option<PathBuf>,
    /// PEM private key for client TLS; set together with `tls_certificate`.
    pub tls_private_key: Option<PathBuf>,
    /// Port of the OpenMetrics (Prometheus) HTTP endpoint serving `/metrics`;
    /// `None` disables it. Must not be 0 or `port`.
    pub openmetrics_port: Option<u16>,
    /// Text put verbatim in front of every metric name, e.g. `"pgdog_"`; empty
    /// (the default) adds nothing. Letters, digits, `_` and `:` only, not
    /// starting with a digit.
    pub openmetrics_namespace: String,
    /// Transactions that wrote to several shards commit with two-phase commit
    /// (`PREPARE TRANSACTION` on every shard, then `COMMIT PREPARED`), so a crash never
    /// leaves one shard committed and another not. Needs `max_prepared_transactions > 0`
    /// on every shard.
    pub two_phase_commit: bool,
    /// Tables (or parts of tables) the data copy of a move copies at once. Default 2.
    pub resharding_parallel_copies: usize,
    /// Attempts at copying one range of a table to a shard before the copy fails (a shard
    /// that restarts mid-copy is retried with exponential backoff). Default 5.
    pub resharding_copy_retry_max_attempts: usize,
    /// Tables larger than this (heap plus TOAST bytes) are split into CTID ranges of about
    /// this size, copied in parallel and recorded one by one. Default 64 MiB.
    pub resharding_copy_range_bytes: u64,
    /// Longest a cutover may pause client traffic (ms): waiting for transactions to finish and
    /// for the shards to apply the source's last changes. Default 30000.
    pub cutover_timeout: u64,
    /// What a cutover does when `cutover_timeout` passes: `abort` (resume traffic on the
    /// source, nothing changed; the default) or `cutover` (switch anyway).
    pub cutover_timeout_action: CutoverTimeoutAction,
    /// A cutover pauses traffic only once the stream's lag (bytes of the source's WAL not yet
    /// applied) is at most this. Default 1000000.
    pub cutover_traffic_stop_threshold: u64,
    /// With traffic paused, the lag (bytes) at which the switch happens. Default 0: every
    /// change applied.
    pub cutover_replication_lag_threshold: u64,
    /// Write the switched configuration back to pgdog.toml and users.toml after a cutover
    /// (the previous files are kept as `.before-cutover` copies). Default false.
    pub cutover_save_config: bool,
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
            load_balancing_strategy: LoadBalancingStrategy::Random,
            read_write_split: ReadWriteSplit::IncludePrimary,
            connect_timeout: 5_000,
            checkout_timeout: 5_000,
            idle_timeout: 60_000,
            server_lifetime: 86_400_000,
            client_idle_timeout: 0,
            query_timeout: 0,
            shutdown_timeout: 60_000,
            healthcheck_interval: 30_000,
            idle_healthcheck_interval: 30_000,
            idle_healthcheck_delay: 5_000,
            healthcheck_timeout: 5_000,
            ban_timeout: 300_000,
            auth_type: AuthType::Scram,
            prepared_statements_limit: 500,
            tls_certificate: None,
            tls_private_key: None,
            openmetrics_port: None,
            openmetrics_namespace: String::new(),
            two_phase_commit: false,
            resharding_parallel_copies: 2,
            resharding_copy_retry_max_attempts: 5,
            resharding_copy_range_bytes: 64 * 1024 * 1024,
            cutover_timeout: 30_000,
            cutover_timeout_action: CutoverTimeoutAction::Abort,
            cutover_traffic_stop_threshold: 1_000_000,
            cutover_replication_lag_threshold: 0,
            cutover_save_config: false,
        }
    }
}

impl General {
    /// True when both TLS files are configured, i.e. pgdog accepts TLS from clients.
    pub fn tls_enabled(&self) -> bool {
        self.tls_certificate.is_some() && self.tls_private_key.is_some()
    }

    /// Every key `[general]` accepts, in declaration order.
    pub fn keys() -> Vec<String> {
        // serde lists the valid fields when it meets an unknown one.
        match toml::from_str::<General>("__pgdog_list_keys__ = 0") {
            Err(e) => crate::parse::unknown_field(e.message()).unwrap_or_default(),
            Ok(_) => Vec::new(),
        }
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

/// What a cutover does when its timeout passes (`cutover_timeout_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CutoverTimeoutAction {
    /// Resume traffic on the source; nothing changes.
    #[default]
    Abort,
    /// Switch to the destination anyway (changes not yet applied are lost to it).
    Cutover,
}

impl CutoverTimeoutAction {
    /// The value as written in the config files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Abort => "abort",
            Self::Cutover => "cutover",
        }
    }
}

/// How read queries are spread over the servers that may serve them
/// (`load_balancing_strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadBalancingStrategy {
    /// Each query picks one of the servers at random.
    #[default]
    Random,
    /// Queries take the servers in turn.
    RoundRobin,
    /// Each query goes to the server with the fewest connections in use.
    LeastActiveConnections,
}

impl LoadBalancingStrategy {
    /// The value as written in the config files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Random => "random",
            Self::RoundRobin => "round_robin",
            Self::LeastActiveConnections => "least_active_connections",
        }
    }
}

impl fmt::Display for LoadBalancingStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which servers of a shard serve read queries (`read_write_split`). Writes
/// always go to the primary; a shard without replicas sends everything to its primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadWriteSplit {
    /// Reads are spread over the replicas and the primary.
    #[default]
    IncludePrimary,
    /// Reads go to the replicas only, leaving the primary to the writes.
    ExcludePrimary,
    /// Reads go to the replicas, and to the primary too while at least one
    /// replica is banned.
    IncludePrimaryIfReplicaBanned,
}

impl ReadWriteSplit {
    /// The value as written in the config files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::IncludePrimary => "include_primary",
            Self::ExcludePrimary => "exclude_primary",
            Self::IncludePrimaryIfReplicaBanned => "include_primary_if_replica_banned",
        }
    }
}

impl fmt::Display for ReadWriteSplit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_lists_every_field() {
        let keys = General::keys();
        assert_eq!(keys.first().map(String::as_str), Some("host"));
        for key in ["port", "tls_certificate", "openmetrics_port", "ban_timeout"] {
            assert!(keys.iter().any(|k| k == key), "{key} missing from {keys:?}");
        }
    }

    #[test]
    fn as_duration_zero_is_disabled() {
        assert_eq!(as_duration(0), None);
        assert_eq!(as_duration(1500), Some(Duration::from_millis(1500)));
    }

    #[test]
    fn enums_display_like_the_config_file() {
        assert_eq!(PoolerMode::Session.to_string(), "session");
        assert_eq!(AuthType::Md5.to_string(), "md5");
        assert_eq!(
            LoadBalancingStrategy::LeastActiveConnections.to_string(),
            "least_active_connections"
        );
        assert_eq!(
            ReadWriteSplit::IncludePrimaryIfReplicaBanned.to_string(),
            "include_primary_if_replica_banned"
        );
    }

    /// `as_str` agrees with what serde reads and writes, for every variant.
    #[test]
    fn as_str_matches_serde() {
        #[derive(Serialize, Deserialize)]
        struct Wrap<T> {
            v: T,
        }
        fn check<T>(values: &[T])
        where
            T: Copy + PartialEq + fmt::Debug + fmt::Display + Serialize + for<'de> Deserialize<'de>,
        {
            for &value in values {
                let text = toml::to_string(&Wrap { v: value }).unwrap();
                assert_eq!(text.trim(), format!("v = \"{value}\""));
                let back: Wrap<T> = toml::from_str(&text).unwrap();
                assert_eq!(back.v, value);
            }
        }
        check(&[PoolerMode::Transaction, PoolerMode::Session]);
        check(&[AuthType::Scram, AuthType::Md5, AuthType::Trust]);
        check(&[
            LoadBalancingStrategy::Random,
            LoadBalancingStrategy::RoundRobin,
            LoadBalancingStrategy::LeastActiveConnections,
        ]);
        check(&[
            ReadWriteSplit::IncludePrimary,
            ReadWriteSplit::ExcludePrimary,
            ReadWriteSplit::IncludePrimaryIfReplicaBanned,
        ]);
    }

    /// The defaults are PgDog's.
    #[test]
    fn replica_health_and_metrics_defaults() {
        let general = General::default();
        assert_eq!(
            general.load_balancing_strategy,
            LoadBalancingStrategy::Random
        );
        assert_eq!(general.read_write_split, ReadWriteSplit::IncludePrimary);
        assert_eq!(general.healthcheck_interval, 30_000);
        assert_eq!(general.idle_healthcheck_interval, 30_000);
        assert_eq!(general.idle_healthcheck_delay, 5_000);
        assert_eq!(general.healthcheck_timeout, 5_000);
        assert_eq!(general.ban_timeout, 300_000);
        assert_eq!(general.openmetrics_port, None);
        assert_eq!(general.openmetrics_namespace, "");
    }
}
