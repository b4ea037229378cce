//! The sockets every server mode starts with, made once: [`bind`] checks the configuration, then binds one
//! TCP listener and, for a service that answers datagrams, one UDP socket on the same address and port.
//! Also the options every accepted connection gets ([`prepare_accepted`]) and the one way a client over the
//! connection cap is turned away ([`refuse`]). See `docs/07-udp-and-tcp.md` for why TCP and UDP can share a
//! port number.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};

use log::debug;
use socket2::{Domain, Protocol, SockRef, Socket, Type};

use super::config::Config;

/// The listen backlog: enough that a burst of a thousand connects is queued, not dropped and retried.
const BACKLOG: i32 = 1024;

/// How many times `--port 0` tries for a port that is free for both TCP and UDP.
const PORT_ZERO_TRIES: usize = 20;

/// A TCP listener and, unless the service is TCP only, a UDP socket on the same address and port. Both
/// are still blocking; each mode sets them as it needs.
#[derive(Debug)]
pub struct Bound {
    pub tcp: TcpListener,
    pub udp: Option<UdpSocket>,
    /// The address both are bound to (with the real port when port 0 was asked for).
    pub local_addr: SocketAddr,
}

/// Checks `config` (a setting no server can honour is an error of kind `InvalidInput`, saying which and
/// why), then binds. Port 0 picks a port free for both protocols, so they share one number.
pub fn bind(config: &Config) -> io::Result<Bound> {
    config
        .validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let addr = SocketAddr::new(config.bind, config.port);
    let with_udp = config.service.datagrams().is_some();
    if addr.port() != 0 || !with_udp {
        let tcp = bind_tcp(addr).map_err(|e| explain(e, "tcp", addr))?;
        let local_addr = tcp.local_addr()?;
        let udp = if with_udp {
            Some(bind_udp(addr).map_err(|e| explain(e, "udp", addr))?)
        } else {
            None
        };
        return Ok(Bound {
            tcp,
            udp,
            local_addr,
        });
    }
    // The kernel picks a free TCP port; the same number may be taken for UDP, so try again if it is.
    let mut last = None;
    for _ in 0..PORT_ZERO_TRIES {
        let tcp = bind_tcp(addr).map_err(|e| explain(e, "tcp", addr))?;
        let picked = tcp.local_addr()?;
        match bind_udp(picked) {
            Ok(udp) => {
                return Ok(Bound {
                    tcp,
                    udp: Some(udp),
                    local_addr: picked,
                })
            }
            // Taken for UDP: `AddrInUse`, or on Windows `WSAEACCES` (`sys::is_address_in_use`).
            Err(e) if crate::sys::is_address_in_use(&e) => last = Some(e),
            Err(e) => return Err(explain(e, "udp", picked)),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no port free for both TCP and UDP")))
}

fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // A restarted server must not wait for the old connections' TIME_WAIT to expire, and a second server
    // must not take a port in use: `SO_REUSEADDR` on Unix, `SO_EXCLUSIVEADDRUSE` on Windows.
    crate::sys::set_listener_reuse(&socket)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Turns a bare OS error into one that names what failed and suggests the likely cause. A port in use is
/// `AddrInUse` on every OS, though Windows answers `WSAEACCES` (permission denied) for one held with
/// `SO_EXCLUSIVEADDRUSE` or in a range it reserved.
fn explain(e: io::Error, proto: &str, addr: SocketAddr) -> io::Error {
    let (kind, hint) = if crate::sys::is_address_in_use(&e) {
        (
            io::ErrorKind::AddrInUse,
            if cfg!(windows) {
                " (is another server already using this port, or is it in a range Windows reserves? `netsh \
                 interface ipv4 show excludedportrange protocol=tcp` lists those; try --port 0)"
            } else {
                " (is another server already using this port? try --port 0)"
            },
        )
    } else {
        let hint = match e.kind() {
            io::ErrorKind::AddrNotAvailable => " (is that address one of this machine's?)",
            io::ErrorKind::PermissionDenied if crate::sys::LOW_PORTS_NEED_PRIVILEGE => {
                " (ports below 1024 need privileges)"
            }
            _ => "",
        };
        (e.kind(), hint)
    };
    io::Error::new(kind, format!("cannot bind {proto} {addr}: {e}{hint}"))
}

/// An `accept` that keeps failing (out of descriptors: `EMFILE`, `ENFILE`; or kernel memory) is one outage,
/// told in two lines, when it begins and when it ends, however many times accepting is retried meanwhile.
#[derive(Debug, Default)]
pub struct AcceptOutage {
    /// When the outage began, and how many accepts have failed since.
    since: Option<(std::time::Instant, u64)>,
}

impl AcceptOutage {
    /// An accept failed with `e`. Logs the outage's first failure only.
    pub fn failed(&mut self, e: &io::Error) {
        match &mut self.since {
            Some((_, failures)) => *failures += 1,
            None => {
                log::warn!(
                    "accept failed: {e}; clients wait in the backlog until descriptors free up (the end of this \
                     is logged too)"
                );
                self.since = Some((std::time::Instant::now(), 1));
            }
        }
    }

    /// An outage has begun and not ended yet.
    pub fn under_way(&self) -> bool {
        self.since.is_some()
    }

    /// The backlog is empty (an accept said `WouldBlock`), or a blocking accept succeeded: an outage under
    /// way is over. Not at the first success of a non-blocking loop: descriptors freed one at a time let one
    /// client in and the next accept fail again, and that is still the same outage.
    pub fn caught_up(&mut self) {
        if let Some((since, failures)) = self.since.take() {
            log::warn!(
                "accepting again after {:.1} s without descriptors ({} failed meanwhile)",
                since.elapsed().as_secs_f64(),
                super::stats::plural(failures, "accept", "accepts")
            );
        }
    }
}

/// How many connections wait in `listener`'s backlog, accepted by the kernel but not yet by the server;
/// `None` where the OS cannot say (only Linux can: `crate::sys::backlog`). For the blocking mode's trace: who
/// waits while it serves one client.
pub fn backlog(listener: &TcpListener) -> Option<u32> {
    crate::sys::backlog(listener)
}

/// What every accepted connection gets, in every mode:
/// - `TCP_NODELAY`: replies are small and answer a request; send them now, not after Nagle's delay.
/// - `SO_SNDBUF`, if `--send-buffer` asks for it: the most bytes the kernel holds of a connection's unsent
///   replies (otherwise the kernel tunes it, up to `net.ipv4.tcp_wmem`'s maximum, 4 MiB here);
/// - `SO_OOBINLINE`: a byte a peer sends as TCP urgent data (`MSG_OOB`) stays in the stream, in its place,
///   and is answered like any other, as RFC 6093 advises (urgent data is a relic, and no service here gives
///   it a meaning). Without it, Linux takes the byte out of the stream, where nobody reads it.
pub fn prepare_accepted<'a>(stream: impl Into<SockRef<'a>>, peer: SocketAddr, config: &Config) {
    let socket = stream.into();
    if let Some(bytes) = config.send_buffer {
        if let Err(e) = socket.set_send_buffer_size(bytes) {
            debug!("{peer}: cannot set SO_SNDBUF: {e}");
        }
    }
    if let Err(e) = socket.set_nodelay(true) {
        debug!("{peer}: cannot set TCP_NODELAY: {e}");
    }
    if let Err(e) = socket.set_out_of_band_inline(true) {
        debug!("{peer}: cannot set SO_OOBINLINE: {e}");
    }
}

/// Turns away a client over the connection cap: `words` saying why (the service's own: a line, or an HTTP
/// `503`), FIN, and whatever it already sent is read, so the close sends no reset that could destroy the
/// words. The socket is new, so its send buffer is empty and takes them whole; `stream` must be
/// non-blocking, so nothing here can wait.
pub fn refuse(socket: SockRef<'_>, peer: SocketAddr, words: &[u8]) {
    debug!("{peer}: refused: too many connections");
    let mut stream: &Socket = &socket;
    let _ = stream.write(words);
    let _ = socket.shutdown(std::net::Shutdown::Write);
    let mut sink = [0u8; 4096];
    let _ = stream.read(&mut sink);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(port: u16) -> Config {
        Config {
            port,
            ..Config::default()
        }
    }

    #[test]
    fn port_zero_gives_one_number_for_both() {
        let bound = bind(&config(0)).unwrap();
        assert_ne!(bound.local_addr.port(), 0);
        let udp = bound.udp.as_ref().unwrap();
        assert_eq!(udp.local_addr().unwrap(), bound.local_addr);
    }

    #[test]
    fn a_taken_port_is_a_clear_error() {
        let first = bind(&config(0)).unwrap();
        let err = bind(&config(first.local_addr.port())).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(
            err.to_string().contains("cannot bind tcp 127.0.0.1:"),
            "{err}"
        );
    }

    #[test]
    #[cfg(target_os = "linux")] // Only Linux counts a listener's backlog (`TCP_INFO`).
    fn the_backlog_counts_connections_not_yet_accepted() {
        let bound = bind(&config(0)).unwrap();
        assert_eq!(backlog(&bound.tcp), Some(0));
        let _waiting: Vec<_> = (0..3)
            .map(|_| std::net::TcpStream::connect(bound.local_addr).unwrap())
            .collect();
        assert_eq!(backlog(&bound.tcp), Some(3));
    }

    #[test]
    fn a_refused_bind_is_explained_as_this_os_means_it() {
        let addr: SocketAddr = "127.0.0.1:80".parse().unwrap();
        #[cfg(unix)]
        {
            let e = explain(io::ErrorKind::PermissionDenied.into(), "tcp", addr);
            assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
            assert!(
                e.to_string().contains("ports below 1024 need privileges"),
                "{e}"
            );
        }
        #[cfg(windows)]
        {
            // WSAEACCES (10013): what a port held with SO_EXCLUSIVEADDRUSE answers there.
            let e = explain(io::Error::from_raw_os_error(10013), "tcp", addr);
            assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
            assert!(e.to_string().contains("--port 0"), "{e}");
            assert!(!e.to_string().contains("below 1024"), "{e}");
        }
    }

    /// Wine refuses a second bind whatever the options, so only the option itself can be checked here.
    #[test]
    #[cfg(windows)]
    fn a_windows_listener_is_exclusive_not_reusable() {
        let bound = bind(&config(0)).unwrap();
        let socket = SockRef::from(&bound.tcp);
        assert!(crate::sys::exclusive_address_use(&socket).unwrap());
        assert!(!socket.reuse_address().unwrap());
    }

    #[test]
    fn a_bad_config_is_refused_before_binding() {
        let bad = Config {
            high_water: 1,
            ..config(0)
        };
        assert_eq!(bind(&bad).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }
}
