//! `--service http` against clients no one here wrote: curl (keep-alive, HEAD, a POST body with and without
//! `Expect: 100-continue`, chunked uploads, HTTP/1.0, revalidation with `--etag-save` and `--etag-compare`, a
//! CONNECT tunnel asked for as a proxy client), Python's `http.client`, h11 (a strict client, from PyPI),
//! Node's client (whose parser is llhttp), ApacheBench with keep-alive (HTTP/1.0), and headless Chromium
//! loading the page. Each runs against a real server on 127.0.0.1 port 0, in every mode where the client can
//! show something. Each client is found when the tests are built (`build.rs`): a test whose client is missing
//! is listed by `cargo test` as ignored, with the reason, and on CI (`.ci/run`, which installs them) a missing
//! one fails the build. The rules themselves are tested byte by byte in `src/service/http/tests.rs`, and
//! in every mode through `tests/services.rs`.

#[macro_use]
mod common;

use common::*;
use socklab::server::config::Config;
use socklab::server::Mode;
use socklab::service::Service;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

fn http_config() -> Config {
    Config {
        service: Service::Http,
        ..config()
    }
}

/// Runs `program args`, bounded by the tests' timeout; returns its status, stdout and stderr.
fn execute(
    program: &str,
    args: &[&str],
    stdin: Option<&[u8]>,
) -> (std::process::ExitStatus, String, String) {
    run_binary(program, args, stdin)
}

fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}

each_mode! {
    #[cfg_attr(not(has_curl), ignore = "needs curl, which build.rs did not find for this target")]
    fn curl_keeps_the_connection_for_several_requests(mode) {
        let server = start_mode(mode, http_config());
        let (a, b) = (url(server.addr, "/"), url(server.addr, "/second"));
        let (status, out, err) = execute("curl", &["-sv", &a, &b], None);
        assert!(status.success(), "{mode}: {err}");
        assert_eq!(out, "Hello, WorldHello, World", "{mode}");
        assert!(err.contains("Re-using existing connection"), "{mode}: curl opened a second connection:\n{err}");
        assert!(err.contains("< Date: ") && err.contains("< Server: socklab"), "{err}");
        let stats = server.stop().stats;
        assert_eq!(stats.accepted, 1, "{mode}: two requests, one connection");
    }
}

each_mode! {
    #[cfg_attr(not(has_curl), ignore = "needs curl, which build.rs did not find for this target")]
    fn curl_head_gets_the_headers_and_no_body(mode) {
        let server = start_mode(mode, http_config());
        let (status, out, err) = execute("curl", &["-sI", &url(server.addr, "/")], None);
        assert!(status.success(), "{err}");
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.contains("Content-Length: 12\r\n") && out.contains("Content-Type: text/plain\r\n"), "{out}");
        assert!(out.ends_with("\r\n\r\n"), "no body after the headers: {out:?}");
        server.stop();
    }
}

each_mode! {
    #[cfg_attr(not(has_curl), ignore = "needs curl, which build.rs did not find for this target")]
    fn curl_posts_bodies_that_are_read_and_never_served_as_requests(mode) {
        let server = start_mode(mode, http_config());
        // A body that is itself a request: it must be discarded, not answered.
        let body = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n".repeat(2000);
        let (status, out, err) = execute("curl", &["-sv", "--data-binary", "@-", &url(server.addr, "/"), &url(server.addr, "/after")], Some(body.as_bytes()));
        assert!(status.success(), "{err}");
        assert_eq!(out, "Hello, WorldHello, World", "{mode}: one response per request, none for the body");
        // Asked to wait for 100 Continue, curl gets it before it sends the body.
        let (status, out, err) = execute("curl", &["-sv", "-H", "Expect: 100-continue", "--data-binary", "@-", &url(server.addr, "/")], Some(body.as_bytes()));
        assert!(status.success(), "{err}");
        assert!(err.contains("< HTTP/1.1 100 Continue"), "{mode}: no 100 Continue:\n{err}");
        assert_eq!(out, "Hello, World");
        // A chunked upload.
        let (status, out, err) = execute("curl", &["-sv", "-H", "Transfer-Encoding: chunked", "--data-binary", "@-", &url(server.addr, "/")], Some(body.as_bytes()));
        assert!(status.success(), "{err}");
        assert!(err.contains("> Transfer-Encoding: chunked"), "{err}");
        assert_eq!(out, "Hello, World");
        server.stop();
    }
}

