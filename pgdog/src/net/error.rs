//! Wire-level errors and the `ErrorResponse` pgdog sends to clients.

use bytes::{Bytes, BytesMut};

use super::frame::{put_cstr, Frame, Reader};
use super::sqlstate;

/// What can go wrong reading or writing protocol messages.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The socket failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A message declared an impossible length.
    #[error("invalid length {len} for message type {:?}", *tag as char)]
    BadLength {
        /// The message tag.
        tag: u8,
        /// The declared length.
        len: i64,
    },
    /// A message body could not be decoded.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    /// A message arrived that is not allowed at this point.
    #[error("unexpected message type {:?} {context}", *tag as char)]
    Unexpected {
        /// The message tag.
        tag: u8,
        /// Where it arrived.
        context: &'static str,
    },
    /// The peer closed the connection.
    #[error("connection closed")]
    Closed,
}

impl Error {
    /// The `ErrorResponse` a client should get for this error.
    pub fn to_response(&self) -> ErrorResponse {
        match self {
            Error::Io(_) | Error::Closed => {
                ErrorResponse::fatal(sqlstate::CONNECTION_FAILURE, self.to_string())
            }
            _ => ErrorResponse::fatal(sqlstate::PROTOCOL_VIOLATION, self.to_string()),
        }
    }
}

/// An `ErrorResponse` (or `NoticeResponse`) with the fields pgdog uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    /// ERROR, FATAL, WARNING, ...
    pub severity: String,
    /// The SQLSTATE.
    pub code: String,
    /// The primary message.
    pub message: String,
    /// Optional detail.
    pub detail: Option<String>,
    /// Optional hint.
    pub hint: Option<String>,
}

impl ErrorResponse {
    /// An ERROR: the statement failed, the connection stays.
    pub fn error(code: &str, message: impl Into<String>) -> Self {
        Self::with_severity("ERROR", code, message)
    }

    /// A FATAL error: the connection is closed after sending it.
    pub fn fatal(code: &str, message: impl Into<String>) -> Self {
        Self::with_severity("FATAL", code, message)
    }

    /// A message with any severity (WARNING, NOTICE, ...).
    pub fn with_severity(severity: &str, code: &str, message: impl Into<String>) -> Self {
        ErrorResponse {
            severity: severity.to_string(),
            code: code.to_string(),
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    /// Adds a detail line.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Adds a hint line.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Encodes it as an `ErrorResponse` ('E') message.
    pub fn to_bytes(&self) -> Bytes {
        self.encode(b'E')
    }

    /// Encodes it as a `NoticeResponse` ('N') message.
    pub fn to_notice(&self) -> Bytes {
        self.encode(b'N')
    }

    fn encode(&self, tag: u8) -> Bytes {
        let mut body = BytesMut::new();
        for (field, value) in [
            (b'S', Some(&self.severity)),
            (b'V', Some(&self.severity)),
            (b'C', Some(&self.code)),
            (b'M', Some(&self.message)),
            (b'D', self.detail.as_ref()),
            (b'H', self.hint.as_ref()),
        ] {
            if let Some(value) = value {
                body.extend_from_slice(&[field]);
                put_cstr(&mut body, value);
            }
        }
        body.extend_from_slice(&[0]);
        Frame::new(tag, &body).bytes
    }

    /// Decodes the body of an `ErrorResponse` or `NoticeResponse`.
    pub fn parse(body: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(body);
        let mut out = ErrorResponse::with_severity("", "", "");
        let mut untranslated = false;
        loop {
            let field = r.u8()?;
            if field == 0 {
                break;
            }
            let value = r.cstr()?.to_string();
            match field {
                // 'V' is the untranslated severity (Postgres 9.6+); prefer it over 'S'.
                b'V' => {
                    out.severity = value;
                    untranslated = true;
                }
                b'S' if !untranslated => out.severity = value,
                b'C' => out.code = value,
                b'M' => out.message = value,
                b'D' => out.detail = Some(value),
                b'H' => out.hint = Some(value),
                _ => {}
            }
        }
        Ok(out)
    }
}

impl std::fmt::Display for ErrorResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.severity, self.code, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_response_round_trip() {
        let e = ErrorResponse::error("3D000", "database \"x\" does not exist").hint("check");
        let bytes = e.to_bytes();
        assert_eq!(bytes[0], b'E');
        let parsed = ErrorResponse::parse(&bytes[5..]).unwrap();
        assert_eq!(parsed, e);
    }
}
