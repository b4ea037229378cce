//! Text encodings: how the `upper` service finds the characters in the bytes it is sent (`--encoding`), and
//! how a client turns typed text into bytes and replies back into text ([`Encoding::encode`],
//! [`Encoding::decode`]). The tables are `encoding_rs`'s; none are written here.
//!
//! # Why GBK needs its own path
//! The tutorials note that Chinese Windows sends GBK. A GBK character is two bytes, and its second (trail)
//! byte may be anywhere in 0x40–0xFE except 0x7F, which includes `A`–`Z` and `a`–`z`: `說` is `D5 66`, the
//! `66` being `f`. Uppercasing the bytes as ASCII turns `說` into `D5 46`, which is `誇`. So with
//! `--encoding gbk` the server walks the bytes character by character, exactly as `encoding_rs`'s GBK decoder
//! splits them, and uppercases only the ASCII letters that are characters of their own.
//!
//! # The structure, as `encoding_rs` decodes it
//! `encoding_rs` decodes GBK with the WHATWG gb18030 decoder, so GBK input may also hold GB18030 four-byte
//! sequences. A byte below 0x80 is ASCII. 0x80 alone is `€`; 0xFF alone is an error. A lead byte 0x81–0xFE
//! followed by a trail 0x40–0x7E or 0x80–0xFE is one two-byte character (every one of the 23,940 pairs maps
//! to a character; a unit test checks). A lead followed by a digit 0x30–0x39, a lead and a digit is a four-byte
//! sequence. Anything else after a lead is an error of the lead alone, and the byte after it is read again
//! on its own (so in `81 20`, the space is a space), unless it is 0xFF, which the error swallows. No byte is
//! decoded, so nothing is replaced: bytes that are not valid GBK pass through unchanged, and the reply is
//! always exactly as long as the request (so GBK over UDP can never amplify).
//!
//! # Scope: ASCII letters only
//! Only ASCII letters that stand alone change. GBK also holds full-width Latin (`ａ`), Greek and Cyrillic
//! letters that have capitals in GBK, but uppercasing them means decoding and re-encoding each character, and
//! the bytes of a two-byte character could then change under a client that only meant to shout its ASCII.
//! The tutorials' clients send ASCII commands inside Chinese text; that is what is served.
//!
//! Walk-through: `docs/07-udp-and-tcp.md`.

use std::borrow::Cow;
use std::fmt;

/// How `upper` reads the bytes of a request as text. The other services never look inside characters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Encoding {
    /// UTF-8, uppercased the Unicode way (`straße` becomes `STRASSE`).
    #[default]
    #[value(name = "utf-8", alias = "utf8")]
    Utf8,
    /// GBK (as Chinese Windows sends it, GB18030 four-byte sequences included): only ASCII letters change.
    #[value(name = "gbk")]
    Gbk,
}

/// A character the chosen encoding has no bytes for (GBK has no emoji, say).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unencodable(pub char);

impl fmt::Display for Unencodable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} (U+{:04X}) cannot be encoded",
            self.0, self.0 as u32
        )
    }
}

impl std::error::Error for Unencodable {}

impl Encoding {
    /// The name as the command line spells it.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Utf8 => "utf-8",
            Encoding::Gbk => "gbk",
        }
    }

    fn table(self) -> &'static encoding_rs::Encoding {
        match self {
            Encoding::Utf8 => encoding_rs::UTF_8,
            Encoding::Gbk => encoding_rs::GBK,
        }
    }

    /// Typed text to the bytes to send. A character GBK cannot hold is an error rather than a silent `?` or
    /// an HTML `&#...;` escape, so a client can say which character it was.
    pub fn encode(self, text: &str) -> Result<Cow<'_, [u8]>, Unencodable> {
        if self == Encoding::Utf8 {
            return Ok(Cow::Borrowed(text.as_bytes()));
        }
        let mut encoder = self.table().new_encoder();
        let mut out = Vec::with_capacity(
            encoder
                .max_buffer_length_from_utf8_without_replacement(text.len())
                .unwrap_or(text.len() * 4),
        );
        let (result, _read) =
            encoder.encode_from_utf8_to_vec_without_replacement(text, &mut out, true);
        match result {
            encoding_rs::EncoderResult::Unmappable(c) => Err(Unencodable(c)),
            // The buffer was sized by the encoder's own worst case, so it cannot run out.
            encoding_rs::EncoderResult::InputEmpty | encoding_rs::EncoderResult::OutputFull => {
                Ok(Cow::Owned(out))
            }
        }
    }

    /// A whole reply to text. Bytes that are not valid in the encoding become U+FFFD.
    pub fn decode(self, bytes: &[u8]) -> Cow<'_, str> {
        self.table().decode_without_bom_handling(bytes).0
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One step of the GBK structure at the start of some bytes, as `encoding_rs` would split them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Gbk {
    /// One ASCII byte: the only kind that is ever changed.
    Ascii,
    /// This many bytes that are one character, or one error, and pass through unchanged.
    Other(usize),
    /// A lead byte whose sequence is not complete yet (1 to 3 bytes, no letter among them).
    Incomplete,
}

