//! The ring: one io_uring, set up for one thread and checked, before the server starts, for everything the
//! driver asks of it; then the three ways the driver uses it: queue a submission (or a chain of them), enter
//! the kernel once to submit everything queued and wait for completions until a deadline, and take the
//! completions out. Each submission carries a tag ([`Tag`]) saying what it was for, which its completion
//! brings back. Walk-through: `docs/14-completion.md`.

use std::io;
use std::mem::MaybeUninit;
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types, IoUring, Probe};

/// Submissions queued before one `io_uring_enter` hands them over: far more than one turn queues in
/// practice (two per connection served, at most); a full queue is simply submitted early.
const SUBMISSION_ENTRIES: u32 = 1024;
/// Completions the kernel can post before we take them. A 10,000-connection burst can complete more than
/// this in one wait; the kernel then keeps the rest (`IORING_FEAT_NODROP`) and the next enter brings them.
const COMPLETION_ENTRIES: u32 = 8192;
/// Completions taken out of the ring at a time, into a buffer on the stack.
pub const COMPLETION_BATCH: usize = 256;

/// What a submission was for, carried in its `user_data` and brought back by its completion: the
/// operation, and for a connection its slab key and the low 24 bits of its serial number, so a completion
/// for a connection whose slot was reused can be told apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tag {
    pub op: Op,
    pub key: usize,
    pub serial: u32,
}

/// The operations the driver submits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    /// The listener's multishot accept: one completion per new connection.
    Accept = 1,
    /// A receive on the wake-up socket: a signal, or a shutdown asked from another thread.
    Wake,
    /// The UDP socket's multishot `recvmsg`: one completion per datagram.
    Datagram,
    /// One UDP reply (`key` is its slot).
    Reply,
    /// A connection's receive.
    Recv,
    /// A connection's send.
    Send,
    /// A connection's FIN (`shutdown(SHUT_WR)`).
    Fin,
    /// A cancellation of everything in flight on one descriptor, or of the timeout; its own result tells
    /// nothing we need.
    Cancel,
    /// The loop's timeout: the nearest deadline (`key` is its generation).
    Timeout,
}

impl Tag {
    pub fn new(op: Op, key: usize, serial: u64) -> Tag {
        Tag {
            op,
            key,
            serial: (serial & 0xff_ffff) as u32,
        }
    }

    /// A tag for the server's own sockets, which have no key.
    pub fn of(op: Op) -> Tag {
        Tag::new(op, 0, 0)
    }

    pub fn encode(self) -> u64 {
        (self.op as u64) << 56 | (self.serial as u64) << 32 | (self.key as u64 & 0xffff_ffff)
    }

    pub fn decode(data: u64) -> Option<Tag> {
        let op = match (data >> 56) as u8 {
            1 => Op::Accept,
            2 => Op::Wake,
            3 => Op::Datagram,
            4 => Op::Reply,
            5 => Op::Recv,
            6 => Op::Send,
            7 => Op::Fin,
            8 => Op::Cancel,
            9 => Op::Timeout,
            _ => return None,
        };
        Some(Tag {
            op,
            key: (data & 0xffff_ffff) as usize,
            serial: ((data >> 32) & 0xff_ffff) as u32,
        })
    }

    /// Whether this completion is for the connection numbered `serial`.
    pub fn is_for(self, serial: u64) -> bool {
        self.serial == (serial & 0xff_ffff) as u32
    }
}

/// One completion, as the driver reads it.
#[derive(Clone, Copy, Debug)]
pub struct Completion {
    pub tag: Tag,
    /// The operation's result: bytes, a descriptor, or `-errno`.
    pub result: i32,
    pub flags: u32,
}

impl Completion {
    /// The provided buffer the kernel picked for this completion, if any.
    pub fn buffer(&self) -> Option<u16> {
        cqueue::buffer_select(self.flags)
    }

    /// A multishot operation is still armed after this completion.
    pub fn more(&self) -> bool {
        cqueue::more(self.flags)
    }
}

