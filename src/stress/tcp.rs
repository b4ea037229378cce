//! The TCP load: many connections in one mio loop, each a pipeline of requests whose replies are checked as
//! the bytes arrive. Replies on one stream come back in request order, so a connection keeps its requests in
//! flight in a queue and compares each arriving byte with the next expected byte of the head's reply: any
//! split of the stream is checked the same, and for a service whose replies are fixed bytes nothing is
//! buffered but a cursor. A service whose replies vary (an HTTP `Date`) has each connection hold its head
//! reply, in one buffer reused for every reply, until the service can judge it whole (`payload.rs` says
//! how the two kinds are told apart). A service's greeting is checked once, before the first reply.
//!
//! Connections open a window at a time (`CONNECT_WINDOW`) so that ten thousand SYNs do not overflow the
//! server's listen backlog and turn into one-second retransmits. The load starts when every connection has
//! connected or failed.
//!
//! One turn of the loop (`run`; its state is `Load`, one method per stage), numbered as in the comments:
//!
//! ```text
//!  1 open connections ─► 2 poll ─► 3 dispatch by token ─┬─► connect finished: open
//!    (a window at a time)                               └─► read, check replies ─► refill slots (closed loop)
//!  4a before the load: connect timeouts, then the start │ 4b open loop: due requests, round robin
//!  5 flush what was queued ─► 6 sweep stalled replies ─► 7 over? stop, drain, leave ─► 8 live counts ─► 1
//! ```
//!
//! Walk-through: `docs/08-measuring.md`.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Registry, Token};
use socket2::{Domain, Protocol, Socket, Type};

use super::mismatch::{self, Mismatch};
use super::payload::{self, Payloads, VARIANTS};
use super::timer::{arm_before_poll, Timer, TIMER};
use super::{nanos, Live, LoadOptions, Schedule, Tally, LIVE_EVERY};
use crate::net::{interrupted, would_block};

/// Connects in progress at once.
const CONNECT_WINDOW: usize = 256;
/// Readiness events taken from one poll.
const EVENTS_CAPACITY: usize = 1024;
/// How often connections are checked for a reply that stalled.
const STALL_SWEEP_EVERY: Duration = Duration::from_millis(100);
/// The one read buffer every connection shares: the loop reads one connection at a time.
const READ_BUFFER: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Connecting,
    Open,
    Closed,
}

/// A request in flight: which line it was and when it was meant to be sent.
#[derive(Clone, Copy, Debug)]
struct Inflight {
    variant: u16,
    intended_ns: u64,
}

/// One connection of the load.
struct Conn {
    stream: TcpStream,
    state: State,
    /// Says nothing (or half a line): its only job is to be there.
    idle: bool,
    inflight: VecDeque<Inflight>,
    /// Bytes of the head request's reply already received and found right.
    matched: usize,
    /// Bytes of the service's greeting received (a connection's first bytes).
    greeted: usize,
    /// The head reply's bytes so far, when replies vary: it is judged whole once complete. Its capacity is
    /// the longest reply, taken once, so holding costs no allocation per request.
    held: Vec<u8>,
    /// A reply has been checked on this connection: the next wrong one is not its first.
    answered: bool,
    /// Requests taken but not yet written; reused, so it never allocates after the first turns.
    out: Vec<u8>,
    out_pos: usize,
    next_variant: usize,
    /// Already in the loop's list of connections to flush this turn.
    dirty: bool,
    /// When this connection last saw a reply complete, or began waiting for one (ns since the load began).
    /// A connection waiting longer than the timeout has stalled: it is counted timed out and closed, so a
    /// server that stops answering ends the run instead of hanging it.
    progress_ns: u64,
}

/// What a read turn found.
enum Turn {
    /// Read until WouldBlock; everything checked.
    Fine,
    /// A reply differed from what its request must become.
    Wrong,
    Failed(io::Error),
}

impl Conn {
    fn has_room(&self, pipeline: usize) -> bool {
        self.state == State::Open && !self.idle && self.inflight.len() < pipeline
    }

