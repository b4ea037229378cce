//! The service: what a request becomes. Bytes in, bytes out, no I/O.
//!
//! Every server mode and every test shares this module, so "what is the right reply" is answered in exactly
//! one place. A TCP connection owns a [`Session`], fed with whatever each `read` happened to return; a UDP
//! datagram is answered whole by [`Service::datagram`]. Walk-through: `docs/07-udp-and-tcp.md`.
//!
//! # Upper
//! The tutorials' service: the reply is the request uppercased. It works on the byte stream, not on
//! messages: `hello` with no newline is answered `HELLO` at once. Text is UTF-8 and is uppercased the
//! Unicode way (`straße` becomes `STRASSE`); a character split across two reads is held back (at most three
//! bytes) until its end arrives, so any split of a stream gives the same reply as the whole stream. Bytes that
//! are not valid UTF-8 pass through unchanged. ASCII, the common case, takes a byte-at-a-time fast path.
//!
//! # Why a UDP reply is never longer than its datagram
//! A few characters grow when uppercased (`ΐ`, two bytes, becomes three characters and six bytes). Over TCP
//! that is just more stream. Over UDP it would make the server an amplifier: a spoofed small datagram could
//! buy a larger reply aimed at a victim, and a 65,507-byte datagram could not be answered at all. So in a
//! datagram a character whose uppercase form needs more bytes than itself is left as it is. `ß` to `SS` (two
//! bytes to two) and `é` to `É` are still uppercased; the reply is at most as long as the request.

use std::fmt;

/// Which service a server runs. The same value drives every server mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Service {
    /// Reply with the request uppercased (Unicode-aware, byte-stream semantics).
    #[default]
    Upper,
    /// Reply with the request unchanged.
    Echo,
}

/// What a connection should do after a [`Session`] has taken a piece of the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Keep reading.
    Continue,
    /// Stop reading, flush what is pending, then close.
    Close,
}

/// The most bytes one input byte of a stream can become: `ΐ` (2 bytes) uppercases to 6 bytes.
const MAX_GROWTH: usize = 3;

/// The most bytes a [`Session`] holds back: the start of a UTF-8 character whose end has not arrived.
const MAX_HELD: usize = 3;

impl Service {
    /// A fresh per-connection state for this service.
    pub fn session(self) -> Session {
        Session {
            service: self,
            held: [0; MAX_HELD],
            held_len: 0,
        }
    }

    /// Appends to `out` the reply to one whole datagram. Never longer than `input` (see the module docs).
    pub fn datagram(self, input: &[u8], out: &mut Vec<u8>) {
        match self {
            Service::Echo => out.extend_from_slice(input),
            Service::Upper => {
                let used = upper_into(input, out, Growth::Forbidden);
                // A truncated character at the end of a datagram will never be completed: pass it through.
                out.extend_from_slice(&input[used..]);
            }
        }
    }

    /// An upper bound on the bytes [`Session::feed`] appends for `input_len` bytes of input. The reactor uses
    /// it to read no more than its output high-water mark can take.
    pub fn max_output(self, input_len: usize) -> usize {
        match self {
            Service::Echo => input_len,
            Service::Upper => MAX_GROWTH * (input_len + MAX_HELD),
        }
    }

    /// The most input bytes whose reply is sure to fit in `room` bytes: the inverse of [`Service::max_output`].
    pub fn max_input(self, room: usize) -> usize {
        match self {
            Service::Echo => room,
            Service::Upper => (room / MAX_GROWTH).saturating_sub(MAX_HELD),
        }
    }

    /// The whole reply to a whole stream, as one call. For tests and the load generator's checks.
    pub fn reply_to_stream(self, input: &[u8]) -> Vec<u8> {
        let mut session = self.session();
        let mut out = Vec::with_capacity(input.len());
        session.feed(input, &mut out);
        session.finish(&mut out);
        out
    }

