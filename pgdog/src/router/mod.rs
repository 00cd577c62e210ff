//! SQL parsing with pg_query: what a statement reads and writes; the sharding router grows here.
//!
//! - [`access`](mod@access): is a query string safe for a hot standby ([`Access::Read`]) or
//!   must it go to the primary ([`Access::Write`])? [`AccessCache`] remembers the answer per text.

pub mod access;

pub use access::{access, Access, AccessCache};