fn is_lead(b: u8) -> bool {
    (0x81..=0xFE).contains(&b)
}

fn is_digit(b: u8) -> bool {
    b.is_ascii_digit()
}

/// Classifies the first character of `bytes` (not empty). Never `Incomplete` for four bytes or more.
fn gbk_step(bytes: &[u8]) -> Gbk {
    let lead = bytes[0];
    if lead < 0x80 {
        return Gbk::Ascii;
    }
    if !is_lead(lead) {
        // 0x80 is `€`, 0xFF an error: one byte either way.
        return Gbk::Other(1);
    }
    let Some(&second) = bytes.get(1) else {
        return Gbk::Incomplete;
    };
    match second {
        0x40..=0x7E | 0x80..=0xFE => Gbk::Other(2),
        // An error that takes the 0xFF with it (it is not ASCII, so the decoder does not read it again).
        0xFF => Gbk::Other(2),
        b if is_digit(b) => match (bytes.get(2), bytes.get(3)) {
            (None, _) => Gbk::Incomplete,
            (Some(&third), _) if !is_lead(third) => Gbk::Other(1),
            (Some(_), None) => Gbk::Incomplete,
            (Some(_), Some(&fourth)) if is_digit(fourth) => Gbk::Other(4),
            // The lead alone is the error; the digit and what follows are read again.
            (Some(_), Some(_)) => Gbk::Other(1),
        },
        // An ASCII byte that cannot follow a lead: the lead is an error, the byte is read again as ASCII.
        _ => Gbk::Other(1),
    }
}

