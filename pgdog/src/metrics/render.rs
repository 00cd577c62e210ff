//! The exposition text: the metric families with their help texts and types, the label
//! sets and their escaping, histogram lines, and [`render`], which reads the pools' live
//! numbers from a [`PoolerState`] once per scrape and writes them in the Prometheus text
//! format (version 0.0.4).

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

use crate::backend::stats::{get, unix_ms, ConnState, BUCKETS_US};
use crate::state::PoolerState;

/// The `Content-Type` of the metrics text (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The fixed part of every name, after the namespace.
const PREFIX: &str = "pgdog_";

/// Per-pool gauges: name (after the prefix) and help.
const POOL_GAUGES: [(&str, &str); 6] = [
    (
        "pool_clients_waiting",
        "Clients waiting for a server connection from the pool.",
    ),
    (
        "pool_server_connections_active",
        "Server connections checked out by clients.",
    ),
    ("pool_server_connections_idle", "Idle server connections."),
    (
        "pool_server_connections",
        "Open server connections, idle or checked out.",
    ),
    (
        "pool_server_connections_max",
        "Pool size: the most server connections the pool opens.",
    ),
    (
        "pool_banned",
        "1 while the pool is banned (skipped by load balancing), else 0.",
    ),
];

/// Per-pool counters: name (after the prefix) and help.
const POOL_COUNTERS: [(&str, &str); 7] = [
    ("pool_transactions_total", "Transactions completed."),
    (
        "pool_queries_total",
        "Requests completed (each simple query or extended-protocol Sync).",
    ),
    (
        "pool_server_assignments_total",
        "Server connections handed to clients.",
    ),
    (
        "pool_received_bytes_total",
        "Bytes received from clients for the server.",
    ),
    (
        "pool_sent_bytes_total",
        "Bytes of server answers sent to clients.",
    ),
    (
        "pool_errors_total",
        "Errors the server returned to clients.",
    ),
    (
        "pool_server_connections_opened_total",
        "Server connections opened.",
    ),
];

/// Per-pool histograms: name (after the prefix) and help.
const POOL_HISTOGRAMS: [(&str, &str); 4] = [
    (
        "pool_query_duration_seconds",
        "Request times, from sending a request to the server to its ReadyForQuery.",
    ),
    (
        "pool_transaction_duration_seconds",
        "Transaction times, from the first request to ReadyForQuery idle.",
    ),
    (
        "pool_checkout_wait_seconds",
        "Time clients waited for a server connection.",
    ),
    (
        "pool_connect_duration_seconds",
        "Time spent opening server connections (connect and log in).",
    ),
];

/// Client states, in output order.
const CLIENT_STATES: [ConnState; 4] = [
    ConnState::Idle,
    ConnState::Active,
    ConnState::Waiting,
    ConnState::IdleInTransaction,
];

/// The numbers of one pool, read once per scrape.
struct PoolSample {
    /// `key="value",...`, escaped, without braces.
    labels: String,
    gauges: [u64; POOL_GAUGES.len()],
    counters: [u64; POOL_COUNTERS.len()],
    /// Cumulative bucket counts (`+Inf` last) and the sum in µs.
    histograms: [(Vec<u64>, u64); POOL_HISTOGRAMS.len()],
}

