//! The in-flight tuple router of the data copy: reads the source's `COPY ... TO STDOUT (FORMAT
//! binary)` stream, places every tuple on its destination shard by the table's sharding rule
//! (or on every shard), widens int2/int4 fields the destination stores as int8, and builds one
//! binary COPY stream per shard for `COPY ... FROM STDIN (FORMAT binary)`, with the row count
//! and digest of what each shard was sent.
//!
//! The framing (header, tuples cut anywhere across CopyData payloads, trailer) and the key
//! decoding are the router's [`CopySplitter`]'s; placement is [`TableRule::shards_of`].

use bytes::{BufMut, Bytes, BytesMut};

use crate::net::{sqlstate, ErrorResponse};
use crate::router::copy::{CopyKey, CopyPiece, CopySplitter};
use crate::router::plan::TableRule;
use crate::router::route::{CopyFormat, CopyOptions, Shards};
use crate::router::sharding::KeyValue;

use std::sync::Arc;

use super::digest::Digest;
use super::field_digest::FieldHashes;
use super::shape::{tuple_hash, TupleShape};

/// How each tuple is hashed for the digests.
#[derive(Debug, Clone)]
pub enum TupleHashing {
    /// As the shards hash their rows (see [`super::field_digest`]).
    Fields(Arc<FieldHashes>),
    /// By its bytes, with the type OIDs that `shape` locates zeroed (see [`super::shape`]);
    /// `None`: the bytes as they are.
    Bytes(Option<Arc<TupleShape>>),
}

impl TupleHashing {
    /// The hash of one tuple (as sent, after widening).
    #[inline]
    fn hash(&self, tuple: &[u8], scratch: &mut Vec<u8>) -> u64 {
        match self {
            TupleHashing::Fields(fields) => fields.row_hash(tuple),
            TupleHashing::Bytes(shape) => tuple_hash(shape.as_deref(), tuple, scratch),
        }
    }
}

/// How each tuple of one table is placed and rewritten.
#[derive(Debug, Clone)]
pub struct TuplePlan {
    /// Where the rows go: `Some(rule)` with the key's 0-based position in the copied column
    /// list, or `None` for tables copied to every shard (omnisharded, no sharding key).
    pub key: Option<(usize, TableRule)>,
    /// 0-based positions of columns to widen to int8 (their source field is 2 or 4 bytes; NULL
    /// stays NULL).
    pub widen: Vec<usize>,
    /// Destination shard count.
    pub shards: usize,
    /// How the digests hash each tuple.
    pub hashing: TupleHashing,
}

/// Routes the tuples of one source COPY stream into per-shard binary COPY streams.
///
/// Nothing is allocated per tuple: each tuple is copied once, from the payload (or from the
/// splitter's buffer when it spans payloads) into its shard's buffer, widened on the way.
#[derive(Debug)]
pub struct TupleRouter {
    splitter: CopySplitter,
    output: Output,
    /// Source bytes fed.
    bytes: u64,
    /// `finish` succeeded: the trailers are written.
    finished: bool,
    /// The trailer was missing: every later `finish` fails too (the splitter keeps its own
    /// errors).
    failed: Option<ErrorResponse>,
}

/// The per-shard streams and what decides which tuple goes where.
#[derive(Debug)]
struct Output {
    rule: Option<TableRule>,
    /// Sorted, without duplicates.
    widen: Vec<usize>,
    buffers: Vec<BytesMut>,
    digests: Vec<Digest>,
    hashing: TupleHashing,
    scratch: Vec<u8>,
}

impl TupleRouter {
    /// A router for one source stream (which must start with the binary COPY header).
    pub fn new(plan: TuplePlan) -> TupleRouter {
        let TuplePlan {
            key,
            mut widen,
            shards,
            hashing,
        } = plan;
        widen.sort_unstable();
        widen.dedup();
        let copy_key = key.as_ref().map(|(column, rule)| CopyKey {
            column: *column,
            data_type: rule.data_type(),
        });
        TupleRouter {
            splitter: CopySplitter::new(CopyOptions::defaults(CopyFormat::Binary), copy_key),
            output: Output {
                rule: key.map(|(_, rule)| rule),
                widen,
                buffers: vec![BytesMut::new(); shards],
                digests: vec![Digest::default(); shards],
                hashing,
                scratch: Vec::new(),
            },
            bytes: 0,
            finished: false,
            failed: None,
        }
    }

