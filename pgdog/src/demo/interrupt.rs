//! Ctrl-C (SIGINT) and SIGTERM during the demo's setup, before pgdog's own handlers run: a
//! thread notices them and sets a flag the setup checks between steps, so the clusters already
//! started are removed instead of left running.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::oneshot;

/// The watcher; stopped (and joined) by [`Interrupts::stop`] or on drop.
pub struct Interrupts {
    flag: Arc<AtomicBool>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Interrupts {
    /// Installs the handlers (from now on the signals no longer end the process) and starts
    /// the watcher thread.
    pub fn watch() -> std::io::Result<Interrupts> {
        let runtime = crate::cli::current_thread()?;
        let (mut interrupt, mut terminate) = {
            let _enter = runtime.enter();
            (
                signal(SignalKind::interrupt())?,
                signal(SignalKind::terminate())?,
            )
        };
        let flag = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = oneshot::channel::<()>();
        let set = flag.clone();
        let thread = std::thread::Builder::new()
            .name("pgdog-demo-signals".into())
            .spawn(move || {
                runtime.block_on(async move {
                    tokio::select! {
                        _ = interrupt.recv() => set.store(true, Ordering::Release),
                        _ = terminate.recv() => set.store(true, Ordering::Release),
                        _ = stopped => {}
                    }
                })
            })?;
        Ok(Interrupts {
            flag,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Set once a signal arrived.
    pub fn flag(&self) -> &AtomicBool {
        &self.flag
    }

    /// Whether a signal arrived.
    pub fn interrupted(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// Stops watching; returns whether a signal arrived.
    pub fn stop(mut self) -> bool {
        self.shut();
        self.flag.load(Ordering::Acquire)
    }

    fn shut(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Interrupts {
    fn drop(&mut self) {
        self.shut();
    }
}
