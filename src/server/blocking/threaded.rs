//! `--mode threads`: Python's `socketserver.ThreadingTCPServer` model. One thread accepts; every TCP
//! connection gets an OS thread of its own running the same blocking loop as `--mode blocking`
//! ([`crate::server::blocking::serve_connection`]); UDP has its own thread as there. `--max-connections`
//! caps the threads: a client over the cap is told `ERR too many connections` and closed, rather than left
//! waiting. Walk-through: `docs/02-blocking.md`.
//!
//! Everything but the accept loop is shared with the blocking server (`mod.rs` and its folder), including
//! how the threads are stopped.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use log::warn;
use socket2::SockRef;

use super::{accept, serve_and_count, Blocking, Shared, ShutdownHandle};
use crate::server::capacity;
use crate::server::config::Config;
use crate::server::sockets::refuse;
use crate::server::stats::{plural, Summary};

/// The thread-per-connection server. [`Threaded::bind`], then [`Threaded::run`] until shut down. It is the
/// blocking server with another accept loop.
pub struct Threaded(Blocking);

impl Threaded {
    /// Binds the sockets (one port for both). They stay blocking.
    pub fn bind(config: Config) -> io::Result<Threaded> {
        Blocking::bind(config).map(Threaded)
    }

    /// The address the sockets are bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.0.local_addr()
    }

    /// A handle that shuts this server down from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.0.shutdown_handle()
    }

    /// Handles SIGINT and SIGTERM as the reactor does, through a signal thread (see `mod.rs`).
    pub fn catch_signals(&mut self) -> io::Result<()> {
        self.0.catch_signals()
    }

    /// Serves until shut down: this thread supervises, one accepts, one answers UDP, one per connection.
    pub fn run(self) -> io::Result<Summary> {
        // Each connection holds two descriptors and a thread: the cap follows from all three.
        let cap = capacity::connection_cap(self.0.config(), capacity::SOCKET_HANDLE_AND_THREAD);
        let model = format!(
            "threads: one thread per tcp client, at most {}, plus a udp thread",
            plural(cap, "thread", "threads")
        );
        self.0
            .run_with(&model, move |shared| accept_and_spawn(shared, cap))
    }
}

/// ThreadingTCPServer's loop: accept, hand the connection to a new thread, accept the next at once.
fn accept_and_spawn(shared: &Arc<Shared>, cap: usize) {
    while let Some((stream, peer)) = accept(shared) {
        // Only this thread adds connections, so the count cannot grow between the check and the spawn.
        if shared.open_count() >= cap {
            shared.count_refused();
            // Non-blocking, so the refusal cannot wait on this client while others queue.
            let _ = stream.set_nonblocking(true);
            refuse(SockRef::from(&stream), peer, shared.refusal());
            continue;
        }
        let Some(key) = shared.open(&stream, peer) else {
            continue;
        };
        let spawned = shared.spawn_worker(format!("conn-{key}"), move |shared| {
            serve_and_count(shared, stream, peer, key)
        });
        if let Err(e) = spawned {
            // The connection went down with the closure that failed to start.
            warn!("{peer}: cannot start a thread for it, dropped: {e}");
            shared.close(key, &Default::default());
        }
    }
}
