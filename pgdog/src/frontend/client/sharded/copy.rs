//! COPY on a sharded database. `COPY ... FROM STDIN`: the statement is opened on every shard
//! inside one transaction; each row the client sends goes to its shard's stream (rows of
//! omnisharded and unsharded tables to all), and an error anywhere rolls back everything.
//! `COPY ... TO STDOUT`: the shards' streams are concatenated.

use bytes::BytesMut;

use super::unnamed::UnnamedRun;
use super::{Client, Wire};
use crate::backend::exchange::{read_replies, Answer, Ended};
use crate::backend::expect::Expect;
use crate::net::{messages, sqlstate, Error, ErrorResponse, Frame};
use crate::router::copy::{CopyKey, CopyOutJoiner, CopyPiece, CopySplitter};
use crate::router::plan::{CopyPlacement, CopyStatement, Statement as Planned};
use crate::router::route::Shards;

/// Per-shard data is sent once this much is buffered.
const SEND_AT: usize = 256 * 1024;

/// A COPY FROM STDIN in progress.
pub(in crate::frontend::client) struct CopyIn {
    splitter: CopySplitter,
    placement: CopyPlacement,
    /// The shards with an open COPY.
    targets: Vec<usize>,
    /// Data waiting to be sent, per shard (indexed by shard number).
    buffers: Vec<BytesMut>,
    /// The first error (bad row, lost shard): the COPY fails at CopyDone.
    error: Option<ErrorResponse>,
    /// Started by an extended-protocol Execute: it ends at the client's Sync, not at CopyDone.
    extended: bool,
}

impl Client {
    /// Starts a COPY: opens it on the shards and tells the client to send (FROM STDIN) or
    /// streams the shards' data (TO STDOUT).
    pub(super) async fn start_copy(
        &mut self,
        statement: &Planned,
        copy: &CopyStatement,
        wire: &Wire<'_>,
    ) -> Result<(), Error> {
        let count = self.cluster.shards.len();
        if !copy.from_stdin {
            let targets = match copy.placement {
                CopyPlacement::Omnisharded => vec![self.any_shard()],
                _ => (0..count).collect(),
            };
            return self
                .copy_out(&targets, statement.sql(), copy.options.clone(), wire)
                .await;
        }
        let (placement, key) = match self.copy_key(statement, copy).await {
            Ok(found) => found,
            Err(error) => {
                self.fail(wire, error);
                return Ok(());
            }
        };
        if self.sharded.transaction.is_none() {
            self.begin_implicit().await;
        }
        let targets: Vec<usize> = (0..count).collect();
        let mut failure = None;
        if let Wire::Extended { prepare, .. } = wire {
            // The client's own Parse/Describe get their answers from one shard.
            if !prepare.is_empty() {
                let before = self.sharded.skipping;
                self.exec_prepare(targets[0], prepare).await?;
                if self.sharded.skipping && !before {
                    return Ok(());
                }
            }
        }
        for &shard in &targets {
            if let Err(error) = self.hold(shard, false).await {
                failure = Some(error);
                break;
            }
            let Some(server) = self.sharded.servers.get_mut(shard).and_then(Option::as_mut) else {
                continue;
            };
            let mut to_server = BytesMut::new();
            match wire {
                Wire::Simple => {
                    server.pending.push(Expect::Query);
                    to_server.extend_from_slice(&messages::query(statement.sql()));
                }
                Wire::Extended {
                    bind, param_types, ..
                } => {
                    UnnamedRun {
                        sql: statement.sql(),
                        param_types,
                        bind,
                        params: None,
                        text_results: false,
                        describe: false,
                        sync: false,
                    }
                    .encode(server, &mut to_server);
                    server.unsynced = true;
                    if !self.sharded.unsynced.contains(&shard) {
                        self.sharded.unsynced.push(shard);
                    }
                }
            }
            if server.send(&to_server).await.is_err() {
                server.broken = true;
                failure = Some(ErrorResponse::error(
                    sqlstate::CONNECTION_FAILURE,
                    "lost connection to a shard",
                ));
                break;
            }
            let mut frames = Vec::new();
            match read_replies(server, |f| frames.push(f)).await {
                Ok(Ended::CopyIn) => {}
                Ok(Ended::Done) => {
                    failure = Some(Answer::collect(frames).error.unwrap_or_else(|| {
                        ErrorResponse::error(
                            sqlstate::PROTOCOL_VIOLATION,
                            format!("shard {shard} did not start the COPY"),
                        )
                    }));
                    break;
                }
                Err(lost) => {
                    self.shard_lost(shard, lost.0.clone());
                    return Ok(());
                }
            }
            if shard == 0 {
                if matches!(wire, Wire::Extended { .. }) {
                    self.out.extend_from_slice(&messages::bind_complete());
                }
                if let Some(response) = frames.iter().find(|f| f.tag == b'G') {
                    self.out.extend_from_slice(&response.bytes);
                }
            }
        }
        if let Some(error) = failure {
            // Shards already copying are stopped; the implicit transaction rolls back.
            self.abort_copies(&targets, "COPY could not start on every shard")
                .await;
            self.fail(wire, error);
            return Ok(());
        }
        self.sharded.copy = Some(CopyIn {
            splitter: CopySplitter::new(copy.options.clone(), key),
            placement,
            buffers: vec![BytesMut::new(); count],
            targets,
            error: None,
            extended: matches!(wire, Wire::Extended { .. }),
        });
        Ok(())
    }

