//! A provided-buffer ring: buffers the driver lends the kernel as a pool, from which the kernel picks one
//! only when bytes arrive for a receive that asked for "any buffer of group G". So a receive waiting on an
//! idle connection holds no buffer at all: memory follows the bytes in flight, not the connections. The
//! driver gets the buffer's number in the completion, reads it, and gives it back ([`BufRing::give_back`]),
//! after which the kernel may fill it again. Walk-through: `docs/14-completion.md`, "Who owns a buffer".
//!
//! The ring is shared memory: an array of `{address, length, id}` entries the kernel reads, and a tail the
//! driver advances to publish entries. The buffers are one allocation the kernel writes into. Both stay
//! allocated, and unmoved, for as long as the io_uring lives (the driver drops its ring first).

use std::alloc::{alloc, alloc_zeroed, dealloc, Layout};
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::IoUring;

/// One group of equal buffers registered with a ring.
pub struct BufRing {
    /// The entries, `count` of them, page-aligned as the kernel asks.
    entries: NonNull<BufRingEntry>,
    entries_layout: Layout,
    /// The buffers, `count × size` bytes.
    memory: NonNull<u8>,
    memory_layout: Layout,
    count: u16,
    size: usize,
    group: u16,
    /// The next entry to fill, published to the kernel by a store to the shared tail.
    tail: u16,
}

// SAFETY: the entries and buffers are owned by this value alone (and lent to the kernel); moving it to
// another thread moves that ownership, and the single-issuer ring it is registered with is then used there.
unsafe impl Send for BufRing {}

impl BufRing {
    /// Allocates `count` (a power of two) buffers of `size` bytes, registers them with `ring` as group
    /// `group`, and lends them all to the kernel.
    pub fn new(ring: &IoUring, group: u16, count: u16, size: usize) -> io::Result<BufRing> {
        assert!(count.is_power_of_two() && size > 0);
        let entries_layout =
            Layout::from_size_align(count as usize * std::mem::size_of::<BufRingEntry>(), 4096)
                .map_err(io::Error::other)?;
        let memory_layout =
            Layout::from_size_align(count as usize * size, 4096).map_err(io::Error::other)?;
        // SAFETY: both layouts have a non-zero size (count and size are positive).
        let entries = NonNull::new(unsafe { alloc_zeroed(entries_layout) })
            .ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?
            .cast::<BufRingEntry>();
        // Not zeroed, not touched: the pages a buffer's bytes never reach are never made resident. Only
        // bytes the kernel wrote are ever read (`get` takes the length a completion reported).
        // SAFETY: as above.
        let Some(memory) = NonNull::new(unsafe { alloc(memory_layout) }) else {
            // SAFETY: allocated just above with this layout.
            unsafe { dealloc(entries.as_ptr().cast(), entries_layout) };
            return Err(io::ErrorKind::OutOfMemory.into());
        };
        let mut ring_buffers = BufRing {
            entries,
            entries_layout,
            memory,
            memory_layout,
            count,
            size,
            group,
            tail: 0,
        };
        // SAFETY: the entries are `count` page-aligned, zeroed `io_uring_buf`s that live as long as this
        // value, which the driver keeps until the ring is gone.
        let registered = unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(entries.as_ptr() as u64, count, group, 0)
        };
        if let Err(e) = registered {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "--mode uring cannot run here: the kernel refused a provided-buffer ring ({e}; they \
                     came with Linux 5.19); use --mode reactor"
                ),
            ));
        }
        for bid in 0..count {
            ring_buffers.add(bid);
        }
        ring_buffers.publish();
        Ok(ring_buffers)
    }

    /// The group number receives name to draw from this ring.
    pub fn group(&self) -> u16 {
        self.group
    }

    /// The first `len` bytes of buffer `bid`, which a completion just handed back to the driver.
    pub fn get(&self, bid: u16, len: usize) -> &[u8] {
        assert!(bid < self.count && len <= self.size);
        // SAFETY: buffer `bid` lies inside `memory`; the completion that named it means the kernel has
        // finished writing it and will not touch it again until it is given back, so nothing writes these
        // bytes while the slice lives (it borrows `self`, and `give_back` needs `&mut self`).
        unsafe {
            std::slice::from_raw_parts(self.memory.as_ptr().add(bid as usize * self.size), len)
        }
    }

    /// Lends buffer `bid` to the kernel again.
    pub fn give_back(&mut self, bid: u16) {
        self.add(bid);
        self.publish();
    }

    /// Writes the entry for buffer `bid` at the tail (not yet visible to the kernel).
    fn add(&mut self, bid: u16) {
        let index = (self.tail & (self.count - 1)) as usize;
        // SAFETY: `index` < count, inside the entries array; the kernel reads an entry only once the tail
        // passes it, so no one else accesses this one now.
        let entry = unsafe { &mut *self.entries.as_ptr().add(index) };
        // SAFETY: buffer `bid` lies inside `memory`.
        entry.set_addr(unsafe { self.memory.as_ptr().add(bid as usize * self.size) } as u64);
        entry.set_len(self.size as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes every entry written so far visible to the kernel.
    fn publish(&self) {
        // SAFETY: the tail is the `resv` field of the first entry, a u16 inside the entries array, which
        // the kernel only reads; the release store orders the entries' writes before it.
        let tail = unsafe { &*(BufRingEntry::tail(self.entries.as_ptr()) as *const AtomicU16) };
        tail.store(self.tail, Ordering::Release);
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with these layouts; the ring that used them is gone (the driver drops
        // it first), so the kernel no longer reads or writes them.
        unsafe {
            dealloc(self.entries.as_ptr().cast(), self.entries_layout);
            dealloc(self.memory.as_ptr(), self.memory_layout);
        }
    }
}
