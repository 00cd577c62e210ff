//! `VERIFY` (admin) and `pgdog verify` (CLI): compares every table of a source database with a
//! destination database (either may be sharded), as row counts and order-independent
//! checksums, shard by shard. This module owns the comparison; the admin command and the CLI
//! only present its [`VerifyReport`].
//!
//! Each server is read in one `REPEATABLE READ READ ONLY` transaction (every table in one
//! snapshot per server). The side with one shard (the source when both have several) is read
//! through the data copy's [`TupleRouter`], so each of the other side's shards gets the digest
//! it should hold, computed by the same code that placed the rows; that side's shards are read
//! with [`read_digest`], as the copy verifies them. A mismatch while a replication stream
//! between the two databases runs may just be lag: the differing tables are compared again
//! once the stream caught up, a few times.
//!
//! Parts: [`catalog`] (which tables), [`read`] (reading one table on both sides), [`report`]
//! (what is reported), [`lag`] (the streams waited for).
//!
//! [`TupleRouter`]: crate::reshard::copy::tuples::TupleRouter
//! [`read_digest`]: crate::reshard::copy::digest::read_digest

mod catalog;
mod lag;
mod read;
mod report;

pub use lag::live_streams;
pub use report::{ShardCheck, TableStatus, TableVerdict, VerifyReport};

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use pgdog_config::ConfigAndUsers;
use tracing::info;

use self::catalog::{absent, chosen_tables, listing, Listing, TABLES_SQL};
use self::read::{read_table, Read};
use self::report::Outcome;
use super::conn::{Conn, ConnError};
use super::copy::digest::ReadError;
use super::copy::tables::{self, TableError};
use super::endpoints::{ClusterEndpoints, EndpointError};
use super::publication::TableRef;
use super::stream::ReplicationStats;
use crate::router::plan::ShardingSchema;

/// Comparisons made at most while a stream between the two databases runs.
pub const ATTEMPTS: usize = 5;

/// The note of a table that still differs while a stream is live.
pub const LAG_NOTE: &str =
    "rows changed while verifying: stop writes or let the stream catch up, then re-run";

/// Each server's snapshot (taken by the `SELECT`, not by `BEGIN`).
const BEGIN: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT 1";

/// Session settings of every connection: no statement or idle timeouts (a connection waits
/// in its transaction while the others are read).
const SESSION: &str = "SET statement_timeout = 0; SET lock_timeout = 0; \
    SET idle_in_transaction_session_timeout = 0";

/// What to compare.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Source database (pgdog.toml name).
    pub from: String,
    /// Destination database.
    pub to: String,
    /// users.toml user for the source (default: its schema admin).
    pub from_user: Option<String>,
    /// users.toml user for the destination (default: its schema admin).
    pub to_user: Option<String>,
    /// One table (`name` or `schema.name`; a partitioned table stands for its partitions), or
    /// every table of the source.
    pub table: Option<String>,
    /// The longest wait for any one answer of a server.
    pub answer_time: Duration,
    /// The longest wait for the streams to catch up between attempts.
    pub lag_wait: Duration,
}

impl VerifyOptions {
    /// Every table of `from` compared with `to`, with the default time limits.
    pub fn new(from: &str, to: &str) -> VerifyOptions {
        VerifyOptions {
            from: from.to_string(),
            to: to.to_string(),
            from_user: None,
            to_user: None,
            table: None,
            answer_time: Duration::from_secs(30),
            lag_wait: Duration::from_secs(30),
        }
    }
}

/// Why the comparison could not be made.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A database unusable in the configuration.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// The table named is not on the source.
    #[error("table \"{table}\" does not exist on the source database \"{database}\"")]
    UnknownTable {
        /// The name given.
        table: String,
        /// The source database.
        database: String,
    },
    /// The name given matches tables of several schemas.
    #[error("table name \"{table}\" is ambiguous on \"{database}\": {candidates}; name it as schema.table")]
    AmbiguousTable {
        /// The name given.
        table: String,
        /// The source database.
        database: String,
        /// The tables it could be.
        candidates: String,
    },
    /// A server failed.
    #[error(transparent)]
    Conn(#[from] ConnError),
    /// A server did not answer in time.
    #[error("{server}: no answer within {limit:?}")]
    NoAnswer {
        /// The server.
        server: String,
        /// The limit.
        limit: Duration,
    },
    /// A reading task ended abnormally.
    #[error("verification ended abnormally: {0}")]
    Internal(String),
}

impl From<ReadError> for VerifyError {
    fn from(error: ReadError) -> Self {
        match error {
            ReadError::Conn(e) => VerifyError::Conn(e),
            ReadError::NoAnswer { server, limit } => VerifyError::NoAnswer { server, limit },
            ReadError::Data(e) => VerifyError::Internal(e.message),
        }
    }
}

