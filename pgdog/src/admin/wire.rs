//! Result tables on the wire: the messages the admin database sends for a command's result
//! (RowDescription, DataRow, CommandComplete and the small extended-protocol replies), the
//! per-column result formats a Bind asks for, and the binary encodings of the four column
//! types (`text`, `int8`, `bool`, `numeric`). Values are stored as text in a [`ResultTable`];
//! they are converted to binary only when a client asks for it.

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use pgdog_admin::{Column, ColumnType, ResultTable};

use crate::net::frame::{put_cstr, Frame};
use crate::net::messages;
use crate::net::{sqlstate, ErrorResponse};

/// How one result column is sent: as text or in the type's binary format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Format code 0.
    Text,
    /// Format code 1.
    Binary,
}

impl Format {
    /// The format code sent in RowDescription.
    pub fn code(self) -> i16 {
        match self {
            Format::Text => 0,
            Format::Binary => 1,
        }
    }

    /// The format for a code from a Bind message; codes other than 0 and 1 are errors.
    pub fn from_code(code: i16) -> Result<Format, ErrorResponse> {
        match code {
            0 => Ok(Format::Text),
            1 => Ok(Format::Binary),
            other => Err(ErrorResponse::error(
                sqlstate::INVALID_PARAMETER_VALUE,
                format!("unsupported format code: {other}"),
            )),
        }
    }
}

/// The format of each of `columns` result columns, from the result format codes of a Bind:
/// no code means all text, one code applies to every column, otherwise there must be one code
/// per column.
pub fn result_formats(codes: &[i16], columns: usize) -> Result<Vec<Format>, ErrorResponse> {
    match codes {
        [] => Ok(vec![Format::Text; columns]),
        [code] => Ok(vec![Format::from_code(*code)?; columns]),
        codes if codes.len() == columns => codes.iter().map(|c| Format::from_code(*c)).collect(),
        codes => Err(ErrorResponse::error(
            sqlstate::PROTOCOL_VIOLATION,
            format!(
                "bind message has {} result formats but query has {columns} columns",
                codes.len()
            ),
        )),
    }
}

/// The fixed size of a type as RowDescription reports it (-1: variable length).
fn type_len(kind: ColumnType) -> i16 {
    match kind {
        ColumnType::Text | ColumnType::Numeric => -1,
        ColumnType::BigInt | ColumnType::Double => 8,
        ColumnType::Bool => 1,
    }
}

/// RowDescription for `columns`, each sent in the matching entry of `formats` (text when
/// `formats` is shorter).
pub fn row_description(columns: &[Column], formats: &[Format]) -> Bytes {
    let mut body = BytesMut::with_capacity(2 + columns.len() * 32);
    body.extend_from_slice(&(columns.len() as i16).to_be_bytes());
    for (i, column) in columns.iter().enumerate() {
        let format = formats.get(i).copied().unwrap_or(Format::Text);
        put_cstr(&mut body, &column.name);
        body.extend_from_slice(&0i32.to_be_bytes()); // table OID
        body.extend_from_slice(&0i16.to_be_bytes()); // column attribute number
        body.extend_from_slice(&column.kind.oid().to_be_bytes());
        body.extend_from_slice(&type_len(column.kind).to_be_bytes());
        body.extend_from_slice(&(-1i32).to_be_bytes()); // type modifier
        body.extend_from_slice(&format.code().to_be_bytes());
    }
    Frame::new(b'T', &body).bytes
}

