//! One TCP connection inside the reactor: its socket, its service state, its unsent replies, and
//! [`Connection::drive`], which moves its bytes (stages 5 and 6 of the loop in `docs/04-reactor.md`).
//! A connection's life, with its state diagram, is `docs/06-connection.md`.
//!
//! The rules, from Redis's `networking.c`: a reply is written the moment it exists; only what the kernel
//! does not take is buffered, and WRITABLE interest is registered only while something is buffered. A
//! connection whose buffered replies reach the high-water mark is not read until its peer reads.

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use log::debug;
use mio::net::TcpStream;
use mio::{event::Event, Interest, Registry, Token};

use crate::config::Config;
use crate::net::{interrupted, would_block};
use crate::service::{Session, Step};
use crate::stats::Stats;

/// Reads smaller than this are not worth a system call: under backpressure, wait until this much room is free.
const MIN_READ: usize = 4096;

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Reading requests and writing replies.
    Open,
    /// Reading is over (the peer half-closed, or the service asked to close): flush the replies, then close.
    Flushing,
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
    peer: SocketAddr,
    phase: Phase,
    /// The service's state for this stream (a character split across reads).
    session: Session,
    /// Replies the kernel has not taken yet, oldest first. Empty and unallocated while the peer keeps up;
    /// never more than the high-water mark.
    pending: Vec<u8>,
    /// Readiness is edge-triggered: an event says bytes arrived, and only a read that returns `WouldBlock`
    /// says all of them were taken. Until then this stays true, even when we stop reading for fairness or
    /// backpressure.
    may_read: bool,
    /// A write returned `WouldBlock`: write nothing more until a WRITABLE event says there is room.
    write_blocked: bool,
    /// WRITABLE interest is registered (only while `pending` is not empty).
    wants_write: bool,
    /// Already on the reactor's list of connections to revisit next turn.
    pub queued: bool,
}

impl Connection {
    /// A newly accepted connection, already registered for READABLE under `token`.
    pub fn new(stream: TcpStream, token: Token, peer: SocketAddr, session: Session) -> Connection {
        Connection {
            stream,
            token,
            peer,
            phase: Phase::Open,
            session,
            pending: Vec::new(),
            may_read: false,
            write_blocked: false,
            wants_write: false,
            queued: false,
        }
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

    /// Records what a readiness event says. An error or hang-up is found by the next read or write.
    pub fn note(&mut self, event: &Event) {
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.may_read = true;
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
        let mut budget = cx.config.read_budget;
        loop {
            // 5a. Older replies first: the stream stays in order.
            if !self.pending.is_empty() && !self.write_blocked {
                if let Err(e) = self.flush(cx.stats) {
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
            let fits = cx
                .config
                .service
                .max_input(room)
                .min(cx.buffers.input.len());
            if fits < MIN_READ {
                break;
            }
            // 7. Fairness: one busy peer gets its budget, then the others their turn; it is revisited next turn.
            if budget == 0 {
                return self.finish_turn(cx, Progress::MoreToRead);
            }
            let input = &mut cx.buffers.input[..fits.min(budget)];
            match self.stream.read(input) {
                Ok(0) => {
                    // The peer half-closed: answer what is held, flush, then close.
                    self.may_read = false;
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
                    budget -= n;
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
            if self.phase == Phase::Flushing {
                return Progress::Done("finished");
            }
            if cx.draining && !self.may_read {
                return Progress::Done("drained at shutdown");
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
        if self.pending.is_empty() && !self.write_blocked {
            sent = write_some(&mut self.stream, out, &mut self.write_blocked)?;
            cx.stats.bytes_out += sent as u64;
        }
        if sent < out.len() {
            self.pending.extend_from_slice(&out[sent..]);
            cx.stats.peak_pending = cx.stats.peak_pending.max(self.pending.len());
        }
        Ok(())
    }

    /// Writes as much of `pending` as the socket takes; frees the buffer once it is all gone.
    fn flush(&mut self, stats: &mut Stats) -> io::Result<()> {
        let sent = write_some(&mut self.stream, &self.pending, &mut self.write_blocked)?;
        stats.bytes_out += sent as u64;
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
