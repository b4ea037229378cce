//! A connection's unsent replies, and the rule for sending them, from Redis's `networking.c`: a reply is
//! written the moment it exists; only what the kernel does not take is buffered; the buffer is written
//! before anything newer, so the stream stays in order; and it is freed the moment it empties, so a
//! connection whose peer keeps up owns no buffer at all. The reactor asks for WRITABLE readiness exactly
//! while [`Outbox::is_empty`] is false.
//!
//! On a blocking socket (the blocking modes) a write waits until the kernel has taken everything, so the
//! outbox never holds anything there; the same code runs in every mode. Walk-through: `docs/06-connection.md`.

use std::io::{self, Write};

use super::stats::Stats;
use crate::net::{interrupted, would_block};

/// Replies the kernel has not taken yet, oldest first; never more than the high-water mark, because a
/// connection reads no more than the room left can answer.
#[derive(Debug, Default)]
pub struct Outbox {
    pending: Vec<u8>,
    /// A write returned `WouldBlock`: write nothing more until the socket has room again.
    blocked: bool,
}

impl Outbox {
    /// Nothing waits to be sent.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Bytes waiting to be sent.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// A write found the socket full; nothing is written until [`Outbox::unblock`].
    pub fn is_blocked(&self) -> bool {
        self.blocked
    }

    /// The socket may have room again (a WRITABLE event, or busy-poll's next try).
    pub fn unblock(&mut self) {
        self.blocked = false;
    }

    /// Room left under `high_water` for new replies.
    pub fn room(&self, high_water: usize) -> usize {
        high_water.saturating_sub(self.pending.len())
    }

    /// Sends `reply`: at once if nothing is queued before it, else behind the rest. Returns true if replies
    /// began to wait with this call (the write timeout counts from then).
    pub fn send(
        &mut self,
        stream: &mut impl Write,
        reply: &[u8],
        stats: &mut Stats,
    ) -> io::Result<bool> {
        let was_empty = self.pending.is_empty();
        let mut sent = 0;
        if was_empty && !self.blocked {
            sent = write_some(stream, reply, &mut self.blocked)?;
            stats.bytes_out += sent as u64;
        }
        if sent == reply.len() {
            return Ok(false);
        }
        self.pending.extend_from_slice(&reply[sent..]);
        stats.peak_pending = stats.peak_pending.max(self.pending.len());
        Ok(was_empty)
    }

    /// Writes as much of what waits as the socket takes. Returns the bytes written.
    pub fn flush(&mut self, stream: &mut impl Write, stats: &mut Stats) -> io::Result<usize> {
        if self.pending.is_empty() || self.blocked {
            return Ok(0);
        }
        let sent = write_some(stream, &self.pending, &mut self.blocked)?;
        stats.bytes_out += sent as u64;
        if sent == self.pending.len() {
            // An idle connection holds no buffer: give the memory back rather than keep the peak.
            self.pending = Vec::new();
        } else {
            self.pending.drain(..sent);
        }
        Ok(sent)
    }
}

/// Writes until `data` is gone or the socket would block (then sets `blocked`). Returns the bytes written.
fn write_some(stream: &mut impl Write, data: &[u8], blocked: &mut bool) -> io::Result<usize> {
    let mut sent = 0;
    while sent < data.len() {
        match stream.write(&data[sent..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            Err(ref e) if would_block(e) => {
                *blocked = true;
                break;
            }
            Err(ref e) if interrupted(e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket that takes `room` bytes, then would block.
    struct Full {
        taken: Vec<u8>,
        room: usize,
    }

    impl Write for Full {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            self.taken.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn only_what_the_kernel_does_not_take_waits_and_order_is_kept() {
        let mut stats = Stats::default();
        let mut socket = Full {
            taken: Vec::new(),
            room: 3,
        };
        let mut outbox = Outbox::default();
        assert!(outbox.send(&mut socket, b"abcde", &mut stats).unwrap());
        assert_eq!((socket.taken.as_slice(), outbox.len()), (&b"abc"[..], 2));
        assert!(outbox.is_blocked());
        // A newer reply waits behind the older one, even once there is room.
        socket.room = 100;
        assert!(!outbox.send(&mut socket, b"fg", &mut stats).unwrap());
        assert_eq!(socket.taken, b"abc");
        outbox.unblock();
        outbox.flush(&mut socket, &mut stats).unwrap();
        assert_eq!(socket.taken, b"abcdefg");
        assert!(outbox.is_empty());
        assert_eq!(
            outbox.pending.capacity(),
            0,
            "an empty outbox holds no memory"
        );
        assert_eq!((stats.bytes_out, stats.peak_pending), (7, 4));
        assert_eq!(outbox.room(10), 10);
    }
}
