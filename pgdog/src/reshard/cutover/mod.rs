//! Cutover: switch a database's clients from the source to the sharded destination without a
//! failed query. Checks the copy was verified and the stream is healthy, reads what it will
//! need (sequences, the stream back) while traffic still flows, waits for the stream's lag to
//! be small, pauses the source database's traffic at transaction boundaries, marks the source's
//! WAL (a logical message) and waits until every shard has applied up to the mark, moves the
//! sequences, creates the slots of the stream back, swaps the configuration in one atomic step
//! (clients of the source's name now reach the shards; the old servers stay reachable as
//! `<source>_before_cutover`), and resumes traffic. Then the forward stream stops, its slot
//! is dropped and the stream back starts ([`reverse`]): a cutover of that stream rolls back.
//! Any failure before the swap resumes traffic on the source unchanged.

pub mod checks;
pub mod log;
pub mod reverse;
pub mod save;
pub mod warm;

use std::sync::Arc;
use std::time::{Duration, Instant};

use pgdog_config::{ConfigAndUsers, CutoverTimeoutAction, RetargetError};
use tracing::{info, warn};

pub use log::{CutoverLog, CutoverRecord};

use super::conn::{Conn, ConnError};
use super::endpoints::{ClusterEndpoints, EndpointError};
use super::schema::{self, Phase, SchemaSyncOptions};
use super::stream::wal::Lsn;
use super::stream::ReplicationRecord;
use super::tasks::TaskHandle;
use crate::backend::databases::Databases;
use crate::quote;
use crate::state::PoolerState;
use reverse::ReversePlan;

/// How the old servers are named after a cutover.
pub fn retired_name(source: &str) -> String {
    format!("{source}_before_cutover")
}

/// What a cutover did.
#[derive(Debug, Clone)]
pub struct CutoverReport {
    /// The database whose clients moved.
    pub source: String,
    /// Where they go now.
    pub destination: String,
    /// How long client traffic was paused.
    pub pause: Duration,
    /// The source's WAL position at the pause.
    pub lsn: Lsn,
    /// Whether the timeout passed and the switch happened anyway.
    pub forced: bool,
    /// The task streaming changes back to the old servers (`CUTOVER <it>` rolls back).
    pub reverse_task: Option<u64>,
}

