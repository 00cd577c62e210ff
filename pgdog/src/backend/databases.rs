//! The live map from (user, database) to the pools that serve it, built from the config and
//! swapped as a whole on reload. Pools whose settings did not change are carried over, so a
//! reload does not drop their connections or the clients using them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use pgdog_config::{as_duration, ConfigAndUsers, PoolerMode, Role};
use tracing::warn;

use super::balancer::Balancer;
use super::pool::{Pool, PoolSettings};
use super::server::ServerAddress;
use crate::auth::UserSecret;
use crate::router::plan::{PlanCache, ShardingSchema};

/// The pools of one shard.
pub struct Shard {
    /// The primary's pool.
    pub primary: Option<Pool>,
    /// Replica pools.
    pub replicas: Vec<Pool>,
}

/// What one user of one database is served by.
pub struct Cluster {
    /// Database name clients connect to.
    pub database: String,
    /// User name clients log in as.
    pub user: String,
    /// Shards, indexed by shard number.
    pub shards: Vec<Shard>,
    /// Transaction or session pooling.
    pub pooler_mode: PoolerMode,
    /// The password verifier for client logins.
    pub secret: UserSecret,
    /// Picks pools for reads.
    pub balancer: Balancer,
    /// The database's sharding rules (`[[sharded_tables]]`, `[[omnisharded_tables]]`).
    pub sharding: Arc<ShardingSchema>,
    /// Routing analyses of the statements this database has seen, by text.
    pub plans: Arc<PlanCache>,
}

impl Cluster {
    /// The pool plain queries go to (shard 0's primary).
    pub fn primary(&self) -> Option<&Pool> {
        self.shards.first().and_then(|s| s.primary.as_ref())
    }

    /// The primary pool of shard `shard`.
    pub fn primary_of(&self, shard: usize) -> Option<&Pool> {
        self.shards.get(shard).and_then(|s| s.primary.as_ref())
    }

    /// The pools a read-only request to shard `shard` may use, best first.
    pub fn read_order_of(&self, shard: usize) -> Vec<Pool> {
        match self.shards.get(shard) {
            Some(shard) => self
                .balancer
                .read_order(shard.primary.as_ref(), &shard.replicas),
            None => Vec::new(),
        }
    }

    /// Whether queries need the sharding router (more than one shard).
    pub fn is_sharded(&self) -> bool {
        self.shards.len() > 1
    }

    /// Every pool of this cluster.
    pub fn pools(&self) -> impl Iterator<Item = &Pool> {
        self.shards
            .iter()
            .flat_map(|s| s.primary.iter().chain(s.replicas.iter()))
    }

    /// Every pool with its shard number and role.
    pub fn pools_with_roles(&self) -> impl Iterator<Item = (usize, Role, &Pool)> {
        self.shards.iter().enumerate().flat_map(|(number, shard)| {
            let primary = shard
                .primary
                .iter()
                .map(move |p| (number, Role::Primary, p));
            let replicas = shard
                .replicas
                .iter()
                .map(move |p| (number, Role::Replica, p));
            primary.chain(replicas)
        })
    }

    /// Whether shard 0 has replicas, i.e. reads may be load balanced.
    pub fn has_replicas(&self) -> bool {
        self.shards.first().is_some_and(|s| !s.replicas.is_empty())
    }

    /// The pools a read-only request may use, best first (shard 0).
    pub fn read_order(&self) -> Vec<Pool> {
        self.read_order_of(0)
    }
}

/// All clusters, plus the config they came from.
pub struct Databases {
    clusters: HashMap<(String, String), Arc<Cluster>>,
    names: HashSet<String>,
    config: Arc<ConfigAndUsers>,
}

