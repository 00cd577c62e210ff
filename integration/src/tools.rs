//! Running the real client tools (psql, pgbench) against pgdog or a cluster.

use std::process::{Command, Output};

/// Finds a PostgreSQL client binary (psql, pgbench) in `pg_config --bindir`, or on PATH.
pub fn pg_tool(name: &str) -> String {
    Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| format!("{}/{name}", String::from_utf8_lossy(&o.stdout).trim()))
        .filter(|p| std::path::Path::new(p).exists())
        .unwrap_or_else(|| name.to_string())
}

/// The result of running a tool.
pub struct ToolOutput {
    /// Exit code (-1 if killed).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

fn run(mut command: Command) -> ToolOutput {
    let Output {
        status,
        stdout,
        stderr,
    } = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    ToolOutput {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// Runs `psql -X -A -t -v ON_ERROR_STOP=1` with `args` on a port as a user.
pub fn psql(port: u16, user: &str, password: &str, database: &str, args: &[&str]) -> ToolOutput {
    let mut command = Command::new(pg_tool("psql"));
    command
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
        .args(["-p", &port.to_string(), "-U", user, "-d", database])
        .args(args)
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10");
    run(command)
}

/// Runs `pgbench` with `args` on a port as a user.
pub fn pgbench(port: u16, user: &str, password: &str, database: &str, args: &[&str]) -> ToolOutput {
    let mut command = Command::new(pg_tool("pgbench"));
    command
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", user])
        .args(args)
        .arg(database)
        .env("PGPASSWORD", password);
    run(command)
}

/// The number after `label` in pgbench's report (e.g. "number of failed transactions: ").
pub fn pgbench_number(output: &str, label: &str) -> Option<f64> {
    output.lines().find_map(|line| {
        let rest = line.trim().strip_prefix(label)?;
        rest.split_whitespace().next()?.parse().ok()
    })
}
