//! `--mode blocking`: the tutorials' iterative server, with blocking `std::net` sockets. One thread accepts a
//! TCP connection and serves it until it closes, then accepts the next; a second client waits in the listen
//! backlog meanwhile. A blocking call waits on one socket only, so the UDP socket cannot share that thread:
//! it gets a thread of its own. Walk-through: `docs/02-blocking.md`.
//!
//! This file also holds what the two blocking modes share (`--mode threads` is in `threaded.rs`):
//!
//! - [`serve_connection`]: one TCP connection, start to end, in blocking calls, on the same
//!   [`Conversation`] every mode uses. Compare its length with the reactor's `connection.rs`: the blocking
//!   calls keep the state for us.
//! - [`serve_udp`]: the UDP thread's loop, one `recv_from` and one `send_to` per datagram.
//! - [`Shared`]: what the threads share: the config, the counters, the open connections, and the supervisor
//!   that turns a signal or a [`ShutdownHandle`] into a shutdown with a deadline.
//!
//! # How blocking threads are stopped
//! A thread inside a blocking call cannot also wait for "please stop". So:
//! - the listener is shut down from the supervising thread (`shutdown(SHUT_RD)` on a listening socket: Linux
//!   stops listening, resets connections still queued, which were never read from and are owed nothing, and
//!   wakes a thread blocked in `accept`);
//! - reads (TCP and UDP) wait at most [`TICK`], then look at the stop flag: a connection stops reading,
//!   delivers what it owes, sends FIN and lingers, exactly as in the reactor. (Shutting the read side of a
//!   connection instead would also wake the read, but Linux then discards bytes the client has sent and we
//!   have not read yet, and answers more with a reset.)
//! - a thread blocked in a write because its client does not read is cut at the deadline by
//!   `shutdown(Both)` on its socket from the supervising thread; the write fails at once.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::{Shutdown as Both, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use signal_hook::iterator::Signals;
use slab::Slab;

use super::config::Config;
use super::conversation::{Conversation, Phase};
use super::limits::{CONNECTION_STACK, DATAGRAM_BUFFER, THREAD_READ_SIZE, TICK};
use super::shutdown::{signal_name, Shutdown, Verdict, SIGNALS};
use super::sockets::{self, backlog, prepare_accepted, AcceptOutage, Bound};
use super::stats::{plural, Stats, Summary};
use super::trace::{self, BLOCKING};
use crate::net::{interrupted, timed_out};
use crate::service::Clock;

/// After the deadline has cut the connections, how long the supervisor lets their threads count themselves
/// closed before it returns anyway. A cut socket fails the thread's call at once, so this is only for
/// threads that were not in a socket call at that moment.
const GRACE: Duration = Duration::from_millis(100);

/// The blocking server. [`Blocking::bind`], then [`Blocking::run`] until shut down.
pub struct Blocking {
    shared: Arc<Shared>,
    listener: Arc<TcpListener>,
    udp: Option<UdpSocket>,
    signals: Option<Signals>,
}

impl Blocking {
    /// Binds the TCP listener and, for a service that answers datagrams, the UDP socket (one port for
    /// both). They stay blocking.
    pub fn bind(config: Config) -> io::Result<Blocking> {
        let Bound {
            tcp,
            udp,
            local_addr,
        } = sockets::bind(&config)?;
        let listener = Arc::new(tcp);
        Ok(Blocking {
            shared: Shared::new(config, local_addr, Arc::clone(&listener)),
            listener,
            udp,
            signals: None,
        })
    }

    /// The address the sockets are bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    pub(crate) fn config(&self) -> &Config {
        &self.shared.config
    }

    /// A handle that shuts this server down from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(Arc::clone(&self.shared))
    }

    /// Handles SIGINT and SIGTERM as the reactor does, through a signal thread (see the module docs).
    pub fn catch_signals(&mut self) -> io::Result<()> {
        self.signals = Some(Signals::new(SIGNALS)?);
        Ok(())
    }

    /// Serves until shut down: this thread supervises, one thread accepts and serves, one answers UDP.
    pub fn run(self) -> io::Result<Summary> {
        self.run_with(
            "blocking: one tcp client at a time, plus a udp thread",
            accept_and_serve,
        )
    }

    /// Serves with `accept_loop` on the TCP thread: the one thing `--mode threads` does differently
    /// (`threaded.rs`). Everything else, UDP, signals and the shutdown deadline, is this module's.
    pub(crate) fn run_with(
        self,
        model: &str,
        accept_loop: impl FnOnce(&Arc<Shared>, &TcpListener) + Send + 'static,
    ) -> io::Result<Summary> {
        let over = if self.udp.is_some() {
            "tcp and udp"
        } else {
            "tcp"
        };
        info!(
            "serving {} over {over} on {} ({model})",
            self.shared.config.service, self.shared.local_addr
        );
        let Blocking {
            shared,
            listener,
            udp,
            signals,
        } = self;
        if let Some(udp) = udp {
            shared.spawn_worker("udp".into(), move |shared| serve_udp(shared, &udp))?;
        }
        let accepting = Arc::clone(&listener);
        shared.spawn_worker("tcp".into(), move |shared| accept_loop(shared, &accepting))?;
        Ok(shared.supervise(signals, || stop_listening(&listener)))
    }
}

