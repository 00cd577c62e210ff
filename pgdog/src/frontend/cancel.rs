//! Query cancellation. pgdog gives each client its own BackendKeyData and remembers which
//! server is running that client's query, so a CancelRequest reaches the right backend.
//!
//! Postgres delivers a cancel from a separate process that signals the backend twice (the
//! process, then its process group). A process descheduled between the two signals can make
//! the second one land after the cancelled query ended, on whatever the backend runs next.
//! libpq guards against this by waiting until the server closes the cancel connection; pgdog
//! does the same before it gives the backend more work (see [`CancelTarget::settled`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::DashMap;
use rand::Rng;
use tokio::sync::watch;

use crate::backend::server::{self, BackendKey, ServerAddress};

/// A server session a cancel request can reach.
pub type ServerSession = (Arc<ServerAddress>, BackendKey);

/// How long a client waits for its cancel requests to be delivered before it stops trusting
/// its server connections (they are then closed instead of reused).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The servers currently running a client's query: none, one, or every shard of a
/// cross-shard statement.
pub struct CancelTarget {
    servers: Mutex<Vec<ServerSession>>,
    /// Cancel requests sent for this client whose delivery the server has not confirmed.
    in_flight: watch::Sender<usize>,
    /// A delivery failed or timed out: whether (and when) the signal lands is unknown.
    unconfirmed: AtomicBool,
}

impl Default for CancelTarget {
    fn default() -> Self {
        Self {
            servers: Mutex::default(),
            in_flight: watch::Sender::new(0),
            unconfirmed: AtomicBool::new(false),
        }
    }
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

    /// Starts cancelling the client's running query: from now until the returned request is
    /// delivered (or dropped), [`CancelTarget::settled`] waits.
    pub fn start_cancel(self: &Arc<Self>) -> PendingCancel {
        self.in_flight.send_modify(|n| *n += 1);
        PendingCancel {
            target: self.clone(),
            servers: self.get(),
        }
    }

    /// Waits until every cancel request sent for this client has been delivered, so none can
    /// land on the next query its servers run. Returns false if that took too long or a
    /// delivery failed: the caller must then not reuse the servers.
    pub async fn settled(&self) -> bool {
        if *self.in_flight.borrow() != 0 {
            let mut delivered = self.in_flight.subscribe();
            let wait = delivered.wait_for(|n| *n == 0);
            if !tokio::time::timeout(SETTLE_TIMEOUT, wait)
                .await
                .is_ok_and(|r| r.is_ok())
            {
                return false;
            }
        }
        !(self.unconfirmed.load(Ordering::Acquire)
            && self.unconfirmed.swap(false, Ordering::AcqRel))
    }
}

/// A cancel request on its way to the servers running a client's query.
pub struct PendingCancel {
    target: Arc<CancelTarget>,
    servers: Vec<ServerSession>,
}

impl PendingCancel {
    /// Sends the CancelRequest to each server and waits until each has processed it.
    pub async fn deliver(self) {
        for (addr, server_key) in &self.servers {
            if let Err(e) = server::cancel(&addr.host, addr.port, *server_key).await {
                self.target.unconfirmed.store(true, Ordering::Release);
                tracing::warn!("could not forward cancel request to {addr}: {e}");
            }
        }
    }
}

impl Drop for PendingCancel {
    fn drop(&mut self) {
        self.target
            .in_flight
            .send_modify(|n| *n = n.saturating_sub(1));
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
        let target = self.clients.get(&key).map(|t| t.value().clone());
        if let Some(target) = target {
            target.start_cancel().deliver().await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn settled_waits_for_cancels_in_flight() {
        let target = Arc::new(CancelTarget::default());
        assert!(target.settled().await, "nothing in flight");
        let pending = target.start_cancel();
        let waiter = tokio::spawn({
            let target = target.clone();
            async move { target.settled().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiter.is_finished(),
            "settled before the cancel was delivered"
        );
        // No servers to reach: delivering just confirms.
        pending.deliver().await;
        assert!(waiter.await.unwrap_or(false));
    }

    #[tokio::test]
    async fn a_failed_delivery_is_not_settled_once() {
        let target = Arc::new(CancelTarget::default());
        // A server that refuses connections: the request cannot be delivered.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(1);
        let address = Arc::new(ServerAddress {
            host: "127.0.0.1".into(),
            port: closed,
            database: "db".into(),
            user: "u".into(),
            password: None,
        });
        target.set(Some((address, BackendKey { pid: 1, secret: 2 })));
        target.start_cancel().deliver().await;
        assert!(
            !target.settled().await,
            "a failed cancel counted as delivered"
        );
        assert!(target.settled().await, "reported more than once");
    }
}
