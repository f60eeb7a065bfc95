//! A shadow provider's answer against the chain's, as EMQX would read both (pure).
//!
//! The chain's value is what EMQX ends up with: the folded value of a CONTINUE or
//! STOP_AND_RETURN answer, or — for IGNORE — the value EMQX sent (it keeps its own). The
//! shadow's value is what its answer would make of the request it was given, *at its position
//! in the chain*: a usable CONTINUE/STOP_AND_RETURN value replaces it, anything else (IGNORE,
//! a missing or wrong-kind value) keeps it — the fold's own rules ([`crate::Fold`]).
//!
//! Two values agree when EMQX would act the same on them: the same bool for
//! `client.authenticate` / `client.authorize`; for `message.publish` the same **qos, topic,
//! payload and `allow_publish` header**, the only parts of a Message EMQX takes (contract
//! §3.3), so a shadow that echoes a different `id` or timestamp still agrees.
//!
//! ```
//! use exhook_chain::shadow::{shadow_value, same_effect, describe};
//! use exhook_proto::model::{ClientAuthenticateRequest, ValuedResponse};
//! use exhook_proto::model::valued_response::{ResponsedType, Value};
//! let at = ClientAuthenticateRequest { result: true, ..Default::default() };
//! let stop_false = ValuedResponse { r#type: ResponsedType::StopAndReturn as i32, value: Some(Value::BoolResult(false)) };
//! let ignore = ValuedResponse { r#type: ResponsedType::Ignore as i32, value: None };
//! // The chain allowed; a shadow answering STOP_AND_RETURN false disagrees, one answering IGNORE
//! // (keeping the `true` it was given) agrees.
//! assert!(!same_effect(&Value::BoolResult(true), &shadow_value(&at, stop_false)));
//! assert!(same_effect(&Value::BoolResult(true), &shadow_value(&at, ignore)));
//! assert_eq!(describe(&Value::BoolResult(false)), "deny");
//! ```

use exhook_hooks::ValuedRequest;
use exhook_proto::model::{Message, ValuedResponse, valued_response::Value};

use crate::Fold;

/// What the chain's answer `response` leaves EMQX with, `sent` being the value EMQX sent
/// (kept on IGNORE).
pub fn chain_value(response: &ValuedResponse, sent: Value) -> Value {
    response.value.clone().unwrap_or(sent)
}

/// What a shadow's answer makes of the request `at` it was given (its position's request).
pub fn shadow_value<R: ValuedRequest>(at: &R, response: ValuedResponse) -> Value {
    let mut fold = Fold::new(at.clone());
    let _ = fold.on_response(0, response);
    match fold.finish().0.value {
        Some(v) => v,
        None => at.answer(),
    }
}

/// True when EMQX would act the same on `a` and `b` (see the module doc).
pub fn same_effect(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::BoolResult(x), Value::BoolResult(y)) => x == y,
        (Value::Message(x), Value::Message(y)) => {
            x.qos == y.qos && x.topic == y.topic && x.payload == y.payload && allow_publish(x) == allow_publish(y)
        }
        _ => false,
    }
}

/// EMQX reads only `"false"` as blocking the publish (other values are ignored).
fn allow_publish(m: &Message) -> bool {
    m.headers.get("allow_publish").is_none_or(|v| v != "false")
}

/// A short, bounded description of a value for the disagreement log: `allow`/`deny` for
/// bools; topic, qos, payload size and a hash of it for a Message (never the payload itself:
/// it may be personal data).
pub fn describe(value: &Value) -> String {
    match value {
        Value::BoolResult(true) => "allow".to_owned(),
        Value::BoolResult(false) => "deny".to_owned(),
        Value::Message(m) => {
            let topic: String = m.topic.chars().take(128).collect();
            let blocked = if allow_publish(m) { "" } else { ", allow_publish=false" };
            format!("topic {topic:?}, qos {}, {} bytes #{:08x}{blocked}", m.qos, m.payload.len(), fnv1a(&m.payload))
        }
    }
}

/// FNV-1a (32 bits): tells two payloads apart in the log without showing them.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193))
}

