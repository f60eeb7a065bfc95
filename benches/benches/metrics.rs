//! Metrics recording per call (`exhook_metrics::Handles`), as the gateway does it for one
//! valued EMQX call: the request (counter + duration histogram), each provider call (counter +
//! duration histogram) and the chain's decision.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use exhook_hooks::Hook;
use exhook_metrics::{CallResult, Metrics, Outcome};

fn bench_metrics(c: &mut Criterion) {
    let metrics = Metrics::new();
    let handles = metrics.handles(&["default", "factory-a"], &["p0", "p1", "p2", "p3", "p4"]);
    let elapsed = Duration::from_micros(87);
    let mut group = c.benchmark_group("metrics");
    group.bench_function("request", |b| {
        b.iter(|| handles.request(black_box(0), Hook::ClientAuthenticate, Outcome::Stop, black_box(elapsed)))
    });
    group.bench_function("provider_call", |b| {
        b.iter(|| handles.provider_call(black_box(0), Hook::ClientAuthenticate, CallResult::Stop, Some(elapsed)))
    });
    for n in [1usize, 3] {
        group.bench_with_input(BenchmarkId::new("valued_call_chain", n), &n, |b, &n| {
            b.iter(|| {
                for p in 0..n {
                    let result = if p + 1 == n { CallResult::Stop } else { CallResult::Continue };
                    handles.provider_call(black_box(p), Hook::ClientAuthenticate, result, Some(elapsed));
                }
                handles.decision(0, Hook::ClientAuthenticate, Some(n - 1));
                handles.request(0, Hook::ClientAuthenticate, Outcome::Stop, black_box(elapsed));
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = bench_metrics
}
criterion_main!(benches);
