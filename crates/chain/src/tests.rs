use super::*;
use exhook_proto::model::{ClientAuthenticateRequest, Message, MessagePublishRequest};
use proptest::prelude::*;

fn resp(kind: ResponsedType, value: Option<Value>) -> ValuedResponse {
    ValuedResponse { r#type: kind as i32, value }
}
fn b(x: bool) -> Option<Value> {
    Some(Value::BoolResult(x))
}
fn auth(result: bool) -> ClientAuthenticateRequest {
    ClientAuthenticateRequest { result, ..Default::default() }
}
fn msg(topic: &str, payload: &str) -> Message {
    Message { topic: topic.into(), payload: payload.as_bytes().to_vec().into(), qos: 1, ..Default::default() }
}

#[test]
fn empty_fold_is_ignore() {
    let (r, e) = Fold::new(auth(true)).finish();
    assert_eq!(r, resp(ResponsedType::Ignore, None));
    assert_eq!(e, Ending::AllIgnored);
}

#[test]
fn continue_replaces_and_next_sees_it() {
    let mut f = Fold::new(auth(true));
    assert_eq!(f.on_response(0, resp(ResponsedType::Continue, b(false))), (Flow::Next, StepOutcome::Continue));
    assert!(!f.current().result, "next provider sees the folded value");
    assert_eq!(f.on_response(1, resp(ResponsedType::Ignore, b(true))), (Flow::Next, StepOutcome::Ignore));
    assert!(!f.current().result, "IGNORE keeps the value whatever it carries");
    let (r, e) = f.finish();
    assert_eq!(r, resp(ResponsedType::Continue, b(false)));
    assert_eq!(e, Ending::Continued);
}

#[test]
fn all_ignore_answers_ignore() {
    let mut f = Fold::new(auth(false));
    f.on_response(0, resp(ResponsedType::Ignore, None));
    f.on_response(1, resp(ResponsedType::Ignore, b(true)));
    assert_eq!(f.finish().0, resp(ResponsedType::Ignore, None));
}

#[test]
fn stop_and_return_ends_with_its_value() {
    let mut f = Fold::new(auth(false));
    f.on_response(0, resp(ResponsedType::Continue, b(false)));
    assert_eq!(f.on_response(1, resp(ResponsedType::StopAndReturn, b(true))), (Flow::Stop, StepOutcome::Stop));
    assert!(f.is_done());
    let (r, e) = f.finish();
    assert_eq!(r, resp(ResponsedType::StopAndReturn, b(true)));
    assert_eq!(e, Ending::StoppedBy(1));
}

#[test]
fn wrong_kind_or_missing_value_is_ignore() {
    let mut f = Fold::new(auth(true));
    assert_eq!(
        f.on_response(0, resp(ResponsedType::Continue, Some(Value::Message(msg("t", "x"))))).1,
        StepOutcome::Ignore
    );
    assert_eq!(f.on_response(1, resp(ResponsedType::StopAndReturn, None)), (Flow::Next, StepOutcome::Ignore));
    assert_eq!(f.on_response(2, resp(ResponsedType::StopAndReturn, Some(Value::Message(msg("t", "x"))))).0, Flow::Next);
    assert_eq!(f.on_response(3, ValuedResponse { r#type: 9, value: b(false) }).1, StepOutcome::Ignore);
    assert!(f.current().result);
    assert_eq!(f.finish().0, resp(ResponsedType::Ignore, None));

    let mut p = Fold::new(MessagePublishRequest { message: Some(msg("a", "1")), ..Default::default() });
    assert_eq!(p.on_response(0, resp(ResponsedType::Continue, b(false))).1, StepOutcome::Ignore);
    assert_eq!(p.finish().0, resp(ResponsedType::Ignore, None));
}

#[test]
fn failure_ignore_skips_failure_deny_stops() {
    let mut f = Fold::new(auth(true));
    assert_eq!(f.on_failure(0, FailedAction::Ignore), (Flow::Next, StepOutcome::FailedIgnored));
    f.on_response(1, resp(ResponsedType::Continue, b(true)));
    assert_eq!(f.on_failure(2, FailedAction::Deny), (Flow::Stop, StepOutcome::FailedDenied));
    let (r, e) = f.finish();
    assert_eq!(r, resp(ResponsedType::StopAndReturn, b(false)));
    assert_eq!(e, Ending::DeniedByFailure(2));
}

#[test]
fn publish_deny_keeps_current_message() {
    let mut p = Fold::new(MessagePublishRequest { message: Some(msg("a", "1")), ..Default::default() });
    p.on_response(0, resp(ResponsedType::Continue, Some(Value::Message(msg("b", "2")))));
    assert_eq!(p.current().message.as_ref().unwrap().topic, "b");
    p.on_failure(1, FailedAction::Deny);
    let (r, _) = p.finish();
    assert_eq!(r, resp(ResponsedType::StopAndReturn, Some(Value::Message(msg("b", "2")))));
}

#[test]
fn publish_continue_returns_complete_message() {
    let mut p = Fold::new(MessagePublishRequest { message: Some(msg("a", "1")), ..Default::default() });
    p.on_response(0, resp(ResponsedType::Continue, Some(Value::Message(msg("b", "2")))));
    p.on_response(1, resp(ResponsedType::Ignore, None));
    assert_eq!(p.finish().0, resp(ResponsedType::Continue, Some(Value::Message(msg("b", "2")))));
}

#[test]
fn nothing_changes_after_the_end() {
    let mut f = Fold::new(auth(true));
    f.on_response(0, resp(ResponsedType::StopAndReturn, b(false)));
    assert_eq!(f.on_response(1, resp(ResponsedType::StopAndReturn, b(true))).0, Flow::Stop);
    assert_eq!(f.on_failure(2, FailedAction::Deny).0, Flow::Stop);
    assert_eq!(f.finish(), (resp(ResponsedType::StopAndReturn, b(false)), Ending::StoppedBy(0)));
}

#[derive(Debug, Clone)]
enum Step {
    Answer(i32, Option<bool>),
    Fail(FailedAction),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..4i32, proptest::option::of(any::<bool>())).prop_map(|(t, v)| Step::Answer(t, v)),
        prop_oneof![Just(FailedAction::Deny), Just(FailedAction::Ignore)].prop_map(Step::Fail),
    ]
}

/// A second, direct reading of contract §3.3 to check the fold against.
fn reference(initial: bool, steps: &[Step]) -> (i32, Option<bool>) {
    let mut acc = initial;
    let mut continued = false;
    for s in steps {
        match *s {
            Step::Answer(0, Some(v)) => {
                acc = v;
                continued = true;
            }
            Step::Answer(2, Some(v)) => return (2, Some(v)),
            Step::Answer(..) => {}
            Step::Fail(FailedAction::Ignore) => {}
            Step::Fail(FailedAction::Deny) => return (2, Some(false)),
        }
    }
    if continued { (0, Some(acc)) } else { (1, None) }
}

proptest! {
    #[test]
    fn fold_matches_reference(initial in any::<bool>(), steps in proptest::collection::vec(step(), 0..8)) {
        let mut f = Fold::new(auth(initial));
        for (i, s) in steps.iter().enumerate() {
            let (flow, _) = match *s {
                Step::Answer(t, v) => f.on_response(i, ValuedResponse { r#type: t, value: v.map(Value::BoolResult) }),
                Step::Fail(a) => f.on_failure(i, a),
            };
            if flow == Flow::Stop { break; }
        }
        let (r, _) = f.finish();
        let got = (r.r#type, r.value.map(|v| matches!(v, Value::BoolResult(true))));
        prop_assert_eq!(got, reference(initial, &steps));
    }
}
