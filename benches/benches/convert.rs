//! Package conversion as the gateway does it per call: decode the internal model from the
//! caller's bytes, normalize, shape for the provider's package (`for_version`), encode.
//! v1 → v3 (a 4.x EMQX in front of a 5.9+ provider) and v3 → v1 (the reverse, which copies:
//! v1 has no `peerport`, no publish `props`/`user_props`).

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use exhook_hooks::{HookRequest, Version};
use exhook_loadgen::{Mix, Workload};
use exhook_proto::model::{ClientAuthenticateRequest, MessagePublishRequest};

fn body(mix: Mix, version: Version) -> Bytes {
    Workload::new(mix, version, 1).clients[0][0].body.clone()
}

fn convert<R: HookRequest + prost::Message + Default>(bytes: &Bytes, from: Version, to: Version) -> Bytes {
    let mut request = R::decode(bytes.clone()).expect("valid request");
    request.normalize(from);
    match request.for_version(to) {
        Some(shaped) => shaped.encode_to_vec().into(),
        None => request.encode_to_vec().into(),
    }
}

fn bench_convert(c: &mut Criterion) {
    let mut group = c.benchmark_group("convert");
    for (from, to) in [(Version::V1, Version::V3), (Version::V3, Version::V1), (Version::V3, Version::V3)] {
        let auth = body(Mix::Auth, from);
        group.bench_function(format!("authenticate_{from}_to_{to}"), |b| {
            b.iter(|| black_box(convert::<ClientAuthenticateRequest>(black_box(&auth), from, to)))
        });
        let publish = body(Mix::Publish, from);
        group.bench_function(format!("publish_{from}_to_{to}"), |b| {
            b.iter(|| black_box(convert::<MessagePublishRequest>(black_box(&publish), from, to)))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = bench_convert
}
criterion_main!(benches);
