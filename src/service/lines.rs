//! Line framing for any service that answers whole lines (`hello` sits on it). Pure bytes, no I/O, no
//! replies: the framer finds where lines end and hands each to its service.
//!
//! # Why a line service needs framing and `upper` does not
//! TCP is a byte stream: one `send` of `Michael` may arrive as `Mic` and `hael`, and two sends may arrive as
//! one read. `upper` maps each byte to its capital, so it can answer whatever a read returned, at once; where
//! the stream was cut does not matter. A service that answers a *line* must know where a line ends: at `\n`
//! (a `\r\n` ending is accepted, and the `\r` is not part of the line). The bytes of an unfinished line are
//! kept until its `\n` arrives; a line longer than the limit is refused instead of kept.
//!
//! # The rules
//! - A line is handed over without its ending, as [`Line::Whole`]. A line that arrives whole inside one
//!   read is handed over from the read itself, without a copy.
//! - A line whose bytes (without its ending) pass `max_line` is refused as soon as that is known, without
//!   waiting for its end: [`Line::TooLong`], and the framer takes nothing more. So a connection never holds
//!   more than `max_line` bytes of a line, plus one `\r` that may yet turn out to be part of its ending.
//! - The service ends the stream by answering a line with [`Step::Close`]: bytes after that line are ignored.
//! - End of stream inside an unfinished line ([`LineFramer::finish`]): the bytes are handed over as a last
//!   line, as most line-reading tools treat a last line without its newline (`printf Bob | nc`). A `\r` at
//!   its end is taken for the start of its missing `\r\n`.
//!
//! Walk-through: `docs/07-udp-and-tcp.md`; a new service on this framer: `docs/10-adding-a-service.md`.

use super::protocol::Step;

/// What the framer hands its service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// A whole line, without its `\n` or `\r\n`.
    Whole(&'a [u8]),
    /// A line longer than the limit. Nothing after it is read.
    TooLong,
}

/// An idle connection keeps a line buffer no larger than this; a bigger one is given back.
const KEEP_CAPACITY: usize = 4096;

/// One connection's framing state: the unfinished line, at most `max_line` bytes (+ one `\r`).
#[derive(Clone, Debug)]
pub struct LineFramer {
    /// The bytes of the current line read so far, without its `\n`.
    line: Vec<u8>,
    max_line: usize,
    /// A line was refused or the service closed: nothing more is taken.
    done: bool,
}

impl LineFramer {
    pub fn new(max_line: usize) -> LineFramer {
        LineFramer {
            line: Vec::new(),
            max_line,
            done: false,
        }
    }

    /// Bytes of an unfinished line held.
    pub fn held(&self) -> usize {
        self.line.len()
    }

    /// The most bytes [`LineFramer::held`] can reach: the limit and a `\r` that may start an ending.
    pub fn max_held(max_line: usize) -> usize {
        max_line.saturating_add(1)
    }

