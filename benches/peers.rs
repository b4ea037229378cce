//! socklab's reactor against its peers, end to end on loopback: `cargo bench --bench peers`
//! (`cargo bench --bench peers -- --quick` for a shorter pass). Results and what they mean:
//! `docs/performance.md`.
//!
//! The peers, each a child process serving `upper` over TCP and UDP on one loopback port:
//! - `reactor`: `socklab-server --mode reactor`, the code under test;
//! - `tokio`: the same service on tokio's `current_thread` runtime, written as a tokio user would
//!   (`examples/tokio_peer.rs`, run here by re-executing this bench binary, so `cargo bench` builds it);
//! - `threads`: `socklab-server --mode threads`, a blocking thread per connection;
//! - `uring`: `socklab-server --mode uring`, completion instead of readiness (Linux; skipped, with a line,
//!   where io_uring cannot run; `SOCKLAB_PEERS_URING=0` leaves it out).
//!
//! For each load, the same load generator (`socklab-stress --json`) runs against the peers in rounds: each
//! round starts a fresh server of every peer, warms each up with a short run that is not counted, then runs
//! every peer once, in an order that changes every round (all six orders of three peers in six rounds; of
//! four, each peer in each place, forwards and backwards, in eight: `run_order`) so no peer always runs first or right after the same other one. The tables give medians over rounds, and for each peer its ratio to the reactor *within each
//! round* (the median, the range, and in how many rounds the reactor was ahead): on a shared machine two
//! runs a second apart share the machine's mood, runs a minute apart do not. Server CPU time per request is
//! the server's utime + stime (`/proc/PID/stat`, every thread) over the run, divided by the replies checked.
//! Any wrong, unanswered or lost reply, or failed connection, is counted and shown.
//!
//! The machine has two cores and the load generator costs about as much CPU per request as the server, so
//! both are pinned (`taskset`, when present): every server on CPU 0, the load generator on CPU 1. The
//! harness itself only sleeps.
//!
//! Memory: 10,000 idle connections (`socklab-stress --idle`), the server's resident memory at their peak
//! over its resident memory after a short warm-up, divided by 10,000.
//!
//! Writes `peers.md` (the tables) and `runs.jsonl` (every run) to `$SOCKLAB_PEERS_OUT` (default
//! `target/peers`). `SOCKLAB_PEERS_RUNS` and `SOCKLAB_PEERS_SECONDS` override the run count and length;
//! `SOCKLAB_PEERS_PIN=0` turns pinning off. Extra arguments select loads whose name contains them.
//!
//! A/B of a change to the server: `SOCKLAB_PEERS_B=/path/to/other/socklab-server` (a copy of another build)
//! replaces tokio and threads with that build, run in reactor mode with the same flags plus any in
//! `SOCKLAB_PEERS_B_ARGS`, so the table is the change against the code without it, by the same procedure.
//! Pointing it at `target/release/socklab-server` itself measures the noise: the reactor against itself.

mod common;

use common::{json_number, median, pinned, run_bounded, run_order, Process, Ratios};
use socklab::procfs::{cpu_seconds, resident_kib};
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

#[path = "../examples/tokio_peer.rs"]
#[allow(dead_code)]
mod tokio_peer;

/// The argument that makes this binary the tokio peer instead of the harness.
const SERVE_TOKIO: &str = "--serve-tokio-peer";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Peer {
    Reactor,
    Tokio,
    Threads,
    Uring,
    /// Another build of `socklab-server` (`SOCKLAB_PEERS_B`), in reactor mode.
    B,
}

