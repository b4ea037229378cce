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
fn over_udp_a_reply_of_another_service_is_named_as_over_tcp() {
    for service in ["echo", "hello"] {
        let server = spawn_binary(&["--service", service]);
        let (status, out, err) = client(server.addr.port(), &["--udp", "Michael"], None);
        assert!(status.success(), "{service}: {err}");
        assert!(out.contains("Michael"), "{service}: {out}");
        assert!(
            err.contains(&format!("Then use --expect {service}")),
            "{service}: {err}"
        );
    }
}

#[test]
fn udp_to_a_server_that_binds_no_udp_socket_says_so() {
    // --service http binds TCP only: the datagram meets "port unreachable" though a server runs there.
    let server = spawn_binary(&["--service", "http"]);
    let (status, _, err) = client(server.addr.port(), &["--udp", "hi"], None);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "the server on {} answers no datagrams",
            server.addr
        )) && err.contains("leave out --udp"),
        "{err}"
    );
    assert!(!err.contains("is socklab-server running"), "{err}");
}

#[test]
fn connection_refused_asks_whether_the_server_runs() {
    let (_held, addr) = nothing_listens();
    let port = addr.port();
    let (status, out, err) = client(port, &["hello"], None);
    assert_eq!(status.code(), Some(1));
    assert!(out.is_empty());
    assert!(
        err.contains(&format!("is socklab-server running on 127.0.0.1:{port}?")),
        "{err}"
    );
    // Said to a person as a command-line tool says it: its name, the reason, no timestamp or module path.
    assert_eq!(
        err,
        format!(
            "socklab-client: connection refused by tcp://127.0.0.1:{port}: is socklab-server running on \
             127.0.0.1:{port}?\n"
        )
    );
    // With -v the same error is a log line, for whoever is debugging.
    let (_, _, err) = client(port, &["-v", "hello"], None);
    assert!(
        err.contains("ERROR socklab_client] connection refused"),
        "{err}"
    );
}

#[test]
fn every_flag_has_a_row_in_the_docs() {
    let missing = flags_without_a_row(
        CLIENT,
        "docs/client-and-stress.md",
        Some("## socklab-client"),
    );
    assert!(
        missing.is_empty(),
        "docs/client-and-stress.md has no row for {missing:?}"
    );
}

#[test]
fn help_opens_with_the_tools_own_words_and_v_with_q_is_a_usage_error() {
    let (status, out, _) = run_binary(CLIENT, &["-h"], None);
    assert!(status.success());
    assert!(
        out.starts_with("Sends sentences to a socklab server"),
        "{out}"
    );
    let (status, _, err) = run_binary(CLIENT, &["-v", "-q", "hi"], None);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("cannot be used with"), "{err}");
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

