//! `--mode busy-poll`: non-blocking sockets without readiness notification. One thread goes round and
//! round: try to accept, try to receive a datagram, try to read (and write) every connection, again. Nothing
//! blocks, so it serves everyone from one thread like the reactor, but nothing waits either: while nobody
//! talks it keeps asking, and burns a core to learn that there is nothing to do. That cost is why readiness
//! notification (epoll, through mio) exists. Walk-through: `docs/03-busy-poll.md`.
//!
//! One pass of [`Server::run`]:
//!
//! ```text
//!  1 signals and shutdown flags ─► 2 try_accept ─► 3 try_datagrams ─► 4 Conn::try_once for each
//!  ─► 5 drop finished connections ─► 6 shutdown done or deadline? ─► 7 nothing happened: yield ─► 1
//! ```
//!
//! Signals arrive as [`signal_hook::flag`] booleans checked every pass: no signal thread, and no self-pipe,
//! since the loop never sleeps long enough to need waking.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use log::{debug, info, warn};
use signal_hook::consts::{SIGINT, SIGTERM};

use crate::config::Config;
use crate::net::{interrupted, would_block, Sockets};
use crate::reactor::Summary;
use crate::service::{Session, Step};
use crate::stats::Stats;

/// Connections accepted in one pass before the others get theirs.
const ACCEPT_BUDGET: usize = 256;
/// Datagrams answered in one pass before the others get theirs.
const DATAGRAM_BUDGET: usize = 256;
/// One buffer for every read, also big enough for any UDP datagram.
const INPUT_SIZE: usize = 64 * 1024;
/// Under backpressure, do not read until at least this much room is free (as the reactor).
const MIN_READ: usize = 4096;

/// Asks a running busy-poll server, from any thread, to shut down as SIGTERM would.
#[derive(Clone)]
pub struct ShutdownHandle(Arc<AtomicBool>);

