//! `--mode blocking`: the tutorials' iterative server, with blocking `std::net` sockets. One thread accepts a
//! TCP connection and serves it until it closes, then accepts the next; a second client waits in the listen
//! backlog meanwhile. A blocking call waits on one socket only, so the UDP socket cannot share that thread:
//! it gets a thread of its own. Walk-through: `docs/02-blocking.md`.
//!
//! This file also holds what the two blocking modes share (`--mode threads` is in `threaded.rs`):
//!
//! - [`serve_connection`]: one TCP connection, start to end: read, [`Session::feed`](crate::service::Session::feed), `write_all`. Compare
//!   its length with the reactor's `connection.rs`: the blocking calls keep the state for us.
//! - [`serve_udp`]: the UDP thread's loop, one `recv_from` and one `send_to` per datagram.
//! - [`Shared`]: what the threads share: the config, the counters, the open connections, and the supervisor
//!   that turns a signal or a [`ShutdownHandle`] into a shutdown with a deadline.
//!
//! # How blocking threads are stopped
//! A thread inside a blocking call cannot also wait for "please stop". So:
//! - the listener is shut down from the supervising thread (`shutdown(SHUT_RD)` on a listening socket: Linux
//!   stops listening, resets connections still queued, and wakes a thread blocked in `accept`);
//! - reads (TCP and UDP) wait at most [`TICK`], then look at the stop flag: a connection with nothing to
//!   read once shutdown has begun is finished, exactly as the reactor closes a quiet connection. (Shutting
//!   the read side of a connection instead would also wake the read, but Linux then discards bytes the
//!   client has sent and we have not read yet: replies that were due would be lost.)
//! - a thread blocked in `write_all` because its client does not read is cut at the deadline by
//!   `shutdown(Both)` on its socket from the supervising thread; the write fails at once.
//!
//! The supervisor then returns without waiting for stragglers, so no thread keeps the process alive past
//! the deadline.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use slab::Slab;

use crate::config::Config;
use crate::net::{interrupted, would_block, Sockets};
use crate::reactor::Summary;
use crate::service::Step;
use crate::stats::Stats;

/// The longest a blocking read waits before its thread looks at the stop flag. It bounds how long a quiet
/// connection or the UDP thread takes to notice a shutdown; it costs an idle thread ten wake-ups a second.
pub const TICK: Duration = Duration::from_millis(100);

/// Bytes one blocking read asks for. Every connection thread owns its buffer, so it is smaller than the
/// reactor's single shared 64 KiB one.
pub const READ_SIZE: usize = 16 * 1024;

/// Largest UDP datagram (65,507 bytes over IPv4, 65,527 over IPv6) fits.
const DATAGRAM_SIZE: usize = 64 * 1024;

/// How long a connection the service closed waits for the client's FIN before giving up (see `linger`).
const LINGER: Duration = Duration::from_secs(2);

/// After the deadline has cut the connections, how long the supervisor lets their threads count themselves
/// closed before it returns anyway.
const GRACE: Duration = Duration::from_millis(500);

/// The blocking server. [`Server::bind`], then [`Server::run`] until shut down.
pub struct Server {
    shared: Arc<Shared>,
    listener: Arc<TcpListener>,
    udp: UdpSocket,
    signals: Option<Signals>,
}

impl Server {
    /// Binds the TCP listener and the UDP socket (one port for both). They stay blocking.
    pub fn bind(config: Config) -> io::Result<Server> {
        let (shared, sockets) = Shared::bind(config)?;
        Ok(Server {
            shared,
            listener: Arc::new(sockets.tcp),
            udp: sockets.udp,
            signals: None,
        })
    }

    /// The address both sockets are bound to.
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
        self.signals = Some(Signals::new([SIGINT, SIGTERM])?);
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
    /// (`src/threaded.rs`). Everything else, UDP, signals and the shutdown deadline, is this module's.
    pub(crate) fn run_with(
        self,
        model: &str,
        accept_loop: fn(&Arc<Shared>, &TcpListener),
    ) -> io::Result<Summary> {
        info!(
            "serving {} over tcp and udp on {} ({model})",
            self.shared.config.service, self.shared.local_addr
        );
        let Server {
            shared,
            listener,
            udp,
            signals,
        } = self;
        shared.spawn_worker("udp".into(), move |shared| serve_udp(shared, &udp))?;
        let accepting = Arc::clone(&listener);
        shared.spawn_worker("tcp".into(), move |shared| accept_loop(shared, &accepting))?;
        Ok(shared.supervise(signals, || stop_listening(&listener)))
    }
}

/// The iterative server's loop: accept one client, serve it to the end, accept the next.
fn accept_and_serve(shared: &Arc<Shared>, listener: &TcpListener) {
    while let Some((stream, peer)) = accept(shared, listener) {
        if let Some(key) = shared.open(&stream, peer) {
            handle(shared, stream, peer, key);
        }
    }
}

