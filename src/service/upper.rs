//! `--service upper`, the tutorials' service: the reply is the request uppercased. Pure bytes, no I/O.
//!
//! It works on the byte stream, not on messages: `hello` with no newline is answered `HELLO` at once. Text is
//! UTF-8 and is uppercased the Unicode way (`straße` becomes `STRASSE`); a character split across two reads
//! is held back (at most three bytes) until its end arrives, so any split of a stream gives the same reply
//! as the whole stream. Bytes that are not valid UTF-8 pass through unchanged. ASCII, the common case, takes
//! a fast path. With `--encoding gbk` the text is GBK and only its ASCII letters change, the same way (see
//! [`crate::encoding`] for why uppercasing GBK bytes as ASCII corrupts it).
//!
//! # Why a UDP reply is never longer than its datagram
//! A few characters grow when uppercased (`ΐ`, two bytes, becomes three characters and six bytes). Over TCP
//! that is just more stream. Over UDP it would make the server an amplifier, and a 65,507-byte datagram
//! could not be answered at all. So in a datagram a character whose uppercase form needs more bytes than
//! itself is left as it is. `ß` to `SS` (two bytes to two) and `é` to `É` are still uppercased. GBK replies
//! are always exactly as long.
//!
//! Walk-through: `docs/06-connection.md` (a character split across reads), `docs/07-udp-and-tcp.md`
//! (amplification).

use crate::encoding::{gbk_upper_into, Encoding};

use super::clock::Clock;
use super::example::{Example, Rng};
use super::tooling::Tooling;
use super::protocol::{Datagrams, Growth, Protocol, ServiceOptions, Setting, Step, StreamSession};

/// The most bytes one input byte of a stream can become: `ΐ` (2 bytes) uppercases to 6 bytes.
const MAX_GROWTH: usize = 3;

/// The most bytes a session holds back: the start of a character whose end has not arrived (UTF-8 or GBK).
const MAX_HELD: usize = 3;

/// The uppercase service.
pub struct Upper;

impl Protocol for Upper {
    const NAME: &'static str = "upper";
    const ABOUT: &'static str =
        "reply with the request uppercased (Unicode-aware, or GBK-safe with --encoding gbk), as a byte stream";
    const DATAGRAMS: Option<Datagrams> = Some(datagram);

    type Session = UpperSession;

    fn session(options: &ServiceOptions) -> UpperSession {
        UpperSession {
            encoding: options.encoding,
            bytes: [0; MAX_HELD],
            len: 0,
        }
    }

    /// UTF-8: a byte, held or new, becomes at most three. GBK: only letters change, one byte for one.
    fn growth(options: &ServiceOptions) -> Growth {
        let per_byte = match options.encoding {
            Encoding::Utf8 => MAX_GROWTH,
            Encoding::Gbk => 1,
        };
        Growth {
            per_byte,
            per_held: per_byte,
            fixed: 0,
        }
    }

    fn max_held(_options: &ServiceOptions) -> usize {
        MAX_HELD
    }

    const SETTINGS: &'static [Setting] = &[Setting::Encoding];
    const WAITS_FOR: &'static str = "the rest of a character cut between reads";
}

impl Tooling for Upper {
    /// The tutorials' prompt.
    const PROMPT: &'static str = "Input lowercase sentence: ";

    fn stream_example(options: &ServiceOptions, rng: &mut Rng) -> Example {
        let mut example = Example::default();
        for _ in 0..1 + rng.below(8) {
            let (request, reply) = text(options.encoding, rng);
            example.request.extend_from_slice(&request);
            example.reply.extend_from_slice(&reply);
            // Lines or not: the stream has no messages.
            if rng.below(2) == 0 {
                example.request.push(b'\n');
                example.reply.push(b'\n');
            }
        }
        example
    }

    fn datagram_example(options: &ServiceOptions, rng: &mut Rng) -> Option<Example> {
        let (request, reply) = text(options.encoding, rng);
        Some(Example {
            request,
            reply,
            closes: false,
        })
    }
}

