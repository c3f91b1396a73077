//! The health probe: GET a path through the build's unix socket until it answers 2xx/3xx.
//! gunicorn reports ready before its workers have imported the app, so systemd's "active" alone
//! does not mean the build serves.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// `[health] accept`: the answers the gate takes as healthy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum Accept {
    /// 200-399.
    #[default]
    #[serde(rename = "2xx-3xx")]
    Success,
    /// Any answer below 500: the app answered, without a server error.
    #[serde(rename = "not-5xx")]
    NoServerError,
}

impl Accept {
    pub fn passes(self, status: u16) -> bool {
        match self {
            Accept::Success => (200..400).contains(&status),
            Accept::NoServerError => (100..500).contains(&status),
        }
    }
}

impl std::fmt::Display for Accept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Accept::Success => "2xx/3xx",
            Accept::NoServerError => "below 500",
        })
    }
}

/// One HTTP answer: status code and the start of the body.
#[derive(Debug, Clone, Serialize)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

/// Sends `GET path` over the unix socket and reads the whole answer (HTTP/1.0, so the server
/// closes the connection when done), all within `timeout`: one deadline for the connect, the
/// write and every read, so a server that trickles its answer cannot hold the probe longer.
pub fn get(socket: &Path, request: &Request, timeout: Duration) -> std::io::Result<Response> {
    Held::send(socket, request, Instant::now() + timeout, timeout, 0)?.answer()
}

/// A request on its connection, sent whole or but for its last line break (a server that accepted
/// the connection then waits for the rest: a worker that serves one connection at a time is held
/// by it).
struct Held {
    stream: UnixStream,
    deadline: Instant,
    timeout: Duration,
}

/// The bytes a held request keeps back: the empty line that ends its head.
const HELD_BACK: usize = 2;

impl Held {
    /// Connects and sends `request` but for its last `held_back` bytes, by `deadline`.
    fn send(
        socket: &Path,
        request: &Request,
        deadline: Instant,
        timeout: Duration,
        held_back: usize,
    ) -> std::io::Result<Held> {
        let mut held = Held { stream: connect(socket, deadline)?, deadline, timeout };
        let text = request.text();
        held.write(&text.as_bytes()[..text.len() - held_back])?;
        Ok(held)
    }

    fn left(&self) -> std::io::Result<Duration> {
        let now = Instant::now();
        if now >= self.deadline {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no complete answer within {}", seconds(self.timeout)),
            ));
        }
        Ok(self.deadline - now)
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let mut sent = 0;
        while sent < bytes.len() {
            self.stream.set_write_timeout(Some(self.left()?))?;
            match self.stream.write(&bytes[sent..]) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => self.left().map(|_| ())?,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Sends the rest of a request held back.
    fn release(&mut self) -> std::io::Result<()> {
        self.write(&b"\r\n"[..HELD_BACK])
    }

    /// Reads the whole answer.
    fn answer(mut self) -> std::io::Result<Response> {
        let mut raw = Vec::new();
        let mut buf = [0u8; 8192];
        while raw.len() < MAX_ANSWER {
            self.stream.set_read_timeout(Some(self.left()?))?;
            match self.stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n.min(MAX_ANSWER - raw.len())]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => self.left().map(|_| ())?,
                Err(e) => return Err(e),
            }
        }
        parse_response(&raw).ok_or_else(|| std::io::Error::other("not an HTTP response"))
    }
}

/// Warms `workers` workers of a server that passed its health check: as many requests at once,
/// each on its own connection and held back (its last line break unsent) until the server has
/// accepted every connection (`queued` says none waits any more) or `hold` passed, then all
/// finished. A server whose workers take one connection at a time (gunicorn's sync workers) thus
/// gives each connection to another worker, and each worker serves its first request (Django
/// loads its URLs and templates then) before the instance takes traffic. The answers, in order.
pub fn warm(
    socket: &Path,
    request: &Request,
    workers: usize,
    hold: Duration,
    timeout: Duration,
    queued: &dyn Fn() -> Result<Option<u32>>,
) -> Vec<std::io::Result<Response>> {
    let deadline = Instant::now() + timeout;
    let held: Vec<std::io::Result<Held>> =
        (0..workers).map(|_| Held::send(socket, request, deadline, timeout, HELD_BACK)).collect();
    let accepted_by = Instant::now() + hold;
    while Instant::now() < accepted_by {
        match queued() {
            Ok(Some(n)) if n > 0 => std::thread::sleep(Duration::from_millis(5)),
            // All accepted, or no way to know: finish them.
            _ => break,
        }
    }
    // Every request released before any answer is read: the workers answer side by side.
    let released: Vec<std::io::Result<Held>> =
        held.into_iter().map(|h| h.and_then(|mut h| h.release().map(|()| h))).collect();
    released.into_iter().map(|h| h.and_then(Held::answer)).collect()
}

