//! `pgdog demo`, the README's first command, run as the real binary: the throwaway clusters,
//! pgdog in front of them and the workload; with `--reshard` the whole move with a cutover
//! under the workload and the summary (no client error, a finished cutover); the printed app
//! URL serves the rows; Ctrl-C (SIGINT) stops it with exit code 0 and removes every cluster
//! directory.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use integration::free_port;
use integration::pgdog_process::pgdog_binary;

/// Bound on the whole move (setup, copy of 320k rows, streaming, cutover) on a slow machine.
const MOVE_TIMEOUT: Duration = Duration::from_secs(300);

/// The demos run one at a time: each starts three clusters.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A running `pgdog demo`, its stdout and stderr in files; killed on drop if still running.
struct Demo {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Demo {
    fn start(args: &[&str]) -> Demo {
        let base = std::env::temp_dir().join(format!(
            "pgdog-demo-test-{}-{}",
            std::process::id(),
            free_port()
        ));
        let stdout = base.with_extension("stdout");
        let stderr = base.with_extension("stderr");
        let child = Command::new(pgdog_binary())
            .arg("demo")
            .args(args)
            .env_remove("PGDOG_CONFIG")
            .env_remove("PGDOG_USERS")
            .env_remove("PGDOG_ADMIN_PASSWORD")
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run pgdog demo: {e}"));
        Demo {
            child,
            stdout,
            stderr,
        }
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    fn describe(&self) -> String {
        format!(
            "--- stdout\n{}\n--- stderr (tail)\n{}",
            self.stdout(),
            tail(
                &std::fs::read_to_string(&self.stderr).unwrap_or_default(),
                60
            )
        )
    }

    /// Waits until stdout contains `text`; panics if the demo exits or `timeout` passes.
    async fn wait_for(&mut self, text: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.stdout();
            if out.contains(text) {
                return out;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the demo exited with {status} before printing {text:?}\n{}",
                    self.describe()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {text:?} after {timeout:?}\n{}",
                self.describe()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The directories of its clusters (`<temp>/pgdog-pg-<pid>-...`).
    fn cluster_dirs(&self) -> Vec<PathBuf> {
        let prefix = format!("pgdog-pg-{}-", self.child.id());
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| e.path())
            .collect();
        dirs.sort();
        dirs
    }

    /// Sends SIGINT (Ctrl-C) and waits for the exit; asserts exit code 0 and no cluster left.
    fn interrupt_and_check_cleanup(&mut self) {
        let dirs = self.cluster_dirs();
        assert_eq!(
            dirs.len(),
            3,
            "three clusters: {dirs:?}\n{}",
            self.describe()
        );
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the demo did not stop on SIGINT\n{}",
                self.describe()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            status.success(),
            "the demo exited with {status}\n{}",
            self.describe()
        );
        for dir in dirs {
            assert!(!dir.exists(), "{} was not removed", dir.display());
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            // SIGINT first, so the demo removes its clusters; then make sure.
            let _ = Command::new("kill")
                .args(["-INT", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.stdout);
        let _ = std::fs::remove_file(&self.stderr);
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The value after `label` on the last line that has it (trimmed).
fn last_value<'a>(out: &'a str, label: &str) -> Option<&'a str> {
    out.lines()
        .rev()
        .find_map(|line| line.trim().strip_prefix(label))
        .map(str::trim)
}

/// The URL in `psql "<url>"` after `label`.
fn psql_url(out: &str, label: &str) -> String {
    last_value(out, label)
        .and_then(|v| v.strip_prefix("psql \""))
        .and_then(|v| v.split('"').next())
        .unwrap_or_else(|| panic!("no {label:?} line in\n{out}"))
        .to_string()
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    tokio::spawn(connection);
    client
}

async fn count(client: &tokio_postgres::Client, table: &str) -> i64 {
    client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap_or_else(|e| panic!("count {table}: {e:?}"))
        .get(0)
}

/// Runs `pgdog demo --reshard <flags>` until its summary and checks the move, the app URL
/// afterwards and the cleanup on Ctrl-C.
async fn move_under_load(flags: &[&str]) {
    let _serial = SERIAL.lock().await;
    let port = free_port().to_string();
    let mut args = vec!["--reshard", "--port", &port];
    args.extend_from_slice(flags);
    let mut demo = Demo::start(&args);
    let out = demo
        .wait_for(
            "Press Ctrl-C to stop",
            MOVE_TIMEOUT + Duration::from_secs(60),
        )
        .await;
    let summary = out
        .split_once("Resharding finished")
        .map(|(_, summary)| summary)
        .unwrap_or_else(|| panic!("no summary\n{}", demo.describe()));
    if flags.is_empty() {
        assert!(
            !out.contains("RESHARD is not available"),
            "{}",
            demo.describe()
        );
    }
    assert_eq!(
        last_value(summary, "client errors:"),
        Some("0"),
        "{}",
        demo.describe()
    );
    let cutover = last_value(summary, "cutover:").unwrap_or_default();
    assert!(
        cutover.starts_with("finished"),
        "cutover: {cutover:?}\n{}",
        demo.describe()
    );
    let last_step = last_value(summary, "last step:").unwrap_or_default();
    assert!(last_step.starts_with("done:"), "{}", demo.describe());
    let transactions = last_value(summary, "transactions:").unwrap_or_default();
    assert!(
        !transactions.starts_with("0 committed before"),
        "the workload committed nothing before the cutover\n{}",
        demo.describe()
    );
    for shard in ["shard 0:", "shard 1:"] {
        let rows = last_value(summary, shard).unwrap_or_default();
        assert!(
            rows.contains(" customers, ") && !rows.starts_with("0 customers"),
            "{shard} {rows:?}\n{}",
            demo.describe()
        );
    }

    // The app URL now reaches the shards: every row is there, and the workload goes on.
    let app = connect(&psql_url(summary, "Connect through pgdog:")).await;
    assert_eq!(count(&app, "customers").await, 20_000);
    let orders = count(&app, "orders").await;
    assert!(orders > 300_000, "orders through pgdog: {orders}");
    integration::eventually(
        Duration::from_secs(30),
        "orders to grow after the cutover",
        || {
            let app = &app;
            async move { (count(app, "orders").await > orders).then_some(()) }
        },
    )
    .await;
    // The old database keeps its data under its new name.
    let old = connect(&psql_url(summary, "The old database:")).await;
    assert_eq!(count(&old, "customers").await, 20_000);
    drop((app, old));

    demo.interrupt_and_check_cleanup();
}

/// The README's first command: `pgdog demo --reshard` (RESHARD through the admin layer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_reshard_moves_the_data_under_load_and_cleans_up_on_ctrl_c() {
    move_under_load(&[]).await;
}

/// `pgdog demo --reshard --steps`: the same move as COPY_DATA, then CUTOVER.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_reshard_in_steps_moves_the_data_under_load_and_cleans_up_on_ctrl_c() {
    move_under_load(&["--steps"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_without_reshard_serves_the_source_and_cleans_up_on_ctrl_c() {
    let _serial = SERIAL.lock().await;
    let port = free_port();
    let mut demo = Demo::start(&["--port", &port.to_string()]);
    let out = demo
        .wait_for("Press Ctrl-C to stop", Duration::from_secs(120))
        .await;
    assert!(
        out.contains("type RESHARD demo demo_sharded pgdog_demo in the admin database"),
        "{out}"
    );
    let app = connect(&psql_url(&out, "Connect through pgdog:")).await;
    assert_eq!(count(&app, "customers").await, 20_000);
    let orders = count(&app, "orders").await;
    assert!(orders >= 300_000, "orders: {orders}");
    // The workload writes through pgdog.
    integration::eventually(Duration::from_secs(30), "the workload to write", || {
        let app = &app;
        async move { (count(app, "orders").await > orders).then_some(()) }
    })
    .await;
    drop(app);
    let admin = connect(&psql_url(&out, "The admin database:")).await;
    let tasks = admin.simple_query("SHOW TASKS").await.unwrap();
    assert!(!tasks.is_empty());
    drop(admin);
    let config_dir = PathBuf::from(last_value(&out, "Config files:").unwrap_or_default());
    assert!(config_dir.join("pgdog.toml").exists(), "{out}");
    demo.interrupt_and_check_cleanup();
    assert!(!config_dir.exists());
}