impl ShutdownHandle {
    pub fn shutdown(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// The busy-polling server. [`Server::bind`], then [`Server::run`] until shut down.
pub struct Server {
    config: Config,
    local_addr: SocketAddr,
    /// `None` once shutdown has begun: new connections are refused by the kernel.
    listener: Option<TcpListener>,
    /// `None` once shutdown has begun.
    udp: Option<UdpSocket>,
    conns: Vec<Conn>,
    stats: Stats,
    requested: Arc<AtomicBool>,
    /// Set by the signal handlers, one flag per signal, looked at (and cleared) every pass.
    signals: Vec<(&'static str, Arc<AtomicBool>)>,
    signals_seen: usize,
    deadline: Option<Instant>,
    input: Box<[u8]>,
    output: Vec<u8>,
}

impl Server {
    /// Binds both sockets (one port) and makes them non-blocking.
    pub fn bind(config: Config) -> io::Result<Server> {
        config
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let sockets = Sockets::bind(SocketAddr::new(config.bind, config.port))?;
        let local_addr = sockets.local_addr()?;
        sockets.tcp.set_nonblocking(true)?;
        sockets.udp.set_nonblocking(true)?;
        Ok(Server {
            config,
            local_addr,
            listener: Some(sockets.tcp),
            udp: Some(sockets.udp),
            conns: Vec::new(),
            stats: Stats::default(),
            requested: Arc::new(AtomicBool::new(false)),
            signals: Vec::new(),
            signals_seen: 0,
            deadline: None,
            input: vec![0; INPUT_SIZE].into_boxed_slice(),
            output: Vec::with_capacity(INPUT_SIZE),
        })
    }

    /// The address both sockets are bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle that shuts this server down from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(Arc::clone(&self.requested))
    }

    /// Handles SIGINT and SIGTERM: the first starts a graceful shutdown, the second ends the run at once. The
    /// handlers only set a flag; the loop, which never sleeps, sees it on its next pass.
    pub fn catch_signals(&mut self) -> io::Result<()> {
        for (signal, name) in [(SIGINT, "SIGINT"), (SIGTERM, "SIGTERM")] {
            let flag = Arc::new(AtomicBool::new(false));
            signal_hook::flag::register(signal, Arc::clone(&flag))?;
            self.signals.push((name, flag));
        }
        Ok(())
    }

    /// Runs the loop until a shutdown has flushed every connection or passed its deadline.
    pub fn run(mut self) -> io::Result<Summary> {
        info!(
            "serving {} over tcp and udp on {} (1 thread, busy-polling non-blocking sockets)",
            self.config.service, self.local_addr
        );
        loop {
            // 1. Signals and shutdown requests: flags, looked at every pass.
            if self.requested.swap(false, Ordering::SeqCst) {
                self.begin_shutdown("shutdown requested");
            }
            for i in 0..self.signals.len() {
                let (name, ref flag) = self.signals[i];
                if flag.swap(false, Ordering::SeqCst) {
                    self.signals_seen += 1;
                    if self.signals_seen > 1 {
                        warn!("{name} again: exiting now, without waiting for replies to flush");
                        return Ok(self.stop(true));
                    }
                    self.begin_shutdown(name);
                }
            }

            // 2-4. Try everything once. Most tries return WouldBlock: that is the cost of not being told.
            let mut progress = self.try_accept();
            progress |= self.try_datagrams();
            let draining = self.deadline.is_some();
            for conn in &mut self.conns {
                progress |= conn.try_once(
                    &self.config,
                    &mut self.input,
                    &mut self.output,
                    &mut self.stats,
                    draining,
                );
            }

            // 5. Drop finished connections (their sockets close here).
            let before = self.conns.len();
            self.conns.retain(|conn| conn.done.is_none());
            self.stats.closed += (before - self.conns.len()) as u64;

            // 6. Shutdown: done when every connection has flushed, or when the deadline passes.
            if self.stats.shutdown_over(self.deadline, self.conns.len()) {
                return Ok(self.stop(false));
            }

            // 7. A pass that found nothing to do gives the core to anyone else who wants it, then goes on at
            //    once. It does not sleep: a sleep would only trade the burnt core for added latency, and
            //    choosing between the two is exactly what readiness notification makes unnecessary.
            if !progress {
                thread::yield_now();
            }
        }
    }

    /// Accepts until `WouldBlock` (or the budget is spent). True if anything was accepted.
    fn try_accept(&mut self) -> bool {
        let Some(listener) = &self.listener else {
            return false;
        };
        let mut progress = false;
        for _ in 0..ACCEPT_BUDGET {
            match listener.accept() {
                Ok((stream, peer)) => {
                    progress = true;
                    if let Err(e) = stream.set_nonblocking(true) {
                        warn!("{peer}: cannot make the connection non-blocking, dropped: {e}");
                        continue;
                    }
                    // Replies are small and answer a request: send them now, not after Nagle's delay.
                    if let Err(e) = stream.set_nodelay(true) {
                        debug!("{peer}: cannot set TCP_NODELAY: {e}");
                    }
                    self.stats.accepted += 1;
                    debug!("{peer}: connected as #{}", self.stats.accepted);
                    self.conns
                        .push(Conn::new(stream, peer, self.config.session()));
                }
                Err(ref e) if would_block(e) => break,
                Err(ref e) if interrupted(e) => {}
                // The peer gave up between its connect and our accept: nothing to serve.
                Err(ref e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    // Out of descriptors (EMFILE) or memory: the connection stays queued; try next pass.
                    warn!("accept failed: {e}");
                    break;
                }
            }
        }
        progress
    }

    /// Answers datagrams until `WouldBlock` (or the budget is spent). True if any arrived.
    fn try_datagrams(&mut self) -> bool {
        let Some(udp) = &self.udp else {
            return false;
        };
        let mut progress = false;
        for _ in 0..DATAGRAM_BUDGET {
            let (len, peer) = match udp.recv_from(&mut self.input) {
                Ok(received) => received,
                Err(ref e) if would_block(e) => break,
                Err(ref e) if interrupted(e) => continue,
                Err(e) => {
                    // An ICMP error for an earlier reply: it concerns that one peer; the socket is fine.
                    self.stats.udp_errors += 1;
                    debug!("udp: receive error: {e}");
                    continue;
                }
            };
            progress = true;
            self.stats.datagrams_in += 1;
            self.output.clear();
            self.config.service.datagram_with(
                &self.config.options(),
                &self.input[..len],
                &mut self.output,
            );
            match udp.send_to(&self.output, peer) {
                Ok(_) => self.stats.datagrams_out += 1,
                // No room now: UDP promises nothing, so drop it and count it.
                Err(e) => {
                    self.stats.datagrams_dropped += 1;
                    debug!("udp: reply to {peer} failed: {e}");
                }
            }
        }
        progress
    }

    /// Stop accepting and taking datagrams; connections finish what they have been sent, then close.
    fn begin_shutdown(&mut self, why: &str) {
        if self.deadline.is_some() {
            return;
        }
        self.deadline = Some(Instant::now() + self.config.shutdown_timeout);
        self.listener = None;
        self.udp = None;
        info!(
            "{why}: shutting down; flushing {} connections (at most {:?})",
            self.conns.len(),
            self.config.shutdown_timeout
        );
    }

    fn stop(self, forced: bool) -> Summary {
        info!("stopped: {}", self.stats);
        Summary {
            stats: self.stats,
            forced,
        }
    }
}

/// One TCP connection: like the reactor's, minus everything readiness needs (tokens, interest, edge flags).
struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    session: Session,
    /// Reading is over (the client half-closed, or [`Step::Close`]): flush, then close.
    flushing: bool,
    /// Replies the kernel has not taken yet; never more than the high-water mark.
    pending: Vec<u8>,
    /// Why it finished, once it has; it is dropped at the end of the pass.
    done: Option<&'static str>,
}

impl Conn {
    fn new(stream: TcpStream, peer: SocketAddr, mut session: Session) -> Conn {
        // The greeting on connect (`hello`'s `Welcome!`) goes into `pending`, written on the first pass.
        let mut pending = Vec::new();
        session.greeting(&mut pending);
        Conn {
            stream,
            peer,
            session,
            flushing: false,
            pending,
            done: None,
        }
    }

