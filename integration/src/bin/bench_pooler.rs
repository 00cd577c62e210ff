//! `bench_pooler`: pgbench straight to PostgreSQL, through PgBouncer and through pgdog, on one
//! throwaway cluster, printed as one markdown table (also written to `benches/results/pooler.md`).
//!
//! Run it with `bash benches/pooler.sh [flags]`, which installs PgBouncer and PostgreSQL if
//! missing and builds both binaries in release mode. Flags:
//!
//! - `--duration S`: seconds per pgbench run (default 15);
//! - `--rounds R`: repeats of the whole matrix, cells show the median (default 2);
//! - `--workers N`: pgdog worker threads (default 1);
//! - `--clients 10,100`: client counts, one table row each;
//! - `--quick`: `--duration 5 --rounds 1` unless those are given too;
//! - `--out PATH`: where to write the table (default `benches/results/pooler.md`).
//!
//! Noise between consecutive runs is large on small machines, so the targets of one row run back
//! to back (in an order rotated every row and round) and the whole matrix repeats `--rounds`
//! times. A run with failed transactions, errors or a non-zero exit is flagged in its cell and
//! explained under the table, never silently folded into the median.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use integration::tools::{pg_tool, pgbench, pgbench_number, ToolOutput};
use integration::{free_port, single_database_config, single_user_config, PgdogProcess};
use pgdog::local::{LocalCluster, LocalOptions};

/// Pool size of both poolers (server connections per user/database pair).
const POOL_SIZE: u32 = 10;
/// pgbench scale factor (10 branches, 1M accounts).
const SCALE: &str = "10";
/// pgbench threads per run.
const THREADS: &str = "2";
/// User, password and database everywhere.
const USER: &str = "postgres";
const PASSWORD: &str = "postgres";
const DATABASE: &str = "postgres";

/// One row group of the table: a pgbench workload.
struct Mode {
    name: &'static str,
    flags: &'static [&'static str],
    /// Whether PgBouncer can run it (1.18 has no named prepared statements in transaction mode).
    pgbouncer: bool,
}

const MODES: [Mode; 4] = [
    Mode {
        name: "select-only simple",
        flags: &["-S", "-M", "simple"],
        pgbouncer: true,
    },
    Mode {
        name: "select-only extended",
        flags: &["-S", "-M", "extended"],
        pgbouncer: true,
    },
    Mode {
        name: "select-only prepared",
        flags: &["-S", "-M", "prepared"],
        pgbouncer: false,
    },
    Mode {
        name: "tpcb-like simple",
        flags: &["-M", "simple"],
        pgbouncer: true,
    },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Direct,
    PgBouncer,
    Pgdog,
}

const TARGETS: [Target; 3] = [Target::Direct, Target::PgBouncer, Target::Pgdog];

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::PgBouncer => "pgbouncer",
            Target::Pgdog => "pgdog",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Set by SIGINT/SIGTERM: stop after the current pgbench run and tear everything down.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(signal, handler) };
    }
}

