//! Row counts and order-independent digests of copied tuples: the stable 64-bit tuple hash
//! ([`hash64`]), the [`Digest`] (row count and wrapping sum of the hashes) recorded for every
//! range and shard, the [`CopyDigester`] that computes the same digest over a table read
//! back with `COPY ... TO STDOUT (FORMAT binary)` to verify it, and [`read_copy`] /
//! [`read_digest`], which read such a COPY from a server (the copy's verification and
//! `VERIFY` both do).
//!
//! Digests are stored in the state tables and compared by later processes (after a restart,
//! on another machine), so [`hash64`] depends only on the bytes: never on the process, the
//! platform's endianness or the Rust version.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::net::ErrorResponse;
use crate::reshard::conn::{Conn, ConnError};
use crate::router::copy::{CopyPiece, CopySplitter};
use crate::router::route::{CopyFormat, CopyOptions};

use super::shape::TupleShape;
use super::tuples::missing_trailer;

/// The FNV-1a 64-bit offset basis: the state before any byte.
const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// The multiplier of each word round (the 64-bit golden ratio: odd and dense).
const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;

/// A stable 64-bit hash of `bytes`, the same in every process and on every machine.
///
/// FNV-1a style over 8-byte little-endian words: the state is xor-ed with a word, then
/// multiplied. The multiply is a folded 64×64→128-bit product (the high half xor-ed into the
/// low half), so every bit of a word reaches every bit of the state (a plain 64-bit multiply
/// only carries upwards: differences in the top bits of two words would cancel). The length
/// is mixed into the start, the 0–7 trailing bytes are one last zero-padded word, and
/// splitmix64's finalizer avalanches the result (sums of such hashes do not cancel).
pub fn hash64(bytes: &[u8]) -> u64 {
    // usize is at most 64 bits: the conversion is lossless.
    let mut state = OFFSET ^ (bytes.len() as u64).wrapping_mul(MULTIPLIER);
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        state = round(state, le_word(word));
    }
    state = round(state, le_word(words.remainder()));
    finalize(state)
}

/// One word round: xor, then the folded multiply.
#[inline(always)]
fn round(state: u64, word: u64) -> u64 {
    let product = u128::from(state ^ word) * u128::from(MULTIPLIER);
    (product as u64) ^ ((product >> 64) as u64)
}

/// Up to 8 bytes as a little-endian integer, zero-padded.
#[inline(always)]
fn le_word(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    let len = bytes.len().min(8);
    word[..len].copy_from_slice(&bytes[..len]);
    u64::from_le_bytes(word)
}

/// splitmix64's finalizer (an avalanche: each input bit flips each output bit with
/// probability about one half).
#[inline(always)]
fn finalize(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The row count and order-independent digest of a set of tuples: the wrapping sum of the
/// [`hash64`] of each tuple's bytes (field count and fields, as sent in binary COPY).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Digest {
    /// Tuples added.
    pub rows: u64,
    /// Wrapping sum of their hashes.
    pub sum: u64,
}

impl Digest {
    /// Adds one tuple's bytes.
    #[inline]
    pub fn add_tuple(&mut self, tuple: &[u8]) {
        self.add_hash(hash64(tuple));
    }

    /// Adds one tuple by its [`hash64`], computed once for a tuple counted in several digests.
    #[inline]
    pub fn add_hash(&mut self, hash: u64) {
        self.rows += 1;
        self.sum = self.sum.wrapping_add(hash);
    }

    /// Adds the tuples of another digest (e.g. the ranges of one table).
    pub fn merge(&mut self, other: Digest) {
        self.rows += other.rows;
        self.sum = self.sum.wrapping_add(other.sum);
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} rows, digest {:016x}", self.rows, self.sum)
    }
}

/// Computes the [`Digest`] of a `COPY ... TO STDOUT (FORMAT binary)` stream, fed CopyData
/// payload by payload (cut anywhere): every tuple's bytes between the header and the trailer.
#[derive(Debug)]
pub struct CopyDigester {
    splitter: CopySplitter,
    digest: Digest,
    shape: Option<Arc<TupleShape>>,
    scratch: Vec<u8>,
}

impl Default for CopyDigester {
    fn default() -> Self {
        CopyDigester::new()
    }
}

impl CopyDigester {
    /// A digester expecting the binary COPY header first.
    pub fn new() -> CopyDigester {
        CopyDigester {
            splitter: CopySplitter::new(CopyOptions::defaults(CopyFormat::Binary), None),
            digest: Digest::default(),
            shape: None,
            scratch: Vec::new(),
        }
    }