/// Compares the tables. `streams`: this process's replication streams (a live one between
/// the two databases makes differing tables be compared again once it caught up).
pub async fn run(
    config: &ConfigAndUsers,
    options: &VerifyOptions,
    streams: Option<&ReplicationStats>,
) -> Result<VerifyReport, VerifyError> {
    let source = ClusterEndpoints::resolve_as(config, &options.from, options.from_user.as_deref())?;
    let destination =
        ClusterEndpoints::resolve_as(config, &options.to, options.to_user.as_deref())?;
    let roles = Roles::of(config, &source, &destination);
    let mut verdicts: BTreeMap<(String, String), TableVerdict> = BTreeMap::new();
    let mut pending: Option<Vec<(String, String)>> = None;
    let mut report = VerifyReport::default();
    for attempt in 1..=ATTEMPTS {
        report.attempts = attempt;
        let found = compare(&roles, options, pending.as_deref()).await?;
        verdicts.extend(found.into_iter().map(|mut v| {
            v.attempts = attempt;
            if attempt > 1 && v.status == TableStatus::Match {
                v.notes.push(format!(
                    "matched on comparison {attempt}, once the stream caught up"
                ));
            }
            ((v.schema.clone(), v.table.clone()), v)
        }));
        let differing: Vec<(String, String)> = verdicts
            .iter()
            .filter(|(_, v)| v.status == TableStatus::Differs)
            .map(|(key, _)| key.clone())
            .collect();
        let live = streams.map_or_else(Vec::new, |s| live_streams(s, &options.from, &options.to));
        if differing.is_empty() || live.is_empty() {
            break;
        }
        if attempt == ATTEMPTS {
            for key in &differing {
                if let Some(verdict) = verdicts.get_mut(key) {
                    verdict.notes.push(LAG_NOTE.to_string());
                    verdict.notes.push(format!(
                        "compared {ATTEMPTS} times, waiting for the stream in between"
                    ));
                }
            }
            break;
        }
        info!(
            "verify {} {}: {} table(s) differ while a stream runs; waiting for it to catch up (attempt {attempt} of {ATTEMPTS})",
            options.from,
            options.to,
            differing.len()
        );
        if let Some(streams) = streams {
            lag::wait_caught_up(streams, &options.from, &options.to, options.lag_wait).await;
        }
        pending = Some(differing);
    }
    report.tables = verdicts.into_values().collect();
    info!(
        "verify {} {}: {}",
        options.from,
        options.to,
        report.summary()
    );
    Ok(report)
}

/// Which side is routed and which is read shard by shard.
struct Roles {
    /// The side read through the router (one shard, or the source when both are sharded).
    routed: Side,
    /// The side read shard by shard.
    placed: Side,
    /// Whether the routed side is the source.
    source_routed: bool,
    /// The placed side's rules (where rows belong).
    placed_rules: ShardingSchema,
    /// The routed side's rules (which tables it holds on every shard).
    routed_rules: ShardingSchema,
}

/// One database's servers.
struct Side {
    name: String,
    endpoints: ClusterEndpoints,
}

impl Roles {
    fn of(
        config: &ConfigAndUsers,
        source: &ClusterEndpoints,
        destination: &ClusterEndpoints,
    ) -> Roles {
        let source_routed = source.shards.len() == 1 || destination.shards.len() > 1;
        let (routed, placed) = if source_routed {
            (source, destination)
        } else {
            (destination, source)
        };
        let side = |e: &ClusterEndpoints| Side {
            name: e.database.clone(),
            endpoints: e.clone(),
        };
        Roles {
            routed: side(routed),
            placed: side(placed),
            source_routed,
            placed_rules: ShardingSchema::new(&config.config, &placed.database),
            routed_rules: ShardingSchema::new(&config.config, &routed.database),
        }
    }
}

/// Open connections to one side's shards, each in its snapshot, with the tables each lists.
struct Servers {
    /// One per shard, in shard order.
    conns: Vec<Conn>,
    /// What each lists.
    listings: Vec<Listing>,
}

/// One comparison: connects, takes a snapshot on every server, compares `only` (or the
/// tables the options name), closes.
async fn compare(
    roles: &Roles,
    options: &VerifyOptions,
    only: Option<&[(String, String)]>,
) -> Result<Vec<TableVerdict>, VerifyError> {
    let limit = options.answer_time;
    let mut routed = connect(&roles.routed.endpoints, limit).await?;
    let mut placed = connect(&roles.placed.endpoints, limit).await?;
    // Every snapshot right after the other, then what each server lists (in its snapshot).
    for conn in routed.conns.iter_mut().chain(placed.conns.iter_mut()) {
        let server = conn.addr().to_string();
        bounded(limit, server, conn.execute(BEGIN)).await?;
    }
    for servers in [&mut routed, &mut placed] {
        for conn in &mut servers.conns {
            let rows = bounded(limit, conn.addr().to_string(), conn.query(TABLES_SQL)).await?;
            servers.listings.push(listing(&rows));
        }
    }
    let keys: Vec<(String, String)> = match only {
        Some(keys) => keys.to_vec(),
        None => {
            let (source, name) = if roles.source_routed {
                (&mut routed, &roles.routed.name)
            } else {
                (&mut placed, &roles.placed.name)
            };
            let (Some(conn), Some(tables)) = (source.conns.first_mut(), source.listings.first())
            else {
                return Ok(Vec::new());
            };
            chosen_tables(conn, tables, options, name, limit).await?
        }
    };
    let mut verdicts = Vec::with_capacity(keys.len());
    for key in keys {
        let started = Instant::now();
        let mut verdict = table(roles, &mut routed, &mut placed, &key, limit).await?;
        verdict.elapsed = started.elapsed();
        verdicts.push(verdict);
    }
    for conn in routed.conns.into_iter().chain(placed.conns) {
        let _ = tokio::time::timeout(limit, finish(conn)).await;
    }
    Ok(verdicts)
}

