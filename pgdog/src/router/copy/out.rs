//! [`CopyOutJoiner`]: joins the `COPY ... TO STDOUT` streams of several shards into the one
//! stream a client expects.

use crate::net::{sqlstate, ErrorResponse};
use crate::router::route::{CopyFormat, CopyOptions};

use super::binary::{self, Tuple};
use super::error::scan_error;
use super::line::LineScanner;

/// Joins the COPY TO STDOUT streams of several shards into one.
///
/// Binary: the first complete file header is forwarded, the other shards' headers and every
/// trailer are dropped, and [`finish`](Self::finish) gives the one trailer. Text and CSV with
/// `HEADER`: only the first header line is forwarded. Rows are forwarded whole: a row a shard
/// split across CopyData messages (PostgreSQL never does) is held back until it is complete,
/// so rows of different shards never interleave mid-row.
///
/// ```
/// use pgdog::router::copy::CopyOutJoiner;
/// use pgdog::router::route::{CopyFormat, CopyOptions};
///
/// let mut options = CopyOptions::defaults(CopyFormat::Csv);
/// options.header = true;
/// let mut joiner = CopyOutJoiner::new(options, 2);
/// assert_eq!(joiner.data(1, b"id,name\n").unwrap(), b"id,name\n");
/// assert_eq!(joiner.data(0, b"id,name\n").unwrap(), b"");
/// assert_eq!(joiner.data(0, b"1,a\n").unwrap(), b"1,a\n");
/// assert!(joiner.finish().unwrap().is_empty());
/// ```
#[derive(Debug)]
pub struct CopyOutJoiner {
    format: CopyFormat,
    /// A header was already forwarded.
    header_sent: bool,
    shards: Vec<ShardStream>,
    /// Held bytes followed by a new payload, when a shard had held some.
    joined: Vec<u8>,
}

/// What the joiner knows about one shard's stream.
#[derive(Debug)]
struct ShardStream {
    /// The shard's header was read (or none is expected).
    header_done: bool,
    /// Bytes of an incomplete header, row or tuple, not forwarded yet.
    held: Vec<u8>,
    /// Line ends (text, CSV).
    scanner: LineScanner,
    /// The binary trailer was read.
    ended: bool,
}

/// The part of an input to forward, and where the bytes to hold begin.
struct Cut {
    from: usize,
    to: usize,
    keep: usize,
}

impl CopyOutJoiner {
    /// A joiner for `shards` streams of a COPY with these options.
    pub fn new(options: CopyOptions, shards: usize) -> CopyOutJoiner {
        let header = options.header || options.format == CopyFormat::Binary;
        let shards = (0..shards)
            .map(|_| ShardStream {
                header_done: !header,
                held: Vec::new(),
                scanner: match options.format {
                    CopyFormat::Csv => LineScanner::csv(options.quote, options.escape),
                    _ => LineScanner::text(),
                },
                ended: false,
            })
            .collect();
        CopyOutJoiner {
            format: options.format,
            header_sent: false,
            shards,
            joined: Vec::new(),
        }
    }

    /// One CopyData payload from `shard`: returns the bytes to forward to the client (often
    /// all of `payload`, possibly nothing), to be sent before the next call.
    pub fn data<'a>(
        &'a mut self,
        shard: usize,
        payload: &'a [u8],
    ) -> Result<&'a [u8], ErrorResponse> {
        let Some(stream) = self.shards.get_mut(shard) else {
            return Err(ErrorResponse::error(
                sqlstate::INTERNAL_ERROR,
                format!("COPY data from unknown shard {shard}"),
            ));
        };
        let input: &[u8] = if stream.held.is_empty() {
            payload
        } else {
            self.joined.clear();
            self.joined.extend_from_slice(&stream.held);
            self.joined.extend_from_slice(payload);
            stream.held.clear();
            &self.joined
        };
        let cut = match self.format {
            CopyFormat::Binary => binary_cut(stream, &mut self.header_sent, input),
            CopyFormat::Text | CopyFormat::Csv => line_cut(
                stream,
                &mut self.header_sent,
                input,
                self.format == CopyFormat::Csv,
            ),
        }
        .map_err(|message| malformed(shard, message))?;
        stream.held.extend_from_slice(&input[cut.keep..]);
        Ok(&input[cut.from..cut.to])
    }

    /// Every shard finished: the bytes that end the joined stream (binary: the trailer, with
    /// a header before it if no shard sent one). An error if a shard stopped mid-row.
    pub fn finish(&mut self) -> Result<Vec<u8>, ErrorResponse> {
        if let Some(shard) = self.shards.iter().position(|s| !s.held.is_empty()) {
            return Err(malformed(shard, "it ended in the middle of a row".into()));
        }
        if self.format != CopyFormat::Binary {
            return Ok(Vec::new());
        }
        let mut end = Vec::with_capacity(binary::HEADER.len() + 2);
        if !self.header_sent {
            self.header_sent = true;
            end.extend_from_slice(binary::HEADER);
        }
        end.extend_from_slice(binary::TRAILER);
        Ok(end)
    }
}

