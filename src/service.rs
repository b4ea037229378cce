//! The service: what a request becomes. Bytes in, bytes out, no I/O.
//!
//! Every server mode and every test shares this module, so "what is the right reply" is answered in exactly
//! one place. A TCP connection owns a [`Session`]: it may say something first ([`Session::greeting`]), then
//! is fed whatever each `read` happened to return; a UDP datagram is answered whole by [`Service::datagram`].
//! The options a server was started with (`--encoding`, `--max-line`) come in an [`Options`]; the calls
//! without them use the defaults. Walk-through: `docs/07-udp-and-tcp.md`.
//!
//! # Upper
//! The tutorials' service: the reply is the request uppercased. It works on the byte stream, not on
//! messages: `hello` with no newline is answered `HELLO` at once. Text is UTF-8 and is uppercased the
//! Unicode way (`straße` becomes `STRASSE`); a character split across two reads is held back (at most three
//! bytes) until its end arrives, so any split of a stream gives the same reply as the whole stream. Bytes that
//! are not valid UTF-8 pass through unchanged. ASCII, the common case, takes a byte-at-a-time fast path.
//! With `--encoding gbk` the text is GBK and only its ASCII letters change, the same way (see
//! [`crate::encoding`] for why uppercasing GBK bytes as ASCII corrupts it).
//!
//! # Hello
//! The tutorials' "welcome" server: `Welcome!`, then `Hello, NAME!` for each line `NAME`, until `exit`. Unlike
//! `upper` it needs framing, because it answers whole names; [`crate::hello`] explains it.
//!
//! # Why a UDP reply is never longer than its datagram
//! A few characters grow when uppercased (`ΐ`, two bytes, becomes three characters and six bytes). Over TCP
//! that is just more stream. Over UDP it would make the server an amplifier: a spoofed small datagram could
//! buy a larger reply aimed at a victim, and a 65,507-byte datagram could not be answered at all. So in a
//! datagram a character whose uppercase form needs more bytes than itself is left as it is. `ß` to `SS` (two
//! bytes to two) and `é` to `É` are still uppercased; the reply is at most as long as the request. GBK
//! replies are always exactly as long. `hello` adds its 8 bytes of `Hello, !` and never more (the reasoning
//! is in [`crate::hello`]).

use std::fmt;

use crate::encoding::{gbk_upper_into, Encoding};
use crate::hello::{self, Lines};

/// Which service a server runs. The same value drives every server mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Service {
    /// Reply with the request uppercased (Unicode-aware, byte-stream semantics).
    #[default]
    Upper,
    /// Reply with the request unchanged.
    Echo,
    /// The tutorials' welcome server: `Welcome!`, then `Hello, NAME!` per line, until the line `exit`.
    Hello,
}

/// What a connection should do after a [`Session`] has taken a piece of the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Keep reading.
    Continue,
    /// Stop reading, flush what is pending, then close.
    Close,
}

/// How a server was asked to serve, beyond which service: the flags that change what a reply is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// How `upper` finds the characters in the bytes (`--encoding`).
    pub encoding: Encoding,
    /// The longest name `hello` takes, in bytes (`--max-line`).
    pub max_line: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            encoding: Encoding::Utf8,
            max_line: hello::DEFAULT_MAX_LINE,
        }
    }
}

/// The most bytes one input byte of a stream can become: `ΐ` (2 bytes) uppercases to 6 bytes.
const MAX_GROWTH: usize = 3;

/// The most bytes a [`Session`] holds back: the start of a character whose end has not arrived (UTF-8 or GBK).
const MAX_HELD: usize = 3;

impl Service {
    /// A fresh per-connection state for this service, with the default [`Options`].
    pub fn session(self) -> Session {
        self.session_with(&Options::default())
    }

    /// A fresh per-connection state for this service, as `options` ask.
    pub fn session_with(self, options: &Options) -> Session {
        let state = match self {
            Service::Echo => State::Echo,
            Service::Upper => State::Upper(Held {
                encoding: options.encoding,
                bytes: [0; MAX_HELD],
                len: 0,
            }),
            Service::Hello => State::Hello(Lines::new(options.max_line)),
        };
        Session { state }
    }

    /// Appends to `out` the reply to one whole datagram, with the default [`Options`].
    pub fn datagram(self, input: &[u8], out: &mut Vec<u8>) {
        self.datagram_with(&Options::default(), input, out)
    }

    /// Appends to `out` the reply to one whole datagram. Never longer than `input`, except `hello`'s, which is
    /// at most 8 bytes longer (see the module docs).
    pub fn datagram_with(self, options: &Options, input: &[u8], out: &mut Vec<u8>) {
        match self {
            Service::Echo => out.extend_from_slice(input),
            Service::Upper => {
                let used = match options.encoding {
                    Encoding::Utf8 => upper_into(input, out, Growth::Forbidden),
                    Encoding::Gbk => gbk_upper_into(input, out),
                };
                // A truncated character at the end of a datagram will never be completed: pass it through.
                out.extend_from_slice(&input[used..]);
            }
            Service::Hello => hello::datagram(input, options.max_line, out),
        }
    }