    /// Takes the next piece of the stream and hands `each` every line it finishes (and a line too long),
    /// in order. Returns `Close` once the stream is over for the service.
    pub fn feed(&mut self, input: &[u8], mut each: impl FnMut(Line<'_>) -> Step) -> Step {
        let mut rest = input;
        while !self.done && !rest.is_empty() {
            match rest.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    let piece = &rest[..end];
                    rest = &rest[end + 1..];
                    if self.line.is_empty() {
                        // The whole line is in this read: hand it over without copying it.
                        self.hand(piece, &mut each);
                    } else if self.extend(piece, &mut each) {
                        let line = std::mem::take(&mut self.line);
                        self.hand(&line, &mut each);
                        self.line = line;
                        self.line.clear();
                        if self.line.capacity() > KEEP_CAPACITY {
                            self.line = Vec::new();
                        }
                    }
                }
                None => {
                    self.extend(rest, &mut each);
                    rest = &[];
                }
            }
        }
        self.step()
    }

    /// The peer has finished sending: an unfinished line is handed over as the last one.
    pub fn finish(&mut self, mut each: impl FnMut(Line<'_>) -> Step) -> Step {
        if !self.done && !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.hand(&line, &mut each);
        }
        self.done = true;
        Step::Close
    }

    fn step(&self) -> Step {
        if self.done {
            Step::Close
        } else {
            Step::Continue
        }
    }

    /// Hands over one whole line (without its `\n`).
    fn hand(&mut self, line: &[u8], each: &mut impl FnMut(Line<'_>) -> Step) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let step = if line.len() > self.max_line {
            each(Line::TooLong);
            Step::Close
        } else {
            each(Line::Whole(line))
        };
        if step == Step::Close {
            self.done = true;
        }
    }

    /// Adds `piece` to the unfinished line, or refuses the line if it would pass the limit. Returns whether
    /// the line is still wanted.
    fn extend(&mut self, piece: &[u8], each: &mut impl FnMut(Line<'_>) -> Step) -> bool {
        let len = self.line.len() + piece.len();
        let last = piece.last().or(self.line.last()).copied();
        // A final `\r` may be the start of a `\r\n` ending, so it is not counted (yet).
        let line_len = if last == Some(b'\r') { len - 1 } else { len };
        if line_len > self.max_line {
            each(Line::TooLong);
            self.done = true;
            self.line = Vec::new();
            return false;
        }
        if len > self.line.capacity() {
            // Grow as `Vec` would, but never past the limit: memory stays within `max_line`.
            let cap = (self.line.capacity() * 2).clamp(len, Self::max_held(self.max_line));
            self.line.reserve_exact(cap - self.line.len());
        }
        self.line.extend_from_slice(piece);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames `pieces` in order, then ends the stream; returns what was handed over (`!` for a line too
    /// long) and the step after each piece. The line `stop` closes.
    fn frame(max_line: usize, pieces: &[&[u8]]) -> (Vec<String>, Vec<Step>) {
        let mut framer = LineFramer::new(max_line);
        let mut seen = Vec::new();
        let mut each = |line: Line<'_>| match line {
            Line::Whole(b"stop") => Step::Close,
            Line::Whole(text) => {
                seen.push(String::from_utf8_lossy(text).into_owned());
                Step::Continue
            }
            Line::TooLong => {
                seen.push("!".into());
                Step::Close
            }
        };
        let steps = pieces.iter().map(|p| framer.feed(p, &mut each)).collect();
        framer.finish(&mut each);
        (seen, steps)
    }

    #[test]
    fn lines_and_their_endings() {
        assert_eq!(frame(64, &[b"a\nb\r\nc\n"]).0, ["a", "b", "c"]);
        assert_eq!(frame(64, &[b"\n\r\n"]).0, ["", ""]);
        // Only the `\r` right before the `\n` is part of the ending.
        assert_eq!(frame(64, &[b"a\rb\r\r\n"]).0, ["a\rb\r"]);
        assert!(frame(64, &[b""]).0.is_empty());
    }

    #[test]
    fn a_line_split_across_reads_is_handed_over_once_whole() {
        let (seen, steps) = frame(64, &[b"Mic", b"hael\r", b"\nTra", b"cy\n"]);
        assert_eq!(seen, ["Michael", "Tracy"]);
        assert!(steps.iter().all(|s| *s == Step::Continue));
        let mut framer = LineFramer::new(64);
        framer.feed(b"Mic", |_| {
            panic!("nothing is handed over before the line ends")
        });
        assert_eq!(framer.held(), 3);
    }

    #[test]
    fn close_ignores_the_rest() {
        let (seen, steps) = frame(64, &[b"a\nstop\nb\n", b"c\n"]);
        assert_eq!(seen, ["a"]);
        assert_eq!(steps, [Step::Close, Step::Close]);
    }

    #[test]
    fn end_of_stream_hands_over_the_unfinished_line() {
        assert_eq!(frame(64, &[b"Bob"]).0, ["Bob"]);
        assert_eq!(frame(64, &[b"Ann\nBob\r"]).0, ["Ann", "Bob"]);
        assert_eq!(
            frame(64, &[b"Ann\n"]).0,
            ["Ann"],
            "no extra line at the end"
        );
    }

    #[test]
    fn a_line_too_long_is_refused_as_soon_as_it_is_known() {
        // A line of exactly the limit is fine, with either ending.
        assert_eq!(frame(8, &[b"12345678\n"]).0, ["12345678"]);
        assert_eq!(frame(8, &[b"1234", b"5678\r", b"\n"]).0, ["12345678"]);
        // One byte more is refused before its end arrives, and nothing after it is handed over.
        let (seen, steps) = frame(8, &[b"ok\n1234", b"56789", b"\nmore\n"]);
        assert_eq!(seen, ["ok", "!"]);
        assert_eq!(steps, [Step::Continue, Step::Close, Step::Close]);
        // A whole line too long inside one read.
        assert_eq!(frame(8, &[b"123456789\nx\n"]).0, ["!"]);
        // A `\r` past the limit is refused once it turns out not to end the line.
        assert_eq!(frame(8, &[b"12345678\r", b"x"]).0, ["!"]);
        // The partial line buffer never passes the limit (plus a possible `\r`).
        let mut framer = LineFramer::new(8);
        framer.feed(b"12345678\r", |_| Step::Continue);
        assert_eq!(framer.held(), 9);
        assert!(framer.line.capacity() <= LineFramer::max_held(8));
        framer.feed(b"9", |_| Step::Close);
        assert_eq!(framer.held(), 0);
    }
}
