//! The registry of connected clients that `SHOW CLIENTS` lists. A client is added once logged
//! in and removed when its [`Registered`] handle drops; its counters live in [`ClientInfo`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

use crate::backend::stats::ConnectionStats;

/// What `SHOW CLIENTS` shows about one client.
pub struct ClientInfo {
    /// Unique id in this process.
    pub id: u64,
    /// The user it logged in as.
    pub user: String,
    /// The database it connected to.
    pub database: String,
    /// Its address.
    pub addr: Option<SocketAddr>,
    /// `application_name` from its startup packet.
    pub application_name: String,
    /// Its counters and state.
    pub stats: ConnectionStats,
    /// Named prepared statements it has.
    pub prepared_statements: AtomicU64,
}

/// All connected clients.
#[derive(Default)]
pub struct ClientRegistry {
    clients: DashMap<u64, Arc<ClientInfo>>,
    next_id: AtomicU64,
}

impl ClientRegistry {
    /// Adds a client; it stays listed until the returned handle drops.
    pub fn register(
        self: &Arc<Self>,
        user: &str,
        database: &str,
        addr: Option<SocketAddr>,
        application_name: &str,
    ) -> Registered {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let info = Arc::new(ClientInfo {
            id,
            user: user.to_string(),
            database: database.to_string(),
            addr,
            application_name: application_name.to_string(),
            stats: ConnectionStats::default(),
            prepared_statements: AtomicU64::new(0),
        });
        self.clients.insert(id, info.clone());
        Registered {
            info,
            registry: self.clone(),
        }
    }

    /// Every connected client, oldest first.
    pub fn list(&self) -> Vec<Arc<ClientInfo>> {
        let mut clients: Vec<_> = self.clients.iter().map(|e| e.value().clone()).collect();
        clients.sort_by_key(|c| c.id);
        clients
    }
}

/// A client's entry in the registry; removes it when dropped.
pub struct Registered {
    info: Arc<ClientInfo>,
    registry: Arc<ClientRegistry>,
}

impl Registered {
    /// The client's entry.
    pub fn info(&self) -> &Arc<ClientInfo> {
        &self.info
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.clients.remove(&self.info.id);
    }
}
