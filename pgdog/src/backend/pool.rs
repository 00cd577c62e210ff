//! A pool of server connections to one server as one role: checkout with a timeout, return
//! on drop, idle and lifetime expiry, a minimum of warm connections, bans (health checks and
//! `BAN`), statistics, and a registry of its connections for `SHOW SERVERS`.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

use super::server::{Server, ServerAddress, ServerError};
use super::stats::{ConnectionStats, PoolStats};

/// The ParameterStatus values a server reported at login.
pub type ServerParams = Arc<Vec<(String, String)>>;

/// Pool limits and timeouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    /// Maximum server connections.
    pub max: usize,
    /// Connections kept open even when idle.
    pub min: usize,
    /// Connect + login timeout.
    pub connect_timeout: Duration,
    /// How long a client waits for a connection.
    pub checkout_timeout: Duration,
    /// Idle connections above `min` are closed after this.
    pub idle_timeout: Duration,
    /// Connections are closed (when idle) after this age.
    pub server_lifetime: Duration,
    /// Prepared statements kept per connection.
    pub prepared_statements_limit: usize,
    /// A connection idle for this long is checked with a trivial query before a client gets it.
    pub healthcheck_interval: Duration,
    /// How long that check (and background health checks) may take.
    pub healthcheck_timeout: Duration,
}

/// Why a checkout failed.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// All connections busy for longer than checkout_timeout.
    #[error("no server connection available for {addr} within checkout_timeout ({ms} ms): all {max} connections are busy")]
    CheckoutTimeout {
        /// The server.
        addr: String,
        /// checkout_timeout.
        ms: u128,
        /// Pool size.
        max: usize,
    },
    /// The pool was closed by a reload or shutdown.
    #[error("pool for {0} is closed")]
    Closed(String),
    /// Connecting failed.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// A health check got no answer in time.
    #[error("health check of {addr} failed: {reason}")]
    Unhealthy {
        /// The server.
        addr: String,
        /// What went wrong.
        reason: String,
    },
}

/// Why and until when a pool is banned.
#[derive(Debug, Clone)]
pub struct Ban {
    /// Why it was banned.
    pub reason: String,
    /// When the ban started.
    pub since: SystemTime,
    /// When it ends; `None` for a manual `BAN`, which lasts until `UNBAN`.
    pub until: Option<Instant>,
}

/// One server connection of a pool, as `SHOW SERVERS` lists it.
pub struct ServerEntry {
    /// The backend's process id.
    pub pid: i32,
    /// Its counters.
    pub stats: Arc<ConnectionStats>,
}

/// A shared handle to a pool.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    id: u64,
    addr: Arc<ServerAddress>,
    settings: ArcSwap<PoolSettings>,
    idle: Mutex<Vec<Server>>,
    permits: Arc<Semaphore>,
    max: usize,
    open: AtomicUsize,
    waiting: AtomicUsize,
    /// When each waiting client started waiting (only touched by clients that must wait).
    waiters: Mutex<std::collections::BTreeMap<u64, Instant>>,
    next_waiter: AtomicU64,
    closed: AtomicBool,
    params: Mutex<Option<ServerParams>>,
    stats: PoolStats,
    banned: AtomicBool,
    ban: Mutex<Option<Ban>>,
    generation: AtomicU64,
    servers: Mutex<Vec<(i32, Weak<ConnectionStats>)>>,
}

/// Source of pool ids, unique for the life of the process.
static NEXT_POOL_ID: AtomicU64 = AtomicU64::new(1);

