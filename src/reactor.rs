//! The reactor: one `mio::Poll` on one thread serving TCP and UDP on one port. This is socklab's default
//! server mode and the code `docs/04-reactor.md` walks through; the stage numbers in the comments below are
//! the numbers in that chapter's picture of one turn of the loop:
//!
//! ```text
//!  1 poll ─► 2 dispatch by token ─┬─► 3 accept until WouldBlock
//!                                 ├─► 4 datagrams until WouldBlock
//!                                 ├─► 5 read → service → write  ─► 6 WRITABLE on/off   (connection.rs)
//!                                 └─► signals, wake-up          ─► 10 shutdown
//!  7 revisit work left by budgets ─► 8 reap closed connections ─► 9 timers ─► back to 1
//! ```
//!
//! Connections live in a [`Slab`]; a connection's key plus [`FIRST_CONNECTION`] is its mio [`Token`].

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use crate::config::Config;
use crate::connection::{Buffers, Connection, Context, Phase, Progress};
use crate::net::{interrupted, would_block, Sockets};
use crate::stats::Stats;

/// The TCP listener.
pub const LISTENER: Token = Token(0);
/// The UDP socket.
pub const UDP: Token = Token(1);
/// SIGINT and SIGTERM, delivered through a self-pipe registered in the same poll.
pub const SIGNALS: Token = Token(2);
/// [`ShutdownHandle::shutdown`], for a server run inside another program (the tests, say).
pub const WAKER: Token = Token(3);
/// Connection tokens start here: token = slab key + `FIRST_CONNECTION`.
pub const FIRST_CONNECTION: usize = 4;

/// Connections accepted in one turn before the others get theirs.
const ACCEPT_BUDGET: usize = 256;
/// Datagrams answered in one turn before the others get theirs.
const DATAGRAM_BUDGET: usize = 256;
/// Readiness events taken from one poll.
const EVENTS_CAPACITY: usize = 1024;

/// How a run ended.
#[derive(Clone, Debug)]
pub struct Summary {
    /// What the server did.
    pub stats: Stats,
    /// A second signal arrived during shutdown: the server stopped without flushing.
    pub forced: bool,
}

/// Asks a running server, from any thread, to shut down as SIGTERM would.
#[derive(Clone)]
pub struct ShutdownHandle(Arc<Waker>);

impl ShutdownHandle {
    pub fn shutdown(&self) {
        // A wake-up can only fail if the poll is gone, and then the server has stopped anyway.
        let _ = self.0.wake();
    }
}

/// The reactor server. [`Server::bind`], then [`Server::run`] until shut down.
pub struct Server {
    poll: Poll,
    config: Config,
    local_addr: SocketAddr,
    /// `None` once shutdown has begun: new connections are refused by the kernel.
    listener: Option<TcpListener>,
    /// `None` once shutdown has begun.
    udp: Option<UdpSocket>,
    signals: Option<Signals>,
    waker: Arc<Waker>,
    connections: Slab<Connection>,
    buffers: Buffers,
    stats: Stats,
    /// Tokens whose budget ran out with work left. Readiness is edge-triggered, so no new event would come
    /// for bytes already waiting: they are visited next turn, and that poll does not wait.
    revisit: Vec<Token>,
    listener_queued: bool,
    udp_queued: bool,
    /// Slab keys closed this turn. They are freed only at its end, so no key is reused while events from
    /// this turn's batch, possibly for the closed connection, are still being dispatched.
    reap: Vec<usize>,
    /// When shutdown began, the moment it gives up on unflushed replies.
    deadline: Option<Instant>,
    signals_seen: usize,
}

impl Server {
    /// Binds the TCP listener and the UDP socket (one port for both) and sets up the poll.
    pub fn bind(config: Config) -> io::Result<Server> {
        config
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let sockets = Sockets::bind(SocketAddr::new(config.bind, config.port))?;
        let local_addr = sockets.local_addr()?;
        sockets.tcp.set_nonblocking(true)?;
        sockets.udp.set_nonblocking(true)?;
        let mut listener = TcpListener::from_std(sockets.tcp);
        let mut udp = UdpSocket::from_std(sockets.udp);

        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        poll.registry()
            .register(&mut udp, UDP, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        Ok(Server {
            poll,
            config,
            local_addr,
            listener: Some(listener),
            udp: Some(udp),
            signals: None,
            waker,
            connections: Slab::new(),
            buffers: Buffers::new(),
            stats: Stats::default(),
            revisit: Vec::new(),
            listener_queued: false,
            udp_queued: false,
            reap: Vec::new(),
            deadline: None,
            signals_seen: 0,
        })
    }

    /// The address both sockets are bound to (with the real port when the config asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle that shuts this server down from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(Arc::clone(&self.waker))
    }

