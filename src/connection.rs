//! One TCP connection inside the reactor: its socket, its service state, its unsent replies, and
//! [`Connection::drive`], which moves its bytes (stages 5 and 6 of the loop in `docs/04-reactor.md`).
//! A connection's life, with its state diagram, is `docs/06-connection.md`.
//!
//! The rules, from Redis's `networking.c`: a reply is written the moment it exists; only what the kernel
//! does not take is buffered, and WRITABLE interest is registered only while something is buffered. A
//! connection whose buffered replies reach the high-water mark is not read until its peer reads.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use log::debug;
use mio::net::TcpStream;
use mio::{event::Event, Interest, Registry, Token};

use crate::config::Config;
use crate::net::{interrupted, would_block};
use crate::service::{Session, Step};
use crate::stats::Stats;
use crate::timers::{Check, Timers};

/// How long a connection the server closes waits for its peer's FIN before giving up (see `Phase::Lingering`).
const LINGER: Duration = Duration::from_secs(2);

/// Reads smaller than this are not worth a system call: under backpressure, wait until this much room is free.
const MIN_READ: usize = 4096;

/// Whether a short read means the receive queue was empty: true wherever readiness is edge-triggered
/// epoll or kqueue, which raise a new edge for every arrival; mio's Windows backend makes no such promise.
const SHORT_READ_DRAINS: bool = !cfg!(windows);

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Reading requests and writing replies.
    Open,
    /// Reading is over (the peer half-closed, or the service asked to close): flush the replies, then close.
    Flushing,
    /// The server closed its side (the service asked to, e.g. `exit`) while the peer may still be sending.
    /// Closing the socket now, with unread bytes, would send a reset that can destroy the last replies
    /// before the peer reads them; so the write side is shut (FIN), and what the peer still sends is read
    /// and discarded until its own FIN, or for at most `LINGER`.
    Lingering,
    /// Deregistered; its slab slot is freed at the end of the turn. Events for it still in this turn's batch
    /// are ignored, and because the slot stays taken until then, no new connection can receive them.
    Closed,
}

/// What [`Connection::drive`] left behind.
#[derive(Debug)]
pub enum Progress {
    /// Nothing to do until the next readiness event.
    Idle,
    /// Input may still be waiting but the read budget for this turn is spent: come back next turn.
    MoreToRead,
    /// The connection is finished; the reason is for the log.
    Done(&'static str),
}

/// Scratch space shared by every connection of one reactor, so a connection that keeps up owns no buffer.
pub struct Buffers {
    /// Every read lands here: one buffer for the whole reactor, also big enough for any UDP datagram.
    pub input: Box<[u8]>,
    /// Replies are built here and written at once; only what the socket does not take is copied out.
    pub output: Vec<u8>,
}

impl Buffers {
    /// Enough for the largest UDP datagram (65,507 bytes over IPv4, 65,527 over IPv6).
    pub const INPUT_SIZE: usize = 64 * 1024;

    pub fn new() -> Buffers {
        Buffers {
            input: vec![0; Self::INPUT_SIZE].into_boxed_slice(),
            output: Vec::with_capacity(Self::INPUT_SIZE),
        }
    }
}

impl Default for Buffers {
    fn default() -> Self {
        Self::new()
    }
}

/// What a connection borrows from its reactor while it is driven.
pub struct Context<'a> {
    pub registry: &'a Registry,
    /// The time this turn of the loop began: one clock read per turn, not one per read.
    pub now: Instant,
    pub timers: &'a mut Timers,
    pub buffers: &'a mut Buffers,
    pub stats: &'a mut Stats,
    pub config: &'a Config,
    /// The server is shutting down: a connection with nothing in flight is finished.
    pub draining: bool,
}

