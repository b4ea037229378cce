//! Faults an independent red team found, each made deterministic and run in every mode where its
//! mechanism exists (`docs/faults.md` lists them with what the server does now): urgent data, flag values
//! that used to panic, shutdown under load, connection caps, and timer memory under churn.

#[macro_use]
mod common;

use common::*;
use std::io::{Read, Write};
use std::time::Duration;

/// Sends one byte as TCP urgent data (`MSG_OOB`).
#[cfg(unix)]
fn send_urgent(stream: &std::net::TcpStream, byte: u8) {
    use std::os::fd::AsRawFd;
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

// Unix only: it freezes the server with SIGSTOP, which Windows does not have.
#[cfg(unix)]
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

unix_only!("Unix only: it freezes the server with SIGSTOP, which Windows does not have": urgent_data_is_answered_like_any_byte_without_the_client_sending_more);

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

#[cfg(unix)] // For the cap tests, which are Unix only.
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
        while got.len()
            < want
                .len()
                .max(socklab::service::Service::Upper.refusal().len())
        {
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
        } else if got.starts_with(socklab::service::Service::Upper.refusal()) {
            refused += 1;
        } else {
            silent += 1;
        }
    }
    (served, refused, silent)
}

#[cfg(unix)] // For the cap tests, which are Unix only.
/// The cap the server's start line announces (`at most N connections` or `threads`).
fn announced_cap(server: &mut Binary) -> usize {
    use std::io::BufRead;
    let stderr = server.child.stderr.take().unwrap();
    let mut lines = std::io::BufReader::new(stderr).lines();
    // Every mode logs one `serving …` line as it starts; the modes with a cap name it there.
    let line = lines
        .find_map(|l| l.ok().filter(|l| l.contains("serving ")))
        .expect("a start line");
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let after = line
        .split("at most ")
        .nth(1)
        .unwrap_or_else(|| panic!("no cap announced: {line}"));
    after.split_whitespace().next().unwrap().parse().unwrap()
}

// Unix only: it sets the server's open-file limit, which Windows does not have.
#[cfg(unix)]
each_mode! {
    /// With 200 descriptors the reactor and busy-poll afford 168 connections (a 32-descriptor reserve) and
    /// threads 84 (two descriptors and a thread each). Forty clients past the cap are each told why.
    not_blocking("the blocking server has no cap: it serves one client at a time, and the others wait in the backlog")
    fn past_the_cap_every_client_is_told_why_and_none_is_left_unanswered(mode) {
        let mut server = spawn_mode_with_fd_limit(mode, &[], 200);
        let cap = announced_cap(&mut server);
        let expected = if mode == socklab::server::Mode::Threads { 84 } else { 168 };
        assert_eq!(cap, expected, "{mode}");
        let (served, refused, silent) = served_refused_silent(server.addr, cap + 40);
        assert_eq!((served, refused, silent), (cap, 40, 0), "{mode}: served, refused, unanswered");
    }
}

unix_only!("Unix only: it sets the server's open-file limit, which Windows does not have": past_the_cap_every_client_is_told_why_and_none_is_left_unanswered, a_max_connections_past_the_limit_is_lowered_with_one_line);

/// As Redis does with `maxclients`: a cap past what the limits allow is lowered, with one line saying so.
/// Unix only: it sets the server's open-file limit, which Windows does not have.
#[cfg(unix)]
#[test]
fn a_max_connections_past_the_limit_is_lowered_with_one_line() {
    let mut server = spawn_mode_with_fd_limit(
        socklab::server::Mode::Reactor,
        &["--max-connections", "1000000"],
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
        lowered[0].contains("1000000 is more than the open-file limit (1000")
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
    /// 0.2 s for the blocking modes, a tick and the grace; the assertion allows 2 s, for a machine busy with
    /// this file's 500-client tests and for Wine's process teardown: a server that waited on the stuck
    /// client would never exit).
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
        assert!(took < Duration::from_secs(3), "{mode}: exited {took:?} after the signal, against a 1 s limit");
        assert!(log.contains("1 connection cut at the shutdown deadline"), "{mode}: {log}");
        drop(stuck);
    }
}

