//! One TCP connection inside the completion driver: its socket, its [`Connection`] core (shared with every
//! mode), and what completion needs on top: which of its operations the kernel holds now (a receive, a
//! send, a FIN), and what waits for them to finish (a close, a timer's check, the shutdown). Stages 5, 6, 8
//! and 9 of `docs/14-completion.md`, and its state picture.
//!
//! The rule that keeps the bytes the kernel reads still: at most one chain of operations per connection is
//! in flight, and the core is called only once nothing is (or with what a receive brought, when that
//! receive is the last thing in flight). A reply is moved into the connection's own outbox
//! (`Connection::sent(cx, 0)`), sent from there, and nothing appends to it or takes input for this
//! connection until the send has completed. Anything that must happen sooner (a close, a timer, the
//! shutdown) first cancels what is in flight; a cancelled operation still completes, and that completion is
//! what says its buffers are free.
//!
//! The common case costs one system call: the reply's send and the next receive are submitted together,
//! the receive linked behind the send (`IO_LINK`), and the send marked `SKIP_SUCCESS`, so a send that
//! succeeds posts nothing and does not wake the loop. The receive runs only once the send has finished, so
//! its completion is also the proof that the send's bytes are free. `MSG_WAITALL` makes the kernel finish a
//! short send itself, so "succeeded" means "sent whole".

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use io_uring::{opcode, squeue, types};
use log::debug;

use super::buffers::BufRing;
use super::ring::{Completion, Op, Ring, Tag};
use crate::server::connection::{Connection, Context, Phase, Room};
use crate::server::limits::MIN_READ;
use crate::server::reactor::registered::Closed;
use crate::server::reactor::timers::{Check, Timers};
use crate::server::trace::{trace_stage, Turn};
use crate::server::transfer::{held_before, note_held};

/// The largest reply sent silently (with the next receive linked behind it). A silent send's progress is
/// learnt only when it has finished, so a long one would hide a slow reader's progress from the write
/// timeout; larger replies are sent with a completion of their own, which reports every partial send.
pub const SILENT_LIMIT: usize = 64 * 1024;

/// How long a silent send may go unconfirmed before the driver asks (by cancelling the receive behind it):
/// until then its bytes still count as unsent, against `--high-water` and `--max-unsent`. A connection that
/// goes quiet after a reply is confirmed this long after, and then holds no buffer.
pub const CONFIRM_AFTER: Duration = Duration::from_secs(1);

/// `IORING_RECVSEND_POLL_FIRST` (Linux 5.19): a receive that arms its poll before trying.
const RECVSEND_POLL_FIRST: u16 = 1;

/// The most bytes handed to one send (the kernel takes a 32-bit length).
const MOST_PER_SEND: usize = 1 << 30;

/// What a connection borrows from the driver while it is driven.
pub struct Lent<'a> {
    pub ring: &'a mut Ring,
    pub cx: &'a mut Context,
    pub timers: &'a mut Timers,
    pub buffers: &'a mut BufRing,
    /// The most one receive asks for: a buffer, or `--read-budget` if smaller.
    pub read_cap: usize,
    pub turn: Turn,
}

/// What the driver must do after a connection was driven.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Nothing: a completion or a timer will bring it back.
    Wait,
    /// The server's budget for unsent replies is spent: drive it again once replies drain.
    Starved,
    /// Nothing is in flight any more and it is finished: release it and free its slot.
    Reap(Closed),
}

/// Why the driver cuts a connection (a byte, where the reactor's `Closed` holds a string: every idle
/// connection carries one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    Read,
    Write,
    Submission,
    Deadline,
}

impl Cut {
    pub fn closed(self) -> Closed {
        Closed::Failed(match self {
            Cut::Read => "read error",
            Cut::Write => "write error",
            Cut::Submission => "submission error",
            Cut::Deadline => "cut at the shutdown deadline",
        })
    }
}

/// A send the kernel holds.
#[derive(Clone, Copy, Debug)]
struct Flight {
    /// Bytes handed over, from the start of the outbox (at most [`MOST_PER_SEND`]).
    len: u32,
    /// Marked `SKIP_SUCCESS` with a receive linked behind it: it completes visibly only if it fails or is
    /// cancelled; otherwise the receive's completion says it is done.
    silent: bool,
}

