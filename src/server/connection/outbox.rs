//! A connection's unsent replies, and the rule for where a new reply is built, from Redis's `networking.c`:
//! a reply is written the moment it exists, and only what the kernel does not take is kept; what is kept is
//! written before anything newer, so the stream stays in order; and its buffer is freed the moment it
//! empties, so a connection whose peer keeps up owns no buffer at all.
//!
//! So a reply is built in the driver's one shared buffer (the `scratch` of [`super::Context`]) whenever
//! nothing of this connection waits; the driver writes it from there, and [`Outbox::keep`] copies only the
//! part the kernel refused. While older bytes wait, a new reply is appended here directly, behind them.
//! (Redis differs in two ways: it keeps a small buffer per client, and it defers writes to just before the
//! event loop sleeps. socklab writes at once and keeps nothing for a connection that keeps up.)
//!
//! A completion driver (`--mode uring`) cannot write from the shared buffer: the kernel reads a reply after
//! the call that hands it over returns, while the next connection's reply is being built. So it moves every
//! reply here (`sent(cx, 0)`) and sends from the outbox, which nothing moves until the driver reports how
//! much went. Such a driver asks the [`super::Context`] to keep a few small emptied buffers ([`Spares`]): the
//! reply then moves without a copy ([`Outbox::adopt`]: the outbox takes the shared buffer's memory, the
//! shared buffer takes a spare), and an emptied outbox gives its buffer back for the next one, so no reply
//! allocates in steady state. A connection that keeps up still holds no buffer between replies; the
//! reactor's outbox, which asks for no spares, copies what the kernel refused and frees as before.
//!
//! This file does no I/O: the driver writes and says how many bytes went. Walk-through:
//! `docs/06-connection.md`.

/// Reply bytes the kernel has not taken yet, oldest first.
#[derive(Debug, Default)]
pub struct Outbox {
    pending: Vec<u8>,
}

impl Outbox {
    /// Nothing waits.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// What waits, oldest first.
    pub fn bytes(&self) -> &[u8] {
        &self.pending
    }

    /// Where a new reply goes while something waits: behind it.
    pub fn tail(&mut self) -> &mut Vec<u8> {
        &mut self.pending
    }

    /// `n` bytes of what waits were written.
    pub fn written(&mut self, n: usize, spares: &mut Spares) {
        if n >= self.pending.len() {
            // An idle connection holds no buffer: give the memory back (to the spares, if the driver keeps
            // any) rather than keep the peak.
            spares.give(std::mem::take(&mut self.pending));
        } else {
            self.pending.drain(..n);
        }
    }

    /// The kernel took the first `n` bytes of a reply built in the shared buffer: keep the rest.
    pub fn keep(&mut self, reply: &[u8], n: usize, spares: &mut Spares) {
        debug_assert!(
            self.pending.is_empty(),
            "a reply in the shared buffer jumped the queue"
        );
        if n < reply.len() {
            if self.pending.capacity() == 0 {
                self.pending = spares.take();
            }
            self.pending.extend_from_slice(&reply[n..]);
        }
    }

    /// A whole reply built in the shared buffer moves in without a copy: this outbox takes the shared
    /// buffer's memory and the shared buffer gets a spare in exchange (a completion driver's path, with
    /// spares: the reactor copies only what the kernel refused, with [`Outbox::keep`]).
    pub fn adopt(&mut self, reply: &mut Vec<u8>, spares: &mut Spares) {
        debug_assert!(
            self.pending.is_empty(),
            "a reply in the shared buffer jumped the queue"
        );
        std::mem::swap(&mut self.pending, reply);
        if reply.capacity() == 0 {
            *reply = spares.take();
        } else {
            reply.clear();
        }
    }

    /// Drops what waits (the connection is cut). Returns how many bytes were dropped.
    pub fn clear(&mut self, spares: &mut Spares) -> usize {
        let n = self.pending.len();
        spares.give(std::mem::take(&mut self.pending));
        n
    }
}

