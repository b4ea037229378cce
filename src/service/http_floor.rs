//! `--service http-floor`: for measuring only. It answers every empty line (`\r\n\r\n`, the end of a
//! request's header section) with the same `200 OK` and `Hello, World` that `--service http` sends, and
//! parses nothing: no request line, no headers, no bodies, no errors, no keep-alive rules. Served by the
//! same reactor, it is the floor under `http`: what the kernel and the loop cost per request, so the HTTP
//! bench's figures can be read against what is physically left (`docs/performance.md`). It is not an HTTP
//! server: a body that holds an empty line is answered as a request. TCP only.

use super::clock::Clock;
use super::example::{Example, Rng};
use super::protocol::{Datagrams, Growth, Protocol, ServiceOptions, Step, StreamSession};

/// Where a request ends, for this service.
const END: &[u8] = b"\r\n\r\n";

/// The response, but for its date: the same bytes `http` sends to a keep-alive `GET`.
const BEFORE_DATE: &[u8] = b"HTTP/1.1 200 OK\r\nServer: socklab\r\nDate: ";
const AFTER_DATE: &[u8] =
    b"\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\nHello, World";
const RESPONSE_LEN: usize = BEFORE_DATE.len() + super::clock::HTTP_DATE_LEN + AFTER_DATE.len();

/// The floor service.
pub struct HttpFloor;

impl Protocol for HttpFloor {
    const NAME: &'static str = "http-floor";
    const ABOUT: &'static str = "for measuring only: a canned 200 for every empty line, parsing nothing (the floor \
        under --service http in its benchmark; not an HTTP server)";
    const DATAGRAMS: Option<Datagrams> = None;

    type Session = FloorSession;

    fn session(_options: &ServiceOptions) -> FloorSession {
        FloorSession { tail: [0; 3] }
    }

    /// Every four bytes can end a request.
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

    fn stream_example(_options: &ServiceOptions, rng: &mut Rng) -> Example {
        let mut example = Example::default();
        for i in 0..1 + rng.below(8) {
            example.request.extend_from_slice(&Self::load_request(i, 40 + rng.below(40)));
            example.reply.extend_from_slice(BEFORE_DATE);
            example.reply.extend_from_slice(b"Thu, 01 Jan 1970 00:00:00 GMT");
            example.reply.extend_from_slice(AFTER_DATE);
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

/// The last three bytes of the stream so far, so an end split across reads still counts.
#[derive(Clone, Debug)]
pub struct FloorSession {
    tail: [u8; 3],
}

impl StreamSession for FloorSession {
    fn feed(&mut self, clock: &Clock, input: &[u8], out: &mut Vec<u8>) -> Step {
        let date = clock.http_date();
        let mut from = 0;
        // Each newline that closes `\r\n\r\n` ends a request; the three bytes before it may lie in the
        // last read.
        while let Some(at) = input[from..].iter().position(|&b| b == b'\n') {
            let end = from + at;
            let before = |back: usize| {
                if end >= back {
                    input[end - back]
                } else {
                    self.tail[3 - (back - end)]
                }
            };
            if before(1) == b'\r' && before(2) == b'\n' && before(3) == b'\r' {
                out.extend_from_slice(BEFORE_DATE);
                out.extend_from_slice(&date);
                out.extend_from_slice(AFTER_DATE);
            }
            from = end + 1;
        }
        for &byte in &input[input.len().saturating_sub(3)..] {
            self.tail = [self.tail[1], self.tail[2], byte];
        }
        Step::Continue
    }
}
