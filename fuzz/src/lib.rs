//! What each fuzz target checks, through socklab's public API only, on any bytes. Each function panics, naming
//! the rule and the input, when a rule is broken; libFuzzer keeps the input that made it panic.
//!
//! An input is a small header and then a stream: its first byte chooses the options (a limit, an
//! encoding), its second how many cuts follow (0 to 16), then two bytes (little-endian) per cut, each taken
//! modulo the stream's length plus one, then the stream itself ([`Case`]). The stream is fed once whole and
//! once in the pieces the cuts make (empty pieces left out: a server never feeds a read of no bytes), and
//! whatever the split:
//!
//! - the replies are the same bytes, and the connection is closed, or not, the same ([`http_session`]
//!   leaves out `100 Continue`, which RFC 9110 §10.1.1 sends only when a body has not come with its
//!   headers, so its presence depends on the split by design, and compares the close once a request
//!   follows the stream: it says why);
//! - no piece's replies pass the session's own bound (`Session::max_output`) and a session never holds back
//!   more than its service declares (`Service::max_held`), which is what keeps a server under `--high-water`;
//! - where a simple model of the rules exists, the replies are the model's ([`line_framer`]: the framing
//!   rules of `src/service/lines.rs`; [`upper_carry`]: `str::to_uppercase` on the valid UTF-8 and the
//!   other bytes unchanged, or for GBK, decoding, uppercasing ASCII and encoding again).
//!
//! socklab's `tests/fuzz_regressions.rs` compiles this file too (by `#[path]`) and runs the seeds and every
//! input a fuzzer found through it, so they stay fixed on every `cargo test`. Walk-through: `fuzz/README.md`.

use socklab::encoding::Encoding;
use socklab::service::lines::{Line, LineFramer};
use socklab::service::{Clock, Service, ServiceOptions, Step, DEFAULT_MAX_HEADER};

/// One fuzz input, read as the module comment says.
#[derive(Debug)]
pub struct Case<'a> {
    /// Chooses the options; each target says how.
    pub config: u8,
    /// Where the stream is cut, in order, each within `0..=stream.len()` (repeats allowed).
    pub cuts: Vec<usize>,
    pub stream: &'a [u8],
}

impl<'a> Case<'a> {
    pub fn read(data: &'a [u8]) -> Case<'a> {
        let config = data.first().copied().unwrap_or(0);
        let count = data.get(1).map_or(0, |n| usize::from(n % 17));
        let header = (2 + 2 * count).min(data.len());
        let stream = &data[header..];
        let mut cuts: Vec<usize> = data[2.min(data.len())..header]
            .chunks_exact(2)
            .map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])) % (stream.len() + 1))
            .collect();
        cuts.sort_unstable();
        Case {
            config,
            cuts,
            stream,
        }
    }

    /// The stream in the pieces the cuts make, without empty ones.
    pub fn pieces(&self) -> Vec<&'a [u8]> {
        let mut pieces = Vec::new();
        let mut from = 0;
        for &cut in self.cuts.iter().chain([&self.stream.len()]) {
            if cut > from {
                pieces.push(&self.stream[from..cut]);
                from = cut;
            }
        }
        pieces
    }

    /// The stream as one piece (none if it is empty).
    pub fn whole(&self) -> Vec<&'a [u8]> {
        if self.stream.is_empty() {
            Vec::new()
        } else {
            vec![self.stream]
        }
    }
}

/// What a session made of a stream: every byte it wrote, and whether it closed the connection.
#[derive(Debug, PartialEq, Eq)]
pub struct Served {
    pub out: Vec<u8>,
    pub closed: bool,
}

/// Feeds `pieces` to a fresh session of `service`, as a server would: its greeting, each piece until one
/// closes, then end of stream if none did. Checks the session's bounds at every step.
pub fn serve(service: Service, options: &ServiceOptions, pieces: &[&[u8]]) -> Served {
    let clock = Clock::fixed(1_700_000_000);
    let mut session = service.session_with(options);
    let max_held = service.max_held(options);
    let mut out = Vec::new();
    session.greeting(&mut out);
    for (i, piece) in pieces.iter().enumerate() {
        let bound = session.max_output(piece.len());
        let before = out.len();
        let step = session.feed(&clock, piece, &mut out);
        assert!(
            out.len() - before <= bound,
            "{service}: piece {i} ({} bytes) made {} bytes of replies, past the session's bound of {bound}",
            piece.len(),
            out.len() - before
        );
        assert!(
            session.held() <= max_held,
            "{service}: holds {} bytes after piece {i}, past the {max_held} it declares",
            session.held()
        );
        if step == Step::Close {
            return Served { out, closed: true };
        }
    }
    let bound = session.max_output(0);
    let before = out.len();
    session.finish(&clock, &mut out);
    assert!(
        out.len() - before <= bound,
        "{service}: end of stream made {} bytes, past the session's bound of {bound}",
        out.len() - before
    );
    Served { out, closed: false }
}