    /// An upper bound on the bytes [`Session::feed`] appends for `input_len` bytes of input, in any state of a
    /// session made by [`Service::session`]. A session with other [`Options`] has its own,
    /// [`Session::max_output`], which the reactor uses.
    pub fn max_output(self, input_len: usize) -> usize {
        match self {
            Service::Echo => input_len,
            Service::Upper => MAX_GROWTH * (input_len + MAX_HELD),
            Service::Hello => hello::max_output(hello::DEFAULT_MAX_LINE + 1, input_len),
        }
    }

    /// The most input bytes whose reply is sure to fit in `room` bytes: the inverse of [`Service::max_output`].
    pub fn max_input(self, room: usize) -> usize {
        match self {
            Service::Echo => room,
            Service::Upper => (room / MAX_GROWTH).saturating_sub(MAX_HELD),
            Service::Hello => hello::max_input(hello::DEFAULT_MAX_LINE + 1, room),
        }
    }

    /// The whole reply to a whole stream, as one call, with the default [`Options`]: the greeting, then the
    /// replies. For tests and the load generator's checks.
    pub fn reply_to_stream(self, input: &[u8]) -> Vec<u8> {
        self.reply_to_stream_with(&Options::default(), input)
    }

    /// [`Service::reply_to_stream`] as `options` ask.
    pub fn reply_to_stream_with(self, options: &Options, input: &[u8]) -> Vec<u8> {
        let mut session = self.session_with(options);
        let mut out = Vec::with_capacity(input.len());
        session.greeting(&mut out);
        session.feed(input, &mut out);
        session.finish(&mut out);
        out
    }

    /// The service's name as the command line spells it.
    pub fn name(self) -> &'static str {
        match self {
            Service::Upper => "upper",
            Service::Echo => "echo",
            Service::Hello => "hello",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One TCP connection's service state.
#[derive(Clone, Debug)]
pub struct Session {
    state: State,
}

#[derive(Clone, Debug)]
enum State {
    Echo,
    /// `upper`: at most [`MAX_HELD`] bytes of a character split across reads.
    Upper(Held),
    /// `hello`: the unfinished line.
    Hello(Lines),
}

/// The start of a character whose remaining bytes have not been read yet.
#[derive(Clone, Debug)]
struct Held {
    encoding: Encoding,
    bytes: [u8; MAX_HELD],
    len: usize,
}

impl Session {
    /// What the server says first, the moment the connection is accepted, before reading anything:
    /// `Welcome!\n` for `hello`, nothing for the others.
    pub fn greeting(&mut self, out: &mut Vec<u8>) {
        if let State::Hello(_) = self.state {
            out.extend_from_slice(hello::WELCOME);
        }
    }

    /// Takes the next piece of the stream, in order, and appends its reply to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Step {
        match &mut self.state {
            State::Echo => {
                out.extend_from_slice(input);
                Step::Continue
            }
            State::Upper(held) => {
                held.feed(input, out);
                Step::Continue
            }
            State::Hello(lines) => lines.feed(input, out),
        }
    }

    /// The peer has finished sending: a character still held will never be completed, so it passes through;
    /// `hello` answers an unfinished last line.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        match &mut self.state {
            State::Echo => {}
            State::Upper(held) => {
                out.extend_from_slice(&held.bytes[..held.len]);
                held.len = 0;
            }
            State::Hello(lines) => lines.finish(out),
        }
    }

    /// An upper bound on the bytes [`Session::feed`] appends for `input_len` more bytes, from this state
    /// (and on what [`Session::finish`] appends, for any `input_len` of at least 1).
    pub fn max_output(&self, input_len: usize) -> usize {
        match &self.state {
            State::Echo => input_len,
            State::Upper(held) => match held.encoding {
                Encoding::Utf8 => MAX_GROWTH * (input_len + MAX_HELD),
                Encoding::Gbk => input_len + MAX_HELD,
            },
            State::Hello(lines) => lines.max_output(input_len),
        }
    }

    /// The most input bytes whose reply is sure to fit in `room` bytes: the inverse of
    /// [`Session::max_output`]. The reactor reads no more than this.
    pub fn max_input(&self, room: usize) -> usize {
        match &self.state {
            State::Echo => room,
            State::Upper(held) => match held.encoding {
                Encoding::Utf8 => (room / MAX_GROWTH).saturating_sub(MAX_HELD),
                Encoding::Gbk => room.saturating_sub(MAX_HELD),
            },
            State::Hello(lines) => lines.max_input(room),
        }
    }
}

