//! Matching server responses to what was sent. pgdog rewrites a client's extended-protocol
//! stream (it injects `Parse`s for statements the server lacks, answers some messages itself and
//! runs its own `SET`s), so each response must be routed: forwarded, swallowed, or preceded by a
//! reply pgdog makes up. The queue of `Expect`s, one per message sent, says which.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::prepared::{ServerStatements, Statement};
use crate::net::{messages, Frame};

/// What a message sent to the server (or answered by pgdog) expects back.
#[derive(Debug, Clone)]
pub enum Expect {
    /// The client's `Parse` (of a global statement, in transaction mode): forward ParseComplete.
    Parse(Option<Arc<Statement>>),
    /// A `Parse` pgdog injected for a statement the server lacked: swallow its ParseComplete.
    InjectedParse(Arc<Statement>),
    /// A `Close` pgdog sent to evict a statement: swallow its CloseComplete.
    InjectedClose(Arc<str>),
    /// A reply pgdog gives itself (ParseComplete / CloseComplete) at this point of the stream.
    Synthetic(Bytes),
    /// `Bind`: BindComplete.
    Bind,
    /// `Describe`: `[ParameterDescription]` + RowDescription or NoData. Carries the global
    /// statement described, whose parameter types the ParameterDescription pins.
    Describe(Option<Arc<Statement>>),
    /// `Execute`: rows, then CommandComplete / EmptyQueryResponse / PortalSuspended.
    Execute,
    /// `Close` of a portal: CloseComplete.
    Close,
    /// `Sync`: ReadyForQuery.
    Sync,
    /// The client's simple `Query`: everything until ReadyForQuery.
    Query,
    /// pgdog's own simple query (session sync, cleanup): swallow everything until ReadyForQuery.
    Internal,
}

impl Expect {
    fn ends_with_ready(&self) -> bool {
        matches!(self, Expect::Sync | Expect::Query | Expect::Internal)
    }
}

/// What to do with one server message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Send it to the client.
    Forward,
    /// Drop it: it answers something pgdog sent on its own.
    Swallow,
}

/// The responses in flight on one server connection.
#[derive(Debug, Default)]
pub struct Pending {
    queue: VecDeque<Expect>,
}

impl Pending {
    /// Records a message sent (or answered by pgdog).
    pub fn push(&mut self, expect: Expect) {
        self.queue.push_back(expect);
    }

    /// Nothing in flight.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Forgets everything (the connection is being discarded).
    pub fn clear(&mut self) {
        self.queue.clear();
    }

    /// Writes the replies pgdog owes the client that are now at the head of the stream.
    pub fn drain_synthetic(&mut self, out: &mut BytesMut) {
        while let Some(Expect::Synthetic(bytes)) = self.queue.front() {
            out.extend_from_slice(bytes);
            self.queue.pop_front();
        }
    }

