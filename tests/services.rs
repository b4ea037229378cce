//! Every service in every server mode, through real sockets, from the service's own examples
//! (`Tooling::stream_example`, `Tooling::datagram_example`): a service is tested in every mode by being
//! listed in `services!`, with no test naming it. Each example's request is written in random pieces, the
//! client half-closes (unless the request itself asks the server to close), and the whole reply, then a
//! clean end of stream, must come back.

#[macro_use]
mod common;

use common::*;
use socklab::server::config::Config;
use socklab::service::{Example, Rng, Service, ServiceOptions};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::thread;

/// What a connected UDP socket says after a datagram to a port with no UDP socket: "port unreachable", as an
/// error (Linux: refused; Windows: reset). Under Wine a receive already waiting when the ICMP error comes is
/// never told of it and waits out its timeout, while the next receive reports it: there the datagram is sent
/// again, after a short timeout, up to three times.
fn unreachable(client: &std::net::UdpSocket) -> std::io::Error {
    let tries = if under_wine() { 3 } else { 1 };
    if under_wine() {
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(1)))
            .unwrap();
    }
    let mut buf = [0u8; 64];
    for _ in 0..tries {
        client.send(b"anyone?").unwrap();
        match client.recv(&mut buf) {
            Ok(n) => panic!("{n} bytes came back from a port with no UDP socket"),
            Err(e) if under_wine() && socklab::net::timed_out(&e) => continue,
            Err(e) => return e,
        }
    }
    panic!("no \"port unreachable\" after {tries} datagrams");
}

/// Writes `example.request` in pieces cut where `rng` says, half-closes, and returns all that came back.
fn converse(addr: SocketAddr, example: &Example, rng: &mut Rng) -> Vec<u8> {
    let mut client = connect(addr);
    client.set_nodelay(true).unwrap();
    let mut writer = client.try_clone().unwrap();
    let request = example.request.clone();
    let mut cuts: Vec<usize> = (0..rng.below(6))
        .map(|_| rng.below(request.len() + 1))
        .collect();
    cuts.sort_unstable();
    // From another thread, so a reply the client has not read yet cannot block the writes.
    let sender = thread::spawn(move || {
        let mut from = 0;
        for cut in cuts.into_iter().chain([request.len()]) {
            // A server that closes early (its `exit`) may reset the rest: that is not this test's business.
            if writer.write_all(&request[from..cut]).is_err() {
                return;
            }
            from = cut;
        }
        let _ = writer.shutdown(Shutdown::Write);
    });
    let mut reply = Vec::new();
    client
        .read_to_end(&mut reply)
        .expect("the reply, then a clean end of stream");
    sender.join().unwrap();
    reply
}

fn config_for(service: Service) -> Config {
    Config {
        service,
        ..config()
    }
}

each_mode! {
    fn every_service_answers_its_examples_under_random_splits(mode) {
        for &service in Service::ALL {
            let server = start_mode(mode, config_for(service));
            let options = ServiceOptions::default();
            // Clients one after another, so the blocking server can serve them too.
            for seed in 0..25u64 {
                let mut rng = Rng::new(seed);
                let example = service.stream_example(&options, &mut rng);
                let reply = converse(server.addr, &example, &mut rng);
                assert!(
                    service.same_reply(&example.reply, &reply),
                    "{mode} {service} seed {seed}: sent {:?}, expected {:?}, got {:?}",
                    String::from_utf8_lossy(&example.request),
                    String::from_utf8_lossy(&example.reply),
                    String::from_utf8_lossy(&reply)
                );
            }
            let stats = server.stop().stats;
            assert_eq!(stats.accepted, 25, "{mode} {service}");
        }
    }
}

each_mode! {
    concurrent fn every_service_serves_many_clients_at_once(mode) {
        for &service in Service::ALL {
            let server = start_mode(mode, config_for(service));
            let addr = server.addr;
            // One client connects first and stays, silent, while forty others are served: at once, or (one
            // client at a time) never. Without it, forty clients that each half-close could be served one
            // after another.
            let silent = connect(addr);
            let clients: Vec<_> = (0..40u64)
                .map(|seed| {
                    thread::spawn(move || {
                        let mut rng = Rng::new(1000 + seed);
                        let example = service.stream_example(&ServiceOptions::default(), &mut rng);
                        (converse(addr, &example, &mut rng), example.reply)
                    })
                })
                .collect();
            for (i, client) in clients.into_iter().enumerate() {
                let (got, expected) = client.join().unwrap();
                assert!(service.same_reply(&expected, &got), "{mode} {service} client {i}");
            }
            drop(silent);
            server.stop();
        }
    }
}

