//! When each request is due and when the load ends: the schedule both loops (TCP and UDP) follow. Closed
//! loop, a request may go whenever a connection has room; open loop (`--rate R`), request `k` is due at `k / R`
//! seconds whatever the server is doing, and its latency runs from then (see the module above, `mod.rs`).
//!
//! Walk-through: `docs/08-measuring.md`.

use std::time::Duration;

use super::{LoadOptions, Stop};

/// When each request may go and when the load ends. Times are nanoseconds since the load started.
pub(super) struct Schedule {
    rate: Option<f64>,
    limit: Option<u64>,
    end_ns: Option<u64>,
    issued: u64,
    pub(super) stopped: bool,
}

impl Schedule {
    pub(super) fn new(options: &LoadOptions) -> Schedule {
        let (limit, end_ns) = match options.stop {
            Stop::Requests(n) => (Some(n), None),
            Stop::Duration(d) => (None, Some(d.as_nanos().min(u64::MAX as u128) as u64)),
        };
        Schedule {
            rate: options.rate,
            limit,
            end_ns,
            issued: 0,
            stopped: false,
        }
    }

    /// The intended send time of the next request, if one may be sent at `now_ns`. Taking it counts it.
    pub(super) fn take(&mut self, now_ns: u64) -> Option<u64> {
        if self.stopped || self.limit.is_some_and(|n| self.issued >= n) {
            return None;
        }
        let intended = match self.rate {
            None => now_ns,
            Some(rate) => {
                let due = (self.issued as f64 * 1e9 / rate) as u64;
                // The run covers [0, duration): a request due at its very end belongs to no run.
                if due > now_ns || self.end_ns.is_some_and(|end| due >= end) {
                    return None;
                }
                due
            }
        };
        self.issued += 1;
        Some(intended)
    }

    /// Gives back a request taken but not sent (its socket could not take it): it is the next one again.
    pub(super) fn untake(&mut self) {
        self.issued -= 1;
    }

    /// Stops issuing once the duration is over or every request has been issued. True when it stops now.
    ///
    /// The end is the end whatever the rate: in open loop, requests still waiting in the backlog for a free
    /// connection when the time is up are never sent ([`Schedule::unsent`] counts them), as wrk2 stops at
    /// its duration. Waiting for them instead would make a rate the server cannot meet run for ever (at
    /// `--rate 1e12`, a trillion requests).
    pub(super) fn check_end(&mut self, now_ns: u64) -> bool {
        if self.stopped {
            return false;
        }
        let over = self.end_ns.is_some_and(|end| now_ns >= end)
            || self.limit.is_some_and(|n| self.issued >= n);
        self.stopped = over;
        over
    }

    /// Open loop: how many requests fell due within the run and were never sent, because every connection
    /// already held `--pipeline` requests: the asked rate was not reached. 0 in closed loop.
    pub(super) fn unsent(&self) -> u64 {
        let Some(rate) = self.rate else {
            return 0;
        };
        let due = match (self.end_ns, self.limit) {
            (Some(end), _) => due_before(rate, end),
            (None, Some(n)) => n,
            (None, None) => self.issued,
        };
        due.saturating_sub(self.issued)
    }

    /// How long the loop may sleep before something is due: the next open-loop request or the end.
    pub(super) fn wait(&self, now_ns: u64, backlogged: bool) -> Duration {
        let mut wake = now_ns + 50_000_000;
        if let (Some(rate), false, false) = (self.rate, backlogged, self.stopped) {
            wake = wake.min((self.issued as f64 * 1e9 / rate) as u64);
        }
        if let (Some(end), false) = (self.end_ns, self.stopped) {
            wake = wake.min(end);
        }
        Duration::from_nanos(wake.saturating_sub(now_ns))
    }

    pub(super) fn total(&self) -> Option<u64> {
        self.limit
    }
}

/// How many requests are due before `end_ns` at `rate` per second: the `k` with `k / rate < end`, computed the
/// way [`Schedule::take`] computes each one's time, so the two never disagree by one.
fn due_before(rate: f64, end_ns: u64) -> u64 {
    let due = |k: u64| (k as f64 * 1e9 / rate) as u64;
    let mut n = (end_ns as f64 * rate / 1e9)
        .ceil()
        .min(u64::MAX as f64 / 2.0) as u64;
    // The float estimate is off by at most a step or two: settle it on the exact rule.
    while n > 0 && due(n - 1) >= end_ns {
        n -= 1;
    }
    while due(n) < end_ns {
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_loop_times_follow_the_rate_not_the_sender() {
        let options = LoadOptions {
            rate: Some(1000.0),
            stop: Stop::Requests(5),
            ..LoadOptions::default()
        };
        let mut s = Schedule::new(&options);
        // At 2.5 ms three requests are due (0, 1, 2 ms), each with its own intended time.
        assert_eq!(s.take(2_500_000), Some(0));
        assert_eq!(s.take(2_500_000), Some(1_000_000));
        assert_eq!(s.take(2_500_000), Some(2_000_000));
        assert_eq!(s.take(2_500_000), None);
        // Much later, the backlog keeps its intended times: latency includes the wait.
        assert_eq!(s.take(50_000_000), Some(3_000_000));
        assert_eq!(s.take(50_000_000), Some(4_000_000));
        assert_eq!(s.take(50_000_000), None, "the limit holds");
        assert!(s.check_end(50_000_000));
    }

    #[test]
    fn closed_loop_sends_now_until_the_end() {
        let options = LoadOptions {
            stop: Stop::Duration(Duration::from_millis(10)),
            ..LoadOptions::default()
        };
        let mut s = Schedule::new(&options);
        assert_eq!(s.take(7), Some(7));
        assert!(!s.check_end(9_999_999));
        assert!(s.check_end(10_000_000));
        assert_eq!(s.take(10_000_001), None);
    }

    #[test]
    fn open_loop_ends_at_its_duration_whatever_the_rate() {
        let options = LoadOptions {
            rate: Some(1e12),
            stop: Stop::Duration(Duration::from_secs(1)),
            ..LoadOptions::default()
        };
        let mut s = Schedule::new(&options);
        // A few went out; the rest of the trillion due never will.
        for _ in 0..5 {
            assert!(s.take(0).is_some());
        }
        assert!(!s.check_end(999_999_999));
        assert!(s.check_end(1_000_000_000), "the end is the end");
        assert_eq!(s.take(1_000_000_000), None);
        assert_eq!(s.unsent(), 1_000_000_000_000 - 5);
        // A rate that was met leaves nothing unsent; closed loop never has any.
        let mut met = Schedule::new(&LoadOptions {
            rate: Some(100.0),
            ..options.clone()
        });
        while met.take(1_000_000_000).is_some() {}
        assert_eq!(met.unsent(), 0);
        assert_eq!(Schedule::new(&LoadOptions::default()).unsent(), 0);
        assert_eq!(due_before(100.0, 1_000_000_000), 100);
        assert_eq!(due_before(3.0, 1_000_000_000), 3, "0, 333.3 and 666.6 ms");
        assert_eq!(due_before(1000.0, 1), 1, "request 0 is due at 0");
    }

    #[test]
    fn open_loop_for_one_second_sends_rate_requests() {
        let options = LoadOptions {
            rate: Some(100.0),
            stop: Stop::Duration(Duration::from_secs(1)),
            ..LoadOptions::default()
        };
        let mut s = Schedule::new(&options);
        let mut sent = 0;
        while s.take(1_000_000_000).is_some() {
            sent += 1;
        }
        assert_eq!(
            sent, 100,
            "requests due at 0, 10, ..., 990 ms; not the one due at 1 s"
        );
    }
}