    /// Handles SIGINT and SIGTERM inside the poll: the first starts a graceful shutdown, the second ends the
    /// run at once. Only a program that owns its process (the binary) should call this.
    pub fn catch_signals(&mut self) -> io::Result<()> {
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        self.poll
            .registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        self.signals = Some(signals);
        Ok(())
    }

    /// Runs the loop until a shutdown has flushed every connection or passed its deadline.
    pub fn run(mut self) -> io::Result<Summary> {
        info!(
            "serving {} over tcp and udp on {} ({} thread, mio reactor)",
            self.config.service, self.local_addr, 1
        );
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        let mut revisiting = Vec::new();
        loop {
            // 1. Poll. Wait for readiness, but not past the next deadline, and not at all if a budget left
            //    work over from the last turn.
            let timeout = if self.revisit.is_empty() {
                self.deadline
                    .map(|d| d.saturating_duration_since(Instant::now()))
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if interrupted(&e) {
                    continue;
                }
                return Err(e);
            }

            // 2. Dispatch each event by its token.
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    UDP => self.answer_datagrams(),
                    SIGNALS => {
                        if self.take_signals() {
                            return Ok(self.stop(true));
                        }
                    }
                    WAKER => self.begin_shutdown("shutdown requested"),
                    token => self.connection_event(token, event),
                }
            }

            // 7. Revisit what ran out of budget last turn. Swapping in a spare vector keeps this allocation-free.
            std::mem::swap(&mut self.revisit, &mut revisiting);
            for token in revisiting.drain(..) {
                match token {
                    LISTENER => {
                        self.listener_queued = false;
                        self.accept();
                    }
                    UDP => {
                        self.udp_queued = false;
                        self.answer_datagrams();
                    }
                    token => {
                        let key = token.0 - FIRST_CONNECTION;
                        if let Some(conn) = self.connections.get_mut(key) {
                            conn.queued = false;
                            if conn.phase() != Phase::Closed {
                                self.drive(key);
                            }
                        }
                    }
                }
            }

            // 8. Reap: free the slots of connections closed this turn. Their sockets close here.
            for key in self.reap.drain(..) {
                let conn = self.connections.remove(key);
                if conn.queued {
                    let token = Token(key + FIRST_CONNECTION);
                    self.revisit.retain(|t| *t != token);
                }
            }

