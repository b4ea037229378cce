//! The four server modes side by side, as a person looks at them: `cargo bench --bench modes`.
//!
//! For each mode and each load (1, 10, 100 and 1,000 concurrent clients, and 10 clients with 10 more
//! connected and silent) it starts the release `socklab-server --mode M` on a free loopback port, drives it
//! for a fixed time with a closed-loop load (each client sends one line, waits for its reply, checks every
//! byte, records the latency, sends the next), and reads the server's CPU time, threads and resident memory
//! from `/proc`. A request unanswered after `REQUEST_TIMEOUT` counts as timed out and its client stops: so
//! `blocking`, which serves one client at a time, never hangs the run; the table says how many clients were
//! served at all.
//!
//! Writes `modes.md` (the table) and `modes.svg` (the chart, drawn with plotters: throughput, clients
//! served and server CPU side by side, so a mode that serves one client of a thousand cannot pass for a
//! fast one) to `$SOCKLAB_MODES_OUT` (default
//! `target/modes`). The whole run takes about a minute and a half. Results for one machine, and what they
//! mean: `docs/modes-results.md`.
//!
//! The load driver is one thread on one `mio::Poll`, so that 1,000 clients cost the driver no more threads
//! than one does (it shares the machine with the server it measures).

use socklab::procfs::{cpu_seconds, resident_kib, thread_count};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};
use plotters::prelude::*;
use socklab::server::Mode;

/// How long each load is measured.
const MEASURE: Duration = Duration::from_secs(2);
/// A request unanswered this long is a timeout; its client gives up.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

/// (concurrent clients, silent clients connected first).
const LOADS: [(usize, usize); 5] = [(1, 0), (10, 0), (100, 0), (1000, 0), (10, 10)];

fn load_name((clients, silent): (usize, usize)) -> String {
    if silent == 0 {
        format!("{clients} client{}", if clients == 1 { "" } else { "s" })
    } else {
        format!("{clients} + {silent} silent")
    }
}

/// What one (mode, load) run measured.
struct Row {
    mode: Mode,
    load: (usize, usize),
    completed: u64,
    timeouts: u64,
    errors: u64,
    served: usize,
    p50: Option<Duration>,
    p99: Option<Duration>,
    cpu: f64,
    threads: usize,
    rss_kib: u64,
}

impl Row {
    fn throughput(&self) -> f64 {
        self.completed as f64 / MEASURE.as_secs_f64()
    }
}

fn main() -> io::Result<()> {
    let out_dir = std::env::var("SOCKLAB_MODES_OUT").unwrap_or_else(|_| "target/modes".into());
    std::fs::create_dir_all(&out_dir)?;
    let mut rows = Vec::new();
    for mode in Mode::ALL {
        for load in LOADS {
            let row = run(mode, load)?;
            eprintln!(
                "{:>9} {:>16}: {:>8.0} req/s, p99 {:>10}, {} of {} clients served, cpu {:.2} s, {} threads",
                mode.name(),
                load_name(load),
                row.throughput(),
                fmt_latency(row.p99),
                row.served,
                load.0,
                row.cpu,
                row.threads
            );
            rows.push(row);
        }
    }
    let table = table(&rows);
    println!("{table}");
    std::fs::write(format!("{out_dir}/modes.md"), &table)?;
    std::fs::write(format!("{out_dir}/modes.svg"), svg(&rows)?)?;
    eprintln!("wrote {out_dir}/modes.md and {out_dir}/modes.svg");
    Ok(())
}

