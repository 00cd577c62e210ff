//! One logged-in client: the proxy loop between it and the server it holds. In transaction
//! mode a server is checked out for each transaction and returned at ReadyForQuery idle;
//! named prepared statements and `SET`s are carried from server to server.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use pgdog_config::{as_duration, PoolerMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, warn};

use crate::backend::databases::Cluster;
use crate::backend::expect::{Expect, Route};
use crate::backend::pool::{Guard, PoolError};
use crate::frontend::login::LoggedIn;
use crate::frontend::session::{self, Change};
use crate::frontend::statements::ClientStatements;
use crate::net::messages::{self, Parse};
use crate::net::stream::Stream;
use crate::net::{sqlstate, Error, ErrorResponse, Frame, MAX_MESSAGE_LEN};
use crate::state::PoolerState;

/// Why the proxy loop ended.
#[derive(Debug)]
enum Exit {
    /// The client sent Terminate or closed its socket.
    Disconnected,
    /// pgdog closed the connection after sending the client a FATAL error.
    Closed,
}

/// What woke the proxy loop.
enum Event {
    /// Bytes (or EOF/error) from the server.
    Server(std::io::Result<usize>),
    /// Bytes (or EOF/error) from the client.
    Client(Result<usize, Error>),
    /// Shutdown began.
    Shutdown,
    /// client_idle_timeout passed with no transaction open.
    IdleTimeout,
    /// query_timeout passed without a word from the server.
    QueryTimeout,
}

/// A connected client and what it holds.
pub struct Client {
    stream: Stream,
    buf: BytesMut,
    out: BytesMut,
    state: Arc<PoolerState>,
    login: Login,
    cluster: Arc<Cluster>,
    generation: u64,
    server: Option<Guard>,
    /// The client's named prepared statements (transaction mode).
    statements: ClientStatements,
    /// SET/RESET seen in the current transaction, applied when it commits.
    pending_changes: Vec<Change>,
    /// An error occurred in the current transaction.
    failed: bool,
    /// After a checkout failure mid-batch: drop messages until Sync, like Postgres does.
    skip_until_sync: bool,
    /// query_timeout expired and a cancel was sent for the running query.
    cancel_sent: bool,
    /// The server died while this client sat idle in a transaction: its next request fails.
    lost_transaction: Option<ErrorResponse>,
}

/// What the client logged in with.
struct Login {
    user: String,
    database: String,
    params: session::SessionParams,
    key: crate::backend::server::BackendKey,
    cancel: Arc<crate::frontend::cancel::CancelTarget>,
}

impl Client {
    /// Wraps a logged-in connection.
    pub fn new(logged_in: LoggedIn, state: Arc<PoolerState>) -> Client {
        let generation = state.generation();
        Client {
            stream: logged_in.stream,
            buf: logged_in.buf,
            out: BytesMut::with_capacity(16 * 1024),
            state,
            cluster: logged_in.cluster,
            generation,
            login: Login {
                user: logged_in.user,
                database: logged_in.database,
                params: logged_in.params,
                key: logged_in.key,
                cancel: logged_in.cancel,
            },
            server: None,
            statements: ClientStatements::default(),
            pending_changes: Vec::new(),
            failed: false,
            skip_until_sync: false,
            cancel_sent: false,
            lost_transaction: None,
        }
    }

    /// Serves the client until it disconnects, pgdog shuts down or an error closes it.
    pub async fn run(mut self) {
        let result = self.serve().await;
        self.state.cancels.unregister(self.login.key);
        match result {
            Ok(exit) => debug!(
                "client {}@{} left: {exit:?}",
                self.login.user, self.login.database
            ),
            Err(e) => {
                debug!(
                    "client {}@{} closed: {e}",
                    self.login.user, self.login.database
                );
                let _ = self.stream.write_all(&e.to_response().to_bytes()).await;
            }
        }
        if let Some(mut server) = self.server.take() {
            if self.cluster.pooler_mode == PoolerMode::Session {
                // The next client must get a clean session: no open transaction, settings,
                // statements or temp tables. A server that cannot be reset is closed.
                if server.status != b'I' && server.pending.is_empty() && !server.copy {
                    server.run_internal("ROLLBACK").await;
                }
                if server.is_clean() {
                    server.reset_session().await;
                } else {
                    server.broken = true;
                }
            }
        }
        let _ = self.stream.shutdown().await;
    }

