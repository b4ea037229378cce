//! What the tools and the tests need to know of a service, beside what the server runs (`protocol.rs`):
//! examples of valid requests with the replies they must get, a request of any size for the load generator,
//! which bytes of a reply may rightly differ, what the client's prompt asks for, and, for a protocol whose
//! requests have a shape of their own, how a message becomes one. A server never calls any of it, so a
//! service's server half stays what `Protocol` says and no more; the client, the load generator and the
//! tests reach these only through the registry ([`super::Service`]), so no file outside `src/service/` names
//! a particular service (`tests/layers.rs` checks it).
//!
//! Walk-through: `docs/10-adding-a-service.md`.

use std::net::SocketAddr;

use super::example::{Example, Rng};
use super::protocol::{lowercase_line, Protocol, ServiceOptions};

/// What the client shows of a reply to a request it shaped (see [`Tooling::request_for`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shown<'a> {
    /// The part of the reply a person wants to see (an HTTP response's body).
    pub body: &'a [u8],
    /// Something about the reply worth a warning (an HTTP status other than 200), if anything.
    pub warning: Option<&'a [u8]>,
}

/// The tools' and tests' half of a service, for every type that implements [`Protocol`].
pub trait Tooling: Protocol {
    /// What the client's interactive loop asks for before each request.
    const PROMPT: &'static str = "Input a request: ";
    /// The URL scheme whose servers speak this protocol (`http`), if the load generator may be pointed at any
    /// server by a URL and compare it with this one.
    const URL_SCHEME: Option<&'static str> = None;

    /// A valid request stream made from `rng`, and everything the server must send for it (greeting
    /// included) up to and including the end of the stream.
    fn stream_example(options: &ServiceOptions, rng: &mut Rng) -> Example;
    /// A valid datagram and its reply; `None` exactly when [`Protocol::DATAGRAMS`] is.
    fn datagram_example(options: &ServiceOptions, rng: &mut Rng) -> Option<Example>;

    /// One request of exactly `size` bytes (or as close as the protocol allows), distinct for each
    /// `variant`, for the load generator (`socklab-stress --size`). The default is a line of lowercase
    /// words, which every line or stream service takes; a protocol with a shape of its own overrides it.
    fn load_request(variant: usize, size: usize) -> Vec<u8> {
        lowercase_line(variant, size)
    }

    /// Whether `got` is the reply `expected` stands for. Exact equality, unless the protocol's replies
    /// carry bytes that rightly differ from one moment to the next (an HTTP `Date`): then those may differ.
    /// The tools and the tests compare every reply with this.
    fn same_reply(expected: &[u8], got: &[u8]) -> bool {
        expected == got
    }

    /// The request the client sends for `message` (a line typed or given), where the protocol's requests
    /// have a shape of their own: HTTP's message is a path, sent as one `GET` with a `Host` naming
    /// `server`. `None`, the default: the message is the request.
    fn request_for(_message: &[u8], _server: SocketAddr) -> Option<Vec<u8>> {
        None
    }

    /// What the client shows of the whole reply to a request made by [`Tooling::request_for`].
    fn shown(reply: &[u8]) -> Shown<'_> {
        Shown {
            body: reply,
            warning: None,
        }
    }
}