            // 9. Timers. The only deadline so far is the shutdown's.
            // 10. Shutdown: done when every connection has flushed, or when the deadline passes.
            if let Some(deadline) = self.deadline {
                if self.connections.is_empty() {
                    return Ok(self.stop(false));
                }
                if Instant::now() >= deadline {
                    self.stats.dropped_at_shutdown = self.connections.len() as u64;
                    warn!(
                        "shutdown deadline passed: dropping {} connections with replies unsent",
                        self.connections.len()
                    );
                    return Ok(self.stop(false));
                }
            }
        }
    }

    /// 3. Accept until `WouldBlock` (or the accept budget is spent).
    fn accept(&mut self) {
        for _ in 0..ACCEPT_BUDGET {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => self.add_connection(stream, peer),
                Err(ref e) if would_block(e) => return,
                Err(ref e) if interrupted(e) => {}
                // The peer gave up between its connect and our accept: nothing to serve.
                Err(ref e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    // Out of descriptors (EMFILE/ENFILE) or memory. The pending connection stays queued in the
                    // kernel and is accepted when the listener next becomes ready.
                    warn!("accept failed: {e}");
                    return;
                }
            }
        }
        if !self.listener_queued {
            self.listener_queued = true;
            self.revisit.push(LISTENER);
        }
    }

    fn add_connection(&mut self, mut stream: TcpStream, peer: SocketAddr) {
        // Replies are small and answer a request: send them now, not after Nagle's delay.
        if let Err(e) = stream.set_nodelay(true) {
            debug!("{peer}: cannot set TCP_NODELAY: {e}");
        }
        let entry = self.connections.vacant_entry();
        let token = Token(entry.key() + FIRST_CONNECTION);
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, token, Interest::READABLE)
        {
            warn!("{peer}: cannot register connection: {e}");
            return;
        }
        entry.insert(Connection::new(
            stream,
            token,
            peer,
            self.config.service.session(),
        ));
        self.stats.accepted += 1;
        debug!("{peer}: connected as {token:?}");
    }

    /// 4. Answer datagrams until `WouldBlock`: one reply datagram per datagram, to its sender.
    fn answer_datagrams(&mut self) {
        let Some(udp) = &self.udp else {
            return;
        };
        let Buffers { input, output } = &mut self.buffers;
        for _ in 0..DATAGRAM_BUDGET {
            let (len, peer) = match udp.recv_from(input) {
                Ok(received) => received,
                Err(ref e) if would_block(e) => return,
                Err(ref e) if interrupted(e) => continue,
                Err(e) => {
                    // An ICMP error for an earlier reply (port unreachable) surfaces here on some systems.
                    // It concerns that one peer; the socket is fine.
                    self.stats.udp_errors += 1;
                    debug!("udp: receive error: {e}");
                    continue;
                }
            };
            self.stats.datagrams_in += 1;
            output.clear();
            self.config.service.datagram(&input[..len], output);
            match udp.send_to(output, peer) {
                Ok(_) => self.stats.datagrams_out += 1,
                // No room in the socket's send buffer now. UDP promises nothing, so drop it and count it;
                // retrying here would spin the loop.
                Err(ref e) if would_block(e) => self.stats.datagrams_dropped += 1,
                Err(e) => {
                    self.stats.datagrams_dropped += 1;
                    debug!("udp: reply to {peer} failed: {e}");
                }
            }
        }
        if !self.udp_queued {
            self.udp_queued = true;
            self.revisit.push(UDP);
        }
    }

    /// 2, for a connection's token: ignore tokens no longer (or never) in use, else drive the connection.
    fn connection_event(&mut self, token: Token, event: &mio::event::Event) {
        let Some(key) = token.0.checked_sub(FIRST_CONNECTION) else {
            return;
        };
        match self.connections.get_mut(key) {
            // Closed earlier in this batch: the event was for it, and its slot is not reused until stage 8.
            Some(conn) if conn.phase() == Phase::Closed => {}
            Some(conn) => {
                conn.note(event);
                self.drive(key);
            }
            None => {}
        }
    }

    /// 5 and 6 for one connection (see `connection.rs`), then what its progress asks of the loop.
    fn drive(&mut self, key: usize) {
        let conn = &mut self.connections[key];
        let mut cx = Context {
            registry: self.poll.registry(),
            buffers: &mut self.buffers,
            stats: &mut self.stats,
            config: &self.config,
            draining: self.deadline.is_some(),
        };
        match conn.drive(&mut cx) {
            Progress::Idle => {}
            Progress::MoreToRead => {
                if !conn.queued {
                    conn.queued = true;
                    self.revisit.push(Token(key + FIRST_CONNECTION));
                }
            }
            Progress::Done(why) => {
                debug!("{}: closed ({why})", conn.peer());
                close(
                    conn,
                    self.poll.registry(),
                    &mut self.reap,
                    &mut self.stats,
                    key,
                );
            }
        }
    }

    /// Returns true if the run must end now (a second signal).
    fn take_signals(&mut self) -> bool {
        let Some(signals) = &mut self.signals else {
            return false;
        };
        let mut names = Vec::new();
        for signal in signals.pending() {
            names.push(if signal == SIGINT {
                "SIGINT"
            } else {
                "SIGTERM"
            });
        }
        for name in names {
            self.signals_seen += 1;
            if self.signals_seen > 1 {
                warn!("{name} again: exiting now, without waiting for replies to flush");
                return true;
            }
            self.begin_shutdown(name);
        }
        false
    }

    /// 10. Stop accepting, stop taking datagrams, and close every connection with nothing in flight. The
    ///     others finish what they have been sent, then close; the deadline cuts off those that do not.
    fn begin_shutdown(&mut self, why: &str) {
        if self.deadline.is_some() {
            return;
        }
        self.deadline = Some(Instant::now() + self.config.shutdown_timeout);
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        if let Some(mut udp) = self.udp.take() {
            let _ = self.poll.registry().deregister(&mut udp);
        }
        let registry = self.poll.registry();
        for (key, conn) in self.connections.iter_mut() {
            if conn.phase() == Phase::Open && conn.is_quiet() {
                close(conn, registry, &mut self.reap, &mut self.stats, key);
            }
        }
        let busy = self.connections.len() - self.reap.len();
        info!(
            "{why}: shutting down; flushing {busy} busy connections (at most {:?})",
            self.config.shutdown_timeout
        );
    }

    fn stop(self, forced: bool) -> Summary {
        info!("stopped: {}", self.stats);
        Summary {
            stats: self.stats,
            forced,
        }
    }
}

/// Stage 8's first half for one connection: out of the poll now, out of the slab at the end of the turn.
fn close(
    conn: &mut Connection,
    registry: &Registry,
    reap: &mut Vec<usize>,
    stats: &mut Stats,
    key: usize,
) {
    conn.close(registry);
    reap.push(key);
    stats.closed += 1;
}
