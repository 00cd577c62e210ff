//! The wire protocol edge: SSL/GSS negotiation, TLS, cancel requests, and malformed input.

use std::time::Duration;

use integration::{sqlstate, Setup};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn startup_packet(user: &str, database: &str) -> Vec<u8> {
    let mut body = 196608i32.to_be_bytes().to_vec();
    for (k, v) in [("user", user), ("database", database)] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut packet = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    packet.extend_from_slice(&body);
    packet
}

fn special_request(code: i32) -> Vec<u8> {
    let mut packet = 8i32.to_be_bytes().to_vec();
    packet.extend_from_slice(&code.to_be_bytes());
    packet
}

/// Reads until the server closes, returning everything it sent.
async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    out
}

/// The SQLSTATE in the first ErrorResponse of `bytes`.
fn error_code(bytes: &[u8]) -> Option<String> {
    let mut i = 0;
    while i + 5 <= bytes.len() {
        let tag = bytes[i];
        let len =
            i32::from_be_bytes([bytes[i + 1], bytes[i + 2], bytes[i + 3], bytes[i + 4]]) as usize;
        let body = bytes.get(i + 5..i + 1 + len)?;
        if tag == b'E' {
            let mut j = 0;
            while j < body.len() && body[j] != 0 {
                let field = body[j];
                let end = body[j + 1..].iter().position(|b| *b == 0)? + j + 1;
                if field == b'C' {
                    return Some(String::from_utf8_lossy(&body[j + 1..end]).into_owned());
                }
                j = end + 1;
            }
        }
        i += 1 + len;
    }
    None
}

/// Logs in as postgres over a raw socket with trust auth (the setup uses auth_type trust).
async fn raw_login(port: u16) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream
        .write_all(&startup_packet("postgres", "app"))
        .await
        .unwrap();
    // Read until ReadyForQuery ('Z' + len 5 + 'I').
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.ends_with(&[b'Z', 0, 0, 0, 5, b'I']) {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed during login: {seen:?}");
        seen.extend_from_slice(&buf[..n]);
    }
    stream
}

/// Sends `bytes` and expects an 08P01 error, then the connection closed.
async fn assert_protocol_violation(mut stream: TcpStream, bytes: &[u8], name: &str) {
    stream.write_all(bytes).await.unwrap();
    let reply = read_to_close(&mut stream).await;
    assert_eq!(
        error_code(&reply).as_deref(),
        Some("08P01"),
        "{name}: got {reply:?}"
    );
}

