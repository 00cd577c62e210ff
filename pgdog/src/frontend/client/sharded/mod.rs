//! The sharded executor: how a client of a database with several shards is served.
//!
//! Each statement is planned by the router (`router::plan`) and run on the shard(s) it names.
//! A statement for one shard is proxied as it is, replies streamed back; a statement for
//! several shards is sent to all of them at once and their answers merged (`router::merge`).
//! Requests are served one at a time: extended-protocol messages wait in a stash until their
//! `Execute` (the Bind parameters carry the sharding key), `Sync` or `Flush`.
//!
//! Transactions: `BEGIN` is answered by pgdog and replayed on each shard's server the first
//! time the transaction uses that shard; `COMMIT` commits every shard used, with two-phase
//! commit when `two_phase_commit` is on (see `transaction`). A statement that writes to several
//! shards outside a transaction runs in an implicit one, so it applies everywhere or nowhere.

mod copy;
mod execute;
mod key_update;
mod portals;
mod transaction;
mod unnamed;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use super::Client;
use crate::backend::pool::Guard;
use crate::net::messages::{self, Bind, Parse, Target};
use crate::net::{sqlstate, Error, ErrorResponse, Frame};
use crate::router::normalize::normalize;
use crate::router::plan::{Command, Statement as Planned};
use crate::router::route::{Params, Shards};

pub(super) use transaction::Transaction;

/// What the sharded executor keeps per client.
#[derive(Default)]
pub(super) struct State {
    /// Servers held, by shard number (during a transaction, or for the whole session in
    /// session mode).
    servers: Vec<Option<Guard>>,
    /// Shards whose server got extended-protocol messages since the last Sync.
    unsynced: Vec<usize>,
    /// Extended-protocol messages waiting for their Execute, Sync or Flush.
    stash: Vec<Frame>,
    /// The open transaction (the client's, or pgdog's implicit one).
    transaction: Option<Transaction>,
    /// `SET pgdog.shard` / `SET pgdog.sharding_key` outside a transaction: the shard(s) every
    /// statement of the session goes to until `RESET`.
    session_override: Option<Shards>,
    /// The unnamed statement: its text and raw parameter types (it outlives its batch).
    unnamed: Option<(Arc<str>, Bytes)>,
    /// An error ended this extended-protocol batch: messages are skipped until Sync.
    skipping: bool,
    /// A COPY FROM STDIN in progress.
    copy: Option<copy::CopyIn>,
    /// Column names of tables, looked up for INSERTs and COPYs without a column list.
    columns: HashMap<(Option<String>, String), Arc<Vec<String>>>,
    /// Counter for two-phase commit transaction ids.
    two_phase_counter: u64,
    /// Merged portals of cross-shard statements being fetched in pieces.
    portals: HashMap<String, portals::MergedPortal>,
}

impl State {
    /// Whether any server is held.
    pub(super) fn holding(&self) -> bool {
        self.servers.iter().any(Option::is_some)
    }

    /// Gives back every server (the client is leaving).
    pub(super) fn drop_servers(&mut self) -> Vec<Guard> {
        self.servers.iter_mut().filter_map(Option::take).collect()
    }

    fn held(&self) -> Vec<usize> {
        self.servers
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|_| i))
            .collect()
    }
}

/// How the statement being run reached pgdog.
pub(super) enum Wire<'a> {
    /// A simple query: the statement's text.
    Simple,
    /// An extended-protocol unit: the stashed messages up to and including Execute.
    Extended {
        /// The client's messages before its Bind (Parse, Describe statement, Close).
        prepare: &'a [Frame],
        /// Bind, Describe portal (optional) and Execute, as the client sent them.
        unit: &'a [Frame],
        /// The decoded Bind.
        bind: &'a Bind<'a>,
        /// The statement's raw parameter types (from its Parse).
        param_types: &'a [u8],
        /// The client's Sync follows: a single-shard statement is sent with it.
        sync: bool,
    },
}

