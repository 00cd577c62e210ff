//! SQL parsing with pg_query: what a statement reads and writes, and where it runs on a sharded
//! database.
//!
//! - [`access`](mod@access): is a query string safe for a hot standby ([`Access::Read`]) or
//!   must it go to the primary ([`Access::Write`])? [`AccessCache`] remembers the answer per text.
//! - [`copy`]: COPY data on sharded tables: client rows split per shard, shard output joined.
//! - [`sharding`]: a key's shard, exactly the partition PostgreSQL's `PARTITION BY HASH` picks.
//! - [`route`]: the router's decisions (target shards, how to merge results) shared by the
//!   planner, the executor and the merger.
//! - [`ddl`]: which statements of a query are schema changes a database move must carry, and
//!   the logical message that carries them.
//! - [`merge`]: several shards' results combined into one (order, group, aggregate, limit).
//! - [`plan`]: per statement, which shard(s) run it and how to merge (the sharding planner).
//! - [`normalize`]: constants taken out of simple queries so one analysis serves them all.
//! - [`text_cache`]: the bounded memo by query text behind those caches.
//! - `walk`: the generic parse-tree walker the read/write classification uses.

pub mod access;
pub mod copy;
pub mod ddl;
pub mod merge;
pub mod normalize;
pub mod plan;
pub mod route;
pub mod sharding;
pub mod text_cache;
mod walk;

pub use access::{access, Access, AccessCache};
