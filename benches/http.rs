//! `--service http` beside the fastest "Hello, World" servers and the floor under it, end to end on loopback:
//! `cargo bench --bench http` (`-- --quick` for a shorter pass; extra arguments select loads by name).
//! Results and what they mean: `docs/performance.md`.
//!
//! The peers, each serving `Hello, World` on one core:
//! - `socklab`: `socklab-server --service http`, the code under test;
//! - `socklab uring`: the same with `--mode uring`, completion instead of readiness (Linux; skipped, with a
//!   line, where io_uring cannot run; `SOCKLAB_HTTP_URING=0` leaves it out);
//! - `floor`: `socklab-server --service http-floor`, the same reactor answering every empty line with the
//!   same bytes and parsing nothing: the kernel's and the loop's share of a request;
//! - `nginx`: one worker, `return 200 "Hello, World"` (Debian's package; skipped, with a line, if missing);
//! - `hyper`: hyper 1 on tokio's `current_thread` runtime, pipelined responses flushed together;
//! - `may_minihttp`: one may worker, the TechEmpower plaintext class.
//!
//! hyper and may_minihttp live in a crate of their own, `peers/http/`, which this bench builds (so `cargo test`
//! and clippy never compile them); a peer that cannot be built or found is skipped with a line.
//!
//! The load is `wrk -t1`, pinned to CPU 1 (servers to CPU 0), with `benches/http-pipeline.lua`: depth 1 or 16
//! requests written at once, and every response checked (status 200 and body `Hello, World`) by wrk's
//! response hook. Each round starts fresh servers, warms each up, and runs the peers in an order that changes
//! every round; tables give each peer's ratio to socklab within each round (`benches/common/mod.rs`). Server
//! CPU per request is from `/proc`; wrk's own CPU from `wait4`: when wrk is saturated, throughput is a tie by
//! definition and CPU per request decides. Latency: `socklab-stress --expect http` in open loop at one rate
//! for every peer (wrk's latency under pipelining is per batch, not per request). The framing rules each peer
//! follows or skips are probed with raw requests.
//!
//! Writes `http.md` and `runs.jsonl` to `$SOCKLAB_HTTP_OUT` (default `target/http`). `SOCKLAB_HTTP_RUNS`,
//! `SOCKLAB_HTTP_SECONDS`, `SOCKLAB_HTTP_RATE` override rounds (7), seconds per run (2) and the open-loop
//! rate (50,000 requests/s over 100 connections). `SOCKLAB_HTTP_LIGHT=1` drops wrk's per-response hook,
//! which costs wrk more than the servers spend, and checks each response's status and length instead.
//! A/B of a change: `SOCKLAB_HTTP_B=/path/to/other/socklab-server` (a copy of another build) runs only this
//! build's `--service http` and that one, by the same procedure.

mod common;

use common::{json_number, median, pinned, run_bounded, run_order, Process, Ratios};
use socklab::procfs::cpu_seconds;
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Peer {
    Socklab,
    /// `--service http --mode uring`.
    Uring,
    Floor,
    Nginx,
    Hyper,
    May,
    /// Another build of `socklab-server` (`SOCKLAB_HTTP_B`), with `--service http`.
    B,
}

impl Peer {
    const ALL: [Peer; 6] = [
        Peer::Socklab,
        Peer::Uring,
        Peer::Floor,
        Peer::Nginx,
        Peer::Hyper,
        Peer::May,
    ];

