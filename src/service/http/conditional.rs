//! Conditional requests for `--service http` (RFC 9110 §13): the one representation's validators (a strong
//! `ETag` and a fixed `Last-Modified`, the server's start), the four preconditions evaluated in the RFC's
//! order, and the three formats an HTTP date may come in. This is what lets a browser or curl revalidate
//! its copy and get `304` with no content, and what stops a client's conditional write (`If-Match`) from
//! being performed on a representation it did not expect (`412`). Walk-through: `docs/11-http.md`.

use super::head::trim;
use super::response::{Answer, Status, ETAG};
use crate::service::clock::{civil_from_days, days_from_civil, Clock};

/// The precondition fields of one request, as its header section gave them.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Conditions<'a> {
    /// `If-Match` was sent, and whether any of its lines named the representation (strong comparison).
    if_match: Option<bool>,
    /// `If-None-Match` was sent, and whether any of its lines named the representation (weak comparison).
    if_none_match: Option<bool>,
    if_modified_since: DateField<'a>,
    if_unmodified_since: DateField<'a>,
    /// Any of the four came: what [`Conditions::any`] asks, kept as they are added.
    any: bool,
}

/// A field whose value is one date: the value, if it came once.
#[derive(Clone, Copy, Debug, Default)]
enum DateField<'a> {
    #[default]
    Absent,
    Once(&'a [u8]),
    /// More than one line: more than one member, which the RFC has a server ignore (§13.1.3, §13.1.4).
    Repeated,
}

impl<'a> DateField<'a> {
    fn add(&mut self, value: &'a [u8]) {
        *self = match self {
            DateField::Absent => DateField::Once(value),
            _ => DateField::Repeated,
        };
    }

    /// The date it holds, if it is one valid date.
    fn date(self, clock: &Clock) -> Option<i64> {
        match self {
            DateField::Once(value) => http_date(trim(value), clock.unix_seconds()),
            _ => None,
        }
    }
}

impl<'a> Conditions<'a> {
    /// Takes the header field `name: value` if it is a precondition; returns whether it was one.
    pub(super) fn add(&mut self, name: &str, value: &'a [u8]) -> bool {
        if name.eq_ignore_ascii_case("if-match") {
            let named = self.if_match.unwrap_or(false) || names_the_tag(value, Comparison::Strong);
            self.if_match = Some(named);
        } else if name.eq_ignore_ascii_case("if-none-match") {
            let named = self.if_none_match.unwrap_or(false) || names_the_tag(value, Comparison::Weak);
            self.if_none_match = Some(named);
        } else if name.eq_ignore_ascii_case("if-modified-since") {
            self.if_modified_since.add(value);
        } else if name.eq_ignore_ascii_case("if-unmodified-since") {
            self.if_unmodified_since.add(value);
        } else {
            return false;
        }
        self.any = true;
        true
    }

    /// Whether the request has any precondition at all (most have none: nothing else is done for them).
    pub(super) fn any(&self) -> bool {
        self.any
    }

