//! Windows, through windows-sys: the listener's `SO_EXCLUSIVEADDRUSE` and the `WSAEACCES` a port held with
//! it answers; no resource limits to read or raise; the console's stops (Ctrl-C, Ctrl-Break, closing the
//! console), where Unix has SIGINT and SIGTERM; and a process's figures from the Win32 API where Linux
//! reads `/proc`: `GetProcessTimes`, a Toolhelp snapshot, `GetProcessHandleCount`, the working set. Part of
//! the OS layer (`src/sys/mod.rs`); walk-through: `docs/13-operating-systems.md`.

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::os::windows::io::{AsRawHandle, AsRawSocket, FromRawHandle, OwnedHandle};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use windows_sys::core::BOOL;
use windows_sys::Win32::Foundation::{FALSE, FILETIME, INVALID_HANDLE_VALUE, TRUE};
use windows_sys::Win32::Networking::WinSock::{
    getsockopt, setsockopt, SOCKET, SOCKET_ERROR, SOL_SOCKET, SO_EXCLUSIVEADDRUSE, WSAEACCES,
};
use windows_sys::Win32::System::Console::{
    SetConsoleCtrlHandler, CTRL_BREAK_EVENT, CTRL_CLOSE_EVENT, CTRL_C_EVENT, CTRL_LOGOFF_EVENT,
    CTRL_SHUTDOWN_EVENT,
};
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, Process32FirstW, Process32NextW, PROCESSENTRY32W, TH32CS_SNAPPROCESS,
};
use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleA, GetProcAddress};
use windows_sys::Win32::System::ProcessStatus::{K32GetProcessMemoryInfo, PROCESS_MEMORY_COUNTERS};
use windows_sys::Win32::System::Threading::{
    GetProcessHandleCount, GetProcessTimes, OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION,
    PROCESS_VM_READ,
};

use super::Limit;

// ---------------------------------------------------------------------------------------------------------
// Limits

/// The most handles one process may hold: a fixed ceiling of the kernel (2^24), not a setting. Sockets are
/// handles; nothing else limits how many a process opens, short of memory.
const HANDLES_PER_PROCESS: u64 = 1 << 24;

/// How many descriptors this process may open: Windows has no `ulimit -n`, only the handle ceiling.
pub fn open_files() -> Limit {
    Limit {
        soft: Some(HANDLES_PER_PROCESS),
        hard: Some(HANDLES_PER_PROCESS),
    }
}

/// Nothing to raise: the handle ceiling is all there is.
pub fn raise_open_files() -> io::Result<Limit> {
    Ok(open_files())
}

/// No per-user limit on processes and threads.
pub fn task_limit() -> Option<u64> {
    None
}

/// No per-process limit on address space.
pub fn address_space_limit() -> Option<u64> {
    None
}

// ---------------------------------------------------------------------------------------------------------
// Sockets

/// Windows has no privileged ports: a port is refused only because someone holds it (or the system
/// reserved its range).
pub const LOW_PORTS_NEED_PRIVILEGE: bool = false;

fn raw(socket: &socket2::Socket) -> SOCKET {
    socket.as_raw_socket() as SOCKET
}

