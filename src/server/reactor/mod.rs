//! The reactor: one `mio::Poll` on one thread serving TCP and UDP on one port. This is socklab's default
//! server mode and the code `docs/04-reactor.md` walks through; the stage numbers in the comments below are
//! the numbers in that chapter's picture of one turn of the loop:
//!
//! ```text
//!  1 poll ─► 2 dispatch by token ─┬─► 3 accept until WouldBlock
//!                                 ├─► 4 datagrams until WouldBlock                      (../datagrams.rs)
//!                                 ├─► 5 read → service → write  ─► 6 WRITABLE on/off   (connection.rs)
//!                                 └─► signals, wake-up          ─► 10 shutdown
//!  7 revisit work left by budgets ─► 8 reap closed connections ─► 9 timers ─► back to 1  (timers.rs)
//! ```
//!
//! Connections live in a [`Slab`]; a connection's key plus [`FIRST_CONNECTION`] is its mio [`Token`].
//! What a read means and how a connection ends is shared with every mode (`../conversation.rs`); this
//! folder adds only what readiness needs.

pub mod connection;
pub mod timers;

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use self::connection::{Buffers, Connection, Context, Progress, READ_INTEREST};
use self::timers::Timers;
use super::capacity;
use super::config::Config;
use super::datagrams::{Answered, Batch};
use super::limits::{deadline_after, ACCEPT_BUDGET, ACCEPT_PAUSE, DATAGRAM_BUDGET};
use super::shutdown::{signal_name, Shutdown, Verdict, SIGNALS as HANDLED};
use super::sockets::{self, prepare_accepted, refuse, AcceptOutage};
use super::stats::{plural, Stats, Summary};
use super::trace::{self, trace_stage, Turn};
use crate::net::{interrupted, would_block};
use crate::service::Clock;

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

/// Readiness events taken from one poll.
const EVENTS_CAPACITY: usize = 1024;
/// The UDP receive buffer asked for (the kernel caps it at `net.core.rmem_max`). The default, about 200 KiB,
/// holds only about 200 small datagrams, because each costs the kernel about 1 KiB however small it is: 50
/// clients with 8 requests in flight lost about 200 of their first 400 requests to it (`RcvbufErrors` in
/// `/proc/net/snmp`). It is a limit, not an allocation: an idle socket costs nothing more.
const UDP_RECEIVE_BUFFER: usize = 4 * 1024 * 1024;

/// Asks a running reactor, from any thread, to shut down as SIGTERM would.
#[derive(Clone)]
pub struct ShutdownHandle(Arc<Waker>);

impl ShutdownHandle {
    pub fn shutdown(&self) {
        // A wake-up can only fail if the poll is gone, and then the server has stopped anyway.
        let _ = self.0.wake();
    }
}

/// The reactor server. [`Reactor::bind`], then [`Reactor::run`] until shut down.
pub struct Reactor {
    poll: Poll,
    config: Config,
    local_addr: SocketAddr,
    /// `None` once shutdown has begun: new connections are refused by the kernel.
    listener: Option<TcpListener>,
    /// `None` once shutdown has begun, and for a TCP-only service.
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
    shutdown: Shutdown,
    /// Idle, minimum-rate, write, linger and session deadlines of every connection (stage 9).
    timers: Timers,
    /// Out of descriptors: no accept until then (or until a connection closes and frees one).
    accept_paused_until: Option<Instant>,
    /// An accept outage under way, logged when it begins and ends.
    outage: AcceptOutage,
    /// The most connections served at once; the next client is refused.
    connection_cap: usize,
    /// Serial number of the next connection, for its timers.
    next_id: u64,
    /// When this turn began; every deadline set during the turn counts from it.
    clock: Clock,
    /// This turn's number, and whether it is traced (`server/trace.rs`).
    turn: Turn,
}

