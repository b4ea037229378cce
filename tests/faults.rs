//! Faults an independent red team found, each made deterministic and run in every mode where its
//! mechanism exists (`docs/faults.md` lists them with what the server does now): urgent data, flag values
//! that used to panic, shutdown under load, connection caps, and timer memory under churn.

#[macro_use]
mod common;

use common::*;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Sends one byte as TCP urgent data (`MSG_OOB`).
fn send_urgent(stream: &std::net::TcpStream, byte: u8) {
    // SAFETY: send(2) reads one byte from a live stack variable; the descriptor is the stream's own.
    let sent = unsafe {
        libc::send(
            stream.as_raw_fd(),
            (&byte as *const u8).cast(),
            1,
            libc::MSG_OOB,
        )
    };
    assert_eq!(sent, 1, "send MSG_OOB: {}", std::io::Error::last_os_error());
}

each_mode! {
    /// Linux stops a read at the urgent mark, so a short read there does not mean the receive queue is
    /// empty. The server is stopped while the bytes arrive, so its first read always meets the mark.
    fn urgent_data_is_answered_like_any_byte_without_the_client_sending_more(mode) {
        let server = spawn_mode(mode, &[]);
        let mut client = connect(server.addr);
        // First a normal exchange, so the connection is accepted and idle in the server's loop.
        client.write_all(b"a").unwrap();
        assert_eq!(read_n(&mut client, 1), b"A");
        server.signal(libc::SIGSTOP);
        client.write_all(b"x1 ").unwrap();
        send_urgent(&client, b'u');
        client.write_all(&b"x2 ".repeat(1000)).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        server.signal(libc::SIGCONT);
        // The urgent byte is ordinary data (SO_OOBINLINE, as RFC 6093 advises): answered in its place.
        let mut expected = b"X1 U".to_vec();
        expected.extend_from_slice(&b"X2 ".repeat(1000));
        client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut reply = vec![0; expected.len()];
        let mut got = 0;
        while got < reply.len() {
            match client.read(&mut reply[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(_) => break,
            }
        }
        assert_eq!(got, expected.len(), "{mode}: answered {got} of {} bytes", expected.len());
        assert_eq!(reply, expected);
    }
}