impl Pool {
    /// A new, empty pool. Connections are opened on demand and by `maintain`.
    pub fn new(addr: ServerAddress, settings: PoolSettings) -> Pool {
        Pool {
            inner: Arc::new(Inner {
                id: NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed),
                addr: Arc::new(addr),
                permits: Arc::new(Semaphore::new(settings.max)),
                max: settings.max,
                settings: ArcSwap::from_pointee(settings),
                idle: Mutex::new(Vec::new()),
                open: AtomicUsize::new(0),
                waiting: AtomicUsize::new(0),
                waiters: Mutex::new(std::collections::BTreeMap::new()),
                next_waiter: AtomicU64::new(0),
                closed: AtomicBool::new(false),
                params: Mutex::new(None),
                stats: PoolStats::default(),
                banned: AtomicBool::new(false),
                ban: Mutex::new(None),
                generation: AtomicU64::new(0),
                servers: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Takes a connection only if one can be had without waiting for another client.
    pub async fn try_get(&self) -> Option<Result<Guard, PoolError>> {
        let permit = self.inner.permits.clone().try_acquire_owned().ok()?;
        Some(self.get_with_permit(permit).await)
    }

    /// Takes a connection, waiting up to checkout_timeout for one to be free.
    pub async fn get(&self) -> Result<Guard, PoolError> {
        let permit = self.acquire().await?;
        self.get_with_permit(permit).await
    }

    async fn acquire(&self) -> Result<OwnedSemaphorePermit, PoolError> {
        if let Ok(permit) = self.inner.permits.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let timeout = self.inner.settings.load().checkout_timeout;
        self.inner.waiting.fetch_add(1, Ordering::Relaxed);
        let token = self.inner.next_waiter.fetch_add(1, Ordering::Relaxed);
        self.waiters().insert(token, Instant::now());
        let acquired =
            tokio::time::timeout(timeout, self.inner.permits.clone().acquire_owned()).await;
        self.waiters().remove(&token);
        self.inner.waiting.fetch_sub(1, Ordering::Relaxed);
        match acquired {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(PoolError::Closed(self.inner.addr.to_string())),
            Err(_) => Err(PoolError::CheckoutTimeout {
                addr: self.inner.addr.to_string(),
                ms: timeout.as_millis(),
                max: self.inner.max,
            }),
        }
    }

    async fn get_with_permit(&self, permit: OwnedSemaphorePermit) -> Result<Guard, PoolError> {
        loop {
            let candidate = self.idle().pop();
            match candidate {
                Some(mut server)
                    if server.is_alive() && !self.expired(&server) && !self.stale(&server) =>
                {
                    if self.passes_checkout_check(&mut server).await {
                        return Ok(Guard::new(server, self.clone(), permit));
                    }
                    debug!(
                        "idle connection to {} failed its health check",
                        self.inner.addr
                    );
                    self.forget(server);
                }
                Some(server) => {
                    debug!("discarding stale idle connection to {}", self.inner.addr);
                    self.forget(server);
                }
                None => break,
            }
        }
        if self.is_closed() {
            return Err(PoolError::Closed(self.inner.addr.to_string()));
        }
        let server = self.connect().await?;
        Ok(Guard::new(server, self.clone(), permit))
    }

    /// A connection idle for `healthcheck_interval` or longer must answer `;` first.
    async fn passes_checkout_check(&self, server: &mut Server) -> bool {
        let settings = self.inner.settings.load_full();
        if server.last_used.elapsed() < settings.healthcheck_interval {
            return true;
        }
        super::stats::add(&server.stats.healthchecks, 1);
        matches!(
            tokio::time::timeout(settings.healthcheck_timeout, server.run_internal(";")).await,
            Ok(Some(b'I'))
        )
    }

    async fn connect(&self) -> Result<Server, PoolError> {
        let settings = self.inner.settings.load_full();
        let started = Instant::now();
        let mut server = Server::connect(
            self.inner.addr.clone(),
            settings.connect_timeout,
            settings.prepared_statements_limit,
        )
        .await?;
        self.inner.stats.connect_time.record(started.elapsed());
        self.inner
            .stats
            .connect_count
            .fetch_add(1, Ordering::Relaxed);
        server.generation = self.inner.generation.load(Ordering::Relaxed);
        self.servers()
            .push((server.key().pid, Arc::downgrade(&server.stats)));
        self.inner.open.fetch_add(1, Ordering::Relaxed);
        let mut params = self.lock_params();
        if params.is_none() {
            *params = Some(Arc::new(server.params().to_vec()));
        }
        Ok(server)
    }

    /// Makes sure the server can be reached: idle connections that died are dropped, and if no
    /// connection is left, one is opened (its error names the server). Cheap when the pool has
    /// live connections: no round trip.
    pub async fn check_reachable(&self) -> Result<(), PoolError> {
        let dead: Vec<Server> = {
            let mut idle = self.idle();
            let (alive, dead): (Vec<Server>, Vec<Server>) =
                idle.drain(..).partition(|s| s.is_alive());
            *idle = alive;
            dead
        };
        for server in dead {
            self.forget(server);
        }
        if self.open() > 0 {
            return Ok(());
        }
        drop(self.get().await?);
        Ok(())
    }

    /// The ParameterStatus values of this pool's server (connecting once if none is known).
    pub async fn server_params(&self) -> Result<ServerParams, PoolError> {
        if let Some(params) = self.lock_params().clone() {
            return Ok(params);
        }
        drop(self.get().await?);
        self.lock_params()
            .clone()
            .ok_or_else(|| PoolError::Closed(self.inner.addr.to_string()))
    }

    /// Returns a connection: clean ones go back to the idle list, others are closed
    /// (or rolled back first, if only a transaction is left open).
    fn checkin(&self, mut server: Server, permit: OwnedSemaphorePermit) {
        if server.is_clean() && !self.is_closed() && !self.expired(&server) && !self.stale(&server)
        {
            server.last_used = std::time::Instant::now();
            self.idle().push(server);
            drop(permit);
        } else if self.can_roll_back(&server) {
            let pool = self.clone();
            tokio::spawn(async move {
                if pool.roll_back(&mut server).await {
                    pool.checkin(server, permit);
                } else {
                    pool.forget(server);
                }
            });
        } else {
            self.forget(server);
        }
    }

    fn can_roll_back(&self, server: &Server) -> bool {
        !server.broken
            && !server.copy
            && server.pending.is_empty()
            && server.status != b'I'
            && !self.is_closed()
            && tokio::runtime::Handle::try_current().is_ok()
    }

    /// Rolls back a transaction a client abandoned; false if the connection is unusable.
    async fn roll_back(&self, server: &mut Server) -> bool {
        super::stats::add(&server.stats.rollbacks, 1);
        server.run_internal("ROLLBACK").await == Some(b'I')
    }

    /// Closes a connection and forgets it.
    fn forget(&self, server: Server) {
        self.inner.open.fetch_sub(1, Ordering::Relaxed);
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(server.terminate());
        }
    }

    fn expired(&self, server: &Server) -> bool {
        server.age() >= self.inner.settings.load().server_lifetime
    }

    /// Opened before the last `RECONNECT`.
    fn stale(&self, server: &Server) -> bool {
        server.generation != self.inner.generation.load(Ordering::Relaxed)
    }

    /// Closes idle connections past idle_timeout (above `min`) or server_lifetime, and opens
    /// connections up to `min`. Called periodically by the pool maintainer.
    pub async fn maintain(&self) {
        let settings = self.inner.settings.load_full();
        self.inner.stats.roll(STATS_PERIOD);
        self.servers().retain(|(_, stats)| stats.strong_count() > 0);
        let expired: Vec<Server> = {
            let mut idle = self.idle();
            let open = self.inner.open.load(Ordering::Relaxed);
            let mut removable = open.saturating_sub(settings.min);
            let mut keep = Vec::with_capacity(idle.len());
            let mut expired = Vec::new();
            // Oldest-used first: the idle list is a stack, its bottom was used longest ago.
            for server in idle.drain(..) {
                let idle_too_long =
                    removable > 0 && server.last_used.elapsed() >= settings.idle_timeout;
                if idle_too_long
                    || self.expired(&server)
                    || self.stale(&server)
                    || !server.is_alive()
                {
                    removable = removable.saturating_sub(1);
                    expired.push(server);
                } else {
                    keep.push(server);
                }
            }
            *idle = keep;
            expired
        };
        for server in expired {
            self.forget(server);
        }
        while !self.is_closed()
            && !self.is_banned()
            && self.inner.open.load(Ordering::Relaxed) < settings.min
        {
            let Ok(permit) = self.inner.permits.clone().try_acquire_owned() else {
                break;
            };
            match self.connect().await {
                Ok(server) => self.checkin(server, permit),
                Err(e) => {
                    warn!("cannot open minimum connections: {e}");
                    break;
                }
            }
        }
    }

    /// Stops handing out connections and closes the idle ones; checked-out ones close on return.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::Relaxed);
        self.inner.permits.close();
        let idle: Vec<Server> = self.idle().drain(..).collect();
        for server in idle {
            self.forget(server);
        }
    }

    /// Whether `close` was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Relaxed)
    }

