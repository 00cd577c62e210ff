//! A copy worker: one source connection reading in the copy's snapshot, one connection per
//! destination shard. For each (table, range) it streams the source's binary COPY through the
//! tuple router into every shard's COPY FROM STDIN, and commits each shard's part together
//! with its progress row. A shard that fails is retried with backoff for that range only.
//! Once a table's last range is in, reading each shard back to verify it becomes one unit per
//! shard at the front of the queue, so the workers verify the shards in parallel.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;
use tracing::{info, warn};

use super::digest::{read_digest, Digest, ReadError};
use super::progress::{CopyId, CopyStatus, TableCopies};
use super::state;
use super::tables::TableJob;
use super::tuples::{TuplePlan, TupleRouter};
use super::CopyError;
use crate::backend::server::ServerAddress;
use crate::quote;
use crate::reshard::conn::{Conn, ConnError};
use crate::reshard::endpoints::ClusterEndpoints;
use crate::reshard::tasks::TaskHandle;

/// Bytes buffered for a shard before they are sent.
const FLUSH: usize = 128 * 1024;

/// Session settings of the shard connections: no timeouts; triggers and foreign keys off
/// where the role may change `session_replication_role` (a replica applying rows).
const SHARD_SESSION: &str = "SET statement_timeout = 0; SET lock_timeout = 0; \
    SET idle_in_transaction_session_timeout = 0";

/// What every worker shares.
pub struct CopyContext {
    /// The source primary.
    pub source: ServerAddress,
    /// The destination shards.
    pub destination: ClusterEndpoints,
    /// The slot (names the progress rows).
    pub slot: String,
    /// The snapshot to read in.
    pub snapshot: String,
    /// Attempts per range and shard.
    pub retry_max: usize,
    /// Live progress.
    pub progress: TableCopies,
    /// The task, to stop between ranges.
    pub task: Option<TaskHandle>,
    /// Set when any worker failed: the others stop too.
    pub abort: AtomicBool,
    /// Connect timeout.
    pub timeout: Duration,
    /// `default_toast_compression` of the shard sessions, if the copy sets one.
    pub toast_compression: Option<&'static str>,
    /// Set once a shard refused `toast_compression` (warned about once).
    pub toast_refused: AtomicBool,
    /// Told each table (schema, name) once every shard verified it (its indexes can be built).
    pub on_verified: Option<UnboundedSender<(String, String)>>,
}

/// What a unit does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Copy this range to every shard.
    Range(usize),
    /// Read this shard's copy of the table back and compare it.
    Verify(usize),
}

/// One range of one table, or the verification of one shard's copy of it.
pub struct Unit {
    /// The table.
    pub job: Arc<TableJob>,
    /// What to do.
    pub work: Work,
    /// Its progress record.
    pub copy: CopyId,
    /// Ranges of the table not done yet (the worker finishing the last one queues the
    /// verification).
    pub remaining: Arc<AtomicUsize>,
    /// Shards not verified yet (the worker verifying the last one marks the table done).
    pub unverified: Arc<AtomicUsize>,
}

impl Unit {
    /// The units copying every range of `job`.
    pub fn ranges(job: Arc<TableJob>, copy: CopyId, shards: usize) -> Vec<Unit> {
        let remaining = Arc::new(AtomicUsize::new(job.ranges.len()));
        let unverified = Arc::new(AtomicUsize::new(shards));
        (0..job.ranges.len())
            .map(|range| Unit {
                job: job.clone(),
                work: Work::Range(range),
                copy,
                remaining: remaining.clone(),
                unverified: unverified.clone(),
            })
            .collect()
    }

    fn verify(&self, shard: usize) -> Unit {
        Unit {
            job: self.job.clone(),
            work: Work::Verify(shard),
            copy: self.copy,
            remaining: self.remaining.clone(),
            unverified: self.unverified.clone(),
        }
    }
}

/// The units left to copy.
pub type Queue = Arc<Mutex<VecDeque<Unit>>>;

/// Takes units until the queue is empty, another worker failed, or the task is stopped.
pub async fn run(ctx: Arc<CopyContext>, queue: Queue) -> Result<(), CopyError> {
    let result = work(&ctx, &queue).await;
    if result.is_err() {
        ctx.abort.store(true, Ordering::Relaxed);
    }
    result
}

