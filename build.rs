//! Finds, when the crate is built, what some tests drive but no one here wrote: programs on `PATH` (curl,
//! ApacheBench, headless Chromium, Node, nc, Python, sh), a Python module (h11), the IPv6 loopback, and on
//! Linux whether io_uring can run (for `--mode uring`'s tests). Each
//! found is a cfg (`has_curl`, ...), and a test that needs one is marked
//! `#[cfg_attr(not(has_curl), ignore = "...")]`: where it is missing, `cargo test` lists that test as ignored,
//! with the reason, rather than counting a test that never ran as passed.
//!
//! With `SOCKLAB_REQUIRE_TOOLS=1` (`.ci/run` sets it, after installing them) a missing one fails the build
//! instead, naming it: on CI every test must run. (Not for another target, below: there those tests do not
//! apply.)
//!
//! A build for another target (Windows under Wine, say) finds none of them: the host's programs are not the
//! target's, and the tests that drive them do not run there.
//!
//! The result is kept until `PATH` or `SOCKLAB_REQUIRE_TOOLS` changes: after installing a program into a
//! folder already on `PATH`, `touch build.rs` to look again.

use std::env;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The cfg each program sets, its name on `PATH`, and where it comes from (Debian's package).
const PROGRAMS: &[(&str, &str, &str)] = &[
    ("has_sh", "sh", "dash"),
    ("has_nc", "nc", "netcat-openbsd"),
    ("has_curl", "curl", "curl"),
    ("has_ab", "ab", "apache2-utils"),
    ("has_chromium", "chromium", "chromium"),
    ("has_node", "node", "nodejs"),
    ("has_python3", "python3", "python3"),
];

/// The cfg each Python module sets, and its name (from PyPI: `python3 -m pip install NAME`).
const PYTHON_MODULES: &[(&str, &str)] = &[("has_python_h11", "h11")];

/// Set when `::1` can be bound: the IPv6 loopback the tests serve on besides 127.0.0.1.
const IPV6: &str = "has_ipv6_loopback";

/// Set for a Windows build whose tests run under Wine (`.ci/wine-test`: Cargo's runner for the target is
/// `wine`). Wine runs every test, but its sockets go through a server process (wineserver) and are many
/// times slower than Windows' or Linux's: a test that measures fairness or CPU under a heavy load is
/// marked `#[cfg_attr(wine, ignore = "...")]` there, with the reason, rather than judged on Wine's speed.
const WINE: &str = "wine";

/// Set on Linux when `--mode uring` can run here: a kernel of 6.1 or later (its ring is single-issuer with
/// deferred completions) with io_uring not disabled (`kernel.io_uring_disabled`). A sandbox that filters
/// `io_uring_setup` is not seen from here; the server itself refuses to start there, with the reason.
const IO_URING: &str = "has_io_uring";

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=PATH");
    println!("cargo::rerun-if-env-changed=SOCKLAB_REQUIRE_TOOLS");
    let names = PROGRAMS
        .iter()
        .map(|p| p.0)
        .chain(PYTHON_MODULES.iter().map(|m| m.0))
        .chain([IPV6, IO_URING, WINE]);
    for cfg in names {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
    }

    // Only a build for the machine it runs on can look: the tests run where they were built.
    let native = env::var("TARGET").ok() == env::var("HOST").ok()
        && env::var("CARGO_CFG_TARGET_FAMILY").is_ok_and(|f| f.split(',').any(|f| f == "unix"));
    let mut missing = Vec::new();
    for &(cfg, program, package) in PROGRAMS {
        if native && on_path(program).is_some() {
            println!("cargo::rustc-cfg={cfg}");
        } else {
            missing.push(format!("{program} (Debian's {package})"));
        }
    }
    let python = if native { on_path("python3") } else { None };
    for &(cfg, module) in PYTHON_MODULES {
        if python.as_ref().is_some_and(|p| imports(p, module)) {
            println!("cargo::rustc-cfg={cfg}");
        } else {
            missing.push(format!(
                "python3's {module} (python3 -m pip install {module})"
            ));
        }
    }
    if native && std::net::TcpListener::bind("[::1]:0").is_ok() {
        println!("cargo::rustc-cfg={IPV6}");
    } else {
        missing.push("the IPv6 loopback, ::1".to_string());
    }

    let target = env::var("TARGET").unwrap_or_default();
    let runner = format!(
        "CARGO_TARGET_{}_RUNNER",
        target.to_uppercase().replace(['-', '.'], "_")
    );
    println!("cargo::rerun-if-env-changed={runner}");
    let windows = env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "windows");
    if windows && env::var(&runner).is_ok_and(|r| r.contains("wine")) {
        println!("cargo::rustc-cfg={WINE}");
    }

    let linux = env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    if native && linux {
        if io_uring_usable() {
            println!("cargo::rustc-cfg={IO_URING}");
        } else {
            missing.push("io_uring (Linux 6.1 or later, kernel.io_uring_disabled = 0)".to_string());
        }
    }

    let required = env::var_os("SOCKLAB_REQUIRE_TOOLS").is_some_and(|v| v == "1");
    if required && native && !missing.is_empty() {
        panic!(
            "SOCKLAB_REQUIRE_TOOLS=1, and tests would be ignored for want of: {}",
            missing.join(", ")
        );
    }
}

/// The first executable file called `name` in a folder of `PATH`, as a shell would find it.
/// (Only called for a native Unix build, whose host is the target.)
#[cfg(unix)]
fn on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|file| {
            file.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(not(unix))]
fn on_path(_name: &str) -> Option<PathBuf> {
    None
}

/// Whether `python` can import `module`.
fn imports(python: &PathBuf, module: &str) -> bool {
    Command::new(python)
        .args(["-c", &format!("import {module}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether this Linux kernel is 6.1 or later and lets processes use io_uring.
fn io_uring_usable() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    let recent = matches!((numbers.next(), numbers.next()), (Some(major), Some(minor)) if (major, minor) >= (6, 1));
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .is_ok_and(|v| v.trim() != "0");
    recent && !disabled
}
