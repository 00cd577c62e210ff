//! The OpenMetrics (Prometheus) endpoint: renders the pools' live numbers in the Prometheus
//! text exposition format (version 0.0.4) and serves them over a small built-in HTTP/1.1
//! server on `general.openmetrics_port`.
//!
//! This module owns the metric names, their help texts and labels, the rendering, and the
//! HTTP handling. It only reads [`PoolerState`]; the numbers themselves are kept by
//! [`PoolStats`](crate::backend::stats::PoolStats), the pools and the client registry.
//!
//! # Names
//!
//! Every metric is named `{namespace}pgdog_{name}`, where `{namespace}` is
//! `general.openmetrics_namespace` put verbatim in front (empty by default), so with the
//! default configuration the names start with `pgdog_`. Counters end in `_total`, times are in
//! seconds and sizes in bytes, as Prometheus recommends.
//!
//! Process-wide families (no labels unless noted):
//!
//! | name | type | what |
//! |---|---|---|
//! | `pgdog_up` | gauge | always 1 while pgdog answers |
//! | `pgdog_info{version}` | gauge | always 1; the version is the label |
//! | `pgdog_shutting_down` | gauge | 1 once shutdown began (the endpoint keeps answering during the drain) |
//! | `pgdog_start_time_seconds` | gauge | when pgdog started, Unix time |
//! | `pgdog_clients` | gauge | client connections, including ones still logging in |
//! | `pgdog_database_clients{database,user,state}` | gauge | logged-in clients by state (`idle`, `active`, `waiting`, `idle in transaction`) |
//!
//! Per pool, labelled `database` and `user` (what clients connect with), `shard`, `role`
//! (`primary` or `replica`), `host`, `port` (the server) and `pool_id` (as in `SHOW POOLS` and
//! `BAN <id>`):
//!
//! | name | type | what |
//! |---|---|---|
//! | `pgdog_pool_clients_waiting` | gauge | clients waiting for a server connection |
//! | `pgdog_pool_server_connections_active` | gauge | server connections checked out by clients |
//! | `pgdog_pool_server_connections_idle` | gauge | idle server connections |
//! | `pgdog_pool_server_connections` | gauge | open server connections |
//! | `pgdog_pool_server_connections_max` | gauge | pool size (most server connections allowed) |
//! | `pgdog_pool_banned` | gauge | 1 while the pool is banned, else 0 |
//! | `pgdog_pool_transactions_total` | counter | transactions completed |
//! | `pgdog_pool_queries_total` | counter | requests completed (simple query or extended-protocol Sync) |
//! | `pgdog_pool_server_assignments_total` | counter | server connections handed to clients |
//! | `pgdog_pool_received_bytes_total` | counter | bytes received from clients |
//! | `pgdog_pool_sent_bytes_total` | counter | bytes sent to clients |
//! | `pgdog_pool_errors_total` | counter | errors the server returned to clients |
//! | `pgdog_pool_server_connections_opened_total` | counter | server connections opened |
//! | `pgdog_pool_query_duration_seconds` | histogram | request times |
//! | `pgdog_pool_transaction_duration_seconds` | histogram | transaction times |
//! | `pgdog_pool_checkout_wait_seconds` | histogram | time clients waited for a server connection |
//! | `pgdog_pool_connect_duration_seconds` | histogram | time spent opening server connections |
//!
//! Histograms have the buckets of [`BUCKETS_US`] (converted to seconds) plus `+Inf`. A pool
//! shared by several (user, database) pairs (possible after a reload) is listed once, under the
//! first pair in (database, user) order.
//!
//! # HTTP
//!
//! `GET /metrics` and `GET /` (and `HEAD`) answer 200 with the text; other paths 404, other
//! methods 405, malformed requests 400, requests over [`MAX_REQUEST_BYTES`] 431 and requests
//! not received within [`READ_TIMEOUT`] 408. Each connection is answered once and closed, in
//! its own task, and at most [`MAX_CONNECTIONS`] are served at a time. The server does not
//! stop at shutdown: scrapes keep working while clients drain, until the process exits.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use crate::backend::stats::{get, unix_ms, ConnState, BUCKETS_US};
use crate::state::PoolerState;

/// The `Content-Type` of the metrics text (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Largest request head (request line and headers) accepted, in bytes.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;

/// How long a client has to send its request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a client has to take the answer.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections served at once; more are closed right away.
pub const MAX_CONNECTIONS: usize = 64;

/// After answering, how long what the client still sends (e.g. a request body) is read and
/// dropped, so that closing does not reset the connection before the client read the answer.
const LINGER: Duration = Duration::from_secs(1);

