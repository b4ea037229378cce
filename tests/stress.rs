//! socklab-stress against real servers on 127.0.0.1: socklab's reactor (in this process, through the
//! library, and as the built binary) must get zero wrong replies in every mode; servers made here that drop
//! a byte, swap a letter or close early must be caught, with a non-zero exit. Runs are short and bounded;
//! speed is never asserted.

#[macro_use]
mod common;

use std::time::Duration;

use common::*;
use socklab::server::config::Config;
use socklab::service::Service;
use socklab::stress::{self, Check, EarlyStop, LoadOptions, Report, Stop};

fn options(addr: std::net::SocketAddr) -> LoadOptions {
    LoadOptions {
        addr,
        connections: 8,
        pipeline: 4,
        size: 48,
        stop: Stop::Requests(2_000),
        timeout: Duration::from_secs(10),
        ..LoadOptions::default()
    }
}

fn run(options: &LoadOptions) -> Report {
    stress::run(options, &mut |_| {}).expect("stress run")
}

fn assert_all_right(report: &Report) {
    let t = &report.tally;
    assert_eq!(t.wrong, 0, "{}", report.text());
    assert_eq!(t.errors(), 0, "{}", report.text());
    assert!(!report.failed(), "{}", report.text());
    assert_eq!(t.checked + t.udp_lost, t.sent, "{}", report.text());
}

each_mode! {
    /// The same short TCP and UDP runs against every server mode: zero wrong replies, nothing lost.
    fn every_mode_gets_zero_wrong_replies(mode) {
        // (`super::run`: the macro's own `run` is the per-mode test body.)
        let server = start_mode(mode, config());
        // The blocking server serves one TCP client at a time; more would time out, by design (chapter 2).
        let connections = if mode.serves_clients_at_once() { 8 } else { 1 };
        let tcp = super::run(&LoadOptions {
            connections,
            ..options(server.addr)
        });
        assert_all_right(&tcp);
        assert_eq!(tcp.tally.checked, 2_000, "{mode}");
        let udp = super::run(&LoadOptions {
            udp: true,
            ..options(server.addr)
        });
        assert_all_right(&udp);
        server.stop();
    }
}

#[test]
fn tcp_closed_loop_against_the_reactor_all_replies_right() {
    let server = start(config());
    let report = run(&options(server.addr));
    assert_all_right(&report);
    assert_eq!(report.tally.checked, 2_000);
    assert_eq!(
        report.tally.latency.len(),
        2_000,
        "one latency sample per reply"
    );
    let stats = server.stop().stats;
    assert_eq!(stats.accepted, 8);
    assert_eq!(
        stats.bytes_in,
        2_000 * 48,
        "every request reached the server once"
    );
}

#[test]
fn tcp_open_loop_with_idle_connections_all_replies_right() {
    let server = start(config());
    let report = run(&LoadOptions {
        rate: Some(2_000.0),
        stop: Stop::Duration(Duration::from_millis(500)),
        idle: 6,
        ..options(server.addr)
    });
    assert_all_right(&report);
    // Request k is due at k/R seconds: a thousand in half a second. Those not sent by the end (every
    // connection full: under Wine, whose sockets are slow, 125 of them once) are counted, not lost.
    assert_eq!(
        report.tally.sent + report.tally.unsent,
        1_000,
        "{}",
        report.text()
    );
    assert!(report.tally.sent > 0, "{}", report.text());
    assert_eq!(report.tally.connected, 8 + 6);
    assert_eq!(server.stop().stats.accepted, 14);
}

