//! Logging for every binary: `log` records to stderr through `env_logger`, so stdout stays for output that
//! scripts read. The level comes from `-v`/`-q`, and `RUST_LOG`, when set, refines it (for one module, say).
//!
//! Walk-through: `docs/09-running.md`.

use log::LevelFilter;

/// Info by default; each `-v` one step more verbose (debug, trace), each `-q` one step quieter (warn, error,
/// off). `RUST_LOG` directives apply on top.
pub fn init(verbose: u8, quiet: u8) {
    init_with_trace(verbose, quiet, false)
}

/// [`init`], and with `trace` the servers' loops at trace level (`socklab-server --trace`, the same as
/// `RUST_LOG=socklab::server=trace`): one line per stage of each turn (`docs/12-watching.md`).
pub fn init_with_trace(verbose: u8, quiet: u8, trace: bool) {
    let levels = [
        LevelFilter::Off,
        LevelFilter::Error,
        LevelFilter::Warn,
        LevelFilter::Info,
        LevelFilter::Debug,
        LevelFilter::Trace,
    ];
    let index = (3 + i32::from(verbose) - i32::from(quiet)).clamp(0, 5) as usize;
    let mut builder = env_logger::Builder::new();
    builder.filter_level(levels[index]);
    if trace {
        builder.filter_module("socklab::server", LevelFilter::Trace);
    }
    builder.parse_default_env().format_timestamp_millis().init();
}
