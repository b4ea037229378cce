//! How one TCP connection's replies are checked as their bytes arrive, in whatever pieces. Replies on one
//! stream come back in request order, so a connection keeps its requests in flight in a queue ([`Replies`])
//! and checks what arrives against the head's reply, in one of two ways:
//!
//! - **Against the service's bytes** ([`Payloads`]): each arriving byte is compared with the next expected
//!   byte of the head's reply, so for a service whose replies are fixed bytes nothing is buffered but a
//!   cursor. A service whose replies vary (an HTTP `Date`) has each connection hold its head reply, in one
//!   buffer reused for every reply, until the service can judge it whole (`payload.rs` says how the two kinds
//!   are told apart). A service's greeting is checked once, before the first reply.
//! - **By HTTP's framing** ([`HttpRule`]), for an HTTP server that is not socklab (`http.rs`): each response is
//!   read to its end by its own framing, and its status must be the first answer's.
//!
//! Walk-through: `docs/08-measuring.md`.

use std::collections::VecDeque;

use super::http::{ResponseReader, MAX_HEAD};
use super::mismatch::{self, Mismatch};
use super::payload::Payloads;
use super::Tally;

/// A request in flight: which one it was and when it was meant to be sent.
#[derive(Clone, Copy, Debug)]
pub(super) struct Inflight {
    pub variant: u16,
    pub intended_ns: u64,
}

/// What another HTTP server's responses are checked against: their framing, and the status of its first
/// answer, which is kept to show beside a wrong one.
#[derive(Debug)]
pub(super) struct HttpRule {
    pub status: u16,
    pub first: Vec<u8>,
}

/// The most of the first answer shown beside a wrong response.
const FIRST_SHOWN: usize = 4096;

/// How the stream ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum AtEnd {
    /// As the server said it would, after a whole response: open another connection for the requests still
    /// owed, if any.
    Expected,
    /// Inside a reply: that reply is wrong (cut short).
    Wrong,
    /// With requests unanswered and no word of it: a failed connection.
    Unexpected,
}

/// One connection's requests in flight and how far their replies have come.
pub(super) struct Replies {
    pub inflight: VecDeque<Inflight>,
    /// Bytes of the head request's reply already received and found right.
    matched: usize,
    /// Bytes of the service's greeting received (a connection's first bytes).
    greeted: usize,
    /// The head reply's bytes so far, when replies vary: it is judged whole once complete. Its capacity is
    /// the longest reply, taken once, so holding costs no allocation per request.
    held: Vec<u8>,
    /// A reply has been checked on this connection: the next wrong one is not its first.
    answered: bool,
    /// When this connection last saw a reply complete, or began waiting for one (ns since the load began).
    /// A connection waiting longer than the timeout has stalled: it is counted timed out and closed, so a
    /// server that stops answering ends the run instead of hanging it.
    pub progress_ns: u64,
    /// HTTP framing, for [`HttpRule`].
    reader: ResponseReader,
    /// The last response said the server closes the connection after it: no more requests go on this
    /// connection, and its close is no failure.
    pub closing: bool,
}

impl Replies {
    /// For a connection of `pipeline` requests; `held` bytes kept for a varying reply, `head` for an HTTP
    /// response head that comes in pieces (each 0 when the run has none), `head_request` when every request
    /// is a `HEAD`.
    pub fn new(pipeline: usize, held: usize, head: usize, head_request: bool) -> Replies {
        Replies {
            inflight: VecDeque::with_capacity(pipeline),
            matched: 0,
            greeted: 0,
            held: Vec::with_capacity(held),
            answered: false,
            progress_ns: 0,
            reader: ResponseReader::new(head_request, head.min(MAX_HEAD)),
            closing: false,
        }
    }

    /// A new connection for the same requests: nothing of a reply has come on it yet.
    pub fn restart(&mut self, now_ns: u64) {
        self.matched = 0;
        self.greeted = 0;
        self.held.clear();
        self.answered = false;
        self.reader.reset();
        self.closing = false;
        self.progress_ns = now_ns;
    }

