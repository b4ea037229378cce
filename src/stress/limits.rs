//! What one process needs from the system to hold many connections, checked before any load starts: open
//! files (raised from the soft to the hard limit, as any process may) and local ports (spread over several
//! 127.0.0.x source addresses when one address's ephemeral range cannot hold them all).
//!
//! Walk-through: `docs/08-measuring.md`.

use std::io;

/// Descriptors beyond the connections: stdio, the poll, logs, the odd file a library opens.
const SPARE_FILES: u64 = 64;

/// Connections put on one source address before another is used, well inside Linux's default ephemeral
/// range (32768–60999), so repeated runs still find free ports while old ones sit in TIME_WAIT.
pub const PER_SOURCE: usize = 10_000;

/// Raises this process's open-file soft limit to its hard limit if `sockets` need it. Returns the limit now
/// in force, or an error saying how many are needed and what the limit is.
// `rlim_t` is u64 on Linux but not on every platform, so the casts stay.
#[allow(clippy::unnecessary_cast)]
pub fn raise_open_files(sockets: usize) -> io::Result<u64> {
    let need = (sockets as u64).saturating_add(SPARE_FILES);
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur as u64 >= need {
        return Ok(limit.rlim_cur as u64);
    }
    if (limit.rlim_max as u64) < need {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{sockets} sockets need about {need} open files but this process may have at most {} (the hard \
                 limit, `ulimit -Hn`): use fewer connections or raise the hard limit",
                limit.rlim_max
            ),
        ));
    }
    let raised = libc::rlimit {
        rlim_cur: limit.rlim_max,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit reads one rlimit struct we own; raising the soft limit up to the hard one is allowed.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Err(io::Error::last_os_error());
    }
    log::info!(
        "raised the open-file limit from {} to {}",
        limit.rlim_cur,
        raised.rlim_cur
    );
    Ok(raised.rlim_cur as u64)
}

/// How many local ports one source address offers (Linux's `ip_local_port_range`), if known.
pub fn ephemeral_ports() -> Option<usize> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut parts = range.split_whitespace().map(|p| p.parse::<usize>());
    let (low, high) = (parts.next()?.ok()?, parts.next()?.ok()?);
    Some(high.checked_sub(low)? + 1)
}

/// How many 127.0.0.x source addresses `sockets` connections are spread over: one per [`PER_SOURCE`], and
/// never more than 127.0.0.1–127.0.0.254.
pub fn sources_for(sockets: usize) -> usize {
    sockets.div_ceil(PER_SOURCE).clamp(1, 254)
}
