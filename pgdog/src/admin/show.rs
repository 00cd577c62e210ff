//! `SHOW` commands: live state (pools, clients, servers, stats, config, bans, tasks) as result
//! tables, with PgDog's column names where PgDog has the command. The replication views live
//! in [`super::replication`] and [`super::slots`].

use std::collections::HashSet;
use std::time::{Instant, SystemTime};

use pgdog_admin::{ColumnType, ResultTable, Show};
use pgdog_config::Role;

use crate::backend::databases::Cluster;
use crate::backend::pool::Pool;
use crate::backend::stats::{get, unix_ms, ConnectionStats, Figures};
use crate::state::PoolerState;

use ColumnType::{BigInt, Bool, Numeric, Text};

/// The table for one `SHOW` (`SHOW REPLICATION_SLOTS` asks the servers, the others read
/// this process's state).
pub async fn table(state: &PoolerState, what: Show) -> ResultTable {
    match what {
        Show::Pools => pools(state),
        Show::Clients => clients(state),
        Show::Servers => servers(state),
        Show::Stats => stats(state),
        Show::Config => config(state),
        Show::Databases => databases(state),
        Show::Users => users(state),
        Show::Lists => lists(state),
        Show::Bans => bans(state),
        Show::Version => version(),
        Show::Tasks => tasks(state),
        Show::SchemaSync => schema_sync(state),
        Show::TableCopies => table_copies(state),
        Show::Replication => super::replication::table(state),
        Show::ReplicationSlots => super::slots::table(state).await,
        Show::Cutover => super::cutover::table(state),
    }
}

/// A row of text values being built.
#[derive(Default)]
pub(super) struct Row(pub(super) Vec<Option<String>>);

impl Row {
    /// Adds a value.
    pub(super) fn text(mut self, value: impl ToString) -> Self {
        self.0.push(Some(value.to_string()));
        self
    }

    /// Adds a value or NULL.
    pub(super) fn opt(mut self, value: Option<impl ToString>) -> Self {
        self.0.push(value.map(|v| v.to_string()));
        self
    }

    /// Adds a boolean (`t` / `f`).
    pub(super) fn bool(self, value: bool) -> Self {
        self.text(if value { "t" } else { "f" })
    }

    /// Milliseconds with three decimals, from microseconds.
    fn ms(self, us: u64) -> Self {
        self.text(format!("{}.{:03}", us / 1000, us % 1000))
    }

    fn time(self, time: SystemTime) -> Self {
        self.text(timestamp(time))
    }
}

/// Appends a row built with the table's column count.
pub(super) fn push(table: &mut ResultTable, row: Row) {
    // Every row below is built with the table's column count.
    let _ = table.push(row.0);
}

/// Every (cluster, shard, role, pool) once, in a stable order.
fn each_pool(state: &PoolerState, mut f: impl FnMut(&Cluster, usize, Role, &Pool)) {
    let databases = state.databases();
    let mut clusters: Vec<_> = databases.clusters().collect();
    clusters.sort_by(|a, b| (&a.database, &a.user).cmp(&(&b.database, &b.user)));
    let mut seen = HashSet::new();
    for cluster in clusters {
        for (shard, role, pool) in cluster.pools_with_roles() {
            if seen.insert(pool.id()) {
                f(cluster, shard, role, pool);
            }
        }
    }
}

fn pools(state: &PoolerState) -> ResultTable {
    let mut table = ResultTable::new(&[
        ("id", BigInt),
        ("database", Text),
        ("user", Text),
        ("addr", Text),
        ("port", BigInt),
        ("shard", BigInt),
        ("role", Text),
        ("cl_waiting", BigInt),
        ("sv_idle", BigInt),
        ("sv_active", BigInt),
        ("sv_total", BigInt),
        ("maxwait", BigInt),
        ("maxwait_us", BigInt),
        ("pool_mode", Text),
        ("paused", Bool),
        ("banned", Bool),
        ("errors", BigInt),
        ("online", Bool),
        ("pool_size", BigInt),
        ("schema_admin", Bool),
    ]);
    let config = state.databases().config().clone();
    each_pool(state, |cluster, shard, role, pool| {
        let addr = pool.addr();
        let maxwait = pool.max_wait().as_micros() as u64;
        let schema_admin =
            config.users.users.iter().any(|u| {
                u.name == cluster.user && u.database == cluster.database && u.schema_admin
            });
        let row = Row::default()
            .text(pool.id())
            .text(&cluster.database)
            .text(&cluster.user)
            .text(&addr.host)
            .text(addr.port)
            .text(shard)
            .text(role)
            .text(pool.waiting())
            .text(pool.idle_len())
            .text(pool.active())
            .text(pool.open())
            .text(maxwait / 1_000_000)
            .text(maxwait % 1_000_000)
            .text(cluster.pooler_mode)
            .bool(state.gate(&cluster.database).is_paused())
            .bool(pool.is_banned())
            .text(get(&pool.stats().errors))
            .bool(!pool.is_closed())
            .text(pool.max())
            .bool(schema_admin);
        push(&mut table, row);
    });
    table
}

