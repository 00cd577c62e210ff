//! `VERIFY <source> <destination> [table]`: row counts and checksums of each table compared
//! between the source and the union of the destination's shards (see
//! [`crate::reshard::verify`]), as a result table with one row per table. Runs in the admin
//! client's task; every server answer is bounded by a time limit.

use std::sync::Arc;

use pgdog_admin::{ColumnType, ResultTable, Verify};

use super::resharding::endpoint_error;
use super::show::{push, Row};
use super::Reply;
use crate::net::{sqlstate, ErrorResponse};
use crate::reshard::conn::ConnError;
use crate::reshard::verify::{self, VerifyError, VerifyOptions, VerifyReport};
use crate::state::PoolerState;

use ColumnType::{BigInt, Text};

/// SQLSTATE `undefined_table`.
pub const UNDEFINED_TABLE: &str = "42P01";

/// The columns, in order.
pub const COLUMNS: [(&str, ColumnType); 10] = [
    ("schema", Text),
    ("table", Text),
    ("status", Text),
    ("source_rows", BigInt),
    ("destination_rows", BigInt),
    ("source_checksum", Text),
    ("destination_checksum", Text),
    ("shards", Text),
    ("elapsed_ms", BigInt),
    ("note", Text),
];

/// Runs the comparison and returns one row per table.
pub async fn run(state: &Arc<PoolerState>, command: &Verify) -> Result<Reply, ErrorResponse> {
    let config = state.databases().config().clone();
    let mut options = VerifyOptions::new(&command.from, &command.to);
    options.table = command.table.clone();
    let report = verify::run(&config, &options, Some(&state.replication))
        .await
        .map_err(error_response)?;
    let table = table(&report);
    let tag = format!("SELECT {}", table.rows.len());
    Ok(Reply::Table { table, tag })
}

/// The result table of a report (the CLI prints the same).
pub fn table(report: &VerifyReport) -> ResultTable {
    let mut table = ResultTable::new(&COLUMNS);
    for verdict in &report.tables {
        let checksum =
            |d: Option<crate::reshard::copy::digest::Digest>| d.map(|d| format!("{:016x}", d.sum));
        push(
            &mut table,
            Row::default()
                .text(&verdict.schema)
                .text(&verdict.table)
                .text(verdict.status.as_str())
                .opt(verdict.source.map(|d| d.rows))
                .opt(verdict.destination.map(|d| d.rows))
                .opt(checksum(verdict.source))
                .opt(checksum(verdict.destination))
                .opt(verdict.shards_text())
                .text(verdict.elapsed.as_millis())
                .opt(verdict.note()),
        );
    }
    table
}

/// The admin error for a failed comparison.
pub fn error_response(error: VerifyError) -> ErrorResponse {
    match error {
        VerifyError::Endpoint(e) => endpoint_error(e),
        e @ VerifyError::UnknownTable { .. } => {
            ErrorResponse::error(UNDEFINED_TABLE, e.to_string())
                .hint("name it as schema.table; VERIFY <source> <destination> compares every table")
        }
        e @ VerifyError::AmbiguousTable { .. } => {
            ErrorResponse::error(UNDEFINED_TABLE, e.to_string())
        }
        VerifyError::Conn(ConnError::Sql { server, error }) => {
            let mut response =
                ErrorResponse::error(&error.code, format!("{server}: {}", error.message));
            if let Some(detail) = &error.detail {
                response = response.detail(detail.clone());
            }
            response
        }
        e @ VerifyError::Conn(_) => {
            ErrorResponse::error(sqlstate::CONNECTION_FAILURE, e.to_string())
                .detail("nothing was compared")
        }
        e @ VerifyError::NoAnswer { .. } => {
            ErrorResponse::error(sqlstate::QUERY_CANCELED, e.to_string())
                .detail("nothing was compared")
        }
        e @ VerifyError::Internal(_) => {
            ErrorResponse::error(sqlstate::INTERNAL_ERROR, e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::reshard::copy::digest::Digest;
    use crate::reshard::verify::{ShardCheck, TableStatus, TableVerdict};
    use crate::reshard::EndpointError;

    #[test]
    fn rows_and_errors() {
        let digest = Digest { rows: 2, sum: 0xab };
        let report = VerifyReport {
            tables: vec![TableVerdict {
                schema: "Sales".into(),
                table: "orders".into(),
                status: TableStatus::Differs,
                source: Some(digest),
                destination: Some(Digest { rows: 1, sum: 1 }),
                shards: vec![ShardCheck {
                    shard: 0,
                    expected: digest,
                    found: Digest { rows: 1, sum: 1 },
                }],
                elapsed: Duration::from_millis(12),
                attempts: 1,
                notes: vec![],
            }],
            attempts: 1,
        };
        let table = table(&report);
        assert_eq!(table.columns.len(), COLUMNS.len());
        let row = &table.rows[0];
        let value = |name: &str| {
            let i = COLUMNS.iter().position(|(n, _)| *n == name).unwrap();
            row[i].clone()
        };
        assert_eq!(value("status").as_deref(), Some("differs"));
        assert_eq!(value("source_rows").as_deref(), Some("2"));
        assert_eq!(
            value("source_checksum").as_deref(),
            Some("00000000000000ab")
        );
        assert_eq!(
            value("shards").as_deref(),
            Some("0: 1 rows DIFFERS (expected 2)")
        );
        assert_eq!(value("elapsed_ms").as_deref(), Some("12"));
        assert_eq!(value("note"), None);

        let unknown = error_response(VerifyError::UnknownTable {
            table: "t".into(),
            database: "db".into(),
        });
        assert_eq!(unknown.code, "42P01");
        let database = error_response(VerifyError::Endpoint(EndpointError::UnknownDatabase {
            name: "x".into(),
            path: PathBuf::from("pgdog.toml"),
        }));
        assert_eq!(database.code, "3D000");
    }
}
