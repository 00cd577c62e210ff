//! The PostgreSQL wire protocol: framing of raw bytes into messages, the few messages pgdog
//! inspects or builds itself, SQLSTATE codes and the client/server byte streams.
//!
//! This module knows bytes, not sockets (except `stream`): parsing takes a `BytesMut` and
//! returns `Ok(None)` for an incomplete frame, so it is unit-tested without tokio.

pub mod error;
pub mod frame;
pub mod messages;
pub mod sqlstate;
pub mod startup;
pub mod stream;

pub use error::{Error, ErrorResponse};
pub use frame::{Frame, MAX_MESSAGE_LEN};