/// The metrics text for the current state.
pub fn render(state: &PoolerState) -> String {
    let databases = state.databases();
    let namespace = databases
        .config()
        .config
        .general
        .openmetrics_namespace
        .clone();
    let mut clusters: Vec<_> = databases.clusters().collect();
    clusters.sort_by(|a, b| (&a.database, &a.user).cmp(&(&b.database, &b.user)));

    let mut seen = HashSet::new();
    let mut pools = Vec::new();
    for cluster in &clusters {
        for (shard, role, pool) in cluster.pools_with_roles() {
            if !seen.insert(pool.id()) {
                continue;
            }
            let addr = pool.addr();
            let labels = labels(&[
                ("database", &cluster.database),
                ("user", &cluster.user),
                ("shard", &shard.to_string()),
                ("role", role.as_str()),
                ("host", &addr.host),
                ("port", &addr.port.to_string()),
                ("pool_id", &pool.id().to_string()),
            ]);
            let stats = pool.stats();
            pools.push(PoolSample {
                labels,
                gauges: [
                    pool.waiting() as u64,
                    pool.active() as u64,
                    pool.idle_len() as u64,
                    pool.open() as u64,
                    pool.max() as u64,
                    u64::from(pool.is_banned()),
                ],
                counters: [
                    get(&stats.xact_count),
                    get(&stats.query_count),
                    get(&stats.server_assignment_count),
                    get(&stats.received),
                    get(&stats.sent),
                    get(&stats.errors),
                    get(&stats.connect_count),
                ],
                histograms: [
                    stats.query_time.cumulative(),
                    stats.xact_time.cumulative(),
                    stats.wait_time.cumulative(),
                    stats.connect_time.cumulative(),
                ],
            });
        }
    }

    // Logged-in clients per (database, user, state); every cluster is listed, also with none.
    let mut client_counts: BTreeMap<(String, String), [u64; CLIENT_STATES.len()]> = clusters
        .iter()
        .map(|c| {
            (
                (c.database.clone(), c.user.clone()),
                [0; CLIENT_STATES.len()],
            )
        })
        .collect();
    for client in state.clients.list() {
        let counts = client_counts
            .entry((client.database.clone(), client.user.clone()))
            .or_default();
        let current = client.stats.state();
        if let Some(i) = CLIENT_STATES.iter().position(|s| *s == current) {
            counts[i] += 1;
        }
    }

    let mut out = Exposition::new(&namespace);
    out.family("up", "gauge", "1 while pgdog is running.");
    out.sample("up", "", 1);
    out.family(
        "info",
        "gauge",
        "Always 1; the version of pgdog is in the labels.",
    );
    out.sample(
        "info",
        &labels(&[("version", env!("CARGO_PKG_VERSION"))]),
        1,
    );
    out.family(
        "shutting_down",
        "gauge",
        "1 once shutdown began (clients are draining), else 0.",
    );
    out.sample("shutting_down", "", u64::from(state.shutting_down()));
    out.family(
        "start_time_seconds",
        "gauge",
        "When pgdog started, in seconds since the Unix epoch.",
    );
    out.sample(
        "start_time_seconds",
        "",
        decimal(unix_ms(state.started_at), 3),
    );
    out.family(
        "clients",
        "gauge",
        "Client connections, including ones still logging in.",
    );
    out.sample("clients", "", state.client_count());
    out.family(
        "database_clients",
        "gauge",
        "Logged-in clients by database, user and state.",
    );
    for ((database, user), counts) in &client_counts {
        for (client_state, count) in CLIENT_STATES.iter().zip(counts) {
            let labels = labels(&[
                ("database", database),
                ("user", user),
                ("state", client_state.as_str()),
            ]);
            out.sample("database_clients", &labels, count);
        }
    }

    for (i, (name, help)) in POOL_GAUGES.iter().enumerate() {
        out.family(name, "gauge", help);
        for pool in &pools {
            out.sample(name, &pool.labels, pool.gauges[i]);
        }
    }
    for (i, (name, help)) in POOL_COUNTERS.iter().enumerate() {
        out.family(name, "counter", help);
        for pool in &pools {
            out.sample(name, &pool.labels, pool.counters[i]);
        }
    }
    for (i, (name, help)) in POOL_HISTOGRAMS.iter().enumerate() {
        out.family(name, "histogram", help);
        for pool in &pools {
            let (counts, sum_us) = &pool.histograms[i];
            out.histogram(name, &pool.labels, counts, *sum_us);
        }
    }
    out.finish()
}

/// Builds the exposition text, family by family.
struct Exposition<'a> {
    namespace: &'a str,
    out: String,
}

impl<'a> Exposition<'a> {
    fn new(namespace: &'a str) -> Self {
        Exposition {
            namespace,
            out: String::with_capacity(16 * 1024),
        }
    }