impl Reactor {
    /// Binds the TCP listener and, for a service that answers datagrams, the UDP socket (one port for
    /// both), and sets up the poll.
    pub fn bind(config: Config) -> io::Result<Reactor> {
        let bound = sockets::bind(&config)?;
        bound.tcp.set_nonblocking(true)?;
        let mut listener = TcpListener::from_std(bound.tcp);
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        if let Some(udp) = &bound.udp {
            udp.set_nonblocking(true)?;
            if let Err(e) = socket2::SockRef::from(udp).set_recv_buffer_size(UDP_RECEIVE_BUFFER) {
                debug!("udp: cannot enlarge the receive buffer: {e}");
            }
            poll.registry()
                .register(&mut SourceFd(&udp.as_raw_fd()), UDP, Interest::READABLE)?;
        }
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let connection_cap = capacity::connection_cap(&config, capacity::SOCKET);
        Ok(Reactor {
            poll,
            local_addr: bound.local_addr,
            listener: Some(listener),
            udp: bound.udp,
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
            shutdown: Shutdown::new(config.shutdown_timeout),
            timers: Timers::default(),
            accept_paused_until: None,
            outage: AcceptOutage::default(),
            connection_cap,
            next_id: 0,
            clock: Clock::new(),
            turn: Turn::new(trace::REACTOR),
            config,
        })
    }

