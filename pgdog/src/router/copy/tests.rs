//! Splitter tests: every format, fed whole, a byte at a time, cut at every position and in
//! random chunks, must give the same pieces.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::net::ErrorResponse;
use crate::router::route::{CopyFormat, CopyOptions};

/// An owned [`CopyPiece`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Piece {
    All(Vec<u8>),
    Row(Option<Key>, Vec<u8>),
}

/// An owned [`KeyValue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Key {
    Int(i64),
    Text(String),
    Uuid([u8; 16]),
}

impl Key {
    fn of(key: &KeyValue) -> Key {
        match *key {
            KeyValue::Int(value) => Key::Int(value),
            KeyValue::Text(text) => Key::Text(text.to_string()),
            KeyValue::Uuid(bytes) => Key::Uuid(bytes),
        }
    }

    fn text(text: &str) -> Option<Key> {
        Some(Key::Text(text.to_string()))
    }
}

/// Runs `stream` through a splitter in chunks of the given sizes (the last chunk takes the
/// rest) and finishes it.
pub(super) fn split_chunks(
    options: &CopyOptions,
    key: Option<CopyKey>,
    stream: &[u8],
    sizes: &mut dyn Iterator<Item = usize>,
) -> Result<Vec<Piece>, ErrorResponse> {
    let mut splitter = CopySplitter::new(options.clone(), key);
    let mut pieces = vec![];
    let mut sink = |piece: CopyPiece<'_>| {
        pieces.push(match piece {
            CopyPiece::All(bytes) => Piece::All(bytes.to_vec()),
            CopyPiece::Row { key, bytes } => Piece::Row(key.as_ref().map(Key::of), bytes.to_vec()),
        });
        Ok(())
    };
    let mut start = 0;
    while start < stream.len() {
        let size = sizes.next().unwrap_or(stream.len()).max(1);
        let end = (start + size).min(stream.len());
        splitter.feed(&stream[start..end], &mut sink)?;
        start = end;
    }
    splitter.finish(&mut sink)?;
    let rows = pieces
        .iter()
        .filter(|piece| matches!(piece, Piece::Row(..)))
        .count();
    assert_eq!(splitter.rows(), rows as u64);
    Ok(pieces)
}

/// Splits `stream` whole, then checks that a byte at a time, every two-chunk cut and random
/// chunks give the same result (pieces or error).
pub(super) fn split(
    options: &CopyOptions,
    key: Option<CopyKey>,
    stream: &[u8],
) -> Result<Vec<Piece>, ErrorResponse> {
    let whole = split_chunks(options, key, stream, &mut std::iter::empty());
    let same = |other: Result<Vec<Piece>, ErrorResponse>, how: &str| {
        assert_eq!(other, whole, "{how}: {:?}", String::from_utf8_lossy(stream));
    };
    same(
        split_chunks(options, key, stream, &mut std::iter::repeat(1)),
        "bytes",
    );
    for cut in 1..stream.len() {
        same(
            split_chunks(options, key, stream, &mut [cut].into_iter()),
            &format!("cut at {cut}"),
        );
    }
    let mut rng = StdRng::seed_from_u64(stream.len() as u64);
    for round in 0..20 {
        let sizes: Vec<usize> = (0..stream.len()).map(|_| rng.gen_range(1..8)).collect();
        same(
            split_chunks(options, key, stream, &mut sizes.into_iter()),
            &format!("random round {round}"),
        );
    }
    whole
}

/// The pieces' bytes, concatenated: what the shards get in total.
fn joined(pieces: &[Piece]) -> Vec<u8> {
    let mut out = vec![];
    for piece in pieces {
        match piece {
            Piece::All(bytes) | Piece::Row(_, bytes) => out.extend_from_slice(bytes),
        }
    }
    out
}

fn row(key: Option<Key>, bytes: &[u8]) -> Piece {
    Piece::Row(key, bytes.to_vec())
}

fn key(column: usize, data_type: DataType) -> Option<CopyKey> {
    Some(CopyKey { column, data_type })
}

fn text() -> CopyOptions {
    CopyOptions::defaults(CopyFormat::Text)
}

fn csv() -> CopyOptions {
    CopyOptions::defaults(CopyFormat::Csv)
}

fn binary() -> CopyOptions {
    CopyOptions::defaults(CopyFormat::Binary)
}