    fn name(self) -> &'static str {
        match self {
            Peer::Socklab => "socklab --service http",
            Peer::Uring => "socklab --service http --mode uring",
            Peer::Floor => "floor (--service http-floor)",
            Peer::Nginx => "nginx, 1 worker",
            Peer::Hyper => "hyper, current_thread",
            Peer::May => "may_minihttp, 1 worker",
            Peer::B => "B: SOCKLAB_HTTP_B",
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Load {
    connections: usize,
    depth: usize,
}

const LOADS: [Load; 6] = [
    Load {
        connections: 1,
        depth: 1,
    },
    Load {
        connections: 100,
        depth: 1,
    },
    Load {
        connections: 1000,
        depth: 1,
    },
    Load {
        connections: 1,
        depth: 16,
    },
    Load {
        connections: 100,
        depth: 16,
    },
    Load {
        connections: 1000,
        depth: 16,
    },
];

impl Load {
    fn name(&self) -> String {
        format!(
            "wrk, {} connection{}, depth {}",
            self.connections,
            if self.connections == 1 { "" } else { "s" },
            self.depth
        )
    }
}

/// One wrk run against one server.
#[derive(Clone, Debug)]
struct Run {
    rps: f64,
    /// Server CPU microseconds per checked response.
    cpu_us: f64,
    /// wrk's CPU over the run's wall time: 1.0 is a whole core, the load generator's ceiling.
    wrk_core: f64,
    checked: u64,
    /// Responses wrk found wrong (status or body), plus socket errors.
    bad: u64,
}

#[derive(Clone)]
struct Settings {
    runs: usize,
    seconds: f64,
    rate: f64,
    out_dir: String,
    pin: bool,
    peers: Vec<Peer>,
    hyper: Option<PathBuf>,
    may: Option<PathBuf>,
    nginx: Option<String>,
    b_program: Option<String>,
    /// `SOCKLAB_HTTP_LIGHT=1`: wrk without its per-response hook (see `benches/http-pipeline.lua`).
    light: bool,
    script: PathBuf,
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let env_num = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<f64>().ok());
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("wrk is not installed (apt-get install wrk): the HTTP bench needs it");
        return Ok(());
    }
    let (hyper, may) = build_peers();
    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(|p| p.to_string());
    if nginx.is_none() {
        eprintln!("nginx is not installed (apt-get install nginx-light): skipped");
    }
    let uring =
        std::env::var("SOCKLAB_HTTP_URING").map_or(true, |v| v != "0") && common::uring_runs();
    let b_program = std::env::var("SOCKLAB_HTTP_B").ok();
    let peers: Vec<Peer> = if b_program.is_some() {
        // An A/B of a change: this build against another, nothing else, by the same procedure.
        vec![Peer::Socklab, Peer::B]
    } else {
        Peer::ALL
            .into_iter()
            .filter(|p| match p {
                Peer::Nginx => nginx.is_some(),
                Peer::Hyper => hyper.is_some(),
                Peer::May => may.is_some(),
                Peer::Uring => uring,
                _ => true,
            })
            .collect()
    };
    let settings = Settings {
        runs: env_num("SOCKLAB_HTTP_RUNS").map_or(if quick { 3 } else { 7 }, |r| r as usize),
        seconds: env_num("SOCKLAB_HTTP_SECONDS").unwrap_or(if quick { 1.0 } else { 2.0 }),
        rate: env_num("SOCKLAB_HTTP_RATE").unwrap_or(50_000.0),
        out_dir: std::env::var("SOCKLAB_HTTP_OUT").unwrap_or_else(|_| "target/http".into()),
        pin: common::can_pin(),
        peers,
        hyper,
        may,
        nginx,
        b_program,
        light: std::env::var("SOCKLAB_HTTP_LIGHT").is_ok_and(|v| v == "1"),
        script: PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/benches/http-pipeline.lua"
        )),
    };
    let filter: Vec<&String> = args[1..].iter().filter(|a| !a.starts_with("--")).collect();
    std::fs::create_dir_all(&settings.out_dir)?;
    let started = Instant::now();
    let mut md = String::new();
    let mut jsonl = String::new();
    let _ = writeln!(
        md,
        "{} rounds of {} s per peer and load, order changing each round; medians over rounds. Servers pinned to \
         CPU 0, wrk to CPU 1: {}. Responses checked: {}.\n",
        settings.runs,
        settings.seconds,
        if settings.pin { "yes" } else { "no (taskset missing)" },
        if settings.light {
            "status and length of every one (SOCKLAB_HTTP_LIGHT=1: wrk's parser and error count, bytes read \
             against responses times the probed length)"
        } else {
            "every one whole, status and body, by wrk's response hook"
        }
    );
    md.push_str(&framing_rules(&settings)?);
    for load in LOADS {
        let name = load.name();
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let runs = rounds(load, &settings, &mut jsonl)?;
        let table = table(&name, &settings.peers, &runs);
        eprintln!("{table}");
        md.push_str(&table);
        common::save(&settings.out_dir, "http", &md, &jsonl)?;
    }
    if filter.is_empty() || filter.iter().any(|f| "latency".contains(f.as_str())) {
        let table = latency(&settings)?;
        eprintln!("{table}");
        md.push_str(&table);
    }
    common::finish(&settings.out_dir, "http", &md, &jsonl, started)
}