    /// The address the sockets are bound to (with the real port when the config asked for port 0).
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
        let mut signals = Signals::new(HANDLED)?;
        self.poll
            .registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        self.signals = Some(signals);
        Ok(())
    }

    /// Runs the loop until a shutdown has delivered what every connection is owed or passed its deadline.
    pub fn run(mut self) -> io::Result<Summary> {
        let over = if self.udp.is_some() {
            "tcp and udp"
        } else {
            "tcp"
        };
        info!(
            "serving {} over {over} on {} (1 thread, mio reactor, at most {})",
            self.config.service,
            self.local_addr,
            plural(self.connection_cap, "connection", "connections")
        );
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        let mut revisiting = Vec::new();
        loop {
            self.turn.begin();
            // 1. Poll. Wait for readiness, but not past the next deadline, and not at all if a budget left
            //    work over from the last turn.
            let timeout = if self.revisit.is_empty() {
                let next = [
                    self.shutdown.deadline(),
                    self.timers.next(),
                    self.accept_paused_until,
                ];
                next.into_iter()
                    .flatten()
                    .min()
                    .map(|at| at.saturating_duration_since(Instant::now()))
            } else {
                Some(Duration::ZERO)
            };
            // Only a traced turn reads the clock before it sleeps.
            let slept_from = self.turn.on.then(Instant::now);
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if interrupted(&e) {
                    trace_stage!(self.turn, 1, "poll: interrupted by a signal; polling again");
                    continue;
                }
                return Err(e);
            }
            let now = self.clock.tick();
            if let Some(from) = slept_from {
                self.trace_poll(now - from, timeout, &events);
            }
            // What ran out of budget last turn, for stage 7; a spare vector keeps this allocation-free.
            std::mem::swap(&mut self.revisit, &mut revisiting);

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
                    WAKER => {
                        if self.shutdown.request(now) == Verdict::Begin {
                            self.begin_shutdown("shutdown requested");
                        }
                    }
                    token => self.connection_event(token, event),
                }
            }

            // 7. Revisit what ran out of budget last turn (taken before stage 2, so what runs out this turn
            //    waits for the next: one budget per connection per turn).
            for token in revisiting.drain(..) {
                match token {
                    LISTENER => {
                        trace_stage!(self.turn, 7, "revisit the listener");
                        self.listener_queued = false;
                        self.accept();
                    }
                    UDP => {
                        trace_stage!(self.turn, 7, "revisit udp");
                        self.udp_queued = false;
                        self.answer_datagrams();
                    }
                    token => {
                        let key = token.0 - FIRST_CONNECTION;
                        if let Some(conn) = self.connections.get_mut(key) {
                            conn.queued = false;
                            if !conn.is_closed() {
                                trace_stage!(self.turn, 7, "revisit conn {key}");
                                self.drive(key);
                            }
                        }
                    }
                }
            }

            // 8. Reap: free the slots of connections closed this turn. Their sockets close here, so if
            //    accepting was paused for lack of descriptors, there are some again.
            self.reap();

            // 9. Timers: connections whose deadlines came due; accepting that paused for lack of descriptors.
            self.expire_timers();
            if self.accept_paused_until.is_some_and(|until| until <= now) {
                self.resume_accepting();
            }
            // 10. Shutdown: done when every connection has finished, or when the deadline passes.
            if self
                .shutdown
                .over(Instant::now(), self.connections.len(), &mut self.stats)
            {
                trace_stage!(
                    self.turn,
                    10,
                    "shutdown over: {} left",
                    plural(self.connections.len(), "connection", "connections")
                );
                return Ok(self.stop(false));
            }
        }
    }

    /// Stage 1's trace line: how long the poll slept, with what timeout, and what woke it.
    fn trace_poll(&self, slept: Duration, timeout: Option<Duration>, events: &Events) {
        let limit = match timeout {
            None => "no timeout".to_string(),
            Some(t) if t.is_zero() => "timeout 0: work left from the last turn".to_string(),
            Some(t) => format!("timeout {}", trace::duration(t)),
        };
        let mut woke: Vec<String> = events
            .iter()
            .take(8)
            .map(|e| {
                let closed = e.is_read_closed() || e.is_error();
                let what = match (closed, e.is_readable(), e.is_writable()) {
                    (true, _, _) => "closed",
                    (false, true, true) => "readable, writable",
                    (false, true, false) => "readable",
                    (false, false, true) => "writable",
                    _ => "event",
                };
                format!("{} {what}", token_name(e.token()))
            })
            .collect();
        let count = events.iter().count();
        if count > woke.len() {
            woke.push(format!("and {} more", count - woke.len()));
        }
        let why = match (woke.is_empty(), timeout) {
            (false, _) => woke.join(", "),
            (true, Some(t)) if t.is_zero() => {
                "nothing new (it only looked, to go on with the work left)".to_string()
            }
            (true, _) => "a timer".to_string(),
        };
        trace_stage!(
            self.turn,
            1,
            "poll: slept {} ({limit}); woke for {why}",
            trace::duration(slept)
        );
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
                Ok((stream, peer)) => {
                    self.outage.accepted();
                    self.add_connection(stream, peer);
                }
                Err(ref e) if would_block(e) && self.turn.on => {
                    trace_stage!(self.turn, 3, "accept: none left (WouldBlock)");
                    return;
                }
                Err(ref e) if would_block(e) => return,
                Err(ref e) if interrupted(e) => {}
                // The peer gave up between its connect and our accept: nothing to serve.
                Err(ref e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    // Out of descriptors (EMFILE, ENFILE) or kernel memory. The client stays queued in the
                    // kernel; trying again at once would fail again, and a level-triggered loop would spin
                    // on it. Pause until a connection closes or a short timer runs out (stage 8 or 9).
                    self.outage.failed(&e);
                    trace_stage!(
                        self.turn,
                        3,
                        "accept failed ({e}): paused for {} or until a connection closes",
                        trace::duration(ACCEPT_PAUSE)
                    );
                    self.stats.accept_pauses += 1;
                    self.accept_paused_until = Some(deadline_after(self.clock.now(), ACCEPT_PAUSE));
                    return;
                }
            }
        }
        trace_stage!(
            self.turn,
            7,
            "accept budget ({ACCEPT_BUDGET}) spent: the listener is revisited next turn"
        );
        self.revisit_later(LISTENER);
    }

    fn resume_accepting(&mut self) {
        self.accept_paused_until = None;
        // Clients that queued meanwhile raised no new edge: look now.
        self.revisit_later(LISTENER);
    }

    /// Puts the listener or the UDP socket on the revisit list (stage 7), once.
    fn revisit_later(&mut self, token: Token) {
        let queued = match token {
            LISTENER => &mut self.listener_queued,
            _ => &mut self.udp_queued,
        };
        if !*queued {
            *queued = true;
            self.revisit.push(token);
        }
    }

    fn add_connection(&mut self, mut stream: TcpStream, peer: SocketAddr) {
        if self.connections.len() >= self.connection_cap {
            // Over the cap: say so in one line and close.
            self.stats.refused += 1;
            trace_stage!(
                self.turn,
                3,
                "refuse {peer}: {} open, the cap",
                self.connections.len()
            );
            refuse(socket2::SockRef::from(&stream), peer);
            return;
        }
        prepare_accepted(&stream, peer, &self.config);
        let entry = self.connections.vacant_entry();
        let key = entry.key();
        let token = Token(key + FIRST_CONNECTION);
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, token, READ_INTEREST)
        {
            warn!("{peer}: cannot register connection: {e}");
            return;
        }
        self.next_id += 1;
        let session = self.config.session();
        let conn = entry.insert(Connection::new(
            stream,
            token,
            key,
            self.next_id,
            peer,
            session,
            self.clock.now(),
        ));
        conn.schedule(&self.config, &mut self.timers);
        self.stats.accepted += 1;
        debug!("{peer}: connected as {token:?}");
        trace_stage!(self.turn, 3, "accept {} ({peer})", token_name(token));
        // The greeting, if the service has one, goes out now, before anything is read.
        let (conn, mut cx) = self.connection_and_context(key);
        let progress = conn.greet(&mut cx);
        self.act_on(key, progress);
    }

    /// Stage 4. Answer datagrams until `WouldBlock`: one reply datagram per datagram, to its sender, read
    /// and sent in batches (`../datagrams.rs`).
    fn answer_datagrams(&mut self) {
        let Some(udp) = &self.udp else {
            return;
        };
        let answered = self.datagrams.answer_until_drained(
            udp,
            &self.config,
            &mut self.stats,
            DATAGRAM_BUDGET,
            &self.turn,
        );
        if let Answered::More(n) = answered {
            trace_stage!(
                self.turn,
                7,
                "datagram budget spent ({n} answered): udp revisited next turn"
            );
            self.revisit_later(UDP);
        }
    }

    /// Stage 2, for a connection's token: ignore tokens no longer (or never) in use, else drive the connection.
    fn connection_event(&mut self, token: Token, event: &mio::event::Event) {
        let Some(key) = token.0.checked_sub(FIRST_CONNECTION) else {
            return;
        };
        match self.connections.get_mut(key) {
            // Closed earlier in this batch: the event was for it, and its slot is not reused until stage 8.
            Some(conn) if conn.is_closed() => {}
            Some(conn) => {
                conn.take_readiness(event);
                self.drive(key);
            }
            None => {}
        }
    }

    /// Stages 5 and 6 for one connection (see `connection.rs`), then what its progress asks of the loop.
    fn drive(&mut self, key: usize) {
        let (conn, mut cx) = self.connection_and_context(key);
        let progress = conn.drive(&mut cx);
        self.act_on(key, progress);
    }

    /// One connection and what it borrows from the reactor while it is driven (`Context`): the borrow of
    /// the slab and of the other fields, split so both can be used at once.
    fn connection_and_context(&mut self, key: usize) -> (&mut Connection, Context<'_>) {
        let Reactor {
            poll,
            connections,
            buffers,
            stats,
            config,
            timers,
            clock,
            shutdown,
            turn,
            ..
        } = self;
        let cx = Context {
            turn: *turn,
            registry: poll.registry(),
            clock,
            timers,
            buffers,
            stats,
            config,
            deadline: shutdown.deadline(),
        };
        (&mut connections[key], cx)
    }

    /// What a connection's progress asks of the loop: a revisit next turn, or closing it.
    fn act_on(&mut self, key: usize, progress: Progress) {
        match progress {
            Progress::Idle => {}
            Progress::MoreToRead => {
                let conn = &mut self.connections[key];
                if !conn.queued {
                    conn.queued = true;
                    trace_stage!(
                        self.turn,
                        7,
                        "conn {key}: budget spent with bytes perhaps waiting: revisited next turn"
                    );
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
        trace_stage!(
            self.turn,
            8,
            "conn {key} ({}) closed ({why}): out of the poll, its slot freed at the end of the turn",
            conn.peer()
        );
        conn.close(self.poll.registry());
        self.reap.push(key);
        self.stats.closed += 1;
    }

    /// Stage 9 for connections: close those whose deadline passed, tell sessions whose own deadline
    /// passed, reschedule the others.
    fn expire_timers(&mut self) {
        let now = self.clock.now();
        while let Some(check) = self.timers.pop_due(now) {
            let key = check.token.0 - FIRST_CONNECTION;
            let Some(conn) = self.connections.get_mut(key) else {
                continue;
            };
            if conn.id() != check.id || conn.is_closed() {
                continue;
            }
            let (conn, mut cx) = self.connection_and_context(key);
            let progress = conn.on_check(check.at, &mut cx);
            if let Progress::Done(why) = progress {
                self.stats.timed_out += 1;
                trace_stage!(self.turn, 9, "timer: conn {key}: {why}");
            }
            self.act_on(key, progress);
        }
        // Timer closes are reaped now rather than next turn, so their descriptors free up at once.
        self.reap();
        // Entries of connections that closed, or moved their deadline, would otherwise stay until they come
        // due: drop them once they could outnumber the live ones.
        let connections = &self.connections;
        self.timers.compact(connections.len(), |check| {
            check
                .token
                .0
                .checked_sub(FIRST_CONNECTION)
                .and_then(|key| connections.get(key))
                .is_some_and(|conn| conn.is_live_check(check))
        });
        self.stats.peak_timers = self.stats.peak_timers.max(self.timers.entries());
    }

    /// Stage 8: free the slab slots of connections closed this turn; their sockets close here. No event of
    /// this turn is dispatched after this, so no stale event can reach a connection that reuses a slot.
    fn reap(&mut self) {
        if self.reap.is_empty() {
            return;
        }
        trace_stage!(
            self.turn,
            8,
            "reap: {} freed",
            plural(self.reap.len(), "slot", "slots")
        );
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
        // At most two matter; collected first because handling one borrows the whole reactor.
        let mut names = [None; 2];
        for (slot, signal) in names.iter_mut().zip(signals.pending()) {
            *slot = Some(signal_name(signal));
        }
        for name in names.into_iter().flatten() {
            match self.shutdown.signal(name, self.clock.now()) {
                Verdict::Now => return true,
                Verdict::Begin => self.begin_shutdown(name),
                Verdict::Already => {}
            }
        }
        false
    }

    /// Stage 10. Stop accepting and taking datagrams, and stop reading every connection: each delivers what
    /// it owes for what it has read, then closes (FIN, linger), by the deadline at the latest.
    fn begin_shutdown(&mut self, why: &str) {
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        if let Some(udp) = self.udp.take() {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&udp.as_raw_fd()));
        }
        let open: Vec<usize> = self
            .connections
            .iter()
            .filter(|(_, conn)| !conn.is_closed())
            .map(|(key, _)| key)
            .collect();
        info!(
            "{why}: shutting down; delivering what {} owed (at most {:?})",
            plural(open.len(), "connection is", "connections are"),
            self.shutdown.timeout()
        );
        trace_stage!(
            self.turn,
            10,
            "shutdown ({why}): listener and udp closed; {} reading",
            plural(open.len(), "connection stops", "connections stop")
        );
        for key in open {
            let (conn, mut cx) = self.connection_and_context(key);
            let progress = conn.stop_reading(&mut cx);
            self.act_on(key, progress);
        }
    }

    fn stop(self, forced: bool) -> Summary {
        info!("stopped: {}", self.stats);
        Summary {
            stats: self.stats,
            forced,
        }
    }
}

/// A token as the trace names it.
fn token_name(token: Token) -> String {
    match token {
        LISTENER => "listener".into(),
        UDP => "udp".into(),
        SIGNALS => "signals".into(),
        WAKER => "waker".into(),
        Token(n) => format!("conn {}", n - FIRST_CONNECTION),
    }
}
