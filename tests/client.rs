//! socklab-client through its built binary, as a user or a script runs it: messages as arguments, lines
//! piped on stdin, UDP with the address the reply came from, and the failures it must explain instead of
//! hanging: refused, a reply that never ends, a UDP port where nothing answers.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::time::{Duration, Instant};

use common::*;

const CLIENT: &str = env!("CARGO_BIN_EXE_socklab-client");

fn client(
    port: u16,
    args: &[&str],
    stdin: Option<&[u8]>,
) -> (std::process::ExitStatus, String, String) {
    let port = port.to_string();
    let mut all = vec!["--port", port.as_str()];
    all.extend_from_slice(args);
    run_binary(CLIENT, &all, stdin)
}

#[test]
fn arguments_are_sent_in_turn_and_each_reply_printed() {
    let server = spawn_binary(&[]);
    let (status, out, err) = client(server.addr.port(), &["hello", "straße café", "a b c"], None);
    assert!(status.success(), "{err}");
    assert_eq!(out, "HELLO\nSTRASSE CAFÉ\nA B C\n");
}

#[test]
fn piped_stdin_gives_one_reply_line_per_line_and_nothing_else() {
    let server = spawn_binary(&[]);
    let input = b"first line\nsecond, with ffi \xef\xac\x83\n\nno newline at the end";
    let (status, out, err) = client(server.addr.port(), &[], Some(input));
    assert!(status.success(), "{err}");
    // No prompt: stdin is not a terminal. The ligature grows (3 bytes to 3 letters), an empty line stays one.
    assert_eq!(
        out,
        "FIRST LINE\nSECOND, WITH FFI FFI\n\nNO NEWLINE AT THE END\n"
    );
}

#[test]
fn many_piped_lines_compose_like_a_filter() {
    let server = spawn_binary(&[]);
    let input = lines(300, 7);
    let (status, out, _) = client(server.addr.port(), &[], Some(&input));
    assert!(status.success());
    assert_eq!(out.as_bytes(), input.to_ascii_uppercase());
}

#[test]
fn expect_echo_reads_echo_replies_whole() {
    let server = spawn_binary(&["--service", "echo"]);
    let (status, out, err) = client(
        server.addr.port(),
        &["--expect", "echo", "Mixed Case"],
        None,
    );
    assert!(status.success(), "{err}");
    assert_eq!(out, "Mixed Case\n");
}

#[test]
fn udp_prints_the_reply_and_where_it_came_from() {
    let server = spawn_binary(&[]);
    let (status, out, err) = client(server.addr.port(), &["--udp", "hello udp"], None);
    assert!(status.success(), "{err}");
    assert_eq!(out, format!("HELLO UDP (from {})\n", server.addr));
    // Piped, UDP too prints the reply lines only.
    let (status, out, _) = client(server.addr.port(), &["--udp"], Some(b"one\ntwo\n"));
    assert!(status.success());
    assert_eq!(out, "ONE\nTWO\n");
}

#[test]
fn udp_against_a_silent_port_retries_then_fails_clearly() {
    // A socket that is bound (so no "port unreachable" comes back) and never answers: truly silent.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    silent
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let started = Instant::now();
    let (status, out, err) = client(
        silent.local_addr().unwrap().port(),
        &[
            "--udp",
            "--timeout",
            "0.2",
            "--retries",
            "2",
            "anyone there",
        ],
        None,
    );
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("no reply from udp://") && err.contains("after 3 tries"),
        "{err}"
    );
    assert!(started.elapsed() < TIMEOUT, "it gave up by itself");
    // One send and two retries reached the silent socket.
    let mut buf = [0; 64];
    let mut seen = 0;
    while let Ok((n, _)) = silent.recv_from(&mut buf) {
        assert_eq!(&buf[..n], b"anyone there");
        seen += 1;
    }
    assert_eq!(seen, 3);
}

#[test]
fn connection_refused_asks_whether_the_server_runs() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (status, out, err) = client(port, &["hello"], None);
    assert_eq!(status.code(), Some(1));
    assert!(out.is_empty());
    assert!(
        err.contains(&format!("is socklab-server running on 127.0.0.1:{port}?")),
        "{err}"
    );
}

#[test]
fn a_reply_that_never_ends_times_out() {
    // A server that answers half a reply and then says nothing, keeping the connection open.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = [0; 64];
        let _ = stream.read(&mut buf);
        let _ = stream.write_all(b"HEL");
        std::thread::sleep(TIMEOUT);
    });
    let (status, _, err) = client(port, &["--timeout", "0.3", "hello"], None);
    assert_eq!(status.code(), Some(1));
    assert!(
        err.contains("timed out") && err.contains("got 3 of the reply's 6 bytes"),
        "{err}"
    );
}

#[test]
fn a_server_that_closes_mid_reply_is_named() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = [0; 64];
        let _ = stream.read(&mut buf);
        let _ = stream.write_all(b"HEL");
    });
    let (status, _, err) = client(port, &["hello"], None);
    assert_eq!(status.code(), Some(1));
    assert!(
        err.contains("closed the connection after 3 of the reply's 6 bytes"),
        "{err}"
    );
}

#[test]
fn gbk_text_goes_out_in_gbk_and_comes_back_readable() {
    // 說 is D5 66 in GBK: its second byte is the letter `f`. A server that uppercased bytes would return 誇.
    let server = spawn_binary(&["--encoding", "gbk"]);
    let (status, out, err) = client(
        server.addr.port(),
        &["--encoding", "gbk", "說 hello 中文"],
        None,
    );
    assert!(status.success(), "{err}");
    assert_eq!(out, "說 HELLO 中文\n");
    let (status, out, err) = client(
        server.addr.port(),
        &["--udp", "--encoding", "gbk"],
        Some("說 udp\n".as_bytes()),
    );
    assert!(status.success(), "{err}");
    assert_eq!(out, "說 UDP\n");
}

#[test]
fn text_gbk_cannot_encode_is_refused_with_a_reason() {
    let server = spawn_binary(&["--encoding", "gbk"]);
    let (status, _, err) = client(server.addr.port(), &["--encoding", "gbk", "emoji 🙂"], None);
    assert!(!status.success());
    assert!(
        err.contains("cannot send this text with --encoding gbk"),
        "{err}"
    );
}

#[test]
fn the_tutorials_hello_client_welcome_three_names_exit() {
    let server = spawn_binary(&["--service", "hello"]);
    let (status, out, err) = client(
        server.addr.port(),
        &["--expect", "hello", "Michael", "Tracy", "Sarah", "exit"],
        None,
    );
    assert!(status.success(), "{err}");
    assert_eq!(
        out,
        "Welcome!\nHello, Michael!\nHello, Tracy!\nHello, Sarah!\n"
    );
}
