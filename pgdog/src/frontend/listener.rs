//! Accepting client connections, and the orderly shutdown: stop accepting, let open
//! transactions finish up to shutdown_timeout, then return.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};

use crate::frontend::client::Client;
use crate::frontend::login::{login, LoginError};
use crate::state::PoolerState;

/// Serves clients on `listener` until `shutdown` completes, then drains.
pub async fn run(
    listener: TcpListener,
    state: Arc<PoolerState>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    debug!("client connected from {peer}");
                    let state = state.clone();
                    tokio::spawn(async move { serve(tcp, state).await });
                }
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    drain(&state).await;
}

/// Stops clients at their next transaction boundary and waits up to shutdown_timeout.
async fn drain(state: &PoolerState) {
    let timeout = state.databases().config().config.general.shutdown_timeout;
    info!(
        "shutting down: waiting up to {timeout} ms for {} client(s) to finish their transactions",
        state.client_count()
    );
    state.begin_shutdown();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout);
    while state.client_count() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if state.client_count() > 0 {
        warn!(
            "shutdown_timeout reached with {} client(s) still connected",
            state.client_count()
        );
    }
    for pool in state.databases().all_pools() {
        pool.close();
    }
}

async fn serve(tcp: TcpStream, state: Arc<PoolerState>) {
    let _ = tcp.set_nodelay(true);
    let _count = state.client_connected();
    match login(tcp, &state).await {
        Ok(logged_in) => Client::new(logged_in, state.clone()).run().await,
        Err(LoginError::Done) => {}
        Err(e) => debug!("login failed: {e}"),
    }
}

/// Runs pool upkeep (idle expiry, lifetime, minimum connections) every second.
pub async fn maintain_pools(state: Arc<PoolerState>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !state.shutting_down() {
        tick.tick().await;
        let databases = state.databases();
        for pool in databases.all_pools() {
            pool.maintain().await;
        }
    }
}
