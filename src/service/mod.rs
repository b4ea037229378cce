//! The services: what a request becomes. Bytes in, bytes out, no I/O.
//!
//! Every server mode, the client, the load generator and the tests share this folder, so "what is the right
//! reply" is answered in exactly one place. The folder holds:
//! - the registry (this file): the `services!` list, the [`Service`] enum it makes, and [`Session`];
//! - the interface every service implements: `protocol.rs`, what the server runs ([`Protocol`],
//!   [`StreamSession`], [`Growth`], [`Step`], [`Setting`]), and `tooling.rs`, what the tools and tests need
//!   ([`Tooling`]: examples, load requests, which reply bytes may differ, the client's prompt and request
//!   shape), both re-exported here;
//! - one file (or folder) per service, each listed once in the `services!` call below, each opening with
//!   a comment that says what the service is (`http/` is a folder, cut along HTTP/1's seams);
//! - what services are built from: [`lines`] (line framing) and `clock.rs` ([`Clock`], the time of the
//!   current turn);
//! - what holds a service to its word: `example.rs` ([`Example`] and [`Rng`], the fixtures each service
//!   supplies), `adversary.rs` (input no example would send, to hold declared bounds against) and
//!   [`conformance`] (the checks any service must pass before it is listed).
//!
//! Walk-through: `docs/07-udp-and-tcp.md`; how to add a service: `docs/10-adding-a-service.md`.
//!
//! # The interface
//! A service is a type that implements [`Protocol`] and [`Tooling`]. It declares:
//! - its name on the command line and a line of help;
//! - its per-connection state, a [`StreamSession`]: what it says first ([`StreamSession::greeting`]), what it
//!   makes of each piece of the stream whatever a `read` happened to return ([`StreamSession::feed`]), what
//!   it owes when the peer ends the stream or the server shuts down, and a deadline it may ask for;
//! - its datagram behaviour ([`Protocol::DATAGRAMS`]): each datagram answered whole, or `None` for a service
//!   that has no meaning over UDP, in which case no server binds a UDP socket for it;
//! - its bounds: how far its replies can outgrow its input ([`Growth`]) and the most it may hold back
//!   ([`Protocol::max_held`]). A server reads no more than the replies it has room for can answer, and
//!   [`Service::check`] refuses a configuration in which a session holding the most it may hold could not
//!   read at all (it would stall, waiting for room that only a reply could free);
//! - the flags it reads ([`Protocol::SETTINGS`]), so one given to a service that ignores it is said at
//!   start, and any check of its own on them ([`Protocol::check_options`]);
//! - in its [`Tooling`] half, examples of valid input and the reply each must get
//!   ([`Tooling::stream_example`]), so that the generic tests run every service through its real path in
//!   every server mode, and [`conformance::check`] can hold any service to its own declarations before it
//!   is listed; and what the client and the load generator need (a prompt, a request of any size, which
//!   reply bytes may differ, how a typed message becomes a request).
//!
//! Each service is listed once, in the `services!` call below: that line makes the [`Service`] variant,
//! its command-line name, its module and the dispatch of every [`Session`] call. Dispatch is a `match` over
//! an enum, so a connection's session is stored inline, with no allocation and no virtual call.
//!
//! # Why a UDP reply is never much longer than its datagram
//! A spoofed small datagram that bought a large reply aimed at a victim would make the server an amplifier.
//! So every service's datagram reply is at most a few bytes longer than the datagram (`upper` never longer,
//! `hello` 8 bytes longer); each service file says how.

use std::fmt;
use std::time::Instant;

mod adversary;
mod clock;
pub mod conformance;
mod example;
pub mod lines;
mod protocol;
mod tooling;

pub use clock::Clock;
pub use example::{Example, Rng};
pub use protocol::{
    Datagrams, Growth, Protocol, ServiceOptions, Setting, Step, StreamSession,
    DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_TIMEOUT, DEFAULT_KEEPALIVE_TIMEOUT, DEFAULT_MAX_HEADER,
    DEFAULT_MAX_LINE, MAX_DATAGRAM_GROWTH,
};
pub use tooling::{Shown, Tooling};

