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
//! `--expect echo`; a reply that differs from the expected one is still printed, with a warning.
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
use crate::service::{Clock, Service, ServiceOptions, Session};

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
pub enum Client {
    Tcp(TcpClient),
    Udp(UdpClient),
}

impl Client {
    /// Connects (TCP) or prepares a socket (UDP) for the server in `options`.
    pub fn open(options: &ClientOptions) -> io::Result<Client> {
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
pub fn send_messages(
    client: &mut Client,
    messages: &[String],
    out: &mut dyn Write,
) -> io::Result<()> {
    if let Some(greeting) = client.take_greeting() {
        out.write_all(greeting.as_bytes())?;
    }
    for message in messages {
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
            out.write_all(PROMPT.as_bytes())?;
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
        if prompt {
            out.write_all(b"From Server: ")?;
        }
        out.write_all(&reply)?;
        out.flush()?;
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
}

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
                    };
                    client.greeting = client.read_reply(greeting.len())?;
                    return Ok(client);
                }
                Err(e) => last = explain_connect(e, addr, timeout),
            }
        }
        Err(last)
    }

    /// Sends `request` and returns its whole reply, or an error that says why it did not come.
    pub fn exchange(&mut self, request: &[u8]) -> io::Result<Vec<u8>> {
        let mut expected = Vec::with_capacity(request.len());
        self.clock.tick();
        self.session.feed(&self.clock, request, &mut expected);
        self.stream.set_write_timeout(Some(self.timeout))?;
        self.stream
            .write_all(request)
            .map_err(|e| self.explain(e, "sending the request"))?;

        let reply = self.read_reply(expected.len())?;
        if reply != expected {
            warn!(
                "the reply is not what the {} service sends for this request (is the server running --service {}?)",
                self.expect, self.expect
            );
        }
        Ok(reply)
    }

    /// Reads exactly `len` bytes within the timeout, or says why they did not come.
    fn read_reply(&mut self, len: usize) -> io::Result<Vec<u8>> {
        let deadline = Instant::now() + self.timeout;
        let mut reply = vec![0; len];
        let mut got = 0;
        while got < reply.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.incomplete(got, reply.len()));
            }
            self.stream.set_read_timeout(Some(left))?;
            match self.stream.read(&mut reply[got..]) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "tcp://{} closed the connection after {got} of the reply's {} bytes",
                            self.addr,
                            reply.len()
                        ),
                    ))
                }
                Ok(n) => got += n,
                Err(ref e) if crate::net::interrupted(e) => {}
                Err(ref e) if crate::net::timed_out(e) => {
                    return Err(self.incomplete(got, reply.len()))
                }
                Err(e) => return Err(self.explain(e, "waiting for the reply")),
            }
        }
        Ok(reply)
    }

    fn incomplete(&self, got: usize, want: usize) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "timed out after {:?}: got {got} of the reply's {want} bytes from tcp://{} (a reply that never \
                 ends: is the server running the {} service? see --expect)",
                self.timeout, self.addr, self.expect
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
