//! Cutover: switch a database's clients from the source to the sharded destination without a
//! failed query. Checks the copy was verified and the stream is healthy, waits for the stream's
//! lag to be small, pauses the source database's traffic at transaction boundaries, marks the
//! source's WAL (a logical message) and waits until every shard has applied up to the mark,
//! moves the sequences, swaps the configuration in one atomic step (clients of the source's
//! name now reach the shards; the old servers stay reachable as `<source>_before_cutover`), and
//! resumes traffic. Any failure before the swap resumes traffic on the source unchanged.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgdog_config::{ConfigAndUsers, CutoverTimeoutAction, RetargetError};
use tracing::{info, warn};

use super::conn::ConnError;
use super::endpoints::{ClusterEndpoints, EndpointError};
use super::schema::{self, Phase, SchemaSyncOptions};
use super::stream::wal::Lsn;
use super::stream::{ReplicationRecord, StreamStatus};
use super::tasks::TaskHandle;
use crate::quote;
use crate::state::PoolerState;

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
    /// The task was stopped.
    #[error("stopped")]
    Stopped,
}

/// Runs the cutover of the stream `stream` (as `SHOW REPLICATION` shows it).
pub async fn run(
    state: &Arc<PoolerState>,
    stream: &ReplicationRecord,
    task: &TaskHandle,
) -> Result<CutoverReport, CutoverError> {
    let config = state.databases().config().clone();
    let general = &config.config.general;
    let timeout = Duration::from_millis(general.cutover_timeout);
    let (source, destination) = (stream.source.clone(), stream.destination.clone());
    let step = |text: String| {
        info!("cutover of {source}: {text}");
        task.set_step(text);
    };

    step("checking the copy and the stream".into());
    healthy(state, stream)?;
    verified(&config, stream).await?;

    step(format!(
        "waiting for the lag to fall to {} bytes",
        general.cutover_traffic_stop_threshold
    ));
    wait_lag(
        state,
        stream,
        task,
        "before pausing traffic",
        general.cutover_traffic_stop_threshold,
        timeout,
    )
    .await?;

    step(format!("pausing the clients of {source}"));
    let gate = state.gate(&source);
    gate.pause(timeout)
        .await
        .map_err(|error| CutoverError::Pause {
            database: source.clone(),
            error,
        })?;
    let paused = Instant::now();
    let result = switch(state, &config, stream, task, paused, timeout).await;
    gate.resume();
    let pause = paused.elapsed();
    match result {
        Ok((lsn, forced)) => {
            info!(
                "cutover of {source} done: clients now reach {destination}; traffic paused for {} ms",
                pause.as_millis()
            );
            Ok(CutoverReport {
                source: source.clone(),
                destination: destination.clone(),
                pause,
                lsn,
                forced,
            })
        }
        Err(e) => {
            warn!(
                "cutover of {source} aborted after a {} ms pause, traffic resumed on the source: {e}",
                pause.as_millis()
            );
            Err(e)
        }
    }
}

