//! `jsonb_hash_extended` from a binary `jsonb` value: its text, read token by token.

use crate::router::sharding::hash::hash_bytes_extended;

use super::hash_stripped_digits;

/// `JB_FOBJECT` and `JB_FARRAY` of PostgreSQL's jsonb headers, as `jsonb_hash_extended` mixes
/// them in at the start of each object and array.
const JSONB_OBJECT: u64 = (0x2000_0000 << 32) | 0x2000_0000;
const JSONB_ARRAY: u64 = (0x4000_0000 << 32) | 0x4000_0000;

/// PostgreSQL's `ROTATE_HIGH_AND_LOW_32BITS`: each 32-bit half rotated left by one bit.
#[inline]
pub(super) fn rotate_halves(v: u64) -> u64 {
    ((v << 1) & 0xffff_fffe_ffff_fffe) | ((v >> 31) & 0x0000_0001_0000_0001)
}

/// `jsonb_hash_extended` of a binary `jsonb` (a version byte, then the value's text, which
/// lists object keys in storage order): every key, value and element rotates the hash and
/// XORs its own in; each object and array XORs a flag in first. An empty top-level object
/// or array hashes as the seed; a top-level scalar is a one-element array.
pub(super) fn jsonb_hash(value: &[u8]) -> u64 {
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
        while let Some(byte) = self.text.get(end) {
            match byte {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    end += 2;
                }
                _ => end += 1,
            }
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
pub(super) fn unescape(raw: &[u8], out: &mut Vec<u8>) {
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
pub(super) fn decimal_hash(literal: &[u8]) -> u64 {
    let mut stack = [0u8; 48];
    let mut heap = Vec::new();
    let digits: &mut [u8] = if literal.len() <= stack.len() {
        &mut stack[..]
    } else {
        heap.resize(literal.len(), 0);
        &mut heap
    };
    let (mut count, mut before_point, mut exponent) = (0, None, 0i64);
    for (at, byte) in literal.iter().enumerate() {
        match byte {
            b'0'..=b'9' => {
                digits[count] = byte - b'0';
                count += 1;
            }
            b'.' => before_point = Some(count),
            b'e' | b'E' => {
                exponent = std::str::from_utf8(&literal[at + 1..])
                    .ok()
                    .and_then(|e| e.parse().ok())
                    .unwrap_or(0);
                break;
            }
            _ => {}
        }
    }
    let digits = &digits[..count];
    let (Some(first), Some(last)) = (
        digits.iter().position(|d| *d != 0),
        digits.iter().rposition(|d| *d != 0),
    ) else {
        return 0u64.wrapping_sub(1);
    };
    // Digit i stands for 10^(point - 1 - i); base-10000 digit g holds powers 4g to 4g + 3.
    let point = before_point.unwrap_or(count) as i64 + exponent;
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
    for (i, digit) in digits.iter().enumerate().take(last + 1).skip(first) {
        let at = 2 * (top - power(i).div_euclid(4)) as usize;
        let group = u16::from_le_bytes([groups[at], groups[at + 1]])
            + u16::from(*digit) * 10u16.pow(power(i).rem_euclid(4) as u32);
        groups[at..at + 2].copy_from_slice(&group.to_le_bytes());
    }
    hash_stripped_digits(groups, top as i32)
}
