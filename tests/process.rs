//! The built binary as a process: signals, the shutdown deadline, flags and errors a user sees, in every
//! `--mode`; and the reactor's promise of exactly one thread.

#[macro_use]
mod common;

use common::*;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::process::Command;
use std::time::{Duration, Instant};

use socklab::service::Service;

#[test]
fn the_server_runs_exactly_one_thread_under_load() {
    let server = spawn_binary(&[]);
    let mut clients: Vec<_> = (0..50).map(|_| connect(server.addr)).collect();
    let udp = udp_client(server.addr);
    for (i, c) in clients.iter_mut().enumerate() {
        c.write_all(&lines(100, i)).unwrap();
        udp.send_to(b"ping", server.addr).unwrap();
    }
    assert_eq!(
        thread_count(server.pid()),
        1,
        "the reactor serves everyone from one thread"
    );
    for (i, c) in clients.iter_mut().enumerate() {
        let expected = Service::Upper.reply_to_stream(&lines(100, i));
        assert_eq!(read_n(c, expected.len()), expected);
    }
    assert_eq!(thread_count(server.pid()), 1);
}

each_mode! {
    fn sigterm_delivers_every_reply_owed_for_what_was_read_then_exits_zero(mode) {
        let server = spawn_mode(mode, &[]);
        let mut client = connect(server.addr);
        // Much more than the socket buffers and the high-water mark hold: when the signal arrives the server
        // has read part of it and answered what it read; the rest waits unread in the kernel.
        let request = lines(60_000, 5);
        let mut writer = client.try_clone().unwrap();
        let to_send = request.clone();
        let sender = std::thread::spawn(move || {
            // The server stops reading at the signal, so this write may end with an error: it is not owed.
            let _ = writer.write_all(&to_send);
        });
        let expected = Service::Upper.reply_to_stream(&request);
        let mut reply = read_n(&mut client, 1000);
        server.signal(libc::SIGTERM);
        // Every owed reply, then a clean end of stream (FIN, not a reset).
        reply.extend(read_to_end(&mut client));
        sender.join().unwrap();
        let (status, log) = server.wait();
        assert!(status.success(), "exit status {status:?}; log:\n{log}");
        let (read, written) = tcp_bytes(&log);
        assert_eq!(written, reply.len() as u64, "the server wrote what the client received; log:\n{log}");
        assert_eq!(read, written, "upper owes one byte for every byte read (ASCII)");
        assert!(reply == expected[..reply.len()], "the replies differ from the request uppercased");
    }
}

each_mode! {
    fn sigint_with_no_clients_exits_zero_at_once(mode) {
        let server = spawn_mode(mode, &[]);
        let start = Instant::now();
        server.signal(libc::SIGINT);
        let (status, log) = server.wait();
        assert!(status.success(), "{log}");
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "an idle server has nothing to flush"
        );
        assert!(log.contains("stopped:"), "{log}");
    }
}

each_mode! {
    fn a_second_signal_exits_at_once_without_waiting_for_the_deadline(mode) {
        let server = spawn_mode(mode, &["--shutdown-timeout", "60"]);
        // A client that sends a lot and reads nothing: its replies can never flush.
        let mut client = connect(server.addr);
        client
            .set_write_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        let _ = client.write_all(&vec![b'x'; 8 << 20]);
        server.signal(libc::SIGTERM);
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            server.child_is_running(),
            "the first signal waits for the flush"
        );
        let start = Instant::now();
        server.signal(libc::SIGTERM);
        let (status, log) = server.wait();
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the second signal must not wait 60 s"
        );
        assert_eq!(status.code(), Some(130), "{log}");
        assert!(log.contains("again"), "{log}");
        drop(client);
    }
}

each_mode! {
    /// Also the promise that no thread (a blocking one included) keeps the process alive past the deadline:
    /// one client is silent (a thread blocked in `read`), one never reads (a thread blocked in `write_all`).
    fn shutdown_deadline_drops_a_client_that_never_reads(mode) {
        let server = spawn_mode(mode, &["--shutdown-timeout", "0.5"]);
        let mut client = connect(server.addr);
        let _silent = connect(server.addr);
        client
            .set_write_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        let _ = client.write_all(&vec![b'x'; 8 << 20]);
        let start = Instant::now();
        server.signal(libc::SIGTERM);
        let (status, log) = server.wait();
        assert!(status.success(), "{mode}: {log}");
        assert!(
            start.elapsed() < Duration::from_secs(4),
            "{mode}: took {:?} to stop with a 0.5 s deadline",
            start.elapsed()
        );
        assert!(log.contains("cut at the shutdown deadline"), "{mode}: {log}");
        let _ = client.shutdown(Shutdown::Both);
    }
}

each_mode! {
    fn new_connections_are_refused_once_shutdown_begins(mode) {
        let server = spawn_mode(mode, &["--shutdown-timeout", "30"]);
        let mut busy = connect(server.addr);
        busy.set_write_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        let _ = busy.write_all(&vec![b'x'; 8 << 20]);
        server.signal(libc::SIGTERM);
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            std::net::TcpStream::connect(server.addr).is_err(),
            "the listener must be closed"
        );
        drop(busy);
        let (status, _) = server.wait();
        assert!(status.success());
    }
}

