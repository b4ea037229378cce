//! The sample sessions the README and `docs/12-watching.md` show are produced here, from the real binaries,
//! and checked against the files (`tests/common/transcript.rs` says how they are compared), so they cannot
//! drift from what the programs print. `SOCKLAB_BLESS=1 cargo test --test transcripts` rewrites them.
//!
//! The sessions run one after another in one test: each is paced (pauses between a client's steps) so
//! the sequence of what the server does is the same on any machine, and two sessions at once would
//! disturb each other's pacing.

// The sessions run only on Unix (see the test): elsewhere their helpers are compiled but unused.
#![cfg_attr(not(unix), allow(dead_code, unused_imports))]

#[macro_use]
mod common;

use common::transcript::{check, check_session, condense, normalise, story};
use common::*;
use socklab::server::Mode;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::process::Command;
use std::thread::sleep;
use std::time::Duration;

/// A pause long enough for the server to have handled what came before, on a busy machine.
const PACE: Duration = Duration::from_millis(300);

/// The commands of the README block `name` (lines starting `$ `), each with what it printed, run against a
/// server on `port` with the built binaries; the README's port 12000 stands for it.
fn run_readme_commands(name: &str, port: u16) -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let marker = format!("<!-- transcript: {name} -->");
    let block = readme.split(&marker).nth(1).expect("a marked block");
    let commands: Vec<&str> = block
        .lines()
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| l.starts_with("    ") || l.is_empty())
        .filter_map(|l| l.trim_start().strip_prefix("$ "))
        .collect();
    let mut session = Vec::new();
    for command in commands {
        session.push(format!("$ {command}"));
        // The README's commands use the default port; here they go to this test's server.
        let client = format!("{} --port {port}", env!("CARGO_BIN_EXE_socklab-client"));
        let runnable = command
            .replace("cargo run --release --bin socklab-client --", &client)
            .replace("12000", &port.to_string());
        let output = Command::new("sh").args(["-c", &runnable]).output().unwrap();
        assert!(
            output.status.success(),
            "{command}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            session.push(line.replace(&port.to_string(), "12000"));
        }
    }
    session
}

/// The log lines of a finished server, as the README shows them: time elided, the port the README's.
fn log_lines(log: &str, port: u16, level: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(&format!(" {level} ")))
        .map(|l| {
            let after_time = l.find(' ').map_or(l, |i| &l[i..]);
            format!("[...{after_time}").replace(&port.to_string(), "12000")
        })
        .collect()
}

/// The trace lines of a finished server, without their time and target: `turn 7 · 5 …`.
fn trace_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(" TRACE "))
        .filter_map(|l| l.split_once("] ").map(|(_, message)| message.to_string()))
        .collect()
}

fn readme_session() {
    let server = spawn_mode(Mode::Reactor, &[]);
    let port = server.addr.port();
    let nc = run_readme_commands("readme-nc", port);
    let client = run_readme_commands("readme-client", port);
    let python = run_readme_commands("readme-python", port);
    server.signal(libc::SIGINT);
    let listening = server.listening.replace(&port.to_string(), "12000");
    let (status, log) = server.wait();
    assert!(status.success(), "{log}");
    let info = log_lines(&log, port, "INFO");
    let mut start = vec![
        "$ cargo run --release --bin socklab-server".to_string(),
        listening,
    ];
    start.push(info[0].clone());
    check("README.md", "readme-server", &start);
    check("README.md", "readme-nc", &nc);
    check("README.md", "readme-client", &client);
    check("README.md", "readme-python", &python);
    check("README.md", "readme-shutdown", &info[1..]);
}

/// Session 1: one client types two lines, a pause between them, then closes.
fn typing(mode: Mode) -> Vec<String> {
    let server = spawn_mode(mode, &["--trace"]);
    sleep(PACE);
    let mut client = connect(server.addr);
    sleep(PACE);
    for line in [&b"hello\n"[..], b"world\n"] {
        client.write_all(line).unwrap();
        let mut reply = vec![0; line.len()];
        client.read_exact(&mut reply).unwrap();
        sleep(PACE);
    }
    drop(client);
    sleep(PACE);
    finish(server)
}

/// Session 6: the same in blocking mode, with a second client that connects while the first is served.
fn blocking_two_clients() -> Vec<String> {
    let server = spawn_mode(Mode::Blocking, &["--trace"]);
    sleep(PACE);
    let mut first = connect(server.addr);
    sleep(PACE);
    first.write_all(b"hello\n").unwrap();
    let mut reply = [0; 6];
    first.read_exact(&mut reply).unwrap();
    sleep(PACE);
    // The second tab: connected by the kernel, not served.
    let mut second = connect(server.addr);
    second.write_all(b"me too\n").unwrap();
    sleep(PACE);
    first.write_all(b"world\n").unwrap();
    first.read_exact(&mut reply).unwrap();
    sleep(PACE);
    drop(first);
    let mut reply = [0; 7];
    second.read_exact(&mut reply).unwrap();
    sleep(PACE);
    drop(second);
    sleep(PACE);
    finish(server)
}

/// Session 2: a burst of pipelined lines in one write, larger than a turn's read budget. The server is
/// stopped while the burst arrives, so its first read finds all of it queued, on any machine.
#[cfg(unix)]
fn pipelined_burst() -> Vec<String> {
    let server = spawn_mode(Mode::Reactor, &["--trace", "--read-budget", "16384"]);
    sleep(PACE);
    let mut client = connect(server.addr);
    sleep(PACE);
    let burst = lines(1000, 1);
    server.signal(libc::SIGSTOP);
    client.write_all(&burst).unwrap();
    sleep(PACE);
    server.signal(libc::SIGCONT);
    let mut reply = vec![0; burst.len()];
    client.read_exact(&mut reply).unwrap();
    sleep(PACE);
    drop(client);
    sleep(PACE);
    finish(server)
}