async fn work(ctx: &CopyContext, queue: &Queue) -> Result<(), CopyError> {
    let mut source = Conn::connect(&ctx.source, ctx.timeout).await?;
    source
        .execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await?;
    source
        .execute(&format!(
            "SET TRANSACTION SNAPSHOT {}",
            quote::literal(&ctx.snapshot)
        ))
        .await?;
    let mut shards: Vec<Option<Conn>> = (0..ctx.destination.shards.len()).map(|_| None).collect();
    loop {
        if ctx.abort.load(Ordering::Relaxed) {
            break;
        }
        if ctx.task.as_ref().is_some_and(|t| t.is_stopping()) {
            return Err(CopyError::Stopped);
        }
        let Some(unit) = lock(queue).pop_front() else {
            break;
        };
        let result = match unit.work {
            Work::Range(range) => {
                ctx.progress.set_status(unit.copy, CopyStatus::Copying);
                let result = copy_range(ctx, &mut source, &mut shards, &unit, range).await;
                if result.is_ok() {
                    ctx.progress.update(unit.copy, |r| r.ranges_done += 1);
                    if unit.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                        ctx.progress.set_status(unit.copy, CopyStatus::Verifying);
                        let mut queue = lock(queue);
                        for shard in (0..shards.len()).rev() {
                            queue.push_front(unit.verify(shard));
                        }
                    }
                }
                result
            }
            Work::Verify(shard) => {
                let result =
                    verify_shard(ctx, &unit.job, unit.copy, shard, &mut shards[shard]).await;
                if result.is_ok() && unit.unverified.fetch_sub(1, Ordering::AcqRel) == 1 {
                    verified(ctx, &unit.job, unit.copy);
                }
                result
            }
        };
        if let Err(e) = result {
            fail(ctx, unit.copy, &e);
            return Err(e);
        }
    }
    let _ = source.execute("COMMIT").await;
    source.close().await;
    for conn in shards.into_iter().flatten() {
        conn.close().await;
    }
    Ok(())
}

fn lock(queue: &Queue) -> std::sync::MutexGuard<'_, VecDeque<Unit>> {
    match queue.lock() {
        Ok(queue) => queue,
        Err(poisoned) => poisoned.into_inner(),
    }
}

fn fail(ctx: &CopyContext, copy: CopyId, error: &CopyError) {
    ctx.progress
        .update(copy, |r| r.error = Some(error.to_string()));
    ctx.progress.set_status(copy, CopyStatus::Failed);
}

/// How long to wait before attempt `attempt + 1` of something a restarting server broke:
/// 400 ms, doubling up to 12.8 s.
pub(super) fn backoff(attempt: usize) -> Duration {
    Duration::from_millis(200u64 << attempt.min(6))
}

/// Whether a shard error may go away by itself (restart, connection loss, overload).
pub(super) fn retryable(error: &ConnError) -> bool {
    match error {
        ConnError::Connect(_) | ConnError::Lost { .. } => true,
        ConnError::Sql { .. } => error
            .code()
            .is_some_and(|code| ["08", "57", "53", "40"].iter().any(|c| code.starts_with(c))),
    }
}

/// Copies one range to every shard that lacks it, retrying failed shards.
async fn copy_range(
    ctx: &CopyContext,
    source: &mut Conn,
    shards: &mut [Option<Conn>],
    unit: &Unit,
    range: usize,
) -> Result<(), CopyError> {
    let mut needed: Vec<usize> = (0..shards.len()).collect();
    let mut attempt = 1;
    loop {
        let failed = copy_once(ctx, source, shards, unit, range, &needed, attempt == 1).await?;
        if failed.is_empty() {
            return Ok(());
        }
        let table = unit.job.table.qualified();
        let (shard, error) = &failed[0];
        if attempt >= ctx.retry_max || !failed.iter().all(|(_, e)| retryable(e)) {
            return Err(CopyError::Shard {
                table,
                range,
                shard: *shard,
                attempts: attempt,
                error: error.short(),
            });
        }
        let delay = backoff(attempt);
        warn!(
            "copy of {table} range {} failed on shard {shard} (attempt {attempt} of {}): {}; retrying in {:?}",
            range,
            ctx.retry_max,
            error.short(),
            delay
        );
        tokio::time::sleep(delay).await;
        attempt += 1;
        needed.clear();
        for (shard, _) in failed {
            shards[shard] = None;
            // The commit may have happened before the connection broke.
            match connect(ctx, shard).await {
                Ok(mut conn) => {
                    match state::has_range(&mut conn, &ctx.slot, &unit.job.table, range).await {
                        Ok(true) => {}
                        _ => needed.push(shard),
                    }
                    shards[shard] = Some(conn);
                }
                Err(_) => needed.push(shard),
            }
        }
        if needed.is_empty() {
            return Ok(());
        }
    }
}

