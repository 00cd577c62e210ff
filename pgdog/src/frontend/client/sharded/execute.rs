//! Running one planned statement: on one shard (proxied, replies streamed), on several (sent
//! to all, answers merged), or split per shard (multi-row INSERT).

use bytes::BytesMut;

use super::unnamed::UnnamedRun;
use super::{Client, Wire};
use crate::backend::exchange::{self, read_replies, Answer, Ended};
use crate::backend::expect::Expect;
use crate::net::messages::{self, Parse};
use crate::net::{sqlstate, Error, ErrorResponse, Frame};
use crate::router::merge::{self, ShardRows};
use crate::router::plan::{Command, Route, Statement as Planned};
use crate::router::route::{Params, Shards};

impl Client {
    /// Runs one statement: transaction control and pgdog's own settings here, everything else
    /// where the router sends it.
    pub(super) async fn run_statement(
        &mut self,
        statement: &Planned,
        params: &Params<'_>,
        wire: &Wire<'_>,
    ) -> Result<(), Error> {
        let in_failed_transaction = self
            .sharded
            .transaction
            .as_ref()
            .is_some_and(|t| t.failed && !t.implicit);
        match statement.command() {
            Command::Begin => return self.begin(statement.sql(), wire).await,
            Command::Commit => return self.finish_transaction(true, wire).await,
            Command::Rollback => return self.finish_transaction(false, wire).await,
            _ if in_failed_transaction => {
                self.fail(
                    wire,
                    ErrorResponse::error(
                        sqlstate::IN_FAILED_SQL_TRANSACTION,
                        "current transaction is aborted, commands ignored until end of transaction block",
                    ),
                );
                return Ok(());
            }
            Command::SetShard { shard, local } => {
                let shards = shard.map(Shards::One);
                if let Some(Shards::One(n)) = shards {
                    if n >= self.cluster.shards.len() {
                        self.fail(
                            wire,
                            ErrorResponse::error(
                                sqlstate::INVALID_PARAMETER_VALUE,
                                format!(
                                    "shard {n} does not exist: database \"{}\" has {} shards (0 to {})",
                                    self.login.database,
                                    self.cluster.shards.len(),
                                    self.cluster.shards.len() - 1
                                ),
                            ),
                        );
                        return Ok(());
                    }
                }
                self.set_override(shards, *local);
                self.answer_unit_locally(wire, if shard.is_some() { "SET" } else { "RESET" });
                return Ok(());
            }
            Command::SetShardingKey { value, local } => {
                let shards = match value {
                    Some(value) => match self.cluster.sharding.shards_for_text(value) {
                        Ok(shards) => Some(shards),
                        Err(error) => {
                            self.fail(wire, error);
                            return Ok(());
                        }
                    },
                    None => None,
                };
                let reset = shards.is_none();
                self.set_override(shards, *local);
                self.answer_unit_locally(wire, if reset { "RESET" } else { "SET" });
                return Ok(());
            }
            Command::TwoPhase => {
                self.fail(
                    wire,
                    ErrorResponse::error(
                        sqlstate::FEATURE_NOT_SUPPORTED,
                        "PREPARE TRANSACTION and COMMIT/ROLLBACK PREPARED cannot be used on a sharded database",
                    )
                    .hint("set two_phase_commit = true in pgdog.toml: pgdog then commits transactions that span shards with two-phase commit itself"),
                );
                return Ok(());
            }
            Command::Savepoint => return self.savepoint(statement.sql(), wire).await,
            Command::Session => return self.session_statement(statement.sql(), wire).await,
            Command::Copy(copy) => return self.start_copy(statement, copy, wire).await,
            Command::Query => {}
        }
        let columns = match statement.needs_columns() {
            Some((schema, table)) => match self.table_columns(schema, table).await {
                Ok(columns) => Some(columns),
                Err(error) => {
                    self.fail(wire, error);
                    return Ok(());
                }
            },
            None => None,
        };
        let route = match statement.route(
            params,
            columns.as_deref().map(|c| c.as_slice()),
            &self.cluster.sharding,
        ) {
            Ok(route) => route,
            Err(error) => {
                self.fail(wire, error);
                return Ok(());
            }
        };
        if route.key_update.is_some() {
            return self
                .update_sharding_key(statement, &route, params, wire)
                .await;
        }
        if !route.split.is_empty() {
            return self.exec_split(&route, wire).await;
        }
        let shards = self.effective_shards(route.shards.clone());
        let targets = shards.list(self.cluster.shards.len());
        let read = route.read;
        if let [shard] = targets.as_slice() {
            return self.exec_single(*shard, statement.sql(), read, wire).await;
        }
        if let Some(options) = copy_out_options(statement.sql()) {
            return self
                .copy_out(&targets, statement.sql(), options, wire)
                .await;
        }
        if !read && self.sharded.transaction.is_none() {
            self.begin_implicit().await;
        }
        self.exec_multi(&targets, statement.sql(), &route, wire)
            .await
    }

