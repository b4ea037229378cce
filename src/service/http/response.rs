//! The responses of `--service http` (hyper's `encode`): the status codes, the fields every response
//! carries, and the writing of one response into the turn's output without allocating. Walk-through:
//! `docs/11-http.md`.

use crate::service::clock::{Clock, HTTP_DATE_LEN};

/// What every request gets.
pub(super) const BODY: &[u8] = b"Hello, World";

/// The methods the one resource allows, as `Allow` lists them (on `OPTIONS` and on `405`).
pub(super) const ALLOW: &[u8] = b"GET, HEAD, POST, OPTIONS";

/// The strong entity tag of the one representation (RFC 9110 §8.8.3): a hash of its bytes and its type, so
/// it changes exactly when they do, and a restart of the server leaves it, and a browser's cache, alone.
pub(super) const ETAG: &[u8] = &entity_tag(BODY, b"text/plain");

/// `"` + the 32-bit FNV-1a hash of `body` and `media_type` in hex + `"`: computed when the crate is built.
const fn entity_tag(body: &[u8], media_type: &[u8]) -> [u8; 10] {
    let mut hash: u32 = 0x811c_9dc5;
    let parts = [body, media_type];
    let mut p = 0;
    while p < parts.len() {
        let mut i = 0;
        while i < parts[p].len() {
            hash ^= parts[p][i] as u32;
            hash = hash.wrapping_mul(0x0100_0193);
            i += 1;
        }
        p += 1;
    }
    let mut tag = [b'"'; 10];
    let mut i = 0;
    while i < 8 {
        tag[1 + i] = b"0123456789abcdef"[(hash >> (28 - 4 * i)) as usize & 0xf];
        i += 1;
    }
    tag
}

/// The interim response to `Expect: 100-continue`.
pub(super) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// `http`'s refusal over the server's connection cap ([`Protocol::REFUSAL`](crate::service::Protocol)):
/// `503`, so an HTTP client understands it (a line of text would be HTTP/0.9 to curl and an invalid response
/// to a browser), with `Connection: close` since the server closes at once. No `Date`: RFC 9110 §6.6.1 lets a
/// 5xx go without one, and this answer is fixed bytes written before any session, with no clock. `Retry-After: 1` because a slot frees as soon as any connection ends,
/// and a client that honours it (curl `--retry`) waits a second rather than failing or hammering.
pub(super) const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nServer: socklab\r\n\
    Content-Type: text/plain\r\nContent-Length: 21\r\nRetry-After: 1\r\nConnection: close\r\n\r\n\
    Too many connections\n";

/// The status codes this server sends (the refusal's 503 is written whole, in [`REFUSAL`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    NotModified,
    BadRequest,
    MethodNotAllowed,
    RequestTimeout,
    PreconditionFailed,
    UriTooLong,
    HeaderFieldsTooLarge,
    NotImplemented,
    VersionNotSupported,
}

impl Status {
    const fn line(self) -> &'static [u8] {
        match self {
            Status::Ok => b"HTTP/1.1 200 OK\r\n",
            Status::NotModified => b"HTTP/1.1 304 Not Modified\r\n",
            Status::BadRequest => b"HTTP/1.1 400 Bad Request\r\n",
            Status::MethodNotAllowed => b"HTTP/1.1 405 Method Not Allowed\r\n",
            Status::RequestTimeout => b"HTTP/1.1 408 Request Timeout\r\n",
            Status::PreconditionFailed => b"HTTP/1.1 412 Precondition Failed\r\n",
            Status::UriTooLong => b"HTTP/1.1 414 URI Too Long\r\n",
            Status::HeaderFieldsTooLarge => b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
            Status::NotImplemented => b"HTTP/1.1 501 Not Implemented\r\n",
            Status::VersionNotSupported => b"HTTP/1.1 505 HTTP Version Not Supported\r\n",
        }
    }

    /// The one-line body of an error; the representation for `200`; nothing for `304`.
    const fn body(self) -> &'static [u8] {
        match self {
            Status::Ok => BODY,
            Status::NotModified => b"",
            Status::BadRequest => b"Bad Request\n",
            Status::MethodNotAllowed => b"Method Not Allowed\n",
            Status::RequestTimeout => b"Request Timeout\n",
            Status::PreconditionFailed => b"Precondition Failed\n",
            Status::UriTooLong => b"URI Too Long\n",
            Status::HeaderFieldsTooLarge => b"Request Header Fields Too Large\n",
            Status::NotImplemented => b"Not Implemented\n",
            Status::VersionNotSupported => b"HTTP Version Not Supported\n",
        }
    }

    /// Every status, for the bounds.
    pub(super) const ALL: [Status; 10] = [
        Status::Ok,
        Status::NotModified,
        Status::BadRequest,
        Status::MethodNotAllowed,
        Status::RequestTimeout,
        Status::PreconditionFailed,
        Status::UriTooLong,
        Status::HeaderFieldsTooLarge,
        Status::NotImplemented,
        Status::VersionNotSupported,
    ];
}