#[test]
fn open_loop_stops_at_its_duration_and_says_whether_the_rate_was_reached() {
    let server = start(config());
    // A rate no server meets: the run still ends at its duration (it never ended before), and says so.
    let started = std::time::Instant::now();
    let report = run(&LoadOptions {
        rate: Some(1e12),
        stop: Stop::Duration(Duration::from_millis(500)),
        connections: 2,
        pipeline: 1,
        ..options(server.addr)
    });
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a 0.5 s run took {:?}",
        started.elapsed()
    );
    assert_all_right(&report);
    assert!(report.tally.unsent > 1_000_000, "{}", report.text());
    assert_eq!(report.rate_reached(), Some(false));
    let text = report.text();
    assert!(text.contains("NOT REACHED"), "{text}");
    assert!(
        text.trim_end().ends_with("ok, but below the asked rate"),
        "{text}"
    );
    assert!(report.json().contains("\"rate_reached\":false"));
    assert!(
        report
            .hints()
            .iter()
            .any(|h| h.contains("the asked rate was not reached")),
        "{:?}",
        report.hints()
    );
    // A rate the server meets: every request due went out, and the report says that too.
    // Slots for every request of the run (8 × 64 ≥ 300), so a stall of the machine delays replies but leaves
    // no request waiting for a free slot: with 8 × 4, a 32 ms stall near the end could leave some unsent.
    let met = run(&LoadOptions {
        rate: Some(1_000.0),
        stop: Stop::Duration(Duration::from_millis(300)),
        pipeline: 64,
        ..options(server.addr)
    });
    assert_all_right(&met);
    assert_eq!(met.tally.unsent, 0, "{}", met.text());
    assert_eq!(met.rate_reached(), Some(true));
    assert!(met.text().contains("sent 300 of 300 due"), "{}", met.text());
    assert!(met.text().contains(": reached"), "{}", met.text());
    assert!(met.hints().is_empty(), "{:?}", met.hints());
    server.stop();
}

#[test]
fn udp_closed_and_open_loop_against_the_reactor() {
    let server = start(config());
    let closed = run(&LoadOptions {
        udp: true,
        ..options(server.addr)
    });
    assert_all_right(&closed);
    let open = run(&LoadOptions {
        udp: true,
        rate: Some(1_000.0),
        stop: Stop::Duration(Duration::from_millis(300)),
        ..options(server.addr)
    });
    assert_all_right(&open);
    assert!(open.tally.checked > 0);
    server.stop();
}

#[test]
fn connections_spread_over_source_addresses() {
    let server = start(config());
    let report = run(&LoadOptions {
        connections: 200,
        pipeline: 2,
        sources: Some(4),
        ..options(server.addr)
    });
    assert_all_right(&report);
    assert_eq!(report.tally.connected, 200);
    server.stop();
}

#[test]
fn wrong_service_makes_every_reply_wrong_stops_early_and_names_the_service() {
    // An echo server checked as if it uppercased: nothing may pass, over TCP or UDP; the run stops at once,
    // says why, shows what came, and suggests the service the replies fit.
    let server = start(Config {
        service: Service::Echo,
        ..config()
    });
    let tcp = run(&LoadOptions {
        connections: 2,
        pipeline: 1,
        ..options(server.addr)
    });
    assert!(tcp.failed());
    assert_eq!(tcp.tally.checked, 0, "{}", tcp.text());
    assert_eq!(
        tcp.tally.wrong, 2,
        "one wrong reply per connection, then it is closed"
    );
    assert_eq!(tcp.tally.stopped_early, Some(EarlyStop::OnlyWrongReplies));
    assert_eq!(tcp.tally.mismatches.len(), 2);
    let m = &tcp.tally.mismatches[0];
    assert!(m.first);
    assert_eq!(m.got, m.request, "an echo server sends the request back");
    assert_eq!(m.expected, m.request.to_ascii_uppercase());
    assert_eq!(tcp.suggested_service(), Some(Service::Echo));
    assert!(!tcp.has_rate(), "no rate without a right reply");
    let text = tcp.text();
    for word in [
        "wrong reply 1 of 2",
        "expected  \"",
        "got       \"",
        "stopped early",
    ] {
        assert!(text.contains(word), "{word:?} missing from {text}");
    }
    assert!(!text.contains("req/s"), "{text}");
    assert!(
        tcp.hints().iter().any(|h| h.contains("--expect echo")),
        "{:?}",
        tcp.hints()
    );

    let udp = run(&LoadOptions {
        udp: true,
        connections: 2,
        stop: Stop::Requests(500),
        ..options(server.addr)
    });
    assert!(udp.failed());
    assert_eq!(udp.tally.checked, 0, "{}", udp.text());
    assert_eq!(udp.tally.stopped_early, Some(EarlyStop::OnlyWrongReplies));
    // Both sockets' first wrong replies stop the issuing; only what was in flight then still comes back.
    assert!(
        udp.tally.wrong >= 2 && udp.tally.sent < 500,
        "{}",
        udp.text()
    );
    assert_eq!(
        udp.tally.wrong + udp.tally.udp_lost,
        udp.tally.sent,
        "{}",
        udp.text()
    );
    assert_eq!(udp.suggested_service(), Some(Service::Echo));
    server.stop();
}

