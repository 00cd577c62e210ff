//! The admin database's side of the wire protocol: one logged-in operator connection, from
//! the first message after ReadyForQuery until it leaves. It owns the connection's prepared
//! statements and portals, answers simple queries (several commands per query) and the
//! extended protocol (Parse, Bind, Describe, Execute, Sync, Close, Flush) the way Postgres
//! does, and leaves at shutdown. Commands run through [`super::execute`]; results are encoded
//! by [`super::wire`].

use std::collections::HashMap;
use std::sync::Arc;

use bytes::BytesMut;
use pgdog_admin::{Command, ParseError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::debug;

use super::wire::{self, Format};
use super::{execute, Reply};
use crate::net::frame::Reader;
use crate::net::messages::{self, Parse, Target};
use crate::net::stream::Stream;
use crate::net::{sqlstate, Error, ErrorResponse, Frame};
use crate::state::PoolerState;

/// Largest message accepted from an admin client: commands are short, and a bigger message
/// is a client bug (it gets a FATAL 08P01).
const MAX_ADMIN_MESSAGE_LEN: usize = 1024 * 1024;
/// Output is written once this much is buffered, even before a Sync.
const FLUSH_AT: usize = 64 * 1024;
/// `invalid_sql_statement_name`: Bind or Describe of an unknown prepared statement.
const INVALID_SQL_STATEMENT_NAME: &str = "26000";
/// `invalid_cursor_name`: Describe or Execute of an unknown portal.
const INVALID_CURSOR_NAME: &str = "34000";
/// `duplicate_prepared_statement`: Parse of a statement name in use.
const DUPLICATE_PREPARED_STATEMENT: &str = "42P05";
/// `duplicate_cursor`: Bind to a portal name in use.
const DUPLICATE_CURSOR: &str = "42P03";

/// Serves a logged-in admin client until it disconnects, sends something invalid (FATAL
/// 08P01) or pgdog shuts down (FATAL 57P01). `buf` holds bytes already read after startup.
pub async fn serve(stream: Stream, buf: BytesMut, state: Arc<PoolerState>) {
    let mut session = Session {
        stream,
        buf,
        out: BytesMut::with_capacity(8 * 1024),
        state,
        statements: HashMap::new(),
        portals: HashMap::new(),
        skip_until_sync: false,
        in_batch: false,
    };
    match session.run().await {
        Ok(()) => debug!("admin client left"),
        Err(e) => {
            debug!("admin client closed: {e}");
            session.out.extend_from_slice(&e.to_response().to_bytes());
        }
    }
    let _ = session.flush().await;
    let _ = session.stream.shutdown().await;
}

/// A prepared statement: the one command it holds (`None` for an empty query).
struct Statement {
    command: Option<Command>,
}

/// A bound statement, and its result once it ran (or was described).
struct Portal {
    command: Option<Command>,
    /// Result format codes from Bind, resolved when the columns are known.
    codes: Vec<i16>,
    output: Option<Output>,
}

/// A portal's result: kept so that Describe and every Execute see the same snapshot.
struct Output {
    reply: Reply,
    formats: Vec<Format>,
    /// Rows already sent by Execute.
    sent: usize,
}

impl Output {
    fn new(reply: Reply, codes: &[i16]) -> Result<Output, ErrorResponse> {
        let formats = match &reply {
            Reply::Table { table, .. } => wire::result_formats(codes, table.columns.len())?,
            Reply::Done(_) => Vec::new(),
        };
        Ok(Output {
            reply,
            formats,
            sent: 0,
        })
    }
}

/// Why a message failed: an ERROR that ends the batch, or a FATAL that ends the connection.
enum Failure {
    Error(ErrorResponse),
    Fatal(Error),
}

impl From<ErrorResponse> for Failure {
    fn from(e: ErrorResponse) -> Self {
        Failure::Error(e)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Fatal(e)
    }
}

/// Whether to keep serving after a message.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Leave,
}

struct Session {
    stream: Stream,
    buf: BytesMut,
    out: BytesMut,
    state: Arc<PoolerState>,
    statements: HashMap<String, Statement>,
    portals: HashMap<String, Portal>,
    /// After an error in the extended protocol: ignore messages until Sync, like Postgres.
    skip_until_sync: bool,
    /// Extended-protocol messages arrived since the last Sync (shutdown waits for it).
    in_batch: bool,
}

