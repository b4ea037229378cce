//! `--mode busy-poll`: non-blocking sockets without readiness notification. One thread goes round and
//! round: try to accept, try to receive datagrams, try to read (and write) every connection, again. Nothing
//! blocks, so it serves everyone from one thread like the reactor, but nothing waits either: while nobody
//! talks it keeps asking, and burns a core to learn that there is nothing to do. That cost is why readiness
//! notification (epoll, through mio) exists. Walk-through: `docs/03-busy-poll.md`.
//!
//! One pass of [`BusyPoll::run`], its steps lettered so they are not confused with the reactor's numbered
//! stages:
//!
//! ```text
//!  A signals and shutdown flags ─► B try_accept ─► C try_datagrams ─► D Conn::try_once for each
//!  ─► E drop finished connections ─► F shutdown over? ─► G nothing happened: yield ─► A
//! ```
//!
//! What a read means and how a connection ends is the same code the reactor uses (`conversation.rs`);
//! only the waiting differs. Signals arrive as [`signal_hook::flag`] booleans checked every pass: no signal
//! thread, and no self-pipe, since the loop never sleeps long enough to need waking.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use log::{debug, info, warn};
use socket2::SockRef;

use super::capacity;
use super::config::Config;
use super::conversation::{Conversation, Discarded, Phase};
use super::datagrams::Batch;
use super::limits::{ACCEPT_BUDGET, DATAGRAM_BUDGET, READ_BUFFER};
use super::shutdown::{signal_name, Shutdown, Verdict, SIGNALS};
use super::sockets::{self, prepare_accepted, refuse, AcceptOutage};
use super::stats::{plural, Stats, Summary};
use super::trace::{self, trace_stage, Turn};
use crate::net::{interrupted, would_block};
use crate::service::Clock;

/// Asks a running busy-poll server, from any thread, to shut down as SIGTERM would.
#[derive(Clone)]
pub struct ShutdownHandle(Arc<AtomicBool>);

