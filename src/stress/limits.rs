//! What one process needs from the system to hold many connections, checked before any load starts: open
//! files (raised from the soft to the hard limit, as any process may) and local ports (spread over several
//! 127.0.0.x source addresses when one address's ephemeral range cannot hold them all).
//!
//! The limits themselves are read and raised through the OS layer (`src/sys/`). Walk-through:
//! `docs/08-measuring.md`.

use std::io;

/// Descriptors beyond the connections: stdio, the poll, logs, the odd file a library opens.
const SPARE_FILES: u64 = 64;

/// Connections put on one source address before another is used, well inside Linux's default ephemeral
/// range (32768–60999), so repeated runs still find free ports while old ones sit in TIME_WAIT.
pub const PER_SOURCE: usize = 10_000;

/// Raises this process's open-file soft limit to its hard limit if `sockets` need it. Returns the limit now
/// in force, or an error saying how many are needed and what the limit is.
pub fn raise_open_files(sockets: usize) -> io::Result<u64> {
    let need = (sockets as u64).saturating_add(SPARE_FILES);
    let before = crate::sys::open_files();
    let enough = |limit: Option<u64>| limit.is_none_or(|n| n >= need);
    if enough(before.soft) {
        return Ok(before.soft.unwrap_or(u64::MAX));
    }
    if !enough(before.hard) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{sockets} sockets need about {need} open files but this process may have at most {} (the hard \
                 limit, `ulimit -Hn`): use fewer connections or raise the hard limit",
                before.hard.unwrap_or(u64::MAX)
            ),
        ));
    }
    let after = crate::sys::raise_open_files()?;
    let now = after.soft.unwrap_or(u64::MAX);
    log::info!(
        "raised the open-file limit from {} to {now}",
        before.soft.unwrap_or(u64::MAX)
    );
    if now < need {
        // macOS raises no further than OPEN_MAX, whatever the hard limit says.
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{sockets} sockets need about {need} open files but this process may have at most {now}"),
        ));
    }
    Ok(now)
}

/// How many local ports one source address offers (Linux's `ip_local_port_range`), if known.
pub fn ephemeral_ports() -> Option<usize> {
    crate::sys::ephemeral_ports()
}

/// How many 127.0.0.x source addresses `sockets` connections are spread over: one per [`PER_SOURCE`], and
/// never more than 127.0.0.1–127.0.0.254.
pub fn sources_for(sockets: usize) -> usize {
    sockets.div_ceil(PER_SOURCE).clamp(1, 254)
}
