//! The messages the merger reads and writes: RowDescription ('T') into [`Column`]s and back,
//! DataRow ('D') into its fields and back. Every read is bounds-checked; a malformed message
//! is an `ErrorResponse` (08P01).

use bytes::{BufMut, Bytes, BytesMut};

use crate::net::frame::{put_cstr, Frame, Reader};
use crate::net::{sqlstate, ErrorResponse};

/// One column of a RowDescription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Column name.
    pub name: String,
    /// Table OID (0 when not a table column).
    pub table_oid: i32,
    /// Attribute number in that table.
    pub attnum: i16,
    /// Type OID.
    pub type_oid: u32,
    /// Type length (-1 variable).
    pub typlen: i16,
    /// Type modifier.
    pub typmod: i32,
    /// Format code 1: values are in the type's binary format.
    pub binary: bool,
}

/// One DataRow's fields (`None` is NULL), each sharing the message's buffer.
pub type Fields = Vec<Option<Bytes>>;

/// A malformed message from a shard.
pub fn malformed(what: &str) -> ErrorResponse {
    ErrorResponse::error(
        sqlstate::PROTOCOL_VIOLATION,
        format!("malformed {what} from a shard"),
    )
}

/// The body of a whole message (tag, length, body) after checking the tag and length.
fn body<'a>(message: &'a [u8], tag: u8, what: &str) -> Result<&'a [u8], ErrorResponse> {
    if message.len() < 5 || message[0] != tag {
        return Err(malformed(what));
    }
    let len = i32::from_be_bytes([message[1], message[2], message[3], message[4]]);
    if len < 4 || len as usize != message.len() - 1 {
        return Err(malformed(what));
    }
    Ok(&message[5..])
}

/// The columns of a whole RowDescription message.
pub fn parse_description(message: &[u8]) -> Result<Vec<Column>, ErrorResponse> {
    const WHAT: &str = "RowDescription";
    let mut r = Reader::new(body(message, b'T', WHAT)?);
    let bad = |_| malformed(WHAT);
    let count = r.i16().map_err(bad)?;
    let count = usize::try_from(count).map_err(|_| malformed(WHAT))?;
    let mut columns = Vec::with_capacity(count);
    for _ in 0..count {
        let name = r.cstr().map_err(bad)?.to_string();
        let table_oid = r.i32().map_err(bad)?;
        let attnum = r.i16().map_err(bad)?;
        let type_oid = r.i32().map_err(bad)? as u32;
        let typlen = r.i16().map_err(bad)?;
        let typmod = r.i32().map_err(bad)?;
        let binary = match r.i16().map_err(bad)? {
            0 => false,
            1 => true,
            _ => return Err(malformed(WHAT)),
        };
        columns.push(Column {
            name,
            table_oid,
            attnum,
            type_oid,
            typlen,
            typmod,
            binary,
        });
    }
    if !r.is_empty() {
        return Err(malformed(WHAT));
    }
    Ok(columns)
}

/// A RowDescription message for `columns`.
pub fn description(columns: &[Column]) -> Bytes {
    let mut body = BytesMut::with_capacity(2 + columns.len() * 32);
    body.put_i16(columns.len() as i16);
    for c in columns {
        put_cstr(&mut body, &c.name);
        body.put_i32(c.table_oid);
        body.put_i16(c.attnum);
        body.put_u32(c.type_oid);
        body.put_i16(c.typlen);
        body.put_i32(c.typmod);
        body.put_i16(i16::from(c.binary));
    }
    Frame::new(b'T', &body).bytes
}

/// Checks that a whole DataRow message is well framed and has `columns` fields, without
/// reading the fields.
pub fn check_row(message: &[u8], columns: usize) -> Result<(), ErrorResponse> {
    let body = body(message, b'D', "DataRow")?;
    match body {
        [hi, lo, ..] if i16::from_be_bytes([*hi, *lo]) as usize == columns => Ok(()),
        _ => Err(column_count_mismatch()),
    }
}

fn column_count_mismatch() -> ErrorResponse {
    ErrorResponse::error(
        sqlstate::PROTOCOL_VIOLATION,
        "a shard sent a DataRow whose column count differs from its RowDescription",
    )
}

