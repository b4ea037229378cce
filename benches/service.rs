//! The service on its own, with no sockets: how many bytes per second a core uppercases. Run with
//! `cargo bench --bench service`. End-to-end numbers come from `socklab-stress`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use socklab::service::{Clock, Service};

fn inputs(size: usize) -> Vec<(&'static str, Vec<u8>)> {
    let take = |pattern: &[u8]| {
        pattern
            .iter()
            .copied()
            .cycle()
            .take(size)
            .collect::<Vec<u8>>()
    };
    vec![
        (
            "ascii",
            take(b"the quick brown fox jumps over the lazy dog\n"),
        ),
        (
            "mixed-utf8",
            take("straße café 你好 hello world ".as_bytes()),
        ),
        ("invalid", take(b"ab\xff\xfe\xc3(\xe4\xb8x")),
    ]
}

fn service(c: &mut Criterion) {
    let mut group = c.benchmark_group("upper");
    for size in [64, 1024, 64 * 1024] {
        for (name, input) in inputs(size) {
            group.throughput(Throughput::Bytes(size as u64));
            let mut out = Vec::with_capacity(4 * size);
            group.bench_with_input(
                BenchmarkId::new(format!("stream/{name}"), size),
                &input,
                |b, input| {
                    let mut session = Service::Upper.session();
                    let clock = Clock::new();
                    b.iter(|| {
                        out.clear();
                        session.feed(&clock, input, &mut out);
                        out.len()
                    })
                },
            );
            group.bench_with_input(
                BenchmarkId::new(format!("datagram/{name}"), size),
                &input,
                |b, input| {
                    b.iter(|| {
                        out.clear();
                        Service::Upper.datagram(input, &mut out);
                        out.len()
                    })
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, service);
criterion_main!(benches);
