//! socklab: a single-threaded event-loop server for TCP and UDP, grown from the classic "uppercase" socket
//! tutorials, and the tools to run, stress and understand it. Start with `docs/README.md`.
//!
//! A map. Two folders hold the architecture; each module's first line says its role, and each points at
//! the chapter of `docs/` that explains it.
//!
//! - [`service`]: what a request becomes; pure bytes, no I/O, shared by everything. One file (or folder)
//!   per service, each listed once in its registry (the `services!` call in [`service`], which
//!   [`service::Service::ALL`] follows), the interface they implement, and what they are built from
//!   ([`service::lines`], [`service::Clock`]). `docs/07-udp-and-tcp.md`, `docs/10-adding-a-service.md`
//! - [`server`]: one connection core with no I/O ([`server::connection`]: what a read means, every
//!   timeout, backpressure, FIN and linger), and five drivers that feed it, each a way to wait for clients
//!   ([`server::reactor`], the default, and [`server::blocking`], [`server::threaded`],
//!   [`server::busy_poll`], the designs it replaces, and `server::uring`, completion instead of readiness,
//!   Linux only: `docs/14-completion.md`), with what they share, written once
//!   ([`server::transfer`], [`server::shutdown`], ...). `docs/04-reactor.md`, `docs/06-connection.md`
//! - [`client`]: the tutorials' client: one request, one whole reply, deadlines everywhere.
//!   `docs/08-measuring.md`
//! - [`stress`]: the load generator that checks every reply and measures latency. `docs/08-measuring.md`
//! - [`encoding`]: `--encoding utf-8|gbk`: GBK-safe uppercasing; text to bytes and back for clients.
//!   `docs/07-udp-and-tcp.md`
//! - [`flags`]: durations in seconds for every binary, bounded so that no value a person types can panic.
//!   `docs/09-running.md`
//! - [`net`]: small socket helpers for everyone: the `listening on` line, the open-file limit, the error
//!   tests in match guards. `docs/07-udp-and-tcp.md`
//! - [`procfs`]: what a process costs (CPU, threads, descriptors, memory), as the OS layer reads it.
//!   `docs/08-measuring.md`
//! - [`sys`]: the OS layer: every system call std, mio and socket2 do not make for us (limits, datagrams in
//!   batches, socket options, `TCP_INFO`, a process's figures, the precise timer), split by OS; every
//!   `unsafe` block of the library is there. `docs/13-operating-systems.md`
//! - [`logging`]: `-v`, `-q` and `RUST_LOG` for every binary. `docs/09-running.md`
//! - `src/bin/`: the three binaries (`socklab-server`, `socklab-client`, `socklab-stress`); each only parses
//!   its flags and calls the library. `docs/09-running.md`
//!
//! A request's bytes go from the socket (the mode's driver in `server/`) to its connection's core
//! ([`server::connection::Connection`]), through the service's session, and back out through the driver's
//! write ([`server::transfer::flush`]); only what the kernel refuses waits in the connection's
//! [`server::connection::Outbox`].
//!
//! Serving from a program takes three lines (any mode; `socklab::server::reactor::Reactor` is the reactor
//! alone):
//!
//! ```no_run
//! use socklab::server::{config::Config, Mode, Server};
//! let config = Config::default();
//! let udp = config.service.datagrams().is_some();
//! let server = Server::bind(Mode::Reactor, config)?;
//! println!("{}", socklab::net::listening_line(server.local_addr(), udp));
//! server.run()?;
//! # Ok::<(), std::io::Error>(())
//! ```

pub mod client;
pub mod encoding;
pub mod flags;
pub mod logging;
pub mod net;
pub mod procfs;
pub mod server;
pub mod service;
pub mod stress;
pub mod sys;

/// The walk-through's chapters that hold Rust examples, compiled and run as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../docs/06-connection.md")]
pub struct ChapterSixExamples;

/// Chapter 10's worked example, a whole service file and the checks any service must pass, run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../docs/10-adding-a-service.md")]
pub struct ChapterTenExamples;
