//! Splitting a byte buffer into protocol frames (`tag` + `int32 length` + body) without copying.

use bytes::{Bytes, BytesMut};

use super::Error;

/// Largest message pgdog accepts from a client or server (Postgres' own limit for large messages).
pub const MAX_MESSAGE_LEN: usize = 0x3fff_ffff;

/// One complete protocol message: its tag byte and the whole message including tag and length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The message type byte, e.g. `b'Q'`.
    pub tag: u8,
    /// The full message bytes: tag, length and body, ready to forward as-is.
    pub bytes: Bytes,
}

impl Frame {
    /// The message body (after tag and length).
    pub fn body(&self) -> &[u8] {
        &self.bytes[5..]
    }

    /// Takes the next complete frame from `buf`, or `Ok(None)` when more bytes are needed.
    /// A length below 4 or above `max_len` is a protocol violation.
    pub fn take(buf: &mut BytesMut, max_len: usize) -> Result<Option<Frame>, Error> {
        match Self::peek_len(buf, max_len)? {
            Some(total) => {
                let tag = buf[0];
                Ok(Some(Frame {
                    tag,
                    bytes: buf.split_to(total).freeze(),
                }))
            }
            None => Ok(None),
        }
    }

    /// The total length (tag included) of the frame at the start of `buf` if it is complete.
    pub fn peek_len(buf: &[u8], max_len: usize) -> Result<Option<usize>, Error> {
        if buf.len() < 5 {
            return Ok(None);
        }
        let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
        if len < 4 || len as usize > max_len {
            return Err(Error::BadLength {
                tag: buf[0],
                len: i64::from(len),
            });
        }
        let total = len as usize + 1;
        Ok((buf.len() >= total).then_some(total))
    }

    /// Builds a frame from a tag and a body.
    pub fn new(tag: u8, body: &[u8]) -> Frame {
        let mut bytes = BytesMut::with_capacity(body.len() + 5);
        bytes.extend_from_slice(&[tag]);
        bytes.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        bytes.extend_from_slice(body);
        Frame {
            tag,
            bytes: bytes.freeze(),
        }
    }
}

/// A cursor over a message body with checked reads: every read of a truncated body is an error.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads from the given body bytes.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    /// Reads a NUL-terminated UTF-8 string.
    pub fn cstr(&mut self) -> Result<&'a str, Error> {
        let end = self
            .buf
            .iter()
            .position(|b| *b == 0)
            .ok_or(Error::Malformed("string without terminating NUL"))?;
        let s = std::str::from_utf8(&self.buf[..end])
            .map_err(|_| Error::Malformed("string is not valid UTF-8"))?;
        self.buf = &self.buf[end + 1..];
        Ok(s)
    }

    /// Reads a big-endian int16.
    pub fn i16(&mut self) -> Result<i16, Error> {
        let b = self.bytes(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    /// Reads a big-endian int32.
    pub fn i32(&mut self) -> Result<i32, Error> {
        let b = self.bytes(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Reads one byte.
    pub fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.bytes(1)?[0])
    }

    /// Reads `n` raw bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.buf.len() < n {
            return Err(Error::Malformed("message body is truncated"));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// The unread rest of the body.
    pub fn rest(&mut self) -> &'a [u8] {
        let rest = self.buf;
        self.buf = &[];
        rest
    }

    /// Whether everything has been read.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// Appends a NUL-terminated string to `out`.
pub fn put_cstr(out: &mut BytesMut, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.extend_from_slice(&[0]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_and_complete_frames() {
        let mut buf = BytesMut::from(&b"Q\0\0\0\x09SEL"[..]);
        assert_eq!(Frame::take(&mut buf, MAX_MESSAGE_LEN).unwrap(), None);
        buf.extend_from_slice(b"1\0Z");
        let frame = Frame::take(&mut buf, MAX_MESSAGE_LEN).unwrap().unwrap();
        assert_eq!(frame.tag, b'Q');
        assert_eq!(frame.body(), b"SEL1\0");
        assert_eq!(&buf[..], b"Z");
    }

    #[test]
    fn bad_lengths_are_errors() {
        let mut buf = BytesMut::from(&b"Q\0\0\0\x02"[..]);
        assert!(Frame::take(&mut buf, MAX_MESSAGE_LEN).is_err());
        let mut buf = BytesMut::from(&b"Q\x7f\xff\xff\xff"[..]);
        assert!(Frame::take(&mut buf, MAX_MESSAGE_LEN).is_err());
        let mut buf = BytesMut::from(&b"Q\xff\xff\xff\xff"[..]);
        assert!(Frame::take(&mut buf, MAX_MESSAGE_LEN).is_err());
    }

    #[test]
    fn reader_checks_bounds() {
        let mut r = Reader::new(b"ab\0\0\x01");
        assert_eq!(r.cstr().unwrap(), "ab");
        assert!(r.i32().is_err());
        let mut r = Reader::new(b"abc");
        assert!(r.cstr().is_err());
    }
}
