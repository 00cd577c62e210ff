//! Replication protocol framing: WAL positions ([`Lsn`]), PostgreSQL timestamps, the messages
//! the server sends inside CopyData during `START_REPLICATION` (XLogData and keepalives), the
//! Standby Status Update we send back, and the one [`DecodeError`] every decoder of the stream
//! returns. Also owns the bounds-checked byte cursor the pgoutput decoder shares.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};

/// Microseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01 00:00:00 UTC).
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// Length of the XLogData header after its type byte: start, end, send time.
const XLOG_DATA_HEADER: usize = 24;

/// Why bytes from the replication stream could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended before a field did.
    #[error("{what}{}: truncated at byte {offset} (need {need} more)", tag_suffix(.tag))]
    Truncated {
        /// What was being decoded, e.g. "pgoutput Update message".
        what: &'static str,
        /// The message type byte, if the input had one.
        tag: Option<u8>,
        /// Where the incomplete field starts.
        offset: usize,
        /// How many more bytes the field needed.
        need: usize,
    },
    /// The message type byte is not one we know.
    #[error("{what}: unknown message type {} at byte {offset}", show_byte(.tag))]
    UnknownMessage {
        /// What was being decoded.
        what: &'static str,
        /// The unknown type byte.
        tag: u8,
        /// Where the type byte is.
        offset: usize,
    },
    /// A known message we do not handle (e.g. two-phase commit).
    #[error("{what} ({}): not supported: {reason}", show_byte(.tag))]
    Unsupported {
        /// Which message, e.g. "pgoutput Begin Prepare message".
        what: &'static str,
        /// Its type byte.
        tag: u8,
        /// Why it is not handled.
        reason: &'static str,
    },
    /// Text that is not an LSN like `16/B374D848`.
    #[error("invalid LSN {0:?}: expected two hexadecimal numbers of 1 to 8 digits, like \"16/B374D848\"")]
    BadLsn(String),
    /// A string field is not valid UTF-8.
    #[error("{what} ({}): invalid UTF-8 in the string starting at byte {offset}", show_byte(.tag))]
    InvalidUtf8 {
        /// What was being decoded.
        what: &'static str,
        /// The message type byte.
        tag: u8,
        /// Where the string starts.
        offset: usize,
    },
    /// A field has a value the format does not allow (bad kind byte, negative length,
    /// trailing bytes, ...).
    #[error("{what} ({}): {reason} at byte {offset}", show_byte(.tag))]
    Invalid {
        /// What was being decoded.
        what: &'static str,
        /// The message type byte.
        tag: u8,
        /// Where the bad field is.
        offset: usize,
        /// What is wrong with it.
        reason: String,
    },
}

/// `'U'` for printable ASCII, `0x07` otherwise.
fn show_byte(tag: &u8) -> String {
    if tag.is_ascii_graphic() {
        format!("'{}'", *tag as char)
    } else {
        format!("0x{tag:02X}")
    }
}

/// `" ('U')"`, or nothing when there was no type byte.
fn tag_suffix(tag: &Option<u8>) -> String {
    match tag {
        Some(tag) => format!(" ({})", show_byte(tag)),
        None => String::new(),
    }
}

/// A WAL position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// The invalid / start position `0/0`.
    pub const ZERO: Lsn = Lsn(0);
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl FromStr for Lsn {
    type Err = DecodeError;

    /// Parses `pg_lsn` text: two hexadecimal numbers of 1 to 8 digits separated by `/`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || DecodeError::BadLsn(text.to_string());
        let (hi, lo) = text.split_once('/').ok_or_else(bad)?;
        let half = |part: &str| -> Result<u64, DecodeError> {
            let hex =
                !part.is_empty() && part.len() <= 8 && part.bytes().all(|b| b.is_ascii_hexdigit());
            if !hex {
                return Err(bad());
            }
            u64::from_str_radix(part, 16).map_err(|_| bad())
        };
        Ok(Lsn((half(hi)? << 32) | half(lo)?))
    }
}

