//! A pool of server connections to one server as one role: checkout with a timeout, return
//! on drop, idle and lifetime expiry, and a minimum of warm connections.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

use super::server::{Server, ServerAddress, ServerError};

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
}

/// A shared handle to a pool.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    addr: Arc<ServerAddress>,
    settings: PoolSettings,
    idle: Mutex<Vec<Server>>,
    permits: Arc<Semaphore>,
    open: AtomicUsize,
    closed: AtomicBool,
    params: Mutex<Option<ServerParams>>,
}

impl Pool {
    /// A new, empty pool. Connections are opened on demand and by `maintain`.
    pub fn new(addr: ServerAddress, settings: PoolSettings) -> Pool {
        Pool {
            inner: Arc::new(Inner {
                addr: Arc::new(addr),
                permits: Arc::new(Semaphore::new(settings.max)),
                settings,
                idle: Mutex::new(Vec::new()),
                open: AtomicUsize::new(0),
                closed: AtomicBool::new(false),
                params: Mutex::new(None),
            }),
        }
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
        let timeout = self.inner.settings.checkout_timeout;
        match tokio::time::timeout(timeout, self.inner.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(PoolError::Closed(self.inner.addr.to_string())),
            Err(_) => Err(PoolError::CheckoutTimeout {
                addr: self.inner.addr.to_string(),
                ms: timeout.as_millis(),
                max: self.inner.settings.max,
            }),
        }
    }

    async fn get_with_permit(&self, permit: OwnedSemaphorePermit) -> Result<Guard, PoolError> {
        loop {
            let candidate = self.idle().pop();
            match candidate {
                Some(server) if server.is_alive() && !self.expired(&server) => {
                    return Ok(Guard::new(server, self.clone(), permit));
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

    async fn connect(&self) -> Result<Server, PoolError> {
        let server = Server::connect(
            self.inner.addr.clone(),
            self.inner.settings.connect_timeout,
            self.inner.settings.prepared_statements_limit,
        )
        .await?;
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
        if server.is_clean() && !self.is_closed() && !self.expired(&server) {
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
        server.age() >= self.inner.settings.server_lifetime
    }

    /// Closes idle connections past idle_timeout (above `min`) or server_lifetime, and opens
    /// connections up to `min`. Called periodically by the pool maintainer.
    pub async fn maintain(&self) {
        let expired: Vec<Server> = {
            let mut idle = self.idle();
            let open = self.inner.open.load(Ordering::Relaxed);
            let mut removable = open.saturating_sub(self.inner.settings.min);
            let mut keep = Vec::with_capacity(idle.len());
            let mut expired = Vec::new();
            // Oldest-used first: the idle list is a stack, its bottom was used longest ago.
            for server in idle.drain(..) {
                let idle_too_long =
                    removable > 0 && server.last_used.elapsed() >= self.inner.settings.idle_timeout;
                if idle_too_long || self.expired(&server) || !server.is_alive() {
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
        while !self.is_closed() && self.inner.open.load(Ordering::Relaxed) < self.inner.settings.min
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
    pub fn settings(&self) -> &PoolSettings {
        &self.inner.settings
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
}

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
