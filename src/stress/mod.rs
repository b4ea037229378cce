//! socklab-stress: the load generator that checks every reply. It drives many TCP connections (or UDP
//! sockets) from one mio event loop on one thread, sends each service's own requests
//! ([`Service::load_request`]: lines of lowercase text, or HTTP `GET`s), checks every reply against what the
//! service must make of the request (byte for byte, or by [`Service::same_reply`] where replies rightly
//! vary), and measures latency into an HdrHistogram. When replies are wrong it shows the first few and names
//! the service they fit; when nothing is left to carry the load it stops early and says why.
//! Usage, flags and measured figures: `docs/client-and-stress.md` (chapter 8, `docs/08-measuring.md`, puts it in context).
//!
//! Given an `http://` URL instead ([`http`]), it loads any HTTP/1.1 server, checking every response's framing
//! and its status against the server's own first answer.
//!
//! One file per idea: [`payload`] (what is sent and expected), `driver.rs` (the one event loop, and the
//! `Transport` interface that is all that differs between protocols), [`tcp`] and [`udp`] (the two
//! transports), `replies.rs` (how a TCP connection's replies are checked as they arrive), [`http`] (a URL's
//! request, and HTTP/1.1's framing read for any server), `schedule.rs` (when each request is due and when
//! the load ends), [`mismatch`] (what a wrong
//! reply looked like and which service it fits), [`latency`] (the latency distribution as HdrHistogram's
//! `.hgrm` text and as an SVG percentile plot), [`limits`] (open files and source addresses), [`report`] (the
//! counts and their text and JSON), [`progress`] (the live bar on a terminal), [`timer`] (the open loop's
//! precise wake-up), [`target`] (where the load goes: `--addr`).
//!
//! # Closed and open loop
//! Closed loop (no `--rate`): each connection keeps `--pipeline` requests in flight and sends the next one
//! when a reply completes; it measures how fast the server can go. Open loop (`--rate R`): request `k` is
//! *due* at `k / R` seconds, whatever the server is doing, and its latency is measured from that intended
//! time, not from when a free connection finally sent it. A server that stalls for a second therefore shows a
//! second of latency on every request it delayed, instead of hiding it by slowing the sender down
//! (coordinated omission). `--pipeline` still caps what one connection has in flight; due requests wait in a
//! backlog that is only a counter, since their intended times follow from their numbers. The run ends at its
//! duration whatever the backlog holds, as wrk2's does: requests still waiting then were never sent, and the
//! report says the asked rate was not reached and what rate was (`Tally::unsent`). The loop wakes for
//! each due batch on a timerfd, not on epoll's millisecond timeout, so the tool's own timer slack stays in
//! the microseconds.

mod driver;
pub mod http;
pub mod latency;
pub mod limits;
pub mod mismatch;
pub mod payload;
pub mod progress;
mod replies;
pub mod report;
mod schedule;
pub mod target;
pub mod tcp;
pub mod timer;
pub mod udp;

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::service::{Clock, Service, Step};
use mismatch::Mismatch;
pub use report::Report;

/// When the load stops.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Stop {
    /// After this long.
    Duration(Duration),
    /// After this many requests in all.
    Requests(u64),
}

/// Everything one run is asked to do.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub addr: SocketAddr,
    pub udp: bool,
    /// Connections (or UDP sockets) that carry requests.
    pub connections: usize,
    /// Requests in flight per connection (closed loop), or the most one may hold (open loop).
    pub pipeline: usize,
    /// Bytes per request, its newline included.
    pub size: usize,
    pub stop: Stop,
    /// Requests per second in all (open loop); `None` is closed loop.
    pub rate: Option<f64>,
    /// Extra TCP connections that say nothing (half of them send half a line and stop).
    pub idle: usize,
    /// The service the server runs: what every reply is checked against.
    pub expect: Service,
    /// How long to wait for a connection, a UDP reply (then it counts as lost), and the last replies.
    pub timeout: Duration,
    /// 127.0.0.x source addresses to spread connections over; `None` picks from the count.
    pub sources: Option<usize>,
    /// Check replies against the server's own answer to one request made before the load, rather than
    /// against what socklab's service says (`--learn-reply`): for another server of a protocol that answers
    /// every request alike.
    pub learn_reply: bool,
    /// An `http://` URL's request, sent instead of the service's (then `addr` is the URL's, and `size` and
    /// `expect` are not used): see [`http`].
    pub http: Option<http::HttpTarget>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            addr: SocketAddr::from(([127, 0, 0, 1], crate::net::DEFAULT_PORT)),
            udp: false,
            connections: 50,
            pipeline: 1,
            size: 64,
            stop: Stop::Duration(Duration::from_secs(5)),
            rate: None,
            idle: 0,
            expect: Service::default(),
            timeout: Duration::from_secs(2),
            sources: None,
            learn_reply: false,
            http: None,
        }
    }
}

