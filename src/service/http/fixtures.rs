//! What holds `--service http` to its word in the generic tests: the example request streams and the
//! responses they must get, written out by hand rather than by the service, and what counts as the same
//! reply (all but the dates). Walk-through: `docs/11-http.md`.

use crate::service::clock::HTTP_DATE_LEN;
use crate::service::example::Rng;

/// Whether `got` equals `expected` outside the value of every `Date` and `Last-Modified` field `expected`
/// has: the time each reply was made, and the time its server started (a field name is case-insensitive:
/// hyper writes `date`).
pub(super) fn same_but_dates(expected: &[u8], got: &[u8]) -> bool {
    const FIELDS: [&[u8]; 2] = [b"\r\ndate: ", b"\r\nlast-modified: "];
    if expected.len() != got.len() {
        return false;
    }
    let mut from = 0;
    loop {
        let next = FIELDS
            .iter()
            .filter_map(|field| {
                find_ignoring_case(&expected[from..], field).map(|at| from + at + field.len())
            })
            .min();
        let Some(value) = next else {
            break;
        };
        let end = (value + HTTP_DATE_LEN).min(expected.len());
        if expected[from..value] != got[from..value] {
            return false;
        }
        from = end;
    }
    expected[from..] == got[from..]
}

pub(super) fn find_ignoring_case(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

/// The representation's entity tag, written out: `tests.rs` checks that the service sends this one.
pub(super) const EXAMPLE_ETAG: &str = "\"0468076d\"";

/// One request of a stream example, and the response it must get, written out by hand here rather than by
/// the service, so the tests compare the service against an independent statement of the rules.
pub(super) fn example_request(rng: &mut Rng, last: bool) -> (Vec<u8>, Vec<u8>, bool) {
    const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "BREW"];
    const TARGETS: &[&str] = &["/", "/index.html", "/a/b?c=d&e", "/%7Euser", "http://socklab/x", "*"];
    const HOSTS: &[&str] = &["socklab", "[::1]:12000", "a:", "a,b", "", "127.0.0.1:80", "xn--d1a.example"];
    let method = *rng.pick(METHODS);
    let target = if method == "OPTIONS" {
        *rng.pick(TARGETS)
    } else {
        *rng.pick(&TARGETS[..5])
    };
    let http10 = rng.below(5) == 0;
    // A later HTTP/1 minor version is served as 1.1.
    let minor = match (http10, rng.below(8)) {
        (true, _) => 0,
        (false, 0) => 2,
        (false, 1) => 9,
        _ => 1,
    };
    let mut request = format!("{method} {target} HTTP/1.{minor}\r\n");
    if !http10 || rng.below(2) == 0 {
        request.push_str(&format!("Host: {}\r\n", rng.pick(HOSTS)));
    }
    if rng.below(3) == 0 {
        request.push_str("User-Agent: example/1.0\r\nAccept: */*\r\n");
    }
    // Preconditions, each of which the one representation (its tag above) passes or fails; only a request
    // that would get 200 is held to them. The dates are before 1970 or after 9999's start, so the answer is
    // the same whenever the server that answers started (its Last-Modified).
    let condition = rng.below(7);
    let field = match condition {
        0 => format!("If-None-Match: {EXAMPLE_ETAG}\r\n"),
        1 => "If-None-Match: \"other\", W/\"x\"\r\n".to_string(),
        2 => format!("If-Match: W/\"y\", {EXAMPLE_ETAG}\r\n"),
        3 => "If-Match: \"stale\"\r\n".to_string(),
        4 => "If-Modified-Since: Fri, 31 Dec 9999 23:59:59 GMT\r\n".to_string(),
        5 => "If-Unmodified-Since: Wed, 31 Dec 1969 23:59:59 GMT\r\n".to_string(),
        _ => String::new(),
    };
    request.push_str(&field);
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
                let ext = *rng.pick(&["", ";name=value", " ;a=b", ";a = \"q \\\" s\";b", ";x;y=z"]);
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
    const DATE: &str = "Thu, 01 Jan 1970 00:00:00 GMT";
    const ALLOW: &str = "Allow: GET, HEAD, POST, OPTIONS\r\n";
    let hello = (
        "200 OK",
        format!(
            "Last-Modified: {DATE}\r\nETag: {EXAMPLE_ETAG}\r\nContent-Type: text/plain\r\n\
             Content-Length: 12\r\n"
        ),
        Some("Hello, World"),
    );
    let not_modified = ("304 Not Modified", format!("ETag: {EXAMPLE_ETAG}\r\n"), None);
    let failed = (
        "412 Precondition Failed",
        "Content-Type: text/plain\r\nContent-Length: 20\r\n".to_string(),
        Some("Precondition Failed\n"),
    );
    let safe = method != "POST";
    let (status, fields, content) = match method {
        "GET" | "HEAD" | "POST" => match condition {
            // The client's copy is the current one: nothing to send, or nothing to do.
            0 if safe => not_modified,
            0 => failed,
            // If-Match names a stale tag, or the representation was modified after the date given: the
            // method is not performed.
            3 | 5 => failed,
            // Not modified since the date given; ignored for a POST.
            4 if safe => not_modified,
            _ => hello,
        },
        "OPTIONS" => ("200 OK", format!("{ALLOW}Content-Length: 0\r\n"), None),
        "BREW" => (
            "501 Not Implemented",
            "Content-Type: text/plain\r\nContent-Length: 16\r\n".to_string(),
            Some("Not Implemented\n"),
        ),
        _ => (
            "405 Method Not Allowed",
            format!("{ALLOW}Content-Type: text/plain\r\nContent-Length: 19\r\n"),
            Some("Method Not Allowed\n"),
        ),
    };
    let connection = match (closes, http10) {
        (true, _) => "Connection: close\r\n",
        (false, true) => "Connection: keep-alive\r\n",
        (false, false) => "",
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nServer: socklab\r\nDate: {DATE}\r\n{fields}{connection}\r\n{}",
        if method == "HEAD" { "" } else { content.unwrap_or("") }
    );
    (bytes, response.into_bytes(), closes)
}
