//! The replication streams `VERIFY` waits for: a live stream between the two databases (either
//! direction) may explain a mismatch, so differing tables are compared again once it caught up.

use std::time::{Duration, Instant};

use tracing::warn;

use crate::reshard::stream::{ReplicationRecord, ReplicationStats, StreamStatus};

/// How often the streams' lag is looked at between attempts.
const LAG_POLL: Duration = Duration::from_millis(100);

/// The streams of this process between `a` and `b` (either direction) that still run.
pub fn live_streams(stats: &ReplicationStats, a: &str, b: &str) -> Vec<ReplicationRecord> {
    stats
        .all()
        .into_iter()
        .filter(|r| (r.source == a && r.destination == b) || (r.source == b && r.destination == a))
        .filter(|r| !r.status.is_over())
        .collect()
}

/// Whether a stream has applied everything the source wrote (as of its last look).
fn caught_up(record: &ReplicationRecord) -> bool {
    // Not while it changes a table (copies it again): its position says nothing then.
    matches!(
        record.status,
        StreamStatus::Streaming | StreamStatus::CatchingUp
    ) && record.lag_bytes == Some(0)
}

/// Waits (at most `limit`) until every live stream between `a` and `b` caught up.
pub(super) async fn wait_caught_up(stats: &ReplicationStats, a: &str, b: &str, limit: Duration) {
    let started = Instant::now();
    loop {
        let live = live_streams(stats, a, b);
        if live.iter().all(caught_up) {
            return;
        }
        if started.elapsed() >= limit {
            let lag: u64 = live.iter().filter_map(|r| r.lag_bytes).max().unwrap_or(0);
            warn!("verify {a} {b}: the stream is still {lag} bytes behind after {limit:?}; comparing again anyway");
            return;
        }
        tokio::time::sleep(LAG_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reshard::stream::wal::Lsn;

    #[test]
    fn live_streams_either_way() {
        let stats = ReplicationStats::default();
        let forward = stats.add(Some(1), "app", "shards", 2, "s", "pub");
        let backward = stats.add(Some(2), "shards", "app", 1, "s2", "pub");
        let other = stats.add(Some(3), "app", "elsewhere", 2, "s3", "pub");
        let stopped = stats.add(Some(4), "app", "shards", 2, "s4", "pub");
        stats.update(stopped, |r| r.status = StreamStatus::Stopped);
        let _ = other;
        let live: Vec<Option<u64>> = live_streams(&stats, "app", "shards")
            .iter()
            .map(|r| r.task_id)
            .collect();
        assert_eq!(live, [Some(1), Some(2)]);
        let record = |id| {
            live_streams(&stats, "shards", "app")
                .into_iter()
                .find(|r| r.task_id == Some(id))
                .unwrap()
        };
        assert!(!caught_up(&record(1)), "starting");
        stats.update(forward, |r| {
            r.status = StreamStatus::Streaming;
            r.source_lsn = Lsn(100);
            r.lag_bytes = Some(0);
        });
        stats.update(backward, |r| {
            r.status = StreamStatus::Streaming;
            r.source_lsn = Lsn(100);
            r.lag_bytes = Some(8);
        });
        assert!(caught_up(&record(1)));
        assert!(!caught_up(&record(2)));
    }
}