fn clients(state: &PoolerState) -> ResultTable {
    let mut table = ResultTable::new(&[
        ("id", BigInt),
        ("user", Text),
        ("database", Text),
        ("addr", Text),
        ("port", BigInt),
        ("state", Text),
        ("replication", Text),
        ("connect_time", Text),
        ("last_request", Text),
        ("queries", BigInt),
        ("transactions", BigInt),
        ("wait_time", Numeric),
        ("query_time", Numeric),
        ("transaction_time", Numeric),
        ("bytes_received", BigInt),
        ("bytes_sent", BigInt),
        ("errors", BigInt),
        ("application_name", Text),
        ("prepared_statements", BigInt),
    ]);
    for client in state.clients.list() {
        let stats = &client.stats;
        let row = Row::default()
            .text(client.id)
            .text(&client.user)
            .text(&client.database)
            .opt(client.addr.map(|a| a.ip()))
            .opt(client.addr.map(|a| a.port()))
            .text(stats.state().as_str())
            .text("none")
            .time(stats.connected_at)
            .time(stats.last_request())
            .text(get(&stats.queries))
            .text(get(&stats.transactions))
            .ms(get(&stats.wait_time_us))
            .ms(get(&stats.query_time_us))
            .ms(get(&stats.xact_time_us))
            .text(get(&stats.bytes_received))
            .text(get(&stats.bytes_sent))
            .text(get(&stats.errors))
            .text(&client.application_name)
            .text(get(&client.prepared_statements));
        push(&mut table, row);
    }
    table
}

fn servers(state: &PoolerState) -> ResultTable {
    let mut table = ResultTable::new(&[
        ("pool_id", BigInt),
        ("database", Text),
        ("user", Text),
        ("addr", Text),
        ("port", BigInt),
        ("state", Text),
        ("connect_time", Text),
        ("request_time", Text),
        ("remote_pid", BigInt),
        ("transactions", BigInt),
        ("queries", BigInt),
        ("rollbacks", BigInt),
        ("healthchecks", BigInt),
        ("errors", BigInt),
        ("bytes_received", BigInt),
        ("bytes_sent", BigInt),
        ("age", BigInt),
    ]);
    each_pool(state, |_, _, _, pool| {
        let addr = pool.addr();
        let mut entries = pool.server_entries();
        entries.sort_by_key(|e| e.pid);
        for entry in entries {
            let stats: &ConnectionStats = &entry.stats;
            let age_ms = SystemTime::now()
                .duration_since(stats.connected_at)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            let row = Row::default()
                .text(pool.id())
                .text(&addr.database)
                .text(&addr.user)
                .text(&addr.host)
                .text(addr.port)
                .text(stats.state().as_str())
                .time(stats.connected_at)
                .time(stats.last_request())
                .text(entry.pid)
                .text(get(&stats.transactions))
                .text(get(&stats.queries))
                .text(get(&stats.rollbacks))
                .text(get(&stats.healthchecks))
                .text(get(&stats.errors))
                .text(get(&stats.bytes_received))
                .text(get(&stats.bytes_sent))
                .text(age_ms);
            push(&mut table, row);
        }
    });
    table
}

/// The `SHOW STATS` figures, in column order: name and whether it is a time (µs → ms).
const STAT_COLUMNS: [(&str, bool); 11] = [
    ("xact_count", false),
    ("query_count", false),
    ("server_assignment_count", false),
    ("received", false),
    ("sent", false),
    ("xact_time", true),
    ("query_time", true),
    ("wait_time", true),
    ("errors", false),
    ("connect_time", true),
    ("connect_count", false),
];

fn stat_values(f: &Figures) -> [u64; 11] {
    [
        f.xact_count,
        f.query_count,
        f.server_assignment_count,
        f.received,
        f.sent,
        f.xact_time_us,
        f.query_time_us,
        f.wait_time_us,
        f.errors,
        f.connect_time_us,
        f.connect_count,
    ]
}