/// A client whose receive buffer is small, so its window closes soon when it does not read: the buffer
/// sizes of a session are fixed, not left to the kernel's autotuning.
fn small_window_client(addr: std::net::SocketAddr) -> std::net::TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    let stream: std::net::TcpStream = socket.into();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream
}

/// Session 3: a client that writes 512 KB and reads nothing for a while: the outbox reaches the high-water
/// mark, reading stops, WRITABLE interest comes on; then the client reads and it all drains.
fn slow_reader() -> Vec<String> {
    let server = spawn_mode(
        Mode::Reactor,
        &["--trace", "--high-water", "65536", "--send-buffer", "16384"],
    );
    sleep(PACE);
    let mut client = small_window_client(server.addr);
    sleep(PACE);
    let request: Vec<u8> = b"abcdefghijklmnopqrstuvwxyz012345"
        .iter()
        .copied()
        .cycle()
        .take(512 << 10)
        .collect();
    let mut writer = client.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        writer.write_all(&request).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    sleep(PACE * 2);
    let mut reply = Vec::new();
    client.read_to_end(&mut reply).unwrap();
    sender.join().unwrap();
    assert_eq!(reply.len(), 512 << 10);
    sleep(PACE);
    finish(server)
}

/// Session 4: a client sends a line and half-closes: it still gets its reply, then the end of stream.
fn half_close() -> Vec<String> {
    let server = spawn_mode(Mode::Reactor, &["--trace"]);
    sleep(PACE);
    let mut client = connect(server.addr);
    sleep(PACE);
    client.write_all(b"bye").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut reply = Vec::new();
    client.read_to_end(&mut reply).unwrap();
    assert_eq!(reply, b"BYE");
    sleep(PACE);
    finish(server)
}

/// Session 5: SIGTERM while replies wait: reading stops, what is owed is delivered, FIN, the client's FIN.
fn sigterm_in_flight() -> Vec<String> {
    let server = spawn_mode(
        Mode::Reactor,
        &["--trace", "--high-water", "65536", "--send-buffer", "16384"],
    );
    sleep(PACE);
    let mut client = small_window_client(server.addr);
    sleep(PACE);
    let request = vec![b'x'; 512 * 1024];
    let mut writer = client.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&request);
    });
    sleep(PACE);
    server.signal(libc::SIGTERM);
    sleep(PACE);
    let mut reply = Vec::new();
    let _ = client.read_to_end(&mut reply);
    sleep(PACE);
    drop(client);
    let _ = sender.join();
    sleep(PACE);
    let (status, log) = server.wait();
    assert!(status.success(), "{log}");
    trace_lines(&log)
}

/// Stops a session's server; returns its trace.
fn finish(server: Binary) -> Vec<String> {
    server.signal(libc::SIGTERM);
    let (status, log) = server.wait();
    assert!(status.success(), "{log}");
    trace_lines(&log)
}

unix_only!("Unix only: the README's commands run through sh, and one session freezes the server with SIGSTOP, which Windows does not have": the_sample_sessions_are_what_the_binaries_print);

/// The README's commands run through `sh`, and two of its sessions are `nc`'s and Python's. Unix only: one
/// session freezes the server with SIGSTOP, which Windows does not have.
#[cfg(unix)]
#[test]
#[cfg_attr(
    not(all(has_sh, has_nc, has_python3)),
    ignore = "needs sh, nc and python3, which build.rs did not all find for this target"
)]
fn the_sample_sessions_are_what_the_binaries_print() {
    readme_session();
    let chapter = "docs/12-watching.md";
    check_session(chapter, "watch-typing", || typing(Mode::Reactor));
    check_session(chapter, "watch-burst", pipelined_burst);
    check_session(chapter, "watch-slow-reader", slow_reader);
    check_session(chapter, "watch-half-close", half_close);
    check_session(chapter, "watch-sigterm", sigterm_in_flight);
    check_session(chapter, "watch-blocking", blocking_two_clients);
}

#[test]
fn normalising_keeps_the_story_and_drops_the_numbers() {
    let lines: Vec<String> = [
        "[2026-12-01T21:34:15.123Z TRACE socklab::server::reactor] turn 7 · 1 poll: slept 511 ms (timeout 3.0 s)",
        "turn 7 · 5 conn 0 (127.0.0.1:48566): read 12 B (asked 65536) → 12 B written",
        "turn 9 · 5 conn 0 (127.0.0.1:48566): read 7 B (asked 65536) → 7 B written",
        "turn 9 · 5 conn 0 (127.0.0.1:48566): read 7 B (asked 65536) → 7 B written",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(
        normalise(&lines),
        [
            "[... TRACE socklab::server::reactor] turn 1 · 1 poll: slept N ms (timeout N s)",
            "turn 1 · 5 conn 0 (127.0.0.1:PORT): read N B (asked N) → N B written",
            "turn 2 · 5 conn 0 (127.0.0.1:PORT): read N B (asked N) → N B written",
        ]
    );
    // Anything else is the story, and a change in it is a difference.
    let other = [lines[0].clone(), lines[1].replace("written", "buffered")];
    assert_ne!(story(&other), story(&lines[..2]));
    // Turns that say the same are shown once; the story does not change for it.
    let turns: Vec<String> = (1..=5)
        .map(|t| format!("turn {t} · 5 conn 0 (127.0.0.1:1): read {t} B (asked 9) → {t} B written"))
        .collect();
    assert_eq!(condense(&turns).len(), 2);
    assert_eq!(story(&condense(&turns)), story(&turns));
}