    /// The server address.
    pub fn addr(&self) -> &Arc<ServerAddress> {
        &self.inner.addr
    }

    /// The pool's settings.
    pub fn settings(&self) -> Arc<PoolSettings> {
        self.inner.settings.load_full()
    }

    /// Replaces the settings; the size (`max`) is fixed for the life of the pool.
    pub fn set_settings(&self, settings: PoolSettings) {
        self.inner.settings.store(Arc::new(settings));
    }

    /// Maximum connections.
    pub fn max(&self) -> usize {
        self.inner.max
    }

    /// The pool's id, unique in this process (`BAN <id>`).
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// Its statistics.
    pub fn stats(&self) -> &PoolStats {
        &self.inner.stats
    }

    /// Connections checked out by clients.
    pub fn active(&self) -> usize {
        if self.is_closed() {
            return self.open().saturating_sub(self.idle_len());
        }
        self.inner
            .max
            .saturating_sub(self.inner.permits.available_permits())
    }

    /// Idle connections.
    pub fn idle_len(&self) -> usize {
        self.idle().len()
    }

    /// Clients waiting for a connection.
    pub fn waiting(&self) -> usize {
        self.inner.waiting.load(Ordering::Relaxed)
    }

    /// How long the longest-waiting client has waited so far.
    pub fn max_wait(&self) -> Duration {
        self.waiters()
            .values()
            .map(|start| start.elapsed())
            .max()
            .unwrap_or_default()
    }

