//! Reading a server's replies until it owes nothing more, and running pgdog's own statements
//! with their results (the sharded executor, two-phase commit recovery).

use bytes::Bytes;

use crate::backend::expect::{Expect, Route};
use crate::backend::server::Server;
use crate::net::{messages, Error, ErrorResponse, Frame};

/// How a read from a server ended.
#[derive(Debug)]
pub enum Ended {
    /// Everything sent was answered.
    Done,
    /// The server entered COPY IN (CopyInResponse arrived) and waits for data.
    CopyIn,
}

/// The server broke: closed, sent garbage, or ended the session with a FATAL error.
#[derive(Debug)]
pub struct Lost(pub ErrorResponse);

impl Lost {
    fn new(server: &Server, detail: &str) -> Lost {
        Lost(
            ErrorResponse::error(
                crate::net::sqlstate::CONNECTION_FAILURE,
                format!("lost connection to server {}", server.addr()),
            )
            .detail(detail.to_string()),
        )
    }
}

/// Reads replies from `server` until it owes nothing (its pending queue is empty) or it
/// starts a COPY IN, passing every reply meant for the client to `on_frame`. Replies to what
/// pgdog sent on its own are dropped, as the pending queue says.
pub async fn read_replies(
    server: &mut Server,
    mut on_frame: impl FnMut(Frame),
) -> Result<Ended, Lost> {
    loop {
        synthetic(server, &mut on_frame);
        if server.pending.is_empty() {
            return Ok(Ended::Done);
        }
        while let Some(frame) = next_frame(server)? {
            tracing::trace!(
                "server {} -> {:?} ({} bytes)",
                server.addr(),
                frame.tag as char,
                frame.bytes.len()
            );
            if frame.tag == b'E' && is_fatal(&frame) {
                server.broken = true;
                let error = ErrorResponse::parse(frame.body()).unwrap_or_else(|e| e.to_response());
                return Err(Lost(ErrorResponse::error(&error.code, error.message).detail(
                    "the server closed pgdog's connection; the transaction, if any, was rolled back",
                )));
            }
            let route = {
                let server = &mut *server;
                server.pending.route(&frame, &mut server.prepared)
            };
            match frame.tag {
                b'Z' => {
                    server.status = messages::ready_status(&frame).unwrap_or(b'I');
                    server.copy = false;
                }
                b'G' => {
                    server.copy = true;
                    server.copy_in = true;
                    server.pending.copy_in_started();
                }
                b'H' => server.copy = true,
                b'C' | b'E' => {
                    server.copy = false;
                    server.copy_in = false;
                }
                _ => {}
            }
            let copy_in = frame.tag == b'G';
            if route == Route::Forward {
                on_frame(frame);
            }
            synthetic(server, &mut on_frame);
            if copy_in {
                return Ok(Ended::CopyIn);
            }
            if server.pending.is_empty() {
                return Ok(Ended::Done);
            }
        }
        match server.read().await {
            Ok(n) if n > 0 => {}
            _ => {
                server.broken = true;
                return Err(Lost::new(
                    server,
                    "the statement may or may not have completed",
                ));
            }
        }
    }
}

/// Passes on the replies pgdog owes the client itself that are now at the head of the queue.
fn synthetic(server: &mut Server, on_frame: &mut impl FnMut(Frame)) {
    let mut out = bytes::BytesMut::new();
    server.pending.drain_synthetic(&mut out);
    while let Ok(Some(frame)) = Frame::take(&mut out, usize::MAX) {
        on_frame(frame);
    }
}

/// The next complete message the server sent, if any.
fn next_frame(server: &mut Server) -> Result<Option<Frame>, Lost> {
    server.next_frame().map_err(|_| {
        server.broken = true;
        Lost::new(server, "the server sent a malformed message")
    })
}

/// The answer to one of pgdog's own statements.
#[derive(Debug, Default)]
pub struct Answer {
    /// RowDescription, if rows were returned.
    pub description: Option<Bytes>,
    /// DataRow messages.
    pub rows: Vec<Bytes>,
    /// CommandComplete tag.
    pub tag: Option<String>,
    /// The error, if the statement failed.
    pub error: Option<ErrorResponse>,
}

impl Answer {
    /// Sorts the replies of one statement into an answer.
    pub fn collect(frames: Vec<Frame>) -> Answer {
        let mut answer = Answer::default();
        for frame in frames {
            match frame.tag {
                b'T' => answer.description = Some(frame.bytes),
                b'D' => answer.rows.push(frame.bytes),
                b'C' => answer.tag = messages::command_tag(&frame).ok().map(str::to_string),
                b'E' if answer.error.is_none() => {
                    answer.error =
                        Some(ErrorResponse::parse(frame.body()).unwrap_or_else(|e| e.to_response()))
                }
                _ => {}
            }
        }
        answer
    }

    /// The error as a result.
    pub fn ok(self) -> Result<Answer, ErrorResponse> {
        match self.error {
            Some(error) => Err(error),
            None => Ok(self),
        }
    }
}

/// Runs `sql` as a simple query on `server` and returns its answer.
pub async fn simple_query(server: &mut Server, sql: &str) -> Result<Answer, Lost> {
    server.pending.push(Expect::Query);
    if server.send(&messages::query(sql)).await.is_err() {
        server.broken = true;
        return Err(Lost::new(server, "the statement did not run"));
    }
    let mut frames = Vec::new();
    read_replies(server, |f| frames.push(f)).await?;
    Ok(Answer::collect(frames))
}

/// The text of column `index` of a DataRow (text format); `None` for NULL or a bad row.
pub fn text_column(row: &[u8], index: usize) -> Option<String> {
    let mut r = crate::net::frame::Reader::new(row.get(5..)?);
    let count = r.i16().ok()?;
    if index >= count.max(0) as usize {
        return None;
    }
    for i in 0..=index {
        let len = r.i32().ok()?;
        if len < 0 {
            if i == index {
                return None;
            }
            continue;
        }
        let bytes = r.bytes(len as usize).ok()?;
        if i == index {
            return String::from_utf8(bytes.to_vec()).ok();
        }
    }
    None
}

/// Every column of a DataRow, raw (`None` for NULL).
pub fn columns(row: &[u8]) -> Result<Vec<Option<&[u8]>>, Error> {
    let mut r = crate::net::frame::Reader::new(row.get(5..).unwrap_or_default());
    let count = r.i16()?;
    let mut out = Vec::with_capacity(count.max(0) as usize);
    for _ in 0..count {
        let len = r.i32()?;
        out.push(if len < 0 {
            None
        } else {
            Some(r.bytes(len as usize)?)
        });
    }
    Ok(out)
}

/// The column names of a RowDescription message.
pub fn column_names(description: &[u8]) -> Result<Vec<String>, Error> {
    let mut r = crate::net::frame::Reader::new(description.get(5..).unwrap_or_default());
    let count = r.i16()?;
    let mut names = Vec::with_capacity(count.max(0) as usize);
    for _ in 0..count {
        names.push(r.cstr()?.to_string());
        r.bytes(18)?;
    }
    Ok(names)
}

/// Whether an ErrorResponse has severity FATAL or PANIC (the server closes after it).
fn is_fatal(frame: &Frame) -> bool {
    ErrorResponse::parse(frame.body())
        .map(|e| e.severity == "FATAL" || e.severity == "PANIC")
        .unwrap_or(false)
}
