//! The pooler's live, shared state: pools (swapped atomically on reload), the prepared
//! statement cache, cancel keys, TLS and the shutdown signal. Passed explicitly as an `Arc`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use pgdog_config::ConfigAndUsers;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing::info;

use crate::backend::databases::Databases;
use crate::backend::prepared::PreparedStatements;
use crate::frontend::cancel::CancelRegistry;
use crate::tls::{self, TlsError};

/// Everything client tasks share.
pub struct PoolerState {
    databases: ArcSwap<Databases>,
    generation: AtomicU64,
    /// Global prepared statement cache.
    pub prepared: PreparedStatements,
    /// Cancel keys of connected clients.
    pub cancels: CancelRegistry,
    tls: ArcSwapOption<TlsAcceptor>,
    shutdown: watch::Sender<bool>,
    clients: AtomicUsize,
}

impl PoolerState {
    /// State for a validated configuration.
    pub fn new(config: ConfigAndUsers) -> Result<Arc<PoolerState>, TlsError> {
        let tls = load_tls(&config)?;
        let (shutdown, _) = watch::channel(false);
        Ok(Arc::new(PoolerState {
            databases: ArcSwap::from_pointee(Databases::new(config, None)),
            generation: AtomicU64::new(0),
            prepared: PreparedStatements::default(),
            cancels: CancelRegistry::default(),
            tls: ArcSwapOption::new(tls.map(Arc::new)),
            shutdown,
            clients: AtomicUsize::new(0),
        }))
    }

    /// The current pools.
    pub fn databases(&self) -> arc_swap::Guard<Arc<Databases>> {
        self.databases.load()
    }

    /// Bumped on every reload: clients compare it to notice new pools.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Swaps in a new configuration; unchanged pools keep their connections.
    pub fn reload(&self, config: ConfigAndUsers) -> Result<(), TlsError> {
        let tls = load_tls(&config)?;
        let old = self.databases.load_full();
        let new = Arc::new(Databases::new(config, Some(&old)));
        self.databases.store(new.clone());
        self.tls.store(tls.map(Arc::new));
        self.generation.fetch_add(1, Ordering::AcqRel);
        old.close_unused(&new);
        info!("configuration reloaded");
        Ok(())
    }

    /// The TLS acceptor, when TLS is configured.
    pub fn tls(&self) -> Option<Arc<TlsAcceptor>> {
        self.tls.load_full()
    }

    /// Tells every client task that pgdog is shutting down.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// A receiver that changes to `true` at shutdown.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Whether shutdown has begun.
    pub fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Counts a connected client until the returned guard drops.
    pub fn client_connected(self: &Arc<Self>) -> ClientCount {
        self.clients.fetch_add(1, Ordering::AcqRel);
        ClientCount(self.clone())
    }

    /// Connected clients.
    pub fn client_count(&self) -> usize {
        self.clients.load(Ordering::Acquire)
    }
}

/// Decrements the client count when dropped.
pub struct ClientCount(Arc<PoolerState>);

impl Drop for ClientCount {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::AcqRel);
    }
}

fn load_tls(config: &ConfigAndUsers) -> Result<Option<TlsAcceptor>, TlsError> {
    let general = &config.config.general;
    match (&general.tls_certificate, &general.tls_private_key) {
        (Some(cert), Some(key)) => Ok(Some(tls::acceptor(cert, key)?)),
        _ => Ok(None),
    }
}
