//! Query cancellation. pgdog gives each client its own BackendKeyData and remembers which
//! server is running that client's query, so a CancelRequest reaches the right backend.

use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use rand::Rng;

use crate::backend::server::{self, BackendKey, ServerAddress};

/// A server session a cancel request can reach.
pub type ServerSession = (Arc<ServerAddress>, BackendKey);

/// The servers currently running a client's query: none, one, or every shard of a
/// cross-shard statement.
#[derive(Default)]
pub struct CancelTarget {
    servers: Mutex<Vec<ServerSession>>,
}

impl CancelTarget {
    /// Records the server a client just checked out (or `None` after check-in).
    pub fn set(&self, target: Option<ServerSession>) {
        self.set_all(target.into_iter().collect());
    }

    /// Records every server running the client's query.
    pub fn set_all(&self, targets: Vec<ServerSession>) {
        *self.servers.lock().unwrap_or_else(|e| e.into_inner()) = targets;
    }

    fn get(&self) -> Vec<ServerSession> {
        self.servers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// All connected clients' keys.
#[derive(Default)]
pub struct CancelRegistry {
    clients: DashMap<BackendKey, Arc<CancelTarget>>,
}

impl CancelRegistry {
    /// Hands out a fresh random key for a new client.
    pub fn register(&self) -> (BackendKey, Arc<CancelTarget>) {
        let target = Arc::new(CancelTarget::default());
        let mut rng = rand::thread_rng();
        loop {
            let key = BackendKey {
                pid: rng.gen_range(1..i32::MAX),
                secret: rng.gen(),
            };
            if let dashmap::mapref::entry::Entry::Vacant(slot) = self.clients.entry(key) {
                slot.insert(target.clone());
                return (key, target);
            }
        }
    }

    /// Forgets a client's key when it disconnects.
    pub fn unregister(&self, key: BackendKey) {
        self.clients.remove(&key);
    }

    /// Forwards a CancelRequest to the server(s) running the query of the client with `key`.
    /// Unknown keys are ignored, as Postgres does.
    pub async fn cancel(&self, key: BackendKey) {
        let targets = self.clients.get(&key).map(|t| t.get()).unwrap_or_default();
        for (addr, server_key) in targets {
            if let Err(e) = server::cancel(&addr.host, addr.port, server_key).await {
                tracing::warn!("could not forward cancel request to {addr}: {e}");
            }
        }
    }

    /// Number of registered clients.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Whether no client is registered.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }
}