impl Session {
    async fn run(&mut self) -> Result<(), Error> {
        let mut shutdown = self.state.shutdown_signal();
        loop {
            while let Some(frame) = Frame::take(&mut self.buf, MAX_ADMIN_MESSAGE_LEN)? {
                tracing::trace!(
                    "admin client -> {:?} ({} bytes)",
                    frame.tag as char,
                    frame.bytes.len()
                );
                if self.handle(frame).await? == Flow::Leave {
                    return Ok(());
                }
                if self.out.len() >= FLUSH_AT {
                    self.flush().await?;
                }
            }
            // Replies (including SHUTDOWN's own) reach the client before it is told to leave.
            self.flush().await?;
            let shutting_down = self.state.shutting_down();
            if shutting_down && !self.in_batch {
                self.out.extend_from_slice(
                    &ErrorResponse::fatal(sqlstate::ADMIN_SHUTDOWN, "pgdog is shutting down")
                        .to_bytes(),
                );
                return Ok(());
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(16 * 1024);
            }
            tokio::select! {
                read = self.stream.read_buf(&mut self.buf) => {
                    if read? == 0 {
                        return Ok(());
                    }
                }
                _ = shutdown.changed(), if !shutting_down => {}
            }
        }
    }

    async fn flush(&mut self) -> Result<(), Error> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Handles one message from the client.
    async fn handle(&mut self, frame: Frame) -> Result<Flow, Error> {
        check_message(&frame)?;
        if self.skip_until_sync {
            match frame.tag {
                b'S' => {
                    self.skip_until_sync = false;
                    self.sync();
                }
                b'X' => return Ok(Flow::Leave),
                _ => {}
            }
            return Ok(Flow::Continue);
        }
        let result = match frame.tag {
            b'Q' => {
                let mut r = Reader::new(frame.body());
                let text = r.cstr()?;
                if !r.is_empty() {
                    return Err(Error::Malformed("Query message has bytes after its text"));
                }
                self.simple_query(text).await;
                Ok(())
            }
            b'P' => {
                self.in_batch = true;
                self.parse(&frame)
            }
            b'B' => {
                self.in_batch = true;
                self.bind(&frame)
            }
            b'D' => {
                self.in_batch = true;
                self.describe(&frame).await
            }
            b'E' => {
                self.in_batch = true;
                self.execute(&frame).await
            }
            b'C' => {
                self.in_batch = true;
                self.close(&frame)
            }
            b'S' => {
                self.sync();
                Ok(())
            }
            b'H' => {
                self.flush().await?;
                Ok(())
            }
            b'X' => return Ok(Flow::Leave),
            tag => {
                return Err(Error::Unexpected {
                    tag,
                    context: "on the admin database",
                })
            }
        };
        match result {
            Ok(()) => Ok(Flow::Continue),
            Err(Failure::Error(error)) => {
                debug!("admin command failed: {error}");
                self.out.extend_from_slice(&error.to_bytes());
                self.skip_until_sync = true;
                Ok(Flow::Continue)
            }
            Err(Failure::Fatal(error)) => Err(error),
        }
    }

    /// Sync: the end of an extended-protocol batch (and of its implicit transaction, which
    /// closes its portals).
    fn sync(&mut self) {
        self.in_batch = false;
        self.portals.clear();
        self.out.extend_from_slice(&messages::ready_for_query(b'I'));
    }

    /// A simple Query: every command in order, stopping at the first error, then
    /// ReadyForQuery.
    async fn simple_query(&mut self, text: &str) {
        // Like Postgres: a simple query ends the implicit transaction and replaces the
        // unnamed statement.
        self.in_batch = false;
        self.portals.clear();
        self.statements.remove("");
        match pgdog_admin::parse(text) {
            Err(e) => {
                debug!("admin query {text:?} does not parse: {e}");
                self.out.extend_from_slice(&syntax_error(e).to_bytes());
            }
            Ok(commands) if commands.is_empty() => {
                self.out
                    .extend_from_slice(&messages::empty_query_response());
            }
            Ok(commands) => {
                for command in commands {
                    debug!("admin command {command:?}");
                    let result = match execute(&self.state, &command).await {
                        Ok(Reply::Table { table, tag }) => {
                            wire::text_table(&mut self.out, &table, &tag)
                        }
                        Ok(Reply::Done(tag)) => {
                            self.out
                                .extend_from_slice(&messages::command_complete(&tag));
                            Ok(())
                        }
                        Err(error) => Err(error),
                    };
                    if let Err(error) = result {
                        debug!("admin command {command:?} failed: {error}");
                        self.out.extend_from_slice(&error.to_bytes());
                        break;
                    }
                }
            }
        }
        self.out.extend_from_slice(&messages::ready_for_query(b'I'));
    }

