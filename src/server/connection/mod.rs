//! The connection core: one TCP connection's whole life, with no I/O. It is given the bytes that arrived,
//! the peer's end of stream, the time (in the [`Context`]) and the shutdown; it says how much it may take
//! now ([`Connection::room`]), what it has to send ([`Connection::pending`]), when it next wants to be woken
//! ([`Connection::poll_at`]), whether to send FIN ([`Connection::wants_fin`]) and when it is finished
//! ([`Phase::Done`]). It never touches a socket and never reads the clock, as smoltcp's sockets
//! (`process`, `dispatch`, `poll_at`) and quinn-proto's `Connection` do not: so its whole life is tested
//! here with bytes and an injected time, and every mode (a driver in `server/`) only waits and moves bytes.
//!
//! The folder holds:
//! - this file: [`Connection`] and its [`Phase`]s, every timeout, backpressure and the shutdown rule;
//! - `outbox.rs`: [`Outbox`], the replies the kernel has not taken yet;
//! - `context.rs`: [`Context`] and [`Policy`], what a driver lends every call;
//! - `account.rs`: [`Account`], the budget for unsent replies of all connections together;
//! - `tests.rs`: the whole life at byte level, with an injected clock and no socket.
//!
//! ```text
//!            received → reply    the service says Close, the peer ends the stream, or shutdown
//!  ┌──────┐ ───────────┐          ┌──────────┐  nothing pending:   ┌───────────┐  peer's FIN, or
//!  │ Open │ ◄──────────┘ ──────►  │ Flushing │ ─ wants_fin, FIN ─► │ Lingering │ ─ linger over ─► Done
//!  └──────┘                       └──────────┘                     └───────────┘
//!      (the peer already ended its stream: straight to Done;  a timeout: Done from any phase)
//! ```
//!
//! # Why linger
//! Closing a socket that still has unread input makes the kernel send a reset instead of a FIN, and a reset
//! can destroy replies still in flight or unread by the peer. So a connection the server ends (the
//! service's `exit`, an error, a shutdown) shuts its write side, then reads and drops what the peer still
//! sends until the peer's own FIN, for at most [`LINGER`] (and never past the shutdown's deadline).
//!
//! # What a driver must do
//! After every call that can make output (the constructor, [`Connection::received`],
//! [`Connection::peer_closed`], [`Connection::stop_reading`], [`Connection::on_timeout`]) the driver
//! writes what [`Connection::pending`] returns, as much as the socket takes, and reports it with
//! [`Connection::sent`] (0 if it wrote nothing) before it calls into another connection: replies are built
//! in the context's one shared buffer, and `sent` moves what was not taken into this connection's own
//! [`Outbox`]. The bytes `pending` returns stay where they are until `sent` or the next call that takes
//! input, so a driver may hand them to the kernel and report later.
//!
//! A completion driver (`server/uring/`) hands the kernel a reply and learns only later how much went,
//! while other connections' replies are built in the shared buffer meanwhile. So it first calls
//! `sent(cx, 0)`, which moves the reply into this connection's own outbox, sends from there, and takes no
//! more input for this connection (nor calls [`Connection::on_timeout`] or [`Connection::stop_reading`],
//! which may append a reply) until the send has completed: nothing then moves the bytes. With
//! [`Context::recycle_replies`] the reply moves without a copy and no buffer is allocated per reply.
//!
//! Walk-through: `docs/06-connection.md`.

mod account;
mod context;
mod outbox;

use std::cell::Cell;
use std::time::Instant;

pub use self::account::Account;
pub use self::context::{Context, Policy};
pub use self::outbox::{Outbox, Spares};
use super::limits::{deadline_after, LINGER, MIN_READ};
use crate::service::{Clock, Session, Step};

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Reading requests and writing replies.
    Open,
    /// Reading is over (the service closed, the peer ended the stream, or the server is shutting down):
    /// deliver what is pending, then FIN ([`Connection::wants_fin`]).
    Flushing,
    /// Everything owed was written and FIN sent; what the peer still sends is read and dropped until its
    /// own FIN, so closing cannot reset the last replies.
    Lingering,
    /// Finished: close the socket.
    Done(End),
}

/// Why a connection finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Everything owed was delivered and the stream ended.
    Finished,
    /// It sent nothing for a whole `--idle-timeout` window while the server waited on it.
    Idle,
    /// It sent less than `--min-rate` bytes per second over a window.
    TooSlow,
    /// Its replies waited `--write-timeout` without the peer reading any of them.
    WriteTimeout,
    /// After our FIN, the peer did not end its side within [`LINGER`] (or the shutdown's deadline).
    Linger,
}