impl Held {
    /// Uppercases `input` into `out`, holding back a character whose end has not arrived yet.
    fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        let encoding = self.encoding;
        let upper = |bytes: &[u8], out: &mut Vec<u8>| match encoding {
            Encoding::Utf8 => upper_into(bytes, out, Growth::Allowed),
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
enum Growth {
    Allowed,
    Forbidden,
}

/// Uppercases `input` into `out` and returns how many bytes it used. It stops short only before a valid but
/// incomplete UTF-8 sequence at the very end (at most three bytes), which the caller holds or passes through.
///
/// ASCII bytes never occur inside a multi-byte UTF-8 sequence, so the input splits into ASCII runs, uppercased
/// byte by byte, and non-ASCII runs, the only ones that are decoded.
fn upper_into(input: &[u8], out: &mut Vec<u8>, growth: Growth) -> usize {
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
            upper_text(valid, out, growth);
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

fn upper_text(text: &str, out: &mut Vec<u8>, growth: Growth) {
    let mut buf = [0u8; 4];
    for c in text.chars() {
        if c.is_ascii() {
            out.push((c as u8).to_ascii_uppercase());
            continue;
        }
        let upper = c.to_uppercase();
        if growth == Growth::Forbidden
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

    fn gbk_options() -> Options {
        Options {
            encoding: Encoding::Gbk,
            ..Options::default()
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
        for cut in 0..=input.len() {
            for second in cut..=input.len() {
                let mut session = Service::Upper.session_with(&gbk_options());
                let mut out = Vec::new();
                session.feed(&input[..cut], &mut out);
                session.feed(&input[cut..second], &mut out);
                session.feed(&input[second..], &mut out);
                session.finish(&mut out);
                assert_eq!(out, expected, "cut at {cut} and {second}");
            }
        }
        // In UTF-8 mode the same bytes would be corrupted: that is what the flag is for.
        assert_ne!(Service::Upper.reply_to_stream(&input), expected);
    }

    #[test]
    fn gbk_holds_a_split_character_and_releases_a_truncated_one_at_finish() {
        let mut s = Service::Upper.session_with(&gbk_options());
        let mut out = Vec::new();
        s.feed(b"ab\xd5", &mut out);
        assert_eq!(out, b"AB", "the lead byte is held");
        s.feed(b"fc", &mut out);
        assert_eq!(out, b"AB\xd5fC", "the trail `f` is part of the character");
        s.feed(b"\x81\x30", &mut out);
        assert_eq!(out, b"AB\xd5fC");
        s.finish(&mut out);
        assert_eq!(out, b"AB\xd5fC\x81\x30", "released unchanged at the end");
    }

    #[test]
    fn gbk_datagrams_keep_their_length() {
        let mut out = Vec::new();
        Service::Upper.datagram_with(&gbk_options(), b"\xd5fa\xff\x81", &mut out);
        assert_eq!(out, b"\xd5fA\xff\x81");
    }

    #[test]
    fn hello_fixtures() {
        let hello = |input: &[u8]| Service::Hello.reply_to_stream(input);
        assert_eq!(
            hello(b"Michael\nTracy\nSarah\nexit\n"),
            b"Welcome!\nHello, Michael!\nHello, Tracy!\nHello, Sarah!\n"
        );
        assert_eq!(hello(b""), b"Welcome!\n");
        let mut out = Vec::new();
        Service::Hello.datagram(b"Michael", &mut out);
        assert_eq!(out, b"Hello, Michael!");
        // The encoding does not matter to hello: `\n` and `\r` are never inside a GBK character.
        let gbk = Service::Hello.reply_to_stream_with(&gbk_options(), b"\xd5f\r\n");
        assert_eq!(gbk, b"Welcome!\nHello, \xd5f!\n");
        let mut session = Service::Upper.session();
        let mut greeting = Vec::new();
        session.greeting(&mut greeting);
        assert!(greeting.is_empty(), "upper says nothing first");
    }

    #[test]
    fn session_bounds_hold_at_the_worst_case() {
        let options = Options {
            max_line: 100,
            ..Options::default()
        };
        let mut session = Service::Hello.session_with(&options);
        let mut out = Vec::new();
        session.feed(&[b'x'; 100], &mut out);
        assert_eq!(session.max_input(session.max_output(50)), 50);
        session.feed(b"\n\n\n", &mut out);
        assert!(out.len() <= session.max_output(3) + 100);
        assert!(out.len() <= Service::Hello.max_output(3) + 100);
        for service in [Service::Upper, Service::Echo, Service::Hello] {
            for options in [Options::default(), gbk_options()] {
                let session = service.session_with(&options);
                for room in [0, 1, 100, 65536, 1 << 20] {
                    let n = session.max_input(room);
                    assert!(n == 0 || session.max_output(n) <= room, "{service} {room}");
                    let n = service.max_input(room);
                    assert!(n == 0 || service.max_output(n) <= room, "{service} {room}");
                }
            }
        }
    }
}
