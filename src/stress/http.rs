//! The stress tool as an HTTP load generator for any server: `socklab-stress http://HOST:PORT/PATH`, with
//! `-X METHOD`, `-H 'Name: value'`, `--body` and `--close-each`, as wrk, hey, oha or `ab` are pointed at a URL.
//!
//! What it can check of a server it knows nothing about is what HTTP/1.1 itself promises (RFC 9112): every
//! response is read by its own framing ([`ResponseReader`]: the status line and headers, then a body of
//! `Content-Length` bytes, or chunked, or none for `HEAD`, `204` and `304`, or up to the close), and its status
//! must be the status of the server's own first answer to the same request ([`first_answer`], asked before
//! the load). A response that cannot be framed is a wrong reply and its connection is closed (the stream is
//! out of step after it); a response with another status is a wrong reply on a connection that goes on. When
//! the first answer is, byte for byte but its `Date`, what socklab's own `http` service sends, the server is
//! socklab and every response is checked that strictly instead (the usual path, `payload.rs`).
//!
//! A response that says `Connection: close` (or an HTTP/1.0 one that does not ask to be kept alive, or one
//! whose body runs to the close) ends its connection: the connection is opened again and the requests it still
//! had in flight, which the server said it would not answer, are sent again on the new one. So a server that
//! closes after every response (`--close-each` asks for that: one connection per request, like `ab` without
//! `-k`) makes a slower run, not a failed one.
//!
//! What it cannot check is refused before anything is sent, with the reason: `https://` (no TLS here),
//! `CONNECT` and `Upgrade` (the connection stops being HTTP), a request body other than `--body` (a
//! `Transfer-Encoding` or `Content-Length` header of one's own), a first answer that is `101` or not HTTP/1.x.
//!
//! The reader keeps nothing per response but a few counters; a head that arrives in pieces is gathered in one
//! buffer per connection, sized once: reading a response allocates nothing.
//!
//! Walk-through: `docs/client-and-stress.md` (Any HTTP server).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::net::interrupted;
use crate::service::Service;

/// The registry's service whose servers a URL names (`http://`): a URL's server is socklab if its first
/// answer is what this service sends. `None` only if no listed service speaks HTTP.
pub fn socklab_service() -> Option<Service> {
    Service::ALL
        .iter()
        .copied()
        .find(|service| service.url_scheme() == Some("http"))
}

/// The largest response head (status line and headers) the reader takes: nginx's default for requests is
/// 8 KiB, socklab's 32 KiB.
pub const MAX_HEAD: usize = 64 * 1024;

/// The most header fields a response may have.
const MAX_HEADERS: usize = 100;

/// What the load sends: one request, made once from the URL and the flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpTarget {
    /// The URL as given, for the report.
    pub url: String,
    /// The host to connect to (brackets of an IPv6 literal removed) and the port.
    pub host: String,
    pub port: u16,
    /// The `Host` field: the URL's authority.
    pub authority: String,
    /// The request target: the URL's path and query, `/` at least.
    pub path: String,
    pub method: String,
    /// Extra header fields, each `(name, value)`, in the order given.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// A connection per request: `Connection: close` on every request.
    pub close_each: bool,
}

impl HttpTarget {
    /// Parses `http://HOST[:PORT][/PATH][?QUERY]` (a `#fragment` is not sent, as browsers do not send it).
    pub fn parse(url: &str) -> Result<HttpTarget, String> {
        let scheme_end = url
            .find("://")
            .ok_or_else(|| format!("{url:?} is not a URL: give http://HOST:PORT/PATH"))?;
        let scheme = &url[..scheme_end];
        if scheme.eq_ignore_ascii_case("https") {
            return Err(format!(
                "{url}: https is not supported: socklab-stress speaks plain HTTP/1.1 (TLS would need a library \
                 this project does not carry); give an http:// URL"
            ));
        }
        if !scheme.eq_ignore_ascii_case("http") {
            return Err(format!("{url}: only http:// URLs are supported"));
        }
        let rest = &url[scheme_end + 3..];
        let rest = rest.split('#').next().unwrap_or_default();
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(authority_end);
        if authority.contains('@') {
            return Err(format!(
                "{url}: user names in URLs are not supported; send an Authorization header with -H"
            ));
        }
        let (host, port) = split_authority(authority)
            .ok_or_else(|| format!("{url}: the host is missing or its port is not 1 to 65535"))?;
        let path = match target {
            "" => "/".to_string(),
            t if t.starts_with('?') => format!("/{t}"),
            t => t.to_string(),
        };
        if let Some(b) = path.bytes().find(|&b| b <= b' ' || b >= 0x7f) {
            return Err(format!(
                "{url}: the path holds {:?}, which a request target may not: percent-encode it",
                char::from(b)
            ));
        }
        Ok(HttpTarget {
            url: url.to_string(),
            host,
            port,
            authority: authority.to_string(),
            path,
            method: "GET".into(),
            headers: Vec::new(),
            body: Vec::new(),
            close_each: false,
        })
    }