/// One TCP connection: the value stored in the reactor's slab, under the key its token names.
pub struct Connection {
    stream: TcpStream,
    token: Token,
    /// A serial number, so a timer set for an earlier connection in the same slot does not touch this one.
    id: u64,
    peer: SocketAddr,
    phase: Phase,
    /// The service's state for this stream (a character split across reads, an unfinished line).
    session: Session,
    /// Replies the kernel has not taken yet, oldest first. Empty and unallocated while the peer keeps up;
    /// never more than the high-water mark.
    pending: Vec<u8>,
    /// Readiness is edge-triggered: an event says bytes arrived, and only a read that returns `WouldBlock`
    /// says all of them were taken. Until then this stays true, even when we stop reading for fairness or
    /// backpressure.
    may_read: bool,
    /// An event said the peer closed its side, or the socket has an error: only a read can say what is left
    /// (a last request, then 0 or the error), and no further event will come for it. Until a read returns
    /// `WouldBlock`, 0 or the error, a short read does not end reading (see the short-read rule in `drive`).
    closed_seen: bool,
    /// A write returned `WouldBlock`: write nothing more until a WRITABLE event says there is room.
    write_blocked: bool,
    /// WRITABLE interest is registered (only while `pending` is not empty).
    wants_write: bool,
    /// Already on the reactor's list of connections to revisit next turn.
    pub queued: bool,
    /// When the current idle window began, and the bytes received since (the idle and minimum-rate rule).
    window_start: Instant,
    window_bytes: u64,
    /// When a write last made progress, or when replies began to wait (the write timeout counts from here).
    last_write: Instant,
    /// When this connection next wants stage 9 to look at it: its one live entry in the timer heap.
    check_at: Option<Instant>,
    /// The peer sent its FIN (a read returned 0).
    peer_done: bool,
    /// While `Lingering`: when to stop waiting for the peer's FIN.
    linger_until: Option<Instant>,
}

impl Connection {
    /// A newly accepted connection, already registered for READABLE under `token`.
    pub fn new(
        stream: TcpStream,
        token: Token,
        id: u64,
        peer: SocketAddr,
        session: Session,
        now: Instant,
    ) -> Connection {
        Connection {
            stream,
            token,
            id,
            peer,
            phase: Phase::Open,
            session,
            pending: Vec::new(),
            may_read: false,
            closed_seen: false,
            write_blocked: false,
            wants_write: false,
            queued: false,
            window_start: now,
            window_bytes: 0,
            last_write: now,
            check_at: None,
            peer_done: false,
            linger_until: None,
        }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// The time stage 9 should look at this connection next, given the timeouts in `config`.
    fn next_check(&self, config: &Config) -> Option<Instant> {
        let idle = config.idle_timeout.map(|t| self.window_start + t);
        let write = config
            .write_timeout
            .filter(|_| !self.pending.is_empty())
            .map(|t| self.last_write + t);
        [idle, write, self.linger_until].into_iter().flatten().min()
    }

    /// Puts a check in the heap if this connection now needs one sooner than the one it has.
    pub fn schedule(&mut self, config: &Config, timers: &mut Timers) {
        let next = self.next_check(config);
        if let Some(at) = next {
            if self.check_at.is_none_or(|current| at < current) {
                self.check_at = Some(at);
                timers.schedule(Check {
                    at,
                    token: self.token,
                    id: self.id,
                });
            }
        }
    }

    /// Stage 9 for one connection whose check came due at `at`: `Err` with the reason if a timeout expired;
    /// otherwise the next check is scheduled. A check that is no longer this connection's is ignored.
    pub fn on_check(
        &mut self,
        at: Instant,
        now: Instant,
        config: &Config,
        timers: &mut Timers,
    ) -> Result<(), &'static str> {
        if self.check_at != Some(at) {
            return Ok(());
        }
        self.check_at = None;
        if self.linger_until.is_some_and(|until| now >= until) {
            return Err("closed: the peer did not close its side in time");
        }
        if let Some(limit) = config.write_timeout {
            if !self.pending.is_empty() && now >= self.last_write + limit {
                return Err("write timeout: the peer stopped reading its replies");
            }
        }
        if let Some(window) = config.idle_timeout {
            if now >= self.window_start + window {
                // Only a connection the server is waiting on counts as idle: one whose replies wait for its
                // peer to read is the write timeout's business, and one that has half-closed has nothing to say.
                let waiting_on_peer = self.phase == Phase::Open && self.pending.is_empty();
                let needed = (config.min_rate.saturating_mul(window.as_secs())).max(1);
                if waiting_on_peer && self.window_bytes < needed {
                    return Err(if self.window_bytes == 0 {
                        "idle timeout"
                    } else {
                        "too slow: under --min-rate"
                    });
                }
                self.window_start = now;
                self.window_bytes = 0;
            }
        }
        self.schedule(config, timers);
        Ok(())
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Reply bytes held because the peer has not read them yet.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Nothing is being read or written: the connection can be closed without losing a reply.
    pub fn is_quiet(&self) -> bool {
        !self.may_read && self.pending.is_empty()
    }

    /// Sends what the service says first (`hello`'s welcome) the moment the connection is accepted, by the
    /// same rule as every reply: written now, buffered only if the kernel does not take it all.
    pub fn greet(&mut self, cx: &mut Context<'_>) -> Progress {
        let out = &mut cx.buffers.output;
        out.clear();
        self.session.greeting(out);
        if out.is_empty() {
            return Progress::Idle;
        }
        if let Err(e) = self.reply(cx) {
            debug!("{}: write failed: {e}", self.peer);
            return Progress::Done("write error");
        }
        self.finish_turn(cx, Progress::Idle)
    }

    /// Shutdown is about to judge this connection quiet: but a short read may have ended its reading, and
    /// bytes that arrived since (their edge not yet dispatched) would be reset by the close. Read once more.
    pub fn look_again(&mut self) {
        self.may_read = true;
    }

    /// Records what a readiness event says. An error or hang-up is found by the next read or write.
    pub fn note(&mut self, event: &Event) {
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.may_read = true;
        }
        if event.is_read_closed() || event.is_error() {
            self.closed_seen = true;
        }
        if event.is_writable() || event.is_write_closed() || event.is_error() {
            self.write_blocked = false;
        }
    }