    fn issue(&mut self, payloads: &Payloads, intended_ns: u64, now_ns: u64, tally: &mut Tally) {
        if self.inflight.is_empty() {
            self.progress_ns = now_ns;
        }
        let variant = self.next_variant % VARIANTS;
        self.next_variant += 1;
        let request = payloads.request(variant);
        self.out.extend_from_slice(request);
        self.inflight.push_back(Inflight {
            variant: variant as u16,
            intended_ns,
        });
        tally.sent += 1;
        tally.request_bytes += request.len() as u64;
    }

    /// Writes what is queued until done or the socket is full; a writable event resumes it.
    fn flush(&mut self) -> io::Result<()> {
        while self.out_pos < self.out.len() {
            match self.stream.write(&self.out[self.out_pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.out_pos += n,
                Err(ref e) if would_block(e) => return Ok(()),
                Err(ref e) if interrupted(e) => {}
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        self.out_pos = 0;
        Ok(())
    }

    /// Reads what the socket has, checking every byte (idle connections just discard what they get).
    /// `closing` (the event said the peer has closed) reads on to the end of the stream, since no further
    /// event will come to report it.
    fn read(
        &mut self,
        buf: &mut [u8],
        payloads: &Payloads,
        tally: &mut Tally,
        now_ns: u64,
        closing: bool,
    ) -> Turn {
        loop {
            match self.stream.read(buf) {
                Ok(0) => {
                    let e = io::Error::new(io::ErrorKind::UnexpectedEof, "closed by the server");
                    // A reply cut short is a wrong reply, not merely a missing one.
                    if self.mid_reply(payloads) {
                        if tally.wants_mismatch() {
                            let before = self.accepted_of_head(payloads);
                            tally.mismatches.push(self.mismatch(payloads, before, &[]));
                        }
                        return Turn::Wrong;
                    }
                    return Turn::Failed(e);
                }
                Ok(n) => {
                    if self.idle {
                        tally.reply_bytes += n as u64;
                    } else if let Err(wrong) = self.check(&buf[..n], payloads, tally, now_ns) {
                        if let Some(mut kept) = wrong {
                            self.read_waiting(&mut kept, buf);
                            tally.mismatches.push(kept);
                        }
                        return Turn::Wrong;
                    }
                    // A read that did not fill the buffer took all the socket had. The usual read to see
                    // WouldBlock would cost a syscall per event for nothing: epoll (and kqueue) signal again
                    // when more bytes arrive, edge-triggered or not, and a close that came with these bytes is
                    // known from the event (`closing`). Tokio makes the same choice. It keeps the tool lighter
                    // than a server, which must drain each socket.
                    if n < buf.len() && !closing {
                        return Turn::Fine;
                    }
                }
                Err(ref e) if would_block(e) => return Turn::Fine,
                Err(ref e) if interrupted(e) => {}
                Err(e) => return Turn::Failed(e),
            }
        }
    }

    /// Matches `data` against the greeting and the replies expected next. At the first wrong byte
    /// (including bytes no request asked for) it fails, with the wrong reply if the run still keeps them.
    ///
    /// Bytes a reply always has are compared as they arrive; a reply whose later bytes vary (see
    /// [`Payloads::steady`]) is also held until its last byte, then judged whole by the service.
    fn check(
        &mut self,
        mut data: &[u8],
        payloads: &Payloads,
        tally: &mut Tally,
        now_ns: u64,
    ) -> Result<(), Option<Mismatch>> {
        let greeting = payloads.greeting();
        if self.greeted < greeting.len() && !data.is_empty() {
            let expected = &greeting[self.greeted..];
            let n = expected.len().min(data.len());
            if data[..n] != expected[..n] {
                return Err(tally
                    .wants_mismatch()
                    .then(|| self.mismatch(payloads, &[], data)));
            }
            self.greeted += n;
            data = &data[n..];
            if self.greeted == greeting.len() {
                tally.reply_bytes += greeting.len() as u64;
            }
        }
        while !data.is_empty() {
            let Some(head) = self.inflight.front().copied() else {
                return Err(tally
                    .wants_mismatch()
                    .then(|| self.mismatch(payloads, &[], data)));
            };
            let variant = head.variant as usize;
            let reply = payloads.reply(variant);
            let n = (reply.len() - self.matched).min(data.len());
            let steady = payloads.steady(variant).saturating_sub(self.matched).min(n);
            if data[..steady] != reply[self.matched..self.matched + steady] {
                let before = self.accepted_of_head(payloads);
                return Err(tally
                    .wants_mismatch()
                    .then(|| self.mismatch(payloads, before, data)));
            }
            if !payloads.exact() {
                self.held.extend_from_slice(&data[..n]);
            }
            self.matched += n;
            data = &data[n..];
            if self.matched < reply.len() {
                continue;
            }
            if !payloads.exact() && !payloads.same_reply(variant, &self.held) {
                return Err(tally
                    .wants_mismatch()
                    .then(|| self.mismatch(payloads, &self.held, data)));
            }
            self.held.clear();
            tally
                .latency
                .saturating_record(now_ns.saturating_sub(head.intended_ns).max(1));
            tally.checked += 1;
            tally.reply_bytes += reply.len() as u64;
            self.matched = 0;
            self.answered = true;
            self.inflight.pop_front();
            self.progress_ns = now_ns;
        }
        Ok(())
    }

    /// Whether the stream stopped inside the greeting or a reply.
    fn mid_reply(&self, payloads: &Payloads) -> bool {
        self.matched > 0 || (self.greeted > 0 && self.greeted < payloads.greeting().len())
    }

    /// The head reply's bytes received so far, all found right.
    fn accepted_of_head<'p>(&'p self, payloads: &'p Payloads) -> &'p [u8] {
        match self.inflight.front() {
            Some(_) if !payloads.exact() => &self.held,
            Some(head) => &payloads.reply(head.variant as usize)[..self.matched],
            None => &[],
        }
    }

    /// The head request's wrong reply: `before` is what had come of it and was right, `rest` the bytes
    /// from where checking stopped. The first reply on a connection is shown with the greeting.
    fn mismatch(&self, payloads: &Payloads, before: &[u8], rest: &[u8]) -> Mismatch {
        let head = self.inflight.front();
        let request = head.map_or(&[][..], |h| payloads.request(h.variant as usize));
        let reply = head.map_or(&[][..], |h| payloads.reply(h.variant as usize));
        let first = !self.answered;
        let greeting = if first { payloads.greeting() } else { &[] };
        let expected = [greeting, reply].concat();
        let greeted = &greeting[..self.greeted.min(greeting.len())];
        let mut got = [greeted, before, rest].concat();
        got.truncate(expected.len() + mismatch::EXTRA);
        Mismatch {
            request: request.to_vec(),
            expected,
            got,
            first,
        }
    }

    /// Adds to a kept wrong reply what is already waiting in the socket (without waiting for more), so it
    /// shows more than the bytes that happened to come with its first wrong one.
    fn read_waiting(&mut self, kept: &mut Mismatch, buf: &mut [u8]) {
        let limit = kept.expected.len() + mismatch::EXTRA;
        while kept.got.len() < limit {
            match self.stream.read(buf) {
                Ok(0) => return,
                Ok(n) => {
                    let take = n.min(limit - kept.got.len());
                    kept.got.extend_from_slice(&buf[..take]);
                }
                Err(ref e) if interrupted(e) => {}
                Err(_) => return,
            }
        }
    }

    /// Closes the connection; its requests still in flight are counted unanswered.
    fn close(&mut self, registry: &Registry, tally: &mut Tally) {
        if self.state == State::Closed {
            return;
        }
        tally.unanswered += self.inflight.len() as u64;
        self.inflight.clear();
        self.state = State::Closed;
        let _ = registry.deregister(&mut self.stream);
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// How long a reply being learned may pause before it counts as whole (`--learn-reply`): on loopback a
/// response a server writes at once arrives in far less.
const LEARN_QUIET: Duration = Duration::from_millis(200);

/// The server's answer to `request` on a connection of its own: what arrives until `LEARN_QUIET` passes
/// with nothing more, or the connection closes, within `--timeout`. The bytes are the server's to choose;
/// what the load then checks is that every reply is the same.
fn learn_reply(options: &LoadOptions, request: &[u8]) -> io::Result<Vec<u8>> {
    let mut stream = std::net::TcpStream::connect_timeout(&options.addr, options.timeout)?;
    stream.write_all(request)?;
    let deadline = Instant::now() + options.timeout;
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let wait = if reply.is_empty() {
            left
        } else {
            left.min(LEARN_QUIET)
        };
        if wait.is_zero() {
            break;
        }
        stream.set_read_timeout(Some(wait))?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) if reply.len() + n > payload::MAX_SIZE => {
                return Err(io::Error::other(
                    "--learn-reply: the server's answer is over 64 KiB",
                ))
            }
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            // A read timeout says WouldBlock on Linux (TimedOut elsewhere): the reply has paused, so it is whole.
            Err(e) if would_block(&e) || e.kind() == io::ErrorKind::TimedOut => break,
            Err(e) if interrupted(&e) => {}
            Err(e) => return Err(e),
        }
    }
    if reply.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "--learn-reply: the server answered nothing to the first request",
        ));
    }
    Ok(reply)
}

