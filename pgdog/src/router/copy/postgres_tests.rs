//! The splitter and joiner against data PostgreSQL 15 wrote with `COPY (SELECT ...) TO
//! STDOUT` (fixtures in `testdata/`, made by `testdata/generate.sh`): every key decoded must
//! be the value in the database, and land in the hash partition PostgreSQL picks.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::tests::{split_chunks, Key, Piece};
use super::*;
use crate::router::route::{CopyFormat, CopyOptions};
use crate::router::sharding::shard_of;

const TEXT: &[u8] = include_bytes!("testdata/text.copy");
const TEXT_HEADER: &[u8] = include_bytes!("testdata/text_header.copy");
const CSV: &[u8] = include_bytes!("testdata/csv.copy");
const CSV_CUSTOM: &[u8] = include_bytes!("testdata/csv_custom.copy");
const BINARY: &[u8] = include_bytes!("testdata/binary.copy");
const BINARY_SHARDS: [&[u8]; 3] = [
    include_bytes!("testdata/binary_shard0.copy"),
    include_bytes!("testdata/binary_shard1.copy"),
    include_bytes!("testdata/binary_shard2.copy"),
];
const CSV_SHARDS: [&[u8]; 3] = [
    include_bytes!("testdata/csv_shard0.copy"),
    include_bytes!("testdata/csv_shard1.copy"),
    include_bytes!("testdata/csv_shard2.copy"),
];
/// Per row: id, its remainder (modulus 3), name (hex), remainder, uuid, remainder, n,
/// remainder, s, remainder; `NULL` for NULL.
const EXPECTED: &str = include_str!("testdata/expected.tsv");
const ROWS: usize = 200;

/// The fixtures and the options they were written with.
fn fixtures() -> Vec<(&'static str, &'static [u8], CopyOptions)> {
    let mut text_header = CopyOptions::defaults(CopyFormat::Text);
    text_header.header = true;
    text_header.delimiter = b'|';
    text_header.null = "(null)".into();
    let mut csv_custom = CopyOptions::defaults(CopyFormat::Csv);
    csv_custom.header = true;
    csv_custom.delimiter = b';';
    csv_custom.quote = b'\'';
    csv_custom.escape = b'\\';
    csv_custom.null = "NULL".into();
    vec![
        ("text", TEXT, CopyOptions::defaults(CopyFormat::Text)),
        ("text_header", TEXT_HEADER, text_header),
        ("csv", CSV, CopyOptions::defaults(CopyFormat::Csv)),
        ("csv_custom", CSV_CUSTOM, csv_custom),
        ("binary", BINARY, CopyOptions::defaults(CopyFormat::Binary)),
    ]
}

/// The key columns: position in the COPY, type, and the expected.tsv column of its value.
const KEYS: [(usize, DataType, usize); 5] = [
    (0, DataType::Bigint, 0),
    (1, DataType::Varchar, 2),
    (2, DataType::Uuid, 4),
    (4, DataType::Bigint, 6),
    (5, DataType::Bigint, 8),
];

/// A key as expected.tsv writes it.
fn expected_text(key: &Option<Key>) -> String {
    match key {
        None => "NULL".into(),
        Some(Key::Int(value)) => value.to_string(),
        Some(Key::Text(text)) => text.bytes().map(|b| format!("{b:02x}")).collect(),
        Some(Key::Uuid(bytes)) => KeyValue::Uuid(*bytes).to_string(),
    }
}

fn remainder(key: &Option<Key>) -> String {
    let shard = match key {
        None => return "NULL".into(),
        Some(Key::Int(value)) => shard_of(&KeyValue::Int(*value), 3),
        Some(Key::Text(text)) => shard_of(&KeyValue::Text(text), 3),
        Some(Key::Uuid(bytes)) => shard_of(&KeyValue::Uuid(*bytes), 3),
    };
    shard.to_string()
}

/// Chunkings: whole, a byte at a time, random small chunks, CopyData-sized chunks.
fn chunkings(len: usize) -> Vec<Vec<usize>> {
    let mut rng = StdRng::seed_from_u64(len as u64);
    vec![
        vec![],
        vec![1; len],
        (0..len).map(|_| rng.gen_range(1..64)).collect(),
        vec![8192; len / 8192 + 1],
    ]
}

fn rows(pieces: &[Piece]) -> Vec<&Piece> {
    pieces
        .iter()
        .filter(|p| matches!(p, Piece::Row(..)))
        .collect()
}