impl Databases {
    /// Builds pools for every user of every database. Pools of `previous` with the same
    /// server and settings are reused.
    pub fn new(config: ConfigAndUsers, previous: &[&Databases]) -> Databases {
        let reusable: Vec<Pool> = previous
            .iter()
            .flat_map(|p| p.all_pools().cloned())
            .collect();
        let mut clusters = HashMap::new();
        // One schema and plan cache per database, shared by its users.
        let mut routing: HashMap<String, (Arc<ShardingSchema>, Arc<PlanCache>)> = HashMap::new();
        for user in &config.users.users {
            let entries: Vec<_> = config
                .config
                .databases
                .iter()
                .filter(|d| d.name == user.database && !d.resharding_only)
                .collect();
            let shard_count = entries.iter().map(|d| d.shard + 1).max().unwrap_or(0);
            let mut shards: Vec<Shard> = (0..shard_count)
                .map(|_| Shard {
                    primary: None,
                    replicas: Vec::new(),
                })
                .collect();
            for database in entries {
                let (server_user, server_password) = config.server_credentials(user, database);
                let addr = ServerAddress {
                    host: database.host.clone(),
                    port: database.port,
                    database: database.database_name().to_string(),
                    user: server_user,
                    password: server_password,
                };
                let settings = PoolSettings {
                    max: config.pool_size(user, database),
                    min: config
                        .min_pool_size(user)
                        .min(config.pool_size(user, database)),
                    connect_timeout: ms(config.config.general.connect_timeout),
                    checkout_timeout: ms(config.config.general.checkout_timeout),
                    idle_timeout: ms(config.config.general.idle_timeout),
                    server_lifetime: ms(config.config.general.server_lifetime),
                    prepared_statements_limit: config.config.general.prepared_statements_limit,
                    healthcheck_interval: ms(config.config.general.healthcheck_interval),
                    healthcheck_timeout: ms(config.config.general.healthcheck_timeout),
                };
                // A pool of the same server and size is kept (with its connections); its
                // timeouts take the new values.
                let pool = match reusable
                    .iter()
                    .find(|p| **p.addr() == addr && p.max() == settings.max && !p.is_closed())
                {
                    Some(pool) => {
                        pool.set_settings(settings);
                        pool.clone()
                    }
                    None => Pool::new(addr, settings),
                };
                let shard = &mut shards[database.shard];
                match database.role {
                    Role::Primary => shard.primary = Some(pool),
                    Role::Replica => shard.replicas.push(pool),
                }
            }
            let (sharding, plans) = routing
                .entry(user.database.clone())
                .or_insert_with(|| {
                    (
                        Arc::new(ShardingSchema::new(&config.config, &user.database)),
                        Arc::new(PlanCache::default()),
                    )
                })
                .clone();
            let cluster = Cluster {
                database: user.database.clone(),
                user: user.name.clone(),
                shards,
                pooler_mode: config.pooler_mode(user),
                secret: UserSecret::new(
                    &user.name,
                    user.password.as_deref(),
                    user.password_hash.as_deref(),
                ),
                balancer: Balancer::new(
                    config.config.general.load_balancing_strategy,
                    config.config.general.read_write_split,
                ),
                sharding,
                plans,
            };
            if cluster.primary().is_none() {
                warn!(
                    "database \"{}\" has no primary for shard 0; user \"{}\" cannot run queries",
                    user.database, user.name
                );
            }
            clusters.insert(
                (user.name.clone(), user.database.clone()),
                Arc::new(cluster),
            );
        }
        let names = config
            .config
            .databases
            .iter()
            .map(|d| d.name.clone())
            .collect();
        Databases {
            clusters,
            names,
            config: Arc::new(config),
        }
    }

    /// The cluster serving `user` on `database`.
    pub fn cluster(&self, user: &str, database: &str) -> Option<&Arc<Cluster>> {
        self.clusters.get(&(user.to_string(), database.to_string()))
    }

    /// Whether any `[[databases]]` entry has this name.
    pub fn has_database(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// The config these pools were built from.
    pub fn config(&self) -> &Arc<ConfigAndUsers> {
        &self.config
    }

    /// Every cluster.
    pub fn clusters(&self) -> impl Iterator<Item = &Arc<Cluster>> {
        self.clusters.values()
    }

    /// Every pool (a pool shared by clusters appears once per cluster).
    pub fn all_pools(&self) -> impl Iterator<Item = &Pool> {
        self.clusters.values().flat_map(|c| c.pools())
    }

    /// Closes the pools of `self` that `next` does not reuse.
    pub fn close_unused(&self, next: &Databases) {
        for pool in self.all_pools() {
            if !next.all_pools().any(|p| p.ptr_eq(pool)) {
                pool.close();
            }
        }
    }
}

fn ms(value: u64) -> std::time::Duration {
    as_duration(value).unwrap_or(std::time::Duration::MAX)
}
