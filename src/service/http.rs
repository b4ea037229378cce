//! `--service http`: the tutorials' web server, grown up. Every request, whatever its method and target, is
//! answered `200 OK` with the body `Hello, World`, as nginx answers `return 200 "Hello, World"`, and the
//! framing is done to RFC 9112: keep-alive, pipelining, request bodies, and the errors. Pure bytes, no I/O,
//! like every service; TCP only (HTTP over UDP is QUIC, another protocol). Walk-through: `docs/11-http.md`.
//!
//! # Why HTTP needs framing and `upper` does not
//! The tutorial's server reads one `recv` of up to 1,024 bytes, answers, and closes. But a `recv` is not a
//! request: a request may arrive in several reads, several requests in one read (pipelining), and a request
//! may carry a body whose bytes must not be mistaken for the next request. A server and every cache or
//! proxy in front of it must agree exactly where each request ends, or one client's body becomes someone
//! else's request (request smuggling). So the rules below are followed to the letter.
//!
//! # The request
//! - The request line and header fields are parsed by `httparse`, into a fixed array of [`MAX_HEADERS`]
//!   headers (more is `431`), never copied when a whole header section is inside one read. A section that
//!   is not complete yet is kept, up to `--max-header` bytes (more is `431`); it must be complete within
//!   `--header-timeout` of its first byte (else `408`). A connection that is simply silent between requests
//!   is the idle timeout's business and gets no response.
//! - `httparse` is stricter than the RFC requires in places (whitespace before a colon, obs-fold and bare
//!   CR are errors) and more lenient in one: it accepts bytes 0x80–0xFF in the target, which RFC 3986 does
//!   not, so `check_target` refuses them.
//! - Versions: HTTP/1.0 and HTTP/1.1. `httparse` refuses any other, so HTTP/1.2 (which the RFC would have a
//!   server treat as 1.1) gets `505` like HTTP/2's preface and HTTP/3: treating it as 1.1 would need a
//!   hand-written parser of the request line.
//! - `Host`: exactly one in HTTP/1.1, at most one in HTTP/1.0 (else `400`).
//! - The body: `Content-Length` (digits only; a list or repeated lines of one identical value are taken as
//!   one; anything else, a sign, or a value past `u64` is `400`) or `Transfer-Encoding` ending in `chunked`
//!   (chunk extensions and trailers accepted). Both at once is `400`; codings not ending in `chunked` are
//!   `400`; a coding this server does not know before `chunked` is `501`. `Transfer-Encoding` in HTTP/1.0
//!   cannot be trusted: the request is answered and the connection closed. The body is read and discarded.
//! - `Expect: 100-continue` (HTTP/1.1, with a body) gets `100 Continue` when the header section is complete
//!   and no byte of the body has arrived with it.
//!
//! # The response
//! `200 OK`, `Server: socklab`, `Date` (the turn's time, formatted once a second: [`Clock::http_date`]),
//! `Content-Type: text/plain`, `Content-Length: 12`, then `Hello, World` (no body for `HEAD`). HTTP/1.1
//! keeps the connection open unless the request said `Connection: close`; HTTP/1.0 closes unless it said
//! `Connection: keep-alive`, and then the response says `Connection: keep-alive`. A response after which the
//! server closes says `Connection: close`. An error is answered with its status, a one-line body, and
//! `Connection: close`; nothing after the bad request is read. Each response is written when its request,
//! body included, is complete, so every request in one read is answered in order, in one write.

use std::mem::MaybeUninit;
use std::time::{Duration, Instant};

use httparse::{Status as Parsed, EMPTY_HEADER};

use super::clock::{Clock, HTTP_DATE_LEN};
use super::example::{Example, Rng};
use super::protocol::{Datagrams, Growth, Protocol, ServiceOptions, Step, StreamSession};

/// Header fields one request may have: the size of the array `httparse` fills, on the stack (2 KiB).
/// hyper allows 100 by default; a browser sends about 15.
pub const MAX_HEADERS: usize = 64;

/// What every request gets.
const BODY: &[u8] = b"Hello, World";

/// The interim response to `Expect: 100-continue`.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// The shortest request that is complete, `A * HTTP/1.0` and an empty line with bare newlines: each
/// response needs at least this many bytes of input, which bounds how far replies outgrow requests.
const MIN_REQUEST: usize = b"A * HTTP/1.0\n\n".len();

/// A connection keeps the buffer of an unfinished header section no larger than this once it is done
/// with it; a bigger one is given back.
const KEEP_CAPACITY: usize = 4096;

/// The status codes this server sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    BadRequest,
    RequestTimeout,
    HeaderFieldsTooLarge,
    NotImplemented,
    VersionNotSupported,
}

impl Status {
    const fn line(self) -> &'static [u8] {
        match self {
            Status::Ok => b"HTTP/1.1 200 OK\r\n",
            Status::BadRequest => b"HTTP/1.1 400 Bad Request\r\n",
            Status::RequestTimeout => b"HTTP/1.1 408 Request Timeout\r\n",
            Status::HeaderFieldsTooLarge => b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
            Status::NotImplemented => b"HTTP/1.1 501 Not Implemented\r\n",
            Status::VersionNotSupported => b"HTTP/1.1 505 HTTP Version Not Supported\r\n",
        }
    }

    const fn body(self) -> &'static [u8] {
        match self {
            Status::Ok => BODY,
            Status::BadRequest => b"Bad Request\n",
            Status::RequestTimeout => b"Request Timeout\n",
            Status::HeaderFieldsTooLarge => b"Request Header Fields Too Large\n",
            Status::NotImplemented => b"Not Implemented\n",
            Status::VersionNotSupported => b"HTTP Version Not Supported\n",
        }
    }

    /// Every status, for the bounds.
    const ALL: [Status; 6] = [
        Status::Ok,
        Status::BadRequest,
        Status::RequestTimeout,
        Status::HeaderFieldsTooLarge,
        Status::NotImplemented,
        Status::VersionNotSupported,
    ];
}