/// With traffic paused: mark the WAL, wait for the shards, move sequences, swap the config.
async fn switch(
    state: &Arc<PoolerState>,
    config: &ConfigAndUsers,
    stream: &ReplicationRecord,
    task: &TaskHandle,
    paused: Instant,
    timeout: Duration,
) -> Result<(Lsn, bool), CutoverError> {
    let general = &config.config.general;
    let source = ClusterEndpoints::resolve(config, &stream.source)?;
    let mut conn = source.connect_primary(0).await?;
    // A transactional logical message: the stream sees a transaction end past it once every
    // change before the pause is in, and confirms it when every shard has them.
    conn.execute(&format!(
        "SELECT pg_catalog.pg_logical_emit_message(true, 'pgdog', {})",
        quote::literal(&format!("cutover of {}", stream.source))
    ))
    .await?;
    let lsn: Lsn = conn
        .query("SELECT pg_catalog.pg_current_wal_insert_lsn()::text")
        .await?
        .scalar()
        .and_then(|l| l.parse().ok())
        .unwrap_or_default();
    conn.close().await;
    task.set_step(format!(
        "traffic paused; waiting for every shard to apply up to {lsn}"
    ));
    let target = Lsn(lsn
        .0
        .saturating_sub(general.cutover_replication_lag_threshold));
    let mut forced = false;
    loop {
        let applied = live(state, stream)
            .map(|r| r.applied_lsn)
            .unwrap_or_default();
        if applied >= target {
            break;
        }
        if task.is_stopping() {
            return Err(CutoverError::Stopped);
        }
        if paused.elapsed() >= timeout {
            match general.cutover_timeout_action {
                CutoverTimeoutAction::Abort => {
                    return Err(CutoverError::Lag {
                        what: "with traffic paused",
                        lag: lsn.0.saturating_sub(applied.0),
                        threshold: general.cutover_replication_lag_threshold,
                        ms: timeout.as_millis(),
                    })
                }
                CutoverTimeoutAction::Cutover => {
                    warn!(
                        "cutover of {}: timeout with the shards {} bytes behind; switching anyway (cutover_timeout_action = cutover)",
                        stream.source,
                        lsn.0.saturating_sub(applied.0)
                    );
                    forced = true;
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }

    task.set_step("traffic paused; moving the sequences");
    let options = SchemaSyncOptions {
        from: stream.source.clone(),
        to: stream.destination.clone(),
        publication: stream.publication.clone(),
        phase: Phase::Cutover,
        dry_run: false,
        ignore_errors: false,
        force: true,
        index_jobs: None,
        sequence_margin: None,
        skip_preflight: true,
        keys: Default::default(),
    };
    let report = schema::run(config, &options, &state.schema_sync, Some(task), |_| {})
        .await
        .map_err(|e| CutoverError::Sequences(e.to_string()))?;
    if !report.is_clean() {
        return Err(CutoverError::Sequences(format!(
            "{} (SHOW SCHEMA_SYNC)",
            report.summary()
        )));
    }

    task.set_step("traffic paused; switching the configuration");
    let next = config.retarget(
        &stream.source,
        &stream.destination,
        Some(&retired_name(&stream.source)),
    )?;
    if general.cutover_save_config {
        save(&next);
    }
    if let Err(e) = state.reload(next) {
        // TLS files unreadable now: the same files the running config uses.
        warn!("cutover: reloading TLS files failed ({e}); keeping the current ones");
    }
    if let Some(id) = stream.task_id {
        // Nothing reaches the source through pgdog any more: its stream is done.
        let _ = state.tasks.stop(id);
    }
    Ok((lsn, forced))
}

/// The stream's record as it is now (`stream` is a copy taken when the cutover started).
fn live(state: &PoolerState, stream: &ReplicationRecord) -> Option<ReplicationRecord> {
    state
        .replication
        .all()
        .into_iter()
        .find(|r| r.task_id == stream.task_id && r.slot == stream.slot)
}

fn healthy(state: &PoolerState, stream: &ReplicationRecord) -> Result<(), CutoverError> {
    let current = live(state, stream)
        .map(|r| r.status)
        .unwrap_or(StreamStatus::Stopped);
    match current {
        StreamStatus::Streaming | StreamStatus::CatchingUp | StreamStatus::Starting => Ok(()),
        other => Err(CutoverError::NotStreaming {
            slot: stream.slot.clone(),
            status: other.describe(),
        }),
    }
}

async fn verified(config: &ConfigAndUsers, stream: &ReplicationRecord) -> Result<(), CutoverError> {
    let destination = ClusterEndpoints::resolve(config, &stream.destination)?;
    for shard in 0..destination.shards.len() {
        let mut conn = destination.connect_primary(shard).await?;
        let rows = conn
            .query(&format!(
                "SELECT count(*), count(*) FILTER (WHERE verified_at IS NULL) \
                 FROM pgdog.copy_tables WHERE slot = {}",
                quote::literal(&stream.slot)
            ))
            .await;
        conn.close().await;
        let detail = match rows {
            Ok(rows) => {
                let total: u64 = rows.get(0, 0).and_then(|v| v.parse().ok()).unwrap_or(0);
                let unverified: u64 = rows.get(0, 1).and_then(|v| v.parse().ok()).unwrap_or(0);
                if total > 0 && unverified == 0 {
                    continue;
                }
                if total == 0 {
                    "no table copied for this slot".to_string()
                } else {
                    format!("{unverified} of {total} tables not verified")
                }
            }
            Err(e) if matches!(e.code(), Some("42P01") | Some("3F000")) => {
                "no copy ran there".to_string()
            }
            Err(e) => return Err(e.into()),
        };
        return Err(CutoverError::NotVerified {
            slot: stream.slot.clone(),
            shard,
            detail,
        });
    }
    Ok(())
}

async fn wait_lag(
    state: &PoolerState,
    stream: &ReplicationRecord,
    task: &TaskHandle,
    what: &'static str,
    threshold: u64,
    timeout: Duration,
) -> Result<(), CutoverError> {
    let started = Instant::now();
    loop {
        let record = live(state, stream);
        let Some(record) = record else {
            return Err(CutoverError::NotStreaming {
                slot: stream.slot.clone(),
                status: "gone".into(),
            });
        };
        // Measured once the stream runs (its first look at the source's WAL).
        let lag = match record.status {
            StreamStatus::Streaming | StreamStatus::CatchingUp if record.source_lsn > Lsn::ZERO => {
                record.lag_bytes
            }
            StreamStatus::Streaming | StreamStatus::CatchingUp | StreamStatus::Starting => u64::MAX,
            other => {
                return Err(CutoverError::NotStreaming {
                    slot: stream.slot.clone(),
                    status: other.describe(),
                })
            }
        };
        if lag <= threshold {
            return Ok(());
        }
        if task.is_stopping() {
            return Err(CutoverError::Stopped);
        }
        if started.elapsed() >= timeout {
            return Err(CutoverError::Lag {
                what,
                lag,
                threshold,
                ms: timeout.as_millis(),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes the switched configuration to both files, keeping the previous ones as
/// `*.before-cutover`; logs (and leaves the files as they were) when it cannot.
fn save(config: &ConfigAndUsers) {
    let write = |path: &Path, text: Result<String, toml::ser::Error>| -> Result<(), String> {
        let text = text.map_err(|e| e.to_string())?;
        let mut backup = path.as_os_str().to_owned();
        backup.push(".before-cutover");
        std::fs::copy(path, &backup).map_err(|e| format!("{}: {e}", path.display()))?;
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
    };
    for (path, text) in [
        (&config.config_path, toml::to_string(&config.config)),
        (&config.users_path, toml::to_string(&config.users)),
    ] {
        match write(path, text) {
            Ok(()) => info!("cutover: wrote {}", path.display()),
            Err(e) => warn!("cutover: could not save the configuration: {e}"),
        }
    }
}