#[test]
fn keys_match_postgres() {
    let expected: Vec<Vec<&str>> = EXPECTED
        .lines()
        .map(|line| line.split('\t').collect())
        .collect();
    assert_eq!(expected.len(), ROWS);
    for (name, data, options) in fixtures() {
        for (column, data_type, at) in KEYS {
            let key = Some(CopyKey { column, data_type });
            let whole = split_chunks(&options, key, data, &mut std::iter::empty()).unwrap();
            for sizes in chunkings(data.len()) {
                let pieces = split_chunks(&options, key, data, &mut sizes.into_iter()).unwrap();
                assert_eq!(pieces, whole, "{name} column {column}");
            }
            // The pieces are the stream, byte for byte.
            let mut joined = vec![];
            for piece in &whole {
                match piece {
                    Piece::All(bytes) | Piece::Row(_, bytes) => joined.extend_from_slice(bytes),
                }
            }
            assert_eq!(joined, data, "{name}");
            let rows = rows(&whole);
            assert_eq!(rows.len(), ROWS, "{name}");
            for (row, want) in rows.iter().zip(&expected) {
                let Piece::Row(key, bytes) = row else {
                    unreachable!()
                };
                let context = format!(
                    "{name} column {column}: {:?}",
                    String::from_utf8_lossy(bytes)
                );
                assert_eq!(expected_text(key), want[at], "{context}");
                assert_eq!(remainder(key), want[at + 1], "{context}");
            }
        }
    }
}

/// Feeds the shards' streams to a joiner in random chunks, interleaved, and splits the result.
fn join(options: &CopyOptions, shards: &[&[u8]], seed: u64) -> Vec<Piece> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut joiner = CopyOutJoiner::new(options.clone(), shards.len());
    let mut offsets = vec![0; shards.len()];
    let mut out = vec![];
    while offsets
        .iter()
        .zip(shards)
        .any(|(&at, data)| at < data.len())
    {
        let shard = rng.gen_range(0..shards.len());
        let start = offsets[shard];
        let end = (start + rng.gen_range(1..300)).min(shards[shard].len());
        out.extend_from_slice(joiner.data(shard, &shards[shard][start..end]).unwrap());
        offsets[shard] = end;
    }
    out.extend(joiner.finish().unwrap());
    split_chunks(options, None, &out, &mut std::iter::empty()).unwrap()
}

#[test]
fn joined_shards_match_postgres() {
    let binary = CopyOptions::defaults(CopyFormat::Binary);
    let mut csv = CopyOptions::defaults(CopyFormat::Csv);
    csv.header = true;
    let whole_csv = CopyOptions::defaults(CopyFormat::Csv);
    // (options of the shards' streams, the streams, options of the whole table's, it)
    type Case<'a> = (&'a CopyOptions, &'a [&'a [u8]], &'a CopyOptions, &'a [u8]);
    let cases: [Case; 2] = [
        (&binary, &BINARY_SHARDS, &binary, BINARY),
        (&csv, &CSV_SHARDS, &whole_csv, CSV),
    ];
    for (options, shards, whole_options, whole) in cases {
        // Each shard holds the rows whose id hashes to it.
        for (shard, data) in shards.iter().enumerate() {
            let key = Some(CopyKey {
                column: 0,
                data_type: DataType::Bigint,
            });
            let pieces = split_chunks(options, key, data, &mut std::iter::empty()).unwrap();
            for row in rows(&pieces) {
                assert_eq!(
                    remainder(match row {
                        Piece::Row(key, _) => key,
                        Piece::All(_) => unreachable!(),
                    }),
                    shard.to_string()
                );
            }
        }
        let mut want: Vec<Piece> =
            split_chunks(whole_options, None, whole, &mut std::iter::empty())
                .unwrap()
                .into_iter()
                .filter(|p| matches!(p, Piece::Row(..)))
                .collect();
        want.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        for seed in 0..5 {
            let pieces = join(options, shards, seed);
            // One header, first; (binary) one trailer, last.
            let alls: Vec<&Piece> = pieces
                .iter()
                .filter(|p| matches!(p, Piece::All(_)))
                .collect();
            match options.format {
                CopyFormat::Binary => {
                    assert_eq!(alls.len(), 2);
                    assert_eq!(pieces.last(), Some(&Piece::All(vec![0xff, 0xff])));
                }
                _ => {
                    assert_eq!(alls, [&Piece::All(b"id,name,u,note,n,s\n".to_vec())]);
                }
            }
            assert!(matches!(pieces[0], Piece::All(_)));
            let mut got: Vec<Piece> = pieces
                .into_iter()
                .filter(|p| matches!(p, Piece::Row(..)))
                .collect();
            got.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
            assert_eq!(got.len(), ROWS);
            assert_eq!(got, want);
        }
    }
}
