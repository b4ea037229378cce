//! What a run found, as text for people and as one JSON object for scripts (written by hand: the numbers and
//! a few fixed strings need no serialisation library). The run failed if any reply was wrong or any
//! connection failed; UDP loss is reported but is what UDP allows, so it alone does not fail a run.
//!
//! Walk-through: `docs/08-measuring.md`.

use std::fmt::Write as _;
use std::time::Duration;

use super::mismatch::{self, excerpt};
use super::target::udp_unreachable;
use super::{Check, EarlyStop, LoadOptions, Stop, Tally};
use crate::service::Service;

/// The shortest load a rate is given for: over less, a few replies would make any figure at all.
pub const MIN_RATE_TIME: Duration = Duration::from_millis(1);

/// The percentiles reported, as (label, quantile).
const PERCENTILES: [(&str, f64); 4] = [
    ("p50", 0.50),
    ("p90", 0.90),
    ("p99", 0.99),
    ("p99.9", 0.999),
];

/// A finished run: what was asked and what was counted.
#[derive(Clone, Debug)]
pub struct Report {
    pub options: LoadOptions,
    pub tally: Tally,
    /// The whole run, connecting and draining included.
    pub wall: Duration,
    /// UDP, when every socket met "port unreachable": whether a TCP connect to the same address was
    /// accepted (a server that binds no UDP socket), asked once after the run. `None` when not asked.
    pub tcp_answers: Option<bool>,
}

impl Report {
    pub fn new(options: &LoadOptions, tally: Tally, wall: Duration) -> Report {
        Report {
            options: options.clone(),
            tally,
            wall,
            tcp_answers: None,
        }
    }

    /// True if any reply was wrong or any connection failed: the exit status says so.
    pub fn failed(&self) -> bool {
        self.tally.wrong > 0 || self.tally.errors() > 0
    }

    /// Whether the run gives a rate: some reply was right, over at least [`MIN_RATE_TIME`]. A rate over
    /// (nearly) no time, or of bytes no right reply came for, would be a number that means nothing.
    pub fn has_rate(&self) -> bool {
        self.tally.checked > 0 && self.tally.load_time >= MIN_RATE_TIME
    }

    /// Checked replies per second of load (0 when the run gives no rate: see [`Report::has_rate`]).
    pub fn requests_per_second(&self) -> f64 {
        if !self.has_rate() {
            return 0.0;
        }
        per_second(self.tally.checked as f64, self.tally.load_time)
    }

    /// Megabytes (10^6) per second of requests and replies together (0 when the run gives no rate).
    pub fn megabytes_per_second(&self) -> f64 {
        if !self.has_rate() {
            return 0.0;
        }
        per_second(
            (self.tally.request_bytes + self.tally.reply_bytes) as f64,
            self.tally.load_time,
        ) / 1e6
    }

    /// Open loop that ran to its end: whether every request due went out (`None` in closed loop, or when the
    /// run stopped early).
    pub fn rate_reached(&self) -> Option<bool> {
        (self.options.rate.is_some() && self.tally.stopped_early.is_none())
            .then_some(self.tally.unsent == 0)
    }

    /// Open loop over a duration: requests sent per second of it, the rate the run achieved against the one
    /// asked (`None` otherwise).
    pub fn achieved_rate(&self) -> Option<f64> {
        match (self.options.rate, self.options.stop) {
            (Some(_), Stop::Duration(d)) if !d.is_zero() => {
                Some(self.tally.sent as f64 / d.as_secs_f64())
            }
            _ => None,
        }
    }

    /// The service every kept wrong reply is what another service sends, if one is.
    pub fn suggested_service(&self) -> Option<Service> {
        if self.options.http.is_some() {
            return None;
        }
        mismatch::suggest(
            &self.tally.mismatches,
            self.options.expect,
            self.options.udp,
        )
    }

    /// Why the run ended early, in words, if it did.
    pub fn stop_reason(&self) -> Option<String> {
        let (o, t) = (&self.options, &self.tally);
        let what = if o.udp { "socket" } else { "connection" };
        Some(match t.stopped_early? {
            EarlyStop::OnlyWrongReplies if o.udp => format!(
                "stopped early: the first {} replies were all wrong and none was right, at least one per socket",
                t.wrong
            ),
            EarlyStop::OnlyWrongReplies => format!(
                "stopped early: every reply was wrong and none was right; a connection is closed at its first \
                 wrong reply (its stream is out of step after it), so no {what} was left"
            ),
            EarlyStop::NoConnectionLeft => format!(
                "stopped early: every {what} failed or was closed before the load was over (see the counts above)"
            ),
        })
    }