/// The operations this driver submits, each with the Linux release that brought it, for the message that
/// names what a kernel lacks.
const NEEDED: [(u8, &str, &str); 10] = [
    (opcode::AcceptMulti::CODE, "ACCEPT", "5.5"),
    (opcode::Recv::CODE, "RECV", "5.6"),
    (opcode::Send::CODE, "SEND", "5.6"),
    (opcode::RecvMsgMulti::CODE, "RECVMSG", "5.3"),
    (opcode::SendMsg::CODE, "SENDMSG", "5.3"),
    (opcode::Shutdown::CODE, "SHUTDOWN", "5.11"),
    (opcode::AsyncCancel2::CODE, "ASYNC_CANCEL", "5.5"),
    (opcode::Timeout::CODE, "TIMEOUT", "5.4"),
    (opcode::TimeoutRemove::CODE, "TIMEOUT_REMOVE", "5.5"),
    // Not used: its presence marks a 6.0 kernel, the release of multishot `recvmsg` and `recv`, which a
    // probe cannot see (they are flags on opcodes older kernels already have).
    (
        opcode::SendZc::CODE,
        "SEND_ZC (the mark of Linux 6.0, which brought multishot receive)",
        "6.0",
    ),
];

/// Why io_uring cannot be used here, as a user reads it, ending with what to run instead.
fn refused(what: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!("--mode uring cannot run here: {what}; use --mode reactor"),
    )
}

/// The ring of one server.
pub struct Ring {
    ring: IoUring,
}

