//! Counters a server keeps while it runs and logs as a one-line summary when it stops. Plain integers: a
//! server is one thread, so there is nothing to synchronise.

use std::fmt;

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
    /// Connections still open when the shutdown deadline passed: their pending replies were dropped.
    pub dropped_at_shutdown: u64,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "connections {} accepted {} closed, tcp {} bytes in {} out, udp {} datagrams in {} out {} dropped, \
             peak pending {} bytes",
            self.accepted,
            self.closed,
            self.bytes_in,
            self.bytes_out,
            self.datagrams_in,
            self.datagrams_out,
            self.datagrams_dropped,
            self.peak_pending
        )?;
        if self.dropped_at_shutdown > 0 {
            write!(
                f,
                ", {} connections cut at the shutdown deadline",
                self.dropped_at_shutdown
            )?;
        }
        Ok(())
    }
}
