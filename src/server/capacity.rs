//! How many TCP connections a mode can afford at once, from what each one really costs it: descriptors
//! always (one in the single-threaded modes; two in `--mode threads`, the stream and the handle the
//! supervisor keeps to cut it at the shutdown deadline), and for `--mode threads` a thread with its stack,
//! counted against the process and thread limits and the address-space limit. Past the cap a client is told
//! `ERR too many connections` and closed (`sockets::refuse`), never left unanswered. `--mode blocking` serves
//! one client at a time by design, so it has no cap: the others wait in the listen backlog.
//!
//! `--max-connections` above what the limits allow is lowered to what they allow, with one line saying so,
//! as Redis does with `maxclients`. The limits are read through the OS layer (`src/sys/`). Walk-through:
//! `docs/09-running.md`.

use log::warn;

use super::config::Config;
use super::limits::{CONNECTION_STACK, FD_RESERVE};
use super::stats::plural;

/// What one connection costs a mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cost {
    /// Descriptors held while it is open.
    pub descriptors: usize,
    /// Threads held while it is open, each with a [`CONNECTION_STACK`] stack.
    pub threads: usize,
}

/// A connection of the reactor or busy-poll: its socket.
pub const SOCKET: Cost = Cost {
    descriptors: 1,
    threads: 0,
};

/// A connection of `--mode threads`: its socket, the supervisor's handle on it, and its thread.
pub const SOCKET_HANDLE_AND_THREAD: Cost = Cost {
    descriptors: 2,
    threads: 1,
};

/// Threads, processes and descriptors kept back for everything else the process and its user run.
const THREAD_RESERVE: usize = 64;

/// The most connections `config` lets a mode whose connections cost `cost` hold at once: what the limits
/// allow, or `--max-connections` if it asks for fewer.
pub fn connection_cap(config: &Config, cost: Cost) -> usize {
    let (allowed, limit) = allowed(cost, &Limits::of_this_process());
    match config.max_connections {
        None => allowed,
        Some(asked) if asked <= allowed => asked,
        Some(asked) => {
            warn!(
                "--max-connections {asked} is more than {limit} allows: serving at most {}",
                plural(allowed, "connection", "connections")
            );
            allowed
        }
    }
}

/// The limits a cap is computed from.
#[derive(Clone, Copy, Debug)]
struct Limits {
    open_files: usize,
    /// Processes and threads of this user (`RLIMIT_NPROC`), if limited (never, on Windows).
    tasks: Option<usize>,
    /// The system's thread limit (Linux: `/proc/sys/kernel/threads-max`), if known.
    system_threads: Option<usize>,
    /// Address space (`RLIMIT_AS`), if limited (never, on Windows).
    address_space: Option<usize>,
}

impl Limits {
    fn of_this_process() -> Limits {
        Limits {
            open_files: crate::net::open_file_limit(),
            tasks: crate::sys::task_limit().map(saturating_usize),
            system_threads: crate::sys::system_thread_limit().map(saturating_usize),
            address_space: crate::sys::address_space_limit().map(saturating_usize),
        }
    }
}

/// The cap `limits` allow for `cost`, and which limit set it, for the log.
fn allowed(cost: Cost, limits: &Limits) -> (usize, String) {
    let by_files = limits.open_files.saturating_sub(FD_RESERVE) / cost.descriptors.max(1);
    let mut best = (
        by_files,
        format!(
            "the open-file limit ({}, at {} per connection)",
            limits.open_files,
            plural(cost.descriptors, "descriptor", "descriptors")
        ),
    );
    if let Some(per_connection) = std::num::NonZeroUsize::new(cost.threads) {
        let by_threads = [
            limits
                .tasks
                .map(|n| (n, "the process and thread limit (ulimit -u)")),
            limits
                .system_threads
                .map(|n| (n, "the system's thread limit (kernel.threads-max)")),
            limits.address_space.map(|bytes| {
                (
                    bytes / CONNECTION_STACK,
                    "the address-space limit (ulimit -v), at one thread stack per connection",
                )
            }),
        ];
        for (n, name) in by_threads.into_iter().flatten() {
            let cap = n.saturating_sub(THREAD_RESERVE) / per_connection;
            if cap < best.0 {
                best = (cap, format!("{name} ({n})"));
            }
        }
    }
    (best.0.max(1), best.1)
}

/// A limit as a count; one this machine cannot count is as good as none.
fn saturating_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FEW_FILES: Limits = Limits {
        open_files: 1000,
        tasks: None,
        system_threads: None,
        address_space: None,
    };

    #[test]
    fn each_mode_pays_for_what_its_connections_hold() {
        assert_eq!(allowed(SOCKET, &FEW_FILES).0, 968);
        assert_eq!(allowed(SOCKET_HANDLE_AND_THREAD, &FEW_FILES).0, 484);
        let few_threads = Limits {
            tasks: Some(300),
            ..FEW_FILES
        };
        let (cap, why) = allowed(SOCKET_HANDLE_AND_THREAD, &few_threads);
        assert_eq!(cap, 236);
        assert!(why.contains("ulimit -u"), "{why}");
        assert_eq!(
            allowed(SOCKET, &few_threads).0,
            968,
            "no threads, no thread limit"
        );
        let small_memory = Limits {
            address_space: Some(100 * CONNECTION_STACK),
            ..FEW_FILES
        };
        assert_eq!(allowed(SOCKET_HANDLE_AND_THREAD, &small_memory).0, 36);
        let none = Limits {
            open_files: 3,
            ..FEW_FILES
        };
        assert_eq!(allowed(SOCKET, &none).0, 1, "never 0");
    }
}
