//! The UDP load: many sockets in one mio loop, each connected to the server (so the kernel drops datagrams
//! from anyone else and reports "port unreachable" as refused). A datagram is a whole message, so a reply is
//! checked at once; it is matched to the oldest request in flight on its socket whose expected reply it is,
//! since UDP may reorder. A request with no reply within `--timeout` is *lost*, counted apart from wrong
//! replies; a reply that comes after that is *late*; only a reply that no request could have had is wrong.
//!
//! One turn of the loop (`run`; its state is `Load`, one method per stage), numbered as in the comments:
//!
//! ```text
//!  1a closed loop: refill the sockets that had news │ 1b open loop: due requests, round robin
//!  2 over? stop, drain, leave ─► 3 live counts ─► 4 poll ─► 5 dispatch by token ─┬─► writable: may send again
//!                                                                                └─► receive, settle replies
//!  6 sweep: requests older than the timeout are lost ─► back to 1
//! ```
//!
//! Walk-through: `docs/08-measuring.md`.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};

use super::mismatch::{self, Mismatch};
use super::payload::{Payloads, MAX_SIZE, VARIANTS};
use super::timer::{arm_before_poll, Timer, TIMER};
use super::{nanos, Live, LoadOptions, Schedule, Tally, LIVE_EVERY};
use crate::net::{interrupted, would_block};

const EVENTS_CAPACITY: usize = 1024;
/// How often sockets are swept for requests that waited longer than the timeout.
const SWEEP_EVERY: Duration = Duration::from_millis(10);

#[derive(Clone, Copy, Debug)]
struct Inflight {
    variant: u16,
    intended_ns: u64,
    sent_ns: u64,
}

struct Peer {
    socket: UdpSocket,
    open: bool,
    /// The socket refused a send (its buffer is full): wait for a writable event.
    blocked: bool,
    inflight: VecDeque<Inflight>,
    next_variant: usize,
    /// A datagram came back: something serves there, so a later refusal does not undo `connected`.
    answered: bool,
}

impl Peer {
    fn has_room(&self, pipeline: usize) -> bool {
        self.open && !self.blocked && self.inflight.len() < pipeline
    }

    /// Sends one request. False if the socket cannot take it now (the caller gives the request back).
    fn send(
        &mut self,
        payloads: &Payloads,
        intended_ns: u64,
        now_ns: u64,
        tally: &mut Tally,
    ) -> io::Result<bool> {
        let variant = self.next_variant % VARIANTS;
        let request = payloads.request(variant);
        loop {
            match self.socket.send(request) {
                Ok(_) => break,
                Err(ref e) if would_block(e) => {
                    self.blocked = true;
                    return Ok(false);
                }
                Err(ref e) if interrupted(e) => {}
                Err(e) => return Err(e),
            }
        }
        self.next_variant += 1;
        self.inflight.push_back(Inflight {
            variant: variant as u16,
            intended_ns,
            sent_ns: now_ns,
        });
        tally.sent += 1;
        tally.request_bytes += request.len() as u64;
        Ok(true)
    }

    /// Receives until WouldBlock and settles each reply: checked, late or wrong.
    fn receive(
        &mut self,
        buf: &mut [u8],
        payloads: &Payloads,
        tally: &mut Tally,
        now_ns: u64,
    ) -> io::Result<()> {
        loop {
            let n = match self.socket.recv(buf) {
                Ok(n) => n,
                Err(ref e) if would_block(e) => return Ok(()),
                Err(ref e) if interrupted(e) => continue,
                Err(e) => return Err(e),
            };
            self.answered = true;
            let reply = &buf[..n];
            let position = self
                .inflight
                .iter()
                .position(|r| payloads.same_reply(r.variant as usize, reply));
            match position {
                Some(p) => {
                    let request = self.inflight.remove(p).expect("position is in range");
                    tally
                        .latency
                        .saturating_record(now_ns.saturating_sub(request.intended_ns).max(1));
                    tally.checked += 1;
                    tally.reply_bytes += n as u64;
                }
                None if payloads.variant_of_reply(reply).is_some() => tally.udp_late += 1,
                None => {
                    // It answers none of the requests in flight: it settles the oldest, as a wrong reply.
                    // (With nothing in flight it is a reply nobody asked for: wrong all the same.)
                    tally.wrong += 1;
                    let oldest = self.inflight.pop_front();
                    if tally.wants_mismatch() {
                        let variant = oldest.map(|r| r.variant as usize);
                        let expected = variant.map_or(&[][..], |v| payloads.reply(v));
                        let mut got = reply.to_vec();
                        got.truncate(expected.len() + mismatch::EXTRA);
                        tally.mismatches.push(Mismatch {
                            request: variant.map_or(Vec::new(), |v| payloads.request(v).to_vec()),
                            expected: expected.to_vec(),
                            got,
                            first: false,
                        });
                    }
                }
            }
        }
    }

    /// Requests older than the timeout are lost.
    fn expire(&mut self, now_ns: u64, timeout_ns: u64, tally: &mut Tally) {
        while self
            .inflight
            .front()
            .is_some_and(|r| now_ns.saturating_sub(r.sent_ns) >= timeout_ns)
        {
            self.inflight.pop_front();
            tally.udp_lost += 1;
        }
    }

