//! The tutorials' "welcome" service, `--service hello`: the line framing and the replies. Pure bytes, no I/O;
//! [`crate::service`] wires it into a session.
//!
//! # Framing: why `hello` needs it and `upper` does not
//! TCP is a byte stream: one `send` of `Michael` may arrive as `Mic` and `hael`, and two sends may arrive as
//! one read. `upper` maps each byte to its capital, so it can answer whatever a read returned, at once; where
//! the stream was cut does not matter. `hello` answers a *name*, so it must know where a name ends: a line
//! ends with `\n` (a `\r\n` ending is accepted, and the `\r` is not part of the name). The bytes of an
//! unfinished line are kept until its `\n` arrives; a line longer than the limit is refused instead of kept.
//!
//! # Over TCP
//! - On connect: `Welcome!\n`.
//! - Each line `NAME`: `Hello, NAME!\n`. The empty line is a name too: `Hello, !\n`.
//! - The line `exit`: no reply; the connection closes once earlier replies are flushed. Bytes after it are
//!   ignored.
//! - A line whose name passes `--max-line` bytes: `ERR line too long\n`, then the connection closes once that
//!   is flushed. The error is sent as soon as the line is known to be too long, without waiting for its end,
//!   so a connection never holds more than `--max-line` bytes of a line (plus one `\r` that may yet turn
//!   out to be part of its ending).
//! - End of stream (the peer half-closed) inside an unfinished line: the bytes are answered as a last line,
//!   as most line-reading tools treat a last line without its newline (`printf Bob | nc` gets
//!   `Hello, Bob!`). A `\r` at its end is taken for the start of its missing `\r\n`; a last `exit` closes
//!   without reply.
//!
//! # Over UDP
//! A datagram is already a message, so there is no framing and no welcome: each datagram `NAME` gets one
//! datagram `Hello, NAME!` (no newline; the datagram's bytes are the name, a `\n` in it included).
//!
//! # UDP growth: eight bytes, never a multiple
//! socklab's rule is that a UDP reply is never more than a few bytes larger than its datagram, so the
//! server cannot be used to amplify a spoofed flood. `Hello, !` adds exactly 8 bytes to any name, and nothing
//! else ever grows: so even the empty datagram is answered (`Hello, !`, 8 bytes), keeping the rule that every
//! datagram gets one reply. On the wire a datagram carries at least 28 bytes of IPv4 and UDP headers, so the
//! worst case (0 bytes of payload in, 8 out) is 28 bytes in and 36 out: a factor of 1.3, which is no use to
//! an attacker (the floods that matter amplify 50 to 50,000 times). A name longer than `--max-line`, or too
//! long for its greeting to fit in one datagram, gets `ERR line too long` (17 bytes), which is within 8
//! bytes of it because `--max-line` is at least [`MIN_MAX_LINE`].
//!
//! Walk-through: `docs/07-udp-and-tcp.md`.

use crate::service::Step;

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

/// The default `--max-line`: 64 KiB.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;
/// The smallest `--max-line`: a datagram longer than it has at least 9 bytes, so `ERR line too long` (17)
/// is within 8 bytes of it.
pub const MIN_MAX_LINE: usize = TOO_LONG_DATAGRAM.len() - UDP_GROWTH - 1;
/// The most bytes a UDP reply adds to its datagram.
pub const UDP_GROWTH: usize = PREFIX.len() + SUFFIX_DATAGRAM.len();
/// The largest UDP payload over IPv4; a reply must fit in it.
const MAX_DATAGRAM: usize = 65_507;
/// The most bytes one line of input can add to its reply (`Hello, !\n` around an empty name).
const LINE_GROWTH: usize = PREFIX.len() + SUFFIX_LINE.len();

/// Where a hello connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Reading lines.
    Lines,
    /// `exit` or a line too long was seen: nothing more is read or answered.
    Done,
}

/// One hello connection's state: the unfinished line, at most `max_line` bytes (+ one `\r`).
#[derive(Clone, Debug)]
pub struct Lines {
    phase: Phase,
    /// The bytes of the current line read so far, without its `\n`.
    line: Vec<u8>,
    max_line: usize,
}

/// An idle connection keeps a line buffer no larger than this; a bigger one is given back.
const KEEP_CAPACITY: usize = 4096;

impl Lines {
    pub fn new(max_line: usize) -> Lines {
        Lines {
            phase: Phase::Lines,
            line: Vec::new(),
            max_line,
        }
    }

    /// Bytes of an unfinished line held.
    pub fn buffered(&self) -> usize {
        self.line.len()
    }

