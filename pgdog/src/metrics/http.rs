//! The HTTP side of the endpoint: binding the listener, accepting connections (at most
//! [`MAX_CONNECTIONS`] at a time), reading and parsing the request head within its limits
//! ([`MAX_REQUEST_BYTES`], [`READ_TIMEOUT`]), and writing the response (the rendered metrics,
//! or an error status) before closing the connection.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use super::render::{render, CONTENT_TYPE};
use crate::state::PoolerState;

/// Largest request head (request line and headers) accepted, in bytes.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;

/// How long a client has to send its request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a client has to take the answer.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections served at once; more are closed right away.
pub const MAX_CONNECTIONS: usize = 64;

/// After answering, how long what the client still sends (e.g. a request body) is read and
/// dropped, so that closing does not reset the connection before the client read the answer.
const LINGER: Duration = Duration::from_secs(1);

/// Binds `general.host:general.openmetrics_port`, or returns `None` when no metrics port is
/// configured. The error names the address.
pub async fn bind(state: &PoolerState) -> std::io::Result<Option<TcpListener>> {
    let (host, port) = {
        let databases = state.databases();
        let general = &databases.config().config.general;
        match general.openmetrics_port {
            Some(port) => (general.host.clone(), port),
            None => return Ok(None),
        }
    };
    match TcpListener::bind((host.as_str(), port)).await {
        Ok(listener) => Ok(Some(listener)),
        Err(e) => Err(std::io::Error::new(
            e.kind(),
            format!("cannot listen for metrics on {host}:{port} (general.openmetrics_port): {e}"),
        )),
    }
}

/// Answers metrics requests on `listener` until the process exits (also during shutdown);
/// each connection is served in its own task.
pub async fn serve(listener: TcpListener, state: Arc<PoolerState>) {
    serve_with(listener, state, READ_TIMEOUT).await
}

/// [`serve`] with another read timeout (tests).
async fn serve_with(listener: TcpListener, state: Arc<PoolerState>, read_timeout: Duration) {
    if let Ok(addr) = listener.local_addr() {
        info!("serving metrics on http://{addr}/metrics");
    }
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    debug!("metrics: too many connections, closing the one from {peer}");
                    continue;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    handle(stream, &state, read_timeout).await;
                    drop(slot);
                });
            }
            Err(e) => {
                // Usually out of file descriptors: back off instead of spinning.
                warn!("metrics: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// What a request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// 200 with the metrics (`head`: headers only, for `HEAD`).
    Metrics { head: bool },
    /// 404.
    NotFound { head: bool },
    /// 405.
    MethodNotAllowed,
    /// 400.
    BadRequest,
    /// 431: the head is over [`MAX_REQUEST_BYTES`].
    TooLarge,
    /// 408: the head did not arrive within [`READ_TIMEOUT`].
    Timeout,
}

/// Reads one request, answers it and closes the connection.
async fn handle(mut stream: TcpStream, state: &PoolerState, read_timeout: Duration) {
    let answer = match tokio::time::timeout(read_timeout, read_request(&mut stream)).await {
        Ok(Some(answer)) => answer,
        Ok(None) => return,
        Err(_) => Answer::Timeout,
    };
    let response = response(answer, state);
    let write = async {
        stream.write_all(&response).await?;
        stream.shutdown().await
    };
    match tokio::time::timeout(WRITE_TIMEOUT, write).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            debug!("metrics: cannot send the answer: {e}");
            return;
        }
        Err(_) => {
            debug!("metrics: the client did not take the answer in time");
            return;
        }
    }
    let _ = tokio::time::timeout(LINGER, discard(&mut stream)).await;
}

/// Reads until the request head is complete and decides the answer; `None` when the client
/// closed (or failed) before sending anything.
async fn read_request(stream: &mut TcpStream) -> Option<Answer> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(n) => n,
            Err(e) => {
                debug!("metrics: read failed: {e}");
                return None;
            }
        };
        if n == 0 {
            return (!buf.is_empty()).then_some(Answer::BadRequest);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(answer) = examine(&buf) {
            return Some(answer);
        }
    }
}

