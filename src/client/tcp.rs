//! The client over TCP: one connection, exactly one whole reply read per request, a deadline on every wait.
//!
//! Walk-through: `docs/client-and-stress.md`.
//!
//! # When is a TCP reply complete?
//! TCP is a byte stream: one `recv` returns whatever has arrived, which may be half a reply or two of them. The
//! client must know by itself where its reply ends. Reading "up to the newline" would be wrong here: the
//! tutorial's own client sends `hello` with no newline, and the server answers `HELLO` at once with no newline
//! (it serves the stream, not lines), so a newline-reader would wait forever. Reading "as many bytes as the
//! request" would be wrong too: `straße` uppercases to `STRASSE`, one byte longer. So the client runs the
//! service itself on what it sends ([`Service`] through a [`Session`], exactly as the server does) and
//! reads exactly as many bytes as that reply has. Against a server of another service, say so with
//! `--expect echo`; a reply that differs from the expected one is still printed, with a warning that names
//! the service it fits, if one does.
//!
//! # What else the socket holds
//! Reading exactly the expected reply leaves the rest unread, so after each reply, and before each request,
//! the client looks at the socket without waiting (no latency added against `upper`, where nothing is
//! there). A close is noted: nothing more is sent, a terminal session says so and ends, and input still to
//! send is an error that names it (`hello` closes on `exit`, and the client waits for that close when the
//! service says it comes). Bytes nobody asked for mean the replies are out of step with the requests:
//! usually a greeting the expected service does not send (`Welcome!` from a `hello` server); that is an
//! error that says what they are and which `--expect` fits, never a reply cut to the wrong length.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use log::{debug, warn};

use super::{not_the_reply, ClientOptions};
use crate::encoding::Encoding;
use crate::service::{Clock, Service, ServiceOptions, Session, Step};
use crate::stress::mismatch::{excerpt, Mismatch};

/// A TCP connection that reads exactly one whole reply per request.
pub struct TcpClient {
    stream: TcpStream,
    addr: SocketAddr,
    timeout: Duration,
    pub(super) expect: Service,
    pub(super) encoding: Encoding,
    /// The same service state the server keeps for this connection, so the expected reply to each piece is
    /// exactly what the server sends for it (a character split across two requests included).
    session: Session,
    clock: Clock,
    /// What the server sent on connect (the `hello` service's welcome), not shown yet.
    greeting: Vec<u8>,
    /// The same, kept: the first reply is judged with it.
    greeted: Vec<u8>,
    /// Replies read so far.
    replies: u64,
    /// The server has closed the connection.
    closed: bool,
}

/// What a non-blocking look at the socket found: nothing waiting, a close, or bytes nobody asked for.
enum Waiting {
    Nothing,
    Closed,
    Bytes(Vec<u8>),
}

/// The most stray bytes read to explain them.
const STRAY_SHOWN: usize = 4096;

