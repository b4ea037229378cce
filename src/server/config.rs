//! What a server is asked to do: address, service and limits. One `Config` serves every server mode, so a
//! flag means the same thing whichever loop runs. Flags and defaults are explained in `docs/09-running.md`.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use super::limits::MIN_READ;
use crate::encoding::Encoding;
use crate::flags;
use crate::service::{
    hello, Service, ServiceOptions, Session, DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_HEADER,
    DEFAULT_MAX_LINE,
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
    /// Bytes of unsent replies a connection may hold. Past it the server stops reading that connection until
    /// the peer reads, so a client that writes without reading cannot grow the server's memory.
    pub high_water: usize,
    /// The kernel's send buffer for each connection (`SO_SNDBUF`), in bytes; `None`: the kernel tunes it.
    pub send_buffer: Option<usize>,
    /// Bytes read from one connection in one turn of the loop before the others get their turn.
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
            service: Service::Upper,
            encoding: Encoding::Utf8,
            max_line: DEFAULT_MAX_LINE,
            max_header: DEFAULT_MAX_HEADER,
            header_timeout: Some(DEFAULT_HEADER_TIMEOUT),
            high_water: 256 * 1024,
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

/// The smallest high-water mark accepted: one full read must always fit below it.
pub const MIN_HIGH_WATER: usize = 64 * 1024;

impl Config {
    /// The service options these flags ask for.
    pub fn service_options(&self) -> ServiceOptions {
        ServiceOptions {
            encoding: self.encoding,
            max_line: self.max_line,
            max_header: self.max_header,
            header_timeout: self.header_timeout,
        }
    }

    /// A new connection's service state, as these flags ask. Every server mode starts a connection with this.
    pub fn session(&self) -> Session {
        self.service.session_with(&self.service_options())
    }

    /// Rejects settings no server can honour, with a message for the person who chose them.
    pub fn validate(&self) -> Result<(), String> {
        if self.high_water < MIN_HIGH_WATER {
            return Err(format!(
                "--high-water must be at least {MIN_HIGH_WATER} bytes (got {})",
                self.high_water
            ));
        }
        if self.read_budget == 0 {
            return Err("--read-budget must be at least 1 byte".into());
        }
        if self.max_connections == Some(0) {
            return Err("--max-connections must be at least 1".into());
        }
        for (flag, duration) in [
            ("--shutdown-timeout", Some(self.shutdown_timeout)),
            ("--idle-timeout", self.idle_timeout),
            ("--write-timeout", self.write_timeout),
            ("--header-timeout", self.header_timeout),
        ] {
            if let Some(duration) = duration {
                flags::check(flag, duration)?;
            }
        }
        if self.max_header < MIN_MAX_HEADER {
            return Err(format!(
                "--max-header must be at least {MIN_MAX_HEADER} bytes (got {})",
                self.max_header
            ));
        }
        if self.max_line < hello::MIN_MAX_LINE {
            return Err(format!(
                "--max-line must be at least {} bytes (got {})",
                hello::MIN_MAX_LINE,
                self.max_line
            ));
        }
        // A connection holding all its service may hold back must still be able to read, or it would
        // stall: the rule comes from the service's own bounds, whichever the service.
        self.service
            .check(&self.service_options(), self.high_water, MIN_READ)?;
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
    }
}
