//! What a server is asked to do: address, service and limits. One `Config` serves every server mode, so a
//! flag means the same thing whichever loop runs. Flags and defaults are explained in `docs/09-running.md`.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::connection::Account;
use super::limits::MIN_READ;
use crate::encoding::Encoding;
use crate::flags;
use crate::service::{
    Service, ServiceOptions, DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_TIMEOUT,
    DEFAULT_KEEPALIVE_TIMEOUT, DEFAULT_MAX_HEADER, DEFAULT_MAX_LINE,
};

pub use crate::net::DEFAULT_PORT;

/// Everything a server needs to start. Build one with [`Config::default`] and change what you need.
#[derive(Clone, Debug)]
pub struct Config {
    /// The address both sockets bind to.
    pub bind: IpAddr,
    /// The port both sockets bind to; 0 picks a free one (the same number for TCP and UDP).
    pub port: u16,
    /// What a request becomes.
    pub service: Service,
    /// How `upper` reads the bytes as text: UTF-8, or GBK as Chinese Windows sends it.
    pub encoding: Encoding,
    /// The longest line a line service (`hello`) takes, in bytes; a longer one is refused and its
    /// connection closed. A connection never buffers more of a line than this.
    pub max_line: usize,
    /// The longest header section `http` takes, in bytes; a longer one is answered `431`.
    pub max_header: usize,
    /// How long `http` waits for a header section once its first byte has come (`408` after it); `None`:
    /// forever. Enforced in every mode (the blocking ones look at it on their read tick).
    pub header_timeout: Option<Duration>,
    /// How long `http` waits between two reads of a request's body (`408` after it); `None`: forever.
    pub body_timeout: Option<Duration>,
    /// How long `http` keeps a connection on which no request is under way (closed, with nothing said,
    /// after it); `None`: forever, and only `idle_timeout` closes it.
    pub keepalive_timeout: Option<Duration>,
    /// When the server started: `http`'s `Last-Modified`. [`Config::default`] sets it to the moment it is
    /// called.
    pub started: SystemTime,
    /// Bytes of unsent replies a connection may hold. Past it the server stops reading that connection until
    /// the peer reads, so a client that writes without reading cannot grow the server's memory.
    pub high_water: usize,
    /// Bytes of unsent replies all connections together may hold. Past three quarters of it, a connection
    /// that holds unsent replies is not read until they drain; the last quarter is kept for connections
    /// whose replies go out at once (`server/connection/account.rs`).
    pub max_unsent: usize,
    /// The kernel's send buffer for each connection (`SO_SNDBUF`), in bytes; `None`: the kernel tunes it.
    pub send_buffer: Option<usize>,
    /// Bytes read from one connection in one turn of the loop before the others get their turn: only where
    /// one thread serves many connections (the reactor, busy-poll); a blocking thread serves one.
    pub read_budget: usize,
    /// How long a shutdown waits for pending replies to be flushed before it drops what is left.
    pub shutdown_timeout: Duration,
    /// The idle window: a connection that sends nothing for this long, or less than `min_rate` bytes per
    /// second over it, is closed (unless it is waiting on its own replies). `None` turns it off.
    pub idle_timeout: Option<Duration>,
    /// Bytes per second a connection must average over each idle window, so that a client trickling a byte
    /// at a time cannot hold a connection forever. 0 only asks for one byte per window.
    pub min_rate: u64,
    /// A connection whose replies wait this long without the peer reading any of them is closed. `None`
    /// turns it off.
    pub write_timeout: Option<Duration>,
    /// The most TCP connections served at once; a client over it is told `ERR too many connections` and
    /// closed. `None`, or more than the process's limits allow: what they allow for the mode
    /// (`server/capacity.rs`). The blocking mode serves one client at a time and has no cap.
    pub max_connections: Option<usize>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: DEFAULT_PORT,
            service: Service::default(),
            encoding: Encoding::Utf8,
            max_line: DEFAULT_MAX_LINE,
            max_header: DEFAULT_MAX_HEADER,
            header_timeout: Some(DEFAULT_HEADER_TIMEOUT),
            body_timeout: Some(DEFAULT_BODY_TIMEOUT),
            keepalive_timeout: Some(DEFAULT_KEEPALIVE_TIMEOUT),
            started: SystemTime::now(),
            high_water: 256 * 1024,
            max_unsent: DEFAULT_MAX_UNSENT,
            read_budget: 256 * 1024,
            send_buffer: None,
            shutdown_timeout: Duration::from_secs(3),
            idle_timeout: Some(Duration::from_secs(300)),
            min_rate: 1,
            write_timeout: Some(Duration::from_secs(30)),
            max_connections: None,
        }
    }
}