impl LoadOptions {
    /// Rejects settings no run can honour, with a message for the person who chose them.
    pub fn validate(&self) -> Result<(), String> {
        if self.connections == 0 {
            return Err("--connections must be at least 1".into());
        }
        if self.stop == Stop::Requests(0) {
            return Err(
                "--requests must be at least 1: a run of no request measures nothing".into(),
            );
        }
        if self.connections.saturating_add(self.idle) > MAX_SOCKETS {
            return Err(format!(
                "--connections and --idle come to more than {MAX_SOCKETS} sockets, more than one process can open \
                 (Linux's fs.nr_open)"
            ));
        }
        if self.pipeline == 0 || self.pipeline > MAX_PIPELINE {
            return Err(format!("--pipeline must be 1 to {MAX_PIPELINE}"));
        }
        if self.size == 0 || self.size > payload::MAX_SIZE {
            return Err(format!("--size must be 1 to {} bytes", payload::MAX_SIZE));
        }
        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate > 0.0) {
                return Err("--rate must be a positive number of requests per second".into());
            }
        }
        if self.udp && self.idle > 0 {
            return Err("--idle connections are TCP only".into());
        }
        if self.udp && self.expect.datagrams().is_none() {
            return Err(tcp_only(self.expect));
        }
        if self.timeout.is_zero() {
            return Err("--timeout must be more than 0".into());
        }
        if let Some(target) = &self.http {
            return self.validate_url(target);
        }
        if self.learn_reply && (self.udp || !payload::answers_alike(self.expect, self.size)) {
            return Err(format!(
                "--learn-reply needs a TCP service that answers every request alike (http); {} over {} does not",
                self.expect,
                if self.udp { "UDP" } else { "TCP" }
            ));
        }
        if !self.udp {
            // A request the service answers by closing (too long a target for `http`) would end every
            // connection at its first reply: no load at all.
            let request = self.expect.load_request(0, self.size);
            let mut session = self.expect.session();
            let mut reply = Vec::new();
            if session.feed(&Clock::new(), &request, &mut reply) == Step::Close {
                return Err(format!(
                    "--size {}: the {} service answers a request this large by closing the connection (with {}): \
                     use a smaller --size",
                    self.size,
                    self.expect,
                    mismatch::excerpt(&reply, 0)
                ));
            }
        }
        Ok(())
    }

    /// The rules for an `http://` URL's run, in place of the service's.
    fn validate_url(&self, target: &http::HttpTarget) -> Result<(), String> {
        target.validate()?;
        if self.udp {
            return Err("an http:// URL is served over TCP: leave out --udp".into());
        }
        if self.learn_reply {
            return Err(
                "--learn-reply is for --addr: with a URL every response is checked against the server's \
                 first answer already"
                    .into(),
            );
        }
        if target.close_each && self.pipeline > 1 {
            return Err(
                "--close-each sends one request per connection and waits for its response: --pipeline must \
                 be 1"
                    .into(),
            );
        }
        if target.body.len() > MAX_BODY {
            return Err(format!("--body is at most {} KiB", MAX_BODY / 1024));
        }
        Ok(())
    }

    fn sockets(&self) -> usize {
        self.connections.saturating_add(self.idle)
    }
}

/// The words for `--udp` with a service that answers no datagrams, the same in both tools.
pub fn tcp_only(service: Service) -> String {
    format!(
        "--expect {service} is TCP only: a server of it binds no UDP socket, so leave out --udp"
    )
}

/// The largest `--body`: every connection keeps `--pipeline` copies of its request ready to write.
pub const MAX_BODY: usize = 1 << 20;

/// The most sockets one run opens: Linux's default ceiling on one process's descriptors (`fs.nr_open`).
pub const MAX_SOCKETS: usize = 1 << 20;

/// The deepest pipeline: each connection keeps room for this many requests and their bookkeeping.
pub const MAX_PIPELINE: usize = 1 << 16;

