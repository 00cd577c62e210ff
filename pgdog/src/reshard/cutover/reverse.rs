//! Reverse replication. Before the pause, each destination shard gets a publication of the
//! moved tables (omnisharded tables only on shard 0: every shard has the same rows); while
//! traffic is paused and every change has been applied, each shard gets a slot, so the slots
//! start exactly where the old database stands; after the swap, one stream per shard carries
//! what clients write to the shards back to the old database. `CUTOVER` of that stream is the
//! rollback, and it starts the forward stream again the same way.

use std::sync::Arc;

use pgdog_config::ConfigAndUsers;
use tracing::info;

use super::CutoverError;
use crate::quote;
use crate::reshard::conn::Conn;
use crate::reshard::copy::tables::rule_of;
use crate::reshard::endpoints::ClusterEndpoints;
use crate::reshard::publication;
use crate::reshard::stream::state;
use crate::reshard::stream::{self, ReplicationRecord, StreamOptions};
use crate::reshard::TaskKind;
use crate::router::plan::ShardingSchema;
use crate::state::PoolerState;

/// The suffix of reverse slot names.
const REVERSE: &str = "_rev";

/// The slot names of the stream back from `shards` shards of a stream using slot `forward`:
/// `<forward>_rev<k>` (`<forward>_rev` from one shard), and the original name again for the
/// stream back of a reverse stream.
pub fn slot_names(forward: &str, shards: usize) -> Vec<String> {
    if let Some(original) = original_name(forward) {
        if shards == 1 {
            return vec![original.to_string()];
        }
    }
    match shards {
        1 => vec![format!("{forward}{REVERSE}")],
        n => (0..n).map(|k| format!("{forward}{REVERSE}{k}")).collect(),
    }
}

/// `x` for `x_rev` or `x_rev<k>`.
fn original_name(slot: &str) -> Option<&str> {
    let at = slot.rfind(REVERSE)?;
    let digits = &slot[at + REVERSE.len()..];
    (at > 0 && digits.chars().all(|c| c.is_ascii_digit())).then_some(&slot[..at])
}

/// The stream back, ready to start once the swap is done.
pub struct ReversePlan {
    /// Its source: the name clients use (after the swap it reaches the destination's servers).
    pub source: String,
    /// Where it writes: the servers clients leave, under the name they keep after the swap.
    pub target: String,
    /// The publication (same name as the forward one).
    pub publication: String,
    /// One slot per shard of the destination.
    pub slots: Vec<String>,
    /// Open to each shard of the destination, for creating the slots while traffic is paused.
    conns: Vec<Conn>,
}

/// Prepares the stream back from the destination of `stream` to `target` (the name the
/// source's servers will have after the swap, which must resolve in `after`).
pub async fn prepare(
    config: &ConfigAndUsers,
    after: &ConfigAndUsers,
    stream: &ReplicationRecord,
    target: &str,
) -> Result<ReversePlan, CutoverError> {
    let source = ClusterEndpoints::resolve(config, &stream.source)?;
    let servers = ClusterEndpoints::resolve(config, &stream.destination)?;
    let reverse_target = ClusterEndpoints::resolve(after, target)?;
    let slots = slot_names(&stream.slot, servers.shards.len());

    // What the forward publication publishes, and which of it is sharded on the destination.
    let mut conn = source.connect_primary(stream.source_shard).await?;
    let via_root = conn
        .query(&format!(
            "SELECT pubviaroot FROM pg_catalog.pg_publication WHERE pubname = {}",
            quote::literal(&stream.publication)
        ))
        .await?
        .scalar()
        == Some("t");
    let published = publication::published(&mut conn, &stream.publication).await;
    let sharding = ShardingSchema::new(&config.config, &stream.destination);
    let mut tables = Vec::new();
    for table in published? {
        let columns = columns(&mut conn, table.oid).await?;
        let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
        let sharded = rule_of(&mut conn, &table, &columns, &sharding)
            .await?
            .is_some();
        tables.push((table, sharded));
    }
    conn.close().await;

    let mut conns: Vec<Conn> = Vec::with_capacity(slots.len());
    for (shard, slot) in slots.iter().enumerate() {
        let list: Vec<String> = tables
            .iter()
            .filter(|(_, sharded)| *sharded || shard == 0)
            .map(|(t, _)| t.qualified())
            .collect();
        let publication = quote::ident(&stream.publication);
        let create = if list.is_empty() {
            format!("CREATE PUBLICATION {publication}")
        } else {
            format!(
                "CREATE PUBLICATION {publication} FOR TABLE {} WITH (publish_via_partition_root = {via_root})",
                list.join(", ")
            )
        };
        let mut conn = servers.connect_primary(shard).await?;
        let result = async {
            drop_slot(&mut conn, slot).await?;
            // A single database that has the publication (the old one, after a rollback)
            // keeps it as its owner made it.
            let keep = servers.shards.len() == 1
                && publication::exists(&mut conn, &stream.publication).await?;
            if !keep {
                conn.execute(&format!("DROP PUBLICATION IF EXISTS {publication}"))
                    .await?;
                conn.execute(&create).await?;
            }
            Ok::<(), CutoverError>(())
        }
        .await;
        if let Err(e) = result {
            conn.close().await;
            for conn in conns {
                conn.close().await;
            }
            return Err(e);
        }
        conns.push(conn);
    }
    for shard in 0..reverse_target.shards.len() {
        let mut conn = reverse_target.connect_primary(shard).await?;
        // Made here once: the streams back (one per shard) would race to create it.
        conn.execute(state::CREATE).await?;
        for slot in &slots {
            state::forget(&mut conn, slot).await?;
        }
        conn.close().await;
    }
    info!(
        "cutover: the stream back from {} will use publication {} and slot(s) {}",
        stream.destination,
        stream.publication,
        slots.join(", ")
    );
    Ok(ReversePlan {
        source: stream.source.clone(),
        target: target.to_string(),
        publication: stream.publication.clone(),
        slots,
        conns,
    })
}

