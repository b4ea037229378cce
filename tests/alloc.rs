//! No heap allocation per request in steady state, proven by counting rather than by reading the code: a
//! global allocator that counts the allocations made on the server's thread, while a client drives
//! thousands of requests through a real socket. After a warm-up (the first requests size the buffers, which
//! are then kept), the count must not move. For every service, over TCP, pipelined and not, in each
//! single-threaded mode (the reactor, busy-poll and uring: the blocking modes allocate a buffer per
//! connection, not per request, on threads this counter does not see).

mod common;

use common::*;
use socklab::server::config::Config;
use socklab::server::{Mode, Server};
use socklab::service::{Service, ServiceOptions};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};

/// Counts allocations (and reallocations) made on threads that asked to be counted.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

fn counted() -> bool {
    COUNTED.try_with(Cell::get).unwrap_or(false)
}

// SAFETY: every call is passed to the system allocator unchanged; the counting touches only an atomic and a
// thread-local flag, neither of which allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counted() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: our caller upholds `alloc`'s contract (a non-zero-sized layout), which is System's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, that is from System, with this layout (our caller's contract).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counted() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: `ptr` came from System with `layout`, and `new_size` is valid for it (our caller's contract).
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs a `mode` server for `service` on a thread whose allocations are counted; drives `rounds` rounds of
/// `batch` requests each through one connection, and returns the allocations counted during the second half
/// of the rounds (the first half is the warm-up).
fn allocations_in_steady_state(mode: Mode, service: Service, batch: usize, rounds: usize) -> u64 {
    let config = Config {
        service,
        ..config()
    };
    let server = Server::bind(mode, config).unwrap();
    let addr = server.local_addr();
    let handle = server.shutdown_handle();
    let thread = std::thread::spawn(move || {
        COUNTED.with(|c| c.set(true));
        server.run()
    });
    let mut client = connect(addr);
    let options = ServiceOptions::default();
    let mut greeting = Vec::new();
    service.session().greeting(&mut greeting);
    client.read_exact(&mut vec![0; greeting.len()]).unwrap();
    let mut requests = Vec::new();
    let mut reply_len = 0;
    for variant in 0..batch {
        let request = service.load_request(variant, 64);
        reply_len += service.reply_to_stream_with(&options, &request).len() - greeting.len();
        requests.extend_from_slice(&request);
    }
    let mut reply = vec![0; reply_len];
    let mut before = 0;
    for round in 0..rounds {
        if round == rounds / 2 {
            before = ALLOCATIONS.load(Ordering::Relaxed);
        }
        client.write_all(&requests).unwrap();
        client.read_exact(&mut reply).unwrap();
    }
    let during = ALLOCATIONS.load(Ordering::Relaxed) - before;
    drop(client);
    handle.shutdown();
    thread.join().unwrap().unwrap();
    during
}

#[test]
fn no_service_allocates_per_request_in_steady_state() {
    no_allocations_per_request(&[Mode::Reactor, Mode::BusyPoll]);
}

#[cfg(target_os = "linux")]
#[cfg_attr(
    not(has_io_uring),
    ignore = "needs io_uring (Linux 6.1 or later, not disabled, not filtered by a sandbox), which build.rs did not find usable here"
)]
#[test]
fn no_service_allocates_per_request_in_steady_state_in_uring() {
    no_allocations_per_request(&[Mode::Uring]);
}

/// The count is one global: two tests measuring at once would count each other's servers. One at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn no_allocations_per_request(modes: &[Mode]) {
    let _one_at_a_time = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    for &mode in modes {
        for &service in Service::ALL {
            for batch in [1, 16] {
                let allocations = allocations_in_steady_state(mode, service, batch, 4000);
                assert_eq!(
                    allocations, 0,
                    "{mode}, {service}: {allocations} allocations for 2,000 rounds of {batch} requests after \
                     the warm-up"
                );
            }
        }
    }
}
