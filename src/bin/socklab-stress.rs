//! `socklab-stress`: parses flags, runs [`socklab::stress::run`], prints the report. The load generator
//! itself, and why it works the way it does, is in the library.
//!
//! Walk-through: `docs/client-and-stress.md`.

use std::fs::File;
use std::io::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use log::error;

use socklab::flags;
use socklab::service::Service;
use socklab::stress::progress::Progress;
use socklab::stress::{self, latency, LoadOptions, Report, Stop};

/// Drives many connections at a socklab server (or any server of the same protocol) from one event loop,
/// checks every reply byte for byte, and reports throughput and latency percentiles.
///
/// Closed loop by default (--pipeline requests in flight per connection); --rate makes it open loop, with
/// latency measured from each request's intended send time. Exits 1 if any reply was wrong or any
/// connection failed, 2 if the run could not start.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Args {
    /// The server, HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:12000")]
    addr: String,

    /// UDP: one socket per connection, one datagram per request; lost datagrams are counted apart.
    #[arg(long)]
    udp: bool,

    /// Connections (UDP: sockets) carrying requests.
    #[arg(short, long, default_value_t = 50)]
    connections: usize,

    /// Requests in flight per connection (open loop: the most one connection may hold).
    #[arg(long, default_value_t = 1, value_name = "D")]
    pipeline: usize,

    /// Bytes per request, newline included.
    #[arg(long, default_value_t = 64, value_name = "BYTES")]
    size: usize,

    /// Seconds of load (the default: 5).
    #[arg(long, value_name = "SECS", conflicts_with = "requests", value_parser = flags::positive_seconds)]
    duration: Option<Duration>,

    /// Requests in all, then stop.
    #[arg(long, value_name = "N")]
    requests: Option<u64>,

    /// Open loop: requests per second in all, each timed from when it was due.
    #[arg(long, value_name = "R")]
    rate: Option<f64>,

    /// Extra connections that connect and say nothing (half of them send half a line).
    #[arg(long, default_value_t = 0, value_name = "N")]
    idle: usize,

    /// The service the server runs: every reply is checked against it.
    #[arg(long, value_enum, default_value_t = Service::Upper)]
    expect: Service,

    /// Seconds to wait for a connect, for a UDP reply (then it is lost), and for the last replies.
    #[arg(long, default_value = "2", value_parser = flags::positive_seconds, value_name = "SECS")]
    timeout: Duration,

    /// Source addresses 127.0.0.1..=127.0.0.K to spread connections over (default: one per 10,000).
    #[arg(long, value_name = "K")]
    sources: Option<usize>,

    /// Check replies against the server's own answer to one request made first (all that arrives until
    /// 200 ms of quiet), not against socklab's service: for another server of a protocol that answers
    /// every request alike (`--expect http`; nginx, say). Every reply must then be the same, by the
    /// service's rule (for http, the same bytes but the Date).
    #[arg(long)]
    learn_reply: bool,

    /// Print one JSON object instead of the text report.
    #[arg(long)]
    json: bool,

    /// Also write the latency distribution as an SVG percentile plot (log scale of 1/(1-p), like
    /// HdrHistogram's plotter) to FILE.
    #[arg(long, value_name = "FILE")]
    latency_svg: Option<PathBuf>,

    /// Also write the latency distribution to FILE in HdrHistogram's percentile-distribution text
    /// (`.hgrm`, values in microseconds), which HdrHistogram's plotter reads.
    #[arg(long, value_name = "FILE")]
    latency_hgrm: Option<PathBuf>,

    /// More logging: -v debug, -vv trace.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,

    /// Less logging: -q warnings and errors only.
    #[arg(short, long, action = clap::ArgAction::Count, conflicts_with = "verbose")]
    quiet: u8,
}

fn options(args: &Args) -> Result<LoadOptions, String> {
    let addr: SocketAddr = args
        .addr
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve --addr {}: {e}", args.addr))?
        .next()
        .ok_or_else(|| format!("--addr {} resolves to no address", args.addr))?;
    let stop = match (args.requests, args.duration) {
        (Some(n), _) => Stop::Requests(n),
        (None, Some(duration)) => Stop::Duration(duration),
        (None, None) => Stop::Duration(Duration::from_secs(5)),
    };
    Ok(LoadOptions {
        addr,
        udp: args.udp,
        connections: args.connections,
        pipeline: args.pipeline,
        size: args.size,
        stop,
        rate: args.rate,
        idle: args.idle,
        expect: args.expect,
        timeout: args.timeout,
        sources: args.sources,
        learn_reply: args.learn_reply,
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    socklab::logging::init(args.verbose, args.quiet);
    let options = match options(&args).and_then(|o| o.validate().map(|()| o)) {
        Ok(options) => options,
        Err(e) => {
            error!("{e}");
            return ExitCode::from(2);
        }
    };
    // The files are made before the run, so a path that cannot be written fails now, not after the load.
    let mut outputs = Vec::new();
    for (path, kind) in [
        (&args.latency_svg, Output::Svg),
        (&args.latency_hgrm, Output::Hgrm),
    ] {
        let Some(path) = path else { continue };
        match File::create(path) {
            Ok(file) => outputs.push((path, kind, file)),
            Err(e) => {
                error!("cannot write {}: {e}", path.display());
                return ExitCode::from(2);
            }
        }
    }
    let progress = Progress::new();
    let result = stress::run(&options, &mut |live| progress.update(live));
    progress.finish();
    match result {
        Ok(report) => {
            if args.json {
                println!("{}", report.json());
            } else {
                print!("{}", report.text());
            }
            for hint in report.hints() {
                error!("{hint}");
            }
            for (path, kind, mut file) in outputs {
                if let Err(e) = write_latency(&report, kind, &mut file) {
                    error!("cannot write {}: {e}", path.display());
                    return ExitCode::from(2);
                }
            }
            if report.failed() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            error!("{e}");
            ExitCode::from(2)
        }
    }
}

/// The latency files a run can write.
#[derive(Clone, Copy)]
enum Output {
    Svg,
    Hgrm,
}

fn write_latency(report: &Report, kind: Output, file: &mut File) -> Result<(), String> {
    let text = match kind {
        Output::Hgrm => latency::hgrm(&report.tally.latency),
        Output::Svg => latency::svg(&report.tally.latency, &report.title())?,
    };
    file.write_all(text.as_bytes()).map_err(|e| e.to_string())
}