fn interrupted() -> Result<(), String> {
    match INTERRUPTED.load(Ordering::SeqCst) {
        true => Err("interrupted; tearing everything down".into()),
        false => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// Command line

#[derive(Debug)]
struct Args {
    duration: u64,
    rounds: usize,
    workers: usize,
    clients: Vec<u32>,
    out: PathBuf,
}

const USAGE: &str = "usage: bench_pooler [--duration SECS] [--rounds R] [--workers N] \
[--clients 10,100] [--quick] [--out PATH]";

fn parse_args(argv: &[String]) -> Result<Args, String> {
    let (mut duration, mut rounds, mut workers, mut clients, mut out) = (None, None, 1, None, None);
    let mut quick = false;
    let mut i = 0;
    while i < argv.len() {
        let arg = argv[i].as_str();
        // Accept both `--flag value` and `--flag=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_string())),
            _ => (arg, None),
        };
        let mut value = || -> Result<String, String> {
            if let Some(value) = inline.clone() {
                return Ok(value);
            }
            i += 1;
            argv.get(i)
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag {
            "--duration" => duration = Some(positive(flag, &value()?)?),
            "--rounds" => rounds = Some(positive(flag, &value()?)? as usize),
            "--workers" => workers = positive(flag, &value()?)? as usize,
            "--clients" => {
                let list = value()?;
                let parsed: Result<Vec<u32>, String> = list
                    .split(',')
                    .map(|c| positive("--clients", c.trim()).map(|c| c as u32))
                    .collect();
                clients = Some(parsed?);
            }
            "--out" => out = Some(PathBuf::from(value()?)),
            "--quick" => quick = true,
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
        i += 1;
    }
    let default_out = workspace_root().join("benches/results/pooler.md");
    Ok(Args {
        duration: duration.unwrap_or(if quick { 5 } else { 15 }),
        rounds: rounds.unwrap_or(if quick { 1 } else { 2 }),
        workers,
        clients: clients.unwrap_or_else(|| vec![10, 100]),
        out: out.unwrap_or(default_out),
    })
}

fn positive(flag: &str, text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(n) if n > 0 && n <= u32::MAX as u64 => Ok(n),
        _ => Err(format!(
            "{flag}: expected a positive whole number, got {text:?}"
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// PgBouncer

/// A running PgBouncer with its own temp dir; killed and the dir removed on drop.
struct PgBouncer {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
}

impl PgBouncer {
    /// Writes an ini for `server_port` into a new temp dir and starts `binary` on it, as the OS
    /// user `pgdog_test` when we are root (PgBouncer refuses to run as root).
    fn start(binary: &Path, server_port: u16) -> Result<PgBouncer, String> {
        let dir =
            std::env::temp_dir().join(format!("pgdog-bench-pgbouncer-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let port = free_port();
        // From here on an early return drops `bouncer`, which removes the dir.
        let mut bouncer = PgBouncer {
            child: None,
            dir,
            port,
        };
        let dir = bouncer.dir.clone();
        let ini = format!(
            "[databases]\n{DATABASE} = host=127.0.0.1 port={server_port} dbname={DATABASE}\n\n\
             [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = scram-sha-256\nauth_file = {userlist}\npool_mode = transaction\n\
             default_pool_size = {POOL_SIZE}\nmin_pool_size = 0\nreserve_pool_size = 0\n\
             max_client_conn = 1000\nserver_tls_sslmode = disable\n\
             log_connections = 0\nlog_disconnections = 0\nlogfile = {log}\n",
            userlist = dir.join("userlist.txt").display(),
            log = dir.join("pgbouncer.log").display(),
        );
        let files = [
            ("pgbouncer.ini", ini),
            ("userlist.txt", format!("\"{USER}\" \"{PASSWORD}\"\n")),
        ];
        for (name, text) in files {
            let path = dir.join(name);
            fs::write(&path, text).map_err(|e| format!("write {}: {e}", path.display()))?;
        }
        let run_as = server_user()?;
        if let Some((uid, gid)) = run_as {
            for path in [
                dir.clone(),
                dir.join("pgbouncer.ini"),
                dir.join("userlist.txt"),
            ] {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                    .map_err(|e| format!("chown {} to pgdog_test: {e}", path.display()))?;
            }
        }
        let out_path = dir.join("pgbouncer.out");
        let out =
            File::create(&out_path).map_err(|e| format!("create {}: {e}", out_path.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("dup {}: {e}", out_path.display()))?;
        let mut cmd = Command::new(binary);
        cmd.arg(dir.join("pgbouncer.ini"))
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        if let Some((uid, gid)) = run_as {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid).gid(gid);
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        bouncer.child = Some(child);
        bouncer.wait_ready()?;
        Ok(bouncer)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                return Err(format!(
                    "pgbouncer exited with {status} at startup:\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "pgbouncer did not listen on 127.0.0.1:{} within 20 s:\n{}",
            self.port,
            self.log()
        ))
    }

    /// Its log file and its stdout/stderr.
    fn log(&self) -> String {
        let read = |name: &str| fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!("{}{}", read("pgbouncer.out"), read("pgbouncer.log"))
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// (uid, gid) of the unprivileged user LocalCluster runs Postgres as when we are root (PgBouncer
/// refuses to run as root), `None` when we are not root.
fn server_user() -> Result<Option<(u32, u32)>, String> {
    pgdog::local::server_os_user().map_err(|e| e.to_string())
}

/// `pgbouncer` on PATH or in the sbin directories (not on a normal user's PATH on Debian).
fn find_pgbouncer() -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join("pgbouncer");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(
        "pgbouncer not found on PATH or in /usr/sbin; install it (apt-get install pgbouncer) \
         or run benches/pooler.sh, which does"
            .into(),
    )
}

// ---------------------------------------------------------------------------------------------
// pgbench runs

/// The outcome of one pgbench run.
#[derive(Debug, Clone)]
struct Run {
    round: usize,
    tps: Option<f64>,
    latency_ms: Option<f64>,
    failed: u64,
    code: i32,
    errors: Vec<String>,
}

impl Run {
    fn parse(round: usize, output: &ToolOutput) -> Run {
        let all = format!("{}\n{}", output.stdout, output.stderr);
        let tps = all.lines().find_map(|line| {
            let rest = line.trim().strip_prefix("tps = ")?;
            rest.contains("without initial connection time")
                .then(|| rest.split_whitespace().next()?.parse().ok())?
        });
        let latency_ms = pgbench_number(&all, "latency average = ");
        let failed = pgbench_number(&all, "number of failed transactions:").unwrap_or(0.0) as u64;
        let mut errors: Vec<String> = Vec::new();
        for line in all.lines().map(str::trim) {
            let lower = line.to_ascii_lowercase();
            let bad = ["error", "fatal", "abort", "could not", "panic"];
            if bad.iter().any(|word| lower.contains(word)) && !errors.iter().any(|e| e == line) {
                errors.push(line.to_string());
            }
        }
        Run {
            round,
            tps,
            latency_ms,
            failed,
            code: output.code,
            errors,
        }
    }

    /// Why this run is not clean, if it is not.
    fn problem(&self) -> Option<String> {
        let mut why = Vec::new();
        if self.code != 0 {
            why.push(format!("pgbench exit code {}", self.code));
        }
        if self.failed > 0 {
            why.push(format!("{} failed transactions", self.failed));
        }
        if self.tps.is_none() {
            why.push("no tps in the output".into());
        }
        if !self.errors.is_empty() {
            let shown: Vec<String> = self
                .errors
                .iter()
                .take(3)
                .map(|e| format!("`{e}`"))
                .collect();
            let more = self.errors.len().saturating_sub(3);
            let more = if more > 0 {
                format!(" (+{more} more lines)")
            } else {
                String::new()
            };
            why.push(format!("{}{more}", shown.join("; ")));
        }
        (!why.is_empty()).then(|| why.join("; "))
    }
}

fn bench_args(clients: u32, duration: u64, mode: &Mode) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "-c".into(),
        clients.to_string(),
        "-j".into(),
        THREADS.into(),
    ];
    args.extend(["-T".into(), duration.to_string(), "--no-vacuum".into()]);
    args.extend(mode.flags.iter().map(|f| f.to_string()));
    args
}

fn run_pgbench(port: u16, args: &[String]) -> ToolOutput {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    pgbench(port, USER, PASSWORD, DATABASE, &args)
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

// ---------------------------------------------------------------------------------------------
// The benchmark

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse_args(&argv) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    install_signal_handlers();
    match bench(&args, &argv) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("bench_pooler: error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn bench(args: &Args, argv: &[String]) -> Result<(), String> {
    let pgdog_bin = pgdog_binary()?;
    let pgbouncer_bin = find_pgbouncer()?;
    let pgbench_bin = pg_tool("pgbench");
    let version = Command::new(&pgbench_bin).arg("--version").output();
    if !version.as_ref().is_ok_and(|o| o.status.success()) {
        return Err(format!(
            "cannot run {pgbench_bin} (is PostgreSQL installed and pg_config on PATH?): {version:?}"
        ));
    }

    eprintln!("starting PostgreSQL (max_connections 400)...");
    let options = LocalOptions {
        max_connections: 400,
        ..Default::default()
    };
    // Declared first so it drops last, after the poolers in front of it.
    let cluster =
        LocalCluster::start(options).map_err(|e| format!("cannot start PostgreSQL: {e}"))?;
    let pg_version = cluster
        .psql(DATABASE, "SHOW server_version")
        .map_err(|e| format!("SHOW server_version: {e}"))?;

    eprintln!("pgbench -i -s {SCALE} on port {}...", cluster.port());
    let init = pgbench(
        cluster.port(),
        USER,
        PASSWORD,
        DATABASE,
        &["-i", "-s", SCALE, "-q"],
    );
    if init.code != 0 {
        return Err(format!(
            "pgbench -i failed (exit {}):\n{}{}",
            init.code, init.stdout, init.stderr
        ));
    }
    interrupted()?;

    eprintln!("starting pgbouncer ({})...", pgbouncer_bin.display());
    let bouncer = PgBouncer::start(&pgbouncer_bin, cluster.port())?;
    let bouncer_version = first_line(&pgbouncer_bin, &["--version"]);

    eprintln!(
        "starting pgdog ({}, {} worker(s))...",
        pgdog_bin.display(),
        args.workers
    );
    let pgdog_port = free_port();
    let general = format!(
        "workers = {}\ndefault_pool_size = {POOL_SIZE}\npooler_mode = \"transaction\"",
        args.workers
    );
    let config = single_database_config(&cluster, DATABASE, pgdog_port, &general);
    let pgdog = PgdogProcess::start(&config, &single_user_config(DATABASE, ""), pgdog_port);

    let ports = [cluster.port(), bouncer.port, pgdog.port()];

    // The last lines of a target's log, for error messages.
    let target_log = |target: Target| {
        let (name, log) = match target {
            Target::PgBouncer => ("pgbouncer", tail(&bouncer.log(), 30)),
            Target::Pgdog => ("pgdog", tail(&pgdog.log(), 30)),
            Target::Direct => ("postgres", cluster.log_tail(30)),
        };
        format!("{name} log (last lines):\n{log}")
    };

    // Warm up each target (pools, caches) and check it works before measuring anything.
    let warmup = bench_args(10, 3, &MODES[0]);
    for target in TARGETS {
        interrupted()?;
        let output = run_pgbench(ports[target.index()], &warmup);
        let run = Run::parse(0, &output);
        if let Some(problem) = run.problem() {
            return Err(format!(
                "warm-up through {} failed: {problem}\n{}{}\n{}",
                target.name(),
                output.stdout,
                output.stderr,
                target_log(target)
            ));
        }
    }

    let load_before = load_average();
    // results[mode][clients][target]: the runs of every round.
    let mut results =
        vec![vec![vec![Vec::<Run>::new(); TARGETS.len()]; args.clients.len()]; MODES.len()];
    let started = Instant::now();
    for round in 0..args.rounds {
        for (m, mode) in MODES.iter().enumerate() {
            for (c, &clients) in args.clients.iter().enumerate() {
                let row = m * args.clients.len() + c;
                let mut order = TARGETS;
                order.rotate_left((round + row) % TARGETS.len());
                for target in order {
                    if target == Target::PgBouncer && !mode.pgbouncer {
                        continue;
                    }
                    interrupted()?;
                    let output = run_pgbench(
                        ports[target.index()],
                        &bench_args(clients, args.duration, mode),
                    );
                    let run = Run::parse(round + 1, &output);
                    let shown = match (run.tps, run.latency_ms) {
                        (Some(tps), Some(lat)) => format!("{tps:.0} tps, {lat:.3} ms"),
                        _ => "no result".into(),
                    };
                    let problem = run.problem().map_or(String::new(), |p| format!("  !! {p}"));
                    eprintln!(
                        "[round {}/{} {:>4.0}s] {:<21} c={:<4} {:<9} {shown}{problem}",
                        round + 1,
                        args.rounds,
                        started.elapsed().as_secs_f64(),
                        mode.name,
                        clients,
                        target.name(),
                    );
                    let failed = run.problem().is_some();
                    results[m][c][target.index()].push(run);
                    // A target that died (crash, or killed from outside) would fail every later
                    // run: stop with its log instead.
                    if failed && !listening(ports[target.index()]) {
                        return Err(format!(
                            "{} no longer accepts connections on port {}; stopping the bench.\n{}",
                            target.name(),
                            ports[target.index()],
                            target_log(target)
                        ));
                    }
                }
            }
        }
    }

    let command = std::env::var("BENCH_COMMAND")
        .ok()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| format!("bench_pooler {}", argv.join(" ")));
    let machine = Machine {
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu: cpu_model(),
        pg_version,
        bouncer_version,
        pgdog_rev: git_describe(),
        load: (load_before, load_average()),
    };
    let report = render(args, &machine, &command, &results);
    println!("{report}");

    if let Some(dir) = args.out.parent() {
        fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    }
    fs::write(&args.out, &report).map_err(|e| format!("write {}: {e}", args.out.display()))?;
    eprintln!("wrote {}", args.out.display());

    let log = pgdog.log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("WARN"))
        .collect();
    if !warnings.is_empty() {
        eprintln!(
            "pgdog logged {} WARN/ERROR line(s); the last ones:",
            warnings.len()
        );
        eprintln!("{}", tail(&warnings.join("\n"), 10));
    }
    // pgdog, bouncer and cluster drop here, in that order.
    Ok(())
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
fn listening(port: u16) -> bool {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
}

/// The last `lines` lines of `text`, without terminal colour codes (`ESC [ ... m`).
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    let text = all[all.len().saturating_sub(lines)..].join("\n");
    let mut chars = text.chars().peekable();
    while let Some(ch) = chars.next() {
        if ch == '\x1b' && chars.peek() == Some(&'[') {
            // Skip to the sequence's final letter.
            for next in chars.by_ref() {
                if next.is_ascii_alphabetic() {
                    break;
                }
            }
            continue;
        }
        out.push(ch);
    }
    out
}

/// The pgdog binary: `$PGDOG_BIN`, else `pgdog` beside this binary (both in target/release).
/// Sets `PGDOG_BIN` so [`PgdogProcess`] uses it rather than building a debug one.
fn pgdog_binary() -> Result<PathBuf, String> {
    let path = match std::env::var_os("PGDOG_BIN").filter(|p| !p.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => std::env::current_exe()
            .map_err(|e| format!("cannot locate this binary to find pgdog beside it: {e}"))?
            .with_file_name("pgdog"),
    };
    if !path.is_file() {
        return Err(format!(
            "no pgdog binary at {}; build it (cargo build --release -p pgdog) or set PGDOG_BIN",
            path.display()
        ));
    }
    std::env::set_var("PGDOG_BIN", &path);
    Ok(path)
}

fn first_line(program: &Path, args: &[&str]) -> String {
    match Command::new(program).args(args).output() {
        Ok(out) => String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("unknown")
            .trim()
            .to_string(),
        Err(_) => "unknown".into(),
    }
}

/// The 1, 5 and 15-minute load averages, from /proc/loadavg.
fn load_average() -> String {
    let text = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let fields: Vec<&str> = text.split_whitespace().take(3).collect();
    match fields.len() {
        3 => fields.join(" "),
        _ => "unknown".into(),
    }
}

fn cpu_model() -> String {
    let text = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    text.lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// The workspace root (the parent of this crate's directory).
fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

fn git_describe() -> String {
    let root = workspace_root();
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["describe", "--always", "--dirty"])
        .output();
    match out {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        _ => "unknown".into(),
    }
}

struct Machine {
    cores: usize,
    cpu: String,
    pg_version: String,
    bouncer_version: String,
    pgdog_rev: String,
    /// 1/5/15-minute load averages before and after the runs.
    load: (String, String),
}

/// The markdown report: header lines, the table and notes on runs that were not clean.
fn render(args: &Args, machine: &Machine, command: &str, results: &[Vec<Vec<Vec<Run>>>]) -> String {
    let mut notes: Vec<String> = Vec::new();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Pooler benchmark: pgbench direct vs PgBouncer vs pgdog\n"
    );
    let _ = writeln!(
        out,
        "Machine: {} cores (nproc), {}; PostgreSQL {}; {}; pgdog {} with {} worker(s); \
         both poolers: transaction mode, pool size {POOL_SIZE}; pgbench scale {SCALE}, \
         -j {THREADS}, {} s per run, {} round(s), cells are the median TPS (median average latency, ms).\n",
        machine.cores,
        machine.cpu,
        machine.pg_version,
        machine.bouncer_version,
        machine.pgdog_rev,
        args.workers,
        args.duration,
        args.rounds,
    );
    let _ = writeln!(
        out,
        "Load average (1/5/15 min) before the runs: {}; after: {} (other work on the machine adds noise).\n",
        machine.load.0, machine.load.1
    );
    let _ = writeln!(out, "Command: `{command}`; each run: `pgbench -h 127.0.0.1 -p PORT -U {USER} -c CLIENTS -j {THREADS} -T {} --no-vacuum MODE {DATABASE}`\n", args.duration);
    let _ = writeln!(
        out,
        "| workload | clients | direct TPS (lat ms) | pgbouncer TPS (lat ms) | pgdog TPS (lat ms) | pgdog / pgbouncer |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    for (m, mode) in MODES.iter().enumerate() {
        for (c, &clients) in args.clients.iter().enumerate() {
            let mut cells = Vec::new();
            let mut tps = [None; 3];
            for target in TARGETS {
                if target == Target::PgBouncer && !mode.pgbouncer {
                    cells.push("n/a".to_string());
                    continue;
                }
                let runs = &results[m][c][target.index()];
                let mut marks = Vec::new();
                for run in runs {
                    if let Some(problem) = run.problem() {
                        notes.push(format!(
                            "{}, {}, {clients} clients, round {}: {problem}",
                            target.name(),
                            mode.name,
                            run.round
                        ));
                        marks.push(format!("[{}]", notes.len()));
                    }
                }
                let median_tps = median(runs.iter().filter_map(|r| r.tps).collect());
                let median_lat = median(runs.iter().filter_map(|r| r.latency_ms).collect());
                tps[target.index()] = median_tps;
                let mut cell = match (median_tps, median_lat) {
                    (Some(t), Some(l)) => format!("{t:.0} ({l:.2})"),
                    (Some(t), None) => format!("{t:.0} (?)"),
                    _ => "error".to_string(),
                };
                if !marks.is_empty() {
                    cell = format!("{cell} ⚠{}", marks.join(""));
                }
                cells.push(cell);
            }
            let ratio = match (tps[Target::Pgdog.index()], tps[Target::PgBouncer.index()]) {
                (Some(d), Some(b)) if b > 0.0 => format!("{:.2}x", d / b),
                _ => "n/a".to_string(),
            };
            let _ = writeln!(
                out,
                "| {} | {clients} | {} | {} | {} | {ratio} |",
                mode.name, cells[0], cells[1], cells[2]
            );
        }
    }
    let _ = writeln!(
        out,
        "\npgbouncer n/a: PgBouncer {} cannot keep named prepared statements in transaction mode.",
        machine.bouncer_version.trim_start_matches("PgBouncer ")
    );
    if notes.is_empty() {
        let _ = writeln!(
            out,
            "All runs were clean: no failed transactions, no errors, exit code 0."
        );
    } else {
        let _ = writeln!(
            out,
            "\nRuns that were not clean (⚠; their TPS, if any, is still in the median):\n"
        );
        for (i, note) in notes.iter().enumerate() {
            let _ = writeln!(out, "{}. {note}", i + 1);
        }
    }
    out
}