fn stats(state: &PoolerState) -> ResultTable {
    let mut columns: Vec<(String, ColumnType)> = [
        ("database", Text),
        ("user", Text),
        ("addr", Text),
        ("port", BigInt),
        ("shard", BigInt),
        ("role", Text),
    ]
    .iter()
    .map(|(n, t)| (n.to_string(), *t))
    .collect();
    for prefix in ["total", "avg"] {
        for (name, time) in STAT_COLUMNS {
            columns.push((
                format!("{prefix}_{name}"),
                if time { Numeric } else { BigInt },
            ));
        }
    }
    let names: Vec<(&str, ColumnType)> = columns.iter().map(|(n, t)| (n.as_str(), *t)).collect();
    let mut table = ResultTable::new(&names);
    each_pool(state, |cluster, shard, role, pool| {
        let addr = pool.addr();
        let mut row = Row::default()
            .text(&cluster.database)
            .text(&cluster.user)
            .text(&addr.host)
            .text(addr.port)
            .text(shard)
            .text(role);
        for figures in [pool.stats().totals(), pool.stats().averages()] {
            for ((_, time), value) in STAT_COLUMNS.iter().zip(stat_values(&figures)) {
                row = if *time {
                    row.ms(value)
                } else {
                    row.text(value)
                };
            }
        }
        push(&mut table, row);
    });
    table
}

fn config(state: &PoolerState) -> ResultTable {
    let mut table = ResultTable::new(&[("name", Text), ("value", Text), ("tunable", Bool)]);
    let config = state.databases().config().clone();
    for (name, value) in super::set::general_values(&config.config.general) {
        let row = Row::default()
            .text(&name)
            .text(value)
            .bool(super::set::is_tunable(&name));
        push(&mut table, row);
    }
    table
}

fn databases(state: &PoolerState) -> ResultTable {
    let mut table = ResultTable::new(&[
        ("name", Text),
        ("host", Text),
        ("port", BigInt),
        ("database", Text),
        ("shard", BigInt),
        ("role", Text),
        ("pool_size", BigInt),
        ("paused", Bool),
    ]);
    let config = state.databases().config().clone();
    for db in &config.config.databases {
        let row = Row::default()
            .text(&db.name)
            .text(&db.host)
            .text(db.port)
            .text(db.database_name())
            .text(db.shard)
            .text(db.role)
            .text(
                db.pool_size
                    .unwrap_or(config.config.general.default_pool_size),
            )
            .bool(state.gate(&db.name).is_paused());
        push(&mut table, row);
    }
    table
}

fn users(state: &PoolerState) -> ResultTable {
    let mut table = ResultTable::new(&[
        ("name", Text),
        ("database", Text),
        ("pool_mode", Text),
        ("pool_size", Text),
        ("min_pool_size", BigInt),
        ("server_user", Text),
        ("schema_admin", Bool),
    ]);
    let config = state.databases().config().clone();
    for user in &config.users.users {
        let sizes: Vec<String> = config
            .config
            .databases_named(&user.database)
            .map(|db| config.pool_size(user, db).to_string())
            .collect();
        let row = Row::default()
            .text(&user.name)
            .text(&user.database)
            .text(config.pooler_mode(user))
            .text(if sizes.is_empty() {
                "-".to_string()
            } else {
                sizes.join(",")
            })
            .text(config.min_pool_size(user))
            .text(user.server_user.as_deref().unwrap_or(&user.name))
            .bool(user.schema_admin);
        push(&mut table, row);
    }
    table
}

fn lists(state: &PoolerState) -> ResultTable {
    let mut table = ResultTable::new(&[("list", Text), ("items", BigInt)]);
    let config = state.databases().config().clone();
    let mut names: Vec<&str> = config
        .config
        .databases
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    names.sort();
    names.dedup();
    let (mut pools, mut active, mut idle, mut banned) = (0, 0, 0, 0);
    each_pool(state, |_, _, _, pool| {
        pools += 1;
        active += pool.active();
        idle += pool.idle_len();
        banned += usize::from(pool.is_banned());
    });
    let clients = state.clients.list();
    let waiting = clients
        .iter()
        .filter(|c| c.stats.state() == crate::backend::stats::ConnState::Waiting)
        .count();
    let paused = names.iter().filter(|n| state.gate(n).is_paused()).count();
    for (list, items) in [
        ("databases", names.len()),
        ("users", config.users.users.len()),
        ("pools", pools),
        ("clients", clients.len()),
        ("waiting_clients", waiting),
        ("used_servers", active),
        ("free_servers", idle),
        ("banned_pools", banned),
        ("paused_databases", paused),
        ("prepared_statements", state.prepared.len()),
    ] {
        push(&mut table, Row::default().text(list).text(items));
    }
    table
}

