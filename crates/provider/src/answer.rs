//! What a valued hook answers, built with [`allow`], [`deny`], [`ignore`], [`rewrite`] and
//! [`stop_publish`], and how it becomes the `ValuedResponse` EMQX folds (contract §3.3).
//!
//! | helper | hook | `ValuedResponse` | effect on the chain |
//! |---|---|---|---|
//! | [`ignore()`] | any valued | `IGNORE`, no value | the value so far is kept; next provider called |
//! | [`allow()`] | authenticate, authorize | `CONTINUE`, `true` | value becomes `true`; next provider still called (and may deny) |
//! | [`deny()`] | authenticate, authorize | `STOP_AND_RETURN`, `false` | chain ends: denied |
//! | [`rewrite()`]`.topic(..).payload(..)` | message.publish | `CONTINUE`, whole message with the edits | next provider sees the rewritten message |
//! | [`stop_publish()`] | message.publish | `STOP_AND_RETURN`, whole message with header `allow_publish=false` | chain ends; EMQX does not route the message |
//!
//! `.stop()` and `.pass_on()` change the chain effect of `allow()`/`deny()`/`rewrite()`: an
//! allow that nobody after may overturn is `allow().stop()`; a soft deny is `deny().pass_on()`.
//!
//! A message.publish answer never carries a message the provider built: the kit copies the
//! request's message and applies the edits, so id, from, qos, timestamp and headers are echoed
//! (EMQX takes topic, payload and qos from the answer: a provider that forgets to echo them
//! publishes an empty message on topic "").

use bytes::Bytes;
use exhook_proto::model::valued_response::{ResponsedType, Value};
use exhook_proto::model::{Message, ValuedResponse};

/// The answer to `client.authenticate` or `client.authorize`: see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a Decision does nothing until returned from the hook"]
pub struct Decision(Verdict<bool>);

/// The answer to `message.publish`: see the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a Publish answer does nothing until returned from the hook"]
pub struct Publish(Verdict<Edit>);

/// No opinion, or a value with its chain effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict<T> {
    Ignore,
    Value { value: T, stop: bool },
}

/// The edits a publish answer makes to the request's message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Edit {
    topic: Option<String>,
    payload: Option<Bytes>,
    qos: Option<u32>,
    headers: Vec<(String, String)>,
}

/// The header EMQX reads to drop a message (`"false"`: not routed to subscribers).
pub const ALLOW_PUBLISH: &str = "allow_publish";

/// No opinion: the value folded so far stays as it is (`IGNORE`). Works for every valued hook.
pub fn ignore<A: Ignorable>() -> A {
    A::ignore()
}

/// `true`, and the next provider still has its say (`CONTINUE`); `.stop()` makes it final.
pub fn allow() -> Decision {
    Decision(Verdict::Value { value: true, stop: false })
}

/// `false`, and the chain ends here (`STOP_AND_RETURN`); `.pass_on()` lets later providers
/// overturn it.
pub fn deny() -> Decision {
    Decision(Verdict::Value { value: false, stop: true })
}

/// The request's message, edited with [`Publish::topic`], [`Publish::payload`],
/// [`Publish::qos`], [`Publish::header`], passed on (`CONTINUE`). Without edits it echoes the
/// message unchanged, which still counts as an answer (the fold then ends `{ok, message}`).
pub fn rewrite() -> Publish {
    Publish(Verdict::Value { value: Edit::default(), stop: false })
}

/// Stops delivery: the whole message with header `allow_publish = "false"`, and the chain
/// ends (`STOP_AND_RETURN`); EMQX does not route it to subscribers. (A `deny` cannot do this:
/// EMQX's deny-result for message.publish is the message unchanged.)
pub fn stop_publish() -> Publish {
    rewrite().header(ALLOW_PUBLISH, "false").stop()
}

/// Answers that can say "no opinion": [`Decision`] and [`Publish`], so [`ignore()`] fits both.
pub trait Ignorable {
    /// The `IGNORE` answer.
    fn ignore() -> Self;
}

