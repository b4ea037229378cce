//! The rules of `--service http`, byte by byte: each request and the response it must get, whole, split at
//! every byte, and over time with an injected clock. Walk-through: `docs/11-http.md`.

use super::*;
use super::response::max_response;
use httparse::Status as Parsed;
use crate::service::{
    DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_TIMEOUT, DEFAULT_KEEPALIVE_TIMEOUT, DEFAULT_MAX_HEADER,
};

const DATE: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

/// The `Last-Modified` of a session made with the default options (`started` is 0).
const EPOCH: &str = "Thu, 01 Jan 1970 00:00:00 GMT";

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
        "HTTP/1.1 200 OK\r\nServer: socklab\r\nDate: {DATE}\r\nLast-Modified: {EPOCH}\r\n\
         ETag: \"0468076d\"\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n{connection}\r\n{}",
        if body { "Hello, World" } else { "" }
    )
}

fn status_of(output: &str) -> Vec<u16> {
    output
        .split("HTTP/1.1 ")
        .skip(1)
        // Typed: in Windows builds a dependency adds trait impls and inference no longer settles it.
        .map(|r| r[..3].parse::<u16>().unwrap())
        .collect()
}

fn one(request: &[u8]) -> (String, bool) {
    run(&[request])
}

#[test]
fn the_reply_is_hello_world_with_its_headers() {
    assert_eq!(one(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), (ok("", true), false));
    // The methods that read the one resource, any target in a valid form.
    assert_eq!(one(b"POST /x?y HTTP/1.1\r\nHost: a\r\n\r\n").0, ok("", true));
    assert_eq!(one(b"GET http://a/x HTTP/1.1\r\nHost: a\r\n\r\n").0, ok("", true));
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
    for version in [&b"GET / HTTP/2.0\r\n\r\n"[..], b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"GET / HTTP/0.9\r\nHost: a\r\n\r\n", b"GET / HTTP/3.0\r\n\r\n"] {
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
    let errors = Status::ALL.map(Answer::Error);
    for answer in Answer::ALL.iter().chain(&errors) {
        for persistence in [Persistence::KeepAlive, Persistence::KeepAlive10, Persistence::Close] {
            let mut out = Vec::new();
            respond(&mut out, *answer, false, persistence, &clock(), 0);
            assert!(out.len() <= max_response(), "{answer:?} {}", out.len());
        }
    }
}

#[test]
fn the_hello_template_is_the_response_assembled_field_by_field() {
    for persistence in [Persistence::KeepAlive, Persistence::KeepAlive10, Persistence::Close] {
        for head in [false, true] {
            // A start past the epoch and one past now: `Last-Modified` is held to `Date`.
            for started in [0, 784_111_700, u64::MAX] {
                let (mut fast, mut slow) = (b"before".to_vec(), b"before".to_vec());
                respond(&mut fast, Answer::Hello, head, persistence, &clock(), started);
                response::assemble(&mut slow, Answer::Hello, head, persistence, &clock(), started);
                assert_eq!(String::from_utf8(fast).unwrap(), String::from_utf8(slow).unwrap());
            }
        }
    }
}

#[test]
fn the_refusal_over_the_connection_cap_is_a_503_an_http_client_can_read() {
    let mut headers = [httparse::EMPTY_HEADER; 8];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(Http::REFUSAL) {
        Ok(Parsed::Complete(head)) => head,
        other => panic!("not a whole response: {other:?}"),
    };
    assert_eq!(response.code, Some(503));
    let field = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| std::str::from_utf8(h.value).unwrap())
    };
    assert_eq!(field("Connection"), Some("close"));
    assert_eq!(field("Retry-After"), Some("1"));
    let length: usize = field("Content-Length").unwrap().parse().unwrap();
    assert_eq!(length, Http::REFUSAL.len() - head, "the body is exactly what Content-Length says");
}

/// The output for `request` whole, after checking that every split of it in two, and byte by byte, gives
/// the same: the rule every fixture below is held to.
fn whole_and_split(request: &[u8]) -> (String, bool) {
    let whole = one(request);
    for cut in 0..=request.len() {
        let split = run(&[&request[..cut], &request[cut..]]);
        assert_eq!(split, whole, "{:?} cut at {cut}", String::from_utf8_lossy(request));
    }
    let bytes: Vec<&[u8]> = request.chunks(1).collect();
    assert_eq!(run(&bytes), whole, "{:?} byte by byte", String::from_utf8_lossy(request));
    whole
}

