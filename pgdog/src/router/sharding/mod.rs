//! Which shard a sharding key belongs to: exactly the partition PostgreSQL's `PARTITION BY HASH`
//! would choose.
//!
//! Shard `k` of `N` holds the rows a hash partition `FOR VALUES WITH (MODULUS N, REMAINDER k)` of
//! a table `PARTITION BY HASH (key)` would hold, for `bigint`, `integer`, `smallint`, `text`,
//! `varchar` and `uuid` keys. So a sharded table can be checked (and re-split) with PostgreSQL's
//! own `satisfies_hash_partition`, and a shard can itself be a hash partition of the same table.
//! The router, the data copy and the replication stream all use [`shard_of`].
//!
//! ```
//! use pgdog::router::sharding::{shard_of, DataType, KeyValue};
//!
//! let key = KeyValue::parse(DataType::Bigint, "1234")?;
//! assert_eq!(shard_of(&key, 4), shard_of(&KeyValue::Int(1234), 4));
//! // integer and smallint keys hash as the same value as bigint.
//! assert_eq!(shard_of(&KeyValue::from(1234i32), 4), shard_of(&key, 4));
//! let id = KeyValue::parse(DataType::Uuid, "{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11}")?;
//! assert_eq!(id.to_string(), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
//! # Ok::<(), pgdog::router::sharding::ParseKeyError>(())
//! ```
//!
//! Text keys are hashed as their UTF-8 bytes, which is what PostgreSQL does for columns with a
//! deterministic collation (the default; a server encoding other than UTF-8 would hash other
//! bytes). Values are given decoded: the caller removes SQL quoting (`'it''s'`) and COPY text
//! escapes (`\t`, `\\`) first, and a NULL key (which PostgreSQL puts in remainder 0) has no
//! [`KeyValue`]. See [`hash`] for the hash functions themselves.

pub mod hash;

use std::fmt;

use self::hash::{hash_bytes_extended, hash_combine64, hash_int8_extended, HASH_PARTITION_SEED};

/// The type of a sharding key column: the one `data_type` of `[[sharded_tables]]` names.
/// `integer` and `smallint` columns use [`DataType::Bigint`] (they hash like the same value as
/// `bigint`), `text` columns [`DataType::Varchar`].
pub use pgdog_config::DataType;

/// The value of a single-column sharding key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyValue<'a> {
    /// A `bigint`, `integer` or `smallint` value.
    Int(i64),
    /// A `text` or `varchar` value (decoded, without quotes or escapes).
    Text(&'a str),
    /// A `uuid`'s 16 bytes, in the order of its text form.
    Uuid([u8; 16]),
}

/// Why the text of a key is not a valid value of its type. The messages are PostgreSQL's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseKeyError {
    /// The text is not a value of the type at all.
    #[error("invalid input syntax for type {data_type}: \"{text}\"")]
    Syntax {
        /// The type it was parsed as.
        data_type: DataType,
        /// The text that was given.
        text: String,
    },
    /// Keys of this type cannot be hashed by pgdog (vector sharding).
    #[error("sharding keys of type {data_type} are not supported")]
    Unsupported {
        /// The type.
        data_type: DataType,
    },
    /// The text is a number outside the range of the type.
    #[error("value \"{text}\" is out of range for type {data_type}")]
    OutOfRange {
        /// The type it was parsed as.
        data_type: DataType,
        /// The text that was given.
        text: String,
    },
}

impl<'a> KeyValue<'a> {
    /// Parses a key from its text form, as PostgreSQL's input function for `data_type` would:
    ///
    /// - [`DataType::Bigint`]: an optionally signed integer in the `bigint` range, with optional
    ///   leading and trailing whitespace. The PostgreSQL 16 forms are accepted too: `0x`, `0o`
    ///   and `0b` prefixes and `_` between digits (`1_000_000`).
    /// - [`DataType::Varchar`]: any string, taken as is.
    /// - [`DataType::Vector`]: not supported, an error.
    /// - [`DataType::Uuid`]: 32 hex digits in either case, optionally with a hyphen after any
    ///   group of four digits and optionally in braces: `a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11`,
    ///   `{A0EEBC99-...}`, `a0eebc999c0b4ef8bb6d6bb9bd380a11`, `a0ee-bc99-9c0b-...`.
    ///
    /// Anything else is a [`ParseKeyError`]; this never panics.
    pub fn parse(data_type: DataType, text: &'a str) -> Result<KeyValue<'a>, ParseKeyError> {
        match data_type {
            DataType::Bigint => parse_bigint(text).map(KeyValue::Int),
            DataType::Varchar => Ok(KeyValue::Text(text)),
            DataType::Uuid => parse_uuid(text).map(KeyValue::Uuid),
            DataType::Vector => Err(ParseKeyError::Unsupported { data_type }),
        }
    }

    /// The type the value belongs to.
    pub fn data_type(&self) -> DataType {
        match self {
            KeyValue::Int(_) => DataType::Bigint,
            KeyValue::Text(_) => DataType::Varchar,
            KeyValue::Uuid(_) => DataType::Uuid,
        }
    }

    /// The value's hash by its type's extended hash function with PostgreSQL's partition seed:
    /// `hashint8extended`, `hashtextextended` or `uuid_hash_extended`. One column's input to
    /// [`hash_combine64`].
    pub fn extended_hash(&self) -> u64 {
        match self {
            KeyValue::Int(value) => hash_int8_extended(*value, HASH_PARTITION_SEED),
            KeyValue::Text(text) => hash_bytes_extended(text.as_bytes(), HASH_PARTITION_SEED),
            KeyValue::Uuid(bytes) => hash_bytes_extended(bytes, HASH_PARTITION_SEED),
        }
    }
}

impl From<i64> for KeyValue<'_> {
    fn from(value: i64) -> Self {
        KeyValue::Int(value)
    }
}

