//! Faults an independent red team found, each made deterministic and run in every mode where its
//! mechanism exists (`docs/faults.md` lists them with what the server does now): urgent data, flag values
//! that used to panic, shutdown under load, connection caps, and timer memory under churn.

#[macro_use]
mod common;

use common::*;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Sends one byte as TCP urgent data (`MSG_OOB`).
fn send_urgent(stream: &std::net::TcpStream, byte: u8) {
    // SAFETY: send(2) reads one byte from a live stack variable; the descriptor is the stream's own.
    let sent = unsafe {
        libc::send(
            stream.as_raw_fd(),
            (&byte as *const u8).cast(),
            1,
            libc::MSG_OOB,
        )
    };
    assert_eq!(sent, 1, "send MSG_OOB: {}", std::io::Error::last_os_error());
}

each_mode! {
    /// Linux stops a read at the urgent mark, so a short read there does not mean the receive queue is
    /// empty. The server is stopped while the bytes arrive, so its first read always meets the mark.
    fn urgent_data_is_answered_like_any_byte_without_the_client_sending_more(mode) {
        let server = spawn_mode(mode, &[]);
        let mut client = connect(server.addr);
        // First a normal exchange, so the connection is accepted and idle in the server's loop.
        client.write_all(b"a").unwrap();
        assert_eq!(read_n(&mut client, 1), b"A");
        server.signal(libc::SIGSTOP);
        client.write_all(b"x1 ").unwrap();
        send_urgent(&client, b'u');
        client.write_all(&b"x2 ".repeat(1000)).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        server.signal(libc::SIGCONT);
        // The urgent byte is ordinary data (SO_OOBINLINE, as RFC 6093 advises): answered in its place.
        let mut expected = b"X1 U".to_vec();
        expected.extend_from_slice(&b"X2 ".repeat(1000));
        client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut reply = vec![0; expected.len()];
        let mut got = 0;
        while got < reply.len() {
            match client.read(&mut reply[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(_) => break,
            }
        }
        assert_eq!(got, expected.len(), "{mode}: answered {got} of {} bytes", expected.len());
        assert_eq!(reply, expected);
    }
}

mod durations {
    use super::*;
    use proptest::prelude::*;
    use socklab::flags::{positive_seconds, seconds, MAX_SECONDS, MIN_SECONDS};

    fn in_range(d: Duration) -> bool {
        d.is_zero() || (MIN_SECONDS..=MAX_SECONDS).contains(&d.as_secs_f64())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn any_text_parses_into_the_range_or_is_refused(text in ".{0,40}") {
            if let Ok(d) = seconds(&text) {
                prop_assert!(in_range(d), "{text:?} gave {d:?}");
            }
            if let Ok(d) = positive_seconds(&text) {
                prop_assert!(!d.is_zero() && in_range(d), "{text:?} gave {d:?}");
            }
        }

        #[test]
        fn any_number_however_written_parses_into_the_range_or_is_refused(x in any::<f64>(), digits in 0usize..30) {
            for text in [format!("{x}"), format!("{x:e}"), format!("{x:.digits$}"), format!("{}", x as u128)] {
                if let Ok(d) = seconds(&text) {
                    prop_assert!(in_range(d), "{text:?} gave {d:?}");
                }
            }
        }
    }

    /// Each value the red team found panicking, for each binary: now exit 2 with a message naming the flag.
    #[test]
    fn the_binaries_refuse_absurd_durations_and_never_panic() {
        let server = env!("CARGO_BIN_EXE_socklab-server");
        let client = env!("CARGO_BIN_EXE_socklab-client");
        let stress = env!("CARGO_BIN_EXE_socklab-stress");
        let cases: &[(&str, &[&str])] = &[
            (server, &["--idle-timeout", "99999999999999999999"]),
            (server, &["--idle-timeout", "1e300"]),
            (server, &["--idle-timeout", "1e19"]),
            (server, &["--idle-timeout", "1e-9"]),
            (server, &["--write-timeout", "18446744073709551615"]),
            (server, &["--shutdown-timeout", "18446744073709551615"]),
            (server, &["--shutdown-timeout", "1e19"]),
            (client, &["--timeout", "1e300", "hi"]),
            (client, &["--timeout", "0", "hi"]),
            (stress, &["--duration", "1e19"]),
            (stress, &["--timeout", "1e300"]),
        ];
        for (binary, args) in cases {
            // A flag is checked before anything is bound or connected, so no port is needed.
            let (status, _, stderr) = run_binary(binary, args, None);
            assert_eq!(status.code(), Some(2), "{binary} {args:?}: {stderr}");
            assert!(
                stderr.contains(args[0]),
                "{binary} {args:?} does not name the flag: {stderr}"
            );
        }
    }
}

/// Connects `n` clients at once and has each send a line, then sorts them by what came back: the reply,
/// the refusal, or nothing. Every one is still open when the count is made, so the cap is really reached.
fn served_refused_silent(addr: std::net::SocketAddr, n: usize) -> (usize, usize, usize) {
    let mut clients: Vec<std::net::TcpStream> = (0..n).map(|_| connect(addr)).collect();
    let (mut served, mut refused, mut silent) = (0, 0, 0);
    for (i, client) in clients.iter_mut().enumerate() {
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let line = format!("client {i}\n");
        // A refused client may find its write reset: the refusal it was sent is still readable.
        let _ = client.write_all(line.as_bytes());
        let want = line.to_uppercase();
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while got.len() < want.len().max(socklab::server::limits::TOO_MANY.len()) {
            match client.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(k) => got.extend_from_slice(&buf[..k]),
            }
            if got == want.as_bytes() {
                break;
            }
        }
        if got == want.as_bytes() {
            served += 1;
        } else if got.starts_with(socklab::server::limits::TOO_MANY) {
            refused += 1;
        } else {
            silent += 1;
        }
    }
    (served, refused, silent)
}

