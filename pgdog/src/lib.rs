//! pgdog: a PostgreSQL connection pooler that can reshard a live database.
//!
//! Layout (imports go one way, top to bottom):
//! - [`cli`]: command-line subcommands (`run`, `configcheck`, `hash`, `demo`).
//! - [`frontend`]: the listener, client connections, their authentication and the
//!   per-client proxy loop.
//! - [`backend`]: server connections, pools, prepared-statement cache, live pool state.
//! - [`auth`]: password secrets and server-side SCRAM/md5.
//! - [`net`]: the wire protocol (framing, messages, SQLSTATEs, streams).
//! - [`local`]: throwaway local PostgreSQL clusters for the demo, tests and benchmarks.

pub mod auth;
pub mod net;