fn malformed(shard: usize, message: String) -> ErrorResponse {
    ErrorResponse::error(
        sqlstate::PROTOCOL_VIOLATION,
        format!("shard {shard} sent malformed COPY data: {message}"),
    )
}

/// Binary: the shard's header (forwarded only if it is the first), whole tuples, and its
/// trailer (dropped).
fn binary_cut(
    stream: &mut ShardStream,
    header_sent: &mut bool,
    input: &[u8],
) -> Result<Cut, String> {
    if stream.ended {
        return match input.is_empty() {
            true => Ok(Cut {
                from: 0,
                to: 0,
                keep: 0,
            }),
            false => Err("data after the trailer".into()),
        };
    }
    let mut from = 0;
    let mut pos = 0;
    if !stream.header_done {
        let Some(len) = binary::header_len(input).map_err(|error| error.message)? else {
            return Ok(Cut {
                from: 0,
                to: 0,
                keep: 0,
            });
        };
        stream.header_done = true;
        from = forward_header(header_sent, len);
        pos = len;
    }
    loop {
        match binary::tuple(&input[pos..], None).map_err(|error| error.message)? {
            Tuple::Complete { len, .. } => pos += len,
            Tuple::Need(_) => {
                return Ok(Cut {
                    from,
                    to: pos,
                    keep: pos,
                })
            }
            Tuple::Trailer => {
                stream.ended = true;
                if pos + 2 < input.len() {
                    return Err("data after the trailer".into());
                }
                return Ok(Cut {
                    from,
                    to: pos,
                    keep: input.len(),
                });
            }
        }
    }
}

/// Text and CSV: the shard's header line (forwarded only if it is the first) and whole lines.
fn line_cut(
    stream: &mut ShardStream,
    header_sent: &mut bool,
    input: &[u8],
    csv: bool,
) -> Result<Cut, String> {
    // Held bytes are scanned again from their start.
    stream.scanner.restart_line();
    let mut from = 0;
    let mut pos = 0;
    let scan = |scanner: &mut LineScanner, bytes: &[u8]| {
        scanner
            .scan(bytes)
            .map_err(|error| scan_error(error, csv).message)
    };
    if !stream.header_done {
        let Some(end) = scan(&mut stream.scanner, input)? else {
            stream.scanner.restart_line();
            return Ok(Cut {
                from: 0,
                to: 0,
                keep: 0,
            });
        };
        stream.header_done = true;
        from = forward_header(header_sent, end.end);
        pos = end.end;
    }
    while pos < input.len() {
        match scan(&mut stream.scanner, &input[pos..])? {
            Some(end) => pos += end.end,
            None => break,
        }
    }
    stream.scanner.restart_line();
    Ok(Cut {
        from,
        to: pos,
        keep: pos,
    })
}

