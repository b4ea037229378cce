//! `cargo fuzz run http_session`: see `socklab_fuzz::http_session` (fuzz/src/lib.rs) for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| socklab_fuzz::http_session(data));
