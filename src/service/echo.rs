//! `--service echo`: the reply is the request, unchanged. The smallest service there is, and so the one the
//! load generator measures itself against (`docs/client-and-stress.md`): whatever it costs is the server's
//! and the kernel's, not the service's.

use super::clock::Clock;
use super::example::{Example, Rng};
use super::tooling::Tooling;
use super::protocol::{Datagrams, Growth, Protocol, ServiceOptions, Step, StreamSession};

/// The echo service.
pub struct Echo;

impl Protocol for Echo {
    const NAME: &'static str = "echo";
    const ABOUT: &'static str = "reply with the request unchanged";
    const DATAGRAMS: Option<Datagrams> = Some(datagram);

    type Session = EchoSession;

    fn session(_options: &ServiceOptions) -> EchoSession {
        EchoSession
    }

    fn growth(_options: &ServiceOptions) -> Growth {
        Growth {
            per_byte: 1,
            per_held: 0,
            fixed: 0,
        }
    }

    fn max_held(_options: &ServiceOptions) -> usize {
        0
    }
}

impl Tooling for Echo {
    const PROMPT: &'static str = "Input a sentence: ";

    fn stream_example(_options: &ServiceOptions, rng: &mut Rng) -> Example {
        let mut request = Vec::new();
        for _ in 0..1 + rng.below(8) {
            request.extend_from_slice(rng.words(6).as_bytes());
            request.push(b'\n');
        }
        // Bytes that are not text come back too.
        request.extend((0..rng.below(4)).map(|_| rng.next_u64() as u8));
        Example {
            reply: request.clone(),
            request,
            closes: false,
        }
    }

    fn datagram_example(_options: &ServiceOptions, rng: &mut Rng) -> Option<Example> {
        let request = rng.words(6).into_bytes();
        Some(Example {
            reply: request.clone(),
            request,
            closes: false,
        })
    }
}

/// An echo connection keeps nothing.
#[derive(Clone, Debug)]
pub struct EchoSession;

impl StreamSession for EchoSession {
    fn feed(&mut self, _clock: &Clock, input: &[u8], out: &mut Vec<u8>) -> Step {
        out.extend_from_slice(input);
        Step::Continue
    }
}

fn datagram(_options: &ServiceOptions, input: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(input);
}

#[cfg(test)]
mod tests {
    use crate::service::Service;

    #[test]
    fn echo_is_identity() {
        let input = b"abc\xff\xc3";
        assert_eq!(Service::Echo.reply_to_stream(input), input);
        let mut out = Vec::new();
        Service::Echo.datagram(input, &mut out);
        assert_eq!(out, input);
    }
}
