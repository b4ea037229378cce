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

/// How one client of a shutdown under load fared.
#[derive(Debug, Default)]
struct Fared {
    /// Bytes of reply received.
    received: u64,
    /// The replies were exactly the requests uppercased, in order.
    right: bool,
    /// The stream ended with a clean end of stream (FIN), not a reset or a timeout.
    clean_end: bool,
}

/// Many clients from one thread, each sending `chunk` over and over and reading what comes back, until the
/// server ends its stream; the server gets SIGTERM `after` the load starts. Each pass gives every
/// connection one bounded write and a bounded read, so no one connection holds the loop, and one thread
/// costs the machine little beside the server. Returns how each fared and when the signal went.
fn talk_until_the_server_ends(
    server: &Binary,
    clients: usize,
    chunk: &[u8],
    after: Duration,
) -> (Vec<Fared>, std::time::Instant) {
    const WRITE: usize = 16 * 1024;
    const READ: usize = 256 * 1024;
    let expected = chunk.to_ascii_uppercase();
    let mut streams: Vec<std::net::TcpStream> = (0..clients)
        .map(|_| {
            let stream = connect(server.addr);
            stream.set_nonblocking(true).unwrap();
            stream
        })
        .collect();
    let mut fared: Vec<Fared> = (0..clients)
        .map(|_| Fared {
            right: true,
            ..Fared::default()
        })
        .collect();
    let mut ended = vec![false; clients];
    let mut sent = vec![0usize; clients];
    let mut buf = vec![0u8; 64 * 1024];
    let start = std::time::Instant::now();
    let mut signalled = None;
    while ended.iter().any(|e| !e) {
        let left = ended.iter().filter(|e| !**e).count();
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{left} clients still talking after 60 s"
        );
        if signalled.is_none() && start.elapsed() >= after {
            signalled = Some(std::time::Instant::now());
            server.signal(libc::SIGTERM);
        }
        let mut moved = false;
        for (i, stream) in streams.iter_mut().enumerate() {
            if ended[i] {
                continue;
            }
            let mut written = 0;
            while written < WRITE {
                let from = sent[i] % chunk.len();
                let len = (chunk.len() - from).min(WRITE - written);
                match stream.write(&chunk[from..from + len]) {
                    Ok(n) => {
                        sent[i] += n;
                        written += n;
                    }
                    Err(_) => break,
                }
            }
            let mut read = 0;
            while read < READ {
                match stream.read(&mut buf) {
                    Ok(0) => {
                        fared[i].clean_end = true;
                        ended[i] = true;
                        break;
                    }
                    Ok(n) => {
                        let f = &mut fared[i];
                        let mut at = f.received as usize % expected.len();
                        let mut data = &buf[..n];
                        while !data.is_empty() {
                            let take = (expected.len() - at).min(data.len());
                            f.right &= data[..take] == expected[at..at + take];
                            data = &data[take..];
                            at = 0;
                        }
                        f.received += n as u64;
                        read += n;
                    }
                    Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        ended[i] = true;
                        break;
                    }
                }
            }
            if ended[i] {
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
            moved |= written > 0 || read > 0;
        }
        if !moved {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    (fared, signalled.expect("the signal was sent"))
}

/// The TCP bytes the server read and wrote, and whether it cut connections, from its `stopped:` summary.
fn summary_counts(log: &str) -> (u64, u64, bool) {
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
    (
        numbers[0],
        numbers[1],
        line.contains("cut at the shutdown deadline"),
    )
}

/// SIGTERM while every client keeps sending and reading. The rule: nothing more is read after the signal;
/// every byte read is answered; each served client receives exactly those replies and then a clean end of
/// stream; clients still in the backlog were never read from and are owed nothing. These clients read, so
/// nothing may be cut at the deadline, and the server exits well before it; the deadline's own margin is
/// tested with a client that never reads (`the_deadline_cuts_a_client_that_never_reads_and_exits_on_time`).
fn shutdown_under_load(mode: socklab::server::Mode, clients: usize, chunk: Vec<u8>) {
    let server = spawn_mode(mode, &["--shutdown-timeout", "10"]);
    let (fared, signalled) =
        talk_until_the_server_ends(&server, clients, &chunk, Duration::from_secs(1));
    let (status, log) = server.wait();
    let took = signalled.elapsed();
    assert!(status.success(), "{mode}: exit {status:?}\n{log}");
    assert!(
        took < Duration::from_secs(10),
        "{mode}: exited {took:?} after the signal, against a 10 s limit"
    );
    let (read, written, cut) = summary_counts(&log);
    let received: u64 = fared.iter().map(|f| f.received).sum();
    assert!(
        !cut,
        "{mode}: the deadline cut connections whose peers were reading\n{log}"
    );
    assert_eq!(
        read, written,
        "{mode}: upper owes a byte for each byte read"
    );
    assert_eq!(
        received, written,
        "{mode}: the clients received {received} of {written} bytes owed"
    );
    assert!(
        fared.iter().all(|f| f.right),
        "{mode}: a reply differed from its request"
    );
    let served: Vec<&Fared> = fared.iter().filter(|f| f.received > 0).collect();
    assert!(
        !served.is_empty(),
        "{mode}: nobody was served before the signal"
    );
    let reset = served.iter().filter(|f| !f.clean_end).count();
    assert_eq!(
        reset,
        0,
        "{mode}: {reset} of {} served clients were reset instead of ended",
        served.len()
    );
    if mode.serves_clients_at_once() {
        // Accepted, so each gets its end of stream, even one whose bytes the server had not read yet.
        let unended = fared.iter().filter(|f| !f.clean_end).count();
        assert_eq!(
            unended, 0,
            "{mode}: {unended} of {clients} clients had no clean end of stream"
        );
    }
}

each_mode! {
    fn sigterm_under_load_delivers_what_was_read_then_ends_every_stream_cleanly(mode) {
        let clients = if mode.serves_clients_at_once() { 500 } else { 4 };
        let line: Vec<u8> = b"the quick brown fox jumps over the lazy dog 0123456789 abcdefgh\n".to_vec();
        assert_eq!(line.len(), 64);
        shutdown_under_load(mode, clients, line);
    }
}

each_mode! {
    fn sigterm_under_bursts_delivers_what_was_read_then_ends_every_stream_cleanly(mode) {
        let clients = if mode.serves_clients_at_once() { 20 } else { 3 };
        let burst: Vec<u8> = b"abcdefghijklmnopqrstuvwxyz012345\n".iter().copied().cycle().take(8 << 20).collect();
        shutdown_under_load(mode, clients, burst);
    }
}

each_mode! {
    /// A peer that never reads keeps its receive window at zero, so its replies can never be delivered:
    /// the deadline cuts it, the summary counts it, and the server exits on time (the stated margin is
    /// 0.2 s for the blocking modes, a tick and the grace; the assertion allows 0.75 s for a busy machine).
    fn the_deadline_cuts_a_client_that_never_reads_and_exits_on_time(mode) {
        let server = spawn_mode(mode, &["--shutdown-timeout", "1"]);
        let mut stuck = connect(server.addr);
        stuck.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
        // Far more than the socket buffers and the high-water mark hold, so replies wait unsent.
        let _ = stuck.write_all(&vec![b'x'; 16 << 20]);
        let signalled = std::time::Instant::now();
        server.signal(libc::SIGTERM);
        let (status, log) = server.wait();
        let took = signalled.elapsed();
        assert!(status.success(), "{mode}: {log}");
        assert!(took >= Duration::from_millis(950), "{mode}: gave up after {took:?}, before the deadline");
        assert!(took < Duration::from_millis(1750), "{mode}: exited {took:?} after the signal, against a 1 s limit");
        assert!(log.contains("1 connection cut at the shutdown deadline"), "{mode}: {log}");
        drop(stuck);
    }
}