#[test]
fn against_hello_without_expect_the_greeting_is_named_and_it_fails() {
    // The welcome is not what `upper` sends: the replies would be out of step, so nothing is printed as a
    // reply, the cause is named, and the exit status says it failed.
    let server = spawn_binary(&["--service", "hello"]);
    let (status, out, err) = client(server.addr.port(), &["hello"], None);
    assert_eq!(status.code(), Some(1), "{out} {err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("Welcome!"), "{err}");
    assert!(err.contains("--expect hello"), "{err}");
}

#[test]
fn after_exit_the_close_is_noticed_and_what_was_not_sent_fails() {
    let server = spawn_binary(&["--service", "hello"]);
    let port = server.addr.port();
    let (status, out, err) = client(
        port,
        &["--expect", "hello", "Michael", "exit", "Tracy"],
        None,
    );
    assert_eq!(status.code(), Some(1), "{err}");
    assert_eq!(out, "Welcome!\nHello, Michael!\n");
    assert!(
        err.contains("closed the connection after \"exit\"")
            && err.contains("\"Tracy\" was not sent"),
        "{err}"
    );
    // Piped: lines after `exit` are an error that names them; `exit` as the last line is a clean end.
    let (status, out, err) = client(port, &["--expect", "hello"], Some(b"Ann\nexit\nBob\n"));
    assert_eq!(status.code(), Some(1), "{err}");
    assert_eq!(out, "Welcome!\nHello, Ann!\n");
    assert!(err.contains("\"Bob\""), "{err}");
    let (status, out, err) = client(port, &["--expect", "hello"], Some(b"Ann\nexit\n"));
    assert!(status.success(), "{err}");
    assert_eq!(out, "Welcome!\nHello, Ann!\n");
}

#[test]
fn on_a_terminal_hello_asks_for_names_and_stops_at_the_close() {
    // The interactive loop through the library, as a terminal drives it: the prompt asks for a name, and
    // after `exit` the close is said and no prompt follows, though more lines were typed.
    let server = start(socklab::server::config::Config {
        service: socklab::service::Service::Hello,
        ..config()
    });
    let options = socklab::client::ClientOptions {
        addrs: vec![server.addr],
        udp: false,
        timeout: TIMEOUT,
        retries: 0,
        expect: socklab::service::Service::Hello,
        encoding: socklab::encoding::Encoding::Utf8,
    };
    let mut c = socklab::client::Client::open(&options).unwrap();
    let mut input: &[u8] = b"Ann\nexit\nnever sent\n";
    let mut out = Vec::new();
    socklab::client::send_lines(&mut c, &mut input, &mut out, true).unwrap();
    let prompt = "Input your name (exit to leave): ";
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!(
            "Welcome!\n{prompt}From Server: Hello, Ann!\n{prompt}The server closed the connection.\n"
        )
    );
    assert!(c.is_closed());
    server.stop();
}

#[test]
fn a_busy_blocking_server_is_named_as_the_likely_cause_of_a_timeout() {
    // The blocking server serves one client until it leaves: the next one's connection is made by the
    // kernel and then nothing happens. The hint must say that, not blame the service.
    let server = start_mode(socklab::server::Mode::Blocking, config());
    let mut first = connect(server.addr);
    assert_eq!(exchange(&mut first, b"busy\n"), b"BUSY\n");
    let (status, _, err) = client(server.addr.port(), &["--timeout", "0.5", "hello"], None);
    assert_eq!(status.code(), Some(1));
    assert!(err.contains("got 0 of the reply's 6 bytes"), "{err}");
    assert!(
        err.contains("serves one client at a time") && err.contains("serving another client"),
        "{err}"
    );
    drop(first);
    server.stop();
}

#[test]
fn expect_http_gets_each_path_and_prints_each_body() {
    let server = spawn_binary(&["--service", "http"]);
    let port = server.addr.port();
    let (status, out, err) = client(
        port,
        &["--expect", "http", "/", "index.html", "a path/ü"],
        None,
    );
    assert!(status.success(), "{err}");
    assert_eq!(out, "Hello, World\nHello, World\nHello, World\n");
    let (status, out, err) = client(port, &["--expect", "http"], Some(b"/a\n/b\n"));
    assert!(status.success(), "{err}");
    assert_eq!(out, "Hello, World\nHello, World\n");
    // Contradictory flags are a usage error: exit status 2, as socklab-stress gives for the same mistake.
    let (status, _, err) = client(port, &["--expect", "http", "--udp", "/"], None);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("TCP only"), "{err}");
}

#[test]
fn a_reply_of_another_service_is_printed_with_a_warning_that_names_it() {
    let server = spawn_binary(&["--service", "echo"]);
    let (status, out, err) = client(server.addr.port(), &["Mixed Case"], None);
    assert!(status.success(), "{err}");
    assert_eq!(out, "Mixed Case\n");
    assert!(err.contains("--expect echo"), "{err}");
}

#[test]
fn http_requests_are_paths_made_safe() {
    let host: std::net::SocketAddr = "127.0.0.1:80".parse().unwrap();
    assert_eq!(
        socklab::service::http::client::get(b"a b/\xc3\xbc", host),
        b"GET /a%20b/%C3%BC HTTP/1.1\r\nHost: 127.0.0.1:80\r\n\r\n"
    );
    assert_eq!(
        socklab::service::http::client::shown(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
            .body,
        b"hi"
    );
}
