//! The request head of `--service http`: the request line and header section, parsed by `httparse`, and
//! what they mean (hyper's `role`): the method and the answer it gets, whether the target and the fields
//! are acceptable, the body's framing and the connection's persistence. Walk-through: `docs/11-http.md`.
//!
//! `httparse` does the parsing. Around it, where it is more lenient than RFC 9112 or refuses what the RFC
//! would have served, this file adds small checks of its own: the request line's version when `httparse`
//! refuses it (`HTTP/1.2` is served as 1.1; a malformed line is `400`, another major version `505`), the
//! target's form, the `Host` value, and `Content-Length` on every line.

use std::mem::MaybeUninit;
use std::net::Ipv6Addr;

use httparse::{Status as Parsed, EMPTY_HEADER};

use super::body::BodyFraming;
use super::conditional::Conditions;
use super::response::{Answer, Persistence, Status};
use super::Unit;
use crate::service::clock::Clock;

/// Header fields one request may have: the size of the array `httparse` fills, on the stack (2 KiB).
/// hyper allows 100 by default; a browser sends about 15.
pub const MAX_HEADERS: usize = 64;

/// What a well-formed header section says: the answer its request gets, and how to read what follows.
#[derive(Clone, Copy, Debug)]
pub(super) struct Facts {
    pub(super) answer: Answer,
    pub(super) head: bool,
    pub(super) persistence: Persistence,
    pub(super) body: BodyFraming,
    pub(super) expect_continue: bool,
}

/// What a whole header section is: its facts, or its error and whether it was a `HEAD` (whose error has
/// no body).
pub(super) type Head = Result<Facts, (Status, bool)>;

/// The request line, once it is known to be well-formed.
struct Line<'a> {
    method: &'a str,
    target: &'a str,
    http10: bool,
}

/// Parses a request line and header section, its first byte a request line's (the session drops the empty
/// lines before one). `started` is the representation's `Last-Modified`, for the preconditions.
pub(super) fn parse_head(bytes: &[u8], clock: &Clock, started: u64) -> Unit<Head> {
    // Left uninitialised: httparse writes only the fields it finds, so clearing all 64 (2 KiB) for every
    // request would be work a short request does not need.
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    let parsed = request.parse_with_uninit_headers(bytes, &mut headers);
    // A bad request closes the connection, so what it used does not matter; whether it was a `HEAD` does.
    let head = request.method == Some("HEAD");
    let bad = |status| Unit::Complete(Err((status, head)), bytes.len());
    match parsed {
        Ok(Parsed::Complete(used)) => {
            let line = Line {
                method: request.method.unwrap_or_default(),
                target: request.path.unwrap_or_default(),
                http10: request.version == Some(0),
            };
            Unit::Complete(facts(&line, request.headers, clock, started), used)
        }
        Ok(Parsed::Partial) => Unit::Partial,
        Err(httparse::Error::TooManyHeaders) => bad(Status::HeaderFieldsTooLarge),
        Err(httparse::Error::Version) => match (request.method, request.path) {
            (Some(method), Some(target)) => other_version(bytes, method, target, clock, started),
            _ => bad(Status::BadRequest),
        },
        Err(_) => bad(Status::BadRequest),
    }
}

/// The request line `httparse` stopped at the version of, having read `method SP target SP`: what follows
/// must be `HTTP/x.y` and the line's end. `HTTP/1.x` past 1.1 is served as HTTP/1.1 (RFC 9110 §2.5: a
/// later minor version is understood as the highest this server knows), its header section parsed by
/// `httparse` from the next line; another major version is `505`; anything else (a space in the target, a
/// doubled space) is a malformed line, `400`, whatever it ends with (RFC 9112 §3).
fn other_version(bytes: &[u8], method: &str, target: &str, clock: &Clock, started: u64) -> Unit<Head> {
    let head = method == "HEAD";
    let bad = |status| Unit::Complete(Err((status, head)), bytes.len());
    // `target` lies in `bytes`: the version starts after it and the one space httparse took.
    let start = (target.as_ptr() as usize - bytes.as_ptr() as usize) + target.len() + 1;
    let rest = bytes.get(start..).unwrap_or_default();
    let Some(lf) = rest.iter().position(|&b| b == b'\n') else {
        return if could_be_version(rest) {
            Unit::Partial
        } else {
            bad(Status::BadRequest)
        };
    };
    let version = rest[..lf].strip_suffix(b"\r").unwrap_or(&rest[..lf]);
    match version {
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', minor] if minor.is_ascii_digit() => {}
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            return bad(Status::VersionNotSupported)
        }
        _ => return bad(Status::BadRequest),
    }
    // Only this rare path pays for clearing the array.
    let fields_start = start + lf + 1;
    let mut headers = [EMPTY_HEADER; MAX_HEADERS];
    match httparse::parse_headers(&bytes[fields_start..], &mut headers) {
        Ok(Parsed::Complete((used, headers))) => {
            let line = Line {
                method,
                target,
                http10: false,
            };
            Unit::Complete(facts(&line, headers, clock, started), fields_start + used)
        }
        Ok(Parsed::Partial) => Unit::Partial,
        Err(httparse::Error::TooManyHeaders) => bad(Status::HeaderFieldsTooLarge),
        Err(_) => bad(Status::BadRequest),
    }
}