/// The status codes of `request`'s responses, whole and under every split.
fn statuses(request: &[u8]) -> Vec<u16> {
    status_of(&whole_and_split(request).0)
}

const NEXT: &[u8] = b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n";

/// `request` followed by an ordinary GET: the statuses, and whether the connection closed.
fn then_next(request: &[u8]) -> (Vec<u16>, bool) {
    let stream = [request, NEXT].concat();
    let (out, closed) = whole_and_split(&stream);
    (status_of(&out), closed)
}

#[test]
fn methods_get_the_answers_of_the_decisions_table() {
    // OPTIONS, with any valid target and `*`: what is allowed, and no content.
    for request in [&b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"[..], b"OPTIONS /x HTTP/1.1\r\nHost: a\r\n\r\n"] {
        assert_eq!(
            one(request).0,
            format!("HTTP/1.1 200 OK\r\nServer: socklab\r\nDate: {DATE}\r\nAllow: GET, HEAD, POST, OPTIONS\r\nContent-Length: 0\r\n\r\n")
        );
        assert_eq!(then_next(request), (vec![200, 200], false));
    }
    // The standard methods this resource does not allow: 405 with Allow, and the connection goes on.
    for method in ["PUT", "DELETE", "PATCH", "TRACE"] {
        let request = format!("{method} /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc");
        let (out, _) = one(request.as_bytes());
        assert_eq!(
            out,
            format!("HTTP/1.1 405 Method Not Allowed\r\nServer: socklab\r\nDate: {DATE}\r\nAllow: GET, HEAD, POST, OPTIONS\r\nContent-Type: text/plain\r\nContent-Length: 19\r\n\r\nMethod Not Allowed\n"),
            "{method}"
        );
        assert_eq!(then_next(request.as_bytes()), (vec![405, 200], false), "{method}");
    }
    // Methods are case-sensitive; an unknown one is 501, its body read, and the connection goes on.
    for method in ["FOO", "get", "Get", "BREW", "M-SEARCH"] {
        let request = format!("{method} / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi");
        assert_eq!(then_next(request.as_bytes()), (vec![501, 200], false), "{method}");
    }
}

