//! A standalone server connection for resharding work (catalog queries, DDL, checks): logged
//! in like the pools' connections, but owned by one task and never returned to a pool.

use std::sync::Arc;
use std::time::Duration;

use crate::backend::exchange::{self, Answer};
use crate::backend::server::{Server, ServerAddress, ServerError};
use crate::net::ErrorResponse;

/// Why a resharding statement failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// Could not connect or log in.
    #[error(transparent)]
    Connect(#[from] ServerError),
    /// The connection broke.
    #[error("{server}: {message}")]
    Lost {
        /// The server.
        server: String,
        /// What happened.
        message: String,
    },
    /// The statement failed; the connection is still usable.
    #[error("{server}: {}", describe(.error))]
    Sql {
        /// The server.
        server: String,
        /// What it said.
        error: Box<ErrorResponse>,
    },
}

impl ConnError {
    /// The SQLSTATE, when the server reported an error.
    pub fn code(&self) -> Option<&str> {
        match self {
            ConnError::Sql { error, .. } => Some(&error.code),
            _ => None,
        }
    }

    /// The server's message without the server name (for result tables).
    pub fn short(&self) -> String {
        match self {
            ConnError::Sql { error, .. } => describe(error),
            other => other.to_string(),
        }
    }
}

/// `ERROR: message (SQLSTATE x)` plus detail and hint when present.
fn describe(error: &ErrorResponse) -> String {
    let mut text = format!("{} (SQLSTATE {})", error.message, error.code);
    if let Some(detail) = &error.detail {
        text.push_str(&format!("; detail: {detail}"));
    }
    if let Some(hint) = &error.hint {
        text.push_str(&format!("; hint: {hint}"));
    }
    text
}

/// Rows of a text-format result.
#[derive(Debug, Default, Clone)]
pub struct Rows {
    /// Column names.
    pub columns: Vec<String>,
    /// Values, `None` for NULL.
    pub rows: Vec<Vec<Option<String>>>,
}

impl Rows {
    /// The value at `row`, `column` (`None` when NULL or out of range).
    pub fn get(&self, row: usize, column: usize) -> Option<&str> {
        self.rows.get(row)?.get(column)?.as_deref()
    }

    /// The first column of the first row.
    pub fn scalar(&self) -> Option<&str> {
        self.get(0, 0)
    }
}

/// One logged-in connection.
pub struct Conn {
    server: Server,
}

impl Conn {
    /// Connects and logs in within `timeout`.
    pub async fn connect(addr: &ServerAddress, timeout: Duration) -> Result<Conn, ConnError> {
        let server = Server::connect(Arc::new(addr.clone()), timeout, 0).await?;
        Ok(Conn { server })
    }

    /// Where this connection goes.
    pub fn addr(&self) -> &ServerAddress {
        self.server.addr()
    }

    /// The server's `server_version_num` as reported at login (e.g. 150004), if it sent it.
    pub fn server_version_num(&self) -> Option<u32> {
        let version = self
            .server
            .params()
            .iter()
            .find(|(name, _)| name == "server_version")?
            .1
            .clone();
        parse_server_version(&version)
    }

    /// Runs `sql` (one or more statements) as a simple query; the rows of the last result.
    pub async fn query(&mut self, sql: &str) -> Result<Rows, ConnError> {
        let answer = self.run(sql).await?;
        let mut rows = Rows::default();
        if let Some(description) = &answer.description {
            rows.columns = exchange::column_names(description).unwrap_or_default();
        }
        for row in &answer.rows {
            let values = exchange::columns(row).map_err(|e| self.lost(&e.to_string()))?;
            rows.rows.push(
                values
                    .into_iter()
                    .map(|v| v.map(|bytes| String::from_utf8_lossy(bytes).into_owned()))
                    .collect(),
            );
        }
        Ok(rows)
    }

    /// Runs `sql` and returns its command tag.
    pub async fn execute(&mut self, sql: &str) -> Result<String, ConnError> {
        Ok(self.run(sql).await?.tag.unwrap_or_default())
    }

    async fn run(&mut self, sql: &str) -> Result<Answer, ConnError> {
        tracing::debug!("{}: {}", self.server.addr(), sql);
        let answer = exchange::simple_query(&mut self.server, sql)
            .await
            .map_err(|lost| self.lost(&lost.0.message))?;
        match answer.error {
            Some(error) => Err(ConnError::Sql {
                server: self.server.addr().to_string(),
                error: Box::new(error),
            }),
            None => Ok(answer),
        }
    }

    fn lost(&self, message: &str) -> ConnError {
        ConnError::Lost {
            server: self.server.addr().to_string(),
            message: message.to_string(),
        }
    }

    /// Closes the connection politely.
    pub async fn close(self) {
        self.server.terminate().await;
    }
}

/// `15.4 (Debian ...)` → 150004; `9.6.2` → 90602.
pub fn parse_server_version(version: &str) -> Option<u32> {
    let numeric: String = version
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mut parts = numeric.split('.').map(|p| p.parse::<u32>().ok());
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    if major >= 10 {
        Some(major * 10_000 + minor)
    } else {
        let patch = parts.next().flatten().unwrap_or(0);
        Some(major * 10_000 + minor * 100 + patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_versions() {
        assert_eq!(
            parse_server_version("15.18 (Debian 15.18-0+deb12u1)"),
            Some(150018)
        );
        assert_eq!(parse_server_version("16beta1"), Some(160000));
        assert_eq!(parse_server_version("9.6.2"), Some(90602));
        assert_eq!(parse_server_version("x"), None);
    }
}