/// The fields of a whole DataRow message with `columns` fields.
pub fn parse_row(message: &Bytes, columns: usize) -> Result<Fields, ErrorResponse> {
    const WHAT: &str = "DataRow";
    let body_len = body(message, b'D', WHAT)?.len();
    let mut pos = 5usize;
    let read_i32 = |pos: usize| -> Result<i32, ErrorResponse> {
        let b = message.get(pos..pos + 4).ok_or_else(|| malformed(WHAT))?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let count = message.get(pos..pos + 2).ok_or_else(|| malformed(WHAT))?;
    if i16::from_be_bytes([count[0], count[1]]) as usize != columns {
        return Err(column_count_mismatch());
    }
    pos += 2;
    let mut fields = Vec::with_capacity(columns);
    for _ in 0..columns {
        let len = read_i32(pos)?;
        pos += 4;
        if len == -1 {
            fields.push(None);
            continue;
        }
        let len = usize::try_from(len).map_err(|_| malformed(WHAT))?;
        if pos + len > message.len() {
            return Err(malformed(WHAT));
        }
        fields.push(Some(message.slice(pos..pos + len)));
        pos += len;
    }
    if pos != body_len + 5 {
        return Err(malformed(WHAT));
    }
    Ok(fields)
}

/// Appends a DataRow message with `fields` to `out`.
pub fn put_row(out: &mut BytesMut, fields: &[Option<Bytes>]) {
    let len: usize = 4
        + 2
        + fields
            .iter()
            .map(|f| 4 + f.as_ref().map_or(0, Bytes::len))
            .sum::<usize>();
    out.reserve(len + 1);
    out.put_u8(b'D');
    out.put_i32(len as i32);
    out.put_i16(fields.len() as i16);
    for field in fields {
        match field {
            None => out.put_i32(-1),
            Some(value) => {
                out.put_i32(value.len() as i32);
                out.put_slice(value);
            }
        }
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A column of the given type and format for tests.
    pub fn column(name: &str, type_oid: u32, binary: bool) -> Column {
        Column {
            name: name.into(),
            table_oid: 0,
            attnum: 0,
            type_oid,
            typlen: -1,
            typmod: -1,
            binary,
        }
    }

    /// A DataRow message from optional byte strings.
    pub fn row(fields: &[Option<&[u8]>]) -> Bytes {
        let fields: Fields = fields
            .iter()
            .map(|f| f.map(Bytes::copy_from_slice))
            .collect();
        let mut out = BytesMut::new();
        put_row(&mut out, &fields);
        out.freeze()
    }

    #[test]
    fn description_round_trip() {
        let columns = vec![column("a", 23, false), column("b", 1700, true)];
        let bytes = description(&columns);
        assert_eq!(parse_description(&bytes).unwrap(), columns);
        // Truncated or with a bad format code.
        assert!(parse_description(&bytes[..bytes.len() - 1]).is_err());
        let mut bad = bytes.to_vec();
        let last = bad.len() - 1;
        bad[last] = 2;
        assert!(parse_description(&bad).is_err());
        assert!(parse_description(b"D\0\0\0\x06\0\0").is_err());
    }

    #[test]
    fn row_round_trip() {
        let bytes = row(&[Some(b"12"), None, Some(b"")]);
        let fields = parse_row(&bytes, 3).unwrap();
        assert_eq!(
            fields,
            vec![Some(Bytes::from_static(b"12")), None, Some(Bytes::new())]
        );
        check_row(&bytes, 3).unwrap();
        assert!(check_row(&bytes, 2).is_err());
        assert!(parse_row(&bytes, 2).is_err());
        assert!(parse_row(&bytes.slice(..bytes.len() - 1), 3).is_err());
        // A field length running past the end.
        let mut bad = bytes.to_vec();
        bad[7] = 0x7f;
        assert!(parse_row(&Bytes::from(bad), 3).is_err());
        // Trailing bytes after the last field.
        let mut long = bytes.to_vec();
        long.push(0);
        let len = (long.len() - 1) as i32;
        long[1..5].copy_from_slice(&len.to_be_bytes());
        assert!(parse_row(&Bytes::from(long), 3).is_err());
        assert!(check_row(b"D\0\0", 0).is_err());
    }
}
