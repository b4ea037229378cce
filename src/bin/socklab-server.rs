//! `socklab-server`: parses flags, binds the chosen mode, prints where it listens, runs. Everything else is in
//! the library (`socklab::server`).
//!
//! Walk-through: `docs/09-running.md`.

use std::net::{IpAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};
use log::{error, info, warn};

use socklab::encoding::Encoding;
use socklab::flags::{self, off_if_zero};
use socklab::server::config::{Config, DEFAULT_PORT};
use socklab::server::{Mode, Server};
use socklab::service::Service;

/// The services of the socket tutorials (uppercase, echo, hello), over TCP and UDP on one port, from one mio
/// event loop (or, with --mode, from the blocking, threaded or busy-polling servers the event loop replaces).
///
/// Prints `listening on tcp://IP:PORT udp://IP:PORT` on stdout once the sockets are bound (only the TCP
/// address for a service that answers no datagrams); logs go to stderr. SIGINT or SIGTERM stops accepting
/// and reading, delivers the replies owed for what was read, closes each connection cleanly (FIN) and exits
/// 0, by --shutdown-timeout at the latest; a second signal exits at once. Every SECS is 0 where a flag
/// allows it, or 0.001 to 31536000 (a year).
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Args {
    /// How the server waits for clients: reactor (one mio event loop), blocking (one TCP client at a time),
    /// threads (a thread per TCP client), busy-poll (non-blocking sockets tried in a loop; burns a core).
    #[arg(long, value_enum, default_value_t = Mode::Reactor)]
    mode: Mode,

    /// Address to bind: 127.0.0.1, ::1, 0.0.0.0 / :: for every interface, or a name (localhost), resolved
    /// and bound to its first address.
    #[arg(long, default_value = "127.0.0.1")]
    bind: String,

    /// Port for both TCP and UDP; 0 picks a free one (printed in the `listening on` line).
    #[arg(long, default_value_t = DEFAULT_PORT)]
    port: u16,

    /// What a request becomes. `upper` and `echo` answer the byte stream as it comes, with no framing;
    /// `hello` frames by lines: it sends `Welcome!`, answers each line NAME with `Hello, NAME!`, and closes on
    /// the line `exit` (over UDP, each datagram is one NAME, with no welcome). A service with no meaning
    /// over UDP binds no UDP socket.
    #[arg(long, value_enum, default_value_t = Service::Upper)]
    service: Service,

    /// How `upper` reads text: `utf-8` uppercases the Unicode way; `gbk` (Chinese Windows) uppercases only
    /// ASCII letters and never the bytes inside a two-byte character. Invalid bytes pass through unchanged.
    #[arg(long, value_enum, default_value_t = Encoding::Utf8, value_name = "ENCODING")]
    encoding: Encoding,

    /// With a line service (`hello`): the longest line (without its ending) accepted. A longer one gets
    /// `ERR line too long` and the connection closes; no connection buffers more than this.
    #[arg(long, default_value_t = Config::default().max_line, value_name = "BYTES")]
    max_line: usize,

    /// With `http`: the longest header section (request line and header fields) accepted; a longer one gets
    /// `431`. A connection holds no more of an unfinished header section than this.
    #[arg(long, default_value_t = Config::default().max_header, value_name = "BYTES")]
    max_header: usize,

    /// With `http`: seconds a header section may take from its first byte to its end; then `408` and the
    /// close. 0 turns it off (a silent keep-alive connection is the idle timeout's business).
    #[arg(long, default_value = "60", value_parser = flags::seconds, value_name = "SECS")]
    header_timeout: Duration,

    /// Most TCP connections served at once (reactor, threads, busy-poll); the next client is told
    /// `ERR too many connections` and closed. Default, and the most allowed: what the open-file limit (raised
    /// to its hard maximum at start) allows less a small reserve, at one descriptor per connection, or two and
    /// a thread in threads mode. A larger value is lowered, with a warning.
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,

    /// Reactor mode: seconds of silence after which a connection is closed; with --min-rate, the window over
    /// which a connection must average that rate. 0 turns both off.
    #[arg(long, default_value = "300", value_parser = flags::seconds, value_name = "SECS")]
    idle_timeout: Duration,

    /// Reactor mode: bytes per second a connection must average over each idle window, so a client trickling
    /// a byte at a time cannot hold a connection forever. 0 asks only for one byte per window.
    #[arg(long, default_value_t = Config::default().min_rate, value_name = "BYTES")]
    min_rate: u64,

    /// Reactor mode: seconds a connection's replies may wait without its peer reading any of them before it
    /// is closed. 0 turns it off.
    #[arg(long, default_value = "30", value_parser = flags::seconds, value_name = "SECS")]
    write_timeout: Duration,

    /// Bytes of unsent replies one connection may hold before the server stops reading it until its peer reads.
    #[arg(long, default_value_t = Config::default().high_water, value_name = "BYTES")]
    high_water: usize,

    /// The kernel's send buffer of each connection (SO_SNDBUF), in bytes. Default: the kernel tunes it, up to
    /// net.ipv4.tcp_wmem's maximum. Smaller makes backpressure (and the trace of it) show sooner.
    #[arg(long, value_name = "BYTES")]
    send_buffer: Option<usize>,

    /// Bytes read from one connection per turn of the loop, so one busy client cannot starve the rest.
    #[arg(long, default_value_t = Config::default().read_budget, value_name = "BYTES")]
    read_budget: usize,

    /// Seconds a shutdown waits for connections to receive what they are owed before it cuts them (0: no wait).
    #[arg(long, default_value = "3", value_parser = flags::seconds, value_name = "SECS")]
    shutdown_timeout: Duration,

    /// Watch the loop: one line for each stage of each turn that did something, numbered as
    /// docs/04-reactor.md numbers them (the other modes in their own terms). The same as
    /// RUST_LOG=socklab::server=trace.
    #[arg(long)]
    trace: bool,

    /// More logging: -v debug (every connection), -vv trace.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,

    /// Less logging: -q warnings and errors only, -qq errors only.
    #[arg(short, long, action = clap::ArgAction::Count, conflicts_with = "verbose")]
    quiet: u8,
}