    /// The server's address: the host resolved, its first address.
    pub fn resolve(&self) -> Result<SocketAddr, String> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {}: {e}", self.host))?
            .next()
            .ok_or_else(|| format!("{} resolves to no address", self.host))
    }

    /// Adds `-H 'Name: value'`.
    pub fn add_header(&mut self, field: &str) -> Result<(), String> {
        let (name, value) = field
            .split_once(':')
            .ok_or_else(|| format!("-H {field:?}: give a header as 'Name: value'"))?;
        let value = value.trim_matches([' ', '\t']);
        if name.is_empty() || !name.bytes().all(is_token) {
            return Err(format!("-H {field:?}: {name:?} is not a header name"));
        }
        if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(format!(
                "-H {field:?}: a header value may not hold CR, LF or NUL"
            ));
        }
        self.headers.push((name.to_string(), value.to_string()));
        Ok(())
    }

    /// Rejects a request whose responses could not be checked, with the reason.
    pub fn validate(&self) -> Result<(), String> {
        if self.method.is_empty() || !self.method.bytes().all(is_token) {
            return Err(format!("-X {:?} is not a method", self.method));
        }
        if self.method.eq_ignore_ascii_case("CONNECT") {
            return Err("-X CONNECT: a successful CONNECT turns the connection into a tunnel, and nothing after \
                        it can be checked as HTTP"
                .into());
        }
        for (name, value) in &self.headers {
            let refused = if name.eq_ignore_ascii_case("content-length") {
                Some("--body sets Content-Length itself")
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                Some("the request body is --body, sent with a Content-Length; a chunked or otherwise encoded \
                      body cannot be sent")
            } else if name.eq_ignore_ascii_case("upgrade") {
                Some("a protocol switch (101) ends HTTP on the connection, and what follows cannot be checked")
            } else if self.close_each && name.eq_ignore_ascii_case("connection") {
                Some("--close-each sends Connection: close itself")
            } else {
                None
            };
            if let Some(why) = refused {
                return Err(format!("-H '{name}: {value}': {why}"));
            }
        }
        Ok(())
    }

    /// Whether the request is a `HEAD`, whose responses have no body whatever their headers say.
    pub fn is_head(&self) -> bool {
        self.method.eq_ignore_ascii_case("HEAD")
    }

    /// The request's bytes: the line, `Host` (unless given), the headers given, `Content-Length` for a body
    /// (and for the methods that expect one), `Connection: close` with `--close-each`, then the body.
    pub fn request(&self) -> Vec<u8> {
        let mut r = format!("{} {} HTTP/1.1\r\n", self.method, self.path);
        let given = |n: &str| self.headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(n));
        if !given("host") {
            r.push_str(&format!("Host: {}\r\n", self.authority));
        }
        for (name, value) in &self.headers {
            r.push_str(&format!("{name}: {value}\r\n"));
        }
        let wants_length = ["POST", "PUT", "PATCH"]
            .iter()
            .any(|m| self.method.eq_ignore_ascii_case(m));
        if !self.body.is_empty() || wants_length {
            r.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        if self.close_each {
            r.push_str("Connection: close\r\n");
        }
        r.push_str("\r\n");
        let mut bytes = r.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// `HOST`, `HOST:PORT`, `[V6]` or `[V6]:PORT` (port 80 when none): the host without brackets, the port.
fn split_authority(authority: &str) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => 80,
        Some(p) => p.parse::<u16>().ok().filter(|&p| p > 0)?,
    };
    (!host.is_empty()).then(|| (host.to_string(), port))
}

/// A byte a token (a method, a header name) may hold: RFC 9110's `tchar`.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// One response read whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// The connection ends after it: `Connection: close`, HTTP/1.0 without keep-alive, or a body that runs to
    /// the close.
    pub closes: bool,
}

