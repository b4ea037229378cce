//! The architecture's rules, checked on the sources so that a change that breaks one fails here rather than
//! in a reviewer's memory:
//!
//! - a driver (a mode's loop, under `src/server/`) only waits and moves bytes: it never names a service or
//!   touches a `Session`. Services are reached through the connection core (`src/server/connection/`),
//!   and `config.rs` turns flags into service options;
//! - no code outside `src/service/` names a particular service: the server, the client and the load
//!   generator reach every service through the registry (`Service::ALL` and its methods), so adding one is
//!   one file and one line (a default is `Service::default()`, the registry's own). Unit tests (after
//!   `#[cfg(test)]`) and the binaries' defaults are the exceptions, listed below with their reasons.

use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source's lines with comments removed (whole-line `//` comments and the tails after ` // `), each with
/// its number.
fn code_lines(source: &str) -> Vec<(usize, String)> {
    source
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
        .map(|(i, l)| (i + 1, l.split(" // ").next().unwrap_or("").to_string()))
        .collect()
}

/// Every line of the files under `dir` (except those `exempt`) that contains one of `words`, before the
/// file's unit tests (a file's `#[cfg(test)]` module comes last, by this project's convention).
fn offending(dir: &str, exempt: &[&str], words: &[&str]) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(&root().join(dir), &mut files);
    let mut found = Vec::new();
    for file in files {
        // With `/` between the parts on every OS, as the exemptions are written (Windows joins the
        // directory's entries with `\`).
        let shown = file
            .strip_prefix(root())
            .unwrap()
            .components()
            .map(|part| part.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        if exempt.iter().any(|e| shown.starts_with(e)) {
            continue;
        }
        let source = fs::read_to_string(&file).unwrap();
        let source = source.split("#[cfg(test)]").next().unwrap_or("");
        for (n, line) in code_lines(source) {
            if let Some(word) = words.iter().find(|w| line.contains(*w)) {
                found.push(format!("{shown}:{n}: `{word}` in: {}", line.trim()));
            }
        }
    }
    found
}

#[test]
fn no_driver_names_a_service_or_touches_a_session() {
    let found = offending(
        "src/server",
        &["src/server/connection/", "src/server/config.rs"],
        &["service::", "Session"],
    );
    assert!(
        found.is_empty(),
        "a driver reaches into the service layer (go through the connection core instead):\n{}",
        found.join("\n")
    );
}

/// `Service::Upper` and `service::hello`, for every listed service.
fn names_of_services() -> Vec<String> {
    socklab::service::Service::ALL
        .iter()
        .flat_map(|service| {
            [
                format!("Service::{service:?}"),
                format!("service::{}", service.name().replace('-', "_")),
            ]
        })
        .collect()
}

#[test]
fn no_code_outside_the_services_names_one() {
    let names = names_of_services();
    let words: Vec<&str> = names.iter().map(String::as_str).collect();
    let found = offending(
        "src",
        &[
            "src/service/",
            // The binaries' defaults (`--service upper`, `--expect upper`) name the tutorials' service.
            "src/bin/",
            // A unit-test file of the connection core, which drives real services through it.
            "src/server/connection/tests.rs",
        ],
        &words,
    );
    assert!(
        found.is_empty(),
        "code outside src/service/ names a particular service (go through the registry instead):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_scan_sees_what_it_looks_for() {
    // The scan itself must be able to fail: the core, which is allowed to, does name the session.
    let found = offending("src/server/connection", &[], &["Session"]);
    assert!(!found.is_empty());
    let names = names_of_services();
    assert!(
        names.contains(&"Service::Upper".to_string())
            && names.contains(&"service::http_floor".to_string())
    );
    assert!(
        code_lines("    // service::x\nuse a::service::b; // service::c")
            .iter()
            .all(|(_, l)| !l.contains("service::c"))
    );
}