#[test]
fn text_rows() {
    let stream = b"1\tone\n-2\ttwo\n3\t\\N\n";
    let pieces = split(&text(), key(0, DataType::Bigint), stream).unwrap();
    assert_eq!(
        pieces,
        [
            row(Some(Key::Int(1)), b"1\tone\n"),
            row(Some(Key::Int(-2)), b"-2\ttwo\n"),
            row(Some(Key::Int(3)), b"3\t\\N\n"),
        ]
    );
    assert_eq!(joined(&pieces), stream);
    // NULL key, no key.
    let pieces = split(&text(), key(1, DataType::Varchar), stream).unwrap();
    assert_eq!(pieces[2], row(None, b"3\t\\N\n"));
    let pieces = split(&text(), None, stream).unwrap();
    assert!(pieces.iter().all(|p| matches!(p, Piece::Row(None, _))));
    assert_eq!(pieces.len(), 3);
}

#[test]
fn text_escapes() {
    let stream = b"a\\tb\t1\n\\\\x\\\t\t2\n\\x41\\102\\n\\\n\t3\n\\N\t4\n\\\\N\t5\n\\\t\t6\n";
    let pieces = split(&text(), key(0, DataType::Varchar), stream).unwrap();
    let keys: Vec<_> = pieces
        .iter()
        .map(|p| match p {
            Piece::Row(key, _) => key.clone(),
            Piece::All(_) => panic!(),
        })
        .collect();
    assert_eq!(
        keys,
        [
            Key::text("a\tb"),
            Key::text("\\x\t"),
            Key::text("AB\n\n"),
            None,
            Key::text("\\N"),
            Key::text("\t"),
        ]
    );
    assert_eq!(joined(&pieces), stream);
    // The second column is found past escaped delimiters and newlines.
    let pieces = split(&text(), key(1, DataType::Bigint), stream).unwrap();
    let keys: Vec<_> = pieces
        .iter()
        .filter_map(|p| match p {
            Piece::Row(Some(Key::Int(n)), _) => Some(*n),
            _ => None,
        })
        .collect();
    assert_eq!(keys, [1, 2, 3, 4, 5, 6]);
}

#[test]
fn text_options() {
    // Custom delimiter and NULL string; the NULL string is compared before unescaping.
    let mut options = text();
    options.delimiter = b'|';
    options.null = "nil".into();
    options.header = true;
    let stream = b"id|name\n1|nil\n2|\\N\n3|n\\il\n4|a\\|b\n";
    let pieces = split(&options, key(1, DataType::Varchar), stream).unwrap();
    assert_eq!(
        pieces,
        [
            Piece::All(b"id|name\n".to_vec()),
            row(None, b"1|nil\n"),
            row(Key::text("N"), b"2|\\N\n"),
            row(Key::text("nil"), b"3|n\\il\n"),
            row(Key::text("a|b"), b"4|a\\|b\n"),
        ]
    );
}

#[test]
fn text_line_ends() {
    // CRLF lines; a last line without a terminator.
    let stream = b"1\ta\r\n2\tb\r\n3\tc";
    let pieces = split(&text(), key(1, DataType::Varchar), stream).unwrap();
    assert_eq!(
        pieces,
        [
            row(Key::text("a"), b"1\ta\r\n"),
            row(Key::text("b"), b"2\tb\r\n"),
            row(Key::text("c"), b"3\tc"),
        ]
    );
    // A key ending the line without its CR.
    let pieces = split(&text(), key(0, DataType::Bigint), b"7\r\n").unwrap();
    assert_eq!(pieces, [row(Some(Key::Int(7)), b"7\r\n")]);
    // Empty stream: nothing.
    assert_eq!(split(&text(), key(0, DataType::Bigint), b""), Ok(vec![]));
}

#[test]
fn text_end_marker() {
    for stream in [
        &b"1\n2\n\\.\n"[..],
        b"1\n2\n\\.\nany\rthing\n\\.\n\xff",
        b"1\n2\n\\.",
        b"1\n2\n\\.\nmore",
    ] {
        let pieces = split(&text(), key(0, DataType::Bigint), stream).unwrap();
        assert_eq!(
            pieces,
            [
                row(Some(Key::Int(1)), b"1\n"),
                row(Some(Key::Int(2)), b"2\n")
            ],
            "{stream:?}"
        );
    }
    // Escaped, it is data.
    let pieces = split(&text(), key(0, DataType::Varchar), b"\\\\.\n").unwrap();
    assert_eq!(pieces, [row(Key::text("\\."), b"\\\\.\n")]);
    // Not alone on its line: an error, like PostgreSQL 18 (15 would end the data there).
    for stream in [&b"1\na\\.\n"[..], b"1\n\\.a\n", b"1\n\\.x"] {
        let error = split(&text(), None, stream).unwrap_err();
        assert_eq!(error.code, "22P04");
        assert_eq!(error.message, "end-of-copy marker is not alone on its line");
        assert_eq!(error.detail.as_deref(), Some("COPY data line 2"));
    }
}

