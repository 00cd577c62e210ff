//! The `ErrorResponse`s the COPY splitter and joiner return, with PostgreSQL's SQLSTATEs and
//! messages, and the decoding of a key's bytes into a [`KeyValue`].

use crate::net::{sqlstate, ErrorResponse};
use crate::router::sharding::{DataType, KeyValue, ParseKeyError};

use super::line::ScanError;

/// Malformed COPY data (22P04).
pub fn bad_format(message: impl Into<String>) -> ErrorResponse {
    ErrorResponse::error(sqlstate::BAD_COPY_FILE_FORMAT, message)
}

/// The line (1-based, counting a header line; the tuple number in binary) an error was found
/// on, as the detail, like PostgreSQL's `COPY t, line 3` context.
pub fn at_line(error: ErrorResponse, line: u64) -> ErrorResponse {
    error.detail(format!("COPY data line {line}"))
}

/// The same, naming the sharding key column too (1-based position in the COPY column list).
pub fn at_key(error: ErrorResponse, line: u64, column: usize) -> ErrorResponse {
    error.detail(format!(
        "COPY data line {line}, sharding key column {}",
        column + 1
    ))
}

/// A misplaced line terminator, with PostgreSQL's message and hint.
pub fn scan_error(error: ScanError, csv: bool) -> ErrorResponse {
    let (message, what, escape) = match error {
        ScanError::LiteralCr => ("carriage return", "carriage return", "\\r"),
        ScanError::LiteralNl => ("newline", "newline", "\\n"),
    };
    if csv {
        bad_format(format!("unquoted {message} found in data"))
            .hint(format!("Use quoted CSV field to represent {what}."))
    } else {
        bad_format(format!("literal {message} found in data"))
            .hint(format!("Use \"{escape}\" to represent {what}."))
    }
}

/// Parses a key from its decoded text bytes: they must be UTF-8 without NUL bytes (like any
/// text PostgreSQL accepts), then [`KeyValue::parse`].
pub fn key_from_str(data_type: DataType, bytes: &[u8]) -> Result<KeyValue<'_>, ErrorResponse> {
    let text = std::str::from_utf8(bytes).map_err(|error| {
        let start = error.valid_up_to();
        let len = error.error_len().unwrap_or(bytes.len() - start).min(4);
        invalid_encoding(&bytes[start..start + len])
    })?;
    if let Some(at) = memchr::memchr(0, bytes) {
        return Err(invalid_encoding(&bytes[at..at + 1]));
    }
    KeyValue::parse(data_type, text).map_err(parse_error)
}

/// PostgreSQL's complaint about bytes that are not UTF-8.
fn invalid_encoding(bytes: &[u8]) -> ErrorResponse {
    let shown: Vec<String> = bytes.iter().map(|byte| format!("0x{byte:02x}")).collect();
    ErrorResponse::error(
        sqlstate::CHARACTER_NOT_IN_REPERTOIRE,
        format!(
            "invalid byte sequence for encoding \"UTF8\": {}",
            shown.join(" ")
        ),
    )
}

/// A key that is not a value of its type.
fn parse_error(error: ParseKeyError) -> ErrorResponse {
    let code = match error {
        ParseKeyError::Syntax { .. } => sqlstate::INVALID_TEXT_REPRESENTATION,
        ParseKeyError::OutOfRange { .. } => sqlstate::NUMERIC_VALUE_OUT_OF_RANGE,
        ParseKeyError::Unsupported { .. } => sqlstate::FEATURE_NOT_SUPPORTED,
    };
    ErrorResponse::error(code, error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_errors() {
        let error = key_from_str(DataType::Bigint, b"abc").unwrap_err();
        assert_eq!(error.code, "22P02");
        assert_eq!(
            error.message,
            "invalid input syntax for type bigint: \"abc\""
        );
        let error = key_from_str(DataType::Bigint, b"99999999999999999999").unwrap_err();
        assert_eq!(error.code, "22003");
        let error = key_from_str(DataType::Varchar, b"ab\xc3(").unwrap_err();
        assert_eq!(
            error.message,
            "invalid byte sequence for encoding \"UTF8\": 0xc3"
        );
        let error = key_from_str(DataType::Varchar, b"ab\0").unwrap_err();
        assert_eq!(error.code, "22021");
        assert_eq!(
            key_from_str(DataType::Varchar, b"ok"),
            Ok(KeyValue::Text("ok"))
        );
        let error = at_key(error, 3, 0);
        assert_eq!(
            error.detail.as_deref(),
            Some("COPY data line 3, sharding key column 1")
        );
    }
}
