//! Sockets every server mode shares: one TCP listener and one UDP socket bound to the same address and
//! port, the `listening on …` line scripts read, and the two error tests the loops use in match guards.
//! See `docs/07-udp-and-tcp.md` for why the two sockets can share a port number.

use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

/// The listen backlog: enough that a burst of a thousand connects is queued, not dropped and retried.
const BACKLOG: i32 = 1024;

/// How many times `--port 0` tries for a port that is free for both TCP and UDP.
const PORT_ZERO_TRIES: usize = 20;

/// A TCP listener and a UDP socket on the same address and port, both still blocking.
#[derive(Debug)]
pub struct Sockets {
    pub tcp: TcpListener,
    pub udp: UdpSocket,
}

impl Sockets {
    /// Binds both sockets to `addr`. Port 0 picks a port free for both, so they share one number.
    pub fn bind(addr: SocketAddr) -> io::Result<Sockets> {
        if addr.port() != 0 {
            let tcp = bind_tcp(addr).map_err(|e| explain(e, "tcp", addr))?;
            let udp = bind_udp(addr).map_err(|e| explain(e, "udp", addr))?;
            return Ok(Sockets { tcp, udp });
        }
        // The kernel picks a free TCP port; the same number may be taken for UDP, so try again if it is.
        let mut last = None;
        for _ in 0..PORT_ZERO_TRIES {
            let tcp = bind_tcp(addr).map_err(|e| explain(e, "tcp", addr))?;
            let picked = tcp.local_addr()?;
            match bind_udp(picked) {
                Ok(udp) => return Ok(Sockets { tcp, udp }),
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = Some(e),
                Err(e) => return Err(explain(e, "udp", picked)),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no port free for both TCP and UDP")))
    }

    /// The address both sockets are bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // A restarted server must not wait for the old connections' TIME_WAIT to expire.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Turns a bare OS error into one that names what failed and suggests the likely cause.
fn explain(e: io::Error, proto: &str, addr: SocketAddr) -> io::Error {
    let hint = match e.kind() {
        io::ErrorKind::AddrInUse => " (is another server already using this port? try --port 0)",
        io::ErrorKind::AddrNotAvailable => " (is that address one of this machine's?)",
        io::ErrorKind::PermissionDenied => " (ports below 1024 need privileges)",
        _ => "",
    };
    io::Error::new(e.kind(), format!("cannot bind {proto} {addr}: {e}{hint}"))
}

/// The first line a server prints on stdout once both sockets are bound, e.g.
/// `listening on tcp://127.0.0.1:12000 udp://127.0.0.1:12000`. Scripts and tests parse it.
pub fn listening_line(addr: SocketAddr) -> String {
    format!("listening on tcp://{addr} udp://{addr}")
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
            let line = listening_line(addr) + " service=upper";
            assert_eq!(parse_listening_line(&line), Some(addr));
        }
        assert_eq!(
            listening_line("[::1]:7".parse().unwrap()),
            "listening on tcp://[::1]:7 udp://[::1]:7"
        );
        assert_eq!(parse_listening_line("hello"), None);
    }

    #[test]
    fn port_zero_gives_one_number_for_both() {
        let s = Sockets::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        assert_ne!(s.tcp.local_addr().unwrap().port(), 0);
        assert_eq!(s.tcp.local_addr().unwrap(), s.udp.local_addr().unwrap());
    }

    #[test]
    fn a_taken_port_is_a_clear_error() {
        let first = Sockets::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let err = Sockets::bind(first.local_addr().unwrap()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(
            err.to_string().contains("cannot bind tcp 127.0.0.1:"),
            "{err}"
        );
    }
}
