//! PostgreSQL's binary COPY format: the file header, the extent of one tuple and the decoding
//! of a sharding key field (big-endian integers, UTF-8 text, 16-byte uuids).

use crate::net::{sqlstate, ErrorResponse};
use crate::router::sharding::{DataType, KeyValue};

use super::error::{bad_format, key_from_str};

/// The 11 bytes every binary COPY stream starts with.
pub const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
/// The file trailer: a field count of -1.
pub const TRAILER: &[u8; 2] = &[0xff, 0xff];
/// The header PostgreSQL writes: signature, no flags, no extension.
pub const HEADER: &[u8; 19] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// Flag bit 16: the tuples carry OIDs (not supported since PostgreSQL 12).
const FLAG_OIDS: u32 = 1 << 16;

/// The length of the file header (signature, flags, extension) at the start of `bytes`, or
/// `None` when more bytes are needed.
pub fn header_len(bytes: &[u8]) -> Result<Option<usize>, ErrorResponse> {
    let known = bytes.len().min(SIGNATURE.len());
    if bytes[..known] != SIGNATURE[..known] {
        return Err(bad_format("COPY file signature not recognized"));
    }
    let Some(fixed) = bytes.get(11..19) else {
        return Ok(None);
    };
    let flags = u32::from_be_bytes([fixed[0], fixed[1], fixed[2], fixed[3]]);
    if flags & FLAG_OIDS != 0 {
        return Err(bad_format("invalid COPY file header (WITH OIDS)"));
    }
    if flags >> 16 != 0 {
        return Err(bad_format(
            "unrecognized critical flags in COPY file header",
        ));
    }
    let extension = i32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
    let extension = usize::try_from(extension)
        .map_err(|_| bad_format("invalid COPY file header (wrong length)"))?;
    let total = 19usize.saturating_add(extension);
    Ok((bytes.len() >= total).then_some(total))
}

/// Where one field of a tuple is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyField {
    /// No key column was asked for.
    NotWanted,
    /// The tuple has fewer fields than the key column needs.
    Missing,
    /// The field is NULL.
    Null,
    /// The field's bytes are `tuple[start..end]`.
    At(usize, usize),
}

/// What the bytes at the start of a slice hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tuple {
    /// A whole tuple of `len` bytes, and where field `column` is.
    Complete {
        /// Bytes in the tuple (field count and every field).
        len: usize,
        /// The requested field.
        key: KeyField,
    },
    /// The file trailer (2 bytes).
    Trailer,
    /// A tuple that needs at least this many more bytes.
    Need(usize),
}

/// Reads the tuple at the start of `bytes`, locating field `column` if given.
pub fn tuple(bytes: &[u8], column: Option<usize>) -> Result<Tuple, ErrorResponse> {
    let Some(count) = bytes.get(..2) else {
        return Ok(Tuple::Need(2 - bytes.len()));
    };
    let count = i16::from_be_bytes([count[0], count[1]]);
    if count == -1 {
        return Ok(Tuple::Trailer);
    }
    let Ok(count) = usize::try_from(count) else {
        return Err(bad_format(format!("row field count is {count}")));
    };
    let mut key = match column {
        None => KeyField::NotWanted,
        Some(column) if column >= count => KeyField::Missing,
        Some(_) => KeyField::Null,
    };
    let mut pos = 2usize;
    for index in 0..count {
        let Some(len) = bytes.get(pos..pos + 4) else {
            return Ok(Tuple::Need(pos + 4 - bytes.len()));
        };
        let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        pos += 4;
        if len == -1 {
            continue;
        }
        let Ok(len) = usize::try_from(len) else {
            return Err(bad_format("invalid field size"));
        };
        let end = pos.saturating_add(len);
        if Some(index) == column {
            key = KeyField::At(pos, end);
        }
        pos = end;
        if pos > bytes.len() {
            return Ok(Tuple::Need(pos - bytes.len()));
        }
    }
    Ok(Tuple::Complete { len: pos, key })
}