    fn fail(&mut self, e: &io::Error, tally: &mut Tally) {
        // "Port unreachable" before any reply: this socket never reached a server, so it was never up (as a
        // refused TCP connect is not). After a reply it was, as a TCP connection that is later reset.
        if e.kind() == io::ErrorKind::ConnectionRefused && !self.answered {
            tally.connected = tally.connected.saturating_sub(1);
        }
        tally.fail(e);
        tally.unanswered += self.inflight.len() as u64;
        self.inflight.clear();
        self.open = false;
    }
}

fn bind(addr: SocketAddr, source: Option<SocketAddr>) -> io::Result<UdpSocket> {
    let local = source.unwrap_or_else(|| {
        if addr.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            SocketAddr::from(([0u16; 8], 0))
        }
    });
    let socket = UdpSocket::bind(local)?;
    socket.connect(addr)?;
    Ok(socket)
}

/// The whole UDP run: bind and connect every socket, load, drain. One turn of the loop runs the stages in
/// the order the module's picture numbers them.
pub(super) fn run(
    options: &LoadOptions,
    sources: &[SocketAddr],
    observer: &mut dyn FnMut(&Live),
) -> io::Result<Tally> {
    let mut load = Load::new(options, sources)?;
    let mut events = Events::with_capacity(EVENTS_CAPACITY);
    loop {
        let now = Instant::now();
        let now_ns = nanos(load.start, now);
        if options.rate.is_none() {
            // 1a. Closed loop: fill the free slots of the sockets that had news.
            load.refill_touched(now_ns);
        } else {
            // 1b. Open loop: every due request to the next socket with room.
            load.hand_out_due(now_ns);
        }
        // 2. Stop issuing at the end, drain the replies still due, and leave once they are settled.
        if load.is_over(now, now_ns) {
            break;
        }
        // 3. The live counts, a few times a second.
        load.report_live(now, observer);
        // 4. Wait for readiness, the next due request, the next sweep or the end.
        if !load.poll(&mut events, now, now_ns)? {
            continue;
        }
        let now = Instant::now();
        let now_ns = nanos(load.start, now);
        // 5. Each event: a socket that can send again, replies to settle.
        for event in events.iter() {
            load.dispatch(event, now, now_ns);
        }
        // 6. Requests with no reply within the timeout are lost.
        load.sweep_lost(now, now_ns);
    }
    Ok(load.tally)
}

/// One UDP run's state: what every stage of a turn shares.
struct Load<'a> {
    options: &'a LoadOptions,
    payloads: Payloads,
    tally: Tally,
    poll: Poll,
    timer: Timer,
    /// A reply may be larger than expected (a wrong server); the buffer takes any datagram whole.
    buf: Vec<u8>,
    /// The sockets that bound; a socket's index is its token.
    peers: Vec<Peer>,
    schedule: Schedule,
    timeout_ns: u64,
    start: Instant,
    next_sweep: Instant,
    next_live: Instant,
    /// The load is over; the requests still in flight are settled until then.
    drain_until: Option<Instant>,
    last_reply: Option<Instant>,
    /// The open loop's next socket to try.
    rr: usize,
    /// Every socket was full when requests were due: the open loop waits for replies, not the timer.
    backlogged: bool,
    /// Sockets that had news this turn (a reply, room to send), to refill in closed loop.
    touched: Vec<usize>,
}

