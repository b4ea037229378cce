//! `--mode uring`: the fifth way to wait, completion instead of readiness. One thread, one io_uring, no
//! runtime and no kernel polling thread (no `SQPOLL`: it would spin, and this would be busy-polling again).
//! The reactor asks the kernel "which sockets are ready?" and then does each read and write itself; this
//! driver hands the kernel the operations themselves (accept, receive, send, shutdown) and is told when each
//! has finished, with its result. One `io_uring_enter` submits everything queued and waits: at one request
//! in flight that is one system call per request, where the reactor makes three. Walk-through:
//! `docs/14-completion.md`; the stage numbers below are that chapter's.
//!
//! ```text
//!  1 enter: submit all queued, wait ─► 2 dispatch each completion by its tag ─┬─► 3 accept (multishot)
//!                                                                             ├─► 4 datagrams (multishot recvmsg)
//!                                                                             ├─► 5 received → core → send + receive
//!                                                                             ├─► 6 send done, partial, FIN
//!                                                                             └─► wake-up: signals ─► 10 shutdown
//!  7 work left: datagrams over the turn's bytes, starved connections ─► 8 reap ─► 9 timers ─► back to 1
//! ```
//!
//! What a read means, every timeout, backpressure and how a connection ends are the connection core's
//! (`../connection/`), as in every mode. The folder:
//! - `mod.rs`: the loop, accepting, the wake-up, timers, the shutdown;
//! - `ring.rs`: the ring: set-up and the checks that refuse a kernel that cannot run it, submitting, waiting;
//! - `buffers.rs`: the provided-buffer rings that receives draw from, so an idle connection holds none;
//! - `conn.rs`: one connection: what it has in flight, and the rule that keeps a send's bytes still;
//! - `udp.rs`: datagrams, with a multishot `recvmsg` and a reply slot per send.
//!
//! Every `unsafe` of this mode lives in these files: memory shared with the kernel (the buffer rings, the
//! bytes and headers a submission names) and the descriptors it hands back.

mod buffers;
mod conn;
mod ring;
mod udp;

use std::io::{self, Write};
use std::mem::MaybeUninit;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::{opcode, squeue, types};
use log::{debug, info, warn};
use slab::Slab;

use self::buffers::BufRing;
use self::conn::{Conn, Cut, Lent, Next};
use self::ring::{Completion, Op, Ring, Tag, COMPLETION_BATCH};
use self::udp::Udp;
use super::capacity;
use super::config::Config;
use super::connection::{Account, Context};
use super::limits::{deadline_after, ACCEPT_PAUSE};
use super::reactor::registered::Closed;
use super::reactor::timers::Timers;
use super::shutdown::{signal_name, Shutdown, Verdict, SIGNALS};
use super::sockets::{self, prepare_accepted, refuse, AcceptOutage};
use super::stats::{plural, Summary};
use super::trace::{self, trace_stage, Turn};

/// The TCP buffer group: 64 buffers of 16 KiB, 1 MiB in all, which is also the most a turn can read (a
/// receive holds a buffer only from its completion until the core has taken the bytes, within the turn).
/// Shared by every connection: an idle one, whose receive waits in the kernel, holds none.
const TCP_GROUP: u16 = 0;
const TCP_BUFFERS: u16 = 64;
const TCP_BUFFER_SIZE: usize = 16 * 1024;
/// The UDP buffer group (`udp.rs`).
const UDP_GROUP: u16 = 1;
/// Emptied outbox buffers kept for the next reply (`Context::recycle_replies`): enough for the replies of
/// one busy turn, each large enough for one read's replies at HTTP depth 16 (sixteen responses of about
/// 260 B, in a buffer whose capacity doubles to 8 KiB): 1 MiB at the very most.
const SPARE_REPLIES: usize = 64;
const SPARE_REPLY_SIZE: usize = 16 * 1024;
/// How long the last completions may take to arrive once everything is cancelled at the end.
const FINAL_DRAIN: Duration = Duration::from_secs(2);

