//! Traffic gates: pausing one database's client traffic at transaction boundaries. `PAUSE`
//! uses them now, cutover later. A client takes a [`Pass`] before it starts a transaction and
//! drops it when the transaction ends; pausing closes the gate to new passes and waits for the
//! outstanding ones to come back. Waiting clients see only latency, never an error.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// The gate of one database (by the name clients connect to).
pub struct Gate {
    paused: AtomicBool,
    in_flight: AtomicUsize,
    open: watch::Sender<bool>,
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            paused: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            open: watch::channel(true).0,
        }
    }
}

/// Why a pause did not take effect.
#[derive(Debug, thiserror::Error)]
#[error("{in_flight} transaction(s) still running after {ms} ms")]
pub struct PauseTimeout {
    /// Transactions that did not finish.
    pub in_flight: usize,
    /// How long the pause waited.
    pub ms: u128,
}

impl Gate {
    /// Lets a transaction start, waiting while the gate is paused. The pass must be held until
    /// the transaction ends.
    pub async fn enter(self: &Arc<Self>) -> Pass {
        loop {
            // Count first, then look: a concurrent `pause` either sees this transaction in
            // flight or this client sees the pause (both use SeqCst).
            self.in_flight.fetch_add(1, Ordering::SeqCst);
            if !self.paused.load(Ordering::SeqCst) {
                return Pass(self.clone());
            }
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            let mut open = self.open.subscribe();
            let _ = open.wait_for(|open| *open).await;
        }
    }

    /// Whether the gate is paused.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// Transactions holding a pass.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Closes the gate to new transactions and waits up to `timeout` for the running ones to
    /// finish. On timeout the gate is reopened (nothing changed) and the error says how many
    /// transactions were still running.
    pub async fn pause(&self, timeout: Duration) -> Result<(), PauseTimeout> {
        let was_paused = self.paused.swap(true, Ordering::SeqCst);
        self.open.send_replace(false);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let in_flight = self.in_flight();
            if in_flight == 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                if !was_paused {
                    self.resume();
                }
                return Err(PauseTimeout {
                    in_flight,
                    ms: timeout.as_millis(),
                });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Opens the gate: waiting clients go on.
    pub fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
        self.open.send_replace(true);
    }
}

/// Permission to run one transaction; gives itself back when dropped.
pub struct Pass(Arc<Gate>);

impl Drop for Pass {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pause_waits_for_passes_and_holds_new_ones() {
        let gate = Arc::new(Gate::default());
        let pass = gate.enter().await;
        assert!(gate.pause(Duration::from_millis(20)).await.is_err());
        assert!(!gate.is_paused(), "a failed pause changes nothing");

        let pausing = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.pause(Duration::from_secs(5)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(pass);
        assert!(pausing.await.unwrap().is_ok());
        assert!(gate.is_paused());

        let waiter = {
            let gate = gate.clone();
            tokio::spawn(async move { drop(gate.enter().await) })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "new transactions wait while paused");
        gate.resume();
        waiter.await.unwrap();
        assert_eq!(gate.in_flight(), 0);
    }
}
