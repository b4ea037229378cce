//! What stands in wherever Linux's calls are missing (macOS, FreeBSD, Windows): one datagram per system
//! call instead of `recvmmsg`/`sendmmsg`, no precise timer, and "unknown" for what only `/proc` or
//! `TCP_INFO` can say. Plain std, no unsafe. Part of the OS layer (`src/sys/mod.rs`); walk-through:
//! `docs/13-operating-systems.md`.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use super::DatagramSocket;

/// The system's thread limit: unknown here.
pub fn system_thread_limit() -> Option<u64> {
    None
}

/// Local ports per source address: unknown here.
pub fn ephemeral_ports() -> Option<usize> {
    None
}

/// A process's threads: unknown without `/proc` (zero).
#[cfg(not(windows))]
pub fn thread_count(_pid: u32) -> usize {
    0
}

/// A process's descriptors: unknown without `/proc` (zero).
#[cfg(not(windows))]
pub fn fd_count(_pid: u32) -> usize {
    0
}

/// A process's resident memory: unknown without `/proc` (zero).
#[cfg(not(windows))]
pub fn resident_kib(_pid: u32) -> u64 {
    0
}

/// The listen backlog: only Linux's `TCP_INFO` counts it.
pub fn backlog(_listener: &TcpListener) -> Option<u32> {
    None
}

/// Who sent each datagram of the batch.
pub struct Senders<const N: usize>([Option<SocketAddr>; N]);

impl<const N: usize> Default for Senders<N> {
    fn default() -> Self {
        Senders([None; N])
    }
}

/// Receives up to `slots` (at most `N`) datagrams, one `recv_from` each, into the `N` equal slots of
/// `input`. Stops at the first `WouldBlock` once one has arrived; an error after some have arrived ends the
/// batch with those.
pub fn receive_datagrams<S: DatagramSocket, const N: usize>(
    socket: &S,
    input: &mut [u8],
    lens: &mut [usize; N],
    senders: &mut Senders<N>,
    slots: usize,
) -> io::Result<usize> {
    // (No slots at all, N = 0, is a batch of none rather than a division by zero.)
    let slot_size = input.len().checked_div(N).unwrap_or(0);
    let mut n = 0;
    while n < slots.min(N) {
        let Some(slot) = input.get_mut(n * slot_size..(n + 1) * slot_size) else {
            break;
        };
        match socket.recv_from(slot) {
            Ok((len, peer)) => {
                lens[n] = len;
                senders.0[n] = Some(peer);
                n += 1;
            }
            Err(ref e) if e.kind() == io::ErrorKind::WouldBlock && n > 0 => break,
            Err(ref e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return if n > 0 { Ok(n) } else { Err(e) },
        }
    }
    Ok(n)
}

/// Sends replies `0..count`, one `send_to` each, reply `i` being `output[ends[i - 1]..ends[i]]` to the
/// sender of datagram `i`. Stops at the first `WouldBlock`; a reply that fails for its own peer is skipped.
pub fn send_datagrams<S: DatagramSocket, const N: usize>(
    socket: &S,
    output: &[u8],
    ends: &[usize; N],
    senders: &Senders<N>,
    count: usize,
) -> usize {
    let mut sent = 0;
    let mut start = 0;
    for (&end, &peer) in ends.iter().zip(&senders.0).take(count) {
        let range = start..end;
        start = end;
        let (Some(peer), Some(reply)) = (peer, output.get(range)) else {
            continue;
        };
        match socket.send_to(reply, peer) {
            Ok(_) => sent += 1,
            Err(ref e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(_) => {}
        }
    }
    sent
}

/// No precise timer here: arming it does nothing, and the poll's own timeout sets the pace.
pub struct Timer;

impl Timer {
    pub fn new(_registry: &mio::Registry, _token: mio::Token) -> io::Result<Timer> {
        Ok(Timer)
    }
    pub fn arm(&self, _after: Duration) {}
    pub fn clear(&self) {}
}