/// Some words in `encoding` and what they must become, by the standard library's own uppercasing (none of
/// these words grows in bytes, so the datagram rule does not change them).
fn text(encoding: Encoding, rng: &mut Rng) -> (Vec<u8>, Vec<u8>) {
    match encoding {
        Encoding::Utf8 => {
            let words = rng.words(6);
            (words.clone().into_bytes(), words.to_uppercase().into_bytes())
        }
        Encoding::Gbk => {
            // 說 and 時 have trail bytes that are ASCII letters: uppercasing those would corrupt them.
            const GBK_WORDS: &[&str] = &["hello", "說", "時", "歡迎", "world", "謝謝", "tcp"];
            let count = 1 + rng.below(6);
            let words: Vec<&str> = (0..count).map(|_| *rng.pick(GBK_WORDS)).collect();
            let words = words.join(" ");
            let encode = |text: &str| {
                Encoding::Gbk
                    .encode(text)
                    .map(|bytes| bytes.into_owned())
                    .unwrap_or_default()
            };
            (encode(&words), encode(&words.to_ascii_uppercase()))
        }
    }
}

/// One upper connection: at most `MAX_HELD` (three) bytes of a character split across reads.
#[derive(Clone, Debug)]
pub struct UpperSession {
    encoding: Encoding,
    bytes: [u8; MAX_HELD],
    len: usize,
}

impl StreamSession for UpperSession {
    fn feed(&mut self, _clock: &Clock, input: &[u8], out: &mut Vec<u8>) -> Step {
        self.take(input, out);
        Step::Continue
    }

    /// A character still held will never be completed: it passes through.
    fn finish(&mut self, _clock: &Clock, out: &mut Vec<u8>) {
        self.release(out);
    }

    /// Every byte read is owed: a character still held passes through, as at end of stream.
    fn drain(&mut self, out: &mut Vec<u8>) {
        self.release(out);
    }

    fn held(&self) -> usize {
        self.len
    }
}

/// Appends to `out` the reply to one whole datagram: never longer than it.
fn datagram(options: &ServiceOptions, input: &[u8], out: &mut Vec<u8>) {
    let used = match options.encoding {
        Encoding::Utf8 => upper_into(input, out, Longer::Forbidden),
        Encoding::Gbk => gbk_upper_into(input, out),
    };
    // A truncated character at the end of a datagram will never be completed: pass it through.
    out.extend_from_slice(&input[used..]);
}

impl UpperSession {
    fn release(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.bytes[..self.len]);
        self.len = 0;
    }

    /// Uppercases `input` into `out`, holding back a character whose end has not arrived yet.
    fn take(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        let encoding = self.encoding;
        let upper = |bytes: &[u8], out: &mut Vec<u8>| match encoding {
            Encoding::Utf8 => upper_into(bytes, out, Longer::Allowed),
            Encoding::Gbk => gbk_upper_into(bytes, out),
        };
        if self.len > 0 {
            // Finish the held character with at most four new bytes, run through the same code as the rest so
            // that the result cannot depend on where the stream was split. Four bytes always settle it.
            let mut joined = [0u8; MAX_HELD + 4];
            let held = self.len;
            let take = input.len().min(4);
            joined[..held].copy_from_slice(&self.bytes[..held]);
            joined[held..held + take].copy_from_slice(&input[..take]);
            let used = upper(&joined[..held + take], out);
            if used < held {
                // Still not a whole character: then the input was shorter than the character's missing part,
                // and all of it was taken.
                debug_assert_eq!(take, input.len());
                self.hold(&joined[used..held + take]);
                return;
            }
            input = &input[used - held..];
            self.len = 0;
        }
        let used = upper(input, out);
        self.hold(&input[used..]);
    }

    fn hold(&mut self, tail: &[u8]) {
        debug_assert!(tail.len() <= MAX_HELD);
        let n = tail.len().min(MAX_HELD);
        self.bytes[..n].copy_from_slice(&tail[..n]);
        self.len = n;
    }
}

