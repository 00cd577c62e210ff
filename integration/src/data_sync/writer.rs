//! The snapshot test's writer: sequential transactions on the source ([`writer_sql`]), each
//! recorded with the WAL position just before its COMMIT and just after it, so a test can tell
//! which transactions must be in a copy made at a given LSN and which must not.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_postgres::Client;

use super::dataset::{writer_sql, Scale};
use super::output::parse_lsn;

/// One committed writer transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteRecord {
    /// Its number (1, 2, ...).
    pub i: u64,
    /// `pg_current_wal_insert_lsn()` after its writes, before COMMIT: its commit record comes
    /// later.
    pub before: u64,
    /// `pg_current_wal_insert_lsn()` after COMMIT returned: its commit record ends at or before
    /// it (the insert position, not `pg_current_wal_lsn()`: the test clusters commit
    /// asynchronously, so the write position may still be behind the commit record).
    pub after: u64,
}

/// A writer running on its own connection until [`stop`](Writer::stop).
pub struct Writer {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Vec<WriteRecord>>,
}

impl Writer {
    /// Starts committing transactions 1, 2, ... on `client` (a connection to the source), with
    /// `pause` between them.
    pub fn start(client: Client, scale: Scale, pause: Duration) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = tokio::spawn(async move {
            let mut records = Vec::new();
            let mut i = 0;
            while !flag.load(Ordering::Relaxed) {
                i += 1;
                records.push(commit(&client, i, scale).await);
                tokio::time::sleep(pause).await;
            }
            records
        });
        Writer { stop, handle }
    }

    /// Stops after the transaction in progress and returns every committed one, in order.
    pub async fn stop(self) -> Vec<WriteRecord> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .await
            .unwrap_or_else(|e| panic!("the writer failed: {e}"))
    }
}

async fn commit(client: &Client, i: u64, scale: Scale) -> WriteRecord {
    let sql = format!("BEGIN;\n{}", writer_sql(i, scale));
    client
        .batch_execute(&sql)
        .await
        .unwrap_or_else(|e| panic!("writer transaction {i}: {e:?}"));
    let before = current_lsn(client).await;
    client
        .batch_execute("COMMIT")
        .await
        .unwrap_or_else(|e| panic!("writer COMMIT {i}: {e:?}"));
    let after = current_lsn(client).await;
    WriteRecord { i, before, after }
}

async fn current_lsn(client: &Client) -> u64 {
    let text: String = client
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .unwrap_or_else(|e| panic!("pg_current_wal_lsn: {e:?}"))
        .get(0);
    parse_lsn(&text).unwrap_or_else(|| panic!("not an LSN: {text}"))
}
