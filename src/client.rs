//! The tutorials' client, done right: the logic behind `socklab-client`. One request, one whole reply, over
//! TCP or UDP, with a deadline on every wait so that nothing the server does (or fails to do) can hang it, and
//! errors that say what probably went wrong. Usage and examples: `docs/client-and-stress.md` (chapter 8, `docs/08-measuring.md`, puts it in context).
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
//!
//! # HTTP
//! With `--expect http` a message is a path: the client sends `GET path HTTP/1.1` (spaces and non-ASCII
//! percent-encoded), reads the whole response the same way, judges it by `Service::same_reply` (its `Date`
//! is the server's), and prints its body.
//!
//! # UDP
//! A datagram is a message, so no framing is needed, but one can be lost. The client waits `--timeout`, sends
//! again up to `--retries` times, then reports that no reply came. Its socket is connected to the server, so
//! the kernel drops datagrams from anyone else and reports "port unreachable" as a refused connection.

use std::io::{self, BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use log::{debug, warn};

use crate::encoding::Encoding;
use crate::service::{Clock, Service, ServiceOptions, Session, Step};
use crate::stress::mismatch::{excerpt, Mismatch};

/// The largest reply datagram the client can take: the largest UDP payload there is.
const MAX_DATAGRAM: usize = 65_507;

/// The tutorials' prompt, shown when stdin is a terminal.
pub const PROMPT: &str = "Input lowercase sentence: ";

/// What the client is asked to do.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Where the server is: every address the host name resolved to, tried in order (TCP).
    pub addrs: Vec<SocketAddr>,
    /// UDP instead of TCP.
    pub udp: bool,
    /// How long to wait for a connection or a whole reply (TCP), or for each try (UDP).
    pub timeout: Duration,
    /// UDP: how many times a request is sent again when no reply came within the timeout.
    pub retries: u32,
    /// Which service the server runs: it decides how long a TCP reply must be.
    pub expect: Service,
    /// How text is turned into bytes and back (`--encoding`): the server must run with the same.
    pub encoding: Encoding,
}

/// How replies are shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// Exactly one reply line per request and nothing else, for pipelines.
    Plain,
    /// As the tutorials show it: UDP replies carry the address they came from.
    Tutorial,
}

/// A connected client of either protocol.
// A process holds one client: boxing the larger variant would save nothing worth an allocation.
#[allow(clippy::large_enum_variant)]
pub enum Client {
    Tcp(TcpClient),
    Udp(UdpClient),
}

