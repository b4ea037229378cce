//! Logging for every binary: `log` records to stderr through `env_logger`, so stdout stays for output that
//! scripts read. The level comes from `-v`/`-q`, and `RUST_LOG`, when set, refines it (for one module, say).
//!
//! Walk-through: `docs/09-running.md`.

use log::LevelFilter;

/// Info by default; each `-v` one step more verbose (debug, trace), each `-q` one step quieter (warn, error,
/// off). `RUST_LOG` directives apply on top.
pub fn init(verbose: u8, quiet: u8) {
    let levels = [
        LevelFilter::Off,
        LevelFilter::Error,
        LevelFilter::Warn,
        LevelFilter::Info,
        LevelFilter::Debug,
        LevelFilter::Trace,
    ];
    let index = (3 + i32::from(verbose) - i32::from(quiet)).clamp(0, 5) as usize;
    env_logger::Builder::new()
        .filter_level(levels[index])
        .parse_default_env()
        .format_timestamp_millis()
        .init();
}
