//! `--service http`: the tutorials' web server, grown up. One resource, `Hello, World`, read with `GET`,
//! `HEAD` or `POST` as nginx answers `return 200 "Hello, World"`, and the framing done to RFC 9112:
//! keep-alive, pipelining, request bodies, conditional requests, and the errors. Pure bytes, no I/O, like
//! every service; TCP only (HTTP over UDP is QUIC, another protocol). Walk-through: `docs/11-http.md`.
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
//!   headers (more is `431`), never copied when a whole header section is inside one read. Empty lines
//!   before a request line are dropped as they come, never held. A section that is not complete yet is kept,
//!   up to `--max-header` bytes: past it, `414` if its request line had not ended within the limit (`501` if
//!   not even its method had), else `431`. It must be complete within `--header-timeout` of its first byte
//!   (else `408`); a body must not go `--body-timeout` without a byte (else `408`); a connection with no
//!   request under way is closed, with nothing said, after `--keepalive-timeout`.
//! - `httparse` is stricter than the RFC requires in places (whitespace before a colon, obs-fold and bare
//!   CR are errors) and more lenient in others, where `head.rs` and `body.rs` add a check: bytes 0x80–0xFF
//!   in the target, the target's form (`*` only for `OPTIONS`, the authority-form only for `CONNECT`, no
//!   userinfo), the `Host` value, and the grammar of a chunk-size line.
//! - Versions: HTTP/1.0 and HTTP/1.1, and a later HTTP/1.x served as 1.1 (RFC 9110 §2.5); another major
//!   version is `505`; a request line that is not three tokens with single spaces is `400`.
//! - `Host`: exactly one in HTTP/1.1, at most one in HTTP/1.0, a valid host and optional port (else `400`).
//! - Methods: `GET`, `HEAD`, `POST` get the resource; `OPTIONS` gets `Allow`; `PUT`, `DELETE`, `PATCH`,
//!   `TRACE`, `CONNECT` get `405` (and `CONNECT` the close: what follows it is a tunnel's); any other, `501`.
//! - Preconditions (`If-Match`, `If-Unmodified-Since`, `If-None-Match`, `If-Modified-Since`) against a strong
//!   `ETag` and the server's start as `Last-Modified`, in RFC 9110 §13.2.2's order: `304` or `412`.
//! - The body: `Content-Length` (digits only, on every line; a list or repeated lines of one identical value
//!   are taken as one; an empty value, a sign, or a value past `u64` is `400`, whatever the line's place) or
//!   `Transfer-Encoding` ending in `chunked` (chunk extensions and trailers accepted). Both at once is `400`;
//!   codings not ending in `chunked` are `400`; a coding this server does not know before `chunked` is `501`.
//!   `Transfer-Encoding` in HTTP/1.0 cannot be trusted: the request is answered and the connection closed.
//!   The body is read and discarded.
//! - `Expect: 100-continue` (HTTP/1.1, with a body) gets `100 Continue` when the header section is complete
//!   and no byte of the body has arrived with it.
//!
//! # The response
//! `200 OK`, `Server: socklab`, `Date` (the turn's time, formatted once a second: [`Clock::http_date`]),
//! `Last-Modified`, `ETag`, `Content-Type: text/plain`, `Content-Length: 12`, then `Hello, World` (no body
//! for `HEAD`). HTTP/1.1 keeps the connection open unless the request said `Connection: close`; HTTP/1.0
//! closes unless it said `Connection: keep-alive`, and then the response says `Connection: keep-alive`. A
//! response after which the server closes says `Connection: close`. A request that cannot be read (its
//! syntax, framing, size, time or version) is answered with its status, a one-line body, and `Connection:
//! close`; nothing after it is read. A well-framed request refused for its method or a precondition (`405`,
//! `501`, `412`) is answered the same way but the connection goes on. Each response is written when its
//! request, body included, is complete, so every request in one read is answered in order, in one write.
//!
//! # The files
//! Split the way hyper splits its HTTP/1 (`src/proto/h1/`), with the session on top:
//! - this file: the [`Http`] service ([`Protocol`]) and [`HttpSession`], one connection's state, which walks
//!   each read through the frames below, keeps the timeouts, and decides when to answer;
//! - `head.rs`: the request line and header section, parsed by `httparse`, and what they mean for the
//!   answer and the body's framing (hyper's `role`);
//! - `conditional.rs`: the validators, the preconditions and the three formats of an HTTP date;
//! - `body.rs`: the body's framing, `Content-Length` or chunked, and the chunk-size lines and trailers
//!   (hyper's `decode`);
//! - `response.rs`: the status codes and the writing of each response, without allocating (hyper's `encode`);
//! - `fixtures.rs`: the example streams the generic tests run, written out by hand, and what counts as the
//!   same reply;
//! - `client.rs`: what `socklab-client` makes of it: a path sent as a `GET`, a response's body shown;
//! - `tests.rs`: the rules, byte by byte.