/// Why bytes are not a response, and where in the bytes given the reader saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub why: String,
    pub at: usize,
}

impl Fault {
    fn new(why: impl Into<String>, at: usize) -> Fault {
        Fault {
            why: why.into(),
            at,
        }
    }
}

/// Where in a chunked body the reader is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    /// The size line: the size so far, its hex digits, and whether an extension (after `;`) is being skipped.
    Size { size: u64, digits: u8, ext: bool },
    /// Bytes of chunk data left.
    Data(u64),
    /// The CRLF after a chunk's data; `cr` once its CR has come.
    DataEnd { cr: bool },
    /// Trailer fields after the last chunk, to the empty line; `len` of the current line.
    Trailer { len: usize },
}

/// How the body of the response being read ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Body {
    Length(u64),
    Chunked(Chunk),
    UntilClose,
}

/// Reads responses one after another from the bytes of one connection, in whatever pieces they come.
#[derive(Debug)]
pub struct ResponseReader {
    /// A head that came in pieces; empty between responses. Its capacity is taken once.
    head: Vec<u8>,
    /// The body being read, once its head is; `None` while reading a head.
    body: Option<Body>,
    response: Response,
    head_request: bool,
}

/// What one look at the bytes found.
type Step = Result<(usize, Option<Response>), Fault>;

impl ResponseReader {
    /// A reader for the responses to `HEAD` requests if `head_request`; `capacity` bytes kept for heads that
    /// come in pieces (0 for a connection that reads none).
    pub fn new(head_request: bool, capacity: usize) -> ResponseReader {
        ResponseReader {
            head: Vec::with_capacity(capacity.min(MAX_HEAD)),
            body: None,
            response: Response {
                status: 0,
                closes: false,
            },
            head_request,
        }
    }

    /// Forgets a response begun: for a new connection.
    pub fn reset(&mut self) {
        self.head.clear();
        self.body = None;
    }

    /// Whether the stream stopped inside a response.
    pub fn mid_response(&self) -> bool {
        self.body.is_some() || !self.head.is_empty()
    }

    /// Reads from `data` up to the end of one response: how many bytes it took, and the response if one
    /// ended there. Takes at least one byte of any non-empty `data`, so a caller loops until `data` is used.
    pub fn feed(&mut self, data: &[u8]) -> Step {
        match self.body {
            None => self.feed_head(data),
            Some(Body::Length(left)) => {
                let n = (data.len() as u64).min(left);
                self.body = Some(Body::Length(left - n));
                Ok((n as usize, (n == left).then(|| self.end())))
            }
            Some(Body::UntilClose) => Ok((data.len(), None)),
            Some(Body::Chunked(chunk)) => self.feed_chunked(chunk, data),
        }
    }

    /// At the end of the stream: the response it ends (a body that runs to the close), nothing (between
    /// responses), or a fault (a response cut short).
    pub fn eof(&mut self) -> Result<Option<Response>, Fault> {
        match self.body {
            Some(Body::UntilClose) => Ok(Some(self.end())),
            None if self.head.is_empty() => Ok(None),
            _ => Err(Fault::new(
                "the connection closed in the middle of a response",
                0,
            )),
        }
    }

    fn end(&mut self) -> Response {
        self.body = None;
        self.response
    }

    fn feed_head(&mut self, data: &[u8]) -> Step {
        if self.head.is_empty() {
            return match parse_head(data, self.head_request) {
                Err(why) => Err(Fault::new(why, 0)),
                Ok(Some(head)) => Ok(self.start(head)),
                Ok(None) if data.len() > MAX_HEAD => Err(Fault::new(too_long(), 0)),
                Ok(None) => {
                    self.head.extend_from_slice(data);
                    Ok((data.len(), None))
                }
            };
        }
        let before = self.head.len();
        let take = data.len().min(MAX_HEAD + 1 - before.min(MAX_HEAD));
        self.head.extend_from_slice(&data[..take]);
        match parse_head(&self.head, self.head_request) {
            Err(why) => Err(Fault::new(why, 0)),
            Ok(Some(head)) => {
                self.head.clear();
                // The head was not whole in the bytes before, so it ends in the ones just added.
                let used = head.len.saturating_sub(before).max(1);
                let (_, done) = self.start(head);
                Ok((used, done))
            }
            Ok(None) if self.head.len() > MAX_HEAD => Err(Fault::new(too_long(), 0)),
            Ok(None) => Ok((take, None)),
        }
    }

