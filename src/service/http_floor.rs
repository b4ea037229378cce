//! `--service http-floor`: for measuring only. It answers every empty line (`\r\n\r\n`, the end of a
//! request's header section) with the same `200 OK` and `Hello, World` that `--service http` sends, and
//! parses nothing: no request line, no headers, no bodies, no errors, no keep-alive rules. Served by the
//! same reactor, it is the floor under `http`: what the kernel and the loop cost per request, so the HTTP
//! bench's figures can be read against what is physically left (`docs/performance.md`). It is not an HTTP
//! server: a body that holds an empty line is answered as a request. TCP only.

use super::clock::Clock;
use super::example::{Example, Rng};
use super::tooling::Tooling;
use super::protocol::{Datagrams, Growth, Protocol, ServiceOptions, Step, StreamSession};

/// Where a request ends, for this service.
const END: &[u8] = b"\r\n\r\n";

/// The response, but for its two dates: the same bytes `http` sends to a keep-alive `GET` (a test below
/// holds it to that).
const BEFORE_DATE: &[u8] = b"HTTP/1.1 200 OK\r\nServer: socklab\r\nDate: ";
const BETWEEN_DATES: &[u8] = b"\r\nLast-Modified: ";
const AFTER_DATES: &[u8] = b"\r\nETag: \"0468076d\"\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\n\
    Hello, World";
const RESPONSE_LEN: usize =
    BEFORE_DATE.len() + 2 * super::clock::HTTP_DATE_LEN + BETWEEN_DATES.len() + AFTER_DATES.len();

/// The floor service.
pub struct HttpFloor;

impl Protocol for HttpFloor {
    const NAME: &'static str = "http-floor";
    const ABOUT: &'static str = "for measuring only: a canned 200 for every empty line, parsing nothing (the floor \
        under --service http in its benchmark; not an HTTP server)";
    const DATAGRAMS: Option<Datagrams> = None;

    type Session = FloorSession;

    fn session(options: &ServiceOptions) -> FloorSession {
        FloorSession {
            tail: [0; 3],
            started: options.started,
        }
    }

    /// Every four bytes can end a request (an end is four bytes of its own: `feed` never counts one twice).
    fn growth(_options: &ServiceOptions) -> Growth {
        Growth {
            per_byte: RESPONSE_LEN.div_ceil(END.len()),
            per_held: 0,
            fixed: RESPONSE_LEN,
        }
    }

    fn max_held(_options: &ServiceOptions) -> usize {
        0
    }
}

impl Tooling for HttpFloor {
    fn stream_example(_options: &ServiceOptions, rng: &mut Rng) -> Example {
        let mut example = Example::default();
        for i in 0..1 + rng.below(8) {
            example.request.extend_from_slice(&Self::load_request(i, 40 + rng.below(40)));
            example.reply.extend_from_slice(BEFORE_DATE);
            example.reply.extend_from_slice(b"Thu, 01 Jan 1970 00:00:00 GMT");
            example.reply.extend_from_slice(BETWEEN_DATES);
            example.reply.extend_from_slice(b"Thu, 01 Jan 1970 00:00:00 GMT");
            example.reply.extend_from_slice(AFTER_DATES);
        }
        example
    }

    fn datagram_example(_options: &ServiceOptions, _rng: &mut Rng) -> Option<Example> {
        None
    }

    /// The same requests `http` is measured with.
    fn load_request(variant: usize, size: usize) -> Vec<u8> {
        super::http::Http::load_request(variant, size)
    }

    fn same_reply(expected: &[u8], got: &[u8]) -> bool {
        super::http::Http::same_reply(expected, got)
    }
}

/// The last three bytes of the stream so far, so an end split across reads still counts, and the server's
/// start (the `Last-Modified` that `http` sends).
#[derive(Clone, Debug)]
pub struct FloorSession {
    tail: [u8; 3],
    started: u64,
}

impl StreamSession for FloorSession {
    fn feed(&mut self, clock: &Clock, input: &[u8], out: &mut Vec<u8>) -> Step {
        let date = clock.http_date();
        let modified = clock.http_date_until_now(self.started);
        let mut from = 0;
        // Bytes before this index belong to an end already answered: an end takes four bytes of its own, so
        // `\r\n\r\n\r\n` is one request and a half, not two (the bound below counts on it).
        let mut fresh = 0;
        // Each newline that closes `\r\n\r\n` ends a request; the three bytes before it may lie in the
        // last read.
        while let Some(at) = input[from..].iter().position(|&b| b == b'\n') {
            let end = from + at;
            let before = |back: usize| {
                if end >= back {
                    if end - back < fresh {
                        0
                    } else {
                        input[end - back]
                    }
                } else if fresh > 0 {
                    0
                } else {
                    self.tail[3 - (back - end)]
                }
            };
            if before(1) == b'\r' && before(2) == b'\n' && before(3) == b'\r' {
                out.extend_from_slice(BEFORE_DATE);
                out.extend_from_slice(&date);
                out.extend_from_slice(BETWEEN_DATES);
                out.extend_from_slice(&modified);
                out.extend_from_slice(AFTER_DATES);
                fresh = end + 1;
            }
            from = end + 1;
        }
        let start = input.len().saturating_sub(3);
        for (i, &byte) in input.iter().enumerate().skip(start) {
            let byte = if i < fresh { 0 } else { byte };
            self.tail = [self.tail[1], self.tail[2], byte];
        }
        Step::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::http::Http;

    #[test]
    fn an_end_is_four_bytes_of_its_own_however_the_reads_fall() {
        let options = ServiceOptions::default();
        let clock = Clock::fixed(1_800_000_000);
        for (stream, ends) in [
            (&b"\r\n\r\n\r\n"[..], 1),
            (b"\r\n\r\n\r\n\r\n", 2),
            (b"\r\n".repeat(1000).leak(), 500),
        ] {
            for cut in 0..=stream.len() {
                let mut session = HttpFloor::session(&options);
                let mut out = Vec::new();
                session.feed(&clock, &stream[..cut], &mut out);
                session.feed(&clock, &stream[cut..], &mut out);
                assert_eq!(out.len(), ends * RESPONSE_LEN, "{} bytes cut at {cut}", stream.len());
            }
        }
    }

    #[test]
    fn the_floor_sends_exactly_what_http_sends() {
        let options = ServiceOptions {
            started: 1_700_000_000,
            ..ServiceOptions::default()
        };
        let clock = Clock::fixed(1_800_000_000);
        let request = Http::load_request(3, 64);
        let (mut floor, mut http) = (Vec::new(), Vec::new());
        HttpFloor::session(&options).feed(&clock, &request, &mut floor);
        Http::session(&options).feed(&clock, &request, &mut http);
        assert_eq!(String::from_utf8(floor).unwrap(), String::from_utf8(http).unwrap());
    }
}