/// The smallest `--max-header`: a request line and a `Host` field with room to spare.
pub const MIN_MAX_HEADER: usize = 256;

/// The default `--max-unsent`: 64 MiB, what a small machine can spare for replies clients have not read.
pub const DEFAULT_MAX_UNSENT: usize = 64 * 1024 * 1024;

/// The smallest high-water mark accepted: one full read must always fit below it.
pub const MIN_HIGH_WATER: usize = 64 * 1024;

/// The range of every size and rate flag: `(flag, least, most)`. Each bounds what one connection may hold
/// (a line, a header section, unsent replies, a turn's reads, a kernel buffer), or what all of them may,
/// so no value typed on a command line can make the server's memory unbounded; anything outside is
/// refused at start, naming the range. Generous at the top: ten times what any client here needs.
pub const SIZE_RANGES: [(&str, u64, u64); 7] = [
    ("--max-line", 1, 16 << 20),
    ("--max-header", MIN_MAX_HEADER as u64, 1 << 20),
    ("--high-water", MIN_HIGH_WATER as u64, 256 << 20),
    ("--max-unsent", MIN_HIGH_WATER as u64, 64 << 30),
    ("--read-budget", 1, 64 << 20),
    ("--send-buffer", 1 << 10, 256 << 20),
    ("--min-rate", 0, 1 << 30),
];

/// The most `--max-connections` may ask for; the limits of the process lower it further at start.
pub const MAX_CONNECTIONS: usize = 10_000_000;

