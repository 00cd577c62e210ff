//! One field of a CSV COPY line: where it is and what it says once its quotes are removed
//! (PostgreSQL's `CopyReadAttributesCSV` rules).

use memchr::{memchr, memchr2};

/// The quoting bytes of a CSV stream.
#[derive(Debug, Clone, Copy)]
pub(super) struct Quoting {
    /// The field separator.
    pub delimiter: u8,
    /// The quote.
    pub quote: u8,
    /// The escape inside quotes (the quote itself by default).
    pub escape: u8,
}

/// A field of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Field {
    /// Start offset in the line.
    pub start: usize,
    /// End offset (exclusive).
    pub end: usize,
    /// Whether it holds a quote: then it is never NULL and must be decoded.
    pub quoted: bool,
}

/// Why a line cannot be split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Unterminated;

/// Field `column` (0-based) of `line` (without its terminator); `Ok(None)` when the line has
/// fewer fields. Delimiters inside quotes are data.
pub(super) fn find_field(
    line: &[u8],
    quoting: Quoting,
    column: usize,
) -> Result<Option<Field>, Unterminated> {
    let Quoting {
        delimiter,
        quote,
        escape,
    } = quoting;
    let mut index = 0;
    let mut start = 0;
    let mut quoted = false;
    let mut i = 0;
    loop {
        let Some(offset) = memchr2(delimiter, quote, &line[i..]) else {
            return Ok((index == column).then_some(Field {
                start,
                end: line.len(),
                quoted,
            }));
        };
        let p = i + offset;
        if line[p] == quote {
            quoted = true;
            i = skip_quoted(line, p + 1, quote, escape)?;
        } else {
            if index == column {
                return Ok(Some(Field {
                    start,
                    end: p,
                    quoted,
                }));
            }
            index += 1;
            start = p + 1;
            i = p + 1;
            quoted = false;
        }
    }
}

/// The offset just past the quote closing the quoted section that starts at `i`.
fn skip_quoted(line: &[u8], mut i: usize, quote: u8, escape: u8) -> Result<usize, Unterminated> {
    loop {
        let found = if escape == quote {
            memchr(quote, &line[i..])
        } else {
            memchr2(quote, escape, &line[i..])
        };
        let p = i + found.ok_or(Unterminated)?;
        if line[p] == quote {
            return Ok(p + 1);
        }
        // An escape makes a following quote or escape data.
        i = match line.get(p + 1) {
            Some(&next) if next == quote || next == escape => p + 2,
            _ => p + 1,
        };
    }
}

/// Appends the decoded bytes of the raw field `raw` to `out`: quotes removed, and inside them
/// an escape followed by a quote or an escape stands for that byte.
pub(super) fn unquote(raw: &[u8], quoting: Quoting, out: &mut Vec<u8>) -> Result<(), Unterminated> {
    let Quoting { quote, escape, .. } = quoting;
    let mut i = 0;
    loop {
        // Unquoted part, up to the next quote.
        let Some(offset) = memchr(quote, &raw[i..]) else {
            out.extend_from_slice(&raw[i..]);
            return Ok(());
        };
        out.extend_from_slice(&raw[i..i + offset]);
        i += offset + 1;
        // Quoted part, up to the closing quote.
        loop {
            let found = if escape == quote {
                memchr(quote, &raw[i..])
            } else {
                memchr2(quote, escape, &raw[i..])
            };
            let p = i + found.ok_or(Unterminated)?;
            out.extend_from_slice(&raw[i..p]);
            match raw.get(p + 1) {
                Some(&next) if raw[p] == escape && (next == quote || next == escape) => {
                    out.push(next);
                    i = p + 2;
                }
                _ if raw[p] == quote => {
                    i = p + 1;
                    break;
                }
                _ => {
                    // A lone escape is data.
                    out.push(raw[p]);
                    i = p + 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STANDARD: Quoting = Quoting {
        delimiter: b',',
        quote: b'"',
        escape: b'"',
    };
    const CUSTOM: Quoting = Quoting {
        delimiter: b';',
        quote: b'\'',
        escape: b'\\',
    };

    fn field(line: &str, quoting: Quoting, column: usize) -> Option<(&str, bool)> {
        find_field(line.as_bytes(), quoting, column)
            .unwrap()
            .map(|field| (&line[field.start..field.end], field.quoted))
    }

    fn decode(raw: &str, quoting: Quoting) -> Result<String, Unterminated> {
        let mut out = vec![];
        unquote(raw.as_bytes(), quoting, &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn finds_fields() {
        assert_eq!(field("a,b,c", STANDARD, 1), Some(("b", false)));
        assert_eq!(field("a,b,c", STANDARD, 3), None);
        assert_eq!(field("", STANDARD, 0), Some(("", false)));
        assert_eq!(field(",", STANDARD, 1), Some(("", false)));
        assert_eq!(field("\"a,b\",c", STANDARD, 0), Some(("\"a,b\"", true)));
        assert_eq!(field("\"a,b\",c", STANDARD, 1), Some(("c", false)));
        assert_eq!(field("\"a\"\",b\",c", STANDARD, 1), Some(("c", false)));
        assert_eq!(field("x\"a,\"y,c", STANDARD, 1), Some(("c", false)));
        assert_eq!(field("'a\\';b';c", CUSTOM, 1), Some(("c", false)));
        assert_eq!(field("'a\\\\';b", CUSTOM, 1), Some(("b", false)));
        assert_eq!(
            find_field(b"\"abc,d", STANDARD, 1),
            Err(Unterminated),
            "an open quote"
        );
    }

    #[test]
    fn unquotes() {
        assert_eq!(decode("plain", STANDARD).unwrap(), "plain");
        assert_eq!(decode("\"a,b\"", STANDARD).unwrap(), "a,b");
        assert_eq!(decode("\"a\"\"b\"", STANDARD).unwrap(), "a\"b");
        assert_eq!(decode("\"\"", STANDARD).unwrap(), "");
        assert_eq!(decode("ab\"cd\"ef", STANDARD).unwrap(), "abcdef");
        assert_eq!(decode("\"a\nb\"", STANDARD).unwrap(), "a\nb");
        assert_eq!(decode("'a\\'b'", CUSTOM).unwrap(), "a'b");
        assert_eq!(decode("'a\\\\b'", CUSTOM).unwrap(), "a\\b");
        assert_eq!(decode("'a\\b'", CUSTOM).unwrap(), "a\\b");
        assert_eq!(decode("a\\b", CUSTOM).unwrap(), "a\\b");
        assert_eq!(decode("'ab", CUSTOM), Err(Unterminated));
        assert_eq!(decode("\"ab\"\"", STANDARD), Err(Unterminated));
    }
}
