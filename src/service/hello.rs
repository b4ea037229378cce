//! `--service hello`: the tutorials' welcome server. It answers whole names, so it sits on the line framer
//! ([`super::lines`], which explains why framing is needed); this file holds only hello's replies.
//!
//! # Over TCP
//! - On connect: `Welcome!\n`.
//! - Each line `NAME`: `Hello, NAME!\n`. The empty line is a name too: `Hello, !\n`.
//! - The line `exit`: no reply; the connection closes once earlier replies are flushed. Bytes after it are
//!   ignored.
//! - A line whose name passes `--max-line` bytes: `ERR line too long\n`, then the connection closes once that
//!   is flushed.
//! - End of stream inside an unfinished line: the bytes are answered as a last line; a last `exit` closes
//!   without reply.
//!
//! # Over UDP
//! A datagram is already a message, so there is no framing and no welcome: each datagram `NAME` gets one
//! datagram `Hello, NAME!` (no newline; the datagram's bytes are the name, a `\n` in it included).
//!
//! # UDP growth: eight bytes, never a multiple
//! `Hello, !` adds exactly 8 bytes to any name, and nothing else ever grows: so even the empty datagram is
//! answered (`Hello, !`, 8 bytes), keeping the rule that every datagram gets one reply. On the wire a
//! datagram carries at least 28 bytes of IPv4 and UDP headers, so the worst case (0 bytes of payload in, 8
//! out) is 28 bytes in and 36 out: a factor of 1.3, which is no use to an attacker (the floods that matter
//! amplify 50 to 50,000 times). A name longer than `--max-line`, or too long for its greeting to fit in one
//! datagram, gets `ERR line too long` (17 bytes), which is within 8 bytes of it because `--max-line` is at
//! least [`MIN_MAX_LINE`].
//!
//! Walk-through: `docs/07-udp-and-tcp.md` (framing, amplification); `docs/10-adding-a-service.md` builds a
//! service on the same framer.

use super::lines::{Line, LineFramer};
use super::clock::Clock;
use super::example::{Example, Rng};
use super::tooling::Tooling;
use super::protocol::{Datagrams, Growth, Protocol, ServiceOptions, Setting, Step, StreamSession};

/// What a connection hears first.
pub const WELCOME: &[u8] = b"Welcome!\n";
/// Before a name.
const PREFIX: &[u8] = b"Hello, ";
/// After a name, over TCP.
const SUFFIX_LINE: &[u8] = b"!\n";
/// After a name, over UDP.
const SUFFIX_DATAGRAM: &[u8] = b"!";
/// The line that closes a connection.
const EXIT: &[u8] = b"exit";
/// The reply to a line longer than the limit, over TCP.
pub const TOO_LONG: &[u8] = b"ERR line too long\n";
/// The same, over UDP.
const TOO_LONG_DATAGRAM: &[u8] = b"ERR line too long";

/// The smallest `--max-line`: a datagram longer than it has at least 9 bytes, so `ERR line too long` (17)
/// is within 8 bytes of it.
pub const MIN_MAX_LINE: usize = TOO_LONG_DATAGRAM.len() - UDP_GROWTH - 1;
/// The most bytes a UDP reply adds to its datagram.
pub const UDP_GROWTH: usize = PREFIX.len() + SUFFIX_DATAGRAM.len();
/// The largest UDP payload over IPv4; a reply must fit in it.
const MAX_DATAGRAM: usize = 65_507;
/// The most bytes one line of input can add to its reply (`Hello, !\n` around an empty name).
const LINE_GROWTH: usize = PREFIX.len() + SUFFIX_LINE.len();

/// The welcome service.
pub struct Hello;

impl Protocol for Hello {
    const NAME: &'static str = "hello";
    const ABOUT: &'static str =
        "the tutorials' welcome server: `Welcome!`, then `Hello, NAME!` per line, until the line `exit`";
    const DATAGRAMS: Option<Datagrams> = Some(datagram);

    type Session = HelloSession;

    fn session(options: &ServiceOptions) -> HelloSession {
        HelloSession {
            lines: LineFramer::new(options.max_line),
        }
    }