    /// Answers an error for a statement pgdog did not run.
    pub(super) fn fail(&mut self, wire: &Wire<'_>, error: ErrorResponse) {
        self.sharded_error(error);
        if matches!(wire, Wire::Extended { .. }) {
            self.sharded.skipping = true;
        }
    }

    /// Makes sure this client holds a server of `shard` (checking one out, and replaying the
    /// open transaction's BEGIN, SAVEPOINTs and SETs on it).
    pub(super) async fn hold(&mut self, shard: usize, read: bool) -> Result<(), ErrorResponse> {
        if let Some(server) = self.sharded.servers.get(shard).and_then(Option::as_ref) {
            let on_replica = self
                .cluster
                .primary_of(shard)
                .is_some_and(|primary| !primary.ptr_eq(server.pool()));
            if read || !on_replica {
                return Ok(());
            }
            // A write after a read on a replica (e.g. a column lookup): the replica goes back
            // if nothing is pending on it; inside a transaction it cannot.
            let idle = server.status == b'I' && !self.sharded.unsynced.contains(&shard);
            if !idle {
                return Err(ErrorResponse::error(
                    sqlstate::READ_ONLY_SQL_TRANSACTION,
                    format!("shard {shard} is being read from a replica in this transaction"),
                )
                .hint("start the transaction with a write, or set read_write_split = \"include_primary\""));
            }
            if let Some(slot) = self.sharded.servers.get_mut(shard) {
                slot.take();
            }
        }
        if self.pass.is_none() && !self.begin_transaction().await {
            return Err(
                ErrorResponse::error(sqlstate::ADMIN_SHUTDOWN, "pgdog is shutting down")
                    .detail("the database was paused; the statement did not run"),
            );
        }
        let read = read && self.sharded.transaction.is_none();
        let mut server = match self.checkout_shard(shard, read).await {
            Ok(server) => server,
            Err(error) => {
                if !self.sharded.holding() && self.sharded.transaction.is_none() {
                    self.end_transaction();
                }
                return Err(error);
            }
        };
        if let Some(tx) = &self.sharded.transaction {
            for sql in &tx.replay {
                server.pending.push(Expect::Internal);
                if server.send(&messages::query(sql)).await.is_err() {
                    return Err(ErrorResponse::error(
                        sqlstate::CONNECTION_FAILURE,
                        format!("lost connection to server {}", server.addr()),
                    ));
                }
            }
        }
        if let Some(slot) = self.sharded.servers.get_mut(shard) {
            *slot = Some(server);
        }
        Ok(())
    }