/// What follows the response's headers about the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Persistence {
    /// HTTP/1.1's default: say nothing.
    KeepAlive,
    /// HTTP/1.0 asked to keep the connection: say `Connection: keep-alive`.
    KeepAlive10,
    /// The server closes after this response: say `Connection: close`.
    Close,
}

/// The most bytes one response can take (an error's, with `Connection: keep-alive`'s length to spare).
const fn max_response() -> usize {
    let mut longest = 0;
    let mut i = 0;
    while i < Status::ALL.len() {
        let status = Status::ALL[i];
        let len = status.line().len() + status.body().len();
        if len > longest {
            longest = len;
        }
        i += 1;
    }
    longest
        + b"Server: socklab\r\n".len()
        + b"Date: \r\n".len()
        + HTTP_DATE_LEN
        + b"Content-Type: text/plain\r\n".len()
        + b"Content-Length: 99\r\n".len()
        + b"Connection: keep-alive\r\n".len()
        + b"\r\n".len()
}

/// The most bytes the answer to one request can take: its `100 Continue` and its response.
const MAX_ANSWER: usize = CONTINUE.len() + max_response();

/// The `http` service.
pub struct Http;

impl Protocol for Http {
    const NAME: &'static str = "http";
    const ABOUT: &'static str = "HTTP/1.1 done to RFC 9112: every request gets 200 OK and `Hello, World`, with \
        keep-alive, pipelining and request bodies (TCP only)";
    const DATAGRAMS: Option<Datagrams> = None;

    type Session = HttpSession;

    fn session(options: &ServiceOptions) -> HttpSession {
        HttpSession {
            max_header: options.max_header,
            header_timeout: options.header_timeout,
            held: Vec::new(),
            frame: Frame::Head,
            head_started: None,
            request: Request::default(),
            closed: false,
        }
    }

    /// Each response needs at least `MIN_REQUEST` (14) new bytes, except the one a held request's last bytes
    /// complete, and the one error a connection can get: those two are the fixed part.
    fn growth(_options: &ServiceOptions) -> Growth {
        Growth {
            per_byte: MAX_ANSWER.div_ceil(MIN_REQUEST),
            per_held: 0,
            fixed: 2 * MAX_ANSWER,
        }
    }

    fn max_held(options: &ServiceOptions) -> usize {
        options.max_header
    }

    fn stream_example(_options: &ServiceOptions, rng: &mut Rng) -> Example {
        let mut example = Example::default();
        let count = 1 + rng.below(6);
        for i in 0..count {
            let last = i + 1 == count;
            let (request, response, closes) = example_request(rng, last);
            example.request.extend_from_slice(&request);
            example.reply.extend_from_slice(&response);
            if closes {
                example.closes = true;
                break;
            }
        }
        example
    }

    fn datagram_example(_options: &ServiceOptions, _rng: &mut Rng) -> Option<Example> {
        None
    }

    /// `GET /NN…` naming the variant, its path padded so the request is `size` bytes (35 at least, the
    /// request with no padding; a request past `--max-header` gets `431`).
    fn load_request(variant: usize, size: usize) -> Vec<u8> {
        const REST: &[u8] = b" HTTP/1.1\r\nHost: socklab\r\n\r\n";
        let mut request = format!("GET /{:02}", variant % 100).into_bytes();
        let pad = size.saturating_sub(request.len() + REST.len());
        request.extend(std::iter::repeat_n(b'p', pad));
        request.extend_from_slice(REST);
        request
    }

    /// Replies are the same but for their `Date`, which is the time each was made.
    fn same_reply(expected: &[u8], got: &[u8]) -> bool {
        same_but_dates(expected, got)
    }
}

/// Whether `got` equals `expected` outside the value of every `Date` field `expected` has (a field name is
/// case-insensitive: hyper writes `date`).
fn same_but_dates(expected: &[u8], got: &[u8]) -> bool {
    const FIELD: &[u8] = b"\r\ndate: ";
    if expected.len() != got.len() {
        return false;
    }
    let mut from = 0;
    while let Some(at) = find_ignoring_case(&expected[from..], FIELD) {
        let value = from + at + FIELD.len();
        let end = (value + HTTP_DATE_LEN).min(expected.len());
        if expected[from..value] != got[from..value] {
            return false;
        }
        from = end;
    }
    expected[from..] == got[from..]
}

