//! The numbers every server mode shares, each with the reason for its value. One place, so the modes cannot
//! drift apart (they once carried five copies of the datagram size). The connection cap each mode can afford
//! is computed in `capacity.rs`. Walk-through: `docs/09-running.md`.

use std::time::{Duration, Instant};

/// How long a connection the server closes waits for its peer's FIN before giving up. Closing a socket
/// with unread input sends a reset, which can destroy replies the peer has not read yet; so the server
/// shuts its write side (FIN) and reads and drops what still comes, until the peer's FIN or this long.
pub const LINGER: Duration = Duration::from_secs(2);

/// Reads smaller than this are not worth a system call: under backpressure, wait until this much room is
/// free. A service's bounds must leave room for one such read even while it holds all it may hold
/// ([`crate::service::Service::check`]).
pub const MIN_READ: usize = 4096;

/// Connections accepted in one turn (or pass) before the others get theirs. A count is a bound in time
/// here: each accept costs a few system calls and a greeting whose length the service bounds.
pub const ACCEPT_BUDGET: usize = 64;

/// Datagrams answered in one turn (or pass) before the others get theirs.
pub const DATAGRAM_BUDGET: usize = 256;

/// Bytes of datagrams and their replies handled in one turn (or pass), whatever their number: 256 of the
/// largest datagrams would be 32 MiB, tens of milliseconds during which no TCP client is served.
pub const DATAGRAM_BYTES: usize = 256 * 1024;

/// Bytes read from all connections together in one turn of the reactor (and again for the connections it
/// revisits): thousands of connections filling their buffers at once cannot stretch a turn past about a
/// millisecond of copying and answering. Each ready connection's share of it is at least [`MIN_READ`].
pub const TURN_READ_BUDGET: usize = 1024 * 1024;

/// A buffer that holds any datagram whole: 65,507 bytes over IPv4, 65,527 over IPv6.
pub const DATAGRAM_BUFFER: usize = 64 * 1024;

/// The one read buffer of a single-threaded server (reactor, busy-poll): as large as a datagram.
pub const READ_BUFFER: usize = DATAGRAM_BUFFER;

/// Bytes one blocking read asks for. Every connection thread owns its buffer, so it is smaller than the
/// single-threaded servers' one shared buffer.
pub const THREAD_READ_SIZE: usize = 16 * 1024;

/// The stack of each thread a blocking mode starts (one per connection in `--mode threads`). A connection
/// thread keeps its buffers on the heap and never recurses, so a quarter of a megabyte is plenty; Rust's
/// default of 2 MiB would reserve eight times the address space per connection for nothing.
pub const CONNECTION_STACK: usize = 256 * 1024;

/// The longest a blocking read waits before its thread looks at the stop flag and its deadlines. It bounds
/// how long a quiet connection takes to notice a shutdown; it costs an idle thread ten wake-ups a second.
pub const TICK: Duration = Duration::from_millis(100);

/// How long accepting pauses when the process is out of descriptors, unless a connection closes sooner.
pub const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Descriptors kept back from the connection cap for the listener, the UDP socket, the poll, logging, and
/// the accept that refuses a client over the limit.
pub const FD_RESERVE: usize = 32;

/// `at + after`, or a time so far off that it never comes if that cannot be represented: a deadline never
/// overflows, whatever a flag asked for.
pub fn deadline_after(at: Instant, after: Duration) -> Instant {
    at.checked_add(after).unwrap_or_else(|| far_future(at))
}

/// About a century after `at`: further than any flag may ask (see `docs/09-running.md`), and still
/// representable on every platform.
fn far_future(at: Instant) -> Instant {
    let mut span = Duration::from_secs(100 * 365 * 24 * 3600);
    loop {
        if let Some(t) = at.checked_add(span) {
            return t;
        }
        span /= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_saturate() {
        let now = Instant::now();
        assert_eq!(
            deadline_after(now, Duration::from_secs(3)),
            now + Duration::from_secs(3)
        );
        assert!(
            deadline_after(now, Duration::MAX) > now + Duration::from_secs(50 * 365 * 24 * 3600)
        );
    }
}
