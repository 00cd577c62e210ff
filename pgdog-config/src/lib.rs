//! Configuration for pgdog: the types, defaults, parsing and validation of
//! `pgdog.toml` (general settings, `[[databases]]`, `[admin]` and the sharding
//! sections `[[sharded_tables]]`, `[[sharded_mappings]]`,
//! `[[omnisharded_tables]]`) and `users.toml` (`[[users]]`, `[admin]`),
//! compatible with PgDog's files.
//!
//! This crate owns every default value and every rule about what a valid
//! configuration is. Its errors are one line each and name the file, the key
//! and the fix. It does no I/O beyond reading the config files and checking
//! that the TLS files are readable.
//!
//! Start with [`ConfigAndUsers::load`].

#![warn(missing_docs)]

mod config;
mod database;
mod error;
mod general;
mod hash;
mod load;
mod parse;
mod replication;
mod retarget;
mod sharding;
mod users;
mod validate;

pub use config::{Config, Users};
pub use database::{Database, Role};
pub use error::{ConfigError, FileKind, ParseError, Problem};
pub use general::{
    as_duration, AuthType, CutoverTimeoutAction, General, LoadBalancingStrategy, PoolerMode,
    ReadWriteSplit,
};
pub use load::ConfigAndUsers;
pub use replication::{Replication, ToastCompression};
pub use retarget::RetargetError;
pub use sharding::{
    parse_uuid, DataType, Hasher, MappingKind, MappingRule, OmnishardedTables, ShardedMapping,
    ShardedTable, ShardingValue,
};
pub use users::{Admin, User};
