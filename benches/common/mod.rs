//! What the end-to-end benches share (`benches/peers.rs`, `benches/http.rs`): the rule for comparing peers on a
//! shared machine, running processes pinned and bounded, and writing the results. Method:
//! `docs/08-measuring.md`.
//!
//! The rule: every round starts fresh servers, runs the peers in an order that changes every round
//! ([`run_order`]), and compares each peer with the first *within the round* ([`Ratios`]); a finding needs a
//! lopsided count (15 or more rounds of 21), since between equals 14 of 21 happens one time in ten.
#![allow(dead_code)] // Each bench uses its own subset.

use std::io;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Which peer runs `k`-th in `round`. Rotations first (A B C, B C A, C A B), then the same reversed
/// (C B A, A C B, B A C): with three peers, six rounds run every order once, so no peer always runs first
/// or always right after the same other one.
pub fn run_order(round: usize, k: usize, n: usize) -> usize {
    let first = round % n;
    let k = if (round / n) % 2 == 1 { n - 1 - k } else { k };
    (first + k) % n
}

/// One peer's value over another's, round by round.
#[derive(Clone, Debug)]
pub struct Ratios(pub Vec<f64>);

impl Ratios {
    /// `value(peer) / value(first)` within each round: `runs[i][round]` ran in the same round for every peer.
    pub fn of<R>(runs: &[Vec<R>], i: usize, value: impl Fn(&R) -> f64) -> Ratios {
        Ratios(
            runs[i]
                .iter()
                .zip(&runs[0])
                .map(|(peer, first)| value(peer) / value(first))
                .collect(),
        )
    }

    pub fn median(&self) -> f64 {
        median(self.0.clone())
    }

    /// `0.93–1.08`.
    pub fn range(&self) -> String {
        let (low, high) = self
            .0
            .iter()
            .fold((f64::INFINITY, 0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        format!("{low:.2}–{high:.2}")
    }

    /// `12 of 21`: in how many rounds the first peer had more (when `more_is_better`) or less of it.
    pub fn first_ahead(&self, more_is_better: bool) -> String {
        let ahead = self
            .0
            .iter()
            .filter(|&&x| if more_is_better { x < 1.0 } else { x > 1.0 })
            .count();
        format!("{ahead} of {}", self.0.len())
    }
}

/// Whether `taskset` can pin processes to a CPU here.
pub fn can_pin() -> bool {
    Command::new("taskset")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `program`, run under `taskset -c CPU` if pinning.
pub fn pinned(pin: bool, cpu: &str, program: &str) -> Command {
    if pin {
        let mut c = Command::new("taskset");
        c.args(["-c", cpu, program]);
        c
    } else {
        Command::new(program)
    }
}

/// A child process that is killed and reaped when dropped, so a bench that fails halfway leaves nothing
/// running.
pub struct Process(pub Child);

impl Process {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Asks every process to stop ([`ask_to_stop`]), then waits for each, killing any still up after 3 s.
    pub fn stop_all<'a>(processes: impl IntoIterator<Item = &'a mut Process>) {
        let mut processes: Vec<&mut Process> = processes.into_iter().collect();
        for p in processes.iter_mut() {
            ask_to_stop(&mut p.0);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        for p in processes.iter_mut() {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = p.0.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Asks `child` to stop as a user would: SIGTERM on Unix. Windows has no signal one process can send another
/// here (Ctrl-Break needs a console group of its own), so there it is killed at once: the benches measure
/// during a run, not at its end.
pub fn ask_to_stop(child: &mut Child) {
    #[cfg(unix)]
    // SAFETY: kill(2) on a child we spawned and have not reaped; no memory is involved.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM)
    };
    #[cfg(not(unix))]
    let _ = child.kill();
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// What a finished child printed, and the CPU it used (user + system seconds).
pub struct Finished {
    pub stdout: String,
    pub cpu_seconds: f64,
    pub wall: Duration,
}

/// Runs `command` to completion with stdout captured, killing it after `limit`, and learns its CPU time (a
/// load generator's own CPU says whether it was the bottleneck): from `wait4` on Unix, which reaps it; on
/// Windows from the OS layer while the child's handle still holds its figures.
pub fn run_bounded(mut command: Command, limit: Duration) -> io::Result<Finished> {
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let deadline = started + limit;
    let cpu_seconds = reap_with_cpu(&mut child, deadline, &command, limit);
    Ok(Finished {
        stdout: reader.join().unwrap_or_default(),
        cpu_seconds,
        wall: started.elapsed(),
    })
}

#[cfg(unix)]
fn reap_with_cpu(child: &mut Child, deadline: Instant, command: &Command, limit: Duration) -> f64 {
    let pid = child.id() as libc::pid_t;
    // SAFETY: an all-zero rusage is valid (integers and timevals only).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        let mut status = 0;
        // SAFETY: wait4 on our own child; `status` and `usage` are ours to write.
        let reaped = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if reaped == pid || reaped < 0 {
            break;
        }
        if Instant::now() >= deadline {
            eprintln!("{command:?} overran {limit:?}: killed");
            let _ = child.kill();
            // SAFETY: as above, blocking this time.
            unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

#[cfg(not(unix))]
fn reap_with_cpu(child: &mut Child, deadline: Instant, command: &Command, limit: Duration) -> f64 {
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if Instant::now() >= deadline {
            eprintln!("{command:?} overran {limit:?}: killed");
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // The exited process's figures last while `child` holds its handle.
    socklab::procfs::cpu_seconds(child.id())
}

/// The number after `"key":` in a flat JSON line (socklab-stress writes no nested key twice).
pub fn json_number(json: &str, key: &str) -> Option<f64> {
    let at = json.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = &json[at..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].trim().parse().ok()
}

/// Writes what a bench found to `dir`: `NAME.md` (the tables so far) and `runs.jsonl` (every run). Called
/// after each load, so that a long run cut short still leaves its tables.
pub fn save(dir: &str, name: &str, md: &str, jsonl: &str) -> io::Result<()> {
    std::fs::write(format!("{dir}/{name}.md"), md)?;
    std::fs::write(format!("{dir}/runs.jsonl"), jsonl)
}

/// Saves, prints the tables, and says where they went and how long it all took.
pub fn finish(dir: &str, name: &str, md: &str, jsonl: &str, started: Instant) -> io::Result<()> {
    save(dir, name, md, jsonl)?;
    println!("{md}");
    eprintln!(
        "wrote {dir}/{name}.md and {dir}/runs.jsonl in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Whether `--mode uring` can run here; if not, says why (once per bench) so the table's missing column is
/// explained.
pub fn uring_runs() -> bool {
    let config = socklab::server::config::Config {
        port: 0,
        ..Default::default()
    };
    match socklab::server::Server::bind(socklab::server::Mode::Uring, config) {
        Ok(_) => true,
        Err(e) => {
            eprintln!("uring skipped: {e}");
            false
        }
    }
}
