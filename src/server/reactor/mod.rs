//! The reactor: one `mio::Poll` on one thread serving TCP and UDP on one port. This is socklab's default
//! server mode and the code `docs/04-reactor.md` walks through; the stage numbers in the comments below are
//! the numbers in that chapter's picture of one turn of the loop:
//!
//! ```text
//!  1 poll ─► 2 dispatch by token ─┬─► 3 accept until WouldBlock
//!                                 ├─► 4 datagrams until WouldBlock                      (../datagrams.rs)
//!                                 ├─► 5 read → core → write     ─► 6 WRITABLE on/off   (registered.rs)
//!                                 └─► signals, wake-up          ─► 10 shutdown
//!  7 revisit work left by budgets ─► 8 reap closed connections ─► 9 timers ─► back to 1  (timers.rs)
//! ```
//!
//! Connections live in a [`Slab`]; a connection's key plus [`FIRST_CONNECTION`] is its mio [`Token`].
//! What a read means, every timeout and how a connection ends are the connection core's
//! (`../connection/`), shared with every mode; this folder adds only what readiness needs: `mod.rs` the
//! loop, `registered.rs` one connection's socket and readiness flags, `timers.rs` the heap of deadlines.

pub mod registered;
pub mod timers;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token, Waker};
#[cfg(unix)]
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use self::registered::{Borrowed, Closed, Progress, Registered, READ_INTEREST};
use self::timers::Timers;
use super::capacity;
use super::config::Config;
use super::connection::{Account, Context};
use super::datagrams::{Answered, Batch};
use super::limits::{
    deadline_after, ACCEPT_BUDGET, ACCEPT_PAUSE, MIN_READ, READ_BUFFER, TURN_READ_BUDGET,
};
#[cfg(unix)]
use super::shutdown::{signal_name, SIGNALS as HANDLED};
use super::shutdown::{Shutdown, Verdict};
use super::sockets::{self, prepare_accepted, refuse, AcceptOutage};
use super::stats::{plural, Summary};
use super::trace::{self, trace_stage, Turn};
use crate::net::{interrupted, peer_left_before_accept, would_block};

/// The TCP listener.
pub const LISTENER: Token = Token(0);
/// The UDP socket.
pub const UDP: Token = Token(1);
/// SIGINT and SIGTERM, delivered through a self-pipe registered in the same poll (Unix).
pub const SIGNALS: Token = Token(2);
/// [`ShutdownHandle::shutdown`], for a server run inside another program (the tests, say); and on Windows
/// the console's stops (Ctrl-C, Ctrl-Break, closing it), which its handler thread queues, then wakes the poll.
pub const WAKER: Token = Token(3);
/// Connection tokens start here: token = slab key + `FIRST_CONNECTION`.
pub const FIRST_CONNECTION: usize = 4;

