//! The server: five ways to wait for clients around one connection core, and everything they share, written
//! once. `--mode` picks a driver; [`Server`] runs any of them, so the binary and the tests pick a mode with a
//! value rather than a type. What each costs, measured: `docs/02-blocking.md`, `docs/03-busy-poll.md`,
//! `docs/modes-results.md`.
//!
//! | mode | model | threads |
//! |---|---|---|
//! | `reactor` | one `mio::Poll`: wait for readiness, then serve what is ready ([`reactor`]) | 1 |
//! | `blocking` | the tutorials' iterative server: one TCP client at a time ([`blocking`]) | 3 (+1 for signals) |
//! | `threads` | `ThreadingTCPServer`: a thread per TCP client ([`threaded`], in `blocking/`) | 3 + clients (+1) |
//! | `busy-poll` | non-blocking sockets tried in a loop, never waiting ([`busy_poll`]) | 1 |
//! | `uring` | one io_uring: hand the kernel the operations, then wait for their completions (`uring/`, Linux only) | 1 |
//!
//! The core every driver feeds, and what the drivers share, one file per idea:
//!
//! - [`connection`]: one connection's whole life with no I/O: what a read means, every timeout, backpressure
//!   (per connection and for all of them together), FIN and linger, what a shutdown owes;
//! - [`transfer`]: writing what the core has pending and sending FIN, for every driver with a stream socket;
//! - [`datagrams`]: UDP in batches for the single-threaded modes;
//! - [`shutdown`]: the deadline, the signals' names, and the rule that a second signal exits at once;
//! - [`sockets`]: check the configuration, then bind; what every accepted connection gets; the refusal;
//! - [`capacity`]: how many connections each mode can afford, from what each one costs it;
//! - [`trace`]: `--trace`, one line per stage of each turn, free when off;
//! - [`limits`]: the shared constants, each with its reason; [`config`]: the flags; [`stats`]: the
//!   counters and the [`Summary`] every mode returns.
//!
//! A request's bytes go from the socket (the driver) to the [`connection`] core, through the service
//! (`crate::service`), and back out through the driver's write ([`transfer::flush`]). A driver never names
//! a service (`tests/layers.rs` checks it).

pub mod blocking;
pub mod busy_poll;
pub mod capacity;
pub mod config;
pub mod connection;
pub mod datagrams;
pub mod limits;
pub mod reactor;
pub mod shutdown;
pub mod sockets;
pub mod stats;
pub mod trace;
pub mod transfer;
#[cfg(target_os = "linux")]
pub mod uring;

pub use self::blocking::threaded;

use std::fmt;
use std::io;
use std::net::SocketAddr;

use self::blocking::Blocking;
use self::busy_poll::BusyPoll;
use self::config::Config;
use self::reactor::Reactor;
pub use self::stats::Summary;
use self::threaded::Threaded;

/// How a server waits for its clients.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Mode {
    /// One thread, one mio event loop: waits for readiness on every socket at once.
    #[default]
    Reactor,
    /// Blocking sockets, one TCP client at a time (plus a thread for UDP).
    Blocking,
    /// Blocking sockets, one thread per TCP client (plus one for UDP); capped by --max-connections.
    Threads,
    /// Non-blocking sockets tried in a loop on one thread: serves everyone, burns a core.
    BusyPoll,
    /// One thread, one io_uring: the kernel does each accept, receive and send and says when it is done
    /// (Linux 6.1 or later; refused at start elsewhere).
    Uring,
}

impl Mode {
    /// Every mode, in the order the docs present them.
    pub const ALL: [Mode; 5] = [
        Mode::Reactor,
        Mode::Blocking,
        Mode::Threads,
        Mode::BusyPoll,
        Mode::Uring,
    ];

