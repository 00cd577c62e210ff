//! Typed column values: which types the merger can order and how, decoding a field (text or
//! binary format) into a comparable [`Key`], PostgreSQL's order between keys, and the bytes
//! that make equal values equal for `GROUP BY`/`DISTINCT`.

use std::cmp::Ordering;

use bytes::Bytes;

use super::datetime;
use super::float::{parse_float4, parse_float8};
use super::message::{malformed, Column};
use super::numeric::Numeric;
use crate::net::{sqlstate, ErrorResponse};

/// Built-in type OIDs the merger knows.
pub mod oid {
    /// `bool`
    pub const BOOL: u32 = 16;
    /// `bytea`
    pub const BYTEA: u32 = 17;
    /// `"char"`
    pub const CHAR: u32 = 18;
    /// `name`
    pub const NAME: u32 = 19;
    /// `bigint`
    pub const INT8: u32 = 20;
    /// `smallint`
    pub const INT2: u32 = 21;
    /// `integer`
    pub const INT4: u32 = 23;
    /// `text`
    pub const TEXT: u32 = 25;
    /// `oid`
    pub const OID: u32 = 26;
    /// `real`
    pub const FLOAT4: u32 = 700;
    /// `double precision`
    pub const FLOAT8: u32 = 701;
    /// `unknown` (untyped literals)
    pub const UNKNOWN: u32 = 705;
    /// `character(n)`
    pub const BPCHAR: u32 = 1042;
    /// `character varying`
    pub const VARCHAR: u32 = 1043;
    /// `date`
    pub const DATE: u32 = 1082;
    /// `time`
    pub const TIME: u32 = 1083;
    /// `timestamp`
    pub const TIMESTAMP: u32 = 1114;
    /// `timestamptz`
    pub const TIMESTAMPTZ: u32 = 1184;
    /// `interval`
    pub const INTERVAL: u32 = 1186;
    /// `timetz`
    pub const TIMETZ: u32 = 1266;
    /// `numeric`
    pub const NUMERIC: u32 = 1700;
    /// `uuid`
    pub const UUID: u32 = 2950;
}

/// How values of a type are read and ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `smallint`, `integer`, `bigint`.
    Int,
    /// `oid` (unsigned).
    Oid,
    /// `real`.
    Float4,
    /// `double precision`.
    Float8,
    /// `numeric`.
    Numeric,
    /// `text`, `varchar`, `name`, `unknown`: bytes (C collation).
    Text,
    /// `character(n)`: bytes without trailing spaces.
    Bpchar,
    /// `"char"`: one unsigned byte.
    Char,
    /// `bool`.
    Bool,
    /// `date`.
    Date,
    /// `time`.
    Time,
    /// `timetz`.
    TimeTz,
    /// `timestamp`.
    Timestamp,
    /// `timestamptz`.
    TimestampTz,
    /// `interval`.
    Interval,
    /// `uuid`.
    Uuid,
    /// `bytea`.
    Bytea,
}

impl Kind {
    /// The kind of a type OID, `None` for types the merger cannot order.
    pub fn of(type_oid: u32) -> Option<Kind> {
        use oid::*;
        Some(match type_oid {
            INT2 | INT4 | INT8 => Kind::Int,
            OID => Kind::Oid,
            FLOAT4 => Kind::Float4,
            FLOAT8 => Kind::Float8,
            NUMERIC => Kind::Numeric,
            TEXT | VARCHAR | NAME | UNKNOWN => Kind::Text,
            BPCHAR => Kind::Bpchar,
            CHAR => Kind::Char,
            BOOL => Kind::Bool,
            DATE => Kind::Date,
            TIME => Kind::Time,
            TIMETZ => Kind::TimeTz,
            TIMESTAMP => Kind::Timestamp,
            TIMESTAMPTZ => Kind::TimestampTz,
            INTERVAL => Kind::Interval,
            UUID => Kind::Uuid,
            BYTEA => Kind::Bytea,
            _ => return None,
        })
    }

    /// The kind of column `index`, or the 0A000 error naming it and its type.
    pub fn of_column(column: &Column, index: usize, purpose: &str) -> Result<Kind, ErrorResponse> {
        Kind::of(column.type_oid).ok_or_else(|| {
            ErrorResponse::error(
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!(
                    "cannot {purpose} column \"{}\" (result column {}) across shards: type OID {} is not supported",
                    column.name,
                    index + 1,
                    column.type_oid
                ),
            )
        })
    }
}