    /// Matches `data` against what is expected next. At a wrong byte (including bytes no request asked for)
    /// or a response that cannot be framed it fails, with the wrong reply if the run still keeps them; the
    /// stream is out of step after it. (A well-framed HTTP response of another status is counted wrong here
    /// and the connection goes on.)
    pub fn check(
        &mut self,
        data: &[u8],
        payloads: &Payloads,
        http: Option<&HttpRule>,
        tally: &mut Tally,
        now_ns: u64,
    ) -> Result<(), Option<Mismatch>> {
        match http {
            Some(rule) => self.check_http(data, payloads, rule, tally, now_ns),
            None => self.check_bytes(data, payloads, tally, now_ns),
        }
    }

    /// The end of the stream: what it means for the replies still owed.
    pub fn at_end(
        &mut self,
        payloads: &Payloads,
        http: Option<&HttpRule>,
        tally: &mut Tally,
        now_ns: u64,
    ) -> AtEnd {
        let Some(rule) = http else {
            // A reply cut short is a wrong reply, not merely a missing one.
            if self.mid_reply(payloads) {
                if tally.wants_mismatch() {
                    let before = self.accepted_of_head(payloads);
                    tally.mismatches.push(self.mismatch(payloads, before, &[]));
                }
                return AtEnd::Wrong;
            }
            return AtEnd::Unexpected;
        };
        match self.reader.eof() {
            // A body that runs to the close ends with it.
            Ok(Some(response)) => {
                self.settle_http(response.status, &[], payloads, rule, tally, now_ns);
                AtEnd::Expected
            }
            // Between responses: as announced, or with nothing owed (a server may close an idle connection).
            Ok(None) if self.closing || self.inflight.is_empty() => AtEnd::Expected,
            Ok(None) => AtEnd::Unexpected,
            Err(fault) => {
                if tally.wants_mismatch() {
                    tally
                        .mismatches
                        .push(self.http_mismatch(payloads, rule, &[], fault.why));
                }
                AtEnd::Wrong
            }
        }
    }

    /// See [`Replies::check`]: bytes a reply always has are compared as they arrive; a reply whose later bytes
    /// vary (see [`Payloads::steady`]) is also held until its last byte, then judged whole by the service.
    fn check_bytes(
        &mut self,
        mut data: &[u8],
        payloads: &Payloads,
        tally: &mut Tally,
        now_ns: u64,
    ) -> Result<(), Option<Mismatch>> {
        let greeting = payloads.greeting();
        if self.greeted < greeting.len() && !data.is_empty() {
            let expected = &greeting[self.greeted..];
            let n = expected.len().min(data.len());
            if data[..n] != expected[..n] {
                return Err(tally
                    .wants_mismatch()
                    .then(|| self.mismatch(payloads, &[], data)));
            }
            self.greeted += n;
            data = &data[n..];
            if self.greeted == greeting.len() {
                tally.reply_bytes += greeting.len() as u64;
            }
        }
        while !data.is_empty() {
            let Some(head) = self.inflight.front().copied() else {
                return Err(tally
                    .wants_mismatch()
                    .then(|| self.mismatch(payloads, &[], data)));
            };
            let variant = head.variant as usize;
            let reply = payloads.reply(variant);
            let n = (reply.len() - self.matched).min(data.len());
            let steady = payloads.steady(variant).saturating_sub(self.matched).min(n);
            if data[..steady] != reply[self.matched..self.matched + steady] {
                let before = self.accepted_of_head(payloads);
                return Err(tally
                    .wants_mismatch()
                    .then(|| self.mismatch(payloads, before, data)));
            }
            if !payloads.exact() {
                self.held.extend_from_slice(&data[..n]);
            }
            self.matched += n;
            data = &data[n..];
            if self.matched < reply.len() {
                continue;
            }
            if !payloads.exact() && !payloads.same_reply(variant, &self.held) {
                return Err(tally
                    .wants_mismatch()
                    .then(|| self.mismatch(payloads, &self.held, data)));
            }
            self.held.clear();
            tally
                .latency
                .saturating_record(now_ns.saturating_sub(head.intended_ns).max(1));
            tally.checked += 1;
            tally.reply_bytes += reply.len() as u64;
            self.matched = 0;
            self.answered = true;
            self.inflight.pop_front();
            self.progress_ns = now_ns;
        }
        Ok(())
    }

