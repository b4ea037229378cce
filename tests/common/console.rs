//! Stopping a child server gracefully on Windows, where the tests on Unix send SIGINT or SIGTERM.
//!
//! - **Windows** (unverified here: CI has no Windows machine): the child starts in a process group of its
//!   own and is sent Ctrl-Break (`GenerateConsoleCtrlEvent`). Ctrl-C cannot be sent to one group alone,
//!   and the child's group leaves the test process out of it.
//! - **Wine** (what CI runs): `GenerateConsoleCtrlEvent` is refused for another group ("Invalid access"),
//!   but Wine turns a SIGINT that the Unix process receives into Ctrl-C, and every Windows process under
//!   Wine is a Linux process. The harness finds the child's Linux PID and sends SIGINT to it. Wine 8.0 has
//!   no call that maps a Windows PID to a Unix one (`NtQueryInformationProcess` refuses Wine's
//!   `ProcessWineUnixPid` class, added later), and its children are double-forked (their parent is PID 1),
//!   so the child is recognised by its working directory: Wine gives the Linux process the Windows current
//!   directory, and the harness starts each child in a directory of its own holding a marker file, then
//!   looks for the Linux process whose `/proc/PID/cwd` holds that marker (`Z:` is Wine's drive for `/`). The
//!   child must not get a process group of its own there: a new group ignores Ctrl-C, as on Windows.
//!   SIGINT goes through Linux's own `kill` system call, since a Windows program has no other way to make
//!   it: Wine runs a Unix program through `CreateProcess` (`/bin/kill` works), but reports no exit status
//!   for it, so a failure would pass unseen; the system call's result is checked.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How the harness reaches one child with a stop.
pub enum Reach {
    /// A process group of its own, for Ctrl-Break.
    Group,
    /// Under Wine: the directory the child runs in, the marker in it, and the Linux PID once found.
    Wine {
        dir: PathBuf,
        marker: String,
        unix_pid: OnceLock<i32>,
    },
}

/// Sets `command` up so that [`stop`] can reach the child it starts.
pub fn prepare(command: &mut Command) -> Reach {
    if !socklab::sys::is_wine() {
        use std::os::windows::process::CommandExt;
        command.creation_flags(windows_sys::Win32::System::Threading::CREATE_NEW_PROCESS_GROUP);
        return Reach::Group;
    }
    static CHILDREN: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "socklab-test-{}-{}",
        std::process::id(),
        CHILDREN.fetch_add(1, Ordering::Relaxed)
    );
    let dir = std::env::temp_dir().join(&name);
    let marker = format!("{name}.marker");
    std::fs::create_dir_all(&dir).expect("a directory for the child");
    std::fs::write(dir.join(&marker), b"").expect("the child's marker");
    command.current_dir(&dir);
    Reach::Wine {
        dir,
        marker,
        unix_pid: OnceLock::new(),
    }
}

/// Asks the child to stop, as SIGINT or SIGTERM does on Unix: the first begins a graceful shutdown, the
/// second ends it at once.
pub fn stop(reach: &Reach, windows_pid: u32) {
    match reach {
        Reach::Group => {
            use windows_sys::Win32::System::Console::{GenerateConsoleCtrlEvent, CTRL_BREAK_EVENT};
            // SAFETY: no pointers; the group id is that of a child this test spawned in a group of its own.
            let sent = unsafe { GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT, windows_pid) };
            assert_ne!(sent, 0, "Ctrl-Break: {}", std::io::Error::last_os_error());
        }
        Reach::Wine { .. } => {
            let pid = linux_pid(reach).expect("under Wine");
            let result = linux_kill(pid, SIGINT_ON_LINUX);
            assert_eq!(
                result, 0,
                "kill({pid}, SIGINT) under Wine: errno {}",
                -result
            );
        }
    }
}

/// Under Wine, the Linux PID of the child: what Linux says of it is what Wine leaves out (it answers zero
/// for another process's CPU time). `None` on Windows.
pub fn linux_pid(reach: &Reach) -> Option<i32> {
    match reach {
        Reach::Group => None,
        Reach::Wine {
            marker, unix_pid, ..
        } => Some(*unix_pid.get_or_init(|| find_unix_pid(marker))),
    }
}

/// A file of Linux's `/proc/PID/`, by the path Wine gives it.
pub fn linux_proc_file(pid: i32, file: &str) -> String {
    format!(r"Z:\proc\{pid}\{file}")
}

/// User plus system CPU seconds of every thread of Linux process `pid`, from its `stat` (fields 14 and 15,
/// in clock ticks: 100 a second on Linux).
pub fn linux_cpu_seconds(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(linux_proc_file(pid, "stat")).unwrap_or_default();
    // The name, in parentheses, may hold spaces: count fields after its closing one (field 3 onward).
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: Vec<f64> = after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    ticks.iter().sum::<f64>() / 100.0
}

/// Removes the child's directory once it has exited.
pub fn forget(reach: &Reach) {
    if let Reach::Wine { dir, .. } = reach {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// SIGINT's number on Linux (the libc crate built for Windows has the C runtime's, which agrees, but this
/// is Linux's).
const SIGINT_ON_LINUX: i64 = 2;

/// The Linux process whose working directory holds `marker`, looked for until it appears (it is there
/// once the child has printed its first line, which is when tests stop it, but a bound costs nothing).
fn find_unix_pid(marker: &str) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = std::fs::read_dir(r"Z:\proc")
            .expect(r"Z:\proc: Wine maps drive Z: to /")
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .find(|pid| Path::new(&format!(r"Z:\proc\{pid}\cwd\{marker}")).exists());
        if let Some(pid) = found {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "no Linux process runs in the directory holding {marker}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Linux's `kill(pid, signal)`, made from a Windows program under Wine, which runs its code natively in a
/// Linux process: 0, or minus the errno.
#[cfg(target_arch = "x86_64")]
fn linux_kill(pid: i32, signal: i64) -> i64 {
    /// `kill`'s number in Linux's x86-64 system call table.
    const SYS_KILL: i64 = 62;
    let result: i64;
    // SAFETY: only called under Wine on Linux (`prepare` checks), where this process is a Linux process and
    // `syscall` enters Linux: `kill` reads its two integer arguments and touches no memory of ours. The
    // kernel clobbers rcx and r11, declared here; no stack is used.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") SYS_KILL => result,
            in("rdi") i64::from(pid),
            in("rsi") signal,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    result
}

#[cfg(not(target_arch = "x86_64"))]
fn linux_kill(_pid: i32, _signal: i64) -> i64 {
    panic!("the tests stop a child under Wine on x86-64 Linux only");
}
