//! Datagrams in batches: stage 4 of the reactor reads many datagrams with one `recvmmsg` and sends their
//! replies with one `sendmmsg` (Linux), instead of two system calls per datagram. Elsewhere it falls back to
//! one `recv_from` and one `send_to` each. Either way, one datagram in gives one reply out, to its sender.
//! Walk-through: `docs/07-udp-and-tcp.md`.
//!
//! The batch owns its buffers, allocated once: `SLOTS` input slots of 64 KiB (so any datagram is read whole;
//! pages a small datagram does not touch are never made resident), the senders' addresses, and one output
//! buffer holding every reply of the batch back to back.

use std::net::SocketAddr;

use mio::net::UdpSocket;

use crate::config::Config;
use crate::net::{interrupted, would_block};
use crate::stats::Stats;

/// Datagrams taken per system call.
pub const SLOTS: usize = 32;
/// Enough for the largest datagram (65,507 bytes over IPv4, 65,527 over IPv6).
const SLOT_SIZE: usize = 64 * 1024;

/// Buffers for one batch of datagrams and their replies.
pub struct Batch {
    /// `SLOTS` receive buffers of `SLOT_SIZE` bytes, back to back.
    input: Box<[u8]>,
    /// How many bytes each slot received.
    lens: [usize; SLOTS],
    /// Who sent each datagram: where its reply goes.
    peers: [Option<SocketAddr>; SLOTS],
    /// Every reply of the batch, back to back; `ends[i]` is where reply `i` stops.
    output: Vec<u8>,
    ends: [usize; SLOTS],
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            input: vec![0; SLOTS * SLOT_SIZE].into_boxed_slice(),
            lens: [0; SLOTS],
            peers: [None; SLOTS],
            output: Vec::with_capacity(SLOT_SIZE),
            ends: [0; SLOTS],
        }
    }
}

/// What one [`Batch::answer`] did, and whether the socket may hold more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answered {
    /// This many datagrams were answered, and the socket's queue is empty.
    Drained(usize),
    /// This many datagrams were answered (or failed), and more may be waiting.
    More(usize),
}

impl Batch {
    /// Reads up to `SLOTS` datagrams, answers each with the configured service, sends the replies.
    pub fn answer(&mut self, socket: &UdpSocket, config: &Config, stats: &mut Stats) -> Answered {
        let options = config.options();
        let received = match sys::receive(socket, self) {
            Ok(n) => n,
            Err(ref e) if would_block(e) => return Answered::Drained(0),
            Err(ref e) if interrupted(e) => return Answered::More(0),
            Err(e) => {
                // An ICMP error for an earlier reply (port unreachable) surfaces here on some systems.
                // It concerns that one peer; the socket is fine, and datagrams may still be waiting.
                stats.udp_errors += 1;
                log::debug!("udp: receive error: {e}");
                return Answered::More(1);
            }
        };
        stats.datagrams_in += received as u64;
        self.output.clear();
        for i in 0..received {
            let start = i * SLOT_SIZE;
            let datagram = &self.input[start..start + self.lens[i]];
            config
                .service
                .datagram_with(&options, datagram, &mut self.output);
            self.ends[i] = self.output.len();
        }
        let sent = sys::send(socket, self, received);
        stats.datagrams_out += sent as u64;
        // A reply the socket could not take now is dropped and counted. UDP promises nothing, and retrying
        // would either spin the loop or need a queue that a flood could grow.
        stats.datagrams_dropped += (received - sent) as u64;
        // Fewer datagrams than slots: the receive queue was empty, and any datagram that arrives now raises a
        // new edge. So the receive that would only say `WouldBlock` is skipped: one system call saved per
        // batch, which at one datagram in flight is one in three.
        if received < SLOTS {
            Answered::Drained(received)
        } else {
            Answered::More(received)
        }
    }

    fn reply(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.output[start..self.ends[i]]
    }
}

#[cfg(target_os = "linux")]
mod sys {
    //! `recvmmsg`/`sendmmsg`. The only unsafe code in the server: building the kernel's message headers.

    use std::io;
    use std::mem::{size_of, zeroed};
    use std::os::fd::AsRawFd;

    use mio::net::UdpSocket;
    use socket2::SockAddr;

    use super::{Batch, SLOTS, SLOT_SIZE};

