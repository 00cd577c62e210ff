//! Accepting client connections, and the orderly shutdown: stop accepting, let open
//! transactions finish up to shutdown_timeout, then return.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};

use crate::frontend::client::Client;
use crate::frontend::login::{login, LoginError, Session};
use crate::state::PoolerState;

/// Binds `host:port` with SO_REUSEPORT, so every worker thread can accept on its own socket.
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Accepts clients on `listener` until shutdown begins; each client runs on this thread.
pub async fn accept(listener: TcpListener, state: Arc<PoolerState>) {
    let mut shutdown = state.shutdown_signal();
    while !*shutdown.borrow() {
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
            _ = shutdown.changed() => {}
        }
    }
}

/// Stops clients at their next transaction boundary, waits up to shutdown_timeout for them
/// to leave, then closes every pool.
pub async fn drain(state: &PoolerState) {
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
        Ok(Session::Client(logged_in)) => Client::new(logged_in, state.clone()).run().await,
        Ok(Session::Admin(admin)) => {
            let _registered = state.clients.register(
                &admin.user,
                &admin.database,
                admin.peer,
                &admin.application_name,
            );
            crate::admin::session::serve(admin.stream, admin.buf, state.clone()).await
        }
        Err(LoginError::Done) => {}
        Err(e) => debug!("login failed: {e}"),
    }
}

/// Runs pool upkeep (idle expiry, lifetime, minimum connections, stats periods) every second,
/// and health checks of every pool every `idle_healthcheck_interval` (the first one
/// `idle_healthcheck_delay` after startup): a pool whose server does not answer within
/// `healthcheck_timeout` is banned for `ban_timeout`, so reads avoid it.
pub async fn maintain_pools(state: Arc<PoolerState>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = tokio::time::Instant::now();
    let mut last_healthcheck: Option<tokio::time::Instant> = None;
    while !state.shutting_down() {
        tick.tick().await;
        let databases = state.databases();
        let general = databases.config().config.general.clone();
        let mut seen = std::collections::HashSet::new();
        let pools: Vec<_> = databases
            .all_pools()
            .filter(|p| seen.insert(p.id()))
            .cloned()
            .collect();
        drop(databases);
        for pool in &pools {
            pool.maintain().await;
        }
        let due = match last_healthcheck {
            None => started.elapsed() >= Duration::from_millis(general.idle_healthcheck_delay),
            Some(last) => {
                last.elapsed() >= Duration::from_millis(general.idle_healthcheck_interval)
            }
        };
        if due {
            last_healthcheck = Some(tokio::time::Instant::now());
            let timeout = Duration::from_millis(general.healthcheck_timeout);
            let ban = Duration::from_millis(general.ban_timeout);
            for pool in pools
                .into_iter()
                .filter(|p| !p.is_banned() && !p.is_closed())
            {
                tokio::spawn(async move {
                    if let Err(e) = pool.healthcheck(timeout).await {
                        pool.ban(e.to_string(), Some(ban));
                    }
                });
            }
        }
    }
}
