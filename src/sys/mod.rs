//! The operating system in one place: every call the library makes that std, mio and socket2 do not make for
//! it, behind one interface, split by OS where the systems differ (as mio's own `src/sys/` is). The table
//! below says what each OS gives; each OS file holds the calls themselves:
//!
//! - `unix.rs`: every Unix (Linux, macOS, FreeBSD): resource limits through rustix, `SO_REUSEADDR`, the
//!   privileged ports, a process's own CPU time from `getrusage` where `/proc` is missing;
//! - `linux.rs`: Linux only: `recvmmsg`/`sendmmsg`, `TCP_INFO`, the timerfd, and what `/proc` says of a
//!   process and of the system;
//! - `windows.rs`: Windows: `SO_EXCLUSIVEADDRUSE`, `WSAEACCES`, the console's stops, a process's figures
//!   from the Win32 API;
//! - `other.rs`: what stands in wherever Linux's calls are missing: one datagram per system call, no
//!   precise timer.
//!
//! Every `unsafe` block of the library is in these files, each with the reason it is sound (`SAFETY:`). A
//! well-kept crate makes the call where one can: rustix for the limits, the timerfd and the clock tick, with
//! no unsafe on our side; libc where rustix has no call; windows-sys for Win32. Walk-through:
//! `docs/13-operating-systems.md`.
//!
//! | | Linux | macOS, FreeBSD | Windows |
//! |---|---|---|---|
//! | open files | `RLIMIT_NOFILE` | `RLIMIT_NOFILE` (macOS: raised no further than `OPEN_MAX`) | none for sockets: the fixed 2^24 handles a process may hold |
//! | threads, address space | `RLIMIT_NPROC`, `RLIMIT_AS`, `kernel.threads-max` | `RLIMIT_NPROC`, `RLIMIT_AS` | none |
//! | local ports | `ip_local_port_range` | unknown | unknown |
//! | a process's CPU, threads, descriptors, memory | `/proc/PID/…` | CPU time of this process only (`getrusage`); the rest zero | `GetProcessTimes`, Toolhelp, `GetProcessHandleCount`, the working set |
//! | listener option | `SO_REUSEADDR` | `SO_REUSEADDR` | `SO_EXCLUSIVEADDRUSE`; `WSAEACCES` means "in use" |
//! | the listen backlog | `TCP_INFO` | unknown | unknown |
//! | datagrams | `recvmmsg`/`sendmmsg` | one call per datagram | one call per datagram |
//! | precise wake-up | timerfd | none: the poll's millisecond timeout | none |
//! | stop requests | SIGINT, SIGTERM (signal-hook, in `server/`) | SIGINT, SIGTERM | Ctrl-C, Ctrl-Break, closing the console (`SetConsoleCtrlHandler`) |

use std::io;
use std::net::SocketAddr;
// A socket's raw handle, whatever the OS calls it.
#[cfg(unix)]
use std::os::fd::AsRawFd as AsRawSource;
#[cfg(windows)]
use std::os::windows::io::AsRawSocket as AsRawSource;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(not(target_os = "linux"))]
mod other;
#[cfg(unix)]
mod unix;
#[cfg(windows)]
mod windows;

/// A resource limit: the soft value in force and the hard ceiling an unprivileged process may raise it to.
/// `None` is unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

// Limits: `open_files` (how many descriptors this process may open), `raise_open_files` (the soft limit up
// as far as an unprivileged process may), `task_limit` (processes and threads of this user),
// `address_space_limit` (bytes), `system_thread_limit`, `ephemeral_ports` (local ports per source address).
#[cfg(target_os = "linux")]
pub use linux::{ephemeral_ports, system_thread_limit};
#[cfg(not(target_os = "linux"))]
pub use other::{ephemeral_ports, system_thread_limit};
#[cfg(unix)]
pub use unix::{address_space_limit, open_files, raise_open_files, task_limit};
#[cfg(windows)]
pub use windows::{address_space_limit, open_files, raise_open_files, task_limit};

// What a process costs: `cpu_seconds` (user plus system, every thread), `thread_count`, `fd_count`,
// `resident_kib`. A process that is gone, or a figure this OS cannot give, reads as zero rather than failing
// a measurement.
#[cfg(target_os = "linux")]
pub use linux::{cpu_seconds, fd_count, resident_kib, thread_count};
#[cfg(not(any(target_os = "linux", windows)))]
pub use other::{fd_count, resident_kib, thread_count};
#[cfg(all(unix, not(target_os = "linux")))]
pub use unix::cpu_seconds;
#[cfg(windows)]
pub use windows::{cpu_seconds, fd_count, resident_kib, thread_count};

// Sockets: `LOW_PORTS_NEED_PRIVILEGE`, `set_listener_reuse` (before a listener's bind), `is_address_in_use`
// (a failed bind's error), `connect_in_progress` (a non-blocking connect's), `backlog` (connections the
// kernel accepted that the server has not).
#[cfg(target_os = "linux")]
pub use linux::backlog;
#[cfg(not(target_os = "linux"))]
pub use other::backlog;
#[cfg(unix)]
pub use unix::{
    connect_in_progress, is_address_in_use, set_listener_reuse, LOW_PORTS_NEED_PRIVILEGE,
};
#[cfg(windows)]
pub use windows::{
    connect_in_progress, exclusive_address_use, is_address_in_use, set_listener_reuse,
    LOW_PORTS_NEED_PRIVILEGE,
};

