//! The steady-state run: pgbench at a fixed rate on the source while a heartbeat row
//! (`INSERT INTO heartbeat DEFAULT VALUES`, `at = now()`) is written every 100 ms, and every
//! 100 ms the lag is sampled: the time lag is `clock_timestamp() - at` of the newest heartbeat
//! each destination shard shows (the larger over the shards; one machine, one clock), the
//! byte lag is `pg_current_wal_lsn() - confirmed_flush_lsn` of the slot on the source.
//! Heartbeats come every 100 ms, so the time lag of an applier with no delay at all still
//! reads 0–100 ms.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use integration::bench::PgbenchRun;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tokio_postgres::Client;

use crate::setup::Bench;
use crate::{pgbench, slot, Tool};

/// Heartbeat and sampling period.
const PERIOD: Duration = Duration::from_millis(100);
/// How long the first heartbeat may take to show on the destination.
const FIRST_HEARTBEAT: Duration = Duration::from_secs(60);

/// Newest heartbeat's age on a destination, in seconds.
const AGE_SQL: &str = "SELECT extract(epoch FROM clock_timestamp() - at)::float8 \
                       FROM heartbeat ORDER BY id DESC LIMIT 1";

/// What the steady-state run measured.
#[derive(Debug, Default)]
pub(crate) struct Steady {
    /// The pgbench run.
    pub(crate) run: Option<PgbenchRun>,
    /// Time-lag samples, in seconds.
    pub(crate) lag_seconds: Vec<f64>,
    /// Byte-lag samples.
    pub(crate) lag_bytes: Vec<i64>,
    /// Heartbeats written.
    pub(crate) heartbeats: u64,
    /// Samples that failed (an error on a connection).
    pub(crate) failed_samples: u64,
}

impl Steady {
    /// The `p`-quantile (0..=1, nearest rank) of the time lag, in seconds.
    pub(crate) fn lag_quantile(&self, p: f64) -> Option<f64> {
        quantile(&self.lag_seconds, p)
    }

    /// The largest byte lag.
    pub(crate) fn max_bytes(&self) -> Option<i64> {
        self.lag_bytes.iter().copied().max()
    }
}

/// The nearest-rank `p`-quantile of `values`.
pub(crate) fn quantile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (p * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The newest heartbeat's age on every shard; the largest, or `None` when a shard has none.
async fn age(shards: &[Client]) -> Result<Option<f64>, tokio_postgres::Error> {
    let mut oldest: Option<f64> = None;
    for shard in shards {
        let rows = shard.query(AGE_SQL, &[]).await?;
        let Some(age) = rows.first().and_then(|r| r.get::<_, Option<f64>>(0)) else {
            return Ok(None);
        };
        oldest = Some(oldest.map_or(age, |o| o.max(age)));
    }
    Ok(oldest)
}

/// Writes a heartbeat every [`PERIOD`] until `stop`; returns how many.
fn heartbeat(source: Client, stop: Arc<AtomicBool>) -> JoinHandle<u64> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PERIOD);
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut written = 0;
        while !stop.load(Ordering::SeqCst) {
            tick.tick().await;
            if source
                .batch_execute("INSERT INTO heartbeat DEFAULT VALUES")
                .await
                .is_ok()
            {
                written += 1;
            }
        }
        written
    })
}

/// Samples both lags every [`PERIOD`] until `stop`.
fn sampler(
    source: Client,
    shards: Vec<Client>,
    slot_name: String,
    stop: Arc<AtomicBool>,
) -> JoinHandle<Steady> {
    tokio::spawn(async move {
        let mut steady = Steady::default();
        let mut tick = tokio::time::interval(PERIOD);
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        while !stop.load(Ordering::SeqCst) {
            tick.tick().await;
            match age(&shards).await {
                Ok(Some(age)) => steady.lag_seconds.push(age),
                Ok(None) => {}
                Err(_) => steady.failed_samples += 1,
            }
            match slot::lag_bytes(&source, &slot_name).await {
                Ok(Some(bytes)) => steady.lag_bytes.push(bytes),
                Ok(None) => {}
                Err(_) => steady.failed_samples += 1,
            }
        }
        steady
    })
}

/// Runs pgbench at `rate` TPS for `seconds` while `tool`'s applier streams, sampling the lag.
pub(crate) async fn steady(
    bench: &Bench,
    tool: Tool,
    rate: u64,
    seconds: u64,
) -> Result<Steady, String> {
    let writer = bench.source_client().await?;
    let mut shards = Vec::new();
    for (k, database) in tool.databases() {
        shards.push(bench.dest_client(k, &database).await?);
    }
    // A first heartbeat, seen everywhere, before anything is measured.
    let first: i64 = writer
        .query_one("INSERT INTO heartbeat DEFAULT VALUES RETURNING id", &[])
        .await
        .map_err(|e| format!("INSERT INTO heartbeat: {e}"))?
        .get(0);
    let began = Instant::now();
    for shard in &shards {
        loop {
            let newest: i64 = shard
                .query_one("SELECT coalesce(max(id), 0) FROM heartbeat", &[])
                .await
                .map_err(|e| format!("reading the heartbeat on the destination: {e}"))?
                .get(0);
            if newest >= first {
                break;
            }
            if began.elapsed() > FIRST_HEARTBEAT {
                return Err(format!(
                    "the first heartbeat did not reach the destination within {} s",
                    FIRST_HEARTBEAT.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let beats = heartbeat(writer, stop.clone());
    let samples = sampler(
        bench.source_client().await?,
        shards,
        tool.slot(),
        stop.clone(),
    );
    let run = pgbench::throttled(bench.source.port(), rate, seconds).await;
    stop.store(true, Ordering::SeqCst);
    let heartbeats = beats.await.unwrap_or(0);
    let mut steady = samples
        .await
        .map_err(|e| format!("the lag sampler failed: {e}"))?;
    steady.heartbeats = heartbeats + 1;
    steady.run = Some(run?);
    Ok(steady)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&values, 0.5), Some(50.0));
        assert_eq!(quantile(&values, 0.99), Some(99.0));
        assert_eq!(quantile(&values, 1.0), Some(100.0));
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.5), Some(2.0));
        assert_eq!(quantile(&[], 0.5), None);
        let steady = Steady {
            lag_bytes: vec![5, 50, 7],
            ..Steady::default()
        };
        assert_eq!(steady.max_bytes(), Some(50));
    }
}
