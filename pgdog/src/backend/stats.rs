//! Counters and latency histograms of one pool, updated by the clients using it with relaxed
//! atomics (no locks on the hot path), read by `SHOW STATS` and the metrics endpoint.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Upper bounds, in microseconds, of the latency histogram buckets (the last bucket is +Inf).
pub const BUCKETS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// A latency histogram with fixed buckets ([`BUCKETS_US`]).
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn record(&self, elapsed: Duration) {
        let us = micros(elapsed);
        let index = BUCKETS_US
            .iter()
            .position(|&bound| us <= bound)
            .unwrap_or(BUCKETS_US.len());
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Cumulative counts per bucket (the last one is the total count) and the sum in µs.
    pub fn cumulative(&self) -> (Vec<u64>, u64) {
        let mut total = 0;
        let counts = self
            .buckets
            .iter()
            .map(|b| {
                total += b.load(Ordering::Relaxed);
                total
            })
            .collect();
        (counts, self.sum_us.load(Ordering::Relaxed))
    }
}

/// Running totals of one pool since it was created.
#[derive(Default)]
pub struct PoolStats {
    /// Transactions completed.
    pub xact_count: AtomicU64,
    /// Requests completed (each simple query or extended-protocol Sync).
    pub query_count: AtomicU64,
    /// Server connections handed to clients.
    pub server_assignment_count: AtomicU64,
    /// Bytes sent by clients to the server.
    pub received: AtomicU64,
    /// Bytes sent by the server to clients.
    pub sent: AtomicU64,
    /// Errors the server returned to clients.
    pub errors: AtomicU64,
    /// Server connections opened.
    pub connect_count: AtomicU64,
    /// Time spent opening server connections.
    pub connect_time: Histogram,
    /// Transaction times (first request to ReadyForQuery idle).
    pub xact_time: Histogram,
    /// Request times (send to ReadyForQuery).
    pub query_time: Histogram,
    /// Time clients waited for a server connection.
    pub wait_time: Histogram,
    averages: Mutex<Averages>,
}

/// Numbers `SHOW STATS` reports, as plain values.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Figures {
    /// Transactions.
    pub xact_count: u64,
    /// Requests.
    pub query_count: u64,
    /// Checkouts.
    pub server_assignment_count: u64,
    /// Bytes from clients.
    pub received: u64,
    /// Bytes to clients.
    pub sent: u64,
    /// Transaction time, µs.
    pub xact_time_us: u64,
    /// Request time, µs.
    pub query_time_us: u64,
    /// Checkout wait, µs.
    pub wait_time_us: u64,
    /// Server errors.
    pub errors: u64,
    /// Connections opened.
    pub connect_count: u64,
    /// Connect time, µs.
    pub connect_time_us: u64,
}

#[derive(Default)]
struct Averages {
    last: Option<(Instant, Figures)>,
    current: Figures,
}

impl PoolStats {
    /// The totals now.
    pub fn totals(&self) -> Figures {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Figures {
            xact_count: load(&self.xact_count),
            query_count: load(&self.query_count),
            server_assignment_count: load(&self.server_assignment_count),
            received: load(&self.received),
            sent: load(&self.sent),
            xact_time_us: self.xact_time.cumulative().1,
            query_time_us: self.query_time.cumulative().1,
            wait_time_us: self.wait_time.cumulative().1,
            errors: load(&self.errors),
            connect_count: load(&self.connect_count),
            connect_time_us: self.connect_time.cumulative().1,
        }
    }

    /// Averages over the last stats period: counts and bytes per second, times per event
    /// (transaction, request, checkout, connect) in µs.
    pub fn averages(&self) -> Figures {
        self.lock().current
    }