    /// One try: flush what is pending, then one read (if there is room for its reply) and its reply.
    /// True if any byte moved.
    fn try_once(
        &mut self,
        config: &Config,
        input: &mut [u8],
        output: &mut Vec<u8>,
        stats: &mut Stats,
        draining: bool,
    ) -> bool {
        match self.step(config, input, output, stats, draining) {
            Ok(progress) => progress,
            Err(e) => {
                debug!("{}: closed ({e})", self.peer);
                self.done = Some("error");
                true
            }
        }
    }

    fn step(
        &mut self,
        config: &Config,
        input: &mut [u8],
        output: &mut Vec<u8>,
        stats: &mut Stats,
        draining: bool,
    ) -> io::Result<bool> {
        // Older replies first: the stream stays in order.
        let mut progress = self.flush(stats)?;
        if self.flushing {
            if self.pending.is_empty() {
                self.finish("finished");
            }
            return Ok(progress);
        }
        // Read no more than the high-water mark can answer: backpressure instead of unbounded memory.
        let room = config.high_water.saturating_sub(self.pending.len());
        let fits = self
            .session
            .max_input(room)
            .min(input.len())
            .min(config.read_budget);
        if fits < MIN_READ.min(config.read_budget) {
            return Ok(progress);
        }
        output.clear();
        match self.stream.read(&mut input[..fits]) {
            Ok(0) => {
                // The client half-closed: answer what is held, flush, then close.
                self.session.finish(output);
                self.flushing = true;
            }
            Ok(n) => {
                stats.bytes_in += n as u64;
                if self.session.feed(&input[..n], output) == Step::Close {
                    self.flushing = true;
                }
            }
            Err(ref e) if would_block(e) => {
                // Nothing to read. At shutdown, a connection with nothing read and nothing owed is finished.
                if draining && self.pending.is_empty() {
                    self.finish("drained at shutdown");
                }
                return Ok(progress);
            }
            Err(ref e) if interrupted(e) => return Ok(progress),
            Err(e) => return Err(e),
        }
        progress = true;
        // Send the reply now if nothing is queued before it, else behind the rest.
        let mut sent = 0;
        if self.pending.is_empty() {
            sent = write_some(&mut self.stream, output)?;
            stats.bytes_out += sent as u64;
        }
        if sent < output.len() {
            self.pending.extend_from_slice(&output[sent..]);
            stats.peak_pending = stats.peak_pending.max(self.pending.len());
        }
        if self.flushing && self.pending.is_empty() {
            self.finish("finished");
        }
        Ok(progress)
    }

    /// Writes as much of `pending` as the socket takes. True if anything was written.
    fn flush(&mut self, stats: &mut Stats) -> io::Result<bool> {
        if self.pending.is_empty() {
            return Ok(false);
        }
        let sent = write_some(&mut self.stream, &self.pending)?;
        stats.bytes_out += sent as u64;
        if sent == self.pending.len() {
            // An idle connection holds no buffer.
            self.pending = Vec::new();
        } else {
            self.pending.drain(..sent);
        }
        Ok(sent > 0)
    }

    fn finish(&mut self, why: &'static str) {
        debug!("{}: closed ({why})", self.peer);
        self.done = Some(why);
    }
}

/// Writes until `data` is gone or the socket would block. Returns the bytes written.
fn write_some(stream: &mut TcpStream, data: &[u8]) -> io::Result<usize> {
    let mut sent = 0;
    while sent < data.len() {
        match stream.write(&data[sent..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            Err(ref e) if would_block(e) => break,
            Err(ref e) if interrupted(e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(sent)
}
