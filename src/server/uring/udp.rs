//! UDP in the completion driver: one multishot `recvmsg` stays armed on the socket and posts a completion
//! per datagram, each in a buffer of its own group taken only when the datagram arrives; the driver
//! answers it and submits the reply as a `sendmsg` from a reply slot that stays put until that send
//! completes. Stage 4 of `docs/14-completion.md`.
//!
//! A turn answers datagrams up to [`DATAGRAM_BYTES`] (datagrams and replies together), as the readiness
//! modes do; what arrived beyond that waits, in its buffer, for the next turn, which then does not sleep.
//! While datagrams wait, their buffers are not lent to the kernel: with all of them waiting, the multishot
//! receive ends (`ENOBUFS`) and is armed again once some are given back, so a flood is held in the socket's
//! own receive queue, as it is in every mode.

use std::collections::VecDeque;
use std::io;
use std::mem::{size_of, zeroed};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;

use io_uring::{opcode, types};

use super::buffers::BufRing;
use super::ring::{Completion, Op, Ring, Tag};
use crate::server::connection::Context;
use crate::server::limits::{DATAGRAM_BUFFER, DATAGRAM_BYTES};
use crate::server::trace::{trace_stage, Turn};

/// Datagram buffers lent to the kernel, and reply slots: as many datagrams as the readiness modes take per
/// system call (`datagrams::SLOTS`).
pub const SLOTS: u16 = 32;
/// Each buffer holds the kernel's header for a multishot `recvmsg`, the sender's address and any datagram
/// whole.
const BUFFER_SIZE: usize = DATAGRAM_BUFFER + 256;

/// One reply in flight: the message header the kernel reads, its one piece, the address it goes to, and
/// the bytes. The slots are one boxed slice, never resized, so none of it moves while the kernel holds it.
struct Slot {
    header: libc::msghdr,
    piece: libc::iovec,
    to: libc::sockaddr_storage,
    reply: Vec<u8>,
    busy: bool,
}

/// The UDP socket and what its receive and replies need.
pub struct Udp {
    socket: UdpSocket,
    buffers: BufRing,
    /// The header the multishot `recvmsg` is given: only its name and control lengths matter, and the
    /// kernel lays out every buffer by them.
    template: Box<libc::msghdr>,
    /// The multishot receive is armed.
    armed: bool,
    /// Datagrams received and not yet answered: their buffer and length.
    waiting: VecDeque<(u16, usize)>,
    slots: Box<[Slot]>,
    free: Vec<u16>,
    /// Replies in flight.
    in_flight: usize,
    /// The shutdown began: the receive is cancelled and not armed again.
    closed: bool,
}

// SAFETY: the raw pointers inside the message headers point only into this value's own boxes; moving the
// value to another thread moves them all along.
unsafe impl Send for Udp {}

impl Udp {
    /// The socket's receive, with its own buffer group.
    pub fn new(ring: &Ring, socket: UdpSocket, group: u16) -> io::Result<Udp> {
        let buffers = BufRing::new(ring.raw(), group, SLOTS, BUFFER_SIZE)?;
        // SAFETY: an all-zero msghdr is valid (no name, no pieces, no control data).
        let mut template: Box<libc::msghdr> = Box::new(unsafe { zeroed() });
        template.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let slots = (0..SLOTS)
            .map(|_| Slot {
                // SAFETY: an all-zero msghdr is a valid value (no name, no pieces, no control data).
                header: unsafe { zeroed() },
                // SAFETY: an all-zero iovec is a valid value (a null base of length 0).
                piece: unsafe { zeroed() },
                // SAFETY: an all-zero sockaddr_storage is a valid value (an unspecified family).
                to: unsafe { zeroed() },
                reply: Vec::new(),
                busy: false,
            })
            .collect();
        Ok(Udp {
            socket,
            buffers,
            template,
            armed: false,
            waiting: VecDeque::with_capacity(SLOTS as usize),
            slots,
            free: (0..SLOTS).rev().collect(),
            in_flight: 0,
            closed: false,
        })
    }

    /// Arms the multishot receive if it is not, and buffers are free for it.
    #[inline]
    pub fn arm(&mut self, ring: &mut Ring) -> io::Result<()> {
        if self.armed {
            return Ok(());
        }
        self.arm_again(ring)
    }

    fn arm_again(&mut self, ring: &mut Ring) -> io::Result<()> {
        if self.closed || self.waiting.len() == SLOTS as usize {
            return Ok(());
        }
        let recv = opcode::RecvMsgMulti::new(
            types::Fd(self.socket.as_raw_fd()),
            &*self.template,
            self.buffers.group(),
        )
        .build()
        .user_data(Tag::of(Op::Datagram).encode());
        // SAFETY: the template header is boxed and lives as long as this value, which outlives the ring's
        // use of it; datagrams go into the group's buffers.
        unsafe { ring.push(&[recv]) }?;
        self.armed = true;
        Ok(())
    }

    /// Nothing of UDP's is in flight: no receive armed, no reply being sent.
    pub fn idle(&self) -> bool {
        !self.armed && self.in_flight == 0
    }