#[test]
fn udp_with_no_server_counts_each_socket_once_and_says_why() {
    // Nothing listens there: "port unreachable" comes back for every socket, and a TCP connection is refused.
    let (_held, addr) = nothing_listens();
    let report = run(&LoadOptions {
        udp: true,
        connections: 5,
        ..options(addr)
    });
    assert!(report.failed());
    assert_eq!(report.tally.refused, 5, "{}", report.text());
    assert_eq!(
        report.tally.connected,
        0,
        "refused, so never up: {}",
        report.text()
    );
    assert_eq!(
        report.tally.stopped_early,
        Some(EarlyStop::NoConnectionLeft)
    );
    assert!(
        report
            .hints()
            .iter()
            .any(|h| h.contains(&format!("is socklab-server running on {addr}?"))),
        "{:?}",
        report.hints()
    );
}

#[test]
fn udp_against_a_server_that_binds_no_udp_socket_says_so_and_exits_like_the_client() {
    let server = start(Config {
        service: Service::Http,
        ..config()
    });
    let addr = server.addr.to_string();
    let (status, out, err) = run_binary(
        STRESS,
        &["--addr", &addr, "--udp", "-c", "2", "--requests", "10"],
        None,
    );
    // A run that was tried and failed: 1, as the client's exit for the same datagrams.
    assert_eq!(status.code(), Some(1), "{out} {err}");
    assert!(
        err.contains(&format!("the server on {addr} answers no datagrams"))
            && err.contains("leave out --udp"),
        "{err}"
    );
    assert!(!err.contains("is socklab-server running"), "{err}");
    // Asked for a TCP-only service over UDP up front, it is a usage error: 2, as from the client.
    let (status, _, err) = run_binary(
        STRESS,
        &["--addr", &addr, "--udp", "--expect", "http"],
        None,
    );
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("TCP only"), "{err}");
    server.stop();
}

/// A TCP-only service over UDP, or a request size the service answers by closing, is refused before
/// anything is sent.
#[test]
fn expect_http_over_udp_or_too_large_is_refused() {
    let err = stress::run(
        &LoadOptions {
            udp: true,
            expect: Service::Http,
            ..LoadOptions::default()
        },
        &mut |_| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains("TCP only"), "{err}");
    // A request too large for the service's limits would end every connection at its first reply (the load
    // request pads its target, so past --max-header it is 414 URI Too Long).
    let err = stress::run(
        &LoadOptions {
            expect: Service::Http,
            size: 40_000,
            ..LoadOptions::default()
        },
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("--size 40000") && err.to_string().contains("414"),
        "{err}"
    );
}

#[test]
fn http_replies_are_checked_whatever_their_date_at_pipeline_1_and_16() {
    let server = start(Config {
        service: Service::Http,
        ..config()
    });
    for (pipeline, size) in [(1, 48), (16, 48), (16, 300)] {
        let report = run(&LoadOptions {
            expect: Service::Http,
            pipeline,
            size,
            ..options(server.addr)
        });
        assert_all_right(&report);
        assert_eq!(report.tally.checked, 2_000, "pipeline {pipeline}");
        assert_eq!(report.tally.latency.len(), 2_000);
    }
    // Longer than a second: most responses carry another Date than the one expected when the run began.
    let across = run(&LoadOptions {
        expect: Service::Http,
        pipeline: 16,
        stop: Stop::Duration(Duration::from_millis(1_500)),
        ..options(server.addr)
    });
    assert_all_right(&across);
    assert!(
        across.tally.load_time >= Duration::from_secs(1),
        "{}",
        across.text()
    );
    // Open loop, with idle connections holding half a request.
    let open = run(&LoadOptions {
        expect: Service::Http,
        rate: Some(2_000.0),
        stop: Stop::Duration(Duration::from_millis(500)),
        idle: 4,
        ..options(server.addr)
    });
    assert_all_right(&open);
    // A thousand due in half a second; those a stalled machine had no free slot for by the end are counted
    // as unsent, not lost (the closed-loop runs above check every reply).
    assert_eq!(
        open.tally.sent + open.tally.unsent,
        1_000,
        "{}",
        open.text()
    );
    assert!(open.tally.sent > 0, "{}", open.text());
    let stats = server.stop().stats;
    assert_eq!(stats.accepted, 4 * 8 + 8 + 4);
}

/// The length of each `--expect http` reply for a `size`-byte request (the same for every variant).
fn http_reply_len(size: usize) -> usize {
    let request = Service::Http.load_request(0, size);
    Service::Http.reply_to_stream(&request).len()
}

