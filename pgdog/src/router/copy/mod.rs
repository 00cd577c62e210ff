//! COPY data on sharded tables: splitting a client's `COPY ... FROM STDIN` stream into rows per
//! shard, and joining the shards' `COPY ... TO STDOUT` streams into one.
//!
//! The executor opens `COPY ... FROM STDIN` with the client's options on every shard, feeds
//! each client CopyData payload to a [`CopySplitter`] and sends every [`CopyPiece`] it gets
//! back: [`CopyPiece::All`] to every shard, [`CopyPiece::Row`] to the shard of its key
//! ([`shard_of`](crate::router::sharding::shard_of)). Payloads can be cut anywhere; the
//! splitter buffers partial rows. It reads the three formats PostgreSQL does:
//!
//! - text: backslash escapes, `\N` (or the `NULL` option) for NULL, `\.` end marker;
//! - CSV: quotes, escapes, newlines inside quotes, `HEADER`;
//! - binary: signature, header extension, tuples, trailer.
//!
//! Rows are forwarded byte for byte, so the shards parse them exactly as PostgreSQL would
//! have; the splitter only decodes the sharding key and checks what it must to find row ends.
//!
//! ```
//! use pgdog::router::copy::{CopyKey, CopyPiece, CopySplitter};
//! use pgdog::router::route::{CopyFormat, CopyOptions};
//! use pgdog::router::sharding::{shard_of, DataType, KeyValue};
//!
//! let key = CopyKey { column: 0, data_type: DataType::Bigint };
//! let mut splitter = CopySplitter::new(CopyOptions::defaults(CopyFormat::Text), Some(key));
//! let mut shards = vec![Vec::new(); 2];
//! let mut route = |piece: CopyPiece<'_>| {
//!     match piece {
//!         CopyPiece::All(bytes) => shards.iter_mut().for_each(|s| s.extend_from_slice(bytes)),
//!         CopyPiece::Row { key: Some(key), bytes } => shards[shard_of(&key, 2)].extend_from_slice(bytes),
//!         CopyPiece::Row { key: None, bytes } => shards[0].extend_from_slice(bytes),
//!     }
//!     Ok(())
//! };
//! splitter.feed(b"1\tone\n2\tt", &mut route)?;
//! splitter.feed(b"wo\n", &mut route)?;
//! splitter.finish(&mut route)?;
//! assert_eq!(splitter.rows(), 2);
//! assert_eq!(shards[shard_of(&KeyValue::Int(2), 2)].ends_with(b"2\ttwo\n"), true);
//! # Ok::<(), pgdog::net::ErrorResponse>(())
//! ```
//!
//! Not supported: a lone carriage return as line terminator (PostgreSQL accepts it if the
//! first line uses it; here it is an error), and the `FORCE_NULL`/`FORCE_NOT_NULL` options
//! (a quoted NULL string is never a NULL key).

mod binary;
mod csv;
mod error;
mod line;
mod out;
mod splitter;
mod text;

#[cfg(test)]
mod postgres_tests;
#[cfg(test)]
mod tests;

pub use out::CopyOutJoiner;
pub use splitter::{CopySplitter, Sink};

use crate::router::sharding::{DataType, KeyValue};

/// Where the sharding key is in each row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyKey {
    /// 0-based position in the COPY's column list.
    pub column: usize,
    /// The key's type.
    pub data_type: DataType,
}

/// What the splitter found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyPiece<'a> {
    /// Bytes every shard's stream needs (binary signature and header, the binary trailer,
    /// the text/CSV header line).
    All(&'a [u8]),
    /// One complete row, exactly as it must be sent to its shard's COPY stream (with its line
    /// terminator; a binary tuple with its field count), with its key. `None`: a NULL key, or
    /// no key column configured; the executor decides (e.g. every shard for omnisharded
    /// tables).
    Row {
        /// The sharding key.
        key: Option<KeyValue<'a>>,
        /// The row's bytes.
        bytes: &'a [u8],
    },
}