impl Client {
    /// Serves client messages for a sharded database.
    pub(super) async fn sharded_frames(&mut self, frames: Vec<Frame>) -> Result<(), Error> {
        let shards = self.cluster.shards.len();
        if self.sharded.servers.len() != shards {
            self.sharded.servers.resize_with(shards, || None);
        }
        let stats = &self.registered.info().stats;
        stats.touch();
        stats.set_state(crate::backend::stats::ConnState::Active);
        if self.request_start.is_none() {
            self.request_start = Some(std::time::Instant::now());
        }
        let mut frames = frames.into_iter().peekable();
        while let Some(frame) = frames.next() {
            if self.sharded.copy.is_some() {
                match frame.tag {
                    b'd' | b'c' | b'f' => self.copy_frame(frame).await?,
                    // Ignored during COPY FROM STDIN, like Postgres does.
                    b'S' | b'H' => {}
                    tag => {
                        let message =
                            format!("unexpected message type 0x{tag:02X} during COPY from stdin");
                        let mut body = message.into_bytes();
                        body.push(0);
                        self.copy_frame(Frame::new(b'f', &body)).await?;
                    }
                }
                continue;
            }
            if self.sharded.skipping {
                if frame.tag == b'S' {
                    self.sharded_sync().await?;
                }
                continue;
            }
            match frame.tag {
                b'Q' => {
                    self.run_stash().await?;
                    self.sharded_query(&frame).await?;
                }
                b'P' | b'B' | b'D' | b'C' => self.sharded.stash.push(frame),
                b'E' => {
                    self.sharded.stash.push(frame);
                    // With its Sync right behind, a single-shard statement takes one round trip.
                    let sync_next = frames.peek().is_some_and(|f| f.tag == b'S');
                    self.run_unit(sync_next).await?;
                }
                b'S' => {
                    self.run_stash().await?;
                    self.sharded_sync().await?;
                }
                b'H' => self.run_stash().await?,
                b'F' => {
                    self.sharded_error(ErrorResponse::error(
                        sqlstate::FEATURE_NOT_SUPPORTED,
                        "the function call protocol message is not supported on a sharded database",
                    ));
                    self.ready_for_query();
                }
                // CopyData/CopyDone/CopyFail after a COPY that failed: ignored, like Postgres.
                _ => {}
            }
            if self.out.len() > 64 * 1024 {
                self.flush_client().await?;
            }
        }
        self.flush_client().await
    }

    /// The transaction status the client sees.
    fn sharded_status(&self) -> u8 {
        match &self.sharded.transaction {
            Some(tx) if !tx.implicit && tx.failed => b'E',
            Some(tx) if !tx.implicit => b'T',
            _ => b'I',
        }
    }

    /// Sends `error` to the client; in a transaction it fails; in an extended batch the rest
    /// is skipped until Sync.
    fn sharded_error(&mut self, error: ErrorResponse) {
        crate::backend::stats::add(&self.registered.info().stats.errors, 1);
        self.failed = true;
        self.out.extend_from_slice(&error.to_bytes());
        if let Some(tx) = self.sharded.transaction.as_mut() {
            tx.failed = true;
        }
    }