impl TcpClient {
    /// Connects to the first of `addrs` that accepts, each within `options.timeout`, and reads the greeting
    /// the expected service sends on connect, if it has one.
    pub fn connect(addrs: &[SocketAddr], options: &ClientOptions) -> io::Result<TcpClient> {
        let (timeout, expect, encoding) = (options.timeout, options.expect, options.encoding);
        let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address to connect to");
        for &addr in addrs {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(stream) => {
                    // A request is one small write: send it now, not after Nagle's delay.
                    stream.set_nodelay(true)?;
                    debug!("connected to tcp://{addr}");
                    let mut session = expect.session_with(&ServiceOptions {
                        encoding,
                        ..ServiceOptions::default()
                    });
                    let mut greeting = Vec::new();
                    session.greeting(&mut greeting);
                    let mut client = TcpClient {
                        stream,
                        addr,
                        timeout,
                        expect,
                        encoding,
                        session,
                        clock: Clock::new(),
                        greeting: Vec::new(),
                        greeted: Vec::new(),
                        replies: 0,
                        closed: false,
                    };
                    client.greeting = client.read_reply(greeting.len(), "greeting")?;
                    client.greeted = client.greeting.clone();
                    return Ok(client);
                }
                Err(e) => last = explain_connect(e, addr, timeout),
            }
        }
        Err(last)
    }

    /// Sends `request` and returns its whole reply, or an error that says why it did not come.
    ///
    /// Before sending and after each reply it looks, without waiting, at what else the socket holds: a close
    /// is noted (and nothing more is sent), and bytes nobody asked for mean the replies are out of step with
    /// the requests (a greeting this service does not send, say), which is an error that says what they
    /// look like. A reply of the right length but not what the service sends is returned with a warning.
    pub fn exchange(&mut self, request: &[u8]) -> io::Result<Vec<u8>> {
        if !self.closed {
            match self.look()? {
                Waiting::Nothing => {}
                Waiting::Closed => self.closed = true,
                Waiting::Bytes(stray) => return Err(self.out_of_step(request, &[], &stray)),
            }
        }
        if self.closed {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                format!(
                    "tcp://{} closed the connection: this request was not sent",
                    self.addr
                ),
            ));
        }
        let mut expected = Vec::with_capacity(request.len());
        self.clock.tick();
        let step = self.session.feed(&self.clock, request, &mut expected);
        self.stream.set_write_timeout(Some(self.timeout))?;
        self.stream
            .write_all(request)
            .map_err(|e| self.explain(e, "sending the request"))?;

        let reply = self.read_reply(expected.len(), "reply")?;
        match self.look()? {
            Waiting::Bytes(stray) => return Err(self.out_of_step(request, &reply, &stray)),
            Waiting::Closed => self.closed = true,
            Waiting::Nothing => {}
        }
        if !self.expect.same_reply(&expected, &reply) {
            let fits = self
                .mismatch(request, &expected, &reply, &[])
                .fits(self.expect, false);
            warn!("{}", not_the_reply(self.expect, fits));
        }
        self.replies += 1;
        if step == Step::Close && !self.closed {
            self.await_close()?;
        }
        Ok(reply)
    }

    /// The connection has been closed by the server.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The server this connection reached.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What the server said on connect before any request (`hello`'s `Welcome!`), decoded for display;
    /// `None` once taken, or if it said nothing.
    pub fn take_greeting(&mut self) -> Option<String> {
        if self.greeting.is_empty() {
            return None;
        }
        let greeting = std::mem::take(&mut self.greeting);
        Some(self.encoding.decode(&greeting).into_owned())
    }

    /// A reply and what came after it as a wrong reply, for [`Mismatch::fits`]: the first one on the
    /// connection with the greeting that came before it.
    fn mismatch(&self, request: &[u8], expected: &[u8], reply: &[u8], stray: &[u8]) -> Mismatch {
        let first = self.replies == 0;
        let greeted: &[u8] = if first { &self.greeted } else { &[] };
        let mut greeting = Vec::new();
        if first {
            self.expect.session().greeting(&mut greeting);
        }
        Mismatch {
            request: request.to_vec(),
            expected: [&greeting[..], expected].concat(),
            got: [greeted, reply, stray].concat(),
            first,
            why: None,
        }
    }

    /// The error for bytes that came beyond the reply: what they look like, and what to do.
    fn out_of_step(&self, request: &[u8], reply: &[u8], stray: &[u8]) -> io::Error {
        let m = self.mismatch(request, &[], reply, stray);
        let cause = match m.fits(self.expect, false) {
            Some(other) => {
                let mut greeting = Vec::new();
                other.session().greeting(&mut greeting);
                let spoke_first = m.first && !greeting.is_empty() && m.got.starts_with(&greeting);
                if spoke_first {
                    format!(
                        "the {other} service greets with {} on connect: is the server running --service {other}? \
                         Then use --expect {other}",
                        excerpt(&greeting, 0)
                    )
                } else {
                    format!(
                        "what came is what the {other} service sends: is the server running --service {other}? \
                         Then use --expect {other}"
                    )
                }
            }
            None => format!(
                "is the server running the {} service? see --expect",
                self.expect
            ),
        };
        let what = if reply.is_empty() {
            format!("sent {} before this request", excerpt(stray, 0))
        } else {
            format!(
                "sent more than the {} service's reply ({} after it)",
                self.expect,
                excerpt(stray, 0)
            )
        };
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "tcp://{} {what}, so its replies are out of step with the requests: {cause}",
                self.addr
            ),
        )
    }

    /// Looks at the socket without waiting: one non-blocking read, which tells a close or bytes from
    /// nothing on every OS (it asks no readiness, so the tools' short-read rule, `net::SHORT_READ_DRAINS`,
    /// does not apply).
    fn look(&mut self) -> io::Result<Waiting> {
        let mut buf = [0u8; STRAY_SHOWN];
        self.stream.set_nonblocking(true)?;
        let result = loop {
            match self.stream.read(&mut buf) {
                Ok(0) => break Ok(Waiting::Closed),
                Ok(n) => break Ok(Waiting::Bytes(buf[..n].to_vec())),
                Err(ref e) if crate::net::would_block(e) => break Ok(Waiting::Nothing),
                Err(ref e) if crate::net::interrupted(e) => {}
                // A reset is a close that also lost data: reported the same way, by the next request.
                Err(ref e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    break Ok(Waiting::Closed)
                }
                Err(e) => break Err(self.explain(e, "looking for more from the server")),
            }
        };
        self.stream.set_nonblocking(false)?;
        result
    }

    /// The service closes the connection after this reply (`hello`'s `exit`): waits for the close.
    fn await_close(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + self.timeout;
        let mut buf = [0u8; STRAY_SHOWN];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the {} service closes the connection here, but tcp://{} did not within {:?}: is the \
                     server running the {} service? see --expect",
                        self.expect, self.addr, self.timeout, self.expect
                    ),
                ));
            }
            self.stream.set_read_timeout(Some(left))?;
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    self.closed = true;
                    return Ok(());
                }
                Ok(n) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "the {} service closes the connection here, but tcp://{} sent more: {}",
                            self.expect,
                            self.addr,
                            excerpt(&buf[..n], 0)
                        ),
                    ))
                }
                Err(ref e) if crate::net::interrupted(e) => {}
                Err(ref e) if crate::net::timed_out(e) => {}
                Err(ref e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    self.closed = true;
                    return Ok(());
                }
                Err(e) => return Err(self.explain(e, "waiting for the close")),
            }
        }
    }

    /// Reads exactly `len` bytes of `what` (the greeting or a reply) within the timeout, or says why they
    /// did not come.
    fn read_reply(&mut self, len: usize, what: &str) -> io::Result<Vec<u8>> {
        let deadline = Instant::now() + self.timeout;
        let mut reply = vec![0; len];
        let mut got = 0;
        while got < reply.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.incomplete(got, reply.len(), what));
            }
            self.stream.set_read_timeout(Some(left))?;
            match self.stream.read(&mut reply[got..]) {
                Ok(0) => {
                    self.closed = true;
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "tcp://{} closed the connection after {got} of the {what}'s {} bytes",
                            self.addr,
                            reply.len()
                        ),
                    ));
                }
                Ok(n) => got += n,
                Err(ref e) if crate::net::interrupted(e) => {}
                Err(ref e) if crate::net::timed_out(e) => {
                    return Err(self.incomplete(got, reply.len(), what))
                }
                Err(e) => return Err(self.explain(e, "waiting for the reply")),
            }
        }
        Ok(reply)
    }

    fn incomplete(&self, got: usize, want: usize, what: &str) -> io::Error {
        let why = if got == 0 {
            // Nothing at all: the kernel took the connection, but no one is reading it. The usual cause is a
            // server that serves one client at a time and is serving someone else.
            format!(
                "no byte came, though the connection was made: a server that serves one client at a time \
                     (--mode blocking) may be serving another client, and this one waits in its backlog until that \
                     one leaves; or the server does not run the {} service{} (see --expect)",
                self.expect,
                if what == "greeting" {
                    ", which greets on connect"
                } else {
                    ""
                }
            )
        } else {
            format!(
                "a {what} that never ends: is the server running the {} service? see --expect",
                self.expect
            )
        };
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "timed out after {:?}: got {got} of the {what}'s {want} bytes from tcp://{} ({why})",
                self.timeout, self.addr
            ),
        )
    }

    fn explain(&self, e: io::Error, doing: &str) -> io::Error {
        let what = match e.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => "the server reset the connection",
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => "timed out",
            _ => "failed",
        };
        io::Error::new(
            e.kind(),
            format!("{doing} to/from tcp://{}: {what} ({e})", self.addr),
        )
    }
}

fn explain_connect(e: io::Error, addr: SocketAddr, timeout: Duration) -> io::Error {
    let message = match e.kind() {
        io::ErrorKind::ConnectionRefused => {
            format!("connection refused by tcp://{addr}: is socklab-server running on {addr}?")
        }
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            format!("no answer from tcp://{addr} within {timeout:?}: is the address right?")
        }
        _ => format!("cannot connect to tcp://{addr}: {e}"),
    };
    io::Error::new(e.kind(), message)
}
