//! The source's write load: pgbench's built-in TPC-B-like script (an UPDATE of
//! `pgbench_accounts`, `pgbench_tellers` and `pgbench_branches` and an INSERT into
//! `pgbench_history` per transaction: 4 row changes), always `-n -M simple -c 4 -j 2`: once
//! unthrottled for the maximum TPS, with `-t` for a catch-up backlog, and with `-R` for the
//! steady state. `-n` matters: without it pgbench truncates `pgbench_history` first.

use integration::bench::PgbenchRun;
use integration::tools::{pg_tool, pgbench, ToolOutput};
use pgdog::local::LocalCluster;

use crate::setup::{CLIENTS, MAX_TPS_SECONDS, PASSWORD, SOURCE_DB, USER};

/// Row changes of one TPC-B-like transaction.
pub(crate) const CHANGES_PER_TRANSACTION: u64 = 4;

/// The arguments every run shares.
fn common() -> Vec<String> {
    let (clients, threads) = CLIENTS;
    ["-n", "-M", "simple", "-c", &clients.to_string()]
        .iter()
        .map(|s| s.to_string())
        .chain(["-j".to_string(), threads.to_string()])
        .collect()
}

/// Transactions per client of a backlog of about `changes` row changes.
pub(crate) fn backlog_per_client(changes: u64) -> u64 {
    let transactions = changes.div_ceil(CHANGES_PER_TRANSACTION);
    transactions.div_ceil(u64::from(CLIENTS.0)).max(1)
}

/// Row changes of a backlog run of `per_client` transactions per client.
pub(crate) fn backlog_changes(per_client: u64) -> u64 {
    per_client * u64::from(CLIENTS.0) * CHANGES_PER_TRANSACTION
}

/// The unthrottled run measuring the source's maximum TPS (blocking).
pub(crate) fn max_tps(source: &LocalCluster) -> Result<PgbenchRun, String> {
    let mut args = common();
    args.extend(["-T".to_string(), MAX_TPS_SECONDS.to_string()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = pgbench(source.port(), USER, PASSWORD, SOURCE_DB, &refs);
    let run = PgbenchRun::parse(0, &output);
    match (run.problem(), run.tps) {
        (None, Some(_)) => Ok(run),
        (problem, _) => Err(format!(
            "the maximum-TPS pgbench run failed: {}",
            problem.unwrap_or_default()
        )),
    }
}

/// Runs pgbench on the source database with the common arguments and `extra`, without
/// blocking the runtime.
async fn run(source_port: u16, extra: &[String]) -> Result<PgbenchRun, String> {
    let mut command = tokio::process::Command::new(pg_tool("pgbench"));
    command
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &source_port.to_string(),
            "-U",
            USER,
        ])
        .args(common())
        .args(extra)
        .arg(SOURCE_DB)
        .env("PGPASSWORD", PASSWORD)
        .kill_on_drop(true);
    let out = command
        .output()
        .await
        .map_err(|e| format!("cannot run pgbench: {e}"))?;
    let output = ToolOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    Ok(PgbenchRun::parse(1, &output))
}

/// The catch-up backlog: `per_client` transactions per client, as fast as the source goes.
pub(crate) async fn backlog(source_port: u16, per_client: u64) -> Result<PgbenchRun, String> {
    run(source_port, &["-t".to_string(), per_client.to_string()]).await
}

/// The steady-state load: `rate` transactions per second over all clients for `seconds`.
pub(crate) async fn throttled(
    source_port: u16,
    rate: u64,
    seconds: u64,
) -> Result<PgbenchRun, String> {
    let extra = [
        "-R".to_string(),
        rate.to_string(),
        "-T".to_string(),
        seconds.to_string(),
    ];
    run(source_port, &extra).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backlog_sizes() {
        assert_eq!(backlog_per_client(1_000_000), 62_500);
        assert_eq!(backlog_changes(62_500), 1_000_000);
        assert_eq!(backlog_per_client(50_000), 3_125);
        assert_eq!(backlog_per_client(1), 1);
        assert_eq!(backlog_changes(backlog_per_client(10)), 16);
    }

    #[test]
    fn common_arguments() {
        assert_eq!(
            common().join(" "),
            "-n -M simple -c 4 -j 2",
            "no vacuum (it would truncate pgbench_history), simple protocol"
        );
    }
}
