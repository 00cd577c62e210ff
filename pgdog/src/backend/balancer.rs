//! Load balancing of reads within one shard: which pools a read-only request may use, in the
//! order to try them (`load_balancing_strategy`, `read_write_split`, bans).

use std::sync::atomic::{AtomicUsize, Ordering};

use pgdog_config::{LoadBalancingStrategy, ReadWriteSplit};
use rand::Rng;

use super::pool::Pool;

/// Chooses pools for reads.
pub struct Balancer {
    strategy: LoadBalancingStrategy,
    split: ReadWriteSplit,
    next: AtomicUsize,
}

impl Balancer {
    /// A balancer with these settings.
    pub fn new(strategy: LoadBalancingStrategy, split: ReadWriteSplit) -> Balancer {
        Balancer {
            strategy,
            split,
            next: AtomicUsize::new(0),
        }
    }

    /// The pools a read may go to, best first. Banned replicas are skipped; with every replica
    /// banned, reads fall back to the primary; with no primary either, banned replicas are
    /// tried as a last resort rather than failing outright.
    pub fn read_order(&self, primary: Option<&Pool>, replicas: &[Pool]) -> Vec<Pool> {
        let healthy: Vec<&Pool> = replicas.iter().filter(|p| !p.is_banned()).collect();
        let any_banned = healthy.len() < replicas.len();
        let primary_usable = primary.filter(|p| !p.is_banned());
        let primary_serves_reads = match self.split {
            ReadWriteSplit::IncludePrimary => true,
            ReadWriteSplit::ExcludePrimary => false,
            ReadWriteSplit::IncludePrimaryIfReplicaBanned => any_banned,
        };
        let mut candidates: Vec<&Pool> = healthy;
        if primary_serves_reads {
            candidates.extend(primary_usable);
        }
        self.order(&mut candidates);
        let mut order: Vec<Pool> = candidates.into_iter().cloned().collect();
        // Fallbacks, in order: the primary, then banned replicas.
        for pool in primary.into_iter().chain(replicas.iter()) {
            if !order.iter().any(|p| p.ptr_eq(pool)) {
                order.push(pool.clone());
            }
        }
        order
    }

    fn order(&self, candidates: &mut [&Pool]) {
        if candidates.len() < 2 {
            return;
        }
        match self.strategy {
            LoadBalancingStrategy::Random => {
                let first = rand::thread_rng().gen_range(0..candidates.len());
                candidates.rotate_left(first);
            }
            LoadBalancingStrategy::RoundRobin => {
                let first = self.next.fetch_add(1, Ordering::Relaxed) % candidates.len();
                candidates.rotate_left(first);
            }
            LoadBalancingStrategy::LeastActiveConnections => {
                candidates.sort_by_key(|p| p.active() + p.waiting());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::pool::PoolSettings;
    use crate::backend::server::ServerAddress;
    use std::time::Duration;

    fn pool(port: u16) -> Pool {
        Pool::new(
            ServerAddress {
                host: "127.0.0.1".into(),
                port,
                database: "db".into(),
                user: "u".into(),
                password: None,
            },
            PoolSettings {
                max: 1,
                min: 0,
                connect_timeout: Duration::from_secs(1),
                checkout_timeout: Duration::from_secs(1),
                idle_timeout: Duration::from_secs(1),
                server_lifetime: Duration::from_secs(1),
                prepared_statements_limit: 1,
                healthcheck_interval: Duration::from_secs(1),
                healthcheck_timeout: Duration::from_secs(1),
            },
        )
    }

    fn ports(order: &[Pool]) -> Vec<u16> {
        order.iter().map(|p| p.addr().port).collect()
    }

    #[test]
    fn round_robin_rotates_and_falls_back_to_the_primary() {
        let balancer = Balancer::new(
            LoadBalancingStrategy::RoundRobin,
            ReadWriteSplit::ExcludePrimary,
        );
        let primary = pool(1);
        let replicas = [pool(2), pool(3)];
        assert_eq!(
            ports(&balancer.read_order(Some(&primary), &replicas)),
            [2, 3, 1]
        );
        assert_eq!(
            ports(&balancer.read_order(Some(&primary), &replicas)),
            [3, 2, 1]
        );
        replicas[0].ban("test", None);
        replicas[1].ban("test", None);
        assert_eq!(ports(&balancer.read_order(Some(&primary), &replicas))[0], 1);
        assert_eq!(balancer.read_order(None, &replicas).len(), 2);
    }

    #[test]
    fn primary_serves_reads_only_as_configured() {
        let primary = pool(1);
        let replicas = [pool(2), pool(3)];
        let include = Balancer::new(
            LoadBalancingStrategy::RoundRobin,
            ReadWriteSplit::IncludePrimary,
        );
        let firsts: Vec<u16> = (0..3)
            .map(|_| include.read_order(Some(&primary), &replicas)[0].addr().port)
            .collect();
        assert!(firsts.contains(&1));

        let if_banned = Balancer::new(
            LoadBalancingStrategy::RoundRobin,
            ReadWriteSplit::IncludePrimaryIfReplicaBanned,
        );
        for _ in 0..3 {
            assert_ne!(
                if_banned.read_order(Some(&primary), &replicas)[0]
                    .addr()
                    .port,
                1
            );
        }
        replicas[0].ban("test", Some(Duration::from_secs(60)));
        let firsts: Vec<u16> = (0..2)
            .map(|_| {
                if_banned.read_order(Some(&primary), &replicas)[0]
                    .addr()
                    .port
            })
            .collect();
        assert!(firsts.contains(&1) && !firsts.contains(&2));
    }
}
