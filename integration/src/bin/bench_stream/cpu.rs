//! Where the CPU goes while a tool applies changes: the CPU seconds (user + system, from
//! `/proc/<pid>/stat`) of the applier process (pgdog, or PostgreSQL's apply worker), of the
//! source's walsender decoding the slot, and of the destination backends pgdog writes
//! through; and the share of the whole machine busy (`/proc/stat`).

use std::collections::BTreeMap;
use std::time::Instant;

use tokio_postgres::Client;

use crate::setup::APPLICATION;

/// The processes of one tool's stream, by role.
#[derive(Debug, Clone, Default)]
pub(crate) struct Processes {
    /// pgdog, or the native apply worker(s).
    pub(crate) applier: Vec<i32>,
    /// The source's walsender.
    pub(crate) walsender: Vec<i32>,
    /// Destination backends that are not the applier (pgdog's sessions).
    pub(crate) backends: Vec<i32>,
}

/// CPU seconds of every process of a [`Processes`] at one moment.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    seconds: BTreeMap<i32, f64>,
    machine: MachineTimes,
    at: Instant,
}

/// CPU seconds used by each role between two snapshots, and the machine's busy share.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Usage {
    /// Seconds of the applier.
    pub(crate) applier: f64,
    /// Seconds of the walsender.
    pub(crate) walsender: f64,
    /// Seconds of the other destination backends.
    pub(crate) backends: f64,
    /// Share of all CPUs busy, in percent.
    pub(crate) machine: Option<f64>,
    /// Seconds between the two snapshots.
    pub(crate) window: f64,
}

impl Usage {
    /// `seconds` of CPU as percent of one core over the window.
    pub(crate) fn percent(&self, seconds: f64) -> Option<f64> {
        (self.window > 0.0).then(|| 100.0 * seconds / self.window)
    }
}

impl Snapshot {
    /// The machine's counters only: the start of a window in which every process of interest
    /// starts (each then counts from zero).
    pub(crate) fn machine_only() -> Snapshot {
        Snapshot {
            seconds: BTreeMap::new(),
            machine: MachineTimes::now(),
            at: Instant::now(),
        }
    }
}

impl Processes {
    /// CPU seconds of each process now.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let all = self
            .applier
            .iter()
            .chain(&self.walsender)
            .chain(&self.backends);
        Snapshot {
            seconds: all
                .filter_map(|pid| Some((*pid, process_seconds(*pid)?)))
                .collect(),
            machine: MachineTimes::now(),
            at: Instant::now(),
        }
    }

    /// What each role used from `before` to `after` (a process missing from `before` counts
    /// from its start).
    pub(crate) fn usage(&self, before: &Snapshot, after: &Snapshot) -> Usage {
        let sum = |pids: &[i32]| -> f64 {
            pids.iter()
                .filter_map(|pid| {
                    let end = after.seconds.get(pid)?;
                    Some(end - before.seconds.get(pid).copied().unwrap_or(0.0))
                })
                .sum()
        };
        let machine = match before.machine.total {
            0 => None,
            _ => before.machine.busy_percent(after.machine),
        };
        Usage {
            applier: sum(&self.applier),
            walsender: sum(&self.walsender),
            backends: sum(&self.backends),
            machine,
            window: after.at.duration_since(before.at).as_secs_f64(),
        }
    }
}

/// Pids of the sessions on `database` of a destination cluster (not the bench's own), as
/// `(pid, is a logical replication worker)`.
pub(crate) async fn destination_pids(
    dest: &Client,
    database: &str,
) -> Result<Vec<(i32, bool)>, String> {
    let rows = dest
        .query(
            "SELECT pid, backend_type = 'logical replication worker' FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid() \
               AND coalesce(application_name, '') <> $2",
            &[&database, &APPLICATION],
        )
        .await
        .map_err(|e| format!("pg_stat_activity: {e}"))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// User + system CPU seconds of a process so far, from `/proc/<pid>/stat`.
pub(crate) fn process_seconds(pid: i32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text, ticks_per_second())
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line, in seconds. The command
/// name (field 2) may hold spaces and parentheses, so fields are counted after its last `)`.
fn parse_stat(text: &str, ticks: f64) -> Option<f64> {
    let (_, rest) = text.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state).
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks)
}

/// Busy and total jiffies of all CPUs so far (/proc/stat's `cpu` line).
#[derive(Debug, Clone, Copy, Default)]
struct MachineTimes {
    busy: u64,
    total: u64,
}

impl MachineTimes {
    fn now() -> MachineTimes {
        let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else {
            return MachineTimes::default();
        };
        let values: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal.
        let total: u64 = values.iter().take(8).sum();
        let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
        MachineTimes {
            busy: total.saturating_sub(idle),
            total,
        }
    }

    fn busy_percent(self, later: MachineTimes) -> Option<f64> {
        let total = later.total.checked_sub(self.total)?;
        let busy = later.busy.checked_sub(self.busy)?;
        (total > 0).then(|| 100.0 * busy as f64 / total as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_the_name() {
        let line = "1234 (postgres: walsender (x) 1) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0";
        assert_eq!(parse_stat(line, 100.0), Some(3.0));
        assert_eq!(parse_stat("garbage", 100.0), None);
        assert!(process_seconds(std::process::id() as i32).is_some());
    }

    #[test]
    fn usage_by_role() {
        let processes = Processes {
            applier: vec![1],
            walsender: vec![2],
            backends: vec![3, 4],
        };
        let at = Instant::now();
        let before = Snapshot {
            seconds: [(1, 1.0), (3, 0.5)].into_iter().collect(),
            machine: MachineTimes::default(),
            at,
        };
        let after = Snapshot {
            seconds: [(1, 3.0), (2, 0.25), (3, 1.0), (4, 2.0)]
                .into_iter()
                .collect(),
            machine: MachineTimes::default(),
            at: at + std::time::Duration::from_secs(4),
        };
        let usage = processes.usage(&before, &after);
        assert_eq!(
            usage,
            Usage {
                applier: 2.0,
                walsender: 0.25,
                backends: 2.5,
                machine: None,
                window: 4.0,
            }
        );
        assert_eq!(usage.percent(2.0), Some(50.0));
    }
}