/// Lists every service once. For each line `Variant => module::Type`, it declares `pub mod module`, a
/// [`Service`] variant with the type's name and help for the command line, a [`Session`] variant holding
/// the type's session, and the arm of every dispatching `match`.
macro_rules! services {
    ($($(#[$attr:meta])* $variant:ident => $module:ident :: $ty:ident,)+) => {
        $(pub mod $module;)+

        /// Which service a server runs: one value drives every server mode, the client and the tests.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
        pub enum Service {
            $(
                #[doc = concat!("`", stringify!($module), "`: see [`", stringify!($module), "`].")]
                $(#[$attr])*
                $variant,
            )+
        }

        impl Service {
            /// Every service, in the order they are listed.
            pub const ALL: &'static [Service] = &[$(Service::$variant),+];

            /// The service's name as the command line spells it.
            pub fn name(self) -> &'static str {
                match self {
                    $(Service::$variant => <$module::$ty as Protocol>::NAME,)+
                }
            }

            /// One line of help for the command line.
            pub fn about(self) -> &'static str {
                match self {
                    $(Service::$variant => <$module::$ty as Protocol>::ABOUT,)+
                }
            }

            /// The refusal for a client over the connection cap, in this service's words ([`Protocol::REFUSAL`]).
            pub fn refusal(self) -> &'static [u8] {
                match self {
                    $(Service::$variant => <$module::$ty as Protocol>::REFUSAL,)+
                }
            }

            /// The flag that bounds what a session holds back ([`Protocol::MAX_HELD_FLAG`]).
            pub fn max_held_flag(self) -> &'static str {
                match self {
                    $(Service::$variant => <$module::$ty as Protocol>::MAX_HELD_FLAG,)+
                }
            }

            /// How a datagram is answered, or `None` for a TCP-only service.
            pub fn datagrams(self) -> Option<Datagrams> {
                match self {
                    $(Service::$variant => <$module::$ty as Protocol>::DATAGRAMS,)+
                }
            }

            /// How far replies can outgrow input, as `options` ask.
            pub fn growth(self, options: &ServiceOptions) -> Growth {
                match self {
                    $(Service::$variant => <$module::$ty as Protocol>::growth(options),)+
                }
            }

            /// The most bytes a session may hold back, as `options` ask.
            pub fn max_held(self, options: &ServiceOptions) -> usize {
                match self {
                    $(Service::$variant => <$module::$ty as Protocol>::max_held(options),)+
                }
            }

            /// A fresh per-connection state for this service, as `options` ask.
            pub fn session_with(self, options: &ServiceOptions) -> Session {
                let state = match self {
                    $(Service::$variant => State::$variant(<$module::$ty as Protocol>::session(options)),)+
                };
                Session { growth: self.growth(options), state }
            }

            /// A valid request stream and everything the server must send for it (see
            /// [`Tooling::stream_example`]).
            pub fn stream_example(self, options: &ServiceOptions, rng: &mut Rng) -> Example {
                match self {
                    $(Service::$variant => <$module::$ty as Tooling>::stream_example(options, rng),)+
                }
            }

            /// Of the adversarial inputs, the one whose reply grows the most ([`conformance::worst_input`]).
            pub fn worst_input(self, options: &ServiceOptions) -> Vec<u8> {
                match self {
                    $(Service::$variant => conformance::worst_input::<$module::$ty>(options),)+
                }
            }

            /// Runs the checks every service must pass ([`conformance::check`]) on this one.
            pub fn conformance(self, options: &ServiceOptions, seeds: std::ops::Range<u64>) -> Result<(), String> {
                match self {
                    $(Service::$variant => conformance::check::<$module::$ty>(options, seeds),)+
                }
            }

            /// One request of about `size` bytes for the load generator (see [`Tooling::load_request`]).
            pub fn load_request(self, variant: usize, size: usize) -> Vec<u8> {
                match self {
                    $(Service::$variant => <$module::$ty as Tooling>::load_request(variant, size),)+
                }
            }

            /// Whether `got` is the reply `expected` stands for (see [`Tooling::same_reply`]).
            pub fn same_reply(self, expected: &[u8], got: &[u8]) -> bool {
                match self {
                    $(Service::$variant => <$module::$ty as Tooling>::same_reply(expected, got),)+
                }
            }

            /// What bytes held back wait for (see [`Protocol::WAITS_FOR`]).
            pub fn waits_for(self) -> &'static str {
                match self {
                    $(Service::$variant => <$module::$ty as Protocol>::WAITS_FOR,)+
                }
            }

            /// The flags that change what this service does (see [`Protocol::SETTINGS`]).
            pub fn settings(self) -> &'static [Setting] {
                match self {
                    $(Service::$variant => <$module::$ty as Protocol>::SETTINGS,)+
                }
            }

            /// Whether `options` are ones this service can honour (see [`Protocol::check_options`]).
            pub fn check_options(self, options: &ServiceOptions) -> Result<(), String> {
                match self {
                    $(Service::$variant => <$module::$ty as Protocol>::check_options(options),)+
                }
            }

            /// What the client asks for before each request (see [`Tooling::PROMPT`]).
            pub fn prompt(self) -> &'static str {
                match self {
                    $(Service::$variant => <$module::$ty as Tooling>::PROMPT,)+
                }
            }

            /// The URL scheme whose servers speak this protocol, if any (see [`Tooling::URL_SCHEME`]).
            pub fn url_scheme(self) -> Option<&'static str> {
                match self {
                    $(Service::$variant => <$module::$ty as Tooling>::URL_SCHEME,)+
                }
            }

            /// The request the client sends for `message`, where requests have a shape of their own (see
            /// [`Tooling::request_for`]); `None`: the message is the request.
            pub fn request_for(self, message: &[u8], server: std::net::SocketAddr) -> Option<Vec<u8>> {
                match self {
                    $(Service::$variant => <$module::$ty as Tooling>::request_for(message, server),)+
                }
            }

            /// What the client shows of a reply to a request made by [`Service::request_for`].
            pub fn shown(self, reply: &[u8]) -> Shown<'_> {
                match self {
                    $(Service::$variant => <$module::$ty as Tooling>::shown(reply),)+
                }
            }

            /// A valid datagram and its reply; `None` for a TCP-only service.
            pub fn datagram_example(self, options: &ServiceOptions, rng: &mut Rng) -> Option<Example> {
                match self {
                    $(Service::$variant => <$module::$ty as Tooling>::datagram_example(options, rng),)+
                }
            }
        }

        /// Every service's session type, stored inline.
        #[derive(Clone, Debug)]
        enum State {
            $($variant(<$module::$ty as Protocol>::Session),)+
        }

        /// Each call goes to whichever session the state holds: one `match`, no virtual call.
        impl State {
            fn greeting(&mut self, out: &mut Vec<u8>) {
                match self { $(State::$variant(s) => s.greeting(out),)+ }
            }
            fn feed(&mut self, clock: &Clock, input: &[u8], out: &mut Vec<u8>) -> Step {
                match self { $(State::$variant(s) => s.feed(clock, input, out),)+ }
            }
            fn finish(&mut self, clock: &Clock, out: &mut Vec<u8>) {
                match self { $(State::$variant(s) => s.finish(clock, out),)+ }
            }
            fn drain(&mut self, out: &mut Vec<u8>) {
                match self { $(State::$variant(s) => s.drain(out),)+ }
            }
            fn held(&self) -> usize {
                match self { $(State::$variant(s) => s.held(),)+ }
            }
            fn deadline(&self) -> Option<Instant> {
                match self { $(State::$variant(s) => s.deadline(),)+ }
            }
            fn expire(&mut self, clock: &Clock, out: &mut Vec<u8>) -> Step {
                match self { $(State::$variant(s) => s.expire(clock, out),)+ }
            }
        }
    };
}