/// One GET, as nginx sends it for the build's route: the full path and the route as
/// `SCRIPT_NAME` (gunicorn strips it from the path, as it does for nginx's requests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The build's route as a URL prefix, "" at `/` or without a route.
    pub script_name: String,
    /// The app's path, from `/`.
    pub path: String,
}

impl Request {
    /// The path on the wire: `<script_name><path>`.
    pub fn uri(&self) -> String {
        format!("{}{}", self.script_name, self.path)
    }

    fn text(&self) -> String {
        let prefix =
            if self.script_name.is_empty() { String::new() } else { format!("SCRIPT_NAME: {}\r\n", self.script_name) };
        format!(
            "GET {} HTTP/1.0\r\nHost: localhost\r\nUser-Agent: relctl-health\r\nAccept: */*\r\n{prefix}\r\n",
            self.uri()
        )
    }
}

/// How much of an answer is read.
const MAX_ANSWER: usize = 64 * 1024;

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
}

fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// Connects to the unix socket by `deadline`: a non-blocking connect, retried while the server's
/// backlog is full (EAGAIN), where a blocking one would wait for as long as the server does not
/// accept.
fn connect(socket: &Path, deadline: Instant) -> std::io::Result<UnixStream> {
    use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, UnixAddr};
    let addr = UnixAddr::new(socket).map_err(std::io::Error::from)?;
    let fd =
        socket::socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC, None)
            .map_err(std::io::Error::from)?;
    loop {
        match socket::connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr) {
            Ok(()) => break,
            Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::EAGAIN) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(nix::errno::Errno::EAGAIN) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the server accepts no connection (its backlog is full)",
                ));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let stream = UnixStream::from(fd);
    stream.set_nonblocking(false)?;
    Ok(stream)
}

fn parse_response(raw: &[u8]) -> Option<Response> {
    let text = String::from_utf8_lossy(raw);
    let status_line = text.lines().next()?;
    let mut parts = status_line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    let status = parts.next()?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Some(Response { status, body: body.chars().take(500).collect() })
}

/// How many answers of HTTP 500 in a row fail the gate before its timeout: an app that answers
/// its first requests with an internal error is broken, not starting.
pub const ERRORS_IN_A_ROW: u32 = 5;

