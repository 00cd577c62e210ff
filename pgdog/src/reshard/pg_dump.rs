//! Running `pg_dump --schema-only` (path from `[replication] pg_dump_path`, else `pg_dump` on
//! PATH) and checking that it can read the server: pg_dump refuses servers newer than itself.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::backend::server::ServerAddress;

/// Why pg_dump could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PgDumpError {
    /// The binary is missing or not executable.
    #[error("cannot run {path}: {reason}; install the PostgreSQL client tools or set [replication] pg_dump_path in pgdog.toml")]
    NotRunnable {
        /// The binary.
        path: PathBuf,
        /// The OS error.
        reason: String,
    },
    /// `--version` printed something unexpected.
    #[error("cannot read the version of {path} from \"{output}\"")]
    UnknownVersion {
        /// The binary.
        path: PathBuf,
        /// What it printed.
        output: String,
    },
    /// pg_dump is older than the server.
    #[error("{path} is version {dump_major} but the server {server} runs PostgreSQL {server_major}; pg_dump cannot read newer servers: install pg_dump {server_major} or newer and set [replication] pg_dump_path in pgdog.toml")]
    TooOld {
        /// The binary.
        path: PathBuf,
        /// Its major version.
        dump_major: u32,
        /// The server's major version.
        server_major: u32,
        /// The server.
        server: String,
    },
    /// pg_dump ran and failed.
    #[error("{path} failed for {server}: {stderr}")]
    Failed {
        /// The binary.
        path: PathBuf,
        /// The server.
        server: String,
        /// Its error output.
        stderr: String,
    },
}

/// A pg_dump binary and its major version.
#[derive(Debug, Clone)]
pub struct PgDump {
    /// The binary.
    pub path: PathBuf,
    /// Its major version (e.g. 15).
    pub major: u32,
}

impl PgDump {
    /// Finds the binary (`configured`, else `pg_dump` on PATH) and reads its version.
    pub async fn locate(configured: Option<&Path>) -> Result<PgDump, PgDumpError> {
        let path = configured
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("pg_dump"));
        let output = tokio::process::Command::new(&path)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| PgDumpError::NotRunnable {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        let text = String::from_utf8_lossy(&output.stdout).trim().to_string();
        let major = parse_major(&text).ok_or_else(|| PgDumpError::UnknownVersion {
            path: path.clone(),
            output: text.clone(),
        })?;
        Ok(PgDump { path, major })
    }

    /// Refuses a server (by `server_version_num`) newer than this pg_dump.
    pub fn check_server(
        &self,
        server: &ServerAddress,
        version_num: u32,
    ) -> Result<(), PgDumpError> {
        let server_major = version_num / 10_000;
        if server_major > self.major {
            return Err(PgDumpError::TooOld {
                path: self.path.clone(),
                dump_major: self.major,
                server_major,
                server: server.to_string(),
            });
        }
        Ok(())
    }

    /// `pg_dump --schema-only` of the database at `server`, without owners, privileges,
    /// comments, publications, subscriptions, security labels or tablespaces: the plain SQL.
    pub async fn schema(&self, server: &ServerAddress) -> Result<String, PgDumpError> {
        let mut command = tokio::process::Command::new(&self.path);
        command
            .args([
                "--schema-only",
                "--no-owner",
                "--no-privileges",
                "--no-comments",
                "--no-publications",
                "--no-subscriptions",
                "--no-security-labels",
                "--no-tablespaces",
                "--host",
                &server.host,
                "--port",
                &server.port.to_string(),
                "--username",
                &server.user,
                "--dbname",
                &server.database,
            ])
            .env("PGCONNECT_TIMEOUT", "10")
            .env_remove("PGSERVICE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        match &server.password {
            Some(password) => command.env("PGPASSWORD", password),
            None => command.env_remove("PGPASSWORD"),
        };
        let output = command
            .output()
            .await
            .map_err(|e| PgDumpError::NotRunnable {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
        if !output.status.success() {
            return Err(PgDumpError::Failed {
                path: self.path.clone(),
                server: server.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// `pg_dump (PostgreSQL) 15.18 (Debian ...)` → 15.
fn parse_major(text: &str) -> Option<u32> {
    let version = text.split(')').nth(1)?.trim();
    let digits: String = version.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_major_version() {
        assert_eq!(
            parse_major("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"),
            Some(15)
        );
        assert_eq!(parse_major("pg_dump (PostgreSQL) 17beta2"), Some(17));
        assert_eq!(parse_major("something"), None);
    }
}