/// Whether an unfinished line may still become `HTTP/d.d` and its end (so the answer waits for the rest).
fn could_be_version(rest: &[u8]) -> bool {
    const SHAPE: &[u8] = b"HTTP/0.0\r";
    rest.len() <= SHAPE.len()
        && rest.iter().zip(SHAPE).all(|(&b, &s)| match s {
            b'0' => b.is_ascii_digit(),
            _ => b == s,
        })
}

/// A header section past `--max-header` (`bytes`, the first `limit` of which are looked at): `414` if its
/// request line did not end within the limit (RFC 9112 §3: a target longer than the server will parse),
/// `501` if not even its method did (RFC 9112 §3: a method longer than any it knows), else `431`; and
/// whether it was a `HEAD`.
pub(super) fn too_large(bytes: &[u8], limit: usize) -> (Status, bool) {
    let within = &bytes[..bytes.len().min(limit)];
    let status = if within.contains(&b'\n') {
        Status::HeaderFieldsTooLarge
    } else if within.contains(&b' ') {
        Status::UriTooLong
    } else {
        Status::NotImplemented
    };
    (status, names_head(bytes))
}

/// Whether the request these bytes begin is a `HEAD`, as far as they go: its method must have ended.
pub(super) fn names_head(bytes: &[u8]) -> bool {
    bytes.starts_with(b"HEAD ")
}

/// Refuses bytes RFC 3986 does not allow in a request target but `httparse` lets through (0x80–0xFF).
pub(super) fn check_target(target: &str) -> Result<(), Status> {
    // `is_ascii` looks at a word at a time: the same test as any byte >= 0x80, for less per request.
    if !target.is_ascii() {
        return Err(Status::BadRequest);
    }
    Ok(())
}

/// Whether `target` is in a form RFC 9112 §3.2 allows with `method`: origin-form (`/path?query`) for any
/// method but `CONNECT`; asterisk-form (`*`) for `OPTIONS` only; authority-form (`host:port`) for `CONNECT`
/// only, and `CONNECT` only that; absolute-form with an authority (`scheme://host[:port]/...`), whose host
/// must be valid, with no userinfo (RFC 9110 §4.2.4). A scheme with no `//` reads the same as an
/// authority-form (`a:443` is both), so it is taken as one.
fn target_form_is_valid(method: &str, target: &str) -> bool {
    let target = target.as_bytes();
    if method == "CONNECT" {
        return authority_is_valid(target, Port::Required);
    }
    match target {
        [b'/', ..] => true,
        b"*" => method == "OPTIONS",
        _ => absolute_form_is_valid(target),
    }
}

fn absolute_form_is_valid(target: &[u8]) -> bool {
    let Some(colon) = target.iter().position(|&b| b == b':') else {
        return false;
    };
    let scheme = &target[..colon];
    let scheme_ok = scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    let Some(rest) = target[colon + 1..].strip_prefix(b"//") else {
        return false;
    };
    let end = rest
        .iter()
        .position(|&b| b"/?#".contains(&b))
        .unwrap_or(rest.len());
    let authority = &rest[..end];
    // A `http` or `https` URI with an empty host is invalid (RFC 9110 §4.2.1, §4.2.2).
    let needs_host = scheme.eq_ignore_ascii_case(b"http") || scheme.eq_ignore_ascii_case(b"https");
    let port = if needs_host { Port::HostRequired } else { Port::Optional };
    scheme_ok && authority_is_valid(authority, port)
}