mod body;
pub mod client;
mod conditional;
mod fixtures;
mod head;
mod response;
#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

use self::body::{parse_chunk_line, parse_trailers, BodyFraming, Frame};
use self::fixtures::{example_request, same_but_dates};
use self::head::{names_head, parse_head, too_large, Facts};
use self::response::{respond, Answer, Persistence, Status, CONTINUE, MAX_ANSWER, REFUSAL};
use super::clock::Clock;
use super::example::{Example, Rng};
use super::tooling::Tooling;
use super::protocol::{Datagrams, Growth, Protocol, ServiceOptions, Setting, Step, StreamSession};

pub use self::head::MAX_HEADERS;

/// The shortest request that is complete, `A * HTTP/1.0` and an empty line with bare newlines: each
/// response needs at least this many bytes of input, which bounds how far replies outgrow requests.
const MIN_REQUEST: usize = b"A * HTTP/1.0\n\n".len();

/// A connection keeps the buffer of an unfinished header section no larger than this once it is done
/// with it; a bigger one is given back.
const KEEP_CAPACITY: usize = 4096;

/// The `http` service.
pub struct Http;

impl Protocol for Http {
    const NAME: &'static str = "http";
    const ABOUT: &'static str = "HTTP/1.1 done to RFC 9112: GET, HEAD and POST get 200 OK and `Hello, World`, with \
        keep-alive, pipelining, request bodies and revalidation (TCP only)";
    const DATAGRAMS: Option<Datagrams> = None;
    const REFUSAL: &'static [u8] = REFUSAL;
    const MAX_HELD_FLAG: &'static str = "--max-header";

    type Session = HttpSession;

    fn session(options: &ServiceOptions) -> HttpSession {
        HttpSession {
            max_header: options.max_header,
            timeouts: Timeouts {
                keep_alive: Timeout::new(options.keepalive_timeout),
                header: Timeout::new(options.header_timeout),
                body: Timeout::new(options.body_timeout),
            },
            started: options.started,
            held: Vec::new(),
            frame: Frame::Idle,
            since: None,
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

    const SETTINGS: &'static [Setting] = &[
        Setting::MaxHeader,
        Setting::HeaderTimeout,
        Setting::BodyTimeout,
        Setting::KeepaliveTimeout,
    ];
}

impl Tooling for Http {
    const PROMPT: &'static str = "Path to GET: ";
    const URL_SCHEME: Option<&'static str> = Some("http");

    fn request_for(message: &[u8], server: std::net::SocketAddr) -> Option<Vec<u8>> {
        Some(client::get(message, server))
    }

    fn shown(reply: &[u8]) -> crate::service::Shown<'_> {
        client::shown(reply)
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
    /// request with no padding; a request past `--max-header` gets `414`, its target being the long part).
    fn load_request(variant: usize, size: usize) -> Vec<u8> {
        const REST: &[u8] = b" HTTP/1.1\r\nHost: socklab\r\n\r\n";
        let mut request = format!("GET /{:02}", variant % 100).into_bytes();
        let pad = size.saturating_sub(request.len() + REST.len());
        request.extend(std::iter::repeat_n(b'p', pad));
        request.extend_from_slice(REST);
        request
    }

    /// Replies are the same but for their `Date`, the time each was made, and their `Last-Modified`, the
    /// time the server started.
    fn same_reply(expected: &[u8], got: &[u8]) -> bool {
        same_but_dates(expected, got)
    }
}

/// What the response to the request under way depends on, decided from its header section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Request {
    answer: Answer,
    head: bool,
    persistence: Persistence,
}

impl Default for Request {
    /// Before a header section is complete: an error then closes, and a `HEAD` is not known yet.
    fn default() -> Self {
        Request {
            answer: Answer::Hello,
            head: false,
            persistence: Persistence::Close,
        }
    }
}

/// The three timeouts a session keeps itself: nginx's `keepalive_timeout`, `client_header_timeout` and
/// `client_body_timeout`.
#[derive(Clone, Copy, Debug)]
struct Timeouts {
    keep_alive: Timeout,
    header: Timeout,
    body: Timeout,
}

/// A timeout in nanoseconds, 0 for never: 8 bytes where an `Option<Duration>` takes 16, in every
/// connection's state. 64 bits of nanoseconds reach 584 years; the flags stop at one.
#[derive(Clone, Copy, Debug)]
struct Timeout(u64);

