//! What per-client order costs a valued call when nothing of its client is queued (the usual
//! case): `NotifyQueues::wait_turn` on the fast path, two atomic loads, no wait. Beside it, a
//! hash of the clientid (which the call computes anyway) for scale.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use exhook_config::Config;
use exhook_upstream::{Provider, hash_key};

fn bench_order(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    // A provider nobody listens for: it is never called here, only its queues are asked.
    let config = Config::parse("[[providers]]\nname = \"p\"\nurl = \"http://127.0.0.1:9\"\n", Path::new("bench"))
        .expect("valid");
    let provider = rt.block_on(async { Provider::new(config.providers[0].clone()) }).expect("provider");
    let until = tokio::time::Instant::now() + Duration::from_secs(3600);
    let key = hash_key("bench-client-1");
    let mut group = c.benchmark_group("order");
    group.bench_function("wait_turn_nothing_pending", |b| {
        b.iter(|| futures::executor::block_on(provider.queues().wait_turn(black_box(key), until)))
    });
    group.bench_function("hash_key_for_scale", |b| b.iter(|| hash_key(black_box("bench-client-1"))));
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = bench_order
}
criterion_main!(benches);
