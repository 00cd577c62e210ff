//! Pools for the configuration a cutover swaps in, connected before traffic pauses: the
//! clients that resume on the shards find connections waiting instead of each opening (and
//! authenticating) its own, which they would feel as a longer pause.

use std::time::Duration;

use pgdog_config::ConfigAndUsers;
use tokio::task::JoinSet;
use tracing::{debug, info};

use crate::backend::databases::Databases;

/// How long warming may take; what is not connected by then connects on first use.
const WARM_TIME: Duration = Duration::from_secs(10);

/// Builds the pools of `after` (reusing `current`'s where they are the same) and opens, in
/// every primary pool of `database`'s clusters, as many connections as that user's pool has
/// open now (at least one). The result is handed to `PoolerState::reload_with` at the swap.
pub async fn warm(current: &Databases, after: ConfigAndUsers, database: &str) -> Databases {
    let next = Databases::new(after, &[current]);
    let mut set = JoinSet::new();
    for cluster in next.clusters().filter(|c| c.database == database) {
        let open = current
            .cluster(&cluster.user, database)
            .map(|c| c.pools().map(|p| p.open()).max().unwrap_or(0))
            .unwrap_or(0)
            .max(1);
        for pool in cluster.shards.iter().filter_map(|s| s.primary.clone()) {
            let wanted = open.min(pool.max()).saturating_sub(pool.open());
            set.spawn(async move {
                let mut held = Vec::with_capacity(wanted);
                for _ in 0..wanted {
                    match pool.get().await {
                        Ok(guard) => held.push(guard),
                        Err(e) => {
                            debug!("cutover: warming {}: {e}", pool.addr());
                            break;
                        }
                    }
                }
                held.len()
            });
        }
    }
    let mut opened = 0;
    let _ = tokio::time::timeout(WARM_TIME, async {
        while let Some(joined) = set.join_next().await {
            opened += joined.unwrap_or(0);
        }
    })
    .await;
    info!("cutover: {opened} server connection(s) opened for the clients of {database} on the new servers");
    next
}
