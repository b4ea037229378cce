//! The shutdown rule every mode follows, written once. A shutdown request (SIGINT or SIGTERM on Unix;
//! Ctrl-C, Ctrl-Break or closing the console on Windows; or a [`ShutdownHandle`](super::ShutdownHandle))
//! begins it: the server stops accepting and reading, delivers what it owes, and gives up at a deadline
//! (`--shutdown-timeout`). A second signal ends the run at once. How each mode learns of a signal differs
//! (a self-pipe in the reactor's poll, a flag busy-poll looks at, a signal thread for the blocking modes;
//! on Windows the console's own handler thread, `crate::sys`); what it then does is decided here.
//!
//! Walk-through: `docs/04-reactor.md`, stage 10.

use std::time::{Duration, Instant};

use log::{info, warn};
#[cfg(unix)]
use signal_hook::consts::{SIGINT, SIGTERM};

use super::limits::deadline_after;
use super::stats::{plural, Stats};

/// The signals a server handles: the first starts a graceful shutdown, the second ends the run.
#[cfg(unix)]
pub const SIGNALS: [i32; 2] = [SIGINT, SIGTERM];

/// How a signal is named in the log.
#[cfg(unix)]
pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

/// What a shutdown request means now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The first: begin a graceful shutdown.
    Begin,
    /// A request while one is under way that changes nothing (a second [`ShutdownHandle`] call, say).
    ///
    /// [`ShutdownHandle`]: super::ShutdownHandle
    Already,
    /// A second signal: stop now, without waiting for replies.
    Now,
}

/// Where a server is in its shutdown.
#[derive(Clone, Debug)]
pub struct Shutdown {
    timeout: Duration,
    deadline: Option<Instant>,
    signals: usize,
}

impl Shutdown {
    /// No shutdown yet; one will wait `timeout` for replies to be delivered.
    pub fn new(timeout: Duration) -> Shutdown {
        Shutdown {
            timeout,
            deadline: None,
            signals: 0,
        }
    }

    /// A signal arrived.
    pub fn signal(&mut self, name: &str, now: Instant) -> Verdict {
        self.signals += 1;
        if self.signals > 1 {
            warn!("{name} again: exiting now, without waiting for replies to flush");
            return Verdict::Now;
        }
        self.request(now)
    }

    /// A shutdown was asked for by other means than a signal.
    pub fn request(&mut self, now: Instant) -> Verdict {
        if self.deadline.is_some() {
            return Verdict::Already;
        }
        self.deadline = Some(deadline_after(now, self.timeout));
        Verdict::Begin
    }

    /// When the shutdown gives up on what is still owed.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// How long a shutdown waits.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The one line every mode logs when a shutdown begins, for `open` connections.
    pub fn announce(&self, why: &str, open: usize) {
        let owed = plural(open, "connection is", "connections are");
        if self.timeout.is_zero() {
            info!("{why}: shutting down; not waiting for what {owed} owed (--shutdown-timeout 0)");
        } else {
            info!(
                "{why}: shutting down; delivering what {owed} owed (at most {})",
                crate::server::trace::duration(self.timeout)
            );
        }
    }

    /// Whether a shutdown under way is over: every connection has finished (`open` is 0), or the deadline
    /// has passed, in which case the connections still open are counted as dropped. No shutdown is never
    /// over.
    pub fn over(&self, now: Instant, open: usize, stats: &mut Stats) -> bool {
        let Some(deadline) = self.deadline else {
            return false;
        };
        if open == 0 {
            return true;
        }
        if now < deadline {
            return false;
        }
        stats.dropped_at_shutdown = open as u64;
        warn!(
            "shutdown deadline passed: dropping {}",
            plural(open, "connection", "connections")
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_signal_ends_the_run_and_a_second_request_does_not() {
        let now = Instant::now();
        let mut shutdown = Shutdown::new(Duration::from_secs(3));
        assert_eq!(shutdown.deadline(), None);
        assert_eq!(shutdown.request(now), Verdict::Begin);
        assert_eq!(shutdown.request(now), Verdict::Already);
        assert_eq!(shutdown.signal("SIGTERM", now), Verdict::Already);
        assert_eq!(shutdown.signal("SIGINT", now), Verdict::Now);
        assert_eq!(shutdown.deadline(), Some(now + Duration::from_secs(3)));
    }

    #[test]
    fn over_when_everyone_is_done_or_at_the_deadline() {
        let now = Instant::now();
        let mut stats = Stats::default();
        let mut shutdown = Shutdown::new(Duration::from_secs(1));
        assert!(
            !shutdown.over(now, 0, &mut stats),
            "no shutdown, never over"
        );
        shutdown.request(now);
        assert!(shutdown.over(now, 0, &mut stats));
        assert!(!shutdown.over(now, 2, &mut stats));
        assert!(shutdown.over(now + Duration::from_secs(1), 2, &mut stats));
        assert_eq!(stats.dropped_at_shutdown, 2);
    }
}