impl Ring {
    /// Sets up a ring for one thread, disabled until [`Ring::enable`] is called on the thread that will
    /// use it (the kernel ties a single-issuer ring to that thread), and checks it can do everything the
    /// driver asks. Every refusal is an error of kind `Unsupported` that says why and what to run instead.
    pub fn open() -> io::Result<Ring> {
        let mut builder = IoUring::builder();
        builder
            .setup_cqsize(COMPLETION_ENTRIES)
            // One thread submits; completions run when it enters the kernel to wait, not by interrupting it.
            .setup_single_issuer()
            .setup_defer_taskrun()
            // The kernel flags completions waiting to run, so a turn that must not wait still takes them
            // (an enter without GETEVENTS would leave them until the next wait).
            .setup_taskrun_flag()
            .setup_r_disabled();
        let ring = match builder.build(SUBMISSION_ENTRIES) {
            Ok(ring) => ring,
            Err(e) => return Err(setup_refused(e)),
        };
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe).map_err(|e| {
            refused(format!(
                "the kernel cannot say which io_uring operations it has ({e})"
            ))
        })?;
        let missing: Vec<String> = NEEDED
            .iter()
            .filter(|(code, _, _)| !probe.is_supported(*code))
            .map(|(_, name, since)| format!("IORING_OP_{name} (Linux {since})"))
            .collect();
        if !missing.is_empty() {
            return Err(refused(format!(
                "this kernel ({}) lacks {}",
                kernel_release(),
                missing.join(", ")
            )));
        }
        let params = ring.params();
        let mut lacking = Vec::new();
        if !params.is_feature_ext_arg() {
            lacking.push("waiting with a timeout (IORING_FEAT_EXT_ARG, Linux 5.11)");
        }
        if !params.is_feature_skip_cqe_on_success() {
            lacking.push("silent successful sends (IORING_FEAT_CQE_SKIP, Linux 5.17)");
        }
        if !params.is_feature_nodrop() {
            lacking.push("keeping completions past a full queue (IORING_FEAT_NODROP, Linux 5.5)");
        }
        if !lacking.is_empty() {
            return Err(refused(format!(
                "this kernel ({}) lacks {}",
                kernel_release(),
                lacking.join(", ")
            )));
        }
        Ok(Ring { ring })
    }

    /// Starts the ring on the calling thread, the only one that may submit from now on.
    pub fn enable(&mut self) -> io::Result<()> {
        self.ring.submitter().register_enable_rings()?;
        // The kernel looks the ring up by index instead of by descriptor on every enter (Linux 5.18); an
        // older kernel just goes on using the descriptor.
        let _ = self.ring.submitter().register_ring_fd();
        Ok(())
    }

    /// The raw ring, for registering buffer rings.
    pub fn raw(&self) -> &IoUring {
        &self.ring
    }

    /// Queues `entries` (one submission, or a chain linked with `IO_LINK`) to be handed over at the next
    /// enter, all in one batch so a chain is never split; if the queue is full, submits what waits first.
    ///
    /// # Safety
    /// Every buffer an entry names must stay valid, and unmoved, until its completion arrives (or, for a
    /// send marked `SKIP_SUCCESS`, until the completion of the receive linked behind it).
    pub unsafe fn push(&mut self, entries: &[squeue::Entry]) -> io::Result<()> {
        loop {
            // SAFETY: the caller guarantees every buffer the entries name outlives the operation.
            if unsafe { self.ring.submission().push_multiple(entries) }.is_ok() {
                return Ok(());
            }
            match self.ring.submit() {
                Ok(_) => {}
                Err(ref e) if e.raw_os_error() == Some(libc::EBUSY) => self.wait_briefly()?,
                Err(ref e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The kernel is busy with completions we have not taken: let it post some. The caller takes them at
    /// its next look.
    fn wait_briefly(&mut self) -> io::Result<()> {
        let ts = types::Timespec::new().nsec(1_000_000);
        let args = types::SubmitArgs::new().timespec(&ts);
        match self.ring.submitter().submit_with_args(1, &args) {
            Ok(_) => Ok(()),
            Err(ref e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// One `io_uring_enter`: submits everything queued and, unless `timeout` is zero, waits for at least one
    /// completion, or until `timeout` (`None`: no limit but the loop's own timeout operation, if one is in
    /// flight). A signal or the timeout end the wait early; the caller then finds fewer completions, perhaps
    /// none.
    pub fn enter(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let submitter = self.ring.submitter();
        let result = match timeout {
            Some(t) if t.is_zero() => submitter.submit(),
            None => submitter.submit_and_wait(1),
            Some(t) => {
                let ts = types::Timespec::from(t);
                let args = types::SubmitArgs::new().timespec(&ts);
                submitter.submit_with_args(1, &args)
            }
        };
        match result {
            Ok(_) => Ok(()),
            Err(ref e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR)) => Ok(()),
            // Completions not yet taken fill the queue: take them, then enter again.
            Err(ref e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Completions waiting to be taken.
    pub fn ready(&mut self) -> usize {
        let mut completion = self.ring.completion();
        completion.sync();
        completion.len()
    }

    /// Takes up to `out.len()` completions out of the ring; returns how many.
    pub fn take(&mut self, out: &mut [MaybeUninit<cqueue::Entry>]) -> usize {
        let mut completion = self.ring.completion();
        completion.sync();
        completion.fill(out).len()
    }
}

/// A completion as the driver reads it: the tag, the result, the flags.
pub fn read(entry: &cqueue::Entry) -> Option<Completion> {
    Some(Completion {
        tag: Tag::decode(entry.user_data())?,
        result: entry.result(),
        flags: entry.flags(),
    })
}

/// Why `io_uring_setup` failed, said for a user: disabled by the administrator, blocked by a sandbox, or
/// absent from the kernel.
fn setup_refused(e: io::Error) -> io::Error {
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .and_then(|s| s.trim().parse::<u8>().ok());
    let why = match (e.raw_os_error(), disabled) {
        (Some(libc::EPERM), Some(2)) => {
            "io_uring is disabled on this system (kernel.io_uring_disabled = 2)".to_string()
        }
        (Some(libc::EPERM), Some(1)) => "io_uring is limited to the group named in \
             kernel.io_uring_group (kernel.io_uring_disabled = 1), and this process is not in it"
            .to_string(),
        (Some(libc::EPERM | libc::EACCES), _) => format!(
            "io_uring_setup was refused ({e}): a sandbox's system-call filter (seccomp, as Docker's \
             default profile) blocks it"
        ),
        (Some(libc::ENOSYS), _) => format!(
            "io_uring_setup does not exist here ({e}): a kernel older than 5.1, one built without \
             io_uring, or a sandbox's system-call filter (seccomp) that hides it; kernel {}",
            kernel_release()
        ),
        (Some(libc::EINVAL), _) => format!(
            "this kernel ({}) does not accept the ring's setup ({e}): single-issuer rings with deferred \
             completions need Linux 6.1",
            kernel_release()
        ),
        _ => format!("io_uring_setup failed: {e}"),
    };
    refused(why)
}

/// The running kernel's release, for messages.
fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| format!("Linux {}", s.trim()))
        .unwrap_or_else(|_| "of unknown release".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_survives_the_round_trip_and_tells_connections_apart() {
        let tag = Tag::new(Op::Send, 123_456, 0x1234_5678_9abc);
        let back = Tag::decode(tag.encode()).unwrap();
        assert_eq!(back, tag);
        assert!(back.is_for(0x1234_5678_9abc));
        assert!(
            !back.is_for(0x1234_5678_9abd),
            "another connection in the same slot"
        );
        assert_eq!(Tag::decode(0), None);
    }
}