    /// Evaluates the preconditions in RFC 9110 §13.2.2's order for a request that would otherwise get
    /// `200` (the caller ignores them for any other answer, as §13.2.1 asks), against a representation last
    /// modified at `started` (Unix seconds; no later than now, as the response says). `None`: perform the
    /// method. `safe` is a `GET` or `HEAD`, which a failed `If-None-Match` answers `304` rather than `412`.
    pub(super) fn evaluate(&self, safe: bool, started: u64, clock: &Clock) -> Option<Answer> {
        let modified = started.min(clock.unix_seconds()) as i64;
        // 1, 2: the client's copy must be the current one.
        match self.if_match {
            Some(false) => return Some(Answer::Error(Status::PreconditionFailed)),
            Some(true) => {}
            None => {
                if let Some(date) = self.if_unmodified_since.date(clock) {
                    if modified > date {
                        return Some(Answer::Error(Status::PreconditionFailed));
                    }
                }
            }
        }
        // 3, 4: the client's copy must not be current already.
        match self.if_none_match {
            Some(true) if safe => return Some(Answer::NotModified),
            Some(true) => return Some(Answer::Error(Status::PreconditionFailed)),
            Some(false) => {}
            None if safe => {
                if let Some(date) = self.if_modified_since.date(clock) {
                    if modified <= date {
                        return Some(Answer::NotModified);
                    }
                }
            }
            None => {}
        }
        None
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Comparison {
    /// Both tags strong and equal: for `If-Match`, which guards a change.
    Strong,
    /// Equal once `W/` is set aside: for `If-None-Match`, which only saves a transfer.
    Weak,
}

/// Whether one `If-Match` or `If-None-Match` line names this server's representation: `*` (any current
/// representation: there is always one), or a list of entity-tags (`"x"`, `W/"x"`) one of which matches
/// [`ETAG`]. An element that is not an entity-tag ends the list: neither it nor what follows it names
/// anything, so a malformed `If-Match` fails (`412`) and a malformed `If-None-Match` is as if absent.
fn names_the_tag(value: &[u8], comparison: Comparison) -> bool {
    let value = trim(value);
    if value == b"*" {
        return true;
    }
    let opaque = ETAG;
    let mut rest = value;
    loop {
        // Empty elements and the whitespace around commas are allowed (RFC 9110 §5.6.1).
        while let [b' ' | b'\t' | b',', tail @ ..] = rest {
            rest = tail;
        }
        if rest.is_empty() {
            return false;
        }
        let weak = rest.starts_with(b"W/");
        if weak {
            rest = &rest[2..];
        }
        if rest.first() != Some(&b'"') {
            return false;
        }
        let Some(close) = rest[1..].iter().position(|&b| b == b'"') else {
            return false;
        };
        let tag = &rest[..close + 2];
        // etagc: %x21 / %x23-7E / obs-text; the quote was the end.
        if !tag[1..tag.len() - 1].iter().all(|&b| b == 0x21 || (0x23..=0x7E).contains(&b) || b >= 0x80) {
            return false;
        }
        if tag == opaque && !(weak && comparison == Comparison::Strong) {
            return true;
        }
        rest = &rest[close + 2..];
        if !matches!(rest, [] | [b' ' | b'\t' | b',', ..]) {
            return false;
        }
    }
}

const DAYS: [&[u8]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
const LONG_DAYS: [&[u8]; 7] = [
    b"Monday",
    b"Tuesday",
    b"Wednesday",
    b"Thursday",
    b"Friday",
    b"Saturday",
    b"Sunday",
];
const MONTHS: [&[u8]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// An HTTP date in any of the three formats a recipient must accept (RFC 9110 §5.6.7), as Unix seconds
/// (negative before 1970); `None` if it is not one. `now` (Unix seconds) places a two-digit year:
///
/// - IMF-fixdate, what every server sends: `Sun, 06 Nov 1994 08:49:37 GMT`;
/// - RFC 850's: `Sunday, 06-Nov-94 08:49:37 GMT`, its year in the century that puts it no more than 50
///   years after `now`;
/// - C's `asctime`: `Sun Nov  6 08:49:37 1994`.
///
/// Names are case-sensitive, as the grammar has them; the day's name is not checked against the date.
pub(super) fn http_date(value: &[u8], now: u64) -> Option<i64> {
    let (year, month, day, time) = if let Some(rest) = strip_day(value, &DAYS, b", ") {
        // IMF-fixdate: `06 Nov 1994 08:49:37 GMT`.
        match rest {
            [d1, d2, b' ', m @ .., b' ', y1, y2, y3, y4, b' ', h1, h2, b':', n1, n2, b':', s1, s2, b' ', b'G', b'M', b'T']
                if m.len() == 3 =>
            {
                let year = digits(&[*y1, *y2, *y3, *y4])?;
                (year, month(m)?, digits(&[*d1, *d2])?, [*h1, *h2, *n1, *n2, *s1, *s2])
            }
            _ => return None,
        }
    } else if let Some(rest) = strip_day(value, &LONG_DAYS, b", ") {
        // rfc850-date: `06-Nov-94 08:49:37 GMT`.
        match rest {
            [d1, d2, b'-', m @ .., b'-', y1, y2, b' ', h1, h2, b':', n1, n2, b':', s1, s2, b' ', b'G', b'M', b'T']
                if m.len() == 3 =>
            {
                let year = two_digit_year(digits(&[*y1, *y2])?, now);
                (year, month(m)?, digits(&[*d1, *d2])?, [*h1, *h2, *n1, *n2, *s1, *s2])
            }
            _ => return None,
        }
    } else if let Some(
        [m1, m2, m3, b' ', d1, d2, b' ', h1, h2, b':', n1, n2, b':', s1, s2, b' ', y1, y2, y3, y4],
    ) = strip_day(value, &DAYS, b" ")
    {
        // asctime-date: `Nov  6 08:49:37 1994`.
        let day = match d1 {
            b' ' => digits(&[*d2])?,
            _ => digits(&[*d1, *d2])?,
        };
        let year = digits(&[*y1, *y2, *y3, *y4])?;
        (year, month(&[*m1, *m2, *m3])?, day, [*h1, *h2, *n1, *n2, *s1, *s2])
    } else {
        return None;
    };
    let (hour, minute, second) = (
        digits(&time[0..2])?,
        digits(&time[2..4])?,
        digits(&time[4..6])?,
    );
    // A leap second (60) is allowed by the grammar; it reads as the next second.
    if day == 0 || day > days_in(year, month) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + (hour * 3600 + minute * 60 + second) as i64)
}

/// What follows `Name` + `separator` at the start of `value`, for one of `names`.
fn strip_day<'v>(value: &'v [u8], names: &[&[u8]], separator: &[u8]) -> Option<&'v [u8]> {
    names
        .iter()
        .find_map(|name| value.strip_prefix(*name)?.strip_prefix(separator))
}

fn month(name: &[u8]) -> Option<u64> {
    MONTHS.iter().position(|m| *m == name).map(|i| i as u64 + 1)
}

fn digits(bytes: &[u8]) -> Option<u64> {
    bytes.iter().try_fold(0u64, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0'))
    })
}

/// RFC 9110 §5.6.7: a two-digit year that would be more than 50 years after `now` is the most recent
/// year in the past with those two digits.
fn two_digit_year(yy: u64, now: u64) -> u64 {
    let (this_year, _, _) = civil_from_days(now / 86_400);
    let year = this_year / 100 * 100 + yy;
    if year > this_year + 50 {
        year - 100
    } else {
        year
    }
}

fn days_in(year: u64, month: u64) -> u64 {
    let leap = (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}
