//! A `pgdog` command line run in the background, so a test can watch the databases while it
//! runs and kill it (`SIGKILL`) at a chosen moment. Its stdout and stderr go to files.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::tools::ToolOutput;

/// A running (or finished) pgdog command; killed on drop if still running.
pub struct CliRun {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl CliRun {
    /// Starts `command`, its output going to `stdout` and `stderr` (files, created).
    pub fn spawn(mut command: Command, stdout: PathBuf, stderr: PathBuf) -> CliRun {
        let out = std::fs::File::create(&stdout)
            .unwrap_or_else(|e| panic!("create {}: {e}", stdout.display()));
        let err = std::fs::File::create(&stderr)
            .unwrap_or_else(|e| panic!("create {}: {e}", stderr.display()));
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
        CliRun {
            child,
            stdout,
            stderr,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// What it printed so far (exit code -1 while running).
    pub fn output(&mut self) -> ToolOutput {
        let code = match self.child.try_wait() {
            Ok(Some(status)) => status.code().unwrap_or(-1),
            _ => -1,
        };
        ToolOutput {
            code,
            stdout: std::fs::read_to_string(&self.stdout).unwrap_or_default(),
            stderr: std::fs::read_to_string(&self.stderr).unwrap_or_default(),
        }
    }

    /// Kills it with SIGKILL (`kill -9`) and waits for it; returns what it printed. Panics if
    /// it had already exited (the test missed the moment it wanted to kill it at).
    pub fn kill9(&mut self) -> ToolOutput {
        let running = self.is_running();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let output = self.output();
        assert!(
            running,
            "pgdog had already exited before the kill\n{}",
            crate::schema_sync::describe(&output)
        );
        output
    }

    /// Asks it to stop (SIGTERM, like Ctrl-C) without waiting.
    pub fn terminate(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// Waits until its stderr contains `needle` (panics after `timeout` or when it exits first).
    pub async fn wait_for_stderr(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let output = self.output();
            if output.stderr.contains(needle) {
                return;
            }
            if !self.is_running() || Instant::now() >= deadline {
                panic!(
                    "pgdog never printed {needle:?}\n{}",
                    crate::schema_sync::describe(&self.output())
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for it to exit (panics after `timeout`, killing it) and returns its output.
    pub fn wait(&mut self, timeout: Duration) -> ToolOutput {
        let deadline = Instant::now() + timeout;
        while self.is_running() {
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "pgdog did not finish within {timeout:?}\n{}",
                    crate::schema_sync::describe(&self.output())
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.output()
    }
}

impl CliRun {
    /// [`wait`](Self::wait) for async tests: polls with the runtime's timer, so other tasks
    /// (a writer, a watcher) keep running on the same thread.
    pub async fn finish(&mut self, timeout: Duration) -> ToolOutput {
        let deadline = Instant::now() + timeout;
        while self.is_running() {
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "pgdog did not finish within {timeout:?}\n{}",
                    crate::schema_sync::describe(&self.output())
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.output()
    }
}

impl Drop for CliRun {
    fn drop(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
