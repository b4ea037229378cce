//! Parsing the flags every binary shares that the argument parser cannot check alone: durations given in
//! seconds, and sizes in bytes. No value a person can type may panic a binary or grow its memory without
//! bound, so every duration and size is bounded, and sizes may be written `64K`, `4M` or `1G`. Durations:
//!
//! - `0` is allowed where the flag says so, and then means "off" (`--idle-timeout 0`: never) or "do not
//!   wait" (`--shutdown-timeout 0`);
//! - otherwise a duration is at least [`MIN_SECONDS`] (a millisecond: the resolution of every wait in the
//!   servers' loops, which `epoll` counts in milliseconds, so anything shorter means nothing there; and
//!   `--idle-timeout 1e-9` would close every connection at once) and at most [`MAX_SECONDS`] (a year: no
//!   connection or test waits longer, and a bound keeps every deadline representable);
//! - anything else (negative, not a number, infinite, past a year) is refused with a message that names
//!   the flag and the range, and the binary exits 2.
//!
//! Walk-through: `docs/09-running.md`.

use std::time::Duration;

/// The shortest duration a flag may ask for, in seconds, unless it asks for 0.
pub const MIN_SECONDS: f64 = 0.001;

/// The longest duration a flag may ask for, in seconds: 365 days.
pub const MAX_SECONDS: f64 = 365.0 * 24.0 * 3600.0;

/// A duration in seconds (`3`, `0.5`): 0, or from [`MIN_SECONDS`] to [`MAX_SECONDS`]. For clap's
/// `value_parser`.
pub fn seconds(text: &str) -> Result<Duration, String> {
    let secs = number(text)?;
    if secs == 0.0 {
        return Ok(Duration::ZERO);
    }
    bounded(text, secs, true)
}

/// A duration in seconds that must not be 0: from [`MIN_SECONDS`] to [`MAX_SECONDS`].
pub fn positive_seconds(text: &str) -> Result<Duration, String> {
    bounded(text, number(text)?, false)
}

/// A size in bytes: a whole number, or one with a `K`, `M` or `G` suffix (powers of 1024: `64K` is
/// 65,536). For clap's `value_parser`; each flag's range is checked with [`check_bytes`].
pub fn bytes(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let (digits, unit) = match trimmed.char_indices().last() {
        Some((i, 'K' | 'k')) => (&trimmed[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&trimmed[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&trimmed[..i], 1 << 30),
        _ => (trimmed, 1),
    };
    let not_bytes = || {
        format!("`{text}` is not a size in bytes: give a whole number, or one ending in K, M or G")
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(not_bytes());
    }
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(not_bytes)
}

/// Whether the size `value` given to `flag` lies in `min..=max`, with a message naming the range if not.
pub fn check_bytes(flag: &str, value: u64, min: u64, max: u64) -> Result<(), String> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "{flag} {value} is out of range: give {} to {}",
            size(min),
            size(max)
        ))
    }
}

/// `65536 (64K)`: a size as a person reads it, and as this module parses it back.
fn size(n: u64) -> String {
    for (unit, shift) in [("G", 30), ("M", 20), ("K", 10)] {
        if n >= 1 << shift && n.is_multiple_of(1 << shift) {
            return format!("{n} ({}{unit})", n >> shift);
        }
    }
    n.to_string()
}

/// A timeout flag where 0 means "off".
pub fn off_if_zero(timeout: Duration) -> Option<Duration> {
    (!timeout.is_zero()).then_some(timeout)
}

/// Whether `duration` is one a flag could have asked for (0 allowed): the same rule for a configuration
/// built by a program instead of parsed from a command line.
pub fn check(flag: &str, duration: Duration) -> Result<(), String> {
    let secs = duration.as_secs_f64();
    if duration.is_zero() || (MIN_SECONDS..=MAX_SECONDS).contains(&secs) {
        Ok(())
    } else {
        Err(format!("{flag}: {}", range(&format!("{secs}"), true)))
    }
}

fn number(text: &str) -> Result<f64, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("`{text}` is not a number of seconds, 0 or more"));
    }
    Ok(secs)
}

fn bounded(text: &str, secs: f64, zero: bool) -> Result<Duration, String> {
    if !(MIN_SECONDS..=MAX_SECONDS).contains(&secs) {
        return Err(range(text, zero));
    }
    // In range, so the conversion cannot fail; the fallback only keeps this free of panics.
    Duration::try_from_secs_f64(secs).map_err(|_| range(text, zero))
}

fn range(text: &str, zero: bool) -> String {
    let or_zero = if zero { ", or 0" } else { "" };
    format!("{text} seconds is out of range: give 0.001 (a millisecond) to {MAX_SECONDS} (a year){or_zero}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_parse_and_reject() {
        assert_eq!(seconds("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(seconds("0").map(off_if_zero), Ok(None));
        assert_eq!(seconds("-0"), Ok(Duration::ZERO));
        assert_eq!(
            seconds("2").map(off_if_zero),
            Ok(Some(Duration::from_secs(2)))
        );
        assert_eq!(seconds("0.001"), Ok(Duration::from_millis(1)));
        assert_eq!(seconds("31536000"), Ok(Duration::from_secs(31_536_000)));
        for bad in [
            "-1",
            "inf",
            "NaN",
            "soon",
            "1e-9",
            "0.0009",
            "31536001",
            "1e19",
            "1e300",
            "99999999999999999999",
            "18446744073709551615",
            "",
        ] {
            assert!(seconds(bad).is_err(), "{bad}");
        }
        assert!(positive_seconds("0").is_err());
        assert_eq!(positive_seconds("2"), Ok(Duration::from_secs(2)));
        assert!(check("--idle-timeout", Duration::MAX).is_err());
        assert!(check("--idle-timeout", Duration::from_nanos(1)).is_err());
        assert!(check("--idle-timeout", Duration::ZERO).is_ok());
    }

    #[test]
    fn sizes_parse_with_units_and_reject_the_rest() {
        assert_eq!(bytes("65536"), Ok(65536));
        assert_eq!(bytes("64K"), Ok(65536));
        assert_eq!(bytes("4m"), Ok(4 << 20));
        assert_eq!(bytes(" 1G "), Ok(1 << 30));
        for bad in [
            "",
            "K",
            "1e15",
            "-1",
            "1.5M",
            "64KB",
            "18446744073709551616",
            "17179869184G",
        ] {
            assert!(bytes(bad).is_err(), "{bad}");
        }
        assert_eq!(check_bytes("--high-water", 65536, 65536, 1 << 28), Ok(()));
        assert_eq!(
            check_bytes("--high-water", 1 << 50, 65536, 1 << 28),
            Err("--high-water 1125899906842624 is out of range: give 65536 (64K) to 268435456 (256M)".into())
        );
    }
}
