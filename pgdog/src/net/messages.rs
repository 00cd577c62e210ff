//! The messages pgdog builds itself, and decoding of the few client messages it must inspect
//! (Query, Parse, Bind, Describe, Close) to track prepared statements and session state.

use bytes::{Bytes, BytesMut};

use super::frame::{put_cstr, Frame, Reader};
use super::Error;

/// AuthenticationOk.
pub fn authentication_ok() -> Bytes {
    Frame::new(b'R', &0i32.to_be_bytes()).bytes
}

/// AuthenticationMD5Password with its salt.
pub fn authentication_md5(salt: [u8; 4]) -> Bytes {
    let mut body = 5i32.to_be_bytes().to_vec();
    body.extend_from_slice(&salt);
    Frame::new(b'R', &body).bytes
}

/// AuthenticationSASL offering SCRAM-SHA-256.
pub fn authentication_sasl() -> Bytes {
    let mut body = 10i32.to_be_bytes().to_vec();
    body.extend_from_slice(b"SCRAM-SHA-256\0\0");
    Frame::new(b'R', &body).bytes
}

/// AuthenticationSASLContinue with server-first-message.
pub fn authentication_sasl_continue(data: &[u8]) -> Bytes {
    let mut body = 11i32.to_be_bytes().to_vec();
    body.extend_from_slice(data);
    Frame::new(b'R', &body).bytes
}

/// AuthenticationSASLFinal with server-final-message.
pub fn authentication_sasl_final(data: &[u8]) -> Bytes {
    let mut body = 12i32.to_be_bytes().to_vec();
    body.extend_from_slice(data);
    Frame::new(b'R', &body).bytes
}

/// ParameterStatus.
pub fn parameter_status(name: &str, value: &str) -> Bytes {
    let mut body = BytesMut::new();
    put_cstr(&mut body, name);
    put_cstr(&mut body, value);
    Frame::new(b'S', &body).bytes
}

/// BackendKeyData.
pub fn backend_key_data(pid: i32, secret: i32) -> Bytes {
    let mut body = pid.to_be_bytes().to_vec();
    body.extend_from_slice(&secret.to_be_bytes());
    Frame::new(b'K', &body).bytes
}

/// NegotiateProtocolVersion: we speak 3.0 and none of the requested `_pq_` options.
pub fn negotiate_protocol_version(minor: i32, unsupported: &[&str]) -> Bytes {
    let mut body = BytesMut::new();
    body.extend_from_slice(&minor.to_be_bytes());
    body.extend_from_slice(&(unsupported.len() as i32).to_be_bytes());
    for option in unsupported {
        put_cstr(&mut body, option);
    }
    Frame::new(b'v', &body).bytes
}

/// ReadyForQuery with a transaction status: `I`, `T` or `E`.
pub fn ready_for_query(status: u8) -> Bytes {
    Frame::new(b'Z', &[status]).bytes
}

/// ParseComplete.
pub fn parse_complete() -> Bytes {
    Frame::new(b'1', &[]).bytes
}

/// CloseComplete.
pub fn close_complete() -> Bytes {
    Frame::new(b'3', &[]).bytes
}

/// BindComplete.
pub fn bind_complete() -> Bytes {
    Frame::new(b'2', &[]).bytes
}

/// NoData: the statement or portal returns no rows.
pub fn no_data() -> Bytes {
    Frame::new(b'n', &[]).bytes
}

/// EmptyQueryResponse: the query text held no command.
pub fn empty_query_response() -> Bytes {
    Frame::new(b'I', &[]).bytes
}

/// ParameterDescription for a statement without parameters.
pub fn no_parameters() -> Bytes {
    Frame::new(b't', &0i16.to_be_bytes()).bytes
}

/// PortalSuspended: Execute's row limit was reached before the end of the rows.
pub fn portal_suspended() -> Bytes {
    Frame::new(b's', &[]).bytes
}

/// CommandComplete with a tag such as `SHOW` or `ROLLBACK`.
pub fn command_complete(tag: &str) -> Bytes {
    let mut body = BytesMut::new();
    put_cstr(&mut body, tag);
    Frame::new(b'C', &body).bytes
}

/// A simple Query.
pub fn query(sql: &str) -> Bytes {
    let mut body = BytesMut::new();
    put_cstr(&mut body, sql);
    Frame::new(b'Q', &body).bytes
}

/// Close of a prepared statement.
pub fn close_statement(name: &str) -> Bytes {
    let mut body = BytesMut::from(&b"S"[..]);
    put_cstr(&mut body, name);
    Frame::new(b'C', &body).bytes
}

/// Sync.
pub fn sync() -> Bytes {
    Frame::new(b'S', &[]).bytes
}

/// Terminate.
pub fn terminate() -> Bytes {
    Frame::new(b'X', &[]).bytes
}

/// A decoded `Parse`: statement name, SQL text and the raw parameter type section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parse<'a> {
    /// Statement name ("" for the unnamed statement).
    pub name: &'a str,
    /// SQL text.
    pub query: &'a str,
    /// int16 count + int32 OIDs, as sent.
    pub param_types: &'a [u8],
}

