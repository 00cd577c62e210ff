//! PostgreSQL's own hash of one value of a built-in type, computed from the value's binary
//! form (what binary COPY carries): the type's extended hash support function with seed 0,
//! as `hash_record_extended` calls it for each column of a row. The shards then hash their
//! columns as they are stored, which costs them half of what calling each column's send
//! function first costs ([`super::field_digest`]).
//!
//! Only types whose hash is known here bit for bit get a [`ValueHash`]; the others are sent
//! through their send function on the shards and hashed as bytes.

use crate::router::sharding::hash::{
    hash_bytes_extended, hash_int8_extended, hash_uint32_extended,
};

use super::shape::{Inner, TypeTree};

/// How PostgreSQL hashes a value, given its binary form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueHash {
    /// The bytes as they are: `bytea`, `uuid`, any send function's output.
    Bytes,
    /// Text (`text`, `varchar`, `name`): its bytes, under a deterministic collation (the
    /// shards hash it under "C").
    Text,
    /// `bpchar`: its bytes without the trailing spaces, under "C".
    Bpchar,
    /// One byte hashed as a sign-extended `int4`: `bool`, `"char"`.
    Char,
    /// `int2`, hashed as the `int4` it widens to.
    Int2,
    /// `int4`, `oid`, `date`.
    Int4,
    /// `int8`, `time`, `timestamp`, `timestamptz`.
    Int8,
    /// `float4`, hashed as the `float8` it widens to.
    Float4,
    /// `float8`: zeros hash as the seed, NaNs as one NaN.
    Float8,
    /// `numeric`: its base-10000 digits without leading and trailing zeros, and its weight.
    Numeric,
    /// `jsonb`: its keys, values and elements in storage order.
    Jsonb,
    /// An array of this element type: its elements in order, dimensions left out.
    Array(Box<ValueHash>),
}

/// `JB_FOBJECT` and `JB_FARRAY` of PostgreSQL's jsonb headers, as `jsonb_hash_extended` mixes
/// them in at the start of each object and array.
const JSONB_OBJECT: u64 = (0x2000_0000 << 32) | 0x2000_0000;
const JSONB_ARRAY: u64 = (0x4000_0000 << 32) | 0x4000_0000;

/// Sign bits of a special `numeric` (NaN, +Infinity, -Infinity) in its binary form.
const NUMERIC_SPECIAL: u16 = 0xC000;

impl ValueHash {
    /// How values of `tree`'s type are hashed, when that is known here.
    pub fn of_type(tree: &TypeTree) -> Option<ValueHash> {
        match &tree.inner {
            Inner::Nothing => Self::of_base_type(tree.oid),
            // int2vector and oidvector look like arrays but hash (or not) on their own.
            Inner::Array(element) if !matches!(tree.oid, 22 | 30) => {
                Some(ValueHash::Array(Box::new(Self::of_type(element)?)))
            }
            _ => None,
        }
    }

    fn of_base_type(oid: u32) -> Option<ValueHash> {
        Some(match oid {
            16 | 18 => ValueHash::Char,
            17 | 2950 => ValueHash::Bytes,
            19 | 25 | 1043 => ValueHash::Text,
            1042 => ValueHash::Bpchar,
            21 => ValueHash::Int2,
            23 | 26 | 1082 => ValueHash::Int4,
            20 | 1083 | 1114 | 1184 => ValueHash::Int8,
            700 => ValueHash::Float4,
            701 => ValueHash::Float8,
            1700 => ValueHash::Numeric,
            3802 => ValueHash::Jsonb,
            _ => return None,
        })
    }

    /// Whether the shards must hash the column under the "C" collation.
    pub fn collatable(&self) -> bool {
        match self {
            ValueHash::Text | ValueHash::Bpchar => true,
            ValueHash::Array(element) => element.collatable(),
            _ => false,
        }
    }