/// Builds `peers/http` (hyper and may_minihttp) in release; a peer that does not build is skipped.
fn build_peers() -> (Option<PathBuf>, Option<PathBuf>) {
    let root = env!("CARGO_MANIFEST_DIR");
    let target = format!("{root}/target/peers-http");
    eprintln!("building peers/http (hyper, may_minihttp) …");
    let built = Command::new(env!("CARGO"))
        .args(["build", "--release", "--manifest-path"])
        .arg(format!("{root}/peers/http/Cargo.toml"))
        .args(["--target-dir", &target])
        .status()
        .is_ok_and(|s| s.success());
    if !built {
        eprintln!("peers/http did not build: hyper and may_minihttp are skipped");
        return (None, None);
    }
    let bin =
        |name: &str| Some(PathBuf::from(format!("{target}/release/{name}"))).filter(|p| p.exists());
    (bin("hyper-peer"), bin("may-peer"))
}

/// A free loopback port, for a server that cannot be asked to pick one and say it.
fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A running peer on a loopback port, pinned to CPU 0.
struct Server {
    process: Process,
    addr: SocketAddr,
    /// The length of this server's response to wrk's request, probed once it listens.
    response_len: usize,
    /// nginx's configuration and pid file live here while it runs.
    _dir: Option<tempdir::Dir>,
}

