//! What the load generator sends and what it must get back. A small fixed set of distinct requests is made
//! once ([`Service::load_request`]), with the reply each must become ([`Service::reply_to_stream`] for TCP,
//! [`Service::datagram`] for UDP). Sending a request is then a copy and checking a reply a comparison: no
//! formatting, no service call and no allocation per request, so the tool stays lighter than what it
//! measures.
//!
//! The requests differ from each other (each carries its own two-letter or two-digit tag), so a reply
//! delivered to the wrong request, repeated, or reordered does not pass as right. An `http://` URL's run has
//! one request instead, the URL's ([`Payloads::fixed`]), with what socklab's `http` service would answer.
//!
//! # Replies that vary
//! Most services' replies are fixed bytes, compared byte for byte as they arrive. Some carry bytes that
//! rightly change from one moment to the next (an HTTP `Date`), and [`Service::same_reply`] is the only
//! judge of those. Since a service sees the time only through the [`Clock`] it is handed, [`Payloads::new`]
//! finds out which kind a service is by making each reply at a few fixed, very different times: replies
//! that come out the same are exact; otherwise the bytes before the first one that changed
//! ([`Payloads::steady`]) are still compared as they arrive (so a reply that starts wrong is caught at
//! once), and the whole reply is held and given to `same_reply` when its last byte has come.
//!
//! A service that says something first (`hello`'s `Welcome!`) says it once per connection: it is kept
//! apart ([`Payloads::greeting`]), and each reply is what the service sends for its request after that.
//!
//! Walk-through: `docs/08-measuring.md`.

use crate::service::{Clock, Service, Step};

/// How many distinct requests there are. Consecutive requests on one connection use consecutive variants.
pub const VARIANTS: usize = 64;

/// The largest request: a UDP payload must fit one datagram, and a TCP line this long is already a stress.
pub const MAX_SIZE: usize = 65_507;

/// The fixed times each reply is also made at, to see whether it depends on the time: the Unix epoch (a
/// Thursday), a Friday a day, an hour, a minute and a second later, and a Tuesday in 2038. Every field of a
/// date differs between at least two of them, its first character included.
const PROBE_TIMES: [u64; 3] = [0, 86_400 + 3_661, 2_147_483_647];

/// The requests and the replies they must get, indexed by variant.
#[derive(Debug)]
pub struct Payloads {
    service: Service,
    requests: Vec<Vec<u8>>,
    replies: Vec<Vec<u8>>,
    /// For each variant, how many leading bytes of its reply never change; `None` when no reply varies.
    steady: Option<Vec<usize>>,
    greeting: Vec<u8>,
}

impl Payloads {
    /// `VARIANTS` requests of about `size` bytes for `service`, and their replies over TCP or UDP.
    pub fn new(size: usize, service: Service, udp: bool) -> Payloads {
        Payloads::made(service, udp, VARIANTS, |variant| {
            service.load_request(variant, size)
        })
    }

    /// One request, given, and the reply `service` sends for it over TCP: every request is this one (an
    /// `http://` URL's).
    pub fn fixed(service: Service, request: Vec<u8>) -> Payloads {
        Payloads::made(service, false, 1, |_| request.clone())
    }

    fn made(
        service: Service,
        udp: bool,
        variants: usize,
        request_of: impl Fn(usize) -> Vec<u8>,
    ) -> Payloads {
        let mut requests = Vec::with_capacity(variants);
        let mut replies = Vec::with_capacity(variants);
        let mut steady = Vec::with_capacity(variants);
        let greeting = if udp {
            Vec::new()
        } else {
            let mut out = Vec::new();
            service.session().greeting(&mut out);
            out
        };
        for variant in 0..variants {
            let request = request_of(variant);
            let reply = if udp {
                let mut out = Vec::with_capacity(request.len());
                service.datagram(&request, &mut out);
                out
            } else {
                let mut whole = service.reply_to_stream(&request);
                whole.drain(..greeting.len().min(whole.len()));
                whole
            };
            // Datagram replies take no clock, so only stream replies can vary.
            let unchanged = if udp {
                reply.len()
            } else {
                PROBE_TIMES
                    .iter()
                    .map(|&t| common_prefix(&reply, &reply_at(service, &request, t)))
                    .min()
                    .unwrap_or(reply.len())
            };
            requests.push(request);
            replies.push(reply);
            steady.push(unchanged);
        }
        let varies = steady.iter().zip(&replies).any(|(&s, r)| s < r.len());
        Payloads {
            service,
            requests,
            replies,
            steady: varies.then_some(steady),
            greeting,
        }
    }

    /// Makes `reply` (another server's answer to one request) what every request must get, judged whole
    /// by the service's rule when its last byte has come (for http: the same bytes but the `Date`). Only
    /// for a service that [`answers_alike`].
    pub fn learn(&mut self, reply: Vec<u8>) {
        self.replies = vec![reply; self.requests.len()];
        self.steady = Some(vec![0; self.requests.len()]);
    }

