//! The tools: the initial copy every tool starts from (`pgdog data-sync --sync-only`, which
//! creates the tool's slot and copies at its snapshot, schema included), and the appliers that
//! stream from that slot: `pgdog data-sync --replicate-only` as a child process (stopped with
//! SIGTERM, after which it prints `stopped: N transactions, R rows applied; ...`), or a
//! subscription on the destination (`copy_data = false` on the existing slot).

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use crate::config::{pgdog_toml, users_toml, COPY_JOBS};
use crate::cpu::{destination_pids, Processes};
use crate::setup::{Bench, PASSWORD, PUBLICATION, SOURCE_DB, USER};
use crate::{slot, Tool};

/// Name of the native subscription.
const SUBSCRIPTION: &str = "bench_stream";

/// What a finished pgdog run printed.
#[derive(Debug, Default)]
pub(crate) struct Printed {
    /// Exit code (-1: killed by a signal).
    pub(crate) code: i32,
    /// Its stdout.
    pub(crate) stdout: String,
    /// Its stderr (the log).
    pub(crate) stderr: String,
}

impl Printed {
    /// Both streams, for `--logs`.
    pub(crate) fn transcript(&self) -> String {
        format!(
            "== exit code {}\n-- stderr:\n{}\n-- stdout:\n{}",
            self.code, self.stderr, self.stdout
        )
    }

    /// The last lines of stderr, for error messages.
    fn tail(&self) -> String {
        integration::bench::tail(&self.stderr, 15)
    }
}

/// The config files of `tool`'s turn; returns the paths of pgdog.toml and users.toml.
fn write_config(bench: &Bench, tool: Tool) -> Result<(String, String), String> {
    let files = bench.dir.path(tool.key());
    std::fs::create_dir_all(&files).map_err(|e| format!("create {}: {e}", files.display()))?;
    let ports: Vec<(u16, String)> = tool
        .databases()
        .into_iter()
        .map(|(k, db)| (bench.dests[k].port(), db))
        .collect();
    let (config, users) = (files.join("pgdog.toml"), files.join("users.toml"));
    let toml = pgdog_toml(integration::free_port(), bench.source.port(), &ports);
    std::fs::write(&config, toml).map_err(|e| format!("write {}: {e}", config.display()))?;
    std::fs::write(&users, users_toml()).map_err(|e| format!("write {}: {e}", users.display()))?;
    Ok((
        config.to_string_lossy().into_owned(),
        users.to_string_lossy().into_owned(),
    ))
}

/// `pgdog -c pgdog.toml -u users.toml data-sync --from-database source --to-database
/// destination --publication pub --replication-slot <slot>` and `extra`.
fn pgdog_command(bench: &Bench, tool: Tool, extra: &[&str]) -> Result<Command, String> {
    let (config, users) = write_config(bench, tool)?;
    let mut command = Command::new(integration::pgdog_process::pgdog_binary());
    command.args(["-c", &config, "-u", &users]);
    command.args([
        "data-sync",
        "--from-database",
        "source",
        "--to-database",
        "destination",
        "--publication",
        PUBLICATION,
        "--replication-slot",
        &tool.slot(),
    ]);
    command
        .args(extra)
        .env_remove("PGDOG_CONFIG")
        .env_remove("PGDOG_USERS")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    Ok(command)
}

/// Reads a child's pipe to the end in a task.
fn drain(pipe: Option<impl tokio::io::AsyncRead + Unpin + Send + 'static>) -> JoinHandle<String> {
    tokio::spawn(async move {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes).await;
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        text
    })
}

