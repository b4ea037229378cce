//! socklab: a single-threaded event-loop server for TCP and UDP, grown from the classic "uppercase" socket
//! tutorials, and the tools to run, stress and understand it. Start with `docs/README.md`.
//!
//! A map, one line per module, each with the chapter of `docs/` that explains it:
//!
//! - [`service`]: what a request becomes (uppercase or echo); pure bytes, no I/O. `docs/07-udp-and-tcp.md`
//! - [`reactor`]: the mio event loop, TCP and UDP on one port, one thread. `docs/04-reactor.md`
//! - [`connection`]: one TCP connection: read, service, write, backpressure. `docs/06-connection.md`
//! - [`net`]: binding both sockets to one port, the `listening on` line. `docs/07-udp-and-tcp.md`
//! - [`config`]: flags and limits shared by every server mode. `docs/09-running.md`
//! - [`stats`]: counters and the one-line summary logged at exit. `docs/09-running.md`
//! - [`logging`]: `-v`, `-q` and `RUST_LOG` for every binary. `docs/09-running.md`
//! - [`client`]: the tutorials' client: one request, one whole reply, deadlines everywhere. `docs/client-and-stress.md`
//! - [`stress`]: the load generator that checks every reply and measures latency. `docs/client-and-stress.md`
//!
//! Serving from a program takes three lines:
//!
//! ```no_run
//! let server = socklab::reactor::Server::bind(socklab::config::Config::default())?;
//! println!("{}", socklab::net::listening_line(server.local_addr()));
//! server.run()?;
//! # Ok::<(), std::io::Error>(())
//! ```

pub mod client;
pub mod config;
pub mod connection;
pub mod logging;
pub mod net;
pub mod reactor;
pub mod service;
pub mod stats;
pub mod stress;