async fn assert_still_serving(setup: &Setup) {
    let client = setup.connect().await;
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_and_gss_requests_are_answered_n_without_tls() {
    let setup = Setup::new("auth_type = \"trust\"", "");
    for code in [80877103, 80877104] {
        let mut stream = TcpStream::connect(("127.0.0.1", setup.pgdog.port()))
            .await
            .unwrap();
        stream.write_all(&special_request(code)).await.unwrap();
        let mut answer = [0u8; 1];
        stream.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"N");
        // The client may continue in plain text on the same connection.
        stream
            .write_all(&startup_packet("postgres", "app"))
            .await
            .unwrap();
        let mut buf = [0u8; 9];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(buf[0], b'R', "AuthenticationOk expected");
    }
    // libpq with sslmode=prefer falls back to plain; sslmode=require fails clearly.
    let out = integration::tools::psql(
        setup.pgdog.port(),
        "postgres",
        "x",
        "app",
        &["-c", "select 1"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_when_configured() {
    let dir = std::env::temp_dir().join(format!("pgdog-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl is needed to make a test certificate");
    assert!(status.success());
    let general = format!(
        "tls_certificate = \"{}\"\ntls_private_key = \"{}\"",
        cert.display(),
        key.display()
    );
    let setup = Setup::new(&general, "");
    let url = format!(
        "host=127.0.0.1 port={} user=postgres password=postgres dbname=app sslmode=require",
        setup.pgdog.port()
    );
    let out = std::process::Command::new(integration::tools::pg_tool("psql"))
        .args(["-X", "-A", "-t", &url, "-c", "select 'over tls'"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "over tls");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_request_reaches_the_running_query() {
    let setup = Setup::new("default_pool_size = 2", "");
    let client = setup.connect().await;
    let token = client.cancel_token();
    let query = tokio::spawn(async move { client.query("SELECT pg_sleep(30)", &[]).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let result = tokio::time::timeout(Duration::from_secs(10), query)
        .await
        .unwrap()
        .unwrap();
    let err = result.expect_err("the query should have been cancelled");
    assert_eq!(sqlstate(&err).as_deref(), Some("57014"));
    // A cancel with an unknown key is ignored and breaks nothing.
    let mut stream = TcpStream::connect(("127.0.0.1", setup.pgdog.port()))
        .await
        .unwrap();
    let mut packet = 16i32.to_be_bytes().to_vec();
    packet.extend_from_slice(&80877102i32.to_be_bytes());
    packet.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2]);
    stream.write_all(&packet).await.unwrap();
    read_to_close(&mut stream).await;
    assert_still_serving(&setup).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_get_08p01_and_only_that_connection_closes() {
    let setup = Setup::new("auth_type = \"trust\"", "");
    let port = setup.pgdog.port();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("unknown message type", b"Y\0\0\0\x04".to_vec()),
        ("length below 4", b"Q\0\0\0\x02".to_vec()),
        ("oversized length", b"Q\x7f\xff\xff\xff".to_vec()),
        ("negative length", b"Q\xff\xff\xff\xf0".to_vec()),
        ("Sync with a body", b"S\0\0\0\x05x".to_vec()),
        ("Query without NUL", b"Q\0\0\0\x07abc".to_vec()),
        (
            "Parse with wrong type count",
            b"P\0\0\0\x0ds\0select\0\0\x05".to_vec(),
        ),
        ("Describe bad target", b"D\0\0\0\x07Xab\0".to_vec()),
        ("password message after login", b"p\0\0\0\x08abc\0".to_vec()),
    ];
    for (name, bytes) in cases {
        assert_protocol_violation(raw_login(port).await, &bytes, name).await;
    }
    // Bad startup packets.
    for (name, bytes) in [
        ("startup length too big", 100_000i32.to_be_bytes().to_vec()),
        ("startup length too small", 2i32.to_be_bytes().to_vec()),
    ] {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        assert_protocol_violation(stream, &bytes, name).await;
    }
    // A message cut short by a disconnect.
    let mut stream = raw_login(port).await;
    stream.write_all(b"Q\0\0\0\x64SELECT").await.unwrap();
    drop(stream);
    // A startup packet cut short.
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream
        .write_all(&startup_packet("postgres", "app")[..10])
        .await
        .unwrap();
    drop(stream);
    assert_still_serving(&setup).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_during_scram_is_refused() {
    let setup = Setup::new("", "");
    let mut stream = TcpStream::connect(("127.0.0.1", setup.pgdog.port()))
        .await
        .unwrap();
    stream
        .write_all(&startup_packet("postgres", "app"))
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let n = stream.read(&mut buf).await.unwrap();
    assert_eq!(buf[0], b'R');
    assert!(n > 9);
    // SASLInitialResponse with a client-first-message that is not SCRAM.
    let mut body = b"SCRAM-SHA-256\0".to_vec();
    body.extend_from_slice(&5i32.to_be_bytes());
    body.extend_from_slice(b"hello");
    let mut msg = vec![b'p'];
    msg.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    msg.extend_from_slice(&body);
    stream.write_all(&msg).await.unwrap();
    let reply = read_to_close(&mut stream).await;
    assert_eq!(error_code(&reply).as_deref(), Some("08P01"), "{reply:?}");
    assert_still_serving(&setup).await;
}