impl Peer {
    fn name(self) -> &'static str {
        match self {
            Peer::Reactor => "reactor",
            Peer::Tokio => "tokio current_thread",
            Peer::Threads => "threads",
            Peer::Uring => "uring",
            Peer::B => "B: SOCKLAB_PEERS_B",
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Load {
    udp: bool,
    connections: usize,
    pipeline: usize,
    size: usize,
}

const fn tcp(connections: usize, pipeline: usize, size: usize) -> Load {
    Load {
        udp: false,
        connections,
        pipeline,
        size,
    }
}

const fn udp(connections: usize, pipeline: usize) -> Load {
    Load {
        udp: true,
        connections,
        pipeline,
        size: 64,
    }
}

const LOADS: [Load; 12] = [
    tcp(1, 1, 64),
    tcp(50, 1, 64),
    tcp(1000, 1, 64),
    tcp(1, 16, 64),
    tcp(50, 16, 64),
    tcp(1000, 16, 64),
    tcp(50, 1, 1024),
    tcp(50, 16, 1024),
    udp(1, 1),
    udp(1, 8),
    udp(50, 1),
    udp(50, 8),
];

impl Load {
    fn name(&self) -> String {
        if self.udp {
            format!(
                "UDP {} B, {} socket{}, {} in flight",
                self.size,
                self.connections,
                if self.connections == 1 { "" } else { "s" },
                self.pipeline
            )
        } else {
            format!(
                "TCP {} B lines, {} connection{}, pipeline {}",
                self.size,
                self.connections,
                if self.connections == 1 { "" } else { "s" },
                self.pipeline
            )
        }
    }
}

/// One run of the load generator against one server.
#[derive(Clone, Debug)]
struct Run {
    rps: f64,
    p50: f64,
    p99: f64,
    /// Server CPU microseconds per checked reply.
    cpu_us: f64,
    checked: u64,
    /// Wrong + unanswered + lost replies, and failed connections.
    bad: u64,
}

#[derive(Clone)]
struct Settings {
    runs: usize,
    seconds: f64,
    idle_runs: usize,
    out_dir: String,
    pin: bool,
    /// The peers measured, the reactor first: every ratio is to it.
    peers: Vec<Peer>,
    /// `SOCKLAB_PEERS_B` and `SOCKLAB_PEERS_B_ARGS`.
    b_program: String,
    b_args: Vec<String>,
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == SERVE_TOKIO) {
        return tokio_peer::run(0);
    }
    let quick = args.iter().any(|a| a == "--quick") || std::env::var_os("SOCKLAB_QUICK").is_some();
    let env_num = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<f64>().ok());
    let settings = Settings {
        runs: env_num("SOCKLAB_PEERS_RUNS").map_or(if quick { 3 } else { 7 }, |r| r as usize),
        seconds: env_num("SOCKLAB_PEERS_SECONDS").unwrap_or(if quick { 0.5 } else { 1.5 }),
        idle_runs: if quick { 1 } else { 3 },
        out_dir: std::env::var("SOCKLAB_PEERS_OUT").unwrap_or_else(|_| "target/peers".into()),
        pin: std::env::var("SOCKLAB_PEERS_PIN").map_or(true, |v| v != "0") && common::can_pin(),
        peers: if std::env::var_os("SOCKLAB_PEERS_B").is_some() {
            vec![Peer::Reactor, Peer::B]
        } else if std::env::var("SOCKLAB_PEERS_URING").map_or(true, |v| v != "0")
            && common::uring_runs()
        {
            vec![Peer::Reactor, Peer::Tokio, Peer::Threads, Peer::Uring]
        } else {
            vec![Peer::Reactor, Peer::Tokio, Peer::Threads]
        },
        b_program: std::env::var("SOCKLAB_PEERS_B").unwrap_or_default(),
        b_args: std::env::var("SOCKLAB_PEERS_B_ARGS")
            .unwrap_or_default()
            .split_whitespace()
            .map(String::from)
            .collect(),
    };
    // `cargo bench --bench peers SUBSTRING` runs only the loads whose name contains it.
    let filter: Vec<&String> = args[1..].iter().filter(|a| !a.starts_with("--")).collect();
    std::fs::create_dir_all(&settings.out_dir)?;
    let mut jsonl = String::new();
    let mut md = String::new();
    let started = Instant::now();
    let _ = writeln!(
        md,
        "{} rounds of {} s per peer and load, order changing each round; medians over rounds. Server pinned to CPU 0, load generator to CPU 1: {}.\n",
        settings.runs,
        settings.seconds,
        if settings.pin { "yes" } else { "no (taskset missing)" }
    );
    for load in LOADS {
        let name = load.name();
        // A filter ending in `$` matches the end of the name: `pipeline 1$` is not `pipeline 16`.
        let matches = |f: &&String| match f.strip_suffix('$') {
            Some(end) => name.ends_with(end),
            None => name.contains(f.as_str()),
        };
        if !filter.is_empty() && !filter.iter().any(matches) {
            continue;
        }
        // Warm-up, not counted: the first run against a fresh process pays for its page faults and the
        // kernel's first connections on that port.
        let warm_up = Settings {
            seconds: 0.2,
            ..settings.clone()
        };
        let peers = &settings.peers;
        let mut warm_up_bad = vec![0; peers.len()];
        let mut runs: Vec<Vec<Run>> = vec![Vec::new(); peers.len()];
        for round in 0..settings.runs {
            // Fresh processes every round: a process keeps for its whole life whatever luck it had in where
            // its memory and its sockets' kernel memory landed, and that once held one peer 15 % behind in
            // every round of a load. New processes make it one more thing that varies from round to round.
            let mut servers = peers
                .iter()
                .map(|&p| Server::start(p, &settings))
                .collect::<io::Result<Vec<_>>>()?;
            for (i, server) in servers.iter().enumerate() {
                warm_up_bad[i] += stress(server, load, &warm_up)?.bad;
            }
            for k in 0..peers.len() {
                let i = run_order(round, k, peers.len());
                let server = &servers[i];
                let run = stress(server, load, &settings)?;
                let _ = writeln!(
                    jsonl,
                    "{{\"load\":\"{name}\",\"peer\":\"{}\",\"round\":{round},\"position\":{k},\"rps\":{:.0},\"p50_us\":{:.1},\"p99_us\":{:.1},\"cpu_us_per_req\":{:.3},\"checked\":{},\"bad\":{}}}",
                    server.peer.name(), run.rps, run.p50, run.p99, run.cpu_us, run.checked, run.bad
                );
                runs[i].push(run);
            }
            Server::stop_all(&mut servers);
        }
        let table = table(&name, peers, &runs, &warm_up_bad);
        eprintln!("{table}");
        md.push_str(&table);
        common::save(&settings.out_dir, "peers", &md, &jsonl)?;
    }
    if filter.is_empty() || filter.iter().any(|f| "idle".contains(f.as_str())) {
        let table = idle_memory(&settings)?;
        eprintln!("{table}");
        md.push_str(&table);
    }
    common::finish(&settings.out_dir, "peers", &md, &jsonl, started)
}