#[test]
fn a_taken_port_is_a_clear_error_and_exit_2() {
    let first = spawn_binary(&[]);
    let out = Command::new(env!("CARGO_BIN_EXE_socklab-server"))
        .args(["--port", &first.addr.port().to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot bind tcp 127.0.0.1:"), "{stderr}");
    assert!(stderr.contains("already using this port"), "{stderr}");
}

#[test]
fn bad_flags_are_refused_with_a_reason() {
    for (args, needle) in [
        (
            &["--bind", "not-an-ip"][..],
            "--bind not-an-ip: cannot resolve it",
        ),
        (&["--service", "shout"][..], "possible values: upper, echo"),
        (
            &["--mode", "fast"][..],
            "possible values: reactor, blocking, threads, busy-poll",
        ),
        (
            &["--mode", "threads", "--max-connections", "0"][..],
            "--max-connections must be at least 1",
        ),
        (&["--high-water", "10"][..], "--high-water must be at least"),
        (
            &["--max-connections", "0"][..],
            "--max-connections must be at least 1",
        ),
        (&["--idle-timeout=-5"][..], "is not a number of seconds"),
        (&["--shutdown-timeout=-1"][..], "is not a number of seconds"),
        (
            &["--shutdown-timeout", "inf"][..],
            "is not a number of seconds",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_socklab-server"))
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[test]
fn help_explains_every_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_socklab-server"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--bind",
        "--port",
        "--service",
        "--high-water",
        "--read-budget",
        "--shutdown-timeout",
        "--mode",
        "--max-connections",
        "--verbose",
        "--quiet",
    ] {
        assert!(help.contains(flag), "--help does not mention {flag}");
    }
    assert!(help.contains("[default: 12000]"));
}

each_mode! {
    fn verbose_logs_each_connection_and_quiet_logs_nothing_routine(mode) {
        for (flag, expect_debug) in [("-v", true), ("-q", false)] {
            let server = spawn_mode(mode, &[flag]);
            let mut c = connect(server.addr);
            assert_eq!(exchange(&mut c, b"x"), b"X");
            drop(c);
            std::thread::sleep(Duration::from_millis(100));
            server.signal(libc::SIGTERM);
            let (_, log) = server.wait();
            assert_eq!(log.contains("connected as"), expect_debug, "{flag}: {log}");
            assert_eq!(log.contains("stopped:"), expect_debug, "{flag}: {log}");
        }
    }
}

each_mode! {
    fn the_readme_example_works_with_a_plain_socket(mode) {
        // printf 'hello world\n' | nc -q1 127.0.0.1 12000  →  HELLO WORLD
        let server = spawn_mode(mode, &[]);
        let mut c = connect(server.addr);
        c.write_all(b"hello world\n").unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut reply = String::new();
        c.read_to_string(&mut reply).unwrap();
        assert_eq!(reply, "HELLO WORLD\n");
    }
}

/// The TCP bytes the server read and wrote, from its `stopped:` summary line.
fn tcp_bytes(log: &str) -> (u64, u64) {
    let line = log
        .lines()
        .find(|l| l.contains("stopped:"))
        .unwrap_or_else(|| panic!("no summary in the log:\n{log}"));
    let after = line.split("tcp ").nth(1).expect("tcp counts");
    let numbers: Vec<u64> = after
        .split_whitespace()
        .filter_map(|w| w.trim_end_matches(',').parse().ok())
        .take(2)
        .collect();
    (numbers[0], numbers[1])
}

#[test]
fn bind_takes_a_name_and_says_what_it_bound() {
    let server = spawn_binary(&["--bind", "localhost"]);
    assert!(server.addr.ip().is_loopback(), "{}", server.listening);
    let mut client = connect(server.addr);
    assert_eq!(exchange(&mut client, b"named"), b"NAMED");
    drop(client);
    let (status, out, err) = run_binary(
        env!("CARGO_BIN_EXE_socklab-server"),
        &["--port", "0", "--bind", "no-such-host.invalid"],
        None,
    );
    assert_eq!(status.code(), Some(2), "{out}{err}");
    assert!(
        err.contains("--bind no-such-host.invalid: cannot resolve it"),
        "{err}"
    );
}

each_mode! {
    fn the_reactor_only_flags_are_warned_about_only_when_given(mode) {
        let quiet = spawn_mode(mode, &[]);
        quiet.signal(libc::SIGTERM);
        let (_, log) = quiet.wait();
        assert!(!log.contains("only apply") && !log.contains("only applies"), "{mode}: a warning nobody asked for:\n{log}");
        let given = spawn_mode(mode, &["--write-timeout", "5", "--min-rate", "2"]);
        given.signal(libc::SIGTERM);
        let (_, log) = given.wait();
        let warned = log.contains("--min-rate, --write-timeout only apply to the reactor");
        assert_eq!(warned, mode != socklab::server::Mode::Reactor, "{mode}:\n{log}");
    }
}