    /// How rows are placed and where the sharding key sits in each row.
    async fn copy_key(
        &mut self,
        statement: &Planned,
        copy: &CopyStatement,
    ) -> Result<(CopyPlacement, Option<CopyKey>), ErrorResponse> {
        let columns = match statement.needs_columns() {
            Some((schema, table)) => Some(self.table_columns(schema, table).await?),
            None => None,
        };
        let (placement, position) = copy.placement_for(columns.as_ref().map(|c| c.as_slice()))?;
        let key = match (&placement, position) {
            (CopyPlacement::Sharded { data_type, .. }, Some(column)) => Some(CopyKey {
                column,
                data_type: *data_type,
            }),
            _ => None,
        };
        Ok((placement, key))
    }

    /// CopyData, CopyDone or CopyFail from the client during a COPY FROM STDIN.
    pub(super) async fn copy_frame(&mut self, frame: Frame) -> Result<(), Error> {
        let Some(mut copy) = self.sharded.copy.take() else {
            return Ok(());
        };
        match frame.tag {
            b'd' => {
                if copy.error.is_none() {
                    let CopyIn {
                        splitter,
                        placement,
                        buffers,
                        error,
                        ..
                    } = &mut copy;
                    let result = splitter.feed(frame.body(), &mut |piece| {
                        route_piece(piece, placement, buffers)
                    });
                    if let Err(e) = result {
                        *error = Some(e);
                    }
                }
                if copy.error.is_none() {
                    self.send_buffers(&mut copy, SEND_AT).await;
                }
                self.sharded.copy = Some(copy);
            }
            b'c' => {
                if copy.error.is_none() {
                    let CopyIn {
                        splitter,
                        placement,
                        buffers,
                        error,
                        ..
                    } = &mut copy;
                    if let Err(e) =
                        splitter.finish(&mut |piece| route_piece(piece, placement, buffers))
                    {
                        *error = Some(e);
                    }
                }
                if copy.error.is_none() {
                    self.send_buffers(&mut copy, 0).await;
                }
                self.end_copy(copy, None).await?;
            }
            _ => {
                let message = crate::net::frame::Reader::new(frame.body())
                    .cstr()
                    .unwrap_or("")
                    .to_string();
                self.end_copy(copy, Some(message)).await?;
            }
        }
        Ok(())
    }

    /// Sends every shard's buffered rows of at least `min` bytes as CopyData.
    async fn send_buffers(&mut self, copy: &mut CopyIn, min: usize) {
        for &shard in &copy.targets {
            let Some(buffer) = copy.buffers.get_mut(shard) else {
                continue;
            };
            if buffer.is_empty() || buffer.len() < min {
                continue;
            }
            let data = buffer.split();
            let Some(server) = self.sharded.servers.get_mut(shard).and_then(Option::as_mut) else {
                continue;
            };
            let message = Frame::new(b'd', &data).bytes;
            tracing::trace!("COPY data to shard {shard}: {} bytes", data.len());
            if server.send(&message).await.is_err() {
                server.broken = true;
                copy.error.get_or_insert(ErrorResponse::error(
                    sqlstate::CONNECTION_FAILURE,
                    format!("lost connection to shard {shard} during COPY"),
                ));
            }
        }
    }