/// The iterative server's loop: accept one client, serve it to the end, accept the next.
fn accept_and_serve(shared: &Arc<Shared>, listener: &TcpListener) {
    while let Some((stream, peer)) = accept(shared, listener) {
        if let Some(key) = shared.open(&stream, peer) {
            serve_and_count(shared, stream, peer, key);
        }
    }
}

/// The next connection, or `None` once shutdown has begun. Shared with `threaded.rs`.
pub(crate) fn accept(shared: &Shared, listener: &TcpListener) -> Option<(TcpStream, SocketAddr)> {
    let waiting_since = tracing().then(Instant::now);
    let mut outage = AcceptOutage::default();
    loop {
        let accepted = listener.accept();
        if shared.stopping() {
            // The supervisor shut the listener to wake us (the error is EINVAL), or a client slipped in
            // just before: either way, stop.
            return None;
        }
        match accepted {
            Ok(accepted) => {
                outage.accepted();
                if let Some(since) = waiting_since {
                    log::trace!(
                        target: BLOCKING,
                        "blocked in accept for {}: {} connects; {} more waiting in the backlog",
                        trace::duration(since.elapsed()),
                        accepted.1,
                        shared.backlog_text()
                    );
                }
                return Some(accepted);
            }
            Err(ref e) if interrupted(e) => {}
            // The peer gave up between its connect and our accept: nothing to serve.
            Err(ref e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
            Err(e) => {
                // Out of descriptors (EMFILE) or memory: retrying at once would spin, so pause first.
                outage.failed(&e);
                thread::sleep(TICK);
            }
        }
    }
}

/// Stops accepting: on Linux, `shutdown(SHUT_RD)` on a listening socket stops it listening (new and queued
/// connections are reset) and wakes a thread blocked in `accept` with EINVAL.
pub(crate) fn stop_listening(listener: &TcpListener) {
    if let Err(e) = socket2::SockRef::from(listener).shutdown(Both::Read) {
        warn!("cannot shut the listener: {e}");
    }
}

/// Serves one accepted connection on the calling thread, then counts it closed.
pub(crate) fn serve_and_count(
    shared: &Shared,
    mut stream: TcpStream,
    peer: SocketAddr,
    key: usize,
) {
    debug!("{peer}: connected as #{key}");
    let thread = thread::current();
    let name = thread.name().unwrap_or("a thread");
    let started = tracing().then(Instant::now);
    if started.is_some() {
        log::trace!(
            target: BLOCKING,
            "thread {name} starts serving {peer} ({} open)",
            shared.open_count()
        );
    }
    prepare_accepted(&stream, peer, &shared.config);
    let mut stats = Stats::default();
    let why = match serve_connection(&mut stream, shared, &mut stats) {
        Ok(why) => why.to_string(),
        Err(e) => e.to_string(),
    };
    debug!("{peer}: closed ({why})");
    if let Some(started) = started {
        log::trace!(
            target: BLOCKING,
            "thread {name} ends serving {peer} after {} ({why}); {} waiting in the backlog",
            trace::duration(started.elapsed()),
            shared.backlog_text()
        );
    }
    shared.close(key, &stats);
}

/// Whether the blocking modes' trace is on: one atomic load when the log level is lower.
fn tracing() -> bool {
    log::log_enabled!(target: BLOCKING, log::Level::Trace)
}

/// One TCP connection, start to end, in blocking calls: read what the client sent, answer it, write the
/// answer, until the conversation is done. A write blocks while the client is not reading, and the thread
/// reads nothing meanwhile: that is the backpressure, and the memory held is one read and its reply.
///
/// Returns why the connection ended, for the log.
pub fn serve_connection(
    stream: &mut TcpStream,
    shared: &Shared,
    stats: &mut Stats,
) -> io::Result<&'static str> {
    let config = &shared.config;
    let clock = Clock::new();
    let mut conversation = Conversation::new(config.session());
    let mut input = vec![0; THREAD_READ_SIZE];
    let mut output = Vec::with_capacity(THREAD_READ_SIZE);
    // Not a timeout on the client: a tick, so this thread can notice a shutdown and its deadlines.
    stream.set_read_timeout(Some(TICK))?;
    conversation.greet(stream, &mut output, stats)?;
    let peer = stream.peer_addr()?;
    // While traced: when the current wait in `recv` began (one line per wait, not one per tick).
    let mut waiting_since: Option<Instant> = None;
    loop {
        let now = clock.tick();
        match conversation.phase() {
            Phase::Open if shared.stopping() => {
                conversation.stop_reading(stream, &mut output, stats)?;
            }
            // A session's own deadline (an HTTP request whose headers never finish), looked at between reads
            // and on every tick, so a client that trickles bytes cannot put it off.
            Phase::Open if conversation.session().deadline().is_some_and(|d| now >= d) => {
                conversation.expire(stream, &clock, &mut output, stats)?;
            }
            Phase::Open => {
                // A blocking write leaves nothing unsent, so the room is the whole high-water mark, which
                // `Config::validate` made large enough for a read. Never an empty read: it would return 0,
                // which means end of stream.
                let limit = conversation.read_limit(config).clamp(1, input.len());
                if waiting_since.is_none() && tracing() {
                    waiting_since = Some(now);
                }
                let read = stream.read(&mut input[..limit]);
                if let (Some(since), Ok(_)) = (waiting_since, &read) {
                    waiting_since = None;
                    log::trace!(
                        target: BLOCKING,
                        "blocked in recv for {peer} for {}, {} waiting in the backlog",
                        trace::duration(since.elapsed()),
                        shared.backlog_text()
                    );
                }
                match read {
                    Ok(0) => {
                        conversation.peer_closed(stream, &clock, &mut output, stats)?;
                    }
                    Ok(n) => {
                        let written_before = stats.bytes_out;
                        let sending = tracing().then(|| clock.tick());
                        conversation.received(stream, &clock, &input[..n], &mut output, stats)?;
                        if let Some(since) = sending {
                            log::trace!(
                                target: BLOCKING,
                                "{peer}: read {n} B → {} B written (blocked in send for {})",
                                stats.bytes_out - written_before,
                                trace::duration(since.elapsed())
                            );
                        }
                        // A blocking write holds the whole reply until the client has taken it.
                        stats.peak_pending = stats.peak_pending.max(output.len());
                    }
                    // A tick: the loop looks at the stop flag and the deadlines again.
                    Err(ref e) if timed_out(e) => {}
                    Err(ref e) if interrupted(e) => {}
                    Err(e) => return Err(e),
                }
            }
            Phase::Flushing => {
                conversation.flush(stream, stats)?;
                conversation.settle(stream, now, shared.deadline());
            }
            Phase::Lingering => {
                if let Some(deadline) = shared.deadline() {
                    conversation.linger_no_later_than(deadline);
                }
                if conversation.linger_expired(now) {
                    return Ok("closed: the peer did not close its side in time");
                }
                // Waits a tick at most, then the loop looks at the time again.
                conversation.discard(stream, &mut input, usize::MAX);
            }
            Phase::Done => return Ok("finished"),
        }
    }
}