impl ShutdownHandle {
    pub fn shutdown(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// The busy-polling server. [`BusyPoll::bind`], then [`BusyPoll::run`] until shut down.
pub struct BusyPoll {
    config: Config,
    local_addr: SocketAddr,
    /// `None` once shutdown has begun: new connections are refused by the kernel.
    listener: Option<TcpListener>,
    /// `None` once shutdown has begun, and for a TCP-only service.
    udp: Option<UdpSocket>,
    conns: Vec<Conn>,
    stats: Stats,
    requested: Arc<AtomicBool>,
    /// Set by the signal handlers, one flag per signal, looked at (and cleared) every pass.
    signals: Vec<(&'static str, Arc<AtomicBool>)>,
    shutdown: Shutdown,
    connection_cap: usize,
    /// An accept outage under way, logged when it begins and ends (not on every pass).
    outage: AcceptOutage,
    clock: Clock,
    input: Box<[u8]>,
    output: Vec<u8>,
    datagrams: Batch,
    /// This pass's number and whether it is traced (`server/trace.rs`).
    turn: Turn,
    /// Since when passes are counted for the trace's once-a-second line, how many, and how many found
    /// nothing to do.
    window: (Instant, u64, u64),
}

impl BusyPoll {
    /// Binds the sockets (one port) and makes them non-blocking.
    pub fn bind(config: Config) -> io::Result<BusyPoll> {
        let bound = sockets::bind(&config)?;
        bound.tcp.set_nonblocking(true)?;
        if let Some(udp) = &bound.udp {
            udp.set_nonblocking(true)?;
        }
        Ok(BusyPoll {
            local_addr: bound.local_addr,
            listener: Some(bound.tcp),
            udp: bound.udp,
            conns: Vec::new(),
            stats: Stats::default(),
            requested: Arc::new(AtomicBool::new(false)),
            signals: Vec::new(),
            shutdown: Shutdown::new(config.shutdown_timeout),
            connection_cap: capacity::connection_cap(&config, capacity::SOCKET),
            outage: AcceptOutage::default(),
            clock: Clock::new(),
            input: vec![0; READ_BUFFER].into_boxed_slice(),
            output: Vec::with_capacity(READ_BUFFER),
            datagrams: Batch::default(),
            turn: Turn::new(trace::BUSY_POLL),
            window: (Instant::now(), 0, 0),
            config,
        })
    }

    /// The address the sockets are bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle that shuts this server down from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(Arc::clone(&self.requested))
    }

    /// Handles SIGINT and SIGTERM: the first starts a graceful shutdown, the second ends the run at once. The
    /// handlers only set a flag; the loop, which never sleeps, sees it on its next pass.
    pub fn catch_signals(&mut self) -> io::Result<()> {
        for signal in SIGNALS {
            let flag = Arc::new(AtomicBool::new(false));
            signal_hook::flag::register(signal, Arc::clone(&flag))?;
            self.signals.push((signal_name(signal), flag));
        }
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
            "serving {} over {over} on {} (1 thread, busy-polling non-blocking sockets, at most {})",
            self.config.service,
            self.local_addr,
            plural(self.connection_cap, "connection", "connections")
        );
        loop {
            self.turn.begin();
            let now = self.clock.tick();
            // A. Signals and shutdown requests: flags, looked at every pass.
            if self.requested.swap(false, Ordering::SeqCst)
                && self.shutdown.request(now) == Verdict::Begin
            {
                self.begin_shutdown("shutdown requested");
            }
            for i in 0..self.signals.len() {
                let (name, ref flag) = self.signals[i];
                if flag.swap(false, Ordering::SeqCst) {
                    match self.shutdown.signal(name, now) {
                        Verdict::Now => return Ok(self.stop(true)),
                        Verdict::Begin => self.begin_shutdown(name),
                        Verdict::Already => {}
                    }
                }
            }

            // B-D. Try everything once. Most tries return WouldBlock: that is the cost of not being told.
            let mut progress = self.try_accept();
            progress |= self.try_datagrams();
            let mut pass = Pass {
                turn: self.turn,
                config: &self.config,
                clock: &self.clock,
                input: &mut self.input,
                output: &mut self.output,
                stats: &mut self.stats,
                deadline: self.shutdown.deadline(),
            };
            for conn in &mut self.conns {
                progress |= conn.try_once(&mut pass);
            }

            // E. Drop finished connections (their sockets close here).
            let before = self.conns.len();
            self.conns.retain(|conn| conn.done.is_none());
            self.stats.closed += (before - self.conns.len()) as u64;

            // F. Shutdown: done when every connection has finished, or when the deadline passes.
            if self
                .shutdown
                .over(Instant::now(), self.conns.len(), &mut self.stats)
            {
                return Ok(self.stop(false));
            }

            // G. A pass that found nothing to do gives the core to anyone else who wants it, then goes on at
            //    once. It does not sleep: a sleep would only trade the burnt core for added latency, and
            //    choosing between the two is exactly what readiness notification makes unnecessary.
            self.count_pass(progress, now);
            if !progress {
                thread::yield_now();
            }
        }
    }

    /// Counts the pass; once a second, when traced, says how many passes there were and how many of them
    /// found nothing: the core burnt to learn that nothing happened.
    fn count_pass(&mut self, progress: bool, now: Instant) {
        let (since, passes, empty) = &mut self.window;
        *passes += 1;
        *empty += u64::from(!progress);
        let elapsed = now.saturating_duration_since(*since);
        if elapsed >= std::time::Duration::from_secs(1) {
            trace_stage!(
                self.turn,
                "G",
                "{passes} passes in the last {}, {empty} of them found nothing to do",
                trace::duration(elapsed)
            );
            self.window = (now, 0, 0);
        }
    }

    /// Accepts until `WouldBlock` (or the budget is spent). True if anything was accepted.
    fn try_accept(&mut self) -> bool {
        let Some(listener) = &self.listener else {
            return false;
        };
        let mut progress = false;
        for _ in 0..ACCEPT_BUDGET {
            match listener.accept() {
                Ok((stream, peer)) => {
                    progress = true;
                    self.outage.accepted();
                    if let Err(e) = stream.set_nonblocking(true) {
                        warn!("{peer}: cannot make the connection non-blocking, dropped: {e}");
                        continue;
                    }
                    if self.conns.len() >= self.connection_cap {
                        self.stats.refused += 1;
                        refuse(SockRef::from(&stream), peer);
                        continue;
                    }
                    prepare_accepted(&stream, peer, &self.config);
                    self.stats.accepted += 1;
                    debug!("{peer}: connected as #{}", self.stats.accepted);
                    trace_stage!(
                        self.turn,
                        "B",
                        "accept conn #{} ({peer})",
                        self.stats.accepted
                    );
                    let mut conn = Conn {
                        id: self.stats.accepted,
                        stream,
                        peer,
                        conversation: Conversation::new(self.config.session()),
                        done: None,
                    };
                    if let Err(e) =
                        conn.conversation
                            .greet(&mut conn.stream, &mut self.output, &mut self.stats)
                    {
                        conn.finish(&format!("write failed: {e}"));
                    }
                    self.conns.push(conn);
                }
                Err(ref e) if would_block(e) => break,
                Err(ref e) if interrupted(e) => {}
                // The peer gave up between its connect and our accept: nothing to serve.
                Err(ref e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    // Out of descriptors (EMFILE) or memory: the connection stays queued; try next pass.
                    self.outage.failed(&e);
                    break;
                }
            }
        }
        progress
    }

    /// Answers datagrams until `WouldBlock` (or the budget is spent). True if any arrived.
    fn try_datagrams(&mut self) -> bool {
        let Some(udp) = &self.udp else {
            return false;
        };
        let before = self.stats.datagrams_in;
        self.datagrams.answer_until_drained(
            udp,
            &self.config,
            &mut self.stats,
            DATAGRAM_BUDGET,
            &self.turn,
        );
        self.stats.datagrams_in > before
    }

    /// Stop accepting and taking datagrams; stop reading every connection: each delivers what it owes for
    /// what it has read, then closes (FIN, linger), by the deadline at the latest.
    fn begin_shutdown(&mut self, why: &str) {
        self.listener = None;
        self.udp = None;
        info!(
            "{why}: shutting down; delivering what {} owed (at most {:?})",
            plural(self.conns.len(), "connection is", "connections are"),
            self.shutdown.timeout()
        );
        let deadline = self.shutdown.deadline();
        for conn in &mut self.conns {
            if let Err(e) =
                conn.conversation
                    .stop_reading(&mut conn.stream, &mut self.output, &mut self.stats)
            {
                conn.finish(&format!("write failed: {e}"));
            }
            if let Some(deadline) = deadline {
                conn.conversation.linger_no_later_than(deadline);
            }
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

/// What one pass lends each connection.
struct Pass<'a> {
    turn: Turn,
    config: &'a Config,
    clock: &'a Clock,
    input: &'a mut [u8],
    output: &'a mut Vec<u8>,
    stats: &'a mut Stats,
    deadline: Option<Instant>,
}

/// One TCP connection: the reactor's conversation, minus everything readiness needs (tokens, interest,
/// edge flags). Busy-poll keeps no timers but the linger's and the shutdown's.
struct Conn {
    /// Its number, in the order accepted, as the trace names it.
    id: u64,
    stream: TcpStream,
    peer: SocketAddr,
    conversation: Conversation,
    /// Why it finished, once it has; it is dropped at the end of the pass.
    done: Option<String>,
}

impl Conn {
    /// One try: flush what is pending, then one read (if there is room for its reply) and its reply, or
    /// while lingering one discarding read. True if any byte moved.
    fn try_once(&mut self, pass: &mut Pass<'_>) -> bool {
        if self.done.is_some() {
            return false;
        }
        match self.step(pass) {
            Ok(progress) => progress,
            Err(e) => {
                self.finish(&e.to_string());
                true
            }
        }
    }

    fn step(&mut self, pass: &mut Pass<'_>) -> io::Result<bool> {
        let conversation = &mut self.conversation;
        // Not told when the socket has room again, so try every pass.
        conversation.outbox_mut().unblock();
        // Older replies first: the stream stays in order.
        let mut progress = conversation.flush(&mut self.stream, pass.stats)? > 0;
        // A session's own deadline (an HTTP request whose headers never finish): looked at every pass.
        let now = pass.clock.now();
        if conversation.phase() == Phase::Open
            && conversation.session().deadline().is_some_and(|d| now >= d)
        {
            conversation.expire(&mut self.stream, pass.clock, pass.output, pass.stats)?;
            progress = true;
        }
        match conversation.phase() {
            Phase::Open => {
                let limit = conversation
                    .read_limit(pass.config)
                    .min(pass.input.len())
                    .min(pass.config.read_budget);
                if limit > 0 {
                    match self.stream.read(&mut pass.input[..limit]) {
                        Ok(0) => {
                            // The client half-closed: the service answers what it holds, then the close.
                            conversation.peer_closed(
                                &mut self.stream,
                                pass.clock,
                                pass.output,
                                pass.stats,
                            )?;
                            progress = true;
                        }
                        Ok(n) => {
                            let sent = pass.stats.bytes_out;
                            conversation.received(
                                &mut self.stream,
                                pass.clock,
                                &pass.input[..n],
                                pass.output,
                                pass.stats,
                            )?;
                            trace_stage!(
                                pass.turn,
                                "D",
                                "conn #{} ({}): read {n} B → {} B reply, {} B written now",
                                self.id,
                                self.peer,
                                pass.output.len(),
                                pass.stats.bytes_out - sent
                            );
                            progress = true;
                        }
                        Err(ref e) if would_block(e) || interrupted(e) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Phase::Lingering => {
                if conversation.linger_expired(pass.clock.now()) {
                    self.finish("closed: the peer did not close its side in time");
                    return Ok(true);
                }
                let budget = pass.config.read_budget;
                if conversation.discard(&mut self.stream, pass.input, budget)
                    == Discarded::PeerClosed
                {
                    progress = true;
                }
            }
            Phase::Flushing | Phase::Done => {}
        }
        if self
            .conversation
            .settle(&self.stream, pass.clock.now(), pass.deadline)
            == Phase::Done
        {
            self.finish("finished");
            progress = true;
        }
        Ok(progress)
    }

    fn finish(&mut self, why: &str) {
        debug!("{}: closed ({why})", self.peer);
        log::trace!(target: trace::BUSY_POLL, "E conn #{} ({}) closed ({why})", self.id, self.peer);
        self.done = Some(why.to_string());
    }
}
