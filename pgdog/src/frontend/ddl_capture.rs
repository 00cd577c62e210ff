//! Puts the DDL a client runs through pgdog on a database being moved (a replication stream
//! reads from it) into the WAL, where the stream finds it in order with the data changes.
//!
//! The client loop shows every message it sends to the server to [`DdlCapture::outgoing`].
//! A request (a simple query, an extended-protocol group up to Sync) that ran DDL
//! ([`crate::router::ddl`]) on such a database is awaited: the client's next messages are held
//! until it is answered. When its ReadyForQuery arrives and nothing failed,
//! [`DdlCapture::incoming`] runs `pg_logical_emit_message` on the same server connection
//! before the client sees that ReadyForQuery: inside the client's transaction when one is open
//! (tried under a savepoint first, so a failure cannot abort it), else as its own transaction.
//! pgdog's statement answers nothing to the client; a failure only logs a warning.
//!
//! Non-DDL traffic costs a byte scan of each query ([`ddl::may_contain_ddl`]); whether a stream
//! reads the database is asked only once a request ran DDL.
//!
//! Limits: the message follows the whole request, so outside a transaction block the other
//! statements of the same request (a multi-statement query, an extended-protocol group) commit
//! before it; queries a database with several shards routes through the sharded executor are
//! not captured.

use std::collections::HashMap;
use std::time::Duration;

use bytes::BytesMut;
use tracing::{debug, warn};

use crate::backend::server::Server;
use crate::net::frame::Reader;
use crate::net::messages::{self, Parse, Target};
use crate::net::{self, ErrorResponse, Frame};
use crate::router::ddl::{self, TempRelations};

/// At most this many DDL statements and portals are remembered per client.
const MAX_TRACKED: usize = 256;
/// How long pgdog's statement may take before the server connection is given up.
const EMIT_TIMEOUT: Duration = Duration::from_secs(60);
/// The savepoint around the message inside a client's transaction.
const SAVEPOINT: &str = "pgdog_ddl";

/// Why the DDL could not be written to the WAL.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    /// Writing to or reading from the server failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The server sent bytes that are not valid protocol.
    #[error(transparent)]
    Protocol(#[from] net::Error),
    /// The server closed the connection.
    #[error("the server closed the connection")]
    Closed,
    /// No answer in time; the connection is given up.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The server refused the statement.
    #[error("{0}")]
    Server(ErrorResponse),
}

/// One client's DDL capture state.
#[derive(Debug, Default)]
pub struct DdlCapture {
    /// DDL text of the client's prepared statements that hold DDL, by statement name.
    statements: HashMap<String, String>,
    /// DDL text of the bound portals of those statements, by portal name.
    portals: HashMap<String, String>,
    /// DDL run by the request being sent.
    request: Vec<String>,
    /// The DDL of the request whose answer is awaited.
    awaiting: Option<String>,
    /// An error or a rollback was seen in the awaited request's answer.
    failed: bool,
    /// Client messages that came after the awaited request.
    held: Vec<Frame>,
    /// The session's temporary relations.
    temp: TempRelations,
}

impl DdlCapture {
    /// A request that ran DDL is awaited: later client messages must be [`held`](Self::hold).
    pub fn is_awaiting(&self) -> bool {
        self.awaiting.is_some()
    }

    /// Notes a client message about to be sent to the server. True when it ends a request
    /// (Query, Sync, FunctionCall) that ran DDL and `is_source` says a stream reads the
    /// database: the request is then awaited.
    pub fn outgoing(&mut self, frame: &Frame, is_source: impl FnOnce() -> bool) -> bool {
        match frame.tag {
            b'Q' => {
                if ddl::may_contain_ddl(frame.body()) {
                    let body = frame.body();
                    let end = body.iter().position(|b| *b == 0).unwrap_or(body.len());
                    if let Ok(sql) = std::str::from_utf8(&body[..end]) {
                        let found = ddl::ddl_statements(sql, &mut self.temp);
                        self.request.extend(found);
                    }
                }
                self.end_request(is_source)
            }
            b'S' | b'F' => self.end_request(is_source),
            b'P' => {
                self.parse(frame);
                false
            }
            b'B' => {
                self.bind(frame);
                false
            }
            b'E' => {
                self.execute(frame);
                false
            }
            b'C' => {
                self.close(frame);
                false
            }
            _ => false,
        }
    }

    /// Keeps a client message until the awaited request is answered.
    pub fn hold(&mut self, frame: Frame) {
        self.held.push(frame);
    }

    /// The held client messages, once nothing is awaited any more.
    pub fn take_held(&mut self) -> Option<Vec<Frame>> {
        (!self.is_awaiting() && !self.held.is_empty()).then(|| std::mem::take(&mut self.held))
    }

    /// The server connection was lost: nothing is awaited any more.
    pub fn server_lost(&mut self) {
        self.awaiting = None;
        self.failed = false;
        self.request.clear();
    }

