//! Extended-protocol flows of real drivers, spoken byte by byte: asyncpg-style Parse, Describe and
//! Flush before Sync, JDBC-style named statements, pipelined batches, and errors mid-pipeline,
//! all in transaction mode where every Sync may land on another server.

use std::time::Duration;

use integration::Setup;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A minimal protocol client: builds messages, reads replies as (tag, body).
struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
}

fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn parse(name: &str, sql: &str) -> Vec<u8> {
    let mut body = cstr(name);
    body.extend(cstr(sql));
    body.extend_from_slice(&0i16.to_be_bytes());
    message(b'P', &body)
}

fn describe_statement(name: &str) -> Vec<u8> {
    let mut body = vec![b'S'];
    body.extend(cstr(name));
    message(b'D', &body)
}

/// Bind with text parameters and text results.
fn bind(statement: &str, params: &[&str]) -> Vec<u8> {
    let mut body = cstr("");
    body.extend(cstr(statement));
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&(params.len() as i16).to_be_bytes());
    for p in params {
        body.extend_from_slice(&(p.len() as i32).to_be_bytes());
        body.extend_from_slice(p.as_bytes());
    }
    body.extend_from_slice(&0i16.to_be_bytes());
    message(b'B', &body)
}

fn execute() -> Vec<u8> {
    let mut body = cstr("");
    body.extend_from_slice(&0i32.to_be_bytes());
    message(b'E', &body)
}

fn close_statement(name: &str) -> Vec<u8> {
    let mut body = vec![b'S'];
    body.extend(cstr(name));
    message(b'C', &body)
}

fn sync() -> Vec<u8> {
    message(b'S', &[])
}

fn flush() -> Vec<u8> {
    message(b'H', &[])
}

impl Raw {
    /// Logs in as postgres to `app` (the setup uses trust auth).
    async fn login(port: u16) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut raw = Raw {
            stream,
            buf: Vec::new(),
        };
        let mut body = 196608i32.to_be_bytes().to_vec();
        for s in ["user", "postgres", "database", "app", ""] {
            body.extend(cstr(s));
        }
        let mut startup = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        startup.extend(body);
        raw.stream.write_all(&startup).await.unwrap();
        raw.until(b'Z').await;
        raw
    }

    async fn send(&mut self, messages: &[Vec<u8>]) {
        let bytes: Vec<u8> = messages.concat();
        self.stream.write_all(&bytes).await.unwrap();
    }

    async fn next(&mut self) -> (u8, Vec<u8>) {
        loop {
            if self.buf.len() >= 5 {
                let len = i32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]])
                    as usize;
                if self.buf.len() > len {
                    let tag = self.buf[0];
                    let body = self.buf[5..1 + len].to_vec();
                    self.buf.drain(..1 + len);
                    return (tag, body);
                }
            }
            let mut chunk = [0u8; 8192];
            let n = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut chunk))
                .await
                .expect("no reply within 10 s")
                .unwrap();
            assert!(n > 0, "connection closed");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads messages up to and including one with `tag`; returns all tags seen.
    async fn until(&mut self, tag: u8) -> Vec<(u8, Vec<u8>)> {
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
}

fn tags(messages: &[(u8, Vec<u8>)]) -> String {
    messages.iter().map(|(t, _)| *t as char).collect()
}