    /// Request `variant` (counted round the variants there are).
    pub fn request(&self, variant: usize) -> &[u8] {
        &self.requests[variant % self.requests.len()]
    }

    pub fn reply(&self, variant: usize) -> &[u8] {
        &self.replies[variant % self.replies.len()]
    }

    /// The longest request.
    pub fn longest_request(&self) -> usize {
        self.requests.iter().map(Vec::len).max().unwrap_or(0)
    }

    /// What the service says on every new connection before any reply (TCP; empty for most services).
    pub fn greeting(&self) -> &[u8] {
        &self.greeting
    }

    /// True when every reply is fixed bytes, compared byte for byte as they arrive.
    pub fn exact(&self) -> bool {
        self.steady.is_none()
    }

    /// How many leading bytes of `variant`'s reply are fixed, when replies vary: the rest is judged whole by
    /// [`Payloads::same_reply`].
    pub fn steady(&self, variant: usize) -> usize {
        match &self.steady {
            Some(steady) => steady[variant % steady.len()],
            None => self.reply(variant).len(),
        }
    }

    /// Whether `got` is `variant`'s reply, as the service judges it.
    pub fn same_reply(&self, variant: usize, got: &[u8]) -> bool {
        self.service.same_reply(self.reply(variant), got)
    }

    /// The longest reply.
    pub fn longest_reply(&self) -> usize {
        self.replies.iter().map(Vec::len).max().unwrap_or(0)
    }

    /// The variant whose reply `bytes` is, if any: tells a late UDP reply from a wrong one.
    pub fn variant_of_reply(&self, bytes: &[u8]) -> Option<usize> {
        self.replies
            .iter()
            .position(|r| self.service.same_reply(r, bytes))
    }
}

/// What `service` sends after its greeting for `request` on a new connection, at the fixed Unix time
/// `unix_seconds`.
fn reply_at(service: Service, request: &[u8], unix_seconds: u64) -> Vec<u8> {
    let clock = Clock::fixed(unix_seconds);
    let mut session = service.session();
    let mut greeting = Vec::new();
    session.greeting(&mut greeting);
    let mut out = Vec::with_capacity(request.len());
    if session.feed(&clock, request, &mut out) == Step::Continue {
        session.finish(&clock, &mut out);
    }
    out
}

/// Whether `service` gives every load request the same reply (but for what may vary), and no greeting: then
/// another server's answer to one of them can stand for all (`--learn-reply`).
pub fn answers_alike(service: Service, size: usize) -> bool {
    let p = Payloads::new(size, service, false);
    p.greeting.is_empty() && (0..VARIANTS).all(|v| service.same_reply(p.reply(0), p.reply(v)))
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_have_the_size_asked_and_differ() {
        let p = Payloads::new(40, Service::Upper, false);
        for v in 0..VARIANTS {
            assert_eq!(p.request(v).len(), 40);
            assert_eq!(p.request(v).last(), Some(&b'\n'));
            assert_eq!(p.reply(v), p.request(v).to_ascii_uppercase());
            assert_eq!(p.variant_of_reply(p.reply(v)), Some(v));
        }
        assert_ne!(p.request(0), p.request(1));
        assert_eq!(Payloads::new(1, Service::Echo, true).request(3), b"\n");
        assert!(p.exact());
    }

    #[test]
    fn http_replies_vary_only_from_their_date_on() {
        let p = Payloads::new(64, Service::Http, false);
        assert!(!p.exact());
        for v in 0..VARIANTS {
            let reply = p.reply(v);
            let date = reply
                .windows(6)
                .position(|w| w == b"Date: ")
                .expect("a Date field")
                + 6;
            assert_eq!(p.steady(v), date, "{}", reply.escape_ascii());
            assert!(reply.starts_with(b"HTTP/1.1 200 OK\r\n") && reply.ends_with(b"Hello, World"));
            let mut later = reply.to_vec();
            later[date..date + 3].copy_from_slice(b"Fri");
            assert!(p.same_reply(v, &later));
            let mut wrong = reply.to_vec();
            *wrong.last_mut().unwrap() = b'?';
            assert!(!p.same_reply(v, &wrong));
        }
    }

    #[test]
    fn a_greeting_is_expected_once_per_connection_not_per_reply() {
        let p = Payloads::new(20, Service::Hello, false);
        assert_eq!(p.greeting(), b"Welcome!\n");
        let request = p.request(5);
        let name = &request[..request.len() - 1];
        assert_eq!(p.reply(5), [b"Hello, ", name, b"!\n"].concat());
        assert!(p.exact());
        assert!(Payloads::new(20, Service::Hello, true)
            .greeting()
            .is_empty());
    }
}
