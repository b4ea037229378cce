//! `socklab-server`: parses flags, binds the chosen mode, prints where it listens, runs. Everything else is in
//! the library (`socklab::server`).
//!
//! Walk-through: `docs/09-running.md`.

use std::net::{IpAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};
use log::{error, info, warn};

use socklab::encoding::Encoding;
use socklab::flags::{self, off_if_zero};
use socklab::server::config::{Config, DEFAULT_PORT};
use socklab::server::{Mode, Server};
use socklab::service::{Service, Setting};

#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// How the server waits for clients: reactor (one mio event loop), blocking (one TCP client at a time),
    /// threads (a thread per TCP client), busy-poll (non-blocking sockets tried in a loop; burns a core),
    /// uring (one io_uring: the kernel does each receive and send and says when it is done; Linux 6.1 or
    /// later, refused at start elsewhere with the reason, exit 2).
    #[arg(long, value_enum, default_value_t = Mode::Reactor)]
    mode: Mode,

    /// Address to bind: 127.0.0.1, ::1, 0.0.0.0 / :: for every interface, or a name (localhost), resolved
    /// and bound to its first address.
    #[arg(long, default_value = "127.0.0.1")]
    bind: String,

    /// Port for both TCP and UDP; 0 picks a free one (printed in the `listening on` line).
    #[arg(long, default_value_t = DEFAULT_PORT)]
    port: u16,

    /// What a request becomes: one of the services listed below, each with a line of its own. A service
    /// with no meaning over UDP binds no UDP socket.
    #[arg(long, value_enum, default_value_t = Service::Upper)]
    service: Service,

    /// How `upper` reads text: `utf-8` uppercases the Unicode way; `gbk` (Chinese Windows) uppercases only
    /// ASCII letters and never the bytes inside a two-byte character. Invalid bytes pass through unchanged.
    #[arg(long, value_enum, default_value_t = Encoding::Utf8, value_name = "ENCODING")]
    encoding: Encoding,

    /// With a line service (`hello`): the longest line (without its ending) accepted. A longer one gets
    /// `ERR line too long` and the connection closes; no connection buffers more than this.
    #[arg(long, default_value = "64K", value_parser = flags::bytes, value_name = "BYTES")]
    max_line: u64,

    /// With `http`: the longest header section (request line and header fields) accepted; a longer one gets
    /// `414` if its request line had not ended within it, else `431`. A connection holds no more of an
    /// unfinished header section than this.
    #[arg(long, default_value = "32K", value_parser = flags::bytes, value_name = "BYTES")]
    max_header: u64,

    /// With `http`: seconds a header section may take from its first byte to its end; then `408` and the
    /// close. 0 turns it off (a silent keep-alive connection is the idle timeout's business).
    #[arg(long, default_value = "60", value_parser = flags::seconds, value_name = "SECS")]
    header_timeout: Duration,

    /// With `http`: seconds a request's body may go without a byte arriving (counted afresh from each
    /// read, as nginx's client_body_timeout); then `408` and the close. 0 turns it off.
    #[arg(long, default_value = "60", value_parser = flags::seconds, value_name = "SECS")]
    body_timeout: Duration,

    /// With `http`: seconds a connection is kept with no request under way, from the end of the last
    /// response (or from its first read), as nginx's keepalive_timeout; then it is closed, with nothing said.
    /// Empty lines between requests do not count as a request. 0 turns it off (--idle-timeout still applies).
    #[arg(long, default_value = "75", value_parser = flags::seconds, value_name = "SECS")]
    keepalive_timeout: Duration,

    /// Most TCP connections served at once (reactor, threads, busy-poll); the next client is told
    /// `ERR too many connections` and closed. Default, and the most allowed: what the open-file limit (raised
    /// to its hard maximum at start) allows less a small reserve, at one descriptor per connection, or two and
    /// a thread in threads mode. A larger value is lowered, with a warning.
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,

    /// Seconds of silence after which a connection is closed (every mode; the blocking ones look every
    /// 0.1 s); with --min-rate, the window over which a connection must average that rate. 0 turns both off.
    #[arg(long, default_value = "300", value_parser = flags::seconds, value_name = "SECS")]
    idle_timeout: Duration,

    /// Bytes per second a connection must average over each idle window, so a client trickling a byte at a
    /// time cannot hold a connection forever. 0 asks only for one byte per window.
    #[arg(long, default_value = "1", value_parser = flags::bytes, value_name = "BYTES")]
    min_rate: u64,

    /// Seconds a connection's replies may wait without its peer reading any of them before it is closed.
    /// 0 turns it off.
    #[arg(long, default_value = "30", value_parser = flags::seconds, value_name = "SECS")]
    write_timeout: Duration,

    /// Bytes of unsent replies one connection may hold before the server stops reading it until its peer reads.
    #[arg(long, default_value = "256K", value_parser = flags::bytes, value_name = "BYTES")]
    high_water: u64,

    /// Bytes of unsent replies all connections together may hold. Past three quarters of it, connections
    /// holding unsent replies are not read until they drain; the last quarter is for clients whose replies
    /// go out at once, so they are still served while clients that never read hold the rest.
    #[arg(long, default_value = "64M", value_parser = flags::bytes, value_name = "BYTES")]
    max_unsent: u64,

    /// The kernel's send buffer of each connection (SO_SNDBUF), in bytes. Default: the kernel tunes it, up to
    /// net.ipv4.tcp_wmem's maximum. Smaller makes backpressure (and the trace of it) show sooner.
    #[arg(long, value_parser = flags::bytes, value_name = "BYTES")]
    send_buffer: Option<u64>,

    /// Bytes read from one connection per turn of the loop, so one busy client cannot starve the rest.
    #[arg(long, default_value = "256K", value_parser = flags::bytes, value_name = "BYTES")]
    read_budget: u64,

    /// Seconds a shutdown waits for connections to receive what they are owed before it cuts them (0: no wait).
    #[arg(long, default_value = "3", value_parser = flags::seconds, value_name = "SECS")]
    shutdown_timeout: Duration,

    /// Watch the loop: one line for each stage of each turn that did something, numbered as
    /// docs/04-reactor.md numbers them (the other modes in their own terms). The same as
    /// RUST_LOG=socklab::server=trace.
    #[arg(long)]
    trace: bool,

    #[command(flatten)]
    verbosity: socklab::logging::Verbosity,
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

