//! The server side: connections to Postgres, their pools, the prepared-statement cache and the
//! live map of databases and users to pools.

pub mod balancer;
pub mod databases;
pub mod exchange;
pub mod expect;
pub mod pool;
pub mod prepared;
pub mod server;
pub mod stats;
pub mod two_phase;
