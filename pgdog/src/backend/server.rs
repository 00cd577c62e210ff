//! One connection from pgdog to a PostgreSQL server: login (trust, cleartext, md5, SCRAM),
//! the parameters the server reported, and what is in flight on it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::expect::Pending;
use super::prepared::ServerStatements;
use super::stats::ConnectionStats;
use crate::net::{self, ErrorResponse, Frame, MAX_MESSAGE_LEN};

/// Where and as whom pgdog connects.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerAddress {
    /// Host name or IP.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Database name on the server.
    pub database: String,
    /// Role to log in as.
    pub user: String,
    /// Its password, if the server asks for one.
    pub password: Option<String>,
}

impl std::fmt::Display for ServerAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}@{}:{}/{}",
            self.user, self.host, self.port, self.database
        )
    }
}

/// Why a server connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// TCP connect failed.
    #[error("could not connect to server {addr}: {source}")]
    Connect {
        /// The server.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Connect + login took longer than connect_timeout.
    #[error("timed out connecting to server {addr} after {ms} ms")]
    Timeout {
        /// The server.
        addr: String,
        /// connect_timeout in ms.
        ms: u128,
    },
    /// The server refused the login.
    #[error("server {addr} refused the login: {error}")]
    Rejected {
        /// The server.
        addr: String,
        /// What it said.
        error: Box<ErrorResponse>,
    },
    /// The server wants a password and none is configured, or a method pgdog lacks.
    #[error("cannot log in to server {addr}: {reason}")]
    Auth {
        /// The server.
        addr: String,
        /// What is missing.
        reason: String,
    },
    /// Bytes on the socket that are not valid protocol.
    #[error("protocol error from server: {0}")]
    Protocol(#[from] net::Error),
}

/// The identity Postgres gave this session, used to forward CancelRequests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BackendKey {
    /// Backend pid.
    pub pid: i32,
    /// Cancel secret.
    pub secret: i32,
}

/// A logged-in server connection.
pub struct Server {
    stream: TcpStream,
    buf: BytesMut,
    addr: Arc<ServerAddress>,
    key: BackendKey,
    params: Vec<(String, String)>,
    /// Session settings pgdog applied on behalf of clients (`SET name TO value`).
    pub session: HashMap<String, String>,
    /// `settings_fingerprint(&session)`, kept in step with it.
    pub session_fingerprint: u64,
    /// Prepared statements (pgdog's global names) known on this server.
    pub prepared: ServerStatements,
    /// Responses still expected for what has been sent, in order.
    pub pending: Pending,
    /// Transaction status from the last ReadyForQuery: `I`, `T` or `E`.
    pub status: u8,
    /// Inside COPY FROM STDIN / TO STDOUT.
    pub copy: bool,
    /// In copy-in mode and the client has not sent CopyDone/CopyFail yet: Syncs get no reply.
    pub copy_in: bool,
    /// Extended-protocol messages were sent since the last Sync: the server is inside an
    /// implicit transaction until that Sync.
    pub unsynced: bool,
    /// Set after an I/O or protocol error: the connection must be closed, not reused.
    pub broken: bool,
    created: Instant,
    /// When it was last returned to its pool.
    pub last_used: Instant,
    /// Live counters, shown by `SHOW SERVERS`.
    pub stats: Arc<ConnectionStats>,
    /// The pool's reconnect generation when this connection was opened (see `RECONNECT`).
    pub generation: u64,
}

impl Server {
    /// Connects and logs in, within `timeout`.
    /// `statements_limit` caps the prepared statements pgdog keeps on it.
    pub async fn connect(
        addr: Arc<ServerAddress>,
        timeout: Duration,
        statements_limit: usize,
    ) -> Result<Server, ServerError> {
        Self::connect_as(addr, timeout, statements_limit, false).await
    }

    /// Connects with `replication=database` in the startup packet: a walsender session that
    /// takes replication commands (`CREATE_REPLICATION_SLOT`, `START_REPLICATION`) as well as SQL.
    pub async fn connect_replication(
        addr: Arc<ServerAddress>,
        timeout: Duration,
    ) -> Result<Server, ServerError> {
        Self::connect_as(addr, timeout, 0, true).await
    }

    async fn connect_as(
        addr: Arc<ServerAddress>,
        timeout: Duration,
        statements_limit: usize,
        replication: bool,
    ) -> Result<Server, ServerError> {
        match tokio::time::timeout(
            timeout,
            Self::connect_inner(addr.clone(), statements_limit, replication),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(ServerError::Timeout {
                addr: addr.to_string(),
                ms: timeout.as_millis(),
            }),
        }
    }