/// One TCP connection of the completion driver.
pub struct Conn {
    stream: TcpStream,
    key: usize,
    serial: u64,
    peer: SocketAddr,
    core: Connection,
    /// A receive is in flight, asking for this many bytes.
    recv: bool,
    asked: u32,
    /// Its last receive filled what it asked for: more is likely waiting, so the next may ask for a whole
    /// buffer. Otherwise the next asks for a small read: a receive waits in the kernel with its length
    /// fixed, so when many idle connections' bytes come at once each is read and answered whatever the
    /// server's reply budget (`--max-unsent`) says by then, and a small length keeps that overshoot to one
    /// small read's replies per connection (see `docs/14-completion.md`).
    eager: bool,
    /// A send is in flight.
    send: Option<Flight>,
    /// A FIN is in flight.
    fin: bool,
    /// Everything in flight was asked to cancel; cleared once nothing is.
    cancelled: bool,
    /// To be closed once nothing is in flight.
    closing: Option<Cut>,
    /// Its check came due: apply the core's timeouts once nothing is in flight.
    due: bool,
    /// The server is shutting down: stop reading once nothing is in flight.
    stop: bool,
    /// The last send stopped short: send with a completion of its own until one goes whole.
    slow: bool,
    /// When the silent send in flight was submitted.
    silent_since: Option<Instant>,
    /// Its one live entry in the timer heap.
    check_at: Option<Instant>,
    /// On the driver's list of connections waiting for the reply budget.
    pub starved: bool,
}

impl Conn {
    /// A newly accepted connection; its greeting, if any, is pending in the core: [`Conn::advance`] sends
    /// it.
    pub fn new(
        stream: TcpStream,
        key: usize,
        serial: u64,
        peer: SocketAddr,
        cx: &mut Context,
    ) -> Conn {
        Conn {
            stream,
            key,
            serial,
            peer,
            core: Connection::new(cx),
            recv: false,
            asked: 0,
            eager: false,
            send: None,
            fin: false,
            cancelled: false,
            closing: None,
            due: false,
            stop: false,
            slow: false,
            silent_since: None,
            check_at: None,
            starved: false,
        }
    }