fn find_ignoring_case(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

/// One request of a stream example, and the response it must get, written out by hand here rather than by
/// the service, so the tests compare the service against an independent statement of the rules.
fn example_request(rng: &mut Rng, last: bool) -> (Vec<u8>, Vec<u8>, bool) {
    const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"];
    const TARGETS: &[&str] = &["/", "/index.html", "/a/b?c=d&e", "*", "/%7Euser", "http://socklab/x"];
    let method = *rng.pick(METHODS);
    let target = if method == "OPTIONS" {
        *rng.pick(TARGETS)
    } else {
        *rng.pick(&TARGETS[..5])
    };
    let http10 = rng.below(5) == 0;
    let mut request = format!(
        "{method} {target} HTTP/1.{}\r\n",
        if http10 { 0 } else { 1 }
    );
    if !http10 || rng.below(2) == 0 {
        request.push_str("Host: socklab\r\n");
    }
    if rng.below(3) == 0 {
        request.push_str("User-Agent: example/1.0\r\nAccept: */*\r\n");
    }
    // HTTP/1.0 keeps the connection only when it asks to; HTTP/1.1 unless it asks not to. Only the last
    // request of an example may end the connection.
    let closes = if http10 {
        if last && rng.below(2) == 0 {
            true
        } else {
            request.push_str("Connection: keep-alive\r\n");
            false
        }
    } else if last && rng.below(3) == 0 {
        request.push_str("Connection: close\r\n");
        true
    } else {
        false
    };
    let mut body = Vec::new();
    match rng.below(4) {
        0 => {
            let len = rng.below(300);
            request.push_str(&format!("Content-Length: {len}\r\n\r\n"));
            body.extend((0..len).map(|i| b'a' + (i % 26) as u8));
        }
        1 if !http10 => {
            request.push_str("Transfer-Encoding: chunked\r\n\r\n");
            for _ in 0..rng.below(4) {
                let len = 1 + rng.below(200);
                let ext = if rng.below(2) == 0 { ";name=value" } else { "" };
                body.extend_from_slice(format!("{len:x}{ext}\r\n").as_bytes());
                // Data that looks like a request must stay data.
                body.extend((0..len).map(|i| b"GET / HTTP/1.1\r\n\r\n"[i % 18]));
                body.extend_from_slice(b"\r\n");
            }
            body.extend_from_slice(b"0\r\n");
            if rng.below(2) == 0 {
                body.extend_from_slice(b"Trailer-Field: value\r\n");
            }
            body.extend_from_slice(b"\r\n");
        }
        _ => request.push_str("\r\n"),
    }
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(&body);
    let connection = match (closes, http10) {
        (true, _) => "Connection: close\r\n",
        (false, true) => "Connection: keep-alive\r\n",
        (false, false) => "",
    };
    let response = format!(
        "HTTP/1.1 200 OK\r\nServer: socklab\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\n\
         Content-Type: text/plain\r\nContent-Length: 12\r\n{connection}\r\n{}",
        if method == "HEAD" { "" } else { "Hello, World" }
    );
    (bytes, response.into_bytes(), closes)
}

/// What the stream is in the middle of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Frame {
    /// A request line and header section.
    Head,
    /// This many bytes of a `Content-Length` body.
    Body(u64),
    /// A chunk-size line.
    ChunkSize,
    /// This many bytes of chunk data.
    ChunkData(u64),
    /// The CRLF after chunk data; this many of its bytes seen.
    ChunkEnd(u8),
    /// The trailer section after the last chunk.
    Trailers,
}

/// How the current request's body is framed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum BodyFraming {
    #[default]
    None,
    Length(u64),
    Chunked,
}

/// What the response to the request under way depends on, decided from its header section.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Request {
    head: bool,
    persistence: Option<Persistence>,
}

/// What a header section says, or the error it is.
#[derive(Clone, Copy, Debug)]
struct Facts {
    head: bool,
    persistence: Persistence,
    body: BodyFraming,
    expect_continue: bool,
}

/// One HTTP connection's state.
#[derive(Clone, Debug)]
pub struct HttpSession {
    max_header: usize,
    header_timeout: Option<Duration>,
    /// The unfinished part of a header section, chunk-size line or trailer section, copied out of the
    /// reads it came in (a complete one inside one read is parsed where it lies).
    held: Vec<u8>,
    frame: Frame,
    /// When the first byte of the header section under way arrived.
    head_started: Option<Instant>,
    /// The request whose body is being read.
    request: Request,
    /// The connection is over for this service: nothing more is read.
    closed: bool,
}

/// What trying to complete a unit (header section, chunk-size line, trailer section) found.
enum Unit<T> {
    Complete(T, usize),
    Partial,
    Invalid(Status),
}

impl StreamSession for HttpSession {
    fn feed(&mut self, clock: &Clock, input: &[u8], out: &mut Vec<u8>) -> Step {
        let mut rest = input;
        while !rest.is_empty() && !self.closed {
            rest = match self.frame {
                Frame::Head => self.head(clock, rest, out),
                Frame::Body(left) => {
                    let take = left.min(rest.len() as u64);
                    self.body_read(left - take, clock, out);
                    &rest[take as usize..]
                }
                Frame::ChunkSize => self.chunk_size(clock, rest, out),
                Frame::ChunkData(left) => {
                    let take = left.min(rest.len() as u64);
                    self.frame = if take == left {
                        Frame::ChunkEnd(0)
                    } else {
                        Frame::ChunkData(left - take)
                    };
                    &rest[take as usize..]
                }
                Frame::ChunkEnd(seen) => {
                    if rest[0] != b"\r\n"[seen as usize] {
                        self.error(Status::BadRequest, clock, out);
                        break;
                    }
                    self.frame = if seen == 1 {
                        Frame::ChunkSize
                    } else {
                        Frame::ChunkEnd(1)
                    };
                    &rest[1..]
                }
                Frame::Trailers => self.trailers(clock, rest, out),
            };
        }
        if self.closed {
            Step::Close
        } else {
            Step::Continue
        }
    }

