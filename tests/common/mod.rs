//! Helpers shared by the integration tests: a server of any mode on 127.0.0.1 port 0, in this process (to
//! read its stats) or as the built binary (to see what a user sees), and clients with timeouts so no test
//! hangs. [`each_mode!`] writes a test once and runs it as one `#[test]` per mode.
#![allow(dead_code)] // Each test file uses its own subset.
#![allow(unused_macros)]

/// Defines `mod $name` holding one `#[test]` per server mode (`$name::reactor`, `$name::blocking`,
/// `$name::threads`, `$name::busy_poll`, and on Linux `$name::uring`), each running the body with `$mode` set:
/// a failure names its mode. Attributes written before the `fn` (its doc, a `cfg_attr(not(has_curl), ignore =
/// "...")`) go on each of the tests. `uring` is ignored, with the reason, where build.rs found no usable
/// io_uring (`has_io_uring`).
///
/// A test that cannot hold for `--mode blocking`, which serves one client until it closes while the next
/// waits in the backlog, says so before its `fn`:
/// - `concurrent fn name(mode)`: it needs two TCP clients served at once;
/// - `not_blocking("reason") fn name(mode)`: any other reason, in its own words.
///
/// Its `blocking` variant is then generated with `#[ignore = "reason"]`, so `cargo test` lists it as ignored,
/// with the reason, instead of counting a test that never ran as passed. Run with `--ignored`, it fails: that
/// is the reason, shown (tests/modes.rs shows the blocking server's one-at-a-time directly).
macro_rules! each_mode {
    ($(#[$meta:meta])* fn $name:ident($mode:ident) $body:block) => {
        each_mode!(@modes [$(#[$meta])*] [] $name $mode $body);
    };
    ($(#[$meta:meta])* concurrent fn $name:ident($mode:ident) $body:block) => {
        each_mode!(@modes [$(#[$meta])*] [#[ignore = "needs two TCP clients served at once, and the blocking \
            server serves one client until it closes while the next waits in the backlog"]] $name $mode $body);
    };
    ($(#[$meta:meta])* not_blocking($reason:literal) fn $name:ident($mode:ident) $body:block) => {
        each_mode!(@modes [$(#[$meta])*] [#[ignore = $reason]] $name $mode $body);
    };
    (@modes [$($meta:tt)*] [$($blocking:tt)*] $name:ident $mode:ident $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn run($mode: socklab::server::Mode) $body

            $($meta)*
            #[test]
            fn reactor() {
                run(socklab::server::Mode::Reactor)
            }

            $($meta)*
            #[test]
            $($blocking)*
            // A test that is already ignored elsewhere (say under Wine, `cfg_attr(wine, ignore)`) and is not
            // for the blocking server gets a second `ignore` here; the first one's reason is what shows.
            #[allow(unused_attributes)]
            fn blocking() {
                run(socklab::server::Mode::Blocking)
            }

            $($meta)*
            #[test]
            fn threads() {
                run(socklab::server::Mode::Threads)
            }

            $($meta)*
            #[test]
            fn busy_poll() {
                run(socklab::server::Mode::BusyPoll)
            }

            $($meta)*
            #[cfg(target_os = "linux")]
            #[cfg_attr(not(has_io_uring), ignore = "needs io_uring (Linux 6.1 or later, not disabled, not \
                filtered by a sandbox), which build.rs did not find usable here")]
            #[test]
            fn uring() {
                run(socklab::server::Mode::Uring)
            }
        }
    };
}

/// Tests that exist on Unix only, because they use what Windows does not have (SIGSTOP, `MSG_OOB`, resource
/// limits): written with `#[cfg(unix)]`, and named here with the reason, so that elsewhere each is listed by
/// `cargo test` as ignored, with the reason, rather than left out unseen. (An `each_mode!` test is listed
/// once, by its name.)
macro_rules! unix_only {
    ($reason:literal: $($name:ident),+ $(,)?) => {
        $(
            #[cfg(not(unix))]
            #[test]
            #[ignore = $reason]
            fn $name() {}
        )+
    };
}

#[cfg(windows)]
mod console;
pub mod transcript;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use socklab::server::config::Config;
use socklab::server::Summary;
use socklab::server::{Mode, Server, ShutdownHandle};

/// Generous: tests assert correctness, not speed, on a shared two-core machine.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// Whether this is a Windows build running under Wine, as CI runs the Windows tests (`.ci/wine-test`).
/// Wine's sockets are many times slower than Windows' or Linux's, so tests that must fill socket buffers
/// or move much data give it longer or send less; what they assert stays the same.
pub fn under_wine() -> bool {
    #[cfg(windows)]
    return socklab::sys::is_wine();
    #[cfg(not(windows))]
    return false;
}

/// A server running on a thread of the test process.
pub struct InProcess {
    pub mode: Mode,
    pub addr: SocketAddr,
    handle: ShutdownHandle,
    thread: JoinHandle<std::io::Result<Summary>>,
}

pub fn config() -> Config {
    Config {
        port: 0,
        ..Config::default()
    }
}

/// A reactor, for the tests of what only the reactor promises.
pub fn start(config: Config) -> InProcess {
    start_mode(Mode::Reactor, config)
}

pub fn start_mode(mode: Mode, config: Config) -> InProcess {
    let server = Server::bind(mode, config).unwrap_or_else(|e| panic!("{mode}: bind: {e}"));
    let addr = server.local_addr();
    let handle = server.shutdown_handle();
    let thread = thread::spawn(move || server.run());
    InProcess {
        mode,
        addr,
        handle,
        thread,
    }
}

impl InProcess {
    /// Shuts the server down as SIGTERM would and returns what it counted.
    pub fn stop(self) -> Summary {
        self.handle.shutdown();
        let mode = self.mode;
        self.thread
            .join()
            .unwrap_or_else(|_| panic!("{mode}: server thread panicked"))
            .unwrap_or_else(|e| panic!("{mode}: server failed: {e}"))
    }
}

/// The built `socklab-server` binary, on port 0, killed if the test ends without stopping it.
pub struct Binary {
    pub addr: SocketAddr,
    pub child: Child,
    /// The first line it printed: `listening on …`.
    pub listening: String,
    /// How [`Binary::signal`] reaches the child on Windows (`console.rs`).
    #[cfg(windows)]
    reach: console::Reach,
}

pub fn spawn_binary(args: &[&str]) -> Binary {
    spawn_mode(Mode::Reactor, args)
}

/// The built binary in `mode`, on port 0.
pub fn spawn_mode(mode: Mode, args: &[&str]) -> Binary {
    spawn_with_fd_limit(mode, args, None)
}

/// The reactor binary with the child's open-file limit (soft and hard) set to `fd_limit`. Unix only: Windows
/// has no open-file limit to set.
#[cfg(unix)]
pub fn spawn_binary_with_fd_limit(args: &[&str], fd_limit: Option<u64>) -> Binary {
    spawn_with_fd_limit(Mode::Reactor, args, fd_limit)
}

/// The binary in `mode` with the child's open-file limit (soft and hard) set to `fd_limit`. Unix only.
#[cfg(unix)]
pub fn spawn_mode_with_fd_limit(mode: Mode, args: &[&str], fd_limit: u64) -> Binary {
    spawn_with_fd_limit(mode, args, Some(fd_limit))
}

fn spawn_with_fd_limit(mode: Mode, args: &[&str], fd_limit: Option<u64>) -> Binary {
    let mut command = Command::new(env!("CARGO_BIN_EXE_socklab-server"));
    command
        .args(["--port", "0", "--mode", mode.name()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    #[cfg(unix)]
    if let Some(limit) = fd_limit {
        use rustix::process::{setrlimit, Resource, Rlimit};
        use std::os::unix::process::CommandExt;
        let limit = Rlimit {
            current: Some(limit),
            maximum: Some(limit),
        };
        // SAFETY: between fork and exec, setrlimit (one system call) only changes this child's own limit; it
        // allocates nothing and takes no lock.
        unsafe {
            command.pre_exec(move || Ok(setrlimit(Resource::Nofile, limit)?));
        }
    }
    #[cfg(not(unix))]
    assert!(
        fd_limit.is_none(),
        "only Unix has an open-file limit to set"
    );
    // Windows: set up so that `signal` can stop this child alone (`console.rs`).
    #[cfg(windows)]
    let reach = console::prepare(&mut command);
    let mut child = spawn_child(&mut command);
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(TIMEOUT)
        .unwrap_or_else(|_| panic!("{mode}: no `listening on` line"));
    let addr = socklab::net::parse_listening_line(&line)
        .unwrap_or_else(|| panic!("not a listening line: {line:?}"));
    Binary {
        addr,
        child,
        listening: line.trim_end().to_string(),
        #[cfg(windows)]
        reach,
    }
}

impl Binary {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// CPU seconds (user + system) the server has used. Under Wine, which answers zero for another
    /// process, Linux's figure for the process Wine runs it in.
    pub fn cpu_seconds(&self) -> f64 {
        #[cfg(windows)]
        if let Some(pid) = console::linux_pid(&self.reach) {
            return console::linux_cpu_seconds(pid);
        }
        cpu_seconds(self.pid())
    }

    /// [`wanted_cpu_seconds`] of the server's main thread; under Wine, Linux's figure, as for
    /// [`Binary::cpu_seconds`]. `None` where the OS keeps no such figure (Windows).
    pub fn wanted_cpu_seconds(&self) -> Option<f64> {
        #[cfg(windows)]
        return console::linux_pid(&self.reach)
            .and_then(|pid| wanted_cpu_seconds_in(&console::linux_proc_file(pid, "schedstat")));
        #[cfg(not(windows))]
        wanted_cpu_seconds(self.pid())
    }

    #[cfg(unix)]
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) with a pid this test spawned and has not reaped; no memory is involved.
        assert_eq!(unsafe { libc::kill(self.pid(), signal) }, 0);
    }

    /// Windows has no signals: SIGINT and SIGTERM, the two a server handles, become what stops a Windows
    /// console program, sent to this child alone: Ctrl-Break on Windows, Ctrl-C under Wine (`console.rs`).
    #[cfg(windows)]
    pub fn signal(&self, signal: i32) {
        assert!(
            [libc::SIGINT, libc::SIGTERM].contains(&signal),
            "signal {signal} has no Windows counterpart"
        );
        console::stop(&self.reach, self.child.id());
    }

    /// True while the process runs (a child that exited is reaped here; `wait` still gets its status).
    pub fn child_is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits (bounded) for the process to exit; returns its status and everything it logged.
    pub fn wait(mut self) -> (std::process::ExitStatus, String) {
        let deadline = std::time::Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut stderr = String::new();
                self.child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut stderr)
                    .unwrap();
                return (status, stderr);
            }
            assert!(std::time::Instant::now() < deadline, "server did not exit");
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        #[cfg(windows)]
        console::forget(&self.reach);
    }
}

/// Starts `command`. Under Wine, `CreateProcess` now and then fails with "Internal error" (1359) while
/// other tests start processes too (once in two whole runs of the suite here): it is tried again there, up to
/// three times, since the test is about the server, not about Wine's process creation.
pub fn spawn_child(command: &mut Command) -> Child {
    let mut tries = 0;
    loop {
        match command.spawn() {
            Ok(child) => return child,
            Err(e) if under_wine() && e.raw_os_error() == Some(1359) && tries < 3 => {
                tries += 1;
                eprintln!("spawn: Wine's CreateProcess failed ({e}); trying again");
                thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("spawn {:?}: {e}", command.get_program()),
        }
    }
}

/// A loopback address where nothing listens, and no server can start while the returned socket lives.
///
/// Taking a port that was free a moment ago and dropping its socket is a race: another test running at the
/// same time may bind that port number for its own server (socklab binds TCP first, on port 0) before this one
/// connects, and then "refused" becomes "accepted". A TCP socket that is bound but not listening holds the
/// TCP port against every other bind, and a connection to it is still refused (RST). Its UDP port stays
/// unbound, so a datagram sent there gets "port unreachable"; a UDP port cannot be held without receiving
/// on it, so a parallel test's own port-0 UDP socket could still, rarely, be given that number.
pub fn nothing_listens() -> (socket2::Socket, SocketAddr) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    (socket, addr)
}

/// A TCP client whose reads and writes give up after [`TIMEOUT`] instead of hanging the test.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    stream
}

/// A client that sends far more than it will ever read, connected to an `upper`/`echo` server: the replies
/// it is owed can never all be delivered, so a graceful shutdown must wait for it (until the deadline).
///
/// It writes until a write blocks for a second, not a fixed amount: the kernel's buffers on both sides (the
/// server's receive and send buffers, this client's receive buffer, all grown by autotuning) took about
/// 8 MiB on Linux before the server's `--high-water` stopped its reading, so a fixed 8 MiB sometimes all
/// fitted, the server owed nothing, and its shutdown ended after the linger's 2 s instead of waiting (a CI
/// run under Wine failed so). A write that blocks means the server stopped reading, which it does only when
/// holding replies it cannot send.
pub fn never_reading(addr: SocketAddr) -> TcpStream {
    let mut client = connect(addr);
    client
        .set_write_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..256 {
        if client.write(&chunk).is_err() {
            return client;
        }
    }
    panic!("the server read 256 MiB without stopping at --high-water");
}

/// Reads exactly `n` bytes (a reply may arrive in any number of pieces).
pub fn read_n(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    stream.read_exact(&mut buf).expect("read reply");
    buf
}

/// Sends `request` and reads back exactly as many bytes as its reply must have.
pub fn exchange(stream: &mut TcpStream, request: &[u8]) -> Vec<u8> {
    stream.write_all(request).unwrap();
    let expected = socklab::service::Service::Upper
        .reply_to_stream(request)
        .len();
    read_n(stream, expected)
}

/// A UDP client bound to an ephemeral port of the same family as `server`, with a receive timeout.
pub fn udp_client(server: SocketAddr) -> UdpSocket {
    let local: SocketAddr = if server.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    }
    .parse()
    .unwrap();
    let socket = UdpSocket::bind(local).unwrap();
    socket.set_read_timeout(Some(TIMEOUT)).unwrap();
    socket
}

/// Reads until end of stream.
pub fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    stream.read_to_end(&mut all).expect("read to end");
    all
}

/// `n` distinct lowercase lines: what load tests send.
pub fn lines(n: usize, tag: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        out.extend_from_slice(format!("client {tag} line {i} the quick brown fox\n").as_bytes());
    }
    out
}

/// Waits until `condition` holds, up to [`TIMEOUT`]; panics with `what` if it never does.
pub fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + TIMEOUT;
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Seconds the main thread has spent on a CPU and waiting in a run queue for one, from
/// `/proc/PID/schedstat`: together, how long it wanted a CPU, however busy the machine is. `None` if the
/// kernel does not keep these statistics.
pub fn wanted_cpu_seconds(pid: i32) -> Option<f64> {
    wanted_cpu_seconds_in(&format!("/proc/{pid}/schedstat"))
}

/// [`wanted_cpu_seconds`] from a `schedstat` file.
fn wanted_cpu_seconds_in(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    let mut fields = stat.split_whitespace().map(|f| f.parse::<f64>().ok());
    let on_cpu = fields.next()??;
    let waiting = fields.next()??;
    Some((on_cpu + waiting) / 1e9)
}

/// How a test-made server spoils its replies, to prove the load generator notices.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Answers correctly: a plain thread-per-connection server, not socklab's.
    None,
    /// Echoes instead of uppercasing: an echo server, for `--expect echo`.
    Echo,
    /// Leaves out the reply byte at this offset of the stream.
    DropByte(usize),
    /// Replaces the reply byte at this offset with another letter.
    SwapLetter(usize),
    /// Closes the connection once this many reply bytes are written.
    CloseAfter(usize),
}

/// A blocking TCP server on 127.0.0.1 port 0, one thread per connection, serving uppercase with `fault`.
/// Its threads live until the test process ends; they only ever block on their own sockets.
pub fn faulty_server(fault: Fault) -> SocketAddr {
    faulty_server_of(socklab::service::Service::Upper, fault)
}

/// [`faulty_server`] serving `service` instead (greeting included): offsets count from the stream's start.
pub fn faulty_server_of(service: socklab::service::Service, fault: Fault) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            thread::spawn(move || serve_faulty(stream, service, fault));
        }
    });
    addr
}