    /// A digester hashing tuples with the embedded OIDs of `shape` zeroed, like the
    /// [`super::tuples::TupleRouter`] given the same shape.
    pub fn with_shape(shape: Option<Arc<TupleShape>>) -> CopyDigester {
        CopyDigester {
            shape,
            ..CopyDigester::new()
        }
    }

    /// Feeds one CopyData payload. Errors (22P04) on a malformed stream or data after the
    /// trailer; after an error every later call fails.
    pub fn feed(&mut self, payload: &[u8]) -> Result<(), ErrorResponse> {
        let digest = &mut self.digest;
        let shape = self.shape.as_deref();
        let scratch = &mut self.scratch;
        self.splitter.feed(payload, &mut |piece| {
            if let CopyPiece::Row { bytes, .. } = piece {
                digest.add_hash(super::shape::tuple_hash(shape, bytes, scratch));
            }
            Ok(())
        })
    }

    /// The digest of the tuples so far.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// The digest of the whole stream. Errors (22P04) when the header or the trailer is
    /// missing or a partial tuple is left over.
    pub fn finish(mut self) -> Result<Digest, ErrorResponse> {
        // The splitter's finish counts as the end: ask whether the trailer came first.
        let trailer_seen = self.splitter.ended();
        // A missing header or a partial tuple is the splitter's error.
        self.splitter.finish(&mut |_| Ok(()))?;
        if !trailer_seen {
            return Err(missing_trailer());
        }
        Ok(self.digest)
    }
}

/// Why a `COPY ... TO STDOUT` could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The statement failed or the connection broke.
    #[error(transparent)]
    Conn(#[from] ConnError),
    /// The data could not be taken (a malformed stream, a row that cannot be placed). The
    /// rest of the COPY was read and dropped: the connection is still usable.
    #[error("{}", .0.message)]
    Data(ErrorResponse),
    /// The server sent nothing for `limit`.
    #[error("{server}: no answer within {limit:?}")]
    NoAnswer {
        /// The server.
        server: String,
        /// How long it was given.
        limit: Duration,
    },
}

/// Runs `sql` (a `COPY ... TO STDOUT`) on `conn` and passes every CopyData payload to `sink`.
/// Once `sink` fails, the rest of the stream is read and dropped and its error returned.
/// `idle`: the longest wait for each message (`None`: no limit).
pub async fn read_copy(
    conn: &mut Conn,
    sql: &str,
    idle: Option<Duration>,
    mut sink: impl FnMut(&[u8]) -> Result<(), ErrorResponse>,
) -> Result<(), ReadError> {
    let server = conn.addr().to_string();
    bounded(idle, &server, conn.copy_out_start(sql)).await?;
    let mut failed: Option<ErrorResponse> = None;
    while let Some(frame) = bounded(idle, &server, conn.copy_out_next()).await? {
        if failed.is_none() {
            if let Err(error) = sink(frame.body()) {
                failed = Some(error);
            }
        }
    }
    match failed {
        Some(error) => Err(ReadError::Data(error)),
        None => Ok(()),
    }
}

/// The [`Digest`] of the tuples `sql` (a `COPY ... TO STDOUT (FORMAT binary)`) returns on
/// `conn`, with the embedded OIDs of `shape` zeroed. `idle` as in [`read_copy`].
pub async fn read_digest(
    conn: &mut Conn,
    sql: &str,
    shape: Option<Arc<TupleShape>>,
    idle: Option<Duration>,
) -> Result<Digest, ReadError> {
    let mut digester = CopyDigester::with_shape(shape);
    read_copy(conn, sql, idle, |payload| digester.feed(payload)).await?;
    digester.finish().map_err(ReadError::Data)
}