// Whether a Windows build runs under Wine, which CI uses (`.ci/wine-setup`): `is_wine`.
#[cfg(windows)]
pub use windows::is_wine;

// Windows' stops, where Unix has SIGINT and SIGTERM: `catch_console_stops` (Ctrl-C, Ctrl-Break, closing the
// console, each by name), `console_stops_finished` (the run has ended: a handler waiting for a closing
// console may return), `simulate_console_stop` (the handler, called directly, for tests under Wine).
#[cfg(windows)]
pub use windows::{
    catch_console_stops, console_stop_name, console_stops_finished, simulate_console_stop,
};

// Datagrams in batches: `Senders` (who sent each datagram of a batch), `receive_datagrams`,
// `send_datagrams`, for any `DatagramSocket`.
#[cfg(target_os = "linux")]
pub use linux::{receive_datagrams, send_datagrams, Senders};
#[cfg(not(target_os = "linux"))]
pub use other::{receive_datagrams, send_datagrams, Senders};

/// A UDP socket the batch calls can use: std's, or mio's. A loop that waits with mio should pass mio's: on
/// Windows mio learns that a socket is drained only from a `WouldBlock` met by its own calls, and without
/// that it reports the socket no more (mio's `Poll` docs, "Accessing raw fd/socket/handle"). Linux's
/// `recvmmsg` reads the descriptor directly, which epoll allows.
pub trait DatagramSocket: AsRawSource {
    fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)>;
    fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize>;
}

impl DatagramSocket for std::net::UdpSocket {
    fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        std::net::UdpSocket::recv_from(self, buf)
    }
    fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        std::net::UdpSocket::send_to(self, buf, to)
    }
}

impl DatagramSocket for mio::net::UdpSocket {
    fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        mio::net::UdpSocket::recv_from(self, buf)
    }
    fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        mio::net::UdpSocket::send_to(self, buf, to)
    }
}

// A precise wake-up for a `mio::Poll`: `Timer`.
#[cfg(target_os = "linux")]
pub use linux::Timer;
#[cfg(not(target_os = "linux"))]
pub use other::Timer;

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::{Duration, Instant};

    /// Three clients' datagrams taken in one batch and each answered to its sender, through the interface
    /// every OS implements, with std's socket and with mio's.
    fn a_batch_goes_back_to_each_sender<S: DatagramSocket>(
        server: &S,
        to: SocketAddr,
    ) -> io::Result<()> {
        const N: usize = 4;
        let clients: Vec<UdpSocket> = (0..3)
            .map(|_| UdpSocket::bind("127.0.0.1:0"))
            .collect::<io::Result<_>>()?;
        for (i, c) in clients.iter().enumerate() {
            c.set_read_timeout(Some(Duration::from_secs(5)))?;
            c.send_to(format!("datagram {i}").as_bytes(), to)?;
        }
        let mut input = vec![0u8; N * 100];
        let mut lens = [0; N];
        let mut senders = Senders::<N>::default();
        // Loopback delivers at once on Linux; elsewhere allow the datagrams a moment to be queued.
        let deadline = Instant::now() + Duration::from_secs(5);
        let n = loop {
            match receive_datagrams(server, &mut input, &mut lens, &mut senders, N) {
                Ok(3) => break 3,
                Ok(n) => panic!("{n} datagrams of 3 in the batch"),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) => return Err(e),
            }
        };
        let mut output = Vec::new();
        let mut ends = [0; N];
        for i in 0..n {
            output.extend_from_slice(&input[i * 100..i * 100 + lens[i]].to_ascii_uppercase());
            ends[i] = output.len();
        }
        assert_eq!(send_datagrams(server, &output, &ends, &senders, n), 3);
        for (i, c) in clients.iter().enumerate() {
            let mut buf = [0; 100];
            let (len, from) = c.recv_from(&mut buf)?;
            assert_eq!(from, to);
            assert_eq!(
                &buf[..len],
                format!("DATAGRAM {i}").as_bytes(),
                "client {i}"
            );
        }
        let again = receive_datagrams(server, &mut input, &mut lens, &mut senders, N);
        assert_eq!(again.unwrap_err().kind(), io::ErrorKind::WouldBlock);
        Ok(())
    }

    #[test]
    fn a_batch_goes_back_to_each_sender_through_std_and_mio_sockets() {
        let std_socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        std_socket.set_nonblocking(true).unwrap();
        let to = std_socket.local_addr().unwrap();
        a_batch_goes_back_to_each_sender(&std_socket, to).unwrap();
        let mio_socket = mio::net::UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let to = mio_socket.local_addr().unwrap();
        a_batch_goes_back_to_each_sender(&mio_socket, to).unwrap();
    }
}