/// The fixed part of every name, after the namespace.
const PREFIX: &str = "pgdog_";

// ---------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

/// Binds `general.host:general.openmetrics_port`, or returns `None` when no metrics port is
/// configured. The error names the address.
pub async fn bind(state: &PoolerState) -> std::io::Result<Option<TcpListener>> {
    let (host, port) = {
        let databases = state.databases();
        let general = &databases.config().config.general;
        match general.openmetrics_port {
            Some(port) => (general.host.clone(), port),
            None => return Ok(None),
        }
    };
    match TcpListener::bind((host.as_str(), port)).await {
        Ok(listener) => Ok(Some(listener)),
        Err(e) => Err(std::io::Error::new(
            e.kind(),
            format!("cannot listen for metrics on {host}:{port} (general.openmetrics_port): {e}"),
        )),
    }
}

/// Answers metrics requests on `listener` until the process exits (also during shutdown);
/// each connection is served in its own task.
pub async fn serve(listener: TcpListener, state: Arc<PoolerState>) {
    serve_with(listener, state, READ_TIMEOUT).await
}

/// [`serve`] with another read timeout (tests).
async fn serve_with(listener: TcpListener, state: Arc<PoolerState>, read_timeout: Duration) {
    if let Ok(addr) = listener.local_addr() {
        info!("serving metrics on http://{addr}/metrics");
    }
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    debug!("metrics: too many connections, closing the one from {peer}");
                    continue;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    handle(stream, &state, read_timeout).await;
                    drop(slot);
                });
            }
            Err(e) => {
                // Usually out of file descriptors: back off instead of spinning.
                warn!("metrics: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// What a request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// 200 with the metrics (`head`: headers only, for `HEAD`).
    Metrics { head: bool },
    /// 404.
    NotFound { head: bool },
    /// 405.
    MethodNotAllowed,
    /// 400.
    BadRequest,
    /// 431: the head is over [`MAX_REQUEST_BYTES`].
    TooLarge,
    /// 408: the head did not arrive within [`READ_TIMEOUT`].
    Timeout,
}

/// Reads one request, answers it and closes the connection.
async fn handle(mut stream: TcpStream, state: &PoolerState, read_timeout: Duration) {
    let answer = match tokio::time::timeout(read_timeout, read_request(&mut stream)).await {
        Ok(Some(answer)) => answer,
        Ok(None) => return,
        Err(_) => Answer::Timeout,
    };
    let response = response(answer, state);
    let write = async {
        stream.write_all(&response).await?;
        stream.shutdown().await
    };
    match tokio::time::timeout(WRITE_TIMEOUT, write).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            debug!("metrics: cannot send the answer: {e}");
            return;
        }
        Err(_) => {
            debug!("metrics: the client did not take the answer in time");
            return;
        }
    }
    let _ = tokio::time::timeout(LINGER, discard(&mut stream)).await;
}

/// Reads until the request head is complete and decides the answer; `None` when the client
/// closed (or failed) before sending anything.
async fn read_request(stream: &mut TcpStream) -> Option<Answer> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(n) => n,
            Err(e) => {
                debug!("metrics: read failed: {e}");
                return None;
            }
        };
        if n == 0 {
            return (!buf.is_empty()).then_some(Answer::BadRequest);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(answer) = examine(&buf) {
            return Some(answer);
        }
    }
}

/// The answer once `buf` (the bytes received so far) settles it, `None` while more is needed.
fn examine(buf: &[u8]) -> Option<Answer> {
    let line_end = buf.iter().position(|&b| b == b'\n');
    // Reject binary garbage (e.g. a Postgres startup packet) without waiting for more.
    let line = &buf[..line_end.unwrap_or(buf.len())];
    if line
        .iter()
        .any(|&b| !(b == b'\r' || b == b'\t' || (0x20..0x7f).contains(&b)))
    {
        return Some(Answer::BadRequest);
    }
    if line_end.is_some() {
        let line = String::from_utf8_lossy(line);
        match parse_request_line(line.trim_end_matches('\r')) {
            Err(bad) => return Some(bad),
            Ok(answer) => match head_end(buf) {
                Some(end) if end <= MAX_REQUEST_BYTES => return Some(answer),
                Some(_) => return Some(Answer::TooLarge),
                None => {}
            },
        }
    }
    (buf.len() >= MAX_REQUEST_BYTES).then_some(Answer::TooLarge)
}

