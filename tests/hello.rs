//! `--service hello` against a live server: the tutorial's welcome client over TCP and UDP, in-process and as
//! the built binary; an overlong line gets its error and the close; end of stream inside a line; and the
//! property that any split of a stream gives the reply of the whole stream.

#[macro_use]
mod common;

use common::*;
use proptest::prelude::*;
use socklab::server::config::Config;
use socklab::service::{Service, ServiceOptions};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};

fn hello_config() -> Config {
    Config {
        service: Service::Hello,
        ..config()
    }
}

/// The tutorial's client, with lines: read the welcome, greet three names, say `exit`, see the close.
fn tutorial_client(addr: SocketAddr) {
    let mut client = connect(addr);
    assert_eq!(read_n(&mut client, 9), b"Welcome!\n");
    for name in ["Michael", "Tracy", "Sarah"] {
        client.write_all(format!("{name}\n").as_bytes()).unwrap();
        let expected = format!("Hello, {name}!\n");
        assert_eq!(read_n(&mut client, expected.len()), expected.as_bytes());
    }
    client.write_all(b"exit\n").unwrap();
    assert_eq!(
        read_to_end(&mut client),
        b"",
        "exit closes with nothing more"
    );
}

/// The tutorial's UDP client: three names, three greetings, no welcome.
fn udp_tutorial_client(addr: SocketAddr) {
    let client = udp_client(addr);
    let mut buf = [0; 2048];
    for name in ["Michael", "Tracy", "Sarah"] {
        client.send_to(name.as_bytes(), addr).unwrap();
        let (n, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], format!("Hello, {name}!").as_bytes());
        assert_eq!(from, addr);
    }
}

each_mode! {
    fn tutorial_exchange_over_tcp_and_udp_in_process(mode) {
        let server = start_mode(mode, hello_config());
        tutorial_client(server.addr);
        udp_tutorial_client(server.addr);
        let stats = server.stop().stats;
        assert_eq!(stats.accepted, 1, "{mode}");
        assert_eq!(stats.datagrams_out, 3, "{mode}");
    }
}

#[test]
fn tutorial_exchange_over_tcp_and_udp_with_the_binary() {
    let server = spawn_binary(&["--service", "hello"]);
    tutorial_client(server.addr);
    udp_tutorial_client(server.addr);
}

#[test]
fn crlf_lines_and_lines_split_across_writes() {
    let server = start(hello_config());
    let mut client = connect(server.addr);
    assert_eq!(read_n(&mut client, 9), b"Welcome!\n");
    client.write_all(b"Mic").unwrap();
    client.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    client.write_all(b"hael\r\nTracy\r").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    client.write_all(b"\n").unwrap();
    let expected = b"Hello, Michael!\nHello, Tracy!\n";
    assert_eq!(read_n(&mut client, expected.len()), expected);
    server.stop();
}

#[test]
fn end_of_stream_answers_the_unfinished_line() {
    let server = start(hello_config());
    let mut client = connect(server.addr);
    client.write_all(b"Ann\nBob").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(
        read_to_end(&mut client),
        b"Welcome!\nHello, Ann!\nHello, Bob!\n"
    );
    server.stop();
}

/// Reads until `expected` has arrived, then until the server closes. The close must be a clean end of
/// stream even though the server stopped reading with our bytes unread: it shuts its side and lingers,
/// rather than close with unread input (which sends a reset that can destroy the last reply in flight).
fn read_reply_then_close(client: &mut TcpStream, expected: &[u8]) {
    assert_eq!(read_n(client, expected.len()), expected);
    let mut rest = Vec::new();
    match client.read_to_end(&mut rest) {
        Ok(_) => assert_eq!(rest, b"", "nothing after the error"),
        Err(e) => panic!("the server reset the connection instead of closing it: {e}"),
    }
}

#[test]
fn a_line_too_long_gets_the_error_and_the_close() {
    let server = start(Config {
        max_line: 1000,
        ..hello_config()
    });
    let mut client = connect(server.addr);
    let mut request = b"ok\n".to_vec();
    request.extend_from_slice(&[b'x'; 1001]);
    client.write_all(&request).unwrap();
    read_reply_then_close(&mut client, b"Welcome!\nHello, ok!\nERR line too long\n");
    // A name of exactly the limit is fine.
    let mut client = connect(server.addr);
    let mut request = vec![b'y'; 1000];
    request.extend_from_slice(b"\r\n");
    client.write_all(&request).unwrap();
    let mut expected = b"Welcome!\nHello, ".to_vec();
    expected.extend_from_slice(&[b'y'; 1000]);
    expected.extend_from_slice(b"!\n");
    assert_eq!(read_n(&mut client, expected.len()), expected);
    server.stop();
}