services! {
    #[default]
    Upper => upper::Upper,
    Echo => echo::Echo,
    Hello => hello::Hello,
    Http => http::Http,
    HttpFloor => http_floor::HttpFloor,
}

impl clap::ValueEnum for Service {
    fn value_variants<'a>() -> &'a [Self] {
        Service::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()).help(self.about()))
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Service {
    /// A fresh per-connection state with the default [`ServiceOptions`].
    pub fn session(self) -> Session {
        self.session_with(&ServiceOptions::default())
    }

    /// Appends to `out` the reply to one whole datagram, with the default [`ServiceOptions`]. A TCP-only
    /// service appends nothing.
    pub fn datagram(self, input: &[u8], out: &mut Vec<u8>) {
        self.datagram_with(&ServiceOptions::default(), input, out)
    }

    /// Appends to `out` the reply to one whole datagram, as `options` ask. A TCP-only service appends
    /// nothing (and no server gives it a datagram).
    pub fn datagram_with(self, options: &ServiceOptions, input: &[u8], out: &mut Vec<u8>) {
        if let Some(answer) = self.datagrams() {
            answer(options, input, out);
        }
    }

    /// The whole reply to a whole stream, as one call, with the default [`ServiceOptions`]: the greeting,
    /// then the replies, then what end of stream adds. For tests and the tools' checks.
    pub fn reply_to_stream(self, input: &[u8]) -> Vec<u8> {
        self.reply_to_stream_with(&ServiceOptions::default(), input)
    }

    /// [`Service::reply_to_stream`] as `options` ask.
    pub fn reply_to_stream_with(self, options: &ServiceOptions, input: &[u8]) -> Vec<u8> {
        let clock = Clock::new();
        let mut session = self.session_with(options);
        let mut out = Vec::with_capacity(input.len());
        session.greeting(&mut out);
        if session.feed(&clock, input, &mut out) == Step::Continue {
            session.finish(&clock, &mut out);
        }
        out
    }

    /// Whether a server whose connections may hold `high_water` bytes of unsent replies can serve this
    /// service as `options` ask, reading at least `min_read` bytes at a time. The rule is derived from the
    /// service's own declared bounds, whatever the service: a session holding the most it may hold back,
    /// with nothing unsent, must still have room to read, or it would wait forever for room that only a
    /// reply could free.
    pub fn check(
        self,
        options: &ServiceOptions,
        high_water: usize,
        min_read: usize,
    ) -> Result<(), String> {
        let growth = self.growth(options);
        let held = self.max_held(options);
        let needed = growth.max_output(held, min_read);
        let flag = self.max_held_flag();
        if high_water < needed {
            return Err(format!(
                "--service {self}: --high-water {high_water} is too small: a connection may hold {held} bytes \
                 back (an unfinished request; see {flag}), and with them it must still have room to read \
                 {min_read} bytes, which needs --high-water {needed} or more"
            ));
        }
        Ok(())
    }
}