    /// Feeds one CopyData payload of the source's `COPY ... TO STDOUT (FORMAT binary)`
    /// (header, tuples and trailer may be split anywhere across payloads). Complete tuples are
    /// appended (widened) to their shard's output buffer, which starts with the binary COPY
    /// header: the source's, written to every buffer once it has arrived whole. After an
    /// error every later call fails.
    pub fn feed(&mut self, payload: &[u8]) -> Result<(), ErrorResponse> {
        let output = &mut self.output;
        self.splitter
            .feed(payload, &mut |piece| output.piece(piece))?;
        self.bytes += payload.len() as u64;
        Ok(())
    }

    /// Output ready for shard `shard` when its buffer holds at least `min` bytes (taken,
    /// buffer emptied); `min = 0` takes whatever is there (including just the header).
    /// `None` when the buffer is empty or shorter than `min`.
    pub fn take(&mut self, shard: usize, min: usize) -> Option<Bytes> {
        let buffer = self.output.buffers.get_mut(shard)?;
        if buffer.is_empty() || buffer.len() < min {
            return None;
        }
        Some(buffer.split().freeze())
    }

    /// After the source's COPY ended: checks the trailer was seen and nothing is left over,
    /// appends the trailer to every shard's buffer. Errors (22P04) on a missing header or
    /// trailer or a partial tuple (and again on every later call). Calling it again after it
    /// succeeded does nothing.
    pub fn finish(&mut self) -> Result<(), ErrorResponse> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        if self.finished {
            return Ok(());
        }
        if !self.splitter.ended() {
            // A partial tuple or a missing header is reported by the splitter; with neither,
            // the trailer is missing.
            self.splitter.finish(&mut |_| Ok(()))?;
            let error = missing_trailer();
            self.failed = Some(error.clone());
            return Err(error);
        }
        let output = &mut self.output;
        self.splitter.finish(&mut |piece| output.piece(piece))?;
        self.finished = true;
        Ok(())
    }

    /// Per shard: rows and digest of the tuples routed to it (tuple bytes as sent, i.e. after
    /// widening).
    pub fn digests(&self) -> &[Digest] {
        &self.output.digests
    }

    /// Tuples read so far.
    pub fn rows(&self) -> u64 {
        self.splitter.rows()
    }

    /// Source bytes consumed so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Output {
    fn piece(&mut self, piece: CopyPiece<'_>) -> Result<(), ErrorResponse> {
        match piece {
            // The header and the trailer: once in every shard's stream.
            CopyPiece::All(bytes) => {
                for buffer in &mut self.buffers {
                    buffer.extend_from_slice(bytes);
                }
                Ok(())
            }
            CopyPiece::Row { key, bytes } => self.row(key, bytes),
        }
    }

    fn row(&mut self, key: Option<KeyValue<'_>>, tuple: &[u8]) -> Result<(), ErrorResponse> {
        let Some(rule) = &self.rule else {
            return self.send_everywhere(tuple);
        };
        match rule.shards_of(key.as_ref())? {
            Shards::One(shard) => self.send_to(shard, tuple),
            other => {
                for shard in other.list(self.buffers.len()) {
                    self.send_to(shard, tuple)?;
                }
                Ok(())
            }
        }
    }

    fn send_to(&mut self, shard: usize, tuple: &[u8]) -> Result<(), ErrorResponse> {
        let (Some(buffer), Some(digest)) =
            (self.buffers.get_mut(shard), self.digests.get_mut(shard))
        else {
            return Err(ErrorResponse::error(
                sqlstate::INTERNAL_ERROR,
                format!(
                    "the sharding rule placed a row on shard {shard}, but the destination has {} shards",
                    self.buffers.len()
                ),
            ));
        };
        let start = buffer.len();
        if let Err(error) = write_tuple(buffer, tuple, &self.widen) {
            buffer.truncate(start);
            return Err(error);
        }
        digest.add_hash(self.hashing.hash(&buffer[start..], &mut self.scratch));
        Ok(())
    }

    fn send_everywhere(&mut self, tuple: &[u8]) -> Result<(), ErrorResponse> {
        let Some((first, rest)) = self.buffers.split_first_mut() else {
            return Ok(());
        };
        let start = first.len();
        if let Err(error) = write_tuple(first, tuple, &self.widen) {
            first.truncate(start);
            return Err(error);
        }
        let written = &first[start..];
        let hash = self.hashing.hash(written, &mut self.scratch);
        for buffer in rest {
            buffer.extend_from_slice(written);
        }
        for digest in &mut self.digests {
            digest.add_hash(hash);
        }
        Ok(())
    }
}