    /// Notes a server message forwarded to the client while a request is awaited (call after
    /// `server.pending` routed it, before the client gets it). At the awaited request's
    /// ReadyForQuery, when it did not fail, writes its DDL to the WAL on `server`;
    /// notifications arriving meanwhile go to `out`.
    pub async fn incoming(&mut self, frame: &Frame, server: &mut Server, out: &mut BytesMut) {
        match frame.tag {
            b'E' => self.failed = true,
            b'C' if messages::command_tag(frame).is_ok_and(|tag| tag == "ROLLBACK") => {
                self.failed = true
            }
            // The end of an earlier request of the same batch.
            b'Z' if !server.pending.is_empty() => self.failed = false,
            b'Z' => {
                let Some(text) = self.awaiting.take() else {
                    return;
                };
                let failed = std::mem::take(&mut self.failed);
                match messages::ready_status(frame) {
                    Ok(status @ (b'I' | b'T')) if !failed => {
                        emit(server, status == b'T', &text, out).await
                    }
                    _ => debug!("DDL not recorded: it failed or was rolled back"),
                }
            }
            _ => {}
        }
    }

    fn end_request(&mut self, is_source: impl FnOnce() -> bool) -> bool {
        if self.request.is_empty() {
            return false;
        }
        let statements = std::mem::take(&mut self.request);
        if !is_source() {
            return false;
        }
        self.awaiting = Some(ddl::join(&statements));
        self.failed = false;
        true
    }

    fn parse(&mut self, frame: &Frame) {
        let Ok(parse) = Parse::decode(frame) else {
            return;
        };
        let found = if ddl::may_contain_ddl(parse.query.as_bytes()) {
            ddl::ddl_statements(parse.query, &mut self.temp)
        } else {
            Vec::new()
        };
        if found.is_empty() {
            if !self.statements.is_empty() {
                self.statements.remove(parse.name);
            }
        } else {
            bounded_insert(&mut self.statements, parse.name, ddl::join(&found));
        }
    }

    fn bind(&mut self, frame: &Frame) {
        if self.statements.is_empty() && self.portals.is_empty() {
            return;
        }
        let mut reader = Reader::new(frame.body());
        let (Ok(portal), Ok(statement)) = (reader.cstr(), reader.cstr()) else {
            return;
        };
        match self.statements.get(statement) {
            Some(text) => {
                let text = text.clone();
                bounded_insert(&mut self.portals, portal, text);
            }
            None => {
                self.portals.remove(portal);
            }
        }
    }

    fn execute(&mut self, frame: &Frame) {
        if self.portals.is_empty() {
            return;
        }
        if let Ok(portal) = Reader::new(frame.body()).cstr() {
            if let Some(text) = self.portals.get(portal) {
                self.request.push(text.clone());
            }
        }
    }

    fn close(&mut self, frame: &Frame) {
        if self.statements.is_empty() && self.portals.is_empty() {
            return;
        }
        if let Ok(target) = Target::decode(frame) {
            match target.kind {
                b'S' => self.statements.remove(target.name),
                _ => self.portals.remove(target.name),
            };
        }
    }
}

/// Inserts, first forgetting everything when the map is full (statements a driver closed
/// without pgdog seeing it).
fn bounded_insert(map: &mut HashMap<String, String>, name: &str, text: String) {
    if map.len() >= MAX_TRACKED && !map.contains_key(name) {
        map.clear();
    }
    map.insert(name.to_string(), text);
}

/// Writes `text` to the WAL as a `pgdog_ddl` message on `server`. Failures are logged, never
/// reported to the client.
///
/// Inside the client's transaction (`in_transaction`) the message must neither abort it nor
/// land elsewhere than right after the DDL. Emitted under a savepoint it could not abort it,
/// but logical decoding may then order it after the transaction's next change (a message in a
/// subtransaction ties with the record after it). So it is tried under a savepoint that is
/// rolled back, and only once that worked emitted for real in the transaction itself.
async fn emit(server: &mut Server, in_transaction: bool, text: &str, out: &mut BytesMut) {
    let emit = ddl::emit_sql(text);
    let result = if in_transaction {
        let sql = format!(
            "SAVEPOINT {SAVEPOINT}; {emit}; ROLLBACK TO SAVEPOINT {SAVEPOINT}; \
             RELEASE SAVEPOINT {SAVEPOINT}; {emit}"
        );
        let result = run(server, &sql, out).await;
        if matches!(result, Err(EmitError::Server(_))) && server.status == b'E' {
            let undo = format!("ROLLBACK TO SAVEPOINT {SAVEPOINT}; RELEASE SAVEPOINT {SAVEPOINT}");
            if let Err(e) = run(server, &undo, out).await {
                warn!(
                    "could not roll back to savepoint {SAVEPOINT} on {}: {e}; the client's transaction is aborted",
                    server.addr()
                );
            }
        }
        result
    } else {
        run(server, &emit, out).await
    };
    match result {
        Ok(()) => debug!("recorded DDL for the replication stream: {text}"),
        Err(e) => warn!(
            "could not record DDL for the replication stream on {} (the destination will not get it): {e}",
            server.addr()
        ),
    }
}

