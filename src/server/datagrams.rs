//! Datagrams in batches, for the single-threaded modes (stage 4 of the reactor; busy-poll's datagram step):
//! many datagrams read with one `recvmmsg` and their replies sent with one `sendmmsg` (Linux), instead of two
//! system calls per datagram. Elsewhere it falls back to one `recv_from` and one `send_to` each. Either way,
//! one datagram in gives one reply out, to its sender. (The blocking modes' UDP thread waits for one
//! datagram at a time: `blocking.rs`.) Walk-through: `docs/07-udp-and-tcp.md`.
//!
//! The batch owns its buffers, allocated once: `SLOTS` input slots of 64 KiB (so any datagram is read whole;
//! pages a small datagram does not touch are never made resident), the senders' addresses, and one output
//! buffer holding every reply of the batch back to back. No array is cleared per call: each message header is
//! built whole for the slots a call offers the kernel (all of them to receive, one per reply to send), and a
//! reply goes back to its sender's address exactly as `recvmmsg` wrote it. (Clearing 13 KiB of headers and addresses per call was three
//! quarters of the reactor's user-space instructions at one datagram in flight: `docs/performance.md`.)

use std::net::UdpSocket;

use super::config::Config;
use super::limits::DATAGRAM_BUFFER;
use super::stats::{plural, Stats};
use super::trace::{trace_stage, Turn};
use crate::net::{interrupted, would_block};

/// Datagrams taken per system call.
pub const SLOTS: usize = 32;
/// Every slot holds any datagram whole.
const SLOT_SIZE: usize = DATAGRAM_BUFFER;

/// Buffers for one batch of datagrams and their replies.
pub struct Batch {
    /// `SLOTS` receive buffers of `SLOT_SIZE` bytes, back to back.
    input: Box<[u8]>,
    /// How many bytes each slot received.
    lens: [usize; SLOTS],
    /// Who sent each datagram: where its reply goes (kept as the platform's receive call gives it).
    senders: sys::Senders,
    /// Every reply of the batch, back to back; `ends[i]` is where reply `i` stops.
    output: Vec<u8>,
    ends: [usize; SLOTS],
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            input: vec![0; SLOTS * SLOT_SIZE].into_boxed_slice(),
            lens: [0; SLOTS],
            senders: sys::Senders::default(),
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
    /// Answers datagrams until the socket's queue is empty or about `budget` were taken (a batch is not
    /// cut short). `Answered::More` says the queue may still hold some: a readiness loop must come back,
    /// since no new edge will announce them.
    pub fn answer_until_drained(
        &mut self,
        socket: &UdpSocket,
        config: &Config,
        stats: &mut Stats,
        budget: usize,
        turn: &Turn,
    ) -> Answered {
        let mut answered = 0;
        while answered < budget {
            let before = (stats.datagrams_in, stats.datagrams_out);
            let batch = self.answer(socket, config, stats);
            trace_stage!(
                turn,
                4,
                "udp: one receive took {}, one send sent {}",
                plural(stats.datagrams_in - before.0, "datagram", "datagrams"),
                plural(stats.datagrams_out - before.1, "reply", "replies")
            );
            match batch {
                Answered::Drained(n) => return Answered::Drained(answered + n),
                // An error or an interrupted call counts one, so a socket that only fails cannot spin.
                Answered::More(n) => answered += n.max(1),
            }
        }
        Answered::More(answered)
    }

    /// Reads up to `SLOTS` datagrams, answers each with the configured service, sends the replies.
    pub fn answer(&mut self, socket: &UdpSocket, config: &Config, stats: &mut Stats) -> Answered {
        let options = config.service_options();
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

    /// Where reply `i` lies in `output`.
    fn reply_range(&self, i: usize) -> (usize, usize) {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        (start, self.ends[i])
    }
}

#[cfg(target_os = "linux")]
mod sys {
    //! `recvmmsg`/`sendmmsg`. The only unsafe code in the server: building the kernel's message headers.

    use std::io;
    use std::mem::{size_of, zeroed, MaybeUninit};
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    use super::{Batch, SLOTS, SLOT_SIZE};

    /// The senders' addresses as the kernel wrote them; each reply's header points back at its sender's.
    pub struct Senders {
        names: [libc::sockaddr_storage; SLOTS],
        lens: [libc::socklen_t; SLOTS],
    }

    impl Default for Senders {
        fn default() -> Self {
            Senders {
                // SAFETY: an all-zero sockaddr_storage is a valid (unspecified-family) address.
                names: unsafe { zeroed() },
                lens: [0; SLOTS],
            }
        }
    }

