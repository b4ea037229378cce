//! What the load generator sends and what it must get back. A small fixed set of distinct request lines is
//! made once, with the reply each must become ([`Service::reply_to_stream`] for TCP, [`Service::datagram`]
//! for UDP). Sending a request is then a copy and checking a reply a comparison: no formatting, no service
//! call and no allocation per request, so the tool stays lighter than what it measures.
//!
//! The lines differ from each other (each starts with its own two-letter tag), so a reply delivered to the
//! wrong request, repeated, or reordered does not pass as right.
//!
//! Walk-through: `docs/08-measuring.md`.

use crate::service::Service;

/// How many distinct requests there are. Consecutive requests on one connection use consecutive variants.
pub const VARIANTS: usize = 64;

/// The largest request: a UDP payload must fit one datagram, and a TCP line this long is already a stress.
pub const MAX_SIZE: usize = 65_507;

/// The requests and the replies they must get, indexed by variant.
#[derive(Debug)]
pub struct Payloads {
    requests: Vec<Vec<u8>>,
    replies: Vec<Vec<u8>>,
}

impl Payloads {
    /// `VARIANTS` lowercase lines of exactly `size` bytes (the last one the newline).
    pub fn new(size: usize, service: Service, udp: bool) -> Payloads {
        let mut requests = Vec::with_capacity(VARIANTS);
        let mut replies = Vec::with_capacity(VARIANTS);
        for variant in 0..VARIANTS {
            let request = service.load_request(variant, size);
            let reply = if udp {
                let mut out = Vec::with_capacity(size);
                service.datagram(&request, &mut out);
                out
            } else {
                service.reply_to_stream(&request)
            };
            requests.push(request);
            replies.push(reply);
        }
        Payloads { requests, replies }
    }

    pub fn request(&self, variant: usize) -> &[u8] {
        &self.requests[variant % VARIANTS]
    }

    pub fn reply(&self, variant: usize) -> &[u8] {
        &self.replies[variant % VARIANTS]
    }

    /// The variant whose reply is exactly `bytes`, if any: tells a late UDP reply from a wrong one.
    pub fn variant_of_reply(&self, bytes: &[u8]) -> Option<usize> {
        self.replies.iter().position(|r| r == bytes)
    }
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
    }
}
