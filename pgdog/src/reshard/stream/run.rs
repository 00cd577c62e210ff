//! Running a stream: resolve the source and the shards, then apply sessions until stopped.
//! A session connects everything, reads where each shard is, and loops: decode the source's
//! messages, route each change to SQL per shard, group whole transactions into batches
//! (bounded by size and age, flushed as soon as the source goes quiet), hand batches to the
//! shard appliers, and confirm to the source the end of every batch all shards committed.
//! A server that goes away ends the session; the next one starts from the slot again and
//! every shard skips what it has, so nothing is lost or applied twice.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgdog_config::ConfigAndUsers;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::control::StreamControl;
use super::pgoutput::{Message, OldTuple, Relation, Value};
use super::progress::{ReplicationStats, StreamId, StreamStatus};
use super::resync;
use super::route::{self, Out, ShardSql};
use super::schema::{self, SchemaChange};
use super::shard::{self, Report, Work};
use super::side::{self, SideCopy};
use super::source::{Received, Source, VALUE_SETTINGS};
use super::tables::{TableInfo, Tables};
use super::wal::{self, Lsn};
use super::{state, StreamError};
use crate::quote;
use crate::reshard::conn::Conn;
use crate::reshard::copy::{slot, TableCopies};
use crate::reshard::endpoints::ClusterEndpoints;
use crate::reshard::publication::{self, TableRef};
use crate::reshard::schema::SchemaSyncLog;
use crate::reshard::tasks::TaskHandle;
use crate::router::plan::ShardingSchema;

/// SQL a shard collects before a part of a large transaction is sent ahead of its commit.
const CHUNK_BYTES: usize = 1024 * 1024;
/// A batch is committed once any shard's SQL reaches this size...
const BATCH_BYTES: usize = 4 * 1024 * 1024;
/// ...or it is this old, or the source has been quiet for [`QUIET`].
const BATCH_AGE: Duration = Duration::from_millis(200);
/// How long the source must be quiet before an open batch is committed.
const QUIET: Duration = Duration::from_millis(2);
/// Batches queued per shard before the stream waits for it.
const SHARD_QUEUE: usize = 4;
/// How often the publication's tables are compared with the move's.
const PUBLICATION_CHECK: Duration = Duration::from_secs(5);
/// Longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What to stream.
#[derive(Debug, Clone, Default)]
pub struct StreamOptions {
    /// Source database (pgdog.toml name).
    pub from: String,
    /// Destination database.
    pub to: String,
    /// users.toml user for the source (default: its schema admin).
    pub from_user: Option<String>,
    /// users.toml user for the destination (default: its schema admin).
    pub to_user: Option<String>,
    /// Publication.
    pub publication: String,
    /// Slot (default `pgdog_<publication>`).
    pub slot: Option<String>,
    /// Which shard of the source to read (a stream back from N shards is N streams).
    pub source_shard: usize,
    /// Started by a cutover (the reverse stream), not after a copy.
    pub from_cutover: bool,
    /// Where copies of tables made while streaming (new in the publication, RESYNC_TABLE)
    /// show their progress.
    pub table_copies: TableCopies,
    /// Where their schema statements are listed.
    pub schema_log: SchemaSyncLog,
}