fn serve_faulty(mut stream: TcpStream, service: socklab::service::Service, fault: Fault) {
    let mut session = service.session();
    let clock = socklab::service::Clock::new();
    let mut greeting = Vec::new();
    session.greeting(&mut greeting);
    if stream.write_all(&greeting).is_err() {
        return;
    }
    let mut buf = [0u8; 4096];
    let mut reply = Vec::new();
    let mut offset = greeting.len();
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        reply.clear();
        match fault {
            Fault::Echo => reply.extend_from_slice(&buf[..n]),
            _ => {
                session.feed(&clock, &buf[..n], &mut reply);
            }
        }
        let range = offset..offset + reply.len();
        match fault {
            Fault::DropByte(at) if range.contains(&at) => {
                reply.remove(at - offset);
                offset += 1;
            }
            Fault::SwapLetter(at) if range.contains(&at) => {
                let b = &mut reply[at - offset];
                *b = if *b == b'X' { b'Y' } else { b'X' };
            }
            Fault::CloseAfter(at) if range.end >= at => {
                let _ = stream.write_all(&reply[..at - offset]);
                return;
            }
            _ => {}
        }
        offset += reply.len();
        if stream.write_all(&reply).is_err() {
            return;
        }
    }
}

/// Runs a built binary with `args` (and `stdin` piped in, if any), bounded by [`TIMEOUT`]: its exit
/// status, stdout and stderr.
pub fn run_binary(
    path: &str,
    args: &[&str],
    stdin: Option<&[u8]>,
) -> (std::process::ExitStatus, String, String) {
    let mut child = spawn_child(
        Command::new(path)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        let input = input.to_vec();
        // A thread, so a child that reads slowly cannot block the test while it writes.
        thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = std::time::Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{path} {args:?} did not exit within {TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    (status, out.join().unwrap(), err.join().unwrap())
}

/// The number after `"key":` in a flat JSON object, as `socklab-stress --json` prints it.
pub fn json_u64(json: &str, key: &str) -> u64 {
    let pattern = format!("\"{key}\":");
    let start = json
        .find(&pattern)
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        + pattern.len();
    let digits: String = json[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("{key} is not a number in {json}"))
}

/// Feeds `input` to `session` in pieces cut at `cuts` (positions taken modulo the length, any order, repeats
/// allowed), after its greeting, and returns everything it wrote. Checks on every piece that the output stays
/// within the session's own bound, which the reactor relies on to keep under its high-water mark.
pub fn feed_in_pieces(
    mut session: socklab::service::Session,
    input: &[u8],
    cuts: &[usize],
) -> Vec<u8> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    cuts.sort_unstable();
    let clock = socklab::service::Clock::new();
    let mut out = Vec::new();
    session.greeting(&mut out);
    let mut from = 0;
    for cut in cuts.into_iter().chain([input.len()]) {
        let bound = session.max_output(cut - from);
        let before = out.len();
        let step = session.feed(&clock, &input[from..cut], &mut out);
        assert!(
            out.len() - before <= bound,
            "a piece's reply passed the session's bound"
        );
        if step == socklab::service::Step::Close {
            return out;
        }
        from = cut;
    }
    session.finish(&clock, &mut out);
    out
}

/// CPU seconds (user + system) a process has used.
pub fn cpu_seconds(pid: i32) -> f64 {
    socklab::procfs::cpu_seconds(pid as u32)
}

/// Open descriptors of a process.
pub fn fd_count(pid: i32) -> usize {
    socklab::procfs::fd_count(pid as u32)
}

/// Resident memory of a process, in bytes.
pub fn resident_bytes(pid: i32) -> usize {
    socklab::procfs::resident_kib(pid as u32) as usize * 1024
}

/// The threads of a process.
pub fn thread_count(pid: i32) -> usize {
    socklab::procfs::thread_count(pid as u32)
}

/// The long flags `binary --help` lists, but those every binary shares (`-v`, `-q`, `-h`, `-V`).
pub fn help_flags(binary: &str) -> Vec<String> {
    let (status, help, _) = run_binary(binary, &["--help"], None);
    assert!(status.success(), "{binary} --help");
    // A flag's own line is indented 2 or 6 columns; the lines of its description, further.
    help.lines()
        .filter(|l| l.len() - l.trim_start().len() < 8 && l.trim_start().starts_with('-'))
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("--")))
        .map(|w| w.trim_end_matches(',').trim_end_matches("...").to_string())
        .filter(|f| !["--verbose", "--quiet", "--help", "--version"].contains(&f.as_str()))
        .collect()
}

/// The flags of `binary` that have no row (a line starting `` | `--flag ``) in the first table after the
/// heading `section` of `doc` (a path from the repository's root; `None`: every table of the file), so a
/// table of flags cannot fall behind the flags.
pub fn flags_without_a_row(binary: &str, doc: &str, section: Option<&str>) -> Vec<String> {
    let page = std::fs::read_to_string(format!("{}/{doc}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let text = match section {
        Some(heading) => {
            let from = page
                .find(heading)
                .unwrap_or_else(|| panic!("{doc}: no {heading}"));
            let rest = &page[from + heading.len()..];
            rest.lines()
                .skip_while(|l| !l.starts_with('|'))
                .take_while(|l| l.starts_with('|'))
                .collect::<Vec<_>>()
                .join("\n")
        }
        None => page,
    };
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with('|') && l.contains("`-"))
        .collect();
    help_flags(binary)
        .into_iter()
        .filter(|f| !rows.iter().any(|row| row.contains(&format!("`{f}"))))
        .collect()
}
