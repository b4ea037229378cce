//! The blocking modes' UDP thread: one datagram in, one reply out, until shutdown. Its own thread because
//! `recv_from` on a blocking socket waits for a datagram and nothing else, TCP clients included.
//! Walk-through: `docs/02-blocking.md`.

use std::net::UdpSocket;

use log::{debug, warn};

use super::supervisor::Shared;
use crate::net::{interrupted, timed_out};
use crate::server::limits::{DATAGRAM_BUFFER, TICK};

/// Answers datagrams until the server shuts down (it looks at the stop flag every [`TICK`]).
pub fn serve_udp(shared: &Shared, udp: &UdpSocket) {
    let mut cx = shared.context(DATAGRAM_BUFFER);
    if let Err(e) = udp.set_read_timeout(Some(TICK)) {
        warn!("udp: cannot set the read timeout, so shutdown waits for a datagram: {e}");
    }
    let mut input = vec![0; DATAGRAM_BUFFER];
    let mut output = Vec::with_capacity(DATAGRAM_BUFFER);
    while !shared.stopping() {
        let (len, peer) = match udp.recv_from(&mut input) {
            Ok(received) => received,
            Err(ref e) if timed_out(e) || interrupted(e) => continue,
            Err(e) => {
                // An ICMP error for an earlier reply: it concerns that one peer; the socket is fine.
                cx.stats.udp_errors += 1;
                debug!("udp: receive error: {e}");
                continue;
            }
        };
        cx.stats.datagrams_in += 1;
        output.clear();
        cx.answer_datagram(&input[..len], &mut output);
        match udp.send_to(&output, peer) {
            Ok(_) => cx.stats.datagrams_out += 1,
            Err(e) => {
                cx.stats.datagrams_dropped += 1;
                debug!("udp: reply to {peer} failed: {e}");
            }
        }
    }
    shared.lock().stats.add(&cx.stats);
}
