//! The one event loop both transports run. What a turn does (poll, hand requests out, write them, sweep for
//! what timed out, decide the load is over, report the live counts) is the same over TCP and UDP; what differs
//! is behind [`Transport`], one small interface that [`super::tcp`] and [`super::udp`] implement: how sockets
//! open and settle, how one request is issued and written, what one readiness event means, and what the sweep
//! looks for. The loop is generic over it, so each transport's calls are direct, not virtual.
//!
//! One turn (`run`), numbered as in the comments:
//!
//! ```text
//!  1 open sockets (TCP: a connect window at a time)
//!  2 before the load: settled? start │ closed loop: refill the sockets that had news │ open loop: due requests
//!  3 write what was queued ─► 4 sweep (TCP: stalls, slow connects; UDP: lost requests)
//!  5 over? stop issuing, drain, leave ─► 6 live counts ─► 7 poll ─► 8 each event to its socket ─► 1
//! ```
//!
//! Walk-through: `docs/08-measuring.md`.

use std::io;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::{Events, Poll};

use super::payload::Payloads;
use super::schedule::Schedule;
use super::timer::{arm_before_poll, Timer, TIMER};
use super::{nanos, Live, LoadOptions, Tally, LIVE_EVERY};
use crate::net::interrupted;

/// Readiness events taken from one poll.
const EVENTS_CAPACITY: usize = 1024;

/// The longest the loop sleeps when nothing is due: often enough for the live counts and the sweep.
const MAX_WAIT: Duration = Duration::from_millis(50);

/// What differs between the TCP and the UDP load. Sockets are numbered from 0 (the number is also the mio
/// token); those that carry requests come first, `0..load_count()`.
pub(super) trait Transport {
    /// How often [`Transport::sweep`] runs.
    const SWEEP_EVERY: Duration;
    /// How much longer than `--timeout` the last replies are awaited once the load is over (UDP: one sweep
    /// more, so that every request still in flight has been declared lost by then).
    const DRAIN_SLACK: Duration;

    /// Stage 1: opens more sockets, if some are still to open.
    fn open(&mut self, core: &mut Core) -> io::Result<()>;
    /// Stage 2, before the load: whether every socket has connected or failed.
    fn settled(&self) -> bool;
    /// Stage 2, at the start: anything queued before the first requests (TCP: half the idle connections'
    /// half lines), with [`Core::touch`] for what must be written.
    fn begin(&mut self, core: &mut Core);
    /// Sockets that carry requests.
    fn load_count(&self) -> usize;
    /// Of those, how many are still up.
    fn live(&self) -> usize;
    /// Whether socket `i` can take one more request now.
    fn has_room(&self, i: usize, pipeline: usize) -> bool;
    /// Issues one request on socket `i`, due at `intended_ns` (ns since the load began). False if the socket
    /// could not take it now (the caller gives it back to the schedule).
    fn issue(&mut self, core: &mut Core, i: usize, intended_ns: u64, now_ns: u64) -> bool;
    /// Stage 3: writes what socket `i` has queued (UDP sends at once and has nothing queued).
    fn flush(&mut self, core: &mut Core, i: usize);
    /// Stage 4: what timed out.
    fn sweep(&mut self, core: &mut Core, now: Instant, now_ns: u64);
    /// Stage 8: one readiness event for socket `i`. True when the socket had news: it may have room for
    /// requests, or something to write.
    fn event(&mut self, core: &mut Core, i: usize, event: &Event, now_ns: u64) -> bool;
    /// Whether the replies so far show the server serves something else, so the load should stop (UDP: a
    /// wrong datagram changes nothing for the next, so the run stops on the count instead; over TCP each wrong
    /// reply closes its connection and the run stops when none is left).
    fn only_wrong(&self, _tally: &Tally) -> bool {
        false
    }
    /// After the loop: closes what is open; what is still awaited is counted.
    fn finish(&mut self, core: &mut Core);
}

