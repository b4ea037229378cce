//! The time of the current turn, as a service sees it. A server reads the monotonic clock once per turn of
//! its loop (per read, in the blocking modes) and hands every session the same [`Clock`]; a service never
//! reads the system clock itself, so a thousand requests answered in one turn cost one clock read, and tests
//! can fix the time ([`Clock::fixed`]).
//!
//! Wall-clock time (for an HTTP `Date` header) is derived from the monotonic reading and a wall-clock
//! reading taken at most once a second, and its text is formatted at most once a second
//! ([`Clock::http_date`]). Re-reading the wall clock every second keeps the date right when the system
//! clock is stepped.
//!
//! Walk-through: `docs/10-adding-a-service.md` (what a session is handed).

use std::cell::Cell;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The length of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the only `Date` format HTTP sends.
pub const HTTP_DATE_LEN: usize = 29;

/// The current turn's time. Cheap to share by reference: its caches are cells, so a session needs only `&Clock`.
#[derive(Clone, Debug)]
pub struct Clock {
    now: Cell<Instant>,
    /// A monotonic instant and the Unix time read with it: wall time is derived from the two.
    base: Cell<(Instant, Duration)>,
    /// Never re-read the wall clock (a test's fixed time).
    fixed: bool,
    /// The turn the date was last asked for in, the Unix second last formatted, and its text.
    date: Cell<(Option<Instant>, u64, [u8; HTTP_DATE_LEN])>,
    /// The last other time formatted by [`Clock::http_date_until_now`], and its text.
    other: Cell<(u64, [u8; HTTP_DATE_LEN])>,
}

impl Clock {
    /// The clock at this moment.
    pub fn new() -> Clock {
        let now = Instant::now();
        Clock {
            now: Cell::new(now),
            base: Cell::new((now, unix_now())),
            fixed: false,
            date: Cell::new((None, u64::MAX, [0; HTTP_DATE_LEN])),
            other: Cell::new((u64::MAX, [0; HTTP_DATE_LEN])),
        }
    }

    /// A clock whose wall time stands at `unix_seconds` (and moves only with [`Clock::set`]): for tests and
    /// fixtures, so a reply with a date is the same every run.
    pub fn fixed(unix_seconds: u64) -> Clock {
        let now = Instant::now();
        Clock {
            now: Cell::new(now),
            base: Cell::new((now, Duration::from_secs(unix_seconds))),
            fixed: true,
            date: Cell::new((None, u64::MAX, [0; HTTP_DATE_LEN])),
            other: Cell::new((u64::MAX, [0; HTTP_DATE_LEN])),
        }
    }

    /// Reads the monotonic clock: the start of a turn. Returns the new time.
    pub fn tick(&self) -> Instant {
        let now = Instant::now();
        self.now.set(now);
        now
    }

    /// Sets the turn's time to one read elsewhere.
    pub fn set(&self, now: Instant) {
        self.now.set(now);
    }

    /// The time of the current turn.
    pub fn now(&self) -> Instant {
        self.now.get()
    }

    /// Seconds since the Unix epoch at the current turn.
    pub fn unix_seconds(&self) -> u64 {
        let now = self.now.get();
        let (mut at, mut unix) = self.base.get();
        if !self.fixed && now.saturating_duration_since(at) >= Duration::from_secs(1) {
            // Once a second at most: follow the system clock if it was stepped.
            (at, unix) = (now, unix_now());
            self.base.set((at, unix));
        }
        (unix + now.saturating_duration_since(at)).as_secs()
    }

    /// The current turn's time as an HTTP date (RFC 9110 §5.6.7, IMF-fixdate), formatted at most once per
    /// second.
    pub fn http_date(&self) -> [u8; HTTP_DATE_LEN] {
        let now = self.now.get();
        let (turn, cached, text) = self.date.get();
        if turn == Some(now) {
            // The same turn: the same second, with no clock arithmetic per response.
            return text;
        }
        let second = self.unix_seconds();
        let text = if cached == second {
            text
        } else {
            imf_fixdate(second)
        };
        self.date.set((Some(now), second, text));
        text
    }
}

