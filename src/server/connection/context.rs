//! What a driver lends the connections it serves, on every call: the time of the current turn, the rules
//! every connection follows (from the flags), the one buffer replies are built in, the counters, and the
//! account of unsent replies of the whole server. One per single-threaded driver; one per thread in the
//! blocking modes, all sharing one [`Account`]. Like smoltcp's `Context`, it is how the time and the
//! shared buffers reach code that owns no socket and reads no clock. Walk-through: `docs/06-connection.md`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::account::Account;
use super::outbox::Spares;
use crate::server::config::Config;
use crate::server::stats::Stats;
use crate::service::{Clock, Service, ServiceOptions, Session};

/// The rules every connection of a server follows, from its flags; the same in every mode.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// Unsent reply bytes one connection may hold (`--high-water`).
    pub high_water: usize,
    /// The idle window (`--idle-timeout`); `None`: never.
    pub idle_timeout: Option<Duration>,
    /// Bytes per second a connection must average over each idle window (`--min-rate`).
    pub min_rate: u64,
    /// How long replies may wait without the peer reading any (`--write-timeout`); `None`: forever.
    pub write_timeout: Option<Duration>,
}

impl Policy {
    /// The rules `config` asks for.
    pub fn of(config: &Config) -> Policy {
        Policy {
            high_water: config.high_water,
            idle_timeout: config.idle_timeout,
            min_rate: config.min_rate,
            write_timeout: config.write_timeout,
        }
    }
}

/// What every call into a [`super::Connection`] is handed.
#[derive(Debug)]
pub struct Context {
    /// The time of the current turn: the driver ticks it, connections and services only read it.
    pub clock: Clock,
    /// The rules.
    pub policy: Policy,
    /// Replies are built here and written from here; only what the kernel refuses is copied out
    /// (`outbox.rs`). Empty between two connections' calls.
    pub scratch: Vec<u8>,
    /// What the server did.
    pub stats: Stats,
    /// Unsent replies of the whole server, against `--max-unsent`.
    pub account: Arc<Account>,
    /// Once a shutdown has begun, when it gives up: no connection lingers past it.
    pub deadline: Option<Instant>,
    /// Emptied outbox buffers kept for reuse: none unless the driver asks ([`Context::recycle_replies`]).
    pub(super) spares: Spares,
    service: Service,
    options: ServiceOptions,
}

impl Context {
    /// A context for a server configured by `config`, sharing `account`, with a reply buffer of
    /// `scratch` bytes to start with.
    pub fn new(config: &Config, account: Arc<Account>, scratch: usize) -> Context {
        Context {
            clock: Clock::new(),
            policy: Policy::of(config),
            scratch: Vec::with_capacity(scratch),
            stats: Stats::default(),
            account,
            deadline: None,
            spares: Spares::default(),
            service: config.service,
            options: config.service_options(),
        }
    }

    /// Keep up to `count` emptied outbox buffers of up to `largest` bytes each for the next outbox that
    /// needs one. For a driver that moves every reply into its connection's outbox before sending it (a
    /// completion driver: `outbox.rs`), so moving a reply allocates nothing in steady state; the memory
    /// kept is at most `count × largest`.
    pub fn recycle_replies(&mut self, count: usize, largest: usize) {
        self.spares = Spares::new(count, largest);
    }

    /// Emptied outbox buffers kept now.
    pub fn spare_buffers(&self) -> usize {
        self.spares.len()
    }

    /// A new connection's service state.
    pub(super) fn session(&self) -> Session {
        self.service.session_with(&self.options)
    }

    /// Whether the service answers datagrams at all.
    pub fn answers_datagrams(&self) -> bool {
        self.service.datagrams().is_some()
    }

    /// Appends the reply to one whole datagram to `out`; nothing for a TCP-only service.
    pub fn answer_datagram(&self, input: &[u8], out: &mut Vec<u8>) {
        self.service.datagram_with(&self.options, input, out)
    }

    /// What bytes a session holds back wait for, for the log (`hello`: the newline that ends the line).
    pub fn waits_for(&self) -> &'static str {
        self.service.waits_for()
    }

    /// What a client over the connection cap is told, in the service's own words (a line, or HTTP's `503`).
    pub fn refusal(&self) -> &'static [u8] {
        self.service.refusal()
    }
}