#[test]
fn a_line_too_long_at_the_default_limit_with_the_binary() {
    let server = spawn_binary(&["--service", "hello"]);
    let mut client = connect(server.addr);
    // 64 KiB + 1 bytes, and more: the server refuses before the line ends and reads no further.
    let request = vec![b'z'; 64 * 1024 + 4096];
    let writer = {
        let mut client = client.try_clone().unwrap();
        // The server stops reading, so this write may fail: the test is about what comes back.
        std::thread::spawn(move || {
            let _ = client.write_all(&request);
        })
    };
    read_reply_then_close(&mut client, b"Welcome!\nERR line too long\n");
    writer.join().unwrap();
}

#[test]
fn udp_edge_cases() {
    let server = start(Config {
        max_line: 100,
        ..hello_config()
    });
    let client = udp_client(server.addr);
    let mut buf = [0; 2048];
    let mut ask = |request: &[u8]| {
        client.send_to(request, server.addr).unwrap();
        let (n, _) = client.recv_from(&mut buf).unwrap();
        buf[..n].to_vec()
    };
    // The empty datagram is still answered: 8 bytes, the most any hello reply grows.
    assert_eq!(ask(b""), b"Hello, !");
    // No framing over UDP: a newline is part of the name.
    assert_eq!(ask(b"two\nlines\n"), b"Hello, two\nlines\n!");
    assert_eq!(ask(&[b'x'; 101]), b"ERR line too long");
    server.stop();
}

#[test]
fn the_binary_rejects_a_max_line_it_cannot_serve() {
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_socklab-server"))
        .args(["--port", "0", "--service", "hello", "--max-line", "1000000"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&status.stderr).contains("--high-water"));
}

/// Lines, some with `\r\n`, some `exit`, some too long, and random bytes.
fn hello_stream() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        6 => "[a-zA-Z ]{0,12}\r?\n".prop_map(String::into_bytes),
        1 => Just(b"exit\n".to_vec()),
        1 => Just(b"\r".to_vec()),
        1 => "[a-z]{15,40}".prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..6),
    ];
    prop::collection::vec(piece, 0..30).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn any_split_gives_the_reply_of_the_whole_stream(input in hello_stream(), cuts in prop::collection::vec(any::<usize>(), 0..12)) {
        let options = ServiceOptions { max_line: 20, ..ServiceOptions::default() };
        prop_assert_eq!(
            feed_in_pieces(Service::Hello.session_with(&options), &input, &cuts),
            Service::Hello.reply_to_stream_with(&options, &input)
        );
    }

    #[test]
    fn datagram_replies_grow_by_at_most_eight_bytes(input in prop::collection::vec(any::<u8>(), 0..64), max_line in 8usize..80) {
        let mut reply = Vec::new();
        Service::Hello.datagram_with(&ServiceOptions { max_line, ..ServiceOptions::default() }, &input, &mut reply);
        prop_assert!(reply.len() <= input.len() + 8);
    }
}

each_mode! {
    /// `exit` followed by a megabyte the server will never answer: its bytes are unread when the service
    /// says close. The server must not reset the connection (that can destroy the replies before it); it
    /// shuts its side, discards what still arrives, and the client sees every reply, then a clean end of
    /// stream.
    fn exit_with_more_bytes_behind_it_closes_cleanly_not_with_a_reset(mode) {
    let server = start_mode(mode, hello_config());
    let mut client = connect(server.addr);
    let mut writer = client.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let mut request = b"Ann\nexit\n".to_vec();
        request.extend(std::iter::repeat_n(b'z', 1 << 20));
        let sent = writer.write_all(&request);
        let _ = writer.shutdown(std::net::Shutdown::Write);
        sent
    });
    read_reply_then_close(&mut client, b"Welcome!\nHello, Ann!\n");
    assert!(
        sender.join().unwrap().is_ok(),
        "the server reset the connection while the client was still sending"
    );
    server.stop();
}
}