    /// A simple query: one or more statements.
    async fn sharded_query(&mut self, frame: &Frame) -> Result<(), Error> {
        let sql = crate::net::frame::Reader::new(frame.body())
            .cstr()?
            .to_string();
        self.pending_changes
            .extend(super::session::changes(sql.as_bytes()));
        if let Some((shard, read)) = self.normalized_shard(&sql) {
            // The hot path: a statement for one shard, routed from the analysis of its
            // constant-free text.
            self.exec_single(shard, &sql, read, &Wire::Simple).await?;
            self.end_implicit().await?;
            self.finish_request().await;
            self.ready_for_query();
            return Ok(());
        }
        let analysis = self.cluster.plans.get(&sql, &self.cluster.sharding);
        let statements = analysis.statements();
        if let [statement] = statements {
            if matches!(statement.command(), Command::Copy(_)) {
                self.run_statement(statement, &Params::NONE, &Wire::Simple)
                    .await?;
                if self.sharded.copy.is_some() {
                    // ReadyForQuery comes when the COPY ends.
                    return Ok(());
                }
                self.end_implicit().await?;
                self.finish_request().await;
                self.ready_for_query();
                return Ok(());
            }
        }
        if statements.is_empty() {
            self.out
                .extend_from_slice(&messages::empty_query_response());
        } else if let Some(shard) = self.whole_query_shard(statements) {
            // Every statement for the same shard: the text goes there as it is.
            self.exec_single(shard, &sql, false, &Wire::Simple).await?;
        } else {
            // Several statements in one query are one transaction in Postgres: across shards
            // too (unless the text manages its own transactions).
            let plain = statements
                .iter()
                .all(|s| matches!(s.command(), Command::Query | Command::Session));
            if statements.len() > 1 && plain && self.sharded.transaction.is_none() {
                self.begin_implicit().await;
            }
            for statement in statements {
                if self.sharded.copy.is_some() {
                    break;
                }
                let failed_before = self.sharded.transaction.as_ref().is_some_and(|t| t.failed);
                let errors = self.out.len();
                self.run_statement(statement, &Params::NONE, &Wire::Simple)
                    .await?;
                // Like Postgres: the first error ends a multi-statement query.
                let failed = self.sharded.transaction.as_ref().is_some_and(|t| t.failed)
                    || self.last_reply_is_error(errors);
                if failed && !failed_before {
                    break;
                }
            }
        }
        if self.sharded.copy.is_some() {
            // A COPY FROM STDIN started: ReadyForQuery comes when it ends.
            return Ok(());
        }
        self.end_implicit().await?;
        self.finish_request().await;
        self.ready_for_query();
        Ok(())
    }

    /// Ends a request: ReadyForQuery to the client, and the request counted.
    fn ready_for_query(&mut self) {
        self.out
            .extend_from_slice(&messages::ready_for_query(self.sharded_status()));
        let info = self.registered.info();
        let elapsed = self
            .request_start
            .take()
            .map(|s| s.elapsed())
            .unwrap_or_default();
        crate::backend::stats::add(&info.stats.queries, 1);
        crate::backend::stats::add(
            &info.stats.query_time_us,
            crate::backend::stats::micros(elapsed),
        );
        info.stats.set_state(match self.sharded_status() {
            b'I' => crate::backend::stats::ConnState::Idle,
            _ => crate::backend::stats::ConnState::IdleInTransaction,
        });
    }

    /// For a single statement whose constants [`normalize`] can take out: the one shard it goes
    /// to (and whether it only reads), from the cached analysis of the normalized text. `None`
    /// when the statement needs anything beyond one shard: it is then analysed as written.
    fn normalized_shard(&self, sql: &str) -> Option<(usize, bool)> {
        if self.sharded.transaction.as_ref().is_some_and(|t| t.failed) {
            return None;
        }
        let normalized = normalize(sql)?;
        let analysis = self
            .cluster
            .plans
            .get(&normalized.text, &self.cluster.sharding);
        let [statement] = analysis.statements() else {
            return None;
        };
        if !matches!(statement.command(), Command::Query) || statement.needs_columns().is_some() {
            return None;
        }
        let values: Vec<Option<&[u8]>> = normalized
            .literals
            .iter()
            .map(|l| Some(l.as_bytes()))
            .collect();
        let params = Params {
            values: &values,
            formats: &[],
            types: &[],
        };
        let route = statement
            .route(&params, None, &self.cluster.sharding)
            .ok()?;
        if route.rewrite.is_some() || !route.split.is_empty() || route.key_update.is_some() {
            return None;
        }
        match self.effective_shards(route.shards) {
            Shards::One(shard) => Some((shard, route.read)),
            _ => None,
        }
    }

    /// Whether an ErrorResponse was written to the client since `from` bytes of output.
    fn last_reply_is_error(&self, from: usize) -> bool {
        let mut at = from;
        let mut error = false;
        while at + 5 <= self.out.len() {
            let tag = self.out[at];
            let len = u32::from_be_bytes([
                self.out[at + 1],
                self.out[at + 2],
                self.out[at + 3],
                self.out[at + 4],
            ]) as usize;
            error |= tag == b'E';
            at += 1 + len;
        }
        error
    }