/// The UDP thread: one datagram in, one reply out, until shutdown. Its own thread because `recv_from` on a
/// blocking socket waits for a datagram and nothing else, TCP clients included.
pub fn serve_udp(shared: &Shared, udp: &UdpSocket) {
    let mut stats = Stats::default();
    if let Err(e) = udp.set_read_timeout(Some(TICK)) {
        warn!("udp: cannot set the read timeout, so shutdown waits for a datagram: {e}");
    }
    let mut input = vec![0; DATAGRAM_BUFFER];
    let mut output = Vec::with_capacity(DATAGRAM_BUFFER);
    let config = &shared.config;
    let options = config.service_options();
    while !shared.stopping() {
        let (len, peer) = match udp.recv_from(&mut input) {
            Ok(received) => received,
            Err(ref e) if timed_out(e) || interrupted(e) => continue,
            Err(e) => {
                // An ICMP error for an earlier reply: it concerns that one peer; the socket is fine.
                stats.udp_errors += 1;
                debug!("udp: receive error: {e}");
                continue;
            }
        };
        stats.datagrams_in += 1;
        output.clear();
        config
            .service
            .datagram_with(&options, &input[..len], &mut output);
        match udp.send_to(&output, peer) {
            Ok(_) => stats.datagrams_out += 1,
            Err(e) => {
                stats.datagrams_dropped += 1;
                debug!("udp: reply to {peer} failed: {e}");
            }
        }
    }
    shared.lock().stats.add(&stats);
}