/// The answer once `buf` (the bytes received so far) settles it, `None` while more is needed.
fn examine(buf: &[u8]) -> Option<Answer> {
    let line_end = buf.iter().position(|&b| b == b'\n');
    // Reject binary garbage (e.g. a Postgres startup packet) without waiting for more.
    let line = &buf[..line_end.unwrap_or(buf.len())];
    if line
        .iter()
        .any(|&b| !(b == b'\r' || b == b'\t' || (0x20..0x7f).contains(&b)))
    {
        return Some(Answer::BadRequest);
    }
    if line_end.is_some() {
        let line = String::from_utf8_lossy(line);
        match parse_request_line(line.trim_end_matches('\r')) {
            Err(bad) => return Some(bad),
            Ok(answer) => match head_end(buf) {
                Some(end) if end <= MAX_REQUEST_BYTES => return Some(answer),
                Some(_) => return Some(Answer::TooLarge),
                None => {}
            },
        }
    }
    (buf.len() >= MAX_REQUEST_BYTES).then_some(Answer::TooLarge)
}

/// Where the head ends (after the empty line), if it is complete.
fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Decides the answer from a request line (without its line ending): `Ok` with the answer for
/// a well-formed line, `Err` with 400 for a malformed one.
fn parse_request_line(line: &str) -> Result<Answer, Answer> {
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Answer::BadRequest);
    };
    let is_token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    if !is_token(method) || !matches!(version, "HTTP/1.1" | "HTTP/1.0") {
        return Err(Answer::BadRequest);
    }
    let path = match target.strip_prefix("http://") {
        // Absolute form: `http://host:port/path`.
        Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
        None if target.starts_with('/') => target,
        None => return Err(Answer::BadRequest),
    };
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let head = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Ok(Answer::MethodNotAllowed),
    };
    Ok(match path {
        "/" | "/metrics" => Answer::Metrics { head },
        _ => Answer::NotFound { head },
    })
}

/// The full HTTP response for `answer`.
fn response(answer: Answer, state: &PoolerState) -> Vec<u8> {
    let (status, content_type, body, head, extra) = match answer {
        Answer::Metrics { head } => ("200 OK", CONTENT_TYPE, render(state), head, ""),
        Answer::NotFound { head } => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found: metrics are at /metrics\n".to_string(),
            head,
            "",
        ),
        Answer::MethodNotAllowed => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "method not allowed: use GET\n".to_string(),
            false,
            "Allow: GET, HEAD\r\n",
        ),
        Answer::BadRequest => (
            "400 Bad Request",
            "text/plain; charset=utf-8",
            "bad request\n".to_string(),
            false,
            "",
        ),
        Answer::TooLarge => (
            "431 Request Header Fields Too Large",
            "text/plain; charset=utf-8",
            format!("request head over {MAX_REQUEST_BYTES} bytes\n"),
            false,
            "",
        ),
        Answer::Timeout => (
            "408 Request Timeout",
            "text/plain; charset=utf-8",
            "request not received in time\n".to_string(),
            false,
            "",
        ),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         {extra}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// Reads and drops what the client still sends, up to 64 KiB.
