//! Resharding: moving a live database onto new shards. This module owns the background tasks
//! that do it (schema sync, data copy, replication, cutover) and the registry the admin
//! database reads (`SHOW TASKS`, `STOP_TASK`).

pub mod tasks;

pub use tasks::{TaskHandle, TaskKind, TaskRegistry, TaskSnapshot, TaskStatus};
