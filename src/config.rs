//! What a server is asked to do: address, service and limits. One `Config` serves every server mode, so a
//! flag means the same thing whichever loop runs. Flags and defaults are explained in `docs/09-running.md`.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crate::service::Service;

/// The port the tutorials use, for TCP and UDP alike.
pub const DEFAULT_PORT: u16 = 12000;

/// Everything a server needs to start. Build one with [`Config::default`] and change what you need.
#[derive(Clone, Debug)]
pub struct Config {
    /// The address both sockets bind to.
    pub bind: IpAddr,
    /// The port both sockets bind to; 0 picks a free one (the same number for TCP and UDP).
    pub port: u16,
    /// What a request becomes.
    pub service: Service,
    /// Bytes of unsent replies a connection may hold. Past it the server stops reading that connection until
    /// the peer reads, so a client that writes without reading cannot grow the server's memory.
    pub high_water: usize,
    /// Bytes read from one connection in one turn of the loop before the others get their turn.
    pub read_budget: usize,
    /// How long a shutdown waits for pending replies to be flushed before it drops what is left.
    pub shutdown_timeout: Duration,
    /// The most TCP connections served at once by `--mode threads`, one thread each; a client over the cap is
    /// told `ERR too many connections` and closed. `None`: no cap. The other modes do not use it.
    pub max_connections: Option<usize>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: DEFAULT_PORT,
            service: Service::Upper,
            high_water: 256 * 1024,
            read_budget: 256 * 1024,
            shutdown_timeout: Duration::from_secs(3),
            max_connections: None,
        }
    }
}

/// The smallest high-water mark accepted: one full read must always fit below it.
pub const MIN_HIGH_WATER: usize = 64 * 1024;

impl Config {
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
        Ok(())
    }
}
