//! The core's whole life at byte level, with an injected clock and no socket: every timeout, backpressure
//! (one connection's `--high-water` and the server's `--max-unsent`), the linger and what a shutdown owes.
//! Walk-through: `docs/06-connection.md`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::server::config::Config;
use crate::service::{Clock, Service};

/// A driver with no socket: it "writes" by taking bytes off `pending` into `wire`, as many as it is told.
struct Bench {
    cx: Context,
    start: Instant,
    wire: Vec<u8>,
}

impl Bench {
    fn new(config: Config) -> Bench {
        let account = Arc::new(Account::new(config.max_unsent));
        let mut cx = Context::new(&config, account, 0);
        cx.clock = Clock::fixed(1_700_000_000);
        let start = cx.clock.now();
        Bench {
            cx,
            start,
            wire: Vec::new(),
        }
    }

    fn service(service: Service) -> Bench {
        Bench::new(Config {
            service,
            ..Config::default()
        })
    }

    /// Sets the time to `ms` milliseconds after the start.
    fn at(&mut self, ms: u64) {
        self.cx.clock.set(self.start + Duration::from_millis(ms));
    }

    fn now(&self) -> Instant {
        self.cx.clock.now()
    }

    /// The socket takes at most `room` bytes of what is pending.
    fn write(&mut self, conn: &mut Connection, room: usize) {
        let pending = conn.pending(&self.cx);
        let n = pending.len().min(room);
        self.wire.extend_from_slice(&pending[..n]);
        conn.sent(&mut self.cx, n);
    }

    fn wire(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.wire)
    }
}

#[test]
fn the_greeting_is_pending_at_once_and_only_what_the_kernel_refused_is_kept() {
    let mut b = Bench::service(Service::Hello);
    let mut conn = Connection::new(&mut b.cx);
    assert_eq!(conn.pending(&b.cx), b"Welcome!\n");
    b.write(&mut conn, 3);
    assert_eq!(b.wire(), b"Wel");
    assert_eq!((conn.unsent(), b.cx.account.held()), (6, 6));
    assert!(b.cx.scratch.is_empty(), "the shared buffer is free again");
    // A new reply waits behind the old one, even though the socket could take it.
    conn.received(&mut b.cx, b"Bob\n");
    assert_eq!(conn.pending(&b.cx), b"come!\nHello, Bob!\n");
    assert_eq!(b.cx.account.held(), 18, "counted the moment it is appended");
    b.write(&mut conn, usize::MAX);
    assert_eq!(b.wire(), b"come!\nHello, Bob!\n");
    assert_eq!((conn.unsent(), b.cx.account.held()), (0, 0));
    assert_eq!(
        (
            b.cx.stats.bytes_in,
            b.cx.stats.bytes_out,
            b.cx.stats.peak_pending
        ),
        (4, 21, 18)
    );
}

#[test]
fn reading_stops_at_the_high_water_mark_and_resumes_once_replies_are_written() {
    let mut b = Bench::new(Config {
        service: Service::Echo,
        high_water: 64 * 1024,
        ..Config::default()
    });
    let mut conn = Connection::new(&mut b.cx);
    let Room::Read(first) = conn.room(&b.cx) else {
        panic!("an empty connection may read")
    };
    assert_eq!(
        first,
        64 * 1024,
        "echo: a reply byte per byte, nothing held"
    );
    conn.received(&mut b.cx, &vec![b'a'; 62 * 1024]);
    b.write(&mut conn, 0);
    assert_eq!(conn.unsent(), 62 * 1024);
    assert_eq!(
        conn.room(&b.cx),
        Room::Full,
        "less than MIN_READ of room left"
    );
    b.write(&mut conn, 10 * 1024);
    assert_eq!(conn.room(&b.cx), Room::Read(12 * 1024));
}