/// `warm_up_bad`: bad replies in each peer's warm-up run, which count among its bad replies too.
fn table(name: &str, peers: &[Peer], runs: &[Vec<Run>], warm_up_bad: &[u64]) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "### {name}\n");
    let _ = writeln!(
        t,
        "| peer | req/s | ÷ reactor, per round | range | reactor ahead | p50 (µs) | p99 (µs) | p99 ÷ reactor's | server CPU (µs/req) | CPU ÷ reactor's | runs | bad replies |"
    );
    let _ = writeln!(
        t,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for (i, (peer, peer_runs)) in peers.iter().zip(runs).enumerate() {
        let rps = Ratios::of(runs, i, |r: &Run| r.rps);
        let (ahead, range) = if i == 0 {
            ("".to_string(), "".to_string())
        } else {
            (rps.first_ahead(true), rps.range())
        };
        let _ = writeln!(
            t,
            "| {} | {:.0} | {:.2}× | {} | {} | {:.0} | {:.0} | {:.2}× | {:.2} | {:.2}× | {} | {} |",
            peer.name(),
            median(peer_runs.iter().map(|r| r.rps).collect()),
            rps.median(),
            range,
            ahead,
            median(peer_runs.iter().map(|r| r.p50).collect()),
            median(peer_runs.iter().map(|r| r.p99).collect()),
            Ratios::of(runs, i, |r: &Run| r.p99).median(),
            median(peer_runs.iter().map(|r| r.cpu_us).collect()),
            Ratios::of(runs, i, |r: &Run| r.cpu_us).median(),
            peer_runs.len(),
            warm_up_bad[i] + peer_runs.iter().map(|r| r.bad).sum::<u64>(),
        );
    }
    t.push('\n');
    t
}

/// A running peer, on a free loopback port, pinned to CPU 0 when `taskset` exists.
struct Server {
    peer: Peer,
    child: Process,
    addr: SocketAddr,
}