/// Runs one simple query of pgdog's own on `server` and reads its answer up to ReadyForQuery;
/// only notifications go on to the client (`out`).
async fn run(server: &mut Server, sql: &str, out: &mut BytesMut) -> Result<(), EmitError> {
    let work = async {
        server.send(&messages::query(sql)).await?;
        let mut error = None;
        loop {
            while let Some(frame) = server.next_frame()? {
                match frame.tag {
                    b'E' => error = Some(ErrorResponse::parse(frame.body())?),
                    b'A' => out.extend_from_slice(&frame.bytes),
                    b'Z' => {
                        server.status = messages::ready_status(&frame)?;
                        return error.map_or(Ok(()), |e| Err(EmitError::Server(e)));
                    }
                    _ => {}
                }
            }
            if server.read().await? == 0 {
                return Err(EmitError::Closed);
            }
        }
    };
    match tokio::time::timeout(EMIT_TIMEOUT, work).await {
        Ok(result) => result,
        Err(_) => {
            server.broken = true;
            Err(EmitError::Timeout(EMIT_TIMEOUT))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::frame::put_cstr;

    fn frame(bytes: bytes::Bytes) -> Frame {
        Frame {
            tag: bytes[0],
            bytes,
        }
    }

    fn query(sql: &str) -> Frame {
        frame(messages::query(sql))
    }

    fn parse(name: &str, sql: &str) -> Frame {
        frame(messages::parse_message(name, sql, &[0, 0]))
    }

    fn bind(portal: &str, statement: &str) -> Frame {
        let mut body = BytesMut::new();
        put_cstr(&mut body, portal);
        put_cstr(&mut body, statement);
        body.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        Frame::new(b'B', &body)
    }

    fn execute(portal: &str) -> Frame {
        frame(messages::execute(portal))
    }

    fn sync() -> Frame {
        frame(messages::sync())
    }

    fn never() -> bool {
        panic!("is_source must only be asked about DDL")
    }

    #[test]
    fn simple_queries() {
        let mut capture = DdlCapture::default();
        assert!(!capture.outgoing(&query("SELECT 1"), never));
        assert!(!capture.outgoing(&query("INSERT INTO t VALUES (1); SELECT 2"), never));
        assert!(!capture.is_awaiting());
        // DDL on a database no stream reads: nothing awaited.
        assert!(!capture.outgoing(&query("CREATE TABLE t (id int)"), || false));
        assert!(!capture.is_awaiting());
        assert!(capture.outgoing(
            &query("CREATE INDEX i ON t (id); INSERT INTO t VALUES (1)"),
            || true
        ));
        assert_eq!(
            capture.awaiting.as_deref(),
            Some("CREATE INDEX i ON t (id)")
        );
        capture.hold(query("SELECT 3"));
        assert!(capture.take_held().is_none(), "held while awaited");
        capture.server_lost();
        assert_eq!(capture.take_held().map(|h| h.len()), Some(1));
        assert!(capture.take_held().is_none());
    }

    #[test]
    fn extended_protocol_in_one_group() {
        let mut capture = DdlCapture::default();
        assert!(!capture.outgoing(&parse("", "ALTER TABLE t ADD c int"), never));
        assert!(!capture.outgoing(&bind("", ""), never));
        assert!(!capture.outgoing(&execute(""), never));
        assert!(capture.outgoing(&sync(), || true));
        assert_eq!(capture.awaiting.as_deref(), Some("ALTER TABLE t ADD c int"));
        // The unnamed statement replaced by a plain one: no longer DDL.
        capture.server_lost();
        for f in [parse("", "SELECT 1"), bind("", ""), execute("")] {
            assert!(!capture.outgoing(&f, never));
        }
        assert!(!capture.outgoing(&sync(), never));
    }

    #[test]
    fn extended_protocol_prepared_then_executed() {
        let mut capture = DdlCapture::default();
        // Prepared (Parse, Describe, Sync): nothing ran.
        assert!(!capture.outgoing(&parse("s0", "DROP TABLE t"), never));
        assert!(!capture.outgoing(&frame(messages::describe_portal("")), never));
        assert!(!capture.outgoing(&sync(), never));
        // Executed in a later group.
        assert!(!capture.outgoing(&bind("", "s0"), never));
        assert!(!capture.outgoing(&execute(""), never));
        assert!(capture.outgoing(&sync(), || true));
        assert_eq!(capture.awaiting.as_deref(), Some("DROP TABLE t"));
        capture.server_lost();
        // Closed: a later statement with that name is not DDL.
        assert!(!capture.outgoing(&frame(messages::close_statement("s0")), never));
        assert!(capture.statements.is_empty());
        assert!(!capture.outgoing(&bind("p", "s0"), never));
        assert!(!capture.outgoing(&execute("p"), never));
        assert!(!capture.outgoing(&sync(), never));
    }

    #[test]
    fn tracked_statements_are_bounded() {
        let mut capture = DdlCapture::default();
        for i in 0..MAX_TRACKED * 2 {
            capture.outgoing(&parse(&format!("s{i}"), "CREATE TABLE t (id int)"), never);
        }
        assert!(capture.statements.len() <= MAX_TRACKED);
    }
}
