//! One TCP connection, start to end, in blocking calls, on the connection core every mode uses
//! (`../connection/`): read what the client sent, hand it to the core, write what the core has pending,
//! until the core says the connection is done. Compare its length with the reactor's `registered.rs`: the
//! blocking calls keep the state for us. Shared by `--mode blocking` and `--mode threads`.
//!
//! A blocking call waits on one socket and nothing else, so every read and every write waits at most a
//! tick ([`TICK`]): then the thread looks at the stop flag and asks the core whether a deadline is due.
//! That is how `--idle-timeout`, `--min-rate`, `--write-timeout`, the linger and the service's own
//! deadlines hold here as in every mode, at most a tick late. Walk-through: `docs/02-blocking.md`.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::Instant;

use log::debug;

use super::supervisor::Shared;
#[cfg(unix)]
use crate::net::would_block;
use crate::net::{interrupted, timed_out};
use crate::server::connection::{Connection, Context, End, Phase, Room};
use crate::server::limits::{THREAD_READ_SIZE, TICK};
use crate::server::sockets::prepare_accepted;
use crate::server::trace::{self, BLOCKING};
use crate::server::transfer::{fin_if_due, flush, held_before, note_held};

/// Serves one accepted connection on the calling thread, then counts it closed.
pub(crate) fn serve_and_count(shared: &Shared, stream: TcpStream, peer: SocketAddr, key: usize) {
    debug!("{peer}: connected as conn {key}");
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
    let mut cx = shared.context(THREAD_READ_SIZE);
    let why = match serve_connection(stream, peer, shared, &mut cx) {
        Ok(end) => end.describe().to_string(),
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
    shared.close(key, &cx.stats);
}

/// Whether the blocking modes' trace is on: one atomic load when the log level is lower.
pub(crate) fn tracing() -> bool {
    log::log_enabled!(target: BLOCKING, log::Level::Trace)
}

/// One TCP connection, start to end, in blocking calls. A write waits while the client is not reading,
/// a tick at a time, and the thread reads nothing meanwhile: that is the backpressure, and the memory held
/// is one read, its reply and what the kernel refused of it.
///
/// Returns why the connection ended; an error if a read or write failed.
pub fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    cx: &mut Context,
) -> io::Result<End> {
    // Not timeouts on the client: ticks, so this thread can notice a shutdown and the core's deadlines.
    stream.set_read_timeout(Some(TICK))?;
    stream.set_write_timeout(Some(TICK))?;
    let mut conn = Connection::new(cx);
    let served = serve(&mut stream, peer, shared, cx, &mut conn);
    conn.release(cx);
    served
}

