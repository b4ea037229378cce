//! The UDP load: many sockets in one mio loop, each connected to the server (so the kernel drops datagrams
//! from anyone else and reports "port unreachable" as refused). A datagram is a whole message, so a reply is
//! checked at once; it is matched to the oldest request in flight on its socket whose expected reply it is,
//! since UDP may reorder. A request with no reply within `--timeout` is *lost*, counted apart from wrong
//! replies; a reply that comes after that is *late*; only a reply that no request could have had is wrong.
//!
//! Walk-through: `docs/08-measuring.md`.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};

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
            let reply = &buf[..n];
            let position = self
                .inflight
                .iter()
                .position(|r| payloads.reply(r.variant as usize) == reply);
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
                    self.inflight.pop_front();
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

/// The whole UDP run: bind and connect every socket, load, drain.
pub(super) fn run(
    options: &LoadOptions,
    sources: &[SocketAddr],
    observer: &mut dyn FnMut(&Live),
) -> io::Result<Tally> {
    let payloads = Payloads::new(options.size, options.expect, true);
    let mut tally = Tally::new();
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(EVENTS_CAPACITY);
    let timer = Timer::new(poll.registry())?;
    // A reply may be larger than expected (a wrong server); the buffer takes any datagram whole.
    let mut buf = vec![0u8; MAX_SIZE + 1];
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
                });
                tally.connected += 1;
            }
            Err(e) => {
                log::debug!("udp socket {i}: {e}");
                tally.fail(&e);
            }
        }
    }

    let mut schedule = Schedule::new(options);
    let timeout_ns = options.timeout.as_nanos().min(u64::MAX as u128) as u64;
    let start = Instant::now();
    let mut next_sweep = start + SWEEP_EVERY;
    let mut next_live = start + LIVE_EVERY;
    let mut drain_until: Option<Instant> = None;
    let mut last_reply: Option<Instant> = None;
    let mut rr = 0usize;
    let mut backlogged = false;
    let mut touched = Vec::new();

    // The first requests: every socket in closed loop; the open loop's start at time 0 is due below.
    touched.extend(0..peers.len());
    loop {
        let now = Instant::now();
        let now_ns = nanos(start, now);

        // Closed loop: fill the slots of the sockets that had news. Open loop: hand out what is due.
        if options.rate.is_none() {
            for i in touched.drain(..) {
                let peer: &mut Peer = &mut peers[i];
                while peer.has_room(options.pipeline) {
                    let Some(at) = schedule.take(now_ns) else {
                        break;
                    };
                    match peer.send(&payloads, at, now_ns, &mut tally) {
                        Ok(true) => {}
                        Ok(false) => {
                            schedule.untake();
                            break;
                        }
                        Err(e) => {
                            schedule.untake();
                            peer.fail(&e, &mut tally);
                        }
                    }
                }
            }
        } else if !peers.is_empty() && !schedule.stopped {
            touched.clear();
            backlogged = false;
            'due: loop {
                let mut tried = 0;
                while !peers[rr].has_room(options.pipeline) {
                    rr = (rr + 1) % peers.len();
                    tried += 1;
                    if tried == peers.len() {
                        backlogged = true;
                        break 'due;
                    }
                }
                let Some(at) = schedule.take(now_ns) else {
                    break;
                };
                let peer = &mut peers[rr];
                match peer.send(&payloads, at, now_ns, &mut tally) {
                    Ok(true) => {}
                    Ok(false) => schedule.untake(),
                    Err(e) => {
                        schedule.untake();
                        peer.fail(&e, &mut tally);
                    }
                }
                rr = (rr + 1) % peers.len();
            }
        }

        let live = peers.iter().any(|p| p.open);
        if (schedule.check_end(now_ns) || !live) && drain_until.is_none() {
            schedule.stopped = true;
            // Every request still in flight is settled by the sweep within one timeout.
            drain_until = Some(now + options.timeout + SWEEP_EVERY);
        }
        if let Some(until) = drain_until {
            if tally.outstanding() == 0 || now >= until {
                tally.load_time = last_reply.unwrap_or(now).saturating_duration_since(start);
                break;
            }
        }
        if now >= next_live {
            next_live = now + LIVE_EVERY;
            observer(&tally.live(now - start, schedule.total()));
        }

        let wait = schedule
            .wait(now_ns, backlogged)
            .min(next_sweep.saturating_duration_since(now));
        arm_before_poll(&timer, wait, options.rate.is_some());
        if let Err(e) = poll.poll(&mut events, Some(wait)) {
            if interrupted(&e) {
                continue;
            }
            return Err(e);
        }
        let now = Instant::now();
        let now_ns = nanos(start, now);
        for event in events.iter() {
            if event.token() == TIMER {
                timer.clear();
                continue;
            }
            let i = event.token().0;
            let Some(peer) = peers.get_mut(i) else {
                continue;
            };
            if !peer.open {
                continue;
            }
            if event.is_writable() {
                peer.blocked = false;
            }
            if event.is_readable() || event.is_error() {
                let checked = tally.checked;
                if let Err(e) = peer.receive(&mut buf, &payloads, &mut tally, now_ns) {
                    peer.fail(&e, &mut tally);
                }
                if tally.checked > checked {
                    last_reply = Some(now);
                }
            }
            touched.push(i);
        }
        if now >= next_sweep {
            next_sweep = now + SWEEP_EVERY;
            for (i, peer) in peers.iter_mut().enumerate() {
                let before = peer.inflight.len();
                peer.expire(now_ns, timeout_ns, &mut tally);
                if peer.inflight.len() < before {
                    touched.push(i);
                }
            }
        }
    }
    Ok(tally)
}