#[test]
fn the_servers_budget_stops_holders_first_and_keeps_a_reserve_for_the_others() {
    let mut b = Bench::new(Config {
        service: Service::Echo,
        high_water: 256 * 1024,
        max_unsent: 400 * 1024,
        ..Config::default()
    });
    // A client that never reads: its replies pile up until the reserve (the last quarter) begins.
    let mut hog = Connection::new(&mut b.cx);
    while let Room::Read(n) = hog.room(&b.cx) {
        hog.received(&mut b.cx, &vec![b'x'; n.min(64 * 1024)]);
        b.write(&mut hog, 0);
    }
    assert_eq!(hog.room(&b.cx), Room::Full, "its own high-water mark first");
    let mut second = Connection::new(&mut b.cx);
    second.received(&mut b.cx, &vec![b'x'; 64 * 1024]);
    b.write(&mut second, 0);
    assert_eq!(b.cx.account.held(), 320 * 1024);
    assert_eq!(
        second.room(&b.cx),
        Room::Starved,
        "a holder stops at the reserve"
    );
    // A client that reads its replies is still served out of the reserve, a small read at a time.
    let mut polite = Connection::new(&mut b.cx);
    assert_eq!(polite.room(&b.cx), Room::Read(MIN_READ));
    polite.received(&mut b.cx, b"hi");
    b.write(&mut polite, usize::MAX);
    assert_eq!(b.wire().len(), 2);
    // Once the hog's replies drain, the other holder may read again.
    b.write(&mut hog, usize::MAX);
    assert!(matches!(second.room(&b.cx), Room::Read(_)));
    // A connection that is cut gives its share back.
    second.release(&mut b.cx);
    assert_eq!(b.cx.account.held(), 0);
}

#[test]
fn a_client_the_servers_budget_keeps_unread_is_not_idle() {
    let mut b = Bench::new(Config {
        service: Service::Echo,
        high_water: 256 * 1024,
        max_unsent: 64 * 1024,
        idle_timeout: Some(Duration::from_secs(1)),
        min_rate: 100,
        ..Config::default()
    });
    // Clients that never read hold the whole budget, reserve included.
    let mut hogs = Vec::new();
    while b.cx.account.held() + MIN_READ <= b.cx.account.limit() {
        let mut hog = Connection::new(&mut b.cx);
        while let Room::Read(n) = hog.room(&b.cx) {
            hog.received(&mut b.cx, &vec![b'x'; n.min(MIN_READ)]);
            b.write(&mut hog, 0);
        }
        hogs.push(hog);
    }
    let mut polite = Connection::new(&mut b.cx);
    assert_eq!(polite.room(&b.cx), Room::Starved);
    // Its window ends while the server is not reading it: what it sent waits in the kernel, unread. Not
    // its silence: the window starts again.
    b.at(1000);
    polite.on_timeout(&mut b.cx);
    assert_eq!(
        polite.phase(),
        Phase::Open,
        "the server, not the client, is the one not moving"
    );
    assert_eq!(polite.poll_at(), Some(b.start + Duration::from_secs(2)));
    // The budget frees just before the next window ends, and a driver that asks about timeouts before it
    // reads (a blocking thread) comes to the deadline first: kept unread in this window, it is not idle.
    b.at(1500);
    assert_eq!(polite.room(&b.cx), Room::Starved);
    for hog in &mut hogs {
        hog.release(&mut b.cx);
    }
    b.at(2000);
    polite.on_timeout(&mut b.cx);
    assert_eq!(
        polite.phase(),
        Phase::Open,
        "kept unread for part of its window"
    );
    // Once the budget is free, its windows count again.
    assert!(matches!(polite.room(&b.cx), Room::Read(_)));
    b.at(3000);
    polite.on_timeout(&mut b.cx);
    assert_eq!(polite.phase(), Phase::Done(End::Idle));
}