#[test]
fn text_errors() {
    let error = split(&text(), key(0, DataType::Bigint), b"1\n2\nabc\t4\n").unwrap_err();
    assert_eq!(error.code, "22P02");
    assert_eq!(
        error.message,
        "invalid input syntax for type bigint: \"abc\""
    );
    assert_eq!(
        error.detail.as_deref(),
        Some("COPY data line 3, sharding key column 1")
    );
    let error = split(&text(), key(2, DataType::Bigint), b"1\t2\n").unwrap_err();
    assert_eq!(error.code, "22P04");
    let error = split(&text(), key(0, DataType::Varchar), b"\\xff\n").unwrap_err();
    assert_eq!(error.code, "22021");
    let error = split(&text(), key(0, DataType::Uuid), b"nope\n").unwrap_err();
    assert_eq!(
        error.message,
        "invalid input syntax for type uuid: \"nope\""
    );
    for (stream, message) in [
        (&b"1\r2\n"[..], "literal carriage return found in data"),
        (b"1\n2\r\n", "literal carriage return found in data"),
        (b"1\r\n2\n", "literal newline found in data"),
        (b"1\n2\r", "literal carriage return found in data"),
    ] {
        let error = split(&text(), None, stream).unwrap_err();
        assert_eq!(error.message, message, "{stream:?}");
        assert_eq!(error.code, "22P04");
    }
}

#[test]
fn csv_rows() {
    let stream = b"1,\"a,b\"\n2,\"x\ny\"\n3,\"say \"\"hi\"\"\"\n4,\n5,\"\"\n6,ab\"c\nd\"e\n";
    let pieces = split(&csv(), key(1, DataType::Varchar), stream).unwrap();
    assert_eq!(
        pieces,
        [
            row(Key::text("a,b"), b"1,\"a,b\"\n"),
            row(Key::text("x\ny"), b"2,\"x\ny\"\n"),
            row(Key::text("say \"hi\""), b"3,\"say \"\"hi\"\"\"\n"),
            row(None, b"4,\n"),
            row(Key::text(""), b"5,\"\"\n"),
            row(Key::text("abc\nde"), b"6,ab\"c\nd\"e\n"),
        ]
    );
    let pieces = split(&csv(), key(0, DataType::Bigint), stream).unwrap();
    assert_eq!(pieces.len(), 6);
    assert_eq!(joined(&pieces), stream);
}

#[test]
fn csv_options() {
    let mut options = csv();
    options.delimiter = b';';
    options.quote = b'\'';
    options.escape = b'\\';
    options.header = true;
    options.null = "NULL".into();
    let stream =
        b"'i;d';'na\r\nme'\r\n1;'it\\'s'\r\n2;NULL\r\n3;'NULL'\r\n4;'a\\\\'\r\n5;'a\\b'\r\n\\.\r\n";
    let pieces = split(&options, key(1, DataType::Varchar), stream).unwrap();
    assert_eq!(
        pieces,
        [
            Piece::All(b"'i;d';'na\r\nme'\r\n".to_vec()),
            row(Key::text("it's"), b"1;'it\\'s'\r\n"),
            row(None, b"2;NULL\r\n"),
            row(Key::text("NULL"), b"3;'NULL'\r\n"),
            row(Key::text("a\\"), b"4;'a\\\\'\r\n"),
            row(Key::text("a\\b"), b"5;'a\\b'\r\n"),
        ]
    );
}

