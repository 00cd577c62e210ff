//! A client whose transaction was lost with its server is in an aborted transaction, exactly
//! as if Postgres had raised an error in it: every statement fails with 25P02 until the client
//! ends the transaction (`ROLLBACK`, `ABORT`, `COMMIT` or `END`, all answered `ROLLBACK`). So a
//! driver can never commit half a transaction on a fresh server without noticing.

use bytes::BytesMut;

use crate::frontend::statements::ClientStatements;
use crate::net::frame::Reader;
use crate::net::messages::{self, Parse};
use crate::net::{ErrorResponse, Frame};

/// SQLSTATE `in_failed_sql_transaction`.
const IN_FAILED_SQL_TRANSACTION: &str = "25P02";

/// Whether `sql` ends a transaction block (and nothing else).
pub fn ends_transaction(sql: &str) -> bool {
    let words: Vec<String> = sql
        .trim()
        .trim_end_matches(';')
        .split_whitespace()
        .map(|w| w.to_ascii_lowercase())
        .collect();
    match words.first().map(String::as_str) {
        Some("rollback" | "abort") => !words.iter().any(|w| w == "to" || w == "prepared"),
        Some("commit" | "end") => !words.iter().any(|w| w == "prepared"),
        _ => false,
    }
}

/// Answers a batch while the client's transaction is aborted. Returns whether it still is.
pub fn answer(frames: &[Frame], statements: &ClientStatements, out: &mut BytesMut) -> bool {
    let mut aborted = true;
    let mut skipping = false;
    for frame in frames {
        if skipping && frame.tag != b'S' {
            continue;
        }
        match frame.tag {
            b'Q' => {
                let sql = Reader::new(frame.body()).cstr().unwrap_or_default();
                if sql.trim().is_empty() {
                    out.extend_from_slice(&messages::empty_query_response());
                } else if ends_transaction(sql) {
                    out.extend_from_slice(&messages::command_complete("ROLLBACK"));
                    aborted = false;
                } else {
                    out.extend_from_slice(&failed().to_bytes());
                }
                out.extend_from_slice(&messages::ready_for_query(status(aborted)));
            }
            b'P' => match Parse::decode(frame) {
                Ok(parse) if ends_transaction(parse.query) => {
                    out.extend_from_slice(&messages::parse_complete())
                }
                _ => {
                    out.extend_from_slice(&failed().to_bytes());
                    skipping = true;
                }
            },
            b'B' => {
                let ok = match messages::bind_statement(frame) {
                    // The unnamed statement was parsed in this batch (and accepted above).
                    Ok("") => true,
                    Ok(name) => statements
                        .get(name)
                        .and_then(|statement| statement.query())
                        .is_some_and(ends_transaction),
                    Err(_) => false,
                };
                if ok {
                    out.extend_from_slice(&messages::bind_complete());
                } else {
                    out.extend_from_slice(&failed().to_bytes());
                    skipping = true;
                }
            }
            b'D' => out.extend_from_slice(&messages::no_data()),
            b'E' => {
                out.extend_from_slice(&messages::command_complete("ROLLBACK"));
                aborted = false;
            }
            b'C' => out.extend_from_slice(&messages::close_complete()),
            b'S' => {
                skipping = false;
                out.extend_from_slice(&messages::ready_for_query(status(aborted)));
            }
            _ => {}
        }
    }
    aborted
}

/// Answers the first request of a batch with `error` (the news that the transaction was lost),
/// and the rest as in an aborted transaction. Returns whether it still is aborted.
pub fn fail_first(
    frames: &[Frame],
    error: &ErrorResponse,
    statements: &ClientStatements,
    out: &mut BytesMut,
) -> bool {
    out.extend_from_slice(&error.to_bytes());
    // The request the error answers: a simple query, or extended messages up to Sync.
    let end = match frames.first().map(|f| f.tag) {
        Some(b'Q') | Some(b'F') => Some(0),
        _ => frames.iter().position(|f| f.tag == b'S'),
    };
    match end {
        Some(end) => {
            out.extend_from_slice(&messages::ready_for_query(b'E'));
            answer(&frames[end + 1..], statements, out)
        }
        // No Sync yet: the rest of the request comes later and is answered as aborted.
        None => true,
    }
}

fn status(aborted: bool) -> u8 {
    if aborted {
        b'E'
    } else {
        b'I'
    }
}

fn failed() -> ErrorResponse {
    ErrorResponse::error(
        IN_FAILED_SQL_TRANSACTION,
        "current transaction is aborted, commands ignored until end of transaction block",
    )
    .detail("the transaction was lost with its server connection; roll it back and retry it")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_ends_are_recognised() {
        for sql in [
            "ROLLBACK",
            "rollback;",
            "abort",
            "COMMIT",
            " end ",
            "rollback work",
        ] {
            assert!(ends_transaction(sql), "{sql}");
        }
        for sql in [
            "ROLLBACK TO SAVEPOINT a",
            "COMMIT PREPARED 'x'",
            "SELECT 1",
            "",
            "commitx",
        ] {
            assert!(!ends_transaction(sql), "{sql}");
        }
    }

    #[test]
    fn statements_fail_until_rollback() {
        let statements = ClientStatements::default();
        let mut out = BytesMut::new();
        let select = Frame::new(b'Q', b"SELECT 1\0");
        assert!(answer(&[select], &statements, &mut out));
        assert!(out.ends_with(&messages::ready_for_query(b'E')));
        out.clear();
        let rollback = Frame::new(b'Q', b"ROLLBACK\0");
        assert!(!answer(&[rollback], &statements, &mut out));
        assert!(out.ends_with(&messages::ready_for_query(b'I')));
    }
}
