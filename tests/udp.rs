//! UDP in every server mode: one reply datagram per datagram, boundaries kept, the largest datagram read whole,
//! no reply longer than its request, and errors from one peer costing nobody else anything.

#[macro_use]
mod common;

use common::*;
use std::net::UdpSocket;

use socklab::service::Service;

fn ask(client: &UdpSocket, server: std::net::SocketAddr, payload: &[u8]) -> Vec<u8> {
    client.send_to(payload, server).unwrap();
    let mut buf = vec![0; 65536];
    let (n, from) = client.recv_from(&mut buf).unwrap();
    assert_eq!(from, server);
    buf.truncate(n);
    buf
}

each_mode! {
    fn the_largest_ipv4_datagram_is_read_and_answered_whole(mode) {
        let server = start_mode(mode, config());
        let client = udp_client(server.addr);
        let payload: Vec<u8> = b"abcdefghij".iter().copied().cycle().take(65_507).collect();
        let reply = ask(&client, server.addr, &payload);
        assert_eq!(reply.len(), 65_507);
        assert!(reply
            .iter()
            .copied()
            .eq(b"ABCDEFGHIJ".iter().copied().cycle().take(65_507)));
        server.stop();
    }
}

each_mode! {
    fn a_zero_length_datagram_gets_a_zero_length_reply(mode) {
        let server = start_mode(mode, config());
        let client = udp_client(server.addr);
        assert_eq!(ask(&client, server.addr, b""), b"");
        let stats = server.stop().stats;
        assert_eq!((stats.datagrams_in, stats.datagrams_out), (1, 1));
    }
}

each_mode! {
    fn replies_never_grow_past_the_request(mode) {
        let server = start_mode(mode, config());
        let client = udp_client(server.addr);
        // Every character here would grow if uppercased: the reply keeps them, so it is exactly as long.
        let growers = "ΐΰɐɑɒﬗ";
        let reply = ask(&client, server.addr, growers.as_bytes());
        assert_eq!(reply, growers.as_bytes());
        let mixed = "straße ΐ café";
        let reply = ask(&client, server.addr, mixed.as_bytes());
        assert_eq!(String::from_utf8(reply).unwrap(), "STRASSE ΐ CAFÉ");
        // The same rule over the whole of a max-size datagram of two-byte letters that grow.
        let big: Vec<u8> = "ɐ".repeat(65_506 / 2).into_bytes();
        let reply = ask(&client, server.addr, &big);
        assert!(reply.len() <= big.len());
        server.stop();
    }
}

each_mode! {
    fn replies_go_to_each_sender_and_only_to_it(mode) {
        let server = start_mode(mode, config());
        let clients: Vec<UdpSocket> = (0..50).map(|_| udp_client(server.addr)).collect();
        for (i, c) in clients.iter().enumerate() {
            c.send_to(format!("datagram from client {i}").as_bytes(), server.addr)
                .unwrap();
        }
        for (i, c) in clients.iter().enumerate() {
            let mut buf = [0; 128];
            let (n, _) = c.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], format!("DATAGRAM FROM CLIENT {i}").as_bytes());
        }
        server.stop();
    }
}

each_mode! {
    fn a_vanished_sender_does_not_stop_the_server(mode) {
        let server = start_mode(mode, config());
        // Send, then close before the reply: the reply hits a closed port and the kernel answers it with an
        // ICMP port-unreachable, which some systems report as an error on the server's socket.
        for _ in 0..20 {
            let gone = udp_client(server.addr);
            gone.send_to(b"nobody home", server.addr).unwrap();
        }
        let client = udp_client(server.addr);
        for i in 0..20 {
            let reply = ask(&client, server.addr, format!("still here {i}").as_bytes());
            assert_eq!(reply, format!("STILL HERE {i}").as_bytes());
        }
        let mut tcp = connect(server.addr);
        assert_eq!(exchange(&mut tcp, b"tcp too"), b"TCP TOO");
        drop(tcp);
        server.stop();
    }
}

each_mode! {
    fn invalid_bytes_in_a_datagram_pass_through(mode) {
        let server = start_mode(mode, config());
        let client = udp_client(server.addr);
        let payload = b"a\xffb\0\xe4\xb8";
        let mut expected = Vec::new();
        Service::Upper.datagram(payload, &mut expected);
        assert_eq!(expected, b"A\xffB\0\xe4\xb8");
        assert_eq!(ask(&client, server.addr, payload), expected);
        server.stop();
    }
}
