//! The tutorials' client, done right: the logic behind `socklab-client`. One request, one whole reply, over
//! TCP or UDP, with a deadline on every wait so that nothing the server does (or fails to do) can hang it, and
//! errors that say what probably went wrong. Usage and examples: `docs/client-and-stress.md` (chapter 8,
//! `docs/08-measuring.md`, puts it in context).
//!
//! The folder, by transport:
//! - this file: what the client is asked ([`ClientOptions`]), the [`Client`] of either protocol, and the two
//!   ways of feeding it: messages as arguments ([`send_messages`]) or lines from stdin ([`send_lines`]);
//! - [`tcp`]: [`TcpClient`], which knows where a reply ends in a byte stream, and what else the socket holds
//!   (a greeting, a close);
//! - [`udp`]: [`UdpClient`], a datagram out and one back, with retries.
//!
//! The client names no service: what it asks for, and what it sends and shows where a protocol's requests
//! have a shape of their own (`http`'s path, sent as a `GET`), come from the service registry
//! ([`Service::prompt`], [`Service::request_for`], [`Service::shown`]).

pub mod tcp;
pub mod udp;

use std::io::{self, BufRead, Write};
use std::net::SocketAddr;
use std::time::Duration;

use crate::encoding::Encoding;
use crate::service::Service;
pub use tcp::TcpClient;
pub use udp::UdpClient;

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

impl ClientOptions {
    /// Rejects options that contradict each other, with a message for the person who chose them: the same
    /// words `socklab-stress` uses for the same mistake.
    pub fn validate(&self) -> Result<(), String> {
        if self.udp && self.expect.datagrams().is_none() {
            return Err(crate::stress::tcp_only(self.expect));
        }
        Ok(())
    }
}

impl Client {
    /// Connects (TCP) or prepares a socket (UDP) for the server in `options`.
    pub fn open(options: &ClientOptions) -> io::Result<Client> {
        options
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
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
            Client::Tcp(tcp) => tcp.take_greeting(),
            Client::Udp(_) => None,
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
        matches!(self, Client::Tcp(tcp) if tcp.is_closed())
    }

    /// The prompt the interactive loop shows before each line.
    pub fn prompt(&self) -> &'static str {
        match self {
            Client::Tcp(tcp) => tcp.expect.prompt(),
            Client::Udp(udp) => udp.expect.prompt(),
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
            Client::Tcp(tcp) => match tcp.expect.request_for(trim_newline(message), tcp.addr()) {
                Some(request) => shaped(tcp, &request),
                None => {
                    let mut reply = shown(tcp.exchange(message)?);
                    // An empty reply (`hello`'s `exit`) prints nothing; any other ends its line.
                    if !reply.is_empty() && reply.last() != Some(&b'\n') {
                        reply.push(b'\n');
                    }
                    Ok(reply)
                }
            },
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

/// The warning for a reply that is not what `expect` sends, naming the service it `fits` if one does: the
/// same over TCP and UDP.
fn not_the_reply(expect: Service, fits: Option<Service>) -> String {
    match fits {
        Some(other) => format!(
            "the reply is not what the {expect} service sends for this request but what the {other} service \
             sends: is the server running --service {other}? Then use --expect {other}"
        ),
        None => format!(
            "the reply is not what the {expect} service sends for this request (is the server running \
             --service {expect}? see --expect)"
        ),
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

/// Typed text in the wire's encoding. Input that is not UTF-8 is taken to be in the wire's encoding already
/// Sends a request the service shaped from a message (`http`'s `GET`) and returns what the service shows of
/// its reply (the body), ending in a newline; what the service finds worth a warning (a status other than
/// 200) is warned about, and the reply shown all the same.
fn shaped(tcp: &mut TcpClient, request: &[u8]) -> io::Result<Vec<u8>> {
    let response = tcp.exchange(request)?;
    let shown = tcp.expect.shown(&response);
    if let Some(warning) = shown.warning {
        log::warn!("the server answered {}", String::from_utf8_lossy(warning));
    }
    let mut body = shown.body.to_vec();
    if body.last() != Some(&b'\n') {
        body.push(b'\n');
    }
    Ok(body)
}
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
