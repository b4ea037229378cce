//! Helpers shared by the integration tests: a server of any mode on 127.0.0.1 port 0, in this process (to
//! read its stats) or as the built binary (to see what a user sees), and clients with timeouts so no test
//! hangs. [`each_mode!`] writes a test once and runs it as one `#[test]` per mode.
#![allow(dead_code)] // Each test file uses its own subset.
#![allow(unused_macros)]

/// Defines `mod $name` holding one `#[test]` per server mode (`$name::reactor`, `$name::blocking`,
/// `$name::threads`, `$name::busy_poll`), each running the body with `$mode` set: a failure names its mode.
macro_rules! each_mode {
    ($(#[$meta:meta])* fn $name:ident($mode:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn run($mode: socklab::server::Mode) $body

            #[test]
            fn reactor() {
                run(socklab::server::Mode::Reactor)
            }

            #[test]
            fn blocking() {
                run(socklab::server::Mode::Blocking)
            }

            #[test]
            fn threads() {
                run(socklab::server::Mode::Threads)
            }

            #[test]
            fn busy_poll() {
                run(socklab::server::Mode::BusyPoll)
            }
        }
    };
}

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

/// True, after saying why, when `mode` cannot run a test that needs two TCP clients served at once.
pub fn skip_unless_concurrent(mode: Mode) -> bool {
    if mode.serves_clients_at_once() {
        return false;
    }
    eprintln!(
        "skipped for {mode}: this test needs two TCP clients served at once, and the blocking server serves \
         one client until it closes while the next waits in the backlog (tests/modes.rs shows exactly that)"
    );
    true
}

/// The built `socklab-server` binary, on port 0, killed if the test ends without stopping it.
pub struct Binary {
    pub addr: SocketAddr,
    pub child: Child,
    /// The first line it printed: `listening on …`.
    pub listening: String,
}

pub fn spawn_binary(args: &[&str]) -> Binary {
    spawn_mode(Mode::Reactor, args)
}

/// The built binary in `mode`, on port 0.
pub fn spawn_mode(mode: Mode, args: &[&str]) -> Binary {
    spawn_with_fd_limit(mode, args, None)
}

/// The reactor binary with the child's open-file limit (soft and hard) set to `fd_limit`.
pub fn spawn_binary_with_fd_limit(args: &[&str], fd_limit: Option<u64>) -> Binary {
    spawn_with_fd_limit(Mode::Reactor, args, fd_limit)
}

/// The binary in `mode` with the child's open-file limit (soft and hard) set to `fd_limit`.
pub fn spawn_mode_with_fd_limit(mode: Mode, args: &[&str], fd_limit: u64) -> Binary {
    spawn_with_fd_limit(mode, args, Some(fd_limit))
}

fn spawn_with_fd_limit(mode: Mode, args: &[&str], fd_limit: Option<u64>) -> Binary {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(env!("CARGO_BIN_EXE_socklab-server"));
    command
        .args(["--port", "0", "--mode", mode.name()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(limit) = fd_limit {
        // SAFETY: between fork and exec, setrlimit only changes this child's own limit; it allocates nothing.
        unsafe {
            command.pre_exec(move || {
                let rl = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &rl) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = command.spawn().expect("spawn socklab-server");
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
    }
}

impl Binary {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) with a pid this test spawned and has not reaped; no memory is involved.
        assert_eq!(unsafe { libc::kill(self.pid(), signal) }, 0);
    }

    /// True while the process runs (an exited child not yet reaped is a zombie, state `Z`).
    pub fn child_is_running(&self) -> bool {
        match std::fs::read_to_string(format!("/proc/{}/stat", self.pid())) {
            // The state follows the command name, which is in parentheses.
            Ok(stat) => stat
                .rsplit(')')
                .next()
                .is_some_and(|rest| !rest.trim_start().starts_with('Z')),
            Err(_) => false,
        }
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
    }
}

/// A TCP client whose reads and writes give up after [`TIMEOUT`] instead of hanging the test.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    stream
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
    let stat = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).ok()?;
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
    let mut child = Command::new(path)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn binary");
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