    /// A message header for one datagram in `iov`, to or from `name`. Built whole for each slot a call uses,
    /// so no array of headers is cleared per call.
    fn header(
        name: *mut libc::sockaddr_storage,
        len: libc::socklen_t,
        iov: *mut libc::iovec,
    ) -> libc::mmsghdr {
        // SAFETY: an all-zero mmsghdr is valid (no control data, no flags); one is 64 bytes.
        let mut header: libc::mmsghdr = unsafe { zeroed() };
        header.msg_hdr.msg_name = name.cast();
        header.msg_hdr.msg_namelen = len;
        header.msg_hdr.msg_iov = iov;
        header.msg_hdr.msg_iovlen = 1;
        header
    }

    pub fn receive(socket: &UdpSocket, batch: &mut Batch) -> io::Result<usize> {
        let mut iovecs = [const { MaybeUninit::<libc::iovec>::uninit() }; SLOTS];
        let mut headers = [const { MaybeUninit::<libc::mmsghdr>::uninit() }; SLOTS];
        // Raw pointers taken once, so no later borrow of the batch invalidates those already in a header.
        let base = batch.input.as_mut_ptr();
        let names = batch.senders.names.as_mut_ptr();
        for i in 0..SLOTS {
            let iov = iovecs[i].write(libc::iovec {
                // SAFETY: slot i lies inside `input`, which is SLOTS * SLOT_SIZE bytes long.
                iov_base: unsafe { base.add(i * SLOT_SIZE) }.cast(),
                iov_len: SLOT_SIZE,
            });
            headers[i].write(header(
                // SAFETY: i < SLOTS, the length of `names`.
                unsafe { names.add(i) },
                size_of::<libc::sockaddr_storage>() as libc::socklen_t,
                iov,
            ));
        }
        // SAFETY: all SLOTS headers were written above; each points at a name and a slot of the batch, which
        // outlive the call, with their lengths; the kernel writes at most that much.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                headers.as_mut_ptr().cast(),
                SLOTS as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for (i, header) in headers.iter().enumerate().take(n) {
            // SAFETY: written above, and the kernel only filled in its lengths.
            let header = unsafe { header.assume_init_ref() };
            batch.lens[i] = header.msg_len as usize;
            batch.senders.lens[i] = header.msg_hdr.msg_namelen;
        }
        Ok(n)
    }

    /// Sends replies `0..count`; returns how many the kernel took.
    pub fn send(socket: &UdpSocket, batch: &Batch, count: usize) -> usize {
        let mut iovecs = [const { MaybeUninit::<libc::iovec>::uninit() }; SLOTS];
        let mut headers = [const { MaybeUninit::<libc::mmsghdr>::uninit() }; SLOTS];
        // The kernel only reads replies and addresses in a send; the pointers are `mut` only because the C
        // structs are shared with receive.
        let output = batch.output.as_ptr();
        let names = batch.senders.names.as_ptr();
        for i in 0..count {
            let (start, end) = batch.reply_range(i);
            let iov = iovecs[i].write(libc::iovec {
                iov_base: output.wrapping_add(start).cast_mut().cast(),
                iov_len: end - start,
            });
            let name = names.wrapping_add(i).cast_mut();
            headers[i].write(header(name, batch.senders.lens[i], iov));
        }
        let mut sent = 0; // replies the kernel took
        let mut next = 0; // the first header not handed to the kernel yet
        while next < count {
            // SAFETY: headers[next..count] were written above and point at senders' addresses and replies in
            // the batch, alive for the call; the kernel only reads them (and writes each `msg_len`).
            let n = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    headers.as_mut_ptr().add(next).cast(),
                    (count - next) as libc::c_uint,
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
    use std::net::{SocketAddr, UdpSocket};

    use super::{Batch, SLOTS, SLOT_SIZE};
    use crate::net::{interrupted, would_block};

    /// Who sent each datagram of the batch.
    pub struct Senders([Option<SocketAddr>; SLOTS]);

    impl Default for Senders {
        fn default() -> Self {
            Senders([None; SLOTS])
        }
    }

    pub fn receive(socket: &UdpSocket, batch: &mut Batch) -> io::Result<usize> {
        let mut n = 0;
        while n < SLOTS {
            let slot = &mut batch.input[n * SLOT_SIZE..(n + 1) * SLOT_SIZE];
            match socket.recv_from(slot) {
                Ok((len, peer)) => {
                    batch.lens[n] = len;
                    batch.senders.0[n] = Some(peer);
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
            let Some(peer) = batch.senders.0[i] else {
                continue;
            };
            let (start, end) = batch.reply_range(i);
            match socket.send_to(&batch.output[start..end], peer) {
                Ok(_) => sent += 1,
                Err(ref e) if would_block(e) => break,
                Err(_) => {}
            }
        }
        sent
    }
}
