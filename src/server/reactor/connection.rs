//! One TCP connection inside the reactor: its socket, its token, its [`Conversation`] (service state,
//! unsent replies, phase: shared with every mode), and what readiness needs on top: whether the socket may
//! hold unread bytes, whether WRITABLE interest is registered, and the connection's timers.
//! [`Connection::drive`] moves its bytes: stages 5 and 6 of the loop in `docs/04-reactor.md`. A
//! connection's life, with its state diagram, is `docs/06-connection.md`.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::time::Instant;

use log::debug;
use mio::net::TcpStream;
use mio::{event::Event, Interest, Registry, Token};

use super::timers::{Check, Timers};
use crate::net::{interrupted, would_block};
use crate::server::config::Config;
use crate::server::conversation::{Conversation, Discarded, Phase};
use crate::server::limits::{deadline_after, READ_BUFFER};
use crate::server::stats::Stats;
use crate::server::trace::{trace_stage, Turn};
use crate::service::{Clock, Session};

/// Whether a short read means the receive queue was empty: true wherever readiness is edge-triggered
/// epoll or kqueue, which raise a new edge for every arrival; mio's Windows backend makes no such promise.
const SHORT_READ_DRAINS: bool = !cfg!(windows);

/// What a connection is registered for while nothing waits to be written. Where the platform can say so
/// (Linux), the priority events that announce TCP urgent data too: a read stops at the urgent mark, so while
/// one may lie ahead a short read does not mean the receive queue is empty (see the short-read rule).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub const READ_INTEREST: Interest = Interest::READABLE.add(Interest::PRIORITY);
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub const READ_INTEREST: Interest = Interest::READABLE;

/// What [`Connection::drive`] left behind.
#[derive(Debug, PartialEq, Eq)]
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
    /// Every read lands here: one buffer for the whole reactor.
    pub input: Box<[u8]>,
    /// Replies are built here and written at once; only what the socket does not take is copied out.
    pub output: Vec<u8>,
}