/// Whether a character may become more bytes than it was.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Longer {
    Allowed,
    Forbidden,
}
/// Uppercases `input` into `out` and returns how many bytes it used. It stops short only before a valid but
/// incomplete UTF-8 sequence at the very end (at most three bytes), which the caller holds or passes through.
///
/// ASCII bytes never occur inside a multi-byte UTF-8 sequence, so the input splits into ASCII runs, uppercased
/// byte by byte, and non-ASCII runs, the only ones that are decoded.
fn upper_into(input: &[u8], out: &mut Vec<u8>, longer: Longer) -> usize {
    out.reserve(input.len());
    let mut rest = input;
    loop {
        let ascii = rest
            .iter()
            .position(|b| !b.is_ascii())
            .unwrap_or(rest.len());
        // Copy, then uppercase in place: both loops vectorise, unlike a byte-by-byte map.
        let start = out.len();
        out.extend_from_slice(&rest[..ascii]);
        out[start..].make_ascii_uppercase();
        rest = &rest[ascii..];
        if rest.is_empty() {
            return input.len();
        }
        let run_len = rest.iter().position(u8::is_ascii).unwrap_or(rest.len());
        let at_end = run_len == rest.len();
        let mut run = &rest[..run_len];
        while !run.is_empty() {
            let (valid, error) = match std::str::from_utf8(run) {
                Ok(text) => (text, None),
                Err(e) => {
                    // `valid_up_to` promises this prefix is UTF-8; the fallback only keeps this panic-free.
                    let text = std::str::from_utf8(&run[..e.valid_up_to()]).unwrap_or_default();
                    (text, Some(e.error_len()))
                }
            };
            upper_text(valid, out, longer);
            run = &run[valid.len()..];
            let bad = match error {
                None => break,
                Some(Some(bad)) => bad,
                // The input ends inside a character that may yet be completed: hand it back.
                Some(None) if at_end => return input.len() - run.len(),
                // Cut short by the ASCII byte that follows the run: it can never be completed.
                Some(None) => run.len(),
            };
            // Bytes that can never be UTF-8 pass through unchanged.
            out.extend_from_slice(&run[..bad]);
            run = &run[bad..];
        }
        rest = &rest[run_len..];
    }
}