#[test]
fn the_minimum_rate_holds_over_windows_that_are_not_whole_seconds() {
    for (window_ms, min_rate, sent, closed) in [
        (500, 1000, 499, true),
        (500, 1000, 500, false),
        (1500, 10, 14, true),
        (1500, 10, 15, false),
    ] {
        let mut b = Bench::new(Config {
            idle_timeout: Some(Duration::from_millis(window_ms)),
            min_rate,
            ..Config::default()
        });
        let mut conn = Connection::new(&mut b.cx);
        conn.received(&mut b.cx, &vec![b'a'; sent]);
        b.write(&mut conn, usize::MAX);
        b.at(window_ms);
        conn.on_timeout(&mut b.cx);
        let expected = if closed {
            Phase::Done(End::TooSlow)
        } else {
            Phase::Open
        };
        assert_eq!(
            conn.phase(),
            expected,
            "{sent} B in {window_ms} ms against --min-rate {min_rate}"
        );
    }
}

#[test]
fn a_silent_client_is_closed_at_the_end_of_its_idle_window() {
    let mut b = Bench::new(Config {
        idle_timeout: Some(Duration::from_secs(1)),
        ..Config::default()
    });
    let mut conn = Connection::new(&mut b.cx);
    let due = b.start + Duration::from_secs(1);
    assert_eq!(conn.poll_at(), Some(due));
    b.at(999);
    conn.on_timeout(&mut b.cx);
    assert_eq!(conn.phase(), Phase::Open, "not due yet: nothing happens");
    b.at(1000);
    conn.on_timeout(&mut b.cx);
    assert_eq!(conn.phase(), Phase::Done(End::Idle));
    assert!(End::Idle.is_timeout());
}

#[test]
fn a_client_that_sends_in_each_window_stays_and_a_trickle_under_the_minimum_rate_does_not() {
    let mut b = Bench::new(Config {
        idle_timeout: Some(Duration::from_secs(2)),
        min_rate: 10,
        ..Config::default()
    });
    let mut conn = Connection::new(&mut b.cx);
    b.at(500);
    conn.received(&mut b.cx, &[b'a'; 20]);
    b.write(&mut conn, usize::MAX);
    b.at(2000);
    conn.on_timeout(&mut b.cx);
    assert_eq!(
        conn.phase(),
        Phase::Open,
        "20 bytes in 2 s is 10 B/s: enough"
    );
    assert_eq!(
        conn.poll_at(),
        Some(b.start + Duration::from_secs(4)),
        "a new window"
    );
    b.at(3000);
    conn.received(&mut b.cx, &[b'a'; 19]);
    b.write(&mut conn, usize::MAX);
    b.at(4000);
    conn.on_timeout(&mut b.cx);
    assert_eq!(conn.phase(), Phase::Done(End::TooSlow));
}

#[test]
fn replies_that_wait_are_the_write_timeouts_business_not_the_idle_windows() {
    let mut b = Bench::new(Config {
        idle_timeout: Some(Duration::from_secs(1)),
        write_timeout: Some(Duration::from_secs(3)),
        ..Config::default()
    });
    let mut conn = Connection::new(&mut b.cx);
    conn.received(&mut b.cx, b"hello");
    b.write(&mut conn, 2);
    b.at(1000);
    conn.on_timeout(&mut b.cx);
    assert_eq!(
        conn.phase(),
        Phase::Open,
        "the server waits on its own replies"
    );
    b.at(2000);
    b.write(&mut conn, 1);
    assert_eq!(
        conn.poll_at(),
        Some(b.start + Duration::from_secs(2)),
        "the idle window is due first"
    );
    conn.on_timeout(&mut b.cx);
    assert_eq!(
        conn.poll_at(),
        Some(b.start + Duration::from_secs(3)),
        "a new idle window; the write timeout counts from the last progress, at 5 s"
    );
    b.at(4999);
    conn.on_timeout(&mut b.cx);
    conn.on_timeout(&mut b.cx);
    assert_eq!(conn.phase(), Phase::Open);
    b.at(5000);
    conn.on_timeout(&mut b.cx);
    assert_eq!(conn.phase(), Phase::Done(End::WriteTimeout));
    assert_eq!(b.wire(), b"HEL");
    conn.release(&mut b.cx);
    assert_eq!(b.cx.account.held(), 0);
}