/// The key a binary field holds: a 2, 4 or 8-byte integer for [`DataType::Bigint`], UTF-8
/// text for [`DataType::Varchar`], 16 bytes for [`DataType::Uuid`].
pub fn decode_key(data_type: DataType, bytes: &[u8]) -> Result<KeyValue<'_>, ErrorResponse> {
    let wrong_size = || {
        ErrorResponse::error(
            sqlstate::INVALID_BINARY_REPRESENTATION,
            format!(
                "incorrect binary data format: {} bytes is not a {data_type} sharding key",
                bytes.len()
            ),
        )
    };
    match data_type {
        DataType::Bigint => match *bytes {
            [a, b] => Ok(KeyValue::from(i16::from_be_bytes([a, b]))),
            [a, b, c, d] => Ok(KeyValue::from(i32::from_be_bytes([a, b, c, d]))),
            [a, b, c, d, e, f, g, h] => {
                Ok(KeyValue::from(i64::from_be_bytes([a, b, c, d, e, f, g, h])))
            }
            _ => Err(wrong_size()),
        },
        DataType::Uuid => <[u8; 16]>::try_from(bytes)
            .map(KeyValue::Uuid)
            .map_err(|_| wrong_size()),
        DataType::Varchar | DataType::Vector => key_from_str(data_type, bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple_bytes(fields: &[Option<&[u8]>]) -> Vec<u8> {
        let mut out = (fields.len() as i16).to_be_bytes().to_vec();
        for field in fields {
            match field {
                None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(bytes) => {
                    out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
                    out.extend_from_slice(bytes);
                }
            }
        }
        out
    }

    #[test]
    fn headers() {
        assert_eq!(header_len(b""), Ok(None));
        assert_eq!(header_len(b"PGCOPY"), Ok(None));
        assert_eq!(header_len(HEADER), Ok(Some(19)));
        let mut with_extension = SIGNATURE.to_vec();
        with_extension.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 3, 1, 2]);
        assert_eq!(header_len(&with_extension), Ok(None));
        with_extension.push(3);
        assert_eq!(header_len(&with_extension), Ok(Some(22)));
        assert_eq!(
            header_len(b"PGCOPX").unwrap_err().message,
            "COPY file signature not recognized"
        );
        let mut oids = SIGNATURE.to_vec();
        oids.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            header_len(&oids).unwrap_err().message,
            "invalid COPY file header (WITH OIDS)"
        );
        let mut negative = SIGNATURE.to_vec();
        negative.extend_from_slice(&[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xfe]);
        assert_eq!(header_len(&negative).unwrap_err().code, "22P04");
    }

    #[test]
    fn tuples() {
        let bytes = tuple_bytes(&[Some(b"ab"), None, Some(b"")]);
        assert_eq!(
            tuple(&bytes, Some(0)),
            Ok(Tuple::Complete {
                len: 16,
                key: KeyField::At(6, 8)
            })
        );
        assert_eq!(
            tuple(&bytes, Some(1)),
            Ok(Tuple::Complete {
                len: 16,
                key: KeyField::Null
            })
        );
        assert_eq!(
            tuple(&bytes, Some(2)),
            Ok(Tuple::Complete {
                len: 16,
                key: KeyField::At(16, 16)
            })
        );
        assert_eq!(
            tuple(&bytes, Some(3)),
            Ok(Tuple::Complete {
                len: 16,
                key: KeyField::Missing
            })
        );
        for cut in 0..bytes.len() {
            assert!(
                matches!(tuple(&bytes[..cut], None), Ok(Tuple::Need(n)) if n > 0 && cut + n <= 16),
                "{cut}"
            );
        }
        assert_eq!(tuple(TRAILER, None), Ok(Tuple::Trailer));
        assert!(tuple(&[0xff, 0xfe], None).is_err());
        assert!(tuple(&[0, 1, 0xff, 0xff, 0xff, 0xfe], None).is_err());
    }

    #[test]
    fn keys() {
        assert_eq!(
            decode_key(DataType::Bigint, &[0xff, 0xfe]),
            Ok(KeyValue::Int(-2))
        );
        assert_eq!(
            decode_key(DataType::Bigint, &7i32.to_be_bytes()),
            Ok(KeyValue::Int(7))
        );
        assert_eq!(
            decode_key(DataType::Bigint, &i64::MIN.to_be_bytes()),
            Ok(KeyValue::Int(i64::MIN))
        );
        assert_eq!(
            decode_key(DataType::Bigint, &[1, 2, 3]).unwrap_err().code,
            "22P03"
        );
        assert_eq!(
            decode_key(DataType::Varchar, "żółć".as_bytes()),
            Ok(KeyValue::Text("żółć"))
        );
        assert_eq!(
            decode_key(DataType::Varchar, b"a\xffb").unwrap_err().code,
            "22021"
        );
        assert_eq!(
            decode_key(DataType::Uuid, &[7; 16]),
            Ok(KeyValue::Uuid([7; 16]))
        );
        assert_eq!(
            decode_key(DataType::Uuid, &[7; 15]).unwrap_err().code,
            "22P03"
        );
        assert_eq!(
            decode_key(DataType::Vector, b"[1,2]").unwrap_err().code,
            "0A000"
        );
    }
}