    /// Parse: the text must hold at most one command; it is parsed now, run at Execute.
    fn parse(&mut self, frame: &Frame) -> Result<(), Failure> {
        let parse = Parse::decode(frame)?;
        debug!(
            "admin Parse of statement {:?}: {:?}",
            parse.name, parse.query
        );
        if !parse.name.is_empty() && self.statements.contains_key(parse.name) {
            return Err(ErrorResponse::error(
                DUPLICATE_PREPARED_STATEMENT,
                format!("prepared statement \"{}\" already exists", parse.name),
            )
            .into());
        }
        let mut commands = pgdog_admin::parse(parse.query).map_err(syntax_error)?;
        if commands.len() > 1 {
            return Err(ErrorResponse::error(
                sqlstate::SYNTAX_ERROR,
                "cannot insert multiple commands into a prepared statement",
            )
            .into());
        }
        self.statements.insert(
            parse.name.to_string(),
            Statement {
                command: commands.pop(),
            },
        );
        self.out.extend_from_slice(&messages::parse_complete());
        Ok(())
    }

    /// Bind: a portal for a statement; admin statements take no parameters.
    fn bind(&mut self, frame: &Frame) -> Result<(), Failure> {
        let bind = Bind::decode(frame.body())?;
        let statement = self
            .statements
            .get(bind.statement)
            .ok_or_else(|| unknown_statement(bind.statement))?;
        if bind.params > 0 {
            return Err(ErrorResponse::error(
                sqlstate::PROTOCOL_VIOLATION,
                format!(
                    "bind message supplies {} parameters, but prepared statement \"{}\" requires 0",
                    bind.params, bind.statement
                ),
            )
            .into());
        }
        for code in &bind.result_formats {
            Format::from_code(*code)?;
        }
        if !bind.portal.is_empty() && self.portals.contains_key(bind.portal) {
            return Err(ErrorResponse::error(
                DUPLICATE_CURSOR,
                format!("portal \"{}\" already exists", bind.portal),
            )
            .into());
        }
        let portal = Portal {
            command: statement.command.clone(),
            codes: bind.result_formats,
            output: None,
        };
        self.portals.insert(bind.portal.to_string(), portal);
        self.out.extend_from_slice(&messages::bind_complete());
        Ok(())
    }

    /// Describe: a statement's parameters (none) and columns, or a portal's columns. Only
    /// SHOW returns rows, so only SHOW is run to learn its columns; a portal keeps that
    /// result for Execute.
    async fn describe(&mut self, frame: &Frame) -> Result<(), Failure> {
        let target = Target::decode(frame)?;
        if target.kind == b'S' {
            let command = self
                .statements
                .get(target.name)
                .ok_or_else(|| unknown_statement(target.name))?
                .command
                .clone();
            let columns = match command {
                Some(command @ Command::Show(_)) => {
                    debug!("admin Describe runs {command:?} for its columns");
                    match execute(&self.state, &command).await? {
                        Reply::Table { table, .. } => {
                            let formats = vec![Format::Text; table.columns.len()];
                            wire::row_description(&table.columns, &formats)
                        }
                        Reply::Done(_) => messages::no_data(),
                    }
                }
                _ => messages::no_data(),
            };
            self.out.extend_from_slice(&messages::no_parameters());
            self.out.extend_from_slice(&columns);
            return Ok(());
        }
        let name = target.name.to_string();
        let portal = self
            .portals
            .get(&name)
            .ok_or_else(|| unknown_portal(&name))?;
        if portal.output.is_none() {
            if let Some(command @ Command::Show(_)) = portal.command.clone() {
                self.materialize(&name, &command).await?;
            }
        }
        let portal = self
            .portals
            .get(&name)
            .ok_or_else(|| unknown_portal(&name))?;
        match &portal.output {
            Some(Output {
                reply: Reply::Table { table, .. },
                formats,
                ..
            }) => self
                .out
                .extend_from_slice(&wire::row_description(&table.columns, formats)),
            _ => self.out.extend_from_slice(&messages::no_data()),
        }
        Ok(())
    }

