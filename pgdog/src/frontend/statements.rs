//! A client's named prepared statements in transaction mode: its statement names mapped to
//! pgdog's global statements, the rewriting of Parse, Bind, Describe and Close for whichever
//! server it holds, and the batches that can be answered without a server at all.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::BytesMut;

use crate::backend::expect::{synthetic_close_complete, synthetic_parse_complete, Expect};
use crate::backend::prepared::{PreparedStatements, Statement};
use crate::backend::server::Server;
use crate::frontend::session;
use crate::net::messages::{self, Parse, Target};
use crate::net::{Error, Frame};

/// One client's statement names.
#[derive(Default)]
pub struct ClientStatements {
    names: HashMap<String, Arc<Statement>>,
}

impl ClientStatements {
    /// A named `Parse`: maps the name to the global statement and prepares that on `server`
    /// unless it is there already (then pgdog answers ParseComplete itself).
    pub fn parse(
        &mut self,
        parse: &Parse<'_>,
        cache: &PreparedStatements,
        server: &mut Server,
        to_server: &mut BytesMut,
    ) {
        let statement = cache.statement(parse);
        self.names.insert(parse.name.to_string(), statement.clone());
        if server.prepared.contains(&statement.name) {
            server.pending.push(synthetic_parse_complete());
        } else {
            record_parse(server, &statement, to_server);
            to_server.extend_from_slice(statement.server_parse());
            server.pending.push(Expect::Parse(Some(statement)));
        }
    }

    /// A named `Parse` pgdog answers itself (the sharded executor): the name maps to the
    /// global statement, which servers prepare when they first need it.
    pub fn register(&mut self, parse: &Parse<'_>, cache: &PreparedStatements) -> Arc<Statement> {
        let statement = cache.statement(parse);
        self.names.insert(parse.name.to_string(), statement.clone());
        statement
    }

    /// The statement a client name refers to.
    pub fn get(&self, name: &str) -> Option<&Arc<Statement>> {
        self.names.get(name)
    }

    /// How many named statements the client has.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the client has no named statements.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// A `Bind`: refers to the global statement, prepared on `server` first if needed.
    pub fn bind(
        &self,
        frame: &Frame,
        server: &mut Server,
        to_server: &mut BytesMut,
    ) -> Result<(), Error> {
        match self.names.get(messages::bind_statement(frame)?) {
            Some(statement) => {
                prepare_on_server(server, statement, to_server);
                to_server.extend_from_slice(&messages::bind_renamed(frame, &statement.name)?);
            }
            // Unknown names go through as they are: the server answers 26000 like Postgres.
            None => to_server.extend_from_slice(&frame.bytes),
        }
        server.pending.push(Expect::Bind);
        Ok(())
    }

    /// A `Describe`: statements are described under their global name (the server's answer pins
    /// their parameter types).
    pub fn describe(
        &self,
        frame: &Frame,
        server: &mut Server,
        to_server: &mut BytesMut,
    ) -> Result<(), Error> {
        let target = Target::decode(frame)?;
        match self
            .names
            .get(target.name)
            .filter(|_| target.is_named_statement())
        {
            Some(statement) => {
                prepare_on_server(server, statement, to_server);
                to_server.extend_from_slice(&target.renamed(b'D', &statement.name));
                server
                    .pending
                    .push(Expect::Describe(Some(statement.clone())));
            }
            None => {
                to_server.extend_from_slice(&frame.bytes);
                server.pending.push(Expect::Describe(None));
            }
        }
        Ok(())
    }

    /// A `Close`: a named statement is forgotten by this client only (it stays prepared on the
    /// server for others); portals are closed on the server.
    pub fn close(
        &mut self,
        frame: &Frame,
        server: &mut Server,
        to_server: &mut BytesMut,
    ) -> Result<(), Error> {
        let target = Target::decode(frame)?;
        if target.is_named_statement() {
            self.names.remove(target.name);
            server.pending.push(synthetic_close_complete());
        } else {
            server.pending.push(Expect::Close);
            to_server.extend_from_slice(&frame.bytes);
        }
        Ok(())
    }

    /// Forgets every name (the client ran DISCARD ALL or DEALLOCATE ALL).
    pub fn clear(&mut self) {
        self.names.clear();
    }