impl End {
    /// For the log: why the connection was closed.
    pub fn describe(self) -> &'static str {
        match self {
            End::Finished => "finished",
            End::Idle => "idle timeout",
            End::TooSlow => "too slow: under --min-rate",
            End::WriteTimeout => "write timeout: the peer stopped reading its replies",
            End::Linger => "closed: the peer did not close its side in time",
        }
    }

    /// A timeout the server applied, rather than the conversation's own end.
    pub fn is_timeout(self) -> bool {
        self != End::Finished
    }
}

/// What a connection may read now ([`Connection::room`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Room {
    /// Read at most this many bytes (never 0) and hand them to [`Connection::received`].
    Read(usize),
    /// Its own unsent replies are at `--high-water`: read again once some are written.
    Full,
    /// The server's budget for unsent replies (`--max-unsent`) is spent: read again once replies drain.
    Starved,
    /// Not reading: what is owed is being delivered, or the connection is done.
    Closed,
}

/// One TCP connection's service state, unsent replies, phase and timers.
#[derive(Debug)]
pub struct Connection {
    session: Session,
    outbox: Outbox,
    phase: Phase,
    /// The peer ended its stream (a read returned 0).
    peer_done: bool,
    /// [`Connection::room`] said `Starved` during the current idle window: the server's budget kept it
    /// unread, so the window says nothing about the peer. Noted by `room`, which only looks, hence a `Cell`.
    kept_unread: Cell<bool>,
    /// When the current idle window ends (`None`: no idle timeout), and the bytes received in it (the idle
    /// and minimum-rate rule). Kept as the end rather than the start, so asking for the next deadline, on
    /// every turn a connection is driven, is a comparison and not a sum.
    idle_due: Option<Instant>,
    window_bytes: u64,
    /// While replies wait: when the write timeout expires, counted from the last write that made progress
    /// or from when replies began to wait.
    write_due: Option<Instant>,
    /// While lingering: when to stop waiting for the peer's FIN.
    linger_until: Option<Instant>,
}

impl Connection {
    /// A newly accepted connection. Its greeting, if the service has one, is pending at once.
    pub fn new(cx: &mut Context) -> Connection {
        debug_assert!(
            cx.scratch.is_empty(),
            "the previous connection's reply was not sent"
        );
        let now = cx.clock.now();
        let mut conn = Connection {
            session: cx.session(),
            outbox: Outbox::default(),
            phase: Phase::Open,
            peer_done: false,
            kept_unread: Cell::new(false),
            idle_due: cx.policy.idle_timeout.map(|t| deadline_after(now, t)),
            window_bytes: 0,
            write_due: None,
            linger_until: None,
        };
        conn.session.greeting(&mut cx.scratch);
        conn
    }

