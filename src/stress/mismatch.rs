//! What a wrong reply looked like, and what it suggests. A run keeps the first few wrong replies
//! ([`KEPT`]): the request, the reply it should have had and the bytes that came, so that a report of
//! "wrong 50" can show why. Each is shown escaped (a newline as `\n`, a byte that is not printable ASCII
//! as `\xNN`) and cut to a readable window around its first difference.
//!
//! The most common cause of wrong replies is a server running another service than `--expect` says: so
//! each wrong reply is also compared with what every other service ([`Service::ALL`]) would have sent for
//! its request, by that service's own [`Service::same_reply`], and a service that fits every kept reply is
//! suggested. Over TCP only what had arrived when the first wrong byte was seen (and what was already
//! waiting in the socket) is kept, since the connection is closed there; a reply that is still a prefix of
//! another service's is taken to fit it if it is long enough not to fit by chance ([`MIN_PREFIX`]).
//!
//! Walk-through: `docs/client-and-stress.md` (When replies are wrong).

use std::fmt::Write as _;

use crate::service::Service;

/// Wrong replies kept for the report.
pub const KEPT: usize = 3;

/// Bytes kept of what came beyond the expected reply's length: enough for another service's longer reply
/// (a greeting, an HTTP error) to show whole.
pub const EXTRA: usize = 1024;

/// A reply cut short fits another service's only if it has at least this many bytes (or all of that reply).
pub const MIN_PREFIX: usize = 8;

/// Escaped characters shown of each of the request, the expected and the received bytes.
const SHOWN: usize = 72;

/// One wrong reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// The request it answered (empty for bytes no request asked for).
    pub request: Vec<u8>,
    /// What the service sends for it; the connection's greeting first when `first`.
    pub expected: Vec<u8>,
    /// What came, from the start of this reply (of the greeting when `first`): at most the expected
    /// length and [`EXTRA`] more.
    pub got: Vec<u8>,
    /// The first reply on its TCP connection, so the greeting is part of it.
    pub first: bool,
    /// Why it is wrong, when that is not simply "other bytes": an HTTP response of another server that
    /// cannot be framed, or has another status than its first answer (`http.rs`). `expected` is then that
    /// first answer.
    pub why: Option<String>,
}

impl Mismatch {
    /// Where `got` first differs from `expected` (the shorter one's length if one is a prefix of the other).
    pub fn first_difference(&self) -> usize {
        self.expected
            .iter()
            .zip(&self.got)
            .take_while(|(a, b)| a == b)
            .count()
    }

    /// A few lines for a person: `index` (from 1) of `wrong` in all.
    pub fn describe(&self, index: usize, wrong: u64) -> String {
        if let Some(why) = &self.why {
            let mut s = String::new();
            let _ = writeln!(s, "wrong reply {index} of {wrong}: {why}");
            let _ = writeln!(s, "  request   {}", excerpt(&self.request, 0));
            let _ = writeln!(s, "  first     {}", excerpt(&self.expected, 0));
            let _ = writeln!(s, "  got       {}", excerpt(&self.got, 0));
            return s;
        }
        let at = self.first_difference();
        // A window that shows the first difference with some context before it.
        let from = at.saturating_sub(16);
        let mut s = String::new();
        let _ = writeln!(
            s,
            "wrong reply {index} of {wrong}{}: first difference at byte {at}",
            if self.first {
                " (the first on its connection)"
            } else {
                ""
            }
        );
        let _ = writeln!(s, "  request   {}", excerpt(&self.request, 0));
        let _ = writeln!(s, "  expected  {}", excerpt(&self.expected, from));
        let _ = writeln!(s, "  got       {}", excerpt(&self.got, from));
        s
    }

    /// Which service other than `expect` sends what came, if one does. `udp`: the datagram reply.
    pub fn fits(&self, expect: Service, udp: bool) -> Option<Service> {
        if self.request.is_empty() || self.why.is_some() {
            return None;
        }
        Service::ALL
            .iter()
            .copied()
            .filter(|&s| s != expect)
            .find(|&s| {
                if udp {
                    if s.datagrams().is_none() {
                        return false;
                    }
                    let mut reply = Vec::new();
                    s.datagram(&self.request, &mut reply);
                    s.same_reply(&reply, &self.got)
                } else {
                    let mut reply = s.reply_to_stream(&self.request);
                    if !self.first {
                        let mut greeting = Vec::new();
                        s.session().greeting(&mut greeting);
                        reply.drain(..greeting.len().min(reply.len()));
                    }
                    starts_like(s, &reply, &self.got)
                }
            })
    }
}