impl<'a> Parse<'a> {
    /// Decodes a `Parse` message body.
    pub fn decode(frame: &'a Frame) -> Result<Self, Error> {
        let mut r = Reader::new(frame.body());
        let name = r.cstr()?;
        let query = r.cstr()?;
        let param_types = r.rest();
        let mut check = Reader::new(param_types);
        let count = check.i16()?;
        if count < 0 || check.rest().len() != count as usize * 4 {
            return Err(Error::Malformed(
                "Parse parameter types do not match their count",
            ));
        }
        Ok(Parse {
            name,
            query,
            param_types,
        })
    }

    /// Re-encodes it under another statement name.
    pub fn renamed(&self, name: &str) -> Bytes {
        let mut body = BytesMut::with_capacity(self.query.len() + self.param_types.len() + 32);
        put_cstr(&mut body, name);
        put_cstr(&mut body, self.query);
        body.extend_from_slice(self.param_types);
        Frame::new(b'P', &body).bytes
    }
}

/// The statement name a `Bind` refers to.
pub fn bind_statement(frame: &Frame) -> Result<&str, Error> {
    let mut r = Reader::new(frame.body());
    r.cstr()?;
    r.cstr()
}

/// Re-encodes a `Bind` so it refers to statement `name`.
pub fn bind_renamed(frame: &Frame, name: &str) -> Result<Bytes, Error> {
    let mut r = Reader::new(frame.body());
    let portal = r.cstr()?;
    r.cstr()?;
    let rest = r.rest();
    let mut body = BytesMut::with_capacity(rest.len() + portal.len() + name.len() + 2);
    put_cstr(&mut body, portal);
    put_cstr(&mut body, name);
    body.extend_from_slice(rest);
    Ok(Frame::new(b'B', &body).bytes)
}

/// A decoded `Bind`: portal, statement, parameters and result formats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind<'a> {
    /// Portal name ("" for the unnamed portal).
    pub portal: &'a str,
    /// Statement name ("" for the unnamed statement).
    pub statement: &'a str,
    /// Parameter format codes as sent (none, one for all, or one per parameter).
    pub param_formats: Vec<i16>,
    /// Parameter values; `None` is NULL.
    pub params: Vec<Option<&'a [u8]>>,
    /// Result column format codes as sent.
    pub result_formats: Vec<i16>,
}