impl Clock {
    /// The time `unix_seconds` as an HTTP date, but no later than the current turn's: a `Last-Modified`
    /// later than the `Date` it is sent with is wrong (RFC 9110 §8.8.2.1), and a system clock stepped back
    /// could make it so. The text is formatted only when the time asked for changes, so a fixed date sent
    /// with every response (the server's start) is formatted once.
    pub fn http_date_until_now(&self, unix_seconds: u64) -> [u8; HTTP_DATE_LEN] {
        let (turn, second, _) = self.date.get();
        let now = if turn == Some(self.now.get()) {
            second
        } else {
            self.unix_seconds()
        };
        let at = unix_seconds.min(now);
        let (formatted, text) = self.other.get();
        if formatted == at {
            return text;
        }
        let text = imf_fixdate(at);
        self.other.set((at, text));
        text
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

fn unix_now() -> Duration {
    // A system clock set before 1970 is reported as 1970 rather than making every date fail.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` for `unix_seconds` (years past 9999 are shown as 9999).
pub fn imf_fixdate(unix_seconds: u64) -> [u8; HTTP_DATE_LEN] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    // 9999-12-31T23:59:59Z: an IMF-fixdate has four digits of year.
    let unix_seconds = unix_seconds.min(253_402_300_799);
    let days = unix_seconds / 86_400;
    let secs = unix_seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    out[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    two_digits(&mut out[5..7], day);
    out[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
    two_digits(&mut out[12..14], year / 100);
    two_digits(&mut out[14..16], year % 100);
    two_digits(&mut out[17..19], secs / 3600);
    two_digits(&mut out[20..22], secs / 60 % 60);
    two_digits(&mut out[23..25], secs % 60);
    out
}

fn two_digits(out: &mut [u8], n: u64) {
    out[0] = b'0' + (n / 10 % 10) as u8;
    out[1] = b'0' + (n % 10) as u8;
}

/// Year, month (1–12) and day (1–31) of a day counted from 1970-01-01, by Howard Hinnant's
/// `civil_from_days`, for days on or after the epoch.
pub(crate) fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// The day counted from 1970-01-01 (negative before it) of a year, month (1–12) and day, by Howard
/// Hinnant's `days_from_civil`, the inverse of [`civil_from_days`]: for reading the dates a client sends.
pub(crate) fn days_from_civil(year: u64, month: u64, day: u64) -> i64 {
    let year = year as i64 - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let month = month as i64;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(secs: u64) -> String {
        String::from_utf8(imf_fixdate(secs).to_vec()).unwrap()
    }

    #[test]
    fn imf_fixdate_fixtures() {
        assert_eq!(date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        // RFC 9110's own example.
        assert_eq!(date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(date(1_798_761_599), "Thu, 31 Dec 2026 23:59:59 GMT");
        assert_eq!(date(4_107_542_400), "Mon, 01 Mar 2100 00:00:00 GMT");
        assert_eq!(date(u64::MAX), "Fri, 31 Dec 9999 23:59:59 GMT");
    }

    #[test]
    fn every_day_for_three_centuries_agrees_with_a_plain_count() {
        // Walk day by day, counting the calendar by hand, and compare.
        let (mut year, mut month, mut day) = (1970u64, 1u64, 1u64);
        let leap =
            |y: u64| (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
        for days in 0..(300 * 366) {
            assert_eq!(civil_from_days(days), (year, month, day), "day {days}");
            assert_eq!(
                days_from_civil(year, month, day),
                days as i64,
                "{year}-{month}-{day}"
            );
            let len = match month {
                2 if leap(year) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            day += 1;
            if day > len {
                day = 1;
                month += 1;
                if month > 12 {
                    month = 1;
                    year += 1;
                }
            }
        }
    }

    #[test]
    fn days_before_the_epoch_count_back() {
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(days_from_civil(1900, 1, 1), -25_567);
        assert_eq!(days_from_civil(0, 3, 1), -719_468);
    }

    #[test]
    fn a_fixed_clock_moves_only_with_the_turn() {
        let clock = Clock::fixed(784_111_777);
        assert_eq!(&clock.http_date(), b"Sun, 06 Nov 1994 08:49:37 GMT");
        clock.set(clock.now() + Duration::from_millis(2500));
        assert_eq!(clock.unix_seconds(), 784_111_779);
        assert_eq!(&clock.http_date(), b"Sun, 06 Nov 1994 08:49:39 GMT");
    }

    #[test]
    fn another_date_is_formatted_once_and_never_later_than_the_turn() {
        let clock = Clock::fixed(784_111_777);
        assert_eq!(
            &clock.http_date_until_now(0),
            b"Thu, 01 Jan 1970 00:00:00 GMT"
        );
        assert_eq!(
            &clock.http_date_until_now(0),
            b"Thu, 01 Jan 1970 00:00:00 GMT"
        );
        // Later than the turn: the turn's own time.
        assert_eq!(
            &clock.http_date_until_now(u64::MAX),
            b"Sun, 06 Nov 1994 08:49:37 GMT"
        );
        clock.http_date();
        assert_eq!(
            &clock.http_date_until_now(784_111_778),
            b"Sun, 06 Nov 1994 08:49:37 GMT"
        );
        clock.set(clock.now() + Duration::from_secs(1));
        assert_eq!(
            &clock.http_date_until_now(784_111_778),
            b"Sun, 06 Nov 1994 08:49:38 GMT"
        );
    }

    #[test]
    fn the_real_clock_is_near_the_system_clock() {
        let clock = Clock::new();
        clock.tick();
        let system = unix_now().as_secs();
        assert!(clock.unix_seconds().abs_diff(system) <= 1);
    }
}