    /// Outside a transaction, a batch that only prepares statements some server already
    /// accepted, closes statements, flushes and syncs needs no server: the replies are written to
    /// `out` and true is returned. Besides saving a round trip, this keeps clients that prepare
    /// synchronously (pgbench -M prepared) from waiting on a pool whose servers are held by their
    /// own idle-in-transaction siblings.
    pub fn answer_without_server(
        &mut self,
        frames: &[Frame],
        cache: &PreparedStatements,
        out: &mut BytesMut,
    ) -> bool {
        let mut replies = Vec::with_capacity(frames.len());
        for frame in frames {
            let reply = match frame.tag {
                b'P' => match Parse::decode(frame) {
                    Ok(parse)
                        if !parse.name.is_empty()
                            && session::changes(parse.query.as_bytes()).is_empty() =>
                    {
                        let statement = cache.statement(&parse);
                        if !statement.is_validated() {
                            return false;
                        }
                        Reply::Parsed(parse.name.to_string(), statement)
                    }
                    _ => return false,
                },
                b'C' => match Target::decode(frame) {
                    Ok(target) if target.is_named_statement() => {
                        Reply::Closed(target.name.to_string())
                    }
                    _ => return false,
                },
                b'S' => Reply::Ready,
                b'H' => continue,
                _ => return false,
            };
            replies.push(reply);
        }
        for reply in replies {
            match reply {
                Reply::Parsed(name, statement) => {
                    self.names.insert(name, statement);
                    out.extend_from_slice(&messages::parse_complete());
                }
                Reply::Closed(name) => {
                    self.names.remove(&name);
                    out.extend_from_slice(&messages::close_complete());
                }
                Reply::Ready => out.extend_from_slice(&messages::ready_for_query(b'I')),
            }
        }
        true
    }
}

/// A reply pgdog gives without a server, in the order of the client's messages.
enum Reply {
    Parsed(String, Arc<Statement>),
    Closed(String),
    Ready,
}

/// Makes sure `statement` exists on `server`, injecting its Parse (with the pinned parameter
/// types, if any) ahead of the message using it.
fn prepare_on_server(server: &mut Server, statement: &Arc<Statement>, to_server: &mut BytesMut) {
    if !server.prepared.contains(&statement.name) {
        record_parse(server, statement, to_server);
        server
            .pending
            .push(Expect::InjectedParse(statement.clone()));
        to_server.extend_from_slice(statement.server_parse());
    }
}

/// Records that `statement` is being prepared on `server`; if that evicts the least recently
/// used statement, closes it on the server first (its CloseComplete is swallowed).
fn record_parse(server: &mut Server, statement: &Statement, to_server: &mut BytesMut) {
    if let Some(evicted) = server.prepared.insert(statement.name.clone()) {
        to_server.extend_from_slice(&messages::close_statement(&evicted));
        server.pending.push(Expect::InjectedClose(evicted));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_frame(name: &str, sql: &str) -> Frame {
        Frame::new(b'P', format!("{name}\0{sql}\0\0\0").as_bytes())
    }

    fn tags(out: &BytesMut) -> String {
        let mut buf = out.clone();
        let mut tags = String::new();
        while let Ok(Some(frame)) = Frame::take(&mut buf, crate::net::MAX_MESSAGE_LEN) {
            tags.push(frame.tag as char);
        }
        tags
    }

    #[test]
    fn answers_validated_parses_in_message_order() {
        let cache = PreparedStatements::default();
        let mut statements = ClientStatements::default();
        let mut out = BytesMut::new();
        let sync = Frame::new(b'S', &[]);
        let batch = [parse_frame("s1", "select 1"), sync.clone()];
        // Unknown to every server: needs one.
        assert!(!statements.answer_without_server(&batch, &cache, &mut out));
        let frame = parse_frame("x", "select 1");
        cache
            .statement(&Parse::decode(&frame).unwrap())
            .set_validated();
        let close = Frame::new(b'C', b"Ss1\0");
        let batch = [parse_frame("s1", "select 1"), sync.clone(), close, sync];
        assert!(statements.answer_without_server(&batch, &cache, &mut out));
        assert_eq!(tags(&out), "1Z3Z");
        assert!(statements.names.is_empty());
        // Anything that needs a server (here Bind) keeps the whole batch for the server.
        let bind = Frame::new(b'B', b"\0s1\0\0\0\0\0\0\0");
        let mut out = BytesMut::new();
        assert!(!statements.answer_without_server(
            &[parse_frame("s1", "select 1"), bind],
            &cache,
            &mut out
        ));
        assert!(out.is_empty());
    }
}