/// Probes until an answer `accept` passes, `timeout`, or [`ERRORS_IN_A_ROW`] answers of 500; the
/// error says what the last attempt saw (the app's words, escaped for the terminal).
pub fn wait_healthy(socket: &Path, request: &Request, accept: Accept, timeout: Duration) -> Result<Response> {
    let deadline = Instant::now() + timeout;
    let mut errors = 0;
    let what = match request.script_name.as_str() {
        "" => format!("GET {}", request.uri()),
        s => format!("GET {} (SCRIPT_NAME: {s})", request.uri()),
    };
    let seen = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let seen = match get(socket, request, Duration::from_secs(5).min(left.max(Duration::from_millis(100)))) {
            Ok(r) if accept.passes(r.status) => return Ok(r),
            Ok(r) => {
                errors = if r.status == 500 { errors + 1 } else { 0 };
                format!("HTTP {}: {}", r.status, crate::report::terminal_safe(&first_line(&r.body)))
            }
            Err(e) => {
                errors = 0;
                e.to_string()
            }
        };
        if errors >= ERRORS_IN_A_ROW {
            bail!(
                "health check {what} through {} answered with a server error {errors} times in a row: {seen}",
                socket.display()
            );
        }
        if Instant::now() >= deadline {
            break seen;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    bail!(
        "health check {what} through {} did not answer {accept} within {}s; last answer: {seen}",
        socket.display(),
        timeout.as_secs()
    )
}

fn first_line(body: &str) -> String {
    body.lines().find(|l| !l.trim().is_empty()).unwrap_or("").chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    fn at(path: &str) -> Request {
        Request { script_name: String::new(), path: path.into() }
    }

    #[test]
    fn parses_status_and_body() {
        let r = parse_response(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\r\ndown\n").unwrap();
        assert_eq!(r.status, 503);
        assert_eq!(r.body, "down\n");
        assert!(parse_response(b"garbage").is_none());
    }

    /// A server that answers one request with `status`; returns its socket (in `dir`) and what
    /// it was sent.
    fn serve(dir: &tempfile::TempDir, status: &'static str) -> (std::path::PathBuf, std::thread::JoinHandle<String>) {
        let sock = dir.path().join("s.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let handle = std::thread::spawn(move || {
            let (mut c, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let n = c.read(&mut buf).unwrap();
            c.write_all(status.as_bytes()).unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        (sock, handle)
    }

    #[test]
    fn healthy_answer_returns_and_request_is_a_get_of_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let (sock, h) = serve(&dir, "HTTP/1.0 200 OK\r\n\r\nok");
        let r = wait_healthy(&sock, &at("/health"), Accept::Success, Duration::from_secs(5)).unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "ok"));
        assert!(h.join().unwrap().starts_with("GET /health HTTP/1.0\r\n"));
    }

    #[test]
    fn the_request_is_the_one_nginx_sends_for_the_route() {
        let dir = tempfile::tempdir().unwrap();
        let (sock, h) = serve(&dir, "HTTP/1.0 404 Not Found\r\n\r\nnope");
        let request = Request { script_name: "/dev".into(), path: "/".into() };
        let r = wait_healthy(&sock, &request, Accept::NoServerError, Duration::from_secs(5)).unwrap();
        assert_eq!(r.status, 404, "a 404 at the root is the app's choice");
        let sent = h.join().unwrap();
        assert!(sent.starts_with("GET /dev/ HTTP/1.0\r\n"), "{sent}");
        assert!(sent.contains("\r\nSCRIPT_NAME: /dev\r\n"), "{sent}");
        assert!(!at("/x").text().contains("SCRIPT_NAME"), "no route, no header");
    }

    #[test]
    fn accept_draws_the_line() {
        for (status, success, no_server_error) in
            [(200, true, true), (302, true, true), (401, false, true), (404, false, true), (499, false, true)]
        {
            assert_eq!(Accept::Success.passes(status), success, "{status}");
            assert_eq!(Accept::NoServerError.passes(status), no_server_error, "{status}");
        }
        for status in [500, 502, 503, 504, 599] {
            assert!(!Accept::Success.passes(status) && !Accept::NoServerError.passes(status), "{status}");
        }
    }

    /// A server that answers every request with `answer`.
    fn serve_all(dir: &tempfile::TempDir, answer: &'static [u8]) -> std::path::PathBuf {
        let sock = dir.path().join("all.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        std::thread::spawn(move || {
            for c in listener.incoming() {
                let mut c = c.unwrap();
                let mut buf = [0u8; 1024];
                let _request = c.read(&mut buf).unwrap();
                c.write_all(answer).unwrap();
            }
        });
        sock
    }

    /// Workers as gunicorn's sync ones: each takes one connection at a time and reads the whole
    /// request before it answers with its number.
    fn sync_workers(
        dir: &tempfile::TempDir,
        n: usize,
    ) -> (std::path::PathBuf, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let sock = dir.path().join("workers.sock");
        let listener = std::sync::Arc::new(UnixListener::bind(&sock).unwrap());
        let accepted = std::sync::Arc::new(AtomicUsize::new(0));
        for worker in 0..n {
            let (listener, accepted) = (std::sync::Arc::clone(&listener), std::sync::Arc::clone(&accepted));
            std::thread::spawn(move || loop {
                let (mut c, _) = listener.accept().unwrap();
                accepted.fetch_add(1, Ordering::SeqCst);
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.ends_with(b"\r\n\r\n") {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => request.extend_from_slice(&buf[..k]),
                    }
                }
                let _gone = c.write_all(format!("HTTP/1.0 200 OK\r\n\r\nworker {worker}").as_bytes());
            });
        }
        (sock, accepted)
    }

    #[test]
    fn warming_gives_each_worker_a_request() {
        use std::sync::atomic::Ordering;
        let dir = tempfile::tempdir().unwrap();
        let (sock, accepted) = sync_workers(&dir, 3);
        let queued = || Ok(Some(3u32.saturating_sub(accepted.load(Ordering::SeqCst) as u32)));
        let answers = warm(&sock, &at("/health"), 3, Duration::from_secs(5), Duration::from_secs(5), &queued);
        let mut served: Vec<String> = answers.into_iter().map(|a| a.unwrap().body).collect();
        served.sort();
        assert_eq!(served, ["worker 0", "worker 1", "worker 2"], "one request each");
    }

    #[test]
    fn internal_errors_in_a_row_fail_before_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let sock = serve_all(&dir, b"HTTP/1.0 500 Internal Server Error\r\n\r\n<h1>Server Error (500)</h1>\n");
        let request = Request { script_name: "/dev".into(), path: "/".into() };
        let t = Instant::now();
        let err = wait_healthy(&sock, &request, Accept::NoServerError, Duration::from_secs(30)).unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(5), "took {:?}", t.elapsed());
        assert_eq!(
            err.to_string(),
            format!(
                "health check GET /dev/ (SCRIPT_NAME: /dev) through {} answered with a server error 5 times in a row: HTTP 500: <h1>Server Error (500)</h1>",
                sock.display()
            )
        );
        // A 503 (starting, overloaded) is waited out until the timeout instead.
        let dir = tempfile::tempdir().unwrap();
        let sock = serve_all(&dir, b"HTTP/1.0 503 Service Unavailable\r\n\r\nwarming up\n");
        let t = Instant::now();
        let err = wait_healthy(&sock, &at("/"), Accept::NoServerError, Duration::from_secs(2)).unwrap_err();
        assert!(t.elapsed() >= Duration::from_secs(2), "took {:?}", t.elapsed());
        assert!(err.to_string().contains("did not answer below 500 within 2s"), "{err}");
    }

    #[test]
    fn error_answer_fails_after_timeout_naming_status_and_body() {
        let dir = tempfile::tempdir().unwrap();
        let (sock, h) = serve(&dir, "HTTP/1.0 500 Internal Server Error\r\n\r\nboom\n");
        let t = Instant::now();
        let err = wait_healthy(&sock, &at("/health"), Accept::Success, Duration::from_secs(1)).unwrap_err().to_string();
        assert!(t.elapsed() >= Duration::from_secs(1), "it kept trying until the timeout");
        assert!(h.join().unwrap().starts_with("GET /health "));
        // The server answered once and is gone: the last attempt was refused. The message names
        // the path, the socket, the timeout and that last answer.
        let expected = format!(
            "health check GET /health through {} did not answer 2xx/3xx within 1s; last answer: Connection refused",
            sock.display()
        );
        assert!(err.starts_with(&expected), "{err}");
    }

    #[test]
    fn the_last_answer_seen_names_status_and_body() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("s.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        std::thread::spawn(move || {
            for c in listener.incoming() {
                let mut c = c.unwrap();
                let mut buf = [0u8; 1024];
                let _request = c.read(&mut buf).unwrap();
                c.write_all(b"HTTP/1.0 503 Service Unavailable\r\n\r\n\ndatabase unreachable\nmore\n").unwrap();
            }
        });
        let err = wait_healthy(&sock, &at("/health"), Accept::Success, Duration::from_secs(1)).unwrap_err().to_string();
        assert!(err.ends_with("last answer: HTTP 503: database unreachable"), "{err}");
    }

    #[test]
    fn a_trickling_answer_is_cut_off_at_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("s.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        std::thread::spawn(move || {
            let (mut c, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _request = c.read(&mut buf).unwrap();
            for b in b"HTTP/1.0 200 OK\r\n\r\n".iter().cycle().take(200) {
                if c.write_all(&[*b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let t = Instant::now();
        let err = get(&sock, &at("/health"), Duration::from_millis(500)).unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(1), "took {:?}", t.elapsed());
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert_eq!(err.to_string(), "no complete answer within 0.5s");
    }

    #[test]
    fn the_apps_answer_reaches_the_message_escaped() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("s.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        std::thread::spawn(move || {
            for c in listener.incoming() {
                let mut c = c.unwrap();
                let mut buf = [0u8; 1024];
                let _request = c.read(&mut buf).unwrap();
                c.write_all(b"HTTP/1.0 500 Oops\r\n\r\n\x1b]0;pwned\x07down\x1b[2K\r\xc2\x9b1A\n").unwrap();
            }
        });
        let err =
            wait_healthy(&sock, &at("/health"), Accept::Success, Duration::from_millis(300)).unwrap_err().to_string();
        assert!(err.ends_with(r"last answer: HTTP 500: \u{1b}]0;pwned\u{7}down\u{1b}[2K\r\u{9b}1A"), "{err}");
    }
}