/// `clients` clients each keep up to `in_flight` bytes sent to the server (`upper` or `echo`: lowercase
/// letters either way) and unanswered for `load`, reading as they go, then wait for the rest; every byte is
/// checked. Returns, for each client, the longest it went
/// without a reply byte while it was owed some, sorted.
fn longest_waits_for_an_owed_byte(
    server: &Binary,
    mode: socklab::server::Mode,
    upper: bool,
    clients: usize,
    in_flight: u64,
    load: Duration,
) -> Vec<Duration> {
    const CHUNK: usize = 64 * 1024;
    let pattern: Vec<u8> = (0..2 * CHUNK).map(|i| b'a' + (i % 23) as u8).collect();
    let expected = if upper {
        pattern.to_ascii_uppercase()
    } else {
        pattern.clone()
    };
    let period = 23 * 1024; // a multiple of 23 that is at most CHUNK: offsets wrap there
    let mut streams: Vec<std::net::TcpStream> = (0..clients)
        .map(|_| {
            let c = connect(server.addr);
            c.set_nonblocking(true).unwrap();
            c
        })
        .collect();
    let mut sent = vec![0u64; clients];
    let mut received = vec![0u64; clients];
    let started = std::time::Instant::now();
    let mut last_byte = vec![started; clients];
    let mut longest = vec![Duration::ZERO; clients];
    let mut buf = vec![0u8; CHUNK];
    loop {
        let now = std::time::Instant::now();
        let loading = now - started < load;
        if !loading && sent == received {
            break;
        }
        assert!(
            now - started < Duration::from_secs(60),
            "{mode}: replies still owed after 60 s"
        );
        let mut moved = false;
        for (i, c) in streams.iter_mut().enumerate() {
            if loading && sent[i] - received[i] < in_flight {
                let from = (sent[i] % period as u64) as usize;
                let len = CHUNK.min((in_flight - (sent[i] - received[i])) as usize);
                match c.write(&pattern[from..from + len]) {
                    Ok(n) => {
                        sent[i] += n as u64;
                        moved = true;
                    }
                    Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("{mode}: client {i}: write: {e}"),
                }
            }
            // One read each a pass, so this loop is fair itself.
            match c.read(&mut buf) {
                Ok(0) => panic!("{mode}: client {i}: closed by the server"),
                Ok(n) => {
                    let from = (received[i] % period as u64) as usize;
                    assert!(
                        buf[..n] == expected[from..from + n],
                        "{mode}: client {i}: wrong reply"
                    );
                    received[i] += n as u64;
                    last_byte[i] = now;
                    moved = true;
                }
                Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if sent[i] > received[i] {
                        longest[i] = longest[i].max(now - last_byte[i]);
                    }
                }
                Err(e) => panic!("{mode}: client {i}: read: {e}"),
            }
            if sent[i] == received[i] {
                last_byte[i] = now;
            }
        }
        if !moved {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    longest.sort();
    let total: u64 = received.iter().sum();
    eprintln!(
        "{mode}: {total} B echoed to {clients} clients; the longest wait for a reply byte while owed: \
         median {:?}, p90 {:?}, worst {:?}",
        longest[clients / 2],
        longest[clients * 9 / 10],
        longest[clients - 1]
    );
    longest
}

each_mode! {
    /// More connections with bytes waiting than one turn's read budget reaches (1 MiB in 4 KiB shares is
    /// 256): each must still get its turn. 600 clients keep up to 256 KiB in flight to `echo` for 3 s,
    /// reading as they go, and none may wait long for a reply byte while it is owed some. Before, the reactor
    /// put the connections its turn had served back on the revisit list ahead of those it had not reached,
    /// so the same few hundred were served turn after turn and the rest received nothing until the load
    /// stopped: waits of the whole run (docs/faults.md).
    #[cfg_attr(wine, ignore = "a fairness bound in time under a heavy load (600 clients, 256 KiB each in \
        flight): Wine's sockets are many times slower than Windows', and it moved 118 MB in the 3 s that \
        Linux moves several GB in; its waits say nothing about Windows")]
    concurrent fn a_mass_of_readers_is_served_in_turn_not_the_same_few_first(mode) {
        let server = spawn_mode(mode, &["--service", "echo"]);
        let waits = longest_waits_for_an_owed_byte(&server, mode, false, 600, 256 * 1024, Duration::from_secs(3));
        let starved = waits.iter().filter(|w| **w >= Duration::from_millis(1500)).count();
        assert_eq!(
            starved, 0,
            "{mode}: {starved} of 600 clients waited 1.5 s or more for a reply byte they were owed (the worst \
             {:?}) during a 3 s load",
            waits.last().unwrap()
        );
    }
}

