//! The demo's write workload: a few client connections through pgdog's own port, each running
//! short transactions at a modest rate (insert an order for a random customer, bump that
//! customer's order count), until pgdog shuts down. Counts committed transactions and client
//! errors, and remembers the longest transaction: the pause clients felt.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::time::MissedTickBehavior;
use tracing::{debug, warn};

use crate::backend::server::ServerAddress;
use crate::reshard::conn::{Conn, ConnError};
use crate::state::PoolerState;

/// What the workload has done so far.
#[derive(Debug, Default)]
pub struct WorkloadStats {
    committed: AtomicU64,
    errors: AtomicU64,
    longest_us: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl WorkloadStats {
    /// Transactions committed.
    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::Relaxed)
    }

    /// Errors clients saw (failed connections and statements).
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// The longest a committed transaction took, from BEGIN to COMMIT's answer.
    pub fn longest(&self) -> Duration {
        Duration::from_micros(self.longest_us.load(Ordering::Relaxed))
    }

    /// The last error a client saw.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn commit(&self, took: Duration) {
        self.committed.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.longest_us.fetch_max(micros, Ordering::Relaxed);
    }

    fn error(&self, error: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error);
    }
}

/// How to run the workload.
#[derive(Debug, Clone)]
pub struct WorkloadOptions {
    /// Where the clients connect (pgdog), as whom, to which database.
    pub address: ServerAddress,
    /// Client connections.
    pub clients: usize,
    /// Transactions per second, all clients together.
    pub rate: f64,
    /// Customer ids are `1..=customers`.
    pub customers: i64,
}

/// Starts the clients on the current runtime; they stop when pgdog shuts down.
pub fn start(state: &Arc<PoolerState>, options: WorkloadOptions) -> Arc<WorkloadStats> {
    let stats = Arc::new(WorkloadStats::default());
    let clients = options.clients.max(1);
    let period = Duration::from_secs_f64(clients as f64 / options.rate.max(0.1));
    for client in 0..clients {
        let (state, stats, options) = (state.clone(), stats.clone(), options.clone());
        tokio::spawn(async move {
            let mut shutdown = state.shutdown_signal();
            tokio::select! {
                _ = shutdown.wait_for(|down| *down) => {}
                _ = run_client(client, &state, &stats, &options, period) => {}
            }
            debug!("demo client {client} stopped");
        });
    }
    stats
}

/// One client: connects (again after losing its connection) and runs transactions every
/// `period`.
async fn run_client(
    client: usize,
    state: &PoolerState,
    stats: &WorkloadStats,
    options: &WorkloadOptions,
    period: Duration,
) {
    // Spread the clients' ticks over the period.
    tokio::time::sleep(period.mul_f64(client as f64 / options.clients.max(1) as f64)).await;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut conn: Option<Conn> = None;
    loop {
        tick.tick().await;
        let mut current = match conn.take() {
            Some(current) => current,
            None => match Conn::connect(&options.address, Duration::from_secs(5)).await {
                Ok(connected) => connected,
                Err(e) => {
                    report(state, stats, client, format!("connecting: {e}"));
                    continue;
                }
            },
        };
        let (customer, cents) = {
            let mut rng = rand::thread_rng();
            (
                rng.gen_range(1..=options.customers.max(1)),
                rng.gen_range(100..50_000),
            )
        };
        let started = Instant::now();
        match transaction(&mut current, customer, cents).await {
            Ok(()) => {
                stats.commit(started.elapsed());
                conn = Some(current);
            }
            Err(e) => {
                let lost = !matches!(e, ConnError::Sql { .. });
                report(state, stats, client, e.to_string());
                if !lost {
                    conn = Some(current);
                }
            }
        }
    }
}

/// Counts and logs a client error (not the ones pgdog's shutdown causes).
fn report(state: &PoolerState, stats: &WorkloadStats, client: usize, error: String) {
    if state.shutting_down() {
        return;
    }
    warn!("demo client {client}: {error}");
    stats.error(error);
}

/// One transaction: an order for `customer` and the customer's order count.
async fn transaction(conn: &mut Conn, customer: i64, cents: i64) -> Result<(), ConnError> {
    conn.execute("BEGIN").await?;
    let result = async {
        conn.execute(&format!(
            "INSERT INTO orders (customer_id, amount) VALUES ({customer}, {}.{:02})",
            cents / 100,
            cents % 100
        ))
        .await?;
        conn.execute(&format!(
            "UPDATE customers SET order_count = order_count + 1, last_order_at = now() \
             WHERE id = {customer}"
        ))
        .await?;
        conn.execute("COMMIT").await
    }
    .await;
    if result.is_err() {
        let _ = conn.execute("ROLLBACK").await;
    }
    result.map(drop)
}