    /// Routes one server message and updates the queue. `prepared` learns which injected
    /// statements now exist on the server (or never will, after an error).
    pub fn route(&mut self, frame: &Frame, prepared: &mut ServerStatements) -> Route {
        let internal = matches!(self.queue.front(), Some(Expect::Internal));
        let route = if internal {
            Route::Swallow
        } else {
            Route::Forward
        };
        match frame.tag {
            // ParseComplete
            b'1' => match self.queue.pop_front() {
                Some(Expect::InjectedParse(statement)) => {
                    statement.set_validated();
                    prepared.set_ready(&statement.name);
                    Route::Swallow
                }
                Some(Expect::Parse(Some(statement))) => {
                    statement.set_validated();
                    prepared.set_ready(&statement.name);
                    route
                }
                _ => route,
            },
            b'3' if matches!(self.queue.front(), Some(Expect::InjectedClose(_))) => {
                self.queue.pop_front();
                Route::Swallow
            }
            // BindComplete, CloseComplete, NoData, RowDescription outside a simple query.
            b'2' | b'3' | b'n' => {
                self.pop_unless_query();
                route
            }
            // ParameterDescription of a described global statement: what the client now believes.
            b't' => {
                if let Some(Expect::Describe(Some(statement))) = self.queue.front() {
                    statement.pin_described(frame);
                }
                route
            }
            b'T' => {
                if matches!(self.queue.front(), Some(Expect::Describe(_))) {
                    self.queue.pop_front();
                }
                route
            }
            // CommandComplete, EmptyQueryResponse, PortalSuspended end an Execute.
            b'C' | b'I' | b's' => {
                if matches!(self.queue.front(), Some(Expect::Execute)) {
                    self.queue.pop_front();
                }
                route
            }
            b'E' => {
                // The server skips everything up to the next Sync after an error in the
                // extended protocol; a simple query still ends with ReadyForQuery.
                while let Some(front) = self.queue.front() {
                    if front.ends_with_ready() {
                        break;
                    }
                    match self.queue.pop_front() {
                        Some(Expect::InjectedParse(statement) | Expect::Parse(Some(statement))) => {
                            prepared.forget_pending(&statement.name);
                        }
                        // The server skipped our Close: the statement is still there.
                        Some(Expect::InjectedClose(name)) => prepared.restore(name),
                        _ => {}
                    }
                }
                route
            }
            b'Z' => {
                while let Some(front) = self.queue.pop_front() {
                    if front.ends_with_ready() {
                        break;
                    }
                }
                route
            }
            // DataRow, COPY, notices, notifications, ParameterStatus.
            _ => route,
        }
    }

    /// A COPY FROM STDIN started by an `Execute` (CopyInResponse arrived): the server ignores
    /// every Sync it reads in copy-in mode, so the Syncs queued behind that Execute get no reply.
    pub fn copy_in_started(&mut self) {
        if matches!(self.queue.front(), Some(Expect::Execute)) {
            let mut first = true;
            self.queue.retain(|e| {
                let keep = first || !matches!(e, Expect::Sync);
                first = false;
                keep
            });
        }
    }

    fn pop_unless_query(&mut self) {
        if !matches!(
            self.queue.front(),
            Some(Expect::Query) | Some(Expect::Internal) | None
        ) {
            self.queue.pop_front();
        }
    }
}

/// A ParseComplete pgdog sends for a statement the server already has.
pub fn synthetic_parse_complete() -> Expect {
    Expect::Synthetic(messages::parse_complete())
}