    /// For a multi-statement query, the single shard every statement goes to, if there is
    /// one and nothing needs pgdog's own handling (transaction control, merging, splitting).
    fn whole_query_shard(&self, statements: &[Planned]) -> Option<usize> {
        if statements.len() < 2 || self.sharded.transaction.is_some() {
            return None;
        }
        let mut shard = None;
        for statement in statements {
            if !matches!(statement.command(), Command::Query) || statement.needs_columns().is_some()
            {
                return None;
            }
            let route = statement
                .route(&Params::NONE, None, &self.cluster.sharding)
                .ok()?;
            if route.rewrite.is_some() || !route.split.is_empty() || route.key_update.is_some() {
                return None;
            }
            let this = match self.effective_shards(route.shards) {
                Shards::One(n) => n,
                _ => return None,
            };
            if shard.is_some_and(|s| s != this) {
                return None;
            }
            shard = Some(this);
        }
        shard
    }

    /// The shards a statement goes to after `SET pgdog.shard` / `pgdog.sharding_key`.
    fn effective_shards(&self, planned: Shards) -> Shards {
        let manual = self
            .sharded
            .transaction
            .as_ref()
            .and_then(|t| t.override_shards.clone())
            .or_else(|| self.sharded.session_override.clone());
        let shards = manual.unwrap_or(planned);
        match shards {
            // One shard serves it: the one already in the transaction if any.
            Shards::Any => match self.sharded.held().first() {
                Some(&shard) => Shards::One(shard),
                None => Shards::One(self.any_shard()),
            },
            other => other,
        }
    }

    /// A shard for a statement any shard can answer, spread over clients.
    fn any_shard(&self) -> usize {
        let shards = self.cluster.shards.len().max(1);
        (self.login.key.pid.unsigned_abs() as usize) % shards
    }

    /// Runs the stashed extended-protocol messages that have no Execute (Parse, Describe,
    /// Close): on a server already in the transaction, or any shard's.
    async fn run_stash(&mut self) -> Result<(), Error> {
        if self.sharded.stash.is_empty() {
            return Ok(());
        }
        let stash = std::mem::take(&mut self.sharded.stash);
        self.remember_unnamed(&stash)?;
        for frame in stash.iter().filter(|f| f.tag == b'C') {
            if let Ok(target) = Target::decode(frame) {
                if target.kind == b'P' {
                    self.sharded.portals.remove(target.name);
                }
            }
        }
        if self.answer_locally(&stash) {
            return Ok(());
        }
        let shard = match self.sharded.held().first() {
            Some(&shard) => shard,
            None => self.any_shard(),
        };
        self.exec_prepare(shard, &stash).await
    }

    /// Parse/Close batches answered without a server (statements some server accepted).
    fn answer_locally(&mut self, stash: &[Frame]) -> bool {
        let mut local = stash.to_vec();
        local.push(Frame::new(b'H', &[]));
        self.statements
            .answer_without_server(&local, &self.state.prepared, &mut self.out)
    }

    /// Keeps the text of an unnamed Parse for the Executes that follow it.
    fn remember_unnamed(&mut self, stash: &[Frame]) -> Result<(), Error> {
        for frame in stash.iter().filter(|f| f.tag == b'P') {
            let parse = Parse::decode(frame)?;
            if parse.name.is_empty() {
                self.sharded.unnamed = Some((
                    Arc::from(parse.query),
                    Bytes::copy_from_slice(parse.param_types),
                ));
            } else {
                self.pending_changes
                    .extend(super::session::changes(parse.query.as_bytes()));
            }
        }
        Ok(())
    }

