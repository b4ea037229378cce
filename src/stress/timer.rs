//! A precise wake-up for the open loop. epoll's timeout counts whole milliseconds (mio rounds up), so at
//! 2,000 requests/s a request due in 0.3 ms would go out up to a millisecond late, and since latency runs
//! from the intended time that slack would be reported as the server's. A timerfd in the same poll wakes
//! the loop to the microsecond instead, with no thread and no spinning. Linux only: elsewhere it does
//! nothing and the poll timeout alone sets the pace.
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

#[cfg(target_os = "linux")]
pub struct Timer {
    fd: std::os::fd::OwnedFd,
}

#[cfg(target_os = "linux")]
impl Timer {
    pub fn new(registry: &Registry) -> io::Result<Timer> {
        use std::os::fd::{AsRawFd, FromRawFd};
        // SAFETY: timerfd_create takes no pointers; a non-negative result is a new descriptor we now own.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nothing else.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        registry.register(
            &mut mio::unix::SourceFd(&fd.as_raw_fd()),
            TIMER,
            mio::Interest::READABLE,
        )?;
        Ok(Timer { fd })
    }

    /// Wakes the poll once, `after` from now (at least a nanosecond: zero would disarm it).
    pub fn arm(&self, after: Duration) {
        use std::os::fd::AsRawFd;
        let after = after.max(Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: after.as_secs().min(i32::MAX as u64) as libc::time_t,
                tv_nsec: after.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: `spec` is a valid itimerspec we own; the old value is not asked for (null).
        // It cannot fail with a valid descriptor and spec; if it did, the poll timeout still wakes the loop.
        unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
    }

    /// Takes the expiry count, so the descriptor is quiet until the next expiry.
    pub fn clear(&self) {
        use std::os::fd::AsRawFd;
        let mut count = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a buffer of 8. EAGAIN (nothing expired) is fine to ignore.
        unsafe { libc::read(self.fd.as_raw_fd(), count.as_mut_ptr().cast(), count.len()) };
    }
}

#[cfg(not(target_os = "linux"))]
pub struct Timer;

#[cfg(not(target_os = "linux"))]
impl Timer {
    pub fn new(_registry: &Registry) -> io::Result<Timer> {
        Ok(Timer)
    }
    pub fn arm(&self, _after: Duration) {}
    pub fn clear(&self) {}
}