    pub fn serial(&self) -> u64 {
        self.serial
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The kernel holds an operation of this connection.
    pub fn busy(&self) -> bool {
        self.recv || self.send.is_some() || self.fin
    }

    /// Whether `check` is this connection's live timer entry.
    pub fn is_live_check(&self, check: &Check) -> bool {
        self.serial == check.id && self.check_at == Some(check.at)
    }

    fn tag(&self, op: Op) -> u64 {
        Tag::new(op, self.key, self.serial).encode()
    }

    fn fd(&self) -> types::Fd {
        types::Fd(self.stream.as_raw_fd())
    }

    /// Decides what the connection does next, and submits it: everything owed is applied first (a close,
    /// the shutdown, a timer's check), each only once nothing is in flight; then the pending reply is sent
    /// (with the next receive linked behind it when there is room to read), or FIN, or a receive.
    pub fn advance(&mut self, l: &mut Lent<'_>) -> Next {
        if self.busy() {
            if (self.closing.is_some() || self.due || self.stop) && !self.cancelled {
                self.cancel(l);
            }
            return Next::Wait;
        }
        self.cancelled = false;
        if let Some(why) = self.closing {
            return Next::Reap(why.closed());
        }
        if std::mem::take(&mut self.stop) {
            self.core.stop_reading(l.cx);
        }
        if std::mem::take(&mut self.due) {
            self.core.on_timeout(l.cx);
        }
        // A reply just built is in the shared buffer: it moves to this connection's outbox now, before any
        // other connection's call, and is sent from there.
        if !l.cx.scratch.is_empty() {
            self.core.sent(l.cx, 0);
        }
        if let Phase::Done(end) = self.core.phase() {
            return Next::Reap(Closed::Ended(end));
        }
        let room = self.core.room(l.cx);
        let submitted = if self.core.unsent() > 0 {
            let behind = match room {
                Room::Read(n) if !self.slow && self.core.unsent() <= SILENT_LIMIT => Some(n),
                _ => None,
            };
            self.submit_send(l, behind)
        } else if self.core.wants_fin(l.cx) {
            self.submit_fin(l)
        } else {
            match room {
                Room::Read(n) => self.submit_recv(l, n),
                Room::Starved => {
                    trace_stage!(
                        l.turn,
                        7,
                        "conn {}: the server holds {} B of unsent replies (--max-unsent): no receive until \
                         they drain",
                        self.key,
                        l.cx.account.held()
                    );
                    self.schedule(l);
                    return Next::Starved;
                }
                Room::Full | Room::Closed => Ok(()),
            }
        };
        if let Err(e) = submitted {
            debug!("{}: cannot submit: {e}", self.peer);
            return Next::Reap(Cut::Submission.closed());
        }
        self.schedule(l);
        Next::Wait
    }

    /// The connection must close (an error, the shutdown's deadline): once what is in flight has completed.
    pub fn close(&mut self, why: Cut, l: &mut Lent<'_>) -> Next {
        self.closing.get_or_insert(why);
        self.advance(l)
    }

    /// The server is shutting down: nothing more is read; what was read is answered, then FIN and linger.
    pub fn stop_reading(&mut self, l: &mut Lent<'_>) -> Next {
        self.stop = true;
        self.advance(l)
    }

    /// Stage 9: its check came due at `at`.
    pub fn on_check(&mut self, at: Instant, l: &mut Lent<'_>) -> Next {
        if self.check_at != Some(at) {
            return Next::Wait;
        }
        self.check_at = None;
        self.due = true;
        if self.busy() {
            trace_stage!(
                l.turn,
                9,
                "timer: conn {}: cancel what is in flight, then look at its deadlines",
                self.key
            );
        }
        self.advance(l)
    }

    /// Stage 5: a receive completed: bytes for the core (a cancelled receive still completes, with
    /// `-ECANCELED`, and brings nothing). Its completion also says that the silent send linked before it,
    /// if any, has finished whole.
    pub fn on_recv(&mut self, c: Completion, l: &mut Lent<'_>) -> Next {
        self.recv = false;
        let confirmed = self.send.filter(|f| f.silent).map(|flight| {
            self.send = None;
            self.silent_since = None;
            self.core.sent(l.cx, flight.len as usize);
            flight.len
        });
        if let Some(len) = confirmed {
            trace_stage!(
                l.turn,
                6,
                "conn {}: the {len} B send linked before this receive went whole (its success was silent)",
                self.key
            );
        }
        match c.result {
            n if n > 0 => {
                self.eager = n as u32 >= self.asked;
                let Some(bid) = c.buffer() else {
                    return self.close(Cut::Read, l);
                };
                let lingering = self.core.phase() == Phase::Lingering;
                let data = l.buffers.get(bid, n as usize);
                if self.closing.is_none() {
                    let held = held_before(&self.core);
                    self.core.received(l.cx, data);
                    note_held(self.peer, &self.core, l.cx, held);
                }
                l.buffers.give_back(bid);
                if lingering {
                    trace_stage!(
                        l.turn,
                        5,
                        "conn {}: lingering: received {n} B and dropped it",
                        self.key
                    );
                } else {
                    trace_stage!(
                        l.turn,
                        5,
                        "conn {} ({}): received {n} B in buffer {bid} (given back) → {} B reply",
                        self.key,
                        self.peer,
                        l.cx.scratch.len() + self.core.unsent()
                    );
                }
            }
            0 => {
                if self.closing.is_none() {
                    let lingering = self.core.phase() == Phase::Lingering;
                    self.core.peer_closed(l.cx);
                    trace_stage!(
                        l.turn,
                        5,
                        "conn {}: {}",
                        self.key,
                        if lingering {
                            "the peer's FIN after ours: done"
                        } else {
                            "end of stream"
                        }
                    );
                }
            }
            e if e == -libc::ECANCELED => {
                trace_stage!(
                    l.turn,
                    5,
                    "conn {}: receive cancelled (completed with ECANCELED)",
                    self.key
                );
            }
            e if e == -libc::ENOBUFS => {
                trace_stage!(
                    l.turn,
                    7,
                    "conn {}: bytes came but every buffer was taken (ENOBUFS): the receive is submitted again",
                    self.key
                );
            }
            e if e == -libc::EINTR || e == -libc::EAGAIN => {}
            e => {
                debug!(
                    "{}: receive failed: {}",
                    self.peer,
                    io::Error::from_raw_os_error(-e)
                );
                self.closing.get_or_insert(Cut::Read);
            }
        }
        self.advance(l)
    }

    /// Stage 6: a send completed: a send with a completion of its own (partial sends are continued from
    /// the outbox by the next `advance`), or a silent one that failed or was cancelled.
    pub fn on_send(&mut self, c: Completion, l: &mut Lent<'_>) -> Next {
        let Some(flight) = self.send.take() else {
            return self.advance(l);
        };
        if flight.silent {
            self.silent_since = None;
            // A silent send completes visibly only when it failed or was cancelled, and then the kernel
            // cancels the receive linked behind it without a completion of its own (a failed
            // `SKIP_SUCCESS` request skips its link's completions too): that receive is over now.
            self.recv = false;
        }
        match c.result {
            n if n >= 0 => {
                self.core.sent(l.cx, n as usize);
                let n = n as u32;
                if flight.silent && !self.cancelled {
                    // A silent send that succeeds posts nothing: this one stopped short with an error.
                    debug!("{}: send stopped after {n} of {} B", self.peer, flight.len);
                    self.closing.get_or_insert(Cut::Write);
                } else {
                    self.slow = n < flight.len;
                    if self.slow {
                        trace_stage!(
                            l.turn,
                            6,
                            "conn {}: sent {n} of {} B; the rest waits in the outbox and goes next",
                            self.key,
                            flight.len
                        );
                    } else {
                        trace_stage!(l.turn, 6, "conn {}: sent {n} B", self.key);
                    }
                }
            }
            e if e == -libc::ECANCELED => {
                self.slow = true;
                trace_stage!(
                    l.turn,
                    6,
                    "conn {}: send cancelled before any byte went",
                    self.key
                );
            }
            e if e == -libc::EINTR || e == -libc::EAGAIN => {}
            e => {
                debug!(
                    "{}: send failed: {}",
                    self.peer,
                    io::Error::from_raw_os_error(-e)
                );
                self.closing.get_or_insert(Cut::Write);
            }
        }
        self.advance(l)
    }

    /// Stage 6: FIN went (or the peer is gone already, which the next receive says): linger.
    pub fn on_fin(&mut self, l: &mut Lent<'_>) -> Next {
        self.fin = false;
        self.core.fin_sent(l.cx);
        trace_stage!(
            l.turn,
            6,
            "conn {}: FIN sent (shutdown op); lingering until the peer's FIN",
            self.key
        );
        self.advance(l)
    }

    /// Stage 8's end: its unsent replies leave the server's account. Nothing is in flight; the socket
    /// closes when the value is dropped.
    pub fn release(&mut self, cx: &mut Context) {
        debug_assert!(!self.busy(), "released with an operation in flight");
        self.core.release(cx);
    }

    /// Puts a check in the heap if it now wants one sooner than the one it has: the core's next deadline,
    /// or the confirmation of a silent send.
    fn schedule(&mut self, l: &mut Lent<'_>) {
        let confirm = self.silent_since.map(|since| since + CONFIRM_AFTER);
        let at = match (self.core.poll_at(), confirm) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let Some(at) = at else {
            return;
        };
        if self.check_at.is_none_or(|current| at < current) {
            self.check_at = Some(at);
            l.timers.schedule(Check {
                at,
                token: mio::Token(self.key),
                id: self.serial,
            });
        }
    }

    /// The most the next receive asks for: a whole buffer after a receive that filled what it asked for,
    /// else one small read ([`MIN_READ`]).
    fn read_cap(&self, l: &Lent<'_>) -> usize {
        if self.eager {
            l.read_cap
        } else {
            l.read_cap.min(MIN_READ)
        }
    }

    /// A receive of at most `room` bytes into whichever buffer of the group is free when bytes arrive.
    fn recv_entry(&mut self, l: &Lent<'_>, room: usize, poll_first: bool) -> squeue::Entry {
        let len = room.min(self.read_cap(l)).max(1);
        self.asked = len as u32;
        opcode::Recv::new(self.fd(), std::ptr::null_mut(), len as u32)
            .buf_group(l.buffers.group())
            .ioprio(if poll_first { RECVSEND_POLL_FIRST } else { 0 })
            .build()
            .flags(squeue::Flags::BUFFER_SELECT)
            .user_data(self.tag(Op::Recv))
    }

    fn submit_recv(&mut self, l: &mut Lent<'_>, room: usize) -> io::Result<()> {
        let recv = self.recv_entry(l, room, false);
        // SAFETY: the receive names no memory of ours but the buffer group, whose buffers live as long as
        // the ring.
        unsafe { l.ring.push(&[recv]) }?;
        self.recv = true;
        trace_stage!(
            l.turn,
            5,
            "conn {}: receive (≤ {} B) submitted; it holds no buffer until bytes arrive",
            self.key,
            self.asked
        );
        Ok(())
    }

    /// Sends the outbox's bytes; with `behind`, the next receive (of at most that many bytes) linked behind
    /// the send, which then posts no completion if it succeeds.
    fn submit_send(&mut self, l: &mut Lent<'_>, behind: Option<usize>) -> io::Result<()> {
        let bytes = self.core.pending(l.cx);
        let len = bytes.len().min(MOST_PER_SEND) as u32;
        let mut flags = libc::MSG_NOSIGNAL;
        if behind.is_some() {
            flags |= libc::MSG_WAITALL;
        }
        let send = opcode::Send::new(self.fd(), bytes.as_ptr(), len)
            .flags(flags)
            .build()
            .user_data(self.tag(Op::Send));
        match behind {
            Some(room) => {
                // The peer has not had the reply yet, so its next request cannot be there: the receive waits
                // for readiness first instead of trying a receive that would find nothing.
                let recv = self.recv_entry(l, room, true);
                let send = send.flags(squeue::Flags::IO_LINK | squeue::Flags::SKIP_SUCCESS);
                // SAFETY: the send reads the outbox's first `len` bytes. The outbox is this connection's own
                // (the reply was moved out of the shared buffer above), and nothing moves or frees it until
                // the receive linked behind the send completes: `advance` takes no input and calls nothing
                // that appends while anything is in flight, and a connection is released only once nothing
                // is. The receive names only the buffer group.
                unsafe { l.ring.push(&[send, recv]) }?;
                self.recv = true;
                self.silent_since = Some(l.cx.clock.now());
                trace_stage!(
                    l.turn,
                    5,
                    "conn {}: send {len} B with the next receive (≤ {} B) linked behind it, its success \
                     silent",
                    self.key,
                    self.asked
                );
            }
            None => {
                // SAFETY: as above: the outbox stays put until this send's own completion.
                unsafe { l.ring.push(&[send]) }?;
                trace_stage!(
                    l.turn,
                    6,
                    "conn {}: send {len} B waiting in the outbox (no receive behind it: no room to read, or \
                     the peer is slow)",
                    self.key
                );
            }
        }
        self.send = Some(Flight {
            len,
            silent: behind.is_some(),
        });
        Ok(())
    }

    fn submit_fin(&mut self, l: &mut Lent<'_>) -> io::Result<()> {
        let fin = opcode::Shutdown::new(self.fd(), libc::SHUT_WR)
            .build()
            .user_data(self.tag(Op::Fin));
        // SAFETY: names no memory.
        unsafe { l.ring.push(&[fin]) }?;
        self.fin = true;
        Ok(())
    }

    /// Asks the kernel to cancel everything in flight on this socket. Each cancelled operation still
    /// completes (with `-ECANCELED`, or a send with the bytes it had sent), and only then is its memory free.
    fn cancel(&mut self, l: &mut Lent<'_>) {
        let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::fd(self.fd()).all())
            .build()
            .user_data(self.tag(Op::Cancel));
        // SAFETY: names no memory.
        if unsafe { l.ring.push(&[cancel]) }.is_ok() {
            self.cancelled = true;
        }
    }
}