/// A decoded value that orders like the PostgreSQL type.
#[derive(Debug, Clone, PartialEq)]
pub enum Key {
    /// Integers of any width.
    Int(i128),
    /// Floats (NaN above everything, equal to itself).
    Float(f64),
    /// `numeric`.
    Numeric(Numeric),
    /// Byte strings compared bytewise.
    Bytes(Bytes),
    /// `bool`.
    Bool(bool),
    /// A point in time or a span (dates, times, timestamps, intervals).
    Instant(i128),
    /// `timetz`: UTC time, then zone.
    TimeTz(i128, i32),
}

/// PostgreSQL's order of two keys of the same column.
pub fn compare(a: &Key, b: &Key) -> Ordering {
    match (a, b) {
        (Key::Int(a), Key::Int(b)) | (Key::Instant(a), Key::Instant(b)) => a.cmp(b),
        (Key::Float(a), Key::Float(b)) => match (a.is_nan(), b.is_nan()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            _ => a.partial_cmp(b).unwrap_or(Ordering::Equal),
        },
        (Key::Numeric(a), Key::Numeric(b)) => a.compare(b),
        (Key::Bytes(a), Key::Bytes(b)) => a.cmp(b),
        (Key::Bool(a), Key::Bool(b)) => a.cmp(b),
        (Key::TimeTz(a, za), Key::TimeTz(b, zb)) => a.cmp(b).then(za.cmp(zb)),
        // Keys of one column always have the same variant.
        _ => Ordering::Equal,
    }
}

/// Decodes field `value` of `column` (of kind `kind`).
pub fn decode(column: &Column, kind: Kind, value: &Bytes) -> Result<Key, ErrorResponse> {
    decode_inner(kind, value, column.binary).ok_or_else(|| unreadable(column, value))
}

/// The error for a value that is not what its type's text or binary form looks like.
pub fn unreadable(column: &Column, value: &[u8]) -> ErrorResponse {
    if column.binary {
        malformed(&format!(
            "binary value of column \"{}\" (type OID {})",
            column.name, column.type_oid
        ))
    } else {
        ErrorResponse::error(
            sqlstate::FEATURE_NOT_SUPPORTED,
            format!(
                "cannot read value {:?} of column \"{}\" (type OID {}) to merge shard results",
                String::from_utf8_lossy(&value[..value.len().min(64)]),
                column.name,
                column.type_oid
            ),
        )
        .hint("merging needs DateStyle ISO, IntervalStyle postgres and bytea_output hex or escape")
    }
}

fn decode_inner(kind: Kind, v: &Bytes, binary: bool) -> Option<Key> {
    Some(match kind {
        Kind::Int => Key::Int(int(v, binary)?),
        Kind::Oid => Key::Int(i128::from(if binary {
            u32::from_be_bytes(v[..].try_into().ok()?)
        } else {
            std::str::from_utf8(v).ok()?.parse::<u32>().ok()?
        })),
        Kind::Float4 | Kind::Float8 => Key::Float(float(kind, v, binary)?),
        Kind::Numeric => Key::Numeric(numeric(v, binary)?),
        Kind::Text => Key::Bytes(v.clone()),
        Kind::Bpchar => {
            let len = v.len() - v.iter().rev().take_while(|b| **b == b' ').count();
            Key::Bytes(v.slice(..len))
        }
        Kind::Char => Key::Bytes(char_byte(v, binary)?),
        Kind::Bool => Key::Bool(boolean(v, binary)?),
        Kind::Date => Key::Instant(datetime::date(v, binary)?),
        Kind::Time => Key::Instant(datetime::time(v, binary)?),
        Kind::TimeTz => {
            let (utc, zone) = datetime::timetz(v, binary)?;
            Key::TimeTz(utc, zone)
        }
        Kind::Timestamp => Key::Instant(datetime::timestamp(v, binary)?),
        Kind::TimestampTz => Key::Instant(datetime::timestamptz(v, binary)?),
        Kind::Interval => Key::Instant(datetime::interval(v, binary)?),
        Kind::Uuid => Key::Bytes(uuid(v, binary)?),
        Kind::Bytea => Key::Bytes(bytea(v, binary)?),
    })
}