/// `SO_EXCLUSIVEADDRUSE` on a listener before `bind`: no other socket may bind its port, whatever options
/// it sets. `SO_REUSEADDR`, the Unix habit, would on Windows let a second server bind a port already in
/// use (std, mio and tokio never set it there). A restarted server still binds at once, since the old
/// connections in `TIME_WAIT` do not hold the listening port.
pub fn set_listener_reuse(socket: &socket2::Socket) -> io::Result<()> {
    let on: i32 = 1;
    // SAFETY: the socket is open and ours for the call; the option value is an i32 we own, of the length we
    // pass; setsockopt only reads it.
    let rc = unsafe {
        setsockopt(
            raw(socket),
            SOL_SOCKET,
            SO_EXCLUSIVEADDRUSE,
            (&on as *const i32).cast(),
            size_of::<i32>() as i32,
        )
    };
    if rc == SOCKET_ERROR {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether `SO_EXCLUSIVEADDRUSE` is set on `socket`.
pub fn exclusive_address_use(socket: &socket2::Socket) -> io::Result<bool> {
    let mut value: i32 = 0;
    let mut len = size_of::<i32>() as i32;
    // SAFETY: the socket is open and ours for the call; getsockopt writes at most `len` bytes into `value`,
    // an i32 we own, and the length it wrote into `len`.
    let rc = unsafe {
        getsockopt(
            raw(socket),
            SOL_SOCKET,
            SO_EXCLUSIVEADDRUSE,
            (&mut value as *mut i32).cast(),
            &mut len,
        )
    };
    if rc == SOCKET_ERROR {
        return Err(io::Error::last_os_error());
    }
    Ok(value != 0)
}

/// Whether the error is `WSAEACCES`: what `bind` answers for a port held with `SO_EXCLUSIVEADDRUSE`, or in
/// a range the system reserved (`netsh interface ipv4 show excludedportrange protocol=tcp`).
fn is_access_denied(e: &io::Error) -> bool {
    e.raw_os_error() == Some(WSAEACCES)
}

/// Whether a failed `bind` means the port is taken: `WSAEADDRINUSE`, or `WSAEACCES`.
pub fn is_address_in_use(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::AddrInUse || is_access_denied(e)
}

/// Whether a non-blocking `connect` that returned `e` is merely under way: `WSAEWOULDBLOCK` there.
pub fn connect_in_progress(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

// ---------------------------------------------------------------------------------------------------------
// What a process costs

/// A handle on process `pid` with `access`, closed when dropped; `None` if it is gone or out of reach.
fn open(pid: u32, access: u32) -> Option<OwnedHandle> {
    // SAFETY: OpenProcess takes no pointers; a non-null result is a new handle that we now own.
    let handle = unsafe { OpenProcess(access, 0, pid) };
    if handle.is_null() {
        return None;
    }
    // SAFETY: `handle` is open, and owned by nothing else.
    Some(unsafe { OwnedHandle::from_raw_handle(handle) })
}

/// User plus system CPU time of the whole process, in seconds (`GetProcessTimes`).
pub fn cpu_seconds(pid: u32) -> f64 {
    let Some(process) = open(pid, PROCESS_QUERY_LIMITED_INFORMATION) else {
        return 0.0;
    };
    let mut times = [FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    }; 4];
    let [creation, exit, kernel, user] = &mut times;
    // SAFETY: the handle is open for the call; each pointer is to a FILETIME we own, which it fills in.
    if unsafe { GetProcessTimes(process.as_raw_handle(), creation, exit, kernel, user) } == 0 {
        return 0.0;
    }
    // FILETIMEs count 100 ns.
    let seconds = |t: &FILETIME| {
        ((u64::from(t.dwHighDateTime) << 32) | u64::from(t.dwLowDateTime)) as f64 / 1e7
    };
    seconds(kernel) + seconds(user)
}

/// Handles of every kind the process holds, sockets among them (`GetProcessHandleCount`).
pub fn fd_count(pid: u32) -> usize {
    let Some(process) = open(pid, PROCESS_QUERY_LIMITED_INFORMATION) else {
        return 0;
    };
    let mut count = 0u32;
    // SAFETY: the handle is open for the call; `count` is a u32 we own, which it fills in.
    if unsafe { GetProcessHandleCount(process.as_raw_handle(), &mut count) } == 0 {
        return 0;
    }
    count as usize
}

/// Resident memory of the process, in KiB: its working set (`GetProcessMemoryInfo`).
pub fn resident_kib(pid: u32) -> u64 {
    let Some(process) = open(pid, PROCESS_QUERY_LIMITED_INFORMATION | PROCESS_VM_READ) else {
        return 0;
    };
    let mut counters = MaybeUninit::<PROCESS_MEMORY_COUNTERS>::zeroed();
    let size = size_of::<PROCESS_MEMORY_COUNTERS>() as u32;
    // SAFETY: the handle is open for the call; `counters` is `size` bytes, which is all it writes.
    if unsafe { K32GetProcessMemoryInfo(process.as_raw_handle(), counters.as_mut_ptr(), size) } == 0
    {
        return 0;
    }
    // SAFETY: all-zero bytes are valid counters (integers only), and the call filled them in.
    let counters = unsafe { counters.assume_init() };
    counters.WorkingSetSize as u64 / 1024
}

/// Threads of the process, from a Toolhelp snapshot of every process (the one call that counts another
/// process's threads without walking them).
pub fn thread_count(pid: u32) -> usize {
    // SAFETY: CreateToolhelp32Snapshot takes no pointers; a result other than INVALID_HANDLE_VALUE is a new
    // handle that we now own.
    let snapshot = unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0) };
    if snapshot == INVALID_HANDLE_VALUE {
        return 0;
    }
    // SAFETY: `snapshot` is open, and owned by nothing else.
    let snapshot = unsafe { OwnedHandle::from_raw_handle(snapshot) };
    // SAFETY: all-zero bytes are a valid PROCESSENTRY32W (integers and arrays of them).
    let mut entry: PROCESSENTRY32W = unsafe { std::mem::zeroed() };
    // The API wants the struct's size before the first call.
    entry.dwSize = size_of::<PROCESSENTRY32W>() as u32;
    // SAFETY: the snapshot is open for the call; `entry` is ours, with its size set, and is all it writes.
    let mut more = unsafe { Process32FirstW(snapshot.as_raw_handle(), &mut entry) } != 0;
    while more {
        if entry.th32ProcessID == pid {
            return entry.cntThreads as usize;
        }
        // SAFETY: as for Process32FirstW.
        more = unsafe { Process32NextW(snapshot.as_raw_handle(), &mut entry) } != 0;
    }
    0
}

// ---------------------------------------------------------------------------------------------------------
// Console stops: what a Windows user sends where a Unix user sends SIGINT or SIGTERM