/// A client that writes and never reads, on a socket with the smallest receive buffer, so its replies pile up
/// in the server rather than in the kernel. Accepted and served once first, so the server knows it.
fn accepted_non_reader(addr: std::net::SocketAddr) -> std::net::TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut stream: std::net::TcpStream = socket.into();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.write_all(b"a").unwrap();
    assert_eq!(read_n(&mut stream, 1), b"A");
    stream.set_nonblocking(true).unwrap();
    stream
}

/// Six clients that never read fill a 64 KiB `--max-unsent` in one turn, with `ΐ`, whose capital is three
/// times its size, so their replies reach the account's bounds; then a client sends `reading\n` and is not
/// answered within 300 ms (checked: it waits for the budget). Returns the six and the reading client.
// Unix only: it freezes the server with SIGSTOP, which Windows does not have.
#[cfg(unix)]
fn fill_the_budget_then_ask(
    server: &Binary,
    mode: socklab::server::Mode,
) -> (Vec<std::net::TcpStream>, std::net::TcpStream) {
    // uring reads a connection no further while a reply of its is in the kernel's hands, so a client that
    // never reads holds one small read's reply there: it takes more of them to fill the budget.
    let count = if mode == socklab::server::Mode::Uring {
        30
    } else {
        6
    };
    let mut hogs: Vec<std::net::TcpStream> = (0..count)
        .map(|_| accepted_non_reader(server.addr))
        .collect();
    let grows = "ΐ".repeat(64 * 1024);
    // Stopped, so every hog's bytes wait at once and the server takes them in one turn: their write
    // timeouts expire together.
    server.signal(libc::SIGSTOP);
    for hog in &mut hogs {
        let _ = hog.write(grows.as_bytes());
    }
    server.signal(libc::SIGCONT);
    // A reading client is asked in, until one is not served: then the hogs' replies fill the budget. While
    // one is served, another hog joins. (The other modes are full at the first ask. uring may not be: its
    // hogs' receives were armed, with their lengths, while the budget was empty, so each first reply
    // mostly went into the kernel's buffers, and the next reads stop at the soft limit, leaving the reserve
    // to a client that holds nothing, as it is meant to. A fresh hog's first read is one small read taken
    // out of the reserve, whose reply the kernel does not take whole.) Bounded: 5 s, before the write
    // timeout (3 s after the first hogs stalled) frees anything.
    let started = std::time::Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let mut reader = connect(server.addr);
        reader.write_all(b"reading\n").unwrap();
        reader
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 8];
        if reader.read(&mut buf).is_err() {
            return (hogs, reader);
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{mode}: a reading client was still served at once after 5 s: the hogs did not fill the budget"
        );
        let mut hog = accepted_non_reader(server.addr);
        let _ = hog.write(grows.as_bytes());
        hogs.push(hog);
    }
}

// Unix only: the budget is filled while the server is stopped (SIGSTOP).
#[cfg(unix)]
each_mode! {
    /// Six clients that never read fill `--max-unsent` (64 KiB) in one turn, with `ΐ`, whose capital is three
    /// times its size, so their replies reach the account's bounds; a reading client that comes next cannot
    /// be read. The write timeout cuts all six in one turn: the reading client must be served then. Before,
    /// the reactor looked at the clients waiting for the budget only after events and revisits, before its
    /// timers ran; timers that freed the budget were followed by a poll with nothing to wake it, so the
    /// reading client waited for an unrelated event (or its own idle timeout, five minutes).
    concurrent fn a_client_starved_by_the_budget_is_served_once_a_timeout_frees_it(mode) {
        let server = spawn_mode(
            mode,
            &["--max-unsent", "65536", "--send-buffer", "4096", "--write-timeout", "3"],
        );
        let (hogs, mut reader) = fill_the_budget_then_ask(&server, mode);
        let mut buf = [0u8; 8];
        let waited = std::time::Instant::now();
        reader.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let got = reader.read_exact(&mut buf);
        assert!(
            got.is_ok(),
            "{mode}: the reading client was not served {:?} after it wrote, the write timeout being 3 s",
            waited.elapsed() + Duration::from_millis(300)
        );
        assert_eq!(&buf, b"READING\n");
        eprintln!("{mode}: the reading client was answered {:?} after it wrote", waited.elapsed() + Duration::from_millis(300));
        drop(hogs);
    }
}