/// DataRow for one row of a table: NULL is length -1, other values are encoded per column
/// type and format. A value that is not valid for its type in binary format is an error.
pub fn data_row(
    columns: &[Column],
    formats: &[Format],
    row: &[Option<String>],
) -> Result<Bytes, ErrorResponse> {
    if row.len() != columns.len() {
        return Err(ErrorResponse::error(
            sqlstate::INTERNAL_ERROR,
            format!(
                "result row has {} values for {} columns",
                row.len(),
                columns.len()
            ),
        ));
    }
    let mut body = BytesMut::with_capacity(2 + row.len() * 16);
    body.extend_from_slice(&(row.len() as i16).to_be_bytes());
    for (i, (column, value)) in columns.iter().zip(row).enumerate() {
        let format = formats.get(i).copied().unwrap_or(Format::Text);
        match value {
            None => body.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(text) => {
                let encoded = encode_value(column.kind, format, text).map_err(|reason| {
                    ErrorResponse::error(
                        sqlstate::INTERNAL_ERROR,
                        format!(
                            "cannot send value {text:?} of column \"{}\": {reason}",
                            column.name
                        ),
                    )
                })?;
                body.extend_from_slice(&(encoded.len() as i32).to_be_bytes());
                body.extend_from_slice(&encoded);
            }
        }
    }
    Ok(Frame::new(b'D', &body).bytes)
}

/// Appends the DataRows of `rows` (a range of the table's rows) to `out`. On error nothing is
/// appended.
pub fn data_rows(
    out: &mut BytesMut,
    table: &ResultTable,
    formats: &[Format],
    rows: Range<usize>,
) -> Result<(), ErrorResponse> {
    let rows = table.rows.get(rows).unwrap_or(&[]);
    let mut encoded = BytesMut::new();
    for row in rows {
        encoded.extend_from_slice(&data_row(&table.columns, formats, row)?);
    }
    out.extend_from_slice(&encoded);
    Ok(())
}

/// Appends a whole table in text format: RowDescription, every DataRow and CommandComplete
/// with `tag` (what a simple query returns). On error nothing is appended.
pub fn text_table(out: &mut BytesMut, table: &ResultTable, tag: &str) -> Result<(), ErrorResponse> {
    let formats = vec![Format::Text; table.columns.len()];
    let mut encoded = BytesMut::new();
    encoded.extend_from_slice(&row_description(&table.columns, &formats));
    data_rows(&mut encoded, table, &formats, 0..table.rows.len())?;
    encoded.extend_from_slice(&messages::command_complete(tag));
    out.extend_from_slice(&encoded);
    Ok(())
}

/// One value in the given format: the text itself, or the type's binary representation.
pub fn encode_value(kind: ColumnType, format: Format, text: &str) -> Result<Vec<u8>, String> {
    match (format, kind) {
        (Format::Text, _) | (Format::Binary, ColumnType::Text) => Ok(text.as_bytes().to_vec()),
        (Format::Binary, ColumnType::BigInt) => text
            .trim()
            .parse::<i64>()
            .map(|v| v.to_be_bytes().to_vec())
            .map_err(|_| "not a valid int8".to_string()),
        (Format::Binary, ColumnType::Bool) => parse_bool(text)
            .map(|v| vec![u8::from(v)])
            .ok_or_else(|| "not a valid bool".to_string()),
        (Format::Binary, ColumnType::Numeric) => numeric_binary(text),
        (Format::Binary, ColumnType::Double) => parse_double(text)
            .map(|v| v.to_bits().to_be_bytes().to_vec())
            .ok_or_else(|| "not a valid float8".to_string()),
    }
}

/// A float8 as Postgres spells it (`1.5`, `-2e-3`, `NaN`, `Infinity`, `-Infinity`).
fn parse_double(text: &str) -> Option<f64> {
    match text.trim().to_ascii_lowercase().as_str() {
        "nan" => Some(f64::NAN),
        "infinity" | "inf" | "+infinity" | "+inf" => Some(f64::INFINITY),
        "-infinity" | "-inf" => Some(f64::NEG_INFINITY),
        other => other.parse::<f64>().ok().filter(|v| v.is_finite()),
    }
}

/// A boolean in any spelling Postgres accepts (`t`, `true`, `yes`, `on`, `1`, ...).
fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "t" | "true" | "y" | "yes" | "on" | "1" => Some(true),
        "f" | "false" | "n" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// Sign word of a positive numeric.