/// `100 Continue`, the interim response `http` sends when a body did not come with its headers.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// `out` without its `100 Continue` responses.
fn finals(out: &[u8]) -> Vec<u8> {
    let mut kept = Vec::with_capacity(out.len());
    let mut rest = out;
    while !rest.is_empty() {
        if rest.starts_with(CONTINUE) {
            rest = &rest[CONTINUE.len()..];
        } else {
            kept.push(rest[0]);
            rest = &rest[1..];
        }
    }
    kept
}

/// A whole request that brings a newline: appended to a stream, it settles what the session had left
/// undecided at the stream's end.
const PROBE: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";

/// The HTTP session: any bytes, any split, the same final responses as the unsplit stream, within its
/// bounds. The first byte's low bit keeps the default `--max-header` (32 KiB) or, set, makes it small (16 to
/// 1,032 bytes) so that the limit's paths are reached.
///
/// The close is compared once a request is appended ([`PROBE`]): a unit (header section, chunk-size line,
/// trailers) that is not complete is parsed again only when a newline comes (or the limit, or the end of the
/// stream), so that a peer trickling bytes costs linear work, and an error in it is found then. So the
/// session may close at once on `7[` in one read, and only at the next newline on `7` then `[`: the same
/// reply, found later. With a newline after the stream, the decision is made, and must be the same.
pub fn http_session(data: &[u8]) {
    let case = Case::read(data);
    let max_header = if case.config & 1 == 0 {
        DEFAULT_MAX_HEADER
    } else {
        16 + usize::from(case.config >> 1) * 8
    };
    let options = ServiceOptions {
        max_header,
        ..ServiceOptions::default()
    };
    let differs = |what: &str, whole: &Served, split: &Served| {
        format!(
            "http --max-header {max_header}: {what}, split at {:?}, the stream {:?}\nwhole: {:?} (closed: {})\nsplit: {:?} (closed: {})",
            case.cuts,
            String::from_utf8_lossy(case.stream),
            String::from_utf8_lossy(&whole.out),
            whole.closed,
            String::from_utf8_lossy(&split.out),
            split.closed
        )
    };
    let same = |whole: &Served, split: &Served| {
        let (whole, split) = (finals(&whole.out), finals(&split.out));
        whole == split
    };
    let whole = serve(Service::Http, &options, &case.whole());
    let split = serve(Service::Http, &options, &case.pieces());
    assert!(
        same(&whole, &split),
        "{}",
        differs("the replies differ", &whole, &split)
    );
    let probed = [case.stream, PROBE].concat();
    let mut pieces = case.pieces();
    pieces.push(PROBE);
    let whole = serve(Service::Http, &options, &[&probed]);
    let split = serve(Service::Http, &options, &pieces);
    assert!(
        same(&whole, &split) && whole.closed == split.closed,
        "{}",
        differs(
            "with a request after it, the replies or the close differ",
            &whole,
            &split
        )
    );
}

/// What a line service is handed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handed {
    Whole(Vec<u8>),
    TooLong,
}

/// The line that closes the stream, as `hello`'s `exit` does.
const STOP: &[u8] = b"stop";

/// Frames `pieces` with a [`LineFramer`] whose service closes on `stop` and on a line too long; returns
/// what it was handed and whether a piece closed the stream (a `stop` handed over at end of stream does
/// not: nothing is left to close). Checks the framer's bound on what it holds after every piece.
fn frame(max_line: usize, pieces: &[&[u8]]) -> (Vec<Handed>, bool) {
    let mut framer = LineFramer::new(max_line);
    let mut handed = Vec::new();
    let mut each = |line: Line<'_>| match line {
        Line::Whole(bytes) => {
            assert!(
                bytes.len() <= max_line && !bytes.contains(&b'\n'),
                "a line handed over is within the limit and has no newline: {bytes:?}"
            );
            handed.push(Handed::Whole(bytes.to_vec()));
            if bytes == STOP {
                Step::Close
            } else {
                Step::Continue
            }
        }
        Line::TooLong => {
            handed.push(Handed::TooLong);
            Step::Close
        }
    };
    for piece in pieces {
        let step = framer.feed(piece, &mut each);
        assert!(
            framer.held() <= LineFramer::max_held(max_line),
            "the framer holds {} bytes, past {} for --max-line {max_line}",
            framer.held(),
            LineFramer::max_held(max_line)
        );
        if step == Step::Close {
            return (handed, true);
        }
    }
    framer.finish(&mut each);
    (handed, false)
}

