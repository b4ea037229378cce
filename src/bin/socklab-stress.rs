//! `socklab-stress`: parses flags, runs [`socklab::stress::run`], prints the report. The load generator
//! itself, and why it works the way it does, is in the library.
//!
//! Walk-through: `docs/client-and-stress.md`.

use std::fs::File;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use log::error;

use socklab::flags;
use socklab::logging::Verbosity;
use socklab::net::DEFAULT_PORT;
use socklab::service::Service;
use socklab::stress::http::HttpTarget;
use socklab::stress::progress::Progress;
use socklab::stress::target::resolve_addr;
use socklab::stress::{self, latency, LoadOptions, Report, Stop};

/// Drives many connections at a socklab server (or any server of the same protocol) from one event loop,
/// checks every reply byte for byte, and reports throughput and latency percentiles.
///
/// Closed loop by default (--pipeline requests in flight per connection); --rate makes it open loop, with
/// latency measured from each request's intended send time. Given an http:// URL instead of --addr, it loads
/// any HTTP/1.1 server, checking every response's framing and its status against the server's first answer.
/// Exits 1 if any reply was wrong or any connection failed, 2 if the run could not start.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// An http:// URL to load instead of a socklab service (http://HOST:PORT/PATH, port 80 if none; with -X,
    /// -H, --body, --close-each): every response is checked by HTTP's framing and for the status of the server's first
    /// answer (byte for byte but the Date if the server is socklab's http service).
    #[arg(value_name = "URL", conflicts_with_all = ["addr", "udp", "expect", "size", "learn_reply"])]
    url: Option<String>,

    /// With a URL: the request method (default GET).
    #[arg(short = 'X', long, value_name = "METHOD", requires = "url")]
    method: Option<String>,

    /// With a URL: a header field to send, 'Name: value' (again for more).
    #[arg(
        short = 'H',
        long = "header",
        value_name = "NAME: VALUE",
        requires = "url"
    )]
    headers: Vec<String>,

    /// With a URL: the request body, sent with its Content-Length.
    #[arg(long, value_name = "TEXT", requires = "url")]
    body: Option<String>,

    /// With a URL: a new connection for every request (Connection: close), like ab without -k.
    #[arg(long, requires = "url")]
    close_each: bool,

    /// The server, HOST:PORT (HOST alone: port 12000).
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

    #[command(flatten)]
    verbosity: Verbosity,
}

fn options(args: &Args) -> Result<LoadOptions, String> {
    let http = match &args.url {
        Some(url) => {
            let mut target = HttpTarget::parse(url)?;
            if let Some(method) = &args.method {
                target.method = method.clone();
            }
            for field in &args.headers {
                target.add_header(field)?;
            }
            target.body = args.body.clone().unwrap_or_default().into_bytes();
            target.close_each = args.close_each;
            Some(target)
        }
        None => None,
    };
    let addr = match &http {
        Some(target) => target.resolve()?,
        None => resolve_addr(&args.addr, DEFAULT_PORT).map_err(|e| format!("--addr: {e}"))?,
    };
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
        expect: match http {
            Some(_) => socklab::stress::http::socklab_service().unwrap_or(args.expect),
            None => args.expect,
        },
        timeout: args.timeout,
        sources: args.sources,
        learn_reply: args.learn_reply,
        http,
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    socklab::logging::init_tool("socklab-stress", args.verbosity);
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