    /// Starts a new stats period when `period` has passed since the last one; called by the
    /// pool maintainer every second.
    pub fn roll(&self, period: Duration) {
        let now = Instant::now();
        let totals = self.totals();
        let mut averages = self.lock();
        match averages.last {
            Some((at, previous)) if now.duration_since(at) >= period => {
                let secs = now.duration_since(at).as_secs_f64().max(0.001);
                averages.current = per_period(&previous, &totals, secs);
                averages.last = Some((now, totals));
            }
            Some(_) => {}
            None => averages.last = Some((now, totals)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Averages> {
        self.averages.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn per_period(before: &Figures, after: &Figures, secs: f64) -> Figures {
    let delta = |a: u64, b: u64| b.saturating_sub(a);
    let rate = |a: u64, b: u64| (delta(a, b) as f64 / secs).round() as u64;
    let mean = |time_a: u64, time_b: u64, n_a: u64, n_b: u64| {
        delta(time_a, time_b)
            .checked_div(delta(n_a, n_b))
            .unwrap_or(0)
    };
    Figures {
        xact_count: rate(before.xact_count, after.xact_count),
        query_count: rate(before.query_count, after.query_count),
        server_assignment_count: rate(
            before.server_assignment_count,
            after.server_assignment_count,
        ),
        received: rate(before.received, after.received),
        sent: rate(before.sent, after.sent),
        xact_time_us: mean(
            before.xact_time_us,
            after.xact_time_us,
            before.xact_count,
            after.xact_count,
        ),
        query_time_us: mean(
            before.query_time_us,
            after.query_time_us,
            before.query_count,
            after.query_count,
        ),
        wait_time_us: mean(
            before.wait_time_us,
            after.wait_time_us,
            before.server_assignment_count,
            after.server_assignment_count,
        ),
        errors: rate(before.errors, after.errors),
        connect_count: rate(before.connect_count, after.connect_count),
        connect_time_us: mean(
            before.connect_time_us,
            after.connect_time_us,
            before.connect_count,
            after.connect_count,
        ),
    }
}

/// What a client or server connection is doing, for `SHOW CLIENTS` / `SHOW SERVERS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ConnState {
    /// Nothing in progress.
    Idle = 0,
    /// Running a request.
    Active = 1,
    /// Waiting for a server connection (clients) or paused by `PAUSE`.
    Waiting = 2,
    /// Inside a transaction, waiting for the client's next request.
    IdleInTransaction = 3,
}

impl ConnState {
    /// The name shown in `SHOW` output.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnState::Idle => "idle",
            ConnState::Active => "active",
            ConnState::Waiting => "waiting",
            ConnState::IdleInTransaction => "idle in transaction",
        }
    }

    fn from_u8(value: u8) -> ConnState {
        match value {
            1 => ConnState::Active,
            2 => ConnState::Waiting,
            3 => ConnState::IdleInTransaction,
            _ => ConnState::Idle,
        }
    }
}

/// Live counters of one client or server connection. The connection's own task writes them
/// (relaxed atomics); the admin database reads them.
pub struct ConnectionStats {
    /// When the connection was established.
    pub connected_at: SystemTime,
    state: AtomicU8,
    last_request_ms: AtomicU64,
    /// Requests completed.
    pub queries: AtomicU64,
    /// Transactions completed.
    pub transactions: AtomicU64,
    /// Bytes received from the other side.
    pub bytes_received: AtomicU64,
    /// Bytes sent to the other side.
    pub bytes_sent: AtomicU64,
    /// Errors returned by the server.
    pub errors: AtomicU64,
    /// Total request time, µs.
    pub query_time_us: AtomicU64,
    /// Total transaction time, µs.
    pub xact_time_us: AtomicU64,
    /// Total time waiting for a server connection, µs (clients).
    pub wait_time_us: AtomicU64,
    /// Transactions rolled back by pgdog after a client abandoned them (servers).
    pub rollbacks: AtomicU64,
    /// Health checks run on it (servers).
    pub healthchecks: AtomicU64,
}

impl Default for ConnectionStats {
    fn default() -> Self {
        ConnectionStats {
            connected_at: SystemTime::now(),
            state: AtomicU8::new(ConnState::Idle as u8),
            last_request_ms: AtomicU64::new(unix_ms(SystemTime::now())),
            queries: AtomicU64::new(0),
            transactions: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            query_time_us: AtomicU64::new(0),
            xact_time_us: AtomicU64::new(0),
            wait_time_us: AtomicU64::new(0),
            rollbacks: AtomicU64::new(0),
            healthchecks: AtomicU64::new(0),
        }
    }
}

impl ConnectionStats {
    /// The current state.
    pub fn state(&self) -> ConnState {
        ConnState::from_u8(self.state.load(Ordering::Relaxed))
    }

    /// Sets the state.
    pub fn set_state(&self, state: ConnState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    /// Marks a new request now.
    pub fn touch(&self) {
        self.last_request_ms
            .store(unix_ms(SystemTime::now()), Ordering::Relaxed);
    }

    /// When the last request started.
    pub fn last_request(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.last_request_ms.load(Ordering::Relaxed))
    }
}

/// Adds `n` to a counter.
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Reads a counter.
pub fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Microseconds of a duration, saturating.
pub fn micros(elapsed: Duration) -> u64 {
    elapsed.as_micros().min(u64::MAX as u128) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.record(Duration::from_micros(50));
        h.record(Duration::from_micros(300));
        h.record(Duration::from_secs(60));
        let (counts, sum) = h.cumulative();
        assert_eq!(counts.len(), BUCKETS_US.len() + 1);
        assert_eq!(counts[0], 1);
        assert_eq!(counts[2], 2);
        assert_eq!(counts[BUCKETS_US.len() - 1], 2);
        assert_eq!(*counts.last().unwrap(), 3);
        assert_eq!(sum, 50 + 300 + 60_000_000);
    }

    #[test]
    fn averages_are_rates_and_means_over_the_period() {
        let before = Figures {
            xact_count: 10,
            xact_time_us: 1_000,
            ..Figures::default()
        };
        let after = Figures {
            xact_count: 30,
            xact_time_us: 5_000,
            ..Figures::default()
        };
        let avg = per_period(&before, &after, 2.0);
        assert_eq!(avg.xact_count, 10);
        assert_eq!(avg.xact_time_us, 200);
        assert_eq!(avg.query_time_us, 0);
    }
}
