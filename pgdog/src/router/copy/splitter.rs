//! [`CopySplitter`]: cuts a client's `COPY ... FROM STDIN` data, chunked any way, into the
//! pieces each shard's stream needs (header, rows with their sharding keys).

use std::mem;

use crate::net::{sqlstate, ErrorResponse};
use crate::router::route::{CopyFormat, CopyOptions};
use crate::router::sharding::KeyValue;

use super::binary::{self, KeyField, Tuple};
use super::csv::{self, Quoting};
use super::error::{at_key, at_line, bad_format, key_from_str, scan_error};
use super::line::{LineEnd, LineScanner};
use super::text;
use super::{CopyKey, CopyPiece};

/// The sink [`CopySplitter::feed`] and [`CopySplitter::finish`] call with every piece.
pub type Sink<'s> = dyn FnMut(CopyPiece<'_>) -> Result<(), ErrorResponse> + 's;

/// Splits one `COPY ... FROM STDIN` data stream into rows, each with its sharding key.
///
/// Rows and headers are handed out borrowed: from the caller's payload when a row lies within
/// one `CopyData`, from an internal buffer when it spans several. Nothing is allocated per row
/// except when a key needs unescaping, and then into a reused buffer.
#[derive(Debug)]
pub struct CopySplitter {
    options: CopyOptions,
    key: Option<CopyKey>,
    quoting: Quoting,
    scanner: LineScanner,
    /// The beginning of a row (or binary header) whose end has not arrived yet.
    partial: Vec<u8>,
    /// The decoded key of the current row, when it differs from its bytes.
    decoded: Vec<u8>,
    /// The header (text/CSV `HEADER` line, binary file header) is still to come.
    header_pending: bool,
    /// The end-of-data marker (`\.`) or the binary trailer was seen: the rest is ignored
    /// (text, CSV) or an error (binary).
    ended: bool,
    /// `finish` was called.
    finished: bool,
    /// The error that stopped the stream; every later call returns it.
    failed: Option<ErrorResponse>,
    rows: u64,
    lines: u64,
}

impl CopySplitter {
    /// A splitter for a stream in `options`' format, routing by `key` (`None`: rows carry no
    /// key, e.g. for an omnisharded table).
    pub fn new(options: CopyOptions, key: Option<CopyKey>) -> CopySplitter {
        let scanner = match options.format {
            CopyFormat::Csv => LineScanner::csv(options.quote, options.escape),
            _ => LineScanner::text(),
        };
        let quoting = Quoting {
            delimiter: options.delimiter,
            quote: options.quote,
            escape: options.escape,
        };
        let header_pending = options.header || options.format == CopyFormat::Binary;
        CopySplitter {
            options,
            key,
            quoting,
            scanner,
            partial: Vec::new(),
            decoded: Vec::new(),
            header_pending,
            ended: false,
            finished: false,
            failed: None,
            rows: 0,
            lines: 0,
        }
    }

    /// Feeds one CopyData payload; calls `sink` for every piece completed so far, in order.
    /// After an error (its own or the sink's) every later call returns that error.
    pub fn feed(&mut self, data: &[u8], sink: &mut Sink<'_>) -> Result<(), ErrorResponse> {
        self.check()?;
        if self.finished {
            return Err(ErrorResponse::error(
                sqlstate::PROTOCOL_VIOLATION,
                "COPY data after the end of the COPY stream",
            ));
        }
        let result = match self.options.format {
            CopyFormat::Binary => self.feed_binary(data, sink),
            CopyFormat::Text | CopyFormat::Csv => self.feed_lines(data, sink),
        };
        self.record(result)
    }

    /// The client sent CopyDone: hands out a last row that has no line terminator (text and
    /// CSV allow it), and for binary the trailer as `All(&[0xff, 0xff])` (also when the client
    /// left it out, which PostgreSQL allows). A partial row or tuple left over is an error.
    pub fn finish(&mut self, sink: &mut Sink<'_>) -> Result<(), ErrorResponse> {
        self.check()?;
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        let result = match self.options.format {
            CopyFormat::Binary => self.finish_binary(sink),
            CopyFormat::Text | CopyFormat::Csv => self.finish_lines(sink),
        };
        self.record(result)
    }

    /// Rows seen so far (not counting a header).
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Lines completed so far, counting a header line (binary: tuples): the number
    /// PostgreSQL's error context (`COPY t, line N`) would give the last one.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Whether the end of the data was seen: the `\.` end marker (text, CSV) or the binary
    /// trailer. Text and CSV data after the marker is ignored, like PostgreSQL does.
    pub fn ended(&self) -> bool {
        self.ended
    }