/// The next connection, or `None` once shutdown has begun. Shared with `threaded.rs`.
pub(crate) fn accept(shared: &Shared, listener: &TcpListener) -> Option<(TcpStream, SocketAddr)> {
    loop {
        let accepted = listener.accept();
        if shared.stopping() {
            // The supervisor shut the listener to wake us (the error is EINVAL), or a client slipped in
            // just before: either way, stop.
            return None;
        }
        match accepted {
            Ok(accepted) => return Some(accepted),
            Err(ref e) if interrupted(e) => {}
            // The peer gave up between its connect and our accept: nothing to serve.
            Err(ref e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
            Err(e) => {
                // Out of descriptors (EMFILE) or memory: retrying at once would spin, so pause first.
                warn!("accept failed: {e}");
                thread::sleep(TICK);
            }
        }
    }
}

/// Stops accepting: on Linux, `shutdown(SHUT_RD)` on a listening socket stops it listening (new and queued
/// connections are reset) and wakes a thread blocked in `accept` with EINVAL.
pub(crate) fn stop_listening(listener: &TcpListener) {
    if let Err(e) = socket2::SockRef::from(listener).shutdown(Shutdown::Read) {
        warn!("cannot shut the listener: {e}");
    }
}

/// Serves one accepted connection on the calling thread, then counts it closed.
pub(crate) fn handle(shared: &Shared, mut stream: TcpStream, peer: SocketAddr, key: usize) {
    debug!("{peer}: connected as #{key}");
    let mut stats = Stats::default();
    match serve_connection(&mut stream, shared, &mut stats) {
        Ok(why) => debug!("{peer}: closed ({why})"),
        Err(e) => debug!("{peer}: closed ({e})"),
    }
    shared.close(key, &stats);
}

/// One TCP connection, start to end, in blocking calls: read what the client sent, answer it, write the
/// answer, until the client closes. `write_all` blocks while the client is not reading, and the thread reads
/// nothing meanwhile: that is the backpressure, and the memory held is one read and its reply.
///
/// Returns why the connection ended, for the log. The greeting on connect (the `hello` service's
/// `Welcome!`) is written before the first read, and [`Step::Close`] is handled in one place (stop reading,
/// flush, close).
pub fn serve_connection(
    stream: &mut TcpStream,
    shared: &Shared,
    stats: &mut Stats,
) -> io::Result<&'static str> {
    let config = &shared.config;
    let mut session = config.session();
    let mut input = vec![0; READ_SIZE];
    let mut output = Vec::with_capacity(READ_SIZE);
    // Replies are small and answer a request: send them now, not after Nagle's delay.
    stream.set_nodelay(true)?;
    // Not a timeout on the client: a tick, so this thread can notice a shutdown (see the module docs).
    stream.set_read_timeout(Some(TICK))?;
    session.greeting(&mut output);
    send(stream, &output, stats)?;
    loop {
        // One read's reply must fit under the high-water mark (for `hello`, with the line it holds). Never
        // an empty read: it would return 0, which means end of stream.
        let fits = session.max_input(config.high_water).clamp(1, input.len());
        let n = match stream.read(&mut input[..fits]) {
            Ok(0) => {
                // The client half-closed: answer what is held, then close.
                output.clear();
                session.finish(&mut output);
                send(stream, &output, stats)?;
                return Ok("finished");
            }
            Ok(n) => n,
            Err(ref e) if would_block(e) || e.kind() == io::ErrorKind::TimedOut => {
                if shared.stopping() {
                    return Ok("drained at shutdown");
                }
                continue;
            }
            Err(ref e) if interrupted(e) => continue,
            Err(e) => return Err(e),
        };
        stats.bytes_in += n as u64;
        output.clear();
        let step = session.feed(&input[..n], &mut output);
        send(stream, &output, stats)?;
        if step == Step::Close {
            // Closing with the client's bytes unread would send a reset that can destroy the replies just
            // written: send FIN, then read and drop what still comes until the client's FIN (or 2 s).
            stream.shutdown(Shutdown::Write)?;
            linger(stream, shared);
            return Ok("closed by the service");
        }
    }
}

/// After the server's FIN: discard what the client still sends until its own FIN, a shutdown, or `LINGER`.
fn linger(stream: &mut TcpStream, shared: &Shared) {
    let until = std::time::Instant::now() + LINGER;
    let mut sink = [0; 4096];
    while std::time::Instant::now() < until && !shared.stopping() {
        match stream.read(&mut sink) {
            Ok(0) => return,
            Ok(_) => {}
            Err(ref e)
                if would_block(e) || e.kind() == io::ErrorKind::TimedOut || interrupted(e) => {}
            Err(_) => return,
        }
    }
}