/// Microseconds since 2000-01-01 00:00:00 UTC (PostgreSQL's epoch).
pub type PgTimestamp = i64;

/// Now as a PgTimestamp (SystemTime based).
pub fn pg_now() -> PgTimestamp {
    let unix_micros: i128 = match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since) => since.as_micros() as i128,
        Err(before) => -(before.duration().as_micros() as i128),
    };
    let pg = unix_micros - PG_EPOCH_OFFSET_MICROS as i128;
    pg.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// PgTimestamp → std::time::SystemTime (saturating).
pub fn to_system_time(t: PgTimestamp) -> SystemTime {
    let unix_micros = t as i128 + PG_EPOCH_OFFSET_MICROS as i128;
    let magnitude = unix_micros.unsigned_abs().min(u64::MAX as u128) as u64;
    saturating_shift(magnitude, unix_micros >= 0)
}

/// `UNIX_EPOCH` moved by `micros` (forward or back), clamped to what `SystemTime` can hold.
fn saturating_shift(micros: u64, forward: bool) -> SystemTime {
    let shift = |m: u64| {
        let d = Duration::from_micros(m);
        if forward {
            UNIX_EPOCH.checked_add(d)
        } else {
            UNIX_EPOCH.checked_sub(d)
        }
    };
    if let Some(time) = shift(micros) {
        return time;
    }
    // Largest shift that fits: binary search (shift(0) always fits).
    let (mut fits, mut fails) = (0u64, micros);
    while fails - fits > 1 {
        let mid = fits + (fails - fits) / 2;
        if shift(mid).is_some() {
            fits = mid;
        } else {
            fails = mid;
        }
    }
    shift(fits).unwrap_or(UNIX_EPOCH)
}

/// What the server sends inside CopyData during START_REPLICATION.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationMessage {
    /// 'w': WAL data (for logical replication: one pgoutput message).
    XLogData {
        /// WAL position where `data` starts.
        start: Lsn,
        /// Current end of WAL on the server.
        end: Lsn,
        /// Server clock when sent.
        send_time: PgTimestamp,
        /// The payload (a slice of the input).
        data: Bytes,
    },
    /// 'k': primary keepalive.
    Keepalive {
        /// Current end of WAL on the server.
        end: Lsn,
        /// Server clock when sent.
        send_time: PgTimestamp,
        /// The server wants a status update right away.
        reply_requested: bool,
    },
}

/// Decodes one CopyData payload (the bytes after the CopyData header).
pub fn parse(payload: &Bytes) -> Result<ReplicationMessage, DecodeError> {
    let Some(&tag) = payload.first() else {
        return Err(DecodeError::Truncated {
            what: "replication message",
            tag: None,
            offset: 0,
            need: 1,
        });
    };
    match tag {
        b'w' => {
            let mut r = Reader::new(payload, 1, "replication XLogData message", tag);
            let start = r.lsn()?;
            let end = r.lsn()?;
            let send_time = r.i64()?;
            debug_assert_eq!(r.pos(), 1 + XLOG_DATA_HEADER);
            let data = r.rest();
            Ok(ReplicationMessage::XLogData {
                start,
                end,
                send_time,
                data,
            })
        }
        b'k' => {
            let mut r = Reader::new(payload, 1, "replication keepalive message", tag);
            let end = r.lsn()?;
            let send_time = r.i64()?;
            let reply_requested = r.u8()? != 0;
            r.finish()?;
            Ok(ReplicationMessage::Keepalive {
                end,
                send_time,
                reply_requested,
            })
        }
        _ => Err(DecodeError::UnknownMessage {
            what: "replication message",
            tag,
            offset: 0,
        }),
    }
}