fn upper_text(text: &str, out: &mut Vec<u8>, longer: Longer) {
    let mut buf = [0u8; 4];
    for c in text.chars() {
        if c.is_ascii() {
            out.push((c as u8).to_ascii_uppercase());
            continue;
        }
        let upper = c.to_uppercase();
        if longer == Longer::Forbidden
            && upper.clone().map(char::len_utf8).sum::<usize>() > c.len_utf8()
        {
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        for u in upper {
            out.extend_from_slice(u.encode_utf8(&mut buf).as_bytes());
        }
    }
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::Service;

    fn stream(input: &[u8]) -> Vec<u8> {
        Service::Upper.reply_to_stream(input)
    }

    fn datagram(input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Service::Upper.datagram(input, &mut out);
        out
    }

    fn gbk_options() -> ServiceOptions {
        ServiceOptions {
            encoding: Encoding::Gbk,
            ..ServiceOptions::default()
        }
    }

    #[test]
    fn ascii_fixtures() {
        assert_eq!(stream(b"hello world\n"), b"HELLO WORLD\n");
        assert_eq!(stream(b"hello"), b"HELLO");
        assert_eq!(stream(b""), b"");
        assert_eq!(stream(b"MiXeD 123 !?\r\n\0"), b"MIXED 123 !?\r\n\0");
    }

    #[test]
    fn unicode_fixtures() {
        assert_eq!(stream("straße".as_bytes()), "STRASSE".as_bytes());
        assert_eq!(stream("café".as_bytes()), "CAFÉ".as_bytes());
        assert_eq!(stream("你好, world".as_bytes()), "你好, WORLD".as_bytes());
        // U+0390 grows from 2 bytes to 6.
        assert_eq!(stream("ΐ".as_bytes()), "\u{399}\u{308}\u{301}".as_bytes());
        assert_eq!(stream("ΐ".as_bytes()).len(), 6);
    }

    #[test]
    fn invalid_bytes_pass_through() {
        assert_eq!(stream(b"a\xffb"), b"A\xffB");
        assert_eq!(stream(b"\xc3(x"), b"\xc3(X");
        // A surrogate encoded in UTF-8 is not UTF-8.
        assert_eq!(stream(b"\xed\xa0\x80z"), b"\xed\xa0\x80Z");
        // A truncated character at the end of the stream is released by `finish`.
        assert_eq!(stream(b"ab\xe4\xb8"), b"AB\xe4\xb8");
        // A valid prefix broken by ASCII.
        assert_eq!(stream(b"\xe4\xb8a"), b"\xe4\xb8A");
    }

    #[test]
    fn a_character_split_across_reads_is_held_then_uppercased() {
        let clock = Clock::new();
        let mut s = Service::Upper.session();
        let mut out = Vec::new();
        s.feed(&clock, b"caf\xc3", &mut out);
        assert_eq!(
            out, b"CAF",
            "the half character is held, the rest answered at once"
        );
        assert_eq!(s.held(), 1);
        s.feed(&clock, b"\xa9!", &mut out);
        assert_eq!(out, "CAFÉ!".as_bytes());
    }

    #[test]
    fn shutdown_owes_a_held_byte_as_end_of_stream_does() {
        let clock = Clock::new();
        let mut s = Service::Upper.session();
        let mut out = Vec::new();
        s.feed(&clock, b"ab\xe4\xb8", &mut out);
        s.drain(&mut out);
        assert_eq!(out, b"AB\xe4\xb8");
    }

    #[test]
    fn datagrams_never_grow() {
        assert_eq!(datagram(b"hello"), b"HELLO");
        assert_eq!(
            datagram("straße café".as_bytes()),
            "STRASSE CAFÉ".as_bytes()
        );
        // U+0390 would grow to six bytes: it is left as it is, its neighbours are still uppercased.
        assert_eq!(datagram("aΐb".as_bytes()), "AΐB".as_bytes());
        // U+0250 (2 bytes) uppercases to U+2C6F (3 bytes): kept.
        assert_eq!(datagram("ɐ".as_bytes()), "ɐ".as_bytes());
        // A truncated character at the end passes through.
        assert_eq!(datagram(b"x\xe4\xb8"), b"X\xe4\xb8");
    }

    /// Checks the growth bound the servers rely on against every character there is.
    #[test]
    fn growth_bounds_hold_for_every_char() {
        let growth = Upper::growth(&ServiceOptions::default());
        for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
            let mut text = [0u8; 4];
            let bytes = c.encode_utf8(&mut text).as_bytes();
            let grown = stream(bytes).len();
            assert!(grown <= growth.max_output(0, bytes.len()), "{c:?} grows {grown}");
            assert!(
                datagram(bytes).len() <= bytes.len(),
                "{c:?} grows in a datagram"
            );
        }
    }

    #[test]
    fn gbk_text_split_at_every_position_comes_back_intact() {
        // 歡 9A 67, 說 D5 66, 時 95 72, 謝 D6 78: their trail bytes are ASCII letters.
        // GBK's encoder writes no four-byte sequences, so U+10000 (90 30 81 30) is added by hand.
        let gbk = |text: &str, tail: &[u8]| {
            let mut bytes = Encoding::Gbk.encode(text).unwrap().into_owned();
            bytes.extend_from_slice(&[0x90, 0x30, 0x81, 0x30]);
            bytes.extend_from_slice(tail);
            bytes
        };
        let input = gbk("歡迎 hello, 說時 world 謝謝! four bytes: ", b" end");
        let expected = gbk("歡迎 HELLO, 說時 WORLD 謝謝! FOUR BYTES: ", b" END");
        assert_eq!(
            Service::Upper.reply_to_stream_with(&gbk_options(), &input),
            expected
        );
        let clock = Clock::new();
        for cut in 0..=input.len() {
            for second in cut..=input.len() {
                let mut session = Service::Upper.session_with(&gbk_options());
                let mut out = Vec::new();
                session.feed(&clock, &input[..cut], &mut out);
                session.feed(&clock, &input[cut..second], &mut out);
                session.feed(&clock, &input[second..], &mut out);
                session.finish(&clock, &mut out);
                assert_eq!(out, expected, "cut at {cut} and {second}");
            }
        }
        // In UTF-8 mode the same bytes would be corrupted: that is what the flag is for.
        assert_ne!(Service::Upper.reply_to_stream(&input), expected);
    }

    #[test]
    fn gbk_holds_a_split_character_and_releases_a_truncated_one_at_finish() {
        let clock = Clock::new();
        let mut s = Service::Upper.session_with(&gbk_options());
        let mut out = Vec::new();
        s.feed(&clock, b"ab\xd5", &mut out);
        assert_eq!(out, b"AB", "the lead byte is held");
        s.feed(&clock, b"fc", &mut out);
        assert_eq!(out, b"AB\xd5fC", "the trail `f` is part of the character");
        s.feed(&clock, b"\x81\x30", &mut out);
        assert_eq!(out, b"AB\xd5fC");
        s.finish(&clock, &mut out);
        assert_eq!(out, b"AB\xd5fC\x81\x30", "released unchanged at the end");
    }

    #[test]
    fn gbk_datagrams_keep_their_length() {
        let mut out = Vec::new();
        Service::Upper.datagram_with(&gbk_options(), b"\xd5fa\xff\x81", &mut out);
        assert_eq!(out, b"\xd5fA\xff\x81");
    }
}