/// A live view of a run, passed to the observer a few times a second (for a progress bar).
#[derive(Clone, Copy, Debug)]
pub struct Live {
    pub elapsed: Duration,
    pub connected: u64,
    pub sent: u64,
    pub checked: u64,
    pub wrong: u64,
    pub errors: u64,
    /// How many requests the run will send in all, when that is known.
    pub total: Option<u64>,
}

/// How often the observer hears about a run.
const LIVE_EVERY: Duration = Duration::from_millis(200);

/// Runs the load described by `options`: checks the system can hold it, connects, runs, drains, reports.
/// `observer` sees the counts every `LIVE_EVERY`.
pub fn run(options: &LoadOptions, observer: &mut dyn FnMut(&Live)) -> io::Result<Report> {
    options
        .validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    limits::raise_open_files(options.sockets())?;
    let sources = plan_sources(options)?;
    let started = Instant::now();
    let tally = if options.udp {
        udp::run(options, &sources, observer)?
    } else {
        tcp::run(options, &sources, observer)?
    };
    let mut report = Report::new(options, tally, started.elapsed());
    // Every datagram met "port unreachable": a server that serves TCP only, or none at all? One connect tells.
    if options.udp && report.tally.connected == 0 && report.tally.refused > 0 {
        report.tcp_answers = Some(target::tcp_answers(options.addr, options.timeout));
    }
    Ok(report)
}

/// The local addresses connections bind to before connecting, used round-robin. Empty means "let connect
/// choose", which is best when one address is enough: an explicit bind reserves the port for every
/// destination, a plain connect shares it.
fn plan_sources(options: &LoadOptions) -> io::Result<Vec<SocketAddr>> {
    let sockets = options.sockets();
    let loopback_v4 = matches!(options.addr.ip(), IpAddr::V4(ip) if ip.is_loopback());
    let count = options
        .sources
        .unwrap_or_else(|| limits::sources_for(sockets));
    if let Some(ports) = limits::ephemeral_ports() {
        let per_source = sockets.div_ceil(if loopback_v4 { count.max(1) } else { 1 });
        if per_source > ports {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{sockets} sockets need {per_source} local ports per source address but only {ports} \
                     exist (ip_local_port_range){}",
                    if loopback_v4 { ": use more --sources" } else { "" }
                ),
            ));
        }
    }
    if !loopback_v4 || count <= 1 {
        return Ok(Vec::new());
    }
    let count = count.min(254);
    log::info!("spreading {sockets} sockets over source addresses 127.0.0.1 to 127.0.0.{count}");
    Ok((1..=count as u8)
        .map(|x| SocketAddr::from((Ipv4Addr::new(127, 0, 0, x), 0)))
        .collect())
}

/// What a run counted. Every request sent ends as exactly one of: checked, wrong, unanswered, UDP lost.
#[derive(Clone, Debug)]
pub struct Tally {
    /// Connections (or UDP sockets) that were established, idle ones included.
    pub connected: u64,
    pub sent: u64,
    /// Replies that matched byte for byte.
    pub checked: u64,
    /// Replies that did not. Over TCP the stream is out of step after one, so that connection is closed.
    pub wrong: u64,
    /// Requests whose connection failed or closed, or whose reply had not come when the run ended.
    pub unanswered: u64,
    /// Connections refused (TCP) or met with "port unreachable" (UDP).
    pub refused: u64,
    /// Connections reset by the server.
    pub reset: u64,
    /// Connections that did not connect in time, or still waited for replies when the run ended.
    pub timed_out: u64,
    /// Connections the server closed while the run still used them.
    pub closed: u64,
    /// Connections that failed in any other way.
    pub other: u64,
    /// UDP requests with no reply within the timeout.
    pub udp_lost: u64,
    /// UDP replies that came after their request was counted lost (not wrong, not checked).
    pub udp_late: u64,
    /// Connections the server closed after a response, as it said it would (HTTP's `Connection: close`),
    /// and that were opened again for the requests still owed.
    pub reopened: u64,
    /// What every reply was checked against.
    pub check: Check,
    /// Open loop: requests that fell due within the run but were never sent, because every connection
    /// already held `--pipeline` requests when the run ended. More than 0: the asked rate was not reached.
    pub unsent: u64,
    pub request_bytes: u64,
    pub reply_bytes: u64,
    /// From the start of the load (every connection settled) to its last checked reply.
    pub load_time: Duration,
    /// Nanoseconds from each request's intended send time to the end of its reply.
    pub latency: Histogram<u64>,
    /// The first few wrong replies ([`mismatch::KEPT`]), to show what went wrong.
    pub mismatches: Vec<Mismatch>,
    /// Why the load ended before its duration or request count, if it did.
    pub stopped_early: Option<EarlyStop>,
}

