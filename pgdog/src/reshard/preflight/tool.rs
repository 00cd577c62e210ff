//! pg_dump: it must run, and be at least as new as every server it may read.

use std::path::Path;

use super::servers::Server;
use super::Problem;
use crate::reshard::pg_dump::PgDump;

const HINT: &str = "pg_dump must be at least as new as every source and destination server; \
                    Debian and Ubuntu packages install each version's as \
                    /usr/lib/postgresql/<major>/bin/pg_dump";

/// Locates pg_dump and checks its version against every connected server.
pub(super) async fn check(
    configured: Option<&Path>,
    sources: &[Server],
    destinations: &[Server],
    problems: &mut Vec<Problem>,
) {
    let dump = match PgDump::locate(configured).await {
        Ok(dump) => dump,
        Err(error) => {
            let path = configured.unwrap_or(Path::new("pg_dump"));
            return problems.push(Problem::error(
                "pg_dump",
                format!("pg_dump ({})", path.display()),
                error.to_string(),
                HINT.into(),
            ));
        }
    };
    for server in sources.iter().chain(destinations) {
        let Some(version) = server.version else {
            continue;
        };
        let Err(error) = dump.check_server(&server.addr, version) else {
            continue;
        };
        let message = error.to_string();
        problems.push(Problem::error(
            "pg_dump",
            &server.label,
            message,
            HINT.into(),
        ));
    }
}
