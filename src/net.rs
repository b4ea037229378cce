//! Small socket helpers the servers and the tools share: the `listening on …` line scripts read, the
//! open-file limit, and the error tests the loops use in match guards (`would_block(&e)`, as mio's own
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

/// The soft limit on open files (`ulimit -n`): each connection is one.
pub fn open_file_limit() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
}

/// Raises the soft open-file limit to the hard limit, as servers expecting many connections do at start.
/// Returns the limit now in force.
pub fn raise_open_file_limit() -> io::Result<usize> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write only the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(io::Error::last_os_error());
        }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(open_file_limit())
}

/// The socket has nothing more for us now; readiness will tell us when it has.
pub fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// A signal arrived during the call; simply try again.
pub fn interrupted(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted
}

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