#[test]
fn csv_end_marker_and_errors() {
    // `\.` alone ends the data; quoted or with more on the line it is data.
    let stream = b"\"\\.\"\n\\.x\n\\.\nignored\n";
    let pieces = split(&csv(), key(0, DataType::Varchar), stream).unwrap();
    assert_eq!(
        pieces,
        [
            row(Key::text("\\."), b"\"\\.\"\n"),
            row(Key::text("\\.x"), b"\\.x\n"),
        ]
    );
    let error = split(&csv(), None, b"1\n\"abc\n").unwrap_err();
    assert_eq!(error.message, "unterminated CSV quoted field");
    assert_eq!(error.detail.as_deref(), Some("COPY data line 2"));
    let error = split(&csv(), None, b"1\n2\r3\n").unwrap_err();
    assert_eq!(error.message, "unquoted carriage return found in data");
    let error = split(&csv(), key(3, DataType::Bigint), b"1,2\n").unwrap_err();
    assert_eq!(error.code, "22P04");
    let error = split(&csv(), key(0, DataType::Bigint), b"\"12x\"\n").unwrap_err();
    assert_eq!(
        error.message,
        "invalid input syntax for type bigint: \"12x\""
    );
    // A last line without a terminator.
    let pieces = split(&csv(), key(0, DataType::Bigint), b"1\n\"2\"").unwrap();
    assert_eq!(pieces[1], row(Some(Key::Int(2)), b"\"2\""));
}

/// A binary tuple.
fn tuple(fields: &[Option<&[u8]>]) -> Vec<u8> {
    let mut out = (fields.len() as i16).to_be_bytes().to_vec();
    for field in fields {
        match field {
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(bytes) => {
                out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
                out.extend_from_slice(bytes);
            }
        }
    }
    out
}

#[test]
fn binary_rows() {
    let mut header = binary::SIGNATURE.to_vec();
    header.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 2, 9, 9]);
    let tuples = [
        tuple(&[Some(&7i64.to_be_bytes()), Some(b"seven")]),
        tuple(&[Some(&(-3i32).to_be_bytes()), None]),
        tuple(&[Some(&300i16.to_be_bytes()), Some(b"\xff\xff")]),
        tuple(&[None, Some(b"")]),
    ];
    let mut stream = header.clone();
    tuples.iter().for_each(|t| stream.extend_from_slice(t));
    stream.extend_from_slice(binary::TRAILER);

    let pieces = split(&binary(), key(0, DataType::Bigint), &stream).unwrap();
    assert_eq!(
        pieces,
        [
            Piece::All(header.clone()),
            Piece::Row(Some(Key::Int(7)), tuples[0].clone()),
            Piece::Row(Some(Key::Int(-3)), tuples[1].clone()),
            Piece::Row(Some(Key::Int(300)), tuples[2].clone()),
            Piece::Row(None, tuples[3].clone()),
            Piece::All(binary::TRAILER.to_vec()),
        ]
    );
    assert_eq!(joined(&pieces), stream);

    // Without the trailer (PostgreSQL allows it), finish still ends every shard's stream.
    let without = &stream[..stream.len() - 2];
    assert_eq!(
        split(&binary(), key(0, DataType::Bigint), without).unwrap(),
        pieces
    );

    // A text key in the second column.
    let text_tuples = [
        tuple(&[None, Some("żółw".as_bytes())]),
        tuple(&[None, None]),
    ];
    let mut stream = binary::HEADER.to_vec();
    text_tuples.iter().for_each(|t| stream.extend_from_slice(t));
    let pieces = split(&binary(), key(1, DataType::Varchar), &stream).unwrap();
    assert_eq!(
        pieces[1],
        Piece::Row(Key::text("żółw"), text_tuples[0].clone())
    );
    assert_eq!(pieces[2], Piece::Row(None, text_tuples[1].clone()));

    let id = [
        0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a,
        0x11,
    ];
    let mut stream = binary::HEADER.to_vec();
    stream.extend(tuple(&[Some(&id)]));
    let pieces = split(&binary(), key(0, DataType::Uuid), &stream).unwrap();
    assert_eq!(
        pieces[1],
        Piece::Row(Some(Key::Uuid(id)), tuple(&[Some(&id)]))
    );
}

