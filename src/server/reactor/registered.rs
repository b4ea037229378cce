//! One TCP connection inside the reactor: its socket, its token, its [`Connection`] core (the service, the
//! unsent replies, the phase and every timeout: shared with every mode), and what readiness needs on top:
//! whether the socket may hold unread bytes, whether it refused a write, whether WRITABLE interest is
//! registered, and its one entry in the timer heap. [`Registered::drive`] moves its bytes: stages 5 and 6
//! of the loop in `docs/04-reactor.md`. A connection's life, with its state diagram, is
//! `docs/06-connection.md`.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::time::Instant;

use log::debug;
use mio::net::TcpStream;
use mio::{event::Event, Interest, Registry, Token};

use super::timers::{Check, Timers};
use crate::net::{interrupted, would_block, SHORT_READ_DRAINS};
use crate::server::connection::{Connection, Context, End, Phase, Room};
use crate::server::trace::{trace_stage, Turn};
use crate::server::transfer::{fin_if_due, flush, held_before, note_held};

/// What a connection is registered for while nothing waits to be written. Where the platform can say so
/// (Linux), the priority events that announce TCP urgent data too: a read stops at the urgent mark, so while
/// one may lie ahead a short read does not mean the receive queue is empty (see the short-read rule).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub const READ_INTEREST: Interest = Interest::READABLE.add(Interest::PRIORITY);
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub const READ_INTEREST: Interest = Interest::READABLE;

/// What [`Registered::drive`] left behind.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// Nothing to do until the next readiness event or timer.
    Idle,
    /// Input may still be waiting but a read budget for this turn is spent: come back next turn.
    MoreToRead,
    /// Input may be waiting but the server's budget for unsent replies is spent: come back once replies
    /// have drained.
    Starved,
    /// The budget has room, but other connections were waiting for it first: this one waits in line
    /// behind them, and stage 7 drives the line, in order, this turn.
    InLine,
    /// The connection is finished.
    Done(Closed),
}

/// Why a connection is closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    /// Its core says so: finished, or one of its timeouts.
    Ended(End),
    /// A system call failed ("read error", "write error", "poll error").
    Failed(&'static str),
}

impl Closed {
    /// For the log.
    pub fn describe(self) -> &'static str {
        match self {
            Closed::Ended(end) => end.describe(),
            Closed::Failed(what) => what,
        }
    }
}

/// What a connection borrows from its reactor while it is driven.
pub struct Borrowed<'a> {
    /// Connections wait for the server's reply budget (its `starved` list) and this is not their turn: one
    /// that finds room joins the line rather than read ahead of them.
    pub wait_in_line: bool,
    /// The core's context: the turn's clock, the rules, the reply buffer, the counters, the account.
    pub cx: &'a mut Context,
    pub registry: &'a Registry,
    pub timers: &'a mut Timers,
    /// Every read lands here: one buffer for the whole reactor.
    pub input: &'a mut [u8],
    /// Bytes one connection may read this turn (`--read-budget`, less when many connections are ready).
    pub share: usize,
    /// Bytes all connections together may still read this turn.
    pub turn_left: &'a mut usize,
    /// The turn, for the trace.
    pub turn: Turn,
}

/// One TCP connection: the value stored in the reactor's slab, under the key its token names.
pub struct Registered {
    stream: TcpStream,
    token: Token,
    /// Its slab key, as the trace names it (`conn 4`).
    key: usize,
    /// A serial number, so a timer set for an earlier connection in the same slot does not touch this one.
    id: u64,
    peer: SocketAddr,
    conn: Connection,
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
    /// A write returned `WouldBlock`: write nothing more until a WRITABLE event says there is room.
    write_blocked: bool,
    /// WRITABLE interest is registered (only while replies wait).
    wants_write: bool,
    /// Already on the reactor's list of connections to revisit next turn.
    pub queued: bool,
    /// Already on the reactor's list of connections waiting for the server's reply budget.
    pub starved: bool,
    /// When this connection next wants stage 9 to look at it: its one live entry in the timer heap.
    check_at: Option<Instant>,
}

