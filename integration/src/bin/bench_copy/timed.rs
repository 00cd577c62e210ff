//! Running the tools under a stopwatch: a child process (or a pipe of two) whose stderr lines
//! are read as they come, each stamped with the seconds since the run started, so that phases
//! can be told apart afterwards from what the tool printed (pg_restore -v, pgcopydb, pgdog).
//! Also the machine's CPU use over a run, from /proc/stat.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::Instant;

/// One line a tool printed on stderr, with when it arrived.
#[derive(Debug, Clone)]
pub(crate) struct Stamped {
    /// Seconds since the run's start.
    pub(crate) at: f64,
    /// The line.
    pub(crate) line: String,
}

/// A finished process.
#[derive(Debug)]
pub(crate) struct Finished {
    /// What was run, for messages.
    pub(crate) what: String,
    /// Exit code (-1 when killed by a signal).
    pub(crate) code: i32,
    /// Its stdout (empty when it went into another process).
    pub(crate) stdout: String,
    /// Its stderr lines, stamped.
    pub(crate) stderr: Vec<Stamped>,
    /// Seconds from the run's start to its exit.
    pub(crate) ended: f64,
}

impl Finished {
    /// An error naming the process, its exit code and the last stderr lines, unless it
    /// exited with 0.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.code == 0 {
            return Ok(());
        }
        let lines: Vec<&str> = self.stderr.iter().map(|s| s.line.as_str()).collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n");
        Err(format!(
            "{} exited with code {}; stderr (last lines):\n{tail}",
            self.what, self.code
        ))
    }

    /// Its stderr lines with their times, then its stdout: for `--logs`.
    pub(crate) fn transcript(&self) -> String {
        let mut text = format!(
            "== {} (exit code {}, {:.2} s)\n",
            self.what, self.code, self.ended
        );
        for line in &self.stderr {
            text.push_str(&format!("[{:8.2}] {}\n", line.at, line.line));
        }
        if !self.stdout.is_empty() {
            text.push_str("-- stdout:\n");
            text.push_str(&self.stdout);
        }
        text
    }

    /// The time of the first stderr line containing `needle`.
    pub(crate) fn first(&self, needle: &str) -> Option<f64> {
        self.stderr
            .iter()
            .find(|s| s.line.contains(needle))
            .map(|s| s.at)
    }
}

/// A started process whose stderr (and maybe stdout) is being read.
pub(crate) struct Running {
    what: String,
    child: Child,
    stderr: Option<JoinHandle<Vec<Stamped>>>,
    stdout: Option<JoinHandle<String>>,
    start: Instant,
}

impl Running {
    /// Starts `command` with piped stderr (stamped against `start`) and stdout: read here with
    /// `capture_stdout`, otherwise for the caller to take ([`take_stdout`](Self::take_stdout))
    /// and feed to another process.
    pub(crate) fn spawn(
        what: &str,
        mut command: Command,
        start: Instant,
        capture_stdout: bool,
    ) -> Result<Running, String> {
        command.stderr(Stdio::piped()).stdout(Stdio::piped());
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {what} ({command:?}): {e}"))?;
        let stderr = child.stderr.take().map(|pipe| {
            std::thread::spawn(move || {
                let mut lines = Vec::new();
                let mut reader = BufReader::new(pipe);
                let mut buf = Vec::new();
                while reader.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
                    let at = start.elapsed().as_secs_f64();
                    let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                    lines.push(Stamped { at, line });
                    buf.clear();
                }
                lines
            })
        });
        let stdout = match capture_stdout {
            true => child.stdout.take().map(|mut pipe| {
                std::thread::spawn(move || {
                    let mut text = String::new();
                    let _ = pipe.read_to_string(&mut text);
                    text
                })
            }),
            false => None,
        };
        Ok(Running {
            what: what.to_string(),
            child,
            stderr,
            stdout,
            start,
        })
    }

    /// Its stdout, to feed another process (only when not captured).
    pub(crate) fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.stdout.take()
    }

    /// Waits for the exit and the readers.
    pub(crate) fn wait(mut self) -> Finished {
        let status = self.child.wait();
        let ended = self.start.elapsed().as_secs_f64();
        let code = match status {
            Ok(status) => status.code().unwrap_or(-1),
            Err(_) => -1,
        };
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let stdout = self
            .stdout
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        Finished {
            what: self.what.clone(),
            code,
            stdout,
            stderr,
            ended,
        }
    }
}

/// Runs `command` to its end, stdout captured.
pub(crate) fn run(what: &str, command: Command, start: Instant) -> Result<Finished, String> {
    Ok(Running::spawn(what, command, start, true)?.wait())
}

/// Starts `left | right`: `left`'s stdout into `right`'s stdin (only `right`'s stdout is
/// captured).
pub(crate) fn pipe_spawn(
    left: (&str, Command),
    right: (&str, Command),
    start: Instant,
) -> Result<(Running, Running), String> {
    let mut first = Running::spawn(left.0, left.1, start, false)?;
    let (what, mut command) = right;
    let Some(out) = first.take_stdout() else {
        return Err(format!("{}: no stdout to pipe into {what}", left.0));
    };
    command.stdin(Stdio::from(out));
    match Running::spawn(what, command, start, true) {
        Ok(second) => Ok((first, second)),
        Err(e) => {
            let _ = first.child.kill();
            first.wait();
            Err(e)
        }
    }
}

/// Runs `left | right` to the end of both.
pub(crate) fn pipe(
    left: (&str, Command),
    right: (&str, Command),
    start: Instant,
) -> Result<(Finished, Finished), String> {
    let (first, second) = pipe_spawn(left, right, start)?;
    let second = second.wait();
    Ok((first.wait(), second))
}

/// Busy and total jiffies of all CPUs so far (/proc/stat's `cpu` line).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CpuTimes {
    busy: u64,
    total: u64,
}

impl CpuTimes {
    /// Reads /proc/stat now (zeros when it cannot).
    pub(crate) fn now() -> CpuTimes {
        let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else {
            return CpuTimes::default();
        };
        let values: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal (guest time is inside user).
        let total: u64 = values.iter().take(8).sum();
        let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
        CpuTimes {
            busy: total.saturating_sub(idle),
            total,
        }
    }

    /// The share of all CPUs busy between `self` and `later`, in percent.
    pub(crate) fn busy_percent(self, later: CpuTimes) -> Option<f64> {
        let total = later.total.checked_sub(self.total)?;
        let busy = later.busy.checked_sub(self.busy)?;
        (total > 0).then(|| 100.0 * busy as f64 / total as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipes_and_stamps() {
        let start = Instant::now();
        let mut left = Command::new("sh");
        left.args(["-c", "echo one; echo two; echo note >&2"]);
        let mut right = Command::new("sh");
        right.args(["-c", "wc -l; echo done >&2; exit 3"]);
        let (first, second) = pipe(("left", left), ("right", right), start).unwrap();
        assert_eq!(first.code, 0);
        assert_eq!(first.stderr[0].line, "note");
        assert_eq!(second.stdout.trim(), "2");
        assert_eq!(second.code, 3);
        assert!(second.first("done").is_some());
        assert!(second
            .check()
            .unwrap_err()
            .contains("right exited with code 3"));
    }

    #[test]
    fn cpu_share() {
        let a = CpuTimes {
            busy: 10,
            total: 100,
        };
        let b = CpuTimes {
            busy: 60,
            total: 200,
        };
        assert_eq!(a.busy_percent(b), Some(50.0));
        assert_eq!(b.busy_percent(a), None);
    }
}