    pub fn receive(socket: &UdpSocket, batch: &mut Batch) -> io::Result<usize> {
        // SAFETY: zeroed sockaddr_storage, iovec and mmsghdr are valid values (plain C structs).
        let mut names: [libc::sockaddr_storage; SLOTS] = unsafe { zeroed() };
        let mut iovecs: [libc::iovec; SLOTS] = unsafe { zeroed() };
        let mut headers: [libc::mmsghdr; SLOTS] = unsafe { zeroed() };
        let base = batch.input.as_mut_ptr();
        for i in 0..SLOTS {
            iovecs[i] = libc::iovec {
                // SAFETY: slot i lies inside `input`, which is SLOTS * SLOT_SIZE bytes long.
                iov_base: unsafe { base.add(i * SLOT_SIZE) }.cast(),
                iov_len: SLOT_SIZE,
            };
            headers[i].msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
            headers[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            headers[i].msg_hdr.msg_iov = &mut iovecs[i];
            headers[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every pointer in `headers` points into buffers that outlive the call, with the lengths
        // given; the kernel writes at most that much.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                headers.as_mut_ptr(),
                SLOTS as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for i in 0..n {
            batch.lens[i] = headers[i].msg_len as usize;
            // SAFETY: the kernel filled `names[i]` with an address of `msg_namelen` bytes.
            let addr = unsafe { SockAddr::new(names[i], headers[i].msg_hdr.msg_namelen) };
            batch.peers[i] = addr.as_socket();
        }
        Ok(n)
    }

    /// Sends replies `0..count`; returns how many the kernel took.
    pub fn send(socket: &UdpSocket, batch: &Batch, count: usize) -> usize {
        // SAFETY: zeroed iovec and mmsghdr are valid values (plain C structs).
        let mut iovecs: [libc::iovec; SLOTS] = unsafe { zeroed() };
        let mut headers: [libc::mmsghdr; SLOTS] = unsafe { zeroed() };
        let mut addrs: [Option<SockAddr>; SLOTS] = std::array::from_fn(|_| None);
        let mut msgs = 0;
        for i in 0..count {
            // A sender whose address is not IP has nowhere to be answered.
            let Some(peer) = batch.peers[i] else { continue };
            let reply = batch.reply(i);
            let addr: &SockAddr = addrs[msgs].insert(SockAddr::from(peer));
            iovecs[msgs] = libc::iovec {
                iov_base: reply.as_ptr() as *mut libc::c_void,
                iov_len: reply.len(),
            };
            headers[msgs].msg_hdr.msg_name = addr.as_ptr() as *mut libc::c_void;
            headers[msgs].msg_hdr.msg_namelen = addr.len();
            headers[msgs].msg_hdr.msg_iov = &mut iovecs[msgs];
            headers[msgs].msg_hdr.msg_iovlen = 1;
            msgs += 1;
        }
        let mut sent = 0; // replies the kernel took
        let mut next = 0; // the first header not handed to the kernel yet
        while next < msgs {
            // SAFETY: headers[next..msgs] point at addresses in `addrs` and replies in `batch.output`, all
            // alive for the call; the kernel only reads them.
            let n = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    headers[next..].as_mut_ptr(),
                    (msgs - next) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                sent += n as usize;
                next += n as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => {}
                // The send buffer is full: the rest of the batch is dropped (and counted by the caller).
                io::ErrorKind::WouldBlock => break,
                // `sendmmsg` reports the error of the first message it could not send: that reply's
                // problem (its peer), not the socket's. Skip it and send the others.
                _ => {
                    log::debug!("udp: a reply failed: {e}");
                    next += 1;
                }
            }
        }
        sent
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    //! One system call per datagram, where `recvmmsg`/`sendmmsg` do not exist.

    use std::io;

    use mio::net::UdpSocket;

    use super::{Batch, SLOTS, SLOT_SIZE};
    use crate::net::{interrupted, would_block};

    pub fn receive(socket: &UdpSocket, batch: &mut Batch) -> io::Result<usize> {
        let mut n = 0;
        while n < SLOTS {
            let slot = &mut batch.input[n * SLOT_SIZE..(n + 1) * SLOT_SIZE];
            match socket.recv_from(slot) {
                Ok((len, peer)) => {
                    batch.lens[n] = len;
                    batch.peers[n] = Some(peer);
                    n += 1;
                }
                Err(ref e) if would_block(e) && n > 0 => break,
                Err(ref e) if interrupted(e) => {}
                Err(e) => return if n > 0 { Ok(n) } else { Err(e) },
            }
        }
        Ok(n)
    }

    pub fn send(socket: &UdpSocket, batch: &Batch, count: usize) -> usize {
        let mut sent = 0;
        for i in 0..count {
            let Some(peer) = batch.peers[i] else { continue };
            match socket.send_to(batch.reply(i), peer) {
                Ok(_) => sent += 1,
                Err(ref e) if would_block(e) => break,
                Err(_) => {}
            }
        }
        sent
    }
}