/// Where the head ends (after the empty line), if it is complete.
fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Decides the answer from a request line (without its line ending): `Ok` with the answer for
/// a well-formed line, `Err` with 400 for a malformed one.
fn parse_request_line(line: &str) -> Result<Answer, Answer> {
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Answer::BadRequest);
    };
    let is_token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    if !is_token(method) || !matches!(version, "HTTP/1.1" | "HTTP/1.0") {
        return Err(Answer::BadRequest);
    }
    let path = match target.strip_prefix("http://") {
        // Absolute form: `http://host:port/path`.
        Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
        None if target.starts_with('/') => target,
        None => return Err(Answer::BadRequest),
    };
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let head = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Ok(Answer::MethodNotAllowed),
    };
    Ok(match path {
        "/" | "/metrics" => Answer::Metrics { head },
        _ => Answer::NotFound { head },
    })
}

/// The full HTTP response for `answer`.
fn response(answer: Answer, state: &PoolerState) -> Vec<u8> {
    let (status, content_type, body, head, extra) = match answer {
        Answer::Metrics { head } => ("200 OK", CONTENT_TYPE, render(state), head, ""),
        Answer::NotFound { head } => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found: metrics are at /metrics\n".to_string(),
            head,
            "",
        ),
        Answer::MethodNotAllowed => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "method not allowed: use GET\n".to_string(),
            false,
            "Allow: GET, HEAD\r\n",
        ),
        Answer::BadRequest => (
            "400 Bad Request",
            "text/plain; charset=utf-8",
            "bad request\n".to_string(),
            false,
            "",
        ),
        Answer::TooLarge => (
            "431 Request Header Fields Too Large",
            "text/plain; charset=utf-8",
            format!("request head over {MAX_REQUEST_BYTES} bytes\n"),
            false,
            "",
        ),
        Answer::Timeout => (
            "408 Request Timeout",
            "text/plain; charset=utf-8",
            "request not received in time\n".to_string(),
            false,
            "",
        ),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         {extra}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// Reads and drops what the client still sends, up to 64 KiB.