impl Client {
    /// Connects (TCP) or prepares a socket (UDP) for the server in `options`.
    pub fn open(options: &ClientOptions) -> io::Result<Client> {
        if options.udp && options.expect.datagrams().is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "--expect {} is TCP only: a server of it binds no UDP socket, so leave out --udp",
                    options.expect
                ),
            ));
        }
        if options.udp {
            let server = *options.addrs.first().ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "no address to send to")
            })?;
            UdpClient::new(server, options).map(Client::Udp)
        } else {
            TcpClient::connect(&options.addrs, options).map(Client::Tcp)
        }
    }

    /// What the server said on connect before any request (`hello`'s `Welcome!`), once, for display.
    pub fn take_greeting(&mut self) -> Option<String> {
        match self {
            Client::Tcp(tcp) if !tcp.greeting.is_empty() => {
                let greeting = std::mem::take(&mut tcp.greeting);
                Some(tcp.encoding.decode(&greeting).into_owned())
            }
            _ => None,
        }
    }

    fn encoding(&self) -> Encoding {
        match self {
            Client::Tcp(tcp) => tcp.encoding,
            Client::Udp(udp) => udp.encoding,
        }
    }

    /// The server has closed the connection (TCP): nothing more can be sent on it.
    pub fn is_closed(&self) -> bool {
        matches!(self, Client::Tcp(tcp) if tcp.closed)
    }

    /// The prompt the interactive loop shows before each line.
    pub fn prompt(&self) -> &'static str {
        match self {
            Client::Tcp(tcp) => prompt_for(tcp.expect),
            Client::Udp(udp) => prompt_for(udp.expect),
        }
    }

    /// Sends one message and returns its reply as shown to the user, ending in a newline. The message is
    /// text typed or piped in UTF-8; it goes on the wire in the chosen encoding and its reply comes back from it.
    fn ask(&mut self, message: &[u8], style: Style) -> io::Result<Vec<u8>> {
        let encoding = self.encoding();
        let wire = to_wire(message, encoding)?;
        let message = &wire[..];
        let shown = |reply: Vec<u8>| match encoding {
            Encoding::Utf8 => reply,
            _ => encoding.decode(&reply).into_owned().into_bytes(),
        };
        match self {
            Client::Tcp(tcp) if tcp.expect == Service::Http => {
                // A line is a path: one GET for it, and the response's body is what is shown.
                let request = http_get(trim_newline(message), tcp.addr);
                let response = tcp.exchange(&request)?;
                let status = response.split(|&b| b == b'\r').next().unwrap_or_default();
                if !status.starts_with(b"HTTP/1.1 200 ") {
                    warn!("the server answered {}", String::from_utf8_lossy(status));
                }
                let mut body = http_body(&response).to_vec();
                if body.last() != Some(&b'\n') {
                    body.push(b'\n');
                }
                Ok(body)
            }
            Client::Tcp(tcp) => {
                let mut reply = shown(tcp.exchange(message)?);
                // An empty reply (`hello`'s `exit`) prints nothing; any other ends its line.
                if !reply.is_empty() && reply.last() != Some(&b'\n') {
                    reply.push(b'\n');
                }
                Ok(reply)
            }
            Client::Udp(udp) => {
                // A datagram is the message itself; a line's newline is how the user ended it, not part of it.
                let message = trim_newline(message);
                let (reply, from) = udp.exchange(message)?;
                let mut reply = shown(reply);
                if style == Style::Tutorial {
                    reply.extend_from_slice(format!(" (from {from})").as_bytes());
                }
                reply.push(b'\n');
                Ok(reply)
            }
        }
    }
}

/// Sends each message in turn (TCP: followed by a newline, one line each) and writes each reply to `out`.
/// With `--expect http` each message is a path, fetched with one `GET`. If the server closes the
/// connection (`hello`'s `exit`) while messages are left, it fails, naming the first one not sent.
pub fn send_messages(
    client: &mut Client,
    messages: &[String],
    out: &mut dyn Write,
) -> io::Result<()> {
    if let Some(greeting) = client.take_greeting() {
        out.write_all(greeting.as_bytes())?;
    }
    for (i, message) in messages.iter().enumerate() {
        if client.is_closed() {
            return Err(not_sent(&messages[i - 1], message, messages.len() - i));
        }
        let mut line = Vec::with_capacity(message.len() + 1);
        line.extend_from_slice(message.as_bytes());
        line.push(b'\n');
        let reply = client.ask(&line, Style::Tutorial)?;
        out.write_all(&reply)?;
        out.flush()?;
    }
    Ok(())
}