    /// See [`Replies::check`]: each response read by its framing, its status compared with the first answer's.
    fn check_http(
        &mut self,
        mut data: &[u8],
        payloads: &Payloads,
        rule: &HttpRule,
        tally: &mut Tally,
        now_ns: u64,
    ) -> Result<(), Option<Mismatch>> {
        // Where the response being read began in `data`, when it began there: shown if it is wrong.
        let mut began = (!self.reader.mid_response()).then_some(data);
        while !data.is_empty() {
            let why = if self.closing {
                Some(
                    "bytes after a response that said the server closes the connection".to_string(),
                )
            } else if self.inflight.is_empty() {
                Some("a response no request asked for".to_string())
            } else {
                None
            };
            if let Some(why) = why {
                return Err(tally
                    .wants_mismatch()
                    .then(|| self.http_mismatch(payloads, rule, data, why)));
            }
            match self.reader.feed(data) {
                Err(fault) => {
                    let from = began.unwrap_or(&data[fault.at.min(data.len())..]);
                    return Err(tally
                        .wants_mismatch()
                        .then(|| self.http_mismatch(payloads, rule, from, fault.why)));
                }
                Ok((used, done)) => {
                    tally.reply_bytes += used as u64;
                    let whole = began.map_or(&[][..], |b| &b[..b.len() - data.len() + used]);
                    data = &data[used..];
                    if let Some(response) = done {
                        self.settle_http(response.status, whole, payloads, rule, tally, now_ns);
                        self.closing = response.closes;
                        began = Some(data);
                    }
                }
            }
        }
        Ok(())
    }

    /// A whole response to the head request: right if its status is the first answer's, wrong otherwise
    /// (`got` is what of it is still at hand, to show).
    fn settle_http(
        &mut self,
        status: u16,
        got: &[u8],
        payloads: &Payloads,
        rule: &HttpRule,
        tally: &mut Tally,
        now_ns: u64,
    ) {
        if status == rule.status {
            if let Some(head) = self.inflight.front() {
                tally
                    .latency
                    .saturating_record(now_ns.saturating_sub(head.intended_ns).max(1));
            }
            tally.checked += 1;
        } else {
            tally.wrong += 1;
            if tally.wants_mismatch() {
                let why = format!(
                    "status {status} where the server's first answer had {}",
                    rule.status
                );
                let kept = self.http_mismatch(payloads, rule, got, why);
                tally.mismatches.push(kept);
            }
        }
        self.answered = true;
        self.inflight.pop_front();
        self.progress_ns = now_ns;
    }

    /// Whether the stream stopped inside the greeting or a reply (service's bytes).
    fn mid_reply(&self, payloads: &Payloads) -> bool {
        self.matched > 0 || (self.greeted > 0 && self.greeted < payloads.greeting().len())
    }

    /// The head reply's bytes received so far, all found right.
    fn accepted_of_head<'p>(&'p self, payloads: &'p Payloads) -> &'p [u8] {
        match self.inflight.front() {
            Some(_) if !payloads.exact() => &self.held,
            Some(head) => &payloads.reply(head.variant as usize)[..self.matched],
            None => &[],
        }
    }

    /// The head request's wrong reply: `before` is what had come of it and was right, `rest` the bytes
    /// from where checking stopped. The first reply on a connection is shown with the greeting.
    fn mismatch(&self, payloads: &Payloads, before: &[u8], rest: &[u8]) -> Mismatch {
        let head = self.inflight.front();
        let request = head.map_or(&[][..], |h| payloads.request(h.variant as usize));
        let reply = head.map_or(&[][..], |h| payloads.reply(h.variant as usize));
        let first = !self.answered;
        let greeting = if first { payloads.greeting() } else { &[] };
        let expected = [greeting, reply].concat();
        let greeted = &greeting[..self.greeted.min(greeting.len())];
        let mut got = [greeted, before, rest].concat();
        got.truncate(expected.len() + mismatch::EXTRA);
        Mismatch {
            request: request.to_vec(),
            expected,
            got,
            first,
            why: None,
        }
    }

    /// A wrong HTTP response: `why`, beside the server's first answer.
    fn http_mismatch(
        &self,
        payloads: &Payloads,
        rule: &HttpRule,
        got: &[u8],
        why: String,
    ) -> Mismatch {
        let request = self
            .inflight
            .front()
            .map_or(&[][..], |h| payloads.request(h.variant as usize));
        let expected = rule.first[..rule.first.len().min(FIRST_SHOWN)].to_vec();
        let got = got[..got.len().min(expected.len() + mismatch::EXTRA)].to_vec();
        Mismatch {
            request: request.to_vec(),
            expected,
            got,
            first: !self.answered,
            why: Some(why),
        }
    }
}
