//! The request body of `--service http` (hyper's `decode`): how it is framed (`Content-Length` or chunked),
//! where the stream is inside it, and the chunk-size lines and trailer sections, each a unit the session
//! completes across reads. The body's bytes are discarded, never looked at as a request. Walk-through:
//! `docs/11-http.md`.

use httparse::{Status as Parsed, EMPTY_HEADER};

use super::head::MAX_HEADERS;
use super::response::Status;
use super::{HttpSession, Unit};
use crate::service::clock::Clock;

/// What the stream is in the middle of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Frame {
    /// Between requests (or before the first): empty lines are dropped; the keep-alive timeout runs.
    Idle,
    /// A request line and header section, from its first byte: the header timeout runs.
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

impl Frame {
    /// Whether the stream is inside a body, where the body timeout runs.
    pub(super) fn is_body(self) -> bool {
        !matches!(self, Frame::Idle | Frame::Head)
    }
}

/// How the current request's body is framed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum BodyFraming {
    #[default]
    None,
    Length(u64),
    Chunked,
}

/// Where a chunk-size line is, byte by byte, in RFC 9112 §7.1.1's grammar:
/// `1*HEXDIG *(BWS ";" BWS token [BWS "=" BWS (token / quoted-string)]) CRLF`.
#[derive(Clone, Copy)]
enum ChunkLine {
    Start,
    Size,
    /// Whitespace after the size or an extension: only `;` may follow (`5 ` then CRLF is not a line).
    BeforeSemicolon,
    /// After `;`: whitespace, then a name.
    BeforeName,
    Name,
    /// Whitespace after a name: `=` or `;` may follow.
    AfterName,
    /// After `=`: whitespace, then a token or a quoted string.
    BeforeValue,
    Value,
    Quoted,
    QuotedPair,
    AfterQuoted,
    Cr,
}

/// Whether `b` is a `tchar`, what a token is made of (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Checks a chunk-size line at the front of `bytes` against the grammar, strictly (`httparse` takes a line
/// with no digits as size 0, and any byte inside an extension, a bare LF included, which another parser on
/// the path could read as the line's end): `Ok(Some(len))` for a whole valid line of `len` bytes,
/// `Ok(None)` for a valid beginning, `Err` as soon as a byte cannot belong, so the error is the same
/// however the line was split.
pub(super) fn chunk_line(bytes: &[u8]) -> Result<Option<usize>, ()> {
    use ChunkLine::*;
    let is_space = |b: u8| b == b' ' || b == b'\t';
    let mut state = Start;
    for (i, &b) in bytes.iter().enumerate() {
        state = match (state, b) {
            (Start | Size, b) if b.is_ascii_hexdigit() => Size,
            (Size | BeforeSemicolon | Value | AfterQuoted, b) if is_space(b) => BeforeSemicolon,
            (Size | BeforeSemicolon | Name | AfterName | Value | AfterQuoted, b';') => BeforeName,
            (BeforeName, b) if is_space(b) => BeforeName,
            (BeforeName | Name, b) if is_tchar(b) => Name,
            (Name | AfterName, b) if is_space(b) => AfterName,
            (Name | AfterName, b'=') => BeforeValue,
            (BeforeValue, b) if is_space(b) => BeforeValue,
            (BeforeValue | Value, b) if is_tchar(b) => Value,
            (BeforeValue, b'"') => Quoted,
            (Quoted, b'"') => AfterQuoted,
            (Quoted, b'\\') => QuotedPair,
            // qdtext: HTAB, SP, VCHAR but `"` and `\`, obs-text.
            (Quoted, b) if b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80 => Quoted,
            // quoted-pair: `\` then HTAB, SP, VCHAR or obs-text.
            (QuotedPair, b) if b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80 => Quoted,
            (Size | Name | Value | AfterQuoted, b'\r') => Cr,
            (Cr, b'\n') => return Ok(Some(i + 1)),
            _ => return Err(()),
        };
    }
    Ok(None)
}

impl HttpSession {
    /// A chunk-size line (`hex[;extensions]` and CRLF), at the front of `input`.
    pub(super) fn chunk_size<'a>(&mut self, clock: &Clock, input: &'a [u8], out: &mut Vec<u8>) -> &'a [u8] {
        let limit = self.max_header;
        let (unit, rest) = self.unit(input, limit, parse_chunk_line, |_| {
            Unit::Invalid(Status::BadRequest)
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
    pub(super) fn trailers<'a>(&mut self, clock: &Clock, input: &'a [u8], out: &mut Vec<u8>) -> &'a [u8] {
        let limit = self.max_header;
        let (unit, rest) = self.unit(input, limit, parse_trailers, |_| {
            Unit::Invalid(Status::HeaderFieldsTooLarge)
        });
        match unit {
            Unit::Complete((), _) => self.complete(clock, out),
            Unit::Partial => {}
            Unit::Invalid(status) => self.error(status, clock, out),
        }
        rest
    }
}

/// A chunk-size line at the front of `bytes`: its size once it is whole and valid. The grammar is checked
/// here; `httparse` reads the size (and refuses one past 64 bits).
pub(super) fn parse_chunk_line(bytes: &[u8]) -> Unit<u64> {
    match chunk_line(bytes) {
        Ok(Some(len)) => match httparse::parse_chunk_size(&bytes[..len]) {
            Ok(Parsed::Complete((used, size))) if used == len => Unit::Complete(size, len),
            _ => Unit::Invalid(Status::BadRequest),
        },
        Ok(None) => Unit::Partial,
        Err(()) => Unit::Invalid(Status::BadRequest),
    }
}

/// A trailer section at the front of `bytes`, parsed by `httparse` and discarded.
pub(super) fn parse_trailers(bytes: &[u8]) -> Unit<()> {
    let mut headers = [EMPTY_HEADER; MAX_HEADERS];
    match httparse::parse_headers(bytes, &mut headers) {
        Ok(Parsed::Complete((used, _))) => Unit::Complete((), used),
        Ok(Parsed::Partial) => Unit::Partial,
        Err(httparse::Error::TooManyHeaders) => Unit::Invalid(Status::HeaderFieldsTooLarge),
        Err(_) => Unit::Invalid(Status::BadRequest),
    }
}
