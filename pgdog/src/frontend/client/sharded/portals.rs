//! Portals of cross-shard statements fetched in pieces (`Execute` with a row limit, e.g. JDBC's
//! fetch size): the shards' answers are merged once, and pgdog hands the rows out batch by
//! batch with PortalSuspended in between, like Postgres does with its own portals.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::Client;
use crate::net::frame::Reader;
use crate::net::{messages, Frame};

/// The rows of a merged portal not sent yet.
pub(in crate::frontend::client) struct MergedPortal {
    rows: VecDeque<Bytes>,
    /// The statement's CommandComplete tag when it is not a SELECT's row count.
    tag: Option<String>,
}

/// The portal name and row limit of an Execute (0: no limit).
pub(super) fn execute_target(frame: &Frame) -> Option<(String, i32)> {
    let mut reader = Reader::new(frame.body());
    let portal = reader.cstr().ok()?.to_string();
    let max_rows = reader.i32().ok()?;
    Some((portal, max_rows))
}

impl Client {
    /// Sends merged `rows` for an Execute of `portal` limited to `max_rows` (0: all), keeping
    /// the rest for the next Execute of that portal.
    pub(super) fn send_portal_rows(
        &mut self,
        portal: &str,
        max_rows: i32,
        rows: BytesMut,
        tag: Option<String>,
    ) {
        let mut all = VecDeque::new();
        let mut rest = rows;
        while let Ok(Some(frame)) = Frame::take(&mut rest, usize::MAX) {
            all.push_back(frame.bytes);
        }
        let tag = tag.filter(|t| !t.starts_with("SELECT"));
        let portal_rows = MergedPortal { rows: all, tag };
        self.continue_portal(portal.to_string(), max_rows, portal_rows);
    }

    /// Whether `portal` is a merged portal pgdog keeps; if so, the next batch is sent.
    pub(super) fn fetch_merged_portal(&mut self, portal: &str, max_rows: i32) -> bool {
        match self.sharded.portals.remove(portal) {
            Some(rows) => {
                self.continue_portal(portal.to_string(), max_rows, rows);
                true
            }
            None => false,
        }
    }

    /// Sends up to `max_rows` rows (0: all). Like Postgres, a batch that fills the limit
    /// suspends the portal (even when no row is left); a shorter one completes it with the
    /// number of rows it sent.
    fn continue_portal(&mut self, portal: String, max_rows: i32, mut rows: MergedPortal) {
        let limit = if max_rows > 0 {
            max_rows as usize
        } else {
            usize::MAX
        };
        let mut sent = 0;
        while sent < limit {
            let Some(row) = rows.rows.pop_front() else {
                break;
            };
            self.out.extend_from_slice(&row);
            sent += 1;
        }
        if sent == limit {
            self.out.extend_from_slice(&messages::portal_suspended());
            self.sharded.portals.insert(portal, rows);
            return;
        }
        let tag = rows.tag.unwrap_or_else(|| format!("SELECT {sent}"));
        self.out
            .extend_from_slice(&messages::command_complete(&tag));
    }
}