impl Server {
    fn start(peer: Peer, settings: &Settings) -> io::Result<Server> {
        let server_args = |mode: &str| -> Vec<String> {
            [
                "--port",
                "0",
                "--mode",
                mode,
                "--shutdown-timeout",
                "1",
                "-q",
            ]
            .map(String::from)
            .to_vec()
        };
        let (program, args): (String, Vec<String>) = match peer {
            Peer::Tokio => (
                std::env::current_exe()?.to_string_lossy().into_owned(),
                vec![SERVE_TOKIO.into()],
            ),
            Peer::Reactor => (
                env!("CARGO_BIN_EXE_socklab-server").into(),
                server_args("reactor"),
            ),
            Peer::Threads => (
                env!("CARGO_BIN_EXE_socklab-server").into(),
                server_args("threads"),
            ),
            Peer::Uring => (
                env!("CARGO_BIN_EXE_socklab-server").into(),
                server_args("uring"),
            ),
            Peer::B => (settings.b_program.clone(), {
                let mut args = server_args("reactor");
                args.extend(settings.b_args.iter().cloned());
                args
            }),
        };
        let mut command = pinned(settings.pin, "0", &program);
        let child = command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()?;
        // Owned by a `Server` at once, so an early return below still kills it (on drop).
        let mut server = Server {
            peer,
            child: Process(child),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let mut line = String::new();
        BufReader::new(server.child.0.stdout.take().expect("piped")).read_line(&mut line)?;
        server.addr = socklab::net::parse_listening_line(&line).ok_or_else(|| {
            io::Error::other(format!("{}: not a listening line: {line:?}", peer.name()))
        })?;
        Ok(server)
    }

    fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Asks every server to stop (SIGTERM), then waits for each, killing any still up after 3 s.
    fn stop_all(servers: &mut [Server]) {
        Process::stop_all(servers.iter_mut().map(|s| &mut s.child));
    }
}

/// One closed-loop run of `socklab-stress` against `server`, bounded in time (and killed if it overruns).
fn stress(server: &Server, load: Load, settings: &Settings) -> io::Result<Run> {
    let mut command = pinned(settings.pin, "1", env!("CARGO_BIN_EXE_socklab-stress"));
    command.args([
        "--addr",
        &server.addr.to_string(),
        "-c",
        &load.connections.to_string(),
        "--pipeline",
        &load.pipeline.to_string(),
        "--size",
        &load.size.to_string(),
        "--duration",
        &settings.seconds.to_string(),
        "--json",
        "-q",
    ]);
    if load.udp {
        command.arg("--udp");
    }
    let cpu_before = cpu_seconds(server.pid());
    let json = run_bounded(command, Duration::from_secs_f64(settings.seconds + 20.0))?.stdout;
    let cpu = cpu_seconds(server.pid()) - cpu_before;
    let num = |key: &str| json_number(&json, key).unwrap_or(f64::NAN);
    let checked = num("checked") as u64;
    let errors: f64 = ["refused", "reset", "timed_out", "closed", "other"]
        .iter()
        .map(|k| num(k))
        .sum();
    let bad = (num("wrong") + num("unanswered") + num("udp_lost") + errors) as u64;
    Ok(Run {
        rps: num("requests_per_second"),
        p50: num("p50"),
        p99: num("p99"),
        cpu_us: cpu * 1e6 / checked.max(1) as f64,
        checked,
        bad,
    })
}

const IDLE: usize = 10_000;

/// Bytes of resident memory per idle connection, for each peer, alternating; medians.
fn idle_memory(settings: &Settings) -> io::Result<String> {
    let peers = &settings.peers;
    let mut per_conn: Vec<Vec<f64>> = vec![Vec::new(); peers.len()];
    let mut bad = vec![0u64; peers.len()];
    for _ in 0..settings.idle_runs {
        for (i, &peer) in peers.iter().enumerate() {
            let mut server = Server::start(peer, settings)?;
            // Warm up: the shared buffers and the first connection's costs are the baseline, not per connection.
            let warm = stress(
                &server,
                tcp(1, 1, 64),
                &Settings {
                    seconds: 0.2,
                    ..settings.clone()
                },
            )?;
            bad[i] += warm.bad;
            let base = resident_kib(server.pid());
            let mut command = pinned(settings.pin, "1", env!("CARGO_BIN_EXE_socklab-stress"));
            command.args([
                "--addr",
                &server.addr.to_string(),
                "-c",
                "1",
                "--idle",
                &IDLE.to_string(),
                "--duration",
                "3",
                "--timeout",
                "10",
                "--json",
                "-q",
            ]);
            let mut child = command
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .spawn()?;
            let deadline = Instant::now() + Duration::from_secs(40);
            let mut peak = base;
            while child.try_wait()?.is_none() && Instant::now() < deadline {
                peak = peak.max(resident_kib(server.pid()));
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let output = child.wait_with_output()?;
            let json = String::from_utf8_lossy(&output.stdout);
            let connected = json_number(&json, "connected").unwrap_or(0.0);
            if connected < (IDLE + 1) as f64 {
                eprintln!(
                    "{}: only {connected} of {} connections came up",
                    peer.name(),
                    IDLE + 1
                );
                bad[i] += 1;
            }
            per_conn[i].push((peak - base) as f64 * 1024.0 / IDLE as f64);
            Server::stop_all(std::slice::from_mut(&mut server));
        }
    }
    let mut t = String::new();
    let _ = writeln!(t, "### {IDLE} idle TCP connections: resident memory\n");
    let _ = writeln!(t, "| peer | bytes per idle connection | runs | failures |");
    let _ = writeln!(t, "| --- | ---: | ---: | ---: |");
    for (i, peer) in peers.iter().enumerate() {
        let _ = writeln!(
            t,
            "| {} | {:.0} | {} | {} |",
            peer.name(),
            median(per_conn[i].clone()),
            per_conn[i].len(),
            bad[i]
        );
    }
    t.push('\n');
    Ok(t)
}
