//! What a process costs: CPU seconds, threads, descriptors, resident memory. The tests, the benches and
//! anyone measuring a server use these, so every figure is read the same way. Linux reads them from
//! `/proc`, Windows from the Win32 API; macOS and FreeBSD give only this process's CPU time (the OS layer,
//! `src/sys/mod.rs`, says what each OS gives). A process that is gone, or a figure the OS cannot give, reads
//! as zero rather than failing a measurement. Walk-through: `docs/08-measuring.md`.

pub use crate::sys::{cpu_seconds, fd_count, resident_kib, thread_count};