#[test]
fn a_corrupted_http_response_is_a_wrong_reply_but_another_date_is_not() {
    let len = http_reply_len(48);
    let options = |addr| LoadOptions {
        expect: Service::Http,
        connections: 4,
        pipeline: 1,
        ..options(addr)
    };
    // The body's last byte of each connection's third response, then the status code of its second.
    for at in [3 * len - 1, len + 9] {
        let addr = faulty_server_of(Service::Http, Fault::SwapLetter(at));
        let report = run(&options(addr));
        assert_eq!(report.tally.wrong, 4, "byte {at}: {}", report.text());
        assert_eq!(
            report.tally.checked,
            4 * (at / len) as u64,
            "{}",
            report.text()
        );
        assert!(report.failed());
        let m = &report.tally.mismatches[0];
        assert_eq!(m.first_difference(), at % len, "{}", report.text());
    }
    // A letter of the Date changed is still a right response: dates rightly differ.
    let date = Service::Http
        .reply_to_stream(&Service::Http.load_request(0, 48))
        .windows(6)
        .position(|w| w == b"Date: ")
        .unwrap()
        + 6;
    let addr = faulty_server_of(Service::Http, Fault::SwapLetter(len + date));
    let report = run(&options(addr));
    assert_all_right(&report);
    assert_eq!(report.tally.checked, 2_000);
}

#[test]
fn refused_connections_are_errors() {
    let (_held, addr) = nothing_listens();
    let report = run(&LoadOptions {
        connections: 3,
        ..options(addr)
    });
    assert!(report.failed());
    assert_eq!(report.tally.refused, 3, "{}", report.text());
}

const STRESS: &str = env!("CARGO_BIN_EXE_socklab-stress");

fn stress_binary(
    addr: std::net::SocketAddr,
    extra: &[&str],
) -> (std::process::ExitStatus, String, String) {
    let addr = addr.to_string();
    let mut args = vec![
        "--addr",
        &addr,
        "-c",
        "4",
        "--pipeline",
        "4",
        "--json",
        "-q",
    ];
    if !extra.contains(&"--duration") {
        args.extend_from_slice(&["--requests", "400"]);
    }
    args.extend_from_slice(extra);
    run_binary(STRESS, &args, None)
}

#[test]
fn binary_against_the_server_binary_reports_json_and_exits_zero() {
    let server = spawn_binary(&[]);
    for mode in [
        &[][..],
        &["--udp"][..],
        &["--rate", "1000", "--duration", "0.3", "--idle", "4"][..],
    ] {
        let (status, out, err) = stress_binary(server.addr, mode);
        assert!(status.success(), "{mode:?}: {out} {err}");
        assert_eq!(out.lines().count(), 1, "one JSON object on one line: {out}");
        assert_eq!(json_u64(&out, "wrong"), 0);
        assert_eq!(json_u64(&out, "checked"), json_u64(&out, "sent"), "{out}");
        assert!(out.contains("\"failed\":false"));
        assert!(
            err.is_empty(),
            "no progress bar when stderr is not a terminal: {err}"
        );
    }
}

#[test]
fn binary_text_report_names_the_counts() {
    let server = start(config());
    let addr = server.addr.to_string();
    let (status, out, _) = run_binary(
        STRESS,
        &["--addr", &addr, "--requests", "100", "-c", "2", "-q"],
        None,
    );
    assert!(status.success());
    for word in [
        "sent 100",
        "checked 100",
        "wrong 0",
        "req/s",
        "MB/s",
        "p50",
        "p99.9",
        "max",
        "ok",
    ] {
        assert!(out.contains(word), "{word:?} missing from {out}");
    }
    server.stop();
}

#[test]
fn plain_echo_server_passes_with_expect_echo() {
    let addr = faulty_server(Fault::Echo);
    let (status, out, err) = stress_binary(addr, &["--expect", "echo"]);
    assert!(status.success(), "{out} {err}");
    assert_eq!(json_u64(&out, "checked"), 400);
}

#[test]
fn a_correct_thread_per_connection_server_passes() {
    let addr = faulty_server(Fault::None);
    let (status, out, err) = stress_binary(addr, &[]);
    assert!(status.success(), "{out} {err}");
    assert_eq!(json_u64(&out, "wrong"), 0);
}

#[test]
fn a_dropped_byte_is_a_wrong_reply() {
    let addr = faulty_server(Fault::DropByte(100));
    let (status, out, _) = stress_binary(addr, &[]);
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(json_u64(&out, "wrong") >= 1, "{out}");
}

