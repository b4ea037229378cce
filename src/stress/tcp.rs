//! The TCP side of the load (`driver::Transport` for connections): many connections, each a pipeline
//! of requests whose replies are checked as the bytes arrive (`replies.rs` says how).
//!
//! Connections open a window at a time (`CONNECT_WINDOW`) so that ten thousand SYNs do not overflow the
//! server's listen backlog and turn into one-second retransmits. The load starts when every connection has
//! connected or failed. Requests are queued per connection as they are issued and written once per turn.
//!
//! A connection whose server said it closes after a response (HTTP's `Connection: close`; `http.rs`) is
//! opened again when the close comes, and the requests it still held are written again on the new one, with
//! their latency still counted from when they were due; any other close ends the connection for the run.
//!
//! Walk-through: `docs/08-measuring.md`.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use socket2::{Domain, Protocol, Socket, Type};

use super::driver::{self, Core, Transport};
use super::http::{self, HttpTarget, MAX_HEAD};
use super::mismatch::{self, Mismatch};
use super::payload::{self, Payloads, VARIANTS};
use super::replies::{AtEnd, HttpRule, Inflight, Replies};
use super::{nanos, Check, Live, LoadOptions, Tally};
use crate::net::{interrupted, would_block, SHORT_READ_DRAINS};

/// Connects in progress at once.
const CONNECT_WINDOW: usize = 256;
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

/// One connection of the load.
struct Conn {
    stream: TcpStream,
    state: State,
    /// Says nothing (or half a line): its only job is to be there.
    idle: bool,
    /// A load connection that is up, or being opened again: it counts among those carrying the load.
    live: bool,
    replies: Replies,
    /// Requests taken but not yet written; reused, so it never allocates after the first turns.
    out: Vec<u8>,
    out_pos: usize,
    next_variant: usize,
}

/// What a read turn found.
enum Turn {
    /// Read until WouldBlock; everything checked.
    Fine,
    /// A reply differed from what its request must become.
    Wrong,
    /// The server closed the connection as it said it would: open another for what is still owed.
    Reopen,
    Failed(io::Error),
}

impl Conn {
    fn has_room(&self, pipeline: usize) -> bool {
        self.state == State::Open
            && !self.idle
            && !self.replies.closing
            && self.replies.inflight.len() < pipeline
    }