/// Ends the read-only transaction and closes the connection.
async fn finish(mut conn: Conn) {
    let _ = conn.execute("COMMIT").await;
    conn.close().await;
}

/// Connects to every shard's primary (no transaction yet).
async fn connect(endpoints: &ClusterEndpoints, limit: Duration) -> Result<Servers, VerifyError> {
    let mut conns = Vec::with_capacity(endpoints.shards.len());
    for shard in &endpoints.shards {
        let server = shard.primary.to_string();
        let mut conn = bounded(
            limit + endpoints.connect_timeout,
            server.clone(),
            Conn::connect(&shard.primary, endpoints.connect_timeout),
        )
        .await?;
        bounded(limit, server, conn.execute(SESSION)).await?;
        conns.push(conn);
    }
    Ok(Servers {
        conns,
        listings: Vec::new(),
    })
}

/// `work`, failing with [`VerifyError::NoAnswer`] when `limit` passes first.
async fn bounded<T>(
    limit: Duration,
    server: String,
    work: impl std::future::Future<Output = Result<T, ConnError>>,
) -> Result<T, VerifyError> {
    match tokio::time::timeout(limit, work).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(VerifyError::NoAnswer { server, limit }),
    }
}

/// Compares one table on the open snapshots.
async fn table(
    roles: &Roles,
    routed: &mut Servers,
    placed: &mut Servers,
    key: &(String, String),
    limit: Duration,
) -> Result<TableVerdict, VerifyError> {
    let (schema, name) = key;
    let mut verdict = TableVerdict::new(schema, name, TableStatus::Missing);
    let gaps: Vec<String> = [
        absent(&roles.routed.name, &routed.listings, key),
        absent(&roles.placed.name, &placed.listings, key),
    ]
    .into_iter()
    .flatten()
    .collect();
    let Some(listed) = routed.listings.first().and_then(|l| l.get(key)) else {
        verdict.notes = gaps;
        return Ok(verdict);
    };
    if !gaps.is_empty() {
        verdict.notes = gaps;
        return Ok(verdict);
    }
    let table = TableRef {
        schema: schema.clone(),
        name: name.clone(),
        oid: listed.oid,
    };
    let server = routed.conns[0].addr().to_string();
    let planned = tokio::time::timeout(
        limit,
        tables::plan(
            &mut routed.conns[0],
            &mut placed.conns,
            std::slice::from_ref(&table),
            &roles.placed_rules,
            u64::MAX,
        ),
    )
    .await
    .map_err(|_| VerifyError::NoAnswer { server, limit })?;
    let job = match planned {
        Ok(mut jobs) => match jobs.pop() {
            Some(job) => job,
            None => {
                verdict
                    .notes
                    .push(format!("not an ordinary table on {}", roles.routed.name));
                return Ok(verdict);
            }
        },
        Err(TableError::Columns { detail, .. }) => {
            verdict.status = TableStatus::Differs;
            verdict.notes.push(format!("columns differ: {detail}"));
            return Ok(verdict);
        }
        Err(TableError::Conn(e)) => return Err(e.into()),
    };
    // A table the routed side keeps whole on each of its shards is read on its first.
    let routed_shards = if routed.conns.len() == 1 {
        1
    } else {
        let names: Vec<&str> = job.columns.iter().map(String::as_str).collect();
        let server = routed.conns[0].addr().to_string();
        let rule = bounded(
            limit,
            server,
            tables::rule_of(&mut routed.conns[0], &table, &names, &roles.routed_rules),
        )
        .await?;
        if rule.is_some() {
            routed.conns.len()
        } else {
            1
        }
    };
    let read = read_table(&job, routed, routed_shards, placed, limit).await?;
    let everywhere = job.rule.is_none();
    match read {
        Read::Digests { expected, found } => {
            let outcome = Outcome::of(&expected, &found, everywhere);
            verdict.status = if outcome.shards.iter().all(ShardCheck::matches) {
                TableStatus::Match
            } else {
                TableStatus::Differs
            };
            let (source, destination) = if roles.source_routed {
                (outcome.routed, outcome.placed)
            } else {
                (outcome.placed, outcome.routed)
            };
            verdict.source = Some(source);
            verdict.destination = Some(destination);
            verdict.shards = outcome.shards;
            if everywhere && placed.conns.len() > 1 {
                verdict.notes.push(format!(
                    "every shard of {} holds every row: its count and checksum are one shard's",
                    roles.placed.name
                ));
            }
        }
        Read::Unreadable(why) => {
            verdict.status = TableStatus::Differs;
            verdict.notes.push(why);
        }
    }
    Ok(verdict)
}