    /// The hash of the value whose binary form is `value`. Malformed values (which the
    /// source never sends) hash what they have.
    pub fn hash(&self, value: &[u8]) -> u64 {
        match self {
            ValueHash::Bytes | ValueHash::Text => hash_bytes_extended(value, 0),
            ValueHash::Bpchar => {
                let end = value.iter().rposition(|b| *b != b' ').map_or(0, |i| i + 1);
                hash_bytes_extended(&value[..end], 0)
            }
            ValueHash::Char => {
                hash_uint32_extended(value.first().map_or(0, |b| *b as i8 as i32 as u32), 0)
            }
            ValueHash::Int2 => hash_uint32_extended(i16::from_be_bytes(be(value)) as i32 as u32, 0),
            ValueHash::Int4 => hash_uint32_extended(u32::from_be_bytes(be(value)), 0),
            ValueHash::Int8 => hash_int8_extended(i64::from_be_bytes(be(value)), 0),
            ValueHash::Float4 => float8_hash(f64::from(f32::from_be_bytes(be(value)))),
            ValueHash::Float8 => float8_hash(f64::from_be_bytes(be(value))),
            ValueHash::Numeric => numeric_hash(value),
            ValueHash::Jsonb => jsonb_hash(value),
            ValueHash::Array(element) => array_hash(element, value),
        }
    }
}

/// The first `N` bytes of `value`, zero-padded when it is shorter.
#[inline]
fn be<const N: usize>(value: &[u8]) -> [u8; N] {
    let mut bytes = [0u8; N];
    let n = value.len().min(N);
    bytes[..n].copy_from_slice(&value[..n]);
    bytes
}

/// `hashfloat8extended`: every zero hashes as the seed, every NaN as PostgreSQL's one NaN,
/// anything else as its 8 bytes in memory.
fn float8_hash(value: f64) -> u64 {
    if value == 0.0 {
        return 0;
    }
    let value = if value.is_nan() {
        f64::from_bits(0x7ff8_0000_0000_0000)
    } else {
        value
    };
    hash_bytes_extended(&value.to_le_bytes(), 0)
}

/// `hash_numeric_extended` of a binary `numeric` (digit count, weight, sign, display scale,
/// then base-10000 digits, all 16-bit big-endian): NaN and infinities hash as the seed.
fn numeric_hash(value: &[u8]) -> u64 {
    let word = |at: usize| u16::from_be_bytes(be(value.get(at..).unwrap_or(&[])));
    if word(4) & NUMERIC_SPECIAL == NUMERIC_SPECIAL {
        return 0;
    }
    let count = (word(0) as i16).max(0) as usize;
    let weight = i32::from(word(2) as i16);
    let digits = value.get(8..).unwrap_or(&[]);
    hash_digits(&digits[..digits.len().min(2 * count)], weight)
}

/// `hash_numeric_extended` of the number whose base-10000 digits are `digits` (16-bit
/// big-endian), the first of weight `weight`: zero hashes as the seed minus one; otherwise
/// the digits between the first and last non-zero one, as stored in memory (little-endian),
/// XOR the weight of the first.
fn hash_digits(digits: &[u8], weight: i32) -> u64 {
    let zero = |i: usize| digits[2 * i] == 0 && digits[2 * i + 1] == 0;
    let count = digits.len() / 2;
    let Some(first) = (0..count).find(|i| !zero(*i)) else {
        return 0u64.wrapping_sub(1);
    };
    let last = (first..count).rfind(|i| !zero(*i)).unwrap_or(first);
    let len = 2 * (last + 1 - first);
    let mut stack = [0u8; 64];
    let mut heap = Vec::new();
    let swapped: &mut [u8] = if len <= stack.len() {
        &mut stack[..len]
    } else {
        heap.resize(len, 0);
        &mut heap
    };
    for (k, pair) in digits[2 * first..2 * (last + 1)]
        .chunks_exact(2)
        .enumerate()
    {
        swapped[2 * k] = pair[1];
        swapped[2 * k + 1] = pair[0];
    }
    let weight = weight - first as i32;
    hash_bytes_extended(swapped, 0) ^ (weight as i64 as u64)
}