    /// An upper bound on what [`Lines::feed`] appends for `input_len` more bytes, from this state: each byte
    /// can end a line that grows by 9 bytes, what is buffered may come out with it, and the error may follow.
    pub fn max_output(&self, input_len: usize) -> usize {
        max_output(self.line.len(), input_len)
    }

    /// The most input bytes whose reply is sure to fit in `room`.
    pub fn max_input(&self, room: usize) -> usize {
        max_input(self.line.len(), room)
    }

    /// Takes the next piece of the stream and appends the replies to every line it finishes.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Step {
        let mut rest = input;
        while self.phase == Phase::Lines && !rest.is_empty() {
            match rest.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    let piece = &rest[..end];
                    rest = &rest[end + 1..];
                    if self.line.is_empty() {
                        // The whole line is in this read: answer it without copying it.
                        self.answer(piece, out);
                    } else if self.extend(piece, out) {
                        let line = std::mem::take(&mut self.line);
                        self.answer(&line, out);
                        self.line = line;
                        self.line.clear();
                        if self.line.capacity() > KEEP_CAPACITY {
                            self.line = Vec::new();
                        }
                    }
                }
                None => {
                    self.extend(rest, out);
                    rest = &[];
                }
            }
        }
        self.step()
    }

    /// The peer has finished sending: an unfinished line is answered as the last one.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.phase == Phase::Lines && !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.answer(&line, out);
        }
        self.phase = Phase::Done;
    }

    fn step(&self) -> Step {
        match self.phase {
            Phase::Lines => Step::Continue,
            Phase::Done => Step::Close,
        }
    }

    /// Adds `piece` to the unfinished line, or refuses the line if it would pass the limit. Returns whether
    /// the line is still wanted.
    fn extend(&mut self, piece: &[u8], out: &mut Vec<u8>) -> bool {
        let len = self.line.len() + piece.len();
        let last = piece.last().or(self.line.last()).copied();
        if name_len(len, last) > self.max_line {
            out.extend_from_slice(TOO_LONG);
            self.phase = Phase::Done;
            self.line = Vec::new();
            return false;
        }
        if len > self.line.capacity() {
            // Grow as `Vec` would, but never past the limit: memory stays within `--max-line`.
            let cap = (self.line.capacity() * 2).clamp(len, self.max_line.saturating_add(1));
            self.line.reserve_exact(cap - self.line.len());
        }
        self.line.extend_from_slice(piece);
        true
    }

    /// Answers one whole line (without its `\n`).
    fn answer(&mut self, line: &[u8], out: &mut Vec<u8>) {
        let name = line.strip_suffix(b"\r").unwrap_or(line);
        if name.len() > self.max_line {
            out.extend_from_slice(TOO_LONG);
            self.phase = Phase::Done;
        } else if name == EXIT {
            self.phase = Phase::Done;
        } else {
            out.extend_from_slice(PREFIX);
            out.extend_from_slice(name);
            out.extend_from_slice(SUFFIX_LINE);
        }
    }
}

/// The length of the name in `len` bytes of a line that end with `last`: a final `\r` may be the start of
/// a `\r\n` ending, so it is not counted (yet).
fn name_len(len: usize, last: Option<u8>) -> usize {
    if last == Some(b'\r') {
        len - 1
    } else {
        len
    }
}

/// [`Lines::max_output`] for a connection holding `buffered` bytes of a line.
pub fn max_output(buffered: usize, input_len: usize) -> usize {
    buffered + LINE_GROWTH * input_len + TOO_LONG.len()
}

/// [`Lines::max_input`] for a connection holding `buffered` bytes of a line.
pub fn max_input(buffered: usize, room: usize) -> usize {
    room.saturating_sub(buffered + TOO_LONG.len()) / LINE_GROWTH
}