fn bans(state: &PoolerState) -> ResultTable {
    let mut table = ResultTable::new(&[
        ("pool_id", BigInt),
        ("database", Text),
        ("user", Text),
        ("addr", Text),
        ("port", BigInt),
        ("shard", BigInt),
        ("role", Text),
        ("reason", Text),
        ("banned_at", Text),
        ("expires_in_ms", BigInt),
    ]);
    each_pool(state, |cluster, shard, role, pool| {
        let Some(ban) = pool.current_ban() else {
            return;
        };
        let addr = pool.addr();
        let row =
            Row::default()
                .text(pool.id())
                .text(&cluster.database)
                .text(&cluster.user)
                .text(&addr.host)
                .text(addr.port)
                .text(shard)
                .text(role)
                .text(&ban.reason)
                .time(ban.since)
                .opt(ban.until.map(|until| {
                    until.saturating_duration_since(Instant::now()).as_millis() as u64
                }));
        push(&mut table, row);
    });
    table
}

fn tasks(state: &PoolerState) -> ResultTable {
    let mut table = ResultTable::new(&[
        ("id", BigInt),
        ("type", Text),
        ("status", Text),
        ("step", Text),
        ("started_at", Text),
        ("elapsed", Text),
        ("elapsed_ms", BigInt),
        ("error", Text),
    ]);
    for task in state.tasks.list() {
        let error = match &task.status {
            crate::reshard::TaskStatus::Failed(message) => Some(message.clone()),
            _ => None,
        };
        push(
            &mut table,
            Row::default()
                .text(task.id)
                .text(task.kind)
                .text(task.status.as_str())
                .text(&task.step)
                .text(timestamp(task.started_at))
                .text(format!("{:.3}s", task.elapsed.as_secs_f64()))
                .text(task.elapsed.as_millis())
                .opt(error),
        );
    }
    table
}

fn schema_sync(state: &PoolerState) -> ResultTable {
    let mut table = ResultTable::new(&[
        ("task_id", BigInt),
        ("shard", BigInt),
        ("phase", Text),
        ("kind", Text),
        ("object", Text),
        ("state", Text),
        ("started_at", Text),
        ("elapsed", Text),
        ("elapsed_ms", BigInt),
        ("error", Text),
        ("sql", Text),
    ]);
    for record in state.schema_sync.list() {
        push(
            &mut table,
            Row::default()
                .opt(record.task_id)
                .text(record.shard)
                .text(record.phase.as_str())
                .text(&record.kind)
                .text(&record.object)
                .text(record.state.as_str())
                .opt(record.started_at.map(timestamp))
                .text(format!("{:.3}s", record.elapsed.as_secs_f64()))
                .text(record.elapsed.as_millis())
                .opt(record.error)
                .text(&record.sql),
        );
    }
    table
}

fn table_copies(state: &PoolerState) -> ResultTable {
    use crate::reshard::human;
    let mut table = ResultTable::new(&[
        ("schema", Text),
        ("table", Text),
        ("status", Text),
        ("rows", BigInt),
        ("rows_human", Text),
        ("bytes", BigInt),
        ("bytes_human", Text),
        ("bytes_per_sec", BigInt),
        ("bytes_per_sec_human", Text),
        ("elapsed", Text),
        ("elapsed_ms", BigInt),
        ("sql", Text),
        ("task_id", BigInt),
        ("ranges_done", BigInt),
        ("ranges", BigInt),
        ("verified", Text),
        ("error", Text),
    ]);
    for copy in state.table_copies.list() {
        let rate = copy.bytes_per_sec();
        push(
            &mut table,
            Row::default()
                .text(&copy.schema)
                .text(&copy.table)
                .text(copy.status.as_str())
                .text(copy.rows)
                .text(human::count(copy.rows))
                .text(copy.bytes)
                .text(human::bytes(copy.bytes))
                .text(rate)
                .text(format!("{}/s", human::bytes(rate)))
                .text(format!("{:.3}s", copy.elapsed.as_secs_f64()))
                .text(copy.elapsed.as_millis())
                .text(&copy.sql)
                .opt(copy.task_id)
                .text(copy.ranges_done)
                .text(copy.ranges)
                .text(&copy.verified)
                .opt(copy.error),
        );
    }
    table
}

fn version() -> ResultTable {
    let mut table = ResultTable::new(&[("version", Text)]);
    push(
        &mut table,
        Row::default().text(format!("pgdog {}", env!("CARGO_PKG_VERSION"))),
    );
    table
}

/// `2026-11-27 05:28:08.123 UTC`.
pub(super) fn timestamp(time: SystemTime) -> String {
    let ms = unix_ms(time);
    let secs = (ms / 1000) as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        ms % 1000
    )
}

/// Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01 00:00:00.000 UTC");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_757_288_123);
        assert_eq!(timestamp(t), "2026-11-27 05:28:08.123 UTC");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(timestamp(leap), "2000-02-29 00:00:00.000 UTC");
    }

    #[test]
    fn milliseconds_keep_three_decimals() {
        assert_eq!(
            Row::default().ms(1_234_567).0[0].as_deref(),
            Some("1234.567")
        );
        assert_eq!(Row::default().ms(5).0[0].as_deref(), Some("0.005"));
    }
}