fn data_row_text(messages: &[(u8, Vec<u8>)]) -> Vec<String> {
    messages
        .iter()
        .filter(|(t, _)| *t == b'D')
        .map(|(_, body)| {
            let len = i32::from_be_bytes([body[2], body[3], body[4], body[5]]) as usize;
            String::from_utf8_lossy(&body[6..6 + len]).into_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncpg_style_parse_describe_flush_then_execute() {
    let setup = Setup::new("auth_type = \"trust\"\ndefault_pool_size = 2", "");
    let mut a = Raw::login(setup.pgdog.port()).await;
    let mut b = Raw::login(setup.pgdog.port()).await;
    // asyncpg prepares with Parse + Describe + Flush and reads the answers before any Sync.
    a.send(&[
        parse("__asyncpg_stmt_1__", "SELECT $1::int * 3"),
        describe_statement("__asyncpg_stmt_1__"),
        flush(),
    ])
    .await;
    assert_eq!(tags(&a.until(b'T').await), "1tT");
    a.send(&[sync()]).await;
    assert_eq!(tags(&a.until(b'Z').await), "Z");
    // Another client holds a transaction, so A's next transaction may run elsewhere.
    b.send(&[message(b'Q', &cstr("BEGIN"))]).await;
    b.until(b'Z').await;
    for i in 1..=5 {
        a.send(&[
            bind("__asyncpg_stmt_1__", &[&i.to_string()]),
            execute(),
            sync(),
        ])
        .await;
        let replies = a.until(b'Z').await;
        assert_eq!(tags(&replies), "2DCZ");
        assert_eq!(data_row_text(&replies), vec![(i * 3).to_string()]);
    }
    b.send(&[message(b'Q', &cstr("COMMIT"))]).await;
    b.until(b'Z').await;
    // The same statement name on another client is its own statement.
    b.send(&[
        parse("__asyncpg_stmt_1__", "SELECT 'b:' || $1"),
        bind("__asyncpg_stmt_1__", &["x"]),
        execute(),
        sync(),
    ])
    .await;
    let replies = b.until(b'Z').await;
    assert_eq!(data_row_text(&replies), vec!["b:x".to_string()]);
    a.send(&[bind("__asyncpg_stmt_1__", &["7"]), execute(), sync()])
        .await;
    assert_eq!(data_row_text(&a.until(b'Z').await), vec!["21".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_batch_with_an_error_skips_to_sync_and_recovers() {
    let setup = Setup::new("auth_type = \"trust\"\ndefault_pool_size = 1", "");
    let mut c = Raw::login(setup.pgdog.port()).await;
    c.send(&[
        parse("ok", "SELECT 1"),
        parse("bad", "SELECT * FROM no_such_table"),
        bind("ok", &[]),
        execute(),
        sync(),
    ])
    .await;
    // ParseComplete for "ok", then the error; the rest is skipped until Sync.
    let replies = c.until(b'Z').await;
    assert_eq!(tags(&replies), "1EZ");
    // "bad" never got prepared; "ok" did and works, on the next Sync, even after Close/re-Parse.
    c.send(&[
        bind("ok", &[]),
        execute(),
        close_statement("ok"),
        parse("ok", "SELECT 2"),
        bind("ok", &[]),
        execute(),
        sync(),
    ])
    .await;
    let replies = c.until(b'Z').await;
    assert_eq!(tags(&replies), "2DC312DCZ");
    assert_eq!(
        data_row_text(&replies),
        vec!["1".to_string(), "2".to_string()]
    );
    c.send(&[bind("bad", &[]), execute(), sync()]).await;
    let replies = c.until(b'Z').await;
    assert_eq!(tags(&replies), "EZ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jdbc_style_named_statements_across_many_clients() {
    // JDBC switches to named statements (S_1, S_2, ...) after a few executions; every client
    // uses the same names for different SQL.
    let setup = Setup::new("auth_type = \"trust\"\ndefault_pool_size = 2", "");
    let mut clients = Vec::new();
    for _ in 0..6 {
        clients.push(Raw::login(setup.pgdog.port()).await);
    }
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(&[
            parse("S_1", &format!("SELECT {i} + $1::int")),
            bind("S_1", &["100"]),
            execute(),
            sync(),
        ])
        .await;
        assert_eq!(
            data_row_text(&c.until(b'Z').await),
            vec![(100 + i).to_string()]
        );
    }
    for round in 0..10 {
        for (i, c) in clients.iter_mut().enumerate() {
            c.send(&[bind("S_1", &[&round.to_string()]), execute(), sync()])
                .await;
            assert_eq!(
                data_row_text(&c.until(b'Z').await),
                vec![(round + i).to_string()]
            );
        }
    }
}