/// Where forwarding starts once a header of `len` bytes was read: at 0 (the header goes out)
/// for the first one, after it for the others.
fn forward_header(header_sent: &mut bool, len: usize) -> usize {
    if *header_sent {
        len
    } else {
        *header_sent = true;
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(value: &[u8]) -> Vec<u8> {
        let mut out = 1i16.to_be_bytes().to_vec();
        out.extend_from_slice(&(value.len() as i32).to_be_bytes());
        out.extend_from_slice(value);
        out
    }

    fn shard_stream(values: &[&[u8]]) -> Vec<u8> {
        let mut out = binary::HEADER.to_vec();
        for value in values {
            out.extend(tuple(value));
        }
        out.extend_from_slice(binary::TRAILER);
        out
    }

    /// Feeds the streams in chunks of `size`, round-robin, and returns the joined output.
    fn join(options: &CopyOptions, streams: &[Vec<u8>], size: usize) -> Vec<u8> {
        let mut joiner = CopyOutJoiner::new(options.clone(), streams.len());
        let mut out = vec![];
        let mut offsets = vec![0; streams.len()];
        loop {
            let mut progress = false;
            for (shard, stream) in streams.iter().enumerate() {
                let start = offsets[shard];
                if start < stream.len() {
                    let end = (start + size).min(stream.len());
                    out.extend_from_slice(joiner.data(shard, &stream[start..end]).unwrap());
                    offsets[shard] = end;
                    progress = true;
                }
            }
            if !progress {
                break;
            }
        }
        out.extend(joiner.finish().unwrap());
        out
    }

    #[test]
    fn joins_binary() {
        let options = CopyOptions::defaults(CopyFormat::Binary);
        let streams = vec![
            shard_stream(&[b"a", b"\xff\xff"]),
            shard_stream(&[]),
            shard_stream(&[b"bb"]),
        ];
        // Whole streams one after the other.
        let mut expected = binary::HEADER.to_vec();
        expected.extend(tuple(b"a"));
        expected.extend(tuple(b"\xff\xff"));
        expected.extend(tuple(b"bb"));
        expected.extend_from_slice(binary::TRAILER);
        assert_eq!(join(&options, &streams, usize::MAX), expected);
        // Any chunking gives the same tuples, whole, in some order.
        for size in 1..12 {
            let joined = join(&options, &streams, size);
            assert_eq!(&joined[..19], binary::HEADER);
            assert_eq!(&joined[joined.len() - 2..], binary::TRAILER);
            let mut tuples = vec![];
            let mut pos = 19;
            while let Ok(Tuple::Complete { len, .. }) = binary::tuple(&joined[pos..], None) {
                tuples.push(joined[pos..pos + len].to_vec());
                pos += len;
            }
            assert_eq!(pos, joined.len() - 2, "size {size}");
            tuples.sort();
            let mut want = vec![tuple(b"a"), tuple(b"\xff\xff"), tuple(b"bb")];
            want.sort();
            assert_eq!(tuples, want, "size {size}");
        }
    }

    #[test]
    fn binary_without_data_is_a_valid_file() {
        let options = CopyOptions::defaults(CopyFormat::Binary);
        let mut joiner = CopyOutJoiner::new(options, 2);
        let mut expected = binary::HEADER.to_vec();
        expected.extend_from_slice(binary::TRAILER);
        assert_eq!(joiner.finish().unwrap(), expected);
    }

    #[test]
    fn joins_csv_headers() {
        let mut options = CopyOptions::defaults(CopyFormat::Csv);
        options.header = true;
        let streams = vec![
            b"id,\"na\nme\"\n1,\"x\ny\"\n2,b\n".to_vec(),
            b"id,\"na\nme\"\n3,c\n".to_vec(),
        ];
        for size in 1..30 {
            let joined = join(&options, &streams, size);
            let text = String::from_utf8(joined).unwrap();
            let body = text.strip_prefix("id,\"na\nme\"\n").unwrap();
            // Shard 0's rows in order, shard 1's row whole somewhere between them.
            let (first, second, other) = ("1,\"x\ny\"\n", "2,b\n", "3,c\n");
            let allowed = [
                format!("{other}{first}{second}"),
                format!("{first}{other}{second}"),
                format!("{first}{second}{other}"),
            ];
            assert!(allowed.contains(&body.to_string()), "{size}: {body:?}");
        }
    }

    #[test]
    fn text_without_header_passes_through() {
        let options = CopyOptions::defaults(CopyFormat::Text);
        let mut joiner = CopyOutJoiner::new(options, 2);
        assert_eq!(joiner.data(0, b"1\ta\n").unwrap(), b"1\ta\n");
        assert_eq!(joiner.data(1, b"2\tb").unwrap(), b"");
        assert_eq!(joiner.data(0, b"3\tc\n").unwrap(), b"3\tc\n");
        assert_eq!(joiner.data(1, b"\\\nb\n").unwrap(), b"2\tb\\\nb\n");
        assert!(joiner.finish().unwrap().is_empty());
    }

    #[test]
    fn errors() {
        let options = CopyOptions::defaults(CopyFormat::Binary);
        let mut joiner = CopyOutJoiner::new(options.clone(), 1);
        assert!(joiner.data(1, b"").is_err());
        assert_eq!(joiner.data(0, b"NOTCOPY").unwrap_err().code, "08P01");
        let mut joiner = CopyOutJoiner::new(options.clone(), 1);
        let mut stream = shard_stream(&[]);
        stream.push(0);
        assert!(joiner.data(0, &stream).is_err());
        let mut joiner = CopyOutJoiner::new(options.clone(), 1);
        assert_eq!(joiner.data(0, binary::HEADER).unwrap(), binary::HEADER);
        assert_eq!(joiner.data(0, &[0, 1, 0]).unwrap(), b"");
        assert!(joiner.finish().is_err());
        let mut joiner = CopyOutJoiner::new(CopyOptions::defaults(CopyFormat::Csv), 1);
        assert_eq!(
            joiner.data(0, b"a\rb\n").unwrap_err().message,
            "shard 0 sent malformed COPY data: unquoted carriage return found in data"
        );
    }
}