#[test]
fn connect_gets_405_and_the_close_and_its_tunnel_data_is_never_read() {
    for target in ["a:443", "[::1]:443", "127.0.0.1:80", "xn--d1a.example:8443"] {
        let request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
        let (out, closed) = one(request.as_bytes());
        assert!(out.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{target}: {out}");
        assert!(out.contains("\r\nAllow: GET, HEAD, POST, OPTIONS\r\n") && out.contains("\r\nConnection: close\r\n"), "{out}");
        assert!(closed, "{target}");
        // What a client sends after a CONNECT is a tunnel's: never taken for a request, even with framing.
        let tunnel = format!("CONNECT {target} HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(then_next(tunnel.as_bytes()), (vec![405], true), "{target}");
    }
    // No answer to CONNECT is a 2xx, so none carries Content-Length where a tunnel would begin.
    // CONNECT takes only the authority-form, with a host and a port.
    for target in ["/", "a", "a:", ":443", "http://a:443/", "a:b", "*"] {
        let request = format!("CONNECT {target} HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(statuses(request.as_bytes()), [400], "{target}");
    }
}

#[test]
fn the_host_value_must_be_a_host_and_an_optional_port() {
    for host in ["", "a", "a:", "a:80", "[::1]:12000", "[::1]", "a,b", "127.0.0.1", "xn--d1a.example", "%41b", "[v1.x:y]", "a!$&'()*+;=b"] {
        let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
        assert_eq!(statuses(request.as_bytes()), [200], "Host: {host:?} is valid");
    }
    for host in ["a b", "a/b", "a@b", "a?b", "a\"b", "x:abc", "[::1", "[::1]x", "[zz]", "a#b", "%4", "a:1:2", "[]", "a%zz", "a<b", "[v1]"] {
        let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
        let (out, closed) = whole_and_split(request.as_bytes());
        assert_eq!((status_of(&out), closed), (vec![400], true), "Host: {host:?} is not valid");
    }
}

#[test]
fn targets_must_be_in_a_form_their_method_allows() {
    for line in ["GET !", "GET *", "POST *", "HEAD *", "GET a:443", "GET example.com:80", "GET http://user@a/x", "GET http://u:p@a/", "GET http:///x", "GET https:/x", "GET 1http://a/", "GET ?x", "OPTIONS a:443"] {
        let request = format!("{line} HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(statuses(request.as_bytes()), [400], "{line}");
    }
    for line in ["GET /", "GET /a/b?c", "GET http://a:80/x?y", "GET https://[::1]/", "GET HTTP://A/", "GET ftp://a", "OPTIONS *", "OPTIONS http://a/"] {
        let request = format!("{line} HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(statuses(request.as_bytes()), [200], "{line}");
    }
}

#[test]
fn a_malformed_request_line_is_400_and_a_later_minor_version_is_served_as_1_1() {
    for line in ["GET /a b HTTP/1.1", "GET /  HTTP/1.1", "GET / HTTP/1.10", "GET / HTTP/1.1 ", "GET / HTTP/1.x", "GET / HTTP/11", "GET / http/1.1", "GET / HTTP/1.2 x"] {
        let request = format!("{line}\r\nHost: a\r\n\r\n");
        assert_eq!(statuses(request.as_bytes()), [400], "{line:?}");
    }
    for line in ["GET / HTTP/2.0", "GET / HTTP/0.9", "GET / HTTP/3.1", "GET / HTTP/9.9"] {
        let request = format!("{line}\r\nHost: a\r\n\r\n");
        assert_eq!(statuses(request.as_bytes()), [505], "{line:?}");
    }
    // HTTP/1.2 and later minors: as HTTP/1.1, keep-alive and Host rules included (RFC 9110 §2.5).
    for minor in 2..=9 {
        let request = format!("GET / HTTP/1.{minor}\r\nHost: a\r\n\r\n");
        assert_eq!(then_next(request.as_bytes()), (vec![200, 200], false), "1.{minor}");
        let no_host = format!("GET / HTTP/1.{minor}\r\n\r\n");
        assert_eq!(statuses(no_host.as_bytes()), [400], "1.{minor} without Host");
        let head = format!("HEAD / HTTP/1.{minor}\nHost: a\n\n");
        assert_eq!(whole_and_split(head.as_bytes()).0, ok("", false));
    }
    let close = b"GET / HTTP/1.2\r\nHost: a\r\nConnection: close\r\n\r\n";
    assert_eq!(then_next(close), (vec![200], true));
    let post = b"POST / HTTP/1.5\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    assert_eq!(then_next(post), (vec![200, 200], false));
}

fn options_with(max_header: usize) -> ServiceOptions {
    ServiceOptions {
        max_header,
        ..ServiceOptions::default()
    }
}

/// Feeds `pieces` to a session with `options`; returns the output and whether it closed.
fn run_with(options: &ServiceOptions, pieces: &[&[u8]]) -> (String, bool) {
    let clock = clock();
    let mut session = Http::session(options);
    let mut out = Vec::new();
    for piece in pieces {
        if session.feed(&clock, piece, &mut out) == Step::Close {
            return (String::from_utf8(out).unwrap(), true);
        }
    }
    session.finish(&clock, &mut out);
    (String::from_utf8(out).unwrap(), false)
}

#[test]
fn past_max_header_a_long_target_is_414_a_long_method_501_long_fields_431() {
    let limit = 512;
    let options = options_with(limit);
    let long = |prefix: &str, n: usize| {
        let mut bytes = prefix.as_bytes().to_vec();
        bytes.extend(std::iter::repeat_n(b'a', n));
        bytes
    };
    let cases = [
        // The request line does not end within the limit: 414, ended or not.
        (long("GET /", 600), 414, true),
        ([long("GET /", 600), b" HTTP/1.1\r\nHost: a\r\n\r\n".to_vec()].concat(), 414, true),
        (long("HEAD /", 600), 414, false),
        // Not even the method ends within it: 501.
        (long("G", 600), 501, true),
        // The line ends within it, the fields do not: 431.
        ([b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec(), vec![b'y'; 600]].concat(), 431, true),
        ([b"HEAD / HTTP/1.1\r\nX: ".to_vec(), vec![b'y'; 600], b"\r\n\r\n".to_vec()].concat(), 431, false),
    ];
    for (request, status, body) in cases {
        let shown = String::from_utf8_lossy(&request[..20]).into_owned();
        let whole = run_with(&options, &[&request]);
        assert_eq!(status_of(&whole.0), [status], "{shown}");
        assert!(whole.1, "{shown}: the error closes");
        // HEAD's errors carry no content (RFC 9110 §9.3.2), even found before the method was parsed.
        assert_eq!(!whole.0.ends_with("\r\n\r\n"), body, "{shown}: {:?}", whole.0);
        for cut in [1, 5, 100, 511, 512, 513, 550] {
            let split = run_with(&options, &[&request[..cut], &request[cut..]]);
            assert_eq!(split, whole, "{shown} cut at {cut}");
        }
        let bytes: Vec<&[u8]> = request.chunks(1).collect();
        assert_eq!(run_with(&options, &bytes), whole, "{shown} byte by byte");
    }
    // Exactly at the limit is served.
    let rest = b" HTTP/1.1\r\nHost: a\r\n\r\n";
    let fits = [b"GET /".to_vec(), vec![b'a'; limit - 5 - rest.len()], rest.to_vec()].concat();
    assert_eq!(fits.len(), limit);
    assert_eq!(status_of(&run_with(&options, &[&fits]).0), [200]);
}

#[test]
fn a_header_timeout_on_head_and_a_431_on_head_carry_no_content() {
    let clock = clock();
    let mut session = session();
    let mut out = Vec::new();
    session.feed(&clock, b"HEAD / HTTP/1.1\r\nHost: a\r\n", &mut out);
    clock.set(session.deadline().unwrap());
    assert_eq!(session.expire(&clock, &mut out), Step::Close);
    let out = String::from_utf8(out).unwrap();
    assert_eq!(status_of(&out), [408]);
    assert!(out.ends_with("Content-Length: 16\r\nConnection: close\r\n\r\n"), "{out:?}");
    let mut long = b"HEAD / HTTP/1.1\r\nX: ".to_vec();
    long.extend(std::iter::repeat_n(b'y', DEFAULT_MAX_HEADER));
    let out = one(&long).0;
    assert_eq!(status_of(&out), [431]);
    assert!(out.ends_with("Connection: close\r\n\r\n"), "{out:?}");
}

#[test]
fn chunk_lines_follow_the_grammar_strictly() {
    let post = |line: &str| {
        format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{line}\r\nhello\r\n0\r\n\r\n")
    };
    for line in ["5", "05", "5;a", "5;a=b", "5 ;a=b", "5\t;a=b", "5; a=b", "5;a =b", "5;a= b", "5;a;b=c;d", "5;a=\"q\"", "5;a=\"q \\\" s\"", "5;a=\"\"", "5 ; a = \"x\" ; b", "5;a=\"\u{e9}\""] {
        assert_eq!(then_next(post(line).as_bytes()), (vec![200, 200], false), "{line:?}");
    }
    for line in ["5;", "5 ", "5; ", "5;a=", "5;a b", "5;=b", "5;a=b ", "5;a=\"q", "5;a=\"q\"x", "5;a=b=c", "5;\"a\"", " 5", "x5", "", "5;a=\"\x01\"", "5;a@b", "5\t", "5;a=\"\\\x01\""] {
        assert_eq!(then_next(post(line).as_bytes()), (vec![400], true), "{line:?}");
    }
    // A bare LF ends no chunk-size line.
    let bare = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a\nb\r\nhello\r\n0\r\n\r\n";
    assert_eq!(then_next(bare), (vec![400], true));
}

#[test]
fn an_invalid_content_length_is_400_whatever_its_position() {
    let post = |fields: &str| format!("POST / HTTP/1.1\r\nHost: a\r\n{fields}\r\nabc");
    for fields in [
        "Content-Length: 3\r\nContent-Length:\r\n",
        "Content-Length:\r\nContent-Length: 3\r\n",
        "Content-Length: 3\r\nContent-Length: 4\r\n",
        "Content-Length: 3,\r\n",
        "Content-Length: ,3\r\n",
        "Content-Length: 3, ,3\r\n",
        "Content-Length: 3\r\nContent-Length: 3, 4\r\n",
        "Content-Length: 3\r\nContent-Length: 3a\r\n",
    ] {
        assert_eq!(then_next(post(fields).as_bytes()), (vec![400], true), "{fields:?}");
        // The same lines in the other order.
        let reversed: Vec<&str> = fields.split_inclusive('\n').rev().collect();
        assert_eq!(then_next(post(&reversed.concat()).as_bytes()), (vec![400], true), "{reversed:?}");
    }
    for fields in ["Content-Length: 3\r\n", "Content-Length: 3, 3\r\n", "Content-Length: 3\r\nContent-Length: 3,3\r\n", "Content-Length: 003\r\n"] {
        assert_eq!(then_next(post(fields).as_bytes()), (vec![200, 200], false), "{fields:?}");
    }
}

/// A session whose representation was last modified an hour before the fixed clock's time.
fn validated_session() -> HttpSession {
    Http::session(&ServiceOptions {
        started: 784_111_777 - 3600,
        ..ServiceOptions::default()
    })
}

/// The statuses for `request` on a `validated_session`, whole and byte by byte, and whether it closed.
fn conditional(request: &str) -> (Vec<u16>, String) {
    let answer = |pieces: Vec<&[u8]>| {
        let clock = clock();
        let mut session = validated_session();
        let mut out = Vec::new();
        for piece in pieces {
            session.feed(&clock, piece, &mut out);
        }
        String::from_utf8(out).unwrap()
    };
    let whole = answer(vec![request.as_bytes()]);
    assert_eq!(answer(request.as_bytes().chunks(1).collect()), whole, "{request:?} byte by byte");
    (status_of(&whole), whole)
}

#[test]
fn the_representation_has_validators() {
    let (_, out) = conditional("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(out.contains("\r\nETag: \"0468076d\"\r\n"), "{out}");
    assert_eq!(super::response::ETAG, super::fixtures::EXAMPLE_ETAG.as_bytes());
    // The server's start, never later than the Date it is sent with.
    assert!(out.contains("\r\nLast-Modified: Sun, 06 Nov 1994 07:49:37 GMT\r\n"), "{out}");
    let future = Http::session(&ServiceOptions {
        started: 2_000_000_000,
        ..ServiceOptions::default()
    });
    let mut session = future;
    let mut out = Vec::new();
    session.feed(&clock(), b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", &mut out);
    assert!(String::from_utf8(out).unwrap().contains(&format!("\r\nLast-Modified: {DATE}\r\n")));
}

#[test]
fn preconditions_are_evaluated_in_the_rfcs_order() {
    const TAG: &str = "\"0468076d\"";
    let cases: &[(&str, &str, u16)] = &[
        // If-None-Match: weak comparison; a match is 304 for GET and HEAD, 412 for anything else.
        ("GET", &format!("If-None-Match: {TAG}"), 304),
        ("HEAD", &format!("If-None-Match: {TAG}"), 304),
        ("GET", &format!("If-None-Match: W/{TAG}"), 304),
        ("GET", &format!("If-None-Match: \"a\", {TAG}"), 304),
        ("GET", &format!("If-None-Match: \"a\"\r\nIf-None-Match: {TAG}"), 304),
        ("GET", "If-None-Match: *", 304),
        ("POST", "If-None-Match: *", 412),
        ("POST", &format!("If-None-Match: {TAG}"), 412),
        ("GET", "If-None-Match: \"a\", W/\"b\"", 200),
        ("GET", "If-None-Match: garbage", 200),
        ("GET", &format!("If-None-Match: x, {TAG}"), 200),
        // If-Match: strong comparison; no match is 412, before the method is performed.
        ("POST", "If-Match: \"x\"", 412),
        ("GET", "If-Match: \"x\"", 412),
        ("POST", &format!("If-Match: W/{TAG}"), 412),
        ("POST", &format!("If-Match: {TAG}"), 200),
        ("POST", &format!("If-Match: \"x\", {TAG}"), 200),
        ("POST", "If-Match: *", 200),
        ("POST", "If-Match: x", 412),
        // If-Unmodified-Since, only without If-Match: modified an hour before the clock.
        ("POST", "If-Unmodified-Since: Sun, 06 Nov 1994 07:49:36 GMT", 412),
        ("POST", "If-Unmodified-Since: Sun, 06 Nov 1994 07:49:37 GMT", 200),
        ("POST", &format!("If-Match: {TAG}\r\nIf-Unmodified-Since: Sun, 06 Nov 1994 07:00:00 GMT"), 200),
        ("POST", "If-Unmodified-Since: yesterday", 200),
        // If-Modified-Since, GET and HEAD only, only without If-None-Match; all three date formats.
        ("GET", "If-Modified-Since: Sun, 06 Nov 1994 07:49:37 GMT", 304),
        ("GET", "If-Modified-Since: Sunday, 06-Nov-94 07:49:37 GMT", 304),
        ("GET", "If-Modified-Since: Sun Nov  6 07:49:37 1994", 304),
        ("GET", "If-Modified-Since: Sun Nov 06 08:00:00 1994", 304),
        ("GET", "If-Modified-Since: Sun, 06 Nov 1994 07:49:36 GMT", 200),
        ("GET", "If-Modified-Since: Sunday, 06-Nov-94 07:49:36 GMT", 200),
        ("GET", "If-Modified-Since: Sun Nov  6 07:49:36 1994", 200),
        ("POST", "If-Modified-Since: Sun, 06 Nov 1994 08:00:00 GMT", 200),
        ("GET", "If-None-Match: \"a\"\r\nIf-Modified-Since: Sun, 06 Nov 1994 08:00:00 GMT", 200),
        ("GET", "If-Modified-Since: sun, 06 Nov 1994 08:00:00 GMT", 200),
        ("GET", "If-Modified-Since: Sun, 06 Nov 1994 08:00:00 GMT\r\nIf-Modified-Since: Sun, 06 Nov 1994 08:00:00 GMT", 200),
        // If-Match first: it fails before If-None-Match could say 304.
        ("GET", &format!("If-Match: \"x\"\r\nIf-None-Match: {TAG}"), 412),
        // Ignored where the answer would not be 200 (RFC 9110 §13.2.1).
        ("OPTIONS", "If-Match: \"x\"", 200),
        ("PUT", "If-Match: \"x\"", 405),
        ("DELETE", "If-None-Match: *", 405),
        ("FOO", "If-Match: \"x\"", 501),
    ];
    for (method, fields, status) in cases {
        let request = format!("{method} / HTTP/1.1\r\nHost: a\r\n{fields}\r\n\r\n{}", String::from_utf8_lossy(NEXT));
        let (statuses, out) = conditional(&request);
        assert_eq!(statuses, [*status, 200], "{method} {fields:?}: {out}");
    }
    // 304: the tag and the date, no content and no framing of any, and the connection goes on.
    let (_, out) = conditional(&format!("GET / HTTP/1.1\r\nHost: a\r\nIf-None-Match: {TAG}\r\n\r\n"));
    assert_eq!(out, format!("HTTP/1.1 304 Not Modified\r\nServer: socklab\r\nDate: {DATE}\r\nETag: {TAG}\r\n\r\n"));
    let (_, out) = conditional("POST / HTTP/1.1\r\nHost: a\r\nIf-Match: \"x\"\r\nContent-Length: 2\r\n\r\nhi");
    assert!(out.starts_with("HTTP/1.1 412 Precondition Failed\r\n") && !out.contains("Connection: close"), "{out}");
    let (_, out) = conditional("HEAD / HTTP/1.1\r\nHost: a\r\nIf-Match: \"x\"\r\n\r\n");
    assert!(out.ends_with("Content-Length: 20\r\n\r\n"), "a 412 to HEAD has no content: {out}");
}

#[test]
fn http_dates_in_all_three_formats() {
    use super::conditional::http_date;
    let now = 1_798_761_599; // the end of 2026
    let rfc_example = Some(784_111_777);
    assert_eq!(http_date(b"Sun, 06 Nov 1994 08:49:37 GMT", now), rfc_example);
    assert_eq!(http_date(b"Sunday, 06-Nov-94 08:49:37 GMT", now), rfc_example);
    assert_eq!(http_date(b"Sun Nov  6 08:49:37 1994", now), rfc_example);
    // The day's name is not checked against the date.
    assert_eq!(http_date(b"Mon, 06 Nov 1994 08:49:37 GMT", now), rfc_example);
    assert_eq!(http_date(b"Thu, 01 Jan 1970 00:00:00 GMT", now), Some(0));
    assert_eq!(http_date(b"Wed, 31 Dec 1969 23:59:59 GMT", now), Some(-1));
    assert_eq!(http_date(b"Tue, 29 Feb 2000 00:00:00 GMT", now), Some(951_782_400));
    // A two-digit year more than 50 years ahead is the last century's.
    assert_eq!(http_date(b"Thursday, 01-Jan-76 00:00:00 GMT", now), http_date(b"Thu, 01 Jan 2076 00:00:00 GMT", now));
    assert_eq!(http_date(b"Friday, 01-Jan-77 00:00:00 GMT", now), http_date(b"Fri, 01 Jan 1977 00:00:00 GMT", now));
    for bad in [
        &b"Sun, 06 Nov 1994 08:49:37"[..],
        b"Sun, 06 Nov 1994 08:49:37 UTC",
        b"sun, 06 Nov 1994 08:49:37 GMT",
        b"Sun, 06 nov 1994 08:49:37 GMT",
        b"Sun, 6 Nov 1994 08:49:37 GMT",
        b"Sun,  06 Nov 1994 08:49:37 GMT",
        b"Sun, 30 Feb 1994 08:49:37 GMT",
        b"Sun, 29 Feb 1900 08:49:37 GMT",
        b"Sun, 00 Nov 1994 08:49:37 GMT",
        b"Sun, 06 Nov 1994 24:00:00 GMT",
        b"Sun, 06 Nov 1994 08:60:00 GMT",
        b"Sun, 06 Nov 94 08:49:37 GMT",
        b"Sun, 06-Nov-94 08:49:37 GMT",
        b"Sunday, 06 Nov 1994 08:49:37 GMT",
        b"Sun Nov 6 08:49:37 1994",
        b"Sun Nov  6 08:49:37 94",
        b"Sun, 06 Nov 1994 08:49:37 GMT ",
        b"",
        b"1994-11-06T08:49:37Z",
    ] {
        assert_eq!(http_date(bad, now), None, "{:?}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn timeouts_keep_alive_header_and_body() {
    let clock = clock();
    let t0 = clock.now();
    let mut session = session();
    let mut out = Vec::new();
    assert_eq!(session.deadline(), None, "nothing read yet: the server's idle timeout's business");
    // Empty lines are no request: the keep-alive wait runs from the first read, and they do not reset it.
    session.feed(&clock, b"\r\n", &mut out);
    assert_eq!(session.deadline(), Some(t0 + DEFAULT_KEEPALIVE_TIMEOUT));
    clock.set(t0 + Duration::from_secs(10));
    session.feed(&clock, b"\r\n\n", &mut out);
    assert_eq!(session.deadline(), Some(t0 + DEFAULT_KEEPALIVE_TIMEOUT));
    assert_eq!(session.held(), 0, "empty lines are never held");
    // A request's first byte starts the header timeout, which later bytes do not put off.
    session.feed(&clock, b"P", &mut out);
    let t1 = clock.now();
    assert_eq!(session.deadline(), Some(t1 + DEFAULT_HEADER_TIMEOUT));
    clock.set(t1 + Duration::from_secs(30));
    session.feed(&clock, b"OST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab", &mut out);
    // In the body: the body timeout, from each read.
    let t2 = clock.now();
    assert_eq!(session.deadline(), Some(t2 + DEFAULT_BODY_TIMEOUT));
    clock.set(t2 + Duration::from_secs(59));
    assert_eq!(session.expire(&clock, &mut out), Step::Continue);
    session.feed(&clock, b"c", &mut out);
    assert_eq!(session.deadline(), Some(clock.now() + DEFAULT_BODY_TIMEOUT), "each read puts it off");
    clock.set(clock.now() + Duration::from_secs(1));
    session.feed(&clock, b"d", &mut out);
    // The response ends the request: the keep-alive wait begins.
    assert_eq!(status_of(&String::from_utf8(out.clone()).unwrap()), [200]);
    let t3 = clock.now();
    assert_eq!(session.deadline(), Some(t3 + DEFAULT_KEEPALIVE_TIMEOUT));
    clock.set(t3 + DEFAULT_KEEPALIVE_TIMEOUT);
    let before = out.len();
    assert_eq!(session.expire(&clock, &mut out), Step::Close, "closed, with nothing said");
    assert_eq!(out.len(), before);
    assert_eq!(session.deadline(), None);
}

#[test]
fn a_body_that_stops_coming_gets_408_and_timeouts_can_be_off() {
    for (head, request) in [(false, &b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\nabc"[..]), (false, b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"), (true, b"HEAD / HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\n")] {
        let clock = clock();
        let mut session = session();
        let mut out = Vec::new();
        session.feed(&clock, request, &mut out);
        clock.set(clock.now() + DEFAULT_BODY_TIMEOUT);
        assert_eq!(session.expire(&clock, &mut out), Step::Close);
        let out = String::from_utf8(out).unwrap();
        assert_eq!(status_of(&out), [408], "{out}");
        assert_eq!(out.ends_with("Request Timeout\n"), !head, "{out}");
    }
    let off = Http::session(&ServiceOptions {
        header_timeout: None,
        body_timeout: None,
        keepalive_timeout: None,
        ..ServiceOptions::default()
    });
    let clock = clock();
    for piece in [&b""[..], b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", b"POST / HTTP/1.1\r\n", b"Host: a\r\nContent-Length: 3\r\n\r\na"] {
        let mut session = off.clone();
        session.feed(&clock, piece, &mut Vec::new());
        assert_eq!(session.deadline(), None, "{:?}", String::from_utf8_lossy(piece));
    }
}

/// Bytes handed to the parsers while `pieces` are fed one by one.
fn parsed_while_feeding(options: &ServiceOptions, pieces: &[&[u8]]) -> usize {
    PARSED.with(|p| p.set(0));
    let clock = clock();
    let mut session = Http::session(options);
    let mut out = Vec::new();
    for piece in pieces {
        if session.feed(&clock, piece, &mut out) == Step::Close {
            break;
        }
    }
    PARSED.with(|p| p.get())
}

#[test]
fn a_trickled_head_costs_linear_work_not_quadratic() {
    let limit = 256 * 1024;
    let options = options_with(limit);
    // Empty lines before a request, a byte per read: never held, never parsed.
    let newlines = vec![b'\n'; limit];
    let bytes: Vec<&[u8]> = newlines.chunks(1).collect();
    assert_eq!(parsed_while_feeding(&options, &bytes), 0);
    let crlfs = b"\r\n".repeat(limit / 2);
    let bytes: Vec<&[u8]> = crlfs.chunks(1).collect();
    assert_eq!(parsed_while_feeding(&options, &bytes), 0);
    // A header section of many short lines, a byte per read: parsed at each newline only, and a unit has
    // at most MAX_HEADERS + 1 lines before it is refused.
    let mut lines = b"GET / HTTP/1.1\r\n".to_vec();
    while lines.len() < limit {
        lines.extend_from_slice(b"a:b\r\n");
    }
    let bytes: Vec<&[u8]> = lines.chunks(1).collect();
    let parsed = parsed_while_feeding(&options, &bytes);
    assert!(parsed <= (MAX_HEADERS + 2) * 16 * (MAX_HEADERS + 2), "{parsed} bytes parsed");
    // Long lines the same: at most MAX_HEADERS + 2 parses of at most the limit.
    let mut lines = b"GET / HTTP/1.1\r\n".to_vec();
    while lines.len() < limit {
        lines.extend_from_slice(&[b"X: ".as_slice(), &[b'y'; 4000], b"\r\n"].concat());
    }
    let bytes: Vec<&[u8]> = lines.chunks(7).collect();
    let parsed = parsed_while_feeding(&options, &bytes);
    assert!(parsed <= (MAX_HEADERS + 2) * (limit + 1), "{parsed} bytes parsed");
    // A chunk-size line's bare LFs end it at the first: one parse.
    let mut chunked = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1;a".to_vec();
    chunked.extend(std::iter::repeat_n(b'\n', 10_000));
    let bytes: Vec<&[u8]> = chunked.chunks(1).collect();
    assert!(parsed_while_feeding(&options, &bytes) < 1000);
}

#[test]
fn a_cr_before_a_request_must_end_an_empty_line() {
    assert_eq!(whole_and_split(b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n").0, ok("", true));
    assert_eq!(statuses(b"\rGET / HTTP/1.1\r\nHost: a\r\n\r\n"), [400]);
    assert_eq!(statuses(b"\r\n\rGET / HTTP/1.1\r\nHost: a\r\n\r\n"), [400]);
    assert_eq!(statuses(b"\r\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), [400]);
    // Between requests too, and a lone CR at the end is owed nothing.
    assert_eq!(then_next(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n\r\n"), (vec![200, 200], false));
    assert_eq!(whole_and_split(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n\r").0, ok("", true));
}

#[test]
fn a_session_stays_small_for_every_connection_holds_one() {
    // Every idle connection holds one (docs/11: about 342 bytes in all per idle connection).
    assert!(std::mem::size_of::<HttpSession>() <= 112, "{}", std::mem::size_of::<HttpSession>());
    assert_eq!(Timeout::new(Some(Duration::from_millis(800))).get(), Some(Duration::from_millis(800)));
    assert_eq!(Timeout::new(None).get(), None);
    assert_eq!(Timeout::new(Some(Duration::ZERO)).get(), Some(Duration::from_nanos(1)));
}
