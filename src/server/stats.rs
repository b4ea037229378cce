//! Counters a server keeps while it runs and logs as a one-line summary when it stops, and the [`Summary`]
//! every mode returns. Plain integers: the reactor and busy-poll are one thread, so there is nothing to
//! synchronise; the blocking modes count per thread and add each thread's counts up with [`Stats::add`]
//! when it ends.
//!
//! Walk-through: `docs/09-running.md`.

use std::fmt;

/// How a run ended, whichever the mode.
#[derive(Clone, Debug)]
pub struct Summary {
    /// What the server did.
    pub stats: Stats,
    /// A second signal arrived during shutdown: the server stopped without delivering what it owed.
    pub forced: bool,
}

/// What a server did, counted as it happened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// TCP connections accepted.
    pub accepted: u64,
    /// TCP connections closed, for any reason.
    pub closed: u64,
    /// Bytes read from TCP connections.
    pub bytes_in: u64,
    /// Bytes written to TCP connections.
    pub bytes_out: u64,
    /// UDP datagrams received.
    pub datagrams_in: u64,
    /// UDP reply datagrams sent.
    pub datagrams_out: u64,
    /// UDP replies dropped because the socket could not take them now (never retried in a spin).
    pub datagrams_dropped: u64,
    /// Errors reported on the UDP socket (an ICMP error from an earlier reply, say); the loop goes on.
    pub udp_errors: u64,
    /// The most reply bytes any one connection held unsent at once: stays within the high-water mark.
    pub peak_pending: usize,
    /// The most reply bytes all connections together held unsent at once: stays within `--max-unsent`,
    /// give or take what the kernel refused of replies already counted.
    pub peak_unsent: usize,
    /// Clients over the connection cap (`--max-connections`, or what the limits allow: reactor, threads and
    /// busy-poll; blocking mode has none), told so in the service's words and closed.
    pub refused: u64,
    /// Connections closed by a timeout: idle, minimum rate, write, or a linger the peer did not end.
    pub timed_out: u64,
    /// Times `accept` failed for lack of descriptors and accepting paused.
    pub accept_pauses: u64,
    /// Connections whose peer reset or closed them before the server accepted them, so that `accept` failed
    /// for them (Windows, Wine; Linux hands such a connection over, and its first read fails instead):
    /// never served, never counted in `accepted`.
    pub gone_before_accept: u64,
    /// The reactor: the most entries its timer heap held at the end of a turn. Bounded by the peak of live
    /// connections, whatever the churn (`reactor/timers.rs`).
    pub peak_timers: usize,
    /// Connections still open when the shutdown deadline passed: their pending replies were dropped.
    pub dropped_at_shutdown: u64,
}

/// `1 connection`, `2 connections`: counts in log lines read as sentences.
pub fn plural(n: impl TryInto<u64>, one: &str, many: &str) -> String {
    let n = n.try_into().unwrap_or(u64::MAX);
    format!("{n} {}", if n == 1 { one } else { many })
}

impl Stats {
    /// Adds another counter set (one thread's) to this one; `peak_pending` takes the larger.
    pub fn add(&mut self, other: &Stats) {
        self.accepted += other.accepted;
        self.closed += other.closed;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.datagrams_in += other.datagrams_in;
        self.datagrams_out += other.datagrams_out;
        self.datagrams_dropped += other.datagrams_dropped;
        self.udp_errors += other.udp_errors;
        self.peak_pending = self.peak_pending.max(other.peak_pending);
        self.peak_unsent = self.peak_unsent.max(other.peak_unsent);
        self.peak_timers = self.peak_timers.max(other.peak_timers);
        self.dropped_at_shutdown += other.dropped_at_shutdown;
        self.refused += other.refused;
        self.timed_out += other.timed_out;
        self.accept_pauses += other.accept_pauses;
        self.gone_before_accept += other.gone_before_accept;
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "connections {} accepted {} closed, tcp {} bytes in {} out, udp {} datagrams in {} out {} dropped, \
             peak pending {} bytes (all connections {})",
            self.accepted,
            self.closed,
            self.bytes_in,
            self.bytes_out,
            self.datagrams_in,
            self.datagrams_out,
            self.datagrams_dropped,
            self.peak_pending,
            self.peak_unsent
        )?;
        if self.refused > 0 {
            write!(f, ", {} refused over the connection limit", self.refused)?;
        }
        if self.timed_out > 0 {
            write!(f, ", {} timed out", self.timed_out)?;
        }
        if self.accept_pauses > 0 {
            write!(
                f,
                ", accept paused {} for lack of descriptors",
                plural(self.accept_pauses, "time", "times")
            )?;
        }
        if self.gone_before_accept > 0 {
            write!(
                f,
                ", {} gone before accept",
                plural(self.gone_before_accept, "connection", "connections")
            )?;
        }
        if self.dropped_at_shutdown > 0 {
            write!(
                f,
                ", {} cut at the shutdown deadline",
                plural(self.dropped_at_shutdown, "connection", "connections")
            )?;
        }
        Ok(())
    }
}
