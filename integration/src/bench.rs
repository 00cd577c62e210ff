//! Plumbing shared by the benchmark binaries (`bench_pooler`, `bench_sharding`): finding the
//! release pgdog binary, describing the machine for a report header, Ctrl-C handling, command
//! line flags, and reading one pgbench run's numbers and problems out of its output.

use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::tools::{pgbench_number, ToolOutput};

/// The pgdog binary: `$PGDOG_BIN`, else `pgdog` beside the running binary (both in
/// target/release). Sets `PGDOG_BIN` so [`crate::PgdogProcess`] uses it rather than building a
/// debug one.
pub fn pgdog_release_binary() -> Result<PathBuf, String> {
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

/// The first line `program args` prints on stdout (e.g. its version), or `"unknown"`.
pub fn first_line(program: &Path, args: &[&str]) -> String {
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
pub fn load_average() -> String {
    let text = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let fields: Vec<&str> = text.split_whitespace().take(3).collect();
    match fields.len() {
        3 => fields.join(" "),
        _ => "unknown".into(),
    }
}

/// The CPU model name from /proc/cpuinfo.
pub fn cpu_model() -> String {
    let text = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    text.lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// The number of CPUs this process may use (0 if unknown).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// `git describe --always --dirty` of the workspace, or `"unknown"`.
pub fn git_describe() -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(workspace_root())
        .args(["describe", "--always", "--dirty"])
        .output();
    match out {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        _ => "unknown".into(),
    }
}

/// The command to show in a report: `$BENCH_COMMAND` (set by the benches/*.sh wrappers), else
/// `binary` and the arguments it got.
pub fn bench_command(binary: &str, argv: &[String]) -> String {
    std::env::var("BENCH_COMMAND")
        .ok()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| format!("{binary} {}", argv.join(" ")))
}

/// Writes a report, creating its directory.
pub fn write_report(path: &Path, text: &str) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    }
    fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()))
}

/// Set by SIGINT/SIGTERM: stop after the current run and tear everything down.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// The `main` of every bench binary: parses the arguments with `parse` (a bad one prints its
/// message and exits 2), installs the signal handlers, then runs `run` and reports its error
/// as `<name>: error: ...` (exit 1).
pub fn bench_main<A>(
    name: &str,
    parse: impl FnOnce(&[String]) -> Result<A, String>,
    run: impl FnOnce(&A, &[String]) -> Result<(), String>,
) -> std::process::ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse(&argv) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return std::process::ExitCode::from(2);
        }
    };
    install_signal_handlers();
    match run(&args, &argv) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{name}: error: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Makes SIGINT and SIGTERM set a flag that [`interrupted`] reports, instead of killing the
/// process (which would leave clusters and poolers running).
pub fn install_signal_handlers() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(signal, handler) };
    }
}

/// An error once SIGINT or SIGTERM arrived, so that `?` unwinds to the drops that clean up.
pub fn interrupted() -> Result<(), String> {
    match INTERRUPTED.load(Ordering::SeqCst) {
        true => Err("interrupted; tearing everything down".into()),
        false => Ok(()),
    }
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub fn listening(port: u16) -> bool {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
}

/// The last `lines` lines of `text`, without terminal colour codes (`ESC [ ... m`).
pub fn tail(text: &str, lines: usize) -> String {
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

/// The median, or `None` for no values.
pub fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

/// A whole number from 1 to `u32::MAX`, or an error naming `flag`.
pub fn positive(flag: &str, text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(n) if n > 0 && n <= u32::MAX as u64 => Ok(n),
        _ => Err(format!(
            "{flag}: expected a positive whole number, got {text:?}"
        )),
    }
}

/// A comma-separated list of [`positive`] numbers.
pub fn positive_list(flag: &str, text: &str) -> Result<Vec<u32>, String> {
    text.split(',')
        .map(|c| positive(flag, c.trim()).map(|c| c as u32))
        .collect()
}

/// Splits a command line into `(flag, value)` pairs. Flags in `with_value` take a value, as
/// `--flag value` or `--flag=value`; other flags have `None`. `-h`/`--help`, a missing value
/// or a value given to a flag that takes none is an error carrying `usage`.
pub fn flags(
    argv: &[String],
    with_value: &[&str],
    usage: &str,
) -> Result<Vec<(String, Option<String>)>, String> {
    let mut out = Vec::new();
    let mut args = argv.iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_string())),
            _ => (arg.as_str(), None),
        };
        if flag == "-h" || flag == "--help" {
            return Err(usage.to_string());
        }
        if !with_value.contains(&flag) {
            if inline.is_some() {
                return Err(format!("{flag} takes no value\n{usage}"));
            }
            out.push((flag.to_string(), None));
            continue;
        }
        let value = match inline {
            Some(value) => value,
            None => args
                .next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value\n{usage}"))?,
        };
        out.push((flag.to_string(), Some(value)));
    }
    Ok(out)
}

/// The outcome of one pgbench run.
#[derive(Debug, Clone)]
pub struct PgbenchRun {
    /// The round it belongs to (1-based; 0 for a warm-up).
    pub round: usize,
    /// Transactions per second, without the initial connection time.
    pub tps: Option<f64>,
    /// Average latency in milliseconds.
    pub latency_ms: Option<f64>,
    /// Transactions pgbench completed (`number of transactions actually processed`).
    pub transactions: Option<u64>,
    /// `number of failed transactions`.
    pub failed: u64,
    /// pgbench's exit code.
    pub code: i32,
    /// Output lines that speak of errors, each once.
    pub errors: Vec<String>,
}