    /// What the person running it should probably do, one sentence each (the binary logs them).
    pub fn hints(&self) -> Vec<String> {
        let (o, t) = (&self.options, &self.tally);
        let mut hints = Vec::new();
        if t.connected == 0 && t.refused > 0 {
            hints.push(if o.udp {
                match self.tcp_answers {
                    Some(tcp) => format!(
                        "every socket was refused: {}",
                        udp_unreachable(o.addr, tcp)
                    ),
                    None => format!(
                        "every socket was refused (port unreachable): is socklab-server running on {}?",
                        o.addr
                    ),
                }
            } else {
                format!(
                    "every connection was refused: is socklab-server running on {}?",
                    o.addr
                )
            });
        }
        if self.rate_reached() == Some(false) {
            hints.push(format!(
                "the asked rate was not reached: {} of the {} requests due went out{}; the rest waited for a \
                 free slot among the {} that --connections {} × --pipeline {} give, and the run ended first. \
                 Offer more with -c or --pipeline, or ask a lower --rate",
                t.sent,
                t.sent + t.unsent,
                match self.achieved_rate() {
                    Some(r) => format!(" ({r:.0} req/s of the {} asked)", number_text(o.rate)),
                    None => String::new(),
                },
                o.connections.saturating_mul(o.pipeline),
                o.connections,
                o.pipeline,
            ));
        }
        if t.wrong > 0 && t.checked == 0 {
            hints.push(match self.suggested_service() {
                Some(other) => format!(
                    "no reply was what the {} service sends, and the wrong ones are what the {other} service sends: \
                 is the server running --service {other}? Then run with --expect {other}",
                    o.expect
                ),
                None => format!(
                    "no reply was what the {} service sends: is the server running --service {}? (--expect names \
                 the service the replies are checked against)",
                    o.expect, o.expect
                ),
            });
        }
        hints
    }

    /// Latency at `quantile`, in microseconds (0 when nothing was measured).
    pub fn latency_us(&self, quantile: f64) -> f64 {
        if self.tally.latency.is_empty() {
            return 0.0;
        }
        self.tally.latency.value_at_quantile(quantile) as f64 / 1e3
    }

    fn max_us(&self) -> f64 {
        self.tally.latency.max() as f64 / 1e3
    }

    /// Where the load went: `tcp 127.0.0.1:12000`, or a URL's method, the URL and its address.
    fn target(&self) -> String {
        let o = &self.options;
        match &o.http {
            Some(t) => format!(
                "{} {} ({}){}",
                t.method,
                t.url,
                o.addr,
                if t.close_each {
                    " · a connection per request"
                } else {
                    ""
                }
            ),
            None => format!("{} {}", if o.udp { "udp" } else { "tcp" }, o.addr),
        }
    }

    /// What every reply was checked against, in a few words.
    fn checked_against(&self) -> String {
        match self.tally.check {
            Check::Service => format!("expect {}", self.options.expect),
            Check::Learned => format!("expect {} as first answered", self.options.expect),
            Check::SocklabHttp => "checked as socklab's http service sends".into(),
            Check::Framing { status } => {
                format!("checked by HTTP framing and status {status}, as first answered")
            }
        }
    }

    /// One line saying what was run and what it gave, for a plot's title.
    pub fn title(&self) -> String {
        let o = &self.options;
        let what = match &o.http {
            Some(t) => format!("{} {}", t.method, t.url),
            None => format!("{} {}", if o.udp { "udp" } else { "tcp" }, o.expect),
        };
        format!(
            "socklab-stress {what} · {} {} · pipeline {} · {} · {} replies checked",
            o.connections,
            if o.udp { "sockets" } else { "connections" },
            o.pipeline,
            match o.rate {
                Some(r) => format!("open loop {r} req/s"),
                None => "closed loop".into(),
            },
            self.tally.checked
        )
    }

