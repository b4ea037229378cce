//! `socklab-client`: the tutorials' client. Parses flags, picks the mode (arguments, a terminal, a pipe) and
//! calls [`socklab::client`], where the logic and its reasoning live.
//!
//! Walk-through: `docs/client-and-stress.md`.

use std::io::{self, IsTerminal};
use std::net::ToSocketAddrs;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use log::error;

use socklab::client::{self, Client, ClientOptions};
use socklab::encoding::Encoding;
use socklab::flags;
use socklab::logging::Verbosity;
use socklab::net::DEFAULT_PORT;
use socklab::service::Service;

/// Sends sentences to a socklab server (or any server of the same protocol) and prints the replies.
///
/// With MESSAGEs: sends each (over TCP as one line), prints each reply, exits. Otherwise reads stdin: on a
/// terminal, the tutorials' `Input lowercase sentence:` loop (`hello`: a name); from a pipe, one reply line
/// per input line and nothing else on stdout. With `--expect http` each message or line is a path: one GET
/// each, and the response's body is printed. Exits non-zero, with the reason on stderr, when a reply does not
/// come, when the replies are out of step with the requests (a greeting it did not expect), or when the
/// server closed the connection with input left to send.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Use UDP: each message is one datagram; the reply is shown with the address it came from.
    #[arg(long)]
    udp: bool,

    /// The server's host name or address.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,

    /// The server's port (TCP or UDP).
    #[arg(long, default_value_t = DEFAULT_PORT)]
    port: u16,

    /// Seconds to wait for a connection or a whole reply (TCP), or for each try (UDP).
    #[arg(long, default_value = "2", value_parser = flags::positive_seconds, value_name = "SECS")]
    timeout: Duration,

    /// UDP: sends a request again this many times when no reply came within the timeout.
    #[arg(long, default_value_t = 3)]
    retries: u32,

    /// The service the server runs; over TCP it tells the client how many bytes the reply must have
    /// (`hello`: the welcome is read and shown first; `http`: messages are paths to GET).
    #[arg(long, value_enum, default_value_t = Service::Upper)]
    expect: Service,

    /// The text encoding the server runs with (its --encoding): what you type is sent in it, and the
    /// replies are shown from it. Use `gbk` for a server started with --encoding gbk.
    #[arg(long, value_enum, default_value_t = Encoding::Utf8, value_name = "ENCODING")]
    encoding: Encoding,

    #[command(flatten)]
    verbosity: Verbosity,

    /// Sentences to send (`--expect http`: paths); without any, lines are read from stdin.
    message: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    socklab::logging::init_tool("socklab-client", args.verbosity);
    let addrs: Vec<_> = match (args.host.as_str(), args.port).to_socket_addrs() {
        Ok(addrs) => addrs.collect(),
        Err(e) => {
            error!("cannot resolve {}: {e}", args.host);
            return ExitCode::from(2);
        }
    };
    let options = ClientOptions {
        addrs,
        udp: args.udp,
        timeout: args.timeout,
        retries: args.retries,
        expect: args.expect,
        encoding: args.encoding,
    };
    // Flags that contradict each other are a usage error, exit status 2, as in socklab-stress: the same
    // mistake gets the same status from both tools, and 2 says "nothing was tried", 1 "it was, and failed".
    if let Err(e) = options.validate() {
        error!("{e}");
        return ExitCode::from(2);
    }
    let result = Client::open(&options).and_then(|mut c| {
        let mut out = io::stdout().lock();
        if !args.message.is_empty() {
            client::send_messages(&mut c, &args.message, &mut out)
        } else {
            let prompt = io::stdin().is_terminal();
            client::send_lines(&mut c, &mut io::stdin().lock(), &mut out, prompt)
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our stdout left (`| head -1`): nothing more to say to anyone.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe && e.get_ref().is_none() => {
            ExitCode::SUCCESS
        }
        Err(e) => {
            error!("{e}");
            ExitCode::FAILURE
        }
    }
}