/// What a run checked its replies against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// What the service (`--expect`) sends for each request.
    Service,
    /// The server's own answer to one request made first (`--learn-reply`).
    Learned,
    /// An `http://` URL whose server is socklab's `http` service: what it sends, byte for byte but the `Date`.
    SocklabHttp,
    /// An `http://` URL of another server: each response's framing, and its status against the first
    /// answer's.
    Framing { status: u16 },
}

impl Check {
    /// The name scripts see (`--json`).
    pub fn name(self) -> &'static str {
        match self {
            Check::Service => "service",
            Check::Learned => "learned_reply",
            Check::SocklabHttp => "socklab_http",
            Check::Framing { .. } => "http_framing",
        }
    }
}

/// Why a run ended before it was due to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EarlyStop {
    /// Every reply so far was wrong and none right, at least one per connection: the server is not
    /// serving what `--expect` says (over TCP each connection closed at its wrong reply).
    OnlyWrongReplies,
    /// Every connection (or UDP socket) failed or was closed, not only by wrong replies.
    NoConnectionLeft,
}

impl EarlyStop {
    /// The name scripts see (`--json`).
    pub fn name(self) -> &'static str {
        match self {
            EarlyStop::OnlyWrongReplies => "only_wrong_replies",
            EarlyStop::NoConnectionLeft => "no_connection_left",
        }
    }
}

impl Tally {
    fn new() -> Tally {
        Tally {
            connected: 0,
            sent: 0,
            checked: 0,
            wrong: 0,
            unanswered: 0,
            refused: 0,
            reset: 0,
            timed_out: 0,
            closed: 0,
            other: 0,
            udp_lost: 0,
            udp_late: 0,
            reopened: 0,
            check: Check::Service,
            unsent: 0,
            request_bytes: 0,
            reply_bytes: 0,
            load_time: Duration::ZERO,
            // 1 ns to 100 s at three significant digits: about 0.1% error, a few hundred KiB, fixed.
            latency: Histogram::new_with_bounds(1, 100_000_000_000, 3)
                .expect("valid histogram bounds"),
            mismatches: Vec::new(),
            stopped_early: None,
        }
    }

    /// Whether another wrong reply should be kept for the report.
    fn wants_mismatch(&self) -> bool {
        self.mismatches.len() < mismatch::KEPT
    }

    /// Why the load is ending early, once nothing is left to carry it: wrong replies alone, or failures.
    fn early_stop(&self) -> EarlyStop {
        if self.checked == 0 && self.wrong > 0 {
            EarlyStop::OnlyWrongReplies
        } else {
            EarlyStop::NoConnectionLeft
        }
    }

    /// Failed connections of every kind.
    pub fn errors(&self) -> u64 {
        self.refused + self.reset + self.timed_out + self.closed + self.other
    }

    /// Requests sent and not yet settled one way or another. (Saturating: a wrong reply nobody asked for
    /// settles no request.)
    fn outstanding(&self) -> u64 {
        self.sent
            .saturating_sub(self.checked + self.wrong + self.unanswered + self.udp_lost)
    }

    /// Counts a failed connection under the kind of its error.
    fn fail(&mut self, e: &io::Error) {
        match e.kind() {
            io::ErrorKind::ConnectionRefused => self.refused += 1,
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => self.reset += 1,
            io::ErrorKind::TimedOut => self.timed_out += 1,
            io::ErrorKind::UnexpectedEof => self.closed += 1,
            _ => {
                log::debug!("connection failed: {e}");
                self.other += 1
            }
        }
    }

    fn live(&self, elapsed: Duration, total: Option<u64>) -> Live {
        Live {
            elapsed,
            connected: self.connected,
            sent: self.sent,
            checked: self.checked,
            wrong: self.wrong,
            errors: self.errors(),
            total,
        }
    }
}

/// Nanoseconds from `start` to `now`.
fn nanos(start: Instant, now: Instant) -> u64 {
    now.saturating_duration_since(start)
        .as_nanos()
        .min(u64::MAX as u128) as u64
}