    /// A head was read whole (`head.len` bytes of the stream, counted from where it began).
    fn start(&mut self, head: Head) -> (usize, Option<Response>) {
        self.response = head.response;
        match head.body {
            // An interim response (100 Continue): the final one follows.
            _ if head.interim => (head.len, None),
            None => (head.len, Some(self.response)),
            Some(Body::Length(0)) => (head.len, Some(self.response)),
            Some(body) => {
                self.body = Some(body);
                (head.len, None)
            }
        }
    }

    fn feed_chunked(&mut self, mut chunk: Chunk, data: &[u8]) -> Step {
        let mut i = 0;
        while i < data.len() {
            if let Chunk::Data(left) = chunk {
                // Chunk data in bulk: nothing in it is looked at.
                let n = ((data.len() - i) as u64).min(left);
                i += n as usize;
                chunk = if n == left {
                    Chunk::DataEnd { cr: false }
                } else {
                    Chunk::Data(left - n)
                };
                continue;
            }
            let b = data[i];
            i += 1;
            chunk = match chunk {
                Chunk::Size { size, digits, ext } => match b {
                    b'\n' if digits == 0 => return Err(Fault::new("a chunk with no size", i - 1)),
                    b'\n' if size == 0 => Chunk::Trailer { len: 0 },
                    b'\n' => Chunk::Data(size),
                    b'\r' => chunk,
                    _ if ext => chunk,
                    b';' | b' ' | b'\t' => Chunk::Size {
                        size,
                        digits,
                        ext: true,
                    },
                    _ => {
                        let Some(v) = (b as char).to_digit(16) else {
                            return Err(Fault::new("a chunk size that is not hex", i - 1));
                        };
                        if digits == 15 {
                            return Err(Fault::new("a chunk size too large to be true", i - 1));
                        }
                        Chunk::Size {
                            size: size * 16 + u64::from(v),
                            digits: digits + 1,
                            ext,
                        }
                    }
                },
                Chunk::DataEnd { cr } => match b {
                    b'\r' if !cr => Chunk::DataEnd { cr: true },
                    b'\n' => Chunk::Size {
                        size: 0,
                        digits: 0,
                        ext: false,
                    },
                    _ => return Err(Fault::new("chunk data not followed by CRLF", i - 1)),
                },
                Chunk::Trailer { len } => match b {
                    b'\n' if len == 0 => return Ok((i, Some(self.end()))),
                    b'\n' => Chunk::Trailer { len: 0 },
                    b'\r' => chunk,
                    _ if len >= MAX_HEAD => return Err(Fault::new(too_long(), i - 1)),
                    _ => Chunk::Trailer { len: len + 1 },
                },
                Chunk::Data(_) => chunk,
            };
        }
        self.body = Some(Body::Chunked(chunk));
        Ok((i, None))
    }
}

fn too_long() -> String {
    format!(
        "a response head (or trailer) longer than {} KiB",
        MAX_HEAD / 1024
    )
}

/// A response head read whole.
struct Head {
    len: usize,
    response: Response,
    /// `None`: no body.
    body: Option<Body>,
    /// 1xx other than 101: another head follows.
    interim: bool,
}