    async fn serve(&mut self) -> Result<Exit, Error> {
        let mut shutdown = self.state.shutdown_signal();
        // One registration for the whole session, not one per transaction.
        let shutdown_changed = shutdown.changed();
        tokio::pin!(shutdown_changed);
        let general = self.state.databases().config().config.general.clone();
        let client_idle_timeout = as_duration(general.client_idle_timeout);
        let query_timeout = as_duration(general.query_timeout);
        loop {
            // Leave when shutting down, as soon as no transaction is open.
            let shutting_down = self.state.shutting_down();
            if shutting_down && self.server.is_none() {
                return self
                    .fatal(ErrorResponse::fatal(
                        sqlstate::ADMIN_SHUTDOWN,
                        "pgdog is shutting down",
                    ))
                    .await;
            }
            let holding = self.server.is_some();
            // query_timeout counts only while the server owes the client an answer.
            let waiting = self.server.as_ref().is_some_and(|s| !s.pending.is_empty());
            let event = {
                let Client {
                    stream,
                    buf,
                    server,
                    cancel_sent,
                    ..
                } = &mut *self;
                tokio::select! {
                    read = async {
                        match server.as_mut() {
                            Some(server) => server.read().await,
                            None => std::future::pending().await,
                        }
                    } => Event::Server(read),
                    read = read_client(stream, buf) => Event::Client(read),
                    _ = &mut shutdown_changed, if !holding && !shutting_down => Event::Shutdown,
                    _ = sleep_or_never(client_idle_timeout), if !holding => Event::IdleTimeout,
                    _ = sleep_or_never(query_timeout), if waiting && !*cancel_sent => Event::QueryTimeout,
                }
            };
            match event {
                Event::Server(Ok(n)) if n > 0 => self.on_server_data().await?,
                Event::Server(_) => self.on_server_lost().await?,
                Event::Client(read) => {
                    if read? == 0 {
                        return Ok(Exit::Disconnected);
                    }
                    if let Some(exit) = self.on_client_data().await? {
                        return Ok(exit);
                    }
                }
                Event::Shutdown => {}
                Event::IdleTimeout => {
                    return self
                        .fatal(ErrorResponse::fatal(
                            sqlstate::IDLE_SESSION_TIMEOUT,
                            "terminating connection due to client_idle_timeout",
                        ))
                        .await;
                }
                Event::QueryTimeout => self.cancel_running_query().await,
            }
        }
    }

    async fn fatal(&mut self, error: ErrorResponse) -> Result<Exit, Error> {
        let _ = self.stream.write_all(&error.to_bytes()).await;
        Ok(Exit::Closed)
    }

    /// query_timeout: ask the server to cancel; the client gets the server's 57014 error.
    async fn cancel_running_query(&mut self) {
        self.cancel_sent = true;
        if let Some(server) = self.server.as_ref() {
            let addr = server.addr().clone();
            let key = server.key();
            warn!(
                "query_timeout reached for {}@{}; cancelling",
                self.login.user, self.login.database
            );
            tokio::spawn(async move {
                let _ = crate::backend::server::cancel(&addr.host, addr.port, key).await;
            });
        }
    }

    /// Handles everything the client has sent. Returns an exit when the client is done.
    async fn on_client_data(&mut self) -> Result<Option<Exit>, Error> {
        let mut frames = Vec::new();
        while let Some(frame) = Frame::take(&mut self.buf, MAX_MESSAGE_LEN)? {
            tracing::trace!(
                "client -> {:?} ({} bytes)",
                frame.tag as char,
                frame.bytes.len()
            );
            check_client_message(&frame)?;
            if frame.tag == b'X' {
                self.send_batch(frames).await?;
                return Ok(Some(Exit::Disconnected));
            }
            frames.push(frame);
        }
        if !frames.is_empty() {
            self.send_batch(frames).await?;
        }
        Ok(None)
    }

