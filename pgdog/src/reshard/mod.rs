//! Resharding: moving a live database onto new shards. This module owns the background tasks
//! that do it (schema sync, data copy, replication, cutover), the registry the admin database
//! reads (`SHOW TASKS`, `STOP_TASK`), and the connections and checks they share.

pub mod cleanup;
pub mod conn;
pub mod copy;
pub mod cutover;
pub mod endpoints;
pub mod human;
pub mod pg_dump;
pub mod preflight;
pub mod publication;
pub mod schema;
pub mod stream;
pub mod tasks;
pub mod verify;

pub use endpoints::{ClusterEndpoints, EndpointError, ShardEndpoints};
pub use tasks::{TaskHandle, TaskKind, TaskRegistry, TaskSnapshot, TaskStatus};
