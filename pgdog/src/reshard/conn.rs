//! A standalone server connection for resharding work (catalog queries, DDL, checks): logged
//! in like the pools' connections, but owned by one task and never returned to a pool.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};

use crate::backend::exchange::{self, Answer};
use crate::backend::server::{Server, ServerAddress, ServerError};
use crate::net::{messages, ErrorResponse, Frame};

/// Why a resharding statement failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// Could not connect or log in.
    #[error(transparent)]
    Connect(#[from] ServerError),
    /// The connection broke.
    #[error("{server}: {message}")]
    Lost {
        /// The server.
        server: String,
        /// What happened.
        message: String,
    },
    /// The statement failed; the connection is still usable.
    #[error("{server}: {}", describe(.error))]
    Sql {
        /// The server.
        server: String,
        /// What it said.
        error: Box<ErrorResponse>,
    },
}

impl ConnError {
    /// The SQLSTATE, when the server reported an error.
    pub fn code(&self) -> Option<&str> {
        match self {
            ConnError::Sql { error, .. } => Some(&error.code),
            _ => None,
        }
    }

    /// The table or the `pgdog` schema does not exist (nothing of pgdog's on that server yet).
    pub fn is_missing_table(&self) -> bool {
        matches!(self.code(), Some("42P01" | "3F000"))
    }

    /// The server's message without the server name (for result tables).
    pub fn short(&self) -> String {
        match self {
            ConnError::Sql { error, .. } => describe(error),
            other => other.to_string(),
        }
    }
}

/// `ERROR: message (SQLSTATE x)` plus detail and hint when present.
fn describe(error: &ErrorResponse) -> String {
    let mut text = format!("{} (SQLSTATE {})", error.message, error.code);
    if let Some(detail) = &error.detail {
        text.push_str(&format!("; detail: {detail}"));
    }
    if let Some(hint) = &error.hint {
        text.push_str(&format!("; hint: {hint}"));
    }
    text
}

/// Rows of a text-format result.
#[derive(Debug, Default, Clone)]
pub struct Rows {
    /// Column names.
    pub columns: Vec<String>,
    /// Values, `None` for NULL.
    pub rows: Vec<Vec<Option<String>>>,
}

impl Rows {
    /// The value at `row`, `column` (`None` when NULL or out of range).
    pub fn get(&self, row: usize, column: usize) -> Option<&str> {
        self.rows.get(row)?.get(column)?.as_deref()
    }

    /// The first column of the first row.
    pub fn scalar(&self) -> Option<&str> {
        self.get(0, 0)
    }
}

/// Bytes read from the socket at once during bulk transfers.
const COPY_READ: usize = 256 * 1024;

/// One logged-in connection.
pub struct Conn {
    server: Server,
}

impl Conn {
    /// Connects and logs in within `timeout`, with JIT compilation off: the server's JIT (on
    /// by default) misjudges catalog queries by their set-returning functions' row estimates
    /// and compiles them for up to half a second (the publication's tables: 480 ms of JIT for
    /// 1 ms of work), which stalled the stream every few seconds.
    pub async fn connect(addr: &ServerAddress, timeout: Duration) -> Result<Conn, ConnError> {
        let server = Server::connect(Arc::new(addr.clone()), timeout, 0).await?;
        let mut conn = Conn { server };
        conn.execute("SET jit = off").await?;
        Ok(conn)
    }

    /// Connects a walsender session (`replication=database`): replication commands and SQL.
    pub async fn connect_replication(
        addr: &ServerAddress,
        timeout: Duration,
    ) -> Result<Conn, ConnError> {
        let server = Server::connect_replication(Arc::new(addr.clone()), timeout).await?;
        Ok(Conn { server })
    }

    /// Where this connection goes.
    pub fn addr(&self) -> &ServerAddress {
        self.server.addr()
    }

    /// The server's `server_version_num` as reported at login (e.g. 150004), if it sent it.
    pub fn server_version_num(&self) -> Option<u32> {
        let version = self
            .server
            .params()
            .iter()
            .find(|(name, _)| name == "server_version")?
            .1
            .clone();
        parse_server_version(&version)
    }

