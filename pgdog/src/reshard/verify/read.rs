//! Reading one table on both sides at once: the routed side through the data copy's
//! [`TupleRouter`] (the digest each shard of the other side should hold), the placed side's
//! shards with [`read_digest`], as the copy verifies them.

use std::time::Duration;

use tokio::task::JoinSet;

use super::{Servers, VerifyError};
use crate::reshard::conn::Conn;
use crate::reshard::copy::digest::{read_copy, read_digest, Digest, ReadError};
use crate::reshard::copy::tables::TableJob;
use crate::reshard::copy::tuples::{TupleHashing, TuplePlan, TupleRouter};

/// Routed output is dropped once a shard's buffer holds this much (only digests are kept).
const DISCARD: usize = 256 * 1024;

/// What reading a table gave.
pub(super) enum Read {
    /// Per placed shard: the routed digest and the one read.
    Digests {
        expected: Vec<Digest>,
        found: Vec<Digest>,
    },
    /// A side's rows could not be taken (e.g. a row no shard takes).
    Unreadable(String),
}

/// Which side a reading task read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Routed(usize),
    Placed(usize),
}

/// What one reading task returns: its part, its connection back, the digests.
type Reading = (Part, Conn, Result<Vec<Digest>, ReadError>);

/// Reads the table on the first `routed_shards` routed servers (through the router) and on
/// every placed shard, all at once.
pub(super) async fn read_table(
    job: &TableJob,
    routed: &mut Servers,
    routed_shards: usize,
    placed: &mut Servers,
    limit: Duration,
) -> Result<Read, VerifyError> {
    let sql = job.read_back_sql();
    let shard_count = placed.conns.len();
    let mut routed_conns: Vec<Option<Conn>> = std::mem::take(&mut routed.conns)
        .into_iter()
        .map(Some)
        .collect();
    let mut placed_conns: Vec<Option<Conn>> = std::mem::take(&mut placed.conns)
        .into_iter()
        .map(Some)
        .collect();
    let mut set: JoinSet<Reading> = JoinSet::new();
    for (index, slot) in routed_conns.iter_mut().enumerate().take(routed_shards) {
        let Some(mut conn) = slot.take() else {
            continue;
        };
        let plan = TuplePlan {
            key: job.rule.clone(),
            widen: job.widen.clone(),
            shards: shard_count,
            hashing: TupleHashing::Bytes(job.shape.clone()),
        };
        let sql = sql.clone();
        set.spawn(async move {
            let result = route(&mut conn, &sql, plan, limit).await;
            (Part::Routed(index), conn, result)
        });
    }
    for (index, slot) in placed_conns.iter_mut().enumerate() {
        let Some(mut conn) = slot.take() else {
            continue;
        };
        let (sql, shape) = (sql.clone(), job.shape.clone());
        set.spawn(async move {
            let result = read_digest(&mut conn, &sql, shape, Some(limit))
                .await
                .map(|digest| vec![digest]);
            (Part::Placed(index), conn, result)
        });
    }
    let mut expected = vec![Digest::default(); shard_count];
    let mut found = vec![Digest::default(); shard_count];
    let mut unreadable: Option<String> = None;
    let mut failure: Option<VerifyError> = None;
    while let Some(joined) = set.join_next().await {
        let (part, conn, result) = match joined {
            Ok(reading) => reading,
            Err(e) => {
                failure.get_or_insert(VerifyError::Internal(e.to_string()));
                continue;
            }
        };
        let (slot, what) = match part {
            Part::Routed(index) => (&mut routed_conns[index], "the rows to compare"),
            Part::Placed(index) => (&mut placed_conns[index], "a shard's rows"),
        };
        *slot = Some(conn);
        match result {
            Ok(digests) => match part {
                Part::Routed(_) => {
                    for (sum, digest) in expected.iter_mut().zip(digests) {
                        sum.merge(digest);
                    }
                }
                Part::Placed(index) => {
                    if let (Some(slot), Some(digest)) = (found.get_mut(index), digests.first()) {
                        *slot = *digest;
                    }
                }
            },
            Err(ReadError::Data(e)) => {
                unreadable.get_or_insert(format!("{what} could not be read: {}", e.message));
            }
            Err(e) => {
                failure.get_or_insert(e.into());
            }
        }
    }
    if let Some(error) = failure {
        return Err(error);
    }
    routed.conns = back(routed_conns)?;
    placed.conns = back(placed_conns)?;
    Ok(match unreadable {
        Some(why) => Read::Unreadable(why),
        None => Read::Digests { expected, found },
    })
}

/// The connections handed back by the reading tasks, in order.
fn back(conns: Vec<Option<Conn>>) -> Result<Vec<Conn>, VerifyError> {
    conns
        .into_iter()
        .collect::<Option<Vec<Conn>>>()
        .ok_or_else(|| VerifyError::Internal("a connection was not handed back".into()))
}

/// Reads `sql` through the copy's tuple router: the digest each shard should hold.
async fn route(
    conn: &mut Conn,
    sql: &str,
    plan: TuplePlan,
    limit: Duration,
) -> Result<Vec<Digest>, ReadError> {
    let shards = plan.shards;
    let mut router = TupleRouter::new(plan);
    read_copy(conn, sql, Some(limit), |payload| {
        router.feed(payload)?;
        for shard in 0..shards {
            // Only the digests are wanted: the rewritten tuples are dropped.
            drop(router.take(shard, DISCARD));
        }
        Ok(())
    })
    .await?;
    router.finish().map_err(ReadError::Data)?;
    Ok(router.digests().to_vec())
}
