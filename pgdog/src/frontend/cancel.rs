//! Query cancellation. pgdog gives each client its own BackendKeyData and remembers which
//! server is running that client's query, so a CancelRequest reaches the right backend.

use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use rand::Rng;

use crate::backend::server::{self, BackendKey, ServerAddress};

/// The server currently running a client's query, if any.
#[derive(Default)]
pub struct CancelTarget {
    server: Mutex<Option<(Arc<ServerAddress>, BackendKey)>>,
}

impl CancelTarget {
    /// Records the server a client just checked out (or `None` after check-in).
    pub fn set(&self, target: Option<(Arc<ServerAddress>, BackendKey)>) {
        *self.server.lock().unwrap_or_else(|e| e.into_inner()) = target;
    }

    fn get(&self) -> Option<(Arc<ServerAddress>, BackendKey)> {
        self.server
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

    /// Forwards a CancelRequest to the server running the query of the client with `key`.
    /// Unknown keys are ignored, as Postgres does.
    pub async fn cancel(&self, key: BackendKey) {
        let target = self.clients.get(&key).and_then(|t| t.get());
        if let Some((addr, server_key)) = target {
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
