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
//!  A signals and shutdown flags ─► B try_accept ─► C try_datagrams ─► D Polled::try_once for each
//!  ─► E drop finished connections ─► F shutdown over? ─► G nothing happened: yield ─► A
//! ```
//!
//! What a read means, every timeout and how a connection ends are the same core the reactor uses
//! (`connection/`); only the waiting differs: each pass asks every connection's core whether a deadline
//! is due, where the reactor keeps a timer heap. Signals arrive as booleans checked every pass (set by
//! `signal_hook::flag` on Unix, by the console's handler on Windows): no self-pipe, since the loop never
//! sleeps long enough to need waking.

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
use super::connection::{Account, Connection, Context, Phase, Room};
use super::datagrams::Batch;
use super::limits::{ACCEPT_BUDGET, READ_BUFFER};
#[cfg(unix)]
use super::shutdown::{signal_name, SIGNALS};
use super::shutdown::{Shutdown, Verdict};
use super::sockets::{self, prepare_accepted, refuse, AcceptOutage};
use super::stats::{plural, Summary};
use super::trace::{self, trace_stage, Turn};
use super::transfer::{fin_if_due, flush, held_before, note_held};
use crate::net::{interrupted, peer_left_before_accept, would_block};

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
    conns: Vec<Polled>,
    requested: Arc<AtomicBool>,
    /// Set by the signal handlers, one flag per signal, looked at (and cleared) every pass.
    signals: Vec<(&'static str, Arc<AtomicBool>)>,
    shutdown: Shutdown,
    connection_cap: usize,
    /// An accept outage under way, logged when it begins and ends (not on every pass).
    outage: AcceptOutage,
    /// What every connection call is handed: the pass's clock, the rules, the reply buffer, the counters,
    /// the account of unsent replies.
    cx: Context,
    input: Box<[u8]>,
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
            requested: Arc::new(AtomicBool::new(false)),
            signals: Vec::new(),
            shutdown: Shutdown::new(config.shutdown_timeout),
            connection_cap: capacity::connection_cap(&config, capacity::SOCKET),
            outage: AcceptOutage::default(),
            cx: Context::new(
                &config,
                Arc::new(Account::new(config.max_unsent)),
                READ_BUFFER,
            ),
            input: vec![0; READ_BUFFER].into_boxed_slice(),
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

    /// Handles SIGINT and SIGTERM (on Windows, Ctrl-C, Ctrl-Break and closing the console): the first
    /// starts a graceful shutdown, the second ends the run at once. The handlers only set a flag; the loop,
    /// which never sleeps, sees it on its next pass.
    #[cfg(unix)]
    pub fn catch_signals(&mut self) -> io::Result<()> {
        for signal in SIGNALS {
            let flag = Arc::new(AtomicBool::new(false));
            signal_hook::flag::register(signal, Arc::clone(&flag))?;
            self.signals.push((signal_name(signal), flag));
        }
        Ok(())
    }

    /// See the Unix version above: one flag per kind of console stop.
    #[cfg(windows)]
    pub fn catch_signals(&mut self) -> io::Result<()> {
        self.signals = (0..=6)
            .filter_map(crate::sys::console_stop_name)
            .map(|name| (name, Arc::new(AtomicBool::new(false))))
            .collect();
        let flags = self.signals.clone();
        crate::sys::catch_console_stops(Box::new(move |name| {
            if let Some((_, flag)) = flags.iter().find(|(n, _)| *n == name) {
                flag.store(true, Ordering::SeqCst);
            }
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
            "serving {} over {over} on {} (1 thread, busy-polling non-blocking sockets, at most {})",
            self.config.service,
            self.local_addr,
            plural(self.connection_cap, "connection", "connections")
        );
        loop {
            self.turn.begin();
            let now = self.cx.clock.tick();
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
            let read_budget = self.config.read_budget;
            for conn in &mut self.conns {
                progress |= conn.try_once(&mut self.cx, &mut self.input, read_budget, self.turn);
            }

            // E. Drop finished connections (their sockets close here).
            let before = self.conns.len();
            self.conns.retain(|conn| !conn.done);
            self.cx.stats.closed += (before - self.conns.len()) as u64;

            // F. Shutdown: done when every connection has finished, or when the deadline passes.
            if self
                .shutdown
                .over(Instant::now(), self.conns.len(), &mut self.cx.stats)
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
                    if let Err(e) = stream.set_nonblocking(true) {
                        warn!("{peer}: cannot make the connection non-blocking, dropped: {e}");
                        continue;
                    }
                    if self.conns.len() >= self.connection_cap {
                        self.cx.stats.refused += 1;
                        refuse(SockRef::from(&stream), peer, self.cx.refusal());
                        continue;
                    }
                    prepare_accepted(&stream, peer, &self.config);
                    self.cx.stats.accepted += 1;
                    let id = self.cx.stats.accepted;
                    debug!("{peer}: connected as conn {id}");
                    trace_stage!(self.turn, "B", "accept conn {id} ({peer})");
                    let mut conn = Polled {
                        id,
                        conn: Connection::new(&mut self.cx),
                        stream,
                        peer,
                        done: false,
                    };
                    // The greeting, if the service has one, goes out now.
                    conn.write(&mut self.cx, self.turn);
                    self.conns.push(conn);
                }
                Err(ref e) if would_block(e) => {
                    self.outage.caught_up();
                    break;
                }
                Err(ref e) if interrupted(e) => {}
                // The peer gave up between its connect and our accept: nothing to serve.
                Err(ref e) if peer_left_before_accept(e) => self.cx.stats.gone_before_accept += 1,
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
        let before = self.cx.stats.datagrams_in;
        self.datagrams
            .answer_until_drained(udp, &mut self.cx, &self.turn, "C");
        self.cx.stats.datagrams_in > before
    }

    /// Stop accepting and taking datagrams; stop reading every connection: each delivers what it owes for
    /// what it has read, then closes (FIN, linger), by the deadline at the latest.
    fn begin_shutdown(&mut self, why: &str) {
        self.listener = None;
        self.udp = None;
        self.shutdown.announce(why, self.conns.len());
        self.cx.deadline = self.shutdown.deadline();
        for conn in &mut self.conns {
            conn.conn.stop_reading(&mut self.cx);
            conn.write(&mut self.cx, self.turn);
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

/// One TCP connection: the connection core every mode feeds, with none of what readiness needs (tokens, interest, edge
/// flags, a timer heap). Not told when its socket has room or bytes, it tries both on every pass, and asks
/// its core on every pass whether a deadline is due.
struct Polled {
    /// Its number, in the order accepted, as the trace names it.
    id: u64,
    conn: Connection,
    stream: TcpStream,
    peer: SocketAddr,
    /// Finished; it is dropped at the end of the pass.
    done: bool,
}

impl Polled {
    /// One try: a deadline that is due, what is pending, then one read (if there is room for its reply)
    /// and its reply. True if any byte moved or the connection finished.
    fn try_once(&mut self, cx: &mut Context, input: &mut [u8], budget: usize, turn: Turn) -> bool {
        if self.done {
            return false;
        }
        // Every deadline the reactor keeps in a heap, looked at every pass.
        let now = cx.clock.now();
        if self.conn.poll_at().is_some_and(|at| now >= at) {
            self.conn.on_timeout(cx);
        }
        let mut progress = self.write(cx, turn);
        if self.done {
            return true;
        }
        let limit = match self.conn.room(cx) {
            Room::Read(n) => n.min(input.len()).min(budget),
            Room::Full | Room::Starved | Room::Closed => return progress,
        };
        let lingering = self.conn.phase() == Phase::Lingering;
        match self.stream.read(&mut input[..limit]) {
            Ok(0) => {
                // The client half-closed: the service answers what it holds, then the close.
                self.conn.peer_closed(cx);
                progress = true;
            }
            Ok(n) => {
                let sent = cx.stats.bytes_out;
                let held = held_before(&self.conn);
                self.conn.received(cx, &input[..n]);
                note_held(self.peer, &self.conn, cx, held);
                let reply = self.conn.pending(cx).len();
                self.write(cx, turn);
                if !lingering {
                    trace_stage!(
                        turn,
                        "D",
                        "conn {} ({}): read {n} B → {reply} B reply, {} B written now",
                        self.id,
                        self.peer,
                        cx.stats.bytes_out - sent
                    );
                }
                progress = true;
            }
            Err(ref e) if would_block(e) || interrupted(e) => {}
            Err(e) => {
                self.finish(cx, &format!("read failed: {e}"), turn);
                return true;
            }
        }
        self.write(cx, turn) || progress
    }

    /// Writes what is pending (the socket is tried again every pass: nobody says when it has room), sends
    /// FIN when everything owed is out, and notes the end. True if any byte moved or it finished.
    fn write(&mut self, cx: &mut Context, turn: Turn) -> bool {
        let written = match flush(&mut self.stream, &mut self.conn, cx, false) {
            Ok(flushed) => flushed.written > 0,
            Err(e) => {
                self.finish(cx, &format!("write failed: {e}"), turn);
                return true;
            }
        };
        fin_if_due(&self.stream, &mut self.conn, cx);
        if let Phase::Done(end) = self.conn.phase() {
            if end.is_timeout() {
                cx.stats.timed_out += 1;
            }
            self.finish(cx, end.describe(), turn);
            return true;
        }
        written
    }

    fn finish(&mut self, cx: &mut Context, why: &str, turn: Turn) {
        debug!("{}: closed ({why})", self.peer);
        trace_stage!(turn, "E", "conn {} ({}) closed ({why})", self.id, self.peer);
        self.conn.release(cx);
        self.done = true;
    }
}
