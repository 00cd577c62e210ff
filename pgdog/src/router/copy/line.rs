//! Finding where the lines of a text or CSV COPY stream end, across chunks: backslash escapes
//! (text) and quotes (CSV) can hide a newline, and PostgreSQL's rules for `\r` apply.

use memchr::{memchr, memchr2, memchr3};

/// How lines end. PostgreSQL fixes it with the first line of a stream and rejects the other
/// kind afterwards; a lone carriage return as line end is not supported here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Eol {
    /// Not seen yet.
    Unknown,
    /// `\n`.
    Nl,
    /// `\r\n`.
    CrNl,
}

/// A line terminator PostgreSQL would reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ScanError {
    /// A carriage return that does not end a `\r\n` line (or a `\r\n` after `\n` lines).
    LiteralCr,
    /// A bare `\n` after `\r\n` lines.
    LiteralNl,
}

/// The end of a line found by [`LineScanner::scan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LineEnd {
    /// Offset just past the terminator, in the slice given to `scan`.
    pub end: usize,
    /// Terminator length: 1 (`\n`) or 2 (`\r\n`); it may have begun in an earlier slice.
    pub terminator: usize,
    /// Text format: the line holds an unescaped `\.` (the end-of-data marker).
    pub dot: bool,
}

/// The quoting rules of the stream.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Text: a backslash makes the next byte data.
    Text,
    /// CSV: newlines inside quotes are data; `escape` (when it differs from the quote) makes
    /// a following quote or escape data.
    Csv { quote: u8, escape: Option<u8> },
}

/// Resumable line-end search. Feed it the bytes after the previous line end, in as many
/// slices as they arrive; its state carries an escape, a quote or a `\r` across slices.
#[derive(Debug, Clone)]
pub(super) struct LineScanner {
    mode: Mode,
    eol: Eol,
    /// The previous slice ended right after an escape byte.
    escape_pending: bool,
    /// The previous slice ended right after an unquoted, unescaped `\r`.
    cr_pending: bool,
    /// CSV: inside quotes.
    in_quote: bool,
    /// Text: the current line holds `\.`.
    dot: bool,
}

impl LineScanner {
    /// A scanner for text format.
    pub fn text() -> LineScanner {
        LineScanner::new(Mode::Text)
    }

    /// A scanner for CSV with this quote and escape byte.
    pub fn csv(quote: u8, escape: u8) -> LineScanner {
        let escape = (escape != quote).then_some(escape);
        LineScanner::new(Mode::Csv { quote, escape })
    }

    fn new(mode: Mode) -> LineScanner {
        LineScanner {
            mode,
            eol: Eol::Unknown,
            escape_pending: false,
            cr_pending: false,
            in_quote: false,
            dot: false,
        }
    }

    /// CSV: whether the bytes scanned since the last line end left a quote open.
    pub fn in_quote(&self) -> bool {
        self.in_quote
    }

    /// Whether the last byte scanned was a `\r` waiting for its `\n`.
    pub fn cr_pending(&self) -> bool {
        self.cr_pending
    }

    /// Whether the current line holds an unescaped `\.` (text format).
    pub fn dot(&self) -> bool {
        self.dot
    }

    /// Forgets the current line's progress (the caller will scan it again from its start).
    pub fn restart_line(&mut self) {
        self.escape_pending = false;
        self.cr_pending = false;
        self.in_quote = false;
        self.dot = false;
    }

    /// Scans `s`, the continuation of the current line. `Ok(None)`: the line goes on past `s`.
    pub fn scan(&mut self, s: &[u8]) -> Result<Option<LineEnd>, ScanError> {
        let mut i = 0;
        if s.is_empty() {
            return Ok(None);
        }
        if self.cr_pending {
            self.cr_pending = false;
            return if s[0] == b'\n' {
                self.line_end(1, 2).map(Some)
            } else {
                Err(ScanError::LiteralCr)
            };
        }
        if self.escape_pending {
            self.escape_pending = false;
            match self.mode {
                Mode::Text => {
                    self.dot |= s[0] == b'.';
                    i = 1;
                }
                Mode::Csv { quote, escape } => {
                    if s[0] == quote || Some(s[0]) == escape {
                        i = 1;
                    }
                }
            }
        }
        match self.mode {
            Mode::Text => self.scan_text(s, i),
            Mode::Csv { quote, escape } => self.scan_csv(s, i, quote, escape),
        }
    }

    fn scan_text(&mut self, s: &[u8], mut i: usize) -> Result<Option<LineEnd>, ScanError> {
        while let Some(offset) = memchr3(b'\n', b'\\', b'\r', &s[i..]) {
            let p = i + offset;
            match s[p] {
                b'\\' => match s.get(p + 1) {
                    Some(&next) => {
                        self.dot |= next == b'.';
                        i = p + 2;
                    }
                    None => {
                        self.escape_pending = true;
                        return Ok(None);
                    }
                },
                b'\n' => return self.line_end(p + 1, 1).map(Some),
                _ => return self.carriage_return(s, p),
            }
        }
        Ok(None)
    }