each_mode! {
    #[cfg_attr(not(has_curl), ignore = "needs curl, which build.rs did not find for this target")]
    fn curl_http_1_0_gets_its_answer_and_the_close_unless_it_asks_to_keep(mode) {
        let server = start_mode(mode, http_config());
        let (status, out, err) = execute("curl", &["-sv", "--http1.0", &url(server.addr, "/")], None);
        assert!(status.success(), "{err}");
        assert_eq!(out, "Hello, World");
        assert!(err.contains("< Connection: close"), "{err}");
        let (status, out, err) = execute("curl", &["-sv", "--http1.0", "-H", "Connection: keep-alive", &url(server.addr, "/"), &url(server.addr, "/")], None);
        assert!(status.success(), "{err}");
        assert_eq!(out, "Hello, WorldHello, World");
        assert!(err.contains("< Connection: keep-alive"), "{err}");
        server.stop();
    }
}

/// Python's own HTTP client: keep-alive across requests, HEAD, and a chunked POST.
const PYTHON_CLIENT: &str = r#"
import http.client, sys
c = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=10)
for path in ["/", "/a", "/b?c=d"]:
    c.request("GET", path)
    r = c.getresponse()
    assert r.status == 200 and r.read() == b"Hello, World", (r.status, path)
    assert r.getheader("Content-Type") == "text/plain"
c.request("HEAD", "/")
r = c.getresponse()
assert r.status == 200 and r.read() == b"" and r.getheader("Content-Length") == "12"
c.request("POST", "/", body=iter([b"part one, ", b"part two"]), encode_chunked=True)
r = c.getresponse()
assert r.status == 200 and r.read() == b"Hello, World"
c.request("GET", "/", headers={"Connection": "close"})
r = c.getresponse()
assert r.read() == b"Hello, World" and r.getheader("Connection") == "close"
print("ok")
"#;

each_mode! {
    #[cfg_attr(not(has_python3), ignore = "needs python3, which build.rs did not find for this target")]
    fn pythons_http_client_is_served_on_one_connection(mode) {
        let server = start_mode(mode, http_config());
        let (ip, port) = (server.addr.ip().to_string(), server.addr.port().to_string());
        let (status, out, err) = execute("python3", &["-c", PYTHON_CLIENT, &ip, &port], None);
        assert!(status.success(), "{mode}: {err}");
        assert_eq!(out.trim(), "ok");
        assert_eq!(server.stop().stats.accepted, 1, "{mode}: one connection for every request");
    }
}

/// ApacheBench speaks HTTP/1.0 and asks for keep-alive with `-k`: every request is answered and kept.
#[test]
#[cfg_attr(
    not(has_ab),
    ignore = "needs ab (ApacheBench), which build.rs did not find for this target"
)]
fn apachebench_with_keep_alive_gets_every_answer_on_kept_connections() {
    let server = start(http_config());
    let (status, out, err) = execute(
        "ab",
        &["-k", "-n", "2000", "-c", "10", "-q", &url(server.addr, "/")],
        None,
    );
    assert!(status.success(), "{err}\n{out}");
    let field = |name: &str| {
        out.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split(':').nth(1))
            .map(|v| v.split_whitespace().next().unwrap_or("").to_string())
            .unwrap_or_else(|| panic!("no {name} in:\n{out}"))
    };
    assert_eq!(field("Complete requests"), "2000", "{out}");
    assert_eq!(field("Failed requests"), "0", "{out}");
    assert_eq!(field("Keep-Alive requests"), "2000", "{out}");
    assert_eq!(field("Document Length"), "12", "{out}");
    let stats = server.stop().stats;
    assert_eq!(
        stats.accepted, 10,
        "ten connections, kept for every request"
    );
}