/// The 'r' Standby Status Update payload to send in a CopyData message (34 bytes).
pub fn status_update(
    write: Lsn,
    flush: Lsn,
    apply: Lsn,
    now: PgTimestamp,
    reply_requested: bool,
) -> Bytes {
    let mut out = BytesMut::with_capacity(34);
    out.put_u8(b'r');
    out.put_u64(write.0);
    out.put_u64(flush.0);
    out.put_u64(apply.0);
    out.put_i64(now);
    out.put_u8(u8::from(reply_requested));
    out.freeze()
}

/// Bounds-checked big-endian cursor over one message, naming the message in its errors.
pub(super) struct Reader<'a> {
    data: &'a Bytes,
    pos: usize,
    what: &'static str,
    tag: u8,
}

impl<'a> Reader<'a> {
    /// A cursor at `pos` (just past the type byte) over the message `what` of type `tag`.
    pub(super) fn new(data: &'a Bytes, pos: usize, what: &'static str, tag: u8) -> Self {
        Self {
            data,
            pos,
            what,
            tag,
        }
    }

    /// Current offset in the input.
    pub(super) fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes left.
    pub(super) fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    /// An `Invalid` error at `offset` for this message.
    pub(super) fn invalid(&self, offset: usize, reason: impl Into<String>) -> DecodeError {
        DecodeError::Invalid {
            what: self.what,
            tag: self.tag,
            offset,
            reason: reason.into(),
        }
    }

    /// Consumes `n` bytes, returning where they start.
    fn advance(&mut self, n: usize) -> Result<usize, DecodeError> {
        let left = self.remaining();
        if left < n {
            return Err(DecodeError::Truncated {
                what: self.what,
                tag: Some(self.tag),
                offset: self.pos,
                need: n - left,
            });
        }
        let start = self.pos;
        self.pos += n;
        Ok(start)
    }