    /// End of stream: an unfinished request is owed nothing, but one that is already bad (its error held
    /// back until a newline) gets its error, as it would have if it had come in one read.
    fn finish(&mut self, clock: &Clock, out: &mut Vec<u8>) {
        if self.closed || self.held.is_empty() {
            return;
        }
        let status = match self.frame {
            Frame::Head => match parse_head(&self.held) {
                Unit::Complete(Err((status, head)), _) => {
                    self.request.head = head;
                    Some(status)
                }
                Unit::Invalid(status) => Some(status),
                _ => None,
            },
            Frame::ChunkSize => match httparse::parse_chunk_size(&self.held) {
                Err(_) => Some(Status::BadRequest),
                Ok(Parsed::Complete((used, _))) if !chunk_line_is_clean(&self.held[..used]) => {
                    Some(Status::BadRequest)
                }
                _ => None,
            },
            Frame::Trailers => {
                let mut headers = [EMPTY_HEADER; MAX_HEADERS];
                match httparse::parse_headers(&self.held, &mut headers) {
                    Err(httparse::Error::TooManyHeaders) => Some(Status::HeaderFieldsTooLarge),
                    Err(_) => Some(Status::BadRequest),
                    _ => None,
                }
            }
            _ => None,
        };
        if let Some(status) = status {
            self.error(status, clock, out);
        }
    }

    fn held(&self) -> usize {
        self.held.len()
    }

    fn deadline(&self) -> Option<Instant> {
        let started = self.head_started?;
        Some(started + self.header_timeout?)
    }

    /// The header section did not complete in time.
    fn expire(&mut self, clock: &Clock, out: &mut Vec<u8>) -> Step {
        if !self.closed && self.deadline().is_some_and(|d| clock.now() >= d) {
            self.error(Status::RequestTimeout, clock, out);
        }
        if self.closed {
            Step::Close
        } else {
            Step::Continue
        }
    }
}

impl HttpSession {
    /// A request line and header section, at the front of `input`.
    fn head<'a>(&mut self, clock: &Clock, input: &'a [u8], out: &mut Vec<u8>) -> &'a [u8] {
        let limit = self.max_header;
        let (unit, rest) = self.unit(input, limit, Status::HeaderFieldsTooLarge, parse_head);
        match unit {
            Unit::Complete(Ok(facts), _) => {
                self.head_started = None;
                self.begin(facts, rest.is_empty(), clock, out);
            }
            Unit::Complete(Err((status, head)), _) => {
                self.request.head = head;
                self.error(status, clock, out);
            }
            Unit::Partial => {
                if self.head_started.is_none() {
                    self.head_started = Some(clock.now());
                }
            }
            Unit::Invalid(status) => self.error(status, clock, out),
        }
        rest
    }

    /// A chunk-size line (`hex[;extensions]` and CRLF), at the front of `input`.
    fn chunk_size<'a>(&mut self, clock: &Clock, input: &'a [u8], out: &mut Vec<u8>) -> &'a [u8] {
        let limit = self.max_header;
        let (unit, rest) = self.unit(input, limit, Status::BadRequest, |bytes| {
            match httparse::parse_chunk_size(bytes) {
                Ok(Parsed::Complete((used, size))) if chunk_line_is_clean(&bytes[..used]) => {
                    Unit::Complete(size, used)
                }
                Ok(Parsed::Complete(_)) => Unit::Invalid(Status::BadRequest),
                Ok(Parsed::Partial) => Unit::Partial,
                Err(_) => Unit::Invalid(Status::BadRequest),
            }
        });
        match unit {
            Unit::Complete(0, _) => self.frame = Frame::Trailers,
            Unit::Complete(size, _) => self.frame = Frame::ChunkData(size),
            Unit::Partial => {}
            Unit::Invalid(status) => self.error(status, clock, out),
        }
        rest
    }

    /// The trailer section after the last chunk, at the front of `input`; then the request is complete.
    fn trailers<'a>(&mut self, clock: &Clock, input: &'a [u8], out: &mut Vec<u8>) -> &'a [u8] {
        let limit = self.max_header;
        let (unit, rest) = self.unit(input, limit, Status::HeaderFieldsTooLarge, |bytes| {
            let mut headers = [EMPTY_HEADER; MAX_HEADERS];
            match httparse::parse_headers(bytes, &mut headers) {
                Ok(Parsed::Complete((used, _))) => Unit::Complete((), used),
                Ok(Parsed::Partial) => Unit::Partial,
                Err(httparse::Error::TooManyHeaders) => {
                    Unit::Invalid(Status::HeaderFieldsTooLarge)
                }
                Err(_) => Unit::Invalid(Status::BadRequest),
            }
        });
        match unit {
            Unit::Complete((), _) => self.complete(clock, out),
            Unit::Partial => {}
            Unit::Invalid(status) => self.error(status, clock, out),
        }
        rest
    }

    /// Finds a complete unit at the front of the stream: parsed where it lies when nothing is held, else
    /// from what is held and the new bytes. An unfinished unit is held, up to `limit` bytes (past it,
    /// `too_large`). Returns what was found and the input after it.
    fn unit<'a, T>(
        &mut self,
        input: &'a [u8],
        limit: usize,
        too_large: Status,
        parse: impl Fn(&[u8]) -> Unit<T>,
    ) -> (Unit<T>, &'a [u8]) {
        if self.held.is_empty() {
            return match parse(input) {
                Unit::Complete(_, used) if used > limit => (Unit::Invalid(too_large), &[]),
                Unit::Complete(value, used) => (Unit::Complete(value, used), &input[used..]),
                Unit::Partial if input.len() > limit => (Unit::Invalid(too_large), &[]),
                Unit::Partial => {
                    self.hold(input);
                    (Unit::Partial, &[])
                }
                Unit::Invalid(status) => (Unit::Invalid(status), &[]),
            };
        }
        let take = input.len().min(limit + 1 - self.held.len().min(limit));
        let before = self.held.len();
        self.hold(&input[..take]);
        let over = self.held.len() > limit;
        // A unit ends with a newline: until one arrives (or the limit is reached), parsing again would
        // only find it unfinished, and parsing on every byte would cost a trickling peer's server
        // quadratic work. An error it holds is found at the newline, the limit or the end of the stream,
        // so the reply is the same wherever the stream was split.
        if !over && !input[..take].contains(&b'\n') {
            return (Unit::Partial, &input[take..]);
        }
        match parse(&self.held) {
            Unit::Complete(_, used) if used > limit => (Unit::Invalid(too_large), &[]),
            Unit::Complete(value, used) => {
                self.release();
                // What was held before could not be a whole unit, so the unit ends in the new bytes.
                let from_input = used.saturating_sub(before).min(input.len());
                (Unit::Complete(value, used), &input[from_input..])
            }
            Unit::Partial if over => (Unit::Invalid(too_large), &[]),
            Unit::Partial => (Unit::Partial, &input[take..]),
            Unit::Invalid(status) => (Unit::Invalid(status), &[]),
        }
    }

    fn hold(&mut self, bytes: &[u8]) {
        self.held.extend_from_slice(bytes);
    }

    /// The held unit was complete: keep the buffer for the next one, unless it grew large.
    fn release(&mut self) {
        self.held.clear();
        if self.held.capacity() > KEEP_CAPACITY {
            self.held = Vec::new();
        }
    }

    /// A header section was complete: answer now, or read its body first.
    fn begin(&mut self, facts: Facts, body_follows_later: bool, clock: &Clock, out: &mut Vec<u8>) {
        self.request = Request {
            head: facts.head,
            persistence: Some(facts.persistence),
        };
        let has_body = facts.body != BodyFraming::None && facts.body != BodyFraming::Length(0);
        // The client waits to be told before it sends the body, unless some of it has come already.
        if facts.expect_continue && has_body && body_follows_later {
            out.extend_from_slice(CONTINUE);
        }
        match facts.body {
            BodyFraming::None | BodyFraming::Length(0) => self.complete(clock, out),
            BodyFraming::Length(n) => self.frame = Frame::Body(n),
            BodyFraming::Chunked => self.frame = Frame::ChunkSize,
        }
    }

    fn body_read(&mut self, left: u64, clock: &Clock, out: &mut Vec<u8>) {
        if left == 0 {
            self.complete(clock, out);
        } else {
            self.frame = Frame::Body(left);
        }
    }

    /// The request, body included, is complete: its response.
    fn complete(&mut self, clock: &Clock, out: &mut Vec<u8>) {
        let persistence = self.request.persistence.unwrap_or(Persistence::Close);
        respond(out, Status::Ok, self.request.head, persistence, clock);
        self.frame = Frame::Head;
        self.request = Request::default();
        if persistence == Persistence::Close {
            self.closed = true;
        }
    }

    /// A request the server cannot serve: its error, then the connection closes.
    fn error(&mut self, status: Status, clock: &Clock, out: &mut Vec<u8>) {
        respond(out, status, self.request.head, Persistence::Close, clock);
        self.closed = true;
        self.held = Vec::new();
        self.head_started = None;
    }
}

