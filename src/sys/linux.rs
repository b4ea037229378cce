//! What only Linux offers, or offers first: `recvmmsg`/`sendmmsg` (many datagrams per system call),
//! `TCP_INFO` on a listener (its backlog), the timerfd (a wake-up finer than epoll's milliseconds), and
//! `/proc` (what a process costs, and the system's thread and port limits). Part of the OS layer
//! (`src/sys/mod.rs`); walk-through: `docs/13-operating-systems.md`.

use std::fs;
use std::io;
use std::mem::{size_of, zeroed, MaybeUninit};
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

// ---------------------------------------------------------------------------------------------------------
// /proc

fn proc_file(pid: u32, name: &str) -> String {
    fs::read_to_string(format!("/proc/{pid}/{name}")).unwrap_or_default()
}

/// User plus system CPU time of the whole process (every thread, living or gone), in seconds, from
/// `/proc/PID/stat`.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = proc_file(pid, "stat");
    // The command name is in parentheses and may contain spaces: count fields after its closing one.
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let per_second = rustix::param::clock_ticks_per_second() as f64;
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (field(11) + field(12)) / per_second
}

/// Threads of the process (`/proc/PID/task`).
pub fn thread_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count())
}

/// Open file descriptors of the process (`/proc/PID/fd`).
pub fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Resident memory of the process, in KiB (`VmRSS` in `/proc/PID/status`).
pub fn resident_kib(pid: u32) -> u64 {
    proc_file(pid, "status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The system's limit on threads (`/proc/sys/kernel/threads-max`), if readable.
pub fn system_thread_limit() -> Option<u64> {
    fs::read_to_string("/proc/sys/kernel/threads-max")
        .ok()
        .and_then(|text| text.trim().parse().ok())
}

/// How many local ports one source address offers (`/proc/sys/net/ipv4/ip_local_port_range`), if readable.
pub fn ephemeral_ports() -> Option<usize> {
    let range = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut parts = range.split_whitespace().map(|p| p.parse::<usize>());
    let (low, high) = (parts.next()?.ok()?, parts.next()?.ok()?);
    Some(high.checked_sub(low)? + 1)
}

// ---------------------------------------------------------------------------------------------------------
// TCP_INFO

/// How many connections wait in `listener`'s backlog, accepted by the kernel but not yet by the server:
/// Linux reports it in `TCP_INFO`'s `tcpi_unacked` for a listening socket. `None` if the call fails.
pub fn backlog(listener: &TcpListener) -> Option<u32> {
    let mut info = MaybeUninit::<libc::tcp_info>::zeroed();
    let mut len = size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: the descriptor is the listener's own and stays open for the call; `info` is `len` bytes long,
    // and getsockopt writes at most `len` bytes into it.
    let rc = unsafe {
        libc::getsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: all-zero bytes are a valid tcp_info (integers only), and the kernel wrote a prefix of it.
    let info = unsafe { info.assume_init() };
    Some(info.tcpi_unacked)
}

// ---------------------------------------------------------------------------------------------------------
// recvmmsg/sendmmsg: building the kernel's message headers.
//
// No array is cleared per call: each message header is built whole for the slots a call offers the kernel
// (all of them to receive, one per reply to send), and a reply goes back to its sender's address exactly as
// `recvmmsg` wrote it. (Clearing 13 KiB of headers and addresses per call was three quarters of the
// reactor's user-space instructions at one datagram in flight: `docs/performance.md`.)

/// The senders' addresses as the kernel wrote them; each reply's header points back at its sender's.
pub struct Senders<const N: usize> {
    names: [libc::sockaddr_storage; N],
    /// Each address's length, as the kernel wrote it: at most `size_of::<sockaddr_storage>()`.
    lens: [libc::socklen_t; N],
}

impl<const N: usize> Default for Senders<N> {
    fn default() -> Self {
        // SAFETY: an all-zero sockaddr_storage is a valid (unspecified-family) address.
        let unspecified: libc::sockaddr_storage = unsafe { zeroed() };
        Senders {
            names: [unspecified; N],
            lens: [0; N],
        }
    }
}

/// A message header for one datagram in `iov`, to or from `name`. Built whole for each slot a call uses,
/// so no array of headers is cleared per call.
fn header(
    name: *mut libc::sockaddr_storage,
    len: libc::socklen_t,
    iov: *mut libc::iovec,
) -> libc::mmsghdr {
    // SAFETY: an all-zero mmsghdr is valid (no control data, no flags); one is 64 bytes.
    let mut header: libc::mmsghdr = unsafe { zeroed() };
    header.msg_hdr.msg_name = name.cast();
    header.msg_hdr.msg_namelen = len;
    header.msg_hdr.msg_iov = iov;
    header.msg_hdr.msg_iovlen = 1;
    header
}

/// Receives up to `slots` (at most `N`) datagrams with one `recvmmsg`: datagram `i` into slot `i` of
/// `input` (cut into `N` equal slots), its length into `lens[i]`, its sender into `senders`. Returns how
/// many arrived.
pub fn receive_datagrams<S: super::DatagramSocket, const N: usize>(
    socket: &S,
    input: &mut [u8],
    lens: &mut [usize; N],
    senders: &mut Senders<N>,
    slots: usize,
) -> io::Result<usize> {
    // (No slots at all, N = 0, is a batch of none rather than a division by zero.)
    let slot_size = input.len().checked_div(N).unwrap_or(0);
    let mut iovecs = [const { MaybeUninit::<libc::iovec>::uninit() }; N];
    let mut headers = [const { MaybeUninit::<libc::mmsghdr>::uninit() }; N];
    // Raw pointers taken once, so no later borrow of the buffers invalidates those already in a header.
    let base = input.as_mut_ptr();
    let names = senders.names.as_mut_ptr();
    let slots = slots.min(N);
    for i in 0..slots {
        let iov = iovecs[i].write(libc::iovec {
            // SAFETY: i < N, so slot i (`slot_size` bytes from i * slot_size) ends at most at N * slot_size,
            // which is at most `input.len()`.
            iov_base: unsafe { base.add(i * slot_size) }.cast(),
            iov_len: slot_size,
        });
        headers[i].write(header(
            // SAFETY: i < N, the length of `names`.
            unsafe { names.add(i) },
            size_of::<libc::sockaddr_storage>() as libc::socklen_t,
            iov,
        ));
    }
    // SAFETY: the first `slots` headers were written above; each points at a name and a slot that outlive
    // the call, with their lengths; the kernel writes at most that much into each.
    let n = unsafe {
        libc::recvmmsg(
            socket.as_raw_fd(),
            headers.as_mut_ptr().cast(),
            slots as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    for (i, header) in headers.iter().enumerate().take(n) {
        // SAFETY: written above, and the kernel only filled in its lengths.
        let header = unsafe { header.assume_init_ref() };
        lens[i] = header.msg_len as usize;
        senders.lens[i] = header.msg_hdr.msg_namelen;
    }
    Ok(n)
}

/// Sends replies `0..count` with `sendmmsg`, reply `i` being `output[ends[i - 1]..ends[i]]` (from 0 for
/// the first) to the sender of datagram `i`; returns how many the kernel took.
pub fn send_datagrams<S: super::DatagramSocket, const N: usize>(
    socket: &S,
    output: &[u8],
    ends: &[usize; N],
    senders: &Senders<N>,
    count: usize,
) -> usize {
    let count = count.min(N);
    let mut iovecs = [const { MaybeUninit::<libc::iovec>::uninit() }; N];
    let mut headers = [const { MaybeUninit::<libc::mmsghdr>::uninit() }; N];
    // The kernel only reads replies and addresses in a send; the pointers are `mut` only because the C
    // structs are shared with receive.
    let names = senders.names.as_ptr();
    let mut start = 0;
    for i in 0..count {
        // A range outside `output` would have the kernel read past it; the batch never makes one, but if
        // it did, that reply would go out empty rather than carry bytes that are not its own.
        let reply = output.get(start..ends[i]).unwrap_or_default();
        start = ends[i];
        let iov = iovecs[i].write(libc::iovec {
            iov_base: reply.as_ptr().cast_mut().cast(),
            iov_len: reply.len(),
        });
        let name = names.wrapping_add(i).cast_mut();
        headers[i].write(header(name, senders.lens[i], iov));
    }
    let mut sent = 0; // replies the kernel took
    let mut next = 0; // the first header not handed to the kernel yet
    while next < count {
        // SAFETY: headers[next..count] were written above and point at senders' addresses (with the lengths
        // the kernel gave them) and at replies inside `output`, alive for the call; the kernel only reads
        // them (and writes each `msg_len`).
        let n = unsafe {
            libc::sendmmsg(
                socket.as_raw_fd(),
                headers.as_mut_ptr().add(next).cast(),
                (count - next) as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if n > 0 {
            sent += n as usize;
            next += n as usize;
            continue;
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => {}
            // The send buffer is full: the rest of the batch is dropped (and counted by the caller).
            io::ErrorKind::WouldBlock => break,
            // `sendmmsg` reports the error of the first message it could not send: that reply's
            // problem (its peer), not the socket's. Skip it and send the others.
            _ => {
                log::debug!("udp: a reply failed: {e}");
                next += 1;
            }
        }
    }
    sent
}

// ---------------------------------------------------------------------------------------------------------
// The timerfd

/// A one-shot timer that wakes a `mio::Poll` to the microsecond: a timerfd registered in it. epoll's own
/// timeout counts whole milliseconds.
pub struct Timer {
    fd: OwnedFd,
}

impl Timer {
    /// A timer that makes `token` readable in `registry`'s poll when it expires.
    pub fn new(registry: &mio::Registry, token: mio::Token) -> io::Result<Timer> {
        use rustix::time::{timerfd_create, TimerfdClockId, TimerfdFlags};
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        registry.register(
            &mut mio::unix::SourceFd(&fd.as_raw_fd()),
            token,
            mio::Interest::READABLE,
        )?;
        Ok(Timer { fd })
    }

    /// Wakes the poll once, `after` from now (at least a nanosecond: zero would disarm it).
    pub fn arm(&self, after: Duration) {
        use rustix::time::{timerfd_settime, Itimerspec, TimerfdTimerFlags, Timespec};
        let after = after.max(Duration::from_nanos(1));
        let spec = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: Timespec {
                tv_sec: after.as_secs().min(i32::MAX as u64) as _,
                tv_nsec: after.subsec_nanos().into(),
            },
        };
        // It cannot fail with a valid descriptor and spec; if it did, the poll timeout still wakes the loop.
        let _ = timerfd_settime(self.fd.as_fd(), TimerfdTimerFlags::empty(), &spec);
    }

    /// Takes the expiry count, so the descriptor is quiet until the next expiry.
    pub fn clear(&self) {
        let mut count = [0u8; 8];
        // EAGAIN (nothing expired) is fine to ignore.
        let _ = rustix::io::read(self.fd.as_fd(), &mut count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_reads_as_alive() {
        let me = std::process::id();
        assert!(thread_count(me) >= 1);
        assert!(fd_count(me) >= 3);
        assert!(resident_kib(me) > 0);
        assert_eq!(thread_count(u32::MAX), 0, "no such process");
        assert_eq!(cpu_seconds(u32::MAX), 0.0, "no such process");
    }

    #[test]
    fn cpu_time_counts_work_done() {
        // Spin until the figure moves by 50 ms (however busy the machine is), with a deadline: a figure that
        // never moves fails here.
        let me = std::process::id();
        let before = cpu_seconds(me);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut x = 0u64;
        while cpu_seconds(me) - before < 0.05 {
            assert!(
                std::time::Instant::now() < deadline,
                "10 s of spinning never counted 50 ms of CPU"
            );
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
        }
    }
}