impl<'a> Load<'a> {
    /// Binds and connects every socket, and lines up each for its first requests.
    fn new(options: &'a LoadOptions, sources: &[SocketAddr]) -> io::Result<Load<'a>> {
        let poll = Poll::new()?;
        let timer = Timer::new(poll.registry())?;
        let mut tally = Tally::new();
        let mut peers = Vec::with_capacity(options.connections);
        for i in 0..options.connections {
            let source = (!sources.is_empty()).then(|| sources[i % sources.len()]);
            match bind(options.addr, source) {
                Ok(mut socket) => {
                    poll.registry().register(
                        &mut socket,
                        Token(peers.len()),
                        Interest::READABLE | Interest::WRITABLE,
                    )?;
                    peers.push(Peer {
                        socket,
                        open: true,
                        blocked: false,
                        inflight: VecDeque::with_capacity(options.pipeline),
                        next_variant: i,
                        answered: false,
                    });
                    tally.connected += 1;
                }
                Err(e) => {
                    log::debug!("udp socket {i}: {e}");
                    tally.fail(&e);
                }
            }
        }
        let start = Instant::now();
        // The first requests: every socket in closed loop; the open loop's start at time 0 is due at once.
        let touched = (0..peers.len()).collect();
        Ok(Load {
            options,
            payloads: Payloads::new(options.size, options.expect, true),
            tally,
            poll,
            timer,
            buf: vec![0u8; MAX_SIZE + 1],
            peers,
            schedule: Schedule::new(options),
            timeout_ns: options.timeout.as_nanos().min(u64::MAX as u128) as u64,
            start,
            next_sweep: start + SWEEP_EVERY,
            next_live: start + LIVE_EVERY,
            drain_until: None,
            last_reply: None,
            rr: 0,
            backlogged: false,
            touched,
        })
    }

    /// Stage 1a.
    fn refill_touched(&mut self, now_ns: u64) {
        for i in self.touched.drain(..) {
            let peer: &mut Peer = &mut self.peers[i];
            while peer.has_room(self.options.pipeline) {
                let Some(at) = self.schedule.take(now_ns) else {
                    break;
                };
                match peer.send(&self.payloads, at, now_ns, &mut self.tally) {
                    Ok(true) => {}
                    Ok(false) => {
                        self.schedule.untake();
                        break;
                    }
                    Err(e) => {
                        self.schedule.untake();
                        peer.fail(&e, &mut self.tally);
                    }
                }
            }
        }
    }

    /// Stage 1b: round robin over the sockets with room, until nothing more is due.
    fn hand_out_due(&mut self, now_ns: u64) {
        if self.peers.is_empty() || self.schedule.stopped {
            return;
        }
        self.touched.clear();
        self.backlogged = false;
        let count = self.peers.len();
        'due: loop {
            let mut tried = 0;
            while !self.peers[self.rr].has_room(self.options.pipeline) {
                self.rr = (self.rr + 1) % count;
                tried += 1;
                if tried == count {
                    self.backlogged = true;
                    break 'due;
                }
            }
            let Some(at) = self.schedule.take(now_ns) else {
                break;
            };
            let peer = &mut self.peers[self.rr];
            match peer.send(&self.payloads, at, now_ns, &mut self.tally) {
                Ok(true) => {}
                Ok(false) => self.schedule.untake(),
                Err(e) => {
                    self.schedule.untake();
                    peer.fail(&e, &mut self.tally);
                }
            }
            self.rr = (self.rr + 1) % count;
        }
    }

    /// Stage 2: at the end of the schedule, with no socket left, or once there have been only wrong
    /// replies, at least one per socket, stop issuing; every request still in flight is settled by the
    /// sweep within one timeout. True once all are, or the drain is over.
    fn is_over(&mut self, now: Instant, now_ns: u64) -> bool {
        let live = self.peers.iter().any(|p| p.open);
        // Over TCP a wrong reply closes its connection, so a server of another service ends the run at once;
        // a datagram changes nothing for the next, so the same server is recognised here instead.
        let only_wrong = self.tally.checked == 0
            && self.tally.wrong > 0
            && self.tally.wrong >= self.peers.len() as u64;
        let ended = self.schedule.check_end(now_ns);
        if (ended || !live || only_wrong) && self.drain_until.is_none() {
            if !ended {
                self.tally.stopped_early = Some(self.tally.early_stop());
            }
            self.schedule.stopped = true;
            self.drain_until = Some(now + self.options.timeout + SWEEP_EVERY);
        }
        if let Some(until) = self.drain_until {
            if self.tally.outstanding() == 0 || now >= until {
                self.tally.load_time = self
                    .last_reply
                    .unwrap_or(now)
                    .saturating_duration_since(self.start);
                return true;
            }
        }
        false
    }

    /// Stage 3.
    fn report_live(&mut self, now: Instant, observer: &mut dyn FnMut(&Live)) {
        if now >= self.next_live {
            self.next_live = now + LIVE_EVERY;
            observer(&self.tally.live(now - self.start, self.schedule.total()));
        }
    }

    /// Stage 4. False if the poll was interrupted (the turn starts again).
    fn poll(&mut self, events: &mut Events, now: Instant, now_ns: u64) -> io::Result<bool> {
        let wait = self
            .schedule
            .wait(now_ns, self.backlogged)
            .min(self.next_sweep.saturating_duration_since(now));
        arm_before_poll(&self.timer, wait, self.options.rate.is_some());
        match self.poll.poll(events, Some(wait)) {
            Ok(()) => Ok(true),
            Err(e) if interrupted(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Stage 5: one event.
    fn dispatch(&mut self, event: &Event, now: Instant, now_ns: u64) {
        if event.token() == TIMER {
            self.timer.clear();
            return;
        }
        let i = event.token().0;
        let Some(peer) = self.peers.get_mut(i) else {
            return;
        };
        if !peer.open {
            return;
        }
        if event.is_writable() {
            peer.blocked = false;
        }
        if event.is_readable() || event.is_error() {
            let checked = self.tally.checked;
            if let Err(e) = peer.receive(&mut self.buf, &self.payloads, &mut self.tally, now_ns) {
                peer.fail(&e, &mut self.tally);
            }
            if self.tally.checked > checked {
                self.last_reply = Some(now);
            }
        }
        self.touched.push(i);
    }

    /// Stage 6.
    fn sweep_lost(&mut self, now: Instant, now_ns: u64) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + SWEEP_EVERY;
        for (i, peer) in self.peers.iter_mut().enumerate() {
            let before = peer.inflight.len();
            peer.expire(now_ns, self.timeout_ns, &mut self.tally);
            if peer.inflight.len() < before {
                self.touched.push(i);
            }
        }
    }
}