/// A size flag's value as the config holds it: one too large for this machine stays too large, and the
/// config's range check refuses it by name.
fn size(bytes: u64) -> usize {
    usize::try_from(bytes).unwrap_or(usize::MAX)
}

/// The first line of `--help`, naming every service the registry lists, so it cannot fall behind it.
fn about() -> String {
    let names: Vec<&str> = Service::ALL.iter().map(|s| s.name()).collect();
    format!(
        "Serves {} over TCP and UDP on one port, from one mio event loop (or, with --mode, from the blocking, \
         threaded or busy-polling servers the event loop replaces, or from io_uring's completions).",
        names.join(", ")
    )
}

/// What `--help` says after its first line.
const MORE_ABOUT: &str = "Prints `listening on tcp://IP:PORT udp://IP:PORT` on stdout once the sockets are \
bound (only the TCP address for a service that answers no datagrams); logs go to stderr. SIGINT or SIGTERM \
stops accepting and reading, delivers the replies owed for what was read, closes each connection cleanly \
(FIN) and exits 0, by --shutdown-timeout at the latest; a second signal exits at once. Every SECS is 0 where \
a flag allows it, or 0.001 to 31536000 (a year); every BYTES is a whole number or one ending in K, M or G \
(64K = 65536), within a range each flag names if it is exceeded.";

/// One line for each flag given on the command line that the chosen service does not read (issue 26: they
/// used to be ignored in silence), naming the services that do read it.
fn warn_of_unread_flags(matches: &ArgMatches, service: Service) {
    for setting in Setting::ALL {
        let id = setting.flag().trim_start_matches('-').replace('-', "_");
        let given = matches.value_source(&id) == Some(clap::parser::ValueSource::CommandLine);
        if !given || service.settings().contains(&setting) {
            continue;
        }
        let readers: Vec<&str> = Service::ALL
            .iter()
            .filter(|s| s.settings().contains(&setting))
            .map(|s| s.name())
            .collect();
        let verb = if readers.len() == 1 { "reads" } else { "read" };
        warn!(
            "{} does nothing with --service {service}: only {} {verb} it",
            setting.flag(),
            readers.join(" and ")
        );
    }
}

/// A run that cannot start: said as a command-line tool says it (no timestamp, no module path), exit 2.
fn usage_error(message: &str) -> ExitCode {
    eprintln!("socklab-server: {message}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let matches: ArgMatches = Args::command()
        .about(about())
        .long_about(format!("{}\n\n{MORE_ABOUT}", about()))
        .get_matches();
    let args = match Args::from_arg_matches(&matches) {
        Ok(args) => args,
        Err(e) => e.exit(),
    };
    socklab::logging::init_with_trace(args.verbosity.verbose, args.verbosity.quiet, args.trace);
    let bind = match bind_address(&args.bind) {
        Ok(ip) => ip,
        Err(e) => return usage_error(&e),
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
        max_line: size(args.max_line),
        max_header: size(args.max_header),
        header_timeout: off_if_zero(args.header_timeout),
        body_timeout: off_if_zero(args.body_timeout),
        keepalive_timeout: off_if_zero(args.keepalive_timeout),
        started: std::time::SystemTime::now(),
        high_water: size(args.high_water),
        max_unsent: size(args.max_unsent),
        read_budget: size(args.read_budget),
        send_buffer: args.send_buffer.map(size),
        shutdown_timeout: args.shutdown_timeout,
        idle_timeout: off_if_zero(args.idle_timeout),
        min_rate: args.min_rate,
        write_timeout: off_if_zero(args.write_timeout),
        max_connections: args.max_connections,
    };
    warn_of_unread_flags(&matches, args.service);
    let mut server = match Server::bind(args.mode, config) {
        Ok(server) => server,
        Err(e) => return usage_error(&e.to_string()),
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