impl PgbenchRun {
    /// Reads a run's numbers and error lines out of pgbench's output.
    pub fn parse(round: usize, output: &ToolOutput) -> PgbenchRun {
        let all = format!("{}\n{}", output.stdout, output.stderr);
        let tps = all.lines().find_map(|line| {
            let rest = line.trim().strip_prefix("tps = ")?;
            rest.contains("without initial connection time")
                .then(|| rest.split_whitespace().next()?.parse().ok())?
        });
        let latency_ms = pgbench_number(&all, "latency average = ");
        let failed = pgbench_number(&all, "number of failed transactions:").unwrap_or(0.0) as u64;
        // "number of transactions actually processed: 1234" (or "1234/5000" with -t).
        let transactions = all.lines().find_map(|line| {
            let rest = line
                .trim()
                .strip_prefix("number of transactions actually processed:")?;
            rest.trim().split('/').next()?.parse().ok()
        });
        let mut errors: Vec<String> = Vec::new();
        for line in all.lines().map(str::trim) {
            let lower = line.to_ascii_lowercase();
            let bad = ["error", "fatal", "abort", "could not", "panic"];
            if bad.iter().any(|word| lower.contains(word)) && !errors.iter().any(|e| e == line) {
                errors.push(line.to_string());
            }
        }
        PgbenchRun {
            round,
            tps,
            latency_ms,
            transactions,
            failed,
            code: output.code,
            errors,
        }
    }

    /// Why this run is not clean, if it is not.
    pub fn problem(&self) -> Option<String> {
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

    /// `"1234 tps, 0.812 ms"`, or `"no result"`, for progress lines.
    pub fn summary(&self) -> String {
        match (self.tps, self.latency_ms) {
            (Some(tps), Some(lat)) => format!("{tps:.0} tps, {lat:.3} ms"),
            _ => "no result".into(),
        }
    }
}

/// The test harness's cluster settings every bench cluster starts with, for the reports.
pub const HARNESS_SETTINGS: &str = "fsync = off, synchronous_commit = off, \
full_page_writes = off, wal_level = logical, shared_buffers = 128MB";

/// Superuser name on every bench cluster.
pub const SUPERUSER: &str = "postgres";
/// Password of [`SUPERUSER`].
pub const SUPERUSER_PASSWORD: &str = "postgres";

/// A bench's scratch directory (config files, dumps), removed on drop.
pub struct WorkDir(PathBuf);

impl WorkDir {
    /// A fresh `<tmp>/<prefix>-<pid>` directory.
    pub fn new(prefix: &str) -> Result<WorkDir, String> {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).map_err(|e| format!("create {}: {e}", path.display()))?;
        Ok(WorkDir(path))
    }

    /// `name` inside the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(code: i32, stdout: &str, stderr: &str) -> ToolOutput {
        ToolOutput {
            code,
            stdout: stdout.into(),
            stderr: stderr.into(),
        }
    }

    const CLEAN: &str =
        "transaction type: bench.sql\nnumber of transactions actually processed: 51234\n\
number of failed transactions: 0 (0.000%)\nlatency average = 0.975 ms\n\
initial connection time = 12.345 ms\ntps = 10250.123456 (without initial connection time)\n";

    #[test]
    fn parses_a_clean_run() {
        let run = PgbenchRun::parse(2, &output(0, CLEAN, ""));
        assert_eq!(run.round, 2);
        assert_eq!(run.tps, Some(10250.123456));
        assert_eq!(run.latency_ms, Some(0.975));
        assert_eq!(run.transactions, Some(51234));
        assert_eq!(run.failed, 0);
        assert_eq!(run.problem(), None);
        assert_eq!(run.summary(), "10250 tps, 0.975 ms");
    }

    #[test]
    fn flags_errors_and_exit_codes() {
        let stderr =
            "pgbench: error: client 3 script 0 aborted in command 1 query 0: ERROR:  boom\n\
pgbench: error: client 3 script 0 aborted in command 1 query 0: ERROR:  boom\n";
        let run = PgbenchRun::parse(1, &output(2, CLEAN, stderr));
        let problem = run.problem().unwrap();
        assert!(
            problem.starts_with("pgbench exit code 2; `pgbench: error"),
            "{problem}"
        );
        assert_eq!(run.errors.len(), 1, "repeated lines are kept once");
        let nothing = PgbenchRun::parse(1, &output(1, "", "connection refused"));
        assert!(nothing.problem().unwrap().contains("no tps"));
        assert_eq!(nothing.summary(), "no result");
    }

    #[test]
    fn transactions_with_a_target_count() {
        let text = "number of transactions actually processed: 700/1000\n";
        assert_eq!(
            PgbenchRun::parse(1, &output(0, text, "")).transactions,
            Some(700)
        );
    }

    #[test]
    fn median_of_odd_even_and_none() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }

    #[test]
    fn tail_strips_colours() {
        assert_eq!(tail("a\nb\n\x1b[31mc\x1b[0m", 2), "b\nc");
    }

    #[test]
    fn flags_with_and_without_values() {
        let argv: Vec<String> = ["--quick", "--rounds", "3", "--out=x.md"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let parsed = flags(&argv, &["--rounds", "--out"], "usage").unwrap();
        assert_eq!(
            parsed,
            vec![
                ("--quick".to_string(), None),
                ("--rounds".to_string(), Some("3".to_string())),
                ("--out".to_string(), Some("x.md".to_string())),
            ]
        );
        let missing = flags(&["--rounds".to_string()], &["--rounds"], "usage");
        assert!(missing.unwrap_err().contains("needs a value"));
        let help = flags(&["-h".to_string()], &[], "usage");
        assert_eq!(help.unwrap_err(), "usage");
        assert!(positive("--rounds", "0").is_err());
        assert_eq!(positive_list("--clients", "10, 50").unwrap(), vec![10, 50]);
    }
}