/// Writes one whole reply, blocking until the client has taken it.
fn send(stream: &mut TcpStream, reply: &[u8], stats: &mut Stats) -> io::Result<()> {
    stats.peak_pending = stats.peak_pending.max(reply.len());
    stream.write_all(reply)?;
    stats.bytes_out += reply.len() as u64;
    Ok(())
}

/// The UDP thread: one datagram in, one reply out, until shutdown. Its own thread because `recv_from` on a
/// blocking socket waits for a datagram and nothing else, TCP clients included.
pub fn serve_udp(shared: &Shared, udp: &UdpSocket) {
    let mut stats = Stats::default();
    if let Err(e) = udp.set_read_timeout(Some(TICK)) {
        warn!("udp: cannot set the read timeout, so shutdown waits for a datagram: {e}");
    }
    let mut input = vec![0; DATAGRAM_SIZE];
    let mut output = Vec::with_capacity(DATAGRAM_SIZE);
    while !shared.stopping() {
        let (len, peer) = match udp.recv_from(&mut input) {
            Ok(received) => received,
            Err(ref e) if would_block(e) || e.kind() == io::ErrorKind::TimedOut => continue,
            Err(ref e) if interrupted(e) => continue,
            Err(e) => {
                // An ICMP error for an earlier reply: it concerns that one peer; the socket is fine.
                stats.udp_errors += 1;
                debug!("udp: receive error: {e}");
                continue;
            }
        };
        stats.datagrams_in += 1;
        output.clear();
        let config = &shared.config;
        config
            .service
            .datagram_with(&config.options(), &input[..len], &mut output);
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
    /// Shutdown has begun: accept nothing more, finish quiet connections.
    stopping: AtomicBool,
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
    /// Validates the config and binds both sockets (blocking). Shared with `threaded.rs`.
    pub(crate) fn bind(config: Config) -> io::Result<(Arc<Shared>, Sockets)> {
        config
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let sockets = Sockets::bind(SocketAddr::new(config.bind, config.port))?;
        let shared = Arc::new(Shared {
            config,
            local_addr: sockets.local_addr()?,
            stopping: AtomicBool::new(false),
            state: Mutex::new(State {
                stats: Stats::default(),
                open: Slab::new(),
                requests: VecDeque::new(),
                workers: 0,
            }),
            changed: Condvar::new(),
        });
        Ok((shared, sockets))
    }

    /// A thread that panicked while holding the lock left counters, nothing that could be inconsistent: go on.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    fn request(&self, request: Request) {
        self.lock().requests.push_back(request);
        self.changed.notify_all();
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
        let spawned = thread::Builder::new().name(name).spawn(move || {
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
    /// stops accepting, waits for the workers to finish their connections, cuts what is left at the
    /// deadline, and returns the summary. A second signal returns at once, marked `forced`.
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
                let name = if signal == SIGINT {
                    "SIGINT"
                } else {
                    "SIGTERM"
                };
                shared.request(Request::Signal(name));
            }
        };
        if let Err(e) = thread::Builder::new().name("signals".into()).spawn(forward) {
            warn!("cannot start the signal thread, signals will not stop the server: {e}");
        }
        handle
    }

    fn supervise_until_done(&self, stop_accepting: impl FnOnce()) -> Summary {
        let mut signals_seen = 0;
        let mut state = self.lock();
        let why = loop {
            match state.requests.pop_front() {
                Some(Request::Shutdown) => break "shutdown requested",
                Some(Request::Signal(name)) => {
                    signals_seen += 1;
                    break name;
                }
                None => state = self.wait(state, None),
            }
        };

        // Shutdown: no new connections or datagrams; quiet connections finish within a tick.
        self.stopping.store(true, Ordering::SeqCst);
        drop(state);
        stop_accepting();
        let timeout = self.config.shutdown_timeout;
        let deadline = Instant::now() + timeout;
        state = self.lock();
        info!(
            "{why}: shutting down; finishing {} open connections (at most {timeout:?})",
            state.open.len()
        );
        loop {
            while let Some(request) = state.requests.pop_front() {
                if let Request::Signal(name) = request {
                    signals_seen += 1;
                    if signals_seen > 1 {
                        warn!("{name} again: exiting now, without waiting for replies to flush");
                        return summary(state, true);
                    }
                }
            }
            if state.workers == 0 {
                return summary(state, false);
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            state = self.wait(state, Some(deadline - now));
        }

        // The deadline passed: cut the connections still open. Their threads' reads and writes fail at once.
        let cut = state.open.len();
        if cut > 0 {
            warn!("shutdown deadline passed: dropping {cut} connections with replies unsent");
            state.stats.dropped_at_shutdown = cut as u64;
            for (_, stream) in state.open.iter() {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
        let grace_end = Instant::now() + GRACE;
        while state.workers > 0 {
            let now = Instant::now();
            if now >= grace_end {
                warn!("{} threads still busy: not waiting for them", state.workers);
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