    /// `# HELP` and `# TYPE` of a family; its samples must follow.
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(
            self.out,
            "# HELP {}{PREFIX}{name} {}",
            self.namespace,
            escape_help(help)
        );
        let _ = writeln!(self.out, "# TYPE {}{PREFIX}{name} {kind}", self.namespace);
    }

    /// One sample line; `labels` is the output of [`labels`] (may be empty).
    fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        let _ = write!(self.out, "{}{PREFIX}{name}", self.namespace);
        if !labels.is_empty() {
            let _ = write!(self.out, "{{{labels}}}");
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// The `_bucket`, `_sum` and `_count` lines of one histogram; `counts` are cumulative
    /// (one per [`BUCKETS_US`] bound, then `+Inf`), `sum_us` in microseconds.
    fn histogram(&mut self, name: &str, labels: &str, counts: &[u64], sum_us: u64) {
        let separator = if labels.is_empty() { "" } else { "," };
        let bounds = BUCKETS_US
            .iter()
            .map(|&us| decimal(us, 6))
            .chain(std::iter::once("+Inf".to_string()));
        for (le, count) in bounds.zip(counts) {
            let _ = writeln!(
                self.out,
                "{}{PREFIX}{name}_bucket{{{labels}{separator}le=\"{le}\"}} {count}",
                self.namespace
            );
        }
        let braced = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(
            self.out,
            "{}{PREFIX}{name}_sum{braced} {}",
            self.namespace,
            decimal(sum_us, 6)
        );
        let _ = writeln!(
            self.out,
            "{}{PREFIX}{name}_count{braced} {}",
            self.namespace,
            counts.last().copied().unwrap_or(0)
        );
    }

    fn finish(self) -> String {
        self.out
    }
}

/// `key="value",...` with the values escaped.
fn labels(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{key}=\"{}\"", escape_label(value));
    }
    out
}

