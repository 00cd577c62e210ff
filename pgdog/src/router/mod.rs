//! SQL parsing with pg_query: what a statement reads and writes; the sharding router grows here.
//!
//! - [`access`](mod@access): is a query string safe for a hot standby ([`Access::Read`]) or
//!   must it go to the primary ([`Access::Write`])? [`AccessCache`] remembers the answer per text.
//! - `walk`: the generic parse-tree walker those checks (and later the sharding router) use.

pub mod access;
mod walk;

pub use access::{access, Access, AccessCache};