async fn connect(ctx: &CopyContext, shard: usize) -> Result<Conn, ConnError> {
    let mut conn = ctx.destination.connect_primary(shard).await?;
    conn.execute(SHARD_SESSION).await?;
    // Needs superuser (or the right grant); without it the copy still works because schema
    // sync creates foreign keys and triggers only after the copy.
    let _ = conn.execute("SET session_replication_role = replica").await;
    if let Some(method) = ctx.toast_compression {
        if let Err(e) = conn
            .execute(&format!("SET default_toast_compression = {method}"))
            .await
        {
            if !ctx.toast_refused.swap(true, Ordering::Relaxed) {
                warn!(
                    "shard {shard} cannot compress TOAST values with {method} ({}); the copy uses the server's default ([replication] toast_compression)",
                    e.short()
                );
            }
        }
    }
    Ok(conn)
}

/// One attempt: the shards in `needed` get the range; returns the shards that failed.
async fn copy_once(
    ctx: &CopyContext,
    source: &mut Conn,
    shards: &mut [Option<Conn>],
    unit: &Unit,
    range: usize,
    needed: &[usize],
    count_progress: bool,
) -> Result<Vec<(usize, ConnError)>, CopyError> {
    let job = &unit.job;
    let mut failed: Vec<(usize, ConnError)> = Vec::new();
    let mut active = vec![false; shards.len()];
    let copy_in = job.copy_in_sql();
    for &shard in needed {
        let mut conn = match shards[shard].take() {
            Some(conn) => conn,
            None => match connect(ctx, shard).await {
                Ok(conn) => conn,
                Err(e) => {
                    failed.push((shard, e));
                    continue;
                }
            },
        };
        let started = match conn.execute("BEGIN").await {
            Ok(_) => conn.copy_in_start(&copy_in).await,
            Err(e) => Err(e),
        };
        match started {
            Ok(()) => {
                active[shard] = true;
                shards[shard] = Some(conn);
            }
            Err(e) => failed.push((shard, e)),
        }
    }
    let mut router = TupleRouter::new(TuplePlan {
        key: job.rule.clone(),
        widen: job.widen.clone(),
        shards: shards.len(),
        hashing: job.hashing(),
    });
    source.copy_out_start(&job.copy_out_sql(range)).await?;
    let mut reported = (0u64, 0u64);
    let table = job.table.qualified();
    while let Some(frame) = source.copy_out_next().await? {
        router.feed(frame.body()).map_err(|e| CopyError::Route {
            table: table.clone(),
            error: e.message,
        })?;
        for shard in 0..shards.len() {
            if let Some(bytes) = router.take(shard, FLUSH) {
                send(shards, &mut active, &mut failed, shard, &bytes).await;
            }
        }
        if count_progress && router.bytes() - reported.1 >= 4 * 1024 * 1024 {
            ctx.progress.add_progress(
                unit.copy,
                router.rows() - reported.0,
                router.bytes() - reported.1,
            );
            reported = (router.rows(), router.bytes());
        }
    }
    router.finish().map_err(|e| CopyError::Route {
        table: table.clone(),
        error: e.message,
    })?;
    if count_progress {
        ctx.progress.add_progress(
            unit.copy,
            router.rows() - reported.0,
            router.bytes() - reported.1,
        );
    }
    for shard in 0..shards.len() {
        if let Some(bytes) = router.take(shard, 0) {
            send(shards, &mut active, &mut failed, shard, &bytes).await;
        }
    }
    let digests: Vec<Digest> = router.digests().to_vec();
    for shard in 0..shards.len() {
        if !active[shard] {
            continue;
        }
        let Some(conn) = shards[shard].as_mut() else {
            continue;
        };
        let record = state::range_done(&ctx.slot, &job.table, range, digests[shard]);
        let result = async {
            conn.copy_in_finish().await?;
            conn.execute(&record).await?;
            conn.execute("COMMIT").await
        }
        .await;
        if let Err(e) = result {
            shards[shard] = None;
            failed.push((shard, e));
        }
    }
    Ok(failed)
}

