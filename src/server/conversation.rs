//! One TCP connection's conversation, whichever mode serves it: the service's session, the replies not yet
//! sent ([`Outbox`]), and where the connection is in its life ([`Phase`]). Each mode decides *when* to read
//! and write (on readiness, on every pass, or by blocking); this file decides *what* a read means and how a
//! connection ends, once for all four, so they cannot drift apart.
//!
//! ```text
//!            feed → reply          the service says Close, the peer ends the stream, or shutdown
//!  ┌──────┐ ───────────┐          ┌──────────┐   outbox empty,    ┌───────────┐  peer's FIN, or
//!  │ Open │ ◄──────────┘ ──────►  │ Flushing │ ─ shut write (FIN) ►│ Lingering │ ─ LINGER / deadline ─► Done
//!  └──────┘                       └──────────┘                    └───────────┘
//!                                  (the peer already ended the stream: straight to Done)
//! ```
//!
//! # Why linger
//! Closing a socket that still has unread input makes the kernel send a reset instead of a FIN, and a reset
//! can destroy replies still in flight or unread by the peer. So a connection the server ends (the
//! service's `exit`, an error, a shutdown) shuts its write side, then reads and discards what the peer
//! still sends until the peer's own FIN, for at most [`LINGER`] (or until the shutdown deadline).
//!
//! Walk-through: `docs/06-connection.md`.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::time::Instant;

use super::config::Config;
use super::limits::{deadline_after, LINGER, MIN_READ};
use super::outbox::Outbox;
use super::stats::Stats;
use crate::net::{interrupted, would_block};
use crate::service::{Clock, Session, Step};

/// A TCP stream of any mode: mio's (reactor) or the standard library's (the others).
pub trait Socket: Read + Write {
    /// Sends FIN: the peer reads the end of the stream after the last reply.
    fn shutdown_write(&self) -> io::Result<()>;
}

impl Socket for std::net::TcpStream {
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

impl Socket for mio::net::TcpStream {
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Reading requests and writing replies.
    Open,
    /// Reading is over (the service closed, the peer ended the stream, or the server is shutting down):
    /// deliver what the outbox holds.
    Flushing,
    /// Everything owed was written and the write side shut (FIN); what the peer still sends is read and
    /// dropped until its own FIN, so closing cannot reset the last replies.
    Lingering,
    /// Finished: the socket can be closed without losing anything owed.
    Done,
}

/// What a discarding read found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Discarded {
    /// The peer's FIN (or an error): the conversation is [`Phase::Done`].
    PeerClosed,
    /// Nothing more to read now.
    WouldBlock,
    /// The budget ran out with more perhaps waiting.
    Budget,
}

/// One connection's service state, unsent replies and phase.
#[derive(Debug)]
pub struct Conversation {
    session: Session,
    outbox: Outbox,
    phase: Phase,
    /// The peer sent its FIN (a read returned 0).
    peer_done: bool,
    /// While lingering: when to stop waiting for the peer's FIN.
    linger_until: Option<Instant>,
}