/// Writes one response.
fn respond(out: &mut Vec<u8>, status: Status, head: bool, persistence: Persistence, clock: &Clock) {
    let body = status.body();
    out.extend_from_slice(status.line());
    out.extend_from_slice(b"Server: socklab\r\nDate: ");
    out.extend_from_slice(&clock.http_date());
    out.extend_from_slice(b"\r\nContent-Type: text/plain\r\nContent-Length: ");
    decimal(out, body.len());
    out.extend_from_slice(match persistence {
        Persistence::KeepAlive => b"\r\n\r\n".as_slice(),
        Persistence::KeepAlive10 => b"\r\nConnection: keep-alive\r\n\r\n",
        Persistence::Close => b"\r\nConnection: close\r\n\r\n",
    });
    if !head {
        out.extend_from_slice(body);
    }
}

/// Appends `n` in decimal, without allocating.
fn decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Parses a request line and header section. `Complete(Err((status, head)))` is a whole but bad request,
/// with whether it was a `HEAD` (its error gets no body).
fn parse_head(bytes: &[u8]) -> Unit<Result<Facts, (Status, bool)>> {
    // Left uninitialised: httparse writes only the fields it finds, so clearing all 64 (2 KiB) for every
    // request would be work a short request does not need.
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    let parsed = request.parse_with_uninit_headers(bytes, &mut headers);
    // A bad request closes the connection, so what it used does not matter; whether it was a `HEAD` does.
    let head = request.method == Some("HEAD");
    let bad = |status| Unit::Complete(Err((status, head)), bytes.len());
    match parsed {
        Ok(Parsed::Complete(used)) => Unit::Complete(facts(&request), used),
        Ok(Parsed::Partial) => Unit::Partial,
        Err(httparse::Error::TooManyHeaders) => bad(Status::HeaderFieldsTooLarge),
        Err(httparse::Error::Version) => bad(version_error(bytes)),
        Err(_) => bad(Status::BadRequest),
    }
}