/// Why a cutover did not happen (traffic runs on the source, unchanged).
#[derive(Debug, thiserror::Error)]
pub enum CutoverError {
    /// Databases unusable in the config.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// A server failed.
    #[error(transparent)]
    Conn(#[from] ConnError),
    /// The stream is not healthy.
    #[error("the stream from slot {slot} is {status}; cutover needs it streaming")]
    NotStreaming {
        /// The slot.
        slot: String,
        /// Its status.
        status: String,
    },
    /// The copy was not verified on every shard.
    #[error("the copy for slot {slot} is not verified on shard {shard} ({detail}); cutover needs every table copied and verified")]
    NotVerified {
        /// The slot.
        slot: String,
        /// The shard.
        shard: usize,
        /// What is missing.
        detail: String,
    },
    /// The lag stayed above a threshold.
    #[error("{what}: the stream is still {lag} bytes behind after {ms} ms (threshold {threshold} bytes)")]
    Lag {
        /// Which wait.
        what: &'static str,
        /// Bytes behind.
        lag: u64,
        /// The threshold.
        threshold: u64,
        /// How long it waited.
        ms: u128,
    },
    /// Transactions did not finish in time.
    #[error("could not pause the clients of {database}: {error}")]
    Pause {
        /// The database.
        database: String,
        /// What the gate said.
        error: crate::gate::PauseTimeout,
    },
    /// Moving the sequences failed.
    #[error("setting the destination's sequences failed: {0}")]
    Sequences(String),
    /// The switched configuration is not valid.
    #[error(transparent)]
    Config(#[from] RetargetError),
    /// The stream back could not be prepared.
    #[error("preparing the stream back to the old database: {0}")]
    Reverse(String),
    /// The source did not answer with its WAL position.
    #[error("the source did not return its WAL position")]
    NoWalPosition,
    /// The task has no stream.
    #[error("task {0} has no replication stream")]
    NoStream(u64),
    /// The task was stopped.
    #[error("stopped")]
    Stopped,
}

/// Runs the cutover of the stream of task `stream_task` (as `SHOW REPLICATION` shows it; a
/// stream back from several shards has one record per shard). `task` is the cutover's task;
/// `SHOW CUTOVER` lists it.
pub async fn run(
    state: &Arc<PoolerState>,
    stream_task: u64,
    task: &TaskHandle,
) -> Result<CutoverReport, CutoverError> {
    let streams = checks::records(state, stream_task);
    let Some(first) = streams.first() else {
        return Err(CutoverError::NoStream(stream_task));
    };
    state
        .cutovers
        .add(task.id(), stream_task, &first.source, &first.destination);
    let result = cut(state, streams, stream_task, task).await;
    state.cutovers.update(task.id(), |r| match &result {
        Ok(_) => r.status = "done",
        Err(e) => {
            r.status = "failed";
            r.error = Some(e.to_string());
        }
    });
    result
}

async fn cut(
    state: &Arc<PoolerState>,
    streams: Vec<ReplicationRecord>,
    stream_task: u64,
    task: &TaskHandle,
) -> Result<CutoverReport, CutoverError> {
    let config = state.databases().config().clone();
    let Some(first) = streams.first().cloned() else {
        return Err(CutoverError::NoStream(stream_task));
    };
    let general = &config.config.general;
    let timeout = Duration::from_millis(general.cutover_timeout);
    let (source, destination) = (first.source.clone(), first.destination.clone());
    let step = |text: String| {
        info!("cutover of {source}: {text}");
        task.set_step(text.clone());
        state.cutovers.update(task.id(), |r| r.step = text);
    };

    step("checking the copy and the stream".into());
    checks::healthy(&streams)?;
    if !first.from_cutover {
        checks::verified(&config, &first).await?;
    }

    step("reading the sequences and preparing the stream back".into());
    let sequences = schema::prepare_cutover(
        &config,
        &SchemaSyncOptions {
            from: source.clone(),
            to: destination.clone(),
            publication: first.publication.clone(),
            phase: Phase::Cutover,
            dry_run: false,
            ignore_errors: false,
            force: true,
            index_jobs: None,
            sequence_margin: None,
            skip_preflight: true,
            keys: Default::default(),
            only_tables: None,
        },
    )
    .await
    .map_err(|e| CutoverError::Sequences(e.to_string()))?;
    let after = config.retarget(&source, &destination, Some(&retired_name(&source)))?;
    let reverse = match config.same_servers(&source, &after) {
        Some(target) => Some(reverse::prepare(&config, &after, &first, &target).await?),
        None => {
            warn!("cutover of {source}: no database name reaches its servers after the switch; no stream back");
            None
        }
    };

    step(format!(
        "waiting for the lag to fall to {} bytes",
        general.cutover_traffic_stop_threshold
    ));
    checks::wait_lag(
        state,
        stream_task,
        task,
        "before pausing traffic",
        general.cutover_traffic_stop_threshold,
        Some(timeout),
    )
    .await?;

    // Everything the pause needs is connected beforehand.
    let mut marks = Vec::with_capacity(streams.len());
    for record in &streams {
        let source = ClusterEndpoints::resolve(&config, &record.source)?;
        marks.push(source.connect_primary(record.source_shard).await?);
    }

    let current = Arc::clone(&state.databases());
    let warmed = warm::warm(&current, after.clone(), &source).await;
    drop(current);

    step(format!("pausing the clients of {source}"));
    let gate = state.gate(&source);
    // The clients' pause starts when the gate closes: new transactions wait from then on,
    // while those in flight finish.
    let paused = Instant::now();
    if let Err(error) = gate.pause(timeout).await {
        for conn in marks {
            conn.close().await;
        }
        warmed.close_unused(&state.databases());
        return Err(CutoverError::Pause {
            database: source.clone(),
            error,
        });
    }
    let switch = Switch {
        state,
        config: &config,
        streams: &streams,
        task,
        paused,
        timeout,
    };
    let mut reverse = reverse;
    let result = switch
        .run(after, &warmed, marks, sequences, reverse.as_mut())
        .await;
    gate.resume();
    // Pools warmed for the new configuration that it does not use (all of them, when the
    // switch failed).
    warmed.close_unused(&state.databases());
    let pause = paused.elapsed();
    state.cutovers.update(task.id(), |r| r.pause = Some(pause));
    let (lsn, forced) = match result {
        Ok(done) => done,
        Err(e) => {
            warn!(
                "cutover of {source} aborted after a {} ms pause, traffic resumed on the source: {e}",
                pause.as_millis()
            );
            return Err(e);
        }
    };
    info!(
        "cutover of {source} done: clients now reach {destination}; traffic paused for {} ms",
        pause.as_millis()
    );
    state.cutovers.update(task.id(), |r| {
        r.lsn = Some(lsn.to_string());
        r.forced = forced;
    });
    step("stopping the forward stream".into());
    let reverse_task = finish(state, &config, &streams, reverse, task).await;
    state
        .cutovers
        .update(task.id(), |r| r.reverse_task_id = reverse_task);
    Ok(CutoverReport {
        source: source.clone(),
        destination: destination.clone(),
        pause,
        lsn,
        forced,
        reverse_task,
    })
}

/// What happens while traffic is paused.
struct Switch<'a> {
    state: &'a Arc<PoolerState>,
    config: &'a ConfigAndUsers,
    streams: &'a [ReplicationRecord],
    task: &'a TaskHandle,
    paused: Instant,
    timeout: Duration,
}

impl Switch<'_> {
    /// Marks the WAL (on `sources`, one connection per stream record), waits for the shards,
    /// moves sequences, creates the slots of the stream back and swaps in `after`. Returns the
    /// first source shard's mark and whether the timeout forced the switch.
    async fn run(
        &self,
        after: ConfigAndUsers,
        warmed: &Databases,
        sources: Vec<Conn>,
        sequences: schema::PreparedCutover,
        reverse: Option<&mut ReversePlan>,
    ) -> Result<(Lsn, bool), CutoverError> {
        let general = &self.config.config.general;
        let mut marks = Vec::with_capacity(self.streams.len());
        let mut failed = None;
        for (record, mut conn) in self.streams.iter().zip(sources) {
            if failed.is_none() {
                match mark(&mut conn, record).await {
                    Ok(lsn) => marks.push(lsn),
                    Err(e) => failed = Some(e),
                }
            }
            conn.close().await;
        }
        if let Some(e) = failed {
            return Err(e);
        }
        self.task.set_step(format!(
            "traffic paused; waiting for every shard to apply up to {}",
            marks
                .iter()
                .map(Lsn::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
        let forced = self.wait_applied(&marks).await?;

        self.task.set_step("traffic paused; moving the sequences");
        // The sequences and the slots of the stream back at once: they touch different things.
        let sequences = async {
            let report = schema::run_cutover(
                self.config,
                sequences,
                &self.state.schema_sync,
                Some(self.task),
            )
            .await
            .map_err(|e| CutoverError::Sequences(e.to_string()))?;
            if report.is_clean() {
                Ok(())
            } else {
                Err(CutoverError::Sequences(format!(
                    "{} (SHOW SCHEMA_SYNC)",
                    report.summary()
                )))
            }
        };
        let slots = async {
            match reverse {
                Some(reverse) => reverse.create_slots().await,
                None => Ok(()),
            }
        };
        let (sequences, slots) = tokio::join!(sequences, slots);
        sequences?;
        slots?;

        self.task
            .set_step("traffic paused; switching the configuration");
        if general.cutover_save_config {
            save::save(&after);
        }
        if let Err(e) = self.state.reload_with(after, Some(warmed)) {
            // TLS files unreadable now: the same files the running config uses.
            warn!("cutover: reloading TLS files failed ({e}); keeping the current ones");
        }
        Ok((marks.first().copied().unwrap_or_default(), forced))
    }

    /// Waits until each record applied up to its mark (less the allowed lag); true when the
    /// timeout passed and `cutover_timeout_action = cutover` says switch anyway.
    async fn wait_applied(&self, marks: &[Lsn]) -> Result<bool, CutoverError> {
        let general = &self.config.config.general;
        let allowed = general.cutover_replication_lag_threshold;
        loop {
            let now = checks::records(
                self.state,
                self.streams.first().and_then(|r| r.task_id).unwrap_or(0),
            );
            let mut behind = 0u64;
            for (record, lsn) in self.streams.iter().zip(marks) {
                let applied = now
                    .iter()
                    .find(|r| r.source_shard == record.source_shard && r.slot == record.slot)
                    .map(|r| r.applied_lsn)
                    .unwrap_or_default();
                if applied < Lsn(lsn.0.saturating_sub(allowed)) {
                    behind = behind.max(lsn.0.saturating_sub(applied.0));
                }
            }
            if behind == 0 {
                return Ok(false);
            }
            if self.task.is_stopping() {
                return Err(CutoverError::Stopped);
            }
            if self.paused.elapsed() >= self.timeout {
                return match general.cutover_timeout_action {
                    CutoverTimeoutAction::Abort => Err(CutoverError::Lag {
                        what: "with traffic paused",
                        lag: behind,
                        threshold: allowed,
                        ms: self.timeout.as_millis(),
                    }),
                    CutoverTimeoutAction::Cutover => {
                        warn!(
                            "cutover: timeout with the shards {behind} bytes behind; switching anyway (cutover_timeout_action = cutover)"
                        );
                        Ok(true)
                    }
                };
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// Writes a transactional logical message into the WAL of the record's source shard: the
/// stream sees a transaction end past it once every change before the pause is in, and
/// confirms it when every shard has them. Returns the WAL position after it.
async fn mark(conn: &mut Conn, record: &ReplicationRecord) -> Result<Lsn, CutoverError> {
    conn.execute(&format!(
        "SELECT pg_catalog.pg_logical_emit_message(true, 'pgdog', {})",
        quote::literal(&format!("cutover of {}", record.source))
    ))
    .await?;
    let rows = conn
        .query("SELECT pg_catalog.pg_current_wal_insert_lsn()::text")
        .await?;
    rows.scalar()
        .and_then(|l| l.parse().ok())
        .ok_or(CutoverError::NoWalPosition)
}

/// After the switch: stops the forward stream, drops its slot(s) (nothing reaches the old
/// servers through pgdog any more, and the stream back will write there) and starts the stream
/// back. Returns its task id; `None` (with the reason logged) when it could not start.
async fn finish(
    state: &Arc<PoolerState>,
    before: &ConfigAndUsers,
    streams: &[ReplicationRecord],
    reverse: Option<ReversePlan>,
    task: &TaskHandle,
) -> Option<u64> {
    let forward_task = streams.first().and_then(|r| r.task_id)?;
    let _ = state.tasks.stop(forward_task);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let over = state
            .tasks
            .list()
            .iter()
            .find(|t| t.id == forward_task)
            .is_none_or(|t| t.status.is_over());
        if over {
            break;
        }
        if Instant::now() >= deadline {
            warn!("cutover: the forward stream (task {forward_task}) did not stop within 60 s; its slot stays and no stream back starts");
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.set_step("dropping the forward stream's slot");
    for record in streams {
        if let Err(e) = drop_forward_slot(before, record).await {
            warn!(
                "cutover: could not drop replication slot {} of {}: {e}; drop it by hand (DROP_SLOT {}) or WAL piles up there",
                record.slot, record.source, record.slot
            );
        }
    }
    let reverse = reverse?;
    task.set_step("starting the stream back");
    let (from, to) = (reverse.source.clone(), reverse.target.clone());
    let id = reverse.start(state);
    info!("cutover: task {id} streams changes from {from} back to {to} (CUTOVER {id} rolls back)");
    Some(id)
}

async fn drop_forward_slot(
    before: &ConfigAndUsers,
    record: &ReplicationRecord,
) -> Result<(), CutoverError> {
    let source = ClusterEndpoints::resolve(before, &record.source)?;
    let mut conn = source.connect_primary(record.source_shard).await?;
    // The stream's connection may take a moment to go away after its task ended.
    let deadline = Instant::now() + Duration::from_secs(10);
    let result = loop {
        match reverse::drop_slot(&mut conn, &record.slot).await {
            Err(CutoverError::Reverse(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => break other,
        }
    };
    conn.close().await;
    result
}