/// What a request is answered with; the status and fields follow from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Answer {
    /// `200` and `Hello, World`, with the representation's validators (`Last-Modified`, `ETag`).
    Hello,
    /// `200` to `OPTIONS`: `Allow` and no content.
    Options,
    /// `304`: the client's copy is current; `ETag` and no content (RFC 9110 §15.4.5).
    NotModified,
    /// A status with a one-line body: an error, or a method this resource does not allow (`405`, with
    /// `Allow`) or this server does not know (`501`).
    Error(Status),
}

#[cfg(test)]
impl Answer {
    /// Every kind of answer but the errors (each status is one), for the bounds.
    pub(super) const ALL: [Answer; 3] = [Answer::Hello, Answer::Options, Answer::NotModified];
}

/// What follows the response's headers about the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Persistence {
    /// HTTP/1.1's default: say nothing.
    KeepAlive,
    /// HTTP/1.0 asked to keep the connection: say `Connection: keep-alive`.
    KeepAlive10,
    /// The server closes after this response: say `Connection: close`.
    Close,
}

/// At least the most bytes one response can take: the longest status line and body, with every field any
/// response carries (each response has only some of them).
pub(super) const fn max_response() -> usize {
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
        + b"Last-Modified: \r\n".len()
        + HTTP_DATE_LEN
        + b"ETag: \r\n".len()
        + ETAG.len()
        + b"Allow: \r\n".len()
        + ALLOW.len()
        + b"Content-Type: text/plain\r\n".len()
        + b"Content-Length: 99\r\n".len()
        + b"Connection: keep-alive\r\n".len()
        + b"\r\n".len()
}

/// The most bytes the answer to one request can take: its `100 Continue` and its response.
pub(super) const MAX_ANSWER: usize = CONTINUE.len() + max_response();

/// Writes one response. `last_modified` is the representation's modification time, in Unix seconds.
pub(super) fn respond(
    out: &mut Vec<u8>,
    answer: Answer,
    head: bool,
    persistence: Persistence,
    clock: &Clock,
    last_modified: u64,
) {
    if answer == Answer::Hello {
        hello(out, head, persistence, clock, last_modified);
    } else {
        assemble(out, answer, head, persistence, clock, last_modified);
    }
}

/// The `200` with `Hello, World`, nearly every response: its fixed bytes copied whole from a template
/// made when the crate is built, then its two dates written into their places. The same bytes as
/// [`assemble`] writes (a test holds them to it), for one copy where that makes a dozen.
fn hello(out: &mut Vec<u8>, head: bool, persistence: Persistence, clock: &Clock, last_modified: u64) {
    let whole: &[u8] = match persistence {
        Persistence::KeepAlive => &HELLO_KEEP_ALIVE,
        Persistence::KeepAlive10 => &HELLO_KEEP_ALIVE10,
        Persistence::Close => &HELLO_CLOSE,
    };
    // The body comes last: a `HEAD` gets the same response without it.
    let bytes = if head { &whole[..whole.len() - BODY.len()] } else { whole };
    // In this order, as `assemble` asks the clock: `http_date_until_now` reuses what `http_date` read.
    let date = clock.http_date();
    let modified = clock.http_date_until_now(last_modified);
    let start = out.len();
    out.extend_from_slice(bytes);
    let dates = &mut out[start..][..LAST_MODIFIED_AT + HTTP_DATE_LEN];
    dates[DATE_AT..DATE_AT + HTTP_DATE_LEN].copy_from_slice(&date);
    dates[LAST_MODIFIED_AT..].copy_from_slice(&modified);
}

/// The parts of the `200` with `Hello, World`, its dates left blank, for the connection's `end`.
const fn hello_parts(end: &'static [u8]) -> [&'static [u8]; 10] {
    [
        Status::Ok.line(),
        b"Server: socklab\r\nDate: ",
        &[b' '; HTTP_DATE_LEN],
        b"\r\nLast-Modified: ",
        &[b' '; HTTP_DATE_LEN],
        b"\r\nETag: ",
        ETAG,
        b"\r\nContent-Type: text/plain\r\nContent-Length: 12",
        end,
        BODY,
    ]
}

// The template's `Content-Length` is written out: it must be the body's.
const _: () = assert!(BODY.len() == 12);