/// The framing rules, written as plainly as they are stated: a line ends at `\n`, one `\r` before it is
/// part of the ending, a line longer than `max_line` is refused and ends the stream, and at end of stream
/// an unfinished line is the last line (a `\r` at its end taken for the start of its ending). Returns what
/// is handed over and whether the stream was closed before its end (by `stop` or a refusal).
pub fn model_lines(max_line: usize, stream: &[u8]) -> (Vec<Handed>, bool) {
    let mut handed = Vec::new();
    let mut rest = stream;
    loop {
        let (line, finished) = match rest.iter().position(|&b| b == b'\n') {
            Some(end) => {
                let line = &rest[..end];
                rest = &rest[end + 1..];
                (line, true)
            }
            None if rest.is_empty() => return (handed, false),
            None => (std::mem::take(&mut rest), false),
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > max_line {
            // Refused as soon as it passes the limit, so while it is read (unfinished or not): a close.
            handed.push(Handed::TooLong);
            return (handed, true);
        }
        handed.push(Handed::Whole(line.to_vec()));
        if line == STOP {
            return (handed, finished);
        }
        if !finished {
            return (handed, false);
        }
    }
}

/// The line framer: any bytes, any split, the same lines as the unsplit stream and as [`model_lines`], and
/// never more held than its bound. The first byte chooses `--max-line`: 1 to 64 bytes for most values, so
/// that the limit is reached, or 64 KiB (the default) for the top quarter.
pub fn line_framer(data: &[u8]) {
    let case = Case::read(data);
    let max_line = match case.config {
        0..=191 => 1 + usize::from(case.config % 64),
        _ => socklab::service::DEFAULT_MAX_LINE,
    };
    let whole = frame(max_line, &case.whole());
    let split = frame(max_line, &case.pieces());
    let model = model_lines(max_line, case.stream);
    assert!(
        whole == split,
        "--max-line {max_line}: split at {:?}, the stream {:?}\nwhole: {whole:?}\nsplit: {split:?}",
        case.cuts,
        String::from_utf8_lossy(case.stream)
    );
    assert!(
        whole == model,
        "--max-line {max_line}: the stream {:?}\nframer: {whole:?}\nmodel: {model:?}",
        String::from_utf8_lossy(case.stream)
    );
}

/// `upper`, UTF-8 or GBK: any bytes, any split, the same reply as the unsplit stream, within its bounds, and
/// the model's reply. The first byte's low bit chooses the encoding (set: GBK).
pub fn upper_carry(data: &[u8]) {
    let case = Case::read(data);
    let encoding = if case.config & 1 == 0 {
        Encoding::Utf8
    } else {
        Encoding::Gbk
    };
    let options = ServiceOptions {
        encoding,
        ..ServiceOptions::default()
    };
    let whole = serve(Service::Upper, &options, &case.whole());
    let split = serve(Service::Upper, &options, &case.pieces());
    let shown = |bytes: &[u8]| format!("{bytes:02x?}");
    assert!(
        whole == split,
        "upper --encoding {encoding}: split at {:?}, the stream {}\nwhole: {}\nsplit: {}",
        case.cuts,
        shown(case.stream),
        shown(&whole.out),
        shown(&split.out)
    );
    assert!(!whole.closed, "upper never closes a connection");
    match encoding {
        Encoding::Utf8 => {
            let mut model = Vec::with_capacity(case.stream.len());
            for chunk in case.stream.utf8_chunks() {
                model.extend_from_slice(chunk.valid().to_uppercase().as_bytes());
                model.extend_from_slice(chunk.invalid());
            }
            assert!(
                whole.out == model,
                "upper: the stream {}\nreplied {}\nexpected {}",
                shown(case.stream),
                shown(&whole.out),
                shown(&model)
            );
        }
        Encoding::Gbk => {
            // Exactly as long, and only ASCII lowercase letters changed, to their capitals.
            assert_eq!(whole.out.len(), case.stream.len(), "upper --encoding gbk");
            for (i, (&a, &b)) in case.stream.iter().zip(&whole.out).enumerate() {
                assert!(
                    a == b || (a.is_ascii_lowercase() && b == a.to_ascii_uppercase()),
                    "upper --encoding gbk: byte {i} {a:02x} became {b:02x} in {}",
                    shown(case.stream)
                );
            }
            // Where the bytes are GBK text that encodes back to themselves, the reply is that text with
            // its ASCII letters capitalised (a letter inside a two-byte character is not an ASCII letter).
            let text = Encoding::Gbk.decode(case.stream);
            if Encoding::Gbk
                .encode(&text)
                .is_ok_and(|bytes| bytes == case.stream)
            {
                let model = Encoding::Gbk
                    .encode(&text.to_ascii_uppercase())
                    .expect("uppercasing ASCII keeps text encodable")
                    .into_owned();
                assert!(
                    whole.out == model,
                    "upper --encoding gbk: the stream {}\nreplied {}\nexpected {}",
                    shown(case.stream),
                    shown(&whole.out),
                    shown(&model)
                );
            }
        }
    }
}
