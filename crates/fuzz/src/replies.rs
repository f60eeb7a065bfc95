//! `replies`: what providers answer, as the gateway reads it.

use std::fmt::Debug;
use std::path::Path;
use std::sync::{Arc, LazyLock};

use exhook_chain::{FailedAction, Flow, Fold};
use exhook_config::Config;
use exhook_hooks::{Hook, ValuedRequest, Version};
use exhook_proto::model::{
    self, LoadedResponse, ValuedResponse,
    valued_response::{ResponsedType, Value},
};
use exhook_proto::{v1, v2, v3};
use exhook_topic::validate_filter;
use exhook_upstream::Registration;
use prost::Message;

use crate::topic_target::instantiate;

/// What byte 0 selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// `LoadedResponse` from a provider of this package.
    Loaded(Version),
    /// `ValuedResponse`s of this hook from a provider of this package.
    Valued(Version, Hook),
    /// `EmptySuccess` from a provider of this package.
    Empty(Version),
}

const VALUED: [Hook; 3] = [Hook::ClientAuthenticate, Hook::ClientAuthorize, Hook::MessagePublish];

impl ReplyKind {
    /// The kind byte 0 selects (15 kinds, mod 15).
    pub fn select(byte: u8) -> ReplyKind {
        let i = usize::from(byte) % 15;
        let version = Version::from_index(i % 3).unwrap_or(Version::V3);
        match i / 3 {
            0 => ReplyKind::Loaded(version),
            4 => ReplyKind::Empty(version),
            h => ReplyKind::Valued(version, VALUED[h - 1]),
        }
    }

    /// The selector byte of this kind (inverse of [`ReplyKind::select`]).
    pub fn selector(self) -> u8 {
        let (row, v) = match self {
            ReplyKind::Loaded(v) => (0, v),
            ReplyKind::Valued(v, h) => (1 + VALUED.iter().position(|x| *x == h).unwrap_or(0), v),
            ReplyKind::Empty(v) => (4, v),
        };
        u8::try_from(row * 3 + v.index()).unwrap_or(0)
    }
}

/// Several replies in one input: each prefixed by its length byte; 255 (or a length past
/// the end) means "everything that is left", so a long reply fits too.
pub fn split_replies(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while let Some((&len, rest)) = data.split_first() {
        let n = if len == u8::MAX { rest.len() } else { usize::from(len).min(rest.len()) };
        out.push(&rest[..n]);
        data = &rest[n..];
    }
    out
}

/// A package's type and the model agree on a reply: whatever the package decodes, the model
/// decodes too, keeping every field.
fn agree<P: Message + Default + PartialEq + Debug, M: Message + Default>(body: &[u8]) {
    let Ok(p) = P::decode(body) else { return };
    let m = M::decode(p.encode_to_vec().as_slice()).unwrap_or_else(|e| panic!("model rejects a valid reply: {e}"));
    assert_eq!(P::decode(m.encode_to_vec().as_slice()).ok(), Some(p), "the model lost a field of a reply");
}

macro_rules! agree_all {
    ($version:expr, $ty:ident, $body:expr) => {
        match $version {
            Version::V1 => agree::<v1::$ty, model::$ty>($body),
            Version::V2 => agree::<v2::$ty, model::$ty>($body),
            Version::V3 => agree::<v3::$ty, model::$ty>($body),
        }
    };
}

pub(crate) fn run(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else { return };
    match ReplyKind::select(sel) {
        ReplyKind::Loaded(version) => {
            agree_all!(version, LoadedResponse, rest);
            // The gateway reads every package's LoadedResponse as the model's (same layout).
            if let Ok(r) = LoadedResponse::decode(rest) {
                check_registration(version, &r);
            }
        }
        ReplyKind::Valued(version, hook) => {
            for reply in split_replies(rest) {
                agree_all!(version, ValuedResponse, reply);
            }
            let sample = model::Message { topic: "t/1".into(), payload: b"p".to_vec().into(), ..Default::default() };
            match hook {
                Hook::ClientAuthenticate => {
                    fold(model::ClientAuthenticateRequest { result: true, ..Default::default() }, rest)
                }
                Hook::ClientAuthorize => {
                    fold(model::ClientAuthorizeRequest { result: true, ..Default::default() }, rest)
                }
                _ => fold(model::MessagePublishRequest { message: Some(sample), ..Default::default() }, rest),
            }
        }
        ReplyKind::Empty(version) => {
            agree_all!(version, EmptySuccess, rest);
            let model_ok = model::EmptySuccess::decode(rest).is_ok();
            let package_ok = match version {
                Version::V1 => v1::EmptySuccess::decode(rest).is_ok(),
                Version::V2 => v2::EmptySuccess::decode(rest).is_ok(),
                Version::V3 => v3::EmptySuccess::decode(rest).is_ok(),
            };
            assert_eq!(model_ok, package_ok, "EmptySuccess: the model and {version} disagree");
        }
    }
}

/// The default tenant of a gateway with one provider, for `loaded_response`.
static TENANT: LazyLock<Option<exhook_config::TenantConfig>> = LazyLock::new(|| {
    let toml = "[[providers]]\nname = \"p\"\nurl = \"http://127.0.0.1:1\"\n";
    Config::parse(toml, Path::new("<fuzz>")).ok().and_then(|c| c.tenants.into_iter().next())
});

