//! A minimal PostgreSQL protocol client for tests that need exact control of the messages.
//!
//! The free functions build frontend messages as bytes (nothing is validated, so a test can
//! also send malformed ones); [`Raw`] sends them and reads the replies back as `(tag, body)`
//! pairs, the body without the tag and length. The remaining helpers decode the few backend
//! messages that tests look into.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A backend message: its type byte and its body (without the length).
pub type Message = (u8, Vec<u8>);

/// How long [`Raw::try_next`] waits for bytes before panicking.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The protocol version 3.0 code of a StartupMessage.
const PROTOCOL_VERSION: i32 = 196608;

/// A message with type byte `tag` and `body`, the length filled in.
pub fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// `s` as a NUL-terminated protocol string.
pub fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// Parse: prepares `sql` as statement `name` (`""` for the unnamed one), no parameter types.
pub fn parse(name: &str, sql: &str) -> Vec<u8> {
    let mut body = cstr(name);
    body.extend(cstr(sql));
    body.extend_from_slice(&0i16.to_be_bytes());
    message(b'P', &body)
}

/// Bind: portal `portal` of statement `statement` with `params` as text values, and
/// `result_formats` as the result format codes (empty: all text).
pub fn bind(portal: &str, statement: &str, params: &[&str], result_formats: &[i16]) -> Vec<u8> {
    let mut body = cstr(portal);
    body.extend(cstr(statement));
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&(params.len() as i16).to_be_bytes());
    for p in params {
        body.extend_from_slice(&(p.len() as i32).to_be_bytes());
        body.extend_from_slice(p.as_bytes());
    }
    body.extend_from_slice(&(result_formats.len() as i16).to_be_bytes());
    for f in result_formats {
        body.extend_from_slice(&f.to_be_bytes());
    }
    message(b'B', &body)
}

/// Describe: `kind` is `b'S'` for a statement or `b'P'` for a portal.
pub fn describe(kind: u8, name: &str) -> Vec<u8> {
    kind_and_name(b'D', kind, name)
}

/// Execute: runs portal `portal`, returning at most `max_rows` rows (0: all).
pub fn execute(portal: &str, max_rows: i32) -> Vec<u8> {
    let mut body = cstr(portal);
    body.extend_from_slice(&max_rows.to_be_bytes());
    message(b'E', &body)
}

/// Close: `kind` is `b'S'` for a statement or `b'P'` for a portal.
pub fn close(kind: u8, name: &str) -> Vec<u8> {
    kind_and_name(b'C', kind, name)
}

/// A message whose body is a kind byte and a name, as Describe and Close are.
fn kind_and_name(tag: u8, kind: u8, name: &str) -> Vec<u8> {
    let mut body = vec![kind];
    body.extend(cstr(name));
    message(tag, &body)
}

/// Sync.
pub fn sync() -> Vec<u8> {
    message(b'S', &[])
}

/// Flush.
pub fn flush() -> Vec<u8> {
    message(b'H', &[])
}

/// Query: a simple-protocol query.
pub fn query(sql: &str) -> Vec<u8> {
    message(b'Q', &cstr(sql))
}

/// Terminate.
pub fn terminate() -> Vec<u8> {
    message(b'X', &[])
}

/// A connection speaking the protocol by hand: [`Raw::send`] writes messages as given,
/// [`Raw::next`] and friends read the replies one message at a time.
pub struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
    auth: i32,
}

