//! Watching the loop: `socklab-server --trace` (or `RUST_LOG=socklab::server::reactor=trace`) prints one
//! line for each stage that did something in a turn, numbered as `docs/04-reactor.md` numbers them:
//!
//! ```text
//! turn 7 · 1 poll: slept 812 ms (timeout 300.0 s); woke for conn 0 readable
//! turn 7 · 5 conn 0 (127.0.0.1:51234): read 12 B (asked 65536) → 12 B written
//! ```
//!
//! The other modes trace in their own terms: what the blocking server is blocked in and for whom, how many
//! wait in the backlog meanwhile; when each thread of `--mode threads` starts and ends; how many empty
//! passes busy-poll burns a second; every completion `--mode uring` takes, and what it submits
//! (`docs/14-completion.md` sets one request's trace beside the reactor's). Walk-through:
//! `docs/12-watching.md`.
//!
//! Tracing costs nothing when it is off: a loop asks [`Turn::begin`] once per turn whether its target is
//! enabled at trace level (one atomic load when the log level is lower), and every line is behind
//! `trace_stage!`, which formats nothing and reads no clock unless it is on.

/// The log target the reactor's lines go to (connections included), so one `RUST_LOG` directive shows
/// the whole loop.
pub const REACTOR: &str = "socklab::server::reactor";
/// The blocking modes' target (`--mode blocking` and `--mode threads`).
pub const BLOCKING: &str = "socklab::server::blocking";
/// Busy-poll's target.
pub const BUSY_POLL: &str = "socklab::server::busy_poll";
/// The completion driver's target (`--mode uring`).
pub const URING: &str = "socklab::server::uring";

/// The turn of a loop, as the trace names it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Turn {
    /// Turns since the loop started, from 1.
    pub number: u64,
    /// Tracing is on for this turn.
    pub on: bool,
    /// The loop's log target.
    pub target: &'static str,
}

impl Turn {
    /// A loop that traces to `target`.
    pub fn new(target: &'static str) -> Turn {
        Turn {
            number: 0,
            on: false,
            target,
        }
    }

    /// The next turn begins: is it traced?
    pub fn begin(&mut self) {
        self.number += 1;
        self.on = log::log_enabled!(target: self.target, log::Level::Trace);
    }
}

/// `trace_stage!(turn, stage, "format", args…)`: one trace line for `stage` of `turn`, formatted only when
/// tracing is on. `stage` is the number (or the letter, for busy-poll's passes) the docs give it.
macro_rules! trace_stage {
    ($turn:expr, $stage:expr, $($arg:tt)+) => {
        if $turn.on {
            log::trace!(target: $turn.target, "turn {} · {} {}", $turn.number, $stage, format_args!($($arg)+));
        }
    };
}

pub(crate) use trace_stage;

/// `1.2 s`, `812 ms`, `35 µs`: a duration as a trace line reads it.
pub fn duration(d: std::time::Duration) -> String {
    let micros = d.as_micros();
    if micros >= 1_000_000 {
        format!("{:.1} s", d.as_secs_f64())
    } else if micros >= 1_000 {
        format!("{} ms", micros / 1_000)
    } else {
        format!("{micros} µs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations_read_as_a_person_would_say_them() {
        assert_eq!(duration(Duration::from_micros(35)), "35 µs");
        assert_eq!(duration(Duration::from_millis(812)), "812 ms");
        assert_eq!(duration(Duration::from_millis(4230)), "4.2 s");
    }

    /// Traces one target only, its own, and prints nothing. No other unit test installs a logger, and none
    /// traces to this target, so turning it on here changes nothing they see.
    struct OneTarget;

    const TRACED: &str = "socklab::server::trace::tests";

    impl log::Log for OneTarget {
        fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
            metadata.target() == TRACED
        }
        fn log(&self, _record: &log::Record<'_>) {}
        fn flush(&self) {}
    }

    #[test]
    fn a_turn_is_traced_when_its_target_is_and_only_then() {
        log::set_logger(&OneTarget).expect("no other unit test installs a logger");
        log::set_max_level(log::LevelFilter::Trace);
        let (mut traced, mut other) = (Turn::new(TRACED), Turn::new(REACTOR));
        assert!(!traced.on, "a turn that has not begun is not traced");
        for number in 1..=2 {
            traced.begin();
            other.begin();
            assert_eq!((traced.number, other.number), (number, number));
            assert!(traced.on, "its target traces");
            assert!(!other.on, "the reactor's target does not");
        }
    }
}