    /// The mode's name as the command line spells it.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Reactor => "reactor",
            Mode::Blocking => "blocking",
            Mode::Threads => "threads",
            Mode::BusyPoll => "busy-poll",
            Mode::Uring => "uring",
        }
    }

    /// Whether two TCP clients can be served at the same time. Only `blocking` cannot: it serves the first
    /// client until it closes, and the second waits in the listen backlog.
    pub fn serves_clients_at_once(self) -> bool {
        self != Mode::Blocking
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A bound server of any mode: [`Server::bind`], [`Server::local_addr`], [`Server::shutdown_handle`],
/// [`Server::catch_signals`], [`Server::run`].
pub enum Server {
    // Boxed (here and busy-poll): they carry buffers inline and would make every variant as large.
    Reactor(Box<Reactor>),
    Blocking(Blocking),
    Threads(Threaded),
    BusyPoll(Box<BusyPoll>),
    #[cfg(target_os = "linux")]
    Uring(Box<uring::Uring>),
}

impl Server {
    /// Binds the sockets for `mode`. Port 0 picks a free port, the same for TCP and UDP.
    pub fn bind(mode: Mode, config: Config) -> io::Result<Server> {
        Ok(match mode {
            Mode::Reactor => Server::Reactor(Box::new(Reactor::bind(config)?)),
            Mode::Blocking => Server::Blocking(Blocking::bind(config)?),
            Mode::Threads => Server::Threads(Threaded::bind(config)?),
            Mode::BusyPoll => Server::BusyPoll(Box::new(BusyPoll::bind(config)?)),
            #[cfg(target_os = "linux")]
            Mode::Uring => Server::Uring(Box::new(uring::Uring::bind(config)?)),
            #[cfg(not(target_os = "linux"))]
            Mode::Uring => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "--mode uring is Linux's io_uring, and this build is not for Linux: it has no such \
                     mode; use --mode reactor",
                ))
            }
        })
    }

    pub fn mode(&self) -> Mode {
        match self {
            Server::Reactor(_) => Mode::Reactor,
            Server::Blocking(_) => Mode::Blocking,
            Server::Threads(_) => Mode::Threads,
            Server::BusyPoll(_) => Mode::BusyPoll,
            #[cfg(target_os = "linux")]
            Server::Uring(_) => Mode::Uring,
        }
    }

    /// The address the sockets are bound to (with the real port when the config asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        match self {
            Server::Reactor(s) => s.local_addr(),
            Server::Blocking(s) => s.local_addr(),
            Server::Threads(s) => s.local_addr(),
            Server::BusyPoll(s) => s.local_addr(),
            #[cfg(target_os = "linux")]
            Server::Uring(s) => s.local_addr(),
        }
    }

    /// A handle that shuts this server down from another thread, as SIGTERM would.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(match self {
            Server::Reactor(s) => Handle::Reactor(s.shutdown_handle()),
            Server::Blocking(s) => Handle::Blocking(s.shutdown_handle()),
            Server::Threads(s) => Handle::Blocking(s.shutdown_handle()),
            Server::BusyPoll(s) => Handle::BusyPoll(s.shutdown_handle()),
            #[cfg(target_os = "linux")]
            Server::Uring(s) => Handle::Uring(s.shutdown_handle()),
        })
    }

    /// SIGINT and SIGTERM (on Windows, Ctrl-C, Ctrl-Break and closing the console): the first shuts down
    /// gracefully, the second ends the run at once. Only a program that owns its process (the binary)
    /// should call this.
    pub fn catch_signals(&mut self) -> io::Result<()> {
        match self {
            Server::Reactor(s) => s.catch_signals(),
            Server::Blocking(s) => s.catch_signals(),
            Server::Threads(s) => s.catch_signals(),
            Server::BusyPoll(s) => s.catch_signals(),
            #[cfg(target_os = "linux")]
            Server::Uring(s) => s.catch_signals(),
        }
    }

    /// Serves until a shutdown has delivered what every connection is owed or passed its deadline.
    pub fn run(self) -> io::Result<Summary> {
        let summary = match self {
            Server::Reactor(s) => (*s).run(),
            Server::Blocking(s) => s.run(),
            Server::Threads(s) => s.run(),
            Server::BusyPoll(s) => (*s).run(),
            #[cfg(target_os = "linux")]
            Server::Uring(s) => (*s).run(),
        };
        // A closing console's handler waits for this before it lets the process end (`crate::sys`).
        #[cfg(windows)]
        crate::sys::console_stops_finished();
        summary
    }
}

/// Shuts a server of any mode down from another thread.
#[derive(Clone)]
pub struct ShutdownHandle(Handle);

#[derive(Clone)]
enum Handle {
    Reactor(reactor::ShutdownHandle),
    Blocking(blocking::ShutdownHandle),
    BusyPoll(busy_poll::ShutdownHandle),
    #[cfg(target_os = "linux")]
    Uring(uring::ShutdownHandle),
}

impl ShutdownHandle {
    pub fn shutdown(&self) {
        match &self.0 {
            Handle::Reactor(h) => h.shutdown(),
            Handle::Blocking(h) => h.shutdown(),
            Handle::BusyPoll(h) => h.shutdown(),
            #[cfg(target_os = "linux")]
            Handle::Uring(h) => h.shutdown(),
        }
    }
}