impl Raw {
    /// Connects to `127.0.0.1:port` and logs in as `user` to `database`, answering the
    /// authentication pgdog asks for: none (trust), cleartext or md5 with `password`. Reads up
    /// to the first ReadyForQuery; panics on an ErrorResponse or another authentication method.
    pub async fn login(port: u16, user: &str, password: &str, database: &str) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("cannot connect to port {port}: {e}"));
        let mut raw = Raw {
            stream,
            buf: Vec::new(),
            auth: 0,
        };
        let mut body = PROTOCOL_VERSION.to_be_bytes().to_vec();
        for s in ["user", user, "database", database, ""] {
            body.extend(cstr(s));
        }
        let mut startup = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        startup.extend(body);
        raw.stream.write_all(&startup).await.unwrap();
        loop {
            let (tag, body) = raw.next().await;
            match tag {
                b'R' => {
                    let code = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                    match code {
                        0 => continue,
                        3 => raw.send(&[message(b'p', &cstr(password))]).await,
                        5 => {
                            let salt = [body[4], body[5], body[6], body[7]];
                            let stored = pgdog::auth::md5::password_hash(user, password);
                            let response = pgdog::auth::md5::salted_response(&stored, salt);
                            raw.send(&[message(b'p', &cstr(&response))]).await;
                        }
                        other => panic!("unsupported authentication request {other}"),
                    }
                    raw.auth = code;
                }
                b'E' => panic!(
                    "login refused: {} {}",
                    error_code(&body),
                    String::from_utf8_lossy(&body)
                ),
                b'Z' => return raw,
                _ => {}
            }
        }
    }

    /// The authentication request code answered at login: 0 when none was asked (trust),
    /// 3 for cleartext, 5 for md5.
    pub fn auth(&self) -> i32 {
        self.auth
    }

    /// Writes `messages` back to back in one write.
    pub async fn send(&mut self, messages: &[Vec<u8>]) {
        self.stream.write_all(&messages.concat()).await.unwrap();
    }

    /// The next message, or `None` when the server closed the connection. Panics if nothing
    /// arrives within 10 s.
    pub async fn try_next(&mut self) -> Option<Message> {
        loop {
            if self.buf.len() >= 5 {
                let len = i32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]])
                    as usize;
                if self.buf.len() > len {
                    let tag = self.buf[0];
                    let body = self.buf[5..1 + len].to_vec();
                    self.buf.drain(..1 + len);
                    return Some((tag, body));
                }
            }
            let mut chunk = [0u8; 8192];
            let n = tokio::time::timeout(READ_TIMEOUT, self.stream.read(&mut chunk))
                .await
                .expect("no reply within 10 s")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next message; panics when the server closed the connection.
    pub async fn next(&mut self) -> Message {
        self.try_next().await.expect("connection closed")
    }

    /// Messages up to and including the first one with type byte `tag`.
    pub async fn until(&mut self, tag: u8) -> Vec<Message> {
        let mut seen = Vec::new();
        loop {
            let message = self.next().await;
            let done = message.0 == tag;
            seen.push(message);
            if done {
                return seen;
            }
        }
    }

    /// Every message until the server closes the connection.
    pub async fn until_closed(&mut self) -> Vec<Message> {
        let mut seen = Vec::new();
        while let Some(message) = self.try_next().await {
            seen.push(message);
        }
        seen
    }
}

/// The type bytes of `messages` as a string, e.g. `"1tT"`.
pub fn tags(messages: &[Message]) -> String {
    messages.iter().map(|(t, _)| *t as char).collect()
}

/// The SQLSTATE of an ErrorResponse (or NoticeResponse) body, `""` if it has none.
pub fn error_code(body: &[u8]) -> String {
    let mut fields = body.split(|b| *b == 0);
    fields
        .find(|f| f.first() == Some(&b'C'))
        .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
        .unwrap_or_default()
}

/// The values of a DataRow body (`None` for NULL).
pub fn values(body: &[u8]) -> Vec<Option<Vec<u8>>> {
    let count = i16::from_be_bytes([body[0], body[1]]) as usize;
    let mut at = 2;
    let mut out = Vec::new();
    for _ in 0..count {
        let len = i32::from_be_bytes([body[at], body[at + 1], body[at + 2], body[at + 3]]);
        at += 4;
        if len < 0 {
            out.push(None);
        } else {
            out.push(Some(body[at..at + len as usize].to_vec()));
            at += len as usize;
        }
    }
    out
}

/// Name, type OID and format code of each column of a RowDescription body.
pub fn columns(body: &[u8]) -> Vec<(String, u32, i16)> {
    let count = i16::from_be_bytes([body[0], body[1]]) as usize;
    let mut at = 2;
    let mut out = Vec::new();
    for _ in 0..count {
        let end = at + body[at..].iter().position(|b| *b == 0).unwrap();
        let name = String::from_utf8_lossy(&body[at..end]).into_owned();
        at = end + 1;
        let oid = u32::from_be_bytes([body[at + 6], body[at + 7], body[at + 8], body[at + 9]]);
        let format = i16::from_be_bytes([body[at + 16], body[at + 17]]);
        at += 18;
        out.push((name, oid, format));
    }
    out
}

/// The first value of every DataRow in `messages`, as text; panics on NULL.
pub fn data_row_text(messages: &[Message]) -> Vec<String> {
    messages
        .iter()
        .filter(|(t, _)| *t == b'D')
        .map(|(_, body)| {
            let value = values(body).into_iter().next().flatten();
            let value = value.expect("a DataRow whose first value is not NULL");
            String::from_utf8_lossy(&value).into_owned()
        })
        .collect()
}