/// What an authority must have beyond its host's syntax.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Port {
    /// `Host`: an empty value, an empty port, are valid (`a:`).
    Optional,
    /// An `http` URI: a host, port optional.
    HostRequired,
    /// `CONNECT`'s authority-form: a host and a port, digits.
    Required,
}

/// `uri-host [":" port]` (RFC 9110 §4.2.3, §7.2): an IP-literal in brackets (`[::1]`, or `[v1.x]`), or a
/// reg-name of unreserved characters, sub-delims (so `a,b` is one) and %-escapes, which covers IPv4; the
/// port is digits. Refused: a space, `/`, `?`, `#`, `@` (userinfo), `"`, a non-digit port, an unclosed `[`.
#[inline]
fn authority_is_valid(value: &[u8], port: Port) -> bool {
    // The usual value, a plain name or IPv4 address and perhaps a port (`socklab`, `127.0.0.1:8080`), in
    // one pass; anything else (a `%`, a `[`, a byte not allowed) gets the whole check below, whose verdict
    // on the usual value is the same.
    let allowed = |at: usize| REG_NAME[value[at] as usize];
    let mut i = 0;
    // Four bytes a step while all four are allowed, then a byte at a time to the first that is not.
    while i + 4 <= value.len() && allowed(i) & allowed(i + 1) & allowed(i + 2) & allowed(i + 3) {
        i += 4;
    }
    while i < value.len() && allowed(i) {
        i += 1;
    }
    let plain = match &value[i..] {
        [] => Some(None),
        [b':', digits @ ..] if digits.iter().all(u8::is_ascii_digit) => Some(Some(digits)),
        _ => None,
    };
    match plain {
        Some(digits) => port_is_valid(i != 0, digits, port),
        None => authority_is_valid_slowly(value, port),
    }
}

/// [`authority_is_valid`] for any value: an IP-literal, %-escapes, or a byte that is not allowed.
#[cold]
#[inline(never)]
fn authority_is_valid_slowly(value: &[u8], port: Port) -> bool {
    let (host, after) = if value.first() == Some(&b'[') {
        let Some(close) = value.iter().position(|&b| b == b']') else {
            return false;
        };
        if !ip_literal_is_valid(&value[1..close]) {
            return false;
        }
        (&value[..=close], &value[close + 1..])
    } else {
        let end = value
            .iter()
            .position(|&b| b == b':')
            .unwrap_or(value.len());
        if !reg_name_is_valid(&value[..end]) {
            return false;
        }
        (&value[..end], &value[end..])
    };
    let digits = match after {
        [] => None,
        [b':', digits @ ..] if digits.iter().all(u8::is_ascii_digit) => Some(digits),
        _ => return false,
    };
    port_is_valid(!host.is_empty(), digits, port)
}

/// Whether an authority with a valid host (empty or not), and a port of `digits` if it has a colon, has
/// what `port` asks beyond that.
fn port_is_valid(has_host: bool, digits: Option<&[u8]>, port: Port) -> bool {
    match port {
        Port::Optional => true,
        Port::HostRequired => has_host,
        Port::Required => has_host && digits.is_some_and(|d| !d.is_empty()),
    }
}

/// The bytes a reg-name may hold as they are: unreserved and sub-delims (RFC 3986 §3.2.2). A table, since
/// every request's `Host` is looked at byte by byte.
const REG_NAME: [bool; 256] = {
    let mut table = [false; 256];
    let extra = b"-._~!$&'()*+,;=";
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric();
        b += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        table[extra[i] as usize] = true;
        i += 1;
    }
    table
};

