//! The source end of a stream: a walsender session (`replication=database`) streaming the
//! slot's changes with pgoutput, and the status updates that tell the source what is applied.

use std::time::Duration;

use super::pgoutput::{Decoder, Message};
use super::wal::{self, Lsn, ReplicationMessage};
use super::StreamError;
use crate::backend::server::ServerAddress;
use crate::quote;
use crate::reshard::conn::Conn;

/// Session settings that make the text form of values the same on the source (where pgoutput
/// prints them) and on the shards (where they are read back and compared).
pub const VALUE_SETTINGS: &str = "SET DateStyle = 'ISO, MDY'; SET IntervalStyle = 'postgres'; \
    SET TimeZone = 'UTC'; SET extra_float_digits = 3; SET bytea_output = 'hex'";

/// What the stream hands to the applier.
#[derive(Debug)]
pub enum Received {
    /// A decoded change message, its WAL position and size.
    Change {
        /// The message.
        message: Message,
        /// Its WAL position.
        lsn: Lsn,
        /// Its size in bytes.
        bytes: usize,
    },
    /// A keepalive: the source sent everything up to `end`.
    Keepalive {
        /// The source's WAL end.
        end: Lsn,
        /// The source wants a status update now.
        reply: bool,
    },
}

/// A started replication stream.
pub struct Source {
    conn: Conn,
    decoder: Decoder,
}

impl Source {
    /// Connects and starts streaming `slot` from its confirmed position, for `publication`.
    pub async fn start(
        addr: &ServerAddress,
        timeout: Duration,
        slot: &str,
        publication: &str,
    ) -> Result<Source, StreamError> {
        let mut conn = Conn::connect_replication(addr, timeout).await?;
        conn.execute(VALUE_SETTINGS).await?;
        // 0/0: the server starts at the slot's confirmed_flush_lsn; every shard skips what it
        // already has.
        let start = format!(
            "START_REPLICATION SLOT {} LOGICAL 0/0 (proto_version '2', messages 'true', publication_names {})",
            quote::ident(slot),
            quote::literal(&quote::ident(publication))
        );
        conn.copy_both_start(&start).await?;
        Ok(Source {
            conn,
            decoder: Decoder::new(),
        })
    }

    /// The next message (cancel-safe: dropping the future loses nothing).
    pub async fn next(&mut self) -> Result<Received, StreamError> {
        let Some(frame) = self.conn.copy_out_next().await? else {
            return Err(StreamError::Protocol(
                "the source ended the replication stream".into(),
            ));
        };
        let payload = bytes::Bytes::copy_from_slice(frame.body());
        match wal::parse(&payload)? {
            ReplicationMessage::XLogData { start, data, .. } => {
                let bytes = data.len();
                let message = self.decoder.decode(&data)?;
                Ok(Received::Change {
                    message,
                    lsn: start,
                    bytes,
                })
            }
            ReplicationMessage::Keepalive {
                end,
                reply_requested,
                ..
            } => Ok(Received::Keepalive {
                end,
                reply: reply_requested,
            }),
        }
    }

    /// Tells the source that everything up to `flushed` is applied on every shard (it may
    /// recycle the WAL before it) and that `received` arrived.
    pub async fn feedback(&mut self, received: Lsn, flushed: Lsn) -> Result<(), StreamError> {
        let update = wal::status_update(
            received.max(flushed),
            flushed,
            flushed,
            wal::pg_now(),
            false,
        );
        self.conn.copy_in_data(&update).await?;
        Ok(())
    }

    /// Ends the stream.
    pub async fn close(self) {
        self.conn.close().await;
    }
}