#[test]
fn binary_errors() {
    let mut stream = binary::HEADER.to_vec();
    stream.extend(tuple(&[Some(b"123")]));
    let error = split(&binary(), key(0, DataType::Bigint), &stream).unwrap_err();
    assert_eq!(error.code, "22P03");
    assert_eq!(
        error.detail.as_deref(),
        Some("COPY data line 1, sharding key column 1")
    );
    let error = split(&binary(), key(1, DataType::Bigint), &stream).unwrap_err();
    assert_eq!(error.code, "22P04");

    // Data after the trailer, a partial tuple, a bad signature, an empty stream.
    let mut after = binary::HEADER.to_vec();
    after.extend_from_slice(binary::TRAILER);
    after.push(0);
    assert_eq!(
        split(&binary(), None, &after).unwrap_err().message,
        "received copy data after EOF marker"
    );
    let partial = &stream[..stream.len() - 1];
    assert_eq!(
        split(&binary(), None, partial).unwrap_err().message,
        "unexpected EOF in COPY data"
    );
    for bad in [&b"PGCOPY\n\xff\r\n\x01"[..], b"1\t2\n", b"", b"PGCOPY"] {
        assert_eq!(
            split(&binary(), None, bad).unwrap_err().message,
            "COPY file signature not recognized",
            "{bad:?}"
        );
    }
    let mut negative = binary::HEADER.to_vec();
    negative.extend_from_slice(&[0, 1, 0xff, 0xff, 0xff, 0xfe]);
    assert_eq!(
        split(&binary(), None, &negative).unwrap_err().message,
        "invalid field size"
    );
}

#[test]
fn errors_stick() {
    let mut splitter = CopySplitter::new(text(), key(0, DataType::Bigint));
    let mut calls = 0;
    let mut sink = |_: CopyPiece<'_>| {
        calls += 1;
        Err(ErrorResponse::error("57014", "stop"))
    };
    assert_eq!(
        splitter.feed(b"1\n2\n", &mut sink).unwrap_err().message,
        "stop"
    );
    assert_eq!(
        splitter.feed(b"3\n", &mut sink).unwrap_err().message,
        "stop"
    );
    assert_eq!(splitter.finish(&mut sink).unwrap_err().message, "stop");
    assert_eq!(calls, 1);
}

#[test]
fn reports_progress() {
    let mut options = csv();
    options.header = true;
    let mut splitter = CopySplitter::new(options, None);
    let mut sink = |_: CopyPiece<'_>| Ok(());
    splitter.feed(b"h\n1\n2\n\\.\n", &mut sink).unwrap();
    assert_eq!((splitter.rows(), splitter.lines()), (2, 4));
    assert!(splitter.ended());
    splitter.feed(b"more\n", &mut sink).unwrap();
    splitter.finish(&mut sink).unwrap();
    assert_eq!(splitter.rows(), 2);
    assert!(splitter.feed(b"1\n", &mut sink).is_err(), "after finish");
}

/// Throughput on a million rows, chunked like a client's 64 kB CopyData messages. Run with
/// `cargo test --release -p pgdog --lib router::copy::tests::million_rows -- --ignored --nocapture`.
#[test]
#[ignore]
fn million_rows() {
    let mut text_stream = vec![];
    let mut csv_stream = vec![];
    let mut binary_stream = binary::HEADER.to_vec();
    for i in 0..1_000_000u64 {
        let name = format!("name {i} with some text");
        text_stream.extend_from_slice(format!("{i}\t{name}\t{}\n", i * 3).as_bytes());
        csv_stream.extend_from_slice(format!("{i},\"{name}\",{}\n", i * 3).as_bytes());
        binary_stream.extend(tuple(&[
            Some(&i.to_be_bytes()[..]),
            Some(name.as_bytes()),
            Some(&(i * 3).to_be_bytes()[..]),
        ]));
    }
    binary_stream.extend_from_slice(binary::TRAILER);
    let cases = [
        ("text", text(), text_stream),
        ("csv", csv(), csv_stream),
        ("binary", binary(), binary_stream),
    ];
    for (name, options, stream) in cases {
        for (column, data_type) in [(0, DataType::Bigint), (1, DataType::Varchar)] {
            let mut splitter = CopySplitter::new(options.clone(), key(column, data_type));
            let mut shards = [0u64; 4];
            let mut sink = |piece: CopyPiece<'_>| {
                if let CopyPiece::Row { key: Some(key), .. } = piece {
                    shards[crate::router::sharding::shard_of(&key, 4)] += 1;
                }
                Ok(())
            };
            let started = std::time::Instant::now();
            for chunk in stream.chunks(65536) {
                splitter.feed(chunk, &mut sink).unwrap();
            }
            splitter.finish(&mut sink).unwrap();
            let elapsed = started.elapsed();
            assert_eq!(shards.iter().sum::<u64>(), 1_000_000);
            println!(
                "{name} key column {column}: {} rows, {:.1} MB in {elapsed:?} ({:.0} MB/s)",
                splitter.rows(),
                stream.len() as f64 / 1e6,
                stream.len() as f64 / 1e6 / elapsed.as_secs_f64()
            );
        }
    }
}