    /// Writes the messages of `wire` for `server` of `shard`: the simple query `sql`, or the
    /// client's extended messages with statement names mapped (see `ClientStatements`).
    fn encode_for(
        &mut self,
        shard: usize,
        sql: &str,
        wire: &Wire<'_>,
        include_prepare: bool,
        to_server: &mut BytesMut,
    ) -> Result<(), Error> {
        let Some(server) = self.sharded.servers.get_mut(shard).and_then(Option::as_mut) else {
            return Ok(());
        };
        match wire {
            Wire::Simple => {
                server.pending.push(Expect::Query);
                to_server.extend_from_slice(&messages::query(sql));
            }
            Wire::Extended {
                prepare,
                unit,
                sync,
                ..
            } => {
                let frames: Vec<&Frame> = if include_prepare {
                    prepare.iter().chain(unit.iter()).collect()
                } else {
                    unit.iter().collect()
                };
                for frame in frames {
                    encode_extended(
                        frame,
                        &mut self.statements,
                        &self.state.prepared,
                        server,
                        to_server,
                    )?;
                }
                if *sync {
                    // The client's Sync, sent along: the server answers up to ReadyForQuery.
                    to_server.extend_from_slice(&messages::sync());
                    server.pending.push(Expect::Sync);
                    server.unsynced = false;
                    self.sharded.unsynced.retain(|&s| s != shard);
                } else {
                    to_server.extend_from_slice(&messages::flush());
                    server.unsynced = true;
                    if !self.sharded.unsynced.contains(&shard) {
                        self.sharded.unsynced.push(shard);
                    }
                }
            }
        }
        Ok(())
    }

    /// Runs the statement on one shard, streaming the replies to the client.
    pub(super) async fn exec_single(
        &mut self,
        shard: usize,
        sql: &str,
        read: bool,
        wire: &Wire<'_>,
    ) -> Result<(), Error> {
        if let Err(error) = self.hold(shard, read).await {
            self.fail(wire, error);
            return Ok(());
        }
        let mut to_server = BytesMut::new();
        self.encode_for(shard, sql, wire, true, &mut to_server)?;
        self.send_and_forward(shard, &to_server, wire).await
    }

    /// Prepare-only messages (Parse, Describe, Close without Execute) on one shard.
    pub(super) async fn exec_prepare(
        &mut self,
        shard: usize,
        stash: &[Frame],
    ) -> Result<(), Error> {
        let bind = messages::Bind {
            portal: "",
            statement: "",
            param_formats: Vec::new(),
            params: Vec::new(),
            result_formats: Vec::new(),
        };
        let wire = Wire::Extended {
            prepare: stash,
            unit: &[],
            bind: &bind,
            param_types: &[0, 0],
            sync: false,
        };
        self.exec_single(shard, "", false, &wire).await
    }

    /// Sends `to_server` to the server of `shard` and streams its replies to the client
    /// (ReadyForQuery excepted: the executor sends its own).
    async fn send_and_forward(
        &mut self,
        shard: usize,
        to_server: &[u8],
        wire: &Wire<'_>,
    ) -> Result<(), Error> {
        let Some(server) = self.sharded.servers.get_mut(shard).and_then(Option::as_mut) else {
            return Ok(());
        };
        self.login
            .cancel
            .set(Some((server.addr().clone(), server.key())));
        if server.send(to_server).await.is_err() {
            server.broken = true;
            let error = ErrorResponse::error(
                sqlstate::CONNECTION_FAILURE,
                format!("lost connection to server {}", server.addr()),
            );
            self.shard_lost(shard, error);
            if matches!(wire, Wire::Extended { .. }) {
                self.sharded.skipping = true;
            }
            return Ok(());
        }
        let mut error = false;
        let out = &mut self.out;
        let result = read_replies(server, |frame| {
            if frame.tag != b'Z' {
                error |= frame.tag == b'E';
                out.extend_from_slice(&frame.bytes);
            }
        })
        .await;
        match result {
            Ok(Ended::Done) => {}
            Ok(Ended::CopyIn) => {
                self.fail(
                    wire,
                    ErrorResponse::error(
                        sqlstate::FEATURE_NOT_SUPPORTED,
                        "COPY FROM STDIN through a sharded database must be a simple query",
                    ),
                );
                if let Some(server) = self.sharded.servers.get_mut(shard).and_then(Option::as_mut) {
                    let _ = server
                        .send(&crate::net::Frame::new(b'f', b"not supported\0").bytes)
                        .await;
                    server.broken = true;
                }
                return Ok(());
            }
            Err(lost) => {
                self.shard_lost(shard, lost.0);
                if matches!(wire, Wire::Extended { .. }) {
                    self.sharded.skipping = true;
                }
                return Ok(());
            }
        }
        if error {
            self.failed = true;
            crate::backend::stats::add(&self.registered.info().stats.errors, 1);
            if let Some(tx) = self.sharded.transaction.as_mut() {
                tx.failed = true;
            }
            if matches!(wire, Wire::Extended { .. }) {
                self.sharded.skipping = true;
            }
        }
        Ok(())
    }