async fn discard(stream: &mut TcpStream) {
    let mut chunk = [0u8; 1024];
    let mut total = 0;
    while total < 64 * 1024 {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => total += n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::stats::Histogram;
    use pgdog_config::ConfigAndUsers;

    fn state_with(config: &str, users: &str) -> Arc<PoolerState> {
        let config = ConfigAndUsers::from_strs(config, users, "pgdog.toml", "users.toml")
            .unwrap_or_else(|e| panic!("{e}"));
        PoolerState::new(config).unwrap_or_else(|e| panic!("{e}"))
    }

    const CONFIG: &str = "[general]\nopenmetrics_port = 9930\n\n[[databases]]\nname = \"shop\"\n\
                          host = \"127.0.0.1\"\nport = 5999\nuser = \"pg\"\npassword = \"pw\"\n";
    const USERS: &str = "[[users]]\nname = \"alice\"\ndatabase = \"shop\"\npassword = \"a\"\n\n\
                         [[users]]\nname = \"bob\"\ndatabase = \"shop\"\npassword = \"b\"\n";

    fn state() -> Arc<PoolerState> {
        state_with(CONFIG, USERS)
    }

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

    #[test]
    fn request_lines() {
        let metrics = Ok(Answer::Metrics { head: false });
        assert_eq!(parse_request_line("GET /metrics HTTP/1.1"), metrics);
        assert_eq!(parse_request_line("GET / HTTP/1.0"), metrics);
        assert_eq!(parse_request_line("GET /metrics?x=1 HTTP/1.1"), metrics);
        assert_eq!(
            parse_request_line("GET http://127.0.0.1:9090/metrics HTTP/1.1"),
            metrics
        );
        assert_eq!(
            parse_request_line("HEAD /metrics HTTP/1.1"),
            Ok(Answer::Metrics { head: true })
        );
        assert_eq!(
            parse_request_line("GET /other HTTP/1.1"),
            Ok(Answer::NotFound { head: false })
        );
        assert_eq!(
            parse_request_line("GET /metrics/ HTTP/1.1"),
            Ok(Answer::NotFound { head: false })
        );
        assert_eq!(
            parse_request_line("POST /metrics HTTP/1.1"),
            Ok(Answer::MethodNotAllowed)
        );
        assert_eq!(
            parse_request_line("DELETE /x HTTP/1.1"),
            Ok(Answer::MethodNotAllowed)
        );
        for garbage in [
            "",
            "GET",
            "GET /metrics",
            "GET /metrics HTTP/2",
            "GET  /metrics HTTP/1.1",
            "GET /metrics HTTP/1.1 extra",
            "G(T /metrics HTTP/1.1",
            "GET metrics HTTP/1.1",
        ] {
            assert_eq!(
                parse_request_line(garbage),
                Err(Answer::BadRequest),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn request_heads() {
        assert_eq!(examine(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"), None);
        assert_eq!(examine(b"GET /met"), None);
        assert_eq!(
            examine(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(Answer::Metrics { head: false })
        );
        assert_eq!(
            examine(b"GET /metrics HTTP/1.0\n\n"),
            Some(Answer::Metrics { head: false })
        );
        // A bad request line is answered without waiting for the rest.
        assert_eq!(examine(b"hello there\r\n"), Some(Answer::BadRequest));
        // Binary data (a Postgres startup packet) too.
        assert_eq!(
            examine(b"\0\0\0\x08\x04\xd2\x16\x2f"),
            Some(Answer::BadRequest)
        );
        let mut big = b"GET /metrics HTTP/1.1\r\n".to_vec();
        while big.len() < MAX_REQUEST_BYTES {
            big.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert_eq!(examine(&big), Some(Answer::TooLarge));
    }

    /// Starts `serve` on a free port and returns the address.
    async fn server(state: Arc<PoolerState>) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, state));
        addr
    }

    /// Sends `request` and returns everything the server answered.
    async fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
            .await
            .expect("no answer in time")
            .unwrap();
        String::from_utf8(answer).unwrap()
    }

    fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
        let head = response.split("\r\n\r\n").next()?;
        head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    #[tokio::test]
    async fn serves_metrics_over_http() {
        let state = state();
        let addr = server(state.clone()).await;

        let ok = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert_eq!(header(&ok, "content-type"), Some(CONTENT_TYPE));
        assert_eq!(header(&ok, "connection"), Some("close"));
        let body = ok.split_once("\r\n\r\n").unwrap().1;
        assert_eq!(
            header(&ok, "content-length"),
            Some(body.len().to_string().as_str())
        );
        assert!(body.contains("\npgdog_pool_transactions_total{"), "{body}");

        let root = exchange(addr, b"GET / HTTP/1.0\r\n\r\n").await;
        assert!(root.starts_with("HTTP/1.1 200 OK\r\n"), "{root}");

        let head = exchange(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.ends_with("\r\n\r\n"), "HEAD has no body: {head}");

        let missing = exchange(addr, b"GET /nope HTTP/1.1\r\n\r\n").await;
        assert!(
            missing.starts_with("HTTP/1.1 404 Not Found\r\n"),
            "{missing}"
        );

        let post = exchange(
            addr,
            b"POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
        )
        .await;
        assert!(
            post.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{post}"
        );
        assert_eq!(header(&post, "allow"), Some("GET, HEAD"));

        let garbage = exchange(addr, b"\0\0\0\x08\x04\xd2\x16\x2f").await;
        assert!(
            garbage.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{garbage}"
        );

        let big = vec![b'a'; MAX_REQUEST_BYTES + 100];
        let mut request = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        request.extend_from_slice(&big);
        let too_large = exchange(addr, &request).await;
        assert!(too_large.starts_with("HTTP/1.1 431 "), "{too_large}");

        // Still answering once shutdown began.
        state.begin_shutdown();
        let during = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
        assert!(during.starts_with("HTTP/1.1 200 OK\r\n"), "{during}");
        assert!(during.contains("\npgdog_shutting_down 1\n"), "{during}");
    }

    #[tokio::test]
    async fn a_silent_client_gets_408() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve_with(listener, state(), Duration::from_millis(200)));
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"GET /metrics HT").await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        let answer = String::from_utf8(answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    }

    #[tokio::test]
    async fn bind_uses_the_configured_port() {
        let free = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = CONFIG
            .replace(
                "openmetrics_port = 9930",
                &format!("openmetrics_port = {free}"),
            )
            .replace("[general]\n", "[general]\nhost = \"127.0.0.1\"\n");
        let listener = bind(&state_with(&config, USERS)).await.unwrap().unwrap();
        assert_eq!(listener.local_addr().unwrap().port(), free);
        // Taken now: the error names the address.
        let err = bind(&state_with(&config, USERS)).await.unwrap_err();
        assert!(
            err.to_string().contains(&format!("127.0.0.1:{free}")),
            "{err}"
        );

        let without = CONFIG.replace("openmetrics_port = 9930\n", "");
        assert!(bind(&state_with(&without, USERS)).await.unwrap().is_none());
    }
}
