//! What a live trace costs each EMQX call: the server's per-call question
//! (`observe::trace_scope` + `in_scope`) and one chain step and answer delivered to the
//! observer — with the no-op observer (the gateway before live traces), and with the trace
//! hub with no viewer open (the default), one viewer for another client, and one viewer
//! following this client (events built and queued; the queue is drained each iteration).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use exhook_admin::{TraceFilter, TraceHub};
use exhook_chain::{Ending, StepOutcome};
use exhook_hooks::Hook;
use exhook_proto::model::{self, ClientAuthenticateRequest, ValuedResponse, valued_response};
use exhook_server::observe::{CallEvent, MemberMode, StepEvent, StepResult, in_scope, trace_scope};
use exhook_server::{NoopObserver, Observer};
use futures::FutureExt;

fn request() -> ClientAuthenticateRequest {
    ClientAuthenticateRequest {
        clientinfo: Some(model::ClientInfo {
            clientid: "dev-17".into(),
            username: "alice".into(),
            password: "s3cret".into(),
            ..Default::default()
        }),
        result: true,
        meta: None,
    }
}

/// One call as the server runs it: the trace question, then (inside the call's future) one
/// step and the answer.
fn call(observer: &dyn Observer, request: &ClientAuthenticateRequest, response: &ValuedResponse) {
    let scope = trace_scope(observer, "default", request);
    in_scope(scope, events(observer, response)).now_or_never().expect("ready");
}

/// The same call as the server ran it before live traces: no question, the bare future.
fn call_before(observer: &dyn Observer, response: &ValuedResponse) {
    events(observer, response).now_or_never().expect("ready");
}

/// One step and the answer, as the chain reports them.
async fn events(observer: &dyn Observer, response: &ValuedResponse) {
    {
        let copy = observer.wants_values().then(|| response.clone());
        observer.step(&StepEvent {
            tenant: "default",
            hook: Hook::ClientAuthenticate,
            provider: "auth",
            result: StepResult::Answered(StepOutcome::Continue, copy.as_ref()),
            elapsed: Duration::from_micros(40),
            mode: MemberMode::Decisive,
            cached: false,
        });
        observer.call(&CallEvent {
            tenant: "default",
            hook: Hook::ClientAuthenticate,
            valued: Some((response, Ending::Continued)),
            elapsed: Duration::from_micros(60),
        });
    }
}

fn bench_trace(c: &mut Criterion) {
    let request = request();
    let response = ValuedResponse {
        r#type: valued_response::ResponsedType::Continue as i32,
        value: Some(valued_response::Value::BoolResult(true)),
    };
    let mut group = c.benchmark_group("trace");
    let noop = NoopObserver;
    group.bench_function("before_noop_observer", |b| b.iter(|| call_before(black_box(&noop), &response)));
    group.bench_function("noop_observer", |b| b.iter(|| call(black_box(&noop), black_box(&request), &response)));
    let hub = Arc::new(TraceHub::default());
    group.bench_function("hub_no_viewer", |b| b.iter(|| call(black_box(&*hub), black_box(&request), &response)));
    let other = TraceFilter { clientid: Some("someone-else".into()), ..TraceFilter::default() };
    let (guard, _rx) = hub.open(other).expect("viewer");
    group.bench_function("hub_viewer_other_client", |b| {
        b.iter(|| call(black_box(&*hub), black_box(&request), &response))
    });
    drop(guard);
    let this = TraceFilter { clientid: Some("dev-17".into()), ..TraceFilter::default() };
    let (_guard, mut rx) = hub.open(this).expect("viewer");
    group.bench_function("hub_viewer_this_client", |b| {
        b.iter(|| {
            call(black_box(&*hub), black_box(&request), &response);
            while rx.try_recv().is_ok() {}
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench_trace
}
criterion_main!(benches);