    /// Runs `sql` (one or more statements) as a simple query; the rows of the last result.
    pub async fn query(&mut self, sql: &str) -> Result<Rows, ConnError> {
        let answer = self.run(sql).await?;
        let mut rows = Rows::default();
        if let Some(description) = &answer.description {
            rows.columns = exchange::column_names(description).unwrap_or_default();
        }
        for row in &answer.rows {
            let values = exchange::columns(row).map_err(|e| self.lost(&e.to_string()))?;
            rows.rows.push(
                values
                    .into_iter()
                    .map(|v| v.map(|bytes| String::from_utf8_lossy(bytes).into_owned()))
                    .collect(),
            );
        }
        Ok(rows)
    }

    /// Runs `CREATE ... IF NOT EXISTS` statements: when several sessions create the same
    /// object at once (the streams back from several shards), the losers of the race see a
    /// duplicate (23505, 42P07, 42P06); by then it exists, and running them again succeeds.
    pub async fn create_if_missing(&mut self, sql: &str) -> Result<(), ConnError> {
        match self.execute(sql).await {
            Err(e) if matches!(e.code(), Some("23505" | "42P07" | "42P06")) => {
                self.execute(sql).await.map(|_| ())
            }
            other => other.map(|_| ()),
        }
    }

    /// Runs `sql` and returns its command tag.
    pub async fn execute(&mut self, sql: &str) -> Result<String, ConnError> {
        Ok(self.run(sql).await?.tag.unwrap_or_default())
    }

    async fn run(&mut self, sql: &str) -> Result<Answer, ConnError> {
        tracing::debug!("{}: {}", self.server.addr(), sql);
        let answer = exchange::simple_query(&mut self.server, sql)
            .await
            .map_err(|lost| self.lost(&lost.0.message))?;
        match answer.error {
            Some(error) => Err(ConnError::Sql {
                server: self.server.addr().to_string(),
                error: Box::new(error),
            }),
            None => Ok(answer),
        }
    }

    /// The next message from the server, reading more when needed.
    async fn next_message(&mut self) -> Result<Frame, ConnError> {
        loop {
            match self.server.next_frame() {
                Ok(Some(frame)) => return Ok(frame),
                Ok(None) => {}
                Err(e) => return Err(self.lost(&e.to_string())),
            }
            self.server.reserve_read(COPY_READ);
            match self.server.read().await {
                Ok(n) if n > 0 => {}
                Ok(_) => return Err(self.lost("the server closed the connection")),
                Err(e) => return Err(self.lost(&e.to_string())),
            }
        }
    }

    /// Reads until ReadyForQuery, returning the error the server reported on the way, if any.
    async fn until_ready(&mut self) -> Result<Option<ErrorResponse>, ConnError> {
        let mut error = None;
        loop {
            let frame = self.next_message().await?;
            match frame.tag {
                b'Z' => return Ok(error),
                b'E' if error.is_none() => error = Some(self.error_of(&frame)),
                _ => {}
            }
        }
    }

    fn error_of(&self, frame: &Frame) -> ErrorResponse {
        ErrorResponse::parse(frame.body()).unwrap_or_else(|e| e.to_response())
    }

    fn sql_error(&self, error: ErrorResponse) -> ConnError {
        ConnError::Sql {
            server: self.server.addr().to_string(),
            error: Box::new(error),
        }
    }

    /// Starts `COPY ... TO STDOUT` (simple query); then call [`Conn::copy_out_next`] until it
    /// returns `None`.
    pub async fn copy_out_start(&mut self, sql: &str) -> Result<(), ConnError> {
        self.send_query(sql).await?;
        loop {
            let frame = self.next_message().await?;
            match frame.tag {
                b'H' => return Ok(()),
                b'E' => {
                    let error = self.error_of(&frame);
                    self.until_ready().await?;
                    return Err(self.sql_error(error));
                }
                b'Z' => return Err(self.lost("the COPY TO did not start")),
                _ => {}
            }
        }
    }

    /// The next CopyData message of a `COPY ... TO STDOUT` (its data is `frame.body()`), or
    /// `None` once the COPY ended and the server is ready again.
    pub async fn copy_out_next(&mut self) -> Result<Option<Frame>, ConnError> {
        loop {
            let frame = self.next_message().await?;
            match frame.tag {
                b'd' => return Ok(Some(frame)),
                b'c' => {
                    return match self.until_ready().await? {
                        Some(error) => Err(self.sql_error(error)),
                        None => Ok(None),
                    }
                }
                b'E' => {
                    let error = self.error_of(&frame);
                    self.until_ready().await?;
                    return Err(self.sql_error(error));
                }
                _ => {}
            }
        }
    }