/// Sends `bytes` to an active shard; a failure takes the shard out of this attempt.
async fn send(
    shards: &mut [Option<Conn>],
    active: &mut [bool],
    failed: &mut Vec<(usize, ConnError)>,
    shard: usize,
    bytes: &[u8],
) {
    if !active[shard] {
        return;
    }
    let Some(conn) = shards[shard].as_mut() else {
        return;
    };
    if let Err(e) = conn.copy_in_data(bytes).await {
        active[shard] = false;
        shards[shard] = None;
        failed.push((shard, e));
    }
}

/// Reads every shard's copy of the table back and compares it with what was recorded, one
/// shard after the other (tables an earlier run copied).
pub async fn verify(
    ctx: &CopyContext,
    job: &TableJob,
    copy: CopyId,
    shards: &mut [Option<Conn>],
) -> Result<(), CopyError> {
    ctx.progress.set_status(copy, CopyStatus::Verifying);
    for (shard, slot) in shards.iter_mut().enumerate() {
        verify_shard(ctx, job, copy, shard, slot).await?;
    }
    verified(ctx, job, copy);
    Ok(())
}

/// Marks the table done once every shard verified it.
fn verified(ctx: &CopyContext, job: &TableJob, copy: CopyId) {
    ctx.progress.update(copy, |r| r.verified = "ok".into());
    ctx.progress.set_status(copy, CopyStatus::Done);
    info!("copied and verified {}", job.table.qualified());
    if let Some(on_verified) = &ctx.on_verified {
        // A closed receiver (the post phase gave up) leaves the rest to the caller.
        let _ = on_verified.send((job.table.schema.clone(), job.table.name.clone()));
    }
}

/// Reads one shard's copy of the table back and compares it with what was recorded; on a
/// match, records it on that shard (the table counts as verified once every shard says so).
/// A shard that breaks meanwhile (restart) is read again after a backoff, like a failed range.
async fn verify_shard(
    ctx: &CopyContext,
    job: &TableJob,
    copy: CopyId,
    shard: usize,
    slot: &mut Option<Conn>,
) -> Result<(), CopyError> {
    let table = job.table.qualified();
    let mut attempt = 1;
    let (expected, found) = loop {
        match read_back(ctx, job, shard, slot).await {
            Ok(result) => break result,
            Err(CopyError::Conn(e)) if retryable(&e) && attempt < ctx.retry_max => {
                let delay = backoff(attempt);
                warn!(
                    "verifying {table} on shard {shard} failed (attempt {attempt} of {}): {}; retrying in {delay:?}",
                    ctx.retry_max,
                    e.short()
                );
                *slot = None;
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    };
    if found != expected {
        let mismatch = format!("shard {shard}: expected {expected}, found {found}");
        ctx.progress.update(copy, |r| r.verified = mismatch.clone());
        return Err(CopyError::Verification {
            table,
            detail: mismatch,
        });
    }
    if let Some(conn) = slot.as_mut() {
        state::verified(conn, &ctx.slot, &job.table).await?;
    }
    Ok(())
}

/// What shard `shard` should hold of the table and what it holds.
async fn read_back(
    ctx: &CopyContext,
    job: &TableJob,
    shard: usize,
    slot: &mut Option<Conn>,
) -> Result<(Digest, Digest), CopyError> {
    if slot.is_none() {
        *slot = Some(connect(ctx, shard).await?);
    }
    let Some(conn) = slot.as_mut() else {
        return Err(CopyError::Conn(ConnError::Lost {
            server: format!("shard {shard}"),
            message: "no connection".into(),
        }));
    };
    let expected = state::table_digest(conn, &ctx.slot, &job.table).await?;
    if let Some(fields) = &job.fields {
        return Ok((expected, fields.read(conn, job).await?));
    }
    let found = read_digest(conn, &job.read_back_sql(), job.shape.clone(), None)
        .await
        .map_err(|e| match e {
            ReadError::Conn(e) => CopyError::Conn(e),
            other => CopyError::Route {
                table: job.table.qualified(),
                error: other.to_string(),
            },
        })?;
    Ok((expected, found))
}