fn reg_name_is_valid(name: &[u8]) -> bool {
    let mut i = 0;
    while i < name.len() {
        if name[i] == b'%' {
            let escape = name.get(i + 1..i + 3);
            if !escape.is_some_and(|e| e.iter().all(u8::is_ascii_hexdigit)) {
                return false;
            }
            i += 3;
        } else if REG_NAME[name[i] as usize] {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

/// `IPv6address` (read by the standard library, which allocates nothing) or `IPvFuture` (`v1.x`).
fn ip_literal_is_valid(inner: &[u8]) -> bool {
    if let [b'v' | b'V', rest @ ..] = inner {
        let Some(dot) = rest.iter().position(|&b| b == b'.') else {
            return false;
        };
        let (version, tail) = (&rest[..dot], &rest[dot + 1..]);
        return !version.is_empty()
            && version.iter().all(u8::is_ascii_hexdigit)
            && !tail.is_empty()
            && tail
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:".contains(&b));
    }
    std::str::from_utf8(inner).is_ok_and(|s| s.parse::<Ipv6Addr>().is_ok())
}

/// The answer a method gets (RFC 9110 §9): this server's one resource is read with `GET`, `HEAD` and
/// `POST`, described by `OPTIONS`; the other standard methods are known but not allowed (`405`); any other
/// is unknown (`501`). Methods are case-sensitive: `get` is unknown.
fn method_answer(method: &str) -> Answer {
    match method {
        "GET" | "HEAD" | "POST" => Answer::Hello,
        "OPTIONS" => Answer::Options,
        "PUT" | "DELETE" | "PATCH" | "TRACE" | "CONNECT" => Answer::Error(Status::MethodNotAllowed),
        _ => Answer::Error(Status::NotImplemented),
    }
}

/// What a complete, well-formed header section means, or why it is refused. Inlined into its two callers:
/// every request comes through here, and the call moved its arguments through memory.
#[inline(always)]
fn facts(line: &Line<'_>, headers: &[httparse::Header<'_>], clock: &Clock, started: u64) -> Head {
    let head = line.method == "HEAD";
    let fail = |status| Err((status, head));
    let http10 = line.http10;
    if check_target(line.target).is_err() || !target_form_is_valid(line.method, line.target) {
        return fail(Status::BadRequest);
    }
    let mut hosts = 0;
    // Made when the first field other than `Host` comes: most requests have none.
    let mut others: Option<OtherFields<'_>> = None;
    for header in headers {
        if is_host(header.name) {
            hosts += 1;
            if !authority_is_valid(trim(header.value), Port::Optional) {
                return fail(Status::BadRequest);
            }
        } else if others.get_or_insert_default().add(header.name, header.value).is_err() {
            return fail(Status::BadRequest);
        }
    }
    if hosts > 1 || (hosts == 0 && !http10) {
        return fail(Status::BadRequest);
    }
    let (mut persistence, mut body) = match &others {
        // No field but `Host`: what the version says, and no body.
        None if http10 => (Persistence::Close, BodyFraming::Length(0)),
        None => (Persistence::KeepAlive, BodyFraming::Length(0)),
        Some(others) => match others.framing(http10) {
            Ok(framing) => framing,
            Err(status) => return fail(status),
        },
    };
    let mut answer = method_answer(line.method);
    if line.method == "CONNECT" {
        // What follows a CONNECT is a tunnel's data, whatever its fields say: it is answered at once, and
        // the connection closed before any of that could be read as a request.
        body = BodyFraming::None;
        persistence = Persistence::Close;
    }
    // Preconditions apply only where the answer would otherwise be 200 (RFC 9110 §13.2.1), so never to
    // OPTIONS or an error; nothing is done for a request that has none (one with no field but `Host`).
    if let Some(conditions) = others.as_ref().map(|o| &o.conditions).filter(|c| c.any()) {
        if answer == Answer::Hello {
            let safe = line.method != "POST";
            if let Some(failed) = conditions.evaluate(safe, started, clock) {
                answer = failed;
            }
        }
    }
    Ok(Facts {
        answer,
        head,
        persistence,
        body,
        expect_continue: others.as_ref().is_some_and(|o| o.expect_continue) && !http10,
    })
}

/// What a request's fields other than `Host` say.
#[derive(Default)]
struct OtherFields<'a> {
    length: Option<u64>,
    codings: Codings,
    conditions: Conditions<'a>,
    close: bool,
    keep_alive: bool,
    expect_continue: bool,
}

impl<'a> OtherFields<'a> {
    /// Takes one field; `Err` if it makes the request bad (`400`).
    fn add(&mut self, name: &str, value: &'a [u8]) -> Result<(), ()> {
        if name.eq_ignore_ascii_case("content-length") {
            // Every line on its own, so that the verdict cannot depend on the lines' order.
            let n = content_length(value).ok_or(())?;
            if self.length.is_some_and(|seen| seen != n) {
                return Err(());
            }
            self.length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Present, even if empty: an empty coding list frames nothing and is refused below.
            self.codings.present = true;
            for coding in list(value) {
                self.codings.add(coding);
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for token in list(value) {
                self.close |= token.eq_ignore_ascii_case(b"close");
                self.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("expect") {
            self.expect_continue |= trim(value).eq_ignore_ascii_case(b"100-continue");
        } else {
            self.conditions.add(name, value);
        }
        Ok(())
    }

    /// Once every field is in: the connection's persistence and the body's framing, or why the request is
    /// refused.
    fn framing(&self, http10: bool) -> Result<(Persistence, BodyFraming), Status> {
        let mut persistence = match (http10, self.close, self.keep_alive) {
            (_, true, _) => Persistence::Close,
            (true, false, true) => Persistence::KeepAlive10,
            (true, false, false) => Persistence::Close,
            (false, false, _) => Persistence::KeepAlive,
        };
        let body = if self.codings.present {
            if self.length.is_some() {
                // Two framings for one body: whichever a peer believed, the other could smuggle a request.
                return Err(Status::BadRequest);
            }
            if http10 {
                // HTTP/1.0 has no transfer codings: the framing cannot be trusted. Answer, then close.
                persistence = Persistence::Close;
                BodyFraming::None
            } else {
                self.codings.verdict()?;
                BodyFraming::Chunked
            }
        } else {
            BodyFraming::Length(self.length.unwrap_or(0))
        };
        Ok((persistence, body))
    }
}

/// Whether a field's name is `Host`, in any case: nearly every request's first field, so compared as
/// one word. `b | 0x20` is `h`, `o`, `s`, `t` only for that letter in either case.
fn is_host(name: &str) -> bool {
    match name.as_bytes() {
        &[a, b, c, d] => u32::from_le_bytes([a, b, c, d]) | 0x2020_2020 == u32::from_le_bytes(*b"host"),
        _ => false,
    }
}

/// The transfer codings of a request, in order.
#[derive(Default)]
struct Codings {
    present: bool,
    count: usize,
    chunked_at: Option<usize>,
    chunked_twice: bool,
    unknown: bool,
}

impl Codings {
    fn add(&mut self, coding: &[u8]) {
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

pub(super) fn trim(bytes: &[u8]) -> &[u8] {
    let is_space = |b: &u8| *b == b' ' || *b == b'\t';
    // Most values have nothing to trim (httparse trims a field value's ends already).
    if bytes.first().is_some_and(|b| !is_space(b)) && bytes.last().is_some_and(|b| !is_space(b)) {
        return bytes;
    }
    let start = bytes.iter().position(|b| !is_space(b)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !is_space(b)).map_or(start, |e| e + 1);
    &bytes[start..end.max(start)]
}

/// One `Content-Length` line: `1*DIGIT` as a `u64` (no sign, no space inside, no overflow), or a list of
/// such values all equal, which RFC 9110 §8.6 lets a recipient take as one. An empty value, an empty
/// element, or two different values is `None`: a framing error, wherever the line stands.
fn content_length(value: &[u8]) -> Option<u64> {
    let mut length = None;
    for element in value.split(|&b| b == b',').map(trim) {
        if element.is_empty() || !element.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = element.iter().try_fold(0u64, |n, &d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })?;
        if length.is_some_and(|seen| seen != n) {
            return None;
        }
        length = Some(n);
    }
    length
}

#[cfg(test)]
mod tests {
    use super::{authority_is_valid, authority_is_valid_slowly, is_host, Port};

    #[test]
    fn the_authority_fast_path_agrees_with_the_whole_check() {
        // Every string of up to six bytes from these, which reach each branch of both.
        const ALPHABET: &[u8] = b"a1.:%[]@ -vF";
        let mut value = Vec::new();
        for len in 0..=6u32 {
            for mut n in 0..ALPHABET.len().pow(len) {
                value.clear();
                for _ in 0..len {
                    value.push(ALPHABET[n % ALPHABET.len()]);
                    n /= ALPHABET.len();
                }
                for port in [Port::Optional, Port::HostRequired, Port::Required] {
                    assert_eq!(
                        authority_is_valid(&value, port),
                        authority_is_valid_slowly(&value, port),
                        "{:?}",
                        String::from_utf8_lossy(&value)
                    );
                }
            }
        }
    }

    #[test]
    fn is_host_is_host_in_any_case_and_nothing_else() {
        for b in 0..=255u8 {
            for at in 0..4 {
                let mut name = *b"host";
                name[at] = b;
                // Names come from httparse as tokens, but any bytes must get the same verdict.
                let Ok(name) = std::str::from_utf8(&name) else { continue };
                assert_eq!(is_host(name), name.eq_ignore_ascii_case("host"), "{name:?}");
            }
        }
        for name in ["HOST", "Host", "hOsT", "hos", "hosts", "", "x-host"] {
            assert_eq!(is_host(name), name.eq_ignore_ascii_case("host"), "{name:?}");
        }
    }
}
