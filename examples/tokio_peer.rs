//! The peer socklab's reactor is measured against (`benches/peers.rs`, `docs/performance.md`): the same
//! `upper` service, written the way a tokio user would write it, on tokio's single-threaded
//! `current_thread` runtime. Not part of socklab: tokio is a dev-dependency only.
//!
//! TCP: an accept loop that `spawn`s a task per connection; each task reads into its own 8 KiB buffer (the
//! size of std's and tokio's `BufReader`), feeds what it read to a [`Session`] exactly as the reactor does,
//! and `write_all`s the reply. UDP: one task doing `recv_from`, then `send_to`. Both on one port, like
//! socklab-server, which prints the same `listening on` line so the bench harness starts either the same way.
//!
//! ```text
//! cargo run --release --example tokio_peer -- [PORT]     # 0 (the default) picks a free port
//! ```

use std::io;
use std::net::{Ipv4Addr, SocketAddr};

use socklab::service::{Clock, Service, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// Per-connection read buffer: `BufReader`'s default, what a tokio user reaches for.
const READ_BUFFER: usize = 8 * 1024;

fn main() -> io::Result<()> {
    let port: u16 = match std::env::args().nth(1) {
        Some(p) => p.parse().map_err(io::Error::other)?,
        None => 0,
    };
    run(port)
}

/// Serves until killed, on a `current_thread` runtime (what `#[tokio::main(flavor = "current_thread")]`
/// builds; spelled out so the bench harness can call it).
pub fn run(port: u16) -> io::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve_all(port))
}

async fn serve_all(port: u16) -> io::Result<()> {
    let (listener, udp) = bind(port).await?;
    let addr = listener.local_addr()?;
    println!("{}", socklab::net::listening_line(addr, true));
    tokio::spawn(serve_datagrams(udp));
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            // A connection's error ends that connection only.
            let _ = serve(stream).await;
        });
    }
}

/// TCP and UDP on one port. With port 0 the UDP port the kernel gave TCP may be taken: try a few times.
async fn bind(port: u16) -> io::Result<(TcpListener, UdpSocket)> {
    let mut last = None;
    for _ in 0..16 {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
        match UdpSocket::bind(listener.local_addr()?).await {
            Ok(udp) => return Ok((listener, udp)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("cannot bind")))
}

async fn serve(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut session: Session = Service::Upper.session();
    // `upper` never reads the time, so the clock is never ticked: no clock read per request, as in the reactor.
    let clock = Clock::new();
    let mut input = vec![0u8; READ_BUFFER];
    let mut output = Vec::with_capacity(READ_BUFFER);
    loop {
        let n = stream.read(&mut input).await?;
        output.clear();
        if n == 0 {
            session.finish(&clock, &mut output);
            stream.write_all(&output).await?;
            return Ok(());
        }
        session.feed(&clock, &input[..n], &mut output);
        stream.write_all(&output).await?;
    }
}

async fn serve_datagrams(udp: UdpSocket) -> io::Result<()> {
    let mut input = vec![0u8; 64 * 1024];
    let mut output = Vec::with_capacity(64 * 1024);
    loop {
        let (n, peer) = match udp.recv_from(&mut input).await {
            Ok(got) => got,
            // An ICMP error for an earlier reply: it concerns that peer only.
            Err(_) => continue,
        };
        output.clear();
        Service::Upper.datagram(&input[..n], &mut output);
        let _ = udp.send_to(&output, peer).await;
    }
}