/// The address `--bind` names: an IP address as it is, a name resolved to its first address (said in a log
/// line when it has more than one).
fn bind_address(bind: &str) -> Result<IpAddr, String> {
    if let Ok(ip) = bind.parse::<IpAddr>() {
        return Ok(ip);
    }
    let addrs: Vec<IpAddr> = (bind, 0)
        .to_socket_addrs()
        .map_err(|e| format!("--bind {bind}: cannot resolve it: {e}"))?
        .map(|a| a.ip())
        .collect();
    let first = *addrs
        .first()
        .ok_or_else(|| format!("--bind {bind}: the name resolves to no address"))?;
    if addrs.len() > 1 {
        let all: Vec<String> = addrs.iter().map(IpAddr::to_string).collect();
        info!(
            "--bind {bind} resolves to {}: binding {first}",
            all.join(", ")
        );
    }
    Ok(first)
}

/// The flags only the reactor honours that this run set on the command line.
fn reactor_only_flags_given(matches: &ArgMatches) -> Vec<&'static str> {
    [
        ("idle_timeout", "--idle-timeout"),
        ("min_rate", "--min-rate"),
        ("write_timeout", "--write-timeout"),
    ]
    .into_iter()
    .filter(|(id, _)| matches.value_source(id) == Some(ValueSource::CommandLine))
    .map(|(_, flag)| flag)
    .collect()
}

fn main() -> ExitCode {
    let matches = Args::command().get_matches();
    let args = match Args::from_arg_matches(&matches) {
        Ok(args) => args,
        Err(e) => e.exit(),
    };
    socklab::logging::init_with_trace(args.verbose, args.quiet, args.trace);
    let bind = match bind_address(&args.bind) {
        Ok(ip) => ip,
        Err(e) => {
            error!("{e}");
            return ExitCode::from(2);
        }
    };
    // Each connection is a descriptor: take all the kernel allows before sizing the connection limit.
    if let Err(e) = socklab::net::raise_open_file_limit() {
        warn!("cannot raise the open-file limit: {e}");
    }
    let config = Config {
        bind,
        port: args.port,
        service: args.service,
        encoding: args.encoding,
        max_line: args.max_line,
        max_header: args.max_header,
        header_timeout: off_if_zero(args.header_timeout),
        high_water: args.high_water,
        read_budget: args.read_budget,
        send_buffer: args.send_buffer,
        shutdown_timeout: args.shutdown_timeout,
        idle_timeout: off_if_zero(args.idle_timeout),
        min_rate: args.min_rate,
        write_timeout: off_if_zero(args.write_timeout),
        max_connections: args.max_connections,
    };
    let ignored = reactor_only_flags_given(&matches);
    if args.mode != Mode::Reactor && !ignored.is_empty() {
        // The blocking designs are the tutorials' servers, kept simple to be compared: they have no timers.
        let (verb, pronoun) = if ignored.len() == 1 {
            ("applies", "is")
        } else {
            ("apply", "are")
        };
        warn!(
            "--mode {}: {} only {verb} to the reactor, and {pronoun} ignored here",
            args.mode,
            ignored.join(", ")
        );
    }
    let mut server = match Server::bind(args.mode, config) {
        Ok(server) => server,
        Err(e) => {
            error!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = server.catch_signals() {
        error!("cannot install signal handlers: {e}");
        return ExitCode::FAILURE;
    }
    let udp = args.service.datagrams().is_some();
    println!(
        "{} service={}",
        socklab::net::listening_line(server.local_addr(), udp),
        args.service
    );
    match server.run() {
        Ok(summary) if summary.forced => ExitCode::from(130),
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            error!("the {} server failed: {e}", args.mode);
            ExitCode::FAILURE
        }
    }
}
