//! `cargo fuzz run upper_carry`: see `socklab_fuzz::upper_carry` (fuzz/src/lib.rs) for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| socklab_fuzz::upper_carry(data));
