//! `cargo fuzz run line_framer`: see `socklab_fuzz::line_framer` (fuzz/src/lib.rs) for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| socklab_fuzz::line_framer(data));