fn serve(
    stream: &mut TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    cx: &mut Context,
    conn: &mut Connection,
) -> io::Result<End> {
    let mut input = vec![0; THREAD_READ_SIZE];
    // Bytes read but not handed to the core yet, `input[unfed]`. The room was asked before the read, which
    // may block for a tick; meanwhile other threads' replies can fill the server's budget. So what is read is
    // handed over only as far as the room asked again after the read allows, and the rest waits here, in
    // the thread's own buffer, until replies drain. (Handed over whole, 200 threads waiting in `read` on an
    // empty account each took 16 KiB at once: seven times a 1 MiB `--max-unsent`.)
    let mut unfed = 0..0;
    // While traced: when the current wait in `recv` began (one line per wait, not one per tick).
    let mut waiting_since: Option<Instant> = None;
    loop {
        let now = cx.clock.tick();
        // The server is shutting down: read nothing more, deliver what is owed, by the deadline. What was
        // read is owed its replies, whatever the budget (it is one read at most).
        if shared.stopping() && cx.deadline.is_none() {
            cx.deadline = shared.deadline();
            if !unfed.is_empty() {
                conn.received(cx, &input[unfed.clone()]);
                unfed = 0..0;
                write_pending(stream, conn, cx)?;
            }
            conn.stop_reading(cx);
        }
        if conn.poll_at().is_some_and(|at| now >= at) {
            conn.on_timeout(cx);
        }
        let flushed = write_pending(stream, conn, cx)?;
        fin_if_due(stream, conn, cx);
        if let Phase::Done(end) = conn.phase() {
            if end.is_timeout() {
                cx.stats.timed_out += 1;
            }
            return Ok(end);
        }
        if flushed.blocked {
            // A tick passed and the client took nothing: look at the flag and the deadlines, then again.
            continue;
        }
        let limit = match conn.room(cx) {
            Room::Read(n) => n.min(input.len()),
            // Replies of other threads fill the server's budget: wait a tick for them to drain.
            Room::Starved | Room::Full | Room::Closed => {
                thread::sleep(TICK);
                continue;
            }
        };
        if !unfed.is_empty() {
            let take = unfed.start..unfed.start + limit.min(unfed.len());
            unfed.start = take.end;
            let n = take.len();
            let written_before = cx.stats.bytes_out;
            let sending = tracing().then(|| cx.clock.tick());
            let held = held_before(conn);
            // Claimed between the room just asked and the reply counted where it waits, so that a thread
            // asking for room meanwhile sees it (`Account::claim`).
            let claim = conn.reply_bound(n);
            cx.account.claim(claim);
            conn.received(cx, &input[take]);
            let handed = hand_over(stream, conn, cx);
            cx.account.unclaim(claim);
            handed?;
            note_held(peer, conn, cx, held);
            flush(stream, conn, cx, false)?;
            if let Some(since) = sending {
                log::trace!(
                    target: BLOCKING,
                    "{peer}: read {n} B → {} B written (blocked in send for {})",
                    cx.stats.bytes_out - written_before,
                    trace::duration(since.elapsed())
                );
            }
            continue;
        }
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
            Ok(0) => conn.peer_closed(cx),
            // Handed over on the next pass, once the room is asked again (above).
            Ok(n) => unfed = 0..n,
            // A tick: the loop looks at the stop flag and the deadlines again.
            Err(ref e) if timed_out(e) => {}
            Err(ref e) if interrupted(e) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Writes what `conn` has pending, a blocking write at a time (each waits at most a tick). A reply just built
/// in the shared buffer is first offered without waiting, and what the socket refuses of it moves to the
/// outbox, where the server's account (`--max-unsent`) counts it, before any write that may wait: a reply
/// that waited uncounted in a thread blocked in `send` would let every other thread read on an account that
/// does not know of it.
fn write_pending(
    stream: &mut TcpStream,
    conn: &mut Connection,
    cx: &mut Context,
) -> io::Result<crate::server::transfer::Flushed> {
    hand_over(stream, conn, cx)?;
    flush(stream, conn, cx, false)
}

/// The first half of [`write_pending`], which never waits: a reply just built in the shared buffer is
/// offered to the socket, and what it refuses moves to the outbox, where the account counts it.
fn hand_over(stream: &mut TcpStream, conn: &mut Connection, cx: &mut Context) -> io::Result<()> {
    let reply = conn.pending(cx);
    if conn.unsent() == 0 && !reply.is_empty() {
        conn.sent(cx, offer(stream, reply)?);
    }
    Ok(())
}

/// Sends what the socket takes of `reply` without waiting (`MSG_DONTWAIT`), and says how much that was.
#[cfg(unix)]
fn offer(stream: &TcpStream, reply: &[u8]) -> io::Result<usize> {
    match socket2::SockRef::from(stream).send_with_flags(reply, libc::MSG_DONTWAIT) {
        Ok(n) => Ok(n),
        Err(ref e) if would_block(e) || interrupted(e) => Ok(0),
        Err(e) => Err(e),
    }
}

/// Windows has no flag for a send that does not wait: nothing is offered, so the reply moves to the
/// outbox, where the account counts it, before the write that may wait a tick.
#[cfg(not(unix))]
fn offer(_stream: &TcpStream, _reply: &[u8]) -> io::Result<usize> {
    Ok(0)
}