#[cfg(test)]
mod tests {
    use super::*;
    use exhook_proto::model::valued_response::ResponsedType;
    use exhook_proto::model::{ClientAuthorizeRequest, MessagePublishRequest};

    fn resp(kind: ResponsedType, value: Option<Value>) -> ValuedResponse {
        ValuedResponse { r#type: kind as i32, value }
    }

    fn msg(topic: &str, payload: &str) -> Message {
        Message { topic: topic.into(), payload: payload.as_bytes().to_vec().into(), qos: 1, ..Default::default() }
    }

    #[test]
    fn bool_answers_as_emqx_reads_them() {
        let at = ClientAuthorizeRequest { result: false, ..Default::default() };
        for (answer, expected) in [
            (resp(ResponsedType::Continue, Some(Value::BoolResult(true))), true),
            (resp(ResponsedType::StopAndReturn, Some(Value::BoolResult(true))), true),
            (resp(ResponsedType::Ignore, Some(Value::BoolResult(true))), false), // IGNORE keeps
            (resp(ResponsedType::Continue, None), false),                        // no value: IGNORE
            (resp(ResponsedType::Continue, Some(Value::Message(msg("t", "p")))), false), // wrong kind
            (ValuedResponse { r#type: 7, value: Some(Value::BoolResult(true)) }, false), // unknown type
        ] {
            assert_eq!(shadow_value(&at, answer.clone()), Value::BoolResult(expected), "{answer:?}");
        }
        // The chain's IGNORE leaves EMQX with what it sent.
        assert_eq!(chain_value(&resp(ResponsedType::Ignore, None), Value::BoolResult(true)), Value::BoolResult(true));
        assert_eq!(
            chain_value(&resp(ResponsedType::StopAndReturn, Some(Value::BoolResult(false))), Value::BoolResult(true)),
            Value::BoolResult(false)
        );
    }

    #[test]
    fn messages_compare_on_what_emqx_takes() {
        let a = msg("a/b", "hello");
        let mut b = a.clone();
        b.id = "other-id".into();
        b.timestamp = 42;
        b.headers.insert("username".into(), "someone".into());
        assert!(same_effect(&Value::Message(a.clone()), &Value::Message(b.clone())));
        for change in [
            |m: &mut Message| m.qos = 2,
            |m: &mut Message| m.topic = "a/c".into(),
            |m: &mut Message| m.payload = b"bye".to_vec().into(),
            |m: &mut Message| {
                m.headers.insert("allow_publish".into(), "false".into());
            },
        ] {
            let mut c = a.clone();
            change(&mut c);
            assert!(!same_effect(&Value::Message(a.clone()), &Value::Message(c)));
        }
        // "true" or any other value than "false" does not block.
        b.headers.insert("allow_publish".into(), "yes".into());
        assert!(same_effect(&Value::Message(a.clone()), &Value::Message(b)));
        assert!(!same_effect(&Value::Message(a), &Value::BoolResult(true)));
    }

    #[test]
    fn publish_shadow_value_is_the_message_it_would_leave() {
        let at = MessagePublishRequest { message: Some(msg("t", "in")), ..Default::default() };
        let rewritten = msg("t", "out");
        let v = shadow_value(&at, resp(ResponsedType::Continue, Some(Value::Message(rewritten.clone()))));
        assert_eq!(v, Value::Message(rewritten));
        assert_eq!(shadow_value(&at, resp(ResponsedType::Ignore, None)), Value::Message(msg("t", "in")));
    }

    #[test]
    fn descriptions_never_show_a_payload() {
        let mut m = msg("sensors/1", "secret-reading-123");
        let d = describe(&Value::Message(m.clone()));
        assert!(d.starts_with("topic \"sensors/1\", qos 1, 18 bytes #"), "{d}");
        assert!(!d.contains("secret"), "{d}");
        m.headers.insert("allow_publish".into(), "false".into());
        assert!(describe(&Value::Message(m)).ends_with("allow_publish=false"));
        assert_eq!(describe(&Value::BoolResult(true)), "allow");
    }
}