impl From<i32> for KeyValue<'_> {
    fn from(value: i32) -> Self {
        KeyValue::Int(value.into())
    }
}

impl From<i16> for KeyValue<'_> {
    fn from(value: i16) -> Self {
        KeyValue::Int(value.into())
    }
}

impl<'a> From<&'a str> for KeyValue<'a> {
    fn from(value: &'a str) -> Self {
        KeyValue::Text(value)
    }
}

impl From<[u8; 16]> for KeyValue<'_> {
    fn from(value: [u8; 16]) -> Self {
        KeyValue::Uuid(value)
    }
}

/// PostgreSQL's output form: the number, the text itself, or the canonical lower-case uuid
/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
impl fmt::Display for KeyValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyValue::Int(value) => write!(f, "{value}"),
            KeyValue::Text(text) => f.write_str(text),
            KeyValue::Uuid(bytes) => {
                for (i, byte) in bytes.iter().enumerate() {
                    if matches!(i, 4 | 6 | 8 | 10) {
                        f.write_str("-")?;
                    }
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
        }
    }
}

/// The hash PostgreSQL's hash partitioning computes for a single-column key `value`:
/// `hash_combine64(0, extended_hash(value))`.
pub fn hash_key(value: &KeyValue) -> u64 {
    hash_combine64(0, value.extended_hash())
}

/// The shard of `shards` that `value` belongs to: the remainder of the hash partition
/// `(MODULUS shards, REMAINDER k)` PostgreSQL would put the row in, in `0..shards`.
/// With zero shards (no valid answer) this returns 0, like a single shard.
pub fn shard_of(value: &KeyValue, shards: usize) -> usize {
    if shards <= 1 {
        return 0;
    }
    // usize is at most 64 bits, so both conversions are lossless.
    (hash_key(value) % shards as u64) as usize
}

/// Whitespace as C's `isspace` sees it, which PostgreSQL skips around numbers.
fn is_c_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

/// Parses a `bigint` the way PostgreSQL's `int8in` does (see [`KeyValue::parse`]).
pub fn parse_bigint(text: &str) -> Result<i64, ParseKeyError> {
    let syntax = || ParseKeyError::Syntax {
        data_type: DataType::Bigint,
        text: text.to_string(),
    };

    let bytes = text.as_bytes();
    let Some(start) = bytes.iter().position(|&b| !is_c_space(b)) else {
        return Err(syntax());
    };
    let end = bytes
        .iter()
        .rposition(|&b| !is_c_space(b))
        .map_or(start, |i| i + 1);
    let mut rest = &bytes[start..end];

    let negative = rest.first() == Some(&b'-');
    if let [b'-' | b'+', after @ ..] = rest {
        rest = after;
    }

    let (radix, prefixed) = match rest {
        [b'0', b'x' | b'X', ..] => (16, true),
        [b'0', b'o' | b'O', ..] => (8, true),
        [b'0', b'b' | b'B', ..] => (2, true),
        _ => (10, false),
    };
    if prefixed {
        rest = &rest[2..];
    }

    let digit = |byte: u8| char::from(byte).to_digit(radix);
    let mut magnitude: Option<u64> = Some(0);
    let mut seen_digit = false;
    for (i, &byte) in rest.iter().enumerate() {
        if byte == b'_' {
            // An underscore separates digits: it needs a digit after it, and before it either a
            // digit or the radix prefix.
            let followed = rest.get(i + 1).is_some_and(|&next| digit(next).is_some());
            if !followed || !(seen_digit || (prefixed && i == 0)) {
                return Err(syntax());
            }
            continue;
        }
        let Some(value) = digit(byte) else {
            return Err(syntax());
        };
        seen_digit = true;
        magnitude = magnitude
            .and_then(|m| m.checked_mul(u64::from(radix)))
            .and_then(|m| m.checked_add(u64::from(value)));
    }
    if !seen_digit {
        return Err(syntax());
    }

    let out_of_range = || ParseKeyError::OutOfRange {
        data_type: DataType::Bigint,
        text: text.to_string(),
    };
    let magnitude = magnitude.ok_or_else(out_of_range)?;
    if negative {
        // -(2^63) is i64::MIN; anything larger in magnitude does not fit.
        if magnitude > i64::MIN.unsigned_abs() {
            return Err(out_of_range());
        }
        Ok(0i64.wrapping_sub_unsigned(magnitude))
    } else {
        i64::try_from(magnitude).map_err(|_| out_of_range())
    }
}