    /// Sends one batch of client messages to a server, checking one out if needed.
    async fn send_batch(&mut self, mut frames: Vec<Frame>) -> Result<(), Error> {
        if frames.is_empty() {
            return Ok(());
        }
        if self.skip_until_sync {
            match frames.iter().position(|f| f.tag == b'S') {
                Some(i) => {
                    frames.drain(..=i);
                    self.skip_until_sync = false;
                    if self.server.is_none() {
                        self.out.extend_from_slice(&messages::ready_for_query(b'I'));
                    }
                }
                None => return Ok(()),
            }
            if frames.is_empty() {
                return self.flush_client().await;
            }
        }
        // Housekeeping a driver sends on its own (closing statements) is answered first, so the
        // error of a lost transaction reaches the client's next real request.
        if self.server.is_none() && self.answer_without_server(&frames) {
            return self.flush_client().await;
        }
        if let Some(error) = self.lost_transaction.take() {
            return self.fail_batch(&frames, error).await;
        }
        if self.server.is_none() {
            match self.checkout().await {
                Ok(server) => self.server = Some(server),
                Err(error) => return self.fail_batch(&frames, error).await,
            }
        }
        let mut to_server =
            BytesMut::with_capacity(frames.iter().map(|f| f.bytes.len()).sum::<usize>() + 64);
        let transaction_mode = self.cluster.pooler_mode == PoolerMode::Transaction;
        let Some(server) = self.server.as_mut() else {
            return Ok(());
        };
        for frame in frames {
            match frame.tag {
                b'Q' => {
                    self.pending_changes.extend(session::changes(frame.body()));
                    server.pending.push(Expect::Query);
                    to_server.extend_from_slice(&frame.bytes);
                }
                // FunctionCall (libpq's fast path, used for large objects): one reply and
                // ReadyForQuery, like a simple query.
                b'F' => {
                    server.pending.push(Expect::Query);
                    to_server.extend_from_slice(&frame.bytes);
                }
                b'P' => {
                    server.unsynced = true;
                    let parse = Parse::decode(&frame)?;
                    self.pending_changes
                        .extend(session::changes(parse.query.as_bytes()));
                    if transaction_mode && !parse.name.is_empty() {
                        self.statements
                            .parse(&parse, &self.state.prepared, server, &mut to_server);
                    } else {
                        server.pending.push(Expect::Parse(None));
                        to_server.extend_from_slice(&frame.bytes);
                    }
                }
                b'B' if transaction_mode => {
                    server.unsynced = true;
                    self.statements.bind(&frame, server, &mut to_server)?;
                }
                b'D' if transaction_mode => {
                    server.unsynced = true;
                    self.statements.describe(&frame, server, &mut to_server)?;
                }
                b'C' if transaction_mode => {
                    server.unsynced = true;
                    self.statements.close(&frame, server, &mut to_server)?;
                }
                // Session mode: statements live on the client's own server, names unchanged.
                b'B' | b'D' | b'C' => {
                    server.unsynced = true;
                    server.pending.push(match frame.tag {
                        b'B' => Expect::Bind,
                        b'D' => Expect::Describe,
                        _ => Expect::Close,
                    });
                    to_server.extend_from_slice(&frame.bytes);
                }
                b'E' => {
                    server.unsynced = true;
                    server.pending.push(Expect::Execute);
                    to_server.extend_from_slice(&frame.bytes);
                }
                b'S' => {
                    server.unsynced = false;
                    if !server.copy_in {
                        server.pending.push(Expect::Sync);
                    }
                    to_server.extend_from_slice(&frame.bytes);
                }
                b'c' | b'f' => {
                    server.copy_in = false;
                    to_server.extend_from_slice(&frame.bytes);
                }
                // Flush, CopyData.
                _ => to_server.extend_from_slice(&frame.bytes),
            }
        }
        self.cancel_sent = false;
        if !to_server.is_empty() && server.send(&to_server).await.is_err() {
            return self.on_server_lost().await;
        }
        if let Some(server) = self.server.as_mut() {
            server.pending.drain_synthetic(&mut self.out);
        }
        // Return the server before writing to the client: the write wakes the client, and
        // pgdog should be ready to sleep by then.
        self.release_if_done();
        self.flush_client().await
    }

    /// A batch that needs no server (see `ClientStatements::answer_without_server`).
    fn answer_without_server(&mut self, frames: &[Frame]) -> bool {
        self.cluster.pooler_mode == PoolerMode::Transaction
            && self
                .statements
                .answer_without_server(frames, &self.state.prepared, &mut self.out)
    }

