//! What the threads of a blocking server share, and the supervising thread that stops them: the config,
//! the counters, the open connections, the account of unsent replies, and the rule that turns a signal or
//! a [`ShutdownHandle`] into a shutdown with a deadline (`../shutdown.rs` decides what a signal means; this
//! file carries it out across threads). Walk-through: `docs/02-blocking.md`.

use std::collections::VecDeque;
use std::io;
use std::net::{Shutdown as Both, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use log::{info, warn};
#[cfg(unix)]
use signal_hook::iterator::Signals;
#[cfg(not(unix))]
type Signals = std::convert::Infallible;
use slab::Slab;

use crate::server::config::Config;
use crate::server::connection::{Account, Context};
use crate::server::limits::CONNECTION_STACK;
#[cfg(unix)]
use crate::server::shutdown::signal_name;
use crate::server::shutdown::{Shutdown, Verdict};
use crate::server::sockets::backlog;
use crate::server::stats::{plural, Stats, Summary};

/// After the deadline has cut the connections, how long the supervisor lets their threads count themselves
/// closed before it returns anyway. A cut socket fails the thread's call at once, so this is only for
/// threads that were not in a socket call at that moment.
const GRACE: Duration = Duration::from_millis(100);

/// Asks a running blocking or threads server, from any thread, to shut down as SIGTERM would.
#[derive(Clone)]
pub struct ShutdownHandle(pub(crate) Arc<Shared>);

impl ShutdownHandle {
    pub fn shutdown(&self) {
        self.0.request(Request::Shutdown);
    }
}

/// What the supervising thread is asked to do.
pub(crate) enum Request {
    Shutdown,
    Signal(&'static str),
}

/// What the threads of a blocking server share.
pub struct Shared {
    pub(crate) config: Config,
    pub(crate) local_addr: SocketAddr,
    /// Unsent replies of every connection thread, against `--max-unsent`.
    account: Arc<Account>,
    /// The listener, until the supervisor takes it to stop accepting. The accepting thread takes a handle
    /// for each `accept` only (see `mod.rs`, "How blocking threads are stopped"); the trace, to say how many
    /// wait in the backlog.
    listener: Mutex<Option<Arc<TcpListener>>>,
    /// Shutdown has begun: accept nothing more, read nothing more.
    stopping: AtomicBool,
    /// When the shutdown gives up: no connection lingers past it.
    deadline: OnceLock<Instant>,
    state: Mutex<State>,
    /// Notified when a request arrives or a worker thread ends.
    changed: Condvar,
}

pub(crate) struct State {
    pub(crate) stats: Stats,
    /// A second handle on every open connection, so the supervisor can cut it at the deadline.
    open: Slab<TcpStream>,
    requests: VecDeque<Request>,
    /// Worker threads still running (acceptor, UDP, connections).
    workers: usize,
}

impl Shared {
    pub(crate) fn new(
        config: Config,
        local_addr: SocketAddr,
        listener: TcpListener,
    ) -> Arc<Shared> {
        Arc::new(Shared {
            account: Arc::new(Account::new(config.max_unsent)),
            config,
            local_addr,
            listener: Mutex::new(Some(Arc::new(listener))),
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
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// A context for one thread's connection (or the UDP thread): its own reply buffer and counters, the
    /// server's account.
    pub(crate) fn context(&self, scratch: usize) -> Context {
        Context::new(&self.config, Arc::clone(&self.account), scratch)
    }

    /// What a client over the connection cap is told, in the service's own words.
    pub(crate) fn refusal(&self) -> &'static [u8] {
        self.context(0).refusal()
    }

    /// Once shutdown has begun, when it gives up.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline.get().copied()
    }

    pub(crate) fn request(&self, request: Request) {
        self.lock().requests.push_back(request);
        self.changed.notify_all();
    }

    /// How many connections wait in the listen backlog, for the trace.
    pub(crate) fn backlog_text(&self) -> String {
        self.listener()
            .and_then(|listener| backlog(&listener))
            .map_or_else(|| "an unknown number of".into(), |n| n.to_string())
    }

    /// The listener, for one `accept`; `None` once the supervisor has taken it.
    pub(crate) fn listener(&self) -> Option<Arc<TcpListener>> {
        self.listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The listener, taken for good: it closes when the last `accept` under way returns.
    pub(crate) fn take_listener(&self) -> Option<Arc<TcpListener>> {
        self.listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
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
    /// thread: signal-hook-mio turns signals into readiness on a pipe in the same `Poll` as the sockets. (On
    /// Windows the console starts a thread of its own for each stop, which makes the request directly.)
    pub(crate) fn supervise(
        self: &Arc<Self>,
        signals: Option<Signals>,
        stop_accepting: impl FnOnce(),
    ) -> Summary {
        #[cfg(unix)]
        let signal_handle = signals.map(|signals| self.forward_signals(signals));
        #[cfg(not(unix))]
        let _ = signals;
        let summary = self.supervise_until_done(stop_accepting);
        #[cfg(unix)]
        if let Some(handle) = signal_handle {
            handle.close();
        }
        summary
    }

    #[cfg(unix)]
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
        shutdown.announce(why, state.open.len());
        loop {
            while let Some(request) = state.requests.pop_front() {
                if let Request::Signal(name) = request {
                    if shutdown.signal(name, Instant::now()) == Verdict::Now {
                        return self.summary(state, true);
                    }
                }
            }
            if state.workers == 0 {
                return self.summary(state, false);
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
        self.summary(state, false)
    }

    fn summary(&self, mut state: MutexGuard<'_, State>, forced: bool) -> Summary {
        state.stats.peak_unsent = self.account.peak();
        info!("stopped: {}", state.stats);
        Summary {
            stats: state.stats.clone(),
            forced,
        }
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