/// Readiness events taken from one poll.
const EVENTS_CAPACITY: usize = 1024;
/// Room reserved at start in each of the turn's lists (revisit, starved, reap), so that the first
/// connection to spend its read budget, say, does not allocate in the middle of a steady state
/// (tests/alloc.rs caught it on Windows, where reads go on until `WouldBlock` and spend budgets sooner).
/// Past this, a list grows once to its largest size and keeps it.
const LIST_CAPACITY: usize = 64;
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
    #[cfg(unix)]
    signals: Option<Signals>,
    /// Console stops queued by the console's handler thread, by name, for the next wake-up (Windows).
    #[cfg(windows)]
    stops: Arc<std::sync::Mutex<Vec<&'static str>>>,
    waker: Arc<Waker>,
    connections: Slab<Registered>,
    /// Every read lands here: one buffer for the whole reactor.
    input: Box<[u8]>,
    /// What every connection call is handed: the turn's clock, the rules, the reply buffer, the counters,
    /// the account of unsent replies.
    cx: Context,
    /// Buffers for a batch of datagrams and their replies.
    datagrams: Batch,
    /// Bytes all connections together may still read this turn (stage 5), so no mass of readers can
    /// stretch a turn; refilled before stages 2 and 7.
    turn_left: usize,
    /// Bytes one connection may read this turn: `--read-budget`, or less when so many connections are ready
    /// that the turn's total would not go round.
    share: usize,
    /// Tokens whose budget ran out with work left. Readiness is edge-triggered, so no new event would come
    /// for bytes already waiting: they are visited next turn, and that poll does not wait.
    revisit: Vec<Token>,
    listener_queued: bool,
    udp_queued: bool,
    /// Connections that stopped reading because the server's budget for unsent replies was spent, and the
    /// bytes the server held then: they are driven again (stage 7) once it holds less.
    starved: Vec<Token>,
    starved_at: usize,
    /// While connections wait for the reply budget, those that find room in it join the line behind them
    /// instead of reading ahead of them (`Progress::InLine`); then there is room, and stage 7 drives the line
    /// this turn whatever the server holds. `in_line_pass` is set while stage 7 drives it: its members read.
    line_has_room: bool,
    in_line_pass: bool,
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
        // mio's own UDP socket, not a raw descriptor: on Windows mio learns that a socket is drained only
        // from a `WouldBlock` met by its own calls (`crate::sys::DatagramSocket`).
        let udp = match bound.udp {
            Some(udp) => {
                udp.set_nonblocking(true)?;
                if let Err(e) =
                    socket2::SockRef::from(&udp).set_recv_buffer_size(UDP_RECEIVE_BUFFER)
                {
                    debug!("udp: cannot enlarge the receive buffer: {e}");
                }
                let mut udp = UdpSocket::from_std(udp);
                poll.registry()
                    .register(&mut udp, UDP, Interest::READABLE)?;
                Some(udp)
            }
            None => None,
        };
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let connection_cap = capacity::connection_cap(&config, capacity::SOCKET);
        let account = Arc::new(Account::new(config.max_unsent));
        Ok(Reactor {
            poll,
            local_addr: bound.local_addr,
            listener: Some(listener),
            udp,
            #[cfg(unix)]
            signals: None,
            #[cfg(windows)]
            stops: Arc::default(),
            waker,
            connections: Slab::new(),
            input: vec![0; READ_BUFFER].into_boxed_slice(),
            cx: Context::new(&config, account, READ_BUFFER),
            datagrams: Batch::default(),
            turn_left: TURN_READ_BUDGET,
            share: config.read_budget,
            revisit: Vec::with_capacity(LIST_CAPACITY),
            listener_queued: false,
            udp_queued: false,
            starved: Vec::with_capacity(LIST_CAPACITY),
            starved_at: 0,
            line_has_room: false,
            in_line_pass: false,
            reap: Vec::with_capacity(LIST_CAPACITY),
            shutdown: Shutdown::new(config.shutdown_timeout),
            timers: Timers::default(),
            accept_paused_until: None,
            outage: AcceptOutage::default(),
            connection_cap,
            next_id: 0,
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

    /// Handles SIGINT and SIGTERM inside the poll (on Windows, Ctrl-C, Ctrl-Break and closing the
    /// console, queued and announced by the waker): the first starts a graceful shutdown, the second ends
    /// the run at once. Only a program that owns its process (the binary) should call this.
    #[cfg(unix)]
    pub fn catch_signals(&mut self) -> io::Result<()> {
        let mut signals = Signals::new(HANDLED)?;
        self.poll
            .registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        self.signals = Some(signals);
        Ok(())
    }

    /// See the Unix version above.
    #[cfg(windows)]
    pub fn catch_signals(&mut self) -> io::Result<()> {
        let (stops, waker) = (Arc::clone(&self.stops), Arc::clone(&self.waker));
        crate::sys::catch_console_stops(Box::new(move |name| {
            stops.lock().unwrap_or_else(|e| e.into_inner()).push(name);
            // Only fails if the poll is gone, and then the server has stopped anyway.
            let _ = waker.wake();
        }))
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
        let mut revisiting = Vec::with_capacity(LIST_CAPACITY);
        loop {
            self.turn.begin();
            // 1. Poll. Wait for readiness, but not past the next deadline, and not at all if a budget left
            //    work over from the last turn, or if connections waiting for the server's reply budget can
            //    go on (a timer of the last turn dropped replies that held it: no event will say so).
            let timeout = if self.revisit.is_empty() && !self.starved_can_go_on() {
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
            let now = self.cx.clock.tick();
            if let Some(from) = slept_from {
                self.trace_poll(now - from, timeout, &events);
            }
            // What ran out of budget last turn, for stage 7; a spare vector keeps this allocation-free.
            std::mem::swap(&mut self.revisit, &mut revisiting);
            // This turn's read budget, shared by everyone ready: each connection gets an equal share of it
            // (never less than a read worth its system call), the others wait for the next turn.
            let ready = events.iter().count() + revisiting.len();
            self.refill(ready);

            // 2. Dispatch each event by its token.
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    UDP => self.answer_datagrams(),
                    SIGNALS | WAKER => match self.take_signals() {
                        Some(true) => return Ok(self.stop(true)),
                        Some(false) => {}
                        // The waker, with no signal behind it: a ShutdownHandle.
                        None if event.token() == WAKER
                            && self.shutdown.request(now) == Verdict::Begin =>
                        {
                            self.begin_shutdown("shutdown requested");
                        }
                        None => {}
                    },
                    token => self.connection_event(token, event),
                }
            }

            // 7. Revisit what ran out of budget last turn (taken before stage 2, so what runs out this turn
            //    waits for the next: one budget per connection per turn). They get a budget of their own,
            //    so connections with new events cannot keep them waiting forever.
            //    Once the turn's total is spent, the connections not reached keep their place at the head of
            //    the list, ahead of those served this turn (which go to its tail): a round robin. Put behind
            //    them instead, the same few hundred would be served turn after turn while the rest waited.
            let mut unreached = 0;
            if !revisiting.is_empty() {
                self.refill(ready);
            }
            for i in 0..revisiting.len() {
                let token = revisiting[i];
                if token.0 >= FIRST_CONNECTION && self.turn_left == 0 {
                    revisiting[unreached] = token;
                    unreached += 1;
                    continue;
                }
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
            if unreached > 0 {
                trace_stage!(
                    self.turn,
                    7,
                    "the turn's read budget is spent: {} keep their place at the head of the list",
                    plural(
                        unreached,
                        "connection not reached",
                        "connections not reached"
                    )
                );
            }
            // The next turn's list: those not reached, then those that ran out of budget this turn. The spare
            // vector keeps its memory, so this allocates nothing once the lists have grown. (With none left
            // unreached, those that ran out this turn are the list already.)
            if unreached > 0 {
                revisiting.truncate(unreached);
                revisiting.append(&mut self.revisit);
                std::mem::swap(&mut self.revisit, &mut revisiting);
            }
            revisiting.clear();

            // Connections that stopped for the server's reply budget, once replies have drained.
            if self.starved_can_go_on() {
                trace_stage!(
                    self.turn,
                    7,
                    "the server now holds {} B of unsent replies: {} reading again",
                    self.cx.account.held(),
                    plural(self.starved.len(), "connection starts", "connections start")
                );
                let starved = std::mem::take(&mut self.starved);
                // In the order they stopped: the first to wait is the first to read, and one that finds no
                // room yet goes back on the list in its place. Once one holding nothing finds none (the
                // least any connection needs), those behind it would not either: they keep their places
                // without being asked, so a long line costs a turn no more than the few it serves.
                self.line_has_room = false;
                self.in_line_pass = true;
                let mut asked = 0;
                for token in &starved {
                    let key = token.0 - FIRST_CONNECTION;
                    asked += 1;
                    if let Some(conn) = self.connections.get_mut(key) {
                        conn.starved = false;
                        if !conn.is_closed() {
                            self.drive(key);
                            let conn = &self.connections[key];
                            if conn.starved && conn.unsent() == 0 {
                                break;
                            }
                        }
                    }
                }
                for token in &starved[asked..] {
                    self.starved.push(*token);
                }
                self.in_line_pass = false;
                // Keep the vector's memory for the next time.
                let mut starved = starved;
                starved.clear();
                if self.starved.is_empty() {
                    self.starved = starved;
                } else {
                    self.starved.append(&mut starved);
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
                .over(Instant::now(), self.connections.len(), &mut self.cx.stats)
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

    /// Connections wait for the server's reply budget, and the server now holds fewer unsent bytes than when
    /// the last of them stopped: stage 7 drives them again.
    fn starved_can_go_on(&self) -> bool {
        !self.starved.is_empty() && (self.line_has_room || self.cx.account.held() < self.starved_at)
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
                    self.add_connection(stream, peer);
                }
                Err(ref e) if would_block(e) => {
                    self.outage.caught_up();
                    trace_stage!(self.turn, 3, "accept: none left (WouldBlock)");
                    return;
                }
                Err(ref e) if interrupted(e) => {}
                // The peer gave up between its connect and our accept: nothing to serve.
                Err(ref e) if peer_left_before_accept(e) => self.cx.stats.gone_before_accept += 1,
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
                    self.cx.stats.accept_pauses += 1;
                    self.accept_paused_until =
                        Some(deadline_after(self.cx.clock.now(), ACCEPT_PAUSE));
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
            // Over the cap: say so, in the service's words, and close.
            self.cx.stats.refused += 1;
            trace_stage!(
                self.turn,
                3,
                "refuse {peer}: {} open, the cap",
                self.connections.len()
            );
            refuse(socket2::SockRef::from(&stream), peer, self.cx.refusal());
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
        entry.insert(Registered::new(
            stream,
            token,
            key,
            self.next_id,
            peer,
            &mut self.cx,
        ));
        self.cx.stats.accepted += 1;
        debug!("{peer}: connected as conn {key}");
        trace_stage!(self.turn, 3, "accept {} ({peer})", token_name(token));
        // The greeting, if the service has one, goes out now, before anything is read.
        self.drive(key);
    }

    /// Stage 4. Answer datagrams until `WouldBlock`: one reply datagram per datagram, to its sender, read
    /// and sent in batches (`../datagrams.rs`).
    fn answer_datagrams(&mut self) {
        let Some(udp) = &self.udp else {
            return;
        };
        let answered = self
            .datagrams
            .answer_until_drained(udp, &mut self.cx, &self.turn, 4);
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

    /// Stages 5 and 6 for one connection (see `registered.rs`), then what its progress asks of the loop.
    fn drive(&mut self, key: usize) {
        let (conn, mut borrowed) = self.connection_and_borrowed(key);
        let progress = conn.drive(&mut borrowed);
        self.act_on(key, progress);
    }

    /// Refills the turn's read budget for `ready` connections: each may read an equal share of the turn's
    /// total, but never less than [`MIN_READ`] nor more than `--read-budget`.
    fn refill(&mut self, ready: usize) {
        self.turn_left = TURN_READ_BUDGET;
        self.share = if ready.saturating_mul(self.config.read_budget) <= TURN_READ_BUDGET {
            // Few ready: each its whole budget, with no division on the common path.
            self.config.read_budget
        } else {
            (TURN_READ_BUDGET / ready)
                .max(MIN_READ)
                .min(self.config.read_budget)
        };
    }

    /// One connection and what it borrows from the reactor while it is driven ([`Borrowed`]): the borrow
    /// of the slab and of the other fields, split so both can be used at once.
    fn connection_and_borrowed(&mut self, key: usize) -> (&mut Registered, Borrowed<'_>) {
        let wait_in_line = !self.starved.is_empty() && !self.in_line_pass;
        let Reactor {
            poll,
            connections,
            input,
            cx,
            timers,
            turn,
            share,
            turn_left,
            ..
        } = self;
        let borrowed = Borrowed {
            wait_in_line,
            cx,
            registry: poll.registry(),
            timers,
            input,
            share: *share,
            turn_left,
            turn: *turn,
        };
        (&mut connections[key], borrowed)
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
            Progress::Starved => {
                let conn = &mut self.connections[key];
                // One that holds unsent replies is woken by its own WRITABLE events as they drain, and a
                // client that never reads holds replies for good: only those holding nothing, which no
                // event will wake, wait in the line. So never-reading clients cannot lengthen it, and a
                // polite client's turn does not wait behind them.
                if conn.unsent() > 0 {
                    return;
                }
                if !conn.starved {
                    conn.starved = true;
                    self.starved_at = self.cx.account.held();
                    self.starved.push(Token(key + FIRST_CONNECTION));
                }
            }
            Progress::InLine => {
                // It found room, but others were waiting for it first: it reads in its turn, this turn.
                self.line_has_room = true;
                let conn = &mut self.connections[key];
                if !conn.starved {
                    conn.starved = true;
                    self.starved.push(Token(key + FIRST_CONNECTION));
                }
            }
            Progress::Done(why) => self.close(key, why),
        }
    }

    /// Stage 8's first half for one connection: out of the poll now, out of the slab at the end of the turn.
    fn close(&mut self, key: usize, why: Closed) {
        let conn = &mut self.connections[key];
        let text = why.describe();
        if matches!(why, Closed::Ended(end) if end.is_timeout()) {
            self.cx.stats.timed_out += 1;
            trace_stage!(self.turn, 9, "timer: conn {key}: {text}");
        }
        debug!("{}: closed ({text})", conn.peer());
        trace_stage!(
            self.turn,
            8,
            "conn {key} ({}) closed ({text}): out of the poll, its slot freed at the end of the turn",
            conn.peer()
        );
        conn.close(&mut self.cx, self.poll.registry());
        self.reap.push(key);
        self.cx.stats.closed += 1;
    }

    /// Stage 9 for connections: each whose check came due is handed to its core, which closes it if a
    /// timeout expired, tells the service if its own deadline passed, and otherwise asks for the next check.
    fn expire_timers(&mut self) {
        let now = self.cx.clock.now();
        while let Some(check) = self.timers.pop_due(now) {
            let key = check.token.0 - FIRST_CONNECTION;
            let Some(conn) = self.connections.get_mut(key) else {
                continue;
            };
            if conn.id() != check.id || conn.is_closed() {
                continue;
            }
            let (conn, mut borrowed) = self.connection_and_borrowed(key);
            let progress = conn.on_check(check.at, &mut borrowed);
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
        self.cx.stats.peak_timers = self.cx.stats.peak_timers.max(self.timers.entries());
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
            let token = Token(key + FIRST_CONNECTION);
            if conn.queued {
                self.revisit.retain(|t| *t != token);
            }
            if conn.starved {
                self.starved.retain(|t| *t != token);
            }
        }
        // Descriptors were freed: if accepting paused for lack of them, try again.
        if self.accept_paused_until.is_some() {
            self.resume_accepting();
        }
    }

    /// Handles the stops the OS sent since the last look: `None` if there were none, `Some(true)` if the run
    /// must end now (a second one).
    fn take_signals(&mut self) -> Option<bool> {
        // At most two matter; collected first because handling one borrows the whole reactor.
        let mut names = [None; 2];
        #[cfg(unix)]
        if let Some(signals) = &mut self.signals {
            for (slot, signal) in names.iter_mut().zip(signals.pending()) {
                *slot = Some(signal_name(signal));
            }
        }
        #[cfg(windows)]
        {
            let mut stops = self.stops.lock().unwrap_or_else(|e| e.into_inner());
            for (slot, name) in names.iter_mut().zip(stops.drain(..)) {
                *slot = Some(name);
            }
        }
        names[0]?;
        for name in names.into_iter().flatten() {
            match self.shutdown.signal(name, self.cx.clock.now()) {
                Verdict::Now => return Some(true),
                Verdict::Begin => self.begin_shutdown(name),
                Verdict::Already => {}
            }
        }
        Some(false)
    }

    /// Stage 10. Stop accepting and taking datagrams, and stop reading every connection: each delivers what
    /// it owes for what it has read, then closes (FIN, linger), by the deadline at the latest.
    fn begin_shutdown(&mut self, why: &str) {
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        if let Some(mut udp) = self.udp.take() {
            let _ = self.poll.registry().deregister(&mut udp);
        }
        let open: Vec<usize> = self
            .connections
            .iter()
            .filter(|(_, conn)| !conn.is_closed())
            .map(|(key, _)| key)
            .collect();
        self.shutdown.announce(why, open.len());
        trace_stage!(
            self.turn,
            10,
            "shutdown ({why}): listener and udp closed; {} reading",
            plural(open.len(), "connection stops", "connections stop")
        );
        self.cx.deadline = self.shutdown.deadline();
        for key in open {
            let (conn, mut borrowed) = self.connection_and_borrowed(key);
            let progress = conn.stop_reading(&mut borrowed);
            self.act_on(key, progress);
        }
    }

    fn stop(mut self, forced: bool) -> Summary {
        self.cx.stats.peak_unsent = self.cx.account.peak();
        info!("stopped: {}", self.cx.stats);
        Summary {
            stats: self.cx.stats,
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