    /// Checks out a server from the client's cluster and brings its session settings in line.
    /// A reload may close the pool a client is waiting on: it then waits on the new one.
    async fn checkout(&mut self) -> Result<Guard, ErrorResponse> {
        let mut attempts = 0;
        let mut server = loop {
            attempts += 1;
            self.refresh_cluster()?;
            let Some(pool) = self.cluster.primary() else {
                return Err(ErrorResponse::error(
                    sqlstate::CLIENT_UNABLE_TO_ESTABLISH_CONNECTION,
                    format!(
                        "database \"{}\" has no primary configured",
                        self.login.database
                    ),
                ));
            };
            match pool.get().await {
                Ok(server) => break server,
                Err(PoolError::Closed(_)) if attempts < 5 => continue,
                Err(e @ PoolError::CheckoutTimeout { .. }) => {
                    return Err(ErrorResponse::error(sqlstate::TOO_MANY_CONNECTIONS, e.to_string()).hint(
                        "raise pool_size or checkout_timeout, or find what holds connections (long transactions)",
                    ))
                }
                Err(e) => {
                    return Err(ErrorResponse::error(
                        sqlstate::CLIENT_UNABLE_TO_ESTABLISH_CONNECTION,
                        e.to_string(),
                    ))
                }
            }
        };
        if let Some(sql) = self
            .login
            .params
            .sync_sql(&server.session, server.session_fingerprint)
        {
            // Pipelined ahead of the client's messages; its replies are swallowed.
            server.pending.push(Expect::Internal);
            if server.send(&messages::query(&sql)).await.is_err() {
                return Err(ErrorResponse::error(
                    sqlstate::CONNECTION_FAILURE,
                    format!("lost connection to server {}", server.addr()),
                ));
            }
            server.session = self.login.params.current().clone();
            server.session_fingerprint = self.login.params.fingerprint();
        }
        self.login
            .cancel
            .set(Some((server.addr().clone(), server.key())));
        Ok(server)
    }

    /// After a reload, picks up the new pools for this client's user and database.
    fn refresh_cluster(&mut self) -> Result<(), ErrorResponse> {
        let generation = self.state.generation();
        if generation == self.generation {
            return Ok(());
        }
        self.generation = generation;
        match self.state.databases().cluster(&self.login.user, &self.login.database) {
            Some(cluster) => {
                self.cluster = cluster.clone();
                Ok(())
            }
            None => Err(ErrorResponse::error(
                sqlstate::INVALID_PASSWORD,
                format!(
                    "user \"{}\" no longer has access to database \"{}\" after a configuration reload",
                    self.login.user, self.login.database
                ),
            )),
        }
    }

