//! The interface every service implements, and the small types it speaks in. It sits apart from the
//! registry (`mod.rs`, which lists the services and dispatches to them) so that a service file imports the
//! interface and the registry imports the services, and neither imports the other back. The module docs of
//! [`crate::service`] explain each part; `docs/10-adding-a-service.md` walks through implementing it.

use std::time::{Duration, Instant};

use super::clock::Clock;
use crate::encoding::Encoding;

/// The most bytes a datagram's reply may be longer than the datagram, for any service: the project's rule
/// against amplification (see the module docs). `tests/service.rs` holds every service to it.
pub const MAX_DATAGRAM_GROWTH: usize = 8;

/// The default `--max-header`: 32 KiB, what nginx accepts by default for a whole header section (its
/// `large_client_header_buffers 4 8k`). A browser's request is one or two kilobytes; the limit is what a
/// connection may hold of a request that has not finished its headers.
pub const DEFAULT_MAX_HEADER: usize = 32 * 1024;

/// The default `--header-timeout`: 60 s, nginx's `client_header_timeout`.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(60);

/// The default `--body-timeout`: 60 s between two reads of a body, nginx's `client_body_timeout`.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// The default `--keepalive-timeout`: 75 s with no request under way, nginx's `keepalive_timeout`.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(75);

/// The default `--max-line`: 64 KiB.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;

/// How a server was asked to serve, beyond which service: the flags that change what a reply is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceOptions {
    /// How `upper` finds the characters in the bytes (`--encoding`).
    pub encoding: Encoding,
    /// The longest line a line service takes, in bytes (`--max-line`).
    pub max_line: usize,
    /// The longest header section `http` takes, in bytes (`--max-header`).
    pub max_header: usize,
    /// How long `http` waits for a header section to complete once its first byte has come
    /// (`--header-timeout`); `None`: forever.
    pub header_timeout: Option<Duration>,
    /// How long `http` waits between two reads of a request's body (`--body-timeout`); `None`: forever.
    pub body_timeout: Option<Duration>,
    /// How long `http` keeps a connection with no request under way (`--keepalive-timeout`); `None`:
    /// forever (then only `--idle-timeout` closes it).
    pub keepalive_timeout: Option<Duration>,
    /// When the server started, in Unix seconds: `http`'s `Last-Modified`. The default, 0 (1970), keeps
    /// examples and fixtures the same from run to run; a server sets its own.
    pub started: u64,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        ServiceOptions {
            encoding: Encoding::Utf8,
            max_line: DEFAULT_MAX_LINE,
            max_header: DEFAULT_MAX_HEADER,
            header_timeout: Some(DEFAULT_HEADER_TIMEOUT),
            body_timeout: Some(DEFAULT_BODY_TIMEOUT),
            keepalive_timeout: Some(DEFAULT_KEEPALIVE_TIMEOUT),
            started: 0,
        }
    }
}

/// What a connection should do after a session has taken a piece of the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Keep reading.
    Continue,
    /// Stop reading; send what is owed, then close (the service's `exit`, an error, `Connection: close`).
    Close,
}

/// How far a session's replies can outgrow its input: for `n` more bytes of input, while it holds `held`
/// bytes back, it appends at most `per_byte × n + per_held × held + fixed` bytes. The same bound covers what
/// [`StreamSession::finish`], [`StreamSession::drain`] and [`StreamSession::expire`] append (with `n` = 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Growth {
    /// Reply bytes one input byte can cost at most (at least 1).
    pub per_byte: usize,
    /// Reply bytes one held-back byte can still become.
    pub per_held: usize,
    /// Reply bytes a piece can add whatever its length (an error line, say).
    pub fixed: usize,
}

impl Growth {
    /// The most bytes `input_len` more bytes of input can make, holding `held`.
    pub fn max_output(&self, held: usize, input_len: usize) -> usize {
        self.per_byte
            .saturating_mul(input_len)
            .saturating_add(self.per_held.saturating_mul(held))
            .saturating_add(self.fixed)
    }

    /// The most input whose replies are sure to fit in `room` bytes, holding `held`: the inverse of
    /// [`Growth::max_output`]. A server reads no more than this.
    pub fn max_input(&self, held: usize, room: usize) -> usize {
        let taken = self
            .per_held
            .saturating_mul(held)
            .saturating_add(self.fixed);
        room.saturating_sub(taken) / self.per_byte.max(1)
    }
}

/// Answers one whole datagram: appends the reply to `out`.
pub type Datagrams = fn(&ServiceOptions, &[u8], &mut Vec<u8>);

/// One service: declared in its own file, listed once in `services!` (see the module docs).
pub trait Protocol {
    /// Its name on the command line (`--service NAME`).
    const NAME: &'static str;
    /// One line for `--help`.
    const ABOUT: &'static str;
    /// How a datagram is answered, or `None` if the service means nothing over UDP: then no server binds
    /// a UDP socket for it and the `listening on` line names only TCP.
    const DATAGRAMS: Option<Datagrams>;