/// One TCP connection's service state, whichever the service. Every server mode, the client and the load
/// generator keep one per connection.
#[derive(Clone, Debug)]
pub struct Session {
    growth: Growth,
    state: State,
}

impl Session {
    /// What the server says first (`hello`'s `Welcome!`), before reading anything.
    pub fn greeting(&mut self, out: &mut Vec<u8>) {
        self.state.greeting(out)
    }

    /// Takes the next piece of the stream, in order, and appends its replies to `out`.
    pub fn feed(&mut self, clock: &Clock, input: &[u8], out: &mut Vec<u8>) -> Step {
        self.state.feed(clock, input, out)
    }

    /// The peer has finished sending: append what is still owed.
    pub fn finish(&mut self, clock: &Clock, out: &mut Vec<u8>) {
        self.state.finish(clock, out)
    }

    /// The server is shutting down: append what is owed for the bytes already taken.
    pub fn drain(&mut self, out: &mut Vec<u8>) {
        self.state.drain(out)
    }

    /// Bytes held back now.
    pub fn held(&self) -> usize {
        self.state.held()
    }

    /// When the session wants to be told that time has passed, if ever.
    pub fn deadline(&self) -> Option<Instant> {
        self.state.deadline()
    }

    /// The session's deadline passed: append what it says, and whether the connection goes on.
    pub fn expire(&mut self, clock: &Clock, out: &mut Vec<u8>) -> Step {
        self.state.expire(clock, out)
    }

    /// An upper bound on the bytes [`Session::feed`] appends for `input_len` more bytes, from this state
    /// (and on what [`Session::finish`], [`Session::drain`] or [`Session::expire`] append).
    pub fn max_output(&self, input_len: usize) -> usize {
        self.growth.max_output(self.held(), input_len)
    }

    /// The most input bytes whose replies are sure to fit in `room` bytes: the inverse of
    /// [`Session::max_output`]. Every server mode reads no more than this.
    pub fn max_input(&self, room: usize) -> usize {
        self.growth.max_input(self.held(), room)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_service_has_a_distinct_name_and_its_examples_match_its_transport() {
        let mut names: Vec<&str> = Service::ALL.iter().map(|s| s.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Service::ALL.len());
        let options = ServiceOptions::default();
        for &service in Service::ALL {
            let mut rng = Rng::new(1);
            assert_eq!(
                service.datagrams().is_some(),
                service.datagram_example(&options, &mut rng).is_some(),
                "{service}"
            );
            assert!(!service.about().is_empty());
            assert!(service.refusal().ends_with(b"\n"), "{service}");
        }
    }

    #[test]
    fn growth_inverts() {
        let growth = Growth {
            per_byte: 9,
            per_held: 1,
            fixed: 18,
        };
        for held in [0, 1, 100] {
            for room in [0, 17, 18, 100, 65536] {
                let n = growth.max_input(held, room);
                assert!(n == 0 || growth.max_output(held, n) <= room);
                assert!(growth.max_output(held, n + 1) > room);
            }
        }
    }

    #[test]
    fn the_stall_check_follows_each_services_own_bounds() {
        let options = ServiceOptions {
            max_line: 100_000,
            ..ServiceOptions::default()
        };
        // Upper holds three bytes at most: any reasonable high-water mark serves it.
        assert!(Service::Upper.check(&options, 64 * 1024, 4096).is_ok());
        // Hello holds up to a whole line: a mark below the line and a read's replies cannot serve it.
        let err = Service::Hello.check(&options, 64 * 1024, 4096).unwrap_err();
        assert!(
            err.contains("--high-water") && err.contains("see --max-line"),
            "{err}"
        );
        assert!(Service::Hello.check(&options, 256 * 1024, 4096).is_ok());
        // Http holds up to a header section: the message names the flag that bounds it.
        let options = ServiceOptions {
            max_header: 100_000,
            ..ServiceOptions::default()
        };
        let err = Service::Http.check(&options, 64 * 1024, 4096).unwrap_err();
        assert!(
            err.contains("see --max-header") && !err.contains("--max-line"),
            "{err}"
        );
    }
}
