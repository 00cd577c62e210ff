//! The OpenMetrics endpoint of a real pgdog, scraped with the real `curl`: the pool counters
//! follow the traffic, histograms are well-formed, and scraping keeps working while pgdog
//! drains clients at shutdown.

use std::collections::BTreeMap;
use std::time::Duration;

use integration::{eventually, free_port, Setup};

/// Generous bound for things that should take well under a second.
const WAIT: Duration = Duration::from_secs(20);

/// The prefix of every metric name (no `openmetrics_namespace` in these tests).
const P: &str = "pgdog_";

/// What `curl` got.
struct Scrape {
    status: u16,
    content_type: String,
    body: String,
}

/// `GET http://127.0.0.1:{port}{path}` with curl; `None` when curl could not connect.
async fn curl(port: u16, path: &str) -> Option<Scrape> {
    let url = format!("http://127.0.0.1:{port}{path}");
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(["--silent", "--show-error", "--include", "--max-time", "5"])
            .arg(&url)
            .output()
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("cannot run curl: {e}"));
    if !output.status.success() {
        eprintln!(
            "curl failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        return None;
    }
    let text = String::from_utf8(output.stdout).expect("the answer is UTF-8");
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {text:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let content_type = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    Some(Scrape {
        status,
        content_type,
        body: body.to_string(),
    })
}

/// Scrapes `/metrics`, waiting for the endpoint to come up; panics unless the answer is 200.
async fn scrape(setup: &Setup, port: u16) -> String {
    let scrape = eventually(WAIT, "the metrics endpoint to answer", || {
        curl(port, "/metrics")
    })
    .await;
    assert_eq!(scrape.status, 200, "{}\n{}", scrape.body, setup.pgdog.log());
    assert_eq!(
        scrape.content_type,
        "text/plain; version=0.0.4; charset=utf-8"
    );
    scrape.body
}

/// One sample: metric name, labels, value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the sample lines of the text format (comments skipped).
fn parse(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value in {line:?}"));
        let value = match value {
            "+Inf" => f64::INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}').unwrap())),
            None => (series, BTreeMap::new()),
        };
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    samples
}

/// `a="x",b="y"` (values escaped as the text format says).
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut chars = text.chars().peekable();
    while chars.peek().is_some() {
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        assert_eq!(chars.next(), Some('"'), "label {key} in {text:?}");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(c) => value.push(c),
                    None => panic!("dangling escape in {text:?}"),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        labels.insert(key, value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    labels
}

/// The value of `name` for the pool of database `app` (the only pool in these tests).
fn pool_value(samples: &[Sample], name: &str) -> f64 {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == name && s.labels.get("database").map(String::as_str) == Some("app"))
        .collect();
    assert_eq!(found.len(), 1, "one {name} sample for the pool: {found:?}");
    let labels = &found[0].labels;
    assert_eq!(labels["user"], "postgres");
    assert_eq!(labels["role"], "primary");
    assert_eq!(labels["shard"], "0");
    assert_eq!(labels["host"], "127.0.0.1");
    for key in ["port", "pool_id"] {
        assert!(labels[key].parse::<u64>().is_ok(), "{key}: {labels:?}");
    }
    found[0].value
}