/// A version `httparse` refused: `505` if it is a well-formed `HTTP/x.y` (another version), `400` if it
/// is not a version at all.
fn version_error(bytes: &[u8]) -> Status {
    let start = bytes.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(0);
    let line = &bytes[start..];
    let line = &line[..line.iter().position(|&b| b == b'\n').unwrap_or(line.len())];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let version = line.rsplit(|&b| b == b' ').next().unwrap_or_default();
    match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            Status::VersionNotSupported
        }
        _ => Status::BadRequest,
    }
}

/// Where `httparse::parse_chunk_size` is more lenient than RFC 9112 §7.1: it takes a line with no digits
/// as size 0, and any byte inside a chunk extension, a bare LF or CR included, which another parser on the
/// path could read as the end of the line. A chunk-size line must start with a hex digit and hold no
/// control byte but HTAB before its CRLF.
fn chunk_line_is_clean(line: &[u8]) -> bool {
    let body = line.strip_suffix(b"\r\n").unwrap_or(line);
    body.first().is_some_and(u8::is_ascii_hexdigit)
        && body.iter().all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7F))
}

/// Refuses bytes RFC 3986 does not allow in a request target but `httparse` lets through (0x80–0xFF).
fn check_target(target: &str) -> Result<(), Status> {
    // `is_ascii` looks at a word at a time: the same test as any byte >= 0x80, for less per request.
    if !target.is_ascii() {
        return Err(Status::BadRequest);
    }
    Ok(())
}

/// What a complete, well-formed header section means, or why it is refused.
fn facts(request: &httparse::Request<'_, '_>) -> Result<Facts, (Status, bool)> {
    let head = request.method == Some("HEAD");
    let fail = |status| Err((status, head));
    let http10 = request.version == Some(0);
    if check_target(request.path.unwrap_or_default()).is_err() {
        return fail(Status::BadRequest);
    }
    let mut hosts = 0;
    let mut length: Option<u64> = None;
    let mut codings = Codings::default();
    let (mut close, mut keep_alive, mut expect_continue) = (false, false, false);
    for header in request.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case("content-length") {
            for value in list(header.value) {
                let Some(n) = content_length(value) else {
                    return fail(Status::BadRequest);
                };
                if length.is_some_and(|seen| seen != n) {
                    return fail(Status::BadRequest);
                }
                length = Some(n);
            }
            if length.is_none() {
                return fail(Status::BadRequest);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Present, even if empty: an empty coding list frames nothing and is refused below.
            codings.any = true;
            for coding in list(header.value) {
                codings.add(coding);
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for token in list(header.value) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("expect") {
            expect_continue |= trim(header.value).eq_ignore_ascii_case(b"100-continue");
        }
    }
    if hosts > 1 || (hosts == 0 && !http10) {
        return fail(Status::BadRequest);
    }
    let mut persistence = match (http10, close, keep_alive) {
        (_, true, _) => Persistence::Close,
        (true, false, true) => Persistence::KeepAlive10,
        (true, false, false) => Persistence::Close,
        (false, false, _) => Persistence::KeepAlive,
    };
    let body = if codings.any {
        if length.is_some() {
            // Two framings for one body: whichever a peer believed, the other could smuggle a request.
            return fail(Status::BadRequest);
        }
        if http10 {
            // HTTP/1.0 has no transfer codings: the framing cannot be trusted. Answer, then close.
            persistence = Persistence::Close;
            BodyFraming::None
        } else {
            match codings.verdict() {
                Ok(()) => BodyFraming::Chunked,
                Err(status) => return fail(status),
            }
        }
    } else {
        BodyFraming::Length(length.unwrap_or(0))
    };
    Ok(Facts {
        head,
        persistence,
        body,
        expect_continue: expect_continue && !http10,
    })
}

/// The transfer codings of a request, in order.
#[derive(Default)]
struct Codings {
    any: bool,
    count: usize,
    chunked_at: Option<usize>,
    chunked_twice: bool,
    unknown: bool,
}

impl Codings {
    fn add(&mut self, coding: &[u8]) {
        self.any = true;
        // A coding may carry parameters (`;q=…` is for TE, but be lenient in what is only discarded).
        let name = trim(coding.split(|&b| b == b';').next().unwrap_or_default());
        if name.eq_ignore_ascii_case(b"chunked") {
            self.chunked_twice |= self.chunked_at.is_some();
            self.chunked_at = Some(self.count);
        } else if !KNOWN_CODINGS.iter().any(|k| name.eq_ignore_ascii_case(k)) {
            self.unknown = true;
        }
        self.count += 1;
    }

    /// `chunked` must come last, once; a coding before it must be one this server knows.
    fn verdict(&self) -> Result<(), Status> {
        if self.chunked_at != Some(self.count.wrapping_sub(1)) || self.chunked_twice {
            return Err(Status::BadRequest);
        }
        if self.unknown {
            return Err(Status::NotImplemented);
        }
        Ok(())
    }
}

/// The transfer codings of HTTP's registry that may come before `chunked`. The body is discarded, so none
/// needs decoding; an unknown one is refused as RFC 9112 asks.
const KNOWN_CODINGS: &[&[u8]] = &[b"gzip", b"x-gzip", b"deflate", b"compress", b"x-compress"];

/// The elements of a comma-separated field value, trimmed, empty ones skipped (RFC 9110 §5.6.1).
fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim).filter(|e| !e.is_empty())
}

fn trim(bytes: &[u8]) -> &[u8] {
    let is_space = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !is_space(b)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !is_space(b)).map_or(start, |e| e + 1);
    &bytes[start..end.max(start)]
}