/// Parses a response head at the start of `bytes`: `Ok(None)` if it is not all there yet.
fn parse_head(bytes: &[u8], head_request: bool) -> Result<Option<Head>, String> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut fields);
    let len = match parsed.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(format!(
                "a response with more than {MAX_HEADERS} header fields"
            ))
        }
        Err(e) => return Err(format!("not an HTTP/1.x response head ({e})")),
    };
    let status = parsed.code.unwrap_or(0);
    let http10 = parsed.version == Some(0);
    if status == 101 {
        return Err("101 Switching Protocols: the connection stops being HTTP".into());
    }
    let (mut length, mut chunked, mut encoded) = (None::<u64>, false, false);
    let (mut close, mut keep_alive) = (false, false);
    for field in parsed.headers.iter() {
        let value = std::str::from_utf8(field.value).unwrap_or("").trim();
        if field.name.eq_ignore_ascii_case("content-length") {
            let n: u64 = value
                .parse()
                .map_err(|_| format!("Content-Length {value:?} is not a length"))?;
            if length.is_some_and(|l| l != n) {
                return Err("two different Content-Length fields".into());
            }
            length = Some(n);
        } else if field.name.eq_ignore_ascii_case("transfer-encoding") {
            encoded = true;
            // Only the last coding says how the body ends.
            chunked = value
                .rsplit(',')
                .map(str::trim)
                .find(|c| !c.is_empty())
                .is_some_and(|c| c.eq_ignore_ascii_case("chunked"));
        } else if field.name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                close |= token.eq_ignore_ascii_case("close");
                keep_alive |= token.eq_ignore_ascii_case("keep-alive");
            }
        }
    }
    // RFC 9112 6.3, in its order.
    let interim = (100..200).contains(&status);
    let body = if head_request || interim || status == 204 || status == 304 {
        None
    } else if chunked {
        Some(Body::Chunked(Chunk::Size {
            size: 0,
            digits: 0,
            ext: false,
        }))
    } else if encoded {
        Some(Body::UntilClose)
    } else if let Some(n) = length {
        Some(Body::Length(n))
    } else {
        Some(Body::UntilClose)
    };
    let closes = close || (http10 && !keep_alive) || body == Some(Body::UntilClose);
    Ok(Some(Head {
        len,
        response: Response { status, closes },
        body,
        interim,
    }))
}

