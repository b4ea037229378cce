//! `--service http` against clients no one here wrote: curl (keep-alive, HEAD, a POST body with and without
//! `Expect: 100-continue`, chunked uploads, HTTP/1.0), Python's `http.client`, ApacheBench with keep-alive
//! (HTTP/1.0), and headless Chromium loading the page. Each runs against a real server on 127.0.0.1 port 0,
//! in every mode where the client can show something. A tool that is missing is said so and skipped;
//! `.ci/run` installs them from Debian's packages. The rules themselves are tested byte by byte in
//! `src/service/http.rs`, and in every mode through `tests/services.rs`.

#[macro_use]
mod common;

use common::*;
use socklab::server::config::Config;
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

/// The path of `tool` if it is installed; otherwise says why the test is skipped.
fn tool(name: &str) -> Option<String> {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if found.is_none() {
        eprintln!("skipped: {name} is not installed (.ci/run installs it from Debian's packages)");
    }
    found
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
    fn curl_keeps_the_connection_for_several_requests(mode) {
        let Some(curl) = tool("curl") else { return };
        let server = start_mode(mode, http_config());
        let (a, b) = (url(server.addr, "/"), url(server.addr, "/second"));
        let (status, out, err) = execute(&curl, &["-sv", &a, &b], None);
        assert!(status.success(), "{mode}: {err}");
        assert_eq!(out, "Hello, WorldHello, World", "{mode}");
        assert!(err.contains("Re-using existing connection"), "{mode}: curl opened a second connection:\n{err}");
        assert!(err.contains("< Date: ") && err.contains("< Server: socklab"), "{err}");
        let stats = server.stop().stats;
        assert_eq!(stats.accepted, 1, "{mode}: two requests, one connection");
    }
}

each_mode! {
    fn curl_head_gets_the_headers_and_no_body(mode) {
        let Some(curl) = tool("curl") else { return };
        let server = start_mode(mode, http_config());
        let (status, out, err) = execute(&curl, &["-sI", &url(server.addr, "/")], None);
        assert!(status.success(), "{err}");
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.contains("Content-Length: 12\r\n") && out.contains("Content-Type: text/plain\r\n"), "{out}");
        assert!(out.ends_with("\r\n\r\n"), "no body after the headers: {out:?}");
        server.stop();
    }
}

each_mode! {
    fn curl_posts_bodies_that_are_read_and_never_served_as_requests(mode) {
        let Some(curl) = tool("curl") else { return };
        let server = start_mode(mode, http_config());
        // A body that is itself a request: it must be discarded, not answered.
        let body = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n".repeat(2000);
        let (status, out, err) = execute(&curl, &["-sv", "--data-binary", "@-", &url(server.addr, "/"), &url(server.addr, "/after")], Some(body.as_bytes()));
        assert!(status.success(), "{err}");
        assert_eq!(out, "Hello, WorldHello, World", "{mode}: one response per request, none for the body");
        // Asked to wait for 100 Continue, curl gets it before it sends the body.
        let (status, out, err) = execute(&curl, &["-sv", "-H", "Expect: 100-continue", "--data-binary", "@-", &url(server.addr, "/")], Some(body.as_bytes()));
        assert!(status.success(), "{err}");
        assert!(err.contains("< HTTP/1.1 100 Continue"), "{mode}: no 100 Continue:\n{err}");
        assert_eq!(out, "Hello, World");
        // A chunked upload.
        let (status, out, err) = execute(&curl, &["-sv", "-H", "Transfer-Encoding: chunked", "--data-binary", "@-", &url(server.addr, "/")], Some(body.as_bytes()));
        assert!(status.success(), "{err}");
        assert!(err.contains("> Transfer-Encoding: chunked"), "{err}");
        assert_eq!(out, "Hello, World");
        server.stop();
    }
}

each_mode! {
    fn curl_http_1_0_gets_its_answer_and_the_close_unless_it_asks_to_keep(mode) {
        let Some(curl) = tool("curl") else { return };
        let server = start_mode(mode, http_config());
        let (status, out, err) = execute(&curl, &["-sv", "--http1.0", &url(server.addr, "/")], None);
        assert!(status.success(), "{err}");
        assert_eq!(out, "Hello, World");
        assert!(err.contains("< Connection: close"), "{err}");
        let (status, out, err) = execute(&curl, &["-sv", "--http1.0", "-H", "Connection: keep-alive", &url(server.addr, "/"), &url(server.addr, "/")], None);
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
    fn pythons_http_client_is_served_on_one_connection(mode) {
        let Some(python) = tool("python3") else { return };
        let server = start_mode(mode, http_config());
        let (ip, port) = (server.addr.ip().to_string(), server.addr.port().to_string());
        let (status, out, err) = execute(&python, &["-c", PYTHON_CLIENT, &ip, &port], None);
        assert!(status.success(), "{mode}: {err}");
        assert_eq!(out.trim(), "ok");
        assert_eq!(server.stop().stats.accepted, 1, "{mode}: one connection for every request");
    }
}

/// ApacheBench speaks HTTP/1.0 and asks for keep-alive with `-k`: every request is answered and kept.
#[test]
fn apachebench_with_keep_alive_gets_every_answer_on_kept_connections() {
    let Some(ab) = tool("ab") else { return };
    let server = start(http_config());
    let (status, out, err) = execute(
        &ab,
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
fn headless_chromium_loads_the_page() {
    let Some(chromium) = tool("chromium") else {
        return;
    };
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
    let (status, out, err) = execute(&chromium, &args, None);
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
            let length: usize = response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
                .unwrap_or(0);
            codes.push(code);
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
        let codes = statuses(&out);
        // Only the last response may be an error, and an error always ends the connection.
        for (i, code) in codes.iter().enumerate() {
            if *code >= 400 {
                prop_assert_eq!(i + 1, codes.len(), "a response after an error: {:?}", codes);
                prop_assert!(closed || !out.is_empty());
                prop_assert!(
                    String::from_utf8_lossy(&out).ends_with("\r\n") || out.ends_with(b"\n")
                );
            } else {
                prop_assert!(*code == 200 || *code == 100, "status {}", code);
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
                input.extend_from_slice(format!("PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: {len}\r\n\r\n").as_bytes());
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
    fn slow_and_bad_clients_get_their_errors_and_cost_others_nothing(mode) {
        if skip_unless_concurrent(mode) {
            return;
        }
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
            std::thread::sleep(Duration::from_millis(20));
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
