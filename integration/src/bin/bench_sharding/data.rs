//! The bench's rows: the tables' DDL and `COPY FROM STDIN` streams of `accounts` rows in text
//! and binary format, with which shard of two each row belongs on (`pgdog`'s `shard_of`).

use bytes::Bytes;
use pgdog::router::sharding::{shard_of, KeyValue};

/// The same tables on every cluster: `accounts` for the pgbench scripts, `accounts_copy` for
/// the COPY runs (the same columns and primary key, emptied before every COPY).
pub(crate) const DDL: &str = "CREATE TABLE accounts (aid bigint PRIMARY KEY, bid int NOT NULL, \
     abalance int NOT NULL, filler char(84)); \
     CREATE TABLE accounts_copy (LIKE accounts INCLUDING ALL);";

/// Rows per branch (`bid`), as in pgbench's own `accounts` table.
const ROWS_PER_BRANCH: i64 = 100_000;

/// The 11-byte signature, flags and header extension length of a binary COPY stream.
const BINARY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// Rows `1..=n` of `accounts` as COPY data, and how many of them belong on each of two shards.
pub(crate) struct CopyData {
    /// Text format: `aid\tbid\t0\t\n` per row (an empty `filler`, padded by Postgres).
    pub(crate) text: Bytes,
    /// Binary format, with header and trailer.
    pub(crate) binary: Bytes,
    /// Rows whose `aid` belongs on shard 0 and on shard 1 of two.
    pub(crate) per_shard: [u64; 2],
}

/// The shard of `shards` that row `aid` belongs on.
pub(crate) fn shard(aid: i64, shards: usize) -> usize {
    shard_of(&KeyValue::Int(aid), shards)
}

fn bid(aid: i64) -> i64 {
    (aid - 1) / ROWS_PER_BRANCH + 1
}

fn write_text_row(out: &mut Vec<u8>, aid: i64) {
    out.extend_from_slice(format!("{aid}\t{}\t0\t\n", bid(aid)).as_bytes());
}

fn write_binary_row(out: &mut Vec<u8>, aid: i64) {
    out.extend_from_slice(&4i16.to_be_bytes());
    out.extend_from_slice(&8i32.to_be_bytes());
    out.extend_from_slice(&aid.to_be_bytes());
    out.extend_from_slice(&4i32.to_be_bytes());
    out.extend_from_slice(&(bid(aid) as i32).to_be_bytes());
    out.extend_from_slice(&4i32.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes());
    // An empty `filler`: length 0, no bytes.
    out.extend_from_slice(&0i32.to_be_bytes());
}

/// Rows `1..=n` in both formats.
pub(crate) fn copy_data(n: u64) -> CopyData {
    let n = n as i64;
    let mut text = Vec::with_capacity(n as usize * 20);
    let mut binary = Vec::with_capacity(BINARY_HEADER.len() + n as usize * 34 + 2);
    binary.extend_from_slice(BINARY_HEADER);
    let mut per_shard = [0u64; 2];
    for aid in 1..=n {
        write_text_row(&mut text, aid);
        write_binary_row(&mut binary, aid);
        per_shard[shard(aid, 2)] += 1;
    }
    binary.extend_from_slice(&(-1i16).to_be_bytes());
    CopyData {
        text: Bytes::from(text),
        binary: Bytes::from(binary),
        per_shard,
    }
}

/// Rows `1..=n` in text format, split into one stream per shard of `shards`.
pub(crate) fn text_by_shard(n: u64, shards: usize) -> Vec<Bytes> {
    let mut streams = vec![Vec::new(); shards];
    for aid in 1..=n as i64 {
        write_text_row(&mut streams[shard(aid, shards)], aid);
    }
    streams.into_iter().map(Bytes::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_rows() {
        let data = copy_data(3);
        assert_eq!(&data.text[..], b"1\t1\t0\t\n2\t1\t0\t\n3\t1\t0\t\n");
        let mut row = Vec::new();
        write_text_row(&mut row, 100_001);
        assert_eq!(row, b"100001\t2\t0\t\n");
    }

    #[test]
    fn binary_layout() {
        let data = copy_data(2);
        let bin = &data.binary;
        assert!(bin.starts_with(b"PGCOPY\n\xff\r\n\0"));
        assert_eq!(bin.len(), 19 + 2 * 34 + 2);
        assert_eq!(&bin[bin.len() - 2..], &[0xff, 0xff]);
        // First tuple: 4 fields, then aid = 1 as 8 bytes.
        assert_eq!(&bin[19..21], &[0, 4]);
        assert_eq!(&bin[21..25], &[0, 0, 0, 8]);
        assert_eq!(&bin[25..33], &1i64.to_be_bytes());
    }

    #[test]
    fn shards_split_every_row_once() {
        let data = copy_data(1000);
        assert_eq!(data.per_shard[0] + data.per_shard[1], 1000);
        assert!(data.per_shard[0] > 400 && data.per_shard[1] > 400);
        let streams = text_by_shard(1000, 2);
        for (k, stream) in streams.iter().enumerate() {
            let rows: Vec<&[u8]> = stream
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .collect();
            assert_eq!(rows.len() as u64, data.per_shard[k]);
            for row in rows {
                let aid: i64 = std::str::from_utf8(row)
                    .unwrap()
                    .split('\t')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert_eq!(shard(aid, 2), k);
            }
        }
        assert_eq!(text_by_shard(10, 1)[0], copy_data(10).text);
    }
}