each_mode! {
    fn every_service_answers_a_long_pipelined_stream_in_order(mode) {
        for &service in Service::ALL {
            let server = start_mode(mode, config_for(service));
            let options = ServiceOptions::default();
            let mut greeting = Vec::new();
            service.session().greeting(&mut greeting);
            // Many examples back to back on one connection: the greeting once, then every reply in order.
            let (mut request, mut expected) = (Vec::new(), greeting.clone());
            let mut rng = Rng::new(7);
            while request.len() < 2_000_000 {
                let example = service.stream_example(&options, &mut rng);
                if example.closes {
                    continue;
                }
                request.extend_from_slice(&example.request);
                expected.extend_from_slice(&example.reply[greeting.len()..]);
            }
            let whole = Example { request, reply: expected, closes: false };
            let reply = converse(server.addr, &whole, &mut rng);
            assert_eq!(reply.len(), whole.reply.len(), "{mode} {service}");
            assert!(service.same_reply(&whole.reply, &reply), "{mode} {service}: the pipelined replies differ");
            server.stop();
        }
    }
}

each_mode! {
    fn every_service_answers_its_datagrams_or_binds_no_udp(mode) {
        for &service in Service::ALL {
            let server = start_mode(mode, config_for(service));
            let client = udp_client(server.addr);
            let mut buf = vec![0; 65536];
            for seed in 0..20u64 {
                let example = service.datagram_example(&ServiceOptions::default(), &mut Rng::new(seed));
                let Some(example) = example else {
                    // TCP only: no UDP socket, so the kernel answers "port unreachable".
                    client.connect(server.addr).unwrap();
                    let err = unreachable(&client);
                    assert!(socklab::net::port_unreachable(&err), "{mode} {service}: {err}");
                    break;
                };
                client.send_to(&example.request, server.addr).unwrap();
                let (n, from) = client.recv_from(&mut buf).unwrap();
                assert_eq!(from, server.addr);
                assert_eq!(&buf[..n], &example.reply[..], "{mode} {service} seed {seed}");
            }
            server.stop();
        }
    }
}

each_mode! {
    /// The high-water mark holds whatever a client sends, for every service in every mode: the input whose
    /// reply grows the most of all the adversarial inputs the conformance check knows
    /// (`Service::worst_input`), sent again and again by a client that never reads, with the kernel's
    /// buffers made small so the replies pile up in the server. The most any connection held unsent stays
    /// within `--high-water`: the declared bounds are what the server reads by, so a bound declared too
    /// small shows here as a peak past the mark.
    fn the_high_water_mark_holds_against_each_services_worst_input(mode) {
        let high_water = config().high_water;
        for &service in Service::ALL {
            let server = start_mode(
                mode,
                Config {
                    service,
                    high_water,
                    send_buffer: Some(4096),
                    shutdown_timeout: std::time::Duration::from_millis(500),
                    ..config()
                },
            );
            let worst = service.worst_input(&ServiceOptions::default());
            let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            socket.set_recv_buffer_size(4096).unwrap();
            socket.connect(&server.addr.into()).unwrap();
            let mut client: std::net::TcpStream = socket.into();
            client.set_write_timeout(Some(std::time::Duration::from_millis(500))).unwrap();
            let mut sent = 0;
            // Until the server stops reading (a write waits past its timeout), the connection closes, or
            // 4 MiB have gone: bounded either way.
            while sent < 4 << 20 && client.write_all(&worst).is_ok() {
                sent += worst.len();
            }
            drop(client);
            let stats = server.stop().stats;
            eprintln!("{mode} {service}: sent {sent}, peak {}", stats.peak_pending);
            assert!(
                stats.peak_pending <= high_water,
                "{mode}, {service}: a connection held {} bytes unsent, past --high-water {high_water}, after \
                 {sent} bytes of its worst input",
                stats.peak_pending
            );
        }
    }
}