fn check_registration(version: Version, r: &LoadedResponse) {
    let reg = Registration::from_response(version, r);
    assert!(reg.same_as(&reg));
    // A second reading of the rules: the names, unknown names and invalid filters.
    let mut unknown = Vec::new();
    let mut invalid = Vec::new();
    for spec in r.hooks.iter().filter(|s| !s.name.is_empty()) {
        match Hook::from_hookpoint(&spec.name) {
            None => unknown.push(spec.name.clone()),
            Some(h) => {
                assert!(reg.hooks.contains(h), "{} registered but not in the registration", spec.name);
                if h.is_message_hook() {
                    invalid.extend(spec.topics.iter().filter(|t| validate_filter(t).is_err()).cloned());
                }
            }
        }
    }
    assert_eq!(reg.unknown, unknown);
    assert_eq!(reg.invalid_filters, invalid);
    for hook in Hook::ALL {
        let specs: Vec<_> = r.hooks.iter().filter(|s| Hook::from_hookpoint(&s.name) == Some(hook)).collect();
        assert_eq!(reg.hooks.contains(hook), !specs.is_empty(), "{hook}: registered or not");
        if specs.is_empty() {
            assert!(!reg.wants(hook, Some("t")) && !reg.wants(hook, None));
            continue;
        }
        if !hook.is_message_hook() || specs.iter().any(|s| s.topics.is_empty()) {
            // Not a message hook, or "all topics" somewhere: every topic.
            assert!(reg.filters(hook).is_none(), "{hook}: all topics expected");
            assert!(reg.wants(hook, Some("any/topic")) && reg.wants(hook, Some("$SYS/x")));
            continue;
        }
        for f in specs.iter().flat_map(|s| &s.topics).filter(|t| validate_filter(t).is_ok()) {
            for t in [instantiate(f, "w", ""), instantiate(f, "", "x/y")] {
                assert!(reg.wants(hook, Some(&t)), "{hook}: filter {f:?} does not take topic {t:?}");
            }
        }
    }
    // What the gateway answers EMQX with, from this registration alone.
    let Some(tenant) = TENANT.as_ref() else { return };
    for caller in Version::NEWEST_FIRST {
        let answer = exhook_server::loaded_response(tenant, &[Some(Arc::new(reg.clone()))], caller);
        for spec in &answer.hooks {
            let hook = Hook::ALL.into_iter().find(|h| h.hookpoint(caller) == Some(spec.name.as_str()));
            let hook = hook.unwrap_or_else(|| panic!("{:?} is not a {caller} hookpoint", spec.name));
            assert!(reg.hooks.contains(hook), "{hook} answered but not registered");
            assert!(spec.topics.iter().all(|t| validate_filter(t).is_ok()), "invalid filter answered to EMQX");
        }
    }
}

/// A second reading of EMQX's fold (contract §3.3), step by step beside [`Fold`].
fn fold<R: ValuedRequest + PartialEq + Debug>(request: R, data: &[u8]) {
    let is_message = R::HOOK == Hook::MessagePublish;
    let mut fold = Fold::new(request.clone());
    let mut acc = request.answer();
    let (mut continued, mut ended): (bool, Option<(ResponsedType, Value)>) = (false, None);
    for (position, reply) in split_replies(data).into_iter().enumerate() {
        let before = fold.current().clone();
        // Failures alternate between the two actions, so both are reached.
        let action = if position % 2 == 0 { FailedAction::Ignore } else { FailedAction::Deny };
        let (flow, decoded) = match ValuedResponse::decode(reply) {
            // An undecodable reply fails the call (conn.rs: "undecodable reply").
            Err(_) => (fold.on_failure(position, action).0, None),
            Ok(r) => (fold.on_response(position, r.clone()).0, Some(r)),
        };
        if ended.is_some() {
            assert_eq!(flow, Flow::Stop);
            assert_eq!(*fold.current(), before, "a finished fold changed");
            continue;
        }
        match decoded {
            None if action == FailedAction::Deny => ended = Some((ResponsedType::StopAndReturn, before.deny())),
            None => {}
            Some(r) => {
                let kind = ResponsedType::try_from(r.r#type).ok();
                let usable = match &r.value {
                    Some(Value::BoolResult(_)) => !is_message,
                    Some(Value::Message(_)) => is_message,
                    None => false,
                };
                match (kind, r.value) {
                    (Some(ResponsedType::Continue), Some(v)) if usable => {
                        acc = v;
                        continued = true;
                    }
                    (Some(ResponsedType::StopAndReturn), Some(v)) if usable => {
                        acc = v.clone();
                        ended = Some((ResponsedType::StopAndReturn, v));
                    }
                    _ => assert_eq!(*fold.current(), before, "an IGNORE changed the accumulator"),
                }
            }
        }
        assert_eq!(flow == Flow::Stop, ended.is_some(), "flow {flow:?} at step {position}");
        assert_eq!(fold.current().answer(), acc, "the next provider would see another value");
    }
    let (response, _) = fold.finish();
    let want = match ended {
        Some((kind, value)) => ValuedResponse { r#type: kind as i32, value: Some(value) },
        None if continued => ValuedResponse { r#type: ResponsedType::Continue as i32, value: Some(acc) },
        None => ValuedResponse { r#type: ResponsedType::Ignore as i32, value: None },
    };
    assert_eq!(response, want, "the fold's answer to EMQX");
}