    /// Forwards what the server sent, and returns the server once its transaction is over.
    async fn on_server_data(&mut self) -> Result<(), Error> {
        let Some(server) = self.server.as_mut() else {
            return Ok(());
        };
        loop {
            let frame = match server.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    warn!("protocol error from server {}: {e}", server.addr());
                    return self.on_server_lost().await;
                }
            };
            tracing::trace!(
                "server -> {:?} ({} bytes)",
                frame.tag as char,
                frame.bytes.len()
            );
            if frame.tag == b'E' && is_fatal(&frame) {
                // The server is ending this connection (terminated backend, shutdown): the
                // client's connection to pgdog need not end with it.
                let error = ErrorResponse::parse(frame.body())?;
                let error = ErrorResponse::error(&error.code, error.message)
                    .detail("the server closed pgdog's connection; the transaction, if any, was rolled back");
                return self.server_gone(error).await;
            }
            let route = {
                let server = &mut **server;
                server.pending.route(&frame, &mut server.prepared)
            };
            match frame.tag {
                b'Z' => {
                    let status = messages::ready_status(&frame)?;
                    server.status = status;
                    if route == Route::Forward && status == b'I' {
                        // Settings changed in a transaction that committed become the client's.
                        if !self.failed {
                            for change in &self.pending_changes {
                                self.login.params.apply(change);
                                session::apply_to_server(&mut server.session, change);
                                if change.drops_prepared_statements() {
                                    server.prepared.clear();
                                    self.statements.clear();
                                }
                            }
                            if !self.pending_changes.is_empty() {
                                server.session_fingerprint =
                                    crate::backend::server::settings_fingerprint(&server.session);
                            }
                        }
                        self.pending_changes.clear();
                        self.failed = false;
                    }
                }
                b'E' if route == Route::Forward => {
                    self.failed = true;
                    server.copy = false;
                    server.copy_in = false;
                }
                b'E' => {
                    // Restoring the client's settings failed: say so instead of running its
                    // queries with other settings silently.
                    let error = ErrorResponse::parse(frame.body())?;
                    warn!(
                        "restoring session settings failed on {}: {error}",
                        server.addr()
                    );
                    let notice = ErrorResponse::with_severity(
                        "WARNING",
                        &error.code,
                        format!(
                            "pgdog could not restore this session's settings on the server: {}",
                            error.message
                        ),
                    );
                    self.out.extend_from_slice(&notice.to_notice());
                }
                b'C' => {
                    server.copy = false;
                    if messages::command_tag(&frame)? == "ROLLBACK" {
                        self.failed = true;
                    }
                }
                b'G' => {
                    server.copy = true;
                    server.copy_in = true;
                    server.pending.copy_in_started();
                }
                b'H' | b'W' => server.copy = true,
                _ => {}
            }
            if route == Route::Forward {
                self.out.extend_from_slice(&frame.bytes);
            }
            server.pending.drain_synthetic(&mut self.out);
            if self.out.len() > 64 * 1024 {
                flush(&mut self.stream, &mut self.out).await?;
            }
        }
        // Return the server before writing to the client: the write wakes the client, and
        // pgdog should be ready to sleep by then.
        self.release_if_done();
        self.flush_client().await
    }

    /// The server connection broke mid-request: tell the client, drop the server.
    async fn on_server_lost(&mut self) -> Result<(), Error> {
        let Some(server) = self.server.as_ref() else {
            return Ok(());
        };
        let in_transaction = server.status != b'I';
        let error = ErrorResponse::error(
            sqlstate::CONNECTION_FAILURE,
            format!("lost connection to server {}", server.addr()),
        )
        .detail(if in_transaction {
            "the open transaction was rolled back"
        } else {
            "the statement may or may not have completed"
        });
        self.server_gone(error).await
    }

    /// Drops a dead server and tells the client with `error`; the client stays connected and
    /// its next transaction gets another server.
    /// A client that was not waiting for anything (idle in transaction) gets the error as the
    /// answer to its next request: unsolicited messages would confuse its driver.
    async fn server_gone(&mut self, error: ErrorResponse) -> Result<(), Error> {
        let mut waiting = false;
        if let Some(mut server) = self.server.take() {
            server.broken = true;
            waiting = !server.pending.is_empty();
        }
        self.login.cancel.set(None);
        self.pending_changes.clear();
        self.failed = false;
        if waiting {
            self.out.extend_from_slice(&error.to_bytes());
            self.out.extend_from_slice(&messages::ready_for_query(b'I'));
            self.flush_client().await
        } else {
            self.lost_transaction = Some(error);
            Ok(())
        }
    }

    /// Answers a batch with `error` instead of running it: ReadyForQuery follows at once for a
    /// simple query or Sync, else the extended-protocol messages up to the next Sync are dropped.
    async fn fail_batch(&mut self, frames: &[Frame], error: ErrorResponse) -> Result<(), Error> {
        self.out.extend_from_slice(&error.to_bytes());
        if frames.iter().any(|f| f.tag == b'Q' || f.tag == b'S') {
            self.out.extend_from_slice(&messages::ready_for_query(b'I'));
        } else {
            self.skip_until_sync = true;
        }
        self.flush_client().await
    }

    fn release_if_done(&mut self) {
        let release = match self.server.as_ref() {
            Some(server) => {
                self.cluster.pooler_mode == PoolerMode::Transaction && server.is_clean()
            }
            None => false,
        };
        if release {
            self.server = None;
            self.login.cancel.set(None);
        }
    }

    async fn flush_client(&mut self) -> Result<(), Error> {
        flush(&mut self.stream, &mut self.out).await
    }
}

/// Whether an ErrorResponse has severity FATAL or PANIC (the server closes after it).
fn is_fatal(frame: &Frame) -> bool {
    ErrorResponse::parse(frame.body())
        .map(|e| e.severity == "FATAL" || e.severity == "PANIC")
        .unwrap_or(false)
}

/// Rejects message types a client may not send after startup.
fn check_client_message(frame: &Frame) -> Result<(), Error> {
    match frame.tag {
        b'Q' | b'F' | b'P' | b'B' | b'D' | b'E' | b'C' | b'S' | b'H' | b'd' | b'c' | b'f'
        | b'X' => {
            let fixed_empty = matches!(frame.tag, b'S' | b'H' | b'c' | b'X');
            if fixed_empty && frame.bytes.len() != 5 {
                return Err(Error::BadLength {
                    tag: frame.tag,
                    len: frame.bytes.len() as i64 - 1,
                });
            }
            Ok(())
        }
        tag => Err(Error::Unexpected {
            tag,
            context: "from client (not a frontend message type)",
        }),
    }
}

async fn read_client(stream: &mut Stream, buf: &mut BytesMut) -> Result<usize, Error> {
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(16 * 1024);
    }
    Ok(stream.read_buf(buf).await?)
}

async fn flush(stream: &mut Stream, out: &mut BytesMut) -> Result<(), Error> {
    if !out.is_empty() {
        stream.write_all(out).await?;
        out.clear();
    }
    Ok(())
}

async fn sleep_or_never(duration: Option<Duration>) {
    match duration {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}
