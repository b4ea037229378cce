//! Logging for every binary: `log` records to stderr through `env_logger`, so stdout stays for output that
//! scripts read. The level comes from `-v`/`-q` ([`Verbosity`], one definition every binary can flatten into
//! its flags), and `RUST_LOG`, when set, refines it (for one module, say).
//!
//! The level is socklab's own: `-v` and `-vv` make socklab's modules (and its binaries) say more, while the
//! libraries under it (mio, say) stay at info at most, since their debug and trace lines are about their
//! own insides and would drown ours. `RUST_LOG=mio=trace` still asks for them by name.
//!
//! The tools (`socklab-client`, `socklab-stress`) talk to a person: by default each line reads like a
//! command-line tool's (`socklab-client: connection refused by …`, `socklab-stress: warning: …`), with no
//! timestamp or module path. From `-v` on they print log lines like the server's, timestamped and with the
//! module that wrote them, since then the reader is debugging.
//!
//! Walk-through: `docs/09-running.md`.

use std::io::Write as _;

use log::{Level, LevelFilter};

/// `-v` and `-q`, for a binary's flags (`#[command(flatten)]`). They pull opposite ways, so giving both is a
/// usage error that names the two (exit status 2), not a level picked silently.
#[derive(clap::Args, Clone, Copy, Debug, Default)]
pub struct Verbosity {
    /// More logging: -v debug, -vv trace (socklab's own lines; RUST_LOG=mio=trace for a library's).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Less logging: -q warnings and errors only, -qq errors only, -qqq nothing.
    #[arg(short, long, action = clap::ArgAction::Count, conflicts_with = "verbose")]
    pub quiet: u8,
}

/// The crate's own log targets: its modules (`socklab::…`) and its binaries (`socklab_client`, …) alike.
const OWN_TARGETS: &str = "socklab";

/// Info by default; each `-v` one step more verbose (debug, trace), each `-q` one step quieter (warn, error,
/// off). `RUST_LOG` directives apply on top.
pub fn init(verbose: u8, quiet: u8) {
    init_with_trace(verbose, quiet, false)
}

/// [`init`], and with `trace` the servers' loops at trace level (`socklab-server --trace`, the same as
/// `RUST_LOG=socklab::server=trace`): one line per stage of each turn (`docs/12-watching.md`).
pub fn init_with_trace(verbose: u8, quiet: u8, trace: bool) {
    let mut builder = builder(verbose, quiet);
    if trace {
        builder.filter_module("socklab::server", LevelFilter::Trace);
    }
    builder.parse_default_env().format_timestamp_millis().init();
}

/// For a tool a person runs (`program` is its name): [`init`]'s levels, and at the default verbosity or
/// quieter, lines that read like a command-line tool's: `program: message`, `program: warning: message`.
pub fn init_tool(program: &'static str, verbosity: Verbosity) {
    let mut builder = builder(verbosity.verbose, verbosity.quiet);
    builder.parse_default_env();
    if verbosity.verbose == 0 {
        builder.format(move |out, record| match record.level() {
            Level::Warn => writeln!(out, "{program}: warning: {}", record.args()),
            _ => writeln!(out, "{program}: {}", record.args()),
        });
    } else {
        builder.format_timestamp_millis();
    }
    builder.init();
}

/// The level `-v`/`-q` ask for: info, then one step per flag.
pub fn level(verbose: u8, quiet: u8) -> LevelFilter {
    const LEVELS: [LevelFilter; 6] = [
        LevelFilter::Off,
        LevelFilter::Error,
        LevelFilter::Warn,
        LevelFilter::Info,
        LevelFilter::Debug,
        LevelFilter::Trace,
    ];
    LEVELS[(3 + i32::from(verbose) - i32::from(quiet)).clamp(0, 5) as usize]
}

/// `level` for socklab's own targets; never more than info for anyone else's.
fn builder(verbose: u8, quiet: u8) -> env_logger::Builder {
    let level = level(verbose, quiet);
    let mut builder = env_logger::Builder::new();
    builder
        .filter_level(level.min(LevelFilter::Info))
        .filter_module(OWN_TARGETS, level);
    builder
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Flags {
        #[command(flatten)]
        verbosity: Verbosity,
    }

    #[test]
    fn each_flag_is_one_step_and_both_together_are_refused() {
        assert_eq!(level(0, 0), LevelFilter::Info);
        assert_eq!(level(2, 0), LevelFilter::Trace);
        assert_eq!(level(9, 0), LevelFilter::Trace);
        assert_eq!(level(0, 1), LevelFilter::Warn);
        assert_eq!(level(0, 3), LevelFilter::Off);
        let flags = Flags::try_parse_from(["tool", "-vv"]).unwrap();
        assert_eq!(flags.verbosity.verbose, 2);
        let err = Flags::try_parse_from(["tool", "-v", "-q"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
        assert!(err.to_string().contains("cannot be used with"), "{err}");
    }

    #[test]
    fn verbosity_is_socklabs_and_libraries_stay_at_info() {
        use log::{Log, Metadata};
        let logger = builder(2, 0).build();
        let at = |target: &str, level: Level| {
            logger.enabled(&Metadata::builder().target(target).level(level).build())
        };
        assert!(at("socklab::stress::tcp", Level::Trace));
        assert!(at("socklab_stress", Level::Trace));
        assert!(
            !at("mio::poll", Level::Trace),
            "-vv must not turn on mio's TRACE"
        );
        assert!(!at("mio::poll", Level::Debug));
        assert!(at("mio::poll", Level::Info));
        let quiet = builder(0, 1).build();
        let enabled = |target: &str| {
            quiet.enabled(
                &Metadata::builder()
                    .target(target)
                    .level(Level::Info)
                    .build(),
            )
        };
        assert!(!enabled("socklab_client") && !enabled("mio"));
    }
}