/// An integer of any width (int2/int4/int8 by their binary length).
pub fn int(v: &[u8], binary: bool) -> Option<i128> {
    if !binary {
        return std::str::from_utf8(v)
            .ok()?
            .parse::<i64>()
            .ok()
            .map(i128::from);
    }
    Some(match v.len() {
        2 => i128::from(i16::from_be_bytes([v[0], v[1]])),
        4 => i128::from(i32::from_be_bytes(v.try_into().ok()?)),
        8 => i128::from(i64::from_be_bytes(v.try_into().ok()?)),
        _ => return None,
    })
}

/// A float4 or float8 as f64.
pub fn float(kind: Kind, v: &[u8], binary: bool) -> Option<f64> {
    match (kind, binary) {
        (Kind::Float4, true) => Some(f64::from(f32::from_be_bytes(v.try_into().ok()?))),
        (_, true) => Some(f64::from_be_bytes(v.try_into().ok()?)),
        (Kind::Float4, false) => parse_float4(v),
        _ => parse_float8(v),
    }
}

/// A numeric.
pub fn numeric(v: &[u8], binary: bool) -> Option<Numeric> {
    if binary {
        Numeric::decode_binary(v)
    } else {
        Numeric::parse_text(v)
    }
}

/// A bool (`t`/`f` or one byte).
pub fn boolean(v: &[u8], binary: bool) -> Option<bool> {
    match (binary, v) {
        (false, b"t") | (true, [1]) => Some(true),
        (false, b"f") | (true, [0]) => Some(false),
        _ => None,
    }
}

/// `"char"`: the byte itself; the text form escapes bytes above 127 as `\ooo`.
fn char_byte(v: &Bytes, binary: bool) -> Option<Bytes> {
    if binary || v.len() <= 1 {
        return (v.len() <= 1).then(|| v.clone());
    }
    match &v[..] {
        [b'\\', a, b, c] => {
            let octal = [a, b, c].iter().try_fold(0u32, |acc, d| {
                (b'0'..=b'7')
                    .contains(d)
                    .then(|| acc * 8 + u32::from(**d - b'0'))
            })?;
            Some(Bytes::copy_from_slice(&[u8::try_from(octal).ok()?]))
        }
        _ => None,
    }
}

fn uuid(v: &Bytes, binary: bool) -> Option<Bytes> {
    if binary {
        return (v.len() == 16).then(|| v.clone());
    }
    let hex: Vec<u8> = v.iter().copied().filter(|b| *b != b'-').collect();
    if hex.len() != 32 {
        return None;
    }
    Some(Bytes::from(hex_decode(&hex)?))
}

fn bytea(v: &Bytes, binary: bool) -> Option<Bytes> {
    if binary {
        return Some(v.clone());
    }
    if let Some(hex) = v.strip_prefix(b"\\x") {
        return hex_decode(hex).map(Bytes::from);
    }
    // bytea_output = escape: `\\` and `\ooo`, other bytes as they are.
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] != b'\\' {
            out.push(v[i]);
            i += 1;
        } else if v.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            let digits = v.get(i + 1..i + 4)?;
            let octal = digits.iter().try_fold(0u32, |acc, d| {
                (b'0'..=b'7')
                    .contains(d)
                    .then(|| acc * 8 + u32::from(d - b'0'))
            })?;
            out.push(u8::try_from(octal).ok()?);
            i += 4;
        }
    }
    Some(Bytes::from(out))
}