/// A CloseComplete pgdog sends for a client's Close of a prepared statement.
pub fn synthetic_close_complete() -> Expect {
    Expect::Synthetic(messages::close_complete())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::prepared::Prepared;

    fn statement(name: &str) -> Arc<Statement> {
        let cache = crate::backend::prepared::PreparedStatements::default();
        let body = format!("{name}\0select 1\0\0\0");
        let frame = Frame::new(b'P', body.as_bytes());
        cache.statement(&crate::net::messages::Parse::decode(&frame).unwrap())
    }

    fn f(tag: u8) -> Frame {
        Frame::new(tag, if tag == b'Z' { b"I" } else { b"" })
    }

    #[test]
    fn injected_parse_is_swallowed_and_marked_ready() {
        let mut p = Pending::default();
        let mut prepared = ServerStatements::new(100);
        let stmt = statement("s1");
        let name = stmt.name.clone();
        prepared.insert(name.clone());
        for e in [
            Expect::InjectedParse(stmt.clone()),
            Expect::Bind,
            Expect::Execute,
            Expect::Sync,
        ] {
            p.push(e);
        }
        assert_eq!(p.route(&f(b'1'), &mut prepared), Route::Swallow);
        assert_eq!(prepared.state(&name), Some(Prepared::Ready));
        assert!(stmt.is_validated());
        for tag in [b'2', b'D', b'C', b'Z'] {
            assert_eq!(p.route(&f(tag), &mut prepared), Route::Forward);
        }
        assert!(p.is_empty());
    }

    #[test]
    fn synthetic_replies_come_out_in_order() {
        let mut p = Pending::default();
        let mut prepared = ServerStatements::new(100);
        p.push(Expect::Execute);
        p.push(synthetic_parse_complete());
        p.push(Expect::Bind);
        let mut out = BytesMut::new();
        p.drain_synthetic(&mut out);
        assert!(out.is_empty());
        assert_eq!(p.route(&f(b'C'), &mut prepared), Route::Forward);
        p.drain_synthetic(&mut out);
        assert_eq!(&out[..], &messages::parse_complete()[..]);
    }

    #[test]
    fn error_skips_to_sync_and_forgets_pending_statements() {
        let mut p = Pending::default();
        let mut prepared = ServerStatements::new(100);
        let stmt = statement("s2");
        let name = stmt.name.clone();
        prepared.insert(name.clone());
        p.push(Expect::Bind);
        p.push(Expect::InjectedParse(stmt.clone()));
        p.push(synthetic_parse_complete());
        p.push(Expect::Sync);
        assert_eq!(p.route(&f(b'E'), &mut prepared), Route::Forward);
        assert_eq!(prepared.state(&name), None);
        assert_eq!(p.route(&f(b'Z'), &mut prepared), Route::Forward);
        assert!(p.is_empty());
    }

    #[test]
    fn syncs_sent_into_copy_in_get_no_reply() {
        let mut p = Pending::default();
        let mut prepared = ServerStatements::new(100);
        for e in [Expect::Bind, Expect::Execute, Expect::Sync] {
            p.push(e);
        }
        p.route(&f(b'2'), &mut prepared);
        p.copy_in_started();
        p.push(Expect::Sync); // after CopyDone
        assert_eq!(p.route(&f(b'C'), &mut prepared), Route::Forward);
        assert_eq!(p.route(&f(b'Z'), &mut prepared), Route::Forward);
        assert!(p.is_empty());
    }

    #[test]
    fn internal_query_is_swallowed() {
        let mut p = Pending::default();
        let mut prepared = ServerStatements::new(100);
        p.push(Expect::Internal);
        p.push(Expect::Query);
        for tag in [b'S', b'C', b'Z'] {
            assert_eq!(p.route(&f(tag), &mut prepared), Route::Swallow);
        }
        for tag in [b'T', b'D', b'C', b'Z'] {
            assert_eq!(p.route(&f(tag), &mut prepared), Route::Forward);
        }
    }

    #[test]
    fn parameter_description_pins_the_described_statement() {
        let mut p = Pending::default();
        let mut prepared = ServerStatements::new(100);
        let stmt = statement("s3");
        let other = statement("s4");
        for e in [
            Expect::Describe(Some(stmt.clone())),
            Expect::Describe(None),
            Expect::Sync,
        ] {
            p.push(e);
        }
        // int8 for $1.
        let t = Frame::new(b't', b"\0\x01\0\0\0\x14");
        assert_eq!(p.route(&t, &mut prepared), Route::Forward);
        assert_eq!(p.route(&f(b'n'), &mut prepared), Route::Forward);
        let pinned = Frame {
            tag: b'P',
            bytes: stmt.server_parse().clone(),
        };
        let parse = crate::net::messages::Parse::decode(&pinned).unwrap();
        assert_eq!(parse.param_types, b"\0\x01\0\0\0\x14");
        assert_eq!(parse.name, &*stmt.name);
        // A Describe of a portal (or unnamed statement) pins nothing.
        assert_eq!(p.route(&t, &mut prepared), Route::Forward);
        assert_eq!(p.route(&f(b'T'), &mut prepared), Route::Forward);
        assert_eq!(other.server_parse(), &other.parse);
        assert_eq!(p.route(&f(b'Z'), &mut prepared), Route::Forward);
        assert!(p.is_empty());
    }
}