mod tempdir {
    /// A directory removed when dropped.
    pub struct Dir(pub std::path::PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Server {
    fn start(peer: Peer, settings: &Settings) -> io::Result<Server> {
        let socklab = |program: &str, service: &str| {
            let mut c = pinned(settings.pin, "0", program);
            c.args([
                "--port",
                "0",
                "--service",
                service,
                "-q",
                "--shutdown-timeout",
                "1",
            ]);
            c
        };
        let mut dir = None;
        let mut port = 0;
        let (mut command, prints_line) = match peer {
            Peer::Socklab => (socklab(env!("CARGO_BIN_EXE_socklab-server"), "http"), true),
            Peer::Uring => {
                let mut c = socklab(env!("CARGO_BIN_EXE_socklab-server"), "http");
                c.args(["--mode", "uring"]);
                (c, true)
            }
            Peer::Floor => (
                socklab(env!("CARGO_BIN_EXE_socklab-server"), "http-floor"),
                true,
            ),
            Peer::B => (
                socklab(settings.b_program.as_deref().expect("set"), "http"),
                true,
            ),
            Peer::Hyper => {
                let path = settings
                    .hyper
                    .as_ref()
                    .expect("built")
                    .to_string_lossy()
                    .into_owned();
                let mut c = pinned(settings.pin, "0", &path);
                c.arg("0");
                (c, true)
            }
            Peer::May => {
                port = free_port()?;
                let path = settings
                    .may
                    .as_ref()
                    .expect("built")
                    .to_string_lossy()
                    .into_owned();
                let mut c = pinned(settings.pin, "0", &path);
                c.arg(port.to_string());
                (c, true)
            }
            Peer::Nginx => {
                port = free_port()?;
                let path = std::env::temp_dir()
                    .join(format!("socklab-nginx-{}-{port}", std::process::id()));
                std::fs::create_dir_all(&path)?;
                std::fs::write(path.join("nginx.conf"), nginx_conf(port, &path))?;
                let nginx = settings.nginx.as_deref().expect("found");
                let mut c = pinned(settings.pin, "0", nginx);
                c.arg("-p")
                    .arg(&path)
                    .arg("-c")
                    .arg(path.join("nginx.conf"));
                dir = Some(tempdir::Dir(path));
                (c, false)
            }
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let mut server = Server {
            process: Process(child),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            response_len: 0,
            _dir: dir,
        };
        if prints_line {
            let mut line = String::new();
            BufReader::new(server.process.0.stdout.take().expect("piped")).read_line(&mut line)?;
            server.addr = socklab::net::parse_listening_line(&line).ok_or_else(|| {
                io::Error::other(format!("{}: not a listening line: {line:?}", peer.name()))
            })?;
        }
        // Until it answers: nginx prints nothing, and may_minihttp prints before it has bound.
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(server.addr).is_err() {
            if Instant::now() > deadline {
                return Err(io::Error::other(format!("{} never listened", peer.name())));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        server.response_len = response_len(server.addr)?;
        Ok(server)
    }

    fn pid(&self) -> u32 {
        self.process.pid()
    }
}

/// nginx as one process serving `return 200 "Hello, World"` on `port`, nothing logged, connections kept
/// for any number of requests (its default closes one after 1,000).
fn nginx_conf(port: u16, dir: &std::path::Path) -> String {
    format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log crit;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  default_type text/plain;\n  keepalive_requests 1000000000;\n  keepalive_timeout 300s;\n\
           server {{\n    listen 127.0.0.1:{port};\n    location / {{ return 200 \"Hello, World\"; }}\n  }}\n}}\n",
        dir = dir.display()
    )
}

/// The length of one whole response to the request wrk sends (`wrk.format()`: `GET /` with `Host`).
fn response_len(addr: SocketAddr) -> io::Result<usize> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n")?;
    let mut got = Vec::new();
    let mut buf = [0; 4096];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::other("closed before a whole response"));
        }
        got.extend_from_slice(&buf[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        if let Ok(httparse::Status::Complete(head)) = response.parse(&got) {
            let length = response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| {
                    std::str::from_utf8(h.value)
                        .ok()?
                        .trim()
                        .parse::<usize>()
                        .ok()
                })
                .ok_or_else(|| io::Error::other("no Content-Length"))?;
            if got.len() >= head + length {
                return Ok(head + length);
            }
        }
    }
}

/// One wrk run, pinned to CPU 1; every response checked by the script (in light mode, its status and
/// length).
fn wrk(server: &Server, load: Load, seconds: f64, settings: &Settings) -> io::Result<Run> {
    let mut command = pinned(settings.pin, "1", "wrk");
    command
        .args(["-t1", "-c", &load.connections.to_string()])
        .arg(format!("-d{}s", seconds.max(1.0).round() as u64))
        .args(["--timeout", "5s", "-s"])
        .arg(&settings.script)
        .arg(format!("http://{}/", server.addr))
        .args(["--", &load.depth.to_string()]);
    if settings.light {
        command.env("SOCKLAB_HTTP_LIGHT", "1");
    }
    let cpu_before = cpu_seconds(server.pid());
    let finished = run_bounded(command, Duration::from_secs_f64(seconds + 30.0))?;
    let cpu = cpu_seconds(server.pid()) - cpu_before;
    let out = &finished.stdout;
    let num = |key: &str| json_number(out, key).unwrap_or(f64::NAN);
    let checked = num("responses") as u64;
    let seconds_run = num("seconds").max(1e-9);
    // Light mode: the bytes read must be every response counted, whole, plus at most the partial
    // responses in flight when wrk stopped; one wrong length in every response would show here.
    let mut wrong_length = 0;
    if settings.light {
        let bytes = num("bytes") as usize;
        let least = checked as usize * server.response_len;
        let most = least + load.connections * load.depth * server.response_len;
        if !(least..=most).contains(&bytes) {
            wrong_length = checked;
        }
    }
    Ok(Run {
        rps: checked as f64 / seconds_run,
        cpu_us: cpu * 1e6 / checked.max(1) as f64,
        wrk_core: finished.cpu_seconds / finished.wall.as_secs_f64().max(1e-9),
        checked,
        bad: (num("bad") + num("errors")) as u64 + wrong_length,
    })
}

/// Every round: fresh servers, a warm-up each, then each peer once in the round's order.
fn rounds(load: Load, settings: &Settings, jsonl: &mut String) -> io::Result<Vec<Vec<Run>>> {
    let peers = &settings.peers;
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); peers.len()];
    for round in 0..settings.runs {
        let servers = peers
            .iter()
            .map(|&p| Server::start(p, settings))
            .collect::<io::Result<Vec<_>>>()?;
        for server in &servers {
            wrk(server, load, 1.0, settings)?;
        }
        for k in 0..peers.len() {
            let i = run_order(round, k, peers.len());
            let run = wrk(&servers[i], load, settings.seconds, settings)?;
            let _ = writeln!(
                jsonl,
                "{{\"load\":\"{}\",\"peer\":\"{}\",\"round\":{round},\"position\":{k},\"rps\":{:.0},\"cpu_us_per_req\":{:.3},\"wrk_core\":{:.2},\"checked\":{},\"bad\":{}}}",
                load.name(), peers[i].name(), run.rps, run.cpu_us, run.wrk_core, run.checked, run.bad
            );
            runs[i].push(run);
        }
        let mut servers = servers;
        Process::stop_all(servers.iter_mut().map(|s| &mut s.process));
    }
    Ok(runs)
}

fn table(name: &str, peers: &[Peer], runs: &[Vec<Run>]) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "### {name}\n");
    let _ = writeln!(
        t,
        "| peer | req/s | ÷ socklab, per round | range | socklab ahead | server CPU (µs/req) | CPU ÷ socklab's | socklab leaner | wrk CPU (cores) | runs | bad responses |"
    );
    let _ = writeln!(
        t,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for (i, (peer, peer_runs)) in peers.iter().zip(runs).enumerate() {
        let rps = Ratios::of(runs, i, |r: &Run| r.rps);
        let cpu = Ratios::of(runs, i, |r: &Run| r.cpu_us);
        let (ahead, range, leaner) = if i == 0 {
            (String::new(), String::new(), String::new())
        } else {
            (rps.first_ahead(true), rps.range(), cpu.first_ahead(false))
        };
        let _ = writeln!(
            t,
            "| {} | {:.0} | {:.2}× | {range} | {ahead} | {:.2} | {:.2}× | {leaner} | {:.2} | {} | {} |",
            peer.name(),
            median(peer_runs.iter().map(|r| r.rps).collect()),
            rps.median(),
            median(peer_runs.iter().map(|r| r.cpu_us).collect()),
            cpu.median(),
            median(peer_runs.iter().map(|r| r.wrk_core).collect()),
            peer_runs.len(),
            peer_runs.iter().map(|r| r.bad).sum::<u64>(),
        );
    }
    t.push('\n');
    t
}

/// Open-loop latency at one rate, every peer, in rounds: `socklab-stress --expect http --learn-reply`, which
/// times each request from when it was due and checks every response against the peer's own first one (the
/// peers' headers differ from socklab's, so socklab's own response cannot be the reference).
fn latency(settings: &Settings) -> io::Result<String> {
    let peers = &settings.peers;
    let mut p50: Vec<Vec<f64>> = vec![Vec::new(); peers.len()];
    let mut p99: Vec<Vec<f64>> = vec![Vec::new(); peers.len()];
    let mut bad = vec![0u64; peers.len()];
    for round in 0..settings.runs {
        let mut servers = peers
            .iter()
            .map(|&p| Server::start(p, settings))
            .collect::<io::Result<Vec<_>>>()?;
        for k in 0..peers.len() {
            let i = run_order(round, k, peers.len());
            let mut command = pinned(settings.pin, "1", env!("CARGO_BIN_EXE_socklab-stress"));
            command.args([
                "--addr",
                &servers[i].addr.to_string(),
                "--expect",
                "http",
                // Every peer's replies judged alike: each against its own first answer, but the Date.
                "--learn-reply",
                "-c",
                "100",
                "--rate",
                &settings.rate.to_string(),
                "--duration",
                &settings.seconds.to_string(),
                "--json",
                "-q",
            ]);
            let json =
                run_bounded(command, Duration::from_secs_f64(settings.seconds + 30.0))?.stdout;
            let num = |key: &str| json_number(&json, key).unwrap_or(f64::NAN);
            p50[i].push(num("p50"));
            p99[i].push(num("p99"));
            bad[i] += (num("wrong") + num("unanswered")).max(0.0) as u64;
        }
        Process::stop_all(servers.iter_mut().map(|s| &mut s.process));
    }
    let ratio = |i: usize| {
        let rounds: Vec<f64> = p99[i].iter().zip(&p99[0]).map(|(x, s)| x / s).collect();
        Ratios(rounds)
    };
    let mut t = String::new();
    let _ = writeln!(
        t,
        "### Open-loop latency: {} requests/s over 100 connections (`socklab-stress --expect http --rate`)\n",
        settings.rate
    );
    let _ = writeln!(
        t,
        "| peer | p50 (µs) | p99 (µs) | p99 ÷ socklab's, per round | socklab lower | runs | bad |"
    );
    let _ = writeln!(t, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (i, peer) in peers.iter().enumerate() {
        let r = ratio(i);
        let lower = if i == 0 {
            String::new()
        } else {
            r.first_ahead(false)
        };
        let _ = writeln!(
            t,
            "| {} | {:.0} | {:.0} | {:.2}× | {lower} | {} | {} |",
            peer.name(),
            median(p50[i].clone()),
            median(p99[i].clone()),
            r.median(),
            p99[i].len(),
            bad[i]
        );
    }
    t.push('\n');
    Ok(t)
}

/// The framing rules each peer follows or skips, from raw requests: the answers the docs quote.
fn framing_rules(settings: &Settings) -> io::Result<String> {
    const PROBES: [(&str, &[u8]); 5] = [
        (
            "a body after HEAD",
            b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        ),
        ("closes on Connection: close", b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"),
        (
            "serves a POST body as a request",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 35\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
        ),
        ("answers HTTP/1.1 without Host with 400", b"GET / HTTP/1.1\r\n\r\n"),
        (
            "answers Content-Length with chunked with 400",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
    ];
    let mut t = String::new();
    let _ = writeln!(t, "### Framing rules, probed with raw requests\n");
    let _ = write!(t, "| peer |");
    for (name, _) in PROBES {
        let _ = write!(t, " {name} |");
    }
    let _ = writeln!(t);
    let _ = writeln!(t, "| --- |{}", " --- |".repeat(PROBES.len()));
    for &peer in &settings.peers {
        let mut server = Server::start(peer, settings)?;
        let _ = write!(t, "| {} |", peer.name());
        for (k, (_, request)) in PROBES.iter().enumerate() {
            let (reply, closed) = exchange(server.addr, request);
            let hellos = reply.matches("Hello, World").count();
            let statuses = reply.matches("HTTP/1.1 ").count();
            let cell = match k {
                0 => (if hellos >= 2 { "yes (wrong)" } else { "no" }).to_string(),
                1 => (if closed { "yes" } else { "no (wrong)" }).to_string(),
                2 => (if statuses >= 2 { "yes (wrong)" } else { "no" }).to_string(),
                _ => {
                    let code = reply.get(9..12).unwrap_or("none").to_string();
                    if code == "400" {
                        "yes".into()
                    } else {
                        format!("no: {code}")
                    }
                }
            };
            let _ = write!(t, " {cell} |");
        }
        let _ = writeln!(t);
        Process::stop_all(std::iter::once(&mut server.process));
    }
    t.push('\n');
    Ok(t)
}

/// Sends `request`, half-closes only if nothing is expected after it, and reads what comes within a second:
/// the reply, and whether the server closed.
fn exchange(addr: SocketAddr, request: &[u8]) -> (String, bool) {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return (String::new(), false);
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(1000)));
    let _ = stream.write_all(request);
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match stream.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&reply).into_owned(), closed)
}