#[test]
fn a_swapped_letter_is_a_wrong_reply() {
    let addr = faulty_server(Fault::SwapLetter(100));
    let (status, out, _) = stress_binary(addr, &[]);
    assert_eq!(status.code(), Some(1), "{out}");
    // Exactly one reply is spoiled on each of the four connections.
    assert_eq!(json_u64(&out, "wrong"), 4, "{out}");
}

#[test]
fn an_early_close_is_reported() {
    // Closes in the middle of the third 64-byte reply: that reply is wrong (cut short). But the server
    // closes with pipelined requests unread, so its kernel may send a reset instead of a close, and the
    // reset can overtake the partial reply: then the connection counts as reset. Each of the four
    // connections is reported one way or the other.
    let addr = faulty_server(Fault::CloseAfter(150));
    let (status, out, _) = stress_binary(addr, &[]);
    assert_eq!(status.code(), Some(1), "{out}");
    let reported = json_u64(&out, "wrong") + json_u64(&out, "reset") + json_u64(&out, "closed");
    assert_eq!(reported, 4, "{out}");
    assert!(json_u64(&out, "unanswered") > 0, "{out}");
}

#[test]
fn a_server_that_never_answers_times_out() {
    // Accepts and reads, never writes: every connection ends the run still waiting.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let (status, out, _) = stress_binary(addr, &["--timeout", "0.3"]);
    assert_eq!(status.code(), Some(1), "{out}");
    assert_eq!(json_u64(&out, "timed_out"), 4, "{out}");
    assert_eq!(json_u64(&out, "unanswered"), 16, "{out}");
}

#[test]
fn binary_against_the_wrong_service_shows_the_replies_and_suggests_the_right_one() {
    let server = start(Config {
        service: Service::Echo,
        ..config()
    });
    let addr = server.addr.to_string();
    for udp in [false, true] {
        let mut args = vec!["--addr", addr.as_str(), "-c", "3", "--duration", "5"];
        if udp {
            args.push("--udp");
        }
        let started = std::time::Instant::now();
        let (status, out, err) = run_binary(STRESS, &args, None);
        assert_eq!(status.code(), Some(1), "{out} {err}");
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "it stopped early, not after --duration"
        );
        assert!(out.contains("wrong reply 1 of"), "{out}");
        assert!(out.contains("stopped early"), "{out}");
        assert!(
            !out.contains("req/s"),
            "no rate without a right reply: {out}"
        );
        assert!(err.contains("--expect echo"), "{err}");
    }
    server.stop();
}

#[test]
fn binary_writes_the_latency_distribution_as_hgrm_and_svg() {
    let server = start(config());
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let (hgrm, svg) = (
        dir.join("stress-latency.hgrm"),
        dir.join("stress-latency.svg"),
    );
    let _ = std::fs::remove_file(&hgrm);
    let _ = std::fs::remove_file(&svg);
    let (status, out, err) = stress_binary(
        server.addr,
        &[
            "--latency-hgrm",
            hgrm.to_str().unwrap(),
            "--latency-svg",
            svg.to_str().unwrap(),
        ],
    );
    assert!(status.success(), "{out} {err}");
    let text = std::fs::read_to_string(&hgrm).unwrap();
    assert!(
        text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"),
        "{text}"
    );
    // The last row is percentile 1 with every checked reply counted; the footer says the same count.
    let last = text.lines().rfind(|l| !l.starts_with('#')).unwrap();
    let fields: Vec<&str> = last.split_whitespace().collect();
    assert_eq!(fields[1], "1.000000000000", "{text}");
    assert_eq!(fields[2].parse::<u64>().unwrap(), json_u64(&out, "checked"));
    assert!(
        text.contains(&format!(
            "Total count    = {:>12}]",
            json_u64(&out, "checked")
        )),
        "{text}"
    );
    let picture = std::fs::read_to_string(&svg).unwrap();
    assert!(
        picture.starts_with("<svg") && picture.contains("percentile"),
        "{picture}"
    );
    // A file that cannot be made fails the run before it starts.
    let (status, _, err) = stress_binary(server.addr, &["--latency-svg", "/nonexistent-dir/x.svg"]);
    assert_eq!(status.code(), Some(2));
    assert!(err.contains("cannot write /nonexistent-dir/x.svg"), "{err}");
    server.stop();
}