/// Starts a non-blocking connect, from `source` if given.
fn open(addr: SocketAddr, source: Option<SocketAddr>) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    // Requests are small and pipelined by hand: send each batch now, not after Nagle's delay.
    socket.set_nodelay(true)?;
    if let Some(source) = source {
        // Lets the port of a connection from an earlier run, still in TIME_WAIT, be bound again.
        socket.set_reuse_address(true)?;
        socket.bind(&source.into())?;
    }
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) || would_block(&e) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}

/// The whole TCP run: connect, load, drain. One turn of the loop runs the stages in the order the module's
/// picture numbers them.
pub(super) fn run(
    options: &LoadOptions,
    sources: &[SocketAddr],
    observer: &mut dyn FnMut(&Live),
) -> io::Result<Tally> {
    let mut load = Load::new(options, sources)?;
    let mut events = Events::with_capacity(EVENTS_CAPACITY);
    loop {
        // 1. Open more connections while the connect window has room.
        load.open_connections()?;
        // 2. Wait for readiness, the next due request or the end of the load.
        if !load.poll(&mut events)? {
            continue;
        }
        // Every later stage of the turn sees the time the poll returned.
        let now = Instant::now();
        let now_ns = load.load_ns(now);
        // 3. Each event: a connect that finished, or replies to check and the slots they free.
        for event in events.iter() {
            load.dispatch(event, now, now_ns);
        }
        if load.start.is_none() {
            // 4a. Before the load: connects that took too long; the start, once every connect has settled.
            load.settle_connects(now);
        } else {
            // 4b. During an open-loop load: every due request to the next connection with room.
            load.hand_out_due(now_ns);
        }
        // 5. Write what this turn queued.
        load.flush_queued();
        // 6. Close connections whose replies stalled past the timeout.
        load.sweep_stalled(now, now_ns);
        // 7. Stop issuing at the end, drain the replies still due, and leave once they came.
        if load.is_over(now, now_ns) {
            break;
        }
        // 8. The live counts, a few times a second.
        load.report_live(now, observer);
    }
    Ok(load.finish())
}