#[test]
fn the_service_closing_means_flush_then_fin_then_linger_until_the_peers_fin() {
    let mut b = Bench::service(Service::Hello);
    let mut conn = Connection::new(&mut b.cx);
    b.write(&mut conn, usize::MAX);
    conn.received(&mut b.cx, b"Bob\nexit\nmore");
    assert_eq!(conn.phase(), Phase::Flushing);
    assert_eq!(conn.room(&b.cx), Room::Closed);
    assert!(!conn.wants_fin(&b.cx), "not before the reply is written");
    b.write(&mut conn, 4);
    assert!(!conn.wants_fin(&b.cx));
    b.write(&mut conn, usize::MAX);
    assert_eq!(b.wire(), b"Welcome!\nHello, Bob!\n");
    assert!(conn.wants_fin(&b.cx));
    b.at(100);
    conn.fin_sent(&b.cx);
    assert_eq!(conn.phase(), Phase::Lingering);
    assert_eq!(conn.poll_at(), Some(b.now() + LINGER));
    assert_eq!(conn.room(&b.cx), Room::Read(usize::MAX), "read and dropped");
    conn.received(&mut b.cx, b"ignored");
    assert!(conn.pending(&b.cx).is_empty());
    conn.peer_closed(&mut b.cx);
    assert_eq!(conn.phase(), Phase::Done(End::Finished));
}

#[test]
fn a_peer_that_never_ends_its_side_is_let_go_after_the_linger() {
    let mut b = Bench::service(Service::Hello);
    let mut conn = Connection::new(&mut b.cx);
    conn.received(&mut b.cx, b"exit\n");
    b.write(&mut conn, usize::MAX);
    conn.fin_sent(&b.cx);
    // A byte every 50 ms does not extend it.
    for ms in (50..2000).step_by(50) {
        b.at(ms);
        conn.received(&mut b.cx, b"x");
        conn.on_timeout(&mut b.cx);
        assert_eq!(conn.phase(), Phase::Lingering, "at {ms} ms");
    }
    b.at(2000);
    conn.on_timeout(&mut b.cx);
    assert_eq!(conn.phase(), Phase::Done(End::Linger));
}

#[test]
fn a_peer_that_ended_its_stream_is_done_once_its_replies_are_out() {
    let mut b = Bench::service(Service::Upper);
    let mut conn = Connection::new(&mut b.cx);
    conn.received(&mut b.cx, b"caf\xc3");
    b.write(&mut conn, usize::MAX);
    assert_eq!(conn.held(), 1, "half a character waits for the rest");
    conn.peer_closed(&mut b.cx);
    assert!(!conn.is_done(), "the held byte is still owed");
    b.write(&mut conn, usize::MAX);
    assert_eq!(b.wire(), b"CAF\xc3");
    assert_eq!(conn.phase(), Phase::Done(End::Finished));
    assert!(
        !conn.wants_fin(&b.cx),
        "the peer is gone: no FIN, no linger"
    );
}

#[test]
fn a_shutdown_delivers_what_was_read_then_lingers_no_longer_than_its_deadline() {
    let mut b = Bench::service(Service::Upper);
    let mut conn = Connection::new(&mut b.cx);
    conn.received(&mut b.cx, b"ab\xe4\xb8");
    b.write(&mut conn, 1);
    b.cx.deadline = Some(b.now() + Duration::from_millis(300));
    conn.stop_reading(&mut b.cx);
    assert_eq!(conn.room(&b.cx), Room::Closed);
    b.write(&mut conn, usize::MAX);
    assert_eq!(b.wire(), b"AB\xe4\xb8", "the held bytes are owed too");
    conn.fin_sent(&b.cx);
    assert_eq!(conn.poll_at(), b.cx.deadline);
    b.at(300);
    conn.on_timeout(&mut b.cx);
    assert_eq!(conn.phase(), Phase::Done(End::Linger));
}

#[test]
fn a_shutdown_shortens_a_linger_already_under_way() {
    let mut b = Bench::service(Service::Hello);
    let mut conn = Connection::new(&mut b.cx);
    conn.received(&mut b.cx, b"exit\n");
    b.write(&mut conn, usize::MAX);
    conn.fin_sent(&b.cx);
    b.cx.deadline = Some(b.now() + Duration::from_millis(10));
    conn.stop_reading(&mut b.cx);
    assert_eq!(conn.poll_at(), b.cx.deadline);
}