fn hex_decode(hex: &[u8]) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    let nibble = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    hex.chunks(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

/// Bytes equal exactly when the values are equal for `GROUP BY`/`DISTINCT`: the value itself,
/// except numerics (`1.0` = `1.00`) and floats (`-0` = `0`, one NaN) which are normalised.
pub fn equality_bytes(column: &Column, value: &Bytes) -> Result<Bytes, ErrorResponse> {
    match Kind::of(column.type_oid) {
        Some(Kind::Numeric) => {
            let n = numeric(value, column.binary).ok_or_else(|| unreadable(column, value))?;
            Ok(Bytes::from(n.normalized()))
        }
        Some(kind @ (Kind::Float4 | Kind::Float8)) => {
            let f = float(kind, value, column.binary).ok_or_else(|| unreadable(column, value))?;
            let canonical = if f.is_nan() {
                f64::NAN
            } else if f == 0.0 {
                0.0
            } else {
                f
            };
            Ok(Bytes::copy_from_slice(&canonical.to_bits().to_be_bytes()))
        }
        _ => Ok(value.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::merge::message::tests::column;

    fn key(type_oid: u32, binary: bool, v: &[u8]) -> Key {
        decode(
            &column("c", type_oid, binary),
            Kind::of(type_oid).unwrap(),
            &Bytes::copy_from_slice(v),
        )
        .unwrap()
    }

    /// Asserts that the text values are in strictly ascending order.
    fn ascending(type_oid: u32, values: &[&str]) {
        let keys: Vec<Key> = values
            .iter()
            .map(|v| key(type_oid, false, v.as_bytes()))
            .collect();
        for i in 0..keys.len() {
            for j in 0..keys.len() {
                assert_eq!(
                    compare(&keys[i], &keys[j]),
                    i.cmp(&j),
                    "{} vs {}",
                    values[i],
                    values[j]
                );
            }
        }
    }

    #[test]
    fn text_orders() {
        ascending(oid::INT4, &["-5", "0", "7", "10"]);
        ascending(oid::INT8, &["-9223372036854775808", "9223372036854775807"]);
        ascending(oid::OID, &["1", "4294967295"]);
        ascending(
            oid::FLOAT8,
            &[
                "-Infinity",
                "-1e+20",
                "-0.5",
                "0",
                "1e-05",
                "2",
                "Infinity",
                "NaN",
            ],
        );
        ascending(oid::FLOAT4, &["-1.5", "1e+06", "NaN"]);
        ascending(
            oid::NUMERIC,
            &["-Infinity", "-1.5", "1.25", "10", "Infinity", "NaN"],
        );
        ascending(oid::TEXT, &["", "A", "B", "a", "ab", "b", "é"]);
        ascending(oid::BPCHAR, &["a  ", "ab ", "b"]);
        ascending(oid::CHAR, &["A", "a", "\\200", "\\377"]);
        ascending(oid::BOOL, &["f", "t"]);
        ascending(
            oid::DATE,
            &[
                "-infinity",
                "0044-03-15 BC",
                "1999-12-31",
                "2000-01-01",
                "20000-01-01",
                "infinity",
            ],
        );
        ascending(
            oid::TIME,
            &["00:00:00", "00:00:00.000001", "23:59:59.999999", "24:00:00"],
        );
        ascending(
            oid::TIMETZ,
            &["12:00:00+05:30", "07:00:00+00", "07:00:00-00:01"],
        );
        ascending(
            oid::TIMESTAMP,
            &[
                "-infinity",
                "2000-01-01 00:00:00 BC",
                "2000-01-01 00:00:00",
                "2000-01-01 00:00:00.5",
                "infinity",
            ],
        );
        ascending(
            oid::TIMESTAMPTZ,
            &[
                "2024-01-01 12:00:00+05",
                "2024-01-01 10:00:00+01",
                "2024-01-01 09:30:00+00",
                "2024-01-01 06:00:01-03:30",
            ],
        );
        ascending(
            oid::INTERVAL,
            &[
                "-1 years",
                "-00:00:01",
                "00:00:00",
                "23:00:00",
                "1 day",
                "1 mon -1 days",
                "1 mon",
            ],
        );
        ascending(
            oid::UUID,
            &[
                "00000000-0000-0000-0000-000000000000",
                "0000000a-0000-0000-0000-000000000000",
                "a0000000-0000-0000-0000-000000000000",
            ],
        );
        ascending(oid::BYTEA, &["\\x", "\\x00", "\\x0001", "\\x7f", "\\xff"]);
        assert_eq!(
            key(oid::BYTEA, false, b"\\377\\\\A"),
            Key::Bytes(Bytes::from_static(b"\xff\\A"))
        );
        assert_eq!(
            compare(
                &key(oid::NUMERIC, false, b"1.0"),
                &key(oid::NUMERIC, false, b"1.00")
            ),
            Ordering::Equal
        );
        assert_eq!(
            compare(
                &key(oid::FLOAT8, false, b"-0"),
                &key(oid::FLOAT8, false, b"0")
            ),
            Ordering::Equal
        );
    }

    #[test]
    fn binary_values() {
        assert_eq!(key(oid::INT2, true, &(-2i16).to_be_bytes()), Key::Int(-2));
        assert_eq!(key(oid::INT4, true, &7i32.to_be_bytes()), Key::Int(7));
        assert_eq!(
            key(oid::INT8, true, &i64::MIN.to_be_bytes()),
            Key::Int(i128::from(i64::MIN))
        );
        assert_eq!(
            key(oid::OID, true, &u32::MAX.to_be_bytes()),
            Key::Int(i128::from(u32::MAX))
        );
        assert_eq!(
            key(oid::FLOAT4, true, &1.5f32.to_be_bytes()),
            Key::Float(1.5)
        );
        assert_eq!(
            key(oid::FLOAT8, true, &(-2.5f64).to_be_bytes()),
            Key::Float(-2.5)
        );
        assert_eq!(key(oid::BOOL, true, &[1]), Key::Bool(true));
        assert_eq!(
            key(oid::UUID, true, &[7; 16]),
            key(oid::UUID, false, b"07070707-0707-0707-0707-070707070707")
        );
        assert_eq!(
            key(oid::BYTEA, true, b"\0\x01"),
            key(oid::BYTEA, false, b"\\x0001")
        );
        assert_eq!(key(oid::TEXT, true, b"abc"), key(oid::TEXT, false, b"abc"));
        assert_eq!(
            key(oid::DATE, true, &0i32.to_be_bytes()),
            key(oid::DATE, false, b"2000-01-01")
        );
        assert_eq!(
            key(
                oid::NUMERIC,
                true,
                &Numeric::parse_text(b"-1.5").unwrap().to_binary().unwrap()
            ),
            key(oid::NUMERIC, false, b"-1.5")
        );
    }

    #[test]
    fn unreadable_values_are_errors() {
        let c = column("c", oid::INT4, true);
        let err = decode(&c, Kind::Int, &Bytes::from_static(b"abc")).unwrap_err();
        assert_eq!(err.code, sqlstate::PROTOCOL_VIOLATION);
        let c = column("d", oid::DATE, false);
        let err = decode(&c, Kind::Date, &Bytes::from_static(b"01/02/2000")).unwrap_err();
        assert_eq!(err.code, sqlstate::FEATURE_NOT_SUPPORTED);
        for (type_oid, v) in [
            (oid::BOOL, "true"),
            (oid::UUID, "xyz"),
            (oid::BYTEA, "\\xz1"),
            (oid::CHAR, "ab"),
            (oid::INT2, "1.5"),
        ] {
            assert!(
                decode(
                    &column("c", type_oid, false),
                    Kind::of(type_oid).unwrap(),
                    &Bytes::copy_from_slice(v.as_bytes())
                )
                .is_err(),
                "{v}"
            );
        }
        let json = column("j", 114, false);
        let err = Kind::of_column(&json, 2, "sort by").unwrap_err();
        assert_eq!(err.code, sqlstate::FEATURE_NOT_SUPPORTED);
        assert!(
            err.message.contains("114") && err.message.contains("\"j\""),
            "{}",
            err.message
        );
    }

    #[test]
    fn equality() {
        let eq = |type_oid: u32, binary: bool, a: &[u8], b: &[u8]| {
            let c = column("c", type_oid, binary);
            equality_bytes(&c, &Bytes::copy_from_slice(a)).unwrap()
                == equality_bytes(&c, &Bytes::copy_from_slice(b)).unwrap()
        };
        assert!(eq(oid::NUMERIC, false, b"1.0", b"1.00"));
        assert!(!eq(oid::NUMERIC, false, b"1.0", b"1.01"));
        assert!(eq(oid::FLOAT8, false, b"-0", b"0"));
        assert!(eq(
            oid::FLOAT8,
            true,
            &(-0.0f64).to_be_bytes(),
            &0.0f64.to_be_bytes()
        ));
        assert!(eq(
            oid::FLOAT8,
            true,
            &f64::NAN.to_be_bytes(),
            &(-f64::NAN).to_be_bytes()
        ));
        assert!(eq(oid::TEXT, false, b"a", b"a"));
        assert!(!eq(oid::TEXT, false, b"a", b"A"));
        // Types that cannot be ordered can still be grouped by their bytes.
        assert!(eq(114, false, b"{}", b"{}"));
    }
}