/// One TCP run's state: what every stage of a turn shares.
struct Load<'a> {
    options: &'a LoadOptions,
    sources: &'a [SocketAddr],
    payloads: Payloads,
    tally: Tally,
    poll: Poll,
    timer: Timer,
    /// The read buffer every connection shares.
    buf: Vec<u8>,
    /// Load connections first, then idle ones; a connection's index is its token.
    conns: Vec<Conn>,
    /// Connects started and not yet settled.
    connecting: usize,
    /// Connections with requests queued this turn, to flush.
    dirty: Vec<usize>,
    schedule: Schedule,
    timeout_ns: u64,
    /// When the run began (connecting included).
    origin: Instant,
    /// When each connect started (ns since `origin`): connect deadlines count from there.
    connect_started: Vec<u64>,
    /// When the load began: every connection settled.
    start: Option<Instant>,
    /// The load is over; the replies still due are awaited until then.
    drain_until: Option<Instant>,
    last_reply: Option<Instant>,
    next_live: Instant,
    next_sweep: Instant,
    /// The open loop's next connection to try.
    rr: usize,
    /// Every connection was full when requests were due: the open loop waits for replies, not the timer.
    backlogged: bool,
    /// Load connections still open.
    live_load: usize,
    /// Connects tried, whether they started or not.
    attempted: usize,
    /// Load connections whose connect started.
    load_conns: usize,
}