#[test]
fn help_addr_and_verbosity_are_what_a_new_user_expects() {
    // --help opens with the tool's description, not the crate's.
    for flag in ["-h", "--help"] {
        let (status, out, _) = run_binary(STRESS, &[flag], None);
        assert!(status.success());
        assert!(out.starts_with("Drives many connections"), "{flag}: {out}");
    }
    // -v and -q together say they conflict, exit 2.
    let (status, _, err) = run_binary(STRESS, &["-v", "-q"], None);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("cannot be used with"), "{err}");
    // A host without a port means socklab's port, 12000 (whatever answers there, or not: one request, a
    // short timeout; only the address it went to is asserted).
    let (_, out, err) = run_binary(
        STRESS,
        &[
            "--addr",
            "127.0.0.1",
            "--requests",
            "1",
            "-c",
            "1",
            "--timeout",
            "0.2",
            "--json",
            "-q",
        ],
        None,
    );
    assert!(out.contains("\"addr\":\"127.0.0.1:12000\""), "{out} {err}");
    // A user-facing error reads like a tool's: its name, no timestamp or module path.
    let (status, _, err) = run_binary(STRESS, &["--addr", "127.0.0.1:99999"], None);
    assert_eq!(status.code(), Some(2));
    assert!(
        err.starts_with("socklab-stress: --addr: cannot resolve 127.0.0.1:99999"),
        "{err}"
    );
}

#[test]
fn every_flag_has_a_row_in_the_docs() {
    let missing = flags_without_a_row(
        STRESS,
        "docs/client-and-stress.md",
        Some("## socklab-stress"),
    );
    assert!(
        missing.is_empty(),
        "docs/client-and-stress.md has no row for {missing:?}"
    );
}