/// Where the `Date` and the `Last-Modified` texts go in the template.
const DATE_AT: usize = Status::Ok.line().len() + b"Server: socklab\r\nDate: ".len();
const LAST_MODIFIED_AT: usize = DATE_AT + HTTP_DATE_LEN + b"\r\nLast-Modified: ".len();

const HELLO_KEEP_ALIVE_PARTS: [&[u8]; 10] = hello_parts(end_of_fields_bytes(Persistence::KeepAlive));
const HELLO_KEEP_ALIVE10_PARTS: [&[u8]; 10] = hello_parts(end_of_fields_bytes(Persistence::KeepAlive10));
const HELLO_CLOSE_PARTS: [&[u8]; 10] = hello_parts(end_of_fields_bytes(Persistence::Close));
const HELLO_KEEP_ALIVE: [u8; joined_len(&HELLO_KEEP_ALIVE_PARTS)] = joined(&HELLO_KEEP_ALIVE_PARTS);
const HELLO_KEEP_ALIVE10: [u8; joined_len(&HELLO_KEEP_ALIVE10_PARTS)] = joined(&HELLO_KEEP_ALIVE10_PARTS);
const HELLO_CLOSE: [u8; joined_len(&HELLO_CLOSE_PARTS)] = joined(&HELLO_CLOSE_PARTS);

const fn joined_len(parts: &[&[u8]]) -> usize {
    let mut len = 0;
    let mut p = 0;
    while p < parts.len() {
        len += parts[p].len();
        p += 1;
    }
    len
}

/// `parts` one after another, in an array of exactly their length.
const fn joined<const N: usize>(parts: &[&[u8]]) -> [u8; N] {
    let mut out = [0; N];
    let mut at = 0;
    let mut p = 0;
    while p < parts.len() {
        let mut i = 0;
        while i < parts[p].len() {
            out[at] = parts[p][i];
            at += 1;
            i += 1;
        }
        p += 1;
    }
    assert!(at == N);
    out
}

/// Writes any response, a field at a time.
pub(super) fn assemble(
    out: &mut Vec<u8>,
    answer: Answer,
    head: bool,
    persistence: Persistence,
    clock: &Clock,
    last_modified: u64,
) {
    let status = match answer {
        Answer::Hello | Answer::Options => Status::Ok,
        Answer::NotModified => Status::NotModified,
        Answer::Error(status) => status,
    };
    out.extend_from_slice(status.line());
    out.extend_from_slice(b"Server: socklab\r\nDate: ");
    out.extend_from_slice(&clock.http_date());
    let body = match answer {
        Answer::Hello => {
            out.extend_from_slice(b"\r\nLast-Modified: ");
            out.extend_from_slice(&clock.http_date_until_now(last_modified));
            out.extend_from_slice(b"\r\nETag: ");
            out.extend_from_slice(ETAG);
            out.extend_from_slice(b"\r\nContent-Type: text/plain\r\nContent-Length: ");
            BODY
        }
        Answer::Options => {
            out.extend_from_slice(b"\r\nAllow: ");
            out.extend_from_slice(ALLOW);
            out.extend_from_slice(b"\r\nContent-Length: ");
            b""
        }
        Answer::NotModified => {
            // No content and no Content-Length: a 304 has none, whatever its fields (RFC 9110 §15.4.5).
            out.extend_from_slice(b"\r\nETag: ");
            out.extend_from_slice(ETAG);
            end_of_fields(out, persistence);
            return;
        }
        Answer::Error(status) => {
            if status == Status::MethodNotAllowed {
                out.extend_from_slice(b"\r\nAllow: ");
                out.extend_from_slice(ALLOW);
            }
            out.extend_from_slice(b"\r\nContent-Type: text/plain\r\nContent-Length: ");
            status.body()
        }
    };
    decimal(out, body.len());
    end_of_fields(out, persistence);
    if !head {
        out.extend_from_slice(body);
    }
}

/// Ends the last field, says what happens to the connection, and ends the header section.
fn end_of_fields(out: &mut Vec<u8>, persistence: Persistence) {
    out.extend_from_slice(end_of_fields_bytes(persistence));
}

const fn end_of_fields_bytes(persistence: Persistence) -> &'static [u8] {
    match persistence {
        Persistence::KeepAlive => b"\r\n\r\n",
        Persistence::KeepAlive10 => b"\r\nConnection: keep-alive\r\n\r\n",
        Persistence::Close => b"\r\nConnection: close\r\n\r\n",
    }
}

/// Appends `n` in decimal, without allocating.
pub(super) fn decimal(out: &mut Vec<u8>, mut n: usize) {
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