/// Whether the stream `got` begins with `reply` as `service` judges replies, or is a long enough
/// beginning of it.
fn starts_like(service: Service, reply: &[u8], got: &[u8]) -> bool {
    if reply.is_empty() {
        return false;
    }
    if got.len() >= reply.len() {
        service.same_reply(reply, &got[..reply.len()])
    } else {
        got.len() >= MIN_PREFIX && service.same_reply(&reply[..got.len()], got)
    }
}

/// The service every kept wrong reply fits, if there is one.
pub fn suggest(kept: &[Mismatch], expect: Service, udp: bool) -> Option<Service> {
    let mut fits = kept.iter().map(|m| m.fits(expect, udp));
    let first = fits.next()??;
    fits.all(|s| s == Some(first)).then_some(first)
}

/// `bytes` escaped from `from` on, quoted, cut to a readable width (72 characters), with its length.
pub fn excerpt(bytes: &[u8], from: usize) -> String {
    let from = from.min(bytes.len());
    let mut text = String::new();
    let mut cut = false;
    for (i, b) in bytes[from..].iter().enumerate() {
        let escaped = b.escape_ascii().to_string();
        if text.len() + escaped.len() > SHOWN {
            cut = from + i < bytes.len();
            break;
        }
        text.push_str(&escaped);
    }
    format!(
        "{}\"{text}\"{} ({} bytes)",
        if from > 0 { "…" } else { "" },
        if cut { "…" } else { "" },
        bytes.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mismatch(service: Service, request: &[u8], first: bool) -> Mismatch {
        Mismatch {
            request: request.to_vec(),
            expected: Service::Upper.reply_to_stream(request),
            got: service.reply_to_stream(request),
            first,
            why: None,
        }
    }

    #[test]
    fn echoed_replies_suggest_echo_and_greetings_suggest_hello() {
        let request = b"aa the quick brown fox\n";
        let echo = mismatch(Service::Echo, request, true);
        assert_eq!(echo.first_difference(), 0);
        assert_eq!(echo.fits(Service::Upper, false), Some(Service::Echo));
        // Only the greeting had come when the connection was closed: a prefix long enough still fits.
        let mut hello = mismatch(Service::Hello, request, true);
        hello.got.truncate(9);
        assert_eq!(hello.fits(Service::Upper, false), Some(Service::Hello));
        hello.got.truncate(3);
        assert_eq!(hello.fits(Service::Upper, false), None, "too short to tell");
        let http = mismatch(Service::Http, request, true);
        assert_eq!(http.fits(Service::Upper, false), Some(Service::Http));
        assert_eq!(
            suggest(&[echo.clone(), echo.clone()], Service::Upper, false),
            Some(Service::Echo)
        );
        assert_eq!(suggest(&[echo, http], Service::Upper, false), None);
    }

    #[test]
    fn datagrams_fit_only_services_that_answer_datagrams() {
        let m = Mismatch {
            request: b"abc".to_vec(),
            expected: b"ABC".to_vec(),
            got: b"abc".to_vec(),
            first: false,
            why: None,
        };
        assert_eq!(m.fits(Service::Upper, true), Some(Service::Echo));
        let noise = Mismatch {
            got: b"nothing like it".to_vec(),
            ..m
        };
        assert_eq!(noise.fits(Service::Upper, true), None);
    }

    #[test]
    fn excerpts_are_escaped_and_cut() {
        assert_eq!(excerpt(b"a\n\xff", 0), "\"a\\n\\xff\" (3 bytes)");
        let long = vec![b'x'; 500];
        let shown = excerpt(&long, 100);
        assert!(shown.starts_with("…\"xxx"), "{shown}");
        assert!(shown.ends_with("xxx\"… (500 bytes)"), "{shown}");
        assert_eq!(shown.matches('x').count(), SHOWN);
        let m = mismatch(Service::Echo, b"hello\n", false);
        let text = m.describe(1, 50);
        assert!(
            text.contains("wrong reply 1 of 50: first difference at byte 0"),
            "{text}"
        );
        assert!(text.contains("expected  \"HELLO\\n\" (6 bytes)"), "{text}");
        assert!(text.contains("got       \"hello\\n\" (6 bytes)"), "{text}");
    }
}
