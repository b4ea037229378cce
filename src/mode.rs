//! The four ways `socklab-server` can serve the same service, and one [`Server`] that runs any of them, so
//! the binary and the tests pick a mode with a value rather than a type. `--mode` on the command line.
//! What each costs, measured: `docs/02-blocking.md`, `docs/03-busy-poll.md`, `docs/modes-results.md`.
//!
//! | mode | model | threads |
//! |---|---|---|
//! | `reactor` | one `mio::Poll`: wait for readiness, then serve what is ready (`reactor.rs`) | 1 |
//! | `blocking` | the tutorials' iterative server: one TCP client at a time (`blocking.rs`) | 3 (+1 for signals) |
//! | `threads` | `ThreadingTCPServer`: a thread per TCP client (`threaded.rs`) | 3 + clients (+1) |
//! | `busy-poll` | non-blocking sockets tried in a loop, never waiting (`busy_poll.rs`) | 1 |

use std::fmt;
use std::io;
use std::net::SocketAddr;

use crate::config::Config;
use crate::reactor::Summary;
use crate::{blocking, busy_poll, reactor, threaded};

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
}

impl Mode {
    /// Every mode, in the order the docs present them.
    pub const ALL: [Mode; 4] = [Mode::Reactor, Mode::Blocking, Mode::Threads, Mode::BusyPoll];

    /// The mode's name as the command line spells it.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Reactor => "reactor",
            Mode::Blocking => "blocking",
            Mode::Threads => "threads",
            Mode::BusyPoll => "busy-poll",
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

/// A bound server of any mode. The same calls as the reactor's `Server`: [`Server::bind`],
/// [`Server::local_addr`], [`Server::shutdown_handle`], [`Server::catch_signals`], [`Server::run`].
pub enum Server {
    // Boxed (here and busy-poll): they carry buffers inline and would make every variant as large.
    Reactor(Box<reactor::Server>),
    Blocking(blocking::Server),
    Threads(threaded::Server),
    BusyPoll(Box<busy_poll::Server>),
}

impl Server {
    /// Binds both sockets for `mode`. Port 0 picks a free port, the same for TCP and UDP.
    pub fn bind(mode: Mode, config: Config) -> io::Result<Server> {
        Ok(match mode {
            Mode::Reactor => Server::Reactor(Box::new(reactor::Server::bind(config)?)),
            Mode::Blocking => Server::Blocking(blocking::Server::bind(config)?),
            Mode::Threads => Server::Threads(threaded::Server::bind(config)?),
            Mode::BusyPoll => Server::BusyPoll(Box::new(busy_poll::Server::bind(config)?)),
        })
    }

    pub fn mode(&self) -> Mode {
        match self {
            Server::Reactor(_) => Mode::Reactor,
            Server::Blocking(_) => Mode::Blocking,
            Server::Threads(_) => Mode::Threads,
            Server::BusyPoll(_) => Mode::BusyPoll,
        }
    }

    /// The address both sockets are bound to (with the real port when the config asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        match self {
            Server::Reactor(s) => s.local_addr(),
            Server::Blocking(s) => s.local_addr(),
            Server::Threads(s) => s.local_addr(),
            Server::BusyPoll(s) => s.local_addr(),
        }
    }

    /// A handle that shuts this server down from another thread, as SIGTERM would.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(match self {
            Server::Reactor(s) => Handle::Reactor(s.shutdown_handle()),
            Server::Blocking(s) => Handle::Blocking(s.shutdown_handle()),
            Server::Threads(s) => Handle::Blocking(s.shutdown_handle()),
            Server::BusyPoll(s) => Handle::BusyPoll(s.shutdown_handle()),
        })
    }

    /// SIGINT and SIGTERM: the first shuts down gracefully, the second ends the run at once. Only a program
    /// that owns its process (the binary) should call this.
    pub fn catch_signals(&mut self) -> io::Result<()> {
        match self {
            Server::Reactor(s) => s.catch_signals(),
            Server::Blocking(s) => s.catch_signals(),
            Server::Threads(s) => s.catch_signals(),
            Server::BusyPoll(s) => s.catch_signals(),
        }
    }

    /// Serves until a shutdown has flushed every connection or passed its deadline.
    pub fn run(self) -> io::Result<Summary> {
        match self {
            Server::Reactor(s) => (*s).run(),
            Server::Blocking(s) => s.run(),
            Server::Threads(s) => s.run(),
            Server::BusyPoll(s) => (*s).run(),
        }
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
}

impl ShutdownHandle {
    pub fn shutdown(&self) {
        match &self.0 {
            Handle::Reactor(h) => h.shutdown(),
            Handle::Blocking(h) => h.shutdown(),
            Handle::BusyPoll(h) => h.shutdown(),
        }
    }
}
