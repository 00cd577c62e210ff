//! The source's replication slot as the bench sees it: WAL positions as byte offsets, how far
//! the slot's `confirmed_flush_lsn` is, waiting for it to reach a position (the catch-up
//! stopwatch), and dropping the slot after a tool's turn.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

/// How often the slot is polled while waiting.
const POLL: Duration = Duration::from_millis(50);
/// A wait fails when the slot has not moved for this long.
const STALL: Duration = Duration::from_secs(180);

/// `pg_current_wal_flush_lsn()` as a byte offset.
pub(crate) async fn flush_lsn(source: &Client) -> Result<u64, String> {
    let row = source
        .query_one(
            "SELECT (pg_current_wal_flush_lsn() - '0/0'::pg_lsn)::bigint",
            &[],
        )
        .await
        .map_err(|e| format!("pg_current_wal_flush_lsn(): {e}"))?;
    Ok(row.get::<_, i64>(0).max(0) as u64)
}

/// The WAL flush position once everything written so far is flushed: with
/// `synchronous_commit = off` the last commits reach the flush position (the end of what a
/// walsender decodes) up to a `wal_writer_delay` later.
pub(crate) async fn settled_flush_lsn(source: &Client) -> Result<u64, String> {
    let row = source
        .query_one("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint", &[])
        .await
        .map_err(|e| format!("pg_current_wal_lsn(): {e}"))?;
    let written = row.get::<_, i64>(0).max(0) as u64;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let flushed = flush_lsn(source).await?;
        if flushed >= written || Instant::now() > deadline {
            return Ok(flushed);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The slot's `confirmed_flush_lsn` as a byte offset (`None`: no slot or no position).
pub(crate) async fn confirmed(source: &Client, slot: &str) -> Result<Option<u64>, String> {
    let rows = source
        .query(
            "SELECT (confirmed_flush_lsn - '0/0'::pg_lsn)::bigint FROM pg_replication_slots \
             WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(|e| format!("pg_replication_slots: {e}"))?;
    Ok(rows
        .first()
        .and_then(|r| r.get::<_, Option<i64>>(0))
        .map(|v| v.max(0) as u64))
}

/// `pg_current_wal_lsn() - confirmed_flush_lsn` of the slot, in bytes.
pub(crate) async fn lag_bytes(source: &Client, slot: &str) -> Result<Option<i64>, String> {
    let rows = source
        .query(
            "SELECT (pg_current_wal_lsn() - confirmed_flush_lsn)::bigint \
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(|e| format!("pg_replication_slots: {e}"))?;
    Ok(rows.first().and_then(|r| r.get::<_, Option<i64>>(0)))
}

/// The pid of the walsender streaming the slot, if one is.
pub(crate) async fn walsender_pid(source: &Client, slot: &str) -> Result<Option<i32>, String> {
    let rows = source
        .query(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(|e| format!("pg_replication_slots: {e}"))?;
    Ok(rows.first().and_then(|r| r.get::<_, Option<i32>>(0)))
}

/// How a wait for the slot went.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reached {
    /// Seconds from `since` until `confirmed_flush_lsn` reached the target.
    pub(crate) seconds: f64,
    /// Seconds from `since` until it first moved.
    pub(crate) first_move: Option<f64>,
}

/// Waits until the slot's `confirmed_flush_lsn` reaches `target`, polling every 50 ms;
/// `check` runs at every poll (e.g. whether the applier still runs) and its error ends the
/// wait, as does a slot that stays put for 3 minutes.
pub(crate) async fn wait_for(
    source: &Client,
    slot: &str,
    target: u64,
    since: Instant,
    mut check: impl FnMut() -> Result<(), String>,
) -> Result<Reached, String> {
    let start = confirmed(source, slot).await?.unwrap_or(0);
    let (mut last, mut last_move, mut first_move) = (start, Instant::now(), None);
    loop {
        integration::bench::interrupted()?;
        let now = confirmed(source, slot).await?.unwrap_or(0);
        if now != last {
            last = now;
            last_move = Instant::now();
            first_move.get_or_insert(since.elapsed().as_secs_f64());
        }
        if now >= target {
            return Ok(Reached {
                seconds: since.elapsed().as_secs_f64(),
                first_move,
            });
        }
        check()?;
        if last_move.elapsed() > STALL {
            return Err(format!(
                "slot {slot} stuck at {} for {} s, {} bytes short of {}",
                lsn_text(now),
                STALL.as_secs(),
                target.saturating_sub(now),
                lsn_text(target)
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Drops the slot if it exists, waiting up to 30 s for its walsender to let go.
pub(crate) async fn drop_slot(source: &Client, slot: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let result = source
            .query(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                 WHERE slot_name = $1",
                &[&slot],
            )
            .await;
        match result {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() < deadline => {
                tracing::debug!("dropping slot {slot}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(format!("pg_drop_replication_slot({slot}): {e}")),
        }
    }
}

/// A byte offset in PostgreSQL's `X/Y` form.
pub(crate) fn lsn_text(offset: u64) -> String {
    format!("{:X}/{:X}", offset >> 32, offset & 0xFFFF_FFFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_form() {
        assert_eq!(lsn_text(0), "0/0");
        assert_eq!(lsn_text(0x1_7CBC_2488), "1/7CBC2488");
    }
}