    /// Where it is in its life.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Finished: the driver closes the socket (after [`Connection::release`]).
    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done(_))
    }

    /// Unsent reply bytes this connection holds (not counting a reply still in the shared buffer).
    pub fn unsent(&self) -> usize {
        self.outbox.len()
    }

    /// The most the service can reply to `input` bytes: what a driver whose threads share the server's
    /// budget claims on the account while it hands them to the core ([`Account::claim`]).
    pub fn reply_bound(&self, input: usize) -> usize {
        self.session.max_output(input)
    }

    /// Bytes the service holds back now (an unfinished line, a character split across reads).
    pub fn held(&self) -> usize {
        self.session.held()
    }

    /// Bytes to write now, oldest first: the outbox, or else the reply just built in the shared buffer.
    pub fn pending<'a>(&'a self, cx: &'a Context) -> &'a [u8] {
        if self.outbox.is_empty() {
            &cx.scratch
        } else {
            self.outbox.bytes()
        }
    }

    /// The driver wrote `n` bytes of [`Connection::pending`] (0 if none). What a reply in the shared
    /// buffer still holds moves to this connection's outbox, and the shared buffer is free again.
    pub fn sent(&mut self, cx: &mut Context, n: usize) {
        cx.stats.bytes_out += n as u64;
        let before = self.outbox.len();
        if before == 0 {
            if n == cx.scratch.len() {
                // The common case: the reply went out whole, and nothing waits.
                cx.scratch.clear();
                self.settle(cx);
                return;
            }
            if n == 0 && cx.spares.enabled() {
                // A completion driver hands the whole reply over: it moves without a copy.
                self.outbox.adopt(&mut cx.scratch, &mut cx.spares);
            } else {
                self.outbox.keep(&cx.scratch, n, &mut cx.spares);
                cx.scratch.clear();
            }
            // Replies began to wait: the write timeout counts from now.
            self.write_due = cx
                .policy
                .write_timeout
                .map(|t| deadline_after(cx.clock.now(), t));
        } else {
            self.outbox.written(n, &mut cx.spares);
            if n > 0 && !self.outbox.is_empty() {
                // Progress, and more waits: the write timeout counts from now (an empty outbox has none).
                self.write_due = cx
                    .policy
                    .write_timeout
                    .map(|t| deadline_after(cx.clock.now(), t));
            }
        }
        let after = self.outbox.len();
        if after != before {
            cx.account.changed(before, after);
            cx.stats.peak_pending = cx.stats.peak_pending.max(after);
        }
        self.settle(cx);
    }

    /// How much the driver may read now. While open, no more than the replies the room left can hold:
    /// under this connection's `--high-water`, and under the server's `--max-unsent` (`account.rs`). That
    /// is backpressure instead of unbounded memory; a read smaller than [`MIN_READ`] is not worth a
    /// system call, so below that it waits. While lingering, anything (it is dropped).
    pub fn room(&self, cx: &Context) -> Room {
        match self.phase {
            Phase::Open => {}
            Phase::Lingering => return Room::Read(usize::MAX),
            Phase::Flushing | Phase::Done(_) => return Room::Closed,
        }
        let own = self.outbox.len() + cx.scratch.len();
        let room = cx.policy.high_water.saturating_sub(own);
        // The server's budget (`account.rs`): below its soft limit, what fits there. Replies grow with
        // input, so what fits in the smaller room is what fits in both.
        let account = &cx.account;
        let held = account.committed();
        let below = account.soft_limit().saturating_sub(held);
        let fits = self.session.max_input(room.min(below));
        if fits >= MIN_READ {
            return Room::Read(fits);
        }
        if self.session.max_input(room) < MIN_READ {
            Room::Full
        } else if own == 0
            && self.session.max_output(MIN_READ) <= account.limit().saturating_sub(held)
        {
            // Past the soft limit, one small read for a connection that holds nothing, if its replies
            // cannot overrun the budget.
            Room::Read(MIN_READ)
        } else {
            self.kept_unread.set(true);
            Room::Starved
        }
    }

    /// `input` was read. While open the service answers it; while lingering it is dropped.
    pub fn received(&mut self, cx: &mut Context, input: &[u8]) {
        if self.phase != Phase::Open {
            return;
        }
        cx.stats.bytes_in += input.len() as u64;
        self.window_bytes += input.len() as u64;
        if self.answer(cx, |session, clock, out| session.feed(clock, input, out)) == Step::Close {
            self.phase = Phase::Flushing;
        }
        self.settle(cx);
    }

    /// A read returned 0: the peer ended its stream. The service answers what it still holds; while
    /// lingering, this is the FIN that was waited for.
    pub fn peer_closed(&mut self, cx: &mut Context) {
        self.peer_done = true;
        match self.phase {
            Phase::Open => {
                self.phase = Phase::Flushing;
                self.answer(cx, |session, clock, out| {
                    session.finish(clock, out);
                    Step::Close
                });
            }
            Phase::Lingering => self.phase = Phase::Done(End::Finished),
            Phase::Flushing | Phase::Done(_) => {}
        }
        self.settle(cx);
    }

    /// The server is shutting down (`cx.deadline` is set): nothing more is read; what the service owes for
    /// what it took is sent, then the connection ends as any other the server ends. One that lingers
    /// already waits no later than the deadline.
    pub fn stop_reading(&mut self, cx: &mut Context) {
        match self.phase {
            Phase::Open => {
                self.phase = Phase::Flushing;
                self.answer(cx, |session, _, out| {
                    session.drain(out);
                    Step::Close
                });
                self.settle(cx);
            }
            Phase::Lingering => {
                if let (Some(until), Some(deadline)) = (&mut self.linger_until, cx.deadline) {
                    *until = (*until).min(deadline);
                }
            }
            Phase::Flushing | Phase::Done(_) => {}
        }
    }

    /// Everything owed is written and the peer has not ended its stream: shut the write side now (FIN),
    /// then call [`Connection::fin_sent`].
    pub fn wants_fin(&self, cx: &Context) -> bool {
        self.phase == Phase::Flushing
            && self.outbox.is_empty()
            && cx.scratch.is_empty()
            && !self.peer_done
    }

    /// The driver shut the write side: linger until the peer's FIN, for at most [`LINGER`] and never past
    /// the shutdown's deadline.
    pub fn fin_sent(&mut self, cx: &Context) {
        if !self.wants_fin(cx) {
            return;
        }
        self.phase = Phase::Lingering;
        let until = deadline_after(cx.clock.now(), LINGER);
        self.linger_until = Some(cx.deadline.map_or(until, |d| d.min(until)));
    }

    /// When the connection next wants [`Connection::on_timeout`]: the end of its idle window, its write
    /// timeout while replies wait, the end of its linger, or the service's own deadline while open.
    pub fn poll_at(&self) -> Option<Instant> {
        let sooner = |a: Option<Instant>, b: Option<Instant>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, None) => a,
            (None, b) => b,
        };
        let mut at = match self.phase {
            Phase::Done(_) => return None,
            Phase::Open => sooner(self.idle_due, self.session.deadline()),
            Phase::Flushing => self.idle_due,
            Phase::Lingering => sooner(self.idle_due, self.linger_until),
        };
        if !self.outbox.is_empty() {
            at = sooner(at, self.write_due);
        }
        at
    }

    /// Whatever came due by the context's time: a linger over, replies waiting too long, the service's own
    /// deadline (it says what it says then, an HTTP `408`, and may close), an idle window with too little
    /// input. Safe to call at any time: nothing that is not due happens.
    pub fn on_timeout(&mut self, cx: &mut Context) {
        let now = cx.clock.now();
        let policy = cx.policy;
        if self.is_done() {
            return;
        }
        if self.phase == Phase::Lingering && self.linger_until.is_some_and(|until| now >= until) {
            self.phase = Phase::Done(End::Linger);
            return;
        }
        if !self.outbox.is_empty() && self.write_due.is_some_and(|due| now >= due) {
            self.phase = Phase::Done(End::WriteTimeout);
            return;
        }
        if self.phase == Phase::Open && self.session.deadline().is_some_and(|d| now >= d) {
            if self.answer(cx, |session, clock, out| session.expire(clock, out)) == Step::Close {
                self.phase = Phase::Flushing;
            }
            self.settle(cx);
        }
        if let (Some(window), Some(due)) = (policy.idle_timeout, self.idle_due) {
            if now >= due {
                // Only a connection the server is waiting on counts as idle: one whose replies wait for its
                // peer to read is the write timeout's business, one that has stopped reading has nothing
                // more to say (its linger has a limit of its own), and one the server's budget for unsent
                // replies kept unread during the window (`Room::Starved`) may have sent plenty that waits
                // in the kernel: a driver that reads only after asking about timeouts (a blocking thread)
                // would otherwise close it the moment the budget frees, before reading what it sent.
                let readable = matches!(self.room(cx), Room::Read(_));
                let kept_unread = self.kept_unread.replace(false) || !readable;
                let waiting_on_peer =
                    self.phase == Phase::Open && self.outbox.is_empty() && !kept_unread;
                // The rate over the whole window, fractions of a second included (a window of 0.5 s at
                // 1,000 B/s asks for 500 bytes, not for 1,000 × 0 rounded up to one).
                let needed = u64::try_from(
                    u128::from(policy.min_rate)
                        .saturating_mul(window.as_nanos())
                        .div_ceil(1_000_000_000),
                )
                .unwrap_or(u64::MAX)
                .max(1);
                if waiting_on_peer && self.window_bytes < needed {
                    self.phase = Phase::Done(if self.window_bytes == 0 {
                        End::Idle
                    } else {
                        End::TooSlow
                    });
                    return;
                }
                self.idle_due = Some(deadline_after(now, window));
                self.window_bytes = 0;
            }
        }
    }

    /// The connection is being closed (done, or cut by an error or the shutdown's deadline): its unsent
    /// replies leave the server's account. Every driver calls this once, before dropping it.
    /// A reply still in the shared buffer can only be this connection's (see the module docs): it goes too.
    pub fn release(&mut self, cx: &mut Context) {
        let dropped = self.outbox.clear(&mut cx.spares);
        cx.account.changed(dropped, 0);
        cx.scratch.clear();
    }

    /// Lets the service append a reply: to the shared buffer when nothing of this connection waits, else
    /// behind what waits (and then the account and the peak count it at once).
    fn answer(
        &mut self,
        cx: &mut Context,
        service: impl FnOnce(&mut Session, &Clock, &mut Vec<u8>) -> Step,
    ) -> Step {
        let before = self.outbox.len();
        let Context { clock, scratch, .. } = cx;
        let out = if before == 0 {
            scratch
        } else {
            self.outbox.tail()
        };
        let step = service(&mut self.session, clock, out);
        let after = self.outbox.len();
        if after != before {
            cx.account.changed(before, after);
            cx.stats.peak_pending = cx.stats.peak_pending.max(after);
        }
        step
    }

    /// Moves on once everything owed is written: a peer that already ended its stream is done; otherwise
    /// the driver is asked for FIN ([`Connection::wants_fin`]).
    fn settle(&mut self, cx: &Context) {
        if self.phase == Phase::Flushing
            && self.peer_done
            && self.outbox.is_empty()
            && cx.scratch.is_empty()
        {
            self.phase = Phase::Done(End::Finished);
        }
    }
}

#[cfg(test)]
mod tests;