/// A real browser: headless Chromium loads the page and its DOM is the body.
#[test]
#[cfg_attr(
    not(has_chromium),
    ignore = "needs chromium, which build.rs did not find for this target"
)]
fn headless_chromium_loads_the_page() {
    let server = start(http_config());
    let profile = std::env::temp_dir().join(format!("socklab-chromium-{}", std::process::id()));
    let profile_flag = format!("--user-data-dir={}", profile.display());
    let page = url(server.addr, "/");
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        &profile_flag,
        "--dump-dom",
        &page,
    ];
    let (status, out, err) = execute("chromium", &args, None);
    let _ = std::fs::remove_dir_all(&profile);
    assert!(status.success(), "chromium failed:\n{err}");
    assert!(
        out.contains("Hello, World"),
        "the page is not in the DOM:\n{out}\n{err}"
    );
    let stats = server.stop().stats;
    assert!(stats.accepted >= 1 && stats.bytes_out > 0, "{stats:?}");
}

/// The tutorial's server served one client at a time and closed after one response; a browser keeps its
/// connection open, so in `--mode blocking` a second client (another tab) waits until the first one's
/// connection ends. The reactor serves both at once.
#[test]
fn in_blocking_mode_a_kept_connection_holds_up_the_next_client() {
    for mode in [
        socklab::server::Mode::Blocking,
        socklab::server::Mode::Reactor,
    ] {
        let server = start_mode(mode, http_config());
        let mut first = connect(server.addr);
        first
            .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap();
        let mut reply = [0u8; 512];
        let n = first.read(&mut reply).unwrap();
        assert!(reply[..n].starts_with(b"HTTP/1.1 200 OK"));
        // The first tab keeps its connection; a second tab asks.
        let mut second = connect(server.addr);
        second
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        second
            .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap();
        let answered = second.read(&mut reply).is_ok_and(|n| n > 0);
        assert_eq!(answered, mode == socklab::server::Mode::Reactor, "{mode}");
        drop(first);
        if mode == socklab::server::Mode::Blocking {
            // Once the first connection ends, the second is served.
            second.set_read_timeout(Some(TIMEOUT)).unwrap();
            let n = second.read(&mut reply).unwrap();
            assert!(reply[..n].starts_with(b"HTTP/1.1 200 OK"));
        }
        drop(second);
        server.stop();
    }
}

