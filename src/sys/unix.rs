//! What every Unix shares (Linux, macOS, FreeBSD): resource limits through rustix, which also hides that
//! `rlim_t` is unsigned on Linux and signed on FreeBSD; the listener's `SO_REUSEADDR`; the ports below 1024;
//! and, where there is no `/proc`, a process's own CPU time from `getrusage`. Part of the OS layer
//! (`src/sys/mod.rs`); walk-through: `docs/13-operating-systems.md`.

use std::io;

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

use super::Limit;

fn limit(resource: Resource) -> Limit {
    let Rlimit { current, maximum } = getrlimit(resource);
    Limit {
        soft: current,
        hard: maximum,
    }
}

/// How many descriptors this process may open (`ulimit -n`, `RLIMIT_NOFILE`).
pub fn open_files() -> Limit {
    limit(Resource::Nofile)
}

/// macOS's `setrlimit(2)` refuses an open-file soft limit above `OPEN_MAX` ("use `rlim_cur = min(OPEN_MAX,
/// rlim_max)`", its manual says), so there the soft limit goes no higher.
#[cfg(target_vendor = "apple")]
const SOFT_OPEN_FILES_CEILING: Option<u64> = Some(10_240);
#[cfg(not(target_vendor = "apple"))]
const SOFT_OPEN_FILES_CEILING: Option<u64> = None;

/// Raises the soft open-file limit to the hard limit, the most any process may take without privileges,
/// and returns the limit now in force.
pub fn raise_open_files() -> io::Result<Limit> {
    let now = open_files();
    let wanted = match (now.hard, SOFT_OPEN_FILES_CEILING) {
        (Some(hard), Some(ceiling)) => Some(hard.min(ceiling)),
        (None, ceiling) => ceiling,
        (hard, None) => hard,
    };
    let raise = match (now.soft, wanted) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(soft), Some(wanted)) => soft < wanted,
    };
    if raise {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: wanted,
                maximum: now.hard,
            },
        )?;
    }
    Ok(open_files())
}

/// Processes and threads this user may run (`ulimit -u`, `RLIMIT_NPROC`), soft value; `None` if unlimited.
pub fn task_limit() -> Option<u64> {
    limit(Resource::Nproc).soft
}

/// This process's address space (`ulimit -v`, `RLIMIT_AS`) in bytes, soft value; `None` if unlimited.
pub fn address_space_limit() -> Option<u64> {
    limit(Resource::As).soft
}

/// Binding a port below 1024 takes privileges (root, or `CAP_NET_BIND_SERVICE` on Linux).
pub const LOW_PORTS_NEED_PRIVILEGE: bool = true;

/// `SO_REUSEADDR` on a listener before `bind`: a restarted server binds its port while the old connections
/// still sit in `TIME_WAIT`; a port another listener holds is refused all the same.
pub fn set_listener_reuse(socket: &socket2::Socket) -> io::Result<()> {
    socket.set_reuse_address(true)
}

/// Whether a failed `bind` means the port is taken (`EADDRINUSE`).
pub fn is_address_in_use(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::AddrInUse
}

/// Whether a non-blocking `connect` that returned `e` is merely under way (`EINPROGRESS`).
pub fn connect_in_progress(e: &io::Error) -> bool {
    e.raw_os_error() == Some(rustix::io::Errno::INPROGRESS.raw_os_error())
        || e.kind() == io::ErrorKind::WouldBlock
}

/// User plus system CPU time in seconds, where there is no `/proc` to read it from: `getrusage` can say it
/// for this process only, so any other reads as zero.
#[cfg(not(target_os = "linux"))]
pub fn cpu_seconds(pid: u32) -> f64 {
    if pid != std::process::id() {
        return 0.0;
    }
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage writes one whole rusage into the pointer it is given, which points at one we own.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } != 0 {
        return 0.0;
    }
    // SAFETY: getrusage returned 0, so it filled the struct in.
    let usage = unsafe { usage.assume_init() };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_file_limit_is_read_and_raising_it_never_lowers_it() {
        let before = open_files();
        assert!(before.soft.is_none_or(|soft| soft >= 3), "{before:?}");
        let after = raise_open_files().unwrap();
        assert_eq!(after.hard, before.hard);
        match (before.soft, after.soft) {
            (Some(b), Some(a)) => assert!(a >= b, "{before:?} -> {after:?}"),
            (None, a) => assert_eq!(a, None),
            (Some(_), None) => {}
        }
    }

    #[test]
    fn a_connect_under_way_is_told_from_a_failed_one() {
        let in_progress =
            io::Error::from_raw_os_error(rustix::io::Errno::INPROGRESS.raw_os_error());
        assert!(connect_in_progress(&in_progress));
        let refused = io::Error::from_raw_os_error(rustix::io::Errno::CONNREFUSED.raw_os_error());
        assert!(!connect_in_progress(&refused));
    }
}