    /// Every open connection of the pool.
    pub fn server_entries(&self) -> Vec<ServerEntry> {
        self.servers()
            .iter()
            .filter_map(|(pid, stats)| {
                stats
                    .upgrade()
                    .map(|stats| ServerEntry { pid: *pid, stats })
            })
            .collect()
    }

    /// Closes every idle connection now, and every checked-out one when it comes back.
    pub fn reconnect(&self) {
        self.inner.generation.fetch_add(1, Ordering::Relaxed);
        let idle: Vec<Server> = self.idle().drain(..).collect();
        for server in idle {
            self.forget(server);
        }
    }

    /// Bans the pool: load balancing skips it until `duration` passes (`None`: until `unban`).
    pub fn ban(&self, reason: impl Into<String>, duration: Option<Duration>) {
        let reason = reason.into();
        warn!("banning {}: {reason}", self.inner.addr);
        *self.lock_ban() = Some(Ban {
            reason,
            since: SystemTime::now(),
            until: duration.map(|d| Instant::now() + d),
        });
        self.inner.banned.store(true, Ordering::Release);
        let idle: Vec<Server> = self.idle().drain(..).collect();
        for server in idle {
            self.forget(server);
        }
    }

    /// Lifts a ban; returns whether there was one.
    pub fn unban(&self) -> bool {
        self.inner.banned.store(false, Ordering::Release);
        self.lock_ban().take().is_some()
    }

    /// Whether the pool is banned now (an expired ban is lifted here).
    pub fn is_banned(&self) -> bool {
        if !self.inner.banned.load(Ordering::Acquire) {
            return false;
        }
        let mut ban = self.lock_ban();
        match ban.as_ref().and_then(|b| b.until) {
            Some(until) if until <= Instant::now() => {
                debug!("ban of {} expired", self.inner.addr);
                *ban = None;
                self.inner.banned.store(false, Ordering::Release);
                false
            }
            _ => ban.is_some(),
        }
    }

    /// The current ban, if any.
    pub fn current_ban(&self) -> Option<Ban> {
        if self.is_banned() {
            self.lock_ban().clone()
        } else {
            None
        }
    }

    /// Checks the server answers a query within `timeout`, using an idle connection (or a new
    /// one). A pool whose connections are all busy is healthy by definition and is not checked.
    pub async fn healthcheck(&self, timeout: Duration) -> Result<(), PoolError> {
        let check = async {
            let Some(guard) = self.try_get().await else {
                return Ok(());
            };
            let mut guard = guard?;
            super::stats::add(&guard.stats.healthchecks, 1);
            match guard.run_internal(";").await {
                Some(b'I') => Ok(()),
                _ => Err(PoolError::Unhealthy {
                    addr: self.inner.addr.to_string(),
                    reason: "the server did not answer the check query".into(),
                }),
            }
        };
        match tokio::time::timeout(timeout, check).await {
            Ok(result) => result,
            Err(_) => Err(PoolError::Unhealthy {
                addr: self.inner.addr.to_string(),
                reason: format!(
                    "no answer within healthcheck_timeout ({} ms)",
                    timeout.as_millis()
                ),
            }),
        }
    }

    /// Open connections (idle + checked out).
    pub fn open(&self) -> usize {
        self.inner.open.load(Ordering::Relaxed)
    }

    /// Whether both handles are the same pool.
    pub fn ptr_eq(&self, other: &Pool) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    fn idle(&self) -> MutexGuard<'_, Vec<Server>> {
        self.inner.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_params(&self) -> MutexGuard<'_, Option<ServerParams>> {
        self.inner.params.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn waiters(&self) -> MutexGuard<'_, std::collections::BTreeMap<u64, Instant>> {
        self.inner.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_ban(&self) -> MutexGuard<'_, Option<Ban>> {
        self.inner.ban.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn servers(&self) -> MutexGuard<'_, Vec<(i32, Weak<ConnectionStats>)>> {
        self.inner.servers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// How often `SHOW STATS` averages are recomputed.
const STATS_PERIOD: Duration = Duration::from_secs(15);

/// A checked-out connection; returns to its pool when dropped.
pub struct Guard {
    server: Option<Server>,
    pool: Pool,
    permit: Option<OwnedSemaphorePermit>,
}

impl Guard {
    fn new(server: Server, pool: Pool, permit: OwnedSemaphorePermit) -> Guard {
        Guard {
            server: Some(server),
            pool,
            permit: Some(permit),
        }
    }

    /// The pool it came from.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

impl std::ops::Deref for Guard {
    type Target = Server;
    fn deref(&self) -> &Server {
        // Only `Drop` takes the server out.
        self.server.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl std::ops::DerefMut for Guard {
    fn deref_mut(&mut self) -> &mut Server {
        self.server.as_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let (Some(server), Some(permit)) = (self.server.take(), self.permit.take()) {
            self.pool.checkin(server, permit);
        }
    }
}