#[test]
fn the_services_own_deadline_is_told_and_may_answer_and_close() {
    let mut b = Bench::new(Config {
        service: Service::Http,
        header_timeout: Some(Duration::from_secs(5)),
        idle_timeout: None,
        ..Config::default()
    });
    let mut conn = Connection::new(&mut b.cx);
    assert_eq!(conn.poll_at(), None, "no request begun, no deadline");
    conn.received(&mut b.cx, b"GET / HTTP/1.1\r\nHost: a\r\n");
    assert_eq!(conn.poll_at(), Some(b.start + Duration::from_secs(5)));
    b.at(5000);
    conn.on_timeout(&mut b.cx);
    let reply = String::from_utf8(conn.pending(&b.cx).to_vec()).unwrap();
    assert!(reply.starts_with("HTTP/1.1 408 "), "{reply}");
    assert_eq!(conn.phase(), Phase::Flushing);
    b.write(&mut conn, usize::MAX);
    assert!(conn.wants_fin(&b.cx));
}

#[test]
fn the_bytes_handed_out_stay_put_until_the_driver_says_how_many_went() {
    let mut b = Bench::service(Service::Echo);
    let mut conn = Connection::new(&mut b.cx);
    conn.received(&mut b.cx, b"0123456789");
    b.write(&mut conn, 4);
    let (ptr, len) = {
        let pending = conn.pending(&b.cx);
        (pending.as_ptr(), pending.len())
    };
    // Asking, and time passing, move nothing.
    let _ = conn.room(&b.cx);
    let _ = conn.poll_at();
    b.at(10);
    conn.on_timeout(&mut b.cx);
    let pending = conn.pending(&b.cx);
    assert_eq!((pending.as_ptr(), pending.len()), (ptr, len));
    assert_eq!(pending, b"456789");
}

/// What a completion driver does: move each reply into the outbox with `sent(cx, 0)`, hand the kernel the
/// outbox's bytes, report them when the send completes. The bytes stay put meanwhile, and with spares the
/// reply moves without a copy and two buffers take turns (the shared one and the one in flight): no
/// allocation per reply after the first two, and none held by the connection in between.
#[test]
fn a_completion_drivers_replies_wait_in_the_outbox_and_reuse_its_buffer() {
    let mut b = Bench::service(Service::Upper);
    b.cx.recycle_replies(4, 4096);
    let mut conn = Connection::new(&mut b.cx);
    let mut buffers = Vec::new();
    for request in [&b"one\n"[..], b"two\n", b"three\n", b"four\n"] {
        conn.received(&mut b.cx, request);
        let built = b.cx.scratch.as_ptr();
        conn.sent(&mut b.cx, 0);
        assert_eq!(conn.pending(&b.cx).as_ptr(), built, "moved, not copied");
        assert!(
            b.cx.scratch.is_empty(),
            "the shared buffer is free for the next connection"
        );
        assert_eq!(
            conn.unsent(),
            request.len(),
            "counted as waiting while the kernel has it"
        );
        let handed = conn.pending(&b.cx);
        let (ptr, len) = (handed.as_ptr(), handed.len());
        buffers.push(ptr);
        // Asking, and time passing, move nothing while the send is in flight.
        let _ = conn.room(&b.cx);
        let _ = conn.poll_at();
        let pending = conn.pending(&b.cx);
        assert_eq!((pending.as_ptr(), pending.len()), (ptr, len));
        b.write(&mut conn, usize::MAX);
        assert_eq!(b.wire(), request.to_ascii_uppercase());
        assert_eq!(
            (conn.unsent(), b.cx.spare_buffers()),
            (0, 1),
            "the emptied buffer is kept"
        );
    }
    assert_eq!(
        (buffers[0], buffers[1]),
        (buffers[2], buffers[3]),
        "two buffers take turns"
    );
    assert_ne!(buffers[0], buffers[1]);
    assert_eq!(b.cx.account.held(), 0);
}