/// Asks a running uring server, from any thread, to shut down as SIGTERM would.
#[derive(Clone)]
pub struct ShutdownHandle(Arc<Waker>);

struct Waker {
    requested: AtomicBool,
    socket: UnixStream,
}

impl ShutdownHandle {
    pub fn shutdown(&self) {
        self.0.requested.store(true, Ordering::SeqCst);
        // The loop's receive on the other end completes; a full socket already holds a wake-up.
        let _ = (&self.0.socket).write(&[1]);
    }
}

/// The completion-based server. [`Uring::bind`], then [`Uring::run`] until shut down.
pub struct Uring {
    // Declared first, so dropped first: the kernel lets go of every buffer below before they are freed.
    ring: Ring,
    tcp_buffers: BufRing,
    udp: Option<Udp>,
    config: Config,
    local_addr: SocketAddr,
    /// `None` once the shutdown has begun.
    listener: Option<TcpListener>,
    accept_armed: bool,
    /// Out of descriptors: the accept is armed again then (or when a connection closes).
    accept_paused_until: Option<Instant>,
    outage: AcceptOutage,
    /// The loop's end of the wake-up socket, and the 64 bytes a receive on it lands in.
    wake: UnixStream,
    wake_buffer: Box<[u8; 64]>,
    wake_armed: bool,
    waker: Arc<Waker>,
    /// Set by the signal handlers, one flag per signal, looked at when the wake-up socket completes.
    signals: Vec<(&'static str, Arc<AtomicBool>)>,
    conns: Slab<Conn>,
    cx: Context,
    timers: Timers,
    /// Connections that stopped for the server's reply budget, and the bytes held then.
    starved: Vec<usize>,
    starved_at: usize,
    /// Connections to reap at the end of the turn: finished, with nothing in flight.
    reap: Vec<(usize, Closed)>,
    /// The timeout operation in flight, its generation and the deadline it wakes the loop for; the next
    /// generation; and the time it names, which the kernel reads when it is submitted.
    timeout: Option<(u32, Instant)>,
    timeout_generation: u32,
    timeout_spec: Box<types::Timespec>,
    shutdown: Shutdown,
    connection_cap: usize,
    next_serial: u64,
    turn: Turn,
}

impl Uring {
    /// Binds the sockets, sets up the ring and checks that this kernel can run the mode: where it cannot
    /// (too old, io_uring disabled, a sandbox that blocks it), an `Unsupported` error says why.
    pub fn bind(config: Config) -> io::Result<Uring> {
        let ring = Ring::open()?;
        let bound = sockets::bind(&config)?;
        let tcp_buffers = BufRing::new(ring.raw(), TCP_GROUP, TCP_BUFFERS, TCP_BUFFER_SIZE)?;
        let udp = match bound.udp {
            Some(socket) => {
                if let Err(e) = socket2::SockRef::from(&socket).set_recv_buffer_size(4 << 20) {
                    debug!("udp: cannot enlarge the receive buffer: {e}");
                }
                Some(Udp::new(&ring, socket, UDP_GROUP)?)
            }
            None => None,
        };
        let (wake, socket) = UnixStream::pair()?;
        socket.set_nonblocking(true)?;
        let account = Arc::new(Account::new(config.max_unsent));
        // Replies are built in the shared buffer and move, buffer and all, into the outbox they are sent
        // from; the shared buffer gets a spare back. So it starts small, like the spares.
        let mut cx = Context::new(&config, account, SPARE_REPLY_SIZE);
        cx.recycle_replies(SPARE_REPLIES, SPARE_REPLY_SIZE);
        // Nothing is submitted before `run`, on the thread that serves (the ring belongs to it).
        Ok(Uring {
            ring,
            tcp_buffers,
            udp,
            local_addr: bound.local_addr,
            listener: Some(bound.tcp),
            accept_armed: false,
            accept_paused_until: None,
            outage: AcceptOutage::default(),
            wake,
            wake_buffer: Box::new([0; 64]),
            wake_armed: false,
            waker: Arc::new(Waker {
                requested: AtomicBool::new(false),
                socket,
            }),
            signals: Vec::new(),
            conns: Slab::new(),
            cx,
            timers: Timers::default(),
            starved: Vec::new(),
            starved_at: 0,
            reap: Vec::new(),
            timeout: None,
            timeout_generation: 0,
            timeout_spec: Box::new(types::Timespec::new()),
            shutdown: Shutdown::new(config.shutdown_timeout),
            connection_cap: capacity::connection_cap(&config, capacity::SOCKET),
            next_serial: 0,
            turn: Turn::new(trace::URING),
            config,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(Arc::clone(&self.waker))
    }

    /// SIGINT and SIGTERM: each sets its flag and writes a byte to the wake-up socket, whose receive then
    /// completes in the ring.
    pub fn catch_signals(&mut self) -> io::Result<()> {
        for signal in SIGNALS {
            let flag = Arc::new(AtomicBool::new(false));
            signal_hook::flag::register(signal, Arc::clone(&flag))?;
            signal_hook::low_level::pipe::register(signal, self.waker.socket.try_clone()?)?;
            self.signals.push((signal_name(signal), flag));
        }
        Ok(())
    }

    /// Runs the loop until a shutdown has delivered what every connection is owed or passed its deadline.
    pub fn run(mut self) -> io::Result<Summary> {
        self.ring.enable()?;
        let over = if self.udp.is_some() {
            "tcp and udp"
        } else {
            "tcp"
        };
        info!(
            "serving {} over {over} on {} (1 thread, io_uring completions, at most {})",
            self.config.service,
            self.local_addr,
            plural(self.connection_cap, "connection", "connections")
        );
        self.arm_accept()?;
        self.arm_wake()?;
        if let Some(udp) = &mut self.udp {
            udp.arm(&mut self.ring)?;
        }
        let mut batch = [const { MaybeUninit::uninit() }; COMPLETION_BATCH];
        loop {
            self.turn.begin();
            // 1. Enter: submit everything queued and wait for a completion, but not past the next deadline (a
            //    timeout operation, in the ring like any other, moved only when the deadline does), and not
            //    at all if datagrams wait from the last turn.
            // Connections waiting for the reply budget that could go on now (timers in the last turn, which
            // run after stage 7, may have freed it) are work left too: no completion would wake them.
            let work_left = self.udp.as_ref().is_some_and(Udp::has_waiting)
                || (!self.starved.is_empty() && self.cx.account.held() < self.starved_at);
            let next = [
                self.shutdown.deadline(),
                self.timers.next(),
                self.accept_paused_until,
            ]
            .into_iter()
            .flatten()
            .min();
            self.arm_timeout(next)?;
            let timeout = work_left.then_some(Duration::ZERO);
            let slept_from = self.turn.on.then(Instant::now);
            self.ring.enter(timeout)?;
            let now = self.cx.clock.tick();
            if let Some(from) = slept_from {
                let limit = match (timeout, next) {
                    (Some(_), _) => "no wait: work left from the last turn".to_string(),
                    (None, None) => "no timeout".to_string(),
                    (None, Some(at)) => format!(
                        "timeout op in {}",
                        trace::duration(at.saturating_duration_since(from))
                    ),
                };
                trace_stage!(
                    self.turn,
                    1,
                    "enter: submitted what was queued, slept {} ({limit}); {} ready",
                    trace::duration(now - from),
                    plural(self.ring.ready(), "completion", "completions")
                );
            }
            // 2. Dispatch every completion by its tag.
            loop {
                let n = self.ring.take(&mut batch);
                for entry in &batch[..n] {
                    // SAFETY: `take` initialised the first `n` entries.
                    let entry = unsafe { entry.assume_init_ref() };
                    if let Some(c) = ring::read(entry) {
                        if self.complete(c)? {
                            return Ok(self.stop(true));
                        }
                    }
                }
                if n < batch.len() {
                    break;
                }
            }
            // 4 and 7. Datagrams answered within the turn's bytes; the rest wait for the next turn.
            if let Some(udp) = &mut self.udp {
                if udp.has_waiting() {
                    udp.answer(&mut self.ring, &mut self.cx, &self.turn)?;
                }
                udp.arm(&mut self.ring)?;
            }
            // 7. Connections that stopped for the server's reply budget, once replies have drained.
            if !self.starved.is_empty() && self.cx.account.held() < self.starved_at {
                let starved = std::mem::take(&mut self.starved);
                trace_stage!(
                    self.turn,
                    7,
                    "the server holds {} B of unsent replies: {} reading again",
                    self.cx.account.held(),
                    plural(starved.len(), "connection starts", "connections start")
                );
                for &key in &starved {
                    if let Some(conn) = self.conns.get_mut(key) {
                        conn.starved = false;
                        self.drive(key, |conn, l| conn.advance(l));
                    }
                }
                let mut starved = starved;
                starved.clear();
                if self.starved.is_empty() {
                    self.starved = starved;
                }
            }
            // 8. Reap what finished this turn.
            if !self.reap.is_empty() {
                self.reap_finished();
            }
            // 9. Timers: connections whose deadlines came due; accepting that paused for lack of descriptors.
            self.expire_timers(now);
            if self.accept_paused_until.is_some_and(|until| until <= now) {
                self.accept_paused_until = None;
                self.arm_accept()?;
            }
            // 10. Shutdown: over when every connection has finished, or at the deadline.
            if self
                .shutdown
                .over(now, self.conns.len(), &mut self.cx.stats)
            {
                trace_stage!(
                    self.turn,
                    10,
                    "shutdown over: {} left",
                    plural(self.conns.len(), "connection", "connections")
                );
                return Ok(self.stop(false));
            }
        }
    }

    /// Stage 2: one completion to whoever it is for. Returns true if the run must end now (a second
    /// signal).
    fn complete(&mut self, c: Completion) -> io::Result<bool> {
        if self.turn.on {
            self.trace_completion(&c);
        }
        match c.tag.op {
            Op::Accept => self.accepted(c)?,
            Op::Wake => return self.woken(c),
            Op::Datagram => {
                if let Some(udp) = &mut self.udp {
                    udp.on_datagram(c, &mut self.cx);
                }
            }
            Op::Reply => {
                if let Some(udp) = &mut self.udp {
                    udp.on_reply(c, &mut self.cx);
                }
            }
            Op::Cancel => {}
            Op::Timeout => {
                // It expired (`-ETIME`) or was removed (`-ECANCELED`): the loop looks at its deadlines anyway.
                if self
                    .timeout
                    .is_some_and(|(generation, _)| generation as usize == c.tag.key)
                {
                    self.timeout = None;
                }
            }
            Op::Recv | Op::Send | Op::Fin => {
                let key = c.tag.key;
                if !self
                    .conns
                    .get(key)
                    .is_some_and(|conn| c.tag.is_for(conn.serial()))
                {
                    // Every operation of a connection completes before its slot is freed, so this is not
                    // expected; a buffer it brought goes back all the same.
                    if let Some(bid) = c.buffer() {
                        self.tcp_buffers.give_back(bid);
                    }
                    return Ok(false);
                }
                match c.tag.op {
                    Op::Recv => self.drive(key, |conn, l| conn.on_recv(c, l)),
                    Op::Send => self.drive(key, |conn, l| conn.on_send(c, l)),
                    _ => self.drive(key, |conn, l| conn.on_fin(l)),
                }
            }
        }
        Ok(false)
    }

    /// Stage 2's trace line: what completed, and with what result.
    fn trace_completion(&self, c: &Completion) {
        let what = match c.tag.op {
            Op::Accept => "accept".to_string(),
            Op::Wake => "wake-up receive".to_string(),
            Op::Datagram => "udp recvmsg".to_string(),
            Op::Reply => format!("udp reply {}", c.tag.key),
            Op::Recv => format!("conn {} receive", c.tag.key),
            Op::Send => format!("conn {} send", c.tag.key),
            Op::Fin => format!("conn {} shutdown", c.tag.key),
            Op::Cancel => format!("cancel (for {})", c.tag.key),
            Op::Timeout => "timeout".to_string(),
        };
        let result = if c.result < 0 {
            let e = io::Error::from_raw_os_error(-c.result);
            match -c.result {
                libc::ECANCELED => "ECANCELED".to_string(),
                libc::ENOBUFS => "ENOBUFS".to_string(),
                libc::ENOENT => "ENOENT".to_string(),
                libc::EALREADY => "EALREADY".to_string(),
                libc::ETIME => "ETIME".to_string(),
                _ => e.to_string(),
            }
        } else {
            c.result.to_string()
        };
        let buffer = c
            .buffer()
            .map(|b| format!(", buffer {b}"))
            .unwrap_or_default();
        let more = if c.more() { ", still armed" } else { "" };
        trace_stage!(self.turn, 2, "completion: {what} → {result}{buffer}{more}");
    }

    /// Calls `f` on connection `key` with what it borrows, then does what it asks of the loop.
    fn drive(&mut self, key: usize, f: impl FnOnce(&mut Conn, &mut Lent<'_>) -> Next) {
        let Uring {
            ring,
            tcp_buffers,
            conns,
            cx,
            timers,
            turn,
            config,
            ..
        } = self;
        let Some(conn) = conns.get_mut(key) else {
            return;
        };
        let mut lent = Lent {
            ring,
            cx,
            timers,
            buffers: tcp_buffers,
            read_cap: config.read_budget.min(TCP_BUFFER_SIZE),
            turn: *turn,
        };
        match f(conn, &mut lent) {
            Next::Wait => {}
            Next::Starved => {
                if !conn.starved {
                    conn.starved = true;
                    self.starved_at = self.cx.account.held();
                    self.starved.push(key);
                }
            }
            Next::Reap(why) => {
                if !self.reap.iter().any(|(k, _)| *k == key) {
                    self.reap.push((key, why));
                }
            }
        }
    }

    /// Stage 8: releases and frees connections that finished with nothing in flight; their sockets close.
    fn reap_finished(&mut self) {
        if self.reap.is_empty() {
            return;
        }
        for (key, why) in std::mem::take(&mut self.reap) {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if conn.busy() {
                continue;
            }
            conn.release(&mut self.cx);
            let conn = self.conns.remove(key);
            if matches!(why, Closed::Ended(end) if end.is_timeout()) {
                self.cx.stats.timed_out += 1;
                trace_stage!(self.turn, 9, "timer: conn {key}: {}", why.describe());
            }
            debug!("{}: closed ({})", conn.peer(), why.describe());
            trace_stage!(
                self.turn,
                8,
                "conn {key} ({}) closed ({}): nothing of it in flight, its slot freed",
                conn.peer(),
                why.describe()
            );
            if conn.starved {
                self.starved.retain(|k| *k != key);
            }
            self.cx.stats.closed += 1;
        }
        // Descriptors were freed: if accepting paused for lack of them, try again.
        if self.accept_paused_until.is_some() {
            self.accept_paused_until = None;
            let _ = self.arm_accept();
        }
    }

    /// Stage 9 for connections: each whose check came due is looked at (after what it has in flight is
    /// cancelled).
    fn expire_timers(&mut self, now: Instant) {
        while let Some(check) = self.timers.pop_due(now) {
            let key = check.token.0;
            if self.conns.get(key).is_none_or(|c| c.serial() != check.id) {
                continue;
            }
            self.drive(key, |conn, l| conn.on_check(check.at, l));
        }
        if !self.reap.is_empty() {
            self.reap_finished();
        }
        let conns = &self.conns;
        self.timers.compact(conns.len(), |check| {
            conns
                .get(check.token.0)
                .is_some_and(|conn| conn.is_live_check(check))
        });
        self.cx.stats.peak_timers = self.cx.stats.peak_timers.max(self.timers.entries());
    }

    /// Keeps one timeout operation in the ring for the nearest deadline `next`: moved in place when the
    /// deadline moves (an update whose success posts nothing, so moving it wakes nobody), removed when there
    /// is none. A turn whose deadline stays put waits with a plain `io_uring_enter`.
    fn arm_timeout(&mut self, next: Option<Instant>) -> io::Result<()> {
        if self.timeout.map(|(_, at)| at) == next {
            return Ok(());
        }
        let spec =
            |at: Instant, now: Instant| types::Timespec::from(at.saturating_duration_since(now));
        match (self.timeout, next) {
            (Some((generation, _)), Some(at)) => {
                *self.timeout_spec = spec(at, self.cx.clock.now());
                let tag = Tag::new(Op::Timeout, generation as usize, 0).encode();
                // If it fired meanwhile, the update fails (its completion is ignored) and the timeout's own
                // `-ETIME` clears it, so the next turn arms a new one.
                let update = opcode::TimeoutUpdate::new(tag, &*self.timeout_spec)
                    .build()
                    .flags(squeue::Flags::SKIP_SUCCESS)
                    .user_data(Tag::of(Op::Cancel).encode());
                // SAFETY: the timespec is boxed in this value and rewritten only here, at most once a turn,
                // after the enter that submitted the last use of it (the kernel copies it when it reads the
                // submission).
                unsafe { self.ring.push(&[update]) }?;
                self.timeout = Some((generation, at));
            }
            (Some((generation, _)), None) => {
                let tag = Tag::new(Op::Timeout, generation as usize, 0).encode();
                let remove = opcode::TimeoutRemove::new(tag)
                    .build()
                    .flags(squeue::Flags::SKIP_SUCCESS)
                    .user_data(Tag::of(Op::Cancel).encode());
                // SAFETY: names no memory.
                unsafe { self.ring.push(&[remove]) }?;
                self.timeout = None;
            }
            (None, Some(at)) => {
                self.timeout_generation = self.timeout_generation.wrapping_add(1);
                let generation = self.timeout_generation;
                *self.timeout_spec = spec(at, self.cx.clock.now());
                let timeout = opcode::Timeout::new(&*self.timeout_spec)
                    .build()
                    .user_data(Tag::new(Op::Timeout, generation as usize, 0).encode());
                // SAFETY: as for the update above.
                unsafe { self.ring.push(&[timeout]) }?;
                self.timeout = Some((generation, at));
            }
            (None, None) => {}
        }
        Ok(())
    }

    fn arm_accept(&mut self) -> io::Result<()> {
        let Some(listener) = &self.listener else {
            return Ok(());
        };
        if self.accept_armed {
            return Ok(());
        }
        let accept = opcode::AcceptMulti::new(types::Fd(listener.as_raw_fd()))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(Tag::of(Op::Accept).encode());
        // SAFETY: a multishot accept names no memory of ours.
        unsafe { self.ring.push(&[accept]) }?;
        self.accept_armed = true;
        Ok(())
    }

    /// Stage 3: a connection the multishot accept took (or the accept's end: it is armed again, unless out
    /// of descriptors, when it pauses).
    fn accepted(&mut self, c: Completion) -> io::Result<()> {
        if !c.more() {
            self.accept_armed = false;
        }
        if c.result < 0 {
            let e = io::Error::from_raw_os_error(-c.result);
            match -c.result {
                libc::ECANCELED | libc::EINTR | libc::EAGAIN => {}
                // The peer gave up between its connect and our accept: nothing to serve.
                libc::ECONNABORTED => self.cx.stats.gone_before_accept += 1,
                libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM => {
                    self.outage.failed(&e);
                    self.cx.stats.accept_pauses += 1;
                    trace_stage!(
                        self.turn,
                        3,
                        "accept failed ({e}): paused for {} or until a connection closes",
                        trace::duration(ACCEPT_PAUSE)
                    );
                    self.accept_paused_until =
                        Some(deadline_after(self.cx.clock.now(), ACCEPT_PAUSE));
                    return Ok(());
                }
                _ => warn!("accept failed: {e}"),
            }
            if !self.accept_armed && self.accept_paused_until.is_none() {
                self.arm_accept()?;
            }
            return Ok(());
        }
        // SAFETY: a successful accept's result is a new descriptor the kernel just gave us; nothing else
        // owns it.
        let stream = unsafe { TcpStream::from_raw_fd(c.result) };
        if !self.accept_armed && self.accept_paused_until.is_none() {
            self.arm_accept()?;
        }
        if let Some(listener) = &self.listener {
            // During an outage, it ends once no client waits in the backlog.
            if self.outage.under_way() && sockets::backlog(listener) == Some(0) {
                self.outage.caught_up();
            }
        }
        // A multishot accept gives no address: ask for it. A peer that reset the connection already has
        // none; it is still served like any other (its first receive says it is gone).
        let peer = stream
            .peer_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        if self.conns.len() >= self.connection_cap {
            self.cx.stats.refused += 1;
            trace_stage!(
                self.turn,
                3,
                "refuse {peer}: {} open, the cap",
                self.conns.len()
            );
            if stream.set_nonblocking(true).is_ok() {
                refuse(socket2::SockRef::from(&stream), peer, self.cx.refusal());
            }
            return Ok(());
        }
        prepare_accepted(&stream, peer, &self.config);
        self.next_serial += 1;
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        entry.insert(Conn::new(stream, key, self.next_serial, peer, &mut self.cx));
        self.cx.stats.accepted += 1;
        debug!("{peer}: connected as conn {key}");
        trace_stage!(
            self.turn,
            3,
            "accept conn {key} ({peer}) (multishot: still armed)"
        );
        // The greeting, if the service has one, goes out now; else the first receive is submitted.
        self.drive(key, |conn, l| conn.advance(l));
        Ok(())
    }

    fn arm_wake(&mut self) -> io::Result<()> {
        let recv = opcode::Recv::new(
            types::Fd(self.wake.as_raw_fd()),
            self.wake_buffer.as_mut_ptr(),
            self.wake_buffer.len() as u32,
        )
        .build()
        .user_data(Tag::of(Op::Wake).encode());
        // SAFETY: the 64-byte buffer is boxed and lives as long as the ring's use of it (this value); only
        // this receive writes it, and it is read by nobody.
        unsafe { self.ring.push(&[recv]) }?;
        self.wake_armed = true;
        Ok(())
    }

    /// The wake-up socket's receive completed: a signal or a shutdown request. Returns true if the run must
    /// end now.
    fn woken(&mut self, c: Completion) -> io::Result<bool> {
        self.wake_armed = false;
        let now = self.cx.clock.now();
        if self.waker.requested.swap(false, Ordering::SeqCst)
            && self.shutdown.request(now) == Verdict::Begin
        {
            self.begin_shutdown("shutdown requested")?;
        }
        for i in 0..self.signals.len() {
            let (name, ref flag) = self.signals[i];
            if flag.swap(false, Ordering::SeqCst) {
                match self.shutdown.signal(name, now) {
                    Verdict::Now => return Ok(true),
                    Verdict::Begin => self.begin_shutdown(name)?,
                    Verdict::Already => {}
                }
            }
        }
        if c.result != -libc::ECANCELED {
            self.arm_wake()?;
        }
        Ok(false)
    }

    /// Stage 10. Stop accepting and taking datagrams (their multishot operations are cancelled), and stop
    /// reading every connection: each answers what it read, then FIN and linger, by the deadline.
    fn begin_shutdown(&mut self, why: &str) -> io::Result<()> {
        if self.listener.is_some() && self.accept_armed {
            let cancel = opcode::AsyncCancel::new(Tag::of(Op::Accept).encode())
                .build()
                .user_data(Tag::of(Op::Cancel).encode());
            // SAFETY: names no memory.
            unsafe { self.ring.push(&[cancel]) }?;
        }
        // The listener closes now: new clients are refused by the kernel (the cancelled accept still holds
        // the socket until its completion, and takes no one meanwhile).
        self.listener = None;
        if let Some(udp) = &mut self.udp {
            udp.close(&mut self.ring);
        }
        let open: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        info!(
            "{why}: shutting down; delivering what {} owed (at most {:?})",
            plural(open.len(), "connection is", "connections are"),
            self.shutdown.timeout()
        );
        trace_stage!(
            self.turn,
            10,
            "shutdown ({why}): accept and udp cancelled; {} reading",
            plural(open.len(), "connection stops", "connections stop")
        );
        self.cx.deadline = self.shutdown.deadline();
        for key in open {
            self.drive(key, |conn, l| conn.stop_reading(l));
        }
        Ok(())
    }

    /// The run ends: whatever is still in flight is cancelled and its completion awaited, so the kernel
    /// holds none of our memory when it is freed.
    fn stop(mut self, forced: bool) -> Summary {
        let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::any())
            .build()
            .user_data(Tag::of(Op::Cancel).encode());
        // SAFETY: names no memory.
        let _ = unsafe { self.ring.push(&[cancel]) };
        // Connections cut here are not counted as closed: the shutdown counted them as dropped.
        let closed = self.cx.stats.closed;
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.drive(key, |conn, l| conn.close(Cut::Deadline, l));
        }
        let until = Instant::now() + FINAL_DRAIN;
        let mut batch = [const { MaybeUninit::uninit() }; COMPLETION_BATCH];
        while !self.quiet() && Instant::now() < until {
            if self.ring.enter(Some(Duration::from_millis(50))).is_err() {
                break;
            }
            loop {
                let n = self.ring.take(&mut batch);
                if n == 0 {
                    break;
                }
                for entry in &batch[..n] {
                    // SAFETY: `take` initialised the first `n` entries.
                    if let Some(c) = ring::read(unsafe { entry.assume_init_ref() }) {
                        match c.tag.op {
                            Op::Wake => self.wake_armed = false,
                            Op::Accept if !c.more() => self.accept_armed = false,
                            _ => {
                                let _ = self.complete(c);
                            }
                        }
                    }
                }
            }
            self.reap_finished();
        }
        self.cx.stats.closed = closed;
        if !self.quiet() {
            // The kernel still holds some of our memory: leak it rather than free it under the kernel.
            warn!("io_uring operations still in flight at exit; their memory is not freed");
            std::mem::forget(self.conns);
            self.cx.stats.peak_unsent = self.cx.account.peak();
            info!("stopped: {}", self.cx.stats);
            let stats = self.cx.stats.clone();
            std::mem::forget(self.ring);
            std::mem::forget(self.tcp_buffers);
            std::mem::forget(self.udp);
            std::mem::forget(self.wake_buffer);
            return Summary { stats, forced };
        }
        self.cx.stats.peak_unsent = self.cx.account.peak();
        info!("stopped: {}", self.cx.stats);
        Summary {
            stats: self.cx.stats.clone(),
            forced,
        }
    }

    /// Nothing of ours is in flight in the kernel.
    fn quiet(&self) -> bool {
        self.timeout.is_none()
            && !self.accept_armed
            && !self.wake_armed
            && self.udp.as_ref().is_none_or(Udp::idle)
            && self.conns.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::conn::Conn;
    use crate::server::reactor::registered::Registered;

    /// What a connection costs in the slab, beside the reactor's: `docs/14-completion.md` states it.
    #[test]
    fn a_connection_is_about_as_large_as_the_reactors() {
        let (uring, reactor) = (size_of::<Conn>(), size_of::<Registered>());
        eprintln!("Conn {uring} B, the reactor's Registered {reactor} B");
        assert!(
            uring <= reactor + 32,
            "Conn {uring} B against Registered {reactor} B"
        );
    }
}
