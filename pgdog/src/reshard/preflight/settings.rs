//! Source server settings a move needs: `wal_level = logical`, a free replication slot and a
//! free WAL sender per source shard on that server (the last two only before the copy, when
//! the move creates its slot).

use super::servers::Server;
use super::Problem;
use crate::reshard::schema::Phase;

/// Runs the settings checks on one source shard; `needed` is how many source shards share
/// this server (each needs its own slot and WAL sender).
pub(super) async fn check(
    server: &mut Server,
    phase: Phase,
    needed: usize,
    problems: &mut Vec<Problem>,
) {
    wal_level(server, problems).await;
    if phase == Phase::Pre {
        replication_slots(server, needed, problems).await;
        wal_senders(server, needed, problems).await;
    }
}

async fn wal_level(server: &mut Server, problems: &mut Vec<Problem>) {
    let level = match server.conn.query("SHOW wal_level").await {
        Ok(rows) => rows.scalar().unwrap_or_default().to_string(),
        Err(e) => return problems.push(Problem::unchecked("wal_level", &server.label, &e)),
    };
    if level != "logical" {
        problems.push(Problem::error(
            "wal_level",
            &server.label,
            format!(
                "wal_level is {level}, but logical replication (the stream of changes during \
                 the copy) needs logical"
            ),
            "run ALTER SYSTEM SET wal_level = logical; on that server and restart PostgreSQL \
             (the setting only changes at a restart)"
                .into(),
        ));
    }
}

async fn replication_slots(server: &mut Server, needed: usize, problems: &mut Vec<Problem>) {
    let sql = "SELECT current_setting('max_replication_slots')::int,
                      count(*),
                      string_agg(slot_name || CASE WHEN active THEN '' ELSE ' (inactive)' END,
                                 ', ' ORDER BY slot_name)
               FROM pg_catalog.pg_replication_slots";
    let rows = match server.conn.query(sql).await {
        Ok(rows) => rows,
        Err(e) => return problems.push(Problem::unchecked("replication_slots", &server.label, &e)),
    };
    let max = number(rows.get(0, 0));
    let used = number(rows.get(0, 1));
    let free = max.saturating_sub(used);
    if free >= needed {
        return;
    }
    let names = match rows.get(0, 2) {
        Some(names) => format!(" ({names})"),
        None => String::new(),
    };
    problems.push(Problem::error(
        "replication_slots",
        &server.label,
        format!(
            "max_replication_slots is {max} and {used} in use{names}: {free} free, but the move \
             needs {needed} for its logical replication slot"
        ),
        format!(
            "drop slots nobody uses (SELECT pg_drop_replication_slot('name'); an inactive slot \
             also keeps WAL on disk), or run ALTER SYSTEM SET max_replication_slots = {}; and \
             restart PostgreSQL",
            used + needed
        ),
    ));
}

async fn wal_senders(server: &mut Server, needed: usize, problems: &mut Vec<Problem>) {
    let sql = "SELECT current_setting('max_wal_senders')::int, count(*)
               FROM pg_catalog.pg_stat_replication";
    let rows = match server.conn.query(sql).await {
        Ok(rows) => rows,
        Err(e) => return problems.push(Problem::unchecked("wal_senders", &server.label, &e)),
    };
    let max = number(rows.get(0, 0));
    let used = number(rows.get(0, 1));
    let free = max.saturating_sub(used);
    if free >= needed {
        return;
    }
    problems.push(Problem::error(
        "wal_senders",
        &server.label,
        format!(
            "max_wal_senders is {max} and {used} WAL senders are running (pg_stat_replication): \
             {free} free, but the move needs {needed} to stream changes"
        ),
        format!(
            "run ALTER SYSTEM SET max_wal_senders = {}; and restart PostgreSQL (streaming \
             replicas use WAL senders too)",
            used + needed
        ),
    ));
}

/// A count from a query; 0 when missing.
fn number(value: Option<&str>) -> usize {
    value.and_then(|v| v.parse().ok()).unwrap_or(0)
}