impl<'a> Load<'a> {
    fn new(options: &'a LoadOptions, sources: &'a [SocketAddr]) -> io::Result<Load<'a>> {
        let poll = Poll::new()?;
        let timer = Timer::new(poll.registry())?;
        let total = options.connections + options.idle;
        let origin = Instant::now();
        let mut payloads = Payloads::new(options.size, options.expect, false);
        if options.learn_reply {
            payloads.learn(learn_reply(options, payloads.request(0))?);
        }
        Ok(Load {
            options,
            sources,
            payloads,
            tally: Tally::new(),
            poll,
            timer,
            buf: vec![0u8; READ_BUFFER],
            conns: Vec::with_capacity(total),
            connecting: 0,
            dirty: Vec::new(),
            schedule: Schedule::new(options),
            timeout_ns: options.timeout.as_nanos().min(u64::MAX as u128) as u64,
            origin,
            connect_started: Vec::with_capacity(total),
            start: None,
            drain_until: None,
            last_reply: None,
            next_live: origin + LIVE_EVERY,
            next_sweep: origin,
            rr: 0,
            backlogged: false,
            live_load: 0,
            attempted: 0,
            load_conns: 0,
        })
    }

    fn total(&self) -> usize {
        self.options.connections + self.options.idle
    }

    /// Nanoseconds since the load began (0 before it has).
    fn load_ns(&self, now: Instant) -> u64 {
        self.start.map_or(0, |s| nanos(s, now))
    }

    /// Stage 1. Only connects that start are kept, so a connection's index in `conns` is its token; load
    /// connections come first, then idle ones.
    fn open_connections(&mut self) -> io::Result<()> {
        while self.attempted < self.total() && self.connecting < CONNECT_WINDOW {
            let source = (!self.sources.is_empty())
                .then(|| self.sources[self.attempted % self.sources.len()]);
            let idle = self.attempted >= self.options.connections;
            self.attempted += 1;
            match open(self.options.addr, source) {
                Ok(mut stream) => {
                    let i = self.conns.len();
                    self.poll.registry().register(
                        &mut stream,
                        Token(i),
                        Interest::READABLE | Interest::WRITABLE,
                    )?;
                    self.conns.push(new_conn(
                        stream,
                        idle,
                        i,
                        self.options.pipeline,
                        &self.payloads,
                    ));
                    self.connect_started
                        .push(nanos(self.origin, Instant::now()));
                    self.connecting += 1;
                    if !idle {
                        self.load_conns += 1;
                    }
                }
                Err(e) => {
                    log::debug!("connect {}: {e}", self.attempted);
                    self.tally.fail(&e);
                }
            }
        }
        Ok(())
    }

    /// Stage 2. False if the poll was interrupted (the turn starts again).
    fn poll(&mut self, events: &mut Events) -> io::Result<bool> {
        let now_ns = self.load_ns(Instant::now());
        let wait = match (self.start, self.drain_until) {
            (None, _) => Duration::from_millis(50),
            (Some(_), Some(until)) => until
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(50)),
            (Some(_), None) => self.schedule.wait(now_ns, self.backlogged),
        };
        arm_before_poll(&self.timer, wait, self.options.rate.is_some());
        match self.poll.poll(events, Some(wait)) {
            Ok(()) => Ok(true),
            Err(e) if interrupted(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Stage 3: one event.
    fn dispatch(&mut self, event: &Event, now: Instant, now_ns: u64) {
        if event.token() == TIMER {
            self.timer.clear();
            return;
        }
        let i = event.token().0;
        let Some(conn) = self.conns.get_mut(i) else {
            return;
        };
        match conn.state {
            State::Closed => {}
            State::Connecting => match connected(&conn.stream) {
                Ok(false) => {}
                Ok(true) => {
                    self.connecting -= 1;
                    conn.state = State::Open;
                    self.tally.connected += 1;
                    if !conn.idle {
                        self.live_load += 1;
                    }
                }
                Err(e) => {
                    self.connecting -= 1;
                    self.tally.fail(&e);
                    conn.close(self.poll.registry(), &mut self.tally);
                }
            },
            State::Open => {
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    let checked = self.tally.checked;
                    let closing = event.is_read_closed() || event.is_error();
                    let outcome = conn.read(
                        &mut self.buf,
                        &self.payloads,
                        &mut self.tally,
                        now_ns,
                        closing,
                    );
                    if self.tally.checked > checked {
                        self.last_reply = Some(now);
                    }
                    let failed = match outcome {
                        Turn::Fine => false,
                        Turn::Wrong => {
                            // The stream is out of step now: every later byte would be "wrong" too.
                            self.tally.wrong += 1;
                            conn.inflight.pop_front();
                            true
                        }
                        Turn::Failed(e) => {
                            // Once the load is over, a server closing an idle connection is no failure.
                            if !(conn.idle && self.drain_until.is_some()) {
                                self.tally.fail(&e);
                            }
                            true
                        }
                    };
                    if failed {
                        if !conn.idle {
                            self.live_load -= 1;
                        }
                        conn.close(self.poll.registry(), &mut self.tally);
                        return;
                    }
                }
                // Closed loop: every completed reply frees a slot for the next request.
                if self.start.is_some() && self.options.rate.is_none() {
                    while conn.has_room(self.options.pipeline) {
                        let Some(at) = self.schedule.take(now_ns) else {
                            break;
                        };
                        conn.issue(&self.payloads, at, now_ns, &mut self.tally);
                    }
                }
                if !conn.dirty {
                    conn.dirty = true;
                    self.dirty.push(i);
                }
            }
        }
    }

    /// Stage 4a: connects that took too long fail; once every connect has settled, the load starts with
    /// each connection's first requests (closed loop) or half a line (half the idle ones).
    fn settle_connects(&mut self, now: Instant) {
        let elapsed = nanos(self.origin, now);
        for (i, conn) in self.conns.iter_mut().enumerate() {
            if conn.state == State::Connecting
                && elapsed.saturating_sub(self.connect_started[i]) > self.timeout_ns
            {
                self.connecting -= 1;
                self.tally.fail(&io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connect timed out",
                ));
                conn.close(self.poll.registry(), &mut self.tally);
            }
        }
        if self.attempted < self.total() || self.connecting > 0 {
            return;
        }
        self.start = Some(now);
        log::info!(
            "{} of {} connections up in {:?}; load starts",
            self.tally.connected,
            self.total(),
            now - self.origin
        );
        for (i, conn) in self.conns.iter_mut().enumerate() {
            if conn.state != State::Open {
                continue;
            }
            if conn.idle {
                // Half the idle connections start a line and never finish it.
                if i % 2 == 0 {
                    let request = self.payloads.request(0);
                    conn.out.extend_from_slice(&request[..request.len() / 2]);
                }
            } else if self.options.rate.is_none() {
                while conn.has_room(self.options.pipeline) {
                    let Some(at) = self.schedule.take(0) else {
                        break;
                    };
                    conn.issue(&self.payloads, at, 0, &mut self.tally);
                }
            }
            conn.dirty = true;
            self.dirty.push(i);
        }
    }

    /// Stage 4b: open loop, every due request to the next load connection with room, round robin.
    fn hand_out_due(&mut self, now_ns: u64) {
        if self.options.rate.is_none() || self.schedule.stopped || self.load_conns == 0 {
            return;
        }
        self.backlogged = false;
        let load = self.load_conns;
        'due: loop {
            let mut tried = 0;
            while !self.conns[self.rr].has_room(self.options.pipeline) {
                self.rr = (self.rr + 1) % load;
                tried += 1;
                if tried == load {
                    self.backlogged = true;
                    break 'due;
                }
            }
            let Some(at) = self.schedule.take(now_ns) else {
                break;
            };
            let conn = &mut self.conns[self.rr];
            conn.issue(&self.payloads, at, now_ns, &mut self.tally);
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(self.rr);
            }
            self.rr = (self.rr + 1) % load;
        }
    }

    /// Stage 5: writes what each connection queued this turn; a connection that cannot be written fails.
    fn flush_queued(&mut self) {
        for i in self.dirty.drain(..) {
            let conn = &mut self.conns[i];
            conn.dirty = false;
            if conn.state != State::Open {
                continue;
            }
            if let Err(e) = conn.flush() {
                self.tally.fail(&e);
                if !conn.idle {
                    self.live_load -= 1;
                }
                conn.close(self.poll.registry(), &mut self.tally);
            }
        }
    }

    /// Stage 6: a connection waiting longer than the timeout for a reply has stalled: timed out, closed.
    fn sweep_stalled(&mut self, now: Instant, now_ns: u64) {
        if self.start.is_none() || now < self.next_sweep {
            return;
        }
        self.next_sweep = now + STALL_SWEEP_EVERY;
        for conn in self.conns.iter_mut() {
            let waiting = conn.state == State::Open && !conn.inflight.is_empty();
            if waiting && now_ns.saturating_sub(conn.progress_ns) > self.timeout_ns {
                self.tally.fail(&io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no reply within the timeout",
                ));
                self.live_load -= 1;
                conn.close(self.poll.registry(), &mut self.tally);
            }
        }
    }

    /// Stage 7: at the end of the schedule (or with no load connection left) stop issuing and drain for
    /// at most the timeout. True once every request is settled or the drain is over.
    fn is_over(&mut self, now: Instant, now_ns: u64) -> bool {
        let Some(started) = self.start else {
            return false;
        };
        let ended = self.schedule.check_end(now_ns);
        if (ended || self.live_load == 0) && self.drain_until.is_none() {
            if !ended && !self.schedule.stopped {
                self.tally.stopped_early = Some(self.tally.early_stop());
            }
            self.schedule.stopped = true;
            self.drain_until = Some(now + self.options.timeout);
        }
        if let Some(until) = self.drain_until {
            if self.tally.outstanding() == 0 || now >= until {
                self.tally.load_time = self
                    .last_reply
                    .unwrap_or(now)
                    .saturating_duration_since(started);
                return true;
            }
        }
        false
    }

    /// Stage 8.
    fn report_live(&mut self, now: Instant, observer: &mut dyn FnMut(&Live)) {
        if now >= self.next_live {
            self.next_live = now + LIVE_EVERY;
            observer(&self.tally.live(now - self.origin, self.schedule.total()));
        }
    }

    /// After the loop: whatever is still in flight never came, so those connections timed out.
    fn finish(mut self) -> Tally {
        for conn in &mut self.conns {
            if conn.state == State::Open && !conn.inflight.is_empty() {
                self.tally.timed_out += 1;
            }
            conn.close(self.poll.registry(), &mut self.tally);
        }
        self.tally
    }
}

fn new_conn(stream: TcpStream, idle: bool, i: usize, pipeline: usize, payloads: &Payloads) -> Conn {
    let size = payloads.request(0).len();
    let held = if payloads.exact() || idle {
        0
    } else {
        payloads.longest_reply()
    };
    Conn {
        stream,
        state: State::Connecting,
        idle,
        inflight: VecDeque::with_capacity(pipeline),
        matched: 0,
        greeted: 0,
        held: Vec::with_capacity(held),
        answered: false,
        out: Vec::with_capacity(pipeline * size),
        out_pos: 0,
        // Neighbouring connections start on different lines, so a reply crossing connections shows.
        next_variant: i,
        dirty: false,
        progress_ns: 0,
    }
}

/// Whether a non-blocking connect has finished: `Ok(false)` while it is still in progress (mio may report
/// readiness spuriously), the connect's own error if it failed.
fn connected(stream: &TcpStream) -> io::Result<bool> {
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    match stream.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Ok(false),
        Err(e) => Err(e),
    }
}