impl ReversePlan {
    /// Creates the slots (traffic paused, every change applied): they start exactly at the
    /// state the old database has.
    pub async fn create_slots(&mut self) -> Result<(), CutoverError> {
        let mut set = tokio::task::JoinSet::new();
        for (mut conn, slot) in std::mem::take(&mut self.conns).into_iter().zip(&self.slots) {
            let slot = slot.clone();
            set.spawn(async move {
                let result = conn
                    .execute(&format!(
                        "SELECT pg_catalog.pg_create_logical_replication_slot({}, 'pgoutput')",
                        quote::literal(&slot)
                    ))
                    .await;
                conn.close().await;
                result.map(|_| ())
            });
        }
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(result) => result?,
                Err(e) => return Err(CutoverError::Reverse(e.to_string())),
            }
        }
        Ok(())
    }

    /// Starts the stream back as a task of its own (one stream per shard); its id.
    pub fn start(self, state: &Arc<PoolerState>) -> u64 {
        let config = state.databases().config().clone();
        let stats = state.replication.clone();
        let plan = Arc::new(self);
        let claimed = plan.clone();
        let id = state
            .tasks
            .start(TaskKind::Replication, move |task| async move {
                task.set_step(format!(
                    "streaming changes back from {} to {} ({} slot(s))",
                    plan.source,
                    plan.target,
                    plan.slots.len()
                ));
                let mut set = tokio::task::JoinSet::new();
                for (shard, slot) in plan.slots.iter().enumerate() {
                    let options = StreamOptions {
                        from: plan.source.clone(),
                        to: plan.target.clone(),
                        publication: plan.publication.clone(),
                        slot: Some(slot.clone()),
                        source_shard: shard,
                        from_cutover: true,
                        ..Default::default()
                    };
                    let (config, stats, task) = (config.clone(), stats.clone(), task.clone());
                    set.spawn(async move {
                        stream::run(&config, &options, &stats, Some(&task))
                            .await
                            .map_err(|e| format!("stream back from shard {shard}: {e}"))
                    });
                }
                while let Some(joined) = set.join_next().await {
                    match joined {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return Err(e),
                        Err(e) => return Err(e.to_string()),
                    }
                }
                task.set_step(format!(
                    "stopped streaming back; the slots keep their place ({})",
                    plan.slots.join(", ")
                ));
                Ok(())
            });
        for slot in &claimed.slots {
            state.slot_claims.claim(id, &claimed.source, slot);
        }
        id
    }
}

/// Drops slot `slot` on this server if it exists and nobody uses it.
pub async fn drop_slot(conn: &mut Conn, slot: &str) -> Result<(), CutoverError> {
    let rows = conn
        .query(&format!(
            "SELECT active FROM pg_catalog.pg_replication_slots WHERE slot_name = {}",
            quote::literal(slot)
        ))
        .await?;
    match rows.scalar() {
        None => Ok(()),
        Some("t") => Err(CutoverError::Reverse(format!(
            "replication slot {slot} exists and is in use on {}",
            conn.addr()
        ))),
        Some(_) => {
            info!(
                "cutover: dropping replication slot {slot} on {}",
                conn.addr()
            );
            conn.execute(&format!(
                "SELECT pg_catalog.pg_drop_replication_slot({})",
                quote::literal(slot)
            ))
            .await?;
            Ok(())
        }
    }
}

/// A table's column names.
async fn columns(conn: &mut Conn, oid: u32) -> Result<Vec<String>, CutoverError> {
    let rows = conn
        .query(&format!(
            "SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = {oid} \
             AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
        ))
        .await?;
    Ok(rows
        .rows
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_slot_names_round_trip() {
        assert_eq!(
            slot_names("pgdog_pub", 2),
            ["pgdog_pub_rev0", "pgdog_pub_rev1"]
        );
        assert_eq!(slot_names("pgdog_pub", 1), ["pgdog_pub_rev"]);
        // Back from a reverse stream: the original name.
        assert_eq!(slot_names("pgdog_pub_rev1", 1), ["pgdog_pub"]);
        assert_eq!(slot_names("pgdog_pub_rev", 1), ["pgdog_pub"]);
        // A reverse stream of several shards again: new reverse names.
        assert_eq!(
            slot_names("pgdog_pub_rev", 2),
            ["pgdog_pub_rev_rev0", "pgdog_pub_rev_rev1"]
        );
        assert_eq!(original_name("_rev"), None);
        assert_eq!(original_name("previous"), None);
    }
}