/// Appends `input` to `out` with the ASCII letters that stand alone uppercased, and returns how many bytes
/// it used. It stops short only before an incomplete sequence at the very end (at most three bytes, none of
/// them a letter), which the caller holds until more arrives or passes through unchanged.
pub(crate) fn gbk_upper_into(input: &[u8], out: &mut Vec<u8>) -> usize {
    out.reserve(input.len());
    let mut at = 0;
    while at < input.len() {
        match gbk_step(&input[at..]) {
            Gbk::Ascii => {
                // A run of ASCII at once: the common case.
                let run = input[at..]
                    .iter()
                    .position(|b| !b.is_ascii())
                    .unwrap_or(input.len() - at);
                out.extend(input[at..at + run].iter().map(u8::to_ascii_uppercase));
                at += run;
            }
            Gbk::Other(n) => {
                out.extend_from_slice(&input[at..at + n]);
                at += n;
            }
            Gbk::Incomplete => break,
        }
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gbk(text: &str) -> Vec<u8> {
        Encoding::Gbk.encode(text).unwrap().into_owned()
    }

    /// The reference: what `encoding_rs` reads, with its ASCII letters uppercased.
    fn decoded_upper(bytes: &[u8]) -> String {
        let text = Encoding::Gbk.decode(bytes);
        text.chars().map(|c| c.to_ascii_uppercase()).collect()
    }

    fn upper_whole(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let used = gbk_upper_into(bytes, &mut out);
        out.extend_from_slice(&bytes[used..]);
        out
    }

    /// Same length, and only ASCII lowercase letters changed, into their capitals.
    fn only_letters_changed(input: &[u8], output: &[u8]) -> bool {
        input.len() == output.len()
            && input
                .iter()
                .zip(output)
                .all(|(i, o)| i == o || (i.is_ascii_lowercase() && *o == i.to_ascii_uppercase()))
    }

    #[test]
    fn characters_with_letter_trail_bytes_survive() {
        // 說 D5 66, 時 95 72, 歡 9A 67, 謝 D6 78: each trail byte is a lowercase ASCII letter.
        assert_eq!(gbk("說"), [0xD5, 0x66]);
        assert_eq!(gbk("歡"), [0x9A, 0x67]);
        let input = gbk("歡迎 hello, 說時 world 謝謝!");
        assert_eq!(upper_whole(&input), gbk("歡迎 HELLO, 說時 WORLD 謝謝!"));
        // What ASCII uppercasing would have done: 說 becomes 誇.
        assert_eq!(Encoding::Gbk.decode(&[0xD5, 0x46]), "誇");
    }

    #[test]
    fn single_bytes_and_errors_pass_through() {
        assert_eq!(upper_whole(b"\x80a"), b"\x80A", "0x80 is the euro sign");
        assert_eq!(upper_whole(b"\xffa"), b"\xffA");
        // A lead before a space: the lead is an error, the space and the letter after it are ASCII.
        assert_eq!(upper_whole(b"\x81 a"), b"\x81 A");
        // A lead before 0x7F: 0x7F is read again as ASCII, so the letter after is one too.
        assert_eq!(upper_whole(b"\x81\x7fa"), b"\x81\x7fA");
        // 0xFF after a lead is swallowed by the error; the letter after it is ASCII.
        assert_eq!(upper_whole(b"\x81\xffa"), b"\x81\xffA");
    }

    #[test]
    fn four_byte_sequences() {
        // U+10000 in GB18030: 90 30 81 30.
        assert_eq!(upper_whole(b"\x90\x30\x81\x30a"), b"\x90\x30\x81\x30A");
        assert_eq!(Encoding::Gbk.decode(b"\x90\x30\x81\x30"), "\u{10000}");
        // A broken four-byte sequence: 81 is an error, `0` is ASCII, and `81 61` is one character (乤),
        // so its `a` is not a letter.
        assert_eq!(upper_whole(b"\x81\x30\x81a"), b"\x81\x30\x81a");
        assert_eq!(Encoding::Gbk.decode(b"\x81\x30\x81a"), "\u{FFFD}0乤");
    }

    #[test]
    fn incomplete_sequences_are_left_for_the_caller() {
        for (input, used) in [
            (&b"ab\x81"[..], 2),
            (b"ab\x81\x30", 2),
            (b"ab\x81\x30\x81", 2),
            (b"ab\x81\x30\x81\x30", 6),
            (b"ab\x81\x66", 4),
        ] {
            let mut out = Vec::new();
            assert_eq!(gbk_upper_into(input, &mut out), used, "{input:02x?}");
            assert_eq!(out.len(), used);
        }
    }

    /// Every two-byte pair the scanner calls a character is one character to `encoding_rs`.
    #[test]
    fn every_two_byte_pair_decodes_to_one_character() {
        for lead in 0x81..=0xFEu8 {
            for trail in (0x40..=0x7Eu8).chain(0x80..=0xFE) {
                let pair = [lead, trail];
                let (text, had_errors) = encoding_rs::GBK.decode_without_bom_handling(&pair);
                assert!(!had_errors, "{lead:02x} {trail:02x}");
                assert_eq!(text.chars().count(), 1, "{lead:02x} {trail:02x}");
            }
        }
    }

    /// Every sequence of up to three bytes drawn from the bytes that matter, followed by a letter: the
    /// scanner changes exactly the letters `encoding_rs` reads as ASCII.
    #[test]
    fn agrees_with_encoding_rs_on_short_sequences() {
        let interesting = [
            0x00, 0x20, 0x30, 0x39, 0x3F, 0x40, 0x41, 0x61, 0x7A, 0x7E, 0x7F, 0x80, 0x81, 0x84,
            0x90, 0xA1, 0xE3, 0xFE, 0xFF,
        ];
        let mut input = Vec::new();
        for &a in &interesting {
            for &b in &interesting {
                for &c in &interesting {
                    input.clear();
                    input.extend_from_slice(&[a, b, c, b'x', b'a']);
                    let output = upper_whole(&input);
                    assert!(only_letters_changed(&input, &output), "{input:02x?}");
                    assert_eq!(
                        Encoding::Gbk.decode(&output),
                        decoded_upper(&input),
                        "{input:02x?}"
                    );
                }
            }
        }
    }

    #[test]
    fn encode_and_decode_for_clients() {
        assert_eq!(Encoding::Utf8.encode("你好").unwrap(), "你好".as_bytes());
        assert_eq!(
            Encoding::Gbk.encode("你好").unwrap(),
            &[0xC4, 0xE3, 0xBA, 0xC3][..]
        );
        assert_eq!(Encoding::Gbk.encode("a😀"), Err(Unencodable('😀')));
        assert_eq!(Encoding::Gbk.decode(&[0xC4, 0xE3, 0xBA, 0xC3]), "你好");
        assert_eq!(Encoding::Utf8.decode(b"a\xffb"), "a\u{FFFD}b");
    }
}
