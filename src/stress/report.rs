//! What a run found, as text for people and as one JSON object for scripts (written by hand: the numbers and
//! a few fixed strings need no serialisation library). The run failed if any reply was wrong or any
//! connection failed; UDP loss is reported but is what UDP allows, so it alone does not fail a run.
//!
//! Walk-through: `docs/08-measuring.md`.

use std::fmt::Write as _;
use std::time::Duration;

use super::{LoadOptions, Stop, Tally};

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
}

impl Report {
    pub fn new(options: &LoadOptions, tally: Tally, wall: Duration) -> Report {
        Report {
            options: options.clone(),
            tally,
            wall,
        }
    }

    /// True if any reply was wrong or any connection failed: the exit status says so.
    pub fn failed(&self) -> bool {
        self.tally.wrong > 0 || self.tally.errors() > 0
    }

    /// Checked replies per second of load.
    pub fn requests_per_second(&self) -> f64 {
        per_second(self.tally.checked as f64, self.tally.load_time)
    }

    /// Megabytes (10^6) per second of requests and replies together.
    pub fn megabytes_per_second(&self) -> f64 {
        per_second(
            (self.tally.request_bytes + self.tally.reply_bytes) as f64,
            self.tally.load_time,
        ) / 1e6
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

    /// A few lines for a person.
    pub fn text(&self) -> String {
        let (o, t) = (&self.options, &self.tally);
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} {} · {} {} · pipeline {} · {} B requests · {} · {} · expect {}{}",
            if o.udp { "udp" } else { "tcp" },
            o.addr,
            o.connections,
            if o.udp { "sockets" } else { "connections" },
            o.pipeline,
            o.size,
            match o.rate {
                Some(r) => format!("open loop {r} req/s"),
                None => "closed loop".into(),
            },
            match o.stop {
                Stop::Duration(d) => format!("{:.1} s", d.as_secs_f64()),
                Stop::Requests(n) => format!("{n} requests"),
            },
            o.expect,
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
        let _ = writeln!(
            s,
            "connections up {}  refused {}  reset {}  timed out {}  closed by server {}  other {}",
            t.connected, t.refused, t.reset, t.timed_out, t.closed, t.other
        );
        let _ = writeln!(
            s,
            "throughput  {:.0} req/s  {:.2} MB/s  over {:.2} s",
            self.requests_per_second(),
            self.megabytes_per_second(),
            t.load_time.as_secs_f64()
        );
        let mut line = String::from("latency    ");
        for (label, q) in PERCENTILES {
            let _ = write!(line, " {label} {}", human_us(self.latency_us(q)));
        }
        let _ = write!(line, " max {}", human_us(self.max_us()));
        s.push_str(&line);
        s.push('\n');
        let _ = writeln!(s, "{}", if self.failed() { "FAILED" } else { "ok" });
        s
    }

    /// One JSON object on one line.
    pub fn json(&self) -> String {
        let (o, t) = (&self.options, &self.tally);
        let mut s = String::from("{");
        let _ = write!(s, "\"protocol\":\"{}\",", if o.udp { "udp" } else { "tcp" });
        // A socket address has no character JSON must escape.
        let _ = write!(s, "\"addr\":\"{}\",\"expect\":\"{}\",", o.addr, o.expect);
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
            "\"connected\":{},\"errors\":{{\"refused\":{},\"reset\":{},\"timed_out\":{},\"closed\":{},\"other\":{}}},",
            t.connected, t.refused, t.reset, t.timed_out, t.closed, t.other
        );
        let _ = write!(
            s,
            "\"load_seconds\":{},\"requests_per_second\":{},\"megabytes_per_second\":{},",
            number(t.load_time.as_secs_f64()),
            number(self.requests_per_second()),
            number(self.megabytes_per_second())
        );
        s.push_str("\"latency_us\":{");
        for (label, q) in PERCENTILES {
            let _ = write!(s, "\"{label}\":{},", number(self.latency_us(q)));
        }
        let _ = write!(s, "\"max\":{}}},", number(self.max_us()));
        let _ = write!(s, "\"failed\":{}}}", self.failed());
        s
    }
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

fn human_us(us: f64) -> String {
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}
