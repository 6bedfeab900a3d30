//! A small HTTP/1.1 server on std::net: bounded request heads, bodies only by Content-Length,
//! socket timeouts, a cap on connections, and no body is ever read unless the handler asks.
//!
//! Why not an HTTP crate: tiny_http 0.12 (the small synchronous one) drains an unread request
//! body by allocating the size the client declared (its EqualReader's Drop; upstream PR #290), so
//! one `Content-Length: 100000000000` aborts the appliance, and it sets no socket timeouts; the
//! async servers bring a runtime the appliance does not need. All the console needs fits here.

use std::borrow::Cow;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A connection: plain TCP (loopback), or TLS over TCP (the console beyond this machine).
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>),
}

impl Stream {
    /// The TCP socket underneath (timeouts, shutdown).
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }

    /// Ends the connection: a TLS close notification first, then the socket.
    fn close(&mut self) {
        if let Stream::Tls(s) = self {
            s.conn.send_close_notify();
            let _ = s.flush();
        }
        let _ = self.tcp().shutdown(Shutdown::Both);
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// Request line plus headers; browsers send 1–3 KiB, cookies included.
const MAX_HEAD_BYTES: u64 = 16 * 1024;
const MAX_HEADERS: usize = 64;
const MAX_TARGET_BYTES: usize = 2048;
/// Open connections at once; each has its own thread. Far above what a few tablets need.
const MAX_CONNECTIONS: usize = 32;
/// A keep-alive connection that sends nothing for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest wait for the next bytes of a request head or body (slow Wi-Fi, not slow-loris).
const READ_TIMEOUT: Duration = Duration::from_secs(30);
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// An unread body up to this size is skipped so the connection can be reused; a larger one
/// closes the connection instead.
const DRAIN_LIMIT: u64 = 256 * 1024;
/// After answering a request whose body was not read, keep reading (and discarding) for a
/// moment before closing: closing a socket with unread data sends a reset, which can destroy the
/// response before the client reads it.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: u64 = 8 * 1024 * 1024;

/// One request: the head is parsed; the body is read only through `body()`.
pub struct Request<'a> {
    pub method: String,
    /// The request target as sent (origin form: path and query, never decoded).
    pub target: String,
    headers: Vec<(String, String)>,
    body: Body<'a>,
}

impl Request<'_> {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The declared body length (0 when there is none).
    pub fn content_length(&self) -> u64 {
        self.body.length
    }

    /// The body; reads at most `content_length()` bytes. Asking for it sends `100 Continue`
    /// to a client that waits for one.
    pub fn body(&mut self) -> &mut dyn Read {
        &mut self.body
    }

    /// The path part of the target.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The query part of the target (after `?`), if any.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }
}

struct Body<'a> {
    reader: &'a mut BufReader<Stream>,
    length: u64,
    read: u64,
    expect_continue: bool,
}

impl Read for Body<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.expect_continue {
            self.expect_continue = false;
            let stream = self.reader.get_mut();
            stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
            stream.flush()?;
        }
        let left = self.length - self.read;
        if left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.reader.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the client closed the connection before sending the whole body",
            ));
        }
        self.read += n as u64;
        Ok(n)
    }
}