/// The reply to one datagram: `Hello, NAME!`, or the error for a name that is too long.
pub fn datagram(input: &[u8], max_line: usize, out: &mut Vec<u8>) {
    if input.len() > max_line || input.len() + UDP_GROWTH > MAX_DATAGRAM {
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

    /// Feeds `pieces` in order to a fresh connection, then ends the stream; returns all output and the step
    /// after each piece.
    fn run(max_line: usize, pieces: &[&[u8]]) -> (Vec<u8>, Vec<Step>) {
        let mut lines = Lines::new(max_line);
        let mut out = Vec::new();
        let steps = pieces.iter().map(|p| lines.feed(p, &mut out)).collect();
        lines.finish(&mut out);
        (out, steps)
    }

    fn whole(input: &[u8]) -> Vec<u8> {
        run(DEFAULT_MAX_LINE, &[input]).0
    }

    #[test]
    fn lines_fixtures() {
        assert_eq!(whole(b"Michael\n"), b"Hello, Michael!\n");
        assert_eq!(
            whole(b"Michael\nTracy\r\nSarah\n"),
            b"Hello, Michael!\nHello, Tracy!\nHello, Sarah!\n"
        );
        assert_eq!(whole(b"\n"), b"Hello, !\n");
        assert_eq!(whole(b"\r\n"), b"Hello, !\n");
        // Only the `\r` right before the `\n` is part of the ending.
        assert_eq!(whole(b"a\rb\r\r\n"), b"Hello, a\rb\r!\n");
        assert_eq!(whole("你好\n".as_bytes()), "Hello, 你好!\n".as_bytes());
        assert_eq!(whole(b""), b"");
    }

    #[test]
    fn exit_closes_and_ignores_the_rest() {
        let (out, steps) = run(DEFAULT_MAX_LINE, &[b"Bob\nexit\nCarol\n", b"Dave\n"]);
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
    fn a_line_split_across_reads_is_answered_once_whole() {
        let (out, steps) = run(64, &[b"Mic", b"hael\r", b"\nTra", b"cy\n"]);
        assert_eq!(out, b"Hello, Michael!\nHello, Tracy!\n");
        assert!(steps.iter().all(|s| *s == Step::Continue));
        let mut lines = Lines::new(64);
        let mut out = Vec::new();
        lines.feed(b"Mic", &mut out);
        assert_eq!(out, b"", "nothing is said before the line ends");
        assert_eq!(lines.buffered(), 3);
    }

    #[test]
    fn end_of_stream_answers_the_unfinished_line() {
        assert_eq!(whole(b"Bob"), b"Hello, Bob!\n");
        assert_eq!(whole(b"Ann\nBob\r"), b"Hello, Ann!\nHello, Bob!\n");
        assert_eq!(whole(b"exit"), b"");
        assert_eq!(
            whole(b"Ann\n"),
            b"Hello, Ann!\n",
            "no extra line at the end"
        );
    }

    #[test]
    fn a_line_too_long_is_refused_as_soon_as_it_is_known() {
        // A name of exactly the limit is fine, with either ending.
        assert_eq!(run(8, &[b"12345678\n"]).0, b"Hello, 12345678!\n");
        assert_eq!(
            run(8, &[b"1234", b"5678\r", b"\n"]).0,
            b"Hello, 12345678!\n"
        );
        // One byte more is refused before its end arrives, and nothing after it is answered.
        let (out, steps) = run(8, &[b"ok\n1234", b"56789", b"\nmore\n"]);
        assert_eq!(out, b"Hello, ok!\nERR line too long\n");
        assert_eq!(steps, [Step::Continue, Step::Close, Step::Close]);
        // A `\r` past the limit is refused once it turns out not to end the line.
        assert_eq!(run(8, &[b"12345678\r", b"x"]).0, b"ERR line too long\n");
        // The partial line buffer never passes the limit (plus a possible `\r`).
        let mut lines = Lines::new(8);
        let mut out = Vec::new();
        lines.feed(b"12345678\r", &mut out);
        assert_eq!(lines.buffered(), 9);
        assert!(lines.line.capacity() <= 9);
        lines.feed(b"9", &mut out);
        assert_eq!(lines.buffered(), 0);
    }

    #[test]
    fn datagram_fixtures() {
        let reply = |input: &[u8], max_line| {
            let mut out = Vec::new();
            datagram(input, max_line, &mut out);
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
                datagram(&vec![b'a'; len], max_line, &mut out);
                assert!(
                    out.len() <= len + UDP_GROWTH,
                    "len {len} max_line {max_line}"
                );
            }
        }
    }

    #[test]
    fn output_bounds_hold() {
        // The worst cases: a stream of bare `\n`, and a full buffer finished by one.
        let mut lines = Lines::new(16);
        let mut out = Vec::new();
        lines.feed(b"\n\n\n\n", &mut out);
        assert!(out.len() <= max_output(0, 4));
        let mut out = Vec::new();
        lines.feed(b"0123456789abcdef", &mut out);
        let held = lines.buffered();
        lines.feed(b"\n", &mut out);
        assert!(out.len() <= max_output(held, 1));
        assert_eq!(lines.max_input(max_output(5, 100)), 100);
    }
}