    /// Finishes the COPY on every shard: CopyDone (or CopyFail after an error) and their
    /// answers; the client gets the summed row count or the first error.
    async fn end_copy(&mut self, copy: CopyIn, client_fail: Option<String>) -> Result<(), Error> {
        let reason = match (&client_fail, &copy.error) {
            (Some(message), _) => Some(format!("COPY from stdin failed: {message}")),
            (None, Some(error)) => Some(error.message.clone()),
            (None, None) => None,
        };
        let mut answers = Vec::new();
        let mut lost = None;
        tracing::trace!(
            "ending COPY on shards {:?} (failure: {reason:?})",
            copy.targets
        );
        for &shard in &copy.targets {
            let Some(server) = self.sharded.servers.get_mut(shard).and_then(Option::as_mut) else {
                continue;
            };
            let mut message = BytesMut::new();
            match &reason {
                Some(reason) => {
                    let mut body = reason.clone().into_bytes();
                    body.push(0);
                    message.extend_from_slice(&Frame::new(b'f', &body).bytes);
                }
                None => message.extend_from_slice(&Frame::new(b'c', &[]).bytes),
            }
            server.copy_in = false;
            if copy.extended {
                // Postgres sends the COPY's outcome only at a Sync (after an error it skips
                // everything else): pgdog syncs the shard itself; the client's Sync then only
                // ends the request.
                message.extend_from_slice(&messages::sync());
                server.pending.push(Expect::Sync);
                server.unsynced = false;
            }
            let result = match server.send(&message).await {
                Ok(()) => {
                    let mut frames = Vec::new();
                    read_replies(server, |f| frames.push(f))
                        .await
                        .map(|_| Answer::collect(frames))
                        .map_err(|l| l.0)
                }
                Err(_) => Err(ErrorResponse::error(
                    sqlstate::CONNECTION_FAILURE,
                    format!("lost connection to shard {shard} during COPY"),
                )),
            };
            match result {
                Ok(answer) => answers.push(answer),
                Err(error) => {
                    // The shard's part of the COPY is gone: the whole COPY fails.
                    if let Some(mut server) =
                        self.sharded.servers.get_mut(shard).and_then(Option::take)
                    {
                        server.broken = true;
                    }
                    lost.get_or_insert(error);
                }
            }
        }
        if copy.extended {
            self.sharded
                .unsynced
                .retain(|shard| !copy.targets.contains(shard));
        }
        let error = match (client_fail, copy.error) {
            (Some(message), _) => Some(ErrorResponse::error(
                sqlstate::QUERY_CANCELED,
                format!("COPY from stdin failed: {message}"),
            )),
            (None, Some(error)) => Some(error),
            (None, None) => lost.or_else(|| answers.iter().find_map(|a| a.error.clone())),
        };
        match error {
            Some(error) => {
                self.sharded_error(error);
                self.failed = true;
                if copy.extended {
                    self.sharded.skipping = true;
                }
            }
            None => {
                let tags: Vec<&str> = answers.iter().filter_map(|a| a.tag.as_deref()).collect();
                let tag = crate::router::merge::combine_tags(tags.iter().copied())
                    .unwrap_or_else(|| "COPY 0".into());
                // Rows of omnisharded tables went to every shard: the client sent each once.
                let tag = match copy.placement {
                    CopyPlacement::Sharded { .. } => tag,
                    _ => format!("COPY {}", copy.splitter.rows()),
                };
                self.out
                    .extend_from_slice(&messages::command_complete(&tag));
            }
        }
        if copy.extended {
            // The client's Sync ends the request (and the implicit transaction).
            return Ok(());
        }
        self.end_implicit().await?;
        self.finish_request().await;
        self.ready_for_query();
        Ok(())
    }

    /// Stops COPYs already started on some shards.
    async fn abort_copies(&mut self, shards: &[usize], reason: &str) {
        for &shard in shards {
            let Some(server) = self.sharded.servers.get_mut(shard).and_then(Option::as_mut) else {
                continue;
            };
            if !server.copy_in {
                continue;
            }
            server.copy_in = false;
            let mut body = reason.as_bytes().to_vec();
            body.push(0);
            if server.send(&Frame::new(b'f', &body).bytes).await.is_err() {
                server.broken = true;
                continue;
            }
            if read_replies(server, |_| {}).await.is_err() {
                server.broken = true;
            }
        }
        if let Some(tx) = self.sharded.transaction.as_mut() {
            tx.failed = true;
        }
    }