impl Ignorable for Decision {
    fn ignore() -> Self {
        Decision(Verdict::Ignore)
    }
}

impl Ignorable for Publish {
    fn ignore() -> Self {
        Publish(Verdict::Ignore)
    }
}

impl<T> Verdict<T> {
    fn set_stop(self, stop: bool) -> Self {
        match self {
            Verdict::Ignore => Verdict::Ignore,
            Verdict::Value { value, .. } => Verdict::Value { value, stop },
        }
    }
}

fn response(kind: ResponsedType, value: Option<Value>) -> ValuedResponse {
    ValuedResponse { r#type: kind as i32, value }
}

fn kind(stop: bool) -> ResponsedType {
    if stop { ResponsedType::StopAndReturn } else { ResponsedType::Continue }
}

impl Decision {
    /// Ends the chain with this value (`STOP_AND_RETURN`). No effect on [`ignore()`].
    pub fn stop(self) -> Self {
        Decision(self.0.set_stop(true))
    }

    /// Lets the next provider run (`CONTINUE`). No effect on [`ignore()`].
    pub fn pass_on(self) -> Self {
        Decision(self.0.set_stop(false))
    }

    /// `Some(true)` allow, `Some(false)` deny, `None` ignore.
    pub fn value(&self) -> Option<bool> {
        match self.0 {
            Verdict::Ignore => None,
            Verdict::Value { value, .. } => Some(value),
        }
    }

    /// The `ValuedResponse` on the wire (the same in v1, v2 and v3).
    pub fn into_response(self) -> ValuedResponse {
        match self.0 {
            Verdict::Ignore => response(ResponsedType::Ignore, None),
            Verdict::Value { value, stop } => response(kind(stop), Some(Value::BoolResult(value))),
        }
    }
}

impl From<bool> for Decision {
    /// `true` → [`allow()`], `false` → [`deny()`].
    fn from(b: bool) -> Self {
        if b { allow() } else { deny() }
    }
}

impl Publish {
    fn edit(mut self, f: impl FnOnce(&mut Edit)) -> Self {
        if let Verdict::Value { value, .. } = &mut self.0 {
            f(value);
        }
        self
    }

    /// Publishes on `topic` instead (the next provider's topic filter is matched against it).
    pub fn topic(self, topic: impl Into<String>) -> Self {
        let topic = topic.into();
        self.edit(|e| e.topic = Some(topic))
    }

    /// Replaces the payload.
    pub fn payload(self, payload: impl Into<Bytes>) -> Self {
        let payload = payload.into();
        self.edit(|e| e.payload = Some(payload))
    }

    /// Replaces the QoS (0, 1 or 2; EMQX takes it from the answer).
    pub fn qos(self, qos: u32) -> Self {
        self.edit(|e| e.qos = Some(qos))
    }

    /// Sets a header; EMQX reads only `allow_publish` (see [`stop_publish()`]), later providers
    /// see them all.
    pub fn header(self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let (name, value) = (name.into(), value.into());
        self.edit(|e| e.headers.push((name, value)))
    }

    /// Ends the chain with this message (`STOP_AND_RETURN`). No effect on [`ignore()`].
    pub fn stop(self) -> Self {
        Publish(self.0.set_stop(true))
    }

    /// Lets the next provider run (`CONTINUE`). No effect on [`ignore()`].
    pub fn pass_on(self) -> Self {
        Publish(self.0.set_stop(false))
    }

    /// True for [`ignore()`].
    pub fn is_ignore(&self) -> bool {
        matches!(self.0, Verdict::Ignore)
    }

    /// The message this answer sends back for `original` (the request's message), or `None`
    /// for [`ignore()`]: `original` with the edits applied, every other field echoed.
    pub fn apply(&self, original: &Message) -> Option<Message> {
        let Verdict::Value { value: edit, .. } = &self.0 else { return None };
        let mut m = original.clone();
        if let Some(t) = &edit.topic {
            m.topic.clone_from(t);
        }
        if let Some(p) = &edit.payload {
            m.payload = p.clone();
        }
        if let Some(q) = edit.qos {
            m.qos = q;
        }
        for (k, v) in &edit.headers {
            m.headers.insert(k.clone(), v.clone());
        }
        Some(m)
    }

    /// The `ValuedResponse` on the wire for a request carrying `original`. A request without a
    /// message (EMQX always sends one) gets `IGNORE`: there is nothing whole to echo.
    pub fn into_response(self, original: Option<&Message>) -> ValuedResponse {
        let stop = matches!(self.0, Verdict::Value { stop: true, .. });
        match original.and_then(|m| self.apply(m)) {
            Some(m) => response(kind(stop), Some(Value::Message(m))),
            None => response(ResponsedType::Ignore, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg() -> Message {
        let mut m = Message {
            node: "n".into(),
            id: "id-1".into(),
            qos: 1,
            from: "c1".into(),
            topic: "a/b".into(),
            payload: Bytes::from_static(b"x"),
            timestamp: 7,
            headers: Default::default(),
        };
        m.headers.insert("username".into(), "alice".into());
        m
    }

    #[test]
    fn bool_answers() {
        let ignore_d: Decision = ignore();
        assert_eq!(ignore_d.into_response(), response(ResponsedType::Ignore, None));
        assert_eq!(ignore_d.stop().into_response(), response(ResponsedType::Ignore, None));
        assert_eq!(allow().into_response(), response(ResponsedType::Continue, Some(Value::BoolResult(true))));
        assert_eq!(
            allow().stop().into_response(),
            response(ResponsedType::StopAndReturn, Some(Value::BoolResult(true)))
        );
        assert_eq!(deny().into_response(), response(ResponsedType::StopAndReturn, Some(Value::BoolResult(false))));
        assert_eq!(deny().pass_on().into_response(), response(ResponsedType::Continue, Some(Value::BoolResult(false))));
        assert_eq!(Decision::from(true), allow());
        assert_eq!(deny().value(), Some(false));
        assert_eq!(ignore_d.value(), None);
    }

    #[test]
    fn rewrite_echoes_the_whole_message() {
        let m = msg();
        let r = rewrite().topic("t/2").payload("y").into_response(Some(&m));
        let Some(Value::Message(out)) = r.value else { panic!("a message") };
        assert_eq!(r.r#type, ResponsedType::Continue as i32);
        assert_eq!(out, Message { topic: "t/2".into(), payload: Bytes::from_static(b"y"), ..m.clone() });

        // No edits: the message unchanged.
        assert_eq!(rewrite().apply(&m), Some(m.clone()));
        let q = rewrite().qos(0).header("k", "v").apply(&m).unwrap();
        assert_eq!((q.qos, q.headers.get("k").map(String::as_str), q.id.as_str()), (0, Some("v"), "id-1"));
    }

    #[test]
    fn stop_publish_sets_the_header_and_stops() {
        let m = msg();
        let r = stop_publish().into_response(Some(&m));
        assert_eq!(r.r#type, ResponsedType::StopAndReturn as i32);
        let Some(Value::Message(out)) = r.value else { panic!("a message") };
        assert_eq!(out.headers.get(ALLOW_PUBLISH).map(String::as_str), Some("false"));
        assert_eq!(out.headers.get("username").map(String::as_str), Some("alice"));
        assert_eq!((out.topic.as_str(), &out.payload[..], out.qos), ("a/b", &b"x"[..], 1));
    }

    #[test]
    fn ignore_and_missing_message() {
        let p: Publish = ignore();
        assert!(p.is_ignore());
        assert_eq!(p.clone().topic("x").into_response(Some(&msg())), response(ResponsedType::Ignore, None));
        assert_eq!(rewrite().into_response(None), response(ResponsedType::Ignore, None));
    }
}