/// Checks every histogram family: buckets in increasing `le` order, cumulative counts, `+Inf`
/// last and equal to `_count`, a `_sum` per series. Returns the families seen.
fn check_histograms(text: &str, samples: &[Sample]) -> Vec<String> {
    let families: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" histogram"))
        .map(str::to_string)
        .collect();
    for family in &families {
        // Series by their labels without `le`.
        let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for sample in samples
            .iter()
            .filter(|s| s.name == format!("{family}_bucket"))
        {
            let mut labels = sample.labels.clone();
            let le = labels.remove("le").expect("bucket without le");
            let le: f64 = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap_or_else(|_| panic!("bad le {le:?}"))
            };
            series
                .entry(format!("{labels:?}"))
                .or_default()
                .push((le, sample.value));
        }
        assert!(!series.is_empty(), "{family} has no buckets");
        for (labels, buckets) in &series {
            assert!(buckets.len() > 1, "{family}{labels}: {buckets:?}");
            for pair in buckets.windows(2) {
                assert!(
                    pair[0].0 < pair[1].0,
                    "{family}{labels}: le order {buckets:?}"
                );
                assert!(
                    pair[0].1 <= pair[1].1,
                    "{family}{labels}: buckets not cumulative {buckets:?}"
                );
            }
            let (last_le, inf) = *buckets.last().unwrap();
            assert_eq!(last_le, f64::INFINITY, "{family}{labels}: +Inf last");
            let find = |suffix: &str| {
                samples
                    .iter()
                    .find(|s| {
                        s.name == format!("{family}{suffix}")
                            && format!("{:?}", s.labels) == *labels
                    })
                    .unwrap_or_else(|| panic!("{family}{suffix}{labels} missing"))
                    .value
            };
            assert_eq!(
                find("_count"),
                inf,
                "{family}{labels}: _count is the +Inf bucket"
            );
            assert!(find("_sum") >= 0.0);
        }
    }
    families
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_follow_the_traffic_and_histograms_are_well_formed() {
    let port = free_port();
    let setup = Setup::new(&format!("openmetrics_port = {port}"), "");

    // Before any traffic: the endpoint answers, the pool is listed, other paths are 404.
    let text = scrape(&setup, port).await;
    let samples = parse(&text);
    assert_eq!(
        pool_value(&samples, &format!("{P}pool_transactions_total")),
        0.0
    );
    assert!(text.contains(&format!("\n{P}up 1\n")), "{text}");
    let missing = curl(port, "/nope").await.expect("curl /nope");
    assert_eq!(missing.status, 404);
    let root = curl(port, "/").await.expect("curl /");
    assert_eq!(root.status, 200);

    const SIMPLE: usize = 5;
    const EXTENDED: usize = 5;
    let client = setup.connect().await;
    for i in 0..SIMPLE {
        client
            .simple_query(&format!("SELECT {i}"))
            .await
            .unwrap_or_else(|e| panic!("simple query {i}: {e}"));
    }
    for i in 0..EXTENDED {
        let row = client
            .query_one("SELECT $1::int4", &[&(i as i32)])
            .await
            .unwrap_or_else(|e| panic!("extended query {i}: {e}"));
        assert_eq!(row.get::<_, i32>(0), i as i32);
    }
    let ran = (SIMPLE + EXTENDED) as f64;

    // The counters are fed as transactions finish; poll until the scrape shows them.
    let (text, samples) = eventually(
        Duration::from_secs(10),
        "the pool's transaction and query counters to count the queries run",
        || async {
            let text = scrape(&setup, port).await;
            let samples = parse(&text);
            let xacts = pool_value(&samples, &format!("{P}pool_transactions_total"));
            let queries = pool_value(&samples, &format!("{P}pool_queries_total"));
            if xacts >= ran && queries >= ran {
                Some((text, samples))
            } else {
                eprintln!("not yet: transactions {xacts}, queries {queries}, want >= {ran}");
                None
            }
        },
    )
    .await;

    assert!(
        pool_value(
            &samples,
            &format!("{P}pool_server_connections_opened_total")
        ) >= 1.0
    );
    assert!(pool_value(&samples, &format!("{P}pool_server_assignments_total")) >= 1.0);
    assert!(pool_value(&samples, &format!("{P}pool_received_bytes_total")) > 0.0);
    assert!(pool_value(&samples, &format!("{P}pool_sent_bytes_total")) > 0.0);
    assert_eq!(pool_value(&samples, &format!("{P}pool_banned")), 0.0);
    assert_eq!(
        pool_value(&samples, &format!("{P}pool_server_connections_max")),
        10.0
    );
    assert!(pool_value(&samples, &format!("{P}pool_server_connections")) >= 1.0);
    for family in ["query_duration_seconds", "transaction_duration_seconds"] {
        let timed = pool_value(&samples, &format!("{P}pool_{family}_count"));
        assert!(timed >= ran, "{family}: {timed} timed, {ran} run");
    }
    assert!(pool_value(&samples, &format!("{P}pool_connect_duration_seconds_count")) >= 1.0);

    let families = check_histograms(&text, &samples);
    for family in [
        "pool_query_duration_seconds",
        "pool_transaction_duration_seconds",
        "pool_checkout_wait_seconds",
        "pool_connect_duration_seconds",
    ] {
        assert!(
            families.contains(&format!("{P}{family}")),
            "{family}: {families:?}"
        );
    }
    // Each family is declared once.
    let mut types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE ")).collect();
    let declared = types.len();
    types.sort();
    types.dedup();
    assert_eq!(types.len(), declared, "a family declared twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scraping_works_while_pgdog_drains_clients() {
    let port = free_port();
    let mut setup = Setup::new(
        &format!("openmetrics_port = {port}\nshutdown_timeout = 10000"),
        "",
    );
    let text = scrape(&setup, port).await;
    assert!(text.contains(&format!("\n{P}shutting_down 0\n")), "{text}");

    // An open transaction keeps the shutdown drain waiting.
    let holder = setup.connect().await;
    holder.batch_execute("BEGIN").await.unwrap();
    holder.query_one("SELECT 1", &[]).await.unwrap();

    setup.pgdog.signal(libc::SIGINT);
    eventually(WAIT, "pgdog to start shutting down", || async {
        setup.pgdog.log().contains("shutting down").then_some(())
    })
    .await;

    let text = scrape(&setup, port).await;
    assert!(
        text.contains(&format!("\n{P}shutting_down 1\n")),
        "the scrape should show the shutdown\n{text}"
    );
    let samples = parse(&text);
    assert_eq!(
        pool_value(&samples, &format!("{P}pool_server_connections_active")),
        1.0,
        "the held transaction's server is checked out"
    );
    assert!(
        !setup.pgdog.log().contains("pgdog stopped"),
        "pgdog stopped before the transaction ended\n{}",
        setup.pgdog.log()
    );

    // The transaction still works, and ending it lets pgdog finish the drain and exit.
    holder.query_one("SELECT 2", &[]).await.unwrap();
    holder.batch_execute("COMMIT").await.unwrap();
    let code = setup.pgdog.wait_exit(WAIT);
    assert_eq!(code, Some(0), "pgdog exit code\n{}", setup.pgdog.log());
    // The process exit ends the endpoint.
    assert!(
        curl(port, "/metrics").await.is_none(),
        "metrics answered after exit"
    );
}