    /// Datagrams wait for a turn with budget left.
    pub fn has_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// A completion of the multishot receive: a datagram to answer, or the receive's end.
    pub fn on_datagram(&mut self, c: Completion, cx: &mut Context) {
        if !c.more() {
            self.armed = false;
        }
        match (c.result, c.buffer()) {
            (n, Some(bid)) if n >= 0 => self.waiting.push_back((bid, n as usize)),
            (_, Some(bid)) => self.buffers.give_back(bid),
            (e, None) if e == -libc::ENOBUFS || e == -libc::ECANCELED || e >= 0 => {}
            (e, None) => {
                cx.stats.udp_errors += 1;
                log::debug!("udp: receive error: {}", io::Error::from_raw_os_error(-e));
            }
        }
    }

    /// Stage 4: answers waiting datagrams until the turn's bytes are spent; each reply is submitted as a
    /// `sendmsg` to its sender. Returns how many were answered.
    pub fn answer(&mut self, ring: &mut Ring, cx: &mut Context, turn: &Turn) -> io::Result<usize> {
        let (mut answered, mut bytes) = (0, 0);
        while bytes < DATAGRAM_BYTES {
            let Some((bid, len)) = self.waiting.pop_front() else {
                break;
            };
            cx.stats.datagrams_in += 1;
            let message = self.buffers.get(bid, len);
            let parsed = types::RecvMsgOut::parse(message, &self.template);
            let Some(index) = self.free.pop() else {
                // Every slot's reply is still in flight: drop this one, as the readiness modes drop a reply
                // the socket cannot take now.
                cx.stats.datagrams_dropped += 1;
                self.buffers.give_back(bid);
                continue;
            };
            let slot = &mut self.slots[index as usize];
            slot.reply.clear();
            let Ok(out) = parsed else {
                cx.stats.udp_errors += 1;
                self.free.push(index);
                self.buffers.give_back(bid);
                continue;
            };
            let name = out.name_data();
            cx.answer_datagram(out.payload_data(), &mut slot.reply);
            bytes += len + slot.reply.len();
            let name_len = name.len().min(size_of::<libc::sockaddr_storage>());
            // SAFETY: `to` is a sockaddr_storage, at least `name_len` bytes; `name` is the sender's address
            // as the kernel wrote it into the buffer, `name_len` bytes long.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    name.as_ptr(),
                    (&mut slot.to as *mut libc::sockaddr_storage).cast::<u8>(),
                    name_len,
                );
            }
            self.buffers.give_back(bid);
            slot.piece = libc::iovec {
                iov_base: slot.reply.as_mut_ptr().cast(),
                iov_len: slot.reply.len(),
            };
            slot.header.msg_name = (&mut slot.to as *mut libc::sockaddr_storage).cast();
            slot.header.msg_namelen = name_len as libc::socklen_t;
            slot.header.msg_iov = &mut slot.piece;
            slot.header.msg_iovlen = 1;
            slot.busy = true;
            let send = opcode::SendMsg::new(types::Fd(self.socket.as_raw_fd()), &slot.header)
                .flags(libc::MSG_DONTWAIT as u32)
                .build()
                .user_data(Tag::new(Op::Reply, index as usize, 0).encode());
            // SAFETY: the header, its piece, the address and the reply all live in this slot, inside a boxed
            // slice that is never resized, and the slot is not reused (it is off the free list) until this
            // send completes.
            unsafe { ring.push(&[send]) }?;
            self.in_flight += 1;
            answered += 1;
        }
        if answered > 0 {
            trace_stage!(
                turn,
                4,
                "udp: answered {answered} datagrams, each reply a sendmsg from its own slot{}",
                if self.waiting.is_empty() {
                    String::new()
                } else {
                    format!("; {} wait for the next turn", self.waiting.len())
                }
            );
        }
        Ok(answered)
    }

    /// A reply's send completed: its slot is free.
    pub fn on_reply(&mut self, c: Completion, cx: &mut Context) {
        let index = c.tag.key;
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        if !slot.busy {
            return;
        }
        slot.busy = false;
        self.in_flight -= 1;
        self.free.push(index as u16);
        match c.result {
            n if n >= 0 => cx.stats.datagrams_out += 1,
            e if e == -libc::EAGAIN || e == -libc::ENOBUFS => cx.stats.datagrams_dropped += 1,
            e => {
                // An ICMP error for an earlier reply (port unreachable): that peer's problem, not the socket's.
                cx.stats.datagrams_dropped += 1;
                log::debug!("udp: a reply failed: {}", io::Error::from_raw_os_error(-e));
            }
        }
    }

    /// The shutdown began: the receive is cancelled (its last completion comes with `-ECANCELED`); the
    /// datagrams already received are still answered.
    pub fn close(&mut self, ring: &mut Ring) {
        self.closed = true;
        if self.armed {
            let cancel = opcode::AsyncCancel::new(Tag::of(Op::Datagram).encode())
                .build()
                .user_data(Tag::of(Op::Cancel).encode());
            // SAFETY: names no memory.
            let _ = unsafe { ring.push(&[cancel]) };
        }
    }
}
