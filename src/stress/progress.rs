//! The live view while a run goes on: an `indicatif` bar with the rate, drawn on stderr only when stderr is
//! a terminal, so a piped or scripted run prints nothing but its report.
//!
//! Walk-through: `docs/08-measuring.md`.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::Live;

/// A progress bar, or nothing when stderr is not a terminal.
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new() -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress { bar: None };
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(5));
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed:>4} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        Progress { bar: Some(bar) }
    }

    /// Shows the latest counts (called a few times a second by [`super::run`]).
    pub fn update(&self, live: &Live) {
        let Some(bar) = &self.bar else { return };
        if let Some(total) = live.total {
            bar.set_length(total);
        }
        bar.set_position(live.checked);
        let secs = live.elapsed.as_secs_f64().max(1e-9);
        bar.set_message(format!(
            "{} up · {} sent · {} checked ({:.0}/s) · {} wrong · {} errors",
            live.connected,
            live.sent,
            live.checked,
            live.checked as f64 / secs,
            live.wrong,
            live.errors
        ));
    }

    /// Removes the bar so the report starts on a clean line.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}