impl<'a> Bind<'a> {
    /// Decodes a `Bind` message body.
    pub fn decode(frame: &'a Frame) -> Result<Self, Error> {
        let mut r = Reader::new(frame.body());
        let portal = r.cstr()?;
        let statement = r.cstr()?;
        let param_formats = read_i16s(&mut r)?;
        let count = r.i16()?;
        if count < 0 {
            return Err(Error::Malformed("Bind parameter count is negative"));
        }
        let mut params = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let len = r.i32()?;
            params.push(match len {
                -1 => None,
                len if len < 0 => {
                    return Err(Error::Malformed("Bind parameter length is negative"))
                }
                len => Some(r.bytes(len as usize)?),
            });
        }
        let result_formats = read_i16s(&mut r)?;
        Ok(Bind {
            portal,
            statement,
            param_formats,
            params,
            result_formats,
        })
    }

    /// The format code of parameter `index` (0 text, 1 binary).
    pub fn param_format(&self, index: usize) -> i16 {
        match self.param_formats.len() {
            0 => 0,
            1 => self.param_formats[0],
            _ => self.param_formats.get(index).copied().unwrap_or(0),
        }
    }

    /// Encodes a `Bind` of `statement` with the parameters `indexes` of this one (in that
    /// order) and the same result formats.
    pub fn encode_subset(&self, statement: &str, indexes: &[usize]) -> Bytes {
        let mut body = BytesMut::with_capacity(64);
        put_cstr(&mut body, self.portal);
        put_cstr(&mut body, statement);
        body.extend_from_slice(&(indexes.len() as i16).to_be_bytes());
        for &i in indexes {
            body.extend_from_slice(&self.param_format(i).to_be_bytes());
        }
        body.extend_from_slice(&(indexes.len() as i16).to_be_bytes());
        for &i in indexes {
            match self.params.get(i).copied().flatten() {
                Some(value) => {
                    body.extend_from_slice(&(value.len() as i32).to_be_bytes());
                    body.extend_from_slice(value);
                }
                None => body.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        body.extend_from_slice(&(self.result_formats.len() as i16).to_be_bytes());
        for format in &self.result_formats {
            body.extend_from_slice(&format.to_be_bytes());
        }
        Frame::new(b'B', &body).bytes
    }
}

fn read_i16s(r: &mut Reader<'_>) -> Result<Vec<i16>, Error> {
    let count = r.i16()?;
    if count < 0 {
        return Err(Error::Malformed("negative count in Bind"));
    }
    (0..count).map(|_| r.i16()).collect()
}

/// The parameter type OIDs of a `Parse` (its raw `param_types` section).
pub fn param_type_oids(param_types: &[u8]) -> Vec<u32> {
    param_types
        .get(2..)
        .unwrap_or_default()
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// A `Parse` of `query` as statement `name` with the given raw parameter type section.
pub fn parse_message(name: &str, query: &str, param_types: &[u8]) -> Bytes {
    Parse {
        name: "",
        query,
        param_types,
    }
    .renamed(name)
}

/// A `Parse` of `query` as statement `name` declaring parameter types `oids` (0: unspecified).
pub fn parse_with_types(name: &str, query: &str, oids: &[u32]) -> Bytes {
    let mut types = BytesMut::with_capacity(2 + oids.len() * 4);
    // The type count is an Int16: no more types than fit are declared (the rest stay inferred).
    let oids = &oids[..oids.len().min(i16::MAX as usize)];
    types.extend_from_slice(&(oids.len() as i16).to_be_bytes());
    for oid in oids {
        types.extend_from_slice(&oid.to_be_bytes());
    }
    parse_message(name, query, &types)
}

/// A `Describe` of portal `name`.
pub fn describe_portal(name: &str) -> Bytes {
    let mut body = BytesMut::with_capacity(name.len() + 2);
    body.extend_from_slice(b"P");
    put_cstr(&mut body, name);
    Frame::new(b'D', &body).bytes
}

/// An `Execute` of portal `name` returning every row.
pub fn execute(name: &str) -> Bytes {
    let mut body = BytesMut::with_capacity(name.len() + 5);
    put_cstr(&mut body, name);
    body.extend_from_slice(&0i32.to_be_bytes());
    Frame::new(b'E', &body).bytes
}

/// Flush.
pub fn flush() -> Bytes {
    Frame::new(b'H', &[]).bytes
}

/// The target of a `Describe` or `Close`: a statement (`S`) or portal (`P`) and its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    /// `b'S'` or `b'P'`.
    pub kind: u8,
    /// The statement or portal name.
    pub name: &'a str,
}

impl<'a> Target<'a> {
    /// Decodes a `Describe` or `Close` body.
    pub fn decode(frame: &'a Frame) -> Result<Self, Error> {
        let mut r = Reader::new(frame.body());
        let kind = r.u8()?;
        if kind != b'S' && kind != b'P' {
            return Err(Error::Malformed("Describe/Close target must be 'S' or 'P'"));
        }
        let name = r.cstr()?;
        Ok(Target { kind, name })
    }

    /// Re-encodes the message (tag `D` or `C`) for another name.
    pub fn renamed(&self, tag: u8, name: &str) -> Bytes {
        let mut body = BytesMut::with_capacity(name.len() + 2);
        body.extend_from_slice(&[self.kind]);
        put_cstr(&mut body, name);
        Frame::new(tag, &body).bytes
    }

    /// Whether this names a prepared statement other than the unnamed one.
    pub fn is_named_statement(&self) -> bool {
        self.kind == b'S' && !self.name.is_empty()
    }
}

/// The transaction status byte of a `ReadyForQuery`.
pub fn ready_status(frame: &Frame) -> Result<u8, Error> {
    Reader::new(frame.body()).u8()
}

/// The command tag of a `CommandComplete`.
pub fn command_tag(frame: &Frame) -> Result<&str, Error> {
    Reader::new(frame.body()).cstr()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(bytes: Bytes) -> Frame {
        Frame {
            tag: bytes[0],
            bytes,
        }
    }

    #[test]
    fn parse_rename_keeps_types() {
        let mut body = BytesMut::new();
        put_cstr(&mut body, "s1");
        put_cstr(&mut body, "select $1");
        body.extend_from_slice(&1i16.to_be_bytes());
        body.extend_from_slice(&23i32.to_be_bytes());
        let original = Frame::new(b'P', &body);
        let parse = Parse::decode(&original).unwrap();
        assert_eq!(parse.name, "s1");
        let renamed = frame(parse.renamed("__pgdog_1"));
        let again = Parse::decode(&renamed).unwrap();
        assert_eq!(again.name, "__pgdog_1");
        assert_eq!(again.query, "select $1");
        assert_eq!(again.param_types, parse.param_types);
    }

    #[test]
    fn parse_with_wrong_type_count_is_malformed() {
        let mut body = BytesMut::new();
        put_cstr(&mut body, "s1");
        put_cstr(&mut body, "select $1");
        body.extend_from_slice(&3i16.to_be_bytes());
        assert!(Parse::decode(&Frame::new(b'P', &body)).is_err());
    }

    #[test]
    fn bind_rename() {
        let mut body = BytesMut::new();
        put_cstr(&mut body, "");
        put_cstr(&mut body, "s1");
        body.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        let bind = Frame::new(b'B', &body);
        assert_eq!(bind_statement(&bind).unwrap(), "s1");
        let renamed = frame(bind_renamed(&bind, "x").unwrap());
        assert_eq!(bind_statement(&renamed).unwrap(), "x");
        assert_eq!(&renamed.body()[3..], &[0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn describe_target() {
        let d = Frame::new(b'D', b"Sabc\0");
        let t = Target::decode(&d).unwrap();
        assert!(t.is_named_statement());
        assert!(Target::decode(&Frame::new(b'D', b"Xabc\0")).is_err());
    }
}