    /// Runs a portal's command and keeps the result in the portal.
    async fn materialize(&mut self, name: &str, command: &Command) -> Result<(), Failure> {
        debug!("admin command {command:?}");
        let reply = execute(&self.state, command).await?;
        let portal = self
            .portals
            .get_mut(name)
            .ok_or_else(|| unknown_portal(name))?;
        portal.output = Some(Output::new(reply, &portal.codes)?);
        Ok(())
    }

    /// Execute: runs the portal's command the first time, then sends up to `max_rows` rows
    /// (0: all), and PortalSuspended when rows remain for the next Execute.
    async fn execute(&mut self, frame: &Frame) -> Result<(), Failure> {
        let mut r = Reader::new(frame.body());
        let name = r.cstr()?.to_string();
        let max_rows = r.i32()?;
        if !r.is_empty() {
            return Err(Error::Malformed("Execute message has trailing bytes").into());
        }
        let portal = self
            .portals
            .get(&name)
            .ok_or_else(|| unknown_portal(&name))?;
        let Some(command) = portal.command.clone() else {
            self.out
                .extend_from_slice(&messages::empty_query_response());
            return Ok(());
        };
        if portal.output.is_none() {
            self.materialize(&name, &command).await?;
        }
        let portal = self
            .portals
            .get_mut(&name)
            .ok_or_else(|| unknown_portal(&name))?;
        let Some(output) = portal.output.as_mut() else {
            return Err(ErrorResponse::error(
                sqlstate::INTERNAL_ERROR,
                format!("portal \"{name}\" has no result"),
            )
            .into());
        };
        match &output.reply {
            Reply::Table { table, tag } => {
                let total = table.rows.len();
                let end = match usize::try_from(max_rows) {
                    Ok(limit) if limit > 0 => output.sent.saturating_add(limit).min(total),
                    _ => total,
                };
                let start = output.sent.min(end);
                wire::data_rows(&mut self.out, table, &output.formats, start..end)?;
                output.sent = end;
                if end < total {
                    self.out.extend_from_slice(&messages::portal_suspended());
                } else {
                    self.out.extend_from_slice(&messages::command_complete(tag));
                }
            }
            Reply::Done(tag) => self.out.extend_from_slice(&messages::command_complete(tag)),
        }
        Ok(())
    }

    /// Close: forgets a statement or portal (closing an unknown one is not an error).
    fn close(&mut self, frame: &Frame) -> Result<(), Failure> {
        let target = Target::decode(frame)?;
        if target.kind == b'S' {
            self.statements.remove(target.name);
        } else {
            self.portals.remove(target.name);
        }
        self.out.extend_from_slice(&messages::close_complete());
        Ok(())
    }
}

/// A decoded Bind: the names, the parameter count and the result format codes.
#[derive(Debug, PartialEq, Eq)]
struct Bind<'a> {
    portal: &'a str,
    statement: &'a str,
    params: usize,
    result_formats: Vec<i16>,
}

impl<'a> Bind<'a> {
    fn decode(body: &'a [u8]) -> Result<Bind<'a>, Error> {
        let mut r = Reader::new(body);
        let portal = r.cstr()?;
        let statement = r.cstr()?;
        let count = |r: &mut Reader<'a>| -> Result<usize, Error> {
            usize::try_from(r.i16()?).map_err(|_| Error::Malformed("negative count in Bind"))
        };
        let param_formats = count(&mut r)?;
        for _ in 0..param_formats {
            r.i16()?;
        }
        let params = count(&mut r)?;
        for _ in 0..params {
            let len = r.i32()?;
            if len == -1 {
                continue;
            }
            let len = usize::try_from(len)
                .map_err(|_| Error::Malformed("invalid parameter length in Bind"))?;
            r.bytes(len)?;
        }
        let result_count = count(&mut r)?;
        let result_formats = (0..result_count)
            .map(|_| r.i16())
            .collect::<Result<Vec<_>, _>>()?;
        if !r.is_empty() {
            return Err(Error::Malformed("Bind message has trailing bytes"));
        }
        Ok(Bind {
            portal,
            statement,
            params,
            result_formats,
        })
    }
}

