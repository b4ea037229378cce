//! `--mode blocking`: the tutorials' iterative server, with blocking `std::net` sockets. One thread accepts a
//! TCP connection and serves it until it closes, then accepts the next; a second client waits in the listen
//! backlog meanwhile. A blocking call waits on one socket only, so the UDP socket cannot share that thread:
//! it gets a thread of its own. Walk-through: `docs/02-blocking.md`.
//!
//! This folder holds both blocking modes and what they share:
//!
//! - this file: [`Blocking`], the iterative server's accept loop, and the accept both modes use;
//! - `threaded.rs`: `--mode threads`, the same server with a thread per connection ([`threaded`]);
//! - `connection.rs`: one TCP connection, start to end, in blocking calls, on the connection core every
//!   mode uses ([`serve_connection`]);
//! - `udp.rs`: the UDP thread's loop, one `recv_from` and one `send_to` per datagram ([`serve_udp`]);
//! - `supervisor.rs`: what the threads share ([`Shared`]: the config, the counters, the open connections,
//!   the account of unsent replies) and the supervisor that turns a signal or a [`ShutdownHandle`] into a
//!   shutdown with a deadline.
//!
//! # How blocking threads are stopped
//! A thread inside a blocking call cannot also wait for "please stop". So:
//! - the supervising thread takes the listener from [`Shared`] and wakes the thread blocked in `accept` by
//!   connecting to it (on Linux it also shuts the listener, `shutdown(SHUT_RD)`, which stops it listening
//!   and resets the connections still queued, never read from and owed nothing): `stop_listening`. The
//!   accepting thread holds the listener only while it waits in `accept`, so the socket closes as soon as
//!   no `accept` is under way, and new connections are refused from then on, on every OS, even while
//!   `--mode blocking` finishes its client (elsewhere than Linux a listener that is merely shut goes on
//!   queueing connections);
//! - reads and writes (TCP and UDP) wait at most [`TICK`], then look at the stop flag: a connection stops
//!   reading, delivers what it owes, sends FIN and lingers, exactly as in the reactor. (Shutting the read
//!   side of a connection instead would also wake the read, but Linux then discards bytes the client has
//!   sent and we have not read yet, and answers more with a reset.)
//! - a connection still open at the deadline is cut by `shutdown(Both)` on its socket from the supervising
//!   thread; its thread's next call fails at once.

mod connection;
mod supervisor;
pub mod threaded;
mod udp;

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use log::info;
#[cfg(unix)]
use signal_hook::iterator::Signals;
/// Windows' stops reach the supervisor by the console's handler, not by a signal thread: there is never
/// one of these to hand it.
#[cfg(not(unix))]
type Signals = std::convert::Infallible;

pub use self::connection::serve_connection;
pub(crate) use self::connection::{serve_and_count, tracing};
pub use self::supervisor::{Shared, ShutdownHandle};
pub use self::udp::serve_udp;
use super::config::Config;
use super::limits::TICK;
#[cfg(unix)]
use super::shutdown::SIGNALS;
use super::sockets::{self, AcceptOutage, Bound};
use super::stats::Summary;
use super::trace::{self, BLOCKING};
use crate::net::{interrupted, peer_left_before_accept};

/// The blocking server. [`Blocking::bind`], then [`Blocking::run`] until shut down.
pub struct Blocking {
    shared: Arc<Shared>,
    udp: Option<UdpSocket>,
    signals: Option<Signals>,
}

impl Blocking {
    /// Binds the TCP listener and, for a service that answers datagrams, the UDP socket (one port for
    /// both). They stay blocking.
    pub fn bind(config: Config) -> io::Result<Blocking> {
        let Bound {
            tcp,
            udp,
            local_addr,
        } = sockets::bind(&config)?;
        Ok(Blocking {
            shared: Shared::new(config, local_addr, tcp),
            udp,
            signals: None,
        })
    }

