//! The UDP side of the load (`driver::Transport` for datagrams): many sockets, each connected to
//! the server (so the kernel drops datagrams from anyone else and reports "port unreachable" as refused). A
//! datagram is a whole message, so a reply is checked at once; it is matched to the oldest request in flight on
//! its socket whose expected reply it is, since UDP may reorder. A request with no reply within `--timeout` is
//! *lost*, counted apart from wrong replies; a reply that comes after that is *late*; only a reply that no
//! request could have had is wrong. A request is sent the moment it is issued; a socket whose buffer is full
//! takes no more until it is writable again.
//!
//! Walk-through: `docs/08-measuring.md`.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::net::UdpSocket;
use mio::{Interest, Token};

use super::driver::{self, Core, Transport};
use super::mismatch::{self, Mismatch};
use super::payload::{Payloads, MAX_SIZE, VARIANTS};
use super::{Live, LoadOptions, Tally};
use crate::net::{interrupted, port_unreachable, would_block};

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
                            why: None,
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
        // Counted as refused whatever the OS calls it (Windows: a reset).
        if port_unreachable(e) {
            if !self.answered {
                tally.connected = tally.connected.saturating_sub(1);
            }
            tally.refused += 1;
        } else {
            tally.fail(e);
        }
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

/// The whole UDP run: bind and connect every socket, then load and drain in the shared loop.
pub(super) fn run(
    options: &LoadOptions,
    sources: &[SocketAddr],
    observer: &mut dyn FnMut(&Live),
) -> io::Result<Tally> {
    let payloads = Payloads::new(options.size, options.expect, true);
    let mut core = Core::new(options, payloads, options.connections)?;
    let mut udp = Udp {
        // A reply may be larger than expected (a wrong server); the buffer takes any datagram whole.
        buf: vec![0u8; MAX_SIZE + 1],
        peers: Vec::with_capacity(options.connections),
        open: 0,
    };
    for i in 0..options.connections {
        let source = (!sources.is_empty()).then(|| sources[i % sources.len()]);
        match bind(options.addr, source) {
            Ok(mut socket) => {
                core.poll.registry().register(
                    &mut socket,
                    Token(udp.peers.len()),
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                udp.peers.push(Peer {
                    socket,
                    open: true,
                    blocked: false,
                    inflight: VecDeque::with_capacity(options.pipeline),
                    next_variant: i,
                    answered: false,
                });
                udp.open += 1;
                core.tally.connected += 1;
            }
            Err(e) => {
                log::debug!("udp socket {i}: {e}");
                core.tally.fail(&e);
            }
        }
    }
    driver::run(core, &mut udp, observer)
}

/// The UDP side of a run: its sockets, all bound before the load starts.
struct Udp {
    buf: Vec<u8>,
    /// The sockets that bound; a socket's index is its token.
    peers: Vec<Peer>,
    /// Sockets still open.
    open: usize,
}

impl Udp {
    fn fail(&mut self, core: &mut Core, i: usize, e: &io::Error) {
        let peer = &mut self.peers[i];
        if peer.open {
            peer.fail(e, &mut core.tally);
            self.open -= 1;
        }
    }
}

impl Transport for Udp {
    const SWEEP_EVERY: Duration = SWEEP_EVERY;
    const DRAIN_SLACK: Duration = SWEEP_EVERY;

    /// Every socket was bound before the loop.
    fn open(&mut self, _core: &mut Core) -> io::Result<()> {
        Ok(())
    }

    fn settled(&self) -> bool {
        true
    }

    fn begin(&mut self, _core: &mut Core) {}

    fn load_count(&self) -> usize {
        self.peers.len()
    }

    fn live(&self) -> usize {
        self.open
    }

    fn has_room(&self, i: usize, pipeline: usize) -> bool {
        self.peers[i].has_room(pipeline)
    }

    /// Sends at once; a full socket buffer gives the request back and waits for a writable event.
    fn issue(&mut self, core: &mut Core, i: usize, intended_ns: u64, now_ns: u64) -> bool {
        match self.peers[i].send(&core.payloads, intended_ns, now_ns, &mut core.tally) {
            Ok(sent) => sent,
            Err(e) => {
                self.fail(core, i, &e);
                false
            }
        }
    }

    fn flush(&mut self, _core: &mut Core, _i: usize) {}

    /// Requests older than the timeout are lost, which frees their slots.
    fn sweep(&mut self, core: &mut Core, _now: Instant, now_ns: u64) {
        if core.start.is_none() {
            return;
        }
        for i in 0..self.peers.len() {
            let peer = &mut self.peers[i];
            let before = peer.inflight.len();
            peer.expire(now_ns, core.timeout_ns, &mut core.tally);
            if peer.inflight.len() < before {
                core.touch(i);
            }
        }
    }

    /// A socket that can send again, or replies to settle.
    fn event(&mut self, core: &mut Core, i: usize, event: &Event, now_ns: u64) -> bool {
        let Some(peer) = self.peers.get_mut(i) else {
            return false;
        };
        if !peer.open {
            return false;
        }
        if event.is_writable() {
            peer.blocked = false;
        }
        if event.is_readable() || event.is_error() {
            if let Err(e) = peer.receive(&mut self.buf, &core.payloads, &mut core.tally, now_ns) {
                self.fail(core, i, &e);
            }
        }
        true
    }

    /// Over TCP a wrong reply closes its connection, so a server of another service ends the run at once; a
    /// datagram changes nothing for the next, so the same server is recognised here instead: only wrong
    /// replies, at least one per socket.
    fn only_wrong(&self, tally: &Tally) -> bool {
        tally.checked == 0 && tally.wrong > 0 && tally.wrong >= self.peers.len() as u64
    }

    fn finish(&mut self, _core: &mut Core) {}
}