    /// The stash ends with an Execute: plan the statement with its Bind parameters and run it.
    async fn run_unit(&mut self, sync_next: bool) -> Result<(), Error> {
        let stash = std::mem::take(&mut self.sharded.stash);
        self.remember_unnamed(&stash)?;
        let Some(bind_at) = stash.iter().rposition(|f| f.tag == b'B') else {
            // Execute of a portal bound earlier (row-limited fetches): its server has it.
            return self.execute_existing_portal(&stash).await;
        };
        let bind = Bind::decode(&stash[bind_at])?;
        // The statement's text and parameter types, borrowed (no copy per execution).
        let unnamed;
        let named;
        let (sql, param_types): (&str, &[u8]) = if bind.statement.is_empty() {
            match self.sharded.unnamed.clone() {
                Some(statement) => {
                    unnamed = statement;
                    (&unnamed.0, &unnamed.1)
                }
                None => {
                    self.sharded_error(ErrorResponse::error(
                        sqlstate::INVALID_SQL_STATEMENT_NAME,
                        "unnamed prepared statement does not exist",
                    ));
                    self.sharded.skipping = true;
                    return Ok(());
                }
            }
        } else {
            // A Parse of the name earlier in this batch, or the client's statement.
            let in_batch = stash[..bind_at].iter().rev().find(|f| {
                f.tag == b'P' && Parse::decode(f).is_ok_and(|p| p.name == bind.statement)
            });
            let parse = in_batch.cloned().or_else(|| {
                self.statements.get(bind.statement).map(|statement| Frame {
                    tag: b'P',
                    // With the types a Describe told the client, if one did.
                    bytes: statement.server_parse().clone(),
                })
            });
            match parse {
                Some(parse) => {
                    named = parse;
                    let decoded = Parse::decode(&named)?;
                    (decoded.query, decoded.param_types)
                }
                None => {
                    self.sharded_error(ErrorResponse::error(
                        sqlstate::INVALID_SQL_STATEMENT_NAME,
                        format!("prepared statement \"{}\" does not exist", bind.statement),
                    ));
                    self.sharded.skipping = true;
                    return Ok(());
                }
            }
        };
        let analysis = self.cluster.plans.get(sql, &self.cluster.sharding);
        let wire = Wire::Extended {
            prepare: &stash[..bind_at],
            unit: &stash[bind_at..],
            bind: &bind,
            param_types,
            sync: sync_next,
        };
        let Some(statement) = analysis.statements().first() else {
            // Empty query: any shard answers EmptyQueryResponse.
            let shard = self.any_shard();
            return self.exec_single(shard, "", false, &wire).await;
        };
        let types = messages::param_type_oids(param_types);
        let params = Params {
            values: &bind.params,
            formats: &bind.param_formats,
            types: &types,
        };
        self.run_statement(statement, &params, &wire).await
    }

    /// An Execute without a Bind in its batch: the portal lives on the server that bound it.
    async fn execute_existing_portal(&mut self, stash: &[Frame]) -> Result<(), Error> {
        if let Some((portal, max_rows)) = stash
            .iter()
            .rfind(|f| f.tag == b'E')
            .and_then(portals::execute_target)
        {
            if self.fetch_merged_portal(&portal, max_rows) {
                return Ok(());
            }
        }
        let held = self.sharded.held();
        match held.as_slice() {
            [shard] => {
                let wire = Wire::Extended {
                    prepare: &[],
                    unit: stash,
                    bind: &Bind {
                        portal: "",
                        statement: "",
                        param_formats: Vec::new(),
                        params: Vec::new(),
                        result_formats: Vec::new(),
                    },
                    param_types: &[0, 0],
                    sync: false,
                };
                self.exec_single(*shard, "", false, &wire).await
            }
            _ => {
                self.sharded_error(ErrorResponse::error(
                    sqlstate::INVALID_CURSOR_NAME,
                    "portal does not exist",
                ).detail("on a sharded database a portal can be fetched from only inside the transaction that bound it, on a single shard"));
                self.sharded.skipping = true;
                Ok(())
            }
        }
    }

    /// Sync: every server that got extended messages syncs; the implicit transaction, if any,
    /// ends; the client gets one ReadyForQuery.
    async fn sharded_sync(&mut self) -> Result<(), Error> {
        // Sync ends an error's skipping, like in Postgres.
        self.sharded.skipping = false;
        self.sharded.stash.clear();
        let unsynced = std::mem::take(&mut self.sharded.unsynced);
        for shard in unsynced {
            let Some(server) = self.sharded.servers.get_mut(shard).and_then(Option::as_mut) else {
                continue;
            };
            server.unsynced = false;
            if !server.copy_in {
                server.pending.push(crate::backend::expect::Expect::Sync);
            }
            let sent = server.send(&messages::sync()).await;
            let mut frames = Vec::new();
            let read = match sent {
                Ok(()) => crate::backend::exchange::read_replies(server, |f| frames.push(f)).await,
                Err(_) => Err(crate::backend::exchange::Lost(ErrorResponse::error(
                    sqlstate::CONNECTION_FAILURE,
                    "lost connection to a shard",
                ))),
            };
            for frame in frames.into_iter().filter(|f| f.tag != b'Z') {
                if frame.tag == b'E' {
                    if let Some(tx) = self.sharded.transaction.as_mut() {
                        tx.failed = true;
                    }
                }
                self.out.extend_from_slice(&frame.bytes);
            }
            if let Err(lost) = read {
                self.shard_lost(shard, lost.0);
            }
        }
        self.end_implicit().await?;
        self.finish_request().await;
        self.ready_for_query();
        Ok(())
    }