// Unix only: the budget is filled while the server is stopped (SIGSTOP).
#[cfg(unix)]
each_mode! {
    /// The same reading client, with `--idle-timeout 1` and `--write-timeout 3`: while the budget keeps it
    /// unread it is not idle (its request waits in the kernel), so it is still there, and answered, when the
    /// write timeout frees the budget. Before, its idle window ended with nothing read and the server reset it
    /// as idle, blaming the client for the server's own wait.
    concurrent fn a_client_the_budget_keeps_unread_is_not_closed_as_idle(mode) {
        let server = spawn_mode(
            mode,
            &["--max-unsent", "65536", "--send-buffer", "4096", "--write-timeout", "3", "--idle-timeout", "1"],
        );
        let (hogs, mut reader) = fill_the_budget_then_ask(&server, mode);
        reader.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 8];
        match reader.read_exact(&mut buf) {
            Ok(()) => assert_eq!(&buf, b"READING\n"),
            Err(e) => panic!("{mode}: the reading client was closed while the budget kept it unread: {e}"),
        }
        drop(hogs);
    }
}

unix_only!("Unix only: the budget is filled while the server is stopped (SIGSTOP), which Windows does not have": a_client_starved_by_the_budget_is_served_once_a_timeout_frees_it, a_client_the_budget_keeps_unread_is_not_closed_as_idle);

each_mode! {
    /// `--min-rate` over a window shorter than a second, or not a whole number of seconds: a client
    /// sending 20 B/s against `--min-rate 1000` over 0.5 s windows is closed at the end of its first window.
    /// Before, the bytes a window asked for were the rate times the window's whole seconds (0 here), at
    /// least one: one byte per window kept any trickle connected for good.
    fn a_trickle_under_the_minimum_rate_is_closed_in_windows_under_a_second(mode) {
        let server = start_mode(mode, socklab::server::config::Config {
            idle_timeout: Some(Duration::from_millis(500)),
            min_rate: 1000,
            ..config()
        });
        let mut trickler = connect(server.addr);
        trickler.set_nodelay(true).unwrap();
        trickler.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let started = std::time::Instant::now();
        let mut closed = false;
        while started.elapsed() < Duration::from_secs(8) {
            if trickler.write_all(b"x").is_err() {
                closed = true;
                break;
            }
            let mut buf = [0; 1];
            match trickler.read(&mut buf) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    closed = true;
                    break;
                }
                _ => {}
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let held = started.elapsed();
        drop(trickler);
        let stats = server.stop().stats;
        assert!(closed, "{mode}: a 20 B/s trickle held its connection for {held:?} against --min-rate 1000");
        // Its first window ends at 0.5 s; the bound leaves room for a machine busy with this file's
        // 500-client tests, and still fails the old rounding, which never closed the trickle at all.
        assert!(held < Duration::from_secs(3), "{mode}: closed only after {held:?}");
        assert_eq!(stats.timed_out, 1, "{mode}");
    }
}

/// The most unsent reply bytes all connections held at once, from the `stopped:` summary.
fn peak_unsent(log: &str) -> usize {
    log.split("(all connections ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no peak in the summary:\n{log}"))
}

