//! A precise wake-up for the open loop. epoll's timeout counts whole milliseconds (mio rounds up), so at
//! 2,000 requests/s a request due in 0.3 ms would go out up to a millisecond late, and since latency runs
//! from the intended time that slack would be reported as the server's. A timerfd in the same poll wakes
//! the loop to the microsecond instead, with no thread and no spinning. Linux only (the OS layer holds the
//! timerfd: `src/sys/linux.rs`): elsewhere it does nothing and the poll timeout alone sets the pace.
//!
//! Walk-through: `docs/08-measuring.md`.

use std::io;
use std::time::Duration;

use mio::{Registry, Token};

/// The timer's token: far from the connections' tokens, which count up from 0.
pub const TIMER: Token = Token(usize::MAX);

/// Waits shorter than this are put on the timer when pacing an open loop; longer ones the poll's own
/// millisecond timeout serves well enough.
const FINER_THAN_POLL: Duration = Duration::from_millis(50);

/// Before a poll that will wait at most `wait`: in an open loop (`paced`), a request due sooner than the
/// poll would notice is woken by the precise timer instead. The one rule both loops (TCP and UDP) follow.
pub fn arm_before_poll(timer: &Timer, wait: Duration, paced: bool) {
    if paced && !wait.is_zero() && wait < FINER_THAN_POLL {
        timer.arm(wait);
    }
}

/// The timer itself: a timerfd on Linux, nothing elsewhere (`crate::sys::Timer`).
pub struct Timer(crate::sys::Timer);

impl Timer {
    /// A timer registered in `registry`'s poll under [`TIMER`].
    pub fn new(registry: &Registry) -> io::Result<Timer> {
        crate::sys::Timer::new(registry, TIMER).map(Timer)
    }

    /// Wakes the poll once, `after` from now.
    pub fn arm(&self, after: Duration) {
        self.0.arm(after)
    }

    /// Takes the expiry, so the timer is quiet until the next one.
    pub fn clear(&self) {
        self.0.clear()
    }
}