/// `hash_array_extended` of a binary array (dimension count, null flag, element type, each
/// dimension's length and lower bound, then each element's length and bytes, -1 for NULL):
/// starting from 1, `h = h * 31 + element hash`, NULL elements hashing as 0.
fn array_hash(element: &ValueHash, value: &[u8]) -> u64 {
    let int = |at: usize| i32::from_be_bytes(be(value.get(at..).unwrap_or(&[])));
    let dimensions = int(0).max(0) as usize;
    let mut count: usize = if dimensions == 0 { 0 } else { 1 };
    for d in 0..dimensions {
        count = count.saturating_mul(int(12 + 8 * d).max(0) as usize);
    }
    let mut pos = 12 + 8 * dimensions;
    let mut hash = 1u64;
    for _ in 0..count {
        if pos + 4 > value.len() {
            break;
        }
        let len = int(pos);
        pos += 4;
        let element_hash = if len < 0 {
            0
        } else {
            let end = pos.saturating_add(len as usize).min(value.len());
            let h = element.hash(&value[pos..end]);
            pos = end;
            h
        };
        hash = hash.wrapping_mul(31).wrapping_add(element_hash);
    }
    hash
}

/// PostgreSQL's `ROTATE_HIGH_AND_LOW_32BITS`: each 32-bit half rotated left by one bit.
#[inline]
fn rotate_halves(v: u64) -> u64 {
    ((v << 1) & 0xffff_fffe_ffff_fffe) | ((v >> 31) & 0x0000_0001_0000_0001)
}

/// `jsonb_hash_extended` of a binary `jsonb` (a version byte, then the value's text, which
/// lists object keys in storage order): every key, value and element rotates the hash and
/// XORs its own in; each object and array XORs a flag in first. An empty top-level object
/// or array hashes as the seed; a top-level scalar is a one-element array.
fn jsonb_hash(value: &[u8]) -> u64 {
    let mut json = Json {
        text: value.get(1..).unwrap_or(&[]),
        pos: 0,
        scratch: Vec::new(),
    };
    let mut hash = 0u64;
    match json.peek() {
        None => return 0,
        Some(b'{' | b'[') => {
            if json.empty_container() {
                return 0;
            }
        }
        Some(_) => hash ^= JSONB_ARRAY,
    }
    let scalar = |hash: &mut u64, value: u64| *hash = rotate_halves(*hash) ^ value;
    while let Some(byte) = json.peek() {
        match byte {
            b'{' => {
                hash ^= JSONB_OBJECT;
                json.pos += 1;
            }
            b'[' => {
                hash ^= JSONB_ARRAY;
                json.pos += 1;
            }
            b'"' => {
                let h = hash_bytes_extended(json.string(), 0);
                scalar(&mut hash, h);
            }
            b't' => {
                json.skip_word();
                scalar(&mut hash, 0x02);
            }
            b'f' => {
                json.skip_word();
                scalar(&mut hash, 0x04);
            }
            b'n' => {
                json.skip_word();
                scalar(&mut hash, 0x01);
            }
            b'-' | b'0'..=b'9' => {
                let h = json.number_hash();
                scalar(&mut hash, h);
            }
            _ => json.pos += 1,
        }
    }
    hash
}

/// A cursor over JSON text.
struct Json<'a> {
    text: &'a [u8],
    pos: usize,
    /// Unescaped strings.
    scratch: Vec<u8>,
}

impl Json<'_> {
    /// The next byte that is not white space.
    fn peek(&mut self) -> Option<u8> {
        while let Some(byte) = self.text.get(self.pos) {
            if !matches!(byte, b' ' | b'\t' | b'\n' | b'\r') {
                return Some(*byte);
            }
            self.pos += 1;
        }
        None
    }

    /// Whether the container opening at the cursor closes right away.
    fn empty_container(&mut self) -> bool {
        let start = self.pos;
        self.pos += 1;
        let empty = matches!(self.peek(), Some(b'}' | b']'));
        self.pos = start;
        empty
    }

    /// Skips `true`, `false` or `null`.
    fn skip_word(&mut self) {
        while self
            .text
            .get(self.pos)
            .is_some_and(|b| b.is_ascii_alphabetic())
        {
            self.pos += 1;
        }
    }

    /// The string at the cursor, unescaped; the cursor moves past it.
    fn string(&mut self) -> &[u8] {
        let start = self.pos + 1;
        let mut end = start;
        let mut escaped = false;
        while let Some(found) = self
            .text
            .get(end..)
            .and_then(|rest| memchr::memchr2(b'"', b'\\', rest))
        {
            end += found;
            if self.text[end] == b'"' {
                break;
            }
            escaped = true;
            end += 2;
        }
        let end = if self.text.get(end) == Some(&b'"') {
            end
        } else {
            self.text.len()
        };
        self.pos = end + 1;
        let raw = &self.text[start.min(end)..end];
        if !escaped {
            return raw;
        }
        self.scratch.clear();
        unescape(raw, &mut self.scratch);
        &self.scratch
    }

    /// `hash_numeric_extended` of the number at the cursor; the cursor moves past it.
    fn number_hash(&mut self) -> u64 {
        let start = self.pos;
        while self
            .text
            .get(self.pos)
            .is_some_and(|b| matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
        {
            self.pos += 1;
        }
        decimal_hash(&self.text[start..self.pos])
    }
}

