//! The reactor's deadlines: a min-heap of "look at connection K at time T", kept on the loop's one thread.
//! Stage 1's poll timeout is the nearest entry, and stage 9 takes the entries that came due
//! (`docs/04-reactor.md`). There is no timer thread.
//!
//! Entries are never removed early. A connection's deadline moves all the time (every read pushes its idle
//! deadline back), and updating a heap entry on every read would cost a heap operation per request. Instead
//! each connection remembers when it next wants to be checked; an entry that no longer matches (the connection
//! rescheduled, or closed and its slot went to another connection) is skipped when it comes up. So most reads
//! cost one store, and the heap sees about one entry per connection per timeout period.
//!
//! A stale entry still costs memory until it comes due, and with a long idle timeout that is long: a server
//! that accepts and closes many connections would hold an entry for each one closed in the last five
//! minutes. So when stale entries could outnumber the live ones (each connection has at most one live
//! entry), the heap is compacted to the live ones ([`Timers::compact`]): memory follows the peak of live
//! connections, not connections per second × idle timeout. Each compaction costs one pass over the heap,
//! paid for by the stale entries it removes.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use mio::Token;

/// Stale entries tolerated before a compaction is worth a pass over the heap.
const COMPACT_SLACK: usize = 64;

/// One scheduled check: at `at`, look at the connection under `token` if it is still number `id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Check {
    pub at: Instant,
    pub token: Token,
    /// The connection's serial number: a slot reused by a newer connection does not match.
    pub id: u64,
}

/// A min-heap of checks.
#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<Check>>,
}

impl Timers {
    pub fn schedule(&mut self, check: Check) {
        self.heap.push(Reverse(check));
    }

    /// When the earliest check is due, if any.
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(c)| c.at)
    }

    /// Takes the earliest check if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Check> {
        match self.heap.peek() {
            Some(Reverse(c)) if c.at <= now => self.heap.pop().map(|Reverse(c)| c),
            _ => None,
        }
    }

    /// Keeps only the entries `live` says are still wanted, when stale ones could outnumber them: at least
    /// half of the heap, and more than a few, must be possibly stale. `live_count` is how many entries can
    /// be live at most (one per open connection). Returns true if it compacted.
    pub fn compact(&mut self, live_count: usize, live: impl Fn(&Check) -> bool) -> bool {
        if self.heap.len() <= live_count.saturating_mul(2).saturating_add(COMPACT_SLACK) {
            return false;
        }
        self.heap.retain(|Reverse(check)| live(check));
        true
    }

    /// Entries in the heap, live or not.
    pub fn entries(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn checks_come_out_earliest_first_and_only_when_due() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        for (secs, key) in [(3, 30), (1, 10), (2, 20)] {
            timers.schedule(Check {
                at: t0 + Duration::from_secs(secs),
                token: Token(key),
                id: 0,
            });
        }
        assert_eq!(timers.next(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(timers.pop_due(t0), None);
        let due: Vec<usize> = std::iter::from_fn(|| timers.pop_due(t0 + Duration::from_secs(2)))
            .map(|c| c.token.0)
            .collect();
        assert_eq!(due, [10, 20]);
        assert_eq!(timers.entries(), 1);
    }

    #[test]
    fn compaction_keeps_the_live_and_waits_until_it_pays() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        for key in 0..1000 {
            timers.schedule(Check {
                at: t0 + Duration::from_secs(300),
                token: Token(key),
                id: key as u64,
            });
        }
        // 1,000 entries, 600 connections: not worth it yet.
        assert!(!timers.compact(600, |_| true));
        // Ten live connections: everything else goes, in order.
        assert!(timers.compact(10, |c| c.token.0 % 100 == 0));
        assert_eq!(timers.entries(), 10);
        assert_eq!(timers.next(), Some(t0 + Duration::from_secs(300)));
    }
}