    /// A few lines for a person.
    pub fn text(&self) -> String {
        let (o, t) = (&self.options, &self.tally);
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} · {} {} · pipeline {} · {} B requests · {} · {} · {}{}",
            self.target(),
            o.connections,
            if o.udp { "sockets" } else { "connections" },
            o.pipeline,
            o.http.as_ref().map_or(o.size, |t| t.request().len()),
            match o.rate {
                Some(r) => format!("open loop {r} req/s"),
                None => "closed loop".into(),
            },
            match o.stop {
                Stop::Duration(d) => format!("{:.1} s", d.as_secs_f64()),
                Stop::Requests(n) => format!("{n} requests"),
            },
            self.checked_against(),
            if o.idle > 0 {
                format!(" · {} idle", o.idle)
            } else {
                String::new()
            },
        );
        let _ = writeln!(
            s,
            "requests    sent {}  checked {}  wrong {}  unanswered {}",
            t.sent, t.checked, t.wrong, t.unanswered
        );
        if o.udp {
            let _ = writeln!(s, "udp         lost {}  late {}", t.udp_lost, t.udp_late);
        }
        if let Some(reached) = self.rate_reached() {
            let _ = writeln!(
                s,
                "open loop   asked {} req/s  sent {} of {} due{}: {}",
                number_text(o.rate),
                t.sent,
                t.sent + t.unsent,
                match self.achieved_rate() {
                    Some(r) => format!(" ({r:.0} req/s)"),
                    None => String::new(),
                },
                if reached {
                    "reached"
                } else {
                    "NOT REACHED, the rest never went out (every connection was full)"
                }
            );
        }
        let _ = writeln!(
            s,
            "connections up {}  refused {}  reset {}  timed out {}  closed by server {}  other {}{}",
            t.connected,
            t.refused,
            t.reset,
            t.timed_out,
            t.closed,
            t.other,
            if t.reopened > 0 {
                format!("  reopened {} (closed by the server as it said)", t.reopened)
            } else {
                String::new()
            }
        );
        if self.has_rate() {
            let _ = writeln!(
                s,
                "throughput  {:.0} req/s  {:.2} MB/s  over {}",
                self.requests_per_second(),
                self.megabytes_per_second(),
                human_time(t.load_time)
            );
        } else if t.checked == 0 {
            let _ = writeln!(s, "throughput  none: no reply was right");
        } else {
            let _ = writeln!(
                s,
                "throughput  none: {} replies over {}, too short a time for a rate",
                t.checked,
                human_time(t.load_time)
            );
        }
        let mut line = String::from("latency    ");
        if t.latency.is_empty() {
            line.push_str(" none: no reply was right");
        } else {
            for (label, q) in PERCENTILES {
                let _ = write!(line, " {label} {}", human_us(self.latency_us(q)));
            }
            let _ = write!(line, " max {}", human_us(self.max_us()));
        }
        s.push_str(&line);
        s.push('\n');
        for (i, m) in t.mismatches.iter().enumerate() {
            s.push_str(&m.describe(i + 1, t.wrong));
        }
        if let Some(reason) = self.stop_reason() {
            let _ = writeln!(s, "{reason}");
        }
        let verdict = match (self.failed(), self.rate_reached()) {
            (true, _) => "FAILED",
            (false, Some(false)) => "ok, but below the asked rate",
            (false, _) => "ok",
        };
        let _ = writeln!(s, "{verdict}");
        s
    }

    /// One JSON object on one line.
    pub fn json(&self) -> String {
        let (o, t) = (&self.options, &self.tally);
        let mut s = String::from("{");
        let _ = write!(s, "\"protocol\":\"{}\",", if o.udp { "udp" } else { "tcp" });
        // A socket address has no character JSON must escape.
        let _ = write!(s, "\"addr\":\"{}\",\"expect\":\"{}\",", o.addr, o.expect);
        if let Some(target) = &o.http {
            let _ = write!(
                s,
                "\"url\":{},\"method\":{},\"close_each\":{},",
                json_string(&target.url),
                json_string(&target.method),
                target.close_each
            );
        }
        let _ = write!(s, "\"check\":\"{}\",", t.check.name());
        match t.check {
            Check::Framing { status } => {
                let _ = write!(s, "\"first_status\":{status},");
            }
            _ => s.push_str("\"first_status\":null,"),
        }
        let _ = write!(
            s,
            "\"connections\":{},\"idle\":{},\"pipeline\":{},\"size\":{},",
            o.connections, o.idle, o.pipeline, o.size
        );
        match o.rate {
            Some(r) => {
                let _ = write!(s, "\"rate\":{},", number(r));
            }
            None => s.push_str("\"rate\":null,"),
        }
        let _ = write!(
            s,
            "\"sent\":{},\"checked\":{},\"wrong\":{},\"unanswered\":{},\"udp_lost\":{},\"udp_late\":{},",
            t.sent, t.checked, t.wrong, t.unanswered, t.udp_lost, t.udp_late
        );
        let _ = write!(
            s,
            "\"connected\":{},\"reopened\":{},\"errors\":{{\"refused\":{},\"reset\":{},\"timed_out\":{},\"closed\":{},\"other\":{}}},",
            t.connected, t.reopened, t.refused, t.reset, t.timed_out, t.closed, t.other
        );
        // No rate is null, not 0: a script must not average a non-measurement in.
        let rate = |x: f64| {
            if self.has_rate() {
                number(x)
            } else {
                "null".into()
            }
        };
        let _ = write!(
            s,
            "\"unsent\":{},\"rate_reached\":{},\"achieved_rate\":{},",
            t.unsent,
            self.rate_reached()
                .map_or("null".to_string(), |r| r.to_string()),
            self.achieved_rate().map_or("null".to_string(), number)
        );
        let _ = write!(
            s,
            "\"load_seconds\":{},\"requests_per_second\":{},\"megabytes_per_second\":{},",
            number(t.load_time.as_secs_f64()),
            rate(self.requests_per_second()),
            rate(self.megabytes_per_second())
        );
        s.push_str("\"latency_us\":{");
        for (label, q) in PERCENTILES {
            let _ = write!(s, "\"{label}\":{},", number(self.latency_us(q)));
        }
        let _ = write!(s, "\"max\":{}}},", number(self.max_us()));
        s.push_str("\"wrong_samples\":[");
        for (i, m) in t.mismatches.iter().enumerate() {
            let from = m.first_difference().saturating_sub(16);
            let from = if m.why.is_some() { 0 } else { from };
            let _ = write!(
                s,
                "{}{{\"request\":{},\"expected\":{},\"got\":{},\"why\":{}}}",
                if i > 0 { "," } else { "" },
                json_string(&excerpt(&m.request, 0)),
                json_string(&excerpt(&m.expected, from)),
                json_string(&excerpt(&m.got, from)),
                m.why.as_deref().map_or("null".to_string(), json_string)
            );
        }
        s.push_str("],");
        match t.stopped_early {
            Some(stop) => {
                let _ = write!(s, "\"stopped_early\":\"{}\",", stop.name());
            }
            None => s.push_str("\"stopped_early\":null,"),
        }
        match self.suggested_service() {
            Some(other) => {
                let _ = write!(s, "\"suggest_expect\":\"{other}\",");
            }
            None => s.push_str("\"suggest_expect\":null,"),
        }
        let _ = write!(s, "\"failed\":{}}}", self.failed());
        s
    }
}

