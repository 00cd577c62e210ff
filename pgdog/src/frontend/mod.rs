//! The client side: accepting connections, logging clients in, and proxying their traffic.

pub mod aborted;
pub mod cancel;
pub mod client;
pub mod clients;
pub mod ddl_capture;
pub mod listener;
pub mod login;
pub mod reads;
pub mod session;
pub mod statements;