    /// The service's name as the command line spells it.
    pub fn name(self) -> &'static str {
        match self {
            Service::Upper => "upper",
            Service::Echo => "echo",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One TCP connection's service state: at most [`MAX_HELD`] bytes of a character split across reads.
#[derive(Clone, Debug)]
pub struct Session {
    service: Service,
    /// The start of a UTF-8 character whose remaining bytes have not been read yet.
    held: [u8; MAX_HELD],
    held_len: usize,
}

impl Session {
    /// Takes the next piece of the stream, in order, and appends its reply to `out`.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Step {
        if self.service == Service::Echo {
            out.extend_from_slice(input);
            return Step::Continue;
        }
        if self.held_len > 0 {
            // Finish the held character with at most four new bytes, run through the same code as the rest so
            // that the result cannot depend on where the stream was split.
            let mut joined = [0u8; MAX_HELD + 4];
            let held = self.held_len;
            let take = input.len().min(4);
            joined[..held].copy_from_slice(&self.held[..held]);
            joined[held..held + take].copy_from_slice(&input[..take]);
            let used = upper_into(&joined[..held + take], out, Growth::Allowed);
            if used == 0 {
                // Still not a whole character: then the input was shorter than the character's missing part.
                self.hold(&joined[..held + take]);
                return Step::Continue;
            }
            // The held bytes are a valid prefix, so whatever `upper_into` decided took at least all of them.
            debug_assert!(used >= held);
            input = &input[used - held..];
            self.held_len = 0;
        }
        let used = upper_into(input, out, Growth::Allowed);
        self.hold(&input[used..]);
        Step::Continue
    }

    /// The peer has finished sending: a character still held will never be completed, so it passes through.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.held[..self.held_len]);
        self.held_len = 0;
    }

    fn hold(&mut self, tail: &[u8]) {
        debug_assert!(tail.len() <= MAX_HELD);
        let n = tail.len().min(MAX_HELD);
        self.held[..n].copy_from_slice(&tail[..n]);
        self.held_len = n;
    }
}

/// Whether a character may become more bytes than it was.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Growth {
    Allowed,
    Forbidden,
}

/// Uppercases `input` into `out` and returns how many bytes it used. It stops short only before a valid but
/// incomplete UTF-8 sequence at the very end (at most three bytes), which the caller holds or passes through.
fn upper_into(input: &[u8], out: &mut Vec<u8>, growth: Growth) -> usize {
    out.reserve(input.len());
    let mut rest = input;
    loop {
        // The fast path: a run of ASCII, byte by byte, no decoding.
        let ascii = rest
            .iter()
            .position(|b| !b.is_ascii())
            .unwrap_or(rest.len());
        out.extend(rest[..ascii].iter().map(u8::to_ascii_uppercase));
        rest = &rest[ascii..];
        if rest.is_empty() {
            return input.len();
        }
        let (text, invalid) = match std::str::from_utf8(rest) {
            Ok(text) => (text, None),
            Err(e) => {
                let (valid, _) = rest.split_at(e.valid_up_to());
                // `valid_up_to` promises this prefix is UTF-8; the fallback only keeps this panic-free.
                (
                    std::str::from_utf8(valid).unwrap_or_default(),
                    Some(e.error_len()),
                )
            }
        };
        upper_text(text, out, growth);
        rest = &rest[text.len()..];
        match invalid {
            None => return input.len(),
            // Bytes that can never be UTF-8 pass through unchanged.
            Some(Some(bad)) => {
                out.extend_from_slice(&rest[..bad]);
                rest = &rest[bad..];
            }
            // The input ends inside a character that may yet be completed.
            Some(None) => return input.len() - rest.len(),
        }
    }
}

fn upper_text(text: &str, out: &mut Vec<u8>, growth: Growth) {
    let mut buf = [0u8; 4];
    for c in text.chars() {
        if c.is_ascii() {
            out.push((c as u8).to_ascii_uppercase());
            continue;
        }
        let upper = c.to_uppercase();
        let upper_len: usize = upper.clone().map(char::len_utf8).sum();
        if growth == Growth::Forbidden && upper_len > c.len_utf8() {
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

    fn stream(input: &[u8]) -> Vec<u8> {
        Service::Upper.reply_to_stream(input)
    }

    fn datagram(input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Service::Upper.datagram(input, &mut out);
        out
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
        let mut s = Service::Upper.session();
        let mut out = Vec::new();
        s.feed(b"caf\xc3", &mut out);
        assert_eq!(
            out, b"CAF",
            "the half character is held, the rest answered at once"
        );
        s.feed(b"\xa9!", &mut out);
        assert_eq!(out, "CAFÉ!".as_bytes());
    }

    #[test]
    fn echo_is_identity() {
        let input = b"abc\xff\xc3";
        assert_eq!(Service::Echo.reply_to_stream(input), input);
        let mut out = Vec::new();
        Service::Echo.datagram(input, &mut out);
        assert_eq!(out, input);
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

    /// Checks the growth bound the reactor relies on against every character there is.
    #[test]
    fn growth_bounds_hold_for_every_char() {
        for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
            let mut text = [0u8; 4];
            let bytes = c.encode_utf8(&mut text).as_bytes();
            let grown = stream(bytes).len();
            assert!(grown <= MAX_GROWTH * bytes.len(), "{c:?} grows {grown}");
            assert!(
                datagram(bytes).len() <= bytes.len(),
                "{c:?} grows in a datagram"
            );
        }
    }
}