/// `work`, failing with [`ReadError::NoAnswer`] when `limit` passes first.
async fn bounded<T>(
    limit: Option<Duration>,
    server: &str,
    work: impl std::future::Future<Output = Result<T, ConnError>>,
) -> Result<T, ReadError> {
    match limit {
        None => Ok(work.await?),
        Some(limit) => match tokio::time::timeout(limit, work).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(ReadError::NoAnswer {
                server: server.to_string(),
                limit,
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

    fn stream(tuples: &[&[u8]]) -> Vec<u8> {
        let mut out = HEADER.to_vec();
        for tuple in tuples {
            out.extend_from_slice(tuple);
        }
        out.extend_from_slice(&[0xff, 0xff]);
        out
    }

    #[test]
    fn stable_values() {
        // Pinned: digests are stored and compared across processes and versions. Changing
        // these values breaks resuming copies made by an older pgdog. (Checked against an
        // independent implementation of the same definition.)
        assert_eq!(hash64(b""), 0x1e90_fe10_2805_b64e, "{:016x}", hash64(b""));
        assert_eq!(hash64(b"a"), 0x1099_5675_71f5_b8e7, "{:016x}", hash64(b"a"));
        assert_eq!(
            hash64(b"0123456789abcdef0123"),
            0xb5d4_fc70_4dc1_f6cf,
            "{:016x}",
            hash64(b"0123456789abcdef0123")
        );
    }

    #[test]
    fn distinguishes() {
        let mut seen = std::collections::HashSet::new();
        // Lengths with trailing zero bytes, every single-bit flip of a 24-byte input.
        for len in 0..40 {
            assert!(seen.insert(hash64(&vec![0u8; len])), "zeros {len}");
        }
        let base = [0x5au8; 24];
        for bit in 0..base.len() * 8 {
            let mut flipped = base;
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(seen.insert(hash64(&flipped)), "bit {bit}");
        }
        // Top bits of different words must not cancel.
        let mut a = [0u8; 16];
        a[7] = 0x80;
        a[15] = 0x80;
        assert_ne!(hash64(&a), hash64(&[0u8; 16]));
    }

    #[test]
    fn digests_add_merge_display() {
        let mut one = Digest::default();
        one.add_tuple(b"x");
        one.add_tuple(b"y");
        let mut other = Digest::default();
        other.add_tuple(b"y");
        other.add_tuple(b"x");
        assert_eq!(one, other, "order does not matter");
        let mut merged = Digest::default();
        merged.merge(one);
        merged.merge(other);
        assert_eq!(merged.rows, 4);
        assert_eq!(merged.sum, one.sum.wrapping_add(other.sum));
        let shown = Digest {
            rows: 12,
            sum: 0x0123_4567_89ab_cdef,
        };
        assert_eq!(shown.to_string(), "12 rows, digest 0123456789abcdef");
    }

    #[test]
    fn digester_splits() {
        let tuples: [&[u8]; 3] = [
            b"\0\x01\0\0\0\x01a",
            b"\0\x01\xff\xff\xff\xff",
            b"\0\x02\0\0\0\0\0\0\0\x02bc",
        ];
        let data = stream(&tuples);
        let mut expected = Digest::default();
        tuples.iter().for_each(|tuple| expected.add_tuple(tuple));
        for cut in 0..=data.len() {
            let mut digester = CopyDigester::new();
            digester.feed(&data[..cut]).unwrap();
            digester.feed(&data[cut..]).unwrap();
            assert_eq!(digester.finish().unwrap(), expected, "cut at {cut}");
        }
        let mut digester = CopyDigester::new();
        for byte in &data {
            digester.feed(std::slice::from_ref(byte)).unwrap();
        }
        assert_eq!(digester.finish().unwrap(), expected);
    }

    #[test]
    fn digester_errors() {
        let data = stream(&[b"\0\x01\0\0\0\x01a"]);
        let finish = |bytes: &[u8]| {
            let mut digester = CopyDigester::new();
            digester
                .feed(bytes)
                .and_then(|_| digester.finish().map(|_| ()))
        };
        assert!(finish(&data).is_ok());
        let missing = finish(&data[..data.len() - 2]).unwrap_err();
        assert_eq!(missing.code, "22P04");
        let truncated = finish(&data[..data.len() - 3]).unwrap_err();
        assert_eq!(truncated.code, "22P04");
        assert_eq!(truncated.message, "unexpected EOF in COPY data");
        let signature = finish(b"PGCOPX\n").unwrap_err();
        assert_eq!(signature.code, "22P04");
        assert_eq!(finish(b"").unwrap_err().code, "22P04");
        let mut after = data.clone();
        after.push(0);
        assert_eq!(finish(&after).unwrap_err().code, "22P04");
    }

    /// `cargo test --release -p pgdog --lib reshard::copy -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn hash_throughput() {
        let data: Vec<u8> = (0..64u64 << 20)
            .map(|i| (i.wrapping_mul(0x9e37_79b9) >> 7) as u8)
            .collect();
        for size in [64usize, 200, 4096, 1 << 20] {
            let started = Instant::now();
            let mut sum = 0u64;
            for _ in 0..4 {
                for chunk in data.chunks(size) {
                    sum = sum.wrapping_add(hash64(std::hint::black_box(chunk)));
                }
            }
            let seconds = started.elapsed().as_secs_f64();
            let mb = (data.len() * 4) as f64 / 1e6;
            println!(
                "hash64 over {size}-byte inputs: {:.0} MB/s ({sum:x})",
                mb / seconds
            );
        }
    }
}