/// The cap the server's start line announces (`at most N connections` or `threads`).
fn announced_cap(server: &mut Binary) -> usize {
    use std::io::BufRead;
    let stderr = server.child.stderr.take().unwrap();
    let mut lines = std::io::BufReader::new(stderr).lines();
    let line = lines
        .find_map(|l| l.ok().filter(|l| l.contains("at most ")))
        .expect("a start line with the cap");
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let after = line.split("at most ").nth(1).unwrap();
    after.split_whitespace().next().unwrap().parse().unwrap()
}

each_mode! {
    /// With 200 descriptors the reactor and busy-poll afford 168 connections (a 32-descriptor reserve) and
    /// threads 84 (two descriptors and a thread each). Forty clients past the cap are each told why.
    fn past_the_cap_every_client_is_told_why_and_none_is_left_unanswered(mode) {
        if mode == socklab::server::Mode::Blocking {
            eprintln!("skipped for blocking: it serves one client at a time by design and has no cap; the others wait in the backlog");
            return;
        }
        let mut server = spawn_mode_with_fd_limit(mode, &[], 200);
        let cap = announced_cap(&mut server);
        let expected = if mode == socklab::server::Mode::Threads { 84 } else { 168 };
        assert_eq!(cap, expected, "{mode}");
        let (served, refused, silent) = served_refused_silent(server.addr, cap + 40);
        assert_eq!((served, refused, silent), (cap, 40, 0), "{mode}: served, refused, unanswered");
    }
}

/// As Redis does with `maxclients`: a cap past what the limits allow is lowered, with one line saying so.
#[test]
fn a_max_connections_past_the_limit_is_lowered_with_one_line() {
    let mut server = spawn_mode_with_fd_limit(
        socklab::server::Mode::Reactor,
        &["--max-connections", "100000000"],
        1000,
    );
    let stderr = server.child.stderr.take().unwrap();
    let mut log = String::new();
    let mut reader = std::io::BufReader::new(stderr);
    use std::io::BufRead;
    while !log.contains("at most ") {
        assert!(
            reader.read_line(&mut log).unwrap() > 0,
            "no start line: {log}"
        );
    }
    let lowered: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("--max-connections"))
        .collect();
    assert_eq!(lowered.len(), 1, "{log}");
    assert!(
        lowered[0].contains("100000000 is more than the open-file limit (1000")
            && lowered[0].contains("serving at most 968 connections"),
        "{log}"
    );
    assert!(log.contains("at most 968 connections"), "{log}");
}

/// Eight rounds of holding and closing 2,000 connections, with the default five-minute idle timeout: every
/// closed connection leaves a timer entry that would not come due for five minutes. The heap must follow the
/// live connections (at most about 2,000 at a time here), not the 16,000 that came and went.
#[test]
fn the_timer_heap_follows_live_connections_not_churn() {
    let server = start(socklab::server::config::Config {
        idle_timeout: Some(Duration::from_secs(300)),
        ..config()
    });
    for _ in 0..8 {
        let mut clients: Vec<std::net::TcpStream> =
            (0..2000).map(|_| connect(server.addr)).collect();
        for client in &mut clients {
            client.write_all(b"x").unwrap();
        }
        for client in &mut clients {
            assert_eq!(read_n(client, 1), b"X");
        }
        drop(clients);
        // Let the server see the closes before the next round connects.
        std::thread::sleep(Duration::from_millis(300));
    }
    let stats = server.stop().stats;
    assert_eq!(stats.accepted, 16_000);
    assert!(
        stats.peak_timers <= 5_000,
        "the timer heap held {} entries for at most about 2,000 live connections",
        stats.peak_timers
    );
}
