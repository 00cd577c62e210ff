//! The pooler's live, shared state: pools (swapped atomically on reload), the prepared
//! statement cache, cancel keys, connected clients, traffic gates, the admin password, TLS,
//! the resharding tasks with their progress (schema sync, table copies, replication streams,
//! the slots they use) and the shutdown signal. Passed explicitly as an `Arc`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::{ArcSwap, ArcSwapOption};
use dashmap::DashMap;
use pgdog_config::{ConfigAndUsers, ConfigError};
use rand::distributions::{Alphanumeric, DistString};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

use crate::backend::databases::Databases;
use crate::backend::prepared::PreparedStatements;
use crate::frontend::cancel::CancelRegistry;
use crate::frontend::clients::ClientRegistry;
use crate::gate::Gate;
use crate::router::AccessCache;
use crate::tls::{self, TlsError};

/// Environment variable that sets the admin database password.
pub const ADMIN_PASSWORD_ENV: &str = "PGDOG_ADMIN_PASSWORD";

/// Why a reload did not happen (the previous configuration stays).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The files are missing or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The TLS files cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// Everything client tasks share.
pub struct PoolerState {
    databases: ArcSwap<Databases>,
    generation: AtomicU64,
    /// Global prepared statement cache.
    pub prepared: PreparedStatements,
    /// Cancel keys of connected clients.
    pub cancels: CancelRegistry,
    /// Read/write classification of SQL text, for load balancing.
    pub access: AccessCache,
    /// Background tasks (resharding) and their status.
    pub tasks: crate::reshard::TaskRegistry,
    /// Every schema-sync statement per shard, for `SHOW SCHEMA_SYNC`.
    pub schema_sync: crate::reshard::schema::SchemaSyncLog,
    /// Every table copy of data-copy tasks, for `SHOW TABLE_COPIES`.
    pub table_copies: crate::reshard::copy::TableCopies,
    /// Every replication stream of this process, for `SHOW REPLICATION`.
    pub replication: crate::reshard::stream::ReplicationStats,
    /// Every cutover of this process, for `SHOW CUTOVER`.
    pub cutovers: crate::reshard::cutover::CutoverLog,
    /// The replication slots this process's tasks use (`DROP_SLOT` refuses those).
    pub slot_claims: crate::admin::claims::SlotClaims,
    /// Connected clients, for `SHOW CLIENTS`.
    pub clients: Arc<ClientRegistry>,
    tls: ArcSwapOption<TlsAcceptor>,
    shutdown: watch::Sender<bool>,
    client_count: AtomicUsize,
    gates: DashMap<String, Arc<Gate>>,
    admin_password: ArcSwap<String>,
    generated_admin_password: String,
    /// When pgdog started.
    pub started_at: SystemTime,
}

impl PoolerState {
    /// State for a validated configuration.
    pub fn new(config: ConfigAndUsers) -> Result<Arc<PoolerState>, TlsError> {
        let tls = load_tls(&config)?;
        let (shutdown, _) = watch::channel(false);
        let generated_admin_password = Alphanumeric.sample_string(&mut rand::thread_rng(), 24);
        let (admin_password, generated) = admin_password(&config, &generated_admin_password);
        if generated {
            warn!(
                "no admin password configured: generated one for this run: {admin_password} \
                 (set [admin] password in users.toml or {ADMIN_PASSWORD_ENV} to choose it)"
            );
        }
        Ok(Arc::new(PoolerState {
            databases: ArcSwap::from_pointee(Databases::new(config, &[])),
            generation: AtomicU64::new(0),
            prepared: PreparedStatements::default(),
            cancels: CancelRegistry::default(),
            access: AccessCache::default(),
            tasks: crate::reshard::TaskRegistry::default(),
            schema_sync: crate::reshard::schema::SchemaSyncLog::default(),
            table_copies: crate::reshard::copy::TableCopies::default(),
            replication: crate::reshard::stream::ReplicationStats::default(),
            slot_claims: crate::admin::claims::SlotClaims::default(),
            cutovers: Default::default(),
            clients: Arc::new(ClientRegistry::default()),
            tls: ArcSwapOption::new(tls.map(Arc::new)),
            shutdown,
            client_count: AtomicUsize::new(0),
            gates: DashMap::new(),
            admin_password: ArcSwap::from_pointee(admin_password),
            generated_admin_password,
            started_at: SystemTime::now(),
        }))
    }

    /// The admin database password in effect: `PGDOG_ADMIN_PASSWORD`, else `[admin] password`,
    /// else the one generated at startup.
    pub fn admin_password(&self) -> Arc<String> {
        self.admin_password.load_full()
    }

    /// The traffic gate of a database (by the name clients use).
    pub fn gate(&self, database: &str) -> Arc<Gate> {
        if let Some(gate) = self.gates.get(database) {
            return gate.clone();
        }
        self.gates.entry(database.to_string()).or_default().clone()
    }

    /// Re-reads the config files this state was loaded from and swaps them in.
    pub fn reload_from_files(&self) -> Result<(), ReloadError> {
        let (config_path, users_path) = {
            let current = self.databases();
            let config = current.config();
            (config.config_path.clone(), config.users_path.clone())
        };
        let config = ConfigAndUsers::load(&config_path, &users_path)?;
        self.reload(config)?;
        Ok(())
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
        self.reload_with(config, None)
    }

    /// Swaps in a new configuration, taking its pools (with their connections) from the
    /// current ones and from `warmed` (pools opened for it beforehand: a cutover's).
    pub fn reload_with(
        &self,
        config: ConfigAndUsers,
        warmed: Option<&Databases>,
    ) -> Result<(), TlsError> {
        let tls = load_tls(&config)?;
        let (admin_password, _) = admin_password(&config, &self.generated_admin_password);
        self.admin_password.store(Arc::new(admin_password));
        let old = self.databases.load_full();
        let previous: Vec<&Databases> = std::iter::once(old.as_ref()).chain(warmed).collect();
        let new = Arc::new(Databases::new(config, &previous));
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
        self.tasks.stop_all();
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
        self.client_count.fetch_add(1, Ordering::AcqRel);
        ClientCount(self.clone())
    }

    /// Connected clients.
    pub fn client_count(&self) -> usize {
        self.client_count.load(Ordering::Acquire)
    }
}

/// Decrements the client count when dropped.
pub struct ClientCount(Arc<PoolerState>);

impl Drop for ClientCount {
    fn drop(&mut self) {
        self.0.client_count.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The effective admin password, and whether it is the generated one.
fn admin_password(config: &ConfigAndUsers, generated: &str) -> (String, bool) {
    if let Ok(password) = std::env::var(ADMIN_PASSWORD_ENV) {
        if !password.is_empty() {
            return (password, false);
        }
    }
    match config.admin().password.filter(|p| !p.is_empty()) {
        Some(password) => (password, false),
        None => (generated.to_string(), true),
    }
}

fn load_tls(config: &ConfigAndUsers) -> Result<Option<TlsAcceptor>, TlsError> {
    let general = &config.config.general;
    match (&general.tls_certificate, &general.tls_private_key) {
        (Some(cert), Some(key)) => Ok(Some(tls::acceptor(cert, key)?)),
        _ => Ok(None),
    }
}