each_mode! {
    /// 200 clients connect and are served once, so each is idle with nothing unsent and nothing counted;
    /// then each sends 16 KiB of `ΐ` (48 KiB of replies) and never reads. `--max-unsent 1M` must bound what
    /// the server then holds for all of them, 9.4 MiB if each were answered whole. Before, a blocking
    /// thread asked its core for room before it blocked in `read`, and read on that answer whenever the
    /// bytes came, and then wrote the reply from its own buffer, uncounted, in a `send` that could wait a
    /// tick: every thread took a whole 16 KiB on an empty account, and the threads mode held 6.5 to 7 MiB
    /// against the 1 MiB budget (1,000 clients: 34.5 MiB against 4 MiB, resident memory up 110 MB).
    concurrent fn clients_idle_then_all_writing_at_once_stay_within_the_budget(mode) {
        let budget = 1024 * 1024;
        let server = spawn_mode(mode, &["--max-unsent", &budget.to_string(), "--send-buffer", "4096"]);
        let mut hogs: Vec<std::net::TcpStream> = (0..200).map(|_| accepted_non_reader(server.addr)).collect();
        let grows = "ΐ".repeat(8 * 1024);
        for hog in &mut hogs {
            let _ = hog.write(grows.as_bytes());
        }
        std::thread::sleep(Duration::from_secs(1));
        drop(hogs);
        // The server must see the hogs' resets before it is stopped: a thread still holding a read when the
        // shutdown begins hands it over whatever the budget (what was read is owed its replies), and that
        // is not what this measures. Wine delivers the resets late: 200 threads still held theirs there.
        std::thread::sleep(Duration::from_secs(if under_wine() { 3 } else { 1 }));
        server.signal(libc::SIGTERM);
        let (status, log) = server.wait();
        assert!(status.success(), "{mode}: {log}");
        let peak = peak_unsent(&log);
        eprintln!("{mode}: unsent replies of all connections peaked at {peak} B against a {budget} B budget");
        // The reactor and busy-poll are one thread: the account is exact. A thread claims its read's
        // replies on the account the moment after it asked for room (`Account::claim`), so only threads
        // asking in that same instant can each answer a read on the same figure: one read's replies (16 KiB
        // of `ΐ`, 48 KiB) is the slack allowed, and the peak measured is the budget to the byte, here and
        // under Wine. (Before the claim: up to 1.9 times the budget here.) uring's receives wait in the kernel with their length
        // fixed when they were armed, so bytes that come to all of them at once are each read and answered:
        // an idle connection's receive is one small read (4 KiB, 12 KiB of these replies), so the most is
        // the budget and that much per connection (measured 2.7 to 3.1 times the budget here; 8 times,
        // before idle receives were made small).
        let bound = match mode {
            socklab::server::Mode::Threads => budget + 3 * 16 * 1024,
            socklab::server::Mode::Uring => budget + 200 * 3 * 4096,
            _ => budget,
        };
        assert!(
            peak <= bound,
            "{mode}: the unsent replies of all connections peaked at {peak} B against a {budget} B budget"
        );
    }
}

/// Red team finding, not fixed (docs/faults.md): in `--mode threads` a thread that finds the reply budget
/// spent sleeps a tick and asks again, while threads whose replies just drained find the room first; with
/// 300 clients that all read, against the smallest `--max-unsent`, some wait seconds for a byte they are owed
/// (2.3 to 3.8 s in a 3 s load) while the others are served. The reactor (`tests/limits.rs`,
/// `clients_taking_turns_for_the_budget_each_get_theirs`) and busy-poll stay under 0.2 s.
#[test]
#[ignore = "red team finding, not fixed: threads waiting for --max-unsent are not served in turn"]
fn threads_waiting_for_the_budget_take_turns() {
    let mode = socklab::server::Mode::Threads;
    let server = spawn_mode(mode, &["--max-unsent", "65536", "--send-buffer", "4096"]);
    let waits =
        longest_waits_for_an_owed_byte(&server, mode, true, 300, 32 * 1024, Duration::from_secs(3));
    let worst = *waits.last().unwrap();
    assert!(
        worst < Duration::from_millis(1500),
        "{mode}: a client waited {worst:?} for a byte it was owed"
    );
}

each_mode! {
    /// A request that gets `400` (and the close), then one byte every 50 ms: the server has sent FIN and
    /// lingers, reading and dropping, for at most 2 s (`LINGER`), then lets go, in every mode; the blocking
    /// mode then serves the next client. Before issue 22, blocking and threads kept such a connection past
    /// 15 s, and in blocking mode no one else was served meanwhile.
    fn a_trickle_after_a_400_is_let_go_when_the_linger_ends(mode) {
        let server = start_mode(mode, socklab::server::config::Config {
            service: socklab::service::Service::Http,
            ..config()
        });
        let mut client = connect(server.addr);
        client.write_all(b"BAD\r\n\r\n").unwrap();
        let reply = read_to_end(&mut client);
        assert!(reply.starts_with(b"HTTP/1.1 400 Bad Request\r\n"), "{mode}: {:?}", String::from_utf8_lossy(&reply));
        let fin = std::time::Instant::now();
        while client.write_all(b"y").is_ok() {
            assert!(fin.elapsed() < Duration::from_secs(4), "{mode}: still lingering {:?} after its FIN", fin.elapsed());
            std::thread::sleep(Duration::from_millis(50));
        }
        let held = fin.elapsed();
        assert!(held >= Duration::from_millis(1900), "{mode}: let go after {held:?}, before the linger's 2 s");
        let mut next = connect(server.addr);
        next.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").unwrap();
        assert!(read_to_end(&mut next).starts_with(b"HTTP/1.1 200 OK\r\n"), "{mode}");
        drop(next);
        server.stop();
    }
}