    /// COPY ... TO STDOUT: each shard's stream in turn, joined into one.
    pub(super) async fn copy_out(
        &mut self,
        targets: &[usize],
        sql: &str,
        options: crate::router::route::CopyOptions,
        wire: &Wire<'_>,
    ) -> Result<(), Error> {
        for &shard in targets {
            if let Err(error) = self.hold(shard, true).await {
                self.fail(wire, error);
                return Ok(());
            }
        }
        let mut joiner = CopyOutJoiner::new(options, targets.len());
        let mut tags = Vec::new();
        for (i, &shard) in targets.iter().enumerate() {
            let Some(server) = self.sharded.servers.get_mut(shard).and_then(Option::as_mut) else {
                continue;
            };
            server.pending.push(Expect::Query);
            if server.send(&messages::query(sql)).await.is_err() {
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
            let mut error = None;
            let mut join_error = None;
            let out = &mut self.out;
            let last = i + 1 == targets.len();
            let result = read_replies(server, |frame| match frame.tag {
                b'H' if i == 0 => out.extend_from_slice(&frame.bytes),
                b'd' => match joiner.data(i, frame.body()) {
                    Ok(data) => {
                        if !data.is_empty() {
                            out.extend_from_slice(&Frame::new(b'd', data).bytes);
                        }
                    }
                    Err(e) => {
                        join_error.get_or_insert(e);
                    }
                },
                b'c' if last => {}
                b'C' => {
                    if let Ok(tag) = messages::command_tag(&frame) {
                        tags.push(tag.to_string());
                    }
                }
                b'E' => {
                    error.get_or_insert(frame);
                }
                b'N' => out.extend_from_slice(&frame.bytes),
                _ => {}
            })
            .await;
            if let Err(lost) = result {
                self.shard_lost(shard, lost.0);
                return Ok(());
            }
            if let Some(e) = join_error {
                self.sharded_error(e);
                return Ok(());
            }
            if let Some(error) = error {
                self.out.extend_from_slice(&error.bytes);
                self.failed = true;
                if let Some(tx) = self.sharded.transaction.as_mut() {
                    tx.failed = true;
                }
                return Ok(());
            }
        }
        let trailer = match joiner.finish() {
            Ok(trailer) => trailer,
            Err(e) => {
                self.sharded_error(e);
                return Ok(());
            }
        };
        if !trailer.is_empty() {
            self.out
                .extend_from_slice(&Frame::new(b'd', &trailer).bytes);
        }
        self.out.extend_from_slice(&Frame::new(b'c', &[]).bytes);
        let tag = crate::router::merge::combine_tags(tags.iter().map(String::as_str))
            .unwrap_or_else(|| "COPY 0".into());
        self.out
            .extend_from_slice(&messages::command_complete(&tag));
        Ok(())
    }
}

/// Puts one piece of a COPY stream into the buffers of the shards it belongs to.
fn route_piece(
    piece: CopyPiece<'_>,
    placement: &CopyPlacement,
    buffers: &mut [BytesMut],
) -> Result<(), ErrorResponse> {
    match piece {
        CopyPiece::All(bytes) => {
            for buffer in buffers.iter_mut() {
                buffer.extend_from_slice(bytes);
            }
        }
        CopyPiece::Row { key, bytes } => {
            let shards = match placement {
                CopyPlacement::Sharded { .. } => placement.shards_of(key.as_ref())?,
                _ => Shards::All,
            };
            match shards {
                Shards::One(shard) => {
                    if let Some(buffer) = buffers.get_mut(shard) {
                        buffer.extend_from_slice(bytes);
                    }
                }
                Shards::Many(list) => {
                    for shard in list {
                        if let Some(buffer) = buffers.get_mut(shard) {
                            buffer.extend_from_slice(bytes);
                        }
                    }
                }
                Shards::All | Shards::Any => {
                    for buffer in buffers.iter_mut() {
                        buffer.extend_from_slice(bytes);
                    }
                }
            }
        }
    }
    Ok(())
}
