//! One logged-in client: the proxy loop between it and the server it holds. In transaction
//! mode a server is checked out for each transaction and returned at ReadyForQuery idle;
//! named prepared statements and `SET`s are carried from server to server.

mod sharded;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use pgdog_config::{as_duration, PoolerMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, warn};

use crate::backend::databases::Cluster;
use crate::backend::expect::{Expect, Route};
use crate::backend::pool::{Guard, Pool, PoolError};
use crate::backend::stats::{add, micros, ConnState};
use crate::frontend::aborted;
use crate::frontend::clients::Registered;
use crate::frontend::ddl_capture::DdlCapture;
use crate::frontend::login::LoggedIn;
use crate::frontend::reads;
use crate::frontend::session::{self, Change};
use crate::frontend::statements::ClientStatements;
use crate::gate::{Gate, Pass};
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
    /// The client's transaction was lost with its server: statements fail until it ends the
    /// transaction (see `aborted`).
    aborted: bool,
    /// This client's entry in `SHOW CLIENTS`.
    registered: Registered,
    /// The traffic gate of its database (`PAUSE`).
    gate: Arc<Gate>,
    /// Held from the first request of a transaction to its end.
    pass: Option<Pass>,
    /// When the current transaction started.
    xact_start: Option<Instant>,
    /// When the oldest unanswered request was sent.
    request_start: Option<Instant>,
    /// A read sent to a replica, kept until its first reply so it can be resent elsewhere if
    /// that server turns out to be dead.
    retry: Option<Vec<Frame>>,
    /// Resends of the current read.
    retries: u8,
    /// The sharded executor's state (databases with several shards).
    sharded: sharded::State,
    /// DDL run while a replication stream reads the database, written to the WAL for it.
    ddl: DdlCapture,
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
        let registered = state.clients.register(
            &logged_in.user,
            &logged_in.database,
            logged_in.peer,
            &logged_in.application_name,
        );
        let gate = state.gate(&logged_in.database);
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
            aborted: false,
            registered,
            gate,
            pass: None,
            xact_start: None,
            request_start: None,
            retry: None,
            retries: 0,
            sharded: sharded::State::default(),
            ddl: DdlCapture::default(),
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
            if shutting_down && self.server.is_none() && !self.sharded.holding() {
                return self
                    .fatal(ErrorResponse::fatal(
                        sqlstate::ADMIN_SHUTDOWN,
                        "pgdog is shutting down",
                    ))
                    .await;
            }
            let holding = self.server.is_some() || self.sharded.holding();
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
            // Messages held while DDL was answered and recorded go on now.
            if let Some(frames) = self.ddl.take_held() {
                self.dispatch(frames).await?;
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
        if self.server.is_some() {
            warn!(
                "query_timeout reached for {}@{}; cancelling",
                self.login.user, self.login.database
            );
            // Counted from now: the server is not reused until the cancel has landed.
            let cancel = self.login.cancel.start_cancel();
            tokio::spawn(cancel.deliver());
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
                self.dispatch(frames).await?;
                return Ok(Some(Exit::Disconnected));
            }
            frames.push(frame);
        }
        if !frames.is_empty() {
            self.dispatch(frames).await?;
        }
        Ok(None)
    }

    /// Sends client messages on: through the sharding router for a database with several
    /// shards, straight to the client's server otherwise.
    async fn dispatch(&mut self, frames: Vec<Frame>) -> Result<(), Error> {
        if self.ddl.is_awaiting() {
            frames.into_iter().for_each(|frame| self.ddl.hold(frame));
            return Ok(());
        }
        if self.server.is_none() && self.pass.is_none() && self.gate.is_paused() {
            // Wait before routing: a cutover switches what this database is (one server or
            // several shards) while its clients wait.
            self.wait_gate_open().await;
        }
        if self.server.is_none() {
            // A reload or a cutover may have changed what this database is (one server or
            // several shards): route by the current one. A failure is reported at checkout.
            let _ = self.refresh_cluster();
        }
        if self.cluster.is_sharded() && self.server.is_none() {
            self.sharded_frames(frames).await
        } else {
            self.send_batch(frames).await
        }
    }

    /// Sends one batch of client messages to a server, checking one out if needed.
    async fn send_batch(&mut self, mut frames: Vec<Frame>) -> Result<(), Error> {
        if frames.is_empty() {
            return Ok(());
        }
        if self.server.is_none() {
            // A driver's housekeeping (closing statements) does not take the news of a lost
            // transaction: the client's next real request does.
            let housekeeping = frames.iter().all(|f| matches!(f.tag, b'C' | b'S' | b'H'));
            if self.lost_transaction.is_some() && housekeeping {
                aborted::answer(&frames, &self.statements, &mut self.out);
                return self.flush_client().await;
            }
            if let Some(error) = self.lost_transaction.take() {
                self.skip_until_sync = false;
                self.aborted =
                    aborted::fail_first(&frames, &error, &self.statements, &mut self.out);
                return self.flush_client().await;
            }
            if self.aborted {
                self.aborted = aborted::answer(&frames, &self.statements, &mut self.out);
                return self.flush_client().await;
            }
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
        if self.pass.is_none() {
            let waited = self.gate.is_paused();
            if !self.begin_transaction().await {
                let error =
                    ErrorResponse::error(sqlstate::ADMIN_SHUTDOWN, "pgdog is shutting down")
                        .detail("the database was paused; the statement did not run");
                return self.fail_batch(&frames, error).await;
            }
            if waited && self.server.is_none() {
                // A cutover may have switched the database to shards while this client
                // waited: its transaction must go through the router.
                let _ = self.refresh_cluster();
                if self.cluster.is_sharded() {
                    return Box::pin(self.sharded_frames(frames)).await;
                }
            }
        }
        if self.server.is_none() {
            let read = self.read_only(&frames);
            match self.checkout(read).await {
                Ok(server) => self.server = Some(server),
                Err(error) => {
                    self.end_transaction();
                    return self.fail_batch(&frames, error).await;
                }
            }
            self.retry = read.then(|| frames.clone());
        }
        let stats = &self.registered.info().stats;
        stats.touch();
        stats.set_state(ConnState::Active);
        if self.request_start.is_none()
            && frames.iter().any(|f| matches!(f.tag, b'Q' | b'S' | b'F'))
        {
            self.request_start = Some(Instant::now());
        }
        let mut to_server =
            BytesMut::with_capacity(frames.iter().map(|f| f.bytes.len()).sum::<usize>() + 64);
        let transaction_mode = self.cluster.pooler_mode == PoolerMode::Transaction;
        let Some(server) = self.server.as_mut() else {
            return Ok(());
        };
        let (replication, database) = (&self.state.replication, &self.login.database);
        for frame in frames {
            // After a request that ran DDL on a database being moved, the rest waits for its
            // answer (see `ddl_capture`).
            if self.ddl.is_awaiting() {
                self.ddl.hold(frame);
                continue;
            }
            self.ddl
                .outgoing(&frame, || replication.is_source(database));
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
                        b'D' => Expect::Describe(None),
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
        let bytes = to_server.len() as u64;
        add(&self.registered.info().stats.bytes_received, bytes);
        add(&server.stats.bytes_received, bytes);
        add(&server.pool().stats().received, bytes);
        if !to_server.is_empty() && server.send(&to_server).await.is_err() {
            return self.on_server_lost().await;
        }
        if let Some(server) = self.server.as_mut() {
            server.pending.drain_synthetic(&mut self.out);
        }
        // Return the server before writing to the client: the write wakes the client, and
        // pgdog should be ready to sleep by then.
        self.release_if_done();
        if self.retry.is_some() {
            // Replies pgdog made up itself (e.g. ParseComplete of a statement the server has)
            // wait for the server's first reply: if the server turns out dead, the read is
            // resent elsewhere and they are made again, so the client must not see them twice.
            return Ok(());
        }
        self.flush_client().await
    }

    /// A batch that needs no server (see `ClientStatements::answer_without_server`).
    fn answer_without_server(&mut self, frames: &[Frame]) -> bool {
        self.cluster.pooler_mode == PoolerMode::Transaction
            && self
                .statements
                .answer_without_server(frames, &self.state.prepared, &mut self.out)
    }

    /// How long a failing server stays banned (`ban_timeout`, as configured now).
    fn ban_timeout(&self) -> Duration {
        Duration::from_millis(self.state.databases().config().config.general.ban_timeout)
    }

    /// Waits until the database's traffic gate lets a transaction start (`PAUSE`).
    /// Returns false if pgdog began shutting down while the database was paused.
    async fn begin_transaction(&mut self) -> bool {
        let stats = &self.registered.info().stats;
        if self.gate.is_paused() {
            stats.set_state(ConnState::Waiting);
        }
        let mut shutdown = self.state.shutdown_signal();
        // Biased: an open gate lets the transaction start even during a shutdown drain.
        let pass = tokio::select! {
            biased;
            pass = self.gate.enter() => pass,
            _ = shutdown.wait_for(|down| *down) => {
                stats.set_state(ConnState::Idle);
                return false;
            }
        };
        self.pass = Some(pass);
        self.xact_start = Some(Instant::now());
        true
    }

    /// Waits until the database's traffic gate is open, without starting a transaction (or
    /// until pgdog shuts down: the transaction's start then reports it).
    async fn wait_gate_open(&mut self) {
        let stats = &self.registered.info().stats;
        stats.set_state(ConnState::Waiting);
        let mut shutdown = self.state.shutdown_signal();
        tokio::select! {
            biased;
            pass = self.gate.enter() => drop(pass),
            _ = shutdown.wait_for(|down| *down) => {}
        }
        stats.set_state(ConnState::Idle);
    }

    /// The transaction is over (committed, rolled back or lost): counts it and lets a paused
    /// database see it finished.
    fn end_transaction(&mut self) {
        let info = self.registered.info();
        if let Some(start) = self.xact_start.take() {
            let elapsed = start.elapsed();
            add(&info.stats.transactions, 1);
            add(&info.stats.xact_time_us, micros(elapsed));
            if let Some(server) = self.server.as_ref() {
                add(&server.stats.transactions, 1);
                let pool = server.pool().stats();
                add(&pool.xact_count, 1);
                pool.xact_time.record(elapsed);
            }
        }
        info.prepared_statements.store(
            self.statements.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        info.stats.set_state(ConnState::Idle);
        self.pass = None;
        self.request_start = None;
        self.retry = None;
        self.retries = 0;
    }

    /// Whether a batch may go to a replica: transaction mode, replicas configured, and a
    /// complete request that only reads (see `reads`). Called only outside transactions.
    fn read_only(&self, frames: &[Frame]) -> bool {
        self.cluster.pooler_mode == PoolerMode::Transaction
            && self.cluster.has_replicas()
            && reads::read_only_batch(frames, &self.statements, &self.state.access)
    }

    /// Checks out a server from the client's cluster and brings its session settings in line:
    /// a replica (or the primary) for reads, the primary otherwise. A server that cannot be
    /// reached is banned and the next candidate tried. A reload may close the pool a client is
    /// waiting on: it then waits on the new one.
    async fn checkout(&mut self, read: bool) -> Result<Guard, ErrorResponse> {
        self.checkout_shard(0, read).await
    }

    /// [`Client::checkout`] from shard `shard` of the cluster.
    async fn checkout_shard(&mut self, shard: usize, read: bool) -> Result<Guard, ErrorResponse> {
        let started = Instant::now();
        let mut attempts = 0;
        let mut server = 'found: loop {
            attempts += 1;
            self.refresh_cluster()?;
            // Writes (the hot path) take the primary without allocating a candidate list.
            let primary = if read {
                None
            } else {
                self.cluster.primary_of(shard).cloned()
            };
            let reads = if read {
                self.cluster.read_order_of(shard)
            } else {
                Vec::new()
            };
            let candidates: &[Pool] = if read { &reads } else { primary.as_slice() };
            if candidates.is_empty() {
                return Err(ErrorResponse::error(
                    sqlstate::CLIENT_UNABLE_TO_ESTABLISH_CONNECTION,
                    format!(
                        "database \"{}\" has no primary configured for shard {shard}",
                        self.login.database
                    ),
                ));
            }
            let mut last_error = None;
            for pool in candidates {
                match pool.get().await {
                    Ok(server) => break 'found server,
                    Err(PoolError::Server(e)) if read => {
                        pool.ban(e.to_string(), Some(self.ban_timeout()));
                        last_error = Some(PoolError::Server(e));
                    }
                    Err(e) => {
                        last_error = Some(e);
                        break;
                    }
                }
            }
            match last_error {
                Some(PoolError::Closed(_)) if attempts < 5 => continue,
                Some(e @ PoolError::CheckoutTimeout { .. }) => {
                    return Err(ErrorResponse::error(sqlstate::TOO_MANY_CONNECTIONS, e.to_string()).hint(
                        "raise pool_size or checkout_timeout, or find what holds connections (long transactions)",
                    ))
                }
                Some(e) => {
                    return Err(ErrorResponse::error(
                        sqlstate::CLIENT_UNABLE_TO_ESTABLISH_CONNECTION,
                        e.to_string(),
                    ))
                }
                None => continue,
            }
        };
        let waited = started.elapsed();
        let pool = server.pool().stats();
        add(&pool.server_assignment_count, 1);
        pool.wait_time.record(waited);
        add(&self.registered.info().stats.wait_time_us, micros(waited));
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
        match self.state.databases().cluster(&self.login.user, &self.login.database) {
            Some(cluster) => {
                self.cluster = cluster.clone();
                self.generation = generation;
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
        let mut sent = 0u64;
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
            if route == Route::Forward && self.ddl.is_awaiting() {
                self.ddl.incoming(&frame, server, &mut self.out).await;
            }
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
                // A reply (not an asynchronous notice) reached the client: too late to resend.
                if !matches!(frame.tag, b'N' | b'S' | b'A') {
                    self.retry = None;
                }
                self.out.extend_from_slice(&frame.bytes);
                sent += frame.bytes.len() as u64;
                match frame.tag {
                    b'E' => {
                        add(&self.registered.info().stats.errors, 1);
                        add(&server.stats.errors, 1);
                        add(&server.pool().stats().errors, 1);
                    }
                    b'Z' => {
                        let elapsed = self.request_start.map(|s| s.elapsed()).unwrap_or_default();
                        self.request_start = (!server.pending.is_empty()).then(Instant::now);
                        let info = self.registered.info();
                        add(&info.stats.queries, 1);
                        add(&info.stats.query_time_us, micros(elapsed));
                        if server.status != b'I' && server.pending.is_empty() {
                            info.stats.set_state(ConnState::IdleInTransaction);
                        }
                        add(&server.stats.queries, 1);
                        let pool = server.pool().stats();
                        add(&pool.query_count, 1);
                        pool.query_time.record(elapsed);
                    }
                    _ => {}
                }
            }
            server.pending.drain_synthetic(&mut self.out);
            if self.out.len() > 64 * 1024 {
                flush(&mut self.stream, &mut self.out).await?;
            }
        }
        add(&self.registered.info().stats.bytes_sent, sent);
        add(&server.stats.bytes_sent, sent);
        add(&server.pool().stats().sent, sent);
        if server.pending.is_empty() {
            self.settle_cancels().await;
        }
        // Return the server before writing to the client: the write wakes the client, and
        // pgdog should be ready to sleep by then.
        self.release_if_done();
        self.flush_client().await
    }

    /// Before the server runs anything else, waits for cancel requests still being delivered
    /// to it; a server that cannot be trusted not to get one late is closed, not reused.
    async fn settle_cancels(&mut self) {
        if !self.login.cancel.settled().await {
            if let Some(server) = self.server.as_mut() {
                warn!(
                    "a cancel request to {} was not confirmed; closing that connection",
                    server.addr()
                );
                server.broken = true;
            }
        }
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
        // A read that got no reply yet is resent to another server; this one is banned.
        if self.retries < 3 && self.server.is_some() {
            if let Some(frames) = self.retry.take() {
                if let Some(mut server) = self.server.take() {
                    server.broken = true;
                    server
                        .pool()
                        .ban(error.message.clone(), Some(self.ban_timeout()));
                }
                debug!("resending a read elsewhere: {}", error.message);
                // Only pgdog's own replies to this batch are buffered; they are made again.
                self.out.clear();
                self.retries += 1;
                return Box::pin(self.send_batch(frames)).await;
            }
        }
        self.end_transaction();
        self.ddl.server_lost();
        let mut waiting = false;
        let mut in_transaction = false;
        if let Some(mut server) = self.server.take() {
            server.broken = true;
            waiting = !server.pending.is_empty();
            in_transaction = server.status != b'I';
        }
        self.login.cancel.set(None);
        self.pending_changes.clear();
        self.failed = false;
        if waiting {
            // Like an error inside a transaction on Postgres: the client must roll back.
            self.aborted = in_transaction;
            self.skip_until_sync = false;
            self.out.extend_from_slice(&error.to_bytes());
            self.out
                .extend_from_slice(&messages::ready_for_query(if in_transaction {
                    b'E'
                } else {
                    b'I'
                }));
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

    /// At the end of a transaction: counts it, and in transaction mode returns the server.
    fn release_if_done(&mut self) {
        if !self.server.as_ref().is_some_and(|s| s.is_clean()) {
            return;
        }
        self.end_transaction();
        if self.cluster.pooler_mode == PoolerMode::Transaction {
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
        if tracing::enabled!(tracing::Level::TRACE) {
            let mut tags = String::new();
            let mut at = 0;
            while at + 5 <= out.len() {
                tags.push(out[at] as char);
                let len = u32::from_be_bytes([out[at + 1], out[at + 2], out[at + 3], out[at + 4]]);
                at += 1 + len as usize;
            }
            tracing::trace!("client <- {tags}");
        }
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
