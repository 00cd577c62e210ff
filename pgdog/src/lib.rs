//! pgdog: a PostgreSQL connection pooler that can reshard a live database.
//!
//! Layout (imports go one way, top to bottom):
//! - [`cli`]: command-line subcommands (`run`, `configcheck`, `hash`); [`demo`] for `pgdog demo`.
//! - [`frontend`]: the listener, client logins and the per-client proxy loop.
//! - [`state`]: the live state shared by all clients (pools, caches, shutdown signal).
//! - [`metrics`]: the OpenMetrics (Prometheus) HTTP endpoint rendering pool statistics.
//! - [`reshard`]: the background tasks of a move (schema sync, copy, replication, cutover) and
//!   their registry.
//! - [`router`]: SQL parsing with pg_query: read/write classification, the sharding planner,
//!   result merging and COPY splitting.
//! - [`backend`]: server connections, pools, prepared-statement cache, live pool map.
//! - [`auth`]: password secrets and server-side SCRAM/md5.
//! - [`tls`]: TLS certificates for client connections.
//! - [`net`]: the wire protocol (framing, messages, SQLSTATEs, streams).
//! - [`local`]: throwaway local PostgreSQL clusters for the demo, tests and benchmarks.

pub mod admin;
pub mod auth;
pub mod backend;
pub mod cli;
pub mod demo;
pub mod frontend;
pub mod gate;
pub mod local;
pub mod metrics;
pub mod net;
pub mod quote;
pub mod reshard;
pub mod router;
pub mod state;
pub mod tls;