/// Streams until the task is stopped (Ok) or a non-retryable error (Err). Servers that go
/// away are retried with backoff, forever: the slot keeps the changes meanwhile.
pub async fn run(
    config: &ConfigAndUsers,
    options: &StreamOptions,
    stats: &ReplicationStats,
    task: Option<&TaskHandle>,
) -> Result<(), StreamError> {
    let source = ClusterEndpoints::resolve_as(config, &options.from, options.from_user.as_deref())?;
    let destination =
        ClusterEndpoints::resolve_as(config, &options.to, options.to_user.as_deref())?;
    let slot_name = options
        .slot
        .clone()
        .unwrap_or_else(|| slot::default_name(&options.publication));
    let sharding = ShardingSchema::new(&config.config, &options.to);
    let id = stats.add(
        task.map(TaskHandle::id),
        &options.from,
        &options.to,
        destination.shards.len(),
        &slot_name,
        &options.publication,
    );
    stats.update(id, |r| {
        r.source_shard = options.source_shard;
        r.from_cutover = options.from_cutover;
    });
    if options.source_shard >= source.shards.len() {
        let e = StreamError::NoShard {
            database: options.from.clone(),
            shard: options.source_shard,
        };
        stats.update(id, |r| r.status = StreamStatus::Failed(e.to_string()));
        return Err(e);
    }
    let control = stats.get(id).map(|r| r.control).unwrap_or_default();
    let context = Context {
        control,
        from_cutover: options.from_cutover,
        source_shard: options.source_shard,
        source,
        destination,
        slot: slot_name,
        publication: options.publication.clone(),
        sharding,
        stats: stats.clone(),
        id,
        task: task.cloned(),
        config: config.clone(),
        options: options.clone(),
        net_effect: AtomicBool::new(true),
    };
    let mut attempt: u32 = 0;
    loop {
        let started = Instant::now();
        let result = session(&context).await;
        // Measured again by the next session: a stale zero would read as caught up.
        stats.update(id, |r| r.lag_bytes = None);
        match result {
            Ok(()) | Err(StreamError::Stopped) => {
                stats.update(id, |r| r.status = StreamStatus::Stopped);
                info!(
                    "replication from slot {} stopped; the slot keeps its place",
                    context.slot
                );
                return Ok(());
            }
            Err(StreamError::Resync { tables }) => {
                stats.update(id, |r| r.status = StreamStatus::SyncingSchema);
                let copied =
                    resync::copy_tables(config, options, &context.slot, &tables, task).await;
                match copied {
                    Ok(warning) => {
                        attempt = 0;
                        if warning.is_some() {
                            stats.update(id, |r| r.last_error = warning);
                        }
                    }
                    Err(_) if context.stopping() => {
                        stats.update(id, |r| r.status = StreamStatus::Stopped);
                        return Ok(());
                    }
                    Err(e) => {
                        if !context.pause_for(&e).await {
                            return Ok(());
                        }
                    }
                }
            }
            Err(StreamError::Paused) => {
                info!(
                    "replication from slot {} paused; the slot keeps its place",
                    context.slot
                );
                stats.update(id, |r| r.status = StreamStatus::Paused(None));
                if !context.until_resumed().await {
                    return Ok(());
                }
                attempt = 0;
            }
            // The new order of a batch's steps tripped a unique index (or exclusion constraint)
            // the table was not known to have: the same changes again, each written as it came.
            Err(e) if e.order_conflict() && context.net_effect.swap(false, Ordering::Relaxed) => {
                warn!(
                    "replication from slot {}: {e}; applying changes one by one from now on",
                    context.slot
                );
                stats.update(id, |r| r.last_error = Some(e.to_string()));
            }
            Err(e) if e.pauses() => {
                if !context.pause_for(&e).await {
                    return Ok(());
                }
                attempt = 0;
            }
            // The stream back from several shards: a row whose sharding key changed is deleted
            // on one shard and inserted on another, and the two streams race; an insert that
            // arrives before its delete waits (the batch is retried) until the delete is in.
            Err(e) if e.retryable() || (options.from_cutover && e.key_conflict()) => {
                if started.elapsed() > Duration::from_secs(60) {
                    attempt = 0;
                }
                attempt += 1;
                let delay =
                    (Duration::from_millis(250) * 2u32.pow(attempt.min(8))).min(MAX_BACKOFF);
                warn!(
                    "replication from slot {}: {e}; reconnecting in {delay:?}",
                    context.slot
                );
                stats.update(id, |r| {
                    r.status = StreamStatus::Retrying(e.to_string());
                    r.last_error = Some(e.to_string());
                    r.retries += 1;
                });
                let deadline = Instant::now() + delay;
                while Instant::now() < deadline {
                    if context.stopping() {
                        stats.update(id, |r| r.status = StreamStatus::Stopped);
                        return Ok(());
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            Err(e) => {
                stats.update(id, |r| {
                    r.status = StreamStatus::Failed(e.to_string());
                    r.last_error = Some(e.to_string());
                });
                return Err(e);
            }
        }
    }
}

struct Context {
    control: Arc<StreamControl>,
    /// The stream back after a cutover.
    from_cutover: bool,
    source: ClusterEndpoints,
    source_shard: usize,
    destination: ClusterEndpoints,
    slot: String,
    publication: String,
    sharding: ShardingSchema,
    stats: ReplicationStats,
    id: StreamId,
    task: Option<TaskHandle>,
    /// For copies made beside the stream.
    config: ConfigAndUsers,
    options: StreamOptions,
    /// Whether shards write row changes by their net effect (see [`super::net`]); turned off
    /// for the rest of the run when a batch written that way hit a unique or exclusion violation.
    net_effect: AtomicBool,
}

impl Context {
    fn stopping(&self) -> bool {
        self.task.as_ref().is_some_and(|t| t.is_stopping())
    }

    /// Pauses the stream on an error it cannot get past by itself, with the reason shown,
    /// and waits for `RESUME_REPLICATION`; false when the task was stopped meanwhile.
    async fn pause_for(&self, error: &StreamError) -> bool {
        warn!("replication from slot {} paused: {error}", self.slot);
        self.control.pause();
        self.stats.update(self.id, |r| {
            r.status = StreamStatus::Paused(Some(error.to_string()));
            r.last_error = Some(error.to_string());
        });
        self.until_resumed().await
    }

    /// Waits while the stream is paused; false when the task was stopped meanwhile (the
    /// record then says stopped).
    async fn until_resumed(&self) -> bool {
        loop {
            if self.stopping() {
                self.stats
                    .update(self.id, |r| r.status = StreamStatus::Stopped);
                return false;
            }
            if !self.control.is_paused() {
                info!("replication from slot {} resumed", self.slot);
                self.stats
                    .update(self.id, |r| r.status = StreamStatus::Starting);
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The source transaction being received.
struct Open {
    commit_lsn: Lsn,
    commit_time: i64,
    /// Shards that do not have it yet.
    active: Vec<bool>,
}

/// Whole transactions waiting to be sent to the shards.
struct Batch {
    shards: Vec<ShardSql>,
    /// Shards that got SQL in this batch (some may have been sent ahead).
    touched: Vec<bool>,
    /// Last transaction: commit LSN, end LSN, commit time.
    last: Option<(Lsn, Lsn, i64)>,
    transactions: u64,
    /// Source commit time of its first transaction.
    first_time: Option<i64>,
    started: Option<Instant>,
}

impl Batch {
    fn new(shards: usize) -> Batch {
        Batch {
            shards: (0..shards).map(|_| ShardSql::default()).collect(),
            touched: vec![false; shards],
            last: None,
            transactions: 0,
            first_time: None,
            started: None,
        }
    }

    fn is_empty(&self) -> bool {
        self.transactions == 0
    }

    /// Empties it for the next transactions (the shards' prepared statements stay).
    fn reset(&mut self) {
        for shard in &mut self.shards {
            shard.reset();
        }
        self.touched.fill(false);
        self.last = None;
        self.transactions = 0;
        self.first_time = None;
        self.started = None;
    }

    fn largest(&self) -> usize {
        self.shards.iter().map(ShardSql::size).max().unwrap_or(0)
    }
}

/// A batch sent to the shards, waiting for their commits.
struct InFlight {
    batch: u64,
    end_lsn: Lsn,
    pending: BTreeSet<usize>,
    first_time: Option<i64>,
    transactions: u64,
    rows: u64,
}

async fn session(ctx: &Context) -> Result<(), StreamError> {
    let timeout = ctx.source.connect_timeout;
    let primary = ctx.source.shards[ctx.source_shard].primary.clone();
    let mut source_sql = Conn::connect(&primary, timeout).await?;
    source_sql.execute(VALUE_SETTINGS).await?;
    let Some(existing) = slot::find(&mut source_sql, &ctx.slot).await? else {
        return Err(StreamError::NoSlot {
            slot: ctx.slot.clone(),
        });
    };
    slot::check_existing(&ctx.slot, &existing, &primary.database)?;
    if !publication::exists(&mut source_sql, &ctx.publication).await? {
        return Err(StreamError::NoPublication {
            publication: ctx.publication.clone(),
        });
    }

    let shards = ctx.destination.shards.len();
    let mut applied = Vec::with_capacity(shards);
    let mut conns = Vec::with_capacity(shards);
    let mut net_effect = Vec::with_capacity(shards);
    let mut watermarks = BTreeMap::new();
    for shard in 0..shards {
        let mut conn = ctx.destination.connect_primary(shard).await?;
        applied.push(state::applied(&mut conn, &ctx.slot).await?);
        for (table, lsn) in state::watermarks(&mut conn, &ctx.slot).await? {
            let entry = watermarks.entry(table).or_insert(lsn);
            *entry = (*entry).max(lsn);
        }
        net_effect.push(shard::prepare(&mut conn).await? && ctx.net_effect.load(Ordering::Relaxed));
        conns.push(conn);
    }
    let mut tables = Tables::load(
        &mut source_sql,
        &ctx.publication,
        &ctx.sharding,
        &watermarks,
    )
    .await?;
    ctx.control.set_tables(tables.all());
    // Tables a shard lacks or whose copy is unfinished are copied beside the stream.
    let unfinished = resync::unfinished(&mut conns, &ctx.slot, &tables.all()).await?;
    info!(
        "replicating {} table(s) from slot {} to {} shard(s); shards applied up to {}",
        tables.len(),
        ctx.slot,
        shards,
        applied
            .iter()
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );

    let (report_tx, mut reports) = mpsc::unbounded_channel();
    let workers: Vec<mpsc::Sender<Work>> = conns
        .into_iter()
        .enumerate()
        .map(|(shard, conn)| {
            shard::spawn(
                shard,
                conn,
                ctx.slot.clone(),
                SHARD_QUEUE,
                report_tx.clone(),
            )
        })
        .collect();
    drop(report_tx);
    let mut source = Source::start(&primary, timeout, &ctx.slot, &ctx.publication).await?;
    ctx.stats.update(ctx.id, |r| {
        r.status = StreamStatus::CatchingUp;
        r.last_error = None;
    });

    let mut batch = Batch::new(shards);
    for (sql, on) in batch.shards.iter_mut().zip(net_effect) {
        sql.hold_changes(on);
    }
    let mut stream = Stream {
        ctx,
        workers,
        applied,
        batch,
        open: None,
        in_flight: VecDeque::new(),
        next_batch: 0,
        confirmed: existing
            .confirmed_flush_lsn
            .as_deref()
            .and_then(|l| l.parse().ok())
            .unwrap_or(Lsn::ZERO),
        received: Lsn::ZERO,
        schema_batch: None,
        last_publication_check: Instant::now(),
        copy_after: Vec::new(),
        copy_after_batch: 0,
        completed: None,
        moved: tables.all(),
        side: None,
        side_copies: 0,
        unfinished,
        last_message: Instant::now(),
        last_feedback: Instant::now(),
    };
    let mut result = stream
        .run(&mut source, &mut source_sql, &mut tables, &mut reports)
        .await;
    let graceful = matches!(
        result,
        Ok(()) | Err(StreamError::Stopped | StreamError::Paused | StreamError::Resync { .. })
    );
    if !graceful {
        // A shard applier that failed reported why before it ended: prefer that to the
        // "applier ended" the stream saw when sending it more work.
        while let Ok(report) = reports.try_recv() {
            if let Err(e) = stream.report(report) {
                result = Err(e);
                break;
            }
        }
    }
    if graceful {
        // Let the shards finish what they have, then confirm it.
        stream.workers.clear();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !stream.in_flight.is_empty() && Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(1), reports.recv()).await {
                Ok(Some(report)) => {
                    if stream.report(report).is_err() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(_) => {}
            }
        }
        let _ = source.feedback(stream.received, stream.confirmed).await;
    }
    source.close().await;
    source_sql.close().await;
    result
}

struct Stream<'a> {
    ctx: &'a Context,
    workers: Vec<mpsc::Sender<Work>>,
    /// Per shard, the commit LSN of the last transaction it had when the session started.
    applied: Vec<Lsn>,
    batch: Batch,
    open: Option<Open>,
    in_flight: VecDeque<InFlight>,
    next_batch: u64,
    /// Everything up to here is on every shard (what the source was told).
    confirmed: Lsn,
    /// The batch that carries the last schema change (status: syncing schema until done).
    schema_batch: Option<u64>,
    /// When the publication's tables were last compared with the move's.
    last_publication_check: Instant,
    /// Tables to copy again (a column added whose existing values only a copy brings) once the batch
    /// `copy_after_batch`, which adds the column, is committed everywhere.
    copy_after: Vec<crate::reshard::publication::TableRef>,
    copy_after_batch: u64,
    /// The last batch committed on every shard.
    completed: Option<u64>,
    /// The move's tables.
    moved: Vec<crate::reshard::publication::TableRef>,
    /// Tables being copied again while the others stream (see [`side`]).
    side: Option<SideCopy>,
    /// Copies made beside the stream in this session.
    side_copies: usize,
    /// Tables found unfinished when the session started: copied beside it first thing.
    unfinished: Vec<TableRef>,
    received: Lsn,
    last_message: Instant,
    last_feedback: Instant,
}

impl Stream<'_> {
    async fn run(
        &mut self,
        source: &mut Source,
        source_sql: &mut Conn,
        tables: &mut Tables,
        reports: &mut mpsc::UnboundedReceiver<Report>,
    ) -> Result<(), StreamError> {
        if !self.unfinished.is_empty() {
            // Emptied by the copy itself where they have rows (an unfinished copy's state
            // says so), created where missing.
            let unfinished = std::mem::take(&mut self.unfinished);
            self.copy_beside(unfinished, false).await?;
            self.start_side_copy();
        }
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let flush_due = !self.batch.is_empty() && self.open.is_none();
            let quiet = tokio::time::sleep_until((self.last_message + QUIET).into());
            tokio::select! {
                biased;
                report = reports.recv() => match report {
                    Some(report) => {
                        if self.report(report)? {
                            self.feedback(source).await?;
                        }
                        if !self.copy_after.is_empty()
                            && self.completed.is_some_and(|b| b >= self.copy_after_batch)
                        {
                            let tables = std::mem::take(&mut self.copy_after);
                            self.copy_beside(tables, true).await?;
                        }
                        self.start_side_copy();
                    }
                    None => return Err(StreamError::Protocol("every shard applier ended".into())),
                },
                _ = tick.tick() => {
                    if self.ctx.stopping() {
                        return Err(StreamError::Stopped);
                    }
                    if self.ctx.control.is_paused() {
                        return Err(StreamError::Paused);
                    }
                    self.housekeeping(source, source_sql).await?;
                    self.tables_to_copy(source_sql, tables).await?;
                    self.start_side_copy();
                    self.side_copy_done().await?;
                }
                received = source.next() => {
                    self.last_message = Instant::now();
                    match received? {
                        Received::Change { message, lsn, bytes } => {
                            self.received = self.received.max(lsn);
                            self.ctx.stats.update(self.ctx.id, |r| {
                                r.bytes += bytes as u64;
                                r.received_lsn = r.received_lsn.max(lsn);
                                // The source wrote at least what it sent (sampled each second).
                                r.source_lsn = r.source_lsn.max(lsn);
                            });
                            self.change(message, source_sql, tables).await?;
                        }
                        Received::Keepalive { end, reply } => {
                            self.received = self.received.max(end);
                            self.ctx.stats.update(self.ctx.id, |r| {
                                r.received_lsn = r.received_lsn.max(end);
                                r.source_lsn = r.source_lsn.max(end);
                            });
                            if self.idle() && end > self.confirmed {
                                // Everything the source sent is applied.
                                self.confirmed = end;
                                self.ctx.stats.update(self.ctx.id, |r| r.applied_lsn = end);
                            }
                            if reply || self.idle() {
                                self.feedback(source).await?;
                            }
                        }
                    }
                }
                _ = quiet, if flush_due => {
                    self.flush().await?;
                }
            }
            if self.open.is_none()
                && !self.batch.is_empty()
                && (self.batch.largest() >= BATCH_BYTES
                    || self.batch.started.is_some_and(|s| s.elapsed() >= BATCH_AGE))
            {
                self.flush().await?;
            }
            if self.open.is_none() && self.side.as_ref().is_some_and(SideCopy::copied) {
                self.drain_side_copy().await?;
            }
        }
    }

    fn idle(&self) -> bool {
        self.open.is_none() && self.batch.is_empty() && self.in_flight.is_empty()
    }

    async fn feedback(&mut self, source: &mut Source) -> Result<(), StreamError> {
        self.last_feedback = Instant::now();
        source.feedback(self.received, self.confirmed).await
    }

    async fn housekeeping(
        &mut self,
        source: &mut Source,
        source_sql: &mut Conn,
    ) -> Result<(), StreamError> {
        if self.last_feedback.elapsed() >= Duration::from_secs(5) {
            self.feedback(source).await?;
        }
        let rows = source_sql
            .query(&format!(
                "SELECT pg_current_wal_lsn()::text, confirmed_flush_lsn::text \
                 FROM pg_catalog.pg_replication_slots WHERE slot_name = {}",
                quote::literal(&self.ctx.slot)
            ))
            .await?;
        let current: Lsn = rows
            .get(0, 0)
            .and_then(|l| l.parse().ok())
            .unwrap_or_default();
        let flushed: Lsn = rows
            .get(0, 1)
            .and_then(|l| l.parse().ok())
            .unwrap_or_default();
        let pending_time = self
            .open
            .as_ref()
            .map(|o| o.commit_time)
            .or(self.in_flight.front().and_then(|f| f.first_time))
            .or(self.batch.first_time);
        let idle = self.idle();
        let syncing =
            self.schema_batch.is_some() || !self.copy_after.is_empty() || self.side.is_some();
        self.ctx.stats.update(self.ctx.id, |r| {
            // Sampled before the last feedback: never behind what is known applied.
            r.source_lsn = current.max(r.applied_lsn);
            r.lag_bytes = Some(current.0.saturating_sub(flushed.0));
            r.oldest_pending = pending_time.map(wal::to_system_time);
            r.status = if syncing {
                StreamStatus::SyncingSchema
            } else if idle || r.lag() < Duration::from_secs(1) {
                StreamStatus::Streaming
            } else {
                StreamStatus::CatchingUp
            };
        });
        self.ctx.stats.tick(self.ctx.id);
        Ok(())
    }

    /// Tables to copy before going on: named by RESYNC_TABLE, or added to the publication
    /// (looked for every few seconds: a table added with rows that never change has no
    /// change to announce it).
    async fn tables_to_copy(
        &mut self,
        source_sql: &mut Conn,
        tables: &mut Tables,
    ) -> Result<(), StreamError> {
        let mut resync = Vec::new();
        for name in self.ctx.control.take_resyncs() {
            match tables.find(&name) {
                Some(table) => resync.push(table),
                None => {
                    let error = format!("RESYNC_TABLE: {name} is not a table of this move");
                    warn!("{error}");
                    self.ctx
                        .stats
                        .update(self.ctx.id, |r| r.last_error = Some(error));
                }
            }
        }
        if !resync.is_empty() {
            return self.copy_beside(resync, true).await;
        }
        if self.last_publication_check.elapsed() < PUBLICATION_CHECK {
            return Ok(());
        }
        self.last_publication_check = Instant::now();
        let added: Vec<_> = publication::tables(source_sql, &self.ctx.publication)
            .await?
            .into_iter()
            .filter(|t| !tables.contains(t.oid))
            .collect();
        if added.is_empty() {
            return Ok(());
        }
        self.add_tables(added, source_sql, tables).await
    }

    /// Tables new to the publication join the move: created on the shards and copied beside
    /// the stream, their changes held back meanwhile.
    async fn add_tables(
        &mut self,
        added: Vec<TableRef>,
        source_sql: &mut Conn,
        tables: &mut Tables,
    ) -> Result<(), StreamError> {
        if self.side.is_some() {
            // One copy beside the stream at a time: the running one's tables are copied while
            // the stream waits, and the next session finds these again.
            return Err(self.abandon_side_copy());
        }
        for table in &added {
            tables
                .add(source_sql, table.clone(), &self.ctx.sharding, Lsn::ZERO)
                .await?;
            self.moved.push(table.clone());
        }
        self.ctx.control.set_tables(tables.all());
        self.copy_beside(added, false).await
    }

    /// Ends the session to copy `tables` (marked unfinished) while it waits; from now on
    /// the stream does not look caught up (its status says it is changing a table) until
    /// they are copied.
    fn copy_now(&self, tables: Vec<TableRef>) -> StreamError {
        self.ctx
            .stats
            .update(self.ctx.id, |r| r.status = StreamStatus::SyncingSchema);
        StreamError::Resync { tables }
    }

    /// Takes a shard's report; whether the confirmed position moved.
    fn report(&mut self, report: Report) -> Result<bool, StreamError> {
        match report {
            Report::Failed { shard, error } => Err(StreamError::Apply { shard, error }),
            Report::CopyAgain { table, batch } => {
                match self.moved.iter().find(|t| t.is_named(&table)) {
                    Some(found) => {
                        info!(
                        "{table}: a column was added whose values in the rows already there only a copy can bring (a volatile default, or a default the source catalog no longer keeps for them); copying the table again once the batch that adds it is in"
                    );
                        if !self.copy_after.contains(found) {
                            self.copy_after.push(found.clone());
                        }
                        // The batch that adds the column must commit first.
                        self.copy_after_batch = self.copy_after_batch.max(batch);
                        self.ctx
                            .stats
                            .update(self.ctx.id, |r| r.status = StreamStatus::SyncingSchema);
                        Ok(false)
                    }
                    None => {
                        warn!("{table}: a column was added whose existing values only a copy can bring, but the table is not part of the move");
                        Ok(false)
                    }
                }
            }
            Report::SchemaFailed {
                shard,
                statement,
                error,
            } => Err(StreamError::SchemaApply {
                shard,
                statement,
                error,
            }),
            Report::Committed { shard, batch } => {
                if let Some(entry) = self.in_flight.iter_mut().find(|f| f.batch == batch) {
                    entry.pending.remove(&shard);
                }
                Ok(self.complete())
            }
        }
    }

    /// Confirms the batches every shard committed, in order.
    fn complete(&mut self) -> bool {
        let mut moved = false;
        while self.in_flight.front().is_some_and(|f| f.pending.is_empty()) {
            let Some(done) = self.in_flight.pop_front() else {
                break;
            };
            self.confirmed = self.confirmed.max(done.end_lsn);
            self.completed = Some(done.batch);
            moved = true;
            if self.schema_batch.is_some_and(|b| done.batch >= b) {
                self.schema_batch = None;
            }
            let confirmed = self.confirmed;
            self.ctx.stats.update(self.ctx.id, |r| {
                r.applied_lsn = confirmed;
                r.transactions += done.transactions;
                r.rows += done.rows;
            });
        }
        moved
    }

    async fn change(
        &mut self,
        message: Message,
        source_sql: &mut Conn,
        tables: &mut Tables,
    ) -> Result<(), StreamError> {
        match message {
            Message::Begin {
                final_lsn,
                commit_time,
                ..
            } => {
                if self.open.is_some() {
                    return Err(StreamError::Protocol("BEGIN inside a transaction".into()));
                }
                if self.batch.started.is_none() {
                    self.batch.started = Some(Instant::now());
                    self.batch.first_time = Some(commit_time);
                }
                for shard in &mut self.batch.shards {
                    shard.begin_transaction();
                }
                self.open = Some(Open {
                    commit_lsn: final_lsn,
                    commit_time,
                    active: self.applied.iter().map(|a| final_lsn > *a).collect(),
                });
            }
            Message::Commit {
                commit_lsn,
                end_lsn,
                commit_time,
                ..
            } => {
                let Some(open) = self.open.take() else {
                    return Err(StreamError::Protocol("COMMIT outside a transaction".into()));
                };
                if open.commit_lsn != commit_lsn {
                    return Err(StreamError::Protocol(format!(
                        "COMMIT at {commit_lsn} for the transaction that began for {}",
                        open.commit_lsn
                    )));
                }
                self.batch.last = Some((commit_lsn, end_lsn, commit_time));
                self.batch.transactions += 1;
            }
            Message::Relation { relation, .. } => {
                if !tables.contains(relation.oid) {
                    // Added to the publication since the session started: copied beside the
                    // stream, its changes held back until then.
                    let added = publication::tables(source_sql, &self.ctx.publication).await?;
                    if let Some(table) = added.into_iter().find(|t| t.oid == relation.oid) {
                        self.add_tables(vec![table], source_sql, tables).await?;
                    }
                }
                if let Some(changed) = tables.is_new_shape(&relation)? {
                    self.schema_change(&relation, changed, source_sql, tables)
                        .await?;
                }
                tables.relation(&relation)?;
            }
            Message::Insert { relation, new, .. } => {
                let target = tables.target(relation)?;
                if let Some(mut out) = self.out(&target.info.table, target.info.watermark)? {
                    route::insert(&mut out, &target, &new)?;
                }
            }
            Message::Update {
                relation, old, new, ..
            } => {
                let target = tables.target(relation)?;
                if self
                    .out(&target.info.table, target.info.watermark)?
                    .is_none()
                {
                    return Ok(());
                }
                let mut new = new;
                if route::missing_values(&target, old.as_ref(), &new)? {
                    let found = source_sql.query(&route::lookup_sql(&target, &new)?).await?;
                    if found.rows.is_empty() {
                        // The row is gone from the source (or has another key) by now: a
                        // later change deletes or moves it; take it off every shard meanwhile.
                        warn!(
                            "{}: a row moved shard with unchanged TOAST values that the source no longer has; removing it until a later change brings it",
                            target.qualified
                        );
                        let identity = old.unwrap_or(OldTuple::Key(new));
                        if let Some(mut out) =
                            self.out(&target.info.table, target.info.watermark)?
                        {
                            route::delete(&mut out, &target, &identity)?;
                        }
                        return self.chunk().await;
                    }
                    for (i, value) in new.iter_mut().enumerate() {
                        if *value == Value::Unchanged {
                            *value = match found.get(0, i) {
                                Some(text) => {
                                    Value::Text(bytes::Bytes::copy_from_slice(text.as_bytes()))
                                }
                                None => Value::Null,
                            };
                        }
                    }
                }
                if let Some(mut out) = self.out(&target.info.table, target.info.watermark)? {
                    route::update(&mut out, &target, old.as_ref(), &new)?;
                }
            }
            Message::Delete { relation, old, .. } => {
                let target = tables.target(relation)?;
                if let Some(mut out) = self.out(&target.info.table, target.info.watermark)? {
                    route::delete(&mut out, &target, &old)?;
                }
            }
            Message::Truncate { relations, .. } => {
                let open_lsn = self.open_lsn()?;
                let mut names = Vec::new();
                let mut side_names = Vec::new();
                let mut side_table = None;
                for oid in relations {
                    let info = tables.info(oid)?;
                    if open_lsn < info.watermark {
                        continue;
                    }
                    if self.side.as_ref().is_some_and(|s| s.has(&info.table)) {
                        side_names.push(info.table.qualified());
                        side_table = Some(info.table.clone());
                    } else {
                        names.push(info.table.qualified());
                    }
                }
                if !names.is_empty() {
                    let anywhere = TableRef {
                        schema: String::new(),
                        name: String::new(),
                        oid: 0,
                    };
                    if let Some(mut out) = self.out(&anywhere, Lsn::ZERO)? {
                        route::truncate(&mut out, &names)?;
                    }
                }
                if let Some(table) = side_table {
                    if let Some(mut out) = self.out(&table, Lsn::ZERO)? {
                        route::truncate(&mut out, &side_names)?;
                    }
                }
            }
            Message::LogicalMessage {
                prefix, content, ..
            } if prefix == crate::router::ddl::MESSAGE_PREFIX => self.replay_ddl(&content).await?,
            Message::Origin { .. } | Message::Type { .. } | Message::LogicalMessage { .. } => {}
            Message::StreamStart { .. }
            | Message::StreamStop
            | Message::StreamCommit { .. }
            | Message::StreamAbort { .. } => {
                return Err(StreamError::Protocol(
                    "a streamed (in-progress) transaction, which this stream did not ask for"
                        .into(),
                ))
            }
        }
        self.chunk().await
    }

    /// A table's definition may have changed: the shards that apply this transaction compare
    /// it with their own and change theirs first (in this batch, before the changes).
    async fn schema_change(
        &mut self,
        relation: &Relation,
        changed: bool,
        source_sql: &mut Conn,
        tables: &mut Tables,
    ) -> Result<(), StreamError> {
        let columns: Vec<(String, u32, i32)> = relation
            .columns
            .iter()
            .map(|c| (c.name.clone(), c.type_oid, c.type_modifier))
            .collect();
        let source_columns = schema::source_columns(source_sql, relation.oid, &columns).await?;
        let Some(info) = tables.learn(relation.oid, &source_columns) else {
            return Ok(());
        };
        if self.side.as_ref().is_some_and(|s| s.has(&info.table)) {
            // Its copy brings the shape of the moment. A change the shards lack (DDL run on
            // the source directly) may come after the copy read it: copy again, waiting.
            if changed
                && self
                    .shards_lack(&self.shape_of(&info, &source_columns))
                    .await?
            {
                return Err(self.abandon_side_copy());
            }
            return Ok(());
        }
        let Some(open) = self.open.as_ref() else {
            return Ok(());
        };
        // The copy of this table was taken later: the shards already have a newer shape.
        if open.commit_lsn < info.watermark {
            return Ok(());
        }
        let active = open.active.clone();
        self.commit_before_open().await?;
        let change = Arc::new(self.shape_of(&info, &source_columns));
        let batch = self.next_batch;
        self.send_to_active_shards(&active, changed, || Work::Schema {
            change: change.clone(),
            batch,
        })
        .await
    }

    /// The new shape of `info`'s table, with its `columns` on the source.
    fn shape_of(&self, info: &TableInfo, columns: &[schema::SourceColumn]) -> SchemaChange {
        SchemaChange {
            source: info.table.clone(),
            table: info.table.qualified(),
            key: info.rule.as_ref().map(|r| r.column().to_string()),
            columns: columns.to_vec(),
            attnums: info.attnums.clone(),
            back: self.ctx.from_cutover,
        }
    }

    /// Whether some shard's table differs from `change` (or the shard lacks the table).
    async fn shards_lack(&self, change: &SchemaChange) -> Result<bool, StreamError> {
        for shard in 0..self.ctx.destination.shards.len() {
            let mut conn = self.ctx.destination.connect_primary(shard).await?;
            let columns = schema::shard_columns(&mut conn, &change.table).await;
            conn.close().await;
            match columns? {
                Some(columns) if schema::plan(&columns, change).is_ok_and(|ops| ops.is_empty()) => {
                }
                _ => return Ok(true),
            }
        }
        Ok(false)
    }

    /// DDL an application ran through pgdog on the source: replayed on the shards that apply
    /// this transaction, at this point of it.
    async fn replay_ddl(&mut self, content: &[u8]) -> Result<(), StreamError> {
        let text = String::from_utf8_lossy(content);
        let (search_path, sql) = crate::router::ddl::split_message(&text).unwrap_or(("", &text));
        if self.side.as_ref().is_some_and(|s| s.named_by(sql)) {
            // It changes a table being copied, under the copy's feet: copy it again,
            // waiting, and replay the DDL when the next session reaches it.
            return Err(self.abandon_side_copy());
        }
        let Some(open) = self.open.as_ref() else {
            warn!("DDL captured outside a transaction was not replayed: {sql}");
            return Ok(());
        };
        let active = open.active.clone();
        let (search_path, sql) = (search_path.to_string(), sql.to_string());
        self.commit_before_open().await?;
        let batch = self.next_batch;
        self.send_to_active_shards(&active, true, || Work::Ddl {
            search_path: search_path.clone(),
            sql: sql.clone(),
            batch,
        })
        .await
    }

    /// Commits the batch's transactions before the open one, so a schema change that fails
    /// in it pauses the stream right there: resuming starts with that transaction.
    async fn commit_before_open(&mut self) -> Result<(), StreamError> {
        let Some(commit_time) = self.open.as_ref().map(|o| o.commit_time) else {
            return Ok(());
        };
        if self.batch.last.is_none() {
            return Ok(());
        }
        // Part of it went ahead (a large transaction): nothing can be cut.
        if !self.batch.shards.iter().all(ShardSql::can_split) {
            return Ok(());
        }
        let open: Vec<(String, u64)> = self
            .batch
            .shards
            .iter_mut()
            .map(|shard| shard.split_open().unwrap_or_default())
            .collect();
        self.flush().await?;
        for (shard, (sql, rows)) in open.into_iter().enumerate() {
            self.batch.touched[shard] = rows > 0;
            self.batch.shards[shard].restore_open(sql, rows);
        }
        self.batch.started = Some(Instant::now());
        self.batch.first_time = Some(commit_time);
        Ok(())
    }

    /// Sends each active shard its pending statements, then `work()`; `changed`: a table's
    /// definition changed (the status says so until the batch is in).
    async fn send_to_active_shards(
        &mut self,
        active: &[bool],
        changed: bool,
        work: impl Fn() -> Work,
    ) -> Result<(), StreamError> {
        for (shard, active) in active.iter().enumerate() {
            if !active {
                continue;
            }
            let pending = &mut self.batch.shards[shard];
            if !pending.is_empty() {
                let (prepare, sql) = pending.take();
                self.send(shard, Work::Sql { prepare, sql }).await?;
            }
            self.batch.touched[shard] = true;
            self.send(shard, work()).await?;
        }
        // The first shape of a table in a session is checked too, but only a change shows.
        if changed {
            self.schema_batch = Some(self.next_batch);
            self.ctx
                .stats
                .update(self.ctx.id, |r| r.status = StreamStatus::SyncingSchema);
        }
        Ok(())
    }

    fn open_lsn(&self) -> Result<Lsn, StreamError> {
        self.open
            .as_ref()
            .map(|o| o.commit_lsn)
            .ok_or_else(|| StreamError::Protocol("a change outside a transaction".into()))
    }

    /// Where the open transaction's changes of `table` (copied at `watermark`) go: the
    /// batch, or the buffer of a copy beside the stream; `None` when the copy has them.
    fn out(&mut self, table: &TableRef, watermark: Lsn) -> Result<Option<Out<'_>>, StreamError> {
        let Some(open) = self.open.as_ref() else {
            return Err(StreamError::Protocol(
                "a change outside a transaction".into(),
            ));
        };
        if open.commit_lsn < watermark {
            return Ok(None);
        }
        if let Some(side) = self.side.as_mut().filter(|s| s.has(table)) {
            return Ok(Some(side.out(open.commit_lsn, &open.active)));
        }
        Ok(Some(Out {
            shards: &mut self.batch.shards,
            active: &open.active,
        }))
    }

    /// Starts copying `tables` again (emptied first) while the others stream; their changes
    /// wait until the copy is in. One such copy at a time: with one running, the session
    /// ends and both copies' tables are copied while it waits.
    async fn copy_beside(
        &mut self,
        mut tables: Vec<TableRef>,
        clean: bool,
    ) -> Result<(), StreamError> {
        // Marked unfinished on every shard before any change is held back: the batches
        // committed from now on confirm positions past changes the shards do not have yet,
        // so a session that ends before they are applied must lead to a fresh copy.
        for shard in 0..self.ctx.destination.shards.len() {
            let mut conn = self.ctx.destination.connect_primary(shard).await?;
            let mut sql = Vec::new();
            sql.extend(
                tables
                    .iter()
                    .map(|t| crate::reshard::copy::state::mark_pending(&self.ctx.slot, t)),
            );
            let marked = async {
                conn.create_if_missing(crate::reshard::copy::state::CREATE)
                    .await?;
                conn.execute(&sql.join(";\n")).await
            }
            .await;
            conn.close().await;
            marked?;
        }
        if let Some(side) = self.side.take() {
            // One copy beside the stream at a time: both copies' tables are copied while
            // the stream waits (marked, so the copy empties those it finds with rows).
            for table in &side.tables {
                if !tables.contains(table) {
                    tables.push(table.clone());
                }
            }
            return Err(self.copy_now(tables));
        }
        // The batch being filled may hold changes of the tables: it must be in before the
        // copy empties them.
        let after_batch = if self.batch.is_empty() {
            self.next_batch.checked_sub(1)
        } else {
            Some(self.next_batch)
        };
        self.side_copies += 1;
        let side = SideCopy::new(
            tables,
            clean,
            self.batch.shards.len(),
            self.side_copies,
            after_batch,
        );
        info!("copying {} while the other tables stream", side.names());
        self.side = Some(side);
        self.ctx
            .stats
            .update(self.ctx.id, |r| r.status = StreamStatus::SyncingSchema);
        Ok(())
    }

    /// Starts the copy beside the stream once the batches it waits for are in.
    fn start_side_copy(&mut self) {
        let completed = self.completed;
        let Some(side) = self.side.as_mut() else {
            return;
        };
        if side.started()
            || side
                .after_batch
                .is_some_and(|b| completed.is_none_or(|c| c < b))
        {
            return;
        }
        let ctx = self.ctx;
        side.start(tokio::spawn(resync::copy_beside(
            ctx.config.clone(),
            ctx.options.clone(),
            ctx.slot.clone(),
            side.tables.clone(),
            side.clean,
            ctx.task.clone(),
        )));
    }

    /// Looks after the copy beside the stream: its end (a failure ends the session; the
    /// next one copies the tables again), or too much held meanwhile (the session ends and
    /// the tables are copied while it waits).
    async fn side_copy_done(&mut self) -> Result<(), StreamError> {
        let Some(side) = self.side.as_mut() else {
            return Ok(());
        };
        if side.bytes() > side::LIMIT {
            warn!(
                "more than {} MB of changes waited for the copy of {}: copying it while the stream waits instead",
                side::LIMIT >> 20,
                side.names()
            );
            return Err(self.abandon_side_copy());
        }
        side.finished().await
    }

    /// Gives up the copy beside the stream: the session ends, and its tables are copied
    /// (again, from scratch) while the stream waits.
    fn abandon_side_copy(&mut self) -> StreamError {
        match self.side.take() {
            // Marked unfinished, so the copy empties those it finds with rows (and creates
            // those the shards lack).
            Some(side) => self.copy_now(side.tables.clone()),
            None => StreamError::Protocol("no copy beside the stream to give up".into()),
        }
    }

    /// The copy beside the stream is in: the changes that waited for it go to every shard,
    /// after the batches so far and before any later change of its tables, each shard in
    /// one transaction that marks the tables finished. Their indexes follow in the
    /// background.
    async fn drain_side_copy(&mut self) -> Result<(), StreamError> {
        self.flush().await?;
        let Some(mut side) = self.side.take() else {
            return Ok(());
        };
        let mut watermark = Lsn::ZERO;
        for shard in 0..self.ctx.destination.shards.len() {
            let mut conn = self.ctx.destination.connect_primary(shard).await?;
            let marks = state::watermarks(&mut conn, &self.ctx.slot).await;
            conn.close().await;
            for (table, lsn) in marks? {
                if side
                    .tables
                    .iter()
                    .any(|t| t.schema == table.0 && t.name == table.1)
                {
                    watermark = watermark.max(lsn);
                }
            }
        }
        let finish = side
            .tables
            .iter()
            .map(|t| crate::reshard::copy::state::drained(&self.ctx.slot, t))
            .collect::<Vec<_>>()
            .join(";\n");
        let batch = self.next_batch;
        self.next_batch += 1;
        let drained = side.drain(watermark);
        let mut pending = BTreeSet::new();
        for (shard, (prepare, sql)) in drained.into_iter().enumerate() {
            pending.insert(shard);
            self.send(
                shard,
                Work::Drain {
                    prepare,
                    sql,
                    finish: finish.clone(),
                    batch,
                },
            )
            .await?;
        }
        self.in_flight.push_back(InFlight {
            batch,
            end_lsn: self.confirmed,
            pending,
            first_time: None,
            transactions: 0,
            rows: 0,
        });
        info!(
            "copied {} beside the stream (watermark {watermark}); its changes since are applied, indexes follow",
            side.names()
        );
        let ctx = self.ctx;
        let (config, options, task, tables) = (
            ctx.config.clone(),
            ctx.options.clone(),
            ctx.task.clone(),
            side.tables.clone(),
        );
        let (stats, id, slot) = (ctx.stats.clone(), ctx.id, ctx.slot.clone());
        tokio::spawn(async move {
            let names: Vec<String> = tables.iter().map(|t| t.qualified()).collect();
            let step = format!(
                "building the indexes of {} while streaming",
                names.join(", ")
            );
            let built = resync::showing_step(task.as_ref(), &slot, step, async {
                resync::indexes(&config, &options, &tables, task.as_ref()).await
            });
            match built.await {
                Ok(Some(warning)) => stats.update(id, |r| r.last_error = Some(warning)),
                Ok(None) => {}
                Err(e) => warn!("building the indexes of a table copied again: {e}"),
            }
        });
        Ok(())
    }

    /// Sends large parts of an open batch ahead (big transactions).
    async fn chunk(&mut self) -> Result<(), StreamError> {
        for shard in 0..self.batch.shards.len() {
            if self.batch.shards[shard].rows > 0 {
                self.batch.touched[shard] = true;
            }
            if self.batch.shards[shard].size() >= CHUNK_BYTES {
                let (prepare, sql) = self.batch.shards[shard].take();
                self.send(shard, Work::Sql { prepare, sql }).await?;
            }
        }
        Ok(())
    }

    async fn send(&mut self, shard: usize, work: Work) -> Result<(), StreamError> {
        self.workers[shard]
            .send(work)
            .await
            .map_err(|_| StreamError::Protocol(format!("the applier of shard {shard} ended")))
    }

    /// Commits the batch on every shard it touched.
    async fn flush(&mut self) -> Result<(), StreamError> {
        let Some((commit_lsn, end_lsn, commit_time)) = self.batch.last else {
            return Ok(());
        };
        let batch = self.next_batch;
        self.next_batch += 1;
        let mut pending = BTreeSet::new();
        let mut rows = 0;
        for shard in 0..self.batch.shards.len() {
            rows += self.batch.shards[shard].rows;
            if !self.batch.touched[shard] && self.batch.shards[shard].rows == 0 {
                continue;
            }
            pending.insert(shard);
            let (prepare, sql) = self.batch.shards[shard].take();
            self.send(
                shard,
                Work::Commit {
                    prepare,
                    sql,
                    batch,
                    commit_lsn,
                    end_lsn,
                    commit_time,
                },
            )
            .await?;
        }
        self.in_flight.push_back(InFlight {
            batch,
            end_lsn,
            pending,
            first_time: self.batch.first_time,
            transactions: self.batch.transactions,
            rows,
        });
        self.batch.reset();
        self.complete();
        Ok(())
    }
}
