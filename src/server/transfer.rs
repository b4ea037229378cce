//! Moving a connection's bytes over a stream socket, for every driver that has one (the reactor, busy-poll
//! and the blocking modes): write what the core has pending until the socket stops taking it, and send FIN
//! when the core asks. Written once, so the modes differ only in how they wait. The core itself
//! (`connection/`) never touches a socket. Walk-through: `docs/06-connection.md`.

use std::io::{self, Read, Write};
use std::net::Shutdown;

use super::connection::{Connection, Context};
use crate::net::{interrupted, timed_out};

/// A TCP stream of any driver: mio's (reactor) or the standard library's (the others).
pub trait Stream: Read + Write {
    /// Sends FIN: the peer reads the end of the stream after the last reply.
    fn shutdown_write(&self) -> io::Result<()>;
}

impl Stream for std::net::TcpStream {
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

impl Stream for mio::net::TcpStream {
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

/// What one [`flush`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flushed {
    /// Bytes the socket took.
    pub written: usize,
    /// The socket stopped taking them: `WouldBlock` on a non-blocking socket, the write timeout of a
    /// blocking one. Bytes still pending wait in the connection's outbox.
    pub blocked: bool,
}

/// Writes what `conn` has pending until nothing is, or the socket stops taking it. `blocked` says the
/// socket refused a write earlier and has not said it has room since: then nothing is tried, and a reply
/// just built only moves to the outbox. An error leaves the connection to be cut.
pub fn flush(
    stream: &mut impl Stream,
    conn: &mut Connection,
    cx: &mut Context,
    blocked: bool,
) -> io::Result<Flushed> {
    let mut flushed = Flushed {
        written: 0,
        blocked,
    };
    loop {
        let pending = conn.pending(cx);
        if pending.is_empty() {
            return Ok(flushed);
        }
        if flushed.blocked {
            conn.sent(cx, 0);
            return Ok(flushed);
        }
        let len = pending.len();
        match stream.write(pending) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                flushed.written += n;
                conn.sent(cx, n);
                if n == len {
                    return Ok(flushed);
                }
            }
            Err(ref e) if timed_out(e) => flushed.blocked = true,
            Err(ref e) if interrupted(e) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Before a read: what the connection holds back, if the debug line of [`note_held`] is wanted at all
/// (one atomic load when it is not, so the fast path pays nothing more).
#[inline]
pub fn held_before(conn: &Connection) -> Option<usize> {
    log::log_enabled!(log::Level::Debug).then(|| conn.held())
}

/// After a read: if the connection now holds bytes of an unfinished request where it held none, says so
/// at debug level, once per request (`-v`): a client that sends `Michael` with no newline to `hello` waits
/// for a reply that the server is waiting to be able to make, and this line is how a learner sees why.
#[inline]
pub fn note_held(
    peer: std::net::SocketAddr,
    conn: &Connection,
    cx: &Context,
    held_before: Option<usize>,
) {
    let Some(held_before) = held_before else {
        return;
    };
    let held = conn.held();
    if held_before == 0 && held > 0 {
        log::debug!(
            "{peer}: holds {held} B of an unfinished request, waiting for {}",
            cx.waits_for()
        );
    }
}

/// Sends FIN if the core asks for it (everything owed is written and reading is over); the connection
/// then lingers. Returns true if it did.
pub fn fin_if_due(stream: &impl Stream, conn: &mut Connection, cx: &Context) -> bool {
    if !conn.wants_fin(cx) {
        return false;
    }
    // The peer may be gone already; then the next read says so.
    let _ = stream.shutdown_write();
    conn.fin_sent(cx);
    true
}
