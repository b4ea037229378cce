//! The server's budget for unsent replies, all connections together (`--max-unsent`). Each connection's
//! replies are bounded by `--high-water`, but that is per connection: a thousand clients that pipeline
//! requests and never read would each fill theirs. The account adds them up and says when reading must stop,
//! the way Redis bounds client output buffers. Walk-through: `docs/06-connection.md`, "Memory in total".
//!
//! The rule (applied by [`super::Connection::room`]):
//! - below three quarters of the budget (the soft limit), a connection reads what the replies that still
//!   fit below it can answer;
//! - the last quarter is a reserve: only a connection that holds no unsent replies may read there, one
//!   small read at a time ([`crate::server::limits::MIN_READ`]), and only if the most its replies could be
//!   still fits under the budget. A client that never reads soon holds replies of its own, and from then on
//!   it is not read again until they drain: every connection holding replies stops at the soft limit,
//!   whatever it holds, and each can take at most one small read's replies out of the reserve on its way
//!   there. The reserve is left for clients whose replies go out at once: they are still served while
//!   never-reading clients hold the rest.
//!
//! One account serves one server; the blocking modes share it between their threads, so the counter is an
//! atomic (one uncontended add when a connection's unsent replies change size, never per request on the
//! fast path, where replies go out at once).

use std::sync::atomic::{AtomicUsize, Ordering};

/// The unsent replies of every connection of one server, against the budget.
#[derive(Debug)]
pub struct Account {
    limit: usize,
    /// Where the reserve begins: three quarters of `limit`.
    soft: usize,
    held: AtomicUsize,
    /// Replies claimed before they are built ([`Account::claim`]).
    claimed: AtomicUsize,
    /// The most `held` has been.
    peak: AtomicUsize,
}

impl Account {
    /// An empty account with `limit` bytes of budget.
    pub fn new(limit: usize) -> Account {
        Account {
            limit,
            soft: limit - limit / 4,
            held: AtomicUsize::new(0),
            claimed: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    /// The budget.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Unsent reply bytes held by all connections now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// The most unsent reply bytes all connections held at once so far.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// Where the reserve begins: past it, only connections holding nothing may read.
    pub fn soft_limit(&self) -> usize {
        self.soft
    }

    /// Counts `bytes` of replies not built yet, until [`Account::unclaim`]. Threads that share the account
    /// each ask for room, then read and answer: without a claim, every thread that asked in the same
    /// moment saw the same figure, and each answered a whole read on it (200 threads held up to 1.9 times
    /// the budget). A thread claims the most its read can be answered with as soon as it knows the
    /// read, so a thread asking next sees it, and unclaims it once the reply is counted where it waits (or
    /// went out). Claims are not unsent replies: [`Account::held`] and the peak leave them out.
    pub fn claim(&self, bytes: usize) {
        self.claimed.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Ends a [`Account::claim`] of `bytes`.
    pub fn unclaim(&self, bytes: usize) {
        self.claimed.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// What a connection asking for room must count as taken: the unsent replies and the claims.
    pub fn committed(&self) -> usize {
        self.held() + self.claimed.load(Ordering::Relaxed)
    }

    /// A connection's unsent replies went from `before` to `after` bytes.
    pub fn changed(&self, before: usize, after: usize) {
        if after > before {
            let held = self.held.fetch_add(after - before, Ordering::Relaxed) + after - before;
            self.peak.fetch_max(held, Ordering::Relaxed);
        } else if before > after {
            self.held.fetch_sub(before - after, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_counts_against_the_room_but_is_not_held_and_not_a_peak() {
        let account = Account::new(1000);
        account.changed(0, 100);
        account.claim(300);
        assert_eq!(
            (account.held(), account.committed(), account.peak()),
            (100, 400, 100)
        );
        account.unclaim(300);
        assert_eq!(
            (account.held(), account.committed(), account.peak()),
            (100, 100, 100)
        );
    }

    #[test]
    fn the_account_adds_up_and_keeps_its_peak() {
        let account = Account::new(1000);
        assert_eq!(account.soft_limit(), 750);
        account.changed(0, 700);
        account.changed(700, 900);
        assert_eq!(account.held(), 900);
        account.changed(900, 0);
        assert_eq!((account.held(), account.peak()), (0, 900));
    }
}