/// Emptied outbox buffers kept for the next outbox that needs one: at most `count` of them, each of at most
/// `largest` bytes of capacity, so what they hold is bounded whatever the replies were. None unless a driver
/// asks ([`super::Context::recycle_replies`]).
#[derive(Debug, Default)]
pub struct Spares {
    buffers: Vec<Vec<u8>>,
    count: usize,
    largest: usize,
}

impl Spares {
    /// Keeps up to `count` buffers of up to `largest` bytes each.
    pub fn new(count: usize, largest: usize) -> Spares {
        Spares {
            buffers: Vec::with_capacity(count),
            count,
            largest,
        }
    }

    /// Whether a driver asked for spares at all.
    pub fn enabled(&self) -> bool {
        self.count > 0
    }

    /// A kept buffer, or a new empty one (which allocates only when written to).
    fn take(&mut self) -> Vec<u8> {
        self.buffers.pop().unwrap_or_default()
    }

    /// Keeps `buffer` if there is room for it and it is not too large; frees it otherwise.
    fn give(&mut self, mut buffer: Vec<u8>) {
        let capacity = buffer.capacity();
        if capacity > 0 && capacity <= self.largest && self.buffers.len() < self.count {
            buffer.clear();
            self.buffers.push(buffer);
        }
    }

    /// Buffers kept now.
    pub fn len(&self) -> usize {
        self.buffers.len()
    }

    /// None kept.
    pub fn is_empty(&self) -> bool {
        self.buffers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_the_kernel_refused_is_kept_and_freed_once_written() {
        let mut outbox = Outbox::default();
        let spares = &mut Spares::default();
        outbox.keep(b"abcde", 3, spares);
        assert_eq!(outbox.bytes(), b"de");
        outbox.tail().extend_from_slice(b"fg");
        assert_eq!(
            outbox.bytes(),
            b"defg",
            "a newer reply waits behind the older one"
        );
        outbox.written(1, spares);
        assert_eq!(outbox.bytes(), b"efg");
        outbox.written(3, spares);
        assert!(outbox.is_empty());
        assert_eq!(
            outbox.pending.capacity(),
            0,
            "an empty outbox holds no memory"
        );
        outbox.keep(b"xyz", 3, spares);
        assert!(outbox.is_empty(), "a reply taken whole keeps nothing");
        assert!(
            spares.is_empty(),
            "no driver asked for spares: nothing kept"
        );
    }

    #[test]
    fn spares_are_reused_and_bounded_in_number_and_size() {
        let mut spares = Spares::new(2, 64);
        let mut outbox = Outbox::default();
        outbox.keep(b"reply", 0, &mut spares);
        let first = outbox.bytes().as_ptr();
        outbox.written(5, &mut spares);
        assert_eq!(spares.len(), 1, "the emptied buffer is kept");
        outbox.keep(b"again", 0, &mut spares);
        assert_eq!(outbox.bytes().as_ptr(), first, "and reused: no allocation");
        assert!(spares.is_empty());
        // A buffer past the size limit is freed, not kept.
        outbox.tail().extend_from_slice(&[b'x'; 100]);
        outbox.written(105, &mut spares);
        assert!(
            spares.is_empty(),
            "a 105-byte buffer is over the 64-byte limit"
        );
        // A whole reply moves in without a copy, and the shared buffer gets a spare back.
        let mut spares = Spares::new(2, 64);
        spares.give(Vec::with_capacity(16));
        let mut outbox = Outbox::default();
        let mut shared = b"whole".to_vec();
        let built = shared.as_ptr();
        outbox.adopt(&mut shared, &mut spares);
        assert_eq!(
            (outbox.bytes(), outbox.bytes().as_ptr()),
            (&b"whole"[..], built)
        );
        assert_eq!((shared.len(), shared.capacity()), (0, 16), "the spare");
        // No more than `count` are kept.
        for _ in 0..3 {
            spares.give(Vec::with_capacity(8));
        }
        assert_eq!(spares.len(), 2);
    }
}