    /// Stage 8's first half: leaves the poll. The socket itself closes when the slab slot is freed.
    pub fn close(&mut self, registry: &Registry) {
        if self.phase != Phase::Closed {
            // Deregistering a socket that is about to be closed cannot usefully fail.
            let _ = registry.deregister(&mut self.stream);
            self.phase = Phase::Closed;
        }
    }

    /// Stage 5: flush, read, answer, write, until the socket would block, the read budget is spent, or
    /// the replies reach the high-water mark. Stage 6: WRITABLE interest on while replies wait, off after.
    pub fn drive(&mut self, cx: &mut Context<'_>) -> Progress {
        if self.phase == Phase::Lingering {
            return self.discard(cx);
        }
        let mut budget = cx.config.read_budget;
        loop {
            // 5a. Older replies first: the stream stays in order.
            if !self.pending.is_empty() && !self.write_blocked {
                if let Err(e) = self.flush(cx.stats, cx.now) {
                    debug!("{}: write failed: {e}", self.peer);
                    return Progress::Done("write error");
                }
            }
            if self.phase != Phase::Open || !self.may_read {
                break;
            }
            // 5b. Read no more than the high-water mark can answer: backpressure instead of unbounded memory.
            // Until the peer reads, WRITABLE interest brings us back here.
            let room = cx.config.high_water.saturating_sub(self.pending.len());
            let fits = self.session.max_input(room).min(cx.buffers.input.len());
            if fits < MIN_READ {
                break;
            }
            // 7. Fairness: one busy peer gets its budget, then the others their turn; it is revisited next turn.
            if budget == 0 {
                return self.finish_turn(cx, Progress::MoreToRead);
            }
            let asked = fits.min(budget);
            match self.stream.read(&mut cx.buffers.input[..asked]) {
                Ok(0) => {
                    // The peer half-closed: answer what is held, flush, then close.
                    self.may_read = false;
                    self.peer_done = true;
                    self.phase = Phase::Flushing;
                    let out = &mut cx.buffers.output;
                    out.clear();
                    self.session.finish(out);
                    if let Err(e) = self.reply(cx) {
                        debug!("{}: write failed: {e}", self.peer);
                        return Progress::Done("write error");
                    }
                }
                Ok(n) => {
                    // The short-read rule: a read that returns less than it asked for emptied the socket's
                    // receive queue, and on Linux any byte that arrives after it raises a new edge. So the
                    // read that would only say `WouldBlock` is skipped, one system call per request at one
                    // request in flight (tokio does the same). Not after a hang-up or error event: the FIN
                    // or error behind the bytes raises no new edge and only a read finds it.
                    // Nor while draining at shutdown, when "quiet" closes the connection: then only `WouldBlock`
                    // may say no request is left.
                    if SHORT_READ_DRAINS && n < asked && !self.closed_seen && !cx.draining {
                        self.may_read = false;
                    }
                    budget -= n;
                    self.window_bytes += n as u64;
                    cx.stats.bytes_in += n as u64;
                    let out = &mut cx.buffers.output;
                    out.clear();
                    if self.session.feed(&cx.buffers.input[..n], out) == Step::Close {
                        self.phase = Phase::Flushing;
                    }
                    if let Err(e) = self.reply(cx) {
                        debug!("{}: write failed: {e}", self.peer);
                        return Progress::Done("write error");
                    }
                }
                Err(ref e) if would_block(e) => self.may_read = false,
                Err(ref e) if interrupted(e) => {}
                Err(e) => {
                    debug!("{}: read failed: {e}", self.peer);
                    return Progress::Done("read error");
                }
            }
        }
        if self.pending.is_empty() {
            if self.phase == Phase::Flushing && self.peer_done {
                return Progress::Done("finished");
            }
            if self.phase == Phase::Flushing {
                // The service closed; the peer may still be talking. FIN now, then wait for the peer's.
                let _ = self.stream.shutdown(Shutdown::Write);
                self.phase = Phase::Lingering;
                self.linger_until = Some(cx.now + LINGER);
                self.schedule(cx.config, cx.timers);
                return self.discard(cx);
            }
            if cx.draining && !self.may_read {
                return Progress::Done("drained at shutdown");
            }
        }
        self.finish_turn(cx, Progress::Idle)
    }