    async fn connect_inner(
        addr: Arc<ServerAddress>,
        statements_limit: usize,
        replication: bool,
    ) -> Result<Server, ServerError> {
        let stream = TcpStream::connect((addr.host.as_str(), addr.port))
            .await
            .map_err(|source| ServerError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let mut server = Server {
            stream,
            buf: BytesMut::with_capacity(16 * 1024),
            addr,
            key: BackendKey { pid: 0, secret: 0 },
            params: Vec::new(),
            session: HashMap::new(),
            session_fingerprint: 0,
            prepared: ServerStatements::new(statements_limit),
            pending: Pending::default(),
            status: b'I',
            copy: false,
            copy_in: false,
            unsynced: false,
            broken: false,
            created: Instant::now(),
            last_used: Instant::now(),
            stats: Arc::new(ConnectionStats::default()),
            generation: 0,
        };
        server.login(replication).await?;
        Ok(server)
    }

    async fn login(&mut self, replication: bool) -> Result<(), ServerError> {
        let mut out = BytesMut::new();
        let mut params = vec![
            ("user", self.addr.user.as_str()),
            ("database", self.addr.database.as_str()),
        ];
        if replication {
            params.push(("replication", "database"));
        }
        frontend::startup_message(params.iter().copied(), &mut out)
            .map_err(|e| self.io_error(e))?;
        self.send(&out).await.map_err(|e| self.io_error(e))?;
        let mut scram: Option<ScramSha256> = None;
        loop {
            let message = self.read_login_message().await?;
            out.clear();
            match message {
                Message::AuthenticationOk => {}
                Message::AuthenticationCleartextPassword => {
                    let password = self.password()?;
                    frontend::password_message(password.as_bytes(), &mut out)
                        .map_err(|e| self.io_error(e))?;
                }
                Message::AuthenticationMd5Password(body) => {
                    let password = self.password()?;
                    let hash = postgres_protocol::authentication::md5_hash(
                        self.addr.user.as_bytes(),
                        password.as_bytes(),
                        body.salt(),
                    );
                    frontend::password_message(hash.as_bytes(), &mut out)
                        .map_err(|e| self.io_error(e))?;
                }
                Message::AuthenticationSasl(body) => {
                    let mut mechanisms = body.mechanisms();
                    let mut offered = false;
                    while let Ok(Some(m)) =
                        fallible_iterator::FallibleIterator::next(&mut mechanisms)
                    {
                        offered |= m == SCRAM_SHA_256;
                    }
                    if !offered {
                        return Err(self.auth_error("server offers no supported SASL mechanism"));
                    }
                    let password = self.password()?;
                    let client =
                        ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
                    frontend::sasl_initial_response(SCRAM_SHA_256, client.message(), &mut out)
                        .map_err(|e| self.io_error(e))?;
                    scram = Some(client);
                }
                Message::AuthenticationSaslContinue(body) => {
                    let client = scram
                        .as_mut()
                        .ok_or_else(|| self.auth_error("unexpected SASLContinue"))?;
                    client
                        .update(body.data())
                        .map_err(|e| self.auth_error(&e.to_string()))?;
                    frontend::sasl_response(client.message(), &mut out)
                        .map_err(|e| self.io_error(e))?;
                }
                Message::AuthenticationSaslFinal(body) => {
                    let mut client = scram
                        .take()
                        .ok_or_else(|| self.auth_error("unexpected SASLFinal"))?;
                    client
                        .finish(body.data())
                        .map_err(|e| self.auth_error(&format!("server signature invalid: {e}")))?;
                }
                Message::ParameterStatus(body) => {
                    let (Ok(name), Ok(value)) = (body.name(), body.value()) else {
                        return Err(net::Error::Malformed("ParameterStatus").into());
                    };
                    self.params.push((name.to_string(), value.to_string()));
                }
                Message::BackendKeyData(body) => {
                    self.key = BackendKey {
                        pid: body.process_id(),
                        secret: body.secret_key(),
                    };
                }
                Message::ReadyForQuery(_) => return Ok(()),
                Message::NoticeResponse(_) => {}
                _ => {
                    return Err(net::Error::Unexpected {
                        tag: 0,
                        context: "during server login",
                    }
                    .into())
                }
            }
            if !out.is_empty() {
                self.send(&out).await.map_err(|e| self.io_error(e))?;
            }
        }
    }

    async fn read_login_message(&mut self) -> Result<Message, ServerError> {
        loop {
            // Check the length first so a hostile length cannot make us buffer forever.
            if Frame::peek_len(&self.buf, MAX_MESSAGE_LEN)?.is_some() && self.buf[0] == b'E' {
                if let Some(frame) = Frame::take(&mut self.buf, MAX_MESSAGE_LEN)? {
                    return Err(ServerError::Rejected {
                        addr: self.addr.to_string(),
                        error: Box::new(ErrorResponse::parse(frame.body())?),
                    });
                }
            }
            if let Some(message) = Message::parse(&mut self.buf).map_err(|e| self.io_error(e))? {
                return Ok(message);
            }
            if self.read().await.map_err(|e| self.io_error(e))? == 0 {
                return Err(self.io_error(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    fn password(&self) -> Result<&str, ServerError> {
        self.addr
            .password
            .as_deref()
            .ok_or_else(|| self.auth_error("the server asks for a password and none is configured (set server_password in users.toml or password in [[databases]])"))
    }

    fn auth_error(&self, reason: &str) -> ServerError {
        ServerError::Auth {
            addr: self.addr.to_string(),
            reason: reason.to_string(),
        }
    }

    fn io_error(&self, source: std::io::Error) -> ServerError {
        ServerError::Connect {
            addr: self.addr.to_string(),
            source,
        }
    }

    /// Writes bytes to the server.
    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let result = self.stream.write_all(bytes).await;
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    /// Reads more bytes into the buffer; 0 means the server closed the connection.
    /// Cancel-safe: usable in `select!`.
    pub async fn read(&mut self) -> std::io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(16 * 1024);
        }
        let result = self.stream.read_buf(&mut self.buf).await;
        match result {
            Ok(0) | Err(_) => self.broken = true,
            Ok(_) => {}
        }
        result
    }

    /// Makes room for at least `bytes` more bytes in the read buffer, so the next read can take
    /// that much at once (bulk transfers such as COPY).
    pub fn reserve_read(&mut self, bytes: usize) {
        if self.buf.capacity() - self.buf.len() < bytes {
            self.buf.reserve(bytes);
        }
    }

    /// Takes the next complete message from what has been read.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, net::Error> {
        let frame = Frame::take(&mut self.buf, MAX_MESSAGE_LEN);
        if frame.is_err() {
            self.broken = true;
        }
        frame
    }

    /// Whether everything sent has been answered and no transaction is open: the server can
    /// go back to its pool.
    pub fn is_clean(&self) -> bool {
        !self.broken
            && self.status == b'I'
            && !self.copy
            && !self.unsynced
            && self.pending.is_empty()
            && self.buf.is_empty()
    }

    /// Runs one of pgdog's own statements on an idle server (no client attached) and waits for
    /// its ReadyForQuery; returns the transaction status, or `None` if the server broke.
    pub async fn run_internal(&mut self, sql: &str) -> Option<u8> {
        let work = async {
            self.send(&net::messages::query(sql)).await.ok()?;
            loop {
                while let Some(frame) = self.next_frame().ok()? {
                    if frame.tag == b'Z' {
                        self.status = net::messages::ready_status(&frame).ok()?;
                        return Some(self.status);
                    }
                }
                if self.read().await.ok()? == 0 {
                    return None;
                }
            }
        };
        let status = tokio::time::timeout(Duration::from_secs(5), work)
            .await
            .ok()
            .flatten();
        if status.is_none() {
            self.broken = true;
        }
        status
    }

    /// `DISCARD ALL`: forget every setting, prepared statement and temp table of the session
    /// (session pooling, when a client leaves).
    pub async fn reset_session(&mut self) {
        if self.run_internal("DISCARD ALL").await == Some(b'I') {
            self.session.clear();
            self.session_fingerprint = 0;
            self.prepared.clear();
        } else {
            self.broken = true;
        }
    }

    /// Whether an idle connection still looks alive: no EOF and no unexpected message
    /// (e.g. the FATAL Postgres sends before terminating a backend) waiting on the socket.
    pub fn is_alive(&self) -> bool {
        let mut probe = [0u8; 1];
        match self.stream.try_read(&mut probe) {
            Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
            Ok(_) => false,
        }
    }

    /// The server's address.
    pub fn addr(&self) -> &Arc<ServerAddress> {
        &self.addr
    }

    /// The key for cancelling this session's queries.
    pub fn key(&self) -> BackendKey {
        self.key
    }

    /// The ParameterStatus values the server sent at login.
    pub fn params(&self) -> &[(String, String)] {
        &self.params
    }

    /// How long ago the connection was opened.
    pub fn age(&self) -> Duration {
        self.created.elapsed()
    }

    /// Sends Terminate and closes (best effort).
    pub async fn terminate(mut self) {
        let _ = self.stream.write_all(&net::messages::terminate()).await;
    }
}

/// An order-independent hash of session settings (0 for none), so that checking whether a
/// server's settings already match a client's costs one comparison.
pub fn settings_fingerprint(settings: &HashMap<String, String>) -> u64 {
    use std::hash::{Hash, Hasher};
    settings
        .iter()
        .map(|entry| {
            // DefaultHasher::new() has fixed keys: equal settings give equal fingerprints.
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            entry.hash(&mut hasher);
            hasher.finish()
        })
        .fold(0u64, |acc, h| acc.wrapping_add(h))
}

/// Sends a CancelRequest for `key` to the server at `host:port` and waits until the server
/// closes the connection, which it does once it has signalled the backend.
pub async fn cancel(host: &str, port: u16, key: BackendKey) -> std::io::Result<()> {
    const STEP: Duration = Duration::from_secs(5);
    let timed_out =
        |what: &str| std::io::Error::new(std::io::ErrorKind::TimedOut, what.to_string());
    let mut stream = tokio::time::timeout(STEP, TcpStream::connect((host, port)))
        .await
        .map_err(|_| timed_out("connecting to send a cancel request timed out"))??;
    let mut out = BytesMut::new();
    frontend::cancel_request(key.pid, key.secret, &mut out);
    stream.write_all(&out).await?;
    let mut sink = [0u8; 1];
    tokio::time::timeout(STEP, stream.read(&mut sink))
        .await
        .map_err(|_| timed_out("the server did not confirm the cancel request"))??;
    Ok(())
}
