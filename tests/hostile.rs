//! Hostile and broken peers: random bytes cut at random places and dropped at random moments, floods of
//! datagrams, peers that vanish. None of it may crash or wedge the server, or cost a well-behaved client.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use socklab::service::Service;

/// One server for every proptest case: a case that wedged it would fail every case after it.
fn shared_server() -> SocketAddr {
    static SERVER: OnceLock<SocketAddr> = OnceLock::new();
    *SERVER.get_or_init(|| {
        let server = start(config());
        let addr = server.addr;
        std::mem::forget(server); // lives as long as the test process
        addr
    })
}

/// What a case does with its connection once its bytes are sent.
#[derive(Debug, Clone)]
enum Ending {
    /// Half-close, read every reply, check it.
    ReadAll,
    /// Close without reading anything.
    Vanish,
    /// Reset (SO_LINGER 0) with replies in flight.
    Reset,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_bytes_random_splits_random_endings(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..2048), 1..12),
        ending in prop_oneof![3 => Just(Ending::ReadAll), 1 => Just(Ending::Vanish), 1 => Just(Ending::Reset)],
    ) {
        let addr = shared_server();
        let mut c = connect(addr);
        c.set_nodelay(true).unwrap();
        let mut writer = c.try_clone().unwrap();
        let sent: Vec<u8> = chunks.concat();
        let send = thread::spawn(move || {
            for chunk in &chunks {
                if writer.write_all(chunk).is_err() {
                    return;
                }
            }
        });
        match ending {
            Ending::ReadAll => {
                send.join().unwrap();
                c.shutdown(Shutdown::Write).unwrap();
                let reply = read_to_end(&mut c);
                prop_assert!(reply == Service::Upper.reply_to_stream(&sent), "reply differs from the stream uppercased");
            }
            Ending::Vanish => {
                send.join().unwrap();
                drop(c);
            }
            Ending::Reset => {
                socket2::SockRef::from(&c).set_linger(Some(Duration::ZERO)).unwrap();
                drop(c);
                let _ = send.join();
            }
        }
        // Whatever that case did, a well-behaved client is still served at once.
        let mut probe = connect(addr);
        prop_assert_eq!(exchange(&mut probe, b"probe\n"), b"PROBE\n".to_vec());
    }
}

#[test]
fn megabytes_without_a_newline_nul_and_lone_cr() {
    let server = start(config());
    let mut c = connect(server.addr);
    let mut writer = c.try_clone().unwrap();
    let mut request = vec![b'a'; 4 << 20];
    request.extend_from_slice(b"\0\r\0\rz");
    let expected = Service::Upper.reply_to_stream(&request);
    let send = thread::spawn(move || {
        writer.write_all(&request).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let reply = read_to_end(&mut c);
    send.join().unwrap();
    assert!(reply == expected);
    server.stop();
}

#[test]
fn a_datagram_flood_does_not_starve_tcp_clients() {
    let server = start(config());
    let addr = server.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let flooded = Arc::new(AtomicU64::new(0));
    let flooders: Vec<_> = (0..2)
        .map(|_| {
            let stop = Arc::clone(&stop);
            let flooded = Arc::clone(&flooded);
            thread::spawn(move || {
                let socket = udp_client(addr);
                let payload = [b'f'; 512];
                let mut sent = 0u64;
                let started = Instant::now();
                // Bounded: at most 10 s or until the TCP side is done.
                while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(10) {
                    let _ = socket.send_to(&payload, addr);
                    sent += 1;
                    flooded.fetch_add(1, Ordering::Relaxed);
                }
                sent
            })
        })
        .collect();
    // The flood must be under way before the TCP client starts: on a busy machine (the whole suite at once)
    // the 200 exchanges once ended before a flooding thread had sent anything, and tested nothing.
    eventually("the flood is under way", || {
        flooded.load(Ordering::Relaxed) >= 1000
    });
    let mut tcp = connect(addr);
    for i in 0..200 {
        let line = format!("under flood {i}\n");
        assert_eq!(
            exchange(&mut tcp, line.as_bytes()),
            line.to_uppercase().as_bytes()
        );
    }
    stop.store(true, Ordering::Relaxed);
    let sent: u64 = flooders.into_iter().map(|f| f.join().unwrap()).sum();
    drop(tcp);
    let stats = server.stop().stats;
    assert!(stats.datagrams_in > 0 && sent > 0);
    // Every datagram read got a reply or was counted as dropped; none vanished silently.
    assert_eq!(
        stats.datagrams_in,
        stats.datagrams_out + stats.datagrams_dropped
    );
}

#[test]
fn peers_that_connect_and_vanish_or_close_before_reading() {
    let server = start(config());
    for i in 0..100 {
        let mut c = connect(server.addr);
        match i % 3 {
            0 => {}                                     // connect and vanish
            1 => c.write_all(&lines(2000, i)).unwrap(), // close before reading the replies
            _ => {
                c.write_all(b"x").unwrap();
                socket2::SockRef::from(&c)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap(); // reset
            }
        }
    }
    let mut fine = connect(server.addr);
    assert_eq!(exchange(&mut fine, b"fine"), b"FINE");
    drop(fine);
    let stats = server.stop().stats;
    // A peer that reset its connection before the server accepted it is handed over by Linux (its first
    // read fails), while Windows' `accept` fails for it: the server counts it apart, never as an outage.
    assert_eq!(stats.accepted + stats.gone_before_accept, 101, "{stats:?}");
    assert_eq!(
        stats.closed, stats.accepted,
        "every vanished peer's connection was freed"
    );
}

#[test]
fn zero_length_and_maximal_datagrams_interleaved_with_tcp() {
    let server = start(config());
    let udp = udp_client(server.addr);
    let mut tcp = connect(server.addr);
    let big = vec![b'q'; 65_507];
    for _ in 0..5 {
        for payload in [&b""[..], &big[..]] {
            udp.send_to(payload, server.addr).unwrap();
            let mut buf = vec![0; 65_536];
            let (n, _) = udp.recv_from(&mut buf).unwrap();
            assert_eq!(n, payload.len());
            assert!(buf[..n].iter().all(|&b| b == b'Q'));
        }
        assert_eq!(exchange(&mut tcp, b"tcp"), b"TCP");
    }
    let mut rest = Vec::new();
    tcp.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let _ = tcp.read_to_end(&mut rest);
    assert!(rest.is_empty(), "no stray bytes");
    server.stop();
}