impl Timeout {
    fn new(timeout: Option<Duration>) -> Timeout {
        Timeout(timeout.map_or(0, |t| {
            u64::try_from(t.as_nanos()).unwrap_or(u64::MAX).max(1)
        }))
    }

    fn get(self) -> Option<Duration> {
        (self.0 != 0).then(|| Duration::from_nanos(self.0))
    }
}

/// One HTTP connection's state.
#[derive(Clone, Debug)]
pub struct HttpSession {
    max_header: usize,
    timeouts: Timeouts,
    /// When the server started, in Unix seconds: the representation's `Last-Modified`.
    started: u64,
    /// The unfinished part of a header section, chunk-size line or trailer section, copied out of the
    /// reads it came in (a complete one inside one read is parsed where it lies); between requests, at
    /// most the CR of an empty line split from its LF.
    held: Vec<u8>,
    frame: Frame,
    /// When the wait the deadline counts from began: between requests, the end of the last response (or
    /// the first read of a connection); in a header section, its first byte, however slowly the rest
    /// comes; in a body, its last read.
    since: Option<Instant>,
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

#[cfg(test)]
thread_local! {
    /// Bytes handed to a unit's parser on this thread: the tests hold trickled input to linear work.
    static PARSED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// `bytes`, about to be handed to a unit's parser; in unit tests, counted first.
fn counted(bytes: &[u8]) -> &[u8] {
    #[cfg(test)]
    PARSED.with(|p| p.set(p.get() + bytes.len()));
    bytes
}

impl StreamSession for HttpSession {
    fn feed(&mut self, clock: &Clock, input: &[u8], out: &mut Vec<u8>) -> Step {
        let mut rest = input;
        while !rest.is_empty() && !self.closed {
            rest = match self.frame {
                Frame::Idle => self.idle(clock, rest),
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
        if self.frame.is_body() {
            // The body timeout counts from the last read that brought any of it.
            self.since = Some(clock.now());
        } else if self.since.is_none() {
            // A new connection's first read, which began no request (or none yet): the keep-alive wait
            // counts from here, so empty lines cannot hold a connection open either.
            self.since = Some(clock.now());
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
            Frame::Head => match parse_head(counted(&self.held), clock, self.started) {
                Unit::Complete(Err((status, head)), _) => {
                    self.request.head = head;
                    Some(status)
                }
                Unit::Invalid(status) => Some(status),
                _ => None,
            },
            Frame::ChunkSize => match parse_chunk_line(counted(&self.held)) {
                Unit::Invalid(status) => Some(status),
                _ => None,
            },
            Frame::Trailers => match parse_trailers(counted(&self.held)) {
                Unit::Invalid(status) => Some(status),
                _ => None,
            },
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
        if self.closed {
            return None;
        }
        let timeout = match self.frame {
            Frame::Idle => self.timeouts.keep_alive,
            Frame::Head => self.timeouts.header,
            _ => self.timeouts.body,
        };
        // A deadline past what an Instant can hold never comes.
        self.since?.checked_add(timeout.get()?)
    }

    /// A timeout passed: between requests the connection is closed with nothing said (no request, no
    /// response, as nginx's `keepalive_timeout` does); inside a request it gets `408`.
    fn expire(&mut self, clock: &Clock, out: &mut Vec<u8>) -> Step {
        if self.deadline().is_some_and(|d| clock.now() >= d) {
            match self.frame {
                Frame::Idle => {
                    self.closed = true;
                    self.held = Vec::new();
                }
                Frame::Head => {
                    // Its method is known only from what has come of it.
                    self.request.head = names_head(&self.held);
                    self.error(Status::RequestTimeout, clock, out);
                }
                _ => self.error(Status::RequestTimeout, clock, out),
            }
        }
        if self.closed {
            Step::Close
        } else {
            Step::Continue
        }
    }
}

impl HttpSession {
    /// Between requests: the empty lines before a request line are dropped as they come (RFC 9112 §2.2
    /// has a server ignore at least one), never held, so no number of them costs more than reading them.
    /// The first other byte begins a request, and its header timeout.
    fn idle<'a>(&mut self, clock: &Clock, input: &'a [u8]) -> &'a [u8] {
        let mut rest = input;
        if !self.held.is_empty() {
            // The CR of an empty line came alone: the LF must follow.
            if rest[0] == b'\n' {
                self.held.clear();
                rest = &rest[1..];
            } else {
                // A bare CR: the header section begins with it, and `httparse` refuses it there.
                self.frame = Frame::Head;
                self.since = Some(clock.now());
                return rest;
            }
        }
        loop {
            match rest {
                [b'\r', b'\n', tail @ ..] | [b'\n', tail @ ..] => rest = tail,
                [b'\r'] => {
                    self.hold(b"\r");
                    return &[];
                }
                [] => return rest,
                _ => break,
            }
        }
        self.frame = Frame::Head;
        self.since = Some(clock.now());
        rest
    }

    /// A request line and header section, at the front of `input`.
    fn head<'a>(&mut self, clock: &Clock, input: &'a [u8], out: &mut Vec<u8>) -> &'a [u8] {
        let limit = self.max_header;
        let started = self.started;
        let (unit, rest) = self.unit(
            input,
            limit,
            |bytes| parse_head(bytes, clock, started),
            |bytes| Unit::Complete(Err(too_large(bytes, limit)), bytes.len()),
        );
        match unit {
            Unit::Complete(Ok(facts), _) => self.begin(facts, rest.is_empty(), clock, out),
            Unit::Complete(Err((status, head)), _) => {
                self.request.head = head;
                self.error(status, clock, out);
            }
            Unit::Partial => {}
            Unit::Invalid(status) => self.error(status, clock, out),
        }
        rest
    }

    /// Finds a complete unit at the front of the stream: parsed where it lies when nothing is held, else
    /// from what is held and the new bytes. An unfinished unit is held, up to `limit` bytes (past it, what
    /// `too_large` says of the bytes). Returns what was found and the input after it.
    fn unit<'a, T>(
        &mut self,
        input: &'a [u8],
        limit: usize,
        parse: impl Fn(&[u8]) -> Unit<T>,
        too_large: impl Fn(&[u8]) -> Unit<T>,
    ) -> (Unit<T>, &'a [u8]) {
        // A bad unit is reported as using all the bytes it was given (the parser does not say where it
        // failed), so one that seems to end past the limit is parsed again within the limit: an error
        // there is the unit's own (a bad request line followed by 40 KiB of pipelined requests in one read
        // is a 400, as it is when they come in short reads), and only a unit still unfinished at the limit
        // is too large. A good unit that ends within the limit ends there in any longer read too, so what
        // the second parse completes is an error, which closes the connection: nothing after it is read.
        let past_limit = |bytes: &[u8]| match parse(counted(&bytes[..limit.min(bytes.len())])) {
            Unit::Partial => too_large(bytes),
            within => within,
        };
        if self.held.is_empty() {
            return match parse(counted(input)) {
                Unit::Complete(_, used) if used > limit => (past_limit(input), &[]),
                Unit::Complete(value, used) => (Unit::Complete(value, used), &input[used..]),
                Unit::Partial if input.len() > limit => (too_large(input), &[]),
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
        // only find it unfinished. An error it holds is found at the newline, the limit or the end of the
        // stream, so the reply is the same wherever the stream was split. Each newline ends a line of the
        // unit or the unit itself (empty lines before a request are never held), and a unit has at most
        // MAX_HEADERS + 1 lines before it is refused, so a peer trickling a byte at a time makes the
        // server parse at most that many times the limit, not the square of what it sends.
        if !over && !input[..take].contains(&b'\n') {
            return (Unit::Partial, &input[take..]);
        }
        match parse(counted(&self.held)) {
            Unit::Complete(_, used) if used > limit => (past_limit(&self.held), &[]),
            Unit::Complete(value, used) => {
                self.release();
                // What was held before could not be a whole unit, so the unit ends in the new bytes.
                let from_input = used.saturating_sub(before).min(input.len());
                (Unit::Complete(value, used), &input[from_input..])
            }
            Unit::Partial if over => (too_large(&self.held), &[]),
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
            answer: facts.answer,
            head: facts.head,
            persistence: facts.persistence,
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

    /// The request, body included, is complete: its response; then the keep-alive wait begins.
    fn complete(&mut self, clock: &Clock, out: &mut Vec<u8>) {
        let Request {
            answer,
            head,
            persistence,
        } = self.request;
        respond(out, answer, head, persistence, clock, self.started);
        self.frame = Frame::Idle;
        self.since = Some(clock.now());
        self.request = Request::default();
        if persistence == Persistence::Close {
            self.closed = true;
        }
    }

    /// A request the server cannot serve: its error, then the connection closes.
    fn error(&mut self, status: Status, clock: &Clock, out: &mut Vec<u8>) {
        let answer = Answer::Error(status);
        respond(out, answer, self.request.head, Persistence::Close, clock, self.started);
        self.closed = true;
        self.held = Vec::new();
        self.since = None;
    }
}