/// A label value as the text format wants it: backslash, double quote and newline escaped.
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A help text as the text format wants it: backslash and newline escaped.
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// `value / 10^digits` as an exact decimal, without trailing zeros: `decimal(250, 6)` is
/// `0.00025`, `decimal(1_000_000, 6)` is `1`.
fn decimal(value: u64, digits: u32) -> String {
    let scale = 10u64.pow(digits);
    let (whole, fraction) = (value / scale, value % scale);
    if fraction == 0 {
        return whole.to_string();
    }
    let fraction = format!("{fraction:0width$}", width = digits as usize);
    format!("{whole}.{}", fraction.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::backend::stats::Histogram;
    use crate::metrics::fixtures::{state, state_with, CONFIG, USERS};

    /// Sample lines of `name` (exact metric name, with any labels).
    fn samples<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
        text.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
            .collect()
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label(r"plain"), "plain");
        assert_eq!(escape_label("a\\b"), "a\\\\b");
        assert_eq!(escape_label("say \"hi\""), "say \\\"hi\\\"");
        assert_eq!(escape_label("two\nlines"), "two\\nlines");
        assert_eq!(
            labels(&[("database", "x\"y"), ("user", "u\\")]),
            "database=\"x\\\"y\",user=\"u\\\\\""
        );
        assert_eq!(escape_help("a\\b\nc \"q\""), "a\\\\b\\nc \"q\"");
    }

    #[test]
    fn decimals_are_exact() {
        assert_eq!(decimal(100, 6), "0.0001");
        assert_eq!(decimal(250, 6), "0.00025");
        assert_eq!(decimal(2_500_000, 6), "2.5");
        assert_eq!(decimal(10_000_000, 6), "10");
        assert_eq!(decimal(0, 6), "0");
        assert_eq!(decimal(1_234_567, 6), "1.234567");
        assert_eq!(decimal(1_700_000_000_123, 3), "1700000000.123");
    }

    #[test]
    fn histogram_lines() {
        let histogram = Histogram::default();
        histogram.record(Duration::from_micros(50));
        histogram.record(Duration::from_micros(300));
        histogram.record(Duration::from_secs(60));
        let (counts, sum) = histogram.cumulative();
        let mut out = Exposition::new("ns_");
        out.histogram("h_seconds", "a=\"1\"", &counts, sum);
        let text = out.finish();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), BUCKETS_US.len() + 3, "{text}");
        assert_eq!(
            lines[0],
            "ns_pgdog_h_seconds_bucket{a=\"1\",le=\"0.0001\"} 1"
        );
        assert_eq!(
            lines[1],
            "ns_pgdog_h_seconds_bucket{a=\"1\",le=\"0.00025\"} 1"
        );
        assert_eq!(
            lines[2],
            "ns_pgdog_h_seconds_bucket{a=\"1\",le=\"0.0005\"} 2"
        );
        assert_eq!(
            lines[BUCKETS_US.len() - 1],
            "ns_pgdog_h_seconds_bucket{a=\"1\",le=\"10\"} 2"
        );
        assert_eq!(
            lines[BUCKETS_US.len()],
            "ns_pgdog_h_seconds_bucket{a=\"1\",le=\"+Inf\"} 3"
        );
        assert_eq!(
            lines[BUCKETS_US.len() + 1],
            "ns_pgdog_h_seconds_sum{a=\"1\"} 60.00035"
        );
        assert_eq!(
            lines[BUCKETS_US.len() + 2],
            "ns_pgdog_h_seconds_count{a=\"1\"} 3"
        );

        let mut out = Exposition::new("");
        out.histogram("h", "", &counts, sum);
        let text = out.finish();
        assert!(
            text.starts_with("pgdog_h_bucket{le=\"0.0001\"} 1\n"),
            "{text}"
        );
        assert!(
            text.ends_with("pgdog_h_sum 60.00035\npgdog_h_count 3\n"),
            "{text}"
        );
    }

    #[test]
    fn families_have_help_and_type_once_and_grouped_samples() {
        let text = render(&state());
        let mut seen = HashSet::new();
        let mut current = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap().to_string();
                assert!(seen.insert(name.clone()), "TYPE twice for {name}");
                current = name;
            } else if line.starts_with("# HELP ") {
                continue;
            } else {
                let name = line.split(['{', ' ']).next().unwrap();
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix).filter(|b| *b == current))
                    .unwrap_or(name);
                assert_eq!(family, current, "sample outside its family: {line}");
            }
        }
        for (name, _) in POOL_COUNTERS {
            assert!(name.ends_with("_total"), "{name}");
            assert!(seen.contains(&format!("pgdog_{name}")), "{name}");
        }
        assert!(text.contains("# TYPE pgdog_pool_query_duration_seconds histogram\n"));
        assert!(text.contains("# TYPE pgdog_pool_transactions_total counter\n"));
        assert!(text.contains("\npgdog_up 1\n"));
        assert!(text.contains(&format!(
            "\npgdog_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        )));
        assert!(text.contains("\npgdog_shutting_down 0\n"));
        assert!(text.contains("\npgdog_clients 0\n"));
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn every_pool_is_listed_with_its_labels() {
        let state = state();
        let text = render(&state);
        let lines = samples(&text, "pgdog_pool_server_connections_max");
        assert_eq!(lines.len(), 2, "{text}");
        let databases = state.databases();
        let pool = databases
            .cluster("alice", "shop")
            .unwrap()
            .primary()
            .unwrap();
        assert_eq!(
            lines[0],
            format!(
                "pgdog_pool_server_connections_max{{database=\"shop\",user=\"alice\",shard=\"0\",\
                 role=\"primary\",host=\"127.0.0.1\",port=\"5999\",pool_id=\"{}\"}} 10",
                pool.id()
            )
        );
        assert!(lines[1].contains("user=\"bob\""), "{}", lines[1]);
        assert_eq!(samples(&text, "pgdog_pool_transactions_total").len(), 2);
        assert_eq!(
            samples(&text, "pgdog_pool_connect_duration_seconds_bucket").len(),
            2 * (BUCKETS_US.len() + 1)
        );
        let clients = samples(&text, "pgdog_database_clients");
        assert_eq!(clients.len(), 2 * CLIENT_STATES.len(), "{text}");
        assert!(clients.contains(
            &"pgdog_database_clients{database=\"shop\",user=\"bob\",state=\"idle in transaction\"} 0"
        ));
    }

    #[test]
    fn namespace_goes_before_the_prefix() {
        let config = CONFIG.replace(
            "[general]\n",
            "[general]\nopenmetrics_namespace = \"acme_\"\n",
        );
        let text = render(&state_with(&config, USERS));
        for line in text.lines() {
            let name = line
                .strip_prefix("# HELP ")
                .or_else(|| line.strip_prefix("# TYPE "))
                .unwrap_or(line);
            assert!(name.starts_with("acme_pgdog_"), "{line}");
        }
    }

    #[test]
    fn a_shared_pool_is_listed_once() {
        let state = state();
        // Both users log in to the server as `pg`: after a reload they share one pool.
        let config = state.databases().config().as_ref().clone();
        state.reload(config).unwrap();
        let databases = state.databases();
        let alice = databases
            .cluster("alice", "shop")
            .unwrap()
            .primary()
            .unwrap();
        let bob = databases.cluster("bob", "shop").unwrap().primary().unwrap();
        assert!(alice.ptr_eq(bob), "the test needs a shared pool");
        let text = render(&state);
        let lines = samples(&text, "pgdog_pool_transactions_total");
        assert_eq!(lines.len(), 1, "{text}");
        assert!(lines[0].contains("user=\"alice\""), "{}", lines[0]);
    }
}
