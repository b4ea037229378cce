//! Windows' console stops in every mode: Ctrl-Break and closing the console, by calling the console's
//! handler directly (`sys::simulate_console_stop`). Wine 8 cannot generate either event for a process
//! (`GenerateConsoleCtrlEvent` is refused, and there is no console window to close), so what is checked here
//! is everything after the console calls the handler: the first stop begins the graceful shutdown, a second
//! ends the run at once, and the handler of a closing console returns only once the run has ended, or when
//! Windows would end the process anyway. That Windows calls the handler for these events is unverified
//! here. Ctrl-C is tested on the binary (`tests/process.rs`: under Wine a SIGINT arrives as Ctrl-C).
//!
//! The handler serves one server per process, the last to catch the stops, and a closing console waits for
//! any run in the process to end: these tests run one at a time, each server catching the stops for itself.
#![cfg(windows)]

#[macro_use]
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::*;
use socklab::server::{Mode, Server, Summary};
use socklab::sys::simulate_console_stop;
use windows_sys::Win32::System::Console::{CTRL_BREAK_EVENT, CTRL_CLOSE_EVENT};

/// Held for the length of a test: one server in the process catches the stops at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A server in `mode` that catches the console's stops, running on a thread of its own.
struct Catching {
    mode: Mode,
    addr: SocketAddr,
    run: JoinHandle<std::io::Result<Summary>>,
    _turn: MutexGuard<'static, ()>,
}

fn catching(mode: Mode, shutdown_timeout: Duration) -> Catching {
    let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut server = Server::bind(
        mode,
        socklab::server::config::Config {
            shutdown_timeout,
            ..config()
        },
    )
    .unwrap_or_else(|e| panic!("{mode}: bind: {e}"));
    server.catch_signals().expect("catch the console's stops");
    let addr = server.local_addr();
    Catching {
        mode,
        addr,
        run: thread::spawn(move || server.run()),
        _turn: turn,
    }
}

impl Catching {
    /// Waits (bounded) for the run to end and returns what it counted.
    fn ended(self) -> Summary {
        let mode = self.mode;
        let deadline = Instant::now() + TIMEOUT;
        while !self.run.is_finished() {
            assert!(Instant::now() < deadline, "{mode}: the run did not end");
            thread::sleep(Duration::from_millis(10));
        }
        self.run
            .join()
            .unwrap_or_else(|_| panic!("{mode}: the server panicked"))
            .unwrap_or_else(|e| panic!("{mode}: the server failed: {e}"))
    }
}

each_mode! {
    fn ctrl_break_begins_a_graceful_shutdown_and_a_second_ends_it_at_once(mode) {
        let server = catching(mode, Duration::from_secs(60));
        let client = never_reading(server.addr);
        assert!(simulate_console_stop(CTRL_BREAK_EVENT), "{mode}: the handler takes Ctrl-Break");
        // The first Ctrl-Break is handled once the listener is closed (a sleep was a guess): a shutdown
        // under way accepts no one, and only then is the next Ctrl-Break a second one.
        eventually("a shutdown under way accepts no one", || {
            TcpStream::connect_timeout(&server.addr, Duration::from_secs(2)).is_err()
        });
        assert!(!server.run.is_finished(), "{mode}: the first Ctrl-Break waits for the replies owed");
        let second = Instant::now();
        assert!(simulate_console_stop(CTRL_BREAK_EVENT), "{mode}");
        let summary = server.ended();
        assert!(
            second.elapsed() < Duration::from_secs(5),
            "{mode}: the second Ctrl-Break took {:?}, not at once",
            second.elapsed()
        );
        assert!(summary.forced, "{mode}: {summary:?}");
        drop(client);
    }
}

each_mode! {
    fn a_closing_console_waits_for_the_replies_owed_then_lets_the_process_end(mode) {
        let server = catching(mode, Duration::from_secs(30));
        let mut client = connect(server.addr);
        client.write_all(b"owed\n").unwrap();
        // Served before the console closes: the reply waits, unread, in the client's socket.
        eventually("the request is read", || {
            let mut peek = [0u8; 5];
            client.peek(&mut peek).is_ok_and(|n| n == 5)
        });
        let closed = Instant::now();
        let handler = thread::spawn(|| simulate_console_stop(CTRL_CLOSE_EVENT));
        // The client keeps its connection a second longer: the handler must wait for it.
        thread::sleep(Duration::from_secs(1));
        assert!(!handler.is_finished(), "{mode}: the handler returned while the run went on");
        let mut reply = Vec::new();
        client.read_to_end(&mut reply).unwrap();
        assert_eq!(reply, b"OWED\n", "{mode}: what was owed, then the end of the stream");
        drop(client);
        assert!(handler.join().unwrap(), "{mode}: the handler takes the console's closing");
        let waited = closed.elapsed();
        assert!(
            waited < Duration::from_millis(4000),
            "{mode}: the handler returned {waited:?} after the close, not when the run ended"
        );
        let summary = server.ended();
        assert!(!summary.forced, "{mode}: {summary:?}");
        assert_eq!(summary.stats.bytes_out, 5, "{mode}: {summary:?}");
    }
}

/// Windows ends a process whose console is closing 5 s after the event, whatever its handler does: the
/// handler gives up waiting just before (4.5 s), so `--shutdown-timeout` is cut there (docs/09).
#[test]
fn a_closing_console_waits_no_longer_than_windows_allows() {
    let server = catching(Mode::Reactor, Duration::from_secs(30));
    let client = never_reading(server.addr);
    let closed = Instant::now();
    assert!(simulate_console_stop(CTRL_CLOSE_EVENT));
    let waited = closed.elapsed();
    assert!(
        (Duration::from_millis(4400)..Duration::from_millis(5000)).contains(&waited),
        "the handler waited {waited:?}"
    );
    assert!(
        !server.run.is_finished(),
        "the 30 s shutdown was still under way"
    );
    // What Windows would do next is end the process; here a second stop ends the run.
    assert!(simulate_console_stop(CTRL_BREAK_EVENT));
    assert!(server.ended().forced);
    drop(client);
}
