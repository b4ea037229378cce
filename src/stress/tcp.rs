//! The TCP load: many connections in one mio loop, each a pipeline of requests whose replies are checked as
//! the bytes arrive. Replies on one stream come back in request order, so a connection keeps its requests in
//! flight in a queue and compares each arriving byte with the next expected byte of the head's reply: any
//! split of the stream is checked the same, and nothing is buffered but a cursor.
//!
//! Connections open a window at a time (`CONNECT_WINDOW`) so that ten thousand SYNs do not overflow the
//! server's listen backlog and turn into one-second retransmits. The load starts when every connection has
//! connected or failed.
//!
//! Walk-through: `docs/08-measuring.md`.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Registry, Token};
use socket2::{Domain, Protocol, Socket, Type};

use super::payload::{Payloads, VARIANTS};
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
                    if self.matched > 0 {
                        return Turn::Wrong;
                    }
                    return Turn::Failed(e);
                }
                Ok(n) => {
                    if self.idle {
                        tally.reply_bytes += n as u64;
                    } else if !self.check(&buf[..n], payloads, tally, now_ns) {
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

    /// Matches `data` against the replies expected next. False at the first byte that is wrong, including
    /// bytes no request asked for.
    fn check(
        &mut self,
        mut data: &[u8],
        payloads: &Payloads,
        tally: &mut Tally,
        now_ns: u64,
    ) -> bool {
        while !data.is_empty() {
            let Some(head) = self.inflight.front() else {
                return false;
            };
            let reply = payloads.reply(head.variant as usize);
            let expected = &reply[self.matched..];
            let n = expected.len().min(data.len());
            if data[..n] != expected[..n] {
                return false;
            }
            self.matched += n;
            data = &data[n..];
            if self.matched == reply.len() {
                tally
                    .latency
                    .saturating_record(now_ns.saturating_sub(head.intended_ns).max(1));
                tally.checked += 1;
                tally.reply_bytes += reply.len() as u64;
                self.matched = 0;
                self.inflight.pop_front();
                self.progress_ns = now_ns;
            }
        }
        true
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

/// The whole TCP run: connect, load, drain.
pub(super) fn run(
    options: &LoadOptions,
    sources: &[SocketAddr],
    observer: &mut dyn FnMut(&Live),
) -> io::Result<Tally> {
    let payloads = Payloads::new(options.size, options.expect, false);
    let mut tally = Tally::new();
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(EVENTS_CAPACITY);
    let timer = Timer::new(poll.registry())?;
    let mut buf = vec![0u8; READ_BUFFER];
    let total = options.connections + options.idle;
    let mut conns: Vec<Conn> = Vec::with_capacity(total);
    let mut connecting = 0usize;
    let mut dirty: Vec<usize> = Vec::new();
    let mut schedule = Schedule::new(options);
    let timeout_ns = options.timeout.as_nanos().min(u64::MAX as u128) as u64;
    let origin = Instant::now();
    // Connect deadlines are checked against when each window opened.
    let mut connect_started: Vec<u64> = Vec::with_capacity(total);
    let mut start: Option<Instant> = None;
    let mut drain_until: Option<Instant> = None;
    let mut last_reply: Option<Instant> = None;
    let mut next_live = origin + LIVE_EVERY;
    let mut next_sweep = origin;
    let mut rr = 0usize;
    let mut backlogged = false;
    let mut live_load = 0usize;
    let mut attempted = 0usize;
    let mut load_conns = 0usize;

    loop {
        // Open more connections while the window has room. Only connects that start are kept, so a
        // connection's index in `conns` is its token; load connections come first, then idle ones.
        while attempted < total && connecting < CONNECT_WINDOW {
            let source = (!sources.is_empty()).then(|| sources[attempted % sources.len()]);
            let idle = attempted >= options.connections;
            attempted += 1;
            match open(options.addr, source) {
                Ok(mut stream) => {
                    let i = conns.len();
                    poll.registry().register(
                        &mut stream,
                        Token(i),
                        Interest::READABLE | Interest::WRITABLE,
                    )?;
                    conns.push(new_conn(stream, idle, i, options.pipeline, options.size));
                    connect_started.push(nanos(origin, Instant::now()));
                    connecting += 1;
                    if !idle {
                        load_conns += 1;
                    }
                }
                Err(e) => {
                    log::debug!("connect {attempted}: {e}");
                    tally.fail(&e);
                }
            }
        }

        let now_ns = start.map_or(0, |s| nanos(s, Instant::now()));
        let wait = match (start, drain_until) {
            (None, _) => Duration::from_millis(50),
            (Some(_), Some(until)) => until
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(50)),
            (Some(_), None) => schedule.wait(now_ns, backlogged),
        };
        arm_before_poll(&timer, wait, options.rate.is_some());
        if let Err(e) = poll.poll(&mut events, Some(wait)) {
            if interrupted(&e) {
                continue;
            }
            return Err(e);
        }
        let now = Instant::now();
        let now_ns = start.map_or(0, |s| nanos(s, now));

        for event in events.iter() {
            if event.token() == TIMER {
                timer.clear();
                continue;
            }
            let i = event.token().0;
            let Some(conn) = conns.get_mut(i) else {
                continue;
            };
            match conn.state {
                State::Closed => {}
                State::Connecting => match connected(&conn.stream) {
                    Ok(false) => {}
                    Ok(true) => {
                        connecting -= 1;
                        conn.state = State::Open;
                        tally.connected += 1;
                        if !conn.idle {
                            live_load += 1;
                        }
                    }
                    Err(e) => {
                        connecting -= 1;
                        tally.fail(&e);
                        conn.close(poll.registry(), &mut tally);
                    }
                },
                State::Open => {
                    if event.is_readable() || event.is_read_closed() || event.is_error() {
                        let checked = tally.checked;
                        let closing = event.is_read_closed() || event.is_error();
                        let outcome = conn.read(&mut buf, &payloads, &mut tally, now_ns, closing);
                        if tally.checked > checked {
                            last_reply = Some(now);
                        }
                        let failed = match outcome {
                            Turn::Fine => false,
                            Turn::Wrong => {
                                // The stream is out of step now: every later byte would be "wrong" too.
                                tally.wrong += 1;
                                conn.inflight.pop_front();
                                true
                            }
                            Turn::Failed(e) => {
                                // Once the load is over, a server closing an idle connection is no failure.
                                if !(conn.idle && drain_until.is_some()) {
                                    tally.fail(&e);
                                }
                                true
                            }
                        };
                        if failed {
                            if !conn.idle {
                                live_load -= 1;
                            }
                            conn.close(poll.registry(), &mut tally);
                            continue;
                        }
                    }
                    // Closed loop: every completed reply frees a slot for the next request.
                    if start.is_some() && options.rate.is_none() {
                        while conn.has_room(options.pipeline) {
                            let Some(at) = schedule.take(now_ns) else {
                                break;
                            };
                            conn.issue(&payloads, at, now_ns, &mut tally);
                        }
                    }
                    if !conn.dirty {
                        conn.dirty = true;
                        dirty.push(i);
                    }
                }
            }
        }

        if start.is_none() {
            // Connections that took too long to connect.
            let elapsed = nanos(origin, now);
            for (i, conn) in conns.iter_mut().enumerate() {
                if conn.state == State::Connecting
                    && elapsed.saturating_sub(connect_started[i]) > timeout_ns
                {
                    connecting -= 1;
                    tally.fail(&io::Error::new(
                        io::ErrorKind::TimedOut,
                        "connect timed out",
                    ));
                    conn.close(poll.registry(), &mut tally);
                }
            }
            if attempted == total && connecting == 0 {
                start = Some(now);
                log::info!(
                    "{} of {total} connections up in {:?}; load starts",
                    tally.connected,
                    now - origin
                );
                for (i, conn) in conns.iter_mut().enumerate() {
                    if conn.state != State::Open {
                        continue;
                    }
                    if conn.idle {
                        // Half the idle connections start a line and never finish it.
                        if i % 2 == 0 {
                            conn.out
                                .extend_from_slice(&payloads.request(0)[..options.size / 2]);
                        }
                    } else if options.rate.is_none() {
                        while conn.has_room(options.pipeline) {
                            let Some(at) = schedule.take(0) else { break };
                            conn.issue(&payloads, at, 0, &mut tally);
                        }
                    }
                    conn.dirty = true;
                    dirty.push(i);
                }
            }
        } else if options.rate.is_some() && !schedule.stopped && load_conns > 0 {
            // Open loop: hand every due request to the next connection with room, round robin.
            backlogged = false;
            let load = load_conns;
            'due: loop {
                let mut tried = 0;
                while !conns[rr].has_room(options.pipeline) {
                    rr = (rr + 1) % load;
                    tried += 1;
                    if tried == load {
                        backlogged = true;
                        break 'due;
                    }
                }
                let Some(at) = schedule.take(now_ns) else {
                    break;
                };
                let conn = &mut conns[rr];
                conn.issue(&payloads, at, now_ns, &mut tally);
                if !conn.dirty {
                    conn.dirty = true;
                    dirty.push(rr);
                }
                rr = (rr + 1) % load;
            }
        }

        for i in dirty.drain(..) {
            let conn = &mut conns[i];
            conn.dirty = false;
            if conn.state != State::Open {
                continue;
            }
            if let Err(e) = conn.flush() {
                tally.fail(&e);
                if !conn.idle {
                    live_load -= 1;
                }
                conn.close(poll.registry(), &mut tally);
            }
        }

        if start.is_some() && now >= next_sweep {
            next_sweep = now + STALL_SWEEP_EVERY;
            for conn in conns.iter_mut() {
                let waiting = conn.state == State::Open && !conn.inflight.is_empty();
                if waiting && now_ns.saturating_sub(conn.progress_ns) > timeout_ns {
                    tally.fail(&io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no reply within the timeout",
                    ));
                    live_load -= 1;
                    conn.close(poll.registry(), &mut tally);
                }
            }
        }

        if let Some(started) = start {
            if (schedule.check_end(now_ns) || live_load == 0) && drain_until.is_none() {
                schedule.stopped = true;
                drain_until = Some(now + options.timeout);
            }
            if let Some(until) = drain_until {
                if tally.outstanding() == 0 || now >= until {
                    tally.load_time = last_reply.unwrap_or(now).saturating_duration_since(started);
                    break;
                }
            }
        }

        if now >= next_live {
            next_live = now + LIVE_EVERY;
            observer(&tally.live(now - origin, schedule.total()));
        }
    }

    // Whatever is still in flight now never came: those connections timed out.
    for conn in &mut conns {
        if conn.state == State::Open && !conn.inflight.is_empty() {
            tally.timed_out += 1;
        }
        conn.close(poll.registry(), &mut tally);
    }
    Ok(tally)
}

fn new_conn(stream: TcpStream, idle: bool, i: usize, pipeline: usize, size: usize) -> Conn {
    Conn {
        stream,
        state: State::Connecting,
        idle,
        inflight: VecDeque::with_capacity(pipeline),
        matched: 0,
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