/// What every stage of a turn shares, whichever the transport.
pub(super) struct Core<'a> {
    pub options: &'a LoadOptions,
    pub payloads: Payloads,
    pub tally: Tally,
    pub poll: Poll,
    timer: Timer,
    schedule: Schedule,
    pub timeout_ns: u64,
    /// When the run began (connecting included).
    pub origin: Instant,
    /// When the load began: every socket settled.
    pub start: Option<Instant>,
    /// The load is over; the replies still due are awaited until then.
    drain_until: Option<Instant>,
    last_reply: Option<Instant>,
    next_live: Instant,
    next_sweep: Instant,
    /// The open loop's next socket to try.
    rr: usize,
    /// Every socket was full when requests were due: the open loop waits for replies, not the timer.
    backlogged: bool,
    /// Sockets that had news or were given requests this turn, to refill and write; `marked` keeps each in
    /// the list once. Both are sized once, so a turn allocates nothing.
    touched: Vec<usize>,
    marked: Vec<bool>,
}

impl<'a> Core<'a> {
    /// The shared state for `sockets` sockets.
    pub fn new(
        options: &'a LoadOptions,
        payloads: Payloads,
        sockets: usize,
    ) -> io::Result<Core<'a>> {
        let poll = Poll::new()?;
        let timer = Timer::new(poll.registry())?;
        let origin = Instant::now();
        Ok(Core {
            options,
            payloads,
            tally: Tally::new(),
            poll,
            timer,
            schedule: Schedule::new(options),
            timeout_ns: options.timeout.as_nanos().min(u64::MAX as u128) as u64,
            origin,
            start: None,
            drain_until: None,
            last_reply: None,
            next_live: origin + LIVE_EVERY,
            next_sweep: origin,
            rr: 0,
            backlogged: false,
            touched: Vec::with_capacity(sockets),
            marked: vec![false; sockets],
        })
    }

    /// Socket `i` is to be refilled (closed loop) and written this turn.
    pub fn touch(&mut self, i: usize) {
        if let Some(marked) = self.marked.get_mut(i) {
            if !*marked {
                *marked = true;
                self.touched.push(i);
            }
        }
    }

    /// Nanoseconds since the load began (0 before it has): the schedule's and the latencies' clock.
    pub fn load_ns(&self, now: Instant) -> u64 {
        self.start.map_or(0, |s| nanos(s, now))
    }

    /// Whether the load is over and only the last replies are awaited.
    pub fn draining(&self) -> bool {
        self.drain_until.is_some()
    }

    /// Whether the run is closed loop (no `--rate`).
    fn closed_loop(&self) -> bool {
        self.options.rate.is_none()
    }
}

/// The whole run over one transport: open, settle, load, drain. One turn runs the stages in the order the
/// module's picture numbers them.
pub(super) fn run<T: Transport>(
    mut core: Core,
    transport: &mut T,
    observer: &mut dyn FnMut(&Live),
) -> io::Result<Tally> {
    let mut events = Events::with_capacity(EVENTS_CAPACITY);
    loop {
        let now = Instant::now();
        // 1. More sockets, while there is room to open them.
        transport.open(&mut core)?;
        // 2. Before the load, its start once every socket settled; during it, requests for the sockets.
        if core.start.is_none() {
            if transport.settled() {
                begin(&mut core, transport, now);
            }
        } else if core.closed_loop() {
            refill_touched(&mut core, transport, now);
        } else {
            hand_out_due(&mut core, transport, now);
        }
        // 3. Write what this turn queued.
        flush_touched(&mut core, transport);
        // 4. What timed out.
        if now >= core.next_sweep {
            core.next_sweep = now + T::SWEEP_EVERY;
            let now_ns = core.load_ns(now);
            transport.sweep(&mut core, now, now_ns);
        }
        // 5. Stop issuing at the end, drain the replies still due, and leave once they are settled.
        if is_over::<T>(&mut core, transport, now) {
            break;
        }
        // 6. The live counts, a few times a second.
        if now >= core.next_live {
            core.next_live = now + LIVE_EVERY;
            observer(&core.tally.live(now - core.origin, core.schedule.total()));
        }
        // 7. Wait for readiness, the next due request, the next sweep or the end.
        if !poll(&mut core, &mut events, now)? {
            continue;
        }
        // 8. Each event to its socket, at the time the poll returned.
        let now = Instant::now();
        let now_ns = core.load_ns(now);
        let checked = core.tally.checked;
        for event in events.iter() {
            if event.token() == TIMER {
                core.timer.clear();
                continue;
            }
            let i = event.token().0;
            if transport.event(&mut core, i, event, now_ns) {
                core.touch(i);
            }
        }
        if core.tally.checked > checked {
            core.last_reply = Some(now);
        }
    }
    transport.finish(&mut core);
    Ok(core.tally)
}