    /// The address the sockets are bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    pub(crate) fn config(&self) -> &Config {
        &self.shared.config
    }

    /// A handle that shuts this server down from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(Arc::clone(&self.shared))
    }

    /// Handles SIGINT and SIGTERM as the reactor does, through a signal thread (see the module docs).
    #[cfg(unix)]
    pub fn catch_signals(&mut self) -> io::Result<()> {
        self.signals = Some(Signals::new(SIGNALS)?);
        Ok(())
    }

    /// Handles Ctrl-C, Ctrl-Break and closing the console as SIGINT and SIGTERM are on Unix: the console's
    /// handler thread hands each to the supervisor.
    #[cfg(windows)]
    pub fn catch_signals(&mut self) -> io::Result<()> {
        let shared = Arc::clone(&self.shared);
        crate::sys::catch_console_stops(Box::new(move |name| {
            shared.request(supervisor::Request::Signal(name))
        }))
    }

    /// Serves until shut down: this thread supervises, one thread accepts and serves, one answers UDP.
    pub fn run(self) -> io::Result<Summary> {
        self.run_with(
            "blocking: one tcp client at a time, plus a udp thread",
            accept_and_serve,
        )
    }

    /// Serves with `accept_loop` on the TCP thread: the one thing `--mode threads` does differently
    /// (`threaded.rs`). Everything else, UDP, signals and the shutdown deadline, is this module's.
    pub(crate) fn run_with(
        self,
        model: &str,
        accept_loop: impl FnOnce(&Arc<Shared>) + Send + 'static,
    ) -> io::Result<Summary> {
        let over = if self.udp.is_some() {
            "tcp and udp"
        } else {
            "tcp"
        };
        info!(
            "serving {} over {over} on {} ({model})",
            self.shared.config.service, self.shared.local_addr
        );
        let Blocking {
            shared,
            udp,
            signals,
        } = self;
        if let Some(udp) = udp {
            shared.spawn_worker("udp".into(), move |shared| serve_udp(shared, &udp))?;
        }
        shared.spawn_worker("tcp".into(), accept_loop)?;
        let stop_accepting = || {
            if let Some(listener) = shared.take_listener() {
                stop_listening(&listener);
            }
        };
        Ok(shared.supervise(signals, stop_accepting))
    }
}

/// The iterative server's loop: accept one client, serve it to the end, accept the next.
fn accept_and_serve(shared: &Arc<Shared>) {
    while let Some((stream, peer)) = accept(shared) {
        if let Some(key) = shared.open(&stream, peer) {
            serve_and_count(shared, stream, peer, key);
        }
    }
}

/// The next connection, or `None` once shutdown has begun. Shared with `threaded.rs`.
pub(crate) fn accept(shared: &Shared) -> Option<(TcpStream, SocketAddr)> {
    let waiting_since = tracing().then(Instant::now);
    let mut outage = AcceptOutage::default();
    loop {
        // Held for this `accept` only: once the supervisor has taken the listener, this handle is the
        // last, and the socket closes when it is dropped.
        let listener = shared.listener()?;
        let accepted = listener.accept();
        drop(listener);
        if shared.stopping() {
            // The supervisor shut the listener to wake us (the error is EINVAL), or a client slipped in
            // just before: either way, stop.
            return None;
        }
        match accepted {
            Ok(accepted) => {
                outage.caught_up();
                if let Some(since) = waiting_since {
                    log::trace!(
                        target: BLOCKING,
                        "blocked in accept for {}: {} connects; {} more waiting in the backlog",
                        trace::duration(since.elapsed()),
                        accepted.1,
                        shared.backlog_text()
                    );
                }
                return Some(accepted);
            }
            Err(ref e) if interrupted(e) => {}
            // The peer gave up between its connect and our accept: nothing to serve.
            Err(ref e) if peer_left_before_accept(e) => shared.lock().stats.gone_before_accept += 1,
            Err(e) => {
                // Out of descriptors (EMFILE) or memory: retrying at once would spin, so pause first.
                outage.failed(&e);
                thread::sleep(TICK);
            }
        }
    }
}

/// Stops accepting: wakes the thread blocked in `accept`, which then sees the stop flag. The one way that
/// works on every system is to connect to the listener, so its `accept` returns (that connection is owed
/// nothing and is dropped). On Linux the listener is also shut (`shutdown(SHUT_RD)` stops it listening and
/// resets the connections still queued, which were never read from and are owed nothing); shutting a
/// listening socket does nothing on Windows and macOS, and FreeBSD reports an error for it, so it is not
/// tried there. What refuses new connections on those is closing the listener: the caller has taken it from
/// [`Shared`], so it closes when the caller drops it or the woken `accept` returns, whichever is last.
pub(crate) fn stop_listening(listener: &TcpListener) {
    #[cfg(target_os = "linux")]
    if let Err(e) = socket2::SockRef::from(listener).shutdown(std::net::Shutdown::Read) {
        log::warn!("cannot shut the listener: {e}");
    }
    let Ok(mut addr) = listener.local_addr() else {
        return;
    };
    // A listener on every interface is reached on loopback.
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    // Refused is fine too: on Linux the shut listener refuses, and its `accept` has returned already.
    let _ = TcpStream::connect_timeout(&addr, TICK);
}
