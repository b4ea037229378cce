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

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use crate::config::{self, Config};
use crate::connection::{Buffers, Connection, Context, Phase, Progress};
use crate::datagrams::{Answered, Batch};
use crate::net::{interrupted, would_block, Sockets};
use crate::stats::Stats;
use crate::timers::Timers;

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
/// How long accepting pauses when the process is out of descriptors, unless a connection closes sooner.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// The UDP receive buffer asked for (the kernel caps it at `net.core.rmem_max`). The default, about 200 KiB,
/// holds only about 200 small datagrams, because each costs the kernel about 1 KiB however small it is: 50
/// clients with 8 requests in flight lost about 200 of their first 400 requests to it (`RcvbufErrors` in
/// `/proc/net/snmp`). It is a limit, not an allocation: an idle socket costs nothing more.
const UDP_RECEIVE_BUFFER: usize = 4 * 1024 * 1024;
/// What a client over `--max-connections` is told before it is closed.
const TOO_MANY: &[u8] = b"ERR too many connections\n";

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
    /// Buffers for a batch of datagrams and their replies.
    datagrams: Batch,
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
    /// Idle, minimum-rate and write deadlines of every connection (stage 9).
    timers: Timers,
    /// Out of descriptors: no accept until then (or until a connection closes and frees one).
    accept_paused_until: Option<Instant>,
    /// The most connections served at once; the next client is refused.
    max_connections: usize,
    /// Serial number of the next connection, for its timers.
    next_id: u64,
    /// When this turn began; every deadline set during the turn counts from it.
    now: Instant,
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
        if let Err(e) =
            socket2::SockRef::from(&sockets.udp).set_recv_buffer_size(UDP_RECEIVE_BUFFER)
        {
            debug!("udp: cannot enlarge the receive buffer: {e}");
        }
        let mut udp = UdpSocket::from_std(sockets.udp);

        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        poll.registry()
            .register(&mut udp, UDP, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let max_connections = config::max_connections(&config);
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
            datagrams: Batch::default(),
            stats: Stats::default(),
            revisit: Vec::new(),
            listener_queued: false,
            udp_queued: false,
            reap: Vec::new(),
            deadline: None,
            signals_seen: 0,
            timers: Timers::default(),
            accept_paused_until: None,
            max_connections,
            next_id: 0,
            now: Instant::now(),
        })
    }

    /// The most TCP connections this server serves at once.
    pub fn max_connections(&self) -> usize {
        self.max_connections
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
            "serving {} over tcp and udp on {} (1 thread, mio reactor, at most {} connections)",
            self.config.service, self.local_addr, self.max_connections
        );
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        let mut revisiting = Vec::new();
        loop {
            // 1. Poll. Wait for readiness, but not past the next deadline, and not at all if a budget left
            //    work over from the last turn.
            let timeout = if self.revisit.is_empty() {
                let next = [self.deadline, self.timers.next(), self.accept_paused_until];
                next.into_iter()
                    .flatten()
                    .min()
                    .map(|at| at.saturating_duration_since(Instant::now()))
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if interrupted(&e) {
                    continue;
                }
                return Err(e);
            }
            self.now = Instant::now();

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

            // 8. Reap: free the slots of connections closed this turn. Their sockets close here, so if
            //    accepting was paused for lack of descriptors, there are some again.
            self.reap();

            // 9. Timers: connections whose idle, minimum-rate or write deadline came due; accepting that
            //    paused for lack of descriptors.
            self.expire_timers();
            if self
                .accept_paused_until
                .is_some_and(|until| until <= self.now)
            {
                self.resume_accepting();
            }
            // 10. Shutdown: done when every connection has flushed, or when the deadline passes.
            if self
                .stats
                .shutdown_over(self.deadline, self.connections.len())
            {
                return Ok(self.stop(false));
            }
        }
    }

    /// Stage 3. Accept until `WouldBlock` (or the accept budget is spent).
    fn accept(&mut self) {
        if self.accept_paused_until.is_some() {
            return;
        }
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
                    // Out of descriptors (EMFILE, ENFILE) or kernel memory. The client stays queued in the
                    // kernel; trying again at once would fail again, and a level-triggered loop would spin
                    // on it. Pause until a connection closes or a short timer runs out (stage 8 or 9).
                    warn!("accept failed: {e}; pausing accepts until a descriptor frees up");
                    self.stats.accept_pauses += 1;
                    self.accept_paused_until = Some(self.now + ACCEPT_PAUSE);
                    return;
                }
            }
        }
        if !self.listener_queued {
            self.listener_queued = true;
            self.revisit.push(LISTENER);
        }
    }

    fn resume_accepting(&mut self) {
        self.accept_paused_until = None;
        // Clients that queued meanwhile raised no new edge: look now.
        if !self.listener_queued {
            self.listener_queued = true;
            self.revisit.push(LISTENER);
        }
    }

    fn add_connection(&mut self, mut stream: TcpStream, peer: SocketAddr) {
        if self.connections.len() >= self.max_connections {
            // Over the cap: say so in one line and close. The socket is new, so its send buffer is empty and
            // takes the line whole; whatever the client sent is read first, so closing sends FIN, not RST.
            self.stats.refused += 1;
            debug!(
                "{peer}: refused, {} connections already",
                self.connections.len()
            );
            let _ = stream.write(TOO_MANY);
            let _ = stream.read(&mut self.buffers.input);
            return;
        }
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
        let key = entry.key();
        self.next_id += 1;
        let conn = entry.insert(Connection::new(
            stream,
            token,
            self.next_id,
            peer,
            self.config.session(),
            self.now,
        ));
        conn.schedule(&self.config, &mut self.timers);
        self.stats.accepted += 1;
        debug!("{peer}: connected as {token:?}");
        // The greeting, if the service has one, goes out now, before anything is read.
        let (conn, mut cx) = self.connection_and_context(key);
        let progress = conn.greet(&mut cx);
        self.settle(key, progress);
    }

    /// Stage 4. Answer datagrams until `WouldBlock`: one reply datagram per datagram, to its sender, read
    /// and sent in batches (`src/datagrams.rs`).
    fn answer_datagrams(&mut self) {
        let Some(udp) = &self.udp else {
            return;
        };
        let mut answered = 0;
        while answered < DATAGRAM_BUDGET {
            match self.datagrams.answer(udp, &self.config, &mut self.stats) {
                Answered::Drained(_) => return,
                Answered::More(n) => answered += n.max(1),
            }
        }
        if !self.udp_queued {
            self.udp_queued = true;
            self.revisit.push(UDP);
        }
    }

    /// Stage 2, for a connection's token: ignore tokens no longer (or never) in use, else drive the connection.
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

    /// Stages 5 and 6 for one connection (see `connection.rs`), then what its progress asks of the loop.
    fn drive(&mut self, key: usize) {
        let (conn, mut cx) = self.connection_and_context(key);
        let progress = conn.drive(&mut cx);
        self.settle(key, progress);
    }

    /// What a connection's progress asks of the loop: a revisit next turn, or closing it.
    /// One connection and what it borrows from the reactor while it is driven (`Context`): the borrow of
    /// the slab and of the other fields, split so both can be used at once.
    fn connection_and_context(&mut self, key: usize) -> (&mut Connection, Context<'_>) {
        let Server {
            poll,
            connections,
            buffers,
            stats,
            config,
            timers,
            now,
            deadline,
            ..
        } = self;
        let cx = Context {
            registry: poll.registry(),
            now: *now,
            timers,
            buffers,
            stats,
            config,
            draining: deadline.is_some(),
        };
        (&mut connections[key], cx)
    }

    fn settle(&mut self, key: usize, progress: Progress) {
        let conn = &mut self.connections[key];
        match progress {
            Progress::Idle => {}
            Progress::MoreToRead => {
                if !conn.queued {
                    conn.queued = true;
                    self.revisit.push(Token(key + FIRST_CONNECTION));
                }
            }
            Progress::Done(why) => self.close(key, why),
        }
    }

    /// Stage 8's first half for one connection: out of the poll now, out of the slab at the end of the turn.
    fn close(&mut self, key: usize, why: &str) {
        let conn = &mut self.connections[key];
        debug!("{}: closed ({why})", conn.peer());
        conn.close(self.poll.registry());
        self.reap.push(key);
        self.stats.closed += 1;
    }

    /// Stage 9 for connections: close those whose deadline passed, reschedule the others.
    fn expire_timers(&mut self) {
        while let Some(check) = self.timers.pop_due(self.now) {
            let key = check.token.0 - FIRST_CONNECTION;
            let Some(conn) = self.connections.get_mut(key) else {
                continue;
            };
            if conn.id() != check.id || conn.phase() == Phase::Closed {
                continue;
            }
            if let Err(why) = conn.on_check(check.at, self.now, &self.config, &mut self.timers) {
                self.stats.timed_out += 1;
                self.close(key, why);
            }
        }
        // Timer closes are reaped now rather than next turn, so their descriptors free up at once.
        self.reap();
    }

    /// Stage 8: free the slab slots of connections closed this turn; their sockets close here. No event of
    /// this turn is dispatched after this, so no stale event can reach a connection that reuses a slot.
    fn reap(&mut self) {
        if self.reap.is_empty() {
            return;
        }
        for key in self.reap.drain(..) {
            let conn = self.connections.remove(key);
            if conn.queued {
                let token = Token(key + FIRST_CONNECTION);
                self.revisit.retain(|t| *t != token);
            }
        }
        // Descriptors were freed: if accepting paused for lack of them, try again.
        if self.accept_paused_until.is_some() {
            self.resume_accepting();
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

    /// Stage 10. Stop accepting, stop taking datagrams, and close every connection with nothing in flight. The
    /// others finish what they have been sent, then close; the deadline cuts off those that do not.
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
        // A connection that looks quiet is driven once more, reading until `WouldBlock`: a request that arrived
        // after its last short read is answered rather than reset. Those still quiet close in `drive`.
        let quiet: Vec<usize> = self
            .connections
            .iter()
            .filter(|(_, conn)| conn.phase() == Phase::Open && conn.is_quiet())
            .map(|(key, _)| key)
            .collect();
        for key in quiet {
            self.connections[key].look_again();
            self.drive(key);
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