/// Stage 2, once: the load starts; in closed loop every load socket gets its first requests.
fn begin<T: Transport>(core: &mut Core, transport: &mut T, now: Instant) {
    core.start = Some(now);
    log::debug!(
        "{} of {} sockets up in {:?}; load starts",
        core.tally.connected,
        core.marked.len(),
        now - core.origin
    );
    transport.begin(core);
    if core.closed_loop() {
        for i in 0..transport.load_count() {
            core.touch(i);
        }
        refill_touched(core, transport, now);
    }
}

/// Stage 2, closed loop: every socket that had news gets requests until it is full.
fn refill_touched<T: Transport>(core: &mut Core, transport: &mut T, now: Instant) {
    let now_ns = core.load_ns(now);
    let pipeline = core.options.pipeline;
    // Taken out and put back, so that the transport can have the core meanwhile; no allocation.
    let touched = std::mem::take(&mut core.touched);
    for &i in &touched {
        while transport.has_room(i, pipeline) {
            let Some(at) = core.schedule.take(now_ns) else {
                break;
            };
            if !transport.issue(core, i, at, now_ns) {
                core.schedule.untake();
                break;
            }
        }
    }
    core.touched = touched;
}

/// Stage 2, open loop: every due request to the next load socket with room, round robin.
fn hand_out_due<T: Transport>(core: &mut Core, transport: &mut T, now: Instant) {
    let load = transport.load_count();
    if core.schedule.stopped || load == 0 {
        return;
    }
    let now_ns = core.load_ns(now);
    let pipeline = core.options.pipeline;
    core.backlogged = false;
    'due: loop {
        let mut tried = 0;
        while !transport.has_room(core.rr, pipeline) {
            core.rr = (core.rr + 1) % load;
            tried += 1;
            if tried == load {
                core.backlogged = true;
                break 'due;
            }
        }
        let Some(at) = core.schedule.take(now_ns) else {
            break;
        };
        let i = core.rr;
        if transport.issue(core, i, at, now_ns) {
            core.touch(i);
        } else {
            core.schedule.untake();
        }
        core.rr = (i + 1) % load;
    }
}

/// Stage 3.
fn flush_touched<T: Transport>(core: &mut Core, transport: &mut T) {
    let mut touched = std::mem::take(&mut core.touched);
    for i in touched.drain(..) {
        core.marked[i] = false;
        transport.flush(core, i);
    }
    core.touched = touched;
}

/// Stage 5: at the end of the schedule, with no load socket left, or once the replies show another service,
/// stop issuing and drain for at most the timeout. True once every request is settled or the drain is over.
fn is_over<T: Transport>(core: &mut Core, transport: &T, now: Instant) -> bool {
    let Some(started) = core.start else {
        return false;
    };
    let ended = core.schedule.check_end(core.load_ns(now));
    let stop = ended || transport.live() == 0 || transport.only_wrong(&core.tally);
    if stop && core.drain_until.is_none() {
        if ended {
            core.tally.unsent = core.schedule.unsent();
        } else if !core.schedule.stopped {
            core.tally.stopped_early = Some(core.tally.early_stop());
        }
        core.schedule.stopped = true;
        core.drain_until = Some(now + core.options.timeout + T::DRAIN_SLACK);
    }
    if let Some(until) = core.drain_until {
        if core.tally.outstanding() == 0 || now >= until {
            core.tally.load_time = core
                .last_reply
                .unwrap_or(now)
                .saturating_duration_since(started);
            return true;
        }
    }
    false
}

/// Stage 7. False if the poll was interrupted (the turn starts again).
fn poll(core: &mut Core, events: &mut Events, now: Instant) -> io::Result<bool> {
    let wait = match (core.start, core.drain_until) {
        (None, _) => MAX_WAIT,
        (Some(_), Some(until)) => until.saturating_duration_since(now).min(MAX_WAIT),
        (Some(_), None) => core
            .schedule
            .wait(core.load_ns(now), core.backlogged)
            .min(core.next_sweep.saturating_duration_since(now)),
    };
    arm_before_poll(&core.timer, wait, !core.closed_loop());
    match core.poll.poll(events, Some(wait)) {
        Ok(()) => Ok(true),
        Err(e) if interrupted(&e) => Ok(false),
        Err(e) => Err(e),
    }
}