impl Conversation {
    pub fn new(session: Session) -> Conversation {
        Conversation {
            session,
            outbox: Outbox::default(),
            phase: Phase::Open,
            peer_done: false,
            linger_until: None,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    pub fn outbox_mut(&mut self) -> &mut Outbox {
        &mut self.outbox
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    /// While lingering, when the wait for the peer's FIN ends.
    pub fn linger_until(&self) -> Option<Instant> {
        self.linger_until
    }

    /// Sends what the service says first (`hello`'s welcome) the moment the connection is accepted, by the
    /// same rule as every reply. Returns true if it began to wait in the outbox.
    pub fn greet(
        &mut self,
        stream: &mut impl Socket,
        scratch: &mut Vec<u8>,
        stats: &mut Stats,
    ) -> io::Result<bool> {
        scratch.clear();
        self.session.greeting(scratch);
        if scratch.is_empty() {
            return Ok(false);
        }
        self.outbox.send(stream, scratch, stats)
    }

    /// How many bytes the next read may ask for: no more than the replies the room left under the
    /// high-water mark can hold (backpressure instead of unbounded memory). 0 while the connection is not
    /// reading, or while the room would allow less than [`MIN_READ`] (wait for the peer to read).
    pub fn read_limit(&self, config: &Config) -> usize {
        if self.phase != Phase::Open {
            return 0;
        }
        let fits = self.session.max_input(self.outbox.room(config.high_water));
        if fits < MIN_READ {
            0
        } else {
            fits
        }
    }

    /// `input` was read: the service answers it, and the answer is sent. Returns true if replies began to
    /// wait in the outbox.
    pub fn received(
        &mut self,
        stream: &mut impl Socket,
        clock: &Clock,
        input: &[u8],
        scratch: &mut Vec<u8>,
        stats: &mut Stats,
    ) -> io::Result<bool> {
        stats.bytes_in += input.len() as u64;
        scratch.clear();
        if self.session.feed(clock, input, scratch) == Step::Close {
            self.phase = Phase::Flushing;
        }
        self.outbox.send(stream, scratch, stats)
    }

    /// A read returned 0: the peer has ended its stream. The service answers what it still holds; while
    /// lingering, this is the FIN that was waited for.
    pub fn peer_closed(
        &mut self,
        stream: &mut impl Socket,
        clock: &Clock,
        scratch: &mut Vec<u8>,
        stats: &mut Stats,
    ) -> io::Result<bool> {
        self.peer_done = true;
        match self.phase {
            Phase::Open => {
                self.phase = Phase::Flushing;
                scratch.clear();
                self.session.finish(clock, scratch);
                self.outbox.send(stream, scratch, stats)
            }
            Phase::Lingering => {
                self.phase = Phase::Done;
                Ok(false)
            }
            Phase::Flushing | Phase::Done => Ok(false),
        }
    }

    /// The server is shutting down: nothing more is read; what the service owes for what it took is sent,
    /// then the connection ends as any other the server ends.
    pub fn stop_reading(
        &mut self,
        stream: &mut impl Socket,
        scratch: &mut Vec<u8>,
        stats: &mut Stats,
    ) -> io::Result<bool> {
        if self.phase != Phase::Open {
            return Ok(false);
        }
        self.phase = Phase::Flushing;
        scratch.clear();
        self.session.drain(scratch);
        self.outbox.send(stream, scratch, stats)
    }

    /// The session's own deadline passed: it says what it says then (HTTP's 408, say), and may close.
    pub fn expire(
        &mut self,
        stream: &mut impl Socket,
        clock: &Clock,
        scratch: &mut Vec<u8>,
        stats: &mut Stats,
    ) -> io::Result<bool> {
        if self.phase != Phase::Open {
            return Ok(false);
        }
        scratch.clear();
        if self.session.expire(clock, scratch) == Step::Close {
            self.phase = Phase::Flushing;
        }
        self.outbox.send(stream, scratch, stats)
    }

    /// Writes what waits in the outbox, as much as the socket takes.
    pub fn flush(&mut self, stream: &mut impl Socket, stats: &mut Stats) -> io::Result<usize> {
        self.outbox.flush(stream, stats)
    }

    /// Moves on once everything owed is written: a peer that already ended its stream is done; otherwise
    /// the write side is shut (FIN) and the connection lingers until the peer's FIN, for at most
    /// [`LINGER`] from `now` and never past `deadline` (a shutdown's). Returns the phase.
    pub fn settle(
        &mut self,
        stream: &impl Socket,
        now: Instant,
        deadline: Option<Instant>,
    ) -> Phase {
        if self.phase == Phase::Flushing && self.outbox.is_empty() {
            if self.peer_done {
                self.phase = Phase::Done;
            } else {
                // The peer may be gone already; then the next read says so.
                let _ = stream.shutdown_write();
                self.phase = Phase::Lingering;
                let until = deadline_after(now, LINGER);
                self.linger_until = Some(deadline.map_or(until, |d| d.min(until)));
            }
        }
        self.phase
    }

    /// A shutdown began while this connection lingers: it waits no longer than the shutdown's deadline.
    pub fn linger_no_later_than(&mut self, deadline: Instant) {
        if let Some(until) = &mut self.linger_until {
            *until = (*until).min(deadline);
        }
    }

    /// Whether the wait for the peer's FIN is over at `now`.
    pub fn linger_expired(&self, now: Instant) -> bool {
        self.phase == Phase::Lingering && self.linger_until.is_some_and(|until| now >= until)
    }

    /// While lingering: reads and drops what the peer still sends, until its FIN, `WouldBlock` (or a
    /// blocking socket's read timeout), or `budget` bytes.
    pub fn discard(
        &mut self,
        stream: &mut impl Socket,
        buf: &mut [u8],
        mut budget: usize,
    ) -> Discarded {
        loop {
            if budget == 0 {
                return Discarded::Budget;
            }
            let len = budget.min(buf.len());
            match stream.read(&mut buf[..len]) {
                Ok(0) => break,
                Ok(n) => budget -= n,
                Err(ref e) if would_block(e) || e.kind() == io::ErrorKind::TimedOut => {
                    return Discarded::WouldBlock
                }
                Err(ref e) if interrupted(e) => {}
                // Everything owed was written before the FIN; an error now loses nothing.
                Err(_) => break,
            }
        }
        self.peer_done = true;
        self.phase = Phase::Done;
        Discarded::PeerClosed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::Service;
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        (server, client)
    }

    #[test]
    fn the_service_closing_means_flush_then_fin_then_linger_until_the_peers_fin() {
        let (mut server, mut client) = pair();
        let clock = Clock::new();
        let (mut scratch, mut stats) = (Vec::new(), Stats::default());
        let mut conversation = Conversation::new(Service::Hello.session());
        conversation
            .greet(&mut server, &mut scratch, &mut stats)
            .unwrap();
        conversation
            .received(
                &mut server,
                &clock,
                b"Bob\nexit\nmore",
                &mut scratch,
                &mut stats,
            )
            .unwrap();
        assert_eq!(conversation.phase(), Phase::Flushing);
        assert_eq!(conversation.read_limit(&Config::default()), 0);
        let now = Instant::now();
        assert_eq!(conversation.settle(&server, now, None), Phase::Lingering);
        assert_eq!(conversation.linger_until(), Some(now + LINGER));
        let mut reply = String::new();
        client.read_to_string(&mut reply).unwrap();
        assert_eq!(reply, "Welcome!\nHello, Bob!\n", "the replies, then FIN");
        drop(client);
        server
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0; 64];
        assert_eq!(
            conversation.discard(&mut server, &mut buf, 1 << 20),
            Discarded::PeerClosed
        );
        assert_eq!(conversation.phase(), Phase::Done);
    }

    #[test]
    fn a_peer_that_ended_its_stream_is_done_once_its_replies_are_out() {
        let (mut server, _client) = pair();
        let clock = Clock::new();
        let (mut scratch, mut stats) = (Vec::new(), Stats::default());
        let mut conversation = Conversation::new(Service::Upper.session());
        conversation
            .received(&mut server, &clock, b"caf\xc3", &mut scratch, &mut stats)
            .unwrap();
        conversation
            .peer_closed(&mut server, &clock, &mut scratch, &mut stats)
            .unwrap();
        assert_eq!(stats.bytes_out, 4, "the held byte is sent at the end");
        assert_eq!(
            conversation.settle(&server, Instant::now(), None),
            Phase::Done
        );
    }

    #[test]
    fn a_shutdown_lingers_no_longer_than_its_deadline() {
        let (mut server, _client) = pair();
        let (mut scratch, mut stats) = (Vec::new(), Stats::default());
        let mut conversation = Conversation::new(Service::Upper.session());
        conversation
            .stop_reading(&mut server, &mut scratch, &mut stats)
            .unwrap();
        let now = Instant::now();
        let deadline = now + Duration::from_millis(300);
        assert_eq!(
            conversation.settle(&server, now, Some(deadline)),
            Phase::Lingering
        );
        assert_eq!(conversation.linger_until(), Some(deadline));
        assert!(conversation.linger_expired(deadline));
    }
}