/// The server's answer to `request` on a connection of its own, read by its framing within `timeout`: its
/// bytes and what it was. What the load then checks every response against.
pub fn first_answer(
    addr: SocketAddr,
    request: &[u8],
    head_request: bool,
    timeout: Duration,
) -> io::Result<(Vec<u8>, Response)> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(request)?;
    let deadline = Instant::now() + timeout;
    let mut reader = ResponseReader::new(head_request, MAX_HEAD);
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let cannot = |why: String| io::Error::new(io::ErrorKind::InvalidData, why);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the server's first answer was not whole within {timeout:?} ({} bytes came)",
                    answer.len()
                ),
            ));
        }
        stream.set_read_timeout(Some(left))?;
        let n = match stream.read(&mut buf) {
            Ok(n) => n,
            Err(e) if interrupted(&e) => continue,
            Err(e) if crate::net::timed_out(&e) => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return match reader.eof() {
                Ok(Some(response)) => Ok((answer, response)),
                Ok(None) if answer.is_empty() => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection without answering the first request",
                )),
                Ok(None) => Err(cannot(
                    "the server closed the connection after an interim (1xx) response and before its answer"
                        .into(),
                )),
                Err(fault) => Err(cannot(format!("the server's first answer: {}", fault.why))),
            };
        }
        let mut data = &buf[..n];
        while !data.is_empty() {
            let (used, done) = reader
                .feed(data)
                .map_err(|f| cannot(format!("the server's first answer: {}", f.why)))?;
            answer.extend_from_slice(&data[..used]);
            data = &data[used..];
            if let Some(response) = done {
                return Ok((answer, response));
            }
            if answer.len() > 64 * 1024 * 1024 {
                return Err(cannot("the server's first answer is over 64 MiB".into()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `stream` to a reader in pieces of `piece` bytes; the responses read, or the first fault.
    fn read_all(stream: &[u8], piece: usize, head_request: bool) -> Result<Vec<Response>, Fault> {
        let mut reader = ResponseReader::new(head_request, 64);
        let mut out = Vec::new();
        for mut data in stream.chunks(piece) {
            while !data.is_empty() {
                let (n, done) = reader.feed(data)?;
                assert!(n > 0, "no progress");
                data = &data[n..];
                out.extend(done);
            }
        }
        out.extend(reader.eof()?);
        Ok(out)
    }

    const OK: Response = Response {
        status: 200,
        closes: false,
    };

    #[test]
    fn every_framing_is_read_whatever_the_pieces() {
        let stream = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello\
            HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n\
            HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n\
            HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n\
            HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n\
            HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx\
            HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi";
        let expected = vec![
            OK,
            OK,
            Response {
                status: 204,
                closes: false,
            },
            Response {
                status: 304,
                closes: false,
            },
            Response {
                status: 404,
                closes: false,
            },
            OK,
            Response {
                status: 200,
                closes: true,
            },
        ];
        for piece in [1, 2, 3, 7, 64, stream.len()] {
            assert_eq!(
                read_all(stream, piece, false).unwrap(),
                expected,
                "pieces of {piece}"
            );
        }
    }

    #[test]
    fn head_has_no_body_and_a_body_to_the_close_ends_with_it() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n";
        assert_eq!(read_all(head, 5, true).unwrap(), vec![OK, OK]);
        let to_close = b"HTTP/1.1 200 OK\r\n\r\nall of it, until the close";
        assert_eq!(
            read_all(to_close, 4, false).unwrap(),
            vec![Response {
                status: 200,
                closes: true
            }]
        );
        let http10 = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi";
        assert_eq!(
            read_all(http10, 3, false).unwrap(),
            vec![Response {
                status: 200,
                closes: true
            }],
            "HTTP/1.0 closes unless kept alive"
        );
    }

    #[test]
    fn what_is_not_a_response_is_a_fault_never_a_panic() {
        let cases: [&[u8]; 8] = [
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel",
            b"HELLO WORLD\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhiX",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
        ];
        for case in cases {
            for piece in [1, 4, case.len()] {
                assert!(
                    read_all(case, piece, false).is_err(),
                    "{}",
                    case.escape_ascii()
                );
            }
        }
        let endless = vec![b'a'; MAX_HEAD + 10];
        let mut long = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        long.extend_from_slice(&endless);
        assert!(read_all(&long, 1000, false).is_err());
        assert!(read_all(&long, long.len(), false).is_err());
    }

    #[test]
    fn any_bytes_in_any_pieces_end_in_responses_or_a_fault_never_a_panic() {
        // Pieces of real responses, shuffled, cut and mixed with noise: whatever comes, each feed makes
        // progress and the reader ends in responses or a fault.
        let parts: [&[u8]; 9] = [
            b"HTTP/1.1 200 OK\r\n",
            b"Content-Length: 3\r\n",
            b"Transfer-Encoding: chunked\r\n",
            b"\r\n",
            b"abc",
            b"3\r\nabc\r\n0\r\n\r\n",
            b"HTTP/1.0 204 No\r\n\r\n",
            b"\xff\x00\n",
            b"ffffffff;x\r\n",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..3_000 {
            let mut stream = Vec::new();
            for _ in 0..(next() % 12) {
                stream.extend_from_slice(parts[(next() % parts.len() as u64) as usize]);
            }
            let piece = 1 + (next() % 17) as usize;
            let _ = read_all(&stream, piece, next() % 5 == 0);
        }
    }

    #[test]
    fn urls_headers_and_requests() {
        let t = HttpTarget::parse("http://127.0.0.1:8080/a/b?c=d#frag").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("127.0.0.1", 8080, "/a/b?c=d")
        );
        assert_eq!(t.authority, "127.0.0.1:8080");
        let t = HttpTarget::parse("HTTP://[::1]").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.path.as_str()), ("::1", 80, "/"));
        assert_eq!(HttpTarget::parse("http://h?q").unwrap().path, "/?q");
        for bad in [
            "https://x/",
            "ftp://x/",
            "x:80",
            "http://:80/",
            "http://x:0/",
            "http://x:99999/",
            "http://u@x/",
            "http://x/a b",
            "http://[::1/",
        ] {
            assert!(HttpTarget::parse(bad).is_err(), "{bad}");
        }
        assert!(HttpTarget::parse("https://x/").unwrap_err().contains("TLS"));
        let mut t = HttpTarget::parse("http://localhost:8080/x").unwrap();
        t.method = "POST".into();
        t.add_header("X-One: 1 ").unwrap();
        t.body = b"{}".to_vec();
        t.close_each = true;
        t.validate().unwrap();
        assert_eq!(
            t.request(),
            b"POST /x HTTP/1.1\r\nHost: localhost:8080\r\nX-One: 1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
        );
        assert!(t.add_header("no colon").is_err());
        assert!(t.add_header("Bad Name: x").is_err());
        for refused in [
            "Content-Length: 3",
            "Transfer-Encoding: chunked",
            "Upgrade: h2c",
            "Connection: keep-alive",
        ] {
            let mut r = t.clone();
            r.add_header(refused).unwrap();
            assert!(r.validate().is_err(), "{refused}");
        }
        let mut connect = t.clone();
        connect.method = "CONNECT".into();
        assert!(connect.validate().is_err());
        let mut host = HttpTarget::parse("http://127.0.0.1/").unwrap();
        host.add_header("Host: example.org").unwrap();
        assert_eq!(
            host.request(),
            b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n"
        );
    }
}