/// `1*DIGIT` as a `u64`: no sign, no space inside, no overflow.
fn content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::{DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_HEADER};

    const DATE: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

    fn clock() -> Clock {
        Clock::fixed(784_111_777)
    }

    fn session() -> HttpSession {
        Http::session(&ServiceOptions::default())
    }

    /// Feeds `pieces` in order (then end of stream); returns the output and whether the service closed.
    fn run(pieces: &[&[u8]]) -> (String, bool) {
        let clock = clock();
        let mut session = session();
        let mut out = Vec::new();
        let mut closed = false;
        for piece in pieces {
            closed |= session.feed(&clock, piece, &mut out) == Step::Close;
        }
        if !closed {
            session.finish(&clock, &mut out);
        }
        (String::from_utf8(out).unwrap(), closed)
    }

    fn ok(connection: &str, body: bool) -> String {
        format!(
            "HTTP/1.1 200 OK\r\nServer: socklab\r\nDate: {DATE}\r\nContent-Type: text/plain\r\n\
             Content-Length: 12\r\n{connection}\r\n{}",
            if body { "Hello, World" } else { "" }
        )
    }

    fn status_of(output: &str) -> Vec<u16> {
        output
            .split("HTTP/1.1 ")
            .skip(1)
            .map(|r| r[..3].parse().unwrap())
            .collect()
    }

    fn one(request: &[u8]) -> (String, bool) {
        run(&[request])
    }

    #[test]
    fn the_reply_is_hello_world_with_its_headers() {
        assert_eq!(one(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), (ok("", true), false));
        // Any method, any target.
        assert_eq!(one(b"DELETE /x?y HTTP/1.1\r\nHost: a\r\n\r\n").0, ok("", true));
        assert_eq!(one(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").0, ok("", true));
        // HEAD: the same headers, no body.
        assert_eq!(one(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n").0, ok("", false));
    }

    #[test]
    fn keep_alive_and_close() {
        // HTTP/1.1 keeps the connection unless told not to; then the response says so.
        assert_eq!(
            one(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n"),
            (ok("Connection: close\r\n", true), true)
        );
        assert!(one(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive, CLOSE\r\n\r\n").1);
        // HTTP/1.0 closes unless it asks for keep-alive; then the response says keep-alive.
        assert_eq!(one(b"GET / HTTP/1.0\r\n\r\n"), (ok("Connection: close\r\n", true), true));
        assert_eq!(
            one(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
            (ok("Connection: keep-alive\r\n", true), false)
        );
    }

    #[test]
    fn pipelined_requests_are_answered_in_order_in_one_output() {
        let request = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nHEAD / HTTP/1.1\r\nHost: a\r\n\r\n\
                        GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        let (out, closed) = one(request);
        assert_eq!(
            out,
            ok("", true) + &ok("", false) + &ok("Connection: close\r\n", true)
        );
        assert!(closed, "nothing after Connection: close is served");
        // Empty lines before a request line are ignored (RFC 9112 §2.2), and bare LF ends lines.
        assert_eq!(one(b"\r\n\r\nGET / HTTP/1.1\nHost: a\n\n").0, ok("", true));
    }

    #[test]
    fn bodies_are_consumed_never_taken_for_requests() {
        let smuggled = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
        let mut request = format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n", smuggled.len()).into_bytes();
        request.extend_from_slice(smuggled);
        assert_eq!(one(&request).0, ok("", true), "one request, one response");
        // Identical repeated values are one value; a list of identical values too.
        assert_eq!(
            one(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc").0,
            ok("", true)
        );
        assert_eq!(
            one(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc").0,
            ok("", true)
        );
        // Chunked, with extensions and trailers, split anywhere.
        let chunked = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
                        5;ext=1\r\nGET /\r\n1A\r\n HTTP/1.1\r\nHost: a\r\n\r\nxxxx\r\n0\r\nTrailer: x\r\n\r\n\
                        GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let whole = one(chunked).0;
        assert_eq!(whole, ok("", true) + &ok("", true));
        for cut in 0..chunked.len() {
            assert_eq!(run(&[&chunked[..cut], &chunked[cut..]]).0, whole, "cut at {cut}");
        }
        let byte_by_byte: Vec<&[u8]> = chunked.chunks(1).collect();
        assert_eq!(run(&byte_by_byte).0, whole);
    }

    #[test]
    fn expect_100_continue_is_answered_before_the_body_unless_it_came_already() {
        let head = b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
        let clock = clock();
        let mut session = session();
        let mut out = Vec::new();
        session.feed(&clock, head, &mut out);
        assert_eq!(out, CONTINUE, "100 Continue, and nothing else yet");
        session.feed(&clock, b"ok", &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "HTTP/1.1 100 Continue\r\n\r\n".to_string() + &ok("", true));
        // The body began to arrive with the headers: no 100.
        let mut with_body = head.to_vec();
        with_body.extend_from_slice(b"o");
        assert_eq!(run(&[&with_body, b"k"]).0, ok("", true));
        // HTTP/1.0 and bodiless requests get no 100; an error gets its error only.
        assert_eq!(
            one(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n").0,
            ok("Connection: close\r\n", true)
        );
        assert_eq!(
            status_of(&one(b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n").0),
            [400],
            "no Host: an error, and no 100 before it"
        );
    }

    #[test]
    fn malformed_requests_get_400_and_the_close() {
        let bad: &[&[u8]] = &[
            b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",                // whitespace before the colon
            b"GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n z\r\n\r\n",    // obs-fold
            b"GET / HTTP/1.1\r\nHost: a\rX: y\r\n\r\n",            // bare CR
            b"GET / HTTP/1.1\r\nHo\x00st: a\r\n\r\n",              // invalid character
            b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n",       // 0x80-0xFF in the target
            b"GET / HTTP/1.1\r\n\r\n",                             // no Host in HTTP/1.1
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",       // two Hosts
            b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n",       // two Hosts in HTTP/1.0 too
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1a\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 2\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1;a\nb\r\nx\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxy0\r\n\r\n",
            b"GET / HTTX/1.1\r\nHost: a\r\n\r\n",
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", // a TLS ClientHello
        ];
        for request in bad {
            let (out, closed) = one(request);
            assert_eq!(status_of(&out), [400], "{:?}", String::from_utf8_lossy(request));
            assert!(out.contains("Connection: close\r\n"), "{out}");
            assert!(closed);
        }
        // HEAD's error has no body, as every response to HEAD.
        let (out, _) = one(b"HEAD / HTTP/1.1\r\n\r\n");
        assert!(out.ends_with("Connection: close\r\n\r\n"), "{out}");
    }

    #[test]
    fn other_errors_get_their_own_status() {
        assert_eq!(
            status_of(&one(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: foo, chunked\r\n\r\n").0),
            [501]
        );
        for version in [&b"GET / HTTP/2.0\r\n\r\n"[..], b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", b"GET / HTTP/3.0\r\n\r\n"] {
            assert_eq!(status_of(&one(version).0), [505], "{:?}", String::from_utf8_lossy(version));
        }
        // Too many header fields, or a header section over the limit.
        let mut many = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(status_of(&one(&many).0), [431]);
        let mut long = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
        long.extend(std::iter::repeat_n(b'y', DEFAULT_MAX_HEADER));
        assert_eq!(status_of(&one(&long).0), [431], "in one read");
        let pieces: Vec<&[u8]> = long.chunks(1000).collect();
        assert_eq!(status_of(&run(&pieces).0), [431], "in many");
        let mut session = session();
        session.feed(&clock(), &long[..DEFAULT_MAX_HEADER - 10], &mut Vec::new());
        assert!(session.held() <= DEFAULT_MAX_HEADER, "never holds more than the limit");
    }

    #[test]
    fn transfer_encoding_in_http_1_0_is_answered_then_closed() {
        let (out, closed) = one(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n0\r\n\r\n");
        assert_eq!(out, ok("Connection: close\r\n", true));
        assert!(closed);
    }

    #[test]
    fn a_header_section_that_never_finishes_gets_408_and_a_silent_connection_nothing() {
        let clock = clock();
        let mut session = session();
        let mut out = Vec::new();
        assert_eq!(session.deadline(), None, "silent between requests: the idle timeout's business");
        session.feed(&clock, b"GET / HTTP/1.1\r\nHost: a\r\n", &mut out);
        let deadline = session.deadline().expect("a header section began");
        assert_eq!(deadline, clock.now() + DEFAULT_HEADER_TIMEOUT);
        assert_eq!(session.expire(&clock, &mut out), Step::Continue, "not yet");
        clock.set(deadline);
        assert_eq!(session.expire(&clock, &mut out), Step::Close);
        assert_eq!(status_of(&String::from_utf8(out).unwrap()), [408]);
    }

    #[test]
    fn end_of_stream_owes_nothing_for_an_unfinished_request() {
        assert_eq!(one(b"GET / HTTP/1.1\r\nHost: a\r\n"), (String::new(), false));
        assert_eq!(one(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\nabc"), (String::new(), false));
        // But a request already bad when the stream ends gets its error, however it was split.
        assert_eq!(status_of(&run(&[b"G", b"E\x00"]).0), [400]);
    }

    #[test]
    fn the_date_is_the_turns_and_same_reply_ignores_only_it() {
        let (out, _) = one(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(out.contains(&format!("\r\nDate: {DATE}\r\n")));
        let later = ok("", true).replace(DATE, "Mon, 07 Nov 1994 08:49:37 GMT");
        assert!(Http::same_reply(out.as_bytes(), later.as_bytes()));
        let other = ok("", true).replace("Hello", "Jello");
        assert!(!Http::same_reply(out.as_bytes(), other.as_bytes()));
        assert!(!Http::same_reply(out.as_bytes(), &out.as_bytes()[1..]));
        // Another server's answer, as `socklab-stress --learn-reply` holds it: a lowercase `date` is a Date.
        let hyper = "HTTP/1.1 200 OK\r\ncontent-length: 12\r\ndate: Mon, 07 Nov 1994 08:49:37 GMT\r\n\r\nHello, World";
        let second_later = hyper.replace(":37 GMT", ":38 GMT");
        assert!(Http::same_reply(hyper.as_bytes(), second_later.as_bytes()));
        assert!(!Http::same_reply(hyper.as_bytes(), second_later.replace("200", "500").as_bytes()));
    }

    #[test]
    fn load_requests_have_the_size_asked_and_are_answered() {
        for size in [35, 40, 64, 200] {
            let request = Http::load_request(7, size);
            assert_eq!(request.len(), size);
            assert_eq!(one(&request).0, ok("", true));
        }
    }

    #[test]
    fn every_response_fits_the_declared_bound() {
        for status in Status::ALL {
            for persistence in [Persistence::KeepAlive, Persistence::KeepAlive10, Persistence::Close] {
                let mut out = Vec::new();
                respond(&mut out, status, false, persistence, &clock());
                assert!(out.len() <= max_response(), "{status:?} {}", out.len());
            }
        }
    }
}