/// What the console handler does with each stop, set by the server's `catch_signals`: `None` until the first
/// call, which also installs the handler.
type OnStop = Arc<dyn Fn(&'static str) + Send + Sync>;
static ON_STOP: Mutex<Option<OnStop>> = Mutex::new(None);

/// Whether the server's run has ended, for a handler that must not return before it does.
static FINISHED: Mutex<bool> = Mutex::new(false);
static FINISHED_CHANGED: Condvar = Condvar::new();

/// How long a handler for a closing console waits for the server to deliver what it owes: Windows ends
/// the process 5 s after the event whatever the handler does, and at once when it returns.
const CLOSE_WAIT: Duration = Duration::from_millis(4500);

/// The stops a console sends, by the names the log gives them; `None` for an event this server leaves to
/// the next handler.
pub fn console_stop_name(ctrl_type: u32) -> Option<&'static str> {
    match ctrl_type {
        CTRL_C_EVENT => Some("Ctrl-C"),
        CTRL_BREAK_EVENT => Some("Ctrl-Break"),
        CTRL_CLOSE_EVENT => Some("the console closing"),
        CTRL_LOGOFF_EVENT => Some("logoff"),
        CTRL_SHUTDOWN_EVENT => Some("system shutdown"),
        _ => None,
    }
}

/// The console's handler, run by Windows on a thread of its own for each event: hands the stop to the
/// server. For a closing console (or a logoff or shutdown) it then waits for the server's run to end, at
/// most [`CLOSE_WAIT`], because the process ends the moment it returns.
extern "system" fn console_handler(ctrl_type: u32) -> BOOL {
    let on_stop = ON_STOP.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let (Some(name), Some(on_stop)) = (console_stop_name(ctrl_type), on_stop) else {
        return FALSE;
    };
    on_stop(name);
    if !matches!(ctrl_type, CTRL_C_EVENT | CTRL_BREAK_EVENT) {
        let finished = FINISHED.lock().unwrap_or_else(|e| e.into_inner());
        let _ = FINISHED_CHANGED.wait_timeout_while(finished, CLOSE_WAIT, |done| !*done);
    }
    TRUE
}

/// Ctrl-C, Ctrl-Break, closing the console, logoff and shutdown each call `on_stop` with their name, on a
/// thread the console starts: the first begins the graceful shutdown, the second ends it at once, as
/// SIGINT and SIGTERM do on Unix. The binary calls this once; a later call (the next server a test process
/// runs) takes the stops over from the earlier one, and a closing console then waits for its run.
pub fn catch_console_stops(on_stop: Box<dyn Fn(&'static str) + Send + Sync>) -> io::Result<()> {
    let mut target = ON_STOP.lock().unwrap_or_else(|e| e.into_inner());
    if target.is_none() {
        // SAFETY: the handler is a plain function that lives for the whole program, which is all
        // SetConsoleCtrlHandler asks of it; it touches only statics made for it.
        if unsafe { SetConsoleCtrlHandler(Some(console_handler), TRUE) } == 0 {
            return Err(io::Error::last_os_error());
        }
    }
    *target = Some(Arc::from(on_stop));
    *FINISHED.lock().unwrap_or_else(|e| e.into_inner()) = false;
    Ok(())
}

/// The server's run has ended: a handler waiting for a closing console may return, and the process end.
pub fn console_stops_finished() {
    *FINISHED.lock().unwrap_or_else(|e| e.into_inner()) = true;
    FINISHED_CHANGED.notify_all();
}

/// What the console handler does for `ctrl_type`, called directly. Ctrl-Break and closing the console
/// cannot be generated under Wine 8 (`GenerateConsoleCtrlEvent` is refused), so the tests reach the handler
/// this way; on Windows the console calls it. Returns whether it handled the event.
pub fn simulate_console_stop(ctrl_type: u32) -> bool {
    console_handler(ctrl_type) != 0
}

// ---------------------------------------------------------------------------------------------------------
// Wine

/// Whether this process runs under Wine rather than Windows: Wine's ntdll exports `wine_get_version`, which
/// Windows' does not. Tests use it to name what Wine leaves out (it answers 0 to `GetProcessHandleCount`,
/// for one) rather than fail on it; the library behaves the same either way.
pub fn is_wine() -> bool {
    // SAFETY: both calls take NUL-terminated names that live for the program; GetModuleHandleA returns a
    // handle it keeps owning (ntdll is loaded in every process), which is only passed on, never closed.
    unsafe {
        let ntdll = GetModuleHandleA(c"ntdll.dll".as_ptr().cast());
        !ntdll.is_null() && GetProcAddress(ntdll, c"wine_get_version".as_ptr().cast()).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_reads_as_alive() {
        let me = std::process::id();
        assert!(thread_count(me) >= 1);
        if is_wine() {
            eprintln!("Wine answers 0 to GetProcessHandleCount: the handle count is not checked");
        } else {
            assert!(fd_count(me) >= 3);
        }
        assert!(resident_kib(me) > 0);
        assert!(cpu_seconds(me) > 0.0);
        assert_eq!(thread_count(u32::MAX), 0, "no such process");
    }
}