impl Registered {
    /// A newly accepted connection, already registered for READABLE under `token`. Its greeting, if the
    /// service has one, is pending: [`Registered::drive`] writes it.
    pub fn new(
        stream: TcpStream,
        token: Token,
        key: usize,
        id: u64,
        peer: SocketAddr,
        cx: &mut Context,
    ) -> Registered {
        Registered {
            stream,
            token,
            key,
            id,
            peer,
            conn: Connection::new(cx),
            closed: false,
            may_read: false,
            closed_seen: false,
            urgent_seen: false,
            write_blocked: false,
            wants_write: false,
            queued: false,
            starved: false,
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

    /// Reply bytes it holds unsent.
    pub fn unsent(&self) -> usize {
        self.conn.unsent()
    }

    /// Deregistered and waiting for its slot to be freed.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Puts a check in the heap if the core now wants to be woken sooner than the check it has. A read
    /// moves the idle window without touching the heap: the check that comes due finds it moved
    /// (`Connection::on_timeout` does nothing that is not due) and this schedules the next one.
    fn schedule(&mut self, b: &mut Borrowed<'_>) {
        let Some(at) = self.conn.poll_at() else {
            return;
        };
        if self.check_at.is_none_or(|current| at < current) {
            self.check_at = Some(at);
            b.timers.schedule(Check {
                at,
                token: self.token,
                id: self.id,
            });
        }
    }

    /// Stage 9 for one connection whose check came due at `at`: the core applies what is due (a timeout
    /// ends it; the service's own deadline may make it answer), then it is driven as after an event. A check
    /// that is no longer this connection's is ignored.
    pub fn on_check(&mut self, at: Instant, b: &mut Borrowed<'_>) -> Progress {
        if self.check_at != Some(at) {
            return Progress::Idle;
        }
        self.check_at = None;
        self.conn.on_timeout(b.cx);
        self.drive(b)
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
            self.write_blocked = false;
        }
    }

    /// Stage 8's first half: its unsent replies leave the server's account and it leaves the poll. The
    /// socket itself closes when the slab slot is freed.
    pub fn close(&mut self, cx: &mut Context, registry: &Registry) {
        if !self.closed {
            self.conn.release(cx);
            // Deregistering a socket that is about to be closed cannot usefully fail.
            let _ = registry.deregister(&mut self.stream);
            self.closed = true;
        }
    }

    /// Stage 10 for one connection: the server reads nothing more from it. What the service owes for what
    /// it already took is sent, then the connection ends as any other the server ends (FIN, linger),
    /// no later than the shutdown's deadline.
    pub fn stop_reading(&mut self, b: &mut Borrowed<'_>) -> Progress {
        self.conn.stop_reading(b.cx);
        self.drive(b)
    }

    /// Stage 5: write, read, answer, write, until the socket would block, a read budget is spent, the
    /// replies reach the high-water mark or the server's budget, or reading is over; FIN once everything
    /// owed is written. Stage 6: WRITABLE interest on while replies wait, off after.
    pub fn drive(&mut self, b: &mut Borrowed<'_>) -> Progress {
        let mut budget = b.share;
        loop {
            // 5a. What waits goes first (a greeting, a reply the socket refused): the stream stays in order.
            let waiting = self.conn.unsent();
            if waiting > 0 || !b.cx.scratch.is_empty() {
                match flush(&mut self.stream, &mut self.conn, b.cx, self.write_blocked) {
                    Ok(flushed) => {
                        self.write_blocked = flushed.blocked;
                        if waiting > 0 && flushed.written > 0 {
                            trace_stage!(
                                b.turn,
                                "5a",
                                "conn {}: wrote {} B waiting in the outbox, {} B left",
                                self.key,
                                flushed.written,
                                self.conn.unsent()
                            );
                        }
                    }
                    Err(e) => return self.failed("write", e),
                }
            }
            if self.conn.phase() != Phase::Open {
                if fin_if_due(&self.stream, &mut self.conn, b.cx) {
                    trace_stage!(
                        b.turn,
                        5,
                        "conn {}: everything owed written: FIN sent; lingering until the peer's FIN",
                        self.key
                    );
                }
                if let Phase::Done(end) = self.conn.phase() {
                    return Progress::Done(Closed::Ended(end));
                }
            }
            if !self.may_read {
                break;
            }
            // 5b. Read no more than the replies the room left can hold: backpressure instead of unbounded
            // memory. Until the peer reads, WRITABLE interest brings us back here.
            let limit = match self.conn.room(b.cx) {
                // Connections that hold replies drain on WRITABLE events, and would read again first, turn
                // after turn, while one that waits with nothing to write gets no event at all: so while the
                // line is not empty, room is taken in line (a lingering connection only drops what it reads).
                Room::Read(_) if b.wait_in_line && self.conn.phase() == Phase::Open => {
                    trace_stage!(
                        b.turn,
                        "5b",
                        "conn {}: others wait for the reply budget (--max-unsent): it waits in line",
                        self.key
                    );
                    return self.finish_turn(b, Progress::InLine);
                }
                Room::Read(n) => n.min(b.input.len()),
                Room::Full => {
                    trace_stage!(
                        b.turn,
                        "5b",
                        "conn {}: {} B unsent, no room to read: reading stops until the peer reads",
                        self.key,
                        self.conn.unsent()
                    );
                    break;
                }
                Room::Starved => {
                    trace_stage!(
                        b.turn,
                        "5b",
                        "conn {}: the server holds {} B of unsent replies (--max-unsent): reading stops \
                         until they drain",
                        self.key,
                        b.cx.account.held()
                    );
                    return self.finish_turn(b, Progress::Starved);
                }
                Room::Closed => break,
            };
            // 7. Fairness: one busy peer gets its share, the turn its total, then the others their turn.
            if budget == 0 || *b.turn_left == 0 {
                return self.finish_turn(b, Progress::MoreToRead);
            }
            let asked = limit.min(budget).min(*b.turn_left);
            let (sent_before, waiting_before) = (b.cx.stats.bytes_out, self.conn.unsent());
            let lingering = self.conn.phase() == Phase::Lingering;
            let got = match self.stream.read(&mut b.input[..asked]) {
                Ok(0) => {
                    // The peer half-closed: the service answers what it holds, then the connection closes.
                    self.may_read = false;
                    self.conn.peer_closed(b.cx);
                    0
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
                    *b.turn_left -= n;
                    let held = held_before(&self.conn);
                    self.conn.received(b.cx, &b.input[..n]);
                    note_held(self.peer, &self.conn, b.cx, held);
                    n
                }
                Err(ref e) if would_block(e) => {
                    // Every byte queued was taken, the urgent one included.
                    self.may_read = false;
                    self.urgent_seen = false;
                    continue;
                }
                Err(ref e) if interrupted(e) => continue,
                Err(e) => return self.failed("read", e),
            };
            // The reply is written at once; only what the socket refuses waits. What is pending is older
            // replies, if any wait, then this read's reply.
            let reply = self.conn.pending(b.cx).len().saturating_sub(waiting_before);
            if reply > 0 {
                match flush(&mut self.stream, &mut self.conn, b.cx, self.write_blocked) {
                    Ok(flushed) => self.write_blocked = flushed.blocked,
                    Err(e) => return self.failed("write", e),
                }
            }
            if b.turn.on {
                self.trace_exchange(b, got, asked, lingering, reply, sent_before, waiting_before);
            }
        }
        self.finish_turn(b, Progress::Idle)
    }

    /// Stage 5's trace line for one read: what came, what the service made of it, what went out now and
    /// what had to wait.
    #[allow(clippy::too_many_arguments)]
    fn trace_exchange(
        &self,
        b: &Borrowed<'_>,
        got: usize,
        asked: usize,
        lingering: bool,
        reply: usize,
        sent_before: u64,
        waiting_before: usize,
    ) {
        if lingering {
            let what = if got == 0 {
                "the peer's FIN after ours: done".to_string()
            } else {
                format!("lingering: read {got} B and dropped it")
            };
            trace_stage!(b.turn, 5, "conn {}: {what}", self.key);
            return;
        }
        let written = b.cx.stats.bytes_out - sent_before;
        let buffered = self.conn.unsent().saturating_sub(waiting_before);
        let read = if got == 0 {
            "end of stream".to_string()
        } else {
            format!("read {got} B (asked {asked})")
        };
        let phase = match self.conn.phase() {
            Phase::Flushing | Phase::Lingering if got > 0 => {
                "; the service closes: reading stops".into()
            }
            Phase::Open if self.conn.held() > 0 => format!(
                "; {} B held, waiting for {}",
                self.conn.held(),
                b.cx.waits_for()
            ),
            _ => String::new(),
        };
        let out = if buffered > 0 {
            format!("{reply} B reply, {written} B written now, {buffered} B buffered")
        } else {
            format!("{reply} B written")
        };
        trace_stage!(
            b.turn,
            5,
            "conn {} ({}): {read} → {out}{phase}",
            self.key,
            self.peer,
        );
    }

    fn failed(&self, what: &'static str, e: io::Error) -> Progress {
        debug!("{}: {what} failed: {e}", self.peer);
        Progress::Done(Closed::Failed(if what == "read" {
            "read error"
        } else {
            "write error"
        }))
    }

    /// The check for the core's next deadline, then stage 6: WRITABLE interest exactly while replies wait.
    /// Returns `progress`, or `Done` if that fails.
    fn finish_turn(&mut self, b: &mut Borrowed<'_>, progress: Progress) -> Progress {
        self.schedule(b);
        let wants_write = self.conn.unsent() > 0;
        if wants_write != self.wants_write {
            let interest = if wants_write {
                READ_INTEREST | Interest::WRITABLE
            } else {
                READ_INTEREST
            };
            if let Err(e) = b
                .registry
                .reregister(&mut self.stream, self.token, interest)
            {
                debug!("{}: reregister failed: {e}", self.peer);
                return Progress::Done(Closed::Failed("poll error"));
            }
            self.wants_write = wants_write;
            if wants_write {
                trace_stage!(
                    b.turn,
                    6,
                    "conn {}: WRITABLE on ({} B wait to be written)",
                    self.key,
                    self.conn.unsent()
                );
            } else {
                trace_stage!(
                    b.turn,
                    6,
                    "conn {}: WRITABLE off (the outbox is empty)",
                    self.key
                );
            }
        }
        progress
    }
}
