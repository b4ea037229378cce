//! Datagrams in batches, for the single-threaded modes (stage 4 of the reactor; busy-poll's datagram step):
//! many datagrams read with one `recvmmsg` and their replies sent with one `sendmmsg` (Linux), instead of two
//! system calls per datagram. Elsewhere it falls back to one `recv_from` and one `send_to` each. Either way,
//! one datagram in gives one reply out, to its sender. (The blocking modes' UDP thread waits for one
//! datagram at a time: `blocking/udp.rs`.) Walk-through: `docs/07-udp-and-tcp.md`.
//!
//! The batch owns its buffers, allocated once: `SLOTS` input slots of 64 KiB (so any datagram is read whole;
//! pages a small datagram does not touch are never made resident), the senders' addresses, and one output
//! buffer holding every reply of the batch back to back. No array is cleared per call: each message header is
//! built whole for the slots a call offers the kernel (all of them to receive, one per reply to send), and a
//! reply goes back to its sender's address exactly as `recvmmsg` wrote it. (Clearing 13 KiB of headers and addresses per call was three
//! quarters of the reactor's user-space instructions at one datagram in flight: `docs/performance.md`.)

use crate::sys::DatagramSocket;

use super::connection::Context;
use super::limits::{DATAGRAM_BUDGET, DATAGRAM_BUFFER, DATAGRAM_BYTES};
use super::stats::plural;
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
    /// The most bytes one datagram and its reply came to in the last batch: how many slots the next
    /// receive may offer and stay within the turn's [`DATAGRAM_BYTES`].
    largest: usize,
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            input: vec![0; SLOTS * SLOT_SIZE].into_boxed_slice(),
            lens: [0; SLOTS],
            senders: sys::Senders::default(),
            output: Vec::with_capacity(SLOT_SIZE),
            ends: [0; SLOTS],
            largest: 0,
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
    /// Answers datagrams until the socket's queue is empty, or about [`DATAGRAM_BUDGET`] datagrams or
    /// [`DATAGRAM_BYTES`] bytes (datagrams and replies) were handled: whichever comes first, so neither
    /// many small datagrams nor a few huge ones can stretch a turn. A batch is not cut short, so the bytes
    /// can run over by one batch; each receive offers only as many slots as the largest datagram of the
    /// last batch says will fit. `Answered::More` says the queue may still hold some: a readiness loop must
    /// come back, since no new edge will announce them.
    /// `stage` is how the caller's trace names this step (the reactor's stage 4, busy-poll's step C).
    pub fn answer_until_drained(
        &mut self,
        socket: &impl DatagramSocket,
        cx: &mut Context,
        turn: &Turn,
        stage: impl std::fmt::Display,
    ) -> Answered {
        let (mut answered, mut bytes) = (0, 0);
        while answered < DATAGRAM_BUDGET && bytes < DATAGRAM_BYTES {
            let slots = ((DATAGRAM_BYTES - bytes) / self.largest.max(1)).clamp(1, SLOTS);
            let before = (cx.stats.datagrams_in, cx.stats.datagrams_out);
            let batch = self.answer(socket, cx, slots);
            let took = cx.stats.datagrams_in - before.0;
            if took > 0 {
                trace_stage!(
                    turn,
                    stage,
                    "udp: one receive took {}, one send sent {}",
                    plural(took, "datagram", "datagrams"),
                    plural(cx.stats.datagrams_out - before.1, "reply", "replies")
                );
            }
            bytes += self.batch_bytes(took as usize);
            match batch {
                Answered::Drained(n) => return Answered::Drained(answered + n),
                // An error or an interrupted call counts one, so a socket that only fails cannot spin.
                Answered::More(n) => answered += n.max(1),
            }
        }
        Answered::More(answered)
    }

    /// Bytes the last batch of `count` datagrams came to, replies included; remembers its largest.
    fn batch_bytes(&mut self, count: usize) -> usize {
        self.largest = 0;
        let mut total = 0;
        for i in 0..count {
            let (start, end) = self.reply_range(i);
            let one = self.lens[i] + (end - start);
            self.largest = self.largest.max(one);
            total += one;
        }
        total
    }

    /// Reads up to `slots` datagrams, answers each with the configured service, sends the replies.
    pub fn answer(
        &mut self,
        socket: &impl DatagramSocket,
        cx: &mut Context,
        slots: usize,
    ) -> Answered {
        let slots = slots.clamp(1, SLOTS);
        let stats = &mut cx.stats;
        let received = match sys::receive(socket, self, slots) {
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
            cx.answer_datagram(datagram, &mut self.output);
            self.ends[i] = self.output.len();
        }
        let sent = sys::send(socket, self, received);
        let stats = &mut cx.stats;
        stats.datagrams_out += sent as u64;
        // A reply the socket could not take now is dropped and counted. UDP promises nothing, and retrying
        // would either spin the loop or need a queue that a flood could grow.
        stats.datagrams_dropped += (received - sent) as u64;
        // Fewer datagrams than slots: the receive queue was empty, and any datagram that arrives now raises a
        // new edge. So the receive that would only say `WouldBlock` is skipped: one system call saved per
        // batch, which at one datagram in flight is one in three.
        if received < slots {
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

mod sys {
    //! The batch handed to the OS layer, which makes the system calls (`recvmmsg`/`sendmmsg` on Linux, one
    //! call per datagram elsewhere) and holds their unsafe code: `crate::sys`. Either std's socket or mio's
    //! will do; a driver waiting on mio passes mio's, which Windows needs (`crate::sys::DatagramSocket`).

    use std::io;

    use super::{Batch, SLOTS};
    use crate::sys::DatagramSocket;

    /// Who sent each datagram of the batch, kept as the OS's receive call gave it.
    pub type Senders = crate::sys::Senders<SLOTS>;

    /// Receives up to `slots` (at most `SLOTS`) datagrams into the batch's slots.
    pub fn receive(
        socket: &impl DatagramSocket,
        batch: &mut Batch,
        slots: usize,
    ) -> io::Result<usize> {
        crate::sys::receive_datagrams(
            socket,
            &mut batch.input,
            &mut batch.lens,
            &mut batch.senders,
            slots,
        )
    }

    /// Sends replies `0..count`; returns how many the kernel took.
    pub fn send(socket: &impl DatagramSocket, batch: &Batch, count: usize) -> usize {
        crate::sys::send_datagrams(socket, &batch.output, &batch.ends, &batch.senders, count)
    }
}