/// Parses a `uuid` the way PostgreSQL's `uuid_in` does (see [`KeyValue::parse`]).
pub fn parse_uuid(text: &str) -> Result<[u8; 16], ParseKeyError> {
    // One parser for the config files and the router: pgdog-config's.
    pgdog_config::parse_uuid(text)
        .map(u128::to_be_bytes)
        .ok_or_else(|| ParseKeyError::Syntax {
            data_type: DataType::Uuid,
            text: text.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::hash::hash_uint32_extended;
    use super::*;

    // Reference values from PostgreSQL 15 (`SELECT hashint8extended(v, seed)`,
    // `hashtextextended`, `uuid_hash_extended`; seed 8816678312871386365 is
    // HASH_PARTITION_SEED), printed as signed bigints.
    const INT8: &[(i64, i64)] = &[
        (0, -4403592609991167795),
        (1, 5968994663651403477),
        (-1, -5017072347659237694),
        (42, 7363975540656877951),
        (-42, 6660635123915733087),
        (2147483648, 4938542303000433043),
        (-2147483649, -6050265599104649060),
        (i64::MAX, 4938542303000433043),
        (i64::MIN, -6050265599104649060),
    ];

    // (text, with HASH_PARTITION_SEED, with seed 0)
    const TEXT: &[(&str, i64, i64)] = &[
        ("", -5700645584453517373, -6939563903564495251),
        ("a", -6705225459120232837, 3591986179850072241),
        ("abc", 3628778498291917250, -6747756470228489321),
        ("hello world!", -1886269529411655687, -2866487628948787489),
        ("hello world!!", 7458898085804086944, 2407105755976055416),
        ("żółć", 4204724177867222867, -7377324532659721572),
        ("日本語", -8050275759738715173, 2870829529307104068),
        ("🦀", 1255201537425408073, -5067417385635878279),
        (
            "The quick brown fox jumps over the lazy dog",
            5870222023910117606,
            2182139051089226439,
        ),
    ];

    const UUID: &[(&str, i64)] = &[
        ("00000000-0000-0000-0000-000000000000", -5281082146396728638),
        ("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", 424513190990560493),
        ("ffffffff-ffff-ffff-ffff-ffffffffffff", -148986464341306210),
    ];

    #[test]
    fn int_hashes_match_postgres() {
        for &(value, expected) in INT8 {
            assert_eq!(
                KeyValue::Int(value).extended_hash(),
                expected as u64,
                "{value}"
            );
        }
    }

    #[test]
    fn text_hashes_match_postgres() {
        for &(text, seeded, unseeded) in TEXT {
            assert_eq!(
                KeyValue::Text(text).extended_hash(),
                seeded as u64,
                "{text:?}"
            );
            assert_eq!(
                hash_bytes_extended(text.as_bytes(), 0),
                unseeded as u64,
                "{text:?}"
            );
        }
    }

    #[test]
    fn uuid_hashes_match_postgres() {
        for &(text, expected) in UUID {
            let key = KeyValue::parse(DataType::Uuid, text).unwrap();
            assert_eq!(key.extended_hash(), expected as u64, "{text}");
            assert_eq!(key.to_string(), text);
        }
    }

    #[test]
    fn shards_match_postgres() {
        // (key, [remainder for modulus 2, 3, 4, 7]) from satisfies_hash_partition.
        let cases: &[(KeyValue, [usize; 4])] = &[
            (KeyValue::Int(0), [0, 2, 0, 4]),
            (KeyValue::Int(1), [0, 2, 0, 5]),
            (KeyValue::Int(-1), [1, 2, 1, 0]),
            (KeyValue::Int(42), [0, 0, 2, 0]),
            (KeyValue::Int(1234), [0, 0, 2, 6]),
            (KeyValue::Int(i64::MAX), [0, 0, 2, 3]),
            (KeyValue::Text(""), [0, 2, 2, 1]),
            (KeyValue::Text("hello world!!"), [1, 2, 3, 4]),
            (KeyValue::Text("żółć"), [0, 1, 2, 0]),
            (KeyValue::Text("🦀"), [0, 0, 0, 0]),
            (
                KeyValue::Uuid([
                    0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd,
                    0x38, 0x0a, 0x11,
                ]),
                [0, 1, 0, 6],
            ),
        ];
        for (key, expected) in cases {
            let got: Vec<usize> = [2, 3, 4, 7].iter().map(|&n| shard_of(key, n)).collect();
            assert_eq!(got, expected, "{key:?}");
        }
    }

    #[test]
    fn int_widths_share_shards() {
        for value in [0i16, 1, -1, 300, -300, i16::MIN, i16::MAX] {
            let small = KeyValue::from(value);
            let int = KeyValue::from(i32::from(value));
            let big = KeyValue::from(i64::from(value));
            assert_eq!(hash_key(&small), hash_key(&big));
            assert_eq!(hash_key(&int), hash_key(&big));
            // int4's own hash function is hash_uint32_extended of the value.
            assert_eq!(
                big.extended_hash(),
                hash_uint32_extended(i32::from(value) as u32, HASH_PARTITION_SEED)
            );
        }
    }

    #[test]
    fn zero_or_one_shard() {
        assert_eq!(shard_of(&KeyValue::Int(5), 0), 0);
        assert_eq!(shard_of(&KeyValue::Int(5), 1), 0);
    }

    #[test]
    fn parses_bigints() {
        let ok: &[(&str, i64)] = &[
            ("0", 0),
            ("-0", 0),
            ("+17", 17),
            ("  42\t\n", 42),
            ("-9223372036854775808", i64::MIN),
            ("9223372036854775807", i64::MAX),
            ("1_000_000", 1_000_000),
            ("0x7FFFFFFFFFFFFFFF", i64::MAX),
            ("-0x8000000000000000", i64::MIN),
            ("0x_ff", 255),
            ("0o17", 15),
            ("-0b101", -5),
            ("007", 7),
        ];
        for &(text, value) in ok {
            assert_eq!(parse_bigint(text), Ok(value), "{text:?}");
        }
        let syntax = [
            "", " ", "-", "+", "abc", "1.5", "1e3", "12a", "1 2", "--1", "_1", "1_", "1__0", "0x",
            "0x_", "0xg", "0b2", "١٢", "１",
        ];
        for text in syntax {
            assert_eq!(
                parse_bigint(text),
                Err(ParseKeyError::Syntax {
                    data_type: DataType::Bigint,
                    text: text.to_string()
                }),
                "{text:?}"
            );
        }
        for text in [
            "9223372036854775808",
            "-9223372036854775809",
            "99999999999999999999999",
            "0x8000000000000000",
        ] {
            let error = parse_bigint(text).unwrap_err();
            assert_eq!(
                error.to_string(),
                format!("value \"{text}\" is out of range for type bigint")
            );
        }
        assert_eq!(
            KeyValue::parse(DataType::Bigint, "x")
                .unwrap_err()
                .to_string(),
            "invalid input syntax for type bigint: \"x\""
        );
    }

    #[test]
    fn parses_uuids() {
        let expected = KeyValue::parse(DataType::Uuid, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
        for text in [
            "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
            "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
            "a0eebc999c0b4ef8bb6d6bb9bd380a11",
            "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11",
            "{a0eebc999c0b4ef8bb6d6bb9bd380a11}",
            "a0eebc99-9c0b4ef8-bb6d6bb9-bd380a11",
        ] {
            assert_eq!(KeyValue::parse(DataType::Uuid, text), expected, "{text}");
        }
        for text in [
            "",
            "{}",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a111",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11-",
            "-a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "a0eebc99--9c0b-4ef8-bb6d-6bb9bd380a11",
            "a0e-ebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
            " a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11 ",
            "g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1ż",
            "ż0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1",
        ] {
            assert_eq!(
                KeyValue::parse(DataType::Uuid, text)
                    .unwrap_err()
                    .to_string(),
                format!("invalid input syntax for type uuid: \"{text}\""),
                "{text}"
            );
        }
    }

    #[test]
    fn parses_text_as_is() {
        assert_eq!(
            KeyValue::parse(DataType::Varchar, " it's "),
            Ok(KeyValue::Text(" it's "))
        );
        assert_eq!(KeyValue::Text("").data_type(), DataType::Varchar);
    }
}