impl Buffers {
    pub fn new() -> Buffers {
        Buffers {
            input: vec![0; READ_BUFFER].into_boxed_slice(),
            output: Vec::with_capacity(READ_BUFFER),
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
    pub clock: &'a Clock,
    pub timers: &'a mut Timers,
    pub buffers: &'a mut Buffers,
    pub stats: &'a mut Stats,
    pub config: &'a Config,
    /// Once shutdown has begun, when it gives up: no connection lingers past it.
    pub deadline: Option<Instant>,
    /// The turn, for the trace.
    pub turn: Turn,
}

/// One TCP connection: the value stored in the reactor's slab, under the key its token names.
pub struct Connection {
    stream: TcpStream,
    token: Token,
    /// Its slab key, as the trace names it (`conn 4`).
    key: usize,
    /// A serial number, so a timer set for an earlier connection in the same slot does not touch this one.
    id: u64,
    peer: SocketAddr,
    conversation: Conversation,
    /// Deregistered: its slab slot is freed at the end of the turn. Events for it still in this turn's
    /// batch are ignored, and because the slot stays taken until then, no new connection can receive them.
    closed: bool,
    /// Readiness is edge-triggered: an event says bytes arrived, and only a read that returns `WouldBlock`
    /// says all of them were taken. Until then this stays true, even when we stop reading for fairness or
    /// backpressure.
    may_read: bool,
    /// An event said the peer closed its side, or the socket has an error: only a read can say what is left
    /// (a last request, then 0 or the error), and no further event will come for it. Until a read returns
    /// `WouldBlock`, 0 or the error, a short read does not end reading (see the short-read rule in `drive`).
    closed_seen: bool,
    /// An event said urgent data arrived: a read stops at the urgent mark, so until a read returns
    /// `WouldBlock`, a short read does not end reading either.
    urgent_seen: bool,
    /// WRITABLE interest is registered (only while the outbox holds replies).
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
}

impl Connection {
    /// A newly accepted connection, already registered for READABLE under `token`.
    pub fn new(
        stream: TcpStream,
        token: Token,
        key: usize,
        id: u64,
        peer: SocketAddr,
        session: Session,
        now: Instant,
    ) -> Connection {
        Connection {
            stream,
            token,
            key,
            id,
            peer,
            conversation: Conversation::new(session),
            closed: false,
            may_read: false,
            closed_seen: false,
            urgent_seen: false,
            wants_write: false,
            queued: false,
            window_start: now,
            window_bytes: 0,
            last_write: now,
            check_at: None,
        }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Whether `check` is this connection's one live timer entry.
    pub fn is_live_check(&self, check: &Check) -> bool {
        !self.closed && self.id == check.id && self.check_at == Some(check.at)
    }

    /// Deregistered and waiting for its slot to be freed.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The time stage 9 should look at this connection next, given the timeouts in `config`.
    fn next_check(&self, config: &Config) -> Option<Instant> {
        let conversation = &self.conversation;
        let open = conversation.phase() == Phase::Open;
        let idle = config
            .idle_timeout
            .map(|t| deadline_after(self.window_start, t));
        let write = config
            .write_timeout
            .filter(|_| !conversation.outbox().is_empty())
            .map(|t| deadline_after(self.last_write, t));
        let session = conversation.session().deadline().filter(|_| open);
        [idle, write, conversation.linger_until(), session]
            .into_iter()
            .flatten()
            .min()
    }

    /// Puts a check in the heap if this connection now needs one sooner than the one it has.
    pub fn schedule(&mut self, config: &Config, timers: &mut Timers) {
        let Some(at) = self.next_check(config) else {
            return;
        };
        if self.check_at.is_none_or(|current| at < current) {
            self.check_at = Some(at);
            timers.schedule(Check {
                at,
                token: self.token,
                id: self.id,
            });
        }
    }

    /// Stage 9 for one connection whose check came due at `at`: `Done` with the reason if a timeout
    /// expired; the session told, if its own deadline passed; otherwise the next check is scheduled. A check
    /// that is no longer this connection's is ignored.
    pub fn on_check(&mut self, at: Instant, cx: &mut Context<'_>) -> Progress {
        if self.check_at != Some(at) {
            return Progress::Idle;
        }
        self.check_at = None;
        let now = cx.clock.now();
        let config = cx.config;
        if self.conversation.linger_expired(now) {
            return Progress::Done("closed: the peer did not close its side in time");
        }
        if let Some(limit) = config.write_timeout {
            if !self.conversation.outbox().is_empty()
                && now >= deadline_after(self.last_write, limit)
            {
                return Progress::Done("write timeout: the peer stopped reading its replies");
            }
        }
        let session_due = self
            .conversation
            .session()
            .deadline()
            .is_some_and(|d| now >= d);
        if session_due && self.conversation.phase() == Phase::Open {
            let Buffers { output, .. } = &mut *cx.buffers;
            if let Err(e) = self
                .conversation
                .expire(&mut self.stream, cx.clock, output, cx.stats)
            {
                return self.failed("write", e);
            }
            return self.drive(cx);
        }
        if let Some(window) = config.idle_timeout {
            if now >= deadline_after(self.window_start, window) {
                // Only a connection the server is waiting on counts as idle: one whose replies wait for its
                // peer to read is the write timeout's business, and one that has half-closed has nothing to say.
                let waiting_on_peer = self.conversation.phase() == Phase::Open
                    && self.conversation.outbox().is_empty();
                let needed = (config.min_rate.saturating_mul(window.as_secs())).max(1);
                if waiting_on_peer && self.window_bytes < needed {
                    return Progress::Done(if self.window_bytes == 0 {
                        "idle timeout"
                    } else {
                        "too slow: under --min-rate"
                    });
                }
                self.window_start = now;
                self.window_bytes = 0;
            }
        }
        self.schedule(config, cx.timers);
        Progress::Idle
    }

    /// Sends what the service says first (`hello`'s welcome) the moment the connection is accepted, by the
    /// same rule as every reply: written now, buffered only if the kernel does not take it all.
    pub fn greet(&mut self, cx: &mut Context<'_>) -> Progress {
        match self
            .conversation
            .greet(&mut self.stream, &mut cx.buffers.output, cx.stats)
        {
            Ok(waiting) => self.replies_began_waiting(waiting, cx),
            Err(e) => return self.failed("write", e),
        }
        self.finish_turn(cx, Progress::Idle)
    }

    /// Stage 2's note of what a readiness event says. An error or hang-up is found by the next read or write.
    pub fn take_readiness(&mut self, event: &Event) {
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.may_read = true;
        }
        if event.is_read_closed() || event.is_error() {
            self.closed_seen = true;
        }
        if event.is_priority() {
            self.may_read = true;
            self.urgent_seen = true;
        }
        if event.is_writable() || event.is_write_closed() || event.is_error() {
            self.conversation.outbox_mut().unblock();
        }
    }

    /// Stage 8's first half: leaves the poll. The socket itself closes when the slab slot is freed.
    pub fn close(&mut self, registry: &Registry) {
        if !self.closed {
            // Deregistering a socket that is about to be closed cannot usefully fail.
            let _ = registry.deregister(&mut self.stream);
            self.closed = true;
        }
    }

    /// Stage 10 for one connection: the server reads nothing more from it. What the service owes for what
    /// it already took is sent, then the connection ends as any other the server ends (FIN, linger),
    /// no later than the shutdown's deadline.
    pub fn stop_reading(&mut self, cx: &mut Context<'_>) -> Progress {
        let deadline = cx.deadline;
        let Buffers { output, .. } = &mut *cx.buffers;
        match self
            .conversation
            .stop_reading(&mut self.stream, output, cx.stats)
        {
            Ok(waiting) => self.replies_began_waiting(waiting, cx),
            Err(e) => return self.failed("write", e),
        }
        if let Some(deadline) = deadline {
            self.conversation.linger_no_later_than(deadline);
        }
        self.drive(cx)
    }

    /// Stage 5: flush, read, answer, write, until the socket would block, the read budget is spent, or
    /// the replies reach the high-water mark. Stage 6: WRITABLE interest on while replies wait, off after.
    pub fn drive(&mut self, cx: &mut Context<'_>) -> Progress {
        let mut budget = cx.config.read_budget;
        loop {
            // 5a. Older replies first: the stream stays in order.
            match self.conversation.flush(&mut self.stream, cx.stats) {
                Ok(0) => {}
                Ok(n) => {
                    self.last_write = cx.clock.now();
                    trace_stage!(
                        cx.turn,
                        "5a",
                        "conn {}: wrote {n} B waiting in the outbox, {} B left",
                        self.key,
                        self.conversation.outbox().len()
                    );
                }
                Err(e) => return self.failed("write", e),
            }
            if self.conversation.phase() != Phase::Open || !self.may_read {
                break;
            }
            // 5b. Read no more than the high-water mark can answer: backpressure instead of unbounded memory.
            // Until the peer reads, WRITABLE interest brings us back here.
            let limit = self
                .conversation
                .read_limit(cx.config)
                .min(cx.buffers.input.len());
            if limit == 0 {
                trace_stage!(
                    cx.turn,
                    "5b",
                    "conn {}: {} B unsent, no room to read: reading stops until the peer reads",
                    self.key,
                    self.conversation.outbox().len()
                );
                break;
            }
            // 7. Fairness: one busy peer gets its budget, then the others their turn; it is revisited next turn.
            if budget == 0 {
                return self.finish_turn(cx, Progress::MoreToRead);
            }
            let asked = limit.min(budget);
            let (sent_before, waiting_before) =
                (cx.stats.bytes_out, self.conversation.outbox().len());
            let mut got = None;
            let Buffers { input, output } = &mut *cx.buffers;
            let sent = match self.stream.read(&mut input[..asked]) {
                Ok(0) => {
                    // The peer half-closed: the service answers what it holds, then the connection closes.
                    self.may_read = false;
                    got = Some(0);
                    self.conversation
                        .peer_closed(&mut self.stream, cx.clock, output, cx.stats)
                }
                Ok(n) => {
                    // The short-read rule: a read that returns less than it asked for emptied the socket's
                    // receive queue, and on Linux any byte that arrives after it raises a new edge. So the
                    // read that would only say `WouldBlock` is skipped, one system call per request at one
                    // request in flight (tokio does the same). Not after a hang-up or error event: the FIN
                    // or error behind the bytes raises no new edge and only a read finds it. Nor after an
                    // urgent-data event: Linux ends a read at the urgent mark with more bytes queued behind it.
                    if SHORT_READ_DRAINS && n < asked && !self.closed_seen && !self.urgent_seen {
                        self.may_read = false;
                    }
                    budget -= n;
                    got = Some(n);
                    self.window_bytes += n as u64;
                    self.conversation.received(
                        &mut self.stream,
                        cx.clock,
                        &input[..n],
                        output,
                        cx.stats,
                    )
                }
                Err(ref e) if would_block(e) => {
                    // Every byte queued was taken, the urgent one included.
                    self.may_read = false;
                    self.urgent_seen = false;
                    Ok(false)
                }
                Err(ref e) if interrupted(e) => Ok(false),
                Err(e) => return self.failed("read", e),
            };
            match sent {
                Ok(waiting) => self.replies_began_waiting(waiting, cx),
                Err(e) => return self.failed("write", e),
            }
            if let Some(got) = got.filter(|_| cx.turn.on) {
                self.trace_exchange(cx, got, asked, sent_before, waiting_before);
            }
        }
        let now = cx.clock.now();
        let before = self.conversation.phase();
        match self.conversation.settle(&self.stream, now, cx.deadline) {
            Phase::Done => return Progress::Done("finished"),
            Phase::Lingering if before != Phase::Lingering => {
                trace_stage!(
                    cx.turn,
                    5,
                    "conn {}: everything owed written: FIN sent; lingering until the peer's FIN",
                    self.key
                );
                self.schedule(cx.config, cx.timers);
                if self.may_read {
                    return self.discard(cx);
                }
            }
            Phase::Lingering => {
                self.schedule(cx.config, cx.timers);
                if self.may_read {
                    return self.discard(cx);
                }
            }
            Phase::Open | Phase::Flushing => self.schedule(cx.config, cx.timers),
        }
        self.finish_turn(cx, Progress::Idle)
    }

    /// While lingering: read and drop what the peer still sends, until its FIN (done) or `WouldBlock`.
    fn discard(&mut self, cx: &mut Context<'_>) -> Progress {
        let budget = cx.config.read_budget;
        match self
            .conversation
            .discard(&mut self.stream, &mut cx.buffers.input, budget)
        {
            Discarded::PeerClosed => {
                trace_stage!(
                    cx.turn,
                    5,
                    "conn {}: the peer's FIN after ours: done",
                    self.key
                );
                Progress::Done("finished")
            }
            Discarded::WouldBlock => {
                self.may_read = false;
                self.finish_turn(cx, Progress::Idle)
            }
            Discarded::Budget => self.finish_turn(cx, Progress::MoreToRead),
        }
    }

    /// Replies began to wait in the outbox: the write timeout counts from now.
    fn replies_began_waiting(&mut self, waiting: bool, cx: &mut Context<'_>) {
        if waiting {
            self.last_write = cx.clock.now();
            self.schedule(cx.config, cx.timers);
        }
    }

    /// Stage 5's trace line for one read: what came, what the service made of it, what went out now and
    /// what had to wait.
    fn trace_exchange(
        &self,
        cx: &Context<'_>,
        got: usize,
        asked: usize,
        sent_before: u64,
        waiting_before: usize,
    ) {
        let reply = cx.buffers.output.len();
        let written = cx.stats.bytes_out - sent_before;
        let buffered = self
            .conversation
            .outbox()
            .len()
            .saturating_sub(waiting_before);
        let read = if got == 0 {
            "end of stream".to_string()
        } else {
            format!("read {got} B (asked {asked})")
        };
        let phase = match self.conversation.phase() {
            Phase::Flushing if got > 0 => "; the service closes: reading stops",
            _ => "",
        };
        let out = if buffered > 0 {
            format!("{reply} B reply, {written} B written now, {buffered} B buffered")
        } else {
            format!("{reply} B written")
        };
        trace_stage!(
            cx.turn,
            5,
            "conn {} ({}): {read} → {out}{phase}",
            self.key,
            self.peer,
        );
    }

    fn failed(&self, what: &str, e: io::Error) -> Progress {
        debug!("{}: {what} failed: {e}", self.peer);
        Progress::Done(if what == "read" {
            "read error"
        } else {
            "write error"
        })
    }

    /// Stage 6: WRITABLE interest exactly while replies wait. Returns `progress`, or `Done` if that fails.
    fn finish_turn(&mut self, cx: &mut Context<'_>, progress: Progress) -> Progress {
        let wants_write = !self.conversation.outbox().is_empty();
        if wants_write != self.wants_write {
            let interest = if wants_write {
                READ_INTEREST | Interest::WRITABLE
            } else {
                READ_INTEREST
            };
            if let Err(e) = cx
                .registry
                .reregister(&mut self.stream, self.token, interest)
            {
                debug!("{}: reregister failed: {e}", self.peer);
                return Progress::Done("poll error");
            }
            self.wants_write = wants_write;
            if wants_write {
                trace_stage!(
                    cx.turn,
                    6,
                    "conn {}: WRITABLE on ({} B wait to be written)",
                    self.key,
                    self.conversation.outbox().len()
                );
            } else {
                trace_stage!(
                    cx.turn,
                    6,
                    "conn {}: WRITABLE off (the outbox is empty)",
                    self.key
                );
            }
        }
        progress
    }
}