/// Appends a complete tuple to `out`, with the fields at `widen` (sorted) rewritten as 8-byte
/// integers. Runs of unchanged bytes are copied whole.
fn write_tuple(out: &mut BytesMut, tuple: &[u8], widen: &[usize]) -> Result<(), ErrorResponse> {
    if widen.is_empty() {
        out.extend_from_slice(tuple);
        return Ok(());
    }
    out.reserve(tuple.len() + 6 * widen.len());
    let count = match tuple {
        [high, low, ..] => usize::from(u16::from_be_bytes([*high, *low])),
        _ => return Err(malformed()),
    };
    let mut wanted = widen.iter().copied().peekable();
    // Bytes of `tuple` before `copied` are in `out` already.
    let mut copied = 0;
    let mut pos = 2;
    for index in 0..count {
        let Some(&next) = wanted.peek() else {
            break;
        };
        let Some(&[a, b, c, d]) = tuple.get(pos..pos + 4) else {
            return Err(malformed());
        };
        let len = i32::from_be_bytes([a, b, c, d]);
        let data = pos + 4;
        // NULL (-1) has no data bytes.
        let end = data.saturating_add(usize::try_from(len).unwrap_or(0));
        if index == next {
            wanted.next();
            let value = match tuple.get(data..end) {
                _ if len < 0 => None,
                Some(&[a, b]) => Some(i64::from(i16::from_be_bytes([a, b]))),
                Some(&[a, b, c, d]) => Some(i64::from(i32::from_be_bytes([a, b, c, d]))),
                Some(field) if field.len() == 8 => None,
                Some(_) => return Err(not_an_integer(len, index)),
                None => return Err(malformed()),
            };
            if let Some(value) = value {
                out.extend_from_slice(&tuple[copied..pos]);
                out.put_i32(8);
                out.put_i64(value);
                copied = end;
            }
        }
        pos = end;
    }
    if let Some(missing) = wanted.next() {
        return Err(ErrorResponse::error(
            sqlstate::BAD_COPY_FILE_FORMAT,
            format!(
                "row field count is {count}: there is no column {} to widen",
                missing + 1
            ),
        ));
    }
    match tuple.get(copied..) {
        Some(rest) => out.extend_from_slice(rest),
        None => return Err(malformed()),
    }
    Ok(())
}

/// A tuple whose fields do not add up (the splitter checked its extent: this is a bug).
fn malformed() -> ErrorResponse {
    ErrorResponse::error(
        sqlstate::BAD_COPY_FILE_FORMAT,
        "invalid field size in a COPY tuple",
    )
}

/// A field to widen that is not a 2, 4 or 8-byte integer.
fn not_an_integer(len: i32, index: usize) -> ErrorResponse {
    ErrorResponse::error(
        sqlstate::INVALID_BINARY_REPRESENTATION,
        format!(
            "incorrect binary data format: a {len}-byte field in column {} cannot be widened to bigint",
            index + 1
        ),
    )
}