/// Asks a running blocking or threads server, from any thread, to shut down as SIGTERM would.
#[derive(Clone)]
pub struct ShutdownHandle(Arc<Shared>);

impl ShutdownHandle {
    pub fn shutdown(&self) {
        self.0.request(Request::Shutdown);
    }
}

/// What the supervising thread is asked to do.
enum Request {
    Shutdown,
    Signal(&'static str),
}

/// What the threads of a blocking server share.
pub struct Shared {
    pub(crate) config: Config,
    local_addr: SocketAddr,
    /// The listener, so the trace can say how many wait in its backlog.
    listener: Arc<TcpListener>,
    /// Shutdown has begun: accept nothing more, read nothing more.
    stopping: AtomicBool,
    /// When the shutdown gives up: no connection lingers past it.
    deadline: OnceLock<Instant>,
    state: Mutex<State>,
    /// Notified when a request arrives or a worker thread ends.
    changed: Condvar,
}

struct State {
    stats: Stats,
    /// A second handle on every open connection, so the supervisor can cut it at the deadline.
    open: Slab<TcpStream>,
    requests: VecDeque<Request>,
    /// Worker threads still running (acceptor, UDP, connections).
    workers: usize,
}

impl Shared {
    fn new(config: Config, local_addr: SocketAddr, listener: Arc<TcpListener>) -> Arc<Shared> {
        Arc::new(Shared {
            config,
            local_addr,
            listener,
            stopping: AtomicBool::new(false),
            deadline: OnceLock::new(),
            state: Mutex::new(State {
                stats: Stats::default(),
                open: Slab::new(),
                requests: VecDeque::new(),
                workers: 0,
            }),
            changed: Condvar::new(),
        })
    }

    /// A thread that panicked while holding the lock left counters, nothing that could be inconsistent: go on.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Once shutdown has begun, when it gives up.
    fn deadline(&self) -> Option<Instant> {
        self.deadline.get().copied()
    }

    fn request(&self, request: Request) {
        self.lock().requests.push_back(request);
        self.changed.notify_all();
    }

    /// How many connections wait in the listen backlog, for the trace.
    fn backlog_text(&self) -> String {
        backlog(&self.listener).map_or_else(|| "an unknown number of".into(), |n| n.to_string())
    }

    /// Connections being served now.
    pub(crate) fn open_count(&self) -> usize {
        self.lock().open.len()
    }

    /// Counts a new connection and keeps a second handle on it for the deadline. `None` if the handle
    /// cannot be made (out of descriptors): the connection is dropped.
    pub(crate) fn open(&self, stream: &TcpStream, peer: SocketAddr) -> Option<usize> {
        match stream.try_clone() {
            Ok(handle) => {
                let mut state = self.lock();
                state.stats.accepted += 1;
                Some(state.open.insert(handle))
            }
            Err(e) => {
                warn!("{peer}: dropped, cannot keep a handle on it: {e}");
                None
            }
        }
    }

    /// A connection's thread is done with it: add its counts, forget it.
    pub(crate) fn close(&self, key: usize, stats: &Stats) {
        let mut state = self.lock();
        state.open.try_remove(key);
        state.stats.add(stats);
        state.stats.closed += 1;
    }

    pub(crate) fn count_refused(&self) {
        self.lock().stats.refused += 1;
    }