    fn check(&self) -> Result<(), ErrorResponse> {
        match &self.failed {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }

    fn record(&mut self, result: Result<(), ErrorResponse>) -> Result<(), ErrorResponse> {
        if let Err(error) = &result {
            self.failed = Some(error.clone());
        }
        result
    }

    fn csv(&self) -> bool {
        self.options.format == CopyFormat::Csv
    }

    fn feed_lines(&mut self, mut data: &[u8], sink: &mut Sink<'_>) -> Result<(), ErrorResponse> {
        if self.ended {
            return Ok(());
        }
        if !self.partial.is_empty() {
            // Finish the line begun in an earlier payload.
            let Some(end) = self.scan(data)? else {
                self.partial.extend_from_slice(data);
                return Ok(());
            };
            self.partial.extend_from_slice(&data[..end.end]);
            let line = mem::take(&mut self.partial);
            let result = self.line_done(&line, end, sink);
            self.partial = line;
            self.partial.clear();
            result?;
            data = &data[end.end..];
        }
        let mut start = 0;
        while start < data.len() && !self.ended {
            let Some(end) = self.scan(&data[start..])? else {
                self.partial.extend_from_slice(&data[start..]);
                break;
            };
            let line = &data[start..start + end.end];
            start += end.end;
            self.line_done(line, end, sink)?;
        }
        Ok(())
    }

    fn scan(&mut self, data: &[u8]) -> Result<Option<LineEnd>, ErrorResponse> {
        let csv = self.csv();
        self.scanner
            .scan(data)
            .map_err(|error| at_line(scan_error(error, csv), self.lines + 1))
    }

    fn finish_lines(&mut self, sink: &mut Sink<'_>) -> Result<(), ErrorResponse> {
        if self.ended || self.partial.is_empty() {
            return Ok(());
        }
        let line = self.lines + 1;
        if self.scanner.cr_pending() {
            return Err(at_line(
                scan_error(super::line::ScanError::LiteralCr, self.csv()),
                line,
            ));
        }
        if self.scanner.in_quote() {
            return Err(at_line(bad_format("unterminated CSV quoted field"), line));
        }
        let partial = mem::take(&mut self.partial);
        let end = LineEnd {
            end: partial.len(),
            terminator: 0,
            dot: self.scanner.dot(),
        };
        let result = self.line_done(&partial, end, sink);
        self.partial = partial;
        self.partial.clear();
        result
    }

    /// A complete line (with its terminator, if any).
    fn line_done(
        &mut self,
        line: &[u8],
        end: LineEnd,
        sink: &mut Sink<'_>,
    ) -> Result<(), ErrorResponse> {
        self.lines += 1;
        let content = &line[..line.len() - end.terminator];
        let csv = self.csv();
        if content == b"\\." {
            // The end-of-data marker (in CSV only unquoted and alone on its line).
            self.ended = true;
            return Ok(());
        }
        if end.dot && !csv {
            return Err(at_line(
                bad_format("end-of-copy marker is not alone on its line"),
                self.lines,
            ));
        }
        if self.header_pending {
            self.header_pending = false;
            return sink(CopyPiece::All(line));
        }
        self.rows += 1;
        let key = match self.key {
            None => None,
            Some(key) => {
                let found = if csv {
                    csv_key(
                        content,
                        key,
                        self.quoting,
                        &self.options.null,
                        &mut self.decoded,
                    )
                } else {
                    text_key(content, key, &self.options, &mut self.decoded)
                };
                found.map_err(|error| at_key(error, self.lines, key.column))?
            }
        };
        sink(CopyPiece::Row { key, bytes: line })
    }

    fn feed_binary(&mut self, data: &[u8], sink: &mut Sink<'_>) -> Result<(), ErrorResponse> {
        if self.header_pending {
            self.partial.extend_from_slice(data);
            let Some(len) = binary::header_len(&self.partial)? else {
                return Ok(());
            };
            self.header_pending = false;
            let buffered = mem::take(&mut self.partial);
            sink(CopyPiece::All(&buffered[..len]))?;
            return self.feed_tuples(&buffered[len..], sink);
        }
        self.feed_tuples(data, sink)
    }

    fn feed_tuples(&mut self, mut data: &[u8], sink: &mut Sink<'_>) -> Result<(), ErrorResponse> {
        if self.ended {
            return after_trailer(data);
        }
        let column = self.key.map(|key| key.column);
        if !self.partial.is_empty() {
            // Complete the tuple begun in an earlier payload, taking only its bytes.
            loop {
                match self.tuple(&self.partial, column)? {
                    Tuple::Need(more) => {
                        if data.is_empty() {
                            return Ok(());
                        }
                        let take = more.min(data.len());
                        self.partial.extend_from_slice(&data[..take]);
                        data = &data[take..];
                    }
                    Tuple::Complete { len, key } => {
                        let tuple = mem::take(&mut self.partial);
                        let result = self.tuple_done(&tuple[..len], key, sink);
                        self.partial = tuple;
                        self.partial.clear();
                        result?;
                        break;
                    }
                    Tuple::Trailer => {
                        self.partial.clear();
                        self.ended = true;
                        return after_trailer(data);
                    }
                }
            }
        }
        let mut start = 0;
        while start < data.len() {
            match self.tuple(&data[start..], column)? {
                Tuple::Need(_) => {
                    self.partial.extend_from_slice(&data[start..]);
                    break;
                }
                Tuple::Complete { len, key } => {
                    self.tuple_done(&data[start..start + len], key, sink)?;
                    start += len;
                }
                Tuple::Trailer => {
                    self.ended = true;
                    return after_trailer(&data[start + 2..]);
                }
            }
        }
        Ok(())
    }

    fn tuple(&self, bytes: &[u8], column: Option<usize>) -> Result<Tuple, ErrorResponse> {
        binary::tuple(bytes, column).map_err(|error| at_line(error, self.lines + 1))
    }

    fn tuple_done(
        &mut self,
        tuple: &[u8],
        field: KeyField,
        sink: &mut Sink<'_>,
    ) -> Result<(), ErrorResponse> {
        self.lines += 1;
        self.rows += 1;
        let key = match (self.key, field) {
            (Some(key), KeyField::Missing) => {
                return Err(at_key(missing_key(), self.lines, key.column));
            }
            (Some(key), KeyField::At(start, end)) => Some(
                binary::decode_key(key.data_type, &tuple[start..end])
                    .map_err(|error| at_key(error, self.lines, key.column))?,
            ),
            _ => None,
        };
        sink(CopyPiece::Row { key, bytes: tuple })
    }

    fn finish_binary(&mut self, sink: &mut Sink<'_>) -> Result<(), ErrorResponse> {
        if self.header_pending {
            return Err(bad_format("COPY file signature not recognized"));
        }
        if !self.partial.is_empty() {
            return Err(at_line(
                bad_format("unexpected EOF in COPY data"),
                self.lines + 1,
            ));
        }
        self.ended = true;
        sink(CopyPiece::All(binary::TRAILER))
    }
}

/// Binary data after the trailer: PostgreSQL refuses it.
fn after_trailer(data: &[u8]) -> Result<(), ErrorResponse> {
    if data.is_empty() {
        Ok(())
    } else {
        Err(bad_format("received copy data after EOF marker"))
    }
}

fn missing_key() -> ErrorResponse {
    bad_format("missing data for the sharding key column")
}

/// The key in a text-format line: NULL when the raw field is the NULL string, else the field
/// with its escapes undone (into `decoded` when it has any).
fn text_key<'a>(
    line: &'a [u8],
    key: CopyKey,
    options: &CopyOptions,
    decoded: &'a mut Vec<u8>,
) -> Result<Option<KeyValue<'a>>, ErrorResponse> {
    let field = text::find_field(line, options.delimiter, key.column).ok_or_else(missing_key)?;
    let raw = &line[field.start..field.end];
    if raw == options.null.as_bytes() {
        return Ok(None);
    }
    let bytes = if field.escaped {
        decoded.clear();
        text::unescape(raw, decoded);
        &decoded[..]
    } else {
        raw
    };
    key_from_str(key.data_type, bytes).map(Some)
}

/// The key in a CSV line: NULL when the field is unquoted and equals the NULL string, else the
/// field without its quotes (into `decoded` when it has any).
fn csv_key<'a>(
    line: &'a [u8],
    key: CopyKey,
    quoting: Quoting,
    null: &str,
    decoded: &'a mut Vec<u8>,
) -> Result<Option<KeyValue<'a>>, ErrorResponse> {
    let unterminated = |_| bad_format("unterminated CSV quoted field");
    let field = csv::find_field(line, quoting, key.column)
        .map_err(unterminated)?
        .ok_or_else(missing_key)?;
    let raw = &line[field.start..field.end];
    if !field.quoted && raw == null.as_bytes() {
        return Ok(None);
    }
    let bytes = if field.quoted {
        decoded.clear();
        csv::unquote(raw, quoting, decoded).map_err(unterminated)?;
        &decoded[..]
    } else {
        raw
    };
    key_from_str(key.data_type, bytes).map(Some)
}
