//! The OpenMetrics (Prometheus) endpoint: renders the pools' live numbers in the Prometheus
//! text exposition format (version 0.0.4) and serves them over a small built-in HTTP/1.1
//! server on `general.openmetrics_port`.
//!
//! This module owns the metric names, their help texts and labels, the rendering, and the
//! HTTP handling: `render` writes the text, `http` serves it. It only reads
//! [`PoolerState`](crate::state::PoolerState); the numbers themselves are kept by
//! [`PoolStats`](crate::backend::stats::PoolStats), the pools and the client registry.
//!
//! # Names
//!
//! Every metric is named `{namespace}pgdog_{name}`, where `{namespace}` is
//! `general.openmetrics_namespace` put verbatim in front (empty by default), so with the
//! default configuration the names start with `pgdog_`. Counters end in `_total`, times are in
//! seconds and sizes in bytes, as Prometheus recommends.
//!
//! Process-wide families (no labels unless noted):
//!
//! | name | type | what |
//! |---|---|---|
//! | `pgdog_up` | gauge | always 1 while pgdog answers |
//! | `pgdog_info{version}` | gauge | always 1; the version is the label |
//! | `pgdog_shutting_down` | gauge | 1 once shutdown began (the endpoint keeps answering during the drain) |
//! | `pgdog_start_time_seconds` | gauge | when pgdog started, Unix time |
//! | `pgdog_clients` | gauge | client connections, including ones still logging in |
//! | `pgdog_database_clients{database,user,state}` | gauge | logged-in clients by state (`idle`, `active`, `waiting`, `idle in transaction`) |
//!
//! Per pool, labelled `database` and `user` (what clients connect with), `shard`, `role`
//! (`primary` or `replica`), `host`, `port` (the server) and `pool_id` (as in `SHOW POOLS` and
//! `BAN <id>`):
//!
//! | name | type | what |
//! |---|---|---|
//! | `pgdog_pool_clients_waiting` | gauge | clients waiting for a server connection |
//! | `pgdog_pool_server_connections_active` | gauge | server connections checked out by clients |
//! | `pgdog_pool_server_connections_idle` | gauge | idle server connections |
//! | `pgdog_pool_server_connections` | gauge | open server connections |
//! | `pgdog_pool_server_connections_max` | gauge | pool size (most server connections allowed) |
//! | `pgdog_pool_banned` | gauge | 1 while the pool is banned, else 0 |
//! | `pgdog_pool_transactions_total` | counter | transactions completed |
//! | `pgdog_pool_queries_total` | counter | requests completed (simple query or extended-protocol Sync) |
//! | `pgdog_pool_server_assignments_total` | counter | server connections handed to clients |
//! | `pgdog_pool_received_bytes_total` | counter | bytes received from clients |
//! | `pgdog_pool_sent_bytes_total` | counter | bytes sent to clients |
//! | `pgdog_pool_errors_total` | counter | errors the server returned to clients |
//! | `pgdog_pool_server_connections_opened_total` | counter | server connections opened |
//! | `pgdog_pool_query_duration_seconds` | histogram | request times |
//! | `pgdog_pool_transaction_duration_seconds` | histogram | transaction times |
//! | `pgdog_pool_checkout_wait_seconds` | histogram | time clients waited for a server connection |
//! | `pgdog_pool_connect_duration_seconds` | histogram | time spent opening server connections |
//!
//! Histograms have the buckets of [`BUCKETS_US`](crate::backend::stats::BUCKETS_US)
//! (converted to seconds) plus `+Inf`. A pool shared by several (user, database) pairs
//! (possible after a reload) is listed once, under the first pair in (database, user) order.
//!
//! # HTTP
//!
//! `GET /metrics` and `GET /` (and `HEAD`) answer 200 with the text; other paths 404, other
//! methods 405, malformed requests 400, requests over [`MAX_REQUEST_BYTES`] 431 and requests
//! not received within [`READ_TIMEOUT`] 408. Each connection is answered once and closed, in
//! its own task, and at most [`MAX_CONNECTIONS`] are served at a time. The server does not
//! stop at shutdown: scrapes keep working while clients drain, until the process exits.

mod http;
mod render;

pub use http::{bind, serve, MAX_CONNECTIONS, MAX_REQUEST_BYTES, READ_TIMEOUT, WRITE_TIMEOUT};
pub use render::{render, CONTENT_TYPE};

/// Test fixtures shared by the `render` and `http` tests: a pooler state from a small config.
#[cfg(test)]
mod fixtures {
    use std::sync::Arc;

    use pgdog_config::ConfigAndUsers;

    use crate::state::PoolerState;

    /// A pooler state from `config` (pgdog.toml) and `users` (users.toml) text.
    pub(super) fn state_with(config: &str, users: &str) -> Arc<PoolerState> {
        let config = ConfigAndUsers::from_strs(config, users, "pgdog.toml", "users.toml")
            .unwrap_or_else(|e| panic!("{e}"));
        PoolerState::new(config).unwrap_or_else(|e| panic!("{e}"))
    }

    /// One database `shop` on 127.0.0.1:5999 and metrics on port 9930.
    pub(super) const CONFIG: &str = "[general]\nopenmetrics_port = 9930\n\n\
                                     [[databases]]\nname = \"shop\"\nhost = \"127.0.0.1\"\n\
                                     port = 5999\nuser = \"pg\"\npassword = \"pw\"\n";
    /// Users `alice` and `bob`, both for `shop`.
    pub(super) const USERS: &str = "[[users]]\nname = \"alice\"\ndatabase = \"shop\"\n\
                                    password = \"a\"\n\n\
                                    [[users]]\nname = \"bob\"\ndatabase = \"shop\"\n\
                                    password = \"b\"\n";

    /// The state of [`CONFIG`] and [`USERS`].
    pub(super) fn state() -> Arc<PoolerState> {
        state_with(CONFIG, USERS)
    }
}
