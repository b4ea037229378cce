//! Where the load goes, and what answers there: `--addr HOST[:PORT]`, with socklab's port (12000) when none
//! is given, as `socklab-client --host` has it; and, when every datagram met "port unreachable", whether
//! something serves TCP on the same port, so that both tools can say "that server answers no datagrams"
//! instead of asking whether it runs.
//!
//! Walk-through: `docs/client-and-stress.md`.

use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::service::Service;

/// The longest a probe waits for a TCP connect: on loopback an answer takes microseconds.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// `HOST:PORT`, `HOST`, `[V6]:PORT`, `[V6]` or a bare IPv6 address, resolved to its first address; `HOST`
/// without a port gets `default_port`.
pub fn resolve_addr(text: &str, default_port: u16) -> Result<SocketAddr, String> {
    let text = text.trim();
    // Said here rather than left to the resolver: Windows' resolves an empty name to this machine's own
    // addresses, where Linux's refuses it.
    if text.is_empty() {
        return Err("no host given (HOST or HOST:PORT)".into());
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, default_port));
    }
    let resolved = if text.contains(':') {
        text.to_socket_addrs()
    } else {
        (text, default_port).to_socket_addrs()
    };
    resolved
        .map_err(|e| format!("cannot resolve {text}: {e}"))?
        .next()
        .ok_or_else(|| format!("{text} resolves to no address"))
}

/// Whether a TCP connect to `addr` is accepted within `timeout` (at most a second). Asked only after every
/// datagram to `addr` met "port unreachable", to tell "nothing runs there" from "it serves TCP only".
pub fn tcp_answers(addr: SocketAddr, timeout: Duration) -> bool {
    TcpStream::connect_timeout(&addr, timeout.min(PROBE_TIMEOUT)).is_ok()
}

/// What to tell a person whose datagrams to `addr` all met "port unreachable": if `tcp_answers`, a server
/// runs there but binds no UDP socket (as socklab's does for a service with no meaning over UDP); if not,
/// nothing runs there. The same words from both tools.
pub fn udp_unreachable(addr: SocketAddr, tcp_answers: bool) -> String {
    if tcp_answers {
        let tcp_only: Vec<&str> = Service::ALL
            .iter()
            .filter(|s| s.datagrams().is_none())
            .map(|s| s.name())
            .collect();
        format!(
            "the server on {addr} answers no datagrams: udp://{addr} is unreachable (port unreachable) while \
             tcp://{addr} accepts connections, so it binds no UDP socket there (socklab-server binds none \
             for a TCP-only service: {}): leave out --udp",
            tcp_only.join(", ")
        )
    } else {
        format!(
            "nothing is listening on udp://{addr} (port unreachable), nor on tcp://{addr}: is socklab-server \
             running on {addr}?"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_without_a_port_gets_the_default() {
        let at = |text| resolve_addr(text, 12000).map(|a| a.to_string());
        assert_eq!(at("127.0.0.1").unwrap(), "127.0.0.1:12000");
        assert_eq!(at("127.0.0.1:80").unwrap(), "127.0.0.1:80");
        assert_eq!(at("::1").unwrap(), "[::1]:12000");
        assert_eq!(at("[::1]").unwrap(), "[::1]:12000");
        assert_eq!(at("[::1]:7").unwrap(), "[::1]:7");
        assert_eq!(at("localhost").unwrap().rsplit(':').next(), Some("12000"));
        assert!(at("localhost:99999").is_err());
        assert!(at("").is_err());
    }

    #[test]
    fn a_tcp_only_server_is_told_from_no_server() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(tcp_answers(addr, Duration::from_secs(1)));
        let said = udp_unreachable(addr, true);
        assert!(
            said.contains("answers no datagrams") && said.contains("leave out --udp"),
            "{said}"
        );
        assert!(
            said.contains("http"),
            "the TCP-only services are named: {said}"
        );
        // Where nothing listens: a TCP socket bound but not listening holds the port (dropping the listener
        // would let a test running beside this one bind the number) and refuses connections.
        let held =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        held.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        let addr = held.local_addr().unwrap().as_socket().unwrap();
        assert!(!tcp_answers(addr, Duration::from_secs(1)));
        assert!(udp_unreachable(addr, false).contains("is socklab-server running on"));
    }
}
