//! What a client that is not a browser makes of `http` (the tools' half, `Tooling`): a message typed at
//! `socklab-client --expect http` is a path, sent as one `GET` with a `Host` naming the server, and what is
//! shown of the response is its body, with a warning if its status is not `200`. Walk-through:
//! `docs/11-http.md` and `docs/client-and-stress.md`.

use std::net::SocketAddr;

use crate::service::Shown;

/// `GET path HTTP/1.1` with a `Host` naming the server. A path without its leading `/` gets one, and the
/// bytes a request target may not hold (spaces, controls, non-ASCII) are percent-encoded, as a browser
/// does, so that what is typed is one path and never a malformed request.
pub fn get(path: &[u8], host: SocketAddr) -> Vec<u8> {
    let slash = if path.starts_with(b"/") || path == b"*" {
        ""
    } else {
        "/"
    };
    let mut request = format!("GET {slash}").into_bytes();
    for &b in path {
        if b <= b' ' || b >= 0x7f {
            request.extend_from_slice(format!("%{b:02X}").as_bytes());
        } else {
            request.push(b);
        }
    }
    request.extend_from_slice(format!(" HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
    request
}

/// The body of one whole response (after its blank line; all of it if it has no header end), and its
/// status line if that is not `HTTP/1.1 200`.
pub fn shown(response: &[u8]) -> Shown<'_> {
    let status = response.split(|&b| b == b'\r').next().unwrap_or_default();
    let body = match response.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(at) => &response[at + 4..],
        None => response,
    };
    Shown {
        body,
        warning: (!status.starts_with(b"HTTP/1.1 200 ")).then_some(status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_becomes_one_get_and_a_body_is_what_is_shown() {
        let host: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(
            get(b"a b/\xc3\xbc", host),
            b"GET /a%20b/%C3%BC HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
        );
        assert_eq!(get(b"*", host)[..6], *b"GET * ");
        let ok = shown(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi");
        assert_eq!((ok.body, ok.warning), (&b"hi"[..], None));
        let missing = shown(b"HTTP/1.1 404 Not Found\r\n\r\n");
        assert_eq!(missing.warning, Some(&b"HTTP/1.1 404 Not Found"[..]));
    }
}
