//! Connecting to every source and destination shard primary at once; a server that cannot be
//! reached or refuses the login becomes a `connection` problem and is left out of the checks.

use tokio::task::JoinSet;

use super::{PreflightInput, Problem};
use crate::backend::server::{ServerAddress, ServerError};
use crate::reshard::conn::{Conn, ConnError};

/// Which side of the move a server is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    /// A shard of the database being moved.
    Source,
    /// A new shard.
    Destination,
}

impl Side {
    fn as_str(self) -> &'static str {
        match self {
            Side::Source => "source",
            Side::Destination => "destination",
        }
    }
}

/// One connected shard primary.
pub(super) struct Server {
    /// Where it is.
    pub addr: ServerAddress,
    /// `source shard 0 (user@host:port/db)`.
    pub label: String,
    /// The connection.
    pub conn: Conn,
    /// `server_version_num` from the login, when the server sent it.
    pub version: Option<u32>,
}

/// `source shard 0 (user@host:port/db)`.
pub(super) fn label(side: Side, shard: usize, addr: &ServerAddress) -> String {
    format!("{} shard {shard} ({addr})", side.as_str())
}

/// Connects to every shard primary of both clusters in parallel; returns the source and the
/// destination servers that answered, in shard order, and reports the others.
pub(super) async fn connect(
    input: &PreflightInput<'_>,
    problems: &mut Vec<Problem>,
) -> (Vec<Server>, Vec<Server>) {
    let mut attempts = JoinSet::new();
    for (side, cluster) in [
        (Side::Source, input.source),
        (Side::Destination, input.destination),
    ] {
        for shard in &cluster.shards {
            let addr = shard.primary.clone();
            let (number, timeout) = (shard.shard, cluster.connect_timeout);
            attempts.spawn(async move {
                let result = Conn::connect(&addr, timeout).await;
                (side, number, addr, result)
            });
        }
    }
    let mut answered = Vec::new();
    while let Some(joined) = attempts.join_next().await {
        match joined {
            Ok(attempt) => answered.push(attempt),
            Err(e) => tracing::error!("pre-flight connection task failed: {e}"),
        }
    }
    answered.sort_by_key(|(side, shard, _, _)| (*side == Side::Destination, *shard));

    let (mut sources, mut destinations) = (Vec::new(), Vec::new());
    for (side, shard, addr, result) in answered {
        let label = label(side, shard, &addr);
        match result {
            Ok(conn) => {
                let server = Server {
                    version: conn.server_version_num(),
                    addr,
                    label,
                    conn,
                };
                match side {
                    Side::Source => sources.push(server),
                    Side::Destination => destinations.push(server),
                }
            }
            Err(error) => problems.push(Problem::error(
                "connection",
                label,
                format!("cannot connect: {error}; none of its checks ran"),
                hint(&error, &addr),
            )),
        }
    }
    (sources, destinations)
}

/// What to look at, by how the connection failed.
fn hint(error: &ConnError, addr: &ServerAddress) -> String {
    let reachable = format!(
        "check that PostgreSQL runs on {}:{} and accepts TCP connections from pgdog \
         (listen_addresses, port, firewall), and the host and port of this shard's \
         [[databases]] entry in pgdog.toml",
        addr.host, addr.port
    );
    match error {
        ConnError::Connect(ServerError::Connect { .. } | ServerError::Timeout { .. }) => reachable,
        ConnError::Connect(ServerError::Rejected { error, .. }) if error.code == "3D000" => {
            format!(
                "create database \"{}\" on that server, or fix database_name of this shard's \
             [[databases]] entry in pgdog.toml",
                addr.database
            )
        }
        ConnError::Connect(ServerError::Rejected { .. } | ServerError::Auth { .. }) => format!(
            "check the password of the schema_admin user \"{}\" in users.toml (password or \
             server_password) and that pg_hba.conf on that server lets it connect to \"{}\"",
            addr.user, addr.database
        ),
        _ => reachable,
    }
}