/// One server, one load, one measurement.
fn run(mode: Mode, (clients, silent): (usize, usize)) -> io::Result<Row> {
    let mut server = Server::start(mode)?;
    let _silent: Vec<TcpStream> = (0..silent)
        .map(|_| TcpStream::connect_timeout(&server.addr, Duration::from_secs(2)))
        .collect::<io::Result<_>>()?;
    let mut driver = Driver::connect(server.addr, clients)?;
    let cpu_before = cpu_seconds(server.pid());
    let report = driver.drive(MEASURE)?;
    let cpu = cpu_seconds(server.pid()) - cpu_before;
    let threads = thread_count(server.pid());
    let rss_kib = resident_kib(server.pid());
    drop(driver);
    server.stop();
    let mut latencies = report.latencies;
    latencies.sort_unstable();
    Ok(Row {
        mode,
        load: (clients, silent),
        completed: latencies.len() as u64,
        timeouts: report.timeouts,
        errors: report.errors,
        served: report.served,
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        cpu,
        threads,
        rss_kib,
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[index])
}

/// The release binary, quiet, on a free port; stopped by SIGTERM (killed if it does not stop).
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(mode: Mode) -> io::Result<Server> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_socklab-server"))
            .args([
                "--port",
                "0",
                "--mode",
                mode.name(),
                "--shutdown-timeout",
                "1",
                "-q",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
        let addr = socklab::net::parse_listening_line(&line)
            .ok_or_else(|| io::Error::other(format!("not a listening line: {line:?}")))?;
        Ok(Server { child, addr })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(&mut self) {
        // SIGTERM on Unix; Windows has no signal to send from here, so the child is killed at once (the
        // figures are taken during the run, not at its end).
        #[cfg(unix)]
        // SAFETY: kill(2) on a child we spawned and have not reaped.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM)
        };
        #[cfg(not(unix))]
        let _ = self.child.kill();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        eprintln!("server did not stop when asked: killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One closed-loop client.
struct Client {
    stream: MioStream,
    id: usize,
    seq: u64,
    /// The request being sent (what is left of it) and the reply it must get.
    unsent: Vec<u8>,
    expected: Vec<u8>,
    received: usize,
    sent_at: Instant,
    replies: u64,
    alive: bool,
}

impl Client {
    fn next_request(&mut self, now: Instant) {
        let request = format!(
            "client {} request {} the quick brown fox\n",
            self.id, self.seq
        );
        self.seq += 1;
        self.expected = request.to_ascii_uppercase().into_bytes();
        self.unsent = request.into_bytes();
        self.received = 0;
        self.sent_at = now;
    }
}

struct Report {
    latencies: Vec<Duration>,
    timeouts: u64,
    errors: u64,
    served: usize,
}

struct Driver {
    poll: Poll,
    clients: Vec<Client>,
}

impl Driver {
    fn connect(addr: SocketAddr, n: usize) -> io::Result<Driver> {
        let poll = Poll::new()?;
        let mut clients = Vec::with_capacity(n);
        let now = Instant::now();
        for id in 0..n {
            // A blocking connect: it completes in the kernel's backlog even when the server is busy.
            let std = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
            std.set_nodelay(true)?;
            std.set_nonblocking(true)?;
            let mut stream = MioStream::from_std(std);
            poll.registry().register(
                &mut stream,
                Token(id),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            clients.push(Client {
                stream,
                id,
                seq: 0,
                unsent: Vec::new(),
                expected: Vec::new(),
                received: 0,
                sent_at: now,
                replies: 0,
                alive: true,
            });
        }
        Ok(Driver { poll, clients })
    }

    fn drive(&mut self, duration: Duration) -> io::Result<Report> {
        let mut latencies = Vec::new();
        let (mut timeouts, mut errors) = (0, 0);
        let start = Instant::now();
        let end = start + duration;
        for c in &mut self.clients {
            c.next_request(start);
            write_what_fits(c);
        }
        let mut events = Events::with_capacity(1024);
        let mut buf = vec![0u8; 4096];
        let mut dead = HashMap::new();
        while Instant::now() < end {
            self.poll
                .poll(&mut events, Some(Duration::from_millis(10)))?;
            for event in events.iter() {
                let c = &mut self.clients[event.token().0];
                if !c.alive {
                    continue;
                }
                write_what_fits(c);
                loop {
                    match c.stream.read(&mut buf) {
                        Ok(0) => {
                            dead.insert(c.id, "closed by the server");
                            break;
                        }
                        Ok(n) => {
                            let want = &c.expected[c.received..];
                            if n > want.len() || buf[..n] != want[..n] {
                                dead.insert(c.id, "wrong reply");
                                break;
                            }
                            c.received += n;
                            if c.received == c.expected.len() {
                                let now = Instant::now();
                                latencies.push(now - c.sent_at);
                                c.replies += 1;
                                if now < end {
                                    c.next_request(now);
                                    write_what_fits(c);
                                }
                            }
                        }
                        Err(ref e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(ref e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => {
                            dead.insert(c.id, "socket error");
                            break;
                        }
                    }
                }
            }
            let now = Instant::now();
            for c in &mut self.clients {
                if c.alive && now - c.sent_at > REQUEST_TIMEOUT {
                    timeouts += 1;
                    c.alive = false;
                }
            }
            for (id, _why) in dead.drain() {
                errors += 1;
                self.clients[id].alive = false;
            }
        }
        let served = self.clients.iter().filter(|c| c.replies > 0).count();
        Ok(Report {
            latencies,
            timeouts,
            errors,
            served,
        })
    }
}

fn write_what_fits(c: &mut Client) {
    while !c.unsent.is_empty() {
        match c.stream.write(&c.unsent) {
            Ok(n) => {
                c.unsent.drain(..n);
            }
            Err(ref e) if e.kind() == io::ErrorKind::Interrupted => {}
            // WouldBlock: WRITABLE brings us back. Other errors: the read that follows finds them.
            Err(_) => return,
        }
    }
}

fn fmt_latency(d: Option<Duration>) -> String {
    match d {
        None => "—".into(),
        Some(d) if d < Duration::from_millis(1) => format!("{} µs", d.as_micros()),
        Some(d) => format!("{:.1} ms", d.as_secs_f64() * 1e3),
    }
}

fn table(rows: &[Row]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| mode | load | throughput (req/s) | p50 | p99 | clients served | timeouts | server CPU (s per {} s) | threads | RSS (MiB) |",
        MEASURE.as_secs()
    );
    let _ = writeln!(t, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let errors = if r.errors > 0 {
            format!(" ({} errors)", r.errors)
        } else {
            String::new()
        };
        let _ = writeln!(
            t,
            "| {} | {} | {:.0} | {} | {} | {} of {} | {}{} | {:.2} | {} | {:.1} |",
            r.mode,
            load_name(r.load),
            r.throughput(),
            fmt_latency(r.p50),
            fmt_latency(r.p99),
            r.served,
            r.load.0,
            r.timeouts,
            errors,
            r.cpu,
            r.threads,
            r.rss_kib as f64 / 1024.0
        );
    }
    t
}

/// One colour per mode, in `Mode::ALL`'s order.
const COLOURS: [RGBColor; Mode::ALL.len()] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
];

/// What a panel shows of a row, its title, how its axis reads, and the label over a bar (if any).
struct Panel {
    title: String,
    value: fn(&Row) -> f64,
    axis: fn(f64) -> String,
    label: fn(&Row) -> Option<String>,
}

/// Three bar panels drawn with plotters, one group per load and one bar per mode: throughput, the share of
/// the load's clients that were served at all, and server CPU. Throughput alone made `blocking` look
/// competitive at 10 to 1,000 clients, when it served one of them: so its bars where clients went unserved
/// are pale and say how many were served, and the second panel shows the starving directly.
fn svg(rows: &[Row]) -> io::Result<String> {
    let panels = [
        Panel {
            title: "throughput, requests/s".into(),
            value: Row::throughput,
            axis: |v| format!("{:.0}k", v / 1000.0),
            label: |r| {
                (r.served < r.load.0).then(|| format!("{} of {} served", r.served, r.load.0))
            },
        },
        Panel {
            title: "clients served, % of the load's clients".into(),
            value: |r| 100.0 * r.served as f64 / r.load.0.max(1) as f64,
            axis: |v| format!("{v:.0}%"),
            label: |r| (r.served < r.load.0).then(|| format!("{} of {}", r.served, r.load.0)),
        },
        Panel {
            title: format!("server CPU, seconds in the {} s run", MEASURE.as_secs()),
            value: |r| r.cpu,
            axis: |v| format!("{v:.1} s"),
            label: |_| None,
        },
    ];
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (960, 300 * panels.len() as u32 + 64))
            .into_drawing_area();
        root.fill(&WHITE).map_err(io::Error::other)?;
        let (head, body) = root.split_vertically(64);
        head.draw(&Text::new(
            "socklab-server's four modes, closed-loop clients (cargo bench --bench modes)",
            (16, 10),
            ("sans-serif", 18),
        ))
        .map_err(io::Error::other)?;
        // One legend for all panels, where it hides no bar.
        for (m, mode) in Mode::ALL.iter().enumerate() {
            let x = 16 + 120 * m as i32;
            head.draw(&Rectangle::new(
                [(x, 40), (x + 12, 52)],
                COLOURS[m].filled(),
            ))
            .map_err(io::Error::other)?;
            head.draw(&Text::new(mode.name(), (x + 18, 40), ("sans-serif", 13)))
                .map_err(io::Error::other)?;
        }
        head.draw(&Text::new(
            "pale bar: the mode left some of the load's clients without a single reply",
            (500, 40),
            ("sans-serif", 13),
        ))
        .map_err(io::Error::other)?;
        for (panel, area) in panels.iter().zip(body.split_evenly((panels.len(), 1))) {
            draw_panel(&area, panel, rows).map_err(io::Error::other)?;
        }
        root.present().map_err(io::Error::other)?;
    }
    Ok(out)
}

/// One panel: load groups centred on 0, 1, 2, ... so the axis's whole numbers carry the load names.
fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    panel: &Panel,
    rows: &[Row],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let top = rows
        .iter()
        .map(panel.value)
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.15;
    let groups = LOADS.len() as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 15))
        .margin(8)
        .x_label_area_size(24)
        .y_label_area_size(64)
        .build_cartesian_2d(-0.5f64..groups - 0.5, 0f64..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(LOADS.len())
        .y_label_formatter(&|v| (panel.axis)(*v))
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < LOADS.len() {
                load_name(LOADS[i as usize])
            } else {
                String::new()
            }
        })
        .draw()?;
    let width = 0.8 / Mode::ALL.len() as f64;
    for (m, mode) in Mode::ALL.iter().enumerate() {
        let colour = COLOURS[m];
        let bars: Vec<(f64, &Row)> = LOADS
            .iter()
            .enumerate()
            .filter_map(|(g, load)| {
                let row = rows.iter().find(|r| r.mode == *mode && r.load == *load)?;
                Some((g as f64 - 0.4 + m as f64 * width, row))
            })
            .collect();
        chart.draw_series(bars.iter().map(|&(x, row)| {
            let starved = row.served < row.load.0;
            let fill = if starved {
                colour.mix(0.35).filled()
            } else {
                colour.filled()
            };
            Rectangle::new([(x, 0.0), (x + width * 0.9, (panel.value)(row))], fill)
        }))?;
        chart.draw_series(bars.iter().filter_map(|&(x, row)| {
            let label = (panel.label)(row)?;
            Some(Text::new(
                label,
                (x, (panel.value)(row) + top * 0.02),
                ("sans-serif", 11)
                    .into_font()
                    .transform(FontTransform::Rotate270),
            ))
        }))?;
    }
    Ok(())
}