    fn scan_csv(
        &mut self,
        s: &[u8],
        mut i: usize,
        quote: u8,
        escape: Option<u8>,
    ) -> Result<Option<LineEnd>, ScanError> {
        while i < s.len() {
            if self.in_quote {
                let found = match escape {
                    None => memchr(quote, &s[i..]),
                    Some(escape) => memchr2(quote, escape, &s[i..]),
                };
                let Some(offset) = found else {
                    return Ok(None);
                };
                let p = i + offset;
                if s[p] == quote {
                    self.in_quote = false;
                    i = p + 1;
                } else {
                    match s.get(p + 1) {
                        Some(&next) if next == quote || Some(next) == escape => i = p + 2,
                        Some(_) => i = p + 1,
                        None => {
                            self.escape_pending = true;
                            return Ok(None);
                        }
                    }
                }
            } else {
                let Some(offset) = memchr3(quote, b'\n', b'\r', &s[i..]) else {
                    return Ok(None);
                };
                let p = i + offset;
                match s[p] {
                    b'\n' => return self.line_end(p + 1, 1).map(Some),
                    b'\r' => return self.carriage_return(s, p),
                    _ => {
                        self.in_quote = true;
                        i = p + 1;
                    }
                }
            }
        }
        Ok(None)
    }

    /// An unescaped, unquoted `\r` at `s[p]`.
    fn carriage_return(&mut self, s: &[u8], p: usize) -> Result<Option<LineEnd>, ScanError> {
        match s.get(p + 1) {
            Some(b'\n') => self.line_end(p + 2, 2).map(Some),
            Some(_) => Err(ScanError::LiteralCr),
            None => {
                self.cr_pending = true;
                Ok(None)
            }
        }
    }

    fn line_end(&mut self, end: usize, terminator: usize) -> Result<LineEnd, ScanError> {
        let eol = if terminator == 2 { Eol::CrNl } else { Eol::Nl };
        match (self.eol, eol) {
            (Eol::Unknown, _) => self.eol = eol,
            (Eol::Nl, Eol::CrNl) => return Err(ScanError::LiteralCr),
            (Eol::CrNl, Eol::Nl) => return Err(ScanError::LiteralNl),
            _ => {}
        }
        let dot = std::mem::take(&mut self.dot);
        Ok(LineEnd {
            end,
            terminator,
            dot,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Line ends (absolute offsets) of `data` scanned in one piece.
    fn ends(scanner: &mut LineScanner, data: &[u8]) -> Result<Vec<usize>, ScanError> {
        let mut out = vec![];
        let mut start = 0;
        while let Some(end) = scanner.scan(&data[start..])? {
            start += end.end;
            out.push(start);
        }
        Ok(out)
    }

    #[test]
    fn text_escapes_hide_newlines() {
        let data = b"a\\\nb\n\\\\\nc\\\\\\\nd\n";
        assert_eq!(ends(&mut LineScanner::text(), data), Ok(vec![5, 8, 15]));
    }

    #[test]
    fn csv_quotes_hide_newlines() {
        let data = b"\"a\nb\",c\n\"x\"\"\ny\"\n";
        assert_eq!(
            ends(&mut LineScanner::csv(b'"', b'"'), data),
            Ok(vec![8, 16])
        );
        // With a distinct escape, an escaped quote does not close the field.
        let data = b"'a\\'\n',b\n'\\\\'\n";
        assert_eq!(
            ends(&mut LineScanner::csv(b'\'', b'\\'), data),
            Ok(vec![9, 14])
        );
    }

    #[test]
    fn carriage_returns() {
        assert_eq!(
            ends(&mut LineScanner::text(), b"a\r\nb\r\n"),
            Ok(vec![3, 6])
        );
        assert_eq!(
            ends(&mut LineScanner::text(), b"a\rb\n"),
            Err(ScanError::LiteralCr)
        );
        assert_eq!(
            ends(&mut LineScanner::text(), b"a\nb\r\n"),
            Err(ScanError::LiteralCr)
        );
        assert_eq!(
            ends(&mut LineScanner::text(), b"a\r\nb\n"),
            Err(ScanError::LiteralNl)
        );
        // Escaped (text) or quoted (CSV) carriage returns are data.
        assert_eq!(ends(&mut LineScanner::text(), b"a\\\rb\n"), Ok(vec![5]));
        assert_eq!(
            ends(&mut LineScanner::csv(b'"', b'"'), b"\"a\rb\"\n"),
            Ok(vec![6])
        );
    }

    #[test]
    fn state_carries_across_slices() {
        let mut scanner = LineScanner::text();
        assert_eq!(scanner.scan(b"ab\\"), Ok(None));
        assert_eq!(
            scanner.scan(b"\nc\r"),
            Ok(None),
            "escaped newline, then a pending \\r"
        );
        assert!(scanner.cr_pending());
        assert_eq!(
            scanner.scan(b"\nrest"),
            Ok(Some(LineEnd {
                end: 1,
                terminator: 2,
                dot: false
            }))
        );
        let mut scanner = LineScanner::text();
        assert_eq!(scanner.scan(b"\\"), Ok(None));
        assert_eq!(
            scanner.scan(b".\n"),
            Ok(Some(LineEnd {
                end: 2,
                terminator: 1,
                dot: true
            }))
        );
    }
}