/// One request per line of `input` until its end, one reply line each on `out`. With `prompt`, the
/// tutorials' interactive loop: the prompt before each line, the reply as the tutorial shows it.
///
/// When the server closes the connection (`hello`'s `exit`), the loop ends: on a terminal it says so and
/// is done; piped, any line still to come could not be delivered, and that is an error naming it.
pub fn send_lines(
    client: &mut Client,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    prompt: bool,
) -> io::Result<()> {
    let style = if prompt {
        Style::Tutorial
    } else {
        Style::Plain
    };
    if let Some(greeting) = client.take_greeting() {
        out.write_all(greeting.as_bytes())?;
    }
    let mut line = Vec::new();
    loop {
        if prompt {
            out.write_all(client.prompt().as_bytes())?;
            out.flush()?;
        }
        line.clear();
        // Bytes, not `String`: a line that is not UTF-8 is still a request, and the service answers it.
        if input.read_until(b'\n', &mut line)? == 0 {
            if prompt {
                // End the prompt's line so the shell's prompt does not follow it.
                out.write_all(b"\n")?;
            }
            return Ok(());
        }
        let reply = client.ask(&line, style)?;
        // `hello`'s `exit` has no reply: no "From Server:" with nothing after it.
        if prompt && !reply.is_empty() {
            out.write_all(b"From Server: ")?;
        }
        out.write_all(&reply)?;
        out.flush()?;
        if client.is_closed() {
            if prompt {
                out.write_all(b"The server closed the connection.\n")?;
                return Ok(());
            }
            let last = String::from_utf8_lossy(trim_newline(&line)).into_owned();
            line.clear();
            if input.read_until(b'\n', &mut line)? == 0 {
                return Ok(());
            }
            let next = String::from_utf8_lossy(trim_newline(&line)).into_owned();
            return Err(not_sent(&last, &next, 0));
        }
    }
}

/// The error for input left when the server has closed: `last` was the final request it took, `next`
/// the first not sent; `count` of them when known.
fn not_sent(last: &str, next: &str, count: usize) -> io::Error {
    let left = match count {
        0 => format!("{next:?} and whatever follows it were not sent"),
        1 => format!("{next:?} was not sent"),
        n => format!("{n} messages from {next:?} on were not sent"),
    };
    io::Error::new(
        io::ErrorKind::NotConnected,
        format!("the server closed the connection after {last:?}: {left}"),
    )
}

/// What the interactive loop asks for: a sentence to uppercase (the tutorials' prompt), a name (`hello`),
/// a path (`http`); for any other service, a request. A service added later needs nothing here.
pub fn prompt_for(service: Service) -> &'static str {
    match service {
        Service::Upper => PROMPT,
        Service::Echo => "Input a sentence: ",
        Service::Hello => "Input your name (exit to leave): ",
        Service::Http => "Path to GET: ",
        _ => "Input a request: ",
    }
}

/// `GET path HTTP/1.1` with a `Host` naming the server. A path without its leading `/` gets one, and the
/// bytes a request target may not hold (spaces, controls, non-ASCII) are percent-encoded, as a browser
/// does, so that what is typed is one path and never a malformed request.
pub fn http_get(path: &[u8], host: SocketAddr) -> Vec<u8> {
    let slash = if path.starts_with(b"/") || path == b"*" {
        ""
    } else {
        "/"
    };
    let mut request = format!("GET {slash}").into_bytes();
    for &b in path {
        if b <= b' ' || b >= 0x7f {
            request.extend_from_slice(format!("%{b:02X}").as_bytes());
        } else {
            request.push(b);
        }
    }
    request.extend_from_slice(format!(" HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
    request
}

/// The body of one whole HTTP response (after its blank line); all of it if it has no header end.
pub fn http_body(response: &[u8]) -> &[u8] {
    match response.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(at) => &response[at + 4..],
        None => response,
    }
}

/// Typed text in the wire's encoding. Input that is not UTF-8 is taken to be in the wire's encoding already
/// (a pipe of GBK bytes, say) and sent as it is.
fn to_wire(message: &[u8], encoding: Encoding) -> io::Result<std::borrow::Cow<'_, [u8]>> {
    match (encoding, std::str::from_utf8(message)) {
        (Encoding::Utf8, _) | (_, Err(_)) => Ok(std::borrow::Cow::Borrowed(message)),
        (_, Ok(text)) => encoding.encode(text).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} has no code for {:?}: cannot send this text with --encoding {}",
                    encoding.name(),
                    e.0,
                    encoding.name()
                ),
            )
        }),
    }
}