/// The listening line names only TCP: no UDP socket is bound for a TCP-only service.
#[test]
fn the_binary_listens_on_tcp_only() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_socklab-server"));
    command
        .args(["--port", "0", "--service", "http"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = command.spawn().unwrap();
    let mut line = String::new();
    let mut stdout = child.stdout.take().unwrap();
    let mut byte = [0u8; 1];
    while !line.ends_with('\n') && stdout.read(&mut byte).unwrap() == 1 {
        line.push(byte[0] as char);
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.starts_with("listening on tcp://127.0.0.1:"), "{line}");
    assert!(!line.contains("udp://"), "{line}");
    assert!(line.trim_end().ends_with("service=http"), "{line}");
}

mod hostile {
    use super::*;
    use proptest::prelude::*;
    use socklab::service::{Clock, Rng, ServiceOptions, Step};

    /// Splits `output` into responses and returns their status codes; panics on anything that is not a
    /// sequence of whole, well-framed responses.
    fn statuses(output: &[u8]) -> Vec<u16> {
        responses(output)
            .into_iter()
            .map(|(code, _)| code)
            .collect()
    }

    /// Each response's status code, and whether it said `Connection: close`.
    fn responses(output: &[u8]) -> Vec<(u16, bool)> {
        let mut codes = Vec::new();
        let mut rest = output;
        while !rest.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut response = httparse::Response::new(&mut headers);
            let used = match response.parse(rest).expect("a well-formed response") {
                httparse::Status::Complete(used) => used,
                httparse::Status::Partial => {
                    panic!("a response cut short: {:?}", String::from_utf8_lossy(rest))
                }
            };
            let code = response.code.unwrap();
            let closes = response
                .headers
                .iter()
                .any(|h| h.name.eq_ignore_ascii_case("connection") && h.value == b"close");
            let length: usize = response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
                .unwrap_or(0);
            codes.push((code, closes));
            // Interim responses have no body, nor do responses to HEAD: the next response, or the end,
            // follows the headers at once ("Hello, World" never starts like a status line).
            let after = &rest[used..];
            let body = if code == 100 || after.is_empty() || after.starts_with(b"HTTP/1.1 ") {
                0
            } else {
                length
            };
            rest = &rest[used + body..];
        }
        codes
    }

    /// Feeds `input` in pieces; returns the output and whether the service closed.
    fn feed(input: &[u8], cuts: &[usize]) -> (Vec<u8>, bool) {
        let clock = Clock::fixed(1_700_000_000);
        let mut session = Service::Http.session_with(&ServiceOptions::default());
        let mut out = Vec::new();
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        cuts.sort_unstable();
        let mut from = 0;
        for cut in cuts.into_iter().chain([input.len()]) {
            if session.feed(&clock, &input[from..cut], &mut out) == Step::Close {
                return (out, true);
            }
            from = cut;
        }
        session.finish(&clock, &mut out);
        (out, false)
    }

    /// A valid request stream, then one byte changed, inserted or removed.
    fn mutated() -> impl Strategy<Value = Vec<u8>> {
        (any::<u64>(), any::<usize>(), any::<u8>(), 0..3u8).prop_map(|(seed, at, byte, how)| {
            let mut bytes = Service::Http
                .stream_example(&ServiceOptions::default(), &mut Rng::new(seed))
                .request;
            let at = at % (bytes.len() + 1);
            match how {
                0 if at < bytes.len() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ => {}
            }
            bytes
        })
    }

    fn check_ending(input: &[u8], cuts: &[usize]) -> Result<(), TestCaseError> {
        let (out, closed) = feed(input, cuts);
        let answers = responses(&out);
        // Only the last response may close, and a request that could not be read (bad syntax or framing,
        // too long, too slow, another version) always ends the connection. A well-framed request whose
        // method or precondition is refused (405, 412, a 501 for its method) is answered and the connection
        // goes on.
        for (i, &(code, closes)) in answers.iter().enumerate() {
            prop_assert!(
                [100, 200, 304, 400, 405, 408, 412, 414, 431, 501, 505].contains(&code),
                "status {}",
                code
            );
            if [400, 408, 414, 431, 505].contains(&code) {
                prop_assert!(closes, "{} without Connection: close", code);
            }
            if closes {
                prop_assert_eq!(
                    i + 1,
                    answers.len(),
                    "a response after the close: {:?}",
                    answers
                );
                prop_assert!(closed || !out.is_empty());
            }
            if closes && code >= 400 {
                // An error's one-line body, or (to HEAD) the end of its header section.
                prop_assert!(out.ends_with(b"\n"));
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn random_bytes_never_panic_and_end_in_an_error_a_close_or_nothing_owed(input in prop::collection::vec(any::<u8>(), 0..300), cuts in prop::collection::vec(any::<usize>(), 0..6)) {
            check_ending(&input, &cuts)?;
        }

        #[test]
        fn mutated_requests_never_panic_and_end_in_an_error_a_close_or_nothing_owed(input in mutated(), cuts in prop::collection::vec(any::<usize>(), 0..6)) {
            check_ending(&input, &cuts)?;
        }

        /// With `Expect: 100-continue` the interim response depends on whether the body came with the
        /// headers, so it may come or not; the final responses are the same for any split.
        #[test]
        fn with_expect_any_split_gives_the_same_final_responses(len in 1usize..200, count in 1usize..4, cuts in prop::collection::vec(any::<usize>(), 0..8)) {
            let mut input = Vec::new();
            for _ in 0..count {
                input.extend_from_slice(format!("POST /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: {len}\r\n\r\n").as_bytes());
                input.extend(std::iter::repeat_n(b'b', len));
            }
            let finals = |out: &[u8]| statuses(out).into_iter().filter(|c| *c != 100).collect::<Vec<_>>();
            let (whole, _) = feed(&input, &[]);
            let (split, _) = feed(&input, &cuts);
            prop_assert_eq!(finals(&whole), vec![200; count]);
            prop_assert_eq!(finals(&split), vec![200; count]);
            // One read: the body came with the headers, so no 100 at all.
            prop_assert!(!statuses(&whole).contains(&100));
        }
    }
}

each_mode! {
    /// A client whose headers never finish gets 408 after `--header-timeout`, a client that sends garbage
    /// gets 400, and neither costs a well-behaved client on a kept connection anything meanwhile.
    concurrent fn slow_and_bad_clients_get_their_errors_and_cost_others_nothing(mode) {
        let server = start_mode(mode, Config {
            header_timeout: Some(Duration::from_millis(800)),
            ..http_config()
        });
        let mut slow = connect(server.addr);
        slow.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ").unwrap();
        let mut bad = connect(server.addr);
        bad.write_all(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n").unwrap();
        let mut good = connect(server.addr);
        let request = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let started = std::time::Instant::now();
        for _ in 0..20 {
            good.write_all(request).unwrap();
            let mut reply = vec![0u8; 512];
            let n = good.read(&mut reply).unwrap();
            assert!(reply[..n].starts_with(b"HTTP/1.1 200 OK"), "{mode}");
            // The slow client keeps trickling, which must not put its deadline off.
            slow.write_all(b"x").unwrap();
            // 20 turns of 10 ms: half the header timeout is left for a loaded machine's scheduling.
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(started.elapsed() < Duration::from_millis(800) || mode != socklab::server::Mode::Reactor);
        let bad_reply = read_to_end(&mut bad);
        assert!(bad_reply.starts_with(b"HTTP/1.1 400 Bad Request\r\n"), "{mode}: {:?}", String::from_utf8_lossy(&bad_reply));
        let slow_reply = read_to_end(&mut slow);
        assert!(slow_reply.starts_with(b"HTTP/1.1 408 Request Timeout\r\n"), "{mode}: {:?}", String::from_utf8_lossy(&slow_reply));
        assert!(String::from_utf8_lossy(&slow_reply).contains("Connection: close\r\n"));
        server.stop();
    }
}

/// The blocking server has no timers; it enforces the header timeout on its read tick.
#[test]
fn the_blocking_server_enforces_the_header_timeout_too() {
    let server = start_mode(
        socklab::server::Mode::Blocking,
        Config {
            header_timeout: Some(Duration::from_millis(500)),
            ..http_config()
        },
    );
    let mut slow = connect(server.addr);
    slow.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n").unwrap();
    let started = std::time::Instant::now();
    let reply = read_to_end(&mut slow);
    assert!(
        reply.starts_with(b"HTTP/1.1 408 Request Timeout\r\n"),
        "{:?}",
        String::from_utf8_lossy(&reply)
    );
    assert!(
        started.elapsed() >= Duration::from_millis(450),
        "{:?}",
        started.elapsed()
    );
    drop(slow);
    server.stop();
}

each_mode! {
    /// curl keeps the ETag it was given and sends it back: the second fetch is a 304 with no content, and
    /// curl keeps its copy (RFC 9110 §13: a browser revalidates the same way).
    #[cfg_attr(not(has_curl), ignore = "needs curl, which build.rs did not find for this target")]
    fn curl_revalidates_with_the_etag_it_saved_and_gets_304(mode) {
        let server = start_mode(mode, http_config());
        let dir = std::env::temp_dir().join(format!("socklab-etag-{}-{mode}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let etag = dir.join("etag").display().to_string();
        let page = url(server.addr, "/");
        let (status, out, err) = execute("curl", &["-s", "-w", "%{http_code}", "--etag-save", &etag, &page], None);
        assert!(status.success(), "{mode}: {err}");
        assert_eq!(out, "Hello, World200", "{mode}");
        let saved = std::fs::read_to_string(&etag).unwrap();
        assert!(saved.starts_with('"') && saved.trim_end().ends_with('"'), "{mode}: a strong tag: {saved:?}");
        let (status, out, err) = execute("curl", &["-sv", "-w", "%{http_code}", "--etag-compare", &etag, &page], None);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(status.success(), "{mode}: {err}");
        assert!(err.contains(&format!("> If-None-Match: {}", saved.trim_end())), "{mode}: {err}");
        assert!(err.contains("< ETag: "), "{mode}: the 304 carries the tag: {err}");
        assert_eq!(out, "304", "{mode}: no content, only the status");
        // If-Modified-Since from the Last-Modified it was given: the same 304.
        let (_, out, err) = execute("curl", &["-sI", &page], None);
        let modified = out.lines().find_map(|l| l.strip_prefix("Last-Modified: ")).unwrap_or_else(|| panic!("{mode}: {out}{err}")).trim().to_string();
        let (status, out, err) = execute("curl", &["-s", "-w", "%{http_code}", "-H", &format!("If-Modified-Since: {modified}"), &page], None);
        assert!(status.success(), "{err}");
        assert_eq!(out, "304", "{mode}");
        assert_eq!(server.stop().stats.accepted, 4, "{mode}");
    }
}

each_mode! {
    /// curl as a proxy client asks for a tunnel with CONNECT; the 405 (no Content-Length-framed 2xx to read
    /// as tunnel data) makes it fail cleanly, saying so, instead of taking `Hello, World` for the tunnel.
    #[cfg_attr(not(has_curl), ignore = "needs curl, which build.rs did not find for this target")]
    fn curl_asking_for_a_tunnel_is_refused_not_misled(mode) {
        let server = start_mode(mode, http_config());
        let proxy = format!("http://{}", server.addr);
        let (status, _, err) = execute("curl", &["-sv", "--max-time", "10", "-p", "-x", &proxy, "http://tunnel.invalid:443/"], None);
        assert!(!status.success(), "{mode}: curl believed the tunnel was open:\n{err}");
        assert!(err.contains("HTTP/1.1 405 Method Not Allowed"), "{mode}: {err}");
        assert!(err.contains("CONNECT tunnel failed, response 405"), "{mode}: curl says why: {err}");
        server.stop();
    }
}

/// A strict HTTP/1.1 client, h11 (what httpx and urllib3 2 build on): every exchange of the decisions table,
/// pipelined on one connection, each response parsed and its framing checked by h11 itself.
const H11_CLIENT: &str = r#"
import socket, sys, h11
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
conn = h11.Connection(h11.CLIENT)
host = ("Host", sys.argv[1])
def exchange(method, target, headers=(), body=b""):
    headers = [host, *headers]
    if body:
        headers.append(("Content-Length", str(len(body))))
    sock.sendall(conn.send(h11.Request(method=method, target=target, headers=headers)))
    if body:
        sock.sendall(conn.send(h11.Data(data=body)))
    sock.sendall(conn.send(h11.EndOfMessage()))
    response, content = None, b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(sock.recv(65536))
        elif isinstance(event, h11.Response):
            response = event
        elif isinstance(event, h11.Data):
            content += event.data
        elif isinstance(event, h11.EndOfMessage):
            break
    fields = {k.decode().lower(): v.decode() for k, v in response.headers}
    conn.start_next_cycle()
    return response.status_code, fields, content
status, fields, content = exchange("GET", "/")
assert (status, content) == (200, b"Hello, World"), (status, content)
tag, modified = fields["etag"], fields["last-modified"]
assert exchange("HEAD", "/")[::2] == (200, b"")
assert exchange("GET", "/", [("If-None-Match", tag)])[::2] == (304, b"")
assert exchange("GET", "/", [("If-None-Match", "W/" + tag)])[0] == 304
assert exchange("GET", "/", [("If-Modified-Since", modified)])[0] == 304
assert exchange("POST", "/", [("If-Match", '"other"')], b"data")[0] == 412
assert exchange("POST", "/", [("If-Match", tag)], b"data")[::2] == (200, b"Hello, World")
status, fields, content = exchange("OPTIONS", "*")
assert (status, fields["allow"], content) == (200, "GET, HEAD, POST, OPTIONS", b""), (status, fields)
for method in ["PUT", "DELETE", "PATCH"]:
    status, fields, _ = exchange(method, "/x", body=b"body")
    assert (status, fields["allow"]) == (405, "GET, HEAD, POST, OPTIONS"), (method, status)
assert exchange("BREW", "/pot")[0] == 501
assert exchange("GET", "http://example.com:80/x?y")[0] == 200
print("ok")
"#;

each_mode! {
    #[cfg_attr(not(has_python_h11), ignore = "needs python3 with h11, which build.rs did not find for this target")]
    fn a_strict_client_h11_reads_every_answer_on_one_connection(mode) {
        let server = start_mode(mode, http_config());
        let (ip, port) = (server.addr.ip().to_string(), server.addr.port().to_string());
        let (status, out, err) = execute("python3", &["-c", H11_CLIENT, &ip, &port], None);
        assert!(status.success(), "{mode}: {err}");
        assert_eq!(out.trim(), "ok");
        assert_eq!(server.stop().stats.accepted, 1, "{mode}: one connection for every exchange");
    }
}

/// Node's own client, whose responses llhttp parses (the parser behind Node's HTTP): a revalidation, the
/// refusals, and an unknown method, on one kept connection.
const NODE_CLIENT: &str = r#"
const http = require("http");
const assert = require("assert");
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const [host, port] = process.argv.slice(1);
function exchange(method, path, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port, method, path, headers, agent }, (res) => {
      let body = "";
      res.setEncoding("latin1");
      res.on("data", (d) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.on("error", reject);
    req.end();
  });
}
(async () => {
  const first = await exchange("GET", "/");
  assert.strictEqual(first.body, "Hello, World");
  const etag = first.headers["etag"];
  assert.match(etag, /^"[0-9a-f]+"$/);
  const again = await exchange("GET", "/", { "If-None-Match": etag });
  assert.deepStrictEqual([again.status, again.body], [304, ""]);
  const options = await exchange("OPTIONS", "*");
  assert.deepStrictEqual([options.status, options.headers["allow"]], [200, "GET, HEAD, POST, OPTIONS"]);
  assert.strictEqual((await exchange("DELETE", "/x")).status, 405);
  assert.strictEqual((await exchange("PURGE", "/x")).status, 501);
  assert.strictEqual((await exchange("POST", "/", { "If-Match": '"x"' })).status, 412);
  agent.destroy();
  console.log("ok");
})().catch((e) => { console.error(e); process.exit(1); });
"#;

each_mode! {
    #[cfg_attr(not(has_node), ignore = "needs node, which build.rs did not find for this target")]
    fn nodes_client_parses_every_answer_with_llhttp(mode) {
        let server = start_mode(mode, http_config());
        let (ip, port) = (server.addr.ip().to_string(), server.addr.port().to_string());
        let (status, out, err) = execute("node", &["-e", NODE_CLIENT, &ip, &port], None);
        assert!(status.success(), "{mode}: {err}");
        assert_eq!(out.trim(), "ok");
        server.stop();
    }
}

each_mode! {
    /// A kept connection left silent is closed after --keepalive-timeout with nothing said, and a body that
    /// stops coming gets 408 after --body-timeout, in every mode (the session's own deadlines).
    fn the_keep_alive_and_body_timeouts_hold_in_every_mode(mode) {
        let server = start_mode(mode, Config {
            keepalive_timeout: Some(Duration::from_millis(400)),
            // Five times the trickle's pause, so a stalled test thread does not end the body early.
            body_timeout: Some(Duration::from_secs(1)),
            ..http_config()
        });
        let mut kept = connect(server.addr);
        kept.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        let started = std::time::Instant::now();
        let reply = read_to_end(&mut kept);
        let waited = started.elapsed();
        assert!(reply.starts_with(b"HTTP/1.1 200 OK\r\n") && reply.ends_with(b"Hello, World"), "{mode}: only the response, then the close: {:?}", String::from_utf8_lossy(&reply));
        assert!(waited >= Duration::from_millis(350) && waited < Duration::from_secs(5), "{mode}: closed after {waited:?}");
        drop(kept);
        let mut slow = connect(server.addr);
        slow.write_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nab").unwrap();
        // Each read puts the body timeout off (1.2 s of trickle outlasts one 1 s window); then the body stops.
        for _ in 0..6 {
            std::thread::sleep(Duration::from_millis(200));
            slow.write_all(b"c").unwrap();
        }
        let started = std::time::Instant::now();
        let reply = read_to_end(&mut slow);
        assert!(reply.starts_with(b"HTTP/1.1 408 Request Timeout\r\n"), "{mode}: {:?}", String::from_utf8_lossy(&reply));
        assert!(started.elapsed() >= Duration::from_millis(500), "{mode}: the trickle kept it: {:?}", started.elapsed());
        server.stop();
    }
}

/// What a client over the connection cap is told, as `--service http` words it, read by clients no one
/// here wrote, from every mode that has a cap (blocking mode serves one client at a time and has none: the
/// next waits in the backlog). With one connection held, `client` runs against the server; the server must
/// have refused it.
fn over_the_cap(client: impl Fn(Mode, SocketAddr)) {
    for mode in [Mode::Reactor, Mode::Threads, Mode::BusyPoll] {
        let server = start_mode(
            mode,
            Config {
                service: Service::Http,
                max_connections: Some(1),
                ..config()
            },
        );
        let mut held = connect(server.addr);
        held.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap();
        let mut first = [0u8; 12];
        held.read_exact(&mut first).unwrap();
        assert_eq!(&first, b"HTTP/1.1 200", "{mode}");
        client(mode, server.addr);
        drop(held);
        let stats = server.stop().stats;
        assert!(stats.refused >= 1, "{mode}: {stats:?}");
    }
}

/// Over the cap, curl reads a 503 (not "HTTP/0.9 when not allowed").
#[test]
#[cfg_attr(
    not(has_curl),
    ignore = "needs curl, which build.rs did not find for this target"
)]
fn over_the_cap_curl_reads_a_503() {
    over_the_cap(|mode, addr| {
        let (status, out, err) =
            execute("curl", &["-s", "-w", "%{http_code}", &url(addr, "/")], None);
        assert!(status.success(), "{mode}: {err}");
        assert_eq!(out, "Too many connections\n503", "{mode}");
    });
}

/// Over the cap, Python's client reads the 503, its `Retry-After` and its close.
#[test]
#[cfg_attr(
    not(has_python3),
    ignore = "needs python3, which build.rs did not find for this target"
)]
fn over_the_cap_pythons_client_reads_a_503() {
    over_the_cap(|mode, addr| {
        let script = "import http.client, sys\nc = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=10)\nc.request('GET', '/')\nr = c.getresponse()\nprint(r.status, r.getheader('Retry-After'), r.getheader('Connection'), r.read())";
        let (status, out, err) = execute(
            "python3",
            &[
                "-c",
                script,
                &addr.ip().to_string(),
                &addr.port().to_string(),
            ],
            None,
        );
        assert!(status.success(), "{mode}: {err}");
        assert_eq!(
            out.trim(),
            "503 1 close b'Too many connections\\n'",
            "{mode}"
        );
    });
}

/// The new flags are in `--help`, and a `--high-water` too small for `http` names the flag that matters.
#[test]
fn the_binary_has_the_http_timeouts_and_names_max_header_in_the_high_water_error() {
    let server = env!("CARGO_BIN_EXE_socklab-server");
    let (_, help, _) = execute(server, &["--help"], None);
    for flag in [
        "--body-timeout <SECS>",
        "--keepalive-timeout <SECS>",
        "[default: 60]",
        "[default: 75]",
    ] {
        assert!(help.contains(flag), "{flag} not in --help:\n{help}");
    }
    let (status, _, err) = execute(
        server,
        &["--port", "0", "--service", "http", "--high-water", "65536"],
        None,
    );
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("see --max-header") && !err.contains("--max-line"),
        "{err}"
    );
    let (status, _, err) = execute(server, &["--port", "0", "--body-timeout", "1e12"], None);
    assert_eq!(status.code(), Some(2), "{err}");
}
