//! EMQX's fold (`exhook_chain::Fold`) over 1, 3 and 10 providers, without I/O: what the
//! gateway's executor does per valued call besides the provider calls themselves.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use exhook_chain::Fold;
use exhook_proto::model::valued_response::{ResponsedType, Value};
use exhook_proto::model::{ClientAuthenticateRequest, ClientInfo, Message, MessagePublishRequest, ValuedResponse};

fn auth_request() -> ClientAuthenticateRequest {
    ClientAuthenticateRequest {
        clientinfo: Some(ClientInfo { clientid: "bench-client-1".into(), username: "u".into(), ..Default::default() }),
        result: true,
        meta: None,
    }
}

fn publish_request() -> MessagePublishRequest {
    MessagePublishRequest {
        message: Some(Message {
            from: "bench-client-1".into(),
            topic: "bench/raw/c1".into(),
            payload: bytes::Bytes::from_static(b"{\"temp\":21.5}"),
            qos: 1,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn bench_fold(c: &mut Criterion) {
    let mut group = c.benchmark_group("fold");
    for n in [1usize, 3, 10] {
        // authenticate: CONTINUE true from every provider but the last, which answers STOP_AND_RETURN.
        group.bench_with_input(BenchmarkId::new("authenticate", n), &n, |b, &n| {
            let request = auth_request();
            b.iter(|| {
                let mut fold = Fold::new(black_box(request.clone()));
                for position in 0..n {
                    let kind = if position + 1 == n { ResponsedType::StopAndReturn } else { ResponsedType::Continue };
                    let response = ValuedResponse { r#type: kind as i32, value: Some(Value::BoolResult(true)) };
                    if fold.on_response(position, black_box(response)).0 == exhook_chain::Flow::Stop {
                        break;
                    }
                }
                black_box(fold.finish())
            })
        });
        // publish: every provider answers CONTINUE with a (decoded, hence owned) message.
        group.bench_with_input(BenchmarkId::new("publish_continue_message", n), &n, |b, &n| {
            let request = publish_request();
            let answer = request.message.clone().expect("set");
            b.iter(|| {
                let mut fold = Fold::new(black_box(request.clone()));
                for position in 0..n {
                    let response = ValuedResponse {
                        r#type: ResponsedType::Continue as i32,
                        value: Some(Value::Message(answer.clone())),
                    };
                    fold.on_response(position, black_box(response));
                }
                black_box(fold.finish())
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = bench_fold
}
criterion_main!(benches);