#[test]
fn impossible_settings_are_refused_before_starting() {
    // A million sockets pass the open-file limit on Unix. Windows has none (only the 2^24 handles a process
    // may hold), so there this request would really be tried.
    #[cfg(unix)]
    {
        let (status, _, err) = run_binary(
            STRESS,
            &["--connections", "1000000", "--addr", "127.0.0.1:9"],
            None,
        );
        assert_eq!(status.code(), Some(2));
        assert!(err.contains("open files"), "{err}");
    }
    let (status, _, err) = run_binary(STRESS, &["--pipeline", "0"], None);
    assert_eq!(status.code(), Some(2));
    assert!(err.contains("--pipeline"), "{err}");
    // No request measures nothing: refused, not reported as "throughput none" and then "ok".
    let (status, out, err) = run_binary(STRESS, &["--requests", "0"], None);
    assert_eq!(status.code(), Some(2), "{out}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("--requests must be at least 1"), "{err}");
}

/// An HTTP server that is not socklab: other headers, a lowercase `date` that changes with every response,
/// and, when `corrupt` says so, that response's body spoiled (counted over the whole server).
fn another_http_server(corrupt: Option<usize>) -> std::net::SocketAddr {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let served = Arc::clone(&served);
            std::thread::spawn(move || {
                let mut pending = Vec::new();
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = stream.read(&mut buf) {
                    pending.extend_from_slice(&buf[..n]);
                    let mut out = Vec::new();
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        pending.drain(..end + 4);
                        let i = served.fetch_add(1, Ordering::Relaxed);
                        let body = if corrupt == Some(i) {
                            "Hello, Wrold"
                        } else {
                            "Hello, World"
                        };
                        write!(
                            out,
                            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 12\r\n\
                             date: Mon, 07 Nov 1994 08:{:02}:{:02} GMT\r\nserver: other\r\n\r\n{body}",
                            i / 60 % 60,
                            i % 60
                        )
                        .unwrap();
                    }
                    if stream.write_all(&out).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn learn_reply_checks_another_servers_responses_against_its_own_first_one() {
    let options = |addr| LoadOptions {
        expect: Service::Http,
        learn_reply: true,
        ..options(addr)
    };
    // Its headers are not socklab's, so without --learn-reply every reply is wrong; with it, all are right.
    let report = run(&LoadOptions {
        learn_reply: false,
        ..options(another_http_server(None))
    });
    assert!(report.tally.wrong > 0, "{}", report.text());
    let report = run(&options(another_http_server(None)));
    assert_all_right(&report);
    assert_eq!(report.tally.checked, 2_000);
    // Learning does not mean accepting anything: a spoiled body later on is still a wrong reply.
    let report = run(&options(another_http_server(Some(500))));
    assert!(report.failed(), "{}", report.text());
    assert_eq!(report.tally.wrong, 1, "{}", report.text());
    // A service whose replies differ by request cannot be learned from one.
    let refused = LoadOptions {
        expect: Service::Upper,
        learn_reply: true,
        ..LoadOptions::default()
    };
    assert!(refused.validate().unwrap_err().contains("--learn-reply"));
}

/// An HTTP server made here, one thread per connection: request `i` (counted over the whole server) gets
/// `respond(i)`'s bytes, and the connection closes after it when `respond` says so. Requests are heads only
/// (no bodies), as the tool sends them without --body.
fn scripted_http_server(respond: fn(usize) -> (Vec<u8>, bool)) -> std::net::SocketAddr {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let served = Arc::clone(&served);
            std::thread::spawn(move || {
                let mut pending = Vec::new();
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = stream.read(&mut buf) {
                    pending.extend_from_slice(&buf[..n]);
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        pending.drain(..end + 4);
                        let (bytes, close) = respond(served.fetch_add(1, Ordering::Relaxed));
                        if stream.write_all(&bytes).is_err() {
                            return;
                        }
                        if close {
                            let _ = stream.shutdown(std::net::Shutdown::Write);
                            // Read what is left, so the close is a FIN and not a reset.
                            while let Ok(1..) = stream.read(&mut buf) {}
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

fn url_options(url: &str) -> LoadOptions {
    let target = socklab::stress::http::HttpTarget::parse(url).unwrap();
    LoadOptions {
        addr: target.resolve().unwrap(),
        expect: Service::Http,
        http: Some(target),
        connections: 4,
        pipeline: 1,
        stop: Stop::Requests(400),
        timeout: Duration::from_secs(10),
        ..LoadOptions::default()
    }
}

#[test]
fn a_url_of_socklabs_http_service_is_checked_byte_for_byte() {
    let server = start(Config {
        service: Service::Http,
        ..config()
    });
    for method in ["GET", "HEAD"] {
        let mut options = url_options(&format!("http://{}/index.html", server.addr));
        options.http.as_mut().unwrap().method = method.into();
        options.pipeline = 8;
        let report = run(&options);
        assert_all_right(&report);
        assert_eq!(report.tally.check, Check::SocklabHttp, "{method}");
        assert_eq!(report.tally.checked, 400);
        assert_eq!(report.tally.reopened, 0);
    }
    // A connection per request: every response closes its connection and a new one carries on; no failure.
    let mut options = url_options(&format!("http://{}/", server.addr));
    options.http.as_mut().unwrap().close_each = true;
    let report = run(&options);
    assert_all_right(&report);
    assert_eq!(report.tally.check, Check::Framing { status: 200 });
    assert_eq!(report.tally.checked, 400);
    assert!(report.tally.reopened >= 396, "{}", report.text());
    assert!(report.text().contains("a connection per request"));
    let stats = server.stop().stats;
    assert!(stats.accepted >= 400, "{} connections", stats.accepted);
}

#[test]
fn another_servers_responses_are_checked_by_their_framing_and_status() {
    // Every framing HTTP/1.1 has, by turns, kept alive.
    fn framings(i: usize) -> (Vec<u8>, bool) {
        let bytes: &[u8] = match i % 3 {
            0 => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Other: yes\r\n\r\nhello",
            1 => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
            _ => b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
        };
        (bytes.to_vec(), false)
    }
    let addr = scripted_http_server(framings);
    let report = run(&LoadOptions {
        pipeline: 4,
        ..url_options(&format!("http://{addr}/any"))
    });
    assert_all_right(&report);
    assert_eq!(report.tally.check, Check::Framing { status: 200 });
    assert_eq!(report.tally.checked, 400);

    // A server that closes after every response (HTTP/1.0, or Connection: close, or a body up to the close)
    // makes a run that reopens connections, never a failed one, pipelined or not.
    fn closes(i: usize) -> (Vec<u8>, bool) {
        let bytes: &[u8] = match i % 3 {
            0 => b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi",
            1 => b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi",
            _ => b"HTTP/1.1 200 OK\r\n\r\nhi, until the close",
        };
        (bytes.to_vec(), true)
    }
    let addr = scripted_http_server(closes);
    for pipeline in [1, 4] {
        let report = run(&LoadOptions {
            pipeline,
            stop: Stop::Requests(200),
            ..url_options(&format!("http://{addr}/"))
        });
        assert_all_right(&report);
        assert_eq!(report.tally.checked, 200, "pipeline {pipeline}");
        assert!(report.tally.reopened >= 196, "{}", report.text());
    }
}

#[test]
fn a_broken_frame_or_another_status_is_a_wrong_reply() {
    // Response 100 (counted over the server) says 20 bytes and sends 12 before the next response (pipelined,
    // so it follows at once): its body runs 8 bytes into the next head, the stream is out of step, that
    // connection closes; every other connection is served right.
    fn short_body(i: usize) -> (Vec<u8>, bool) {
        let length = if i == 100 { 20 } else { 12 };
        (
            format!("HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\nHello, World").into_bytes(),
            false,
        )
    }
    let addr = scripted_http_server(short_body);
    let report = run(&LoadOptions {
        pipeline: 2,
        ..url_options(&format!("http://{addr}/"))
    });
    assert!(report.failed(), "{}", report.text());
    assert_eq!(report.tally.wrong, 1, "{}", report.text());
    let m = &report.tally.mismatches[0];
    assert!(
        m.why
            .as_deref()
            .is_some_and(|w| w.contains("not an HTTP/1.x response head")),
        "{m:?}"
    );
    // Response 100 is a 503 of good framing: wrong, and its connection goes on.
    fn one_503(i: usize) -> (Vec<u8>, bool) {
        let status = if i == 100 {
            "503 Service Unavailable"
        } else {
            "200 OK"
        };
        (
            format!("HTTP/1.1 {status}\r\nContent-Length: 2\r\n\r\nhi").into_bytes(),
            false,
        )
    }
    let addr = scripted_http_server(one_503);
    let report = run(&url_options(&format!("http://{addr}/")));
    assert_eq!(report.tally.wrong, 1, "{}", report.text());
    assert_eq!(report.tally.checked, 399, "{}", report.text());
    assert_eq!(report.tally.errors(), 0, "{}", report.text());
    assert!(
        report
            .text()
            .contains("status 503 where the server's first answer had 200"),
        "{}",
        report.text()
    );
    assert!(
        report.json().contains("\"why\":\"status 503"),
        "{}",
        report.json()
    );
}

#[test]
fn a_server_that_says_it_closes_and_does_not_times_out_instead_of_hanging() {
    fn says_close(_: usize) -> (Vec<u8>, bool) {
        (
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi".to_vec(),
            false,
        )
    }
    let addr = scripted_http_server(says_close);
    let started = std::time::Instant::now();
    let report = run(&LoadOptions {
        timeout: Duration::from_millis(300),
        stop: Stop::Duration(Duration::from_secs(30)),
        ..url_options(&format!("http://{addr}/"))
    });
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        report.tally.checked,
        4,
        "one response each: {}",
        report.text()
    );
    assert_eq!(report.tally.timed_out, 4, "{}", report.text());
    assert_eq!(
        report.tally.stopped_early,
        Some(EarlyStop::NoConnectionLeft)
    );
}

#[test]
fn binary_takes_a_url_and_refuses_what_it_cannot_check() {
    let server = start(Config {
        service: Service::Http,
        ..config()
    });
    let url = format!("http://{}/", server.addr);
    let (status, out, err) = run_binary(
        STRESS,
        &[
            &url,
            "-c",
            "2",
            "--requests",
            "100",
            "-H",
            "X-Test: 1",
            "--json",
            "-q",
        ],
        None,
    );
    assert!(status.success(), "{out} {err}");
    assert_eq!(json_u64(&out, "checked"), 100, "{out}");
    assert!(
        out.contains("\"check\":\"http_framing\"") || out.contains("\"check\":\"socklab_http\""),
        "{out}"
    );
    let refused: &[&[&str]] = &[
        &["https://127.0.0.1/"],
        &[&url, "-X", "CONNECT"],
        &[&url, "-H", "Transfer-Encoding: chunked"],
        &[&url, "-H", "Upgrade: websocket"],
        &[&url, "--close-each", "--pipeline", "4"],
        &[&url, "--udp"],
        &[&url, "--expect", "echo"],
        &["-X", "POST"],
        &["--close-each"],
    ];
    for args in refused {
        let (status, out, err) = run_binary(STRESS, args, None);
        assert_eq!(status.code(), Some(2), "{args:?}: {out} {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert!(!err.is_empty(), "{args:?}: says why");
    }
    // A first answer that switches protocols cannot be checked: refused before the load, with the reason.
    fn switches(_: usize) -> (Vec<u8>, bool) {
        (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n".to_vec(),
            false,
        )
    }
    let addr = scripted_http_server(switches);
    let (status, _, err) = run_binary(STRESS, &[&format!("http://{addr}/")], None);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("101 Switching Protocols"), "{err}");
    server.stop();
}
