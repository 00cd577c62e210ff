//! The summary printed after the demo's cutover: rows moved, time, the pause (as pgdog
//! measured it and as the clients felt it), client errors, transactions before and after the
//! switch, and how many rows each shard holds (counted on the shards themselves).

use std::fmt::Write as _;
use std::time::Duration;

use super::config::{SERVER_DATABASE, SUPERUSER};
use super::reshard::MoveReport;
use crate::backend::server::ServerAddress;
use crate::reshard::conn::Conn;
use crate::reshard::human;

/// The rows one shard holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardCount {
    /// Shard number.
    pub shard: usize,
    /// Its PostgreSQL's port.
    pub port: u16,
    /// `(customers, orders)`, or why they could not be counted.
    pub rows: Result<(u64, u64), String>,
}

/// Counts the customers and orders on each shard (ports in shard order).
pub async fn shard_counts(ports: &[u16]) -> Vec<ShardCount> {
    let mut counts = Vec::with_capacity(ports.len());
    for (shard, port) in ports.iter().enumerate() {
        counts.push(ShardCount {
            shard,
            port: *port,
            rows: count(*port).await,
        });
    }
    counts
}

async fn count(port: u16) -> Result<(u64, u64), String> {
    let address = ServerAddress {
        host: "127.0.0.1".into(),
        port,
        database: SERVER_DATABASE.into(),
        user: SUPERUSER.into(),
        password: Some(SUPERUSER.into()),
    };
    let mut conn = Conn::connect(&address, Duration::from_secs(5))
        .await
        .map_err(|e| e.to_string())?;
    let rows = conn
        .query("SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM orders)")
        .await
        .map_err(|e| e.short());
    conn.close().await;
    let rows = rows?;
    let number = |column| {
        rows.get(0, column)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| "no count returned".to_string())
    };
    Ok((number(0)?, number(1)?))
}

/// What the workload saw, read when the summary is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientsSeen {
    /// Transactions committed in all.
    pub committed: u64,
    /// Errors clients saw.
    pub errors: u64,
    /// The longest transaction.
    pub longest: Duration,
}

/// The summary's text.
pub fn render(report: &MoveReport, clients: ClientsSeen, shards: &[ShardCount]) -> String {
    let mut text = format!(
        "\nResharding finished in {:.1} s: database \"demo\" now runs on {} shards",
        report.total.as_secs_f64(),
        shards.len()
    );
    text.push_str(if clients.errors == 0 {
        ", and its clients saw no error.\n"
    } else {
        ".\n"
    });
    let mut line = |label: &str, value: String| {
        let _ = writeln!(text, "  {:<22}{value}", format!("{label}:"));
    };
    line(
        "rows moved",
        format!(
            "{} copied ({} tables, {}) + {} changes streamed",
            grouped(report.copy.rows),
            report.copy.tables,
            human::bytes(report.copy.bytes),
            grouped(report.streamed_rows)
        ),
    );
    line(
        "total time",
        match report.copy_time {
            Some(copy) => format!(
                "{:.1} s ({:.1} s copying, then streaming and the cutover)",
                report.total.as_secs_f64(),
                copy.as_secs_f64()
            ),
            None => format!("{:.1} s", report.total.as_secs_f64()),
        },
    );
    line(
        "cutover",
        match report.pause {
            Some(pause) => format!("finished, traffic paused {} ms", pause.as_millis()),
            None => "finished".to_string(),
        },
    );
    line("last step", report.cutover_step.clone());
    line(
        "longest transaction",
        format!(
            "{} ms (the pause as the clients felt it)",
            clients.longest.as_millis()
        ),
    );
    line("client errors", clients.errors.to_string());
    line(
        "transactions",
        format!(
            "{} committed before the cutover, {} after (so far)",
            grouped(report.committed_at_cutover),
            grouped(
                clients
                    .committed
                    .saturating_sub(report.committed_at_cutover)
            )
        ),
    );
    for shard in shards {
        line(
            &format!("shard {}", shard.shard),
            match &shard.rows {
                Ok((customers, orders)) => format!(
                    "{} customers, {} orders (PostgreSQL at 127.0.0.1:{})",
                    grouped(*customers),
                    grouped(*orders),
                    shard.port
                ),
                Err(e) => format!("cannot count (127.0.0.1:{}): {e}", shard.port),
            },
        );
    }
    text
}

/// `1234567` → `1,234,567`.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::progress::CopyTotals;

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(320_000), "320,000");
        assert_eq!(grouped(1_234_567), "1,234,567");
    }

    #[test]
    fn summary_lines() {
        let report = MoveReport {
            total: Duration::from_millis(14_200),
            copy_time: Some(Duration::from_millis(6_100)),
            copy: CopyTotals {
                done: 2,
                tables: 2,
                rows: 320_000,
                bytes: 45_100_000,
            },
            streamed_rows: 712,
            cutover_step: "done: clients of demo now reach demo_sharded; traffic paused 182 ms"
                .into(),
            pause: Some(Duration::from_millis(182)),
            committed_at_cutover: 612,
        };
        let clients = ClientsSeen {
            committed: 760,
            errors: 0,
            longest: Duration::from_millis(201),
        };
        let shards = [
            ShardCount {
                shard: 0,
                port: 5433,
                rows: Ok((10_043, 150_221)),
            },
            ShardCount {
                shard: 1,
                port: 5434,
                rows: Err("connection refused".into()),
            },
        ];
        let text = render(&report, clients, &shards);
        for expected in [
            "Resharding finished in 14.2 s: database \"demo\" now runs on 2 shards, and its clients saw no error.",
            "  rows moved:           320,000 copied (2 tables, 45.1 MB) + 712 changes streamed",
            "  total time:           14.2 s (6.1 s copying, then streaming and the cutover)",
            "  cutover:              finished, traffic paused 182 ms",
            "  longest transaction:  201 ms (the pause as the clients felt it)",
            "  client errors:        0",
            "  transactions:         612 committed before the cutover, 148 after (so far)",
            "  shard 0:              10,043 customers, 150,221 orders (PostgreSQL at 127.0.0.1:5433)",
            "  shard 1:              cannot count (127.0.0.1:5434): connection refused",
        ] {
            assert!(text.contains(expected), "{expected:?} in\n{text}");
        }
    }
}
