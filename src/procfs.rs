//! What a process costs, read from Linux's `/proc`: CPU seconds, threads, descriptors, resident memory.
//! The tests, the benches and anyone measuring a server use these, so every figure is read the same way.
//! A process that is gone (or a system without `/proc`) reads as zero rather than failing a measurement.
//! Walk-through: `docs/08-measuring.md`.

use std::fs;

fn proc_file(pid: u32, name: &str) -> String {
    fs::read_to_string(format!("/proc/{pid}/{name}")).unwrap_or_default()
}

/// User plus system CPU time of the whole process (every thread, living or gone), in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = proc_file(pid, "stat");
    // The command name is in parentheses and may contain spaces: count fields after its closing one.
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf reads a constant.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (field(11) + field(12)) / per_second
}

/// Threads of the process.
pub fn thread_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count())
}

/// Open file descriptors of the process.
pub fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Resident memory of the process, in KiB (`VmRSS`).
pub fn resident_kib(pid: u32) -> u64 {
    proc_file(pid, "status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_reads_as_alive() {
        let me = std::process::id();
        assert!(thread_count(me) >= 1);
        assert!(fd_count(me) >= 3);
        assert!(resident_kib(me) > 0);
        assert!(cpu_seconds(me) >= 0.0);
        assert_eq!(thread_count(u32::MAX), 0, "no such process");
    }
}
