//! The untagged first packet of a connection: StartupMessage, SSLRequest, GSSENCRequest or
//! CancelRequest.

use bytes::BytesMut;

use super::frame::Reader;
use super::Error;

/// Protocol 3.0.
pub const PROTOCOL_3_0: i32 = 196_608;
/// SSLRequest code.
pub const SSL_REQUEST: i32 = 80_877_103;
/// GSSENCRequest code.
pub const GSSENC_REQUEST: i32 = 80_877_104;
/// CancelRequest code.
pub const CANCEL_REQUEST: i32 = 80_877_102;
/// Postgres refuses startup packets longer than this.
pub const MAX_STARTUP_LEN: usize = 10_000;

/// The first packet a client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    /// A StartupMessage with its protocol version and parameters (user, database, ...).
    Startup {
        /// Requested protocol version (major << 16 | minor).
        version: i32,
        /// Parameters in the order sent.
        params: Vec<(String, String)>,
    },
    /// SSLRequest: the client wants TLS.
    Ssl,
    /// GSSENCRequest: the client wants GSSAPI encryption.
    GssEnc,
    /// CancelRequest for the query running under this backend key.
    Cancel {
        /// Backend process id from BackendKeyData.
        pid: i32,
        /// Secret key from BackendKeyData.
        secret: i32,
    },
}

impl StartupPacket {
    /// Takes the next startup packet from `buf`, or `Ok(None)` if it is incomplete.
    pub fn take(buf: &mut BytesMut) -> Result<Option<StartupPacket>, Error> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        if !(8..=MAX_STARTUP_LEN as i32).contains(&len) {
            return Err(Error::BadLength {
                tag: 0,
                len: i64::from(len),
            });
        }
        if buf.len() < len as usize {
            return Ok(None);
        }
        let packet = buf.split_to(len as usize);
        Self::parse(&packet[4..]).map(Some)
    }

    fn parse(body: &[u8]) -> Result<StartupPacket, Error> {
        let mut r = Reader::new(body);
        let code = r.i32()?;
        match code {
            SSL_REQUEST => Ok(StartupPacket::Ssl),
            GSSENC_REQUEST => Ok(StartupPacket::GssEnc),
            CANCEL_REQUEST => Ok(StartupPacket::Cancel {
                pid: r.i32()?,
                secret: r.i32()?,
            }),
            version => {
                let mut params = Vec::new();
                loop {
                    let key = r.cstr()?;
                    if key.is_empty() {
                        break;
                    }
                    let value = r.cstr()?;
                    params.push((key.to_string(), value.to_string()));
                }
                Ok(StartupPacket::Startup { version, params })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(body: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        b.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        b.extend_from_slice(body);
        b
    }

    #[test]
    fn parses_startup() {
        let mut body = PROTOCOL_3_0.to_be_bytes().to_vec();
        body.extend_from_slice(b"user\0bob\0database\0shop\0\0");
        let mut buf = packet(&body);
        let p = StartupPacket::take(&mut buf).unwrap().unwrap();
        assert_eq!(
            p,
            StartupPacket::Startup {
                version: PROTOCOL_3_0,
                params: vec![
                    ("user".into(), "bob".into()),
                    ("database".into(), "shop".into())
                ]
            }
        );
    }

    #[test]
    fn rejects_truncated_and_oversized() {
        let mut body = PROTOCOL_3_0.to_be_bytes().to_vec();
        body.extend_from_slice(b"user\0bob");
        assert!(StartupPacket::take(&mut packet(&body)).is_err());
        let mut buf = BytesMut::from(&100_000i32.to_be_bytes()[..]);
        assert!(StartupPacket::take(&mut buf).is_err());
    }

    #[test]
    fn parses_cancel() {
        let mut body = CANCEL_REQUEST.to_be_bytes().to_vec();
        body.extend_from_slice(&7i32.to_be_bytes());
        body.extend_from_slice(&9i32.to_be_bytes());
        let p = StartupPacket::take(&mut packet(&body)).unwrap().unwrap();
        assert_eq!(p, StartupPacket::Cancel { pid: 7, secret: 9 });
    }
}
