//! One field of a text-format COPY line: where it is and what it says once its backslash
//! escapes are undone (PostgreSQL's `CopyReadAttributesText` rules).

use memchr::{memchr, memchr2};

/// A field of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Field {
    /// Start offset in the line.
    pub start: usize,
    /// End offset (exclusive).
    pub end: usize,
    /// Whether it holds a backslash, i.e. its decoded form differs from its bytes.
    pub escaped: bool,
}

/// Field `column` (0-based) of `line` (without its terminator); `None` when the line has fewer
/// fields. An escaped delimiter is data, not a separator.
pub(super) fn find_field(line: &[u8], delimiter: u8, column: usize) -> Option<Field> {
    let mut index = 0;
    let mut start = 0;
    let mut escaped = false;
    let mut i = 0;
    loop {
        let Some(offset) = memchr2(delimiter, b'\\', &line[i.min(line.len())..]) else {
            return (index == column).then_some(Field {
                start,
                end: line.len(),
                escaped,
            });
        };
        let p = i + offset;
        if line[p] == b'\\' {
            escaped = true;
            i = p + 2;
        } else {
            if index == column {
                return Some(Field {
                    start,
                    end: p,
                    escaped,
                });
            }
            index += 1;
            start = p + 1;
            i = p + 1;
            escaped = false;
        }
    }
}

/// Appends the decoded bytes of the raw field `raw` to `out`: `\b \f \n \r \t \v`, octal
/// `\ooo` (one to three digits), hex `\xhh` (one or two digits), and any other escaped byte as
/// itself. A backslash ending the field is dropped, like PostgreSQL does.
pub(super) fn unescape(raw: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while let Some(offset) = memchr(b'\\', &raw[i..]) {
        let p = i + offset;
        out.extend_from_slice(&raw[i..p]);
        let Some(&c) = raw.get(p + 1) else {
            return;
        };
        i = p + 2;
        let byte = match c {
            b'0'..=b'7' => {
                let mut value = u32::from(c - b'0');
                for _ in 0..2 {
                    match raw.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            value = (value << 3) + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                // Three octal digits reach 0o777; PostgreSQL keeps the low byte.
                (value & 0xff) as u8
            }
            b'x' => match raw.get(i).and_then(|&d| hex(d)) {
                Some(high) => {
                    i += 1;
                    match raw.get(i).and_then(|&d| hex(d)) {
                        Some(low) => {
                            i += 1;
                            (high << 4) | low
                        }
                        None => high,
                    }
                }
                None => b'x',
            },
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'v' => 0x0b,
            other => other,
        };
        out.push(byte);
    }
    out.extend_from_slice(&raw[i..]);
}

/// The value of a hex digit.
fn hex(digit: u8) -> Option<u8> {
    char::from(digit).to_digit(16).map(|value| value as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(line: &str, column: usize) -> Option<(&str, bool)> {
        find_field(line.as_bytes(), b'\t', column)
            .map(|field| (&line[field.start..field.end], field.escaped))
    }

    fn decode(raw: &str) -> Vec<u8> {
        let mut out = vec![];
        unescape(raw.as_bytes(), &mut out);
        out
    }

    #[test]
    fn finds_fields() {
        assert_eq!(field("a\tb\tc", 0), Some(("a", false)));
        assert_eq!(field("a\tb\tc", 1), Some(("b", false)));
        assert_eq!(field("a\tb\tc", 2), Some(("c", false)));
        assert_eq!(field("a\tb\tc", 3), None);
        assert_eq!(field("", 0), Some(("", false)));
        assert_eq!(field("\t", 1), Some(("", false)));
        assert_eq!(field("a\\\tb\tc", 0), Some(("a\\\tb", true)));
        assert_eq!(field("a\\\tb\tc", 1), Some(("c", false)));
        assert_eq!(field("a\\\\\tb", 1), Some(("b", false)));
        assert_eq!(field("a\tb\\", 1), Some(("b\\", true)));
        assert_eq!(field("\\N\tx", 0), Some(("\\N", true)));
    }

    #[test]
    fn unescapes() {
        assert_eq!(decode("plain"), b"plain");
        assert_eq!(decode("a\\\\b"), b"a\\b");
        assert_eq!(decode("\\t\\n\\r\\b\\f\\v"), b"\t\n\r\x08\x0c\x0b");
        assert_eq!(decode("\\101\\60\\0x"), b"A0\0x");
        assert_eq!(decode("\\1011"), b"A1");
        assert_eq!(decode("\\777"), b"\xff");
        assert_eq!(decode("\\x41\\x4g\\xg\\x"), b"A\x04gxgx");
        assert_eq!(decode("\\.\\q\\\t"), b".q\t");
        assert_eq!(decode("end\\"), b"end");
        assert_eq!(decode("\\N"), b"N");
    }
}