/// A response; bodies are small (pages, JSON, PNGs) and sent whole with a Content-Length.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Cow<'static, [u8]>,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: impl Into<Cow<'static, [u8]>>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type", content_type.to_string())],
            body: body.into(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    fn has_header(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(name))
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        303 => "See Other",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// Answers a request; runs on the connection's thread.
pub type Handler = dyn Fn(&mut Request) -> Response + Send + Sync;
/// Builds the response for a request the server rejects before any handler sees it.
pub type ErrorPage = fn(u16, &str) -> Response;

/// A running server; `stop` (or dropping it) closes the listener and every open connection.
pub struct Server {
    pub addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<(u64, TcpStream)>>>,
    accept: Option<JoinHandle<()>>,
}

struct Shared {
    handler: Box<Handler>,
    /// TLS for every connection when set.
    tls: Option<Arc<rustls::ServerConfig>>,
    error_page: ErrorPage,
    stopping: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<(u64, TcpStream)>>>,
    count: AtomicUsize,
}

/// Starts accepting on `listener`: one thread accepts, one thread per connection answers; with
/// `tls`, every connection speaks TLS (a client speaking plain HTTP gets no answer).
pub fn start(
    listener: TcpListener,
    handler: Box<Handler>,
    error_page: ErrorPage,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> io::Result<Server> {
    let addr = listener.local_addr()?;
    let stopping = Arc::new(AtomicBool::new(false));
    let open = Arc::new(Mutex::new(Vec::new()));
    let shared = Arc::new(Shared {
        handler,
        tls,
        error_page,
        stopping: stopping.clone(),
        open: open.clone(),
        count: AtomicUsize::new(0),
    });
    let accept = std::thread::Builder::new()
        .name("web-accept".into())
        .spawn(move || accept_loop(listener, shared))?;
    Ok(Server {
        addr,
        stopping,
        open,
        accept: Some(accept),
    })
}

impl Server {
    /// Stops accepting, closes every open connection and waits for the accept thread. A handler
    /// that is busy (an analysis) finishes on its own thread; its answer goes nowhere.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(accept) = self.accept.take() else {
            return;
        };
        self.stopping.store(true, Ordering::SeqCst);
        // accept() has no timeout: a connection of our own wakes it up.
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        let _ = accept.join();
        if let Ok(open) = self.open.lock() {
            for (_, s) in open.iter() {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut next_id = 0u64;
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else {
            // Out of file descriptors and the like: back off instead of spinning.
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        if shared.count.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            let resp = (shared.error_page)(503, "too many open connections; try again shortly");
            if shared.tls.is_none() {
                let _ = write_response(&mut &stream, resp, false, true);
            }
            continue;
        }
        next_id += 1;
        let id = next_id;
        if let (Ok(clone), Ok(mut open)) = (stream.try_clone(), shared.open.lock()) {
            open.push((id, clone));
        }
        shared.count.fetch_add(1, Ordering::SeqCst);
        let conn_shared = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("web-conn".into())
            .spawn(move || {
                serve_connection(stream, &conn_shared);
                conn_shared.count.fetch_sub(1, Ordering::SeqCst);
                if let Ok(mut open) = conn_shared.open.lock() {
                    open.retain(|(i, _)| *i != id);
                }
            });
        if spawned.is_err() {
            shared.count.fetch_sub(1, Ordering::SeqCst);
            if let Ok(mut open) = shared.open.lock() {
                open.retain(|(i, _)| *i != id);
            }
        }
    }
}

/// Why a request head could not be used; each maps to a status code.
enum HeadError {
    /// The connection closed or timed out between requests: nothing to answer.
    Gone,
    Bad(u16, &'static str),
}

struct Head {
    method: String,
    target: String,
    http10: bool,
    headers: Vec<(String, String)>,
}

fn serve_connection(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let stream = match &shared.tls {
        Some(config) => match rustls::ServerConnection::new(config.clone()) {
            Ok(conn) => Stream::Tls(Box::new(rustls::StreamOwned::new(conn, stream))),
            Err(_) => return,
        },
        None => Stream::Plain(stream),
    };
    let mut reader = BufReader::with_capacity(16 * 1024, stream);
    loop {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let _ = reader.get_ref().tcp().set_read_timeout(Some(IDLE_TIMEOUT));
        let head = match read_head(&mut reader) {
            Ok(h) => h,
            Err(HeadError::Gone) => return,
            Err(HeadError::Bad(status, msg)) => {
                let page = (shared.error_page)(status, msg);
                let _ = write_response(reader.get_mut(), page, false, true);
                linger(&mut reader);
                return;
            }
        };
        let _ = reader.get_ref().tcp().set_read_timeout(Some(READ_TIMEOUT));
        let length = match body_length(&head.headers) {
            Ok(n) => n,
            Err((status, msg)) => {
                let page = (shared.error_page)(status, msg);
                let _ = write_response(reader.get_mut(), page, false, true);
                linger(&mut reader);
                return;
            }
        };
        let expect_continue = header(&head.headers, "expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
            && length > 0;
        let wants_close = head.http10
            || header(&head.headers, "connection")
                .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")));
        let is_head = head.method == "HEAD";
        let mut request = Request {
            method: head.method,
            target: head.target,
            headers: head.headers,
            body: Body {
                reader: &mut reader,
                length,
                read: 0,
                expect_continue,
            },
        };
        let response = (shared.handler)(&mut request);
        let unread = request.body.length - request.body.read;
        // A client that was never told to continue has not sent its body: nothing to skip.
        let never_sent = request.body.expect_continue;
        drop(request);
        let mut close = wants_close || shared.stopping.load(Ordering::SeqCst);
        if unread > 0 && !never_sent {
            if unread <= DRAIN_LIMIT && !close {
                let skipped = io::copy(&mut (&mut reader).take(unread), &mut io::sink());
                close = !matches!(skipped, Ok(n) if n == unread);
            } else {
                close = true;
            }
        } else if unread > 0 {
            close = true;
        }
        if write_response(reader.get_mut(), response, is_head, close).is_err() {
            return;
        }
        if close {
            if unread > 0 && !never_sent {
                linger(&mut reader);
            }
            reader.get_mut().close();
            return;
        }
    }
}

/// Reads what a client still sends after the answer (up to a few seconds and megabytes), so
/// the close that follows does not reset the connection before the answer is read.
fn linger(reader: &mut BufReader<Stream>) {
    if let Stream::Tls(s) = reader.get_mut() {
        s.conn.send_close_notify();
        let _ = s.flush();
    }
    let stream = reader.get_ref().tcp();
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(250)));
    let start = Instant::now();
    let mut buf = [0u8; 16 * 1024];
    let mut total = 0u64;
    while start.elapsed() < LINGER_TIME && total < LINGER_BYTES {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Reads one line of the head, counting it against the head's byte budget.
fn read_line(
    reader: &mut BufReader<Stream>,
    budget: &mut u64,
    first: bool,
) -> Result<String, HeadError> {
    let mut line = Vec::new();
    let n = match (&mut *reader).take(*budget).read_until(b'\n', &mut line) {
        Ok(n) => n,
        // A timeout or reset before the first byte of a request is a client that went away.
        Err(_) if first => return Err(HeadError::Gone),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            return Err(HeadError::Bad(
                408,
                "the request head did not arrive in time",
            ))
        }
        Err(_) => return Err(HeadError::Gone),
    };
    if n == 0 {
        return Err(if first {
            HeadError::Gone
        } else {
            HeadError::Bad(400, "the request head ended early")
        });
    }
    *budget -= n as u64;
    if line.last() != Some(&b'\n') {
        return Err(HeadError::Bad(431, "the request head is too large"));
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| HeadError::Bad(400, "the request head is not valid text"))
}

fn read_head(reader: &mut BufReader<Stream>) -> Result<Head, HeadError> {
    let mut budget = MAX_HEAD_BYTES;
    let mut line = read_line(reader, &mut budget, true)?;
    // RFC 9112 §2.2: ignore at least one empty line before the request line.
    if line.is_empty() {
        line = read_line(reader, &mut budget, true)?;
    }
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Bad(400, "malformed request line"));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(HeadError::Bad(400, "malformed request method"));
    }
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => {
            return Err(HeadError::Bad(
                505,
                "only HTTP/1.0 and HTTP/1.1 are spoken here",
            ))
        }
    };
    if target.len() > MAX_TARGET_BYTES {
        return Err(HeadError::Bad(414, "the request target is too long"));
    }
    if !target.starts_with('/') || !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(HeadError::Bad(
            400,
            "the request target must be a plain path",
        ));
    }
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader, &mut budget, false)?;
        if line.is_empty() {
            break;
        }
        if headers.len() == MAX_HEADERS {
            return Err(HeadError::Bad(431, "too many request headers"));
        }
        // Folded lines (obsolete) and names with spaces are how request smuggling starts.
        let Some((name, value)) = line.split_once(':') else {
            return Err(HeadError::Bad(400, "malformed request header"));
        };
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(HeadError::Bad(400, "malformed request header name"));
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
    Ok(Head {
        method: method.to_string(),
        target: target.to_string(),
        http10,
        headers,
    })
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The body length from Content-Length; chunked bodies are refused (browsers, curl and
/// scripts all send a length for uploads).
fn body_length(headers: &[(String, String)]) -> Result<u64, (u16, &'static str)> {
    if header(headers, "transfer-encoding").is_some() {
        return Err((411, "send the body with a Content-Length, not chunked"));
    }
    let mut length = None;
    for (k, v) in headers {
        if k.eq_ignore_ascii_case("content-length") {
            if v.is_empty() || v.len() > 19 || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err((400, "malformed Content-Length"));
            }
            let n: u64 = v.parse().map_err(|_| (400, "malformed Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err((400, "conflicting Content-Length headers"));
            }
            length = Some(n);
        }
    }
    Ok(length.unwrap_or(0))
}

fn write_response(
    stream: &mut impl Write,
    mut response: Response,
    head_only: bool,
    close: bool,
) -> io::Result<()> {
    if close && !response.has_header("Connection") {
        response = response.with_header("Connection", "close");
    }
    let mut out = Vec::with_capacity(512);
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\n",
        response.status,
        reason(response.status)
    );
    for (k, v) in &response.headers {
        // Header values are built here, never copied from a request, but a stray line break
        // would still split the response.
        let v: String = v.chars().filter(|c| *c != '\r' && *c != '\n').collect();
        let _ = write!(out, "{k}: {v}\r\n");
    }
    let _ = write!(out, "Content-Length: {}\r\n\r\n", response.body.len());
    stream.write_all(&out)?;
    if !head_only {
        stream.write_all(&response.body)?;
    }
    stream.flush()
}
