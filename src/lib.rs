//! socklab: a single-threaded event-loop server for TCP and UDP, grown from the classic "uppercase" socket
//! tutorials, and the tools to run, stress and understand it. Start with `docs/README.md`.
//!
//! A map, one line per module, each with the chapter of `docs/` that explains it:
//!
//! - [`service`]: what a request becomes (uppercase, echo or hello); pure bytes, no I/O. `docs/07-udp-and-tcp.md`
//! - [`hello`]: the welcome service's line framing and replies, and why `upper` needs no framing. `docs/07-udp-and-tcp.md`
//! - [`encoding`]: `--encoding utf-8|gbk`: GBK-safe uppercasing; text to bytes and back for clients. `docs/07-udp-and-tcp.md`
//! - [`reactor`]: the mio event loop, TCP and UDP on one port, one thread. `docs/04-reactor.md`
//! - [`datagrams`]: stage 4's datagrams in batches (`recvmmsg`/`sendmmsg`, with a plain fallback). `docs/07-udp-and-tcp.md`
//! - [`connection`]: one TCP connection: read, service, write, backpressure. `docs/06-connection.md`
//! - [`mode`]: `--mode`, and one `Server` that runs any of the four modes. `docs/02-blocking.md`
//! - [`blocking`]: the tutorials' iterative server, one TCP client at a time, UDP on its own thread. `docs/02-blocking.md`
//! - [`threaded`]: a thread per TCP client, as Python's `ThreadingTCPServer`. `docs/02-blocking.md`
//! - [`busy_poll`]: non-blocking sockets tried in a loop: one thread, one core burnt. `docs/03-busy-poll.md`
//! - [`net`]: binding both sockets to one port, the `listening on` line. `docs/07-udp-and-tcp.md`
//! - [`config`]: flags and limits shared by every server mode. `docs/09-running.md`
//! - [`timers`]: the reactor's deadlines (idle, minimum rate, write), a heap on its own thread. `docs/04-reactor.md`
//! - [`stats`]: counters and the one-line summary logged at exit. `docs/09-running.md`
//! - [`procfs`]: what a process costs, from `/proc` (CPU, threads, descriptors, memory). `docs/08-measuring.md`
//! - [`logging`]: `-v`, `-q` and `RUST_LOG` for every binary. `docs/09-running.md`
//! - [`client`]: the tutorials' client: one request, one whole reply, deadlines everywhere. `docs/08-measuring.md`
//! - [`stress`]: the load generator that checks every reply and measures latency. `docs/08-measuring.md`
//!
//! Serving from a program takes three lines (any mode; `socklab::reactor::Server` is the reactor alone):
//!
//! ```no_run
//! use socklab::mode::{Mode, Server};
//! let server = Server::bind(Mode::Reactor, socklab::config::Config::default())?;
//! println!("{}", socklab::net::listening_line(server.local_addr()));
//! server.run()?;
//! # Ok::<(), std::io::Error>(())
//! ```

pub mod blocking;
pub mod busy_poll;
pub mod client;
pub mod config;
pub mod connection;
pub mod datagrams;
pub mod encoding;
pub mod hello;
pub mod logging;
pub mod mode;
pub mod net;
pub mod procfs;
pub mod reactor;
pub mod service;
pub mod stats;
pub mod stress;
pub mod threaded;
pub mod timers;

/// The walk-through's chapters that hold Rust examples, compiled and run as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../docs/06-connection.md")]
pub struct ChapterSixExamples;