    /// While `Lingering`: read and drop what the peer still sends, until its FIN (done) or `WouldBlock`.
    fn discard(&mut self, cx: &mut Context<'_>) -> Progress {
        let mut budget = cx.config.read_budget;
        while self.may_read {
            if budget == 0 {
                return self.finish_turn(cx, Progress::MoreToRead);
            }
            let len = budget.min(cx.buffers.input.len());
            match self.stream.read(&mut cx.buffers.input[..len]) {
                Ok(0) => return Progress::Done("finished"),
                Ok(n) => budget -= n,
                Err(ref e) if would_block(e) => self.may_read = false,
                Err(ref e) if interrupted(e) => {}
                // The replies were all written before the FIN; an error now loses nothing.
                Err(_) => return Progress::Done("finished"),
            }
        }
        self.finish_turn(cx, Progress::Idle)
    }

    /// Stage 6: WRITABLE interest exactly while replies wait. Returns `progress`, or `Done` if that fails.
    fn finish_turn(&mut self, cx: &mut Context<'_>, progress: Progress) -> Progress {
        let wants_write = !self.pending.is_empty();
        if wants_write != self.wants_write {
            let interest = if wants_write {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if let Err(e) = cx
                .registry
                .reregister(&mut self.stream, self.token, interest)
            {
                debug!("{}: reregister failed: {e}", self.peer);
                return Progress::Done("poll error");
            }
            self.wants_write = wants_write;
        }
        progress
    }

    /// Sends the reply in `cx.buffers.output`: at once if nothing is queued before it, else behind the rest.
    fn reply(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let out = &cx.buffers.output;
        let mut sent = 0;
        let was_empty = self.pending.is_empty();
        if was_empty && !self.write_blocked {
            sent = write_some(&mut self.stream, out, &mut self.write_blocked)?;
            cx.stats.bytes_out += sent as u64;
        }
        if sent < out.len() {
            self.pending.extend_from_slice(&out[sent..]);
            cx.stats.peak_pending = cx.stats.peak_pending.max(self.pending.len());
            if was_empty {
                // Replies start waiting now: the write timeout counts from here.
                self.last_write = cx.now;
                self.schedule(cx.config, cx.timers);
            }
        }
        Ok(())
    }

    /// Writes as much of `pending` as the socket takes; frees the buffer once it is all gone.
    fn flush(&mut self, stats: &mut Stats, now: Instant) -> io::Result<()> {
        let sent = write_some(&mut self.stream, &self.pending, &mut self.write_blocked)?;
        stats.bytes_out += sent as u64;
        if sent > 0 {
            self.last_write = now;
        }
        if sent == self.pending.len() {
            // An idle connection holds no buffer: give the memory back rather than keep the peak.
            self.pending = Vec::new();
        } else {
            self.pending.drain(..sent);
        }
        Ok(())
    }
}

/// Writes until `data` is gone or the socket would block (then sets `blocked`). Returns the bytes written.
fn write_some(stream: &mut TcpStream, data: &[u8], blocked: &mut bool) -> io::Result<usize> {
    let mut sent = 0;
    while sent < data.len() {
        match stream.write(&data[sent..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            Err(ref e) if would_block(e) => {
                *blocked = true;
                break;
            }
            Err(ref e) if interrupted(e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(sent)
}