    /// Records that the server of `shard` got extended-protocol messages and owes a Sync.
    fn mark_unsynced(&mut self, shard: usize) {
        if let Some(server) = self.sharded.servers.get_mut(shard).and_then(Option::as_mut) {
            server.unsynced = true;
        }
        if !self.sharded.unsynced.contains(&shard) {
            self.sharded.unsynced.push(shard);
        }
    }

    /// A shard's server broke: it is dropped and the client told; an open transaction fails.
    fn shard_lost(&mut self, shard: usize, error: ErrorResponse) {
        if let Some(mut server) = self.sharded.servers.get_mut(shard).and_then(Option::take) {
            server.broken = true;
        }
        self.sharded.unsynced.retain(|&s| s != shard);
        self.sharded_error(error);
    }

    /// After a request: settings the client changed outside a transaction become its own, and
    /// with no transaction open the servers go back to their pools.
    async fn finish_request(&mut self) {
        if self.sharded.transaction.is_some() || !self.sharded.unsynced.is_empty() {
            return;
        }
        // Portals live until their transaction ends.
        self.sharded.portals.clear();
        if self.sharded.copy.is_some() {
            return;
        }
        self.apply_pending_changes();
        // A cancel still landing on a shard would hit what it runs next.
        if !self.login.cancel.settled().await {
            tracing::warn!(
                "a cancel request to a shard was not confirmed; closing those connections"
            );
            for server in self.sharded.servers.iter_mut().flatten() {
                server.broken = true;
            }
        }
        if self.cluster.pooler_mode == pgdog_config::PoolerMode::Transaction {
            for server in self.sharded.drop_servers() {
                drop(server);
            }
            self.login.cancel.set(None);
        }
        if !self.sharded.holding() {
            self.end_transaction();
        }
    }

    /// SET/RESET the client ran and that succeeded become its session's settings.
    fn apply_pending_changes(&mut self) {
        let failed = std::mem::take(&mut self.failed);
        if !failed {
            for change in std::mem::take(&mut self.pending_changes) {
                self.login.params.apply(&change);
                if change.drops_prepared_statements() {
                    self.statements.clear();
                }
            }
        }
        self.pending_changes.clear();
    }

    /// Answers every message of an extended unit pgdog handles itself (BEGIN, SET pgdog.*):
    /// ParseComplete, BindComplete, NoData, then `tag` for the Execute.
    fn answer_unit_locally(&mut self, wire: &Wire<'_>, tag: &str) {
        match wire {
            Wire::Simple => {
                self.out.extend_from_slice(&messages::command_complete(tag));
            }
            Wire::Extended { prepare, unit, .. } => {
                for frame in prepare.iter().chain(unit.iter()) {
                    match frame.tag {
                        b'P' => {
                            if let Ok(parse) = Parse::decode(frame) {
                                if !parse.name.is_empty() {
                                    self.statements.register(&parse, &self.state.prepared);
                                }
                            }
                            self.out.extend_from_slice(&messages::parse_complete());
                        }
                        b'B' => self.out.extend_from_slice(&messages::bind_complete()),
                        b'D' => {
                            if Target::decode(frame).is_ok_and(|t| t.kind == b'S') {
                                self.out.extend_from_slice(&messages::no_parameters());
                            }
                            self.out.extend_from_slice(&messages::no_data());
                        }
                        b'C' => self.out.extend_from_slice(&messages::close_complete()),
                        b'E' => self.out.extend_from_slice(&messages::command_complete(tag)),
                        _ => {}
                    }
                }
            }
        }
    }
}