/// The initial copy of `tool`'s turn: creates its slot, copies the source at the slot's
/// snapshot (schema sync before and after), and returns the seconds and what pgdog printed.
pub(crate) async fn initial_copy(bench: &Bench, tool: Tool) -> Result<(f64, Printed), String> {
    let jobs = COPY_JOBS.to_string();
    let mut command = pgdog_command(bench, tool, &["--sync-only", "--table-jobs", &jobs])?;
    let began = Instant::now();
    let out = command
        .output()
        .await
        .map_err(|e| format!("cannot start pgdog data-sync --sync-only: {e}"))?;
    let printed = Printed {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    if printed.code != 0 {
        return Err(format!(
            "pgdog data-sync --sync-only exited with {}:\n{}",
            printed.code,
            printed.tail()
        ));
    }
    Ok((began.elapsed().as_secs_f64(), printed))
}

/// A running applier.
pub(crate) enum Applier {
    /// `pgdog data-sync --replicate-only`.
    Pgdog {
        child: Child,
        stdout: JoinHandle<String>,
        stderr: JoinHandle<String>,
    },
    /// A subscription in this destination database (cluster 0).
    Native { database: String },
}

impl Applier {
    /// Starts streaming `tool`'s slot.
    pub(crate) async fn start(bench: &Bench, tool: Tool) -> Result<Applier, String> {
        match tool {
            Tool::Pgdog1 | Tool::Pgdog2 => {
                let mut command = pgdog_command(bench, tool, &["--replicate-only"])?;
                let mut child = command
                    .spawn()
                    .map_err(|e| format!("cannot start pgdog data-sync --replicate-only: {e}"))?;
                let stdout = drain(child.stdout.take());
                let stderr = drain(child.stderr.take());
                Ok(Applier::Pgdog {
                    child,
                    stdout,
                    stderr,
                })
            }
            Tool::Native => {
                let (_, database) = tool.databases().remove(0);
                let dest = bench.dest_client(0, &database).await?;
                let source = bench.source.connection_string(SOURCE_DB, USER, PASSWORD);
                let sql = format!(
                    "CREATE SUBSCRIPTION {SUBSCRIPTION} CONNECTION '{source}' PUBLICATION \
                     {PUBLICATION} WITH (create_slot = false, slot_name = '{}', \
                     copy_data = false)",
                    tool.slot()
                );
                dest.batch_execute(&sql)
                    .await
                    .map_err(|e| format!("{sql}: {e}"))?;
                Ok(Applier::Native { database })
            }
        }
    }

    /// An error when pgdog has exited.
    pub(crate) fn check(&mut self) -> Result<(), String> {
        match self {
            Applier::Pgdog { child, .. } => match child.try_wait() {
                Ok(None) => Ok(()),
                Ok(Some(status)) => Err(format!("pgdog exited early with {status}")),
                Err(e) => Err(format!("waiting for pgdog: {e}")),
            },
            Applier::Native { .. } => Ok(()),
        }
    }

    /// The stream's processes now: the applier, the walsender of `slot`, and the other
    /// sessions on the destination databases `shards`.
    pub(crate) async fn processes(
        &self,
        bench: &Bench,
        source: &Client,
        slot: &str,
        shards: &[(usize, String)],
    ) -> Result<Processes, String> {
        let mut processes = Processes::default();
        if let Applier::Pgdog { child, .. } = self {
            processes.applier.extend(child.id().map(|pid| pid as i32));
        }
        processes
            .walsender
            .extend(slot::walsender_pid(source, slot).await?);
        for (k, database) in shards {
            let dest = bench.dest_client(*k, database).await?;
            for (pid, worker) in destination_pids(&dest, database).await? {
                match worker {
                    true => processes.applier.push(pid),
                    false => processes.backends.push(pid),
                }
            }
        }
        Ok(processes)
    }

    /// Stops the applier. pgdog: SIGTERM, then what it printed (an error unless it exited
    /// with 0 within a minute). Native: the subscription is dropped (with its slot).
    pub(crate) async fn stop(self, bench: &Bench) -> Result<Printed, String> {
        match self {
            Applier::Pgdog {
                mut child,
                stdout,
                stderr,
            } => {
                if let Some(pid) = child.id() {
                    // SAFETY: kill(2) on our own child's pid.
                    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
                }
                let status = tokio::time::timeout(Duration::from_secs(60), child.wait()).await;
                let code = match status {
                    Ok(Ok(status)) => status.code().unwrap_or(-1),
                    _ => {
                        let _ = child.kill().await;
                        -1
                    }
                };
                let printed = Printed {
                    code,
                    stdout: stdout.await.unwrap_or_default(),
                    stderr: stderr.await.unwrap_or_default(),
                };
                match printed.code {
                    0 => Ok(printed),
                    code => Err(format!(
                        "pgdog data-sync --replicate-only exited with {code} after SIGTERM:\n{}",
                        printed.tail()
                    )),
                }
            }
            Applier::Native { database } => {
                let dest = bench.dest_client(0, &database).await?;
                let sql = format!("DROP SUBSCRIPTION {SUBSCRIPTION}");
                if let Err(e) = dest.batch_execute(&sql).await {
                    // Without dropping the slot (the bench drops it), so that the database
                    // can go.
                    let detach = format!(
                        "ALTER SUBSCRIPTION {SUBSCRIPTION} DISABLE; \
                         ALTER SUBSCRIPTION {SUBSCRIPTION} SET (slot_name = NONE); {sql}"
                    );
                    let _ = dest.batch_execute(&detach).await;
                    return Err(format!("{sql}: {e}"));
                }
                Ok(Printed::default())
            }
        }
    }
}

/// `stopped: N transactions, R rows applied; ...` of pgdog's stdout: `(N, R)`.
pub(crate) fn stopped_counts(stdout: &str) -> Option<(u64, u64)> {
    stdout.lines().rev().find_map(|line| {
        let rest = line.trim().strip_prefix("stopped: ")?;
        let (transactions, rest) = rest.split_once(" transactions, ")?;
        let (rows, _) = rest.split_once(" rows applied")?;
        Some((transactions.trim().parse().ok()?, rows.trim().parse().ok()?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_stop_line() {
        let out =
            "stopped: 1234 transactions, 4936 rows applied; replication slot s applied up to 0/1\n";
        assert_eq!(stopped_counts(out), Some((1234, 4936)));
        assert_eq!(stopped_counts("nothing"), None);
    }
}