    fn issue(&mut self, payloads: &Payloads, intended_ns: u64, now_ns: u64, tally: &mut Tally) {
        if self.replies.inflight.is_empty() {
            self.replies.progress_ns = now_ns;
        }
        let variant = self.next_variant % VARIANTS;
        self.next_variant += 1;
        let request = payloads.request(variant);
        self.out.extend_from_slice(request);
        self.replies.inflight.push_back(Inflight {
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
        http: Option<&HttpRule>,
        tally: &mut Tally,
        now_ns: u64,
        closing: bool,
    ) -> Turn {
        loop {
            match self.stream.read(buf) {
                Ok(0) if self.idle => {
                    return Turn::Failed(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "closed by the server",
                    ))
                }
                Ok(0) => {
                    return match self.replies.at_end(payloads, http, tally, now_ns) {
                        AtEnd::Expected => Turn::Reopen,
                        AtEnd::Wrong => Turn::Wrong,
                        AtEnd::Unexpected => Turn::Failed(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "closed by the server",
                        )),
                    }
                }
                Ok(n) => {
                    if self.idle {
                        tally.reply_bytes += n as u64;
                    } else if let Err(wrong) =
                        self.replies.check(&buf[..n], payloads, http, tally, now_ns)
                    {
                        if let Some(mut kept) = wrong {
                            self.read_waiting(&mut kept, buf);
                            tally.mismatches.push(kept);
                        }
                        return Turn::Wrong;
                    }
                    // The short-read rule (`net::SHORT_READ_DRAINS`): a read that did not fill the buffer
                    // took all the socket had. The usual read to see WouldBlock would cost a syscall per event
                    // for nothing: epoll (and kqueue) signal again when more bytes arrive, and a close that
                    // came with these bytes is known from the event (`closing`). Tokio makes the same choice.
                    // Not on Windows, where mio promises no new event until a read has said WouldBlock.
                    if SHORT_READ_DRAINS && n < buf.len() && !closing {
                        return Turn::Fine;
                    }
                }
                Err(ref e) if would_block(e) => return Turn::Fine,
                Err(ref e) if interrupted(e) => {}
                // A server that said it closes may reset instead, for requests it will not read: as said.
                Err(_) if self.replies.closing => return Turn::Reopen,
                Err(e) => return Turn::Failed(e),
            }
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
        tally.unanswered += self.replies.inflight.len() as u64;
        self.replies.inflight.clear();
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

/// An `http://` URL's run: the request, the server's own first answer to it, and from that answer how every
/// response is checked: byte for byte but the `Date` if it is what socklab's `http` service sends (the server
/// is socklab), or by its framing and status otherwise (`http.rs`).
fn for_url(
    options: &LoadOptions,
    target: &HttpTarget,
) -> io::Result<(Payloads, Option<HttpRule>, Check)> {
    let request = target.request();
    let (first, response) =
        http::first_answer(options.addr, &request, target.is_head(), options.timeout).map_err(
            |e| {
                io::Error::new(
                    e.kind(),
                    format!("asking {} for a first answer: {e}", target.url),
                )
            },
        )?;
    // What socklab's own http service answers to this request, made the way the server makes it.
    let socklab = http::socklab_service();
    let payloads = Payloads::fixed(socklab.unwrap_or(options.expect), request);
    if !response.closes
        && socklab.is_some_and(|socklab| socklab.same_reply(payloads.reply(0), &first))
    {
        log::debug!(
            "{} is socklab's http service: every response is checked byte for byte but its Date",
            target.url
        );
        return Ok((payloads, None, Check::SocklabHttp));
    }
    log::debug!(
        "{} first answered {}: every response is checked by its framing and for that status",
        target.url,
        response.status
    );
    let status = response.status;
    Ok((
        payloads,
        Some(HttpRule { status, first }),
        Check::Framing { status },
    ))
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
        Err(e) if crate::sys::connect_in_progress(&e) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}

/// The whole TCP run: the replies to expect (learned first, if asked), then connect, load and drain in the
/// shared loop.
pub(super) fn run(
    options: &LoadOptions,
    sources: &[SocketAddr],
    observer: &mut dyn FnMut(&Live),
) -> io::Result<Tally> {
    let total = options.connections + options.idle;
    let (payloads, http, check) = match &options.http {
        Some(target) => for_url(options, target)?,
        None => {
            let mut payloads = Payloads::new(options.size, options.expect, false);
            let check = if options.learn_reply {
                payloads.learn(learn_reply(options, payloads.request(0))?);
                Check::Learned
            } else {
                Check::Service
            };
            (payloads, None, check)
        }
    };
    // A response head that comes in pieces is gathered per connection: room for twice the first one's, once.
    let head_room = http.as_ref().map_or(0, |rule| {
        let head = rule.first.windows(4).position(|w| w == b"\r\n\r\n");
        (2 * head.unwrap_or(rule.first.len())).clamp(512, MAX_HEAD)
    });
    let head_request = options.http.as_ref().is_some_and(HttpTarget::is_head);
    let mut core = Core::new(options, payloads, total)?;
    core.tally.check = check;
    let mut tcp = Tcp {
        sources,
        total,
        http,
        head_room,
        head_request,
        buf: vec![0u8; READ_BUFFER],
        conns: Vec::with_capacity(total),
        connecting: 0,
        connect_started: Vec::with_capacity(total),
        live_load: 0,
        attempted: 0,
        load_conns: 0,
    };
    driver::run(core, &mut tcp, observer)
}

/// The TCP side of a run: its connections and what the loop needs to know of them.
struct Tcp<'a> {
    sources: &'a [SocketAddr],
    /// Connections to open, load and idle.
    total: usize,
    /// Another HTTP server's responses: checked by their framing and status, not against `Payloads`.
    http: Option<HttpRule>,
    /// Bytes each connection keeps for a response head that comes in pieces (0 without `http`).
    head_room: usize,
    /// Every request is a `HEAD`: no response has a body.
    head_request: bool,
    /// The read buffer every connection shares.
    buf: Vec<u8>,
    /// Load connections first, then idle ones; a connection's index is its token.
    conns: Vec<Conn>,
    /// Connects started and not yet settled.
    connecting: usize,
    /// When each connection's connect started (ns since the run began): connect deadlines count from there.
    connect_started: Vec<u64>,
    /// Load connections up (or being opened again).
    live_load: usize,
    /// Connects tried, whether they started or not.
    attempted: usize,
    /// Load connections whose connect started.
    load_conns: usize,
}

impl Tcp<'_> {
    /// The source address connection `i` binds to, if connections are spread.
    fn source(&self, i: usize) -> Option<SocketAddr> {
        (!self.sources.is_empty()).then(|| self.sources[i % self.sources.len()])
    }

    /// Closes connection `i` for the rest of the run (a failure or a wrong reply, counted by the caller).
    fn drop_conn(&mut self, core: &mut Core, i: usize) {
        let conn = &mut self.conns[i];
        if conn.live {
            conn.live = false;
            self.live_load -= 1;
        }
        conn.close(core.poll.registry(), &mut core.tally);
    }

    /// Connection `i` was closed by the server as it said it would be: a new connection takes its place,
    /// and the requests it still held (sent or not) are written again on it, keeping their intended times.
    fn reopen(&mut self, core: &mut Core, i: usize, now_ns: u64) {
        let source = self.source(i);
        let registry = core.poll.registry();
        let _ = registry.deregister(&mut self.conns[i].stream);
        let opened = open(core.options.addr, source).and_then(|mut stream| {
            registry.register(
                &mut stream,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(stream)
        });
        match opened {
            Ok(stream) => {
                let conn = &mut self.conns[i];
                // The old stream is dropped here, closed after the server's own close: no TIME_WAIT on
                // this side.
                conn.stream = stream;
                conn.state = State::Connecting;
                conn.replies.restart(now_ns);
                conn.out.clear();
                conn.out_pos = 0;
                for request in &conn.replies.inflight {
                    conn.out
                        .extend_from_slice(core.payloads.request(request.variant as usize));
                }
                self.connecting += 1;
                self.connect_started[i] = nanos(core.origin, Instant::now());
                core.tally.reopened += 1;
            }
            Err(e) => {
                core.tally.fail(&e);
                self.drop_conn(core, i);
            }
        }
    }

    fn new_conn(&self, stream: TcpStream, idle: bool, i: usize, core: &Core) -> Conn {
        let payloads = &core.payloads;
        let pipeline = core.options.pipeline;
        let held = if payloads.exact() || idle || self.http.is_some() {
            0
        } else {
            payloads.longest_reply()
        };
        let head = if idle { 0 } else { self.head_room };
        Conn {
            stream,
            state: State::Connecting,
            idle,
            live: false,
            replies: Replies::new(pipeline, held, head, self.head_request),
            out: Vec::with_capacity(pipeline * payloads.longest_request()),
            out_pos: 0,
            // Neighbouring connections start on different lines, so a reply crossing connections shows.
            next_variant: i,
        }
    }
}

impl Transport for Tcp<'_> {
    const SWEEP_EVERY: Duration = STALL_SWEEP_EVERY;
    const DRAIN_SLACK: Duration = Duration::ZERO;

    /// Only connects that start are kept, so a connection's index in `conns` is its token; load connections
    /// come first, then idle ones. At most `CONNECT_WINDOW` are in progress at once.
    fn open(&mut self, core: &mut Core) -> io::Result<()> {
        let options = core.options;
        while self.attempted < self.total && self.connecting < CONNECT_WINDOW {
            let idle = self.attempted >= options.connections;
            let source = self.source(self.attempted);
            self.attempted += 1;
            match open(options.addr, source) {
                Ok(mut stream) => {
                    let i = self.conns.len();
                    core.poll.registry().register(
                        &mut stream,
                        Token(i),
                        Interest::READABLE | Interest::WRITABLE,
                    )?;
                    let conn = self.new_conn(stream, idle, i, core);
                    self.conns.push(conn);
                    self.connect_started
                        .push(nanos(core.origin, Instant::now()));
                    self.connecting += 1;
                    if !idle {
                        self.load_conns += 1;
                    }
                }
                Err(e) => {
                    log::debug!("connect {}: {e}", self.attempted);
                    core.tally.fail(&e);
                }
            }
        }
        Ok(())
    }

    fn settled(&self) -> bool {
        self.attempted == self.total && self.connecting == 0
    }

    /// Half the idle connections start a request and never finish it.
    fn begin(&mut self, core: &mut Core) {
        for i in self.load_conns..self.conns.len() {
            let conn = &mut self.conns[i];
            if conn.state == State::Open && i % 2 == 0 {
                let request = core.payloads.request(0);
                conn.out.extend_from_slice(&request[..request.len() / 2]);
                core.touch(i);
            }
        }
    }

    fn load_count(&self) -> usize {
        self.load_conns
    }

    fn live(&self) -> usize {
        self.live_load
    }

    fn has_room(&self, i: usize, pipeline: usize) -> bool {
        self.conns[i].has_room(pipeline)
    }

    fn issue(&mut self, core: &mut Core, i: usize, intended_ns: u64, now_ns: u64) -> bool {
        self.conns[i].issue(&core.payloads, intended_ns, now_ns, &mut core.tally);
        true
    }

    /// Writes what the connection queued; a connection that cannot be written fails. Nothing more is
    /// written to a server that said it closes: what is queued goes on the next connection.
    fn flush(&mut self, core: &mut Core, i: usize) {
        if self.conns[i].state != State::Open || self.conns[i].replies.closing {
            return;
        }
        if let Err(e) = self.conns[i].flush() {
            core.tally.fail(&e);
            self.drop_conn(core, i);
        }
    }

    /// Connects that took longer than the timeout fail; during the load, a connection waiting longer than
    /// the timeout for a reply has stalled: timed out, closed.
    fn sweep(&mut self, core: &mut Core, now: Instant, now_ns: u64) {
        let elapsed = nanos(core.origin, now);
        for i in 0..self.conns.len() {
            let conn = &self.conns[i];
            let slow_connect = conn.state == State::Connecting
                && elapsed.saturating_sub(self.connect_started[i]) > core.timeout_ns;
            // Waiting for a reply, or for the close a server said would come.
            let waiting = !conn.replies.inflight.is_empty() || conn.replies.closing;
            let stalled = core.start.is_some()
                && conn.state == State::Open
                && waiting
                && now_ns.saturating_sub(conn.replies.progress_ns) > core.timeout_ns;
            if slow_connect {
                self.connecting -= 1;
                core.tally.fail(&io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connect timed out",
                ));
                self.drop_conn(core, i);
            } else if stalled {
                core.tally.fail(&io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no reply within the timeout",
                ));
                self.drop_conn(core, i);
            }
        }
    }

    /// A connect that finished, or replies to read and check.
    fn event(&mut self, core: &mut Core, i: usize, event: &Event, now_ns: u64) -> bool {
        let Some(conn) = self.conns.get_mut(i) else {
            return false;
        };
        match conn.state {
            State::Closed => false,
            State::Connecting => match connected(&conn.stream) {
                Ok(false) => false,
                Ok(true) => {
                    self.connecting -= 1;
                    conn.state = State::Open;
                    if conn.live {
                        // Opened again: what it still owes is written now.
                        return true;
                    }
                    core.tally.connected += 1;
                    if !conn.idle {
                        conn.live = true;
                        self.live_load += 1;
                    }
                    core.start.is_some()
                }
                Err(e) => {
                    self.connecting -= 1;
                    core.tally.fail(&e);
                    self.drop_conn(core, i);
                    false
                }
            },
            State::Open => {
                if !(event.is_readable() || event.is_read_closed() || event.is_error()) {
                    return true;
                }
                let closing = event.is_read_closed() || event.is_error();
                let outcome = conn.read(
                    &mut self.buf,
                    &core.payloads,
                    self.http.as_ref(),
                    &mut core.tally,
                    now_ns,
                    closing,
                );
                match outcome {
                    Turn::Fine => true,
                    Turn::Wrong => {
                        // The stream is out of step now: every later byte would be "wrong" too.
                        core.tally.wrong += 1;
                        conn.replies.inflight.pop_front();
                        self.drop_conn(core, i);
                        false
                    }
                    Turn::Reopen if core.draining() && conn.replies.inflight.is_empty() => {
                        // The load is over and nothing is owed: no need for another connection.
                        self.drop_conn(core, i);
                        false
                    }
                    Turn::Reopen => {
                        self.reopen(core, i, now_ns);
                        false
                    }
                    Turn::Failed(e) => {
                        // Once the load is over, a server closing an idle connection is no failure.
                        if !(conn.idle && core.draining()) {
                            core.tally.fail(&e);
                        }
                        self.drop_conn(core, i);
                        false
                    }
                }
            }
        }
    }

    /// Whatever is still in flight never came, so those connections timed out.
    fn finish(&mut self, core: &mut Core) {
        for conn in &mut self.conns {
            if conn.state == State::Open && !conn.replies.inflight.is_empty() {
                core.tally.timed_out += 1;
            }
            conn.close(core.poll.registry(), &mut core.tally);
        }
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
        // ENOTCONN on Unix, WSAENOTCONN on Windows.
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}
