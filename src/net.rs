//! Small socket helpers the servers and the tools share: the `listening on …` line scripts read, the
//! open-file limit (as the OS layer, `src/sys/`, reads it), and the error tests the loops use in match guards (`would_block(&e)`, as mio's own
//! examples write them). Binding is the server's: `src/server/sockets.rs`.
//!
//! Walk-through: `docs/07-udp-and-tcp.md` (one port for both protocols) and `docs/09-running.md` (the
//! output and the limits).

use std::io;
use std::net::SocketAddr;

/// The port the tutorials use, for TCP and UDP alike: where the server listens and the tools connect.
pub const DEFAULT_PORT: u16 = 12000;

/// The first line a server prints on stdout once its sockets are bound, e.g.
/// `listening on tcp://127.0.0.1:12000 udp://127.0.0.1:12000`, or only the TCP address for a service that
/// answers no datagrams. Scripts and tests parse it.
pub fn listening_line(addr: SocketAddr, udp: bool) -> String {
    if udp {
        format!("listening on tcp://{addr} udp://{addr}")
    } else {
        format!("listening on tcp://{addr}")
    }
}

/// Parses the address back out of a [`listening_line`]; `None` if the line is not one.
pub fn parse_listening_line(line: &str) -> Option<SocketAddr> {
    let rest = line.strip_prefix("listening on tcp://")?;
    rest.split_whitespace().next()?.parse().ok()
}

/// The soft limit on open files (`ulimit -n`; on Windows the handle ceiling): each connection is one.
pub fn open_file_limit() -> usize {
    soft(crate::sys::open_files())
}

/// Raises the soft open-file limit to the hard limit, as servers expecting many connections do at start.
/// Returns the limit now in force.
pub fn raise_open_file_limit() -> io::Result<usize> {
    crate::sys::raise_open_files().map(soft)
}

/// A soft limit as a count: unlimited, or more than this machine can count, is `usize::MAX`.
fn soft(limit: crate::sys::Limit) -> usize {
    limit
        .soft
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(usize::MAX)
}

/// The socket has nothing more for us now; readiness will tell us when it has.
pub fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// A signal arrived during the call; simply try again.
pub fn interrupted(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted
}

/// `accept` failed for one connection only, whose peer reset or closed it before the server accepted it:
/// nothing to serve, and no reason to pause accepting. Linux says `ECONNABORTED`; Windows `WSAECONNRESET`;
/// Wine `WSAENOTCONN` (it cannot read the address of a peer that is gone). Anything else (out of
/// descriptors, out of memory) is an outage.
pub fn peer_left_before_accept(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::NotConnected
    )
}

/// A connected UDP socket's receive (or send) failed because an earlier datagram met "port unreachable":
/// nothing listens for datagrams there. Linux and the BSDs report it as `ECONNREFUSED`; Windows as
/// `WSAECONNRESET` (Wine, like Linux, as refused).
pub fn port_unreachable(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset
    )
}

/// The short-read rule, for every reader that waits on mio readiness: whether a read that returned less than
/// it asked for emptied the socket's receive queue, so the read that would only say `WouldBlock` can be
/// skipped and the next byte to arrive raises a new event. True wherever readiness is epoll or kqueue, which
/// raise a new edge for every arrival; mio's Windows backend makes no such promise, so there a reader reads
/// on until `WouldBlock`. The reactor (`server/reactor/registered.rs`) and the stress tool both use this.
pub const SHORT_READ_DRAINS: bool = !cfg!(windows);

/// A blocking socket's read timeout ran out: `WouldBlock` on Unix, `TimedOut` elsewhere.
pub fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_line_round_trips_v4_and_v6() {
        for addr in ["127.0.0.1:12000", "[::1]:4000"] {
            let addr: SocketAddr = addr.parse().unwrap();
            for udp in [true, false] {
                let line = listening_line(addr, udp) + " service=upper";
                assert_eq!(parse_listening_line(&line), Some(addr));
            }
        }
        assert_eq!(
            listening_line("[::1]:7".parse().unwrap(), true),
            "listening on tcp://[::1]:7 udp://[::1]:7"
        );
        assert_eq!(
            listening_line("127.0.0.1:7".parse().unwrap(), false),
            "listening on tcp://127.0.0.1:7"
        );
        assert_eq!(parse_listening_line("hello"), None);
    }
}