    /// Starts a worker thread that the supervisor counts: it knows when every one has finished.
    pub(crate) fn spawn_worker(
        self: &Arc<Self>,
        name: String,
        work: impl FnOnce(&Arc<Shared>) + Send + 'static,
    ) -> io::Result<()> {
        /// Counts the worker finished however it ends, a panic included.
        struct Finished<'a>(&'a Shared);
        impl Drop for Finished<'_> {
            fn drop(&mut self) {
                self.0.lock().workers -= 1;
                self.0.changed.notify_all();
            }
        }
        self.lock().workers += 1;
        let shared = Arc::clone(self);
        let spawned = thread::Builder::new()
            .name(name)
            .stack_size(CONNECTION_STACK)
            .spawn(move || {
                let _finished = Finished(&shared);
                work(&shared);
            });
        if let Err(e) = spawned {
            self.lock().workers -= 1;
            return Err(e);
        }
        Ok(())
    }

    /// The supervising thread (the one that called `run`). It waits for a shutdown request or signal, then
    /// stops accepting, waits for the workers to deliver what they owe, cuts what is left at the deadline,
    /// and returns the summary. A second signal returns at once, marked `forced`.
    ///
    /// Signals come through a thread of their own, blocked in `signal_hook`'s iterator, because nothing in
    /// a blocking design can wait on a signal and a condition variable at once. The reactor needs no such
    /// thread: signal-hook-mio turns signals into readiness on a pipe in the same `Poll` as the sockets.
    pub(crate) fn supervise(
        self: &Arc<Self>,
        signals: Option<Signals>,
        stop_accepting: impl FnOnce(),
    ) -> Summary {
        let signal_handle = signals.map(|signals| self.forward_signals(signals));
        let summary = self.supervise_until_done(stop_accepting);
        if let Some(handle) = signal_handle {
            handle.close();
        }
        summary
    }

    fn forward_signals(self: &Arc<Self>, mut signals: Signals) -> signal_hook::iterator::Handle {
        let handle = signals.handle();
        let shared = Arc::clone(self);
        let forward = move || {
            for signal in signals.forever() {
                shared.request(Request::Signal(signal_name(signal)));
            }
        };
        if let Err(e) = thread::Builder::new().name("signals".into()).spawn(forward) {
            warn!("cannot start the signal thread, signals will not stop the server: {e}");
        }
        handle
    }

    fn supervise_until_done(&self, stop_accepting: impl FnOnce()) -> Summary {
        let mut shutdown = Shutdown::new(self.config.shutdown_timeout);
        let mut state = self.lock();
        let why = loop {
            match state.requests.pop_front() {
                Some(Request::Shutdown) => {
                    shutdown.request(Instant::now());
                    break "shutdown requested";
                }
                Some(Request::Signal(name)) => {
                    shutdown.signal(name, Instant::now());
                    break name;
                }
                None => state = self.wait(state, None),
            }
        };

        // Shutdown: no new connections or datagrams; every connection stops reading within a tick.
        if let Some(deadline) = shutdown.deadline() {
            let _ = self.deadline.set(deadline);
        }
        self.stopping.store(true, Ordering::SeqCst);
        drop(state);
        stop_accepting();
        state = self.lock();
        info!(
            "{why}: shutting down; delivering what {} owed (at most {:?})",
            plural(state.open.len(), "connection is", "connections are"),
            shutdown.timeout()
        );
        loop {
            while let Some(request) = state.requests.pop_front() {
                if let Request::Signal(name) = request {
                    if shutdown.signal(name, Instant::now()) == Verdict::Now {
                        return summary(state, true);
                    }
                }
            }
            if state.workers == 0 {
                return summary(state, false);
            }
            let now = Instant::now();
            let left = shutdown
                .deadline()
                .map_or(Duration::ZERO, |d| d.saturating_duration_since(now));
            if left.is_zero() {
                break;
            }
            state = self.wait(state, Some(left));
        }

        // The deadline passed: cut the connections still open. Their threads' reads and writes fail at once.
        let cut = state.open.len();
        if cut > 0 {
            warn!(
                "shutdown deadline passed: dropping {}",
                plural(cut, "connection", "connections")
            );
            state.stats.dropped_at_shutdown = cut as u64;
            for (_, stream) in state.open.iter() {
                let _ = stream.shutdown(Both::Both);
            }
        }
        let grace_end = Instant::now() + GRACE;
        while state.workers > 0 {
            let now = Instant::now();
            if now >= grace_end {
                warn!(
                    "{} still busy: not waiting for them",
                    plural(state.workers, "thread", "threads")
                );
                break;
            }
            state = self.wait(state, Some(grace_end - now));
        }
        summary(state, false)
    }

    fn wait<'a>(
        &'a self,
        state: MutexGuard<'a, State>,
        timeout: Option<Duration>,
    ) -> MutexGuard<'a, State> {
        match timeout {
            None => self.changed.wait(state).unwrap_or_else(|e| e.into_inner()),
            Some(timeout) => {
                self.changed
                    .wait_timeout(state, timeout)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
        }
    }
}

fn summary(state: MutexGuard<'_, State>, forced: bool) -> Summary {
    info!("stopped: {}", state.stats);
    Summary {
        stats: state.stats.clone(),
        forced,
    }
}
