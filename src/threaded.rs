//! `--mode threads`: Python's `socketserver.ThreadingTCPServer` model. One thread accepts; every TCP
//! connection gets an OS thread of its own running the same blocking loop as `--mode blocking`
//! ([`crate::blocking::serve_connection`]); UDP has its own thread as there. `--max-connections` caps the
//! threads: a client over the cap is told `ERR too many connections` and closed, rather than left waiting.
//! Walk-through: `docs/02-blocking.md`.
//!
//! Everything but the accept loop is shared with `blocking.rs`, including how the threads are stopped.

use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use log::{debug, warn};

use crate::blocking::{self, accept, handle, Shared, ShutdownHandle};
use crate::config::Config;
use crate::reactor::Summary;

/// What a client over `--max-connections` reads before the server closes its connection.
pub const REFUSAL: &[u8] = b"ERR too many connections\n";

/// The thread-per-connection server. [`Server::bind`], then [`Server::run`] until shut down. It is the
/// blocking server with another accept loop.
pub struct Server(blocking::Server);

impl Server {
    /// Binds the TCP listener and the UDP socket (one port for both). They stay blocking.
    pub fn bind(config: Config) -> io::Result<Server> {
        blocking::Server::bind(config).map(Server)
    }

    /// The address both sockets are bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.0.local_addr()
    }

    /// A handle that shuts this server down from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.0.shutdown_handle()
    }

    /// Handles SIGINT and SIGTERM as the reactor does, through a signal thread (see `blocking.rs`).
    pub fn catch_signals(&mut self) -> io::Result<()> {
        self.0.catch_signals()
    }

    /// Serves until shut down: this thread supervises, one accepts, one answers UDP, one per connection.
    pub fn run(self) -> io::Result<Summary> {
        let cap = crate::config::max_connections(self.0.config());
        let model = format!("threads: one thread per tcp client, at most {cap}, plus a udp thread");
        self.0.run_with(&model, accept_and_spawn)
    }
}

/// ThreadingTCPServer's loop: accept, hand the connection to a new thread, accept the next at once.
fn accept_and_spawn(shared: &Arc<Shared>, listener: &TcpListener) {
    while let Some((stream, peer)) = accept(shared, listener) {
        // The same cap as the reactor's: each connection is a descriptor (and here a thread too).
        let max = crate::config::max_connections(&shared.config);
        // Only this thread adds connections, so the count cannot grow between the check and the spawn.
        if shared.open_count() >= max {
            refuse(shared, stream, peer, max);
            continue;
        }
        let Some(key) = shared.open(&stream, peer) else {
            continue;
        };
        let spawned = shared.spawn_worker(format!("conn-{key}"), move |shared| {
            handle(shared, stream, peer, key)
        });
        if let Err(e) = spawned {
            // The connection went down with the closure that failed to start.
            warn!("{peer}: cannot start a thread for it, dropped: {e}");
            shared.close(key, &Default::default());
        }
    }
}

/// Tells a client over the cap why, then closes. A fresh socket's send buffer is empty, so the write does not
/// wait; the timeout only guards against the impossible. A client that had already sent bytes may see a reset
/// after the line, since the kernel resets a connection closed with unread input.
fn refuse(shared: &Shared, mut stream: TcpStream, peer: SocketAddr, max: usize) {
    shared.count_refused();
    debug!("{peer}: refused, {max} connections already open");
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = stream.write_all(REFUSAL);
    let _ = stream.shutdown(Shutdown::Write);
}