    /// Runs the statement on several shards at once and merges their answers.
    async fn exec_multi(
        &mut self,
        targets: &[usize],
        sql: &str,
        route: &Route,
        wire: &Wire<'_>,
    ) -> Result<(), Error> {
        for &shard in targets {
            if let Err(error) = self.hold(shard, route.read).await {
                self.fail(wire, error);
                return Ok(());
            }
        }
        // The client's Parse/Describe-statement replies come from the first shard.
        if let Wire::Extended { prepare, .. } = wire {
            if !prepare.is_empty() {
                let before = self.sharded.skipping;
                self.exec_prepare(targets[0], prepare).await?;
                if self.sharded.skipping && !before {
                    return Ok(());
                }
            }
        }
        let text = route.rewrite.as_deref().unwrap_or(sql);
        let mut sent = Vec::with_capacity(targets.len());
        for &shard in targets {
            let mut to_server = BytesMut::new();
            match wire {
                Wire::Simple => self.encode_for(shard, text, wire, false, &mut to_server)?,
                Wire::Extended {
                    bind, param_types, ..
                } => self.encode_merged_unit(shard, text, bind, param_types, &mut to_server)?,
            }
            let Some(server) = self.sharded.servers.get_mut(shard).and_then(Option::as_mut) else {
                continue;
            };
            if server.send(&to_server).await.is_err() {
                server.broken = true;
                self.shard_lost(
                    shard,
                    ErrorResponse::error(
                        sqlstate::CONNECTION_FAILURE,
                        "lost connection to a shard",
                    ),
                );
                return Ok(());
            }
            sent.push(shard);
        }
        // A cancel request reaches every shard running it.
        let sessions = sent
            .iter()
            .filter_map(|&shard| self.sharded.servers.get(shard).and_then(Option::as_ref))
            .map(|server| (server.addr().clone(), server.key()))
            .collect();
        self.login.cancel.set_all(sessions);
        let mut answers = Vec::with_capacity(sent.len());
        let mut notices = Vec::new();
        let mut lost = None;
        for shard in sent {
            let Some(server) = self.sharded.servers.get_mut(shard).and_then(Option::as_mut) else {
                continue;
            };
            let mut frames = Vec::new();
            match read_replies(server, |f| frames.push(f)).await {
                Ok(_) => {}
                Err(error) => {
                    lost.get_or_insert((shard, error.0));
                    continue;
                }
            }
            notices.extend(frames.iter().filter(|f| f.tag == b'N').cloned());
            answers.push(Answer::collect(frames));
        }
        if let Some((shard, error)) = lost {
            self.shard_lost(shard, error);
            if matches!(wire, Wire::Extended { .. }) {
                self.sharded.skipping = true;
            }
            return Ok(());
        }
        for notice in notices.iter().take(1) {
            self.out.extend_from_slice(&notice.bytes);
        }
        if route.omnisharded {
            // Every shard holds the same rows: one shard's answer is the answer.
            if let Some(failed) = answers.iter().position(|a| a.error.is_some()) {
                answers.swap(0, failed);
            }
            answers.truncate(1);
        }
        self.reply_merged(answers, &route.merge, wire);
        Ok(())
    }

