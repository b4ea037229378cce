//! The tutorials' exchanges, against the built binary as a user runs it, in every `--mode`: one UDP datagram and its reply,
//! a TCP sentence sent without a newline, a TCP session of many messages, three datagrams and three replies.

#[macro_use]
mod common;

use common::*;
use std::io::{Read, Write};

each_mode! {
    fn udp_one_datagram_one_reply_from_the_server_address(mode) {
        let server = spawn_mode(mode, &[]);
        let client = udp_client(server.addr);
        client.send_to(b"hello udp", server.addr).unwrap();
        let mut buf = [0; 2048];
        let (n, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"HELLO UDP");
        assert_eq!(
            from, server.addr,
            "the reply comes from the port the client sent to"
        );
    }
}

each_mode! {
    fn tcp_sentence_without_newline_is_answered(mode) {
        // The tutorial's client: send, then wait on recv(1024) without closing or sending a newline.
        let server = spawn_mode(mode, &[]);
        let mut client = connect(server.addr);
        client.write_all(b"hello").unwrap();
        let mut buf = [0; 1024];
        let n = client.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"HELLO");
    }
}

each_mode! {
    fn tcp_session_of_many_messages(mode) {
        let server = spawn_mode(mode, &[]);
        let mut client = connect(server.addr);
        for i in 0..200 {
            let request = format!("message number {i}, straße café 你好\n");
            let reply = exchange(&mut client, request.as_bytes());
            assert_eq!(
                reply,
                format!("MESSAGE NUMBER {i}, STRASSE CAFÉ 你好\n").as_bytes()
            );
        }
    }
}

each_mode! {
    fn three_datagrams_three_separate_replies(mode) {
        let server = spawn_mode(mode, &[]);
        let client = udp_client(server.addr);
        for m in [&b"one"[..], b"two", b"three"] {
            client.send_to(m, server.addr).unwrap();
        }
        let mut buf = [0; 2048];
        let mut replies = Vec::new();
        for _ in 0..3 {
            let (n, _) = client.recv_from(&mut buf).unwrap();
            replies.push(buf[..n].to_vec());
        }
        // Boundaries are kept: three datagrams, never "ONETWOTHREE". Loopback keeps their order too.
        assert_eq!(
            replies,
            vec![b"ONE".to_vec(), b"TWO".to_vec(), b"THREE".to_vec()]
        );
    }
}

each_mode! {
    fn echo_service_returns_bytes_unchanged(mode) {
        let server = spawn_mode(mode, &["--service", "echo"]);
        let mut client = connect(server.addr);
        client.write_all(b"Hello, World\n").unwrap();
        assert_eq!(read_n(&mut client, 13), b"Hello, World\n");
        let udp = udp_client(server.addr);
        udp.send_to(b"Mixed Case", server.addr).unwrap();
        let mut buf = [0; 64];
        let (n, _) = udp.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"Mixed Case");
    }
}

each_mode! {
    #[cfg_attr(not(has_ipv6_loopback), ignore = "needs the IPv6 loopback, which build.rs could not bind for this target")]
    fn ipv6_loopback_serves_tcp_and_udp(mode) {
        let server = spawn_mode(mode, &["--bind", "::1"]);
        assert!(server.addr.is_ipv6());
        let mut client = connect(server.addr);
        assert_eq!(exchange(&mut client, b"over ipv6"), b"OVER IPV6");
        let udp = udp_client(server.addr);
        udp.send_to(b"v6", server.addr).unwrap();
        let mut buf = [0; 16];
        let (n, _) = udp.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"V6");
    }
}
