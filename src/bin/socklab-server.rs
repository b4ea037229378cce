//! `socklab-server`: parses flags, binds the chosen mode, prints where it listens, runs. Everything else is in
//! the library (`socklab::mode`).

use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use log::{error, warn};

use socklab::config::{Config, DEFAULT_PORT};
use socklab::mode::{Mode, Server};
use socklab::service::Service;

/// The uppercase service of the socket tutorials, over TCP and UDP on one port, from one mio event loop (or,
/// with --mode, from the blocking, threaded or busy-polling servers the event loop replaces).
///
/// Prints `listening on tcp://IP:PORT udp://IP:PORT` on stdout once both sockets are bound; logs go to
/// stderr. SIGINT or SIGTERM stops accepting, flushes pending replies (up to --shutdown-timeout) and exits
/// 0; a second signal exits at once.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Args {
    /// How the server waits for clients: reactor (one mio event loop), blocking (one TCP client at a time),
    /// threads (a thread per TCP client), busy-poll (non-blocking sockets tried in a loop; burns a core).
    #[arg(long, value_enum, default_value_t = Mode::Reactor)]
    mode: Mode,

    /// Address to bind: 127.0.0.1, ::1, or 0.0.0.0 / :: for every interface.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,

    /// Port for both TCP and UDP; 0 picks a free one (printed in the `listening on` line).
    #[arg(long, default_value_t = DEFAULT_PORT)]
    port: u16,

    /// What a request becomes.
    #[arg(long, value_enum, default_value_t = Service::Upper)]
    service: Service,

    /// Bytes of unsent replies one connection may hold before the server stops reading it until its peer reads.
    #[arg(long, default_value_t = Config::default().high_water, value_name = "BYTES")]
    high_water: usize,

    /// Bytes read from one connection per turn of the loop, so one busy client cannot starve the rest.
    #[arg(long, default_value_t = Config::default().read_budget, value_name = "BYTES")]
    read_budget: usize,

    /// Seconds a shutdown waits for pending replies to flush before it drops them.
    #[arg(long, default_value_t = Config::default().shutdown_timeout.as_secs_f64(), value_name = "SECS")]
    shutdown_timeout: f64,

    /// Threads mode: the most TCP clients served at once (one thread each); a client over it is told
    /// `ERR too many connections` and closed. Default: no cap. Other modes do not use it.
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,

    /// More logging: -v debug (every connection), -vv trace.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,

    /// Less logging: -q warnings and errors only, -qq errors only.
    #[arg(short, long, action = clap::ArgAction::Count, conflicts_with = "verbose")]
    quiet: u8,
}

fn main() -> ExitCode {
    let args = Args::parse();
    socklab::logging::init(args.verbose, args.quiet);
    if !(args.shutdown_timeout.is_finite() && args.shutdown_timeout >= 0.0) {
        error!("--shutdown-timeout must be a number of seconds, 0 or more");
        return ExitCode::from(2);
    }
    let config = Config {
        bind: args.bind,
        port: args.port,
        service: args.service,
        high_water: args.high_water,
        read_budget: args.read_budget,
        shutdown_timeout: Duration::from_secs_f64(args.shutdown_timeout),
        max_connections: args.max_connections,
    };
    if args.max_connections.is_some() && args.mode != Mode::Threads {
        warn!(
            "--max-connections only applies to --mode threads; {} ignores it",
            args.mode
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
    println!(
        "{} service={}",
        socklab::net::listening_line(server.local_addr()),
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