async fn discard(stream: &mut TcpStream) {
    let mut chunk = [0u8; 1024];
    let mut total = 0;
    while total < 64 * 1024 {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => total += n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::fixtures::{state, state_with, CONFIG, USERS};

    #[test]
    fn request_lines() {
        let metrics = Ok(Answer::Metrics { head: false });
        assert_eq!(parse_request_line("GET /metrics HTTP/1.1"), metrics);
        assert_eq!(parse_request_line("GET / HTTP/1.0"), metrics);
        assert_eq!(parse_request_line("GET /metrics?x=1 HTTP/1.1"), metrics);
        assert_eq!(
            parse_request_line("GET http://127.0.0.1:9090/metrics HTTP/1.1"),
            metrics
        );
        assert_eq!(
            parse_request_line("HEAD /metrics HTTP/1.1"),
            Ok(Answer::Metrics { head: true })
        );
        assert_eq!(
            parse_request_line("GET /other HTTP/1.1"),
            Ok(Answer::NotFound { head: false })
        );
        assert_eq!(
            parse_request_line("GET /metrics/ HTTP/1.1"),
            Ok(Answer::NotFound { head: false })
        );
        assert_eq!(
            parse_request_line("POST /metrics HTTP/1.1"),
            Ok(Answer::MethodNotAllowed)
        );
        assert_eq!(
            parse_request_line("DELETE /x HTTP/1.1"),
            Ok(Answer::MethodNotAllowed)
        );
        for garbage in [
            "",
            "GET",
            "GET /metrics",
            "GET /metrics HTTP/2",
            "GET  /metrics HTTP/1.1",
            "GET /metrics HTTP/1.1 extra",
            "G(T /metrics HTTP/1.1",
            "GET metrics HTTP/1.1",
        ] {
            assert_eq!(
                parse_request_line(garbage),
                Err(Answer::BadRequest),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn request_heads() {
        assert_eq!(examine(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"), None);
        assert_eq!(examine(b"GET /met"), None);
        assert_eq!(
            examine(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(Answer::Metrics { head: false })
        );
        assert_eq!(
            examine(b"GET /metrics HTTP/1.0\n\n"),
            Some(Answer::Metrics { head: false })
        );
        // A bad request line is answered without waiting for the rest.
        assert_eq!(examine(b"hello there\r\n"), Some(Answer::BadRequest));
        // Binary data (a Postgres startup packet) too.
        assert_eq!(
            examine(b"\0\0\0\x08\x04\xd2\x16\x2f"),
            Some(Answer::BadRequest)
        );
        let mut big = b"GET /metrics HTTP/1.1\r\n".to_vec();
        while big.len() < MAX_REQUEST_BYTES {
            big.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert_eq!(examine(&big), Some(Answer::TooLarge));
    }

    /// Starts `serve` on a free port and returns the address.
    async fn server(state: Arc<PoolerState>) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, state));
        addr
    }

    /// Sends `request` and returns everything the server answered.
    async fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
            .await
            .expect("no answer in time")
            .unwrap();
        String::from_utf8(answer).unwrap()
    }

    fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
        let head = response.split("\r\n\r\n").next()?;
        head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    #[tokio::test]
    async fn serves_metrics_over_http() {
        let state = state();
        let addr = server(state.clone()).await;

        let ok = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert_eq!(header(&ok, "content-type"), Some(CONTENT_TYPE));
        assert_eq!(header(&ok, "connection"), Some("close"));
        let body = ok.split_once("\r\n\r\n").unwrap().1;
        assert_eq!(
            header(&ok, "content-length"),
            Some(body.len().to_string().as_str())
        );
        assert!(body.contains("\npgdog_pool_transactions_total{"), "{body}");

        let root = exchange(addr, b"GET / HTTP/1.0\r\n\r\n").await;
        assert!(root.starts_with("HTTP/1.1 200 OK\r\n"), "{root}");

        let head = exchange(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.ends_with("\r\n\r\n"), "HEAD has no body: {head}");

        let missing = exchange(addr, b"GET /nope HTTP/1.1\r\n\r\n").await;
        assert!(
            missing.starts_with("HTTP/1.1 404 Not Found\r\n"),
            "{missing}"
        );

        let post = exchange(
            addr,
            b"POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
        )
        .await;
        assert!(
            post.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{post}"
        );
        assert_eq!(header(&post, "allow"), Some("GET, HEAD"));

        let garbage = exchange(addr, b"\0\0\0\x08\x04\xd2\x16\x2f").await;
        assert!(
            garbage.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{garbage}"
        );

        let big = vec![b'a'; MAX_REQUEST_BYTES + 100];
        let mut request = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        request.extend_from_slice(&big);
        let too_large = exchange(addr, &request).await;
        assert!(too_large.starts_with("HTTP/1.1 431 "), "{too_large}");

        // Still answering once shutdown began.
        state.begin_shutdown();
        let during = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
        assert!(during.starts_with("HTTP/1.1 200 OK\r\n"), "{during}");
        assert!(during.contains("\npgdog_shutting_down 1\n"), "{during}");
    }

    #[tokio::test]
    async fn a_silent_client_gets_408() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve_with(listener, state(), Duration::from_millis(200)));
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"GET /metrics HT").await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        let answer = String::from_utf8(answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    }

    #[tokio::test]
    async fn bind_uses_the_configured_port() {
        let free = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = CONFIG
            .replace(
                "openmetrics_port = 9930",
                &format!("openmetrics_port = {free}"),
            )
            .replace("[general]\n", "[general]\nhost = \"127.0.0.1\"\n");
        let listener = bind(&state_with(&config, USERS)).await.unwrap().unwrap();
        assert_eq!(listener.local_addr().unwrap().port(), free);
        // Taken now: the error names the address.
        let err = bind(&state_with(&config, USERS)).await.unwrap_err();
        assert!(
            err.to_string().contains(&format!("127.0.0.1:{free}")),
            "{err}"
        );

        let without = CONFIG.replace("openmetrics_port = 9930\n", "");
        assert!(bind(&state_with(&without, USERS)).await.unwrap().is_none());
    }
}
