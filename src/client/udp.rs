//! The client over UDP: one datagram out, one back, with retries.
//!
//! Walk-through: `docs/client-and-stress.md`.
//!
//! # UDP
//! A datagram is a message, so no framing is needed, but one can be lost. The client waits `--timeout`, sends
//! again up to `--retries` times, then reports that no reply came. Its socket is connected to the server, so
//! the kernel drops datagrams from anyone else and reports "port unreachable" as a refused connection.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use log::{debug, warn};

use super::{not_the_reply, ClientOptions};
use crate::encoding::Encoding;
use crate::net::port_unreachable;
use crate::service::{Service, ServiceOptions};
use crate::stress::mismatch::Mismatch;
use crate::stress::target::{tcp_answers, udp_unreachable};

/// The largest reply datagram the client can take: the largest UDP payload there is.
const MAX_DATAGRAM: usize = 65_507;

/// A UDP socket connected to the server: one datagram out, one back, with retries.
pub struct UdpClient {
    socket: UdpSocket,
    server: SocketAddr,
    timeout: Duration,
    retries: u32,
    pub(super) expect: Service,
    pub(super) encoding: Encoding,
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
                            // Whose reply it is, if another service's: the hint TCP gives, over UDP too.
                            let fits = Mismatch {
                                request: message.to_vec(),
                                expected: expected.clone(),
                                got: reply.to_vec(),
                                first: false,
                                why: None,
                            }
                            .fits(self.expect, true);
                            warn!("{}", not_the_reply(self.expect, fits));
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
            _ if port_unreachable(&e) => {
                let tcp = tcp_answers(self.server, self.timeout);
                udp_unreachable(self.server, tcp)
            }
            _ => format!("udp://{}: {e}", self.server),
        };
        io::Error::new(e.kind(), message)
    }
}