fn trim_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// A TCP connection that reads exactly one whole reply per request.
pub struct TcpClient {
    stream: TcpStream,
    addr: SocketAddr,
    timeout: Duration,
    expect: Service,
    encoding: Encoding,
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
            match fits {
                Some(other) => warn!(
                    "the reply is not what the {} service sends for this request but what the {other} service \
                     sends: is the server running --service {other}? Then use --expect {other}",
                    self.expect
                ),
                None => warn!(
                    "the reply is not what the {} service sends for this request (is the server running \
                     --service {}? see --expect)",
                    self.expect, self.expect
                ),
            }
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

    /// Looks at the socket without waiting.
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

/// A UDP socket connected to the server: one datagram out, one back, with retries.
pub struct UdpClient {
    socket: UdpSocket,
    server: SocketAddr,
    timeout: Duration,
    retries: u32,
    expect: Service,
    encoding: Encoding,
    /// What the previous request's reply looked like: a late copy of it (its request was sent twice) must not
    /// be taken for the reply to the next request.
    previous: Vec<u8>,
    buf: Vec<u8>,
}

impl UdpClient {
    pub fn new(server: SocketAddr, options: &ClientOptions) -> io::Result<UdpClient> {
        let local: SocketAddr = if server.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            ([0u16; 8], 0).into()
        };
        let socket = UdpSocket::bind(local)?;
        socket.connect(server)?;
        Ok(UdpClient {
            socket,
            server,
            timeout: options.timeout,
            retries: options.retries,
            expect: options.expect,
            encoding: options.encoding,
            previous: Vec::new(),
            buf: vec![0; MAX_DATAGRAM],
        })
    }

    /// Sends `message` as one datagram and returns the reply and the address it came from.
    pub fn exchange(&mut self, message: &[u8]) -> io::Result<(Vec<u8>, SocketAddr)> {
        let mut expected = Vec::with_capacity(message.len());
        let options = ServiceOptions {
            encoding: self.encoding,
            ..ServiceOptions::default()
        };
        self.expect.datagram_with(&options, message, &mut expected);
        for attempt in 0..=self.retries {
            if attempt > 0 {
                debug!(
                    "no reply within {:?}, sending again ({attempt} of {})",
                    self.timeout, self.retries
                );
            }
            self.socket.send(message).map_err(|e| self.explain(e))?;
            let deadline = Instant::now() + self.timeout;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                self.socket.set_read_timeout(Some(left))?;
                match self.socket.recv_from(&mut self.buf) {
                    Ok((n, from)) => {
                        let reply = &self.buf[..n];
                        if reply != expected && reply == self.previous {
                            debug!("dropped a late duplicate of the previous reply");
                            continue;
                        }
                        if reply != expected {
                            warn!(
                                "the reply is not what the {} service sends for this request",
                                self.expect
                            );
                        }
                        self.previous = expected;
                        return Ok((reply.to_vec(), from));
                    }
                    Err(ref e) if crate::net::interrupted(e) => {}
                    Err(ref e) if crate::net::timed_out(e) => break,
                    Err(e) => return Err(self.explain(e)),
                }
            }
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "no reply from udp://{} after {} tries, {:?} each: the datagrams or their replies were lost, or \
                 nothing is serving there (is socklab-server running on {}?)",
                self.server,
                self.retries + 1,
                self.timeout,
                self.server
            ),
        ))
    }

    fn explain(&self, e: io::Error) -> io::Error {
        let message = match e.kind() {
            // An ICMP "port unreachable" for an earlier datagram, reported on the connected socket.
            io::ErrorKind::ConnectionRefused => format!(
                "nothing is listening on udp://{} (port unreachable): is socklab-server running on {}?",
                self.server, self.server
            ),
            _ => format!("udp://{}: {e}", self.server),
        };
        io::Error::new(e.kind(), message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newline_is_trimmed_for_datagrams_only_once() {
        assert_eq!(trim_newline(b"hi\r\n"), b"hi");
        assert_eq!(trim_newline(b"hi\n\n"), b"hi\n");
        assert_eq!(trim_newline(b"hi"), b"hi");
    }
}