/// Rejects message types other than the frontend messages the admin database speaks, and
/// fixed-size messages of the wrong size.
fn check_message(frame: &Frame) -> Result<(), Error> {
    match frame.tag {
        b'Q' | b'P' | b'B' | b'D' | b'E' | b'C' | b'S' | b'H' | b'X' => {
            if matches!(frame.tag, b'S' | b'H' | b'X') && frame.bytes.len() != 5 {
                return Err(Error::BadLength {
                    tag: frame.tag,
                    len: frame.bytes.len() as i64 - 1,
                });
            }
            Ok(())
        }
        b'd' | b'c' | b'f' => Err(Error::Unexpected {
            tag: frame.tag,
            context: "(COPY is not supported on the admin database)",
        }),
        b'F' => Err(Error::Unexpected {
            tag: frame.tag,
            context: "(function calls are not supported on the admin database)",
        }),
        tag => Err(Error::Unexpected {
            tag,
            context: "from client (not a frontend message type)",
        }),
    }
}

/// The 42601 error for text that is not an admin command, with the closest command as hint.
fn syntax_error(e: ParseError) -> ErrorResponse {
    let error = ErrorResponse::error(sqlstate::SYNTAX_ERROR, e.message);
    if e.hint.is_empty() {
        error
    } else {
        error.hint(e.hint)
    }
}

fn unknown_statement(name: &str) -> ErrorResponse {
    ErrorResponse::error(
        INVALID_SQL_STATEMENT_NAME,
        format!("prepared statement \"{name}\" does not exist"),
    )
}

fn unknown_portal(name: &str) -> ErrorResponse {
    ErrorResponse::error(
        INVALID_CURSOR_NAME,
        format!("portal \"{name}\" does not exist"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::frame::put_cstr;

    fn bind_body(params: &[Option<&[u8]>], results: &[i16]) -> BytesMut {
        let mut body = BytesMut::new();
        put_cstr(&mut body, "p1");
        put_cstr(&mut body, "s1");
        body.extend_from_slice(&0i16.to_be_bytes());
        body.extend_from_slice(&(params.len() as i16).to_be_bytes());
        for param in params {
            match param {
                None => body.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(value) => {
                    body.extend_from_slice(&(value.len() as i32).to_be_bytes());
                    body.extend_from_slice(value);
                }
            }
        }
        body.extend_from_slice(&(results.len() as i16).to_be_bytes());
        for code in results {
            body.extend_from_slice(&code.to_be_bytes());
        }
        body
    }

    #[test]
    fn decodes_bind() {
        let body = bind_body(&[], &[1, 0]);
        assert_eq!(
            Bind::decode(&body).unwrap(),
            Bind {
                portal: "p1",
                statement: "s1",
                params: 0,
                result_formats: vec![1, 0],
            }
        );
        let body = bind_body(&[Some(b"abc"), None], &[]);
        assert_eq!(Bind::decode(&body).unwrap().params, 2);
    }

    #[test]
    fn malformed_bind_is_an_error() {
        let body = bind_body(&[Some(b"abc")], &[1]);
        for cut in 0..body.len() {
            assert!(Bind::decode(&body[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = body.clone();
        long.extend_from_slice(b"x");
        assert!(Bind::decode(&long).is_err());
        let mut negative = BytesMut::new();
        put_cstr(&mut negative, "");
        put_cstr(&mut negative, "");
        negative.extend_from_slice(&(-1i16).to_be_bytes());
        assert!(Bind::decode(&negative).is_err());
    }

    #[test]
    fn message_types() {
        assert!(check_message(&Frame::new(b'Q', b"SHOW POOLS\0")).is_ok());
        assert!(check_message(&Frame::new(b'S', b"")).is_ok());
        assert!(check_message(&Frame::new(b'S', b"x")).is_err());
        assert!(check_message(&Frame::new(b'd', b"data")).is_err());
        assert!(check_message(&Frame::new(b'F', b"")).is_err());
        assert!(check_message(&Frame::new(b'z', b"")).is_err());
    }

    #[test]
    fn syntax_errors_carry_the_hint() {
        let e = pgdog_admin::parse("SHOW POLS").unwrap_err();
        let response = syntax_error(e);
        assert_eq!(response.code, sqlstate::SYNTAX_ERROR);
        assert!(response.hint.unwrap_or_default().contains("SHOW POOLS"));
    }
}
