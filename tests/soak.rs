//! A soak run: mixed clients for a few minutes, then the server's descriptors and memory must be back where
//! they were. Not in the default run; bounded and loopback only:
//!
//!     SOCKLAB_SOAK_SECS=180 cargo test --release --test soak -- --ignored --nocapture

mod common;

use common::*;
use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use socklab::service::Service;

#[test]
#[ignore = "minutes long: run by hand, see the module docs"]
fn mixed_clients_leave_descriptors_and_memory_flat() {
    let secs: u64 = std::env::var("SOCKLAB_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let server = spawn_binary(&["--write-timeout", "2"]);
    let (pid, addr) = (server.pid(), server.addr);
    // Warm up once so the baseline includes the allocator's steady state.
    let mut warm = connect(addr);
    assert_eq!(
        exchange(&mut warm, &lines(1000, 0)),
        Service::Upper.reply_to_stream(&lines(1000, 0))
    );
    drop(warm);
    thread::sleep(Duration::from_millis(200));
    let (fds0, rss0) = (fd_count(pid), resident_bytes(pid));
    let end = Instant::now() + Duration::from_secs(secs);
    let workers: Vec<_> = (0..6)
        .map(|kind| {
            thread::spawn(move || {
                let mut rounds = 0u64;
                while Instant::now() < end {
                    rounds += 1;
                    match kind {
                        // Pipeliner: many lines, every reply checked.
                        0 | 1 => {
                            let mut c = connect(addr);
                            let req = lines(5000, rounds as usize);
                            let mut w = c.try_clone().unwrap();
                            let r2 = req.clone();
                            let t = thread::spawn(move || w.write_all(&r2).unwrap());
                            let want = Service::Upper.reply_to_stream(&req);
                            assert_eq!(read_n(&mut c, want.len()), want);
                            t.join().unwrap();
                        }
                        // Resets mid-reply.
                        2 => {
                            let mut c = connect(addr);
                            let _ = c.write_all(&lines(3000, 1));
                            socket2::SockRef::from(&c)
                                .set_linger(Some(Duration::ZERO))
                                .unwrap();
                        }
                        // Writes and never reads: the write timeout must reclaim it.
                        3 => {
                            let mut c = connect(addr);
                            c.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
                            let chunk = [b'w'; 65536];
                            while c.write_all(&chunk).is_ok() && Instant::now() < end {}
                        }
                        // UDP.
                        4 => {
                            let u = udp_client(addr);
                            u.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                            for _ in 0..100 {
                                let _ = u.send_to(b"soak", addr);
                                let mut b = [0; 16];
                                let _ = u.recv_from(&mut b);
                            }
                        }
                        // Connect and vanish.
                        _ => {
                            for _ in 0..50 {
                                drop(connect(addr));
                            }
                            thread::sleep(Duration::from_millis(10));
                        }
                    }
                }
                rounds
            })
        })
        .collect();
    let rounds: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    eventually("descriptors back to the baseline", || fd_count(pid) == fds0);
    let rss1 = resident_bytes(pid);
    eprintln!(
        "soak: {secs} s, {rounds} client rounds; fds {fds0} -> {}; resident {rss0} -> {rss1} bytes",
        fd_count(pid)
    );
    // Freed buffers may stay in the allocator's caches; a leak grows with the rounds, far past this.
    assert!(
        rss1 < rss0 + 8 * 1024 * 1024,
        "resident memory grew from {rss0} to {rss1}"
    );
    server.signal(libc::SIGTERM);
    let (status, log) = server.wait();
    assert!(status.success(), "{log}");
}