/// A rate as it was asked: `1000`, `1000000000000`, `0.5` (no trailing `.0`); empty when there is none.
fn number_text(rate: Option<f64>) -> String {
    rate.map_or(String::new(), |r| format!("{r}"))
}

fn per_second(count: f64, time: Duration) -> f64 {
    if time.is_zero() {
        0.0
    } else {
        count / time.as_secs_f64()
    }
}

/// A finite JSON number (JSON has no NaN or infinity), to three decimals.
fn number(x: f64) -> String {
    if x.is_finite() {
        format!("{:.3}", x)
    } else {
        "null".into()
    }
}

/// A JSON string of `text`: quotes, backslashes and control characters escaped.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Seconds to a hundredth above a tenth of a second; milliseconds below, so a short run does not read
/// "0.00 s".
fn human_time(d: Duration) -> String {
    if d >= Duration::from_millis(100) {
        format!("{:.2} s", d.as_secs_f64())
    } else {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    }
}

fn human_us(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(checked: u64, load_time: Duration) -> Report {
        let mut tally = Tally::new();
        tally.sent = checked.max(50);
        tally.checked = checked;
        tally.wrong = tally.sent - checked;
        tally.request_bytes = 64 * tally.sent;
        tally.reply_bytes = 64 * checked;
        tally.load_time = load_time;
        Report::new(&LoadOptions::default(), tally, load_time)
    }

    #[test]
    fn no_rate_over_no_time_or_without_a_right_reply() {
        for r in [
            report(0, Duration::from_millis(300)),
            report(3, Duration::from_micros(400)),
        ] {
            assert!(!r.has_rate());
            assert_eq!(r.requests_per_second(), 0.0);
            assert_eq!(r.megabytes_per_second(), 0.0);
            assert!(!r.text().contains("req/s"), "{}", r.text());
            assert!(r.text().contains("throughput  none"), "{}", r.text());
            assert!(r.json().contains("\"requests_per_second\":null"));
            assert!(r.json().contains("\"megabytes_per_second\":null"));
        }
        assert!(report(3, Duration::from_micros(400))
            .text()
            .contains("3 replies over 0.40 ms, too short a time for a rate"));
        let fine = report(50, Duration::from_millis(20));
        assert!(fine.has_rate());
        assert_eq!(fine.requests_per_second(), 2500.0);
        assert!(fine.text().contains("2500 req/s"), "{}", fine.text());
        assert!(fine.text().contains("over 20.00 ms"), "{}", fine.text());
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\u{1}"), "\"a\\\"b\\\\c\\u0001\"");
    }
}
