//! `SHOW REPLICATION`: one row per replication stream this process ran or runs (started by
//! `COPY_DATA` or `REPLICATE`): status, positions, lag, counts and rates, the last error.

use std::time::Duration;

use pgdog_admin::{ColumnType, ResultTable};

use super::show::{push, Row};
use crate::reshard::human;
use crate::reshard::stream::ReplicationRecord;
use crate::state::PoolerState;

use ColumnType::{BigInt, Double, Text};

/// The columns, in order.
pub const COLUMNS: [(&str, ColumnType); 26] = [
    ("task_id", BigInt),
    ("source", Text),
    ("source_shard", BigInt),
    ("destination", Text),
    ("shards", BigInt),
    ("slot", Text),
    ("publication", Text),
    ("status", Text),
    ("received_lsn", Text),
    ("applied_lsn", Text),
    ("source_lsn", Text),
    ("lag_bytes", BigInt),
    ("lag_bytes_human", Text),
    ("lag", Text),
    ("lag_ms", BigInt),
    ("transactions", BigInt),
    ("rows", BigInt),
    ("bytes", BigInt),
    ("transactions_per_sec", Double),
    ("rows_per_sec", Double),
    ("bytes_per_sec", Double),
    ("bytes_per_sec_human", Text),
    ("retries", BigInt),
    ("elapsed", Text),
    ("elapsed_ms", BigInt),
    ("last_error", Text),
];

/// The `SHOW REPLICATION` table.
pub fn table(state: &PoolerState) -> ResultTable {
    let mut table = ResultTable::new(&COLUMNS);
    for record in state.replication.all() {
        push(&mut table, row(&record, record.lag(), record.elapsed()));
    }
    table
}

/// One stream's row (`lag` and `elapsed` passed in, so tests can fix them).
fn row(record: &ReplicationRecord, lag: Duration, elapsed: Duration) -> Row {
    let (tps, rows_per_sec, bytes_per_sec) = record.rates;
    Row::default()
        .opt(record.task_id)
        .text(&record.source)
        .text(record.source_shard)
        .text(&record.destination)
        .text(record.shards)
        .text(&record.slot)
        .text(&record.publication)
        .text(record.status.describe())
        .text(record.received_lsn)
        .text(record.applied_lsn)
        .text(record.source_lsn)
        .opt(record.lag_bytes)
        .opt(record.lag_bytes.map(human::bytes))
        .text(seconds(lag))
        .text(lag.as_millis())
        .text(record.transactions)
        .text(record.rows)
        .text(record.bytes)
        .text(rate(tps))
        .text(rate(rows_per_sec))
        .text(rate(bytes_per_sec))
        .text(format!("{}/s", human::bytes(whole(bytes_per_sec))))
        .text(record.retries)
        .text(format!("{:.3}s", elapsed.as_secs_f64()))
        .text(elapsed.as_millis())
        .opt(record.last_error.as_ref())
}

/// `0.25 s`.
fn seconds(duration: Duration) -> String {
    format!("{:.2} s", duration.as_secs_f64())
}

/// A rate as float8 text with three decimals (0 for anything not finite or negative).
fn rate(value: f64) -> String {
    let value = if value.is_finite() && value > 0.0 {
        value
    } else {
        0.0
    };
    format!("{value:.3}")
}

fn whole(value: f64) -> u64 {
    if value.is_finite() && value > 0.0 {
        value as u64
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reshard::stream::wal::Lsn;
    use crate::reshard::stream::{ReplicationStats, StreamStatus};

    #[test]
    fn rows_carry_every_column() {
        let stats = ReplicationStats::default();
        let id = stats.add(Some(7), "prod", "shards", 2, "pgdog_pub", "pub");
        stats.update(id, |r| {
            r.status = StreamStatus::Retrying("shard 1: connection refused".into());
            r.received_lsn = Lsn(0x1_0000_0010);
            r.applied_lsn = Lsn(0x1_0000_0000);
            r.source_lsn = Lsn(0x1_0000_0020);
            r.lag_bytes = Some(1536);
            r.transactions = 3;
            r.rows = 9;
            r.bytes = 4096;
            r.rates = (1.5, 4.25, 2048.0);
            r.last_error = Some("connection refused".into());
            r.retries = 2;
        });
        let record = stats.all().remove(0);
        let values = row(
            &record,
            Duration::from_millis(250),
            Duration::from_millis(12_345),
        )
        .0;
        assert_eq!(values.len(), COLUMNS.len());
        let value = |name: &str| {
            let i = COLUMNS.iter().position(|(n, _)| *n == name).unwrap();
            values[i].clone()
        };
        assert_eq!(value("task_id").as_deref(), Some("7"));
        assert_eq!(value("shards").as_deref(), Some("2"));
        assert_eq!(
            value("status").as_deref(),
            Some("retrying: shard 1: connection refused")
        );
        assert_eq!(value("received_lsn").as_deref(), Some("1/10"));
        assert_eq!(value("applied_lsn").as_deref(), Some("1/0"));
        assert_eq!(value("source_lsn").as_deref(), Some("1/20"));
        assert_eq!(value("lag_bytes").as_deref(), Some("1536"));
        assert_eq!(value("lag_bytes_human").as_deref(), Some("1.5 kB"));
        assert_eq!(value("lag").as_deref(), Some("0.25 s"));
        assert_eq!(value("lag_ms").as_deref(), Some("250"));
        assert_eq!(value("transactions_per_sec").as_deref(), Some("1.500"));
        assert_eq!(value("rows_per_sec").as_deref(), Some("4.250"));
        assert_eq!(value("bytes_per_sec").as_deref(), Some("2048.000"));
        assert_eq!(value("bytes_per_sec_human").as_deref(), Some("2.0 kB/s"));
        assert_eq!(value("retries").as_deref(), Some("2"));
        assert_eq!(value("elapsed").as_deref(), Some("12.345s"));
        assert_eq!(value("elapsed_ms").as_deref(), Some("12345"));
        assert_eq!(value("last_error").as_deref(), Some("connection refused"));

        let cli = stats.add(None, "prod", "shards", 2, "s", "pub");
        let record = stats.get(cli).unwrap();
        let values = row(&record, Duration::ZERO, Duration::ZERO).0;
        assert_eq!(values[0], None);
        assert_eq!(values[COLUMNS.len() - 1], None);
        assert_eq!(rate(f64::NAN), "0.000");
        assert_eq!(whole(-1.0), 0);
    }
}