    /// Starts a copy in both directions (`START_REPLICATION` on a walsender session): read the
    /// server's CopyData with [`Conn::copy_out_next`] (cancel-safe: a read that is dropped
    /// loses nothing) and send with [`Conn::copy_in_data`].
    pub async fn copy_both_start(&mut self, sql: &str) -> Result<(), ConnError> {
        self.send_query(sql).await?;
        loop {
            let frame = self.next_message().await?;
            match frame.tag {
                b'W' => return Ok(()),
                b'E' => {
                    let error = self.error_of(&frame);
                    self.until_ready().await?;
                    return Err(self.sql_error(error));
                }
                b'Z' => return Err(self.lost("the replication stream did not start")),
                _ => {}
            }
        }
    }

    /// Starts `COPY ... FROM STDIN` (simple query) and waits until the server accepts data.
    pub async fn copy_in_start(&mut self, sql: &str) -> Result<(), ConnError> {
        self.send_query(sql).await?;
        loop {
            let frame = self.next_message().await?;
            match frame.tag {
                b'G' => return Ok(()),
                b'E' => {
                    let error = self.error_of(&frame);
                    self.until_ready().await?;
                    return Err(self.sql_error(error));
                }
                b'Z' => return Err(self.lost("the COPY FROM did not start")),
                _ => {}
            }
        }
    }

    /// Sends `data` as one CopyData message.
    pub async fn copy_in_data(&mut self, data: &[u8]) -> Result<(), ConnError> {
        let mut header = BytesMut::with_capacity(5);
        header.put_u8(b'd');
        header.put_u32(data.len() as u32 + 4);
        if let Err(e) = self.server.send(&header).await {
            return Err(self.lost(&e.to_string()));
        }
        if let Err(e) = self.server.send(data).await {
            return Err(self.lost(&e.to_string()));
        }
        Ok(())
    }

    /// Ends the COPY FROM STDIN (CopyDone) and returns the rows the server loaded.
    pub async fn copy_in_finish(&mut self) -> Result<u64, ConnError> {
        if let Err(e) = self.server.send(&[b'c', 0, 0, 0, 4]).await {
            return Err(self.lost(&e.to_string()));
        }
        let mut rows = 0;
        let mut error = None;
        loop {
            let frame = self.next_message().await?;
            match frame.tag {
                b'C' => {
                    rows = messages::command_tag(&frame)
                        .ok()
                        .and_then(|tag| tag.rsplit(' ').next()?.parse().ok())
                        .unwrap_or(0)
                }
                b'E' if error.is_none() => error = Some(self.error_of(&frame)),
                b'Z' => break,
                _ => {}
            }
        }
        match error {
            Some(error) => Err(self.sql_error(error)),
            None => Ok(rows),
        }
    }

    async fn send_query(&mut self, sql: &str) -> Result<(), ConnError> {
        tracing::debug!("{}: {}", self.server.addr(), sql);
        if let Err(e) = self.server.send(&messages::query(sql)).await {
            return Err(self.lost(&e.to_string()));
        }
        Ok(())
    }

    fn lost(&self, message: &str) -> ConnError {
        ConnError::Lost {
            server: self.server.addr().to_string(),
            message: message.to_string(),
        }
    }

    /// Closes the connection politely.
    pub async fn close(self) {
        self.server.terminate().await;
    }
}

/// `15.4 (Debian ...)` → 150004; `9.6.2` → 90602.
pub fn parse_server_version(version: &str) -> Option<u32> {
    let numeric: String = version
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mut parts = numeric.split('.').map(|p| p.parse::<u32>().ok());
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    if major >= 10 {
        Some(major * 10_000 + minor)
    } else {
        let patch = parts.next().flatten().unwrap_or(0);
        Some(major * 10_000 + minor * 100 + patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_versions() {
        assert_eq!(
            parse_server_version("15.18 (Debian 15.18-0+deb12u1)"),
            Some(150018)
        );
        assert_eq!(parse_server_version("16beta1"), Some(160000));
        assert_eq!(parse_server_version("9.6.2"), Some(90602));
        assert_eq!(parse_server_version("x"), None);
    }
}