    /// Each input byte can end a line that grows by 9 bytes; what is held may come out with it; the error
    /// line may follow.
    fn growth(_options: &ServiceOptions) -> Growth {
        Growth {
            per_byte: LINE_GROWTH,
            per_held: 1,
            fixed: TOO_LONG.len(),
        }
    }

    fn max_held(options: &ServiceOptions) -> usize {
        LineFramer::max_held(options.max_line)
    }

    const SETTINGS: &'static [Setting] = &[Setting::MaxLine];
    const WAITS_FOR: &'static str = "the newline that ends the line";

    /// A line limit must leave room for the error datagram that answers a line over it.
    fn check_options(options: &ServiceOptions) -> Result<(), String> {
        if options.max_line < MIN_MAX_LINE {
            return Err(format!(
                "--max-line must be at least {MIN_MAX_LINE} bytes for --service hello (got {})",
                options.max_line
            ));
        }
        Ok(())
    }
}

impl Tooling for Hello {
    const PROMPT: &'static str = "Input your name (exit to leave): ";

    fn stream_example(options: &ServiceOptions, rng: &mut Rng) -> Example {
        let mut example = Example {
            reply: WELCOME.to_vec(),
            ..Example::default()
        };
        for _ in 0..1 + rng.below(8) {
            let name = rng.words_within(4, options.max_line);
            if name == "exit" {
                continue;
            }
            let ending = if rng.below(2) == 0 { "\n" } else { "\r\n" };
            example.request.extend_from_slice(format!("{name}{ending}").as_bytes());
            example.reply.extend_from_slice(format!("Hello, {name}!\n").as_bytes());
        }
        if rng.below(3) == 0 {
            example.request.extend_from_slice(b"exit\n");
            example.closes = true;
        }
        example
    }

    fn datagram_example(options: &ServiceOptions, rng: &mut Rng) -> Option<Example> {
        let name = rng.words_within(4, options.max_line);
        Some(Example {
            reply: format!("Hello, {name}!").into_bytes(),
            request: name.into_bytes(),
            closes: false,
        })
    }
}

/// One hello connection: its line framer.
#[derive(Clone, Debug)]
pub struct HelloSession {
    lines: LineFramer,
}

impl StreamSession for HelloSession {
    fn greeting(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(WELCOME);
    }

    fn feed(&mut self, _clock: &Clock, input: &[u8], out: &mut Vec<u8>) -> Step {
        self.lines.feed(input, |line| answer(line, out))
    }

    fn finish(&mut self, _clock: &Clock, out: &mut Vec<u8>) {
        self.lines.finish(|line| answer(line, out));
    }

    fn held(&self) -> usize {
        self.lines.held()
    }
}

/// The reply to one line.
fn answer(line: Line<'_>, out: &mut Vec<u8>) -> Step {
    match line {
        Line::TooLong => {
            out.extend_from_slice(TOO_LONG);
            Step::Close
        }
        Line::Whole(EXIT) => Step::Close,
        Line::Whole(name) => {
            out.extend_from_slice(PREFIX);
            out.extend_from_slice(name);
            out.extend_from_slice(SUFFIX_LINE);
            Step::Continue
        }
    }
}