impl Config {
    /// The service options these flags ask for.
    pub fn service_options(&self) -> ServiceOptions {
        ServiceOptions {
            encoding: self.encoding,
            max_line: self.max_line,
            max_header: self.max_header,
            header_timeout: self.header_timeout,
            body_timeout: self.body_timeout,
            keepalive_timeout: self.keepalive_timeout,
            // A start before 1970 is taken as 1970, as the clock takes such a system time.
            started: self
                .started
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }

    /// Rejects settings no server can honour, with a message for the person who chose them.
    pub fn validate(&self) -> Result<(), String> {
        let sizes = [
            Some(self.max_line as u64),
            Some(self.max_header as u64),
            Some(self.high_water as u64),
            Some(self.max_unsent as u64),
            Some(self.read_budget as u64),
            self.send_buffer.map(|n| n as u64),
            Some(self.min_rate),
        ];
        for ((flag, least, most), value) in SIZE_RANGES.into_iter().zip(sizes) {
            if let Some(value) = value {
                flags::check_bytes(flag, value, least, most)?;
            }
        }
        if let Some(n) = self.max_connections {
            if !(1..=MAX_CONNECTIONS).contains(&n) {
                return Err(format!(
                    "--max-connections {n} is out of range: give 1 to {MAX_CONNECTIONS}"
                ));
            }
        }
        for (flag, duration) in [
            ("--shutdown-timeout", Some(self.shutdown_timeout)),
            ("--idle-timeout", self.idle_timeout),
            ("--write-timeout", self.write_timeout),
            ("--header-timeout", self.header_timeout),
            ("--body-timeout", self.body_timeout),
            ("--keepalive-timeout", self.keepalive_timeout),
        ] {
            if let Some(duration) = duration {
                flags::check(flag, duration)?;
            }
        }
        self.service.check_options(&self.service_options())?;
        // A connection holding all its service may hold back must still be able to read, or it would
        // stall: the rule comes from the service's own bounds, whichever the service. The same for the
        // server's budget below its soft limit, where a connection reads normally.
        self.service
            .check(&self.service_options(), self.high_water, MIN_READ)?;
        let soft = Account::new(self.max_unsent).soft_limit();
        self.service
            .check(&self.service_options(), soft, MIN_READ)
            .map_err(|_| {
                format!(
                    "--max-unsent {} is too small for --service {}: three quarters of it must hold the \
                     replies to one read of a connection holding all it may hold back (as --high-water must)",
                    self.max_unsent, self.service
                )
            })?;
        // The last quarter is the reserve for clients whose replies go out at once: a connection holding
        // nothing reads there one `MIN_READ` at a time, if its replies cannot overrun the budget. Smaller than
        // one such read's replies, it could never be used, and clients that never read would stop every other
        // client at the soft limit.
        let one_read = self
            .service
            .growth(&self.service_options())
            .max_output(0, MIN_READ);
        if self.max_unsent - soft < one_read {
            return Err(format!(
                "--max-unsent {} is too small for --service {}: its last quarter, kept for clients whose \
                 replies go out at once, must hold the replies to one {MIN_READ}-byte read ({one_read} bytes), \
                 so --max-unsent {} or more",
                self.max_unsent,
                self.service,
                4 * one_read
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        assert_eq!(Config::default().validate(), Ok(()));
        let tiny = Config {
            high_water: 10,
            ..Config::default()
        };
        assert!(tiny.validate().unwrap_err().contains("--high-water"));
        for absurd in [
            Config {
                max_header: 1_000_000_000_000,
                ..Config::default()
            },
            Config {
                high_water: 1_000_000_000_000_000,
                ..Config::default()
            },
            Config {
                read_budget: 1_000_000_000_000_000,
                ..Config::default()
            },
            Config {
                min_rate: 100_000_000_000,
                ..Config::default()
            },
            Config {
                max_unsent: 0,
                ..Config::default()
            },
            Config {
                send_buffer: Some(usize::MAX),
                ..Config::default()
            },
        ] {
            let err = absurd.validate().unwrap_err();
            assert!(err.contains("is out of range: give"), "{err}");
        }
    }

    #[test]
    fn the_reserve_holds_one_small_read_or_the_budget_is_refused() {
        for service in Service::ALL.iter().copied() {
            let one_read = service
                .growth(&Config::default().service_options())
                .max_output(0, MIN_READ);
            let too_small = Config {
                service,
                max_unsent: (4 * one_read - 1).max(MIN_HIGH_WATER),
                ..Config::default()
            };
            if 4 * one_read > MIN_HIGH_WATER {
                let err = too_small.validate().unwrap_err();
                assert!(
                    err.contains("--max-unsent") && err.contains("last quarter"),
                    "{service}: {err}"
                );
            }
            let enough = Config {
                service,
                max_unsent: (4 * one_read).max(MIN_HIGH_WATER),
                ..Config::default()
            };
            assert_eq!(enough.validate(), Ok(()), "{service}");
        }
    }

    #[test]
    fn the_http_timeouts_are_checked_like_the_other_durations() {
        for (flag, config) in [
            (
                "--body-timeout",
                Config {
                    body_timeout: Some(Duration::from_secs(u64::MAX)),
                    ..Config::default()
                },
            ),
            (
                "--keepalive-timeout",
                Config {
                    keepalive_timeout: Some(Duration::from_secs(u64::MAX)),
                    ..Config::default()
                },
            ),
        ] {
            let err = config.validate().unwrap_err();
            assert!(err.contains(flag), "{err}");
        }
        let options = Config::default().service_options();
        assert_eq!(options.body_timeout, Some(DEFAULT_BODY_TIMEOUT));
        assert_eq!(options.keepalive_timeout, Some(DEFAULT_KEEPALIVE_TIMEOUT));
        assert!(
            options.started > 1_700_000_000,
            "the server's start, not 1970"
        );
    }
}