/// The stream ended (CopyDone) without the binary trailer.
pub(super) fn missing_trailer() -> ErrorResponse {
    ErrorResponse::error(
        sqlstate::BAD_COPY_FILE_FORMAT,
        "COPY data ended without the binary file trailer",
    )
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::reshard::copy::digest::CopyDigester;
    use crate::router::plan::ShardingSchema;
    use crate::router::sharding::shard_of;

    const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
    const TRAILER: &[u8] = &[0xff, 0xff];
    const SHARDS: usize = 3;

    /// The rule of table `table` in a three-shard test database.
    fn rule(table: &str) -> TableRule {
        let mut text = String::new();
        for shard in 0..SHARDS {
            text.push_str(&format!("[[databases]]\nname = \"db\"\nshard = {shard}\n"));
        }
        text.push_str(
            r#"
[[sharded_tables]]
database = "db"
name = "ints"
column = "id"
data_type = "bigint"

[[sharded_tables]]
database = "db"
name = "texts"
column = "id"
data_type = "varchar"

[[sharded_tables]]
database = "db"
name = "uuids"
column = "id"
data_type = "uuid"

[[sharded_tables]]
database = "db"
name = "lists"
column = "id"
mapping = [ { values = [1, 2], shard = 0 }, { values = [3], shard = 2 }, { start = 10, end = 20, shard = 1 } ]

[[sharded_tables]]
database = "db"
name = "defaults"
column = "id"
mapping = [ { values = [1], shard = 1 }, { shard = 2 } ]
"#,
        );
        let config = pgdog_config::Config::from_str(&text, "pgdog.toml").unwrap();
        ShardingSchema::new(&config, "db")
            .table_rule(None, table, &[])
            .unwrap()
    }

    fn plan(key: Option<(usize, &str)>, widen: &[usize]) -> TuplePlan {
        TuplePlan {
            key: key.map(|(column, table)| (column, rule(table))),
            widen: widen.to_vec(),
            shards: SHARDS,
            hashing: TupleHashing::Bytes(None),
        }
    }

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

    fn stream(tuples: &[Vec<u8>]) -> Vec<u8> {
        let mut out = HEADER.to_vec();
        tuples.iter().for_each(|tuple| out.extend_from_slice(tuple));
        out.extend_from_slice(TRAILER);
        out
    }

    /// The tuples of a binary COPY stream the router produced (header and trailer checked).
    fn tuples_of(stream: &[u8]) -> Vec<Vec<u8>> {
        assert!(stream.starts_with(HEADER));
        assert!(stream.ends_with(TRAILER));
        let mut rest = &stream[HEADER.len()..stream.len() - 2];
        let mut tuples = Vec::new();
        while !rest.is_empty() {
            let count = i16::from_be_bytes([rest[0], rest[1]]) as usize;
            let mut pos = 2;
            for _ in 0..count {
                let len = i32::from_be_bytes(rest[pos..pos + 4].try_into().unwrap());
                pos += 4 + len.max(0) as usize;
            }
            tuples.push(rest[..pos].to_vec());
            rest = &rest[pos..];
        }
        tuples
    }

    /// Feeds `payloads`, finishes and returns every shard's whole stream.
    fn run<'a>(
        plan: TuplePlan,
        payloads: impl IntoIterator<Item = &'a [u8]>,
    ) -> (Vec<Vec<u8>>, Vec<Digest>) {
        let mut router = TupleRouter::new(plan);
        let shards = router.digests().len();
        let mut out = vec![Vec::new(); shards];
        for payload in payloads {
            router.feed(payload).unwrap();
            for (shard, out) in out.iter_mut().enumerate() {
                if let Some(bytes) = router.take(shard, 7) {
                    out.extend_from_slice(&bytes);
                }
            }
        }
        router.finish().unwrap();
        for (shard, out) in out.iter_mut().enumerate() {
            if let Some(bytes) = router.take(shard, 0) {
                out.extend_from_slice(&bytes);
            }
            assert!(router.take(shard, 0).is_none());
        }
        (out, router.digests().to_vec())
    }

    fn digest_of(stream: &[u8]) -> Digest {
        let mut digester = CopyDigester::new();
        digester.feed(stream).unwrap();
        digester.finish().unwrap()
    }

    fn int_rows(count: i64) -> Vec<Vec<u8>> {
        (0..count)
            .map(|id| {
                let name = format!("name {id}");
                let small = (id as i32 - 5).to_be_bytes();
                tuple(&[
                    Some(&id.to_be_bytes()),
                    Some(name.as_bytes()),
                    (id % 3 != 0).then_some(&small[..]),
                ])
            })
            .collect()
    }

    #[test]
    fn every_split_gives_the_same_output() {
        let rows = int_rows(6);
        let data = stream(&rows);
        let plan = || plan(Some((0, "ints")), &[2]);
        let whole = run(plan(), [&data[..]]);
        let bytes = run(plan(), data.chunks(1));
        assert_eq!(whole, bytes);
        for cut in 0..=data.len() {
            let two = run(plan(), [&data[..cut], &data[cut..]]);
            assert_eq!(whole, two, "cut at {cut}");
        }
        let (streams, digests) = whole;
        let total: u64 = digests.iter().map(|digest| digest.rows).sum();
        assert_eq!(total, 6);
        for (stream, digest) in streams.iter().zip(&digests) {
            assert_eq!(digest_of(stream), *digest);
            assert_eq!(tuples_of(stream).len() as u64, digest.rows);
        }
    }

    #[test]
    fn counters_and_take_threshold() {
        let data = stream(&int_rows(4));
        let mut router = TupleRouter::new(plan(None, &[]));
        assert!(router.take(0, 0).is_none(), "nothing before the header");
        router.feed(&data[..HEADER.len()]).unwrap();
        assert_eq!(router.take(0, 0).as_deref(), Some(HEADER));
        router.feed(&data[HEADER.len()..]).unwrap();
        assert_eq!(router.rows(), 4);
        assert_eq!(router.bytes(), data.len() as u64);
        assert!(router.take(1, 10_000).is_none());
        let taken = router.take(1, 10).unwrap();
        assert!(taken.starts_with(HEADER));
        assert!(router.take(1, 0).is_none());
        assert!(router.take(SHARDS, 0).is_none());
        router.finish().unwrap();
        router.finish().unwrap();
        assert_eq!(router.take(1, 0).as_deref(), Some(TRAILER));
    }

    /// Routes one single-row stream per key and returns the shard that got it.
    fn shard_for(table: &str, key: Option<&[u8]>) -> Result<usize, ErrorResponse> {
        let mut router = TupleRouter::new(plan(Some((1, table)), &[]));
        router.feed(&stream(&[tuple(&[Some(b"x"), key])]))?;
        router.finish()?;
        let digests = router.digests();
        assert_eq!(digests.iter().map(|digest| digest.rows).sum::<u64>(), 1);
        Ok(digests.iter().position(|digest| digest.rows == 1).unwrap())
    }

    #[test]
    fn hash_routing_matches_shard_of() {
        for value in [-3i64, 0, 1, 2, 17, 1 << 40, i64::MIN, i64::MAX] {
            let expected = shard_of(&KeyValue::Int(value), SHARDS);
            assert_eq!(shard_for("ints", Some(&value.to_be_bytes())), Ok(expected));
            if let Ok(small) = i32::try_from(value) {
                assert_eq!(shard_for("ints", Some(&small.to_be_bytes())), Ok(expected));
            }
        }
        for value in ["", "a", "tenant 42", "żółć", "a rather longer text key"] {
            let expected = shard_of(&KeyValue::Text(value), SHARDS);
            assert_eq!(shard_for("texts", Some(value.as_bytes())), Ok(expected));
        }
        for seed in 0u8..20 {
            let uuid: [u8; 16] = std::array::from_fn(|i| seed.wrapping_mul(37) ^ i as u8);
            let expected = shard_of(&KeyValue::Uuid(uuid), SHARDS);
            assert_eq!(shard_for("uuids", Some(&uuid)), Ok(expected));
        }
        let shards: std::collections::HashSet<usize> = (0i64..30)
            .map(|value| shard_for("ints", Some(&value.to_be_bytes())).unwrap())
            .collect();
        assert_eq!(shards.len(), SHARDS, "keys spread over every shard");
    }

    #[test]
    fn null_keys_and_mappings() {
        assert_eq!(shard_for("ints", None), Ok(0));
        assert_eq!(shard_for("texts", None), Ok(0));
        assert_eq!(shard_for("defaults", None), Ok(2));
        assert_eq!(shard_for("defaults", Some(&1i64.to_be_bytes())), Ok(1));
        assert_eq!(shard_for("defaults", Some(&5i32.to_be_bytes())), Ok(2));
        for (value, shard) in [(1i64, 0), (2, 0), (3, 2), (10, 1), (19, 1)] {
            assert_eq!(shard_for("lists", Some(&value.to_be_bytes())), Ok(shard));
        }
        for value in [None, Some(20i64), Some(4)] {
            let bytes = value.map(i64::to_be_bytes);
            let error = shard_for("lists", bytes.as_ref().map(|b| &b[..])).unwrap_err();
            assert_eq!(error.code, "23514", "{value:?}");
            let key = value.map(KeyValue::Int);
            assert_eq!(error, rule("lists").shards_of(key.as_ref()).unwrap_err());
        }
    }

    #[test]
    fn keyless_tables_go_everywhere() {
        let rows = int_rows(5);
        let data = stream(&rows);
        let (streams, digests) = run(plan(None, &[]), [&data[..]]);
        for (stream, digest) in streams.iter().zip(&digests) {
            assert_eq!(stream, &data, "every shard gets the source stream");
            assert_eq!(*digest, digests[0]);
            assert_eq!(digest.rows, 5);
            assert_eq!(digest_of(stream), *digest);
        }
    }

    #[test]
    fn widening() {
        let int4 = |value: i32| value.to_be_bytes().to_vec();
        let int2 = |value: i16| value.to_be_bytes().to_vec();
        let int8 = |value: i64| value.to_be_bytes().to_vec();
        let source = [
            tuple(&[Some(&int4(-7)), Some(b"a"), Some(&int2(-2)), Some(&int8(9))]),
            tuple(&[None, Some(b""), None, None]),
            tuple(&[
                Some(&int4(i32::MAX)),
                None,
                Some(&int2(i16::MIN)),
                Some(&int8(-1)),
            ]),
            tuple(&[Some(&int4(i32::MIN)), Some(b"bc"), Some(&int2(5)), None]),
        ];
        let expected = [
            tuple(&[Some(&int8(-7)), Some(b"a"), Some(&int8(-2)), Some(&int8(9))]),
            tuple(&[None, Some(b""), None, None]),
            tuple(&[
                Some(&int8(i32::MAX.into())),
                None,
                Some(&int8(i16::MIN.into())),
                Some(&int8(-1)),
            ]),
            tuple(&[
                Some(&int8(i32::MIN.into())),
                Some(b"bc"),
                Some(&int8(5)),
                None,
            ]),
        ];
        // Column 3 is already 8 bytes: kept. Unsorted and repeated positions are fine.
        let (streams, digests) = run(plan(None, &[2, 0, 3, 0]), [&stream(&source)[..]]);
        assert_eq!(streams[0], stream(&expected));
        let mut digest = Digest::default();
        expected.iter().for_each(|tuple| digest.add_tuple(tuple));
        assert_eq!(digests[0], digest);

        // The key column widened too: placed by its value, not its width.
        let keyed = plan(Some((0, "ints")), &[0, 2]);
        let (streams, _) = run(keyed, [&stream(&source[..1])[..]]);
        let shard = shard_of(&KeyValue::Int(-7), SHARDS);
        assert_eq!(tuples_of(&streams[shard]), vec![expected[0].clone()]);

        // Not an integer, or no such column.
        let mut router = TupleRouter::new(plan(None, &[1]));
        let error = router.feed(&stream(&source[..1])).unwrap_err();
        assert_eq!(error.code, "22P03");
        let mut router = TupleRouter::new(plan(None, &[4]));
        let error = router.feed(&stream(&source[..1])).unwrap_err();
        assert_eq!(error.code, "22P04");
    }

    #[test]
    fn bad_input() {
        let data = stream(&int_rows(2));
        let fail = |plan: TuplePlan, payloads: &[&[u8]]| {
            let mut router = TupleRouter::new(plan);
            payloads
                .iter()
                .try_for_each(|payload| router.feed(payload))
                .and_then(|_| router.finish())
                .unwrap_err()
        };
        let keyed = || plan(Some((0, "ints")), &[]);
        let error = fail(keyed(), &[b"PGCOPY\n\xfe"]);
        assert_eq!(error.code, "22P04");
        assert_eq!(error.message, "COPY file signature not recognized");
        assert_eq!(fail(keyed(), &[]).code, "22P04");
        let error = fail(keyed(), &[&data[..data.len() - 3]]);
        assert_eq!(error.code, "22P04");
        assert_eq!(error.message, "unexpected EOF in COPY data");
        let error = fail(keyed(), &[&data[..data.len() - 2]]);
        assert_eq!(error.code, "22P04");
        assert_eq!(error.message, missing_trailer().message);
        let mut router = TupleRouter::new(keyed());
        router.feed(&data[..data.len() - 2]).unwrap();
        assert_eq!(router.finish(), Err(missing_trailer()));
        assert_eq!(router.finish(), Err(missing_trailer()));
        assert!(router.feed(TRAILER).is_err());
        let error = fail(keyed(), &[&data, b"\0"]);
        assert_eq!(error.code, "22P04");
        // The key column is not in the tuple; a key of the wrong size.
        assert_eq!(fail(plan(Some((5, "ints")), &[]), &[&data]).code, "22P04");
        let odd = stream(&[tuple(&[Some(b"abc")])]);
        assert_eq!(fail(keyed(), &[&odd]).code, "22P03");
        // Errors stick.
        let mut router = TupleRouter::new(keyed());
        assert!(router.feed(b"nope").is_err());
        assert!(router.feed(&data).is_err());
        assert!(router.finish().is_err());
    }

    /// `cargo test --release -p pgdog --lib reshard::copy -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn throughput() {
        // Rows like (bigint id, int4, text ~40 bytes, uuid, NULL): about 100 bytes each; a
        // block of distinct rows repeated up to ~200 MB.
        let mut block = Vec::new();
        let mut ends = Vec::new();
        for id in 0..50_000i64 {
            let text = format!("row {id:010} with some text in it ......");
            let uuid: [u8; 16] = std::array::from_fn(|i| (id as u8).wrapping_add(i as u8));
            block.extend_from_slice(&tuple(&[
                Some(&id.to_be_bytes()),
                Some(&(id as i32).to_be_bytes()),
                Some(text.as_bytes()),
                Some(&uuid),
                None,
            ]));
            ends.push(block.len());
        }
        let repeat = (200 << 20) / block.len() + 1;
        let mut data = Vec::with_capacity(HEADER.len() + block.len() * repeat + 2);
        // Payload boundaries as PostgreSQL sends them: the header with the first tuple, then
        // one tuple per CopyData, the trailer alone.
        let mut cuts = Vec::with_capacity(ends.len() * repeat + 1);
        data.extend_from_slice(HEADER);
        for _ in 0..repeat {
            let base = data.len();
            data.extend_from_slice(&block);
            cuts.extend(ends.iter().map(|end| base + end));
        }
        cuts[0] = HEADER.len() + ends[0];
        data.extend_from_slice(TRAILER);
        cuts.push(data.len());
        let mut per_tuple = Vec::with_capacity(cuts.len());
        let mut start = 0;
        for &cut in &cuts {
            per_tuple.push(&data[start..cut]);
            start = cut;
        }
        let chunks: Vec<&[u8]> = data.chunks(64 << 10).collect();

        for (name, plan) in [
            ("bigint key", plan(Some((0, "ints")), &[])),
            ("bigint key, widen int4", plan(Some((0, "ints")), &[1])),
            ("text key", plan(Some((2, "texts")), &[])),
            ("no key, 3 shards", plan(None, &[])),
        ] {
            for (payloads, what) in [(&per_tuple, "a CopyData per tuple"), (&chunks, "64 kB")] {
                let started = Instant::now();
                let mut router = TupleRouter::new(plan.clone());
                let mut sent = 0usize;
                for payload in payloads {
                    router.feed(payload).unwrap();
                    for shard in 0..SHARDS {
                        if let Some(bytes) = router.take(shard, 256 << 10) {
                            sent += bytes.len();
                        }
                    }
                }
                router.finish().unwrap();
                for shard in 0..SHARDS {
                    sent += router.take(shard, 0).map_or(0, |bytes| bytes.len());
                }
                let seconds = started.elapsed().as_secs_f64();
                println!(
                    "{name} ({what}): {} rows, {:.0} MB in, {:.0} MB out, {:.0} MB/s, {:.0} ns/row",
                    router.rows(),
                    data.len() as f64 / 1e6,
                    sent as f64 / 1e6,
                    data.len() as f64 / 1e6 / seconds,
                    seconds * 1e9 / router.rows() as f64
                );
            }
        }
    }
}