    /// The Bind/Describe/Execute of a statement run on several shards: always bound to the
    /// unnamed statement of the (possibly rewritten) text, so every shard has it, and always
    /// described, so the merge knows the column types.
    fn encode_merged_unit(
        &mut self,
        shard: usize,
        text: &str,
        bind: &messages::Bind<'_>,
        param_types: &[u8],
        to_server: &mut BytesMut,
    ) -> Result<(), Error> {
        let Some(server) = self.sharded.servers.get_mut(shard).and_then(Option::as_mut) else {
            return Ok(());
        };
        UnnamedRun {
            sql: text,
            param_types,
            bind,
            params: None,
            text_results: false,
            describe: true,
            sync: false,
        }
        .encode(server, to_server);
        self.mark_unsynced(shard);
        Ok(())
    }

    /// Writes the merged answer of several shards in the form the client asked for.
    fn reply_merged(
        &mut self,
        answers: Vec<Answer>,
        spec: &crate::router::route::MergeSpec,
        wire: &Wire<'_>,
    ) {
        if let Some(error) = answers.iter().find_map(|a| a.error.clone()) {
            self.fail(wire, error);
            self.failed = true;
            return;
        }
        let shards: Vec<ShardRows> = answers
            .into_iter()
            .map(|a| ShardRows {
                description: a.description,
                rows: a.rows,
                tag: a.tag,
            })
            .collect();
        let merged = match merge::merge(spec, shards) {
            Ok(merged) => merged,
            Err(error) => {
                self.fail(wire, error);
                return;
            }
        };
        match wire {
            Wire::Simple => {
                if let Some(description) = &merged.description {
                    self.out.extend_from_slice(description);
                }
            }
            Wire::Extended { unit, .. } => {
                let described = unit.iter().any(|f| f.tag == b'D');
                if unit.iter().any(|f| f.tag == b'B') {
                    self.out.extend_from_slice(&messages::bind_complete());
                }
                if described {
                    match &merged.description {
                        Some(description) => self.out.extend_from_slice(description),
                        None => self.out.extend_from_slice(&messages::no_data()),
                    }
                }
            }
        }
        if let Wire::Extended { unit, .. } = wire {
            let target = unit
                .iter()
                .rfind(|f| f.tag == b'E')
                .and_then(super::portals::execute_target);
            if let Some((portal, max_rows)) = target.filter(|(_, max)| *max > 0) {
                if merged.tag.is_some() {
                    self.send_portal_rows(&portal, max_rows, merged.rows, merged.tag);
                    return;
                }
            }
        }
        self.out.extend_from_slice(&merged.rows);
        match &merged.tag {
            Some(tag) => self.out.extend_from_slice(&messages::command_complete(tag)),
            None => self
                .out
                .extend_from_slice(&messages::empty_query_response()),
        }
    }

    /// A multi-row INSERT split per shard: each part runs on its shard, inside one (implicit
    /// if needed) transaction; RETURNING rows are concatenated and counts summed.
    async fn exec_split(&mut self, route: &Route, wire: &Wire<'_>) -> Result<(), Error> {
        if self.sharded.transaction.is_none() {
            self.begin_implicit().await;
        }
        let mut answers = Vec::with_capacity(route.split.len());
        for part in &route.split {
            if let Err(error) = self.hold(part.shard, false).await {
                self.fail(wire, error);
                return Ok(());
            }
            let mut to_server = BytesMut::new();
            let Some(server) = self
                .sharded
                .servers
                .get_mut(part.shard)
                .and_then(Option::as_mut)
            else {
                continue;
            };
            match wire {
                Wire::Simple => {
                    server.pending.push(Expect::Query);
                    to_server.extend_from_slice(&messages::query(&part.sql));
                }
                Wire::Extended {
                    bind, param_types, ..
                } => {
                    let types = messages::param_type_oids(param_types);
                    let mut section = BytesMut::new();
                    section.extend_from_slice(&(part.params.len() as i16).to_be_bytes());
                    for &i in &part.params {
                        section
                            .extend_from_slice(&types.get(i).copied().unwrap_or(0).to_be_bytes());
                    }
                    UnnamedRun {
                        sql: &part.sql,
                        param_types: &section,
                        bind,
                        params: Some(&part.params),
                        text_results: false,
                        describe: true,
                        sync: false,
                    }
                    .encode(server, &mut to_server);
                    server.unsynced = true;
                    if !self.sharded.unsynced.contains(&part.shard) {
                        self.sharded.unsynced.push(part.shard);
                    }
                }
            }
            if server.send(&to_server).await.is_err() {
                server.broken = true;
                self.shard_lost(
                    part.shard,
                    ErrorResponse::error(
                        sqlstate::CONNECTION_FAILURE,
                        "lost connection to a shard",
                    ),
                );
                return Ok(());
            }
            let mut frames = Vec::new();
            if let Err(lost) = read_replies(server, |f| frames.push(f)).await {
                self.shard_lost(part.shard, lost.0);
                return Ok(());
            }
            let answer = Answer::collect(frames);
            let failed = answer.error.is_some();
            answers.push(answer);
            if failed {
                break;
            }
        }
        self.reply_merged(answers, &Default::default(), wire);
        Ok(())
    }