/// The reply to one datagram: `Hello, NAME!`, or the error for a name that is too long.
fn datagram(options: &ServiceOptions, input: &[u8], out: &mut Vec<u8>) {
    if input.len() > options.max_line || input.len() + UDP_GROWTH > MAX_DATAGRAM {
        out.extend_from_slice(TOO_LONG_DATAGRAM);
        return;
    }
    out.extend_from_slice(PREFIX);
    out.extend_from_slice(input);
    out.extend_from_slice(SUFFIX_DATAGRAM);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::Service;

    fn options(max_line: usize) -> ServiceOptions {
        ServiceOptions {
            max_line,
            ..ServiceOptions::default()
        }
    }

    /// Feeds `pieces` in order to a fresh connection, then ends the stream; returns all output (after the
    /// welcome) and the step after each piece.
    fn run(max_line: usize, pieces: &[&[u8]]) -> (Vec<u8>, Vec<Step>) {
        let clock = Clock::new();
        let mut session = Hello::session(&options(max_line));
        let mut out = Vec::new();
        let steps = pieces
            .iter()
            .map(|p| session.feed(&clock, p, &mut out))
            .collect();
        session.finish(&clock, &mut out);
        (out, steps)
    }

    fn whole(input: &[u8]) -> Vec<u8> {
        run(64 * 1024, &[input]).0
    }

    #[test]
    fn fixtures() {
        assert_eq!(
            Service::Hello.reply_to_stream(b"Michael\nTracy\r\nSarah\nexit\n"),
            b"Welcome!\nHello, Michael!\nHello, Tracy!\nHello, Sarah!\n"
        );
        assert_eq!(Service::Hello.reply_to_stream(b""), b"Welcome!\n");
        assert_eq!(whole(b"\n"), b"Hello, !\n");
        assert_eq!(whole("你好\n".as_bytes()), "Hello, 你好!\n".as_bytes());
    }

    #[test]
    fn exit_closes_and_ignores_the_rest() {
        let (out, steps) = run(64, &[b"Bob\nexit\nCarol\n", b"Dave\n"]);
        assert_eq!(out, b"Hello, Bob!\n");
        assert_eq!(steps, [Step::Close, Step::Close]);
        assert_eq!(run(64, &[b"exit\r\n"]).1, [Step::Close]);
        // `exit` must be the whole line.
        assert_eq!(
            whole(b"exit now\nEXIT\n"),
            b"Hello, exit now!\nHello, EXIT!\n"
        );
    }

    #[test]
    fn end_of_stream_answers_the_unfinished_line() {
        assert_eq!(whole(b"Bob"), b"Hello, Bob!\n");
        assert_eq!(whole(b"exit"), b"");
    }

    #[test]
    fn a_line_too_long_gets_the_error_and_the_close() {
        let (out, steps) = run(8, &[b"ok\n1234", b"56789", b"\nmore\n"]);
        assert_eq!(out, b"Hello, ok!\nERR line too long\n");
        assert_eq!(steps, [Step::Continue, Step::Close, Step::Close]);
    }

    #[test]
    fn datagram_fixtures() {
        let reply = |input: &[u8], max_line| {
            let mut out = Vec::new();
            datagram(&options(max_line), input, &mut out);
            out
        };
        assert_eq!(reply(b"Michael", 64), b"Hello, Michael!");
        assert_eq!(reply(b"with\nnewline\n", 64), b"Hello, with\nnewline\n!");
        assert_eq!(reply(b"", 64), b"Hello, !");
        assert_eq!(reply(&[b'x'; 65], 64), b"ERR line too long");
        assert_eq!(reply(&[b'x'; 9], MIN_MAX_LINE), b"ERR line too long");
        // The greeting of the largest datagram would not fit in one: refused, not dropped.
        assert_eq!(reply(&[b'x'; 65_507], usize::MAX), b"ERR line too long");
        assert_eq!(reply(&[b'x'; 65_499], usize::MAX).len(), 65_507);
    }

    #[test]
    fn datagram_replies_grow_by_at_most_eight_bytes() {
        for len in 0..40 {
            for max_line in MIN_MAX_LINE..20 {
                let mut out = Vec::new();
                datagram(&options(max_line), &vec![b'a'; len], &mut out);
                assert!(
                    out.len() <= len + UDP_GROWTH,
                    "len {len} max_line {max_line}"
                );
            }
        }
    }

    #[test]
    fn output_bounds_hold_at_the_worst_case() {
        let clock = Clock::new();
        let growth = Hello::growth(&options(16));
        // The worst cases: a stream of bare `\n`, and a full buffer finished by one.
        let mut session = Hello::session(&options(16));
        let mut out = Vec::new();
        session.feed(&clock, b"\n\n\n\n", &mut out);
        assert!(out.len() <= growth.max_output(0, 4));
        let mut out = Vec::new();
        session.feed(&clock, b"0123456789abcdef", &mut out);
        let held = session.held();
        session.feed(&clock, b"\n", &mut out);
        assert!(out.len() <= growth.max_output(held, 1));
    }
}