    /// The next `N` bytes as an array.
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let start = self.advance(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&self.data[start..start + N]);
        Ok(out)
    }

    /// Byte1 / Int8.
    pub(super) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    /// Int16.
    pub(super) fn i16(&mut self) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    /// Int32, unsigned (OIDs, xids).
    pub(super) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// Int32, signed (lengths, type modifiers).
    pub(super) fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    /// Int64, signed (timestamps).
    pub(super) fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    /// Int64 as an LSN.
    pub(super) fn lsn(&mut self) -> Result<Lsn, DecodeError> {
        Ok(Lsn(u64::from_be_bytes(self.array()?)))
    }

    /// The next `n` bytes, zero-copy.
    pub(super) fn bytes(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        let start = self.advance(n)?;
        Ok(self.data.slice(start..start + n))
    }

    /// Everything left, zero-copy.
    pub(super) fn rest(&mut self) -> Bytes {
        let start = self.pos.min(self.data.len());
        self.pos = self.data.len();
        self.data.slice(start..)
    }

    /// A NUL-terminated UTF-8 string (the NUL is consumed, not returned).
    pub(super) fn cstring(&mut self) -> Result<String, DecodeError> {
        let start = self.pos;
        let tail = self.data.get(start..).unwrap_or_default();
        let Some(len) = tail.iter().position(|&b| b == 0) else {
            return Err(self.invalid(start, "string without a terminating NUL"));
        };
        let text = std::str::from_utf8(&tail[..len]).map_err(|_| DecodeError::InvalidUtf8 {
            what: self.what,
            tag: self.tag,
            offset: start,
        })?;
        let text = text.to_string();
        self.pos = start + len + 1;
        Ok(text)
    }

    /// Checks the whole message was consumed.
    pub(super) fn finish(self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(self.invalid(
                self.pos,
                format!("{extra} trailing byte(s) after the end of the message"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xlog(start: u64, end: u64, time: i64, data: &[u8]) -> Vec<u8> {
        let mut out = vec![b'w'];
        out.extend_from_slice(&start.to_be_bytes());
        out.extend_from_slice(&end.to_be_bytes());
        out.extend_from_slice(&time.to_be_bytes());
        out.extend_from_slice(data);
        out
    }

    fn keepalive(end: u64, time: i64, reply: u8) -> Vec<u8> {
        let mut out = vec![b'k'];
        out.extend_from_slice(&end.to_be_bytes());
        out.extend_from_slice(&time.to_be_bytes());
        out.push(reply);
        out
    }

    /// Deterministic xorshift so failures reproduce.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn lsn_round_trips() {
        for (text, value) in [
            ("0/0", 0u64),
            ("16/B374D848", 0x16_B374_D848),
            ("FFFFFFFF/FFFFFFFF", u64::MAX),
            ("1/0", 1 << 32),
            ("0/1", 1),
        ] {
            let lsn: Lsn = text.parse().unwrap();
            assert_eq!(lsn, Lsn(value));
            assert_eq!(lsn.to_string(), text);
        }
        assert_eq!("16/b374d848".parse::<Lsn>().unwrap(), Lsn(0x16_B374_D848));
        assert_eq!(
            "00000016/0000000A".parse::<Lsn>().unwrap().to_string(),
            "16/A"
        );
        assert_eq!(Lsn::ZERO.to_string(), "0/0");
        assert!(Lsn(1) < Lsn(1 << 32));
    }

    #[test]
    fn bad_lsn_text() {
        for text in [
            "",
            "/",
            "0/",
            "/0",
            "16B374D848",
            "1/2/3",
            "G/0",
            "+1/0",
            "-1/0",
            " 1/0",
            "1/0 ",
            "100000000/0",
            "0/100000000",
            "0x1/0",
        ] {
            let err = text.parse::<Lsn>().unwrap_err();
            assert_eq!(err, DecodeError::BadLsn(text.to_string()), "{text:?}");
        }
        let err = "nope".parse::<Lsn>().unwrap_err().to_string();
        assert!(err.contains("\"nope\""), "{err}");
    }

    #[test]
    fn timestamps() {
        assert_eq!(
            to_system_time(0),
            UNIX_EPOCH + Duration::from_secs(946_684_800)
        );
        assert_eq!(to_system_time(-PG_EPOCH_OFFSET_MICROS), UNIX_EPOCH);
        assert_eq!(
            to_system_time(1_500_000),
            UNIX_EPOCH + Duration::from_micros(946_684_801_500_000)
        );
        // Saturates instead of panicking at the extremes.
        let _ = to_system_time(i64::MAX);
        let _ = to_system_time(i64::MIN);
        // 2024-01-01 is 757_382_400 s after the PostgreSQL epoch; now is later.
        let now = pg_now();
        assert!(now > 757_382_400_000_000);
        let back = to_system_time(now);
        let drift = SystemTime::now().duration_since(back).unwrap();
        assert!(drift < Duration::from_secs(60));
    }

    #[test]
    fn parses_xlog_data() {
        let raw = Bytes::from(xlog(0x10, 0x20, 42, b"Bpayload"));
        let msg = parse(&raw).unwrap();
        assert_eq!(
            msg,
            ReplicationMessage::XLogData {
                start: Lsn(0x10),
                end: Lsn(0x20),
                send_time: 42,
                data: Bytes::from_static(b"Bpayload"),
            }
        );
        // Zero-copy: the payload points into the input.
        if let ReplicationMessage::XLogData { data, .. } = msg {
            assert_eq!(data.as_ptr(), raw[1 + XLOG_DATA_HEADER..].as_ptr());
        }
        let empty = parse(&Bytes::from(xlog(1, 2, -3, b""))).unwrap();
        assert!(
            matches!(empty, ReplicationMessage::XLogData { data, send_time: -3, .. } if data.is_empty())
        );
    }

    #[test]
    fn parses_keepalive() {
        let msg = parse(&Bytes::from(keepalive(0x16_B374_D848, 7, 1))).unwrap();
        assert_eq!(
            msg,
            ReplicationMessage::Keepalive {
                end: Lsn(0x16_B374_D848),
                send_time: 7,
                reply_requested: true,
            }
        );
        let msg = parse(&Bytes::from(keepalive(1, 2, 0))).unwrap();
        assert!(matches!(
            msg,
            ReplicationMessage::Keepalive {
                reply_requested: false,
                ..
            }
        ));
        let mut long = keepalive(1, 2, 0);
        long.push(0);
        let err = parse(&Bytes::from(long)).unwrap_err();
        assert!(
            matches!(err, DecodeError::Invalid { offset: 18, .. }),
            "{err}"
        );
    }

    #[test]
    fn rejects_unknown_and_empty() {
        let err = parse(&Bytes::from_static(b"x123")).unwrap_err();
        assert!(matches!(err, DecodeError::UnknownMessage { tag: b'x', .. }));
        assert!(err.to_string().contains("'x'"), "{err}");
        let err = parse(&Bytes::new()).unwrap_err();
        assert!(matches!(err, DecodeError::Truncated { tag: None, .. }));
    }

    #[test]
    fn truncations_fail_with_offsets() {
        let keep = keepalive(1, 2, 1);
        for len in 0..keep.len() {
            assert!(
                parse(&Bytes::copy_from_slice(&keep[..len])).is_err(),
                "{len}"
            );
        }
        let full = xlog(1, 2, 3, b"abc");
        for len in 0..=full.len() {
            let result = parse(&Bytes::copy_from_slice(&full[..len]));
            if len < 1 + XLOG_DATA_HEADER {
                assert!(result.is_err(), "{len}");
            } else {
                // The payload is "the rest", so any header-complete prefix is a shorter payload.
                assert!(result.is_ok(), "{len}");
            }
        }
        let err = parse(&Bytes::copy_from_slice(&full[..13])).unwrap_err();
        assert_eq!(
            err,
            DecodeError::Truncated {
                what: "replication XLogData message",
                tag: Some(b'w'),
                offset: 9,
                need: 4,
            }
        );
        assert_eq!(
            err.to_string(),
            "replication XLogData message ('w'): truncated at byte 9 (need 4 more)"
        );
    }

    #[test]
    fn status_update_layout() {
        let out = status_update(Lsn(1), Lsn(0x0203), Lsn(u64::MAX), -2, true);
        assert_eq!(out.len(), 34);
        assert_eq!(out[0], b'r');
        assert_eq!(&out[1..9], &1u64.to_be_bytes());
        assert_eq!(&out[9..17], &0x0203u64.to_be_bytes());
        assert_eq!(&out[17..25], &u64::MAX.to_be_bytes());
        assert_eq!(&out[25..33], &(-2i64).to_be_bytes());
        assert_eq!(out[33], 1);
        let out = status_update(Lsn::ZERO, Lsn::ZERO, Lsn::ZERO, 0, false);
        assert_eq!(out[33], 0);
        assert!(out[1..].iter().all(|&b| b == 0));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..10_000 {
            let len = (rng.next() % 40) as usize;
            let mut raw: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if let Some(first) = raw.first_mut() {
                *first = [b'w', b'k', *first][(rng.next() % 3) as usize];
            }
            let _ = parse(&Bytes::from(raw));
        }
    }

    #[test]
    fn cstring_errors() {
        let data = Bytes::from_static(b"ab\0c\xff\0de");
        let mut r = Reader::new(&data, 0, "test message", b'T');
        assert_eq!(r.cstring().unwrap(), "ab");
        let err = r.cstring().unwrap_err();
        assert!(
            matches!(err, DecodeError::InvalidUtf8 { offset: 3, .. }),
            "{err}"
        );
        let mut r = Reader::new(&data, 6, "test message", b'T');
        let err = r.cstring().unwrap_err();
        assert!(
            matches!(err, DecodeError::Invalid { offset: 6, .. }),
            "{err}"
        );
        // A cursor past the end is harmless.
        let mut r = Reader::new(&data, 100, "test message", b'T');
        assert!(r.cstring().is_err());
        assert!(r.u8().is_err());
        assert!(r.rest().is_empty());
    }
}