    /// The refusal for a client over the server's connection cap, in the service's own words: a line for
    /// the line services, a `503` for `http` (a client of one protocol cannot read another's error). Meant
    /// to be written whole into a new socket's empty send buffer, so it should be short.
    const REFUSAL: &'static [u8] = b"ERR too many connections\n";
    /// The flag that bounds what a session holds back ([`Protocol::max_held`]), for the message that
    /// says a `--high-water` is too small.
    const MAX_HELD_FLAG: &'static str = "--max-line";
    /// What bytes held back wait for, for the log line that says a connection holds some (a client that
    /// sends `Michael` with no newline to `hello` waits forever, and `-v` says why).
    const WAITS_FOR: &'static str = "the rest of the request";

    /// The state one TCP connection keeps.
    type Session: StreamSession;

    /// A fresh session for a new connection.
    fn session(options: &ServiceOptions) -> Self::Session;
    /// How far replies can outgrow input (see [`Growth`]).
    fn growth(options: &ServiceOptions) -> Growth;
    /// The most bytes a session may hold back: an unfinished line, a character split across reads.
    fn max_held(options: &ServiceOptions) -> usize;

    /// The flags that change what this service does. One given for a service that does not list it does
    /// nothing, and the server says so once at start rather than silently ignoring it.
    const SETTINGS: &'static [Setting] = &[];

    /// Rejects options this service cannot honour (a line limit too short for its own error line), with
    /// a message naming the flag.
    fn check_options(_options: &ServiceOptions) -> Result<(), String> {
        Ok(())
    }
}

/// A flag that changes what a service does (see [`Protocol::SETTINGS`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    /// `--encoding`
    Encoding,
    /// `--max-line`
    MaxLine,
    /// `--max-header`
    MaxHeader,
    /// `--header-timeout`
    HeaderTimeout,
    /// `--body-timeout`
    BodyTimeout,
    /// `--keepalive-timeout`
    KeepaliveTimeout,
}

impl Setting {
    /// Every setting.
    pub const ALL: [Setting; 6] = [
        Setting::Encoding,
        Setting::MaxLine,
        Setting::MaxHeader,
        Setting::HeaderTimeout,
        Setting::BodyTimeout,
        Setting::KeepaliveTimeout,
    ];

    /// The flag, as the command line spells it.
    pub fn flag(self) -> &'static str {
        match self {
            Setting::Encoding => "--encoding",
            Setting::MaxLine => "--max-line",
            Setting::MaxHeader => "--max-header",
            Setting::HeaderTimeout => "--header-timeout",
            Setting::BodyTimeout => "--body-timeout",
            Setting::KeepaliveTimeout => "--keepalive-timeout",
        }
    }
}

/// A line of lowercase words of exactly `size` bytes, its newline included: a two-letter tag for the
/// variant, then text. Distinct variants make a reply delivered to the wrong request, repeated or reordered
/// show.
pub fn lowercase_line(variant: usize, size: usize) -> Vec<u8> {
    const TEXT: &[u8] = b" the quick brown fox jumps over the lazy dog";
    let mut out = Vec::with_capacity(size);
    let tag = [
        b'a' + (variant / 26 % 26) as u8,
        b'a' + (variant % 26) as u8,
    ];
    let body = tag.iter().chain(TEXT.iter().cycle());
    out.extend(body.take(size.saturating_sub(1)));
    if size > 0 {
        out.push(b'\n');
    }
    out
}

/// One TCP connection's service state: the stream, taken piece by piece.
pub trait StreamSession {
    /// What the server says first, the moment the connection is accepted, before reading anything.
    fn greeting(&mut self, _out: &mut Vec<u8>) {}

    /// Takes the next piece of the stream, in order, and appends its replies to `out`. `clock` is the time
    /// of the current turn of the loop: a service that needs the time reads it there, never the system clock.
    fn feed(&mut self, clock: &Clock, input: &[u8], out: &mut Vec<u8>) -> Step;

    /// The peer has finished sending (end of stream): append what is still owed for what it sent.
    fn finish(&mut self, _clock: &Clock, _out: &mut Vec<u8>) {}

    /// The server is shutting down and reads nothing more: append what is owed for the bytes already
    /// taken (a stream service's held bytes). An unfinished request is not owed.
    fn drain(&mut self, _out: &mut Vec<u8>) {}

    /// Bytes held back now, waiting for the rest of a line, a character or a request.
    fn held(&self) -> usize {
        0
    }

    /// A time by which the session wants to be told, if it has one (a request whose headers never finish).
    fn deadline(&self) -> Option<Instant> {
        None
    }

    /// The deadline passed: append what the service says then, and whether the connection goes on.
    fn expire(&mut self, _clock: &Clock, _out: &mut Vec<u8>) -> Step {
        Step::Continue
    }
}