/// Decodes a JSON string's escapes (`\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t`, `\uXXXX`
/// with surrogate pairs) into UTF-8.
fn unescape(raw: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < raw.len() {
        let byte = raw[i];
        if byte != b'\\' {
            out.push(byte);
            i += 1;
            continue;
        }
        let Some(&kind) = raw.get(i + 1) else {
            break;
        };
        i += 2;
        match kind {
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'u' => {
                let unit = |at: usize| {
                    raw.get(at..at + 4)
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                };
                let Some(first) = unit(i) else {
                    break;
                };
                i += 4;
                let mut code = first;
                if (0xD800..0xDC00).contains(&first) && raw.get(i..i + 2) == Some(b"\\u") {
                    if let Some(second) = unit(i + 2).filter(|s| (0xDC00..0xE000).contains(s)) {
                        code = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
                        i += 6;
                    }
                }
                let c = char::from_u32(code).unwrap_or('\u{FFFD}');
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            other => out.push(other),
        }
    }
}

/// `hash_numeric_extended` of a JSON number (`-12.50`, `3e-7`): its decimal digits grouped
/// in fours around the decimal point into base-10000 digits.
fn decimal_hash(literal: &[u8]) -> u64 {
    let (mantissa, exponent) = match literal.iter().position(|b| matches!(b, b'e' | b'E')) {
        Some(at) => (&literal[..at], &literal[at + 1..]),
        None => (literal, &[][..]),
    };
    let exponent: i64 = std::str::from_utf8(exponent)
        .ok()
        .and_then(|e| e.parse().ok())
        .unwrap_or(0);
    // Decimal digits in order, with their index among the digits.
    let digits = || {
        mantissa
            .iter()
            .filter(|b| b.is_ascii_digit())
            .map(|b| b - b'0')
            .enumerate()
    };
    let before_point = match mantissa.iter().position(|b| *b == b'.') {
        Some(at) => mantissa[..at].iter().filter(|b| b.is_ascii_digit()).count(),
        None => digits().count(),
    };
    let (Some(first), Some(last)) = (
        digits().find(|(_, d)| *d != 0).map(|(i, _)| i),
        digits().filter(|(_, d)| *d != 0).map(|(i, _)| i).last(),
    ) else {
        return 0u64.wrapping_sub(1);
    };
    // Digit i stands for 10^(point - 1 - i); base-10000 digit g holds powers 4g to 4g + 3.
    let point = before_point as i64 + exponent;
    let power = |i: usize| point - 1 - i as i64;
    let top = power(first).div_euclid(4);
    let len = 2 * (top - power(last).div_euclid(4) + 1) as usize;
    let mut stack = [0u8; 64];
    let mut heap = Vec::new();
    let groups: &mut [u8] = if len <= stack.len() {
        &mut stack[..len]
    } else {
        heap.resize(len, 0);
        &mut heap
    };
    for (i, digit) in digits().take(last + 1).skip(first) {
        let at = 2 * (top - power(i).div_euclid(4)) as usize;
        let group = u16::from_be_bytes([groups[at], groups[at + 1]])
            + u16::from(digit) * 10u16.pow(power(i).rem_euclid(4) as u32);
        groups[at..at + 2].copy_from_slice(&group.to_be_bytes());
    }
    hash_digits(groups, top as i32)
}

#[cfg(test)]
mod tests;