const NUMERIC_POS: u16 = 0x0000;
/// Sign word of a negative numeric.
const NUMERIC_NEG: u16 = 0x4000;
/// Sign word of NaN.
const NUMERIC_NAN: u16 = 0xC000;
/// Sign word of +Infinity (Postgres 14+).
const NUMERIC_PINF: u16 = 0xD000;
/// Sign word of -Infinity (Postgres 14+).
const NUMERIC_NINF: u16 = 0xF000;
/// Largest display scale the binary format can carry.
const NUMERIC_MAX_DSCALE: i64 = 0x3FFF;

/// Postgres' binary `numeric` for a decimal text value: int16 ndigits, int16 weight, uint16
/// sign, uint16 dscale, then ndigits base-10000 digits (int16), most significant first; the
/// value is the digits times 10000^(weight - i). Accepts an optional sign, integer and
/// fraction digits, an optional exponent, and `NaN`/`Infinity`.
pub fn numeric_binary(text: &str) -> Result<Vec<u8>, String> {
    let text = text.trim();
    let special = |sign: u16| numeric_header(0, 0, sign, 0);
    match text.to_ascii_lowercase().as_str() {
        "nan" => return Ok(special(NUMERIC_NAN)),
        "infinity" | "+infinity" | "inf" | "+inf" => return Ok(special(NUMERIC_PINF)),
        "-infinity" | "-inf" => return Ok(special(NUMERIC_NINF)),
        _ => {}
    }
    let invalid = || format!("{text:?} is not a valid numeric");
    let (negative, rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(i) => {
            let exponent = &rest[i + 1..];
            let valid = exponent
                .strip_prefix(['+', '-'])
                .unwrap_or(exponent)
                .bytes()
                .all(|b| b.is_ascii_digit());
            if !valid || exponent.len() > 8 {
                return Err(invalid());
            }
            let exponent: i64 = exponent.parse().map_err(|_| invalid())?;
            (&rest[..i], exponent)
        }
        None => (rest, 0),
    };
    let (int_part, frac_part) = match mantissa.split_once('.') {
        Some((int_part, frac_part)) => (int_part, frac_part),
        None => (mantissa, ""),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int_part.is_empty() && frac_part.is_empty()
        || !all_digits(int_part)
        || !all_digits(frac_part)
    {
        return Err(invalid());
    }
    // The value is 0.DIGITS x 10^point.
    let mut digits: Vec<u8> = int_part
        .bytes()
        .chain(frac_part.bytes())
        .map(|b| b - b'0')
        .collect();
    let mut point = int_part.len() as i64 + exponent;
    let dscale = (digits.len() as i64 - point).max(0);
    if dscale > NUMERIC_MAX_DSCALE {
        return Err(format!(
            "{text:?} has too many digits after the decimal point"
        ));
    }
    let leading_zeros = digits.iter().take_while(|d| **d == 0).count();
    digits.drain(..leading_zeros);
    point -= leading_zeros as i64;
    while digits.last() == Some(&0) {
        digits.pop();
    }
    if digits.is_empty() {
        return Ok(numeric_header(0, 0, NUMERIC_POS, dscale as u16));
    }
    // Decimal digit i stands for 10^(point - 1 - i); base-10000 digit g for 10000^g.
    let exponent_of = |i: usize| point - 1 - i as i64;
    let weight = exponent_of(0).div_euclid(4);
    let last = exponent_of(digits.len() - 1).div_euclid(4);
    let weight16 = i16::try_from(weight).map_err(|_| format!("{text:?} is out of range"))?;
    let mut groups = vec![0i16; (weight - last + 1) as usize];
    for (i, digit) in digits.iter().enumerate() {
        let e = exponent_of(i);
        let group = (weight - e.div_euclid(4)) as usize;
        groups[group] += i16::from(*digit) * 10i16.pow(e.rem_euclid(4) as u32);
    }
    let sign = if negative { NUMERIC_NEG } else { NUMERIC_POS };
    let mut out = numeric_header(groups.len() as i16, weight16, sign, dscale as u16);
    for group in groups {
        out.extend_from_slice(&group.to_be_bytes());
    }
    Ok(out)
}

fn numeric_header(ndigits: i16, weight: i16, sign: u16, dscale: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + ndigits.max(0) as usize * 2);
    out.extend_from_slice(&ndigits.to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&dscale.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::frame::Reader;

    /// Decodes a binary numeric back to text (dscale digits after the point), for round trips.
    fn numeric_text(bytes: &[u8]) -> String {
        let mut r = Reader::new(bytes);
        let ndigits = r.i16().unwrap();
        let weight = r.i16().unwrap() as i64;
        let sign = r.i16().unwrap() as u16;
        let dscale = r.i16().unwrap() as usize;
        let digits: Vec<i64> = (0..ndigits).map(|_| r.i16().unwrap() as i64).collect();
        assert!(r.is_empty());
        match sign {
            NUMERIC_NAN => return "NaN".into(),
            NUMERIC_PINF => return "Infinity".into(),
            NUMERIC_NINF => return "-Infinity".into(),
            _ => {}
        }
        let digit = |g: i64| -> i64 {
            let i = weight - g;
            if i >= 0 && (i as usize) < digits.len() {
                digits[i as usize]
            } else {
                0
            }
        };
        let mut int_part = String::new();
        for g in (0..=weight.max(0)).rev() {
            if int_part.is_empty() {
                if digit(g) != 0 || g == 0 {
                    int_part = digit(g).to_string();
                }
            } else {
                int_part.push_str(&format!("{:04}", digit(g)));
            }
        }
        let mut frac = String::new();
        let mut g = -1;
        while frac.len() < dscale {
            frac.push_str(&format!("{:04}", digit(g)));
            g -= 1;
        }
        frac.truncate(dscale);
        let mut text = String::new();
        if sign == NUMERIC_NEG {
            text.push('-');
        }
        text.push_str(&int_part);
        if dscale > 0 {
            text.push('.');
            text.push_str(&frac);
        }
        text
    }

    fn layout(ndigits: i16, weight: i16, sign: u16, dscale: u16, digits: &[i16]) -> Vec<u8> {
        let mut out = numeric_header(ndigits, weight, sign, dscale);
        for d in digits {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out
    }

    #[test]
    fn numeric_known_layouts() {
        let cases: &[(&str, Vec<u8>)] = &[
            ("0", layout(0, 0, NUMERIC_POS, 0, &[])),
            ("0.00", layout(0, 0, NUMERIC_POS, 2, &[])),
            ("-0", layout(0, 0, NUMERIC_POS, 0, &[])),
            ("1", layout(1, 0, NUMERIC_POS, 0, &[1])),
            ("-12.5", layout(2, 0, NUMERIC_NEG, 1, &[12, 5000])),
            ("10000", layout(1, 1, NUMERIC_POS, 0, &[1])),
            ("0.0001", layout(1, -1, NUMERIC_POS, 4, &[1])),
            ("0.00001", layout(1, -2, NUMERIC_POS, 5, &[1000])),
            (
                "123456789.123",
                layout(4, 2, NUMERIC_POS, 3, &[1, 2345, 6789, 1230]),
            ),
            ("1.50", layout(2, 0, NUMERIC_POS, 2, &[1, 5000])),
            ("9999", layout(1, 0, NUMERIC_POS, 0, &[9999])),
            ("100000000", layout(1, 2, NUMERIC_POS, 0, &[1])),
            ("1e5", layout(1, 1, NUMERIC_POS, 0, &[10])),
            ("1.5e-3", layout(1, -1, NUMERIC_POS, 4, &[15])),
            (".5", layout(1, -1, NUMERIC_POS, 1, &[5000])),
            ("NaN", layout(0, 0, NUMERIC_NAN, 0, &[])),
            ("-Infinity", layout(0, 0, NUMERIC_NINF, 0, &[])),
        ];
        for (text, expected) in cases {
            assert_eq!(&numeric_binary(text).unwrap(), expected, "{text}");
        }
    }

    #[test]
    fn numeric_round_trips() {
        for text in [
            "0",
            "0.00",
            "1",
            "-12.5",
            "10000",
            "0.0001",
            "123456789.123",
            "1.50",
            "-0.001",
            "98765432109876543210.0123456789",
            "42.4200",
            "7",
            "-10000.0001",
        ] {
            assert_eq!(numeric_text(&numeric_binary(text).unwrap()), text);
        }
    }

    #[test]
    fn invalid_values_are_errors() {
        for text in [
            "", "-", ".", "1.2.3", "abc", "1e", "1e+", "--1", "1 2", "12a",
        ] {
            assert!(numeric_binary(text).is_err(), "{text:?}");
        }
        assert!(numeric_binary("1e200000").is_err());
        assert!(numeric_binary("1e-99999").is_err());
        assert!(encode_value(ColumnType::BigInt, Format::Binary, "x").is_err());
        assert!(encode_value(ColumnType::Bool, Format::Binary, "maybe").is_err());
        assert!(encode_value(ColumnType::Double, Format::Binary, "fast").is_err());
        assert!(encode_value(ColumnType::Double, Format::Binary, "1e999").is_err());
        // Text format sends the value as it is.
        assert_eq!(
            encode_value(ColumnType::BigInt, Format::Text, "x").unwrap(),
            b"x"
        );
    }

    #[test]
    fn binary_scalars() {
        assert_eq!(
            encode_value(ColumnType::BigInt, Format::Binary, "-2").unwrap(),
            (-2i64).to_be_bytes()
        );
        assert_eq!(
            encode_value(ColumnType::Bool, Format::Binary, "t").unwrap(),
            [1]
        );
        assert_eq!(
            encode_value(ColumnType::Bool, Format::Binary, "false").unwrap(),
            [0]
        );
        assert_eq!(
            encode_value(ColumnType::Double, Format::Binary, "12.25").unwrap(),
            12.25f64.to_bits().to_be_bytes()
        );
        assert_eq!(
            encode_value(ColumnType::Double, Format::Binary, "-Infinity").unwrap(),
            f64::NEG_INFINITY.to_bits().to_be_bytes()
        );
        assert_eq!(
            encode_value(ColumnType::Text, Format::Binary, "héllo").unwrap(),
            "héllo".as_bytes()
        );
    }

    #[test]
    fn formats_from_bind_codes() {
        assert_eq!(result_formats(&[], 2).unwrap(), vec![Format::Text; 2]);
        assert_eq!(result_formats(&[1], 3).unwrap(), vec![Format::Binary; 3]);
        assert_eq!(
            result_formats(&[0, 1], 2).unwrap(),
            vec![Format::Text, Format::Binary]
        );
        assert_eq!(
            result_formats(&[0, 1], 3).unwrap_err().code,
            sqlstate::PROTOCOL_VIOLATION
        );
        assert!(result_formats(&[2], 1).is_err());
    }

    fn table() -> ResultTable {
        let mut t = ResultTable::new(&[
            ("name", ColumnType::Text),
            ("count", ColumnType::BigInt),
            ("ok", ColumnType::Bool),
            ("avg", ColumnType::Numeric),
        ]);
        t.push(vec![
            Some("a".into()),
            Some("3".into()),
            Some("t".into()),
            Some("1.5".into()),
        ])
        .unwrap();
        t.push(vec![None, Some("bad".into()), None, None]).unwrap();
        t
    }

    #[test]
    fn row_description_layout() {
        let t = table();
        let bytes = row_description(&t.columns[..2], &[Format::Text, Format::Binary]);
        assert_eq!(bytes[0], b'T');
        let mut r = Reader::new(&bytes[5..]);
        assert_eq!(r.i16().unwrap(), 2);
        assert_eq!(r.cstr().unwrap(), "name");
        assert_eq!(r.i32().unwrap(), 0);
        assert_eq!(r.i16().unwrap(), 0);
        assert_eq!(r.i32().unwrap(), 25);
        assert_eq!(r.i16().unwrap(), -1);
        assert_eq!(r.i32().unwrap(), -1);
        assert_eq!(r.i16().unwrap(), 0);
        assert_eq!(r.cstr().unwrap(), "count");
        assert_eq!(r.i32().unwrap(), 0);
        assert_eq!(r.i16().unwrap(), 0);
        assert_eq!(r.i32().unwrap(), 20);
        assert_eq!(r.i16().unwrap(), 8);
        assert_eq!(r.i32().unwrap(), -1);
        assert_eq!(r.i16().unwrap(), 1);
        assert!(r.is_empty());
    }

    #[test]
    fn data_row_layout_and_nulls() {
        let t = table();
        let formats = vec![Format::Binary; 4];
        let row = data_row(&t.columns, &formats, &t.rows[0]).unwrap();
        let mut expected = BytesMut::new();
        expected.extend_from_slice(&4i16.to_be_bytes());
        expected.extend_from_slice(&1i32.to_be_bytes());
        expected.extend_from_slice(b"a");
        expected.extend_from_slice(&8i32.to_be_bytes());
        expected.extend_from_slice(&3i64.to_be_bytes());
        expected.extend_from_slice(&1i32.to_be_bytes());
        expected.extend_from_slice(&[1]);
        let numeric = layout(2, 0, NUMERIC_POS, 1, &[1, 5000]);
        expected.extend_from_slice(&(numeric.len() as i32).to_be_bytes());
        expected.extend_from_slice(&numeric);
        assert_eq!(&row[5..], &expected[..]);

        // "bad" is no int8 in binary, but fine as text; NULLs are -1.
        assert!(data_row(&t.columns, &formats, &t.rows[1]).is_err());
        let text = data_row(&t.columns, &[Format::Text; 4], &t.rows[1]).unwrap();
        let mut r = Reader::new(&text[5..]);
        assert_eq!(r.i16().unwrap(), 4);
        assert_eq!(r.i32().unwrap(), -1);
        assert_eq!(r.i32().unwrap(), 3);
        assert_eq!(r.bytes(3).unwrap(), b"bad");
        assert_eq!(r.i32().unwrap(), -1);
        assert_eq!(r.i32().unwrap(), -1);
        assert!(r.is_empty());
    }

    #[test]
    fn failed_rows_append_nothing() {
        let t = table();
        let mut out = BytesMut::new();
        assert!(data_rows(&mut out, &t, &[Format::Binary; 4], 0..2).is_err());
        assert!(out.is_empty());
        data_rows(&mut out, &t, &[Format::Binary; 4], 0..1).unwrap();
        assert_eq!(out[0], b'D');
        let mut out = BytesMut::new();
        text_table(&mut out, &t, "SHOW").unwrap();
        assert_eq!(out[0], b'T');
        assert!(out.ends_with(&messages::command_complete("SHOW")));
    }

    #[test]
    fn small_messages() {
        assert_eq!(
            &messages::command_complete("SHOW")[..],
            b"C\0\0\0\x09SHOW\0"
        );
        assert_eq!(&messages::empty_query_response()[..], b"I\0\0\0\x04");
        assert_eq!(&messages::no_parameters()[..], b"t\0\0\0\x06\0\0");
        assert_eq!(&messages::no_data()[..], b"n\0\0\0\x04");
        assert_eq!(&messages::bind_complete()[..], b"2\0\0\0\x04");
        assert_eq!(&messages::portal_suspended()[..], b"s\0\0\0\x04");
    }
}