    /// The column names of a table, in order, looked up once per client on a shard.
    pub(super) async fn table_columns(
        &mut self,
        schema: Option<&str>,
        table: &str,
    ) -> Result<std::sync::Arc<Vec<String>>, ErrorResponse> {
        let key = (schema.map(str::to_string), table.to_string());
        if let Some(columns) = self.sharded.columns.get(&key) {
            return Ok(columns.clone());
        }
        let shard = self.sharded.held().first().copied().unwrap_or(0);
        self.hold(shard, true).await?;
        let name = match schema {
            Some(schema) => format!("{}.{}", quote_ident(schema), quote_ident(table)),
            None => quote_ident(table),
        };
        let sql = format!(
            "SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = {}::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            quote_literal(&name)
        );
        let Some(server) = self.sharded.servers.get_mut(shard).and_then(Option::as_mut) else {
            return Err(ErrorResponse::error(
                sqlstate::CONNECTION_FAILURE,
                "lost connection to a shard",
            ));
        };
        let answer = exchange::simple_query(server, &sql)
            .await
            .map_err(|l| l.0)?
            .ok()?;
        let columns: Vec<String> = answer
            .rows
            .iter()
            .filter_map(|row| exchange::text_column(row, 0))
            .collect();
        let columns = std::sync::Arc::new(columns);
        self.sharded.columns.insert(key, columns.clone());
        Ok(columns)
    }
}

/// Writes one client extended-protocol message for `server`, mapping statement names.
fn encode_extended(
    frame: &Frame,
    statements: &mut crate::frontend::statements::ClientStatements,
    cache: &crate::backend::prepared::PreparedStatements,
    server: &mut crate::backend::server::Server,
    to_server: &mut BytesMut,
) -> Result<(), Error> {
    match frame.tag {
        b'P' => {
            let parse = Parse::decode(frame)?;
            if parse.name.is_empty() {
                server.pending.push(Expect::Parse(None));
                to_server.extend_from_slice(&frame.bytes);
            } else {
                statements.parse(&parse, cache, server, to_server);
            }
        }
        b'B' => statements.bind(frame, server, to_server)?,
        b'D' => statements.describe(frame, server, to_server)?,
        b'C' => statements.close(frame, server, to_server)?,
        b'E' => {
            server.pending.push(Expect::Execute);
            to_server.extend_from_slice(&frame.bytes);
        }
        _ => to_server.extend_from_slice(&frame.bytes),
    }
    Ok(())
}

/// The options of a `COPY (query) TO STDOUT` (a Query to the router).
fn copy_out_options(sql: &str) -> Option<crate::router::route::CopyOptions> {
    let copy = sql
        .trim_start()
        .get(..4)
        .is_some_and(|w| w.eq_ignore_ascii_case("copy"));
    if copy {
        crate::router::plan::copy_options_of(sql)
    } else {
        None
    }
}

pub(super) use crate::quote::{ident as quote_ident, literal as quote_literal};

/// Shards in a list, for messages.
#[allow(dead_code)]
pub(super) fn shard_list(shards: &Shards, count: usize) -> String {
    shards
        .list(count)
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
